//! Helpers shared by the benchmarks: what machine ran them, and the results file.

use std::path::Path;

/// CPU, cores, memory, kernel and compiler, for the results file.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown", |v| v.trim_start_matches([' ', '\t', ':']));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {:.0} GiB RAM, Linux {}, {rustc}",
        mem_kib as f64 / 1048576.0,
        kernel.trim()
    )
}

/// The wasmtime version in Cargo.lock.
pub fn wasmtime_version(root: &Path) -> String {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    lock.split("[[package]]")
        .find(|p| p.contains("name = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map_or("unknown".into(), |v| v.trim_matches('"').to_owned())
}

/// Replaces the `<!-- name:begin -->` .. `<!-- name:end -->` section of the file (or
/// appends it), so several benchmarks share one results file.
pub fn write_section(path: &Path, name: &str, body: &str) {
    let (begin, end) = (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    );
    let section = format!("{begin}\n{body}{end}\n");
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n\n".to_owned());
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if b < e => format!(
            "{}{section}{}",
            &old[..b],
            old[e + end.len()..].trim_start_matches('\n')
        ),
        _ => format!("{}\n{section}", old.trim_end()),
    };
    if let Err(e) = std::fs::write(path, new) {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

/// The `i`th event the throughput and end-to-end benches run through `enrich`: JSON of
/// ~170 bytes, 50,000 users, four actions.
#[allow(dead_code, reason = "the throughput and end-to-end benches' only")]
pub fn event_payload(i: usize) -> String {
    let actions = ["buy", "view", "refund", "click"];
    format!(
        r#"{{"id":"evt-{i:08}","user":"user-{:05}","action":"{}","amount":{}.{:02},"ts":"2026-11-24T13:{:02}:{:02}Z","country":"DE","device":"android","session":"s-{:012x}","v":2}}"#,
        i % 50_000,
        actions[i % actions.len()],
        i % 1000,
        i % 100,
        (i / 60) % 60,
        i % 60,
        i * 7919
    )
}

/// This process's peak and current resident memory, KiB (Linux; 0 elsewhere).
#[allow(dead_code, reason = "the throughput and cold-start benches' only")]
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A Kinesis event of `payloads` as Lambda delivers it, its sequence numbers unique to
/// event `b`.
#[allow(
    dead_code,
    reason = "the lookups, schemas and end-to-end benches' only"
)]
pub fn kinesis_event(b: usize, payloads: &[Vec<u8>]) -> serde_json::Value {
    use base64::Engine as _;
    let records: Vec<serde_json::Value> = payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| {
            let sequence = format!("49590338271490256608559692538361571095921575989{b:03}{i:06}");
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0", "partitionKey": "k", "sequenceNumber": sequence,
                    "data": base64::engine::general_purpose::STANDARD.encode(payload),
                    "approximateArrivalTimestamp": 1764075600.0
                },
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": format!("shardId-0:{sequence}"), "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/events"
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}
