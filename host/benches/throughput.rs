//! Throughput: 1,000,000 JSON records (~200 bytes) through the `enrich` plugin in Wasm
//! and through the same `enrich::transform` compiled natively, at several batch sizes,
//! with the CPU deadline (epoch interruption) on. The `misbehave` plugin's echo path
//! (a payload that is no command is copied to one output unchanged) measures what
//! crossing the boundary costs: packing, copying in, the call, copying out, unpacking.
//!
//! Run with `./dev bench`; writes the "Throughput" section of `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pipeline_host::{Engine, Limits, Outcome, Record, Runner};

const RECORDS: usize = 1_000_000;
const BATCH_SIZES: [usize; 4] = [1, 100, 1000, 10_000];
const REPEATS: usize = 3;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm_dir = root.join("target/wasm32-wasip2/plugin");
    let records = make_records(RECORDS);
    let payload_bytes: usize = records.iter().map(|r| r.payload.len()).sum();
    let rss_data = rss_kib().1;

    let native = best_of(REPEATS, || native_enrich(&records));
    let native_rate = RECORDS as f64 / native.0.as_secs_f64();
    eprintln!("native: {:.0} records/s", native_rate);

    let engine = Engine::new(&Limits::default()).expect("engine");
    let enrich = engine
        .load_file(&wasm_dir.join("enrich.wasm"))
        .expect("build plugins first: ./dev plugins");
    let echo = engine
        .load_file(&wasm_dir.join("misbehave.wasm"))
        .expect("misbehave.wasm");

    let naive = naive::Naive::load(&wasm_dir.join("naive_echo_bench.wasm"));
    let mut rows = Vec::new();
    for batch_size in BATCH_SIZES {
        let mut runner = Runner::new(enrich.clone(), Vec::new()).expect("enrich init");
        reset_peak_rss();
        let (elapsed, outputs) = best_of(REPEATS, || run_wasm(&mut runner, &records, batch_size));
        assert_eq!(outputs, native.1, "wasm and native disagree");
        let peak = rss_kib().0;
        let mut echo_runner = Runner::new(echo.clone(), Vec::new()).expect("echo init");
        let (echo_elapsed, _) =
            best_of(REPEATS, || run_wasm(&mut echo_runner, &records, batch_size));
        let naive_elapsed = best_of(REPEATS, || naive.echo(&records, batch_size)).0;
        let rate = RECORDS as f64 / elapsed.as_secs_f64();
        eprintln!(
            "wasm batch {batch_size}: {rate:.0} records/s ({:.2}x native)",
            rate / native_rate
        );
        rows.push(Row {
            batch_size,
            rate,
            ratio: rate / native_rate,
            boundary_ns: echo_elapsed.as_nanos() as f64 / RECORDS as f64,
            naive_ns: naive_elapsed.as_nanos() as f64 / RECORDS as f64,
            peak_delta_mib: peak.saturating_sub(rss_data) as f64 / 1024.0,
        });
    }
    let report = render(&rows, native_rate, payload_bytes, &root);
    write_section(&root.join("BENCHMARKS.md"), "throughput", &report);
    println!("{report}");
}

struct Row {
    batch_size: usize,
    rate: f64,
    ratio: f64,
    boundary_ns: f64,
    naive_ns: f64,
    peak_delta_mib: f64,
}

/// Events shaped like the enrich plugin's input, ~200 bytes each, with the attributes
/// a Kinesis source sets.
fn make_records(n: usize) -> Vec<Record> {
    let actions = ["buy", "view", "refund", "click"];
    (0..n)
        .map(|i| {
            let payload = format!(
                r#"{{"id":"evt-{i:08}","user":"user-{:05}","action":"{}","amount":{}.{:02},"ts":"2026-11-24T13:{:02}:{:02}Z","country":"DE","device":"android","session":"s-{:012x}","v":2}}"#,
                i % 50_000,
                actions[i % actions.len()],
                i % 1000,
                i % 100,
                (i / 60) % 60,
                i % 60,
                i * 7919
            );
            Record {
                key: Some(format!("user-{:05}", i % 50_000).into()),
                payload: payload.into(),
                attributes: vec![
                    ("source".into(), "kinesis".into()),
                    ("stream".into(), "events".into()),
                    ("shard".into(), "shardId-000000000001".into()),
                    ("sequence-number".into(), format!("{:056}", i)),
                ],
            }
        })
        .collect()
}

/// The same transform, compiled natively and called in-process on the same records.
fn native_enrich(records: &[Record]) -> usize {
    let mut outputs = 0;
    let mut attributes: Vec<(&str, &str)> = Vec::with_capacity(4);
    for record in records {
        attributes.clear();
        attributes.extend(
            record
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let input = guest_sdk::Record::new(&record.payload).with_attributes(&attributes);
        if let Ok(output) = enrich::transform(input) {
            outputs += usize::from(!output.payload().is_empty());
        }
    }
    outputs
}

fn run_wasm(runner: &mut Runner, records: &[Record], batch_size: usize) -> usize {
    let mut outputs = 0;
    for chunk in records.chunks(batch_size) {
        for outcome in runner.run(chunk) {
            if let Outcome::Transformed(list) = outcome {
                outputs += list.iter().filter(|o| !o.payload.is_empty()).count();
            }
        }
    }
    outputs
}

fn best_of(repeats: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = (Duration::MAX, 0);
    for _ in 0..repeats {
        let start = Instant::now();
        let n = std::hint::black_box(f());
        best = best.min((start.elapsed(), n));
    }
    best
}

/// (peak, current) resident set size in KiB.
fn rss_kib() -> (u64, u64) {
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

fn reset_peak_rss() {
    // Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn machine() -> String {
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

fn wasmtime_version(root: &Path) -> String {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    lock.split("[[package]]")
        .find(|p| p.contains("name = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map_or("unknown".into(), |v| v.trim_matches('"').to_owned())
}

fn render(rows: &[Row], native_rate: f64, payload_bytes: usize, root: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Throughput (`./dev bench`)\n");
    let _ = writeln!(
        s,
        "{RECORDS} JSON records, {:.0} bytes on average, 4 attributes each, through the `enrich` plugin \
         (wasmtime {}, Cranelift, epoch deadline on) and through `enrich::transform` compiled natively \
         in the same process. Best of {REPEATS} runs. Machine: {}.\n",
        payload_bytes as f64 / RECORDS as f64,
        wasmtime_version(root),
        machine()
    );
    let _ = writeln!(
        s,
        "Native baseline: **{:.0} records/s** ({:.2} us/record).\n",
        native_rate,
        1e6 / native_rate
    );
    let _ = writeln!(
        s,
        "| batch size | Wasm records/s | Wasm / native | echo per record, packed encoding | echo per record, naive `list<record>` | peak RSS above the data set |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.2}x | {:.0} ns | {:.0} ns | {:.1} MiB |",
            r.batch_size, r.rate, r.ratio, r.boundary_ns, r.naive_ns, r.peak_delta_mib
        );
    }
    let _ = writeln!(
        s,
        "\nThe echo columns are the whole round trip per record for a plugin that copies each payload \
         to one output: host-side packing, the copy into the sandbox, the call, the copy out and \
         unpacking. \"Naive\" is the same echo over `host/benches/naive/naive.wit`, a `list<record>` \
         whose records carry their own lists and strings (the encoding `wit/plugin.wit` replaced)."
    );
    s
}

/// Replaces the `<!-- name:begin -->` .. `<!-- name:end -->` section of the file (or
/// appends it), so several benchmarks share one results file.
fn write_section(path: &PathBuf, name: &str, body: &str) {
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

/// The naive encoding, for comparison: a `list<record>` of nested lists and strings.
mod naive {
    use std::path::Path;

    use pipeline_host::Record;
    use pipeline_host::wasmtime::component::{Component, Linker, ResourceTable};
    use pipeline_host::wasmtime::{Config, Engine, Store};
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

    pipeline_host::wasmtime::component::bindgen!({ path: "benches/naive/naive.wit", world: "naive-echo" });

    struct Ctx {
        wasi: WasiCtx,
        table: ResourceTable,
    }

    impl WasiView for Ctx {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }

    pub struct Naive {
        store: std::cell::RefCell<Store<Ctx>>,
        bindings: NaiveEcho,
    }

    impl Naive {
        pub fn load(path: &Path) -> Self {
            let mut config = Config::new();
            config.epoch_interruption(true);
            let engine = Engine::new(&config).expect("engine");
            let mut linker = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
            let component = Component::from_file(&engine, path).expect("build it: ./dev bench");
            let pre = NaiveEchoPre::new(linker.instantiate_pre(&component).expect("link"))
                .expect("world");
            let ctx = Ctx {
                wasi: wasmtime_wasi::WasiCtxBuilder::new().build(),
                table: ResourceTable::new(),
            };
            let mut store = Store::new(&engine, ctx);
            store.set_epoch_deadline(1 << 40);
            let bindings = pre.instantiate(&mut store).expect("instantiate");
            Self {
                store: store.into(),
                bindings,
            }
        }

        pub fn echo(&self, records: &[Record], batch_size: usize) -> usize {
            let mut store = self.store.borrow_mut();
            let mut outputs = 0;
            for chunk in records.chunks(batch_size) {
                let batch: Vec<InputRecord> = chunk
                    .iter()
                    .map(|r| InputRecord {
                        key: r.key.as_ref().map(|k| k.to_vec()),
                        payload: r.payload.to_vec(),
                        attributes: r.attributes.clone(),
                    })
                    .collect();
                store.set_epoch_deadline(1 << 40);
                let results = self
                    .bindings
                    .call_transform(&mut *store, &batch)
                    .expect("naive echo");
                outputs += results.iter().filter(|r| r.is_ok()).count();
            }
            outputs
        }
    }
}
