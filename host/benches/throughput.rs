//! Throughput: 1,000,000 JSON records (~200 bytes) through the `enrich` plugin in Wasm
//! and through the same `enrich::transform` compiled natively, at several batch sizes,
//! with the CPU deadline (epoch interruption) on. The `echo-bench` plugin
//! (`host/benches/echo`: each payload to one output, no other work) measures what
//! crossing the boundary costs: packing, copying in, the SDK, copying out, unpacking.
//!
//! Run with `./dev bench`; writes the "Throughput" section of `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use pipeline_host::engine::Chain;
use pipeline_host::limits::Budget;
use pipeline_host::{Engine, Limits, Outcome, Record, Runner};

mod common;
mod options;
mod raw;
use common::{event_payload, machine, rss_kib, wasmtime_version, write_section};

const RECORDS: usize = 1_000_000;
const BATCH_SIZES: [usize; 4] = [1, 100, 1000, 10_000];
const REPEATS: usize = 5;
/// The batch size of the decomposition and of the chain.
const DECOMPOSE_BATCH: usize = 1000;
/// Records through one runner for the memory-growth check.
const LONG_RUN: usize = 10_000_000;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // `./dev flamegraph` points this at plugins built with their function names.
    let wasm_dir = std::env::var_os("THROUGHPUT_PLUGINS")
        .map_or_else(|| root.join("target/wasm32-wasip2/plugin"), Into::into);
    let records = make_records(RECORDS);
    let payload_bytes: usize = records.iter().map(|r| r.payload.len()).sum();
    let rss_data = rss_kib().1;

    let engine = Engine::new(&Limits::default()).expect("engine");
    let enrich = engine
        .load_file(&wasm_dir.join("enrich.wasm"))
        .expect("build plugins first: ./dev plugins");
    let echo = engine
        .load_file(&wasm_dir.join("echo_bench.wasm"))
        .expect("echo_bench.wasm: ./dev bench builds it");
    let naive = naive::Naive::load(&wasm_dir.join("naive_echo_bench.wasm"));
    let validate = engine
        .load_file(&wasm_dir.join("validate.wasm"))
        .expect("validate.wasm");

    // `THROUGHPUT_PROFILE=enrich|echo|chain|native[:BATCH]`: run one configuration over and
    // over for about 10 s and write nothing, for a profiler to watch (`./dev flamegraph`).
    if let Ok(which) = std::env::var("THROUGHPUT_PROFILE") {
        let (which, batch) = which.split_once(':').unwrap_or((&which, "1000"));
        let batch: usize = batch.parse().expect("THROUGHPUT_PROFILE=NAME:BATCH");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let outputs = match which {
                "native" => native_enrich(&records),
                "chain" => run_chain(&mut chain(&validate, &enrich), &records, batch),
                "enrich" | "echo" => {
                    let plugin = if which == "enrich" { &enrich } else { &echo };
                    let mut runner = Runner::new(plugin.clone(), Vec::new()).expect("init");
                    run_wasm(&mut runner, &records, batch)
                }
                other => panic!("THROUGHPUT_PROFILE: no configuration {other}"),
            };
            std::hint::black_box(outputs);
        }
        return;
    }

    // `THROUGHPUT_AB=DIR_A:DIR_B`: two builds of the plugins, compared on the call alone
    // (epoch on), interleaved over many short rounds: on a machine whose speed drifts
    // from minute to minute, only a comparison made in the same seconds shows a few %.
    if let Ok(dirs) = std::env::var("THROUGHPUT_AB") {
        let (a, b) = dirs.split_once(':').expect("THROUGHPUT_AB=DIR_A:DIR_B");
        compare_builds(&records, Path::new(a), Path::new(b));
        return;
    }

    // `THROUGHPUT_QUICK=1`: the decomposition and the chain only, printed (to compare
    // plugin builds and engine settings); nothing is written.
    if std::env::var_os("THROUGHPUT_QUICK").is_some() {
        let parts = decompose(&records, &wasm_dir, &enrich, &echo);
        let chained = chain_rows(&records, &validate, &enrich);
        let (mut native, mut native_cached) = (Best::default(), Best::default());
        for _ in 0..REPEATS {
            native.add(timed(|| native_enrich(&records)));
            native_cached.add(timed(|| cached(&records, native_enrich)));
        }
        println!(
            "{}",
            render_decomposition(&parts, (&native, &native_cached), &chained, &[])
        );
        println!("{}", options::compare(&records, &wasm_dir));
        // The per-call cost: batches of one and of a hundred, echo and enrich.
        let some = &records[..RECORDS / 5];
        for (name, plugin) in [("echo", &echo), ("enrich", &enrich)] {
            for batch_size in [1, 100] {
                let mut best = Best::default();
                for _ in 0..REPEATS {
                    let mut runner = Runner::new(plugin.clone(), Vec::new()).expect("init");
                    best.add(timed(|| run_wasm(&mut runner, some, batch_size)));
                }
                let ns = best.time.unwrap_or_default().as_nanos() as f64 / some.len() as f64;
                println!("{name} at batch {batch_size}: {ns:.0} ns/record");
            }
        }
        return;
    }

    // Every configuration runs once per round and keeps its best time: on a shared
    // machine, interleaving keeps a slow spell from landing on one side of a ratio.
    let (mut native, mut native_cached) = (Best::default(), Best::default());
    let mut rows: Vec<Row> = BATCH_SIZES
        .iter()
        .map(|&batch_size| Row {
            batch_size,
            ..Row::default()
        })
        .collect();
    for round in 0..REPEATS {
        native.add(timed(|| native_enrich(&records)));
        native_cached.add(timed(|| cached(&records, native_enrich)));
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
    let parts = decompose(&records, &wasm_dir, &enrich, &echo);
    let chained = chain_rows(&records, &validate, &enrich);
    let growth = long_run(&records, &enrich);
    let mut report = render(&rows, &native, payload_bytes, rss_data, &root);
    report.push_str(&render_decomposition(
        &parts,
        (&native, &native_cached),
        &chained,
        &growth,
    ));
    report.push_str(&options::compare(&records, &wasm_dir));
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
    (0..n)
        .map(|i| {
            let payload = event_payload(i);
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

/// Calls `f` with each record as the guest SDK hands it to a transform (natively).
fn for_each_native(records: &[Record], mut f: impl FnMut(guest_sdk::Record<'_>, &[(&str, &str)])) {
    let mut attributes: Vec<(&str, &str)> = Vec::with_capacity(4);
    for record in records {
        attributes.clear();
        attributes.extend(
            record
                .attributes
                .iter()
                .map(|(k, v)| (k.as_ref(), v.as_str())),
        );
        f(
            guest_sdk::Record::new(&record.payload).with_attributes(&attributes),
            &attributes,
        );
    }
}

/// The same transform, compiled natively and called in-process on the same records.
fn native_enrich(records: &[Record]) -> usize {
    let mut outputs = 0;
    for_each_native(records, |input, _| {
        if let Ok(output) = enrich::transform(input) {
            outputs += usize::from(!output.payload().is_empty());
        }
    });
    outputs
}

/// `run` over the first [`DECOMPOSE_BATCH`] records as many times as `records` has
/// batches: the same work as one pass over `records`, with the input in the cache. The
/// difference to a pass over all of them is the first read of each record from memory.
fn cached(records: &[Record], mut run: impl FnMut(&[Record]) -> usize) -> usize {
    assert_eq!(records.len() % DECOMPOSE_BATCH, 0, "whole batches only");
    let batch = &records[..DECOMPOSE_BATCH];
    (0..records.len() / DECOMPOSE_BATCH)
        .map(|_| run(batch))
        .sum()
}

/// One plugin's time per record at [`DECOMPOSE_BATCH`], taken apart.
struct Parts {
    name: &'static str,
    /// The whole `Runner::run`, ns/record.
    runner: f64,
    /// Of which packing and unpacking (the runner's own clock), ns/record.
    boundary: f64,
    /// Of `boundary`, the packing, ns/record.
    packing: f64,
    /// Of which the call (lowering, the plugin, lifting; the runner's clock), ns/record.
    call: f64,
    /// The call alone on a batch packed beforehand, epoch interruption on / off.
    raw_epoch: f64,
    raw_no_epoch: f64,
    /// The whole run with its input in the cache ([`cached`]), ns/record.
    cached: f64,
}

fn decompose(
    records: &[Record],
    wasm_dir: &Path,
    enrich: &pipeline_host::Plugin,
    echo: &pipeline_host::Plugin,
) -> Vec<Parts> {
    let batches = raw::pack(records, DECOMPOSE_BATCH);
    let per_record = |d: Duration| d.as_nanos() as f64 / records.len() as f64;
    [
        ("enrich", "enrich.wasm", enrich),
        ("echo", "echo_bench.wasm", echo),
    ]
    .into_iter()
    .map(|(name, file, plugin)| {
        let with_epoch = raw::RawPlugin::load(&wasm_dir.join(file), true);
        let without = raw::RawPlugin::load(&wasm_dir.join(file), false);
        let [mut runner_best, mut raw_on, mut raw_off, mut in_cache] =
            [(); 4].map(|()| Best::default());
        let mut split = (Duration::MAX, Duration::MAX, Duration::MAX);
        for _ in 0..REPEATS {
            let mut runner = Runner::new(plugin.clone(), Vec::new()).expect("init");
            runner_best.add(timed(|| run_wasm(&mut runner, records, DECOMPOSE_BATCH)));
            let metrics = runner.take_metrics();
            split.0 = split.0.min(metrics.boundary_time);
            split.1 = split.1.min(metrics.plugin_time);
            split.2 = split.2.min(metrics.packing_time);
            raw_on.add(timed(|| with_epoch.run(&batches)));
            raw_off.add(timed(|| without.run(&batches)));
            let mut runner = Runner::new(plugin.clone(), Vec::new()).expect("init");
            in_cache.add(timed(|| {
                cached(records, |batch| {
                    run_wasm(&mut runner, batch, DECOMPOSE_BATCH)
                })
            }));
        }
        assert_eq!(
            in_cache.outputs, runner_best.outputs,
            "{name}: the runs disagree"
        );
        Parts {
            name,
            runner: runner_best.ns_per_record(),
            boundary: per_record(split.0),
            packing: per_record(split.2),
            call: per_record(split.1),
            raw_epoch: raw_on.ns_per_record(),
            raw_no_epoch: raw_off.ns_per_record(),
            cached: in_cache.ns_per_record(),
        }
    })
    .collect()
}

/// Prints, per plugin, the best call-alone time of two builds, 20 interleaved rounds of
/// 100,000 records each.
fn compare_builds(records: &[Record], a: &Path, b: &Path) {
    let records = &records[..RECORDS / 10];
    let batches = raw::pack(records, DECOMPOSE_BATCH);
    for file in ["enrich.wasm", "echo_bench.wasm", "validate.wasm"] {
        if let Some(missing) = [a, b]
            .iter()
            .map(|dir| dir.join(file))
            .find(|p| !p.exists())
        {
            println!("{file}: skipped, {} is missing", missing.display());
            continue;
        }
        let (pa, pb) = (
            raw::RawPlugin::load(&a.join(file), true),
            raw::RawPlugin::load(&b.join(file), true),
        );
        let (mut best_a, mut best_b) = (Best::default(), Best::default());
        for _ in 0..20 {
            best_a.add(timed(|| pa.run(&batches)));
            best_b.add(timed(|| pb.run(&batches)));
        }
        let ns =
            |best: &Best| best.time.unwrap_or_default().as_nanos() as f64 / records.len() as f64;
        println!(
            "{file}: A {:.0} ns/record, B {:.0} ns/record, B/A {:.3}",
            ns(&best_a),
            ns(&best_b),
            ns(&best_b) / ns(&best_a)
        );
    }
}

/// `validate -> enrich` as a chain of two plugins, against the two transforms natively.
fn chain(validate: &pipeline_host::Plugin, enrich: &pipeline_host::Plugin) -> Chain {
    Chain::new(vec![
        Runner::new(validate.clone(), Vec::new()).expect("validate init"),
        Runner::new(enrich.clone(), Vec::new()).expect("enrich init"),
    ])
}

fn run_chain(chain: &mut Chain, records: &[Record], batch_size: usize) -> usize {
    let mut outputs = 0;
    for chunk in records.chunks(batch_size) {
        for outcome in chain.run(chunk, Budget::unbounded()) {
            if let Outcome::Transformed(list) = outcome {
                outputs += list.len();
            }
        }
    }
    outputs
}

fn native_chain(records: &[Record]) -> usize {
    let mut outputs = 0;
    for_each_native(records, |input, attributes| {
        if let Ok(Some(valid)) = validate::transform(input) {
            let next = guest_sdk::Record::new(valid.payload()).with_attributes(attributes);
            if let Ok(output) = enrich::transform(next) {
                outputs += usize::from(!output.payload().is_empty());
            }
        }
    });
    outputs
}

/// (native, chain in Wasm) over the records, best of the rounds.
fn chain_rows(
    records: &[Record],
    validate: &pipeline_host::Plugin,
    enrich: &pipeline_host::Plugin,
) -> (Best, Best) {
    let (mut native, mut wasm) = (Best::default(), Best::default());
    for _ in 0..REPEATS {
        native.add(timed(|| native_chain(records)));
        let mut chain = chain(validate, enrich);
        wasm.add(timed(|| run_chain(&mut chain, records, DECOMPOSE_BATCH)));
    }
    assert_eq!(
        native.outputs, wasm.outputs,
        "the chain and native disagree"
    );
    (native, wasm)
}

/// Resident memory of the process after each million of [`LONG_RUN`] records through one
/// `enrich` runner at [`DECOMPOSE_BATCH`], in KiB.
fn long_run(records: &[Record], enrich: &pipeline_host::Plugin) -> Vec<u64> {
    let mut runner = Runner::new(enrich.clone(), Vec::new()).expect("init");
    let mut rss = vec![rss_kib().1];
    for _ in 0..LONG_RUN / records.len() {
        std::hint::black_box(run_wasm(&mut runner, records, DECOMPOSE_BATCH));
        rss.push(rss_kib().1);
    }
    rss
}

fn render_decomposition(
    parts: &[Parts],
    (native, native_cached): (&Best, &Best),
    chained: &(Best, Best),
    growth: &[u64],
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n### Where the time goes (batch {DECOMPOSE_BATCH}, ns/record)\n\n\
         | plugin | whole run | packing | unpacking | the call (lower, plugin, lift) | rest of the runner | call alone, epoch on | call alone, epoch off | epoch checks | whole run, input in the cache |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for p in parts {
        let epoch = p.raw_epoch - p.raw_no_epoch;
        // A difference smaller than the runs' spread can come out below zero.
        let epoch = if epoch < 0.0 {
            "≈ 0 (below the noise)".to_owned()
        } else {
            format!("{epoch:.0} ({:.0}%)", 100.0 * epoch / p.raw_epoch)
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {epoch} | {:.0} |",
            p.name,
            p.runner,
            p.packing,
            (p.boundary - p.packing).max(0.0),
            p.call,
            (p.runner - p.boundary - p.call).max(0.0),
            p.raw_epoch,
            p.raw_no_epoch,
            p.cached,
        );
    }
    let _ = writeln!(
        s,
        "| native `enrich` | {:.0} | | | | | | | | {:.0} |",
        native.ns_per_record(),
        native_cached.ns_per_record()
    );
    let _ = writeln!(
        s,
        "\n\"Packing\", \"unpacking\" and \"the call\" are the runner's own clocks (its `BoundaryTime`, \
         split at the call, and `PluginTime` metrics). Packing copies each record's key, payload and \
         attribute values into the batch's buffer and writes its tables: the most that sources \
         decoding straight into that buffer could save. \"Call alone\" calls the component's `transform` on batches packed \
         before timing, on engines that differ only in epoch interruption (the host always runs with it \
         on: it is the CPU deadline). \"Input in the cache\" runs the same number of records through the \
         first batch over and over, so the input is read from the cache, not from memory: the \
         difference is the first read of each record from memory. The host reads every part of a \
         record (key, payload, attribute values: separate allocations) to pack it; the native \
         transform reads the payload and walks the attribute list for the one it asks for. \
         How the plugin's own time splits (JSON, allocation, copies, the \
         SDK) is in the flame graphs below."
    );
    let (native_chain, wasm_chain) = chained;
    let _ = writeln!(
        s,
        "\n### A heavier pipeline: `validate -> enrich`\n\n\
         Two plugins in a chain (two calls per batch, each parsing every record), batch {DECOMPOSE_BATCH}: \
         **{:.0} records/s** in Wasm against {:.0} records/s for the two transforms called natively: \
         **{:.2}x** ({:.0} against {:.0} ns/record).",
        wasm_chain.rate(),
        native_chain.rate(),
        wasm_chain.rate() / native_chain.rate(),
        wasm_chain.ns_per_record(),
        native_chain.ns_per_record()
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    let (first, last) = (
        growth.first().copied().unwrap_or(0),
        growth.last().copied().unwrap_or(0),
    );
    let peak = growth.iter().copied().max().unwrap_or(0);
    let _ = writeln!(
        s,
        "\n### Memory over {}M records\n\n\
         One `enrich` runner (one instance) at batch {DECOMPOSE_BATCH}, {} rounds over the same \
         records: the process's resident memory (which holds the million records and their \
         copies in each configuration's runs) was {:.1} MiB before the first round and {:.1} MiB \
         after the last (highest {:.1} MiB; after each round: {}). Memory per instance, alone: \
         the Languages section.",
        LONG_RUN / 1_000_000,
        growth.len().saturating_sub(1),
        mib(first),
        mib(last),
        mib(peak),
        growth
            .iter()
            .map(|k| format!("{:.1}", mib(*k)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    s
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
         and strings (the encoding `wit/plugin.wit` replaced), with the same allocator in the \
         plugin. \"Enrich work in Wasm\" subtracts the echo from the enrich time: what the JSON \
         parsing and serializing costs inside the sandbox."
    );
    s
}

/// The naive encoding, for comparison: a `list<record>` of nested lists and strings.
mod naive {
    use std::path::Path;

    use pipeline_host::Record;
    use pipeline_host::wasmtime::component::{Component, Linker};
    use pipeline_host::wasmtime::{Config, Engine, Store};

    use super::raw::Ctx;

    pipeline_host::wasmtime::component::bindgen!({ path: "benches/naive/naive.wit", world: "naive-echo" });

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
            let mut store = Store::new(&engine, Ctx::new());
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
                        attributes: r
                            .attributes
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.clone()))
                            .collect(),
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
