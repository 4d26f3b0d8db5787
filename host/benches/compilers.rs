//! Cranelift against Winch for a plugin's first batch: how long each compiles the example
//! components (and the 18 MB Python one), how fast the code each makes runs `enrich`, and
//! after how many records Cranelift's longer compile has paid for itself. The numbers a
//! tiered start (serve the first batches from Winch while Cranelift compiles) would stand
//! on. Epoch interruption on in both, as the host runs plugins.
//!
//! Run with `./dev bench`; writes the "Compilers" section of `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use pipeline_host::Record;
use pipeline_host::wasmtime::component::Component;
use pipeline_host::wasmtime::{Config, Engine, OptLevel, Strategy};

mod common;
mod raw;
use common::{machine, wasmtime_version, write_section};

const RECORDS: usize = 200_000;
const BATCH: usize = 1000;
const REPEATS: usize = 3;

/// One way of compiling.
struct Compiler {
    name: &'static str,
    engine: Engine,
}

fn compilers() -> Vec<Compiler> {
    let make = |name, strategy, opt| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.strategy(strategy);
        if let Some(opt) = opt {
            config.cranelift_opt_level(opt);
        }
        Compiler {
            name,
            engine: Engine::new(&config).expect("engine"),
        }
    };
    vec![
        make(
            "Cranelift, `speed` (the host's)",
            Strategy::Cranelift,
            Some(OptLevel::Speed),
        ),
        make(
            "Cranelift, `none`",
            Strategy::Cranelift,
            Some(OptLevel::None),
        ),
        make("Winch", Strategy::Winch, None),
    ]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let plugins = [
        (
            "enrich",
            root.join("target/wasm32-wasip2/plugin/enrich.wasm"),
        ),
        (
            "validate",
            root.join("target/wasm32-wasip2/plugin/validate.wasm"),
        ),
        ("route", root.join("target/wasm32-wasip2/plugin/route.wasm")),
        ("Python enrich", root.join("target/python/enrich.wasm")),
    ];
    let compilers = compilers();
    let records = make_records(RECORDS);
    let batches = raw::pack(&records, BATCH);

    // Compile times: the best of a few, each from the bytes (no cache).
    let mut compile = vec![vec![Duration::MAX; compilers.len()]; plugins.len()];
    let mut sizes = Vec::new();
    for (p, (_, path)) in plugins.iter().enumerate() {
        let bytes = std::fs::read(path).expect("build the plugins first: ./dev plugins");
        sizes.push(bytes.len());
        let repeats = if bytes.len() > 4 << 20 { 1 } else { REPEATS };
        for (c, compiler) in compilers.iter().enumerate() {
            for _ in 0..repeats {
                let started = Instant::now();
                let component = Component::new(&compiler.engine, &bytes).expect("compile");
                compile[p][c] = compile[p][c].min(started.elapsed());
                drop(component);
            }
        }
    }

    // Speed: `enrich` compiled by each, the same packed batches, epoch on.
    let enrich = std::fs::read(&plugins[0].1).expect("enrich.wasm");
    let mut per_record = Vec::new();
    let mut outputs = Vec::new();
    for compiler in &compilers {
        let component = Component::new(&compiler.engine, &enrich).expect("compile");
        let plugin = raw::RawPlugin::start(&compiler.engine, &component);
        let mut best = Duration::MAX;
        for _ in 0..REPEATS {
            let started = Instant::now();
            let n = std::hint::black_box(plugin.run(&batches));
            best = best.min(started.elapsed());
            outputs.push(n);
        }
        per_record.push(best.as_nanos() as f64 / RECORDS as f64);
    }
    assert!(
        outputs.windows(2).all(|w| w[0] == w[1]),
        "compilers disagree"
    );

    let report = render(
        &plugins.map(|(n, _)| n),
        &sizes,
        &compilers,
        &compile,
        &per_record,
        &root,
    );
    write_section(&root.join("BENCHMARKS.md"), "compilers", &report);
    println!("{report}");
}

fn render(
    plugins: &[&str],
    sizes: &[usize],
    compilers: &[Compiler],
    compile: &[Vec<Duration>],
    per_record: &[f64],
    root: &Path,
) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut s = String::new();
    let _ = writeln!(s, "## Compilers (`./dev bench`)\n");
    let _ = writeln!(
        s,
        "Compiling each component from its bytes (no cache; best of {REPEATS}, one compile for the \
         18 MB Python component), then `enrich` compiled by each running {RECORDS} records at batch \
         {BATCH} (the call alone, batches packed before timing, epoch interruption on). wasmtime {}; \
         machine: {}.\n",
        wasmtime_version(root),
        machine()
    );
    let _ = write!(s, "| component | size |");
    for c in compilers {
        let _ = write!(s, " {} |", c.name);
    }
    let _ = writeln!(s, "\n|---|---:|{}", "---:|".repeat(compilers.len()));
    for (p, name) in plugins.iter().enumerate() {
        let _ = write!(s, "| {name} | {:.0} KB |", sizes[p] as f64 / 1000.0);
        for time in &compile[p] {
            let _ = write!(s, " {:.1} ms |", ms(*time));
        }
        let _ = writeln!(s);
    }
    let _ = write!(s, "| `enrich`, ns/record | |");
    for ns in per_record {
        let _ = write!(s, " {ns:.0} |");
    }
    let _ = writeln!(s);
    // Records after which Cranelift's code has made up for its longer compile.
    let cranelift = 0;
    for (c, compiler) in compilers.iter().enumerate().skip(1) {
        let saved = ms(compile[0][cranelift]) - ms(compile[0][c]);
        let slower = per_record[c] - per_record[cranelift];
        if saved > 0.0 && slower > 0.0 {
            let _ = writeln!(
                s,
                "\n{}: compiles `enrich` {:.1} ms sooner and runs it {:.0} ns/record slower, so \
                 Cranelift's code pays for its compile after **{:.0} records** ({:.1} batches of \
                 {BATCH}).",
                compiler.name,
                saved,
                slower,
                saved * 1e6 / slower,
                saved * 1e6 / slower / BATCH as f64
            );
        }
    }
    s
}

/// The throughput bench's events (~170 bytes, a key and four attributes).
fn make_records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: Some(format!("user-{:05}", i % 50_000).into()),
            payload: format!(
                r#"{{"id":"evt-{i:08}","user":"user-{:05}","action":"buy","amount":{}.{:02},"ts":"2026-11-24T13:00:00Z","country":"DE","device":"android","session":"s-{:012x}","v":2}}"#,
                i % 50_000,
                i % 1000,
                i % 100,
                i * 7919
            )
            .into(),
            attributes: vec![
                ("source".into(), "kinesis".into()),
                ("stream".into(), "events".into()),
                ("shard".into(), "shardId-000000000001".into()),
                ("sequence-number".into(), format!("{i:056}")),
            ],
        })
        .collect()
}
