//! One transform in three languages: the Python `enrich` (`plugins-python/enrich`, built
//! with componentize-py) and the JavaScript one (`plugins-js/enrich`, componentize-js)
//! against the Rust `enrich`, as Wasm components in the same host, the Rust one compiled
//! natively, and the JavaScript one as a plain Node.js function: records/s at batch 1000,
//! the cost of a call of one record, component size, compile time, and memory per
//! instance.
//!
//! Run with `./dev bench`; writes the "Languages" section of `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use pipeline_host::limits::Budget;
use pipeline_host::{Engine, Limits, Outcome, Record, Runner};

mod common;
use common::{machine, wasmtime_version, write_section};

/// Records per throughput run (the Python plugin takes tens of microseconds each).
const RECORDS: usize = 20_000;
const BATCH: usize = 1000;
/// Calls of one record each, for the per-call cost.
const SINGLE_CALLS: usize = 500;
const REPEATS: usize = 3;

struct Side {
    name: &'static str,
    size: usize,
    compile: Duration,
    instance_kib: u64,
    batch: Duration,
    single: Duration,
    outputs: Vec<Vec<u8>>,
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let records = make_records(RECORDS);
    let engine = Engine::new(&Limits::default()).expect("engine");
    let sides: Vec<Side> = [
        ("Rust", root.join("target/wasm32-wasip2/plugin/enrich.wasm")),
        ("Python", root.join("target/python/enrich.wasm")),
        ("JavaScript", root.join("target/js/enrich.wasm")),
    ]
    .into_iter()
    .map(|(name, path)| measure(&engine, name, &path, &records))
    .collect();
    for side in &sides[1..] {
        assert!(
            side.outputs == sides[0].outputs,
            "the {} enrich and the Rust enrich disagree",
            side.name
        );
    }
    let node = node_rate(&root);
    let native = (0..REPEATS)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(native_enrich(&records));
            started.elapsed()
        })
        .min()
        .unwrap_or_default();
    let report = render(&sides, native, node, &root);
    write_section(&root.join("BENCHMARKS.md"), "languages", &report);
    println!("{report}");
}

fn measure(engine: &Engine, name: &'static str, path: &Path, records: &[Record]) -> Side {
    let bytes = std::fs::read(path).expect("build the plugins first: ./dev plugins");
    let started = Instant::now();
    let plugin = engine.load_bytes(&bytes, name).expect("load");
    let compile = started.elapsed();
    let before = rss_kib();
    let mut runner = Runner::new(plugin.clone(), Vec::new()).expect("init");
    // One batch through it first: the instance's memory as it runs, not as it starts.
    runner.run(&records[..BATCH], Budget::unbounded());
    let instance_kib = rss_kib().saturating_sub(before);
    let mut batch = Duration::MAX;
    let mut outputs = Vec::new();
    for _ in 0..REPEATS {
        let started = Instant::now();
        outputs.clear();
        for chunk in records.chunks(BATCH) {
            for outcome in runner.run(chunk, Budget::unbounded()) {
                if let Outcome::Transformed(list) = outcome {
                    outputs.extend(list.into_iter().map(|o| o.payload.to_vec()));
                }
            }
        }
        batch = batch.min(started.elapsed());
    }
    let mut single = Duration::MAX;
    for _ in 0..REPEATS {
        let started = Instant::now();
        for record in records.iter().take(SINGLE_CALLS) {
            std::hint::black_box(runner.run(std::slice::from_ref(record), Budget::unbounded()));
        }
        single = single.min(started.elapsed());
    }
    eprintln!("{name} done");
    Side {
        name,
        size: bytes.len(),
        compile,
        instance_kib,
        batch,
        single: single / SINGLE_CALLS as u32,
        outputs,
    }
}

fn make_records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let payload = format!(
                r#"{{"id":"evt-{i:08}","user":"user-{:05}","action":"buy","amount":{}.{:02},"ts":"2026-11-24T13:00:00Z","country":"DE"}}"#,
                i % 5000,
                i % 1000,
                i % 100
            );
            Record {
                key: None,
                payload: payload.into(),
                attributes: vec![("source".into(), "kinesis".into())],
            }
        })
        .collect()
}

fn native_enrich(records: &[Record]) -> usize {
    let attributes = [("source", "kinesis")];
    records
        .iter()
        .filter(|r| {
            enrich::transform(guest_sdk::Record::new(&r.payload).with_attributes(&attributes))
                .is_ok()
        })
        .count()
}

/// The JavaScript enrich as a plain Node.js function over the same records
/// (`node_enrich.mjs`): records/s and Node's version, when Node.js is here.
fn node_rate(root: &Path) -> Option<(f64, String)> {
    let out = std::process::Command::new("node")
        .arg(root.join("host/benches/node_enrich.mjs"))
        .arg(RECORDS.to_string())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((
        answer["records_per_second"].as_f64()?,
        answer["node"].as_str()?.to_owned(),
    ))
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn render(sides: &[Side], native: Duration, node: Option<(f64, String)>, root: &Path) -> String {
    let rate = |d: Duration| RECORDS as f64 / d.as_secs_f64();
    let mut s = String::new();
    let _ = writeln!(s, "## Languages (`./dev bench`)\n");
    let _ = writeln!(
        s,
        "The `enrich` transform written in Rust (`plugins/enrich`), in Python \
         (`plugins-python/enrich`, componentize-py 0.25.1) and in JavaScript (`plugins-js/enrich`, \
         componentize-js 0.23.0), byte-identical outputs (checked), \
         {RECORDS} JSON records at batch {BATCH}, best of {REPEATS}; wasmtime {}, epoch deadline on. \
         Native Rust `enrich::transform` in the same process: **{:.0} records/s**. Machine: {}.\n",
        wasmtime_version(root),
        rate(native),
        machine()
    );
    let _ = writeln!(
        s,
        "| plugin | component | compile | records/s at batch {BATCH} | vs native | a call of one record | memory per instance |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for side in sides {
        let _ = writeln!(
            s,
            "| {} | {:.2} MB | {:.0} ms | {:.0} | {:.2}x | {:.0} µs | {:.1} MiB |",
            side.name,
            side.size as f64 / 1e6,
            side.compile.as_secs_f64() * 1e3,
            rate(side.batch),
            rate(side.batch) / rate(native),
            side.single.as_secs_f64() * 1e6,
            side.instance_kib as f64 / 1024.0,
        );
    }
    if let Some((rate_node, version)) = &node {
        let _ = writeln!(
            s,
            "| JavaScript on Node.js {version}, a plain function (no sandbox) | | | {rate_node:.0} | {:.2}x | | |",
            rate_node / rate(native),
        );
    }
    let _ = writeln!(
        s,
        "\n\"Compile\" is Cranelift on the component without the cache (see the cold-start section \
         for loads from the cache and from a signed precompiled artifact). \"Memory per instance\" \
         is the process's resident memory grown by starting one instance and running one batch \
         through it."
    );
    s
}
