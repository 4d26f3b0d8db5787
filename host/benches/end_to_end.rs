//! End to end, what a Lambda pays for: the real `host` binary against a native Rust
//! handler doing the same work (`enrich::transform` compiled natively, the same decoding
//! and encoding), in the same run, on the same events.
//!
//! 1. `host run` file to file: a Kinesis event of 1,000 records, as Lambda delivers it,
//!    to the enriched payloads as JSON lines; the plugin in the precompiled cache. Each
//!    run is a whole process. The native side reads, decodes, transforms and writes the
//!    same file in this process (its process start is part 3's).
//! 2. A Lambda invocation, through the Runtime API (the tests' server, on loopback): a
//!    Kinesis event of 1,000 records in, the outputs put to a Kinesis stream (a loopback
//!    server answering `PutRecords`, [`LoopbackAws`]), the answer out; and a Firehose
//!    transformation event of 1,000 records, whose answer carries the outputs. The
//!    native handler is this bench's own binary run as a custom runtime
//!    ([`NATIVE_RUNTIME`]), speaking the same API over HTTP and putting its outputs
//!    through the same AWS SDK.
//! 3. Cold start: from starting the process to its first answer, the plugin in the cache.
//!
//! Run with `./dev bench`; writes the "End to end" section of `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

mod common;
use common::{event_payload, machine, wasmtime_version, write_section};

#[allow(dead_code)]
#[path = "../../tests/e2e/runtime_api.rs"]
mod runtime_api;
use runtime_api::{Answer, Function, RuntimeApi};

/// Set when this binary runs as the native custom runtime: the Runtime API's address.
const NATIVE_RUNTIME: &str = "END_TO_END_NATIVE_RUNTIME";
const RECORDS: usize = 1000;
const FILE_TO_FILE: &str = "`host run` file to file: a Kinesis event → JSON lines (a whole process for the host, the work alone for native)";
/// Timed runs or invocations per configuration (the median is kept).
const RUNS: usize = 20;
/// Process starts per runtime for the cold start.
const STARTS: usize = 5;
/// `END_TO_END_PROFILE=kinesis|firehose|start[:N]`: only the host, N invocations
/// (default 200) of that event on a warm process, or N cold starts to a first answer to
/// a Kinesis event; nothing written: for `perf record -g` around this binary (it follows
/// the host's processes).
const PROFILE: &str = "END_TO_END_PROFILE";

fn main() {
    if let Ok(address) = std::env::var(NATIVE_RUNTIME) {
        native_runtime(&address);
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let plugin = root.join("target/wasm32-wasip2/plugin/enrich.wasm");
    assert!(plugin.exists(), "build the plugins first: ./dev plugins");
    let scratch = tempfile::tempdir().expect("tempdir");
    let payloads = payloads(RECORDS);
    if let Ok(which) = std::env::var(PROFILE) {
        profile(scratch.path(), &plugin, &payloads, &which);
        return;
    }

    let files = file_to_file(scratch.path(), &plugin, &payloads);
    let lambda = lambda(scratch.path(), &plugin, &payloads);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut s = String::new();
    let _ = writeln!(s, "## End to end (`./dev bench`)\n");
    let _ = writeln!(
        s,
        "The `host` binary (optimized) running `enrich` (wasmtime {}, from the precompiled cache) \
         against a native Rust handler doing the same work: the same decoding, `enrich::transform` \
         compiled natively, the same outputs (checked byte for byte). {RECORDS} records per event, \
         medians of {RUNS} (of {STARTS} for the cold start). Machine: {}.\n",
        wasmtime_version(&root),
        machine()
    );
    let _ = writeln!(
        s,
        "| what | host (Wasm) | native handler | host / native |\n|---|---:|---:|---:|"
    );
    for (what, host, native) in [
        (FILE_TO_FILE, files.0, files.1),
        (
            "a Lambda invocation: a Kinesis event in, the outputs to a Kinesis stream (loopback), the answer out",
            lambda.kinesis.0,
            lambda.kinesis.1,
        ),
        (
            "a Lambda invocation: a Firehose event in, the outputs in the answer",
            lambda.firehose.0,
            lambda.firehose.1,
        ),
        (
            "cold start: process start to the first answer to a Kinesis event (the plugin in the cache)",
            lambda.start.0,
            lambda.start.1,
        ),
    ] {
        // The file-to-file row times a whole host process against the native work
        // alone: not a ratio of like things.
        let ratio = if std::ptr::eq(what, FILE_TO_FILE) {
            "(not like for like)".to_owned()
        } else {
            format!("{:.1}x", host.as_secs_f64() / native.as_secs_f64())
        };
        let _ = writeln!(
            s,
            "| {what} | {:.2} ms | {:.2} ms | {ratio} |",
            ms(host),
            ms(native)
        );
    }
    let _ = writeln!(
        s,
        "\nPer record, a Kinesis invocation costs the host {:.0} ns and the native handler {:.0} ns. \
         The file-to-file native figure is the work alone, in this process; the host's includes \
         starting its process, its engine and the plugin (part of the cold start row). Both \
         runtimes answer the same kind of Runtime API server (the tests'), which reads every \
         answer whole, and put their outputs through the AWS SDK to a loopback server that \
         answers `PutRecords` (and `GetQueueUrl`, for the host's DLQ at start). The native \
         handler is this bench's own binary as a custom runtime.",
        lambda.kinesis.0.as_nanos() as f64 / RECORDS as f64,
        lambda.kinesis.1.as_nanos() as f64 / RECORDS as f64,
    );
    write_section(&root.join("BENCHMARKS.md"), "end-to-end", &s);
    println!("{s}");
}

/// `n` events as the throughput bench makes them.
fn payloads(n: usize) -> Vec<String> {
    (0..n).map(event_payload).collect()
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unbase64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

/// A Kinesis event of `payloads` with 16 partition keys, as from several producers (the
/// benches' `common::kinesis_event` gives every record one key, and the host keeps one
/// key's records in order, one sink call at a time).
fn kinesis_event(payloads: &[String]) -> Value {
    let mut event = common::kinesis_event(
        0,
        &payloads
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect::<Vec<_>>(),
    );
    if let Some(records) = event["Records"].as_array_mut() {
        for (i, record) in records.iter_mut().enumerate() {
            record["kinesis"]["partitionKey"] = json!(format!("k{}", i % 16));
        }
    }
    event
}

fn firehose_event(payloads: &[String]) -> Value {
    let records: Vec<Value> = payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| {
            json!({
                "recordId": format!("4954698668313554428650745793632167567570019247115678{i:04}"),
                "approximateArrivalTimestamp": 1764075600453_u64 + i as u64,
                "data": base64(payload.as_bytes())
            })
        })
        .collect();
    json!({
        "invocationId": "invocation-1",
        "deliveryStreamArn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/events-to-s3",
        "region": "us-east-1",
        "records": records
    })
}

/// The native transform of one payload, with the one attribute `enrich` reads.
fn enrich_native(payload: &[u8], source: &str) -> Option<Vec<u8>> {
    let attributes = [("source", source)];
    enrich::transform(guest_sdk::Record::new(payload).with_attributes(&attributes))
        .ok()
        .map(|output| output.payload().to_vec())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

/// Part 1: `host run` over a Kinesis event file, and the native equivalent.
fn file_to_file(dir: &Path, plugin: &Path, payloads: &[String]) -> (Duration, Duration) {
    let event = dir.join("kinesis-event.json");
    std::fs::write(&event, kinesis_event(payloads).to_string()).expect("event");
    let cache = dir.join("run-cache");
    let (host_out, native_out) = (dir.join("host.jsonl"), dir.join("native.jsonl"));
    let host_run = || {
        let started = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["run", "--format", "kinesis-event", "--emit", "payload"])
            .arg("--plugin")
            .arg(plugin)
            .arg("--input")
            .arg(&event)
            .arg("--output")
            .arg(&host_out)
            .env("PIPELINE_CACHE_DIR", &cache)
            // Its default dead-letter file goes in the scratch directory too.
            .current_dir(dir)
            .stderr(Stdio::null())
            .status()
            .expect("host run");
        assert!(status.success(), "host run failed");
        started.elapsed()
    };
    let native_run = || {
        let started = Instant::now();
        let text = std::fs::read(&event).expect("event");
        let event: Value = serde_json::from_slice(&text).expect("JSON");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&native_out).expect("out"));
        for record in event["Records"].as_array().expect("Records") {
            let data = unbase64(record["kinesis"]["data"].as_str().expect("data"));
            if let Some(payload) = enrich_native(&data, "kinesis") {
                out.write_all(&payload).expect("write");
                out.write_all(b"\n").expect("write");
            }
        }
        out.flush().expect("flush");
        started.elapsed()
    };
    host_run(); // fills the cache
    let (mut host, mut native) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        host.push(host_run());
        native.push(native_run());
    }
    let (a, b) = (
        std::fs::read(&host_out).expect("host output"),
        std::fs::read(&native_out).expect("native output"),
    );
    assert_eq!(
        a.iter().filter(|&&c| c == b'\n').count(),
        payloads.len(),
        "one output per record"
    );
    assert!(a == b, "the host's and the native outputs differ");
    (median(host), median(native))
}

/// A runtime process under its own Runtime API server. The process is declared first so that it stops before its Runtime API server does
/// (fields drop in order): a native runtime left waiting on `next` would fail loudly.
struct Runtime {
    _process: Process,
    api: RuntimeApi,
}

enum Process {
    Host(#[allow(dead_code)] Function),
    Native(Child),
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Process::Native(child) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Runtime {
    fn host(dir: &Path, plugin: &Path, aws: &LoopbackAws) -> Self {
        let api = RuntimeApi::start(Vec::new());
        let mut env = vec![
            ("PIPELINE_PLUGIN", plugin.display().to_string()),
            ("PIPELINE_DLQ", "sqs://dlq".to_owned()),
            ("PIPELINE_SINKS", "default=kinesis://enriched".to_owned()),
        ];
        env.extend(aws.env());
        let process = Process::Host(Function::start(&api, &env, dir));
        Self {
            api,
            _process: process,
        }
    }

    fn native(aws: &LoopbackAws) -> Self {
        let api = RuntimeApi::start(Vec::new());
        let child = Command::new(std::env::current_exe().expect("this bench"))
            .env(NATIVE_RUNTIME, &api.address)
            .envs(aws.env())
            .stdin(Stdio::null())
            .spawn()
            .expect("the native runtime");
        Self {
            api,
            _process: Process::Native(child),
        }
    }

    fn invoke(&self, event: &Value) -> (Duration, Value) {
        let event = event.clone();
        let started = Instant::now();
        self.api.push(event);
        match self.api.next_answer(Duration::from_secs(60)) {
            Answer::Response(answer) => (started.elapsed(), answer),
            other => panic!("the runtime failed: {other:?}"),
        }
    }
}

/// A loopback stand-in for the two AWS calls a Lambda runtime makes here: SQS's
/// `GetQueueUrl` (the host looks its DLQ up at start; no record fails, so nothing is
/// sent there) and Kinesis's `PutRecords` (the sink), both in the AWS JSON protocol.
/// It keeps every record put, as (partition key, data), to compare the runtimes' outputs.
struct LoopbackAws {
    address: String,
    put: Arc<Mutex<Vec<Put>>>,
}

/// A record put to Kinesis: its partition key and data.
type Put = (String, Vec<u8>);

impl LoopbackAws {
    fn start() -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("server");
        let address = server.server_addr().to_ip().expect("ip").to_string();
        let put: Arc<Mutex<Vec<Put>>> = Arc::default();
        let (kept, queue_url) = (
            Arc::clone(&put),
            format!(r#"{{"QueueUrl":"http://{address}/123456789012/dlq"}}"#),
        );
        std::thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let target = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("X-Amz-Target"))
                    .map(|h| h.value.to_string())
                    .unwrap_or_default();
                let mut body = Vec::new();
                let _ = request.as_reader().read_to_end(&mut body);
                let (answer, content_type) = match target.as_str() {
                    "AmazonSQS.GetQueueUrl" => (queue_url.clone(), "application/x-amz-json-1.0"),
                    "Kinesis_20131202.PutRecords" => {
                        let request: Value = serde_json::from_slice(&body).expect("PutRecords");
                        let records = request["Records"].as_array().expect("Records");
                        let mut kept = kept.lock().expect("kept");
                        for record in records {
                            kept.push((
                                record["PartitionKey"].as_str().expect("key").to_owned(),
                                unbase64(record["Data"].as_str().expect("Data")),
                            ));
                        }
                        let answered: Vec<Value> = (0..records.len())
                            .map(|i| json!({"SequenceNumber": format!("{i}"), "ShardId": "shardId-000000000000"}))
                            .collect();
                        let answer = json!({"FailedRecordCount": 0, "Records": answered});
                        (answer.to_string(), "application/x-amz-json-1.1")
                    }
                    other => panic!("the loopback AWS was asked for {other}"),
                };
                let content_type =
                    tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
                        .expect("header");
                let _ = request
                    .respond(tiny_http::Response::from_string(answer).with_header(content_type));
            }
        });
        Self { address, put }
    }

    /// The records put so far, sorted (the runtimes may put them in other orders across
    /// partition keys), leaving none.
    fn take(&self) -> Vec<Put> {
        let mut put = std::mem::take(&mut *self.put.lock().expect("put"));
        put.sort();
        put
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", format!("http://{}", self.address)),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "bench".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "bench".to_owned()),
        ]
    }
}

/// What a Lambda runtime costs, host against native, medians.
struct LambdaTimes {
    /// A Kinesis event's invocation (the outputs to the Kinesis sink).
    kinesis: (Duration, Duration),
    /// A Firehose event's invocation (the outputs in the answer).
    firehose: (Duration, Duration),
    /// Process start to the first answer (a Kinesis event).
    start: (Duration, Duration),
}

/// The host alone, warm, invoked over and over with one kind of event ([`PROFILE`]).
fn profile(dir: &Path, plugin: &Path, payloads: &[String], which: &str) {
    let (kind, count) = which.split_once(':').unwrap_or((which, "200"));
    let count: usize = count.parse().expect("END_TO_END_PROFILE=kind:N");
    let event = match kind {
        "kinesis" | "start" => kinesis_event(payloads),
        "firehose" => firehose_event(payloads),
        other => panic!("END_TO_END_PROFILE: no event kind {other} (kinesis, firehose, start)"),
    };
    let aws = LoopbackAws::start();
    // The first process compiles into the cache; the profiled ones load from it.
    let warm = Runtime::host(dir, plugin, &aws);
    warm.invoke(&event);
    wait_for_cache(dir);
    drop(warm);
    let mut times = Vec::with_capacity(count);
    if kind == "start" {
        for _ in 0..count {
            let started = Instant::now();
            Runtime::host(dir, plugin, &aws).invoke(&event);
            times.push(started.elapsed());
            let _ = aws.take();
        }
    } else {
        let host = Runtime::host(dir, plugin, &aws);
        for _ in 0..count {
            times.push(host.invoke(&event).0);
            let _ = aws.take();
        }
    }
    eprintln!("{kind}: median {:?} of {count} invocations", median(times));
}

/// Waits until the function's precompiled cache in `dir` holds an artifact. A start
/// with an empty cache answers on Winch's code (a tiered start) and writes Cranelift's
/// from the background: a process stopped at its first answer never writes it, and
/// every later start would compile again.
fn wait_for_cache(dir: &Path) {
    let cache = dir.join("plugin-cache");
    let written = || {
        std::fs::read_dir(&cache).is_ok_and(|mut entries| {
            entries.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "cwasm")))
        })
    };
    let started = Instant::now();
    while !written() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no precompiled artifact in {} after 120 s",
            cache.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Parts 2 and 3: invocations of a Kinesis and a Firehose event, and process starts to
/// a first answer. Each runtime has its own loopback AWS, whose records are compared.
fn lambda(dir: &Path, plugin: &Path, payloads: &[String]) -> LambdaTimes {
    let (kinesis, firehose) = (kinesis_event(payloads), firehose_event(payloads));
    let (host_aws, native_aws) = (LoopbackAws::start(), LoopbackAws::start());
    let function_dir = dir.join("function");
    std::fs::create_dir_all(&function_dir).expect("dir");
    // The first start compiles into the function's cache; the starts after load from it.
    let warm = Runtime::host(&function_dir, plugin, &host_aws);
    warm.invoke(&kinesis);
    wait_for_cache(&function_dir);
    drop(warm);
    let (mut host_starts, mut native_starts) = (Vec::new(), Vec::new());
    for _ in 0..STARTS {
        let started = Instant::now();
        let host = Runtime::host(&function_dir, plugin, &host_aws);
        host.invoke(&kinesis);
        host_starts.push(started.elapsed());
        drop(host);
        let started = Instant::now();
        let native = Runtime::native(&native_aws);
        native.invoke(&kinesis);
        native_starts.push(started.elapsed());
    }
    let (host, native) = (
        Runtime::host(&function_dir, plugin, &host_aws),
        Runtime::native(&native_aws),
    );
    let (_, _) = (host_aws.take(), native_aws.take());
    let mut times: [Vec<Duration>; 4] = Default::default();
    let mut answers = (Value::Null, Value::Null);
    for _ in 0..RUNS {
        times[0].push(host.invoke(&kinesis).0);
        times[1].push(native.invoke(&kinesis).0);
        let (time, answer) = host.invoke(&firehose);
        times[2].push(time);
        answers.0 = answer;
        let (time, answer) = native.invoke(&firehose);
        times[3].push(time);
        answers.1 = answer;
    }
    let (a, b) = (host_aws.take(), native_aws.take());
    assert_eq!(
        a.len(),
        RUNS * payloads.len(),
        "one Kinesis record per input"
    );
    assert!(
        a == b,
        "the host and the native handler put different records"
    );
    let datas = |answer: &Value| -> Vec<Vec<u8>> {
        answer["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| {
                assert_eq!(r["result"], "Ok", "{r}");
                unbase64(r["data"].as_str().expect("data"))
            })
            .collect()
    };
    let (a, b) = (datas(&answers.0), datas(&answers.1));
    assert_eq!(a.len(), payloads.len(), "one answer per record");
    assert!(a == b, "the host's and the native answers differ");
    let [host_kinesis, native_kinesis, host_firehose, native_firehose] = times.map(median);
    LambdaTimes {
        kinesis: (host_kinesis, native_kinesis),
        firehose: (host_firehose, native_firehose),
        start: (median(host_starts), median(native_starts)),
    }
}

/// The native handler as a custom runtime: next invocation, its answer, again. Kinesis
/// events' outputs go to the Kinesis stream through the AWS SDK, as the host's do.
fn native_runtime(address: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let kinesis = runtime.block_on(async {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        aws_sdk_kinesis::Client::new(&config)
    });
    loop {
        let (headers, event) = http(address, "GET", "/2018-06-01/runtime/invocation/next", b"");
        let id = headers
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("Lambda-Runtime-Aws-Request-Id")
                    .then(|| value.trim().to_owned())
            })
            .expect("a request id");
        let answer = if event.starts_with(b"{\"Records\"") {
            runtime.block_on(kinesis_native(&kinesis, &event))
        } else {
            firehose_native(&event)
        };
        http(
            address,
            "POST",
            &format!("/2018-06-01/runtime/invocation/{id}/response"),
            &answer,
        );
    }
}

/// A Kinesis event: each record decoded and transformed, the outputs put to the stream
/// `enriched` 500 at a time (PutRecords' limit), keyed as the host keys them.
async fn kinesis_native(client: &aws_sdk_kinesis::Client, event: &[u8]) -> Vec<u8> {
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let event: Value = serde_json::from_slice(event).expect("event");
    let mut entries = Vec::new();
    for record in event["Records"].as_array().expect("Records") {
        let data = unbase64(record["kinesis"]["data"].as_str().expect("data"));
        let attributes = [("source", "kinesis")];
        let output = enrich::transform(guest_sdk::Record::new(&data).with_attributes(&attributes))
            .expect("a valid event");
        let key = std::str::from_utf8(output.key().expect("a key")).expect("text");
        entries.push(
            PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(aws_sdk_kinesis::primitives::Blob::new(output.payload()))
                .build()
                .expect("entry"),
        );
    }
    for chunk in entries.chunks(500) {
        let put = client
            .put_records()
            .stream_name("enriched")
            .set_records(Some(chunk.to_vec()))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(put.failed_record_count(), Some(0));
    }
    br#"{"batchItemFailures":[]}"#.to_vec()
}

fn firehose_native(event: &[u8]) -> Vec<u8> {
    let event: Value = serde_json::from_slice(event).unwrap_or_else(|e| {
        panic!(
            "event: {e}: {}",
            String::from_utf8_lossy(&event[..event.len().min(300)])
        )
    });
    let records: Vec<Value> = event["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|record| {
            let data = unbase64(record["data"].as_str().expect("data"));
            match enrich_native(&data, "firehose") {
                Some(payload) => json!({
                    "recordId": record["recordId"], "result": "Ok", "data": base64(&payload)
                }),
                None => json!({
                    "recordId": record["recordId"], "result": "ProcessingFailed",
                    "data": record["data"]
                }),
            }
        })
        .collect();
    serde_json::to_vec(&json!({ "records": records })).expect("JSON")
}

/// One HTTP/1.0 exchange on a fresh connection (no chunked answers): the response's head and body.
fn http(address: &str, method: &str, path: &str, body: &[u8]) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(address).expect("the Runtime API");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("request");
    stream.write_all(body).expect("body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let body = &response[split + 4..];
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("Content-Length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(body.len());
    (head, body[..length.min(body.len())].to_vec())
}
