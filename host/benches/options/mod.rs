//! Engine settings, compared on the call alone: each way wasmtime has of interrupting a
//! call (the epoch, which the host uses for its CPU deadline; fuel; none, which keeps no
//! deadline), and Cranelift's inlining across functions, each on an engine that
//! differs from the host's in that one setting. Batches are packed before timing; the
//! settings take turns in every round and each keeps its best.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use pipeline_host::Record;
use pipeline_host::wasmtime::Config;

use crate::raw::{self, Interrupt, RawPlugin};

/// One engine setting against the host's.
struct Setting {
    name: &'static str,
    interrupt: Interrupt,
    tune: fn(&mut Config),
}

fn unchanged(_: &mut Config) {}

const SETTINGS: [Setting; 4] = [
    Setting {
        name: "epoch interruption (the host's engine)",
        interrupt: Interrupt::Epoch,
        tune: unchanged,
    },
    Setting {
        name: "no interruption (no deadline: the reference)",
        interrupt: Interrupt::Off,
        tune: unchanged,
    },
    Setting {
        name: "fuel instead of the epoch",
        interrupt: Interrupt::Fuel,
        tune: unchanged,
    },
    Setting {
        name: "epoch, Cranelift inlining across functions",
        interrupt: Interrupt::Epoch,
        tune: |config| {
            config.compiler_inlining(pipeline_host::wasmtime::Inlining::Yes);
        },
    },
];

const ROUNDS: usize = 5;
/// Records per timed run at batch 1000, and at batch 1 (a call per record).
const AT_1000: usize = 200_000;
const AT_1: usize = 20_000;

/// A setting's best times, ns per record: enrich and echo at batch 1000, then at batch 1.
struct Measured {
    name: &'static str,
    ns: [f64; 4],
}

/// Runs every setting over `records` (at least [`AT_1000`] of them); the table, in
/// Markdown, with the host's setting first.
pub fn compare(records: &[Record], wasm_dir: &Path) -> String {
    let big = raw::pack(&records[..AT_1000], 1000);
    let single = raw::pack(&records[..AT_1], 1);
    let plugins: Vec<[RawPlugin; 2]> = SETTINGS
        .iter()
        .map(|setting| {
            ["enrich.wasm", "echo_bench.wasm"].map(|file| {
                RawPlugin::load_with(&wasm_dir.join(file), setting.interrupt, setting.tune)
            })
        })
        .collect();
    let mut best = vec![[Duration::MAX; 4]; SETTINGS.len()];
    for _ in 0..ROUNDS {
        for (plugins, best) in plugins.iter().zip(&mut best) {
            for (cell, (plugin, batches)) in [
                (&plugins[0], &big),
                (&plugins[1], &big),
                (&plugins[0], &single),
                (&plugins[1], &single),
            ]
            .into_iter()
            .enumerate()
            {
                let started = Instant::now();
                std::hint::black_box(plugin.run(batches));
                best[cell] = best[cell].min(started.elapsed());
            }
        }
    }
    let measured: Vec<Measured> = SETTINGS
        .iter()
        .zip(best)
        .map(|(setting, best)| {
            let per = [AT_1000, AT_1000, AT_1, AT_1];
            Measured {
                name: setting.name,
                ns: std::array::from_fn(|i| best[i].as_nanos() as f64 / per[i] as f64),
            }
        })
        .collect();
    render(&measured)
}

fn render(measured: &[Measured]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n### Engine settings (the call alone, ns/record; in brackets, against the host's engine)\n\n\
         | engine | enrich, batch 1000 | echo, batch 1000 | enrich, batch 1 | echo, batch 1 |\n\
         |---|---:|---:|---:|---:|"
    );
    let host = &measured[0].ns;
    for m in measured {
        let cells: Vec<String> =
            m.ns.iter()
                .zip(host)
                .map(|(ns, base)| {
                    if std::ptr::eq(m, &measured[0]) {
                        format!("{ns:.0}")
                    } else {
                        format!("{ns:.0} ({:+.0}%)", 100.0 * (ns - base) / base)
                    }
                })
                .collect();
        let _ = writeln!(s, "| {} | {} |", m.name, cells.join(" | "));
    }
    let _ = writeln!(
        s,
        "\nEach engine differs from the host's in one setting. Fuel counts instructions, not time: \
         as a deadline it would need a rate measured per machine, and it adds a count to every \
         basic block where the epoch adds a load and a compare at function entries and loop \
         heads. No interruption keeps no deadline: it is how far the epoch's checks are from free. \
         (Concurrency support is not a setting here: the host is built without wasmtime's \
         `component-model-async` feature, so it is off already.)"
    );
    s
}
