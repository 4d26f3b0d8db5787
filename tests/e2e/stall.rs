//! A sink that stalls: a loopback proxy in front of the emulator holds every Kinesis
//! `PutRecords` call open and never answers. Every AWS call has an attempt and an
//! operation timeout, so the records fail their delivery in bounded time and go to the
//! DLQ (through the same proxy, which forwards everything else) instead of the
//! invocation hanging until Lambda kills it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::emulator::Moto;
use crate::events::{failures, kinesis_event};
use crate::lambda_harness::Lambda;
use crate::support::{Scratch, path_str, plugin};

/// Forwards each request to `upstream`, one request per connection, except the ones
/// whose `X-Amz-Target` is `hold`: those are read and never answered.
struct Proxy {
    endpoint: String,
    held: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: &str, hold: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http endpoint")
            .to_owned();
        let held = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, stopping) = (held.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (upstream, counter, stopping) =
                    (upstream.clone(), counter.clone(), stopping.clone());
                std::thread::spawn(move || relay(client, &upstream, hold, &counter, &stopping));
            }
        });
        Self {
            endpoint,
            held,
            stop,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

fn relay(mut client: TcpStream, upstream: &str, hold: &str, held: &AtomicUsize, stop: &AtomicBool) {
    let Some((head, body)) = read_request(&mut client) else {
        return;
    };
    let target = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-amz-target")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    if target.ends_with(hold) {
        held.fetch_add(1, Ordering::Relaxed);
        // Hold the connection open, answering nothing, until the test ends.
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        return;
    }
    let mut lines: Vec<&str> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let request = format!("{}\r\n\r\n", lines.join("\r\n"));
    if server.write_all(request.as_bytes()).is_err() || server.write_all(&body).is_err() {
        return;
    }
    let mut response = Vec::new();
    let _ = server.read_to_end(&mut response);
    let _ = client.write_all(&response);
}

/// One request: its head (without the blank line) and its body (by Content-Length).
fn read_request(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 8192];
    let end = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = client.read(&mut buffer).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = data[end + 4..].to_vec();
    while body.len() < length {
        let n = client.read(&mut buffer).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buffer[..n]);
    }
    Some((head, body))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_sink_fails_its_attempts_in_time_and_the_records_are_dead_lettered() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    let dlq = aws.queue("dlq").await;
    let proxy = Proxy::start(&moto.endpoint, "PutRecords");
    let scratch = Scratch::new();
    let wasm = plugin("misbehave");
    let mut env: Vec<(&str, String)> = moto
        .env()
        .into_iter()
        .filter(|(k, _)| *k != "AWS_ENDPOINT_URL")
        .collect();
    env.extend(
        [
            ("AWS_ENDPOINT_URL", proxy.endpoint.as_str()),
            ("PIPELINE_PLUGIN", path_str(&wasm)),
            ("PIPELINE_SINKS", "default=kinesis://out"),
            ("PIPELINE_DLQ", "sqs://dlq"),
            ("PIPELINE_MAX_ATTEMPTS", "2"),
            ("PIPELINE_RETRY_BASE_MS", "1"),
            ("PIPELINE_AWS_ATTEMPT_TIMEOUT_MS", "300"),
            ("PIPELINE_AWS_TIMEOUT_MS", "1000"),
        ]
        .map(|(k, v)| (k, v.to_owned())),
    );
    let lambda = Lambda::start(&env, scratch.dir.path());
    let shard = "shardId-000000000001";
    let answer = lambda.invoke(kinesis_event(&[(shard, "one"), (shard, "two")]));
    let log = lambda.log();
    assert!(
        proxy.held.load(Ordering::Relaxed) > 0,
        "the proxy held no call: {log}"
    );
    assert!(failures(&answer).is_empty(), "{answer}");
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dead.len(), 2, "{log}");
    assert!(
        dead.iter().all(|e| e.contains(r#""kind":"delivery""#)),
        "{dead:?}"
    );
    assert!(aws.stream_records("out").await.is_empty());
    assert!(
        log.contains("in=2 transformed=0 dropped=0 failed=2"),
        "{log}"
    );
}
