//! A loopback proxy in front of the emulator that the tests drive to throttle, fail,
//! stall or cut AWS calls: the host is pointed at it (`AWS_ENDPOINT_URL`) and every call
//! goes through it, one request per connection. A [`Rule`] picks calls by operation (the
//! `X-Amz-Target` of JSON protocols, e.g. `PutRecords`; `S3.PutObject` for an S3 PUT)
//! and, optionally, by a text in the body (a queue URL); the rules can be changed while
//! the host runs.
//!
//! It also keeps a rule of the real service that the emulator does not: SQS refuses a
//! message whose body or string attribute has a character outside its documented set,
//! and the call with it ([`sqs_refuses`]).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// What happens to a matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Read and never answered (a stalled service), until the proxy stops.
    Hold,
    /// Answered with a 500 without reaching the service (the service is down).
    Down,
    /// Answered with a throttling error without reaching the service.
    Throttle,
    /// Sent to the service, then the connection is closed without its answer: the
    /// service did the work, the caller did not hear so.
    Cut,
    /// Sent to the service, then held without its answer until the proxy stops (the
    /// caller dies waiting).
    Swallow,
    /// Kinesis `PutRecords`: only every other record reaches the service; the answer
    /// reports the others as throttled (a partial failure).
    Halve,
}

/// Which calls a fault applies to, and how many times.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The operation: the end of `X-Amz-Target` (`PutRecords`, `SendMessageBatch`,
    /// `BatchWriteItem`), or `S3.PutObject`.
    pub operation: &'static str,
    /// Only calls whose body contains this (a queue URL), when set.
    pub body_contains: Option<String>,
    /// Matching calls let through before the fault starts.
    pub skip: usize,
    /// Matching calls the fault applies to, after `skip` (`usize::MAX`: all).
    pub times: usize,
    /// The fault.
    pub fault: Fault,
}

impl Rule {
    /// `fault` on every call of `operation`.
    pub fn always(operation: &'static str, fault: Fault) -> Self {
        Self {
            operation,
            body_contains: None,
            skip: 0,
            times: usize::MAX,
            fault,
        }
    }
}

#[derive(Default)]
struct State {
    rules: Vec<(Rule, usize)>,
    /// Calls a fault was applied to, by operation.
    faulted: Vec<&'static str>,
    /// SQS calls refused for a character outside SQS's set.
    sqs_refused: usize,
    /// Calls forwarded whose caller hung up before their answer (its attempt timed
    /// out): the service did the work, the caller did not hear so. By operation, with
    /// the entries each carried and its body.
    unheard: Vec<(String, usize, String)>,
    /// Calls forwarded, by operation: how many, bytes sent, bytes received.
    traffic: std::collections::BTreeMap<String, Traffic>,
}

/// What went through the proxy for one operation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub calls: usize,
    pub sent: usize,
    pub received: usize,
}

/// The proxy; dropping it stops it and releases held calls.
pub struct Proxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http endpoint")
            .to_owned();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (upstream, shared, stopping) =
                    (upstream.clone(), shared.clone(), stopping.clone());
                std::thread::spawn(move || relay(client, &upstream, &shared, &stopping));
            }
        });
        Self {
            endpoint,
            state,
            stop,
        }
    }

    /// Replaces the rules (their counts start again).
    pub fn set(&self, rules: Vec<Rule>) {
        let mut state = self.state.lock().expect("proxy state");
        state.rules = rules.into_iter().map(|r| (r, 0)).collect();
    }

    /// How many calls of `operation` a fault was applied to.
    pub fn faulted(&self, operation: &str) -> usize {
        let state = self.state.lock().expect("proxy state");
        state.faulted.iter().filter(|o| **o == operation).count()
    }

    /// Entries (Kinesis records, SQS messages; 1 for another call) of the calls of
    /// `operation` whose body contains `body_contains`, forwarded without a fault, that
    /// the service took after their caller had hung up: on a slow machine an attempt
    /// can time out just as the service finishes, and the SDK sends it again. Copies
    /// downstream that no fault made.
    pub fn unheard(&self, operation: &str, body_contains: Option<&str>) -> usize {
        let state = self.state.lock().expect("proxy state");
        state
            .unheard
            .iter()
            .filter(|(op, _, body)| {
                op == operation && body_contains.is_none_or(|n| body.contains(n))
            })
            .map(|(_, entries, _)| entries)
            .sum()
    }

    /// SQS calls refused so far for a character SQS does not accept.
    pub fn sqs_refused(&self) -> usize {
        self.state.lock().expect("proxy state").sqs_refused
    }

    /// Calls forwarded so far, by operation; cleared.
    #[allow(dead_code)]
    pub fn take_traffic(&self) -> std::collections::BTreeMap<String, Traffic> {
        std::mem::take(&mut self.state.lock().expect("proxy state").traffic)
    }

    /// `env` with `AWS_ENDPOINT_URL` pointing here.
    pub fn env(&self, env: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
        let mut env: Vec<_> = env
            .into_iter()
            .filter(|(k, _)| *k != "AWS_ENDPOINT_URL")
            .collect();
        env.push(("AWS_ENDPOINT_URL", self.endpoint.clone()));
        env
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

/// The operation a request is: its target's last part, or `S3.<verb>` for S3.
fn operation(head: &str) -> String {
    let target = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-amz-target").then(|| {
            value
                .trim()
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
    });
    target.unwrap_or_else(|| {
        let method = head.split_whitespace().next().unwrap_or_default();
        match method {
            "PUT" => "S3.PutObject".to_owned(),
            other => format!("S3.{other}"),
        }
    })
}

/// The fault for this request, if a rule picks it (counting it).
fn fault_for(state: &Mutex<State>, head: &str, body: &[u8]) -> Option<(Fault, &'static str)> {
    let op = operation(head);
    let text = String::from_utf8_lossy(body);
    let mut state = state.lock().expect("proxy state");
    let mut picked = None;
    for (rule, seen) in &mut state.rules {
        if rule.operation != op
            || rule
                .body_contains
                .as_ref()
                .is_some_and(|needle| !text.contains(needle.as_str()))
        {
            continue;
        }
        *seen += 1;
        if *seen > rule.skip && *seen - rule.skip <= rule.times {
            picked = Some((rule.fault, rule.operation));
            break;
        }
    }
    if let Some((_, op)) = picked {
        state.faulted.push(op);
    }
    picked
}

fn relay(mut client: TcpStream, upstream: &str, state: &Mutex<State>, stop: &AtomicBool) {
    let Some((head, body)) = read_request(&mut client) else {
        return;
    };
    if let Some(text) = sqs_refuses(&head, &body) {
        state.lock().expect("proxy state").sqs_refused += 1;
        let message = format!(
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF (test proxy: {text:?})"
        );
        let body =
            json!({"__type": "com.amazonaws.sqs#InvalidMessageContents", "message": message});
        answer(&mut client, 400, &body.to_string());
        return;
    }
    let fault = fault_for(state, &head, &body);
    match fault.map(|(f, _)| f) {
        Some(Fault::Hold) => {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Some(Fault::Down) => answer(
            &mut client,
            500,
            r#"{"__type":"InternalFailure","message":"the service is down (test proxy)"}"#,
        ),
        Some(Fault::Throttle) => answer(
            &mut client,
            400,
            r#"{"__type":"ThrottlingException","message":"Rate exceeded (test proxy)"}"#,
        ),
        Some(Fault::Cut) => {
            // The service takes the request; its answer never reaches the caller.
            let _ = forward(&head, &body, upstream);
        }
        Some(Fault::Swallow) => {
            let _ = forward(&head, &body, upstream);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Some(Fault::Halve) => halve(&mut client, &head, &body, upstream),
        None => {
            if let Some(response) = forward(&head, &body, upstream) {
                let gone = hung_up(&client);
                let _ = client.write_all(&response);
                let mut state = state.lock().expect("proxy state");
                if gone {
                    let text = String::from_utf8_lossy(&body).into_owned();
                    state.unheard.push((operation(&head), entries(&body), text));
                }
                let traffic = state.traffic.entry(operation(&head)).or_default();
                traffic.calls += 1;
                traffic.sent += head.len() + 4 + body.len();
                traffic.received += response.len();
            }
        }
    }
}

/// Whether the caller closed its connection (its attempt timed out) while the call was
/// upstream: one request per connection, so anything readable now is its end.
fn hung_up(client: &TcpStream) -> bool {
    if client.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let gone = match client.peek(&mut byte) {
        Ok(n) => n == 0,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    let _ = client.set_nonblocking(false);
    gone
}

/// The entries of a batch call: `Records` (Kinesis) or `Entries` (SQS), else 1.
fn entries(body: &[u8]) -> usize {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("Records")
                .or_else(|| v.get("Entries"))
                .and_then(Value::as_array)
                .map(Vec::len)
        })
        .unwrap_or(1)
}

/// The characters SQS takes in a message body or a string attribute value, as its
/// documentation lists them.
fn sqs_accepts(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// For an SQS `SendMessage` or `SendMessageBatch` (JSON protocol): the first body or
/// string attribute value with a character SQS does not accept, which makes SQS refuse
/// the call.
fn sqs_refuses(head: &str, body: &[u8]) -> Option<String> {
    let op = operation(head);
    if op != "SendMessage" && op != "SendMessageBatch" {
        return None;
    }
    let request: Value = serde_json::from_slice(body).ok()?;
    let messages = match request.get("Entries") {
        Some(Value::Array(entries)) => entries.clone(),
        _ => vec![request],
    };
    let mut texts = Vec::new();
    for message in &messages {
        texts.extend(message.get("MessageBody").and_then(Value::as_str));
        if let Some(Value::Object(attributes)) = message.get("MessageAttributes") {
            texts.extend(
                attributes
                    .values()
                    .filter_map(|a| a.get("StringValue")?.as_str()),
            );
        }
    }
    texts
        .into_iter()
        .find(|t| !t.chars().all(sqs_accepts))
        .map(|t| t.chars().take(64).collect())
}

fn answer(client: &mut TcpStream, status: u16, body: &str) {
    let response = format!(
        "HTTP/1.1 {status} Error\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes());
}

/// Sends the request upstream; the whole raw response.
fn forward(head: &str, body: &[u8], upstream: &str) -> Option<Vec<u8>> {
    let mut lines: Vec<String> = head
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("connection:") && !l.starts_with("content-length:")
        })
        .map(str::to_owned)
        .collect();
    lines.push(format!("Content-Length: {}", body.len()));
    lines.push("Connection: close".to_owned());
    let mut server = TcpStream::connect(upstream).ok()?;
    let request = format!("{}\r\n\r\n", lines.join("\r\n"));
    server.write_all(request.as_bytes()).ok()?;
    server.write_all(body).ok()?;
    let mut response = Vec::new();
    let _ = server.read_to_end(&mut response);
    Some(response)
}

/// `PutRecords` with only the even-numbered records sent; the odd ones answered as
/// throttled.
fn halve(client: &mut TcpStream, head: &str, body: &[u8], upstream: &str) {
    let Ok(mut request) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let records = request["Records"].as_array().cloned().unwrap_or_default();
    let kept: Vec<Value> = records.iter().step_by(2).cloned().collect();
    request["Records"] = Value::Array(kept);
    let body = serde_json::to_vec(&request).expect("json");
    let Some(response) = forward(head, &body, upstream) else {
        return;
    };
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    let Ok(answer) = serde_json::from_slice::<Value>(&response[split + 4..]) else {
        return;
    };
    let mut sent = answer["Records"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter();
    let mut results = Vec::new();
    let mut failed = 0;
    for i in 0..records.len() {
        if i % 2 == 0 {
            results.push(sent.next().unwrap_or(json!({})));
        } else {
            failed += 1;
            results.push(json!({
                "ErrorCode": "ProvisionedThroughputExceededException",
                "ErrorMessage": "Rate exceeded for shard (test proxy)"
            }));
        }
    }
    let out = json!({ "FailedRecordCount": failed, "Records": results }).to_string();
    let _ = client.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
            out.len()
        )
        .as_bytes(),
    );
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
