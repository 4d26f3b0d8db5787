//! Throughput: 1,000,000 JSON records (~200 bytes) through the `enrich` plugin in Wasm
//! and through the same `enrich::transform` compiled natively, at several batch sizes,
//! with the CPU deadline (epoch interruption) on. The `misbehave` plugin's echo path
//! (a payload that is no command is copied to one output unchanged) measures what
//! crossing the boundary costs: packing, copying in, the call, copying out, unpacking.
//!
//! Run with `./dev bench`; writes the "Throughput" section of `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use pipeline_host::config::Budget;
use pipeline_host::{Engine, Limits, Outcome, Record, Runner};

mod common;
use common::{machine, wasmtime_version, write_section};

const RECORDS: usize = 1_000_000;
const BATCH_SIZES: [usize; 4] = [1, 100, 1000, 10_000];
const REPEATS: usize = 3;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm_dir = root.join("target/wasm32-wasip2/plugin");
    let records = make_records(RECORDS);
    let payload_bytes: usize = records.iter().map(|r| r.payload.len()).sum();
    let rss_data = rss_kib().1;

    let engine = Engine::new(&Limits::default()).expect("engine");
    let enrich = engine
        .load_file(&wasm_dir.join("enrich.wasm"))
        .expect("build plugins first: ./dev plugins");
    let echo = engine
        .load_file(&wasm_dir.join("misbehave.wasm"))
        .expect("misbehave.wasm");
    let naive = naive::Naive::load(&wasm_dir.join("naive_echo_bench.wasm"));

    // Every configuration runs once per round and keeps its best time: on a shared
    // machine, interleaving keeps a slow spell from landing on one side of a ratio.
    let mut native = Best::default();
    let mut rows: Vec<Row> = BATCH_SIZES
        .iter()
        .map(|&batch_size| Row {
            batch_size,
            ..Row::default()
        })
        .collect();
    for round in 0..REPEATS {
        native.add(timed(|| native_enrich(&records)));
        for row in &mut rows {
            let mut runner = Runner::new(enrich.clone(), Vec::new()).expect("enrich init");
            reset_peak_rss();
            row.wasm
                .add(timed(|| run_wasm(&mut runner, &records, row.batch_size)));
            row.peak_kib = row.peak_kib.max(rss_kib().0);
            let mut echo_runner = Runner::new(echo.clone(), Vec::new()).expect("echo init");
            row.echo.add(timed(|| {
                run_wasm(&mut echo_runner, &records, row.batch_size)
            }));
            row.naive
                .add(timed(|| naive.echo(&records, row.batch_size)));
        }
        eprintln!("round {} of {REPEATS} done", round + 1);
    }
    for row in &rows {
        assert_eq!(row.wasm.outputs, native.outputs, "wasm and native disagree");
    }
    let report = render(&rows, &native, payload_bytes, rss_data, &root);
    write_section(&root.join("BENCHMARKS.md"), "throughput", &report);
    println!("{report}");
}

/// The fastest of several timed runs.
#[derive(Default)]
struct Best {
    time: Option<Duration>,
    outputs: usize,
}

impl Best {
    fn add(&mut self, (time, outputs): (Duration, usize)) {
        self.time = Some(self.time.map_or(time, |t| t.min(time)));
        self.outputs = outputs;
    }

    fn ns_per_record(&self) -> f64 {
        self.time.unwrap_or_default().as_nanos() as f64 / RECORDS as f64
    }

    fn rate(&self) -> f64 {
        1e9 / self.ns_per_record()
    }
}

#[derive(Default)]
struct Row {
    batch_size: usize,
    wasm: Best,
    echo: Best,
    naive: Best,
    peak_kib: u64,
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
        for outcome in runner.run(chunk, Budget::unbounded()) {
            if let Outcome::Transformed(list) = outcome {
                outputs += list.iter().filter(|o| !o.payload.is_empty()).count();
            }
        }
    }
    outputs
}

fn timed(f: impl FnOnce() -> usize) -> (Duration, usize) {
    let start = Instant::now();
    let outputs = std::hint::black_box(f());
    (start.elapsed(), outputs)
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

fn render(rows: &[Row], native: &Best, payload_bytes: usize, rss_data: u64, root: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Throughput (`./dev bench`)\n");
    let _ = writeln!(
        s,
        "{RECORDS} JSON records, {:.0} bytes on average, a key and 4 attributes each, through the `enrich` \
         plugin (wasmtime {}, Cranelift, epoch deadline on) and through `enrich::transform` compiled \
         natively in the same process. Best of {REPEATS} interleaved rounds. Machine: {}.\n",
        payload_bytes as f64 / RECORDS as f64,
        wasmtime_version(root),
        machine()
    );
    let _ = writeln!(
        s,
        "Native baseline: **{:.0} records/s** ({:.0} ns/record).\n",
        native.rate(),
        native.ns_per_record()
    );
    let _ = writeln!(
        s,
        "| batch size | Wasm records/s | Wasm / native | Wasm ns/record | echo ns/record, packed | echo ns/record, naive `list<record>` | enrich work in Wasm (Wasm − echo) vs native | peak RSS above the data set |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let work = r.wasm.ns_per_record() - r.echo.ns_per_record();
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.2}x | {:.0} | {:.0} | {:.0} | {:.0} ns = {:.1}x native | {:.1} MiB |",
            r.batch_size,
            r.wasm.rate(),
            r.wasm.rate() / native.rate(),
            r.wasm.ns_per_record(),
            r.echo.ns_per_record(),
            r.naive.ns_per_record(),
            work,
            work / native.ns_per_record(),
            r.peak_kib.saturating_sub(rss_data) as f64 / 1024.0
        );
    }
    let _ = writeln!(
        s,
        "\n\"Echo\" is the whole round trip per record for a plugin that copies each payload to one \
         output: host-side packing, the copy into the sandbox, the call, the plugin's own decoding and \
         output allocation, the copy out and unpacking; it is the boundary cost. \"Naive\" is the same \
         echo over `host/benches/naive/naive.wit`, a `list<record>` whose records carry their own lists \
         and strings (the encoding `wit/plugin.wit` replaced). \"Enrich work in Wasm\" subtracts the \
         echo from the enrich time: what the JSON parsing and serializing costs inside the sandbox."
    );
    s
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
