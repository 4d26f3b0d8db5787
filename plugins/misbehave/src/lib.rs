//! Test plugin that misbehaves on request, for the host's sandbox tests.
//!
//! Each record's payload says what to do: `echo`, `panic`, `loop` (spin forever),
//! `alloc` (allocate without bound), `huge` (one 8 MiB output), `fail` (domain error),
//! `flaky` (infrastructure error), `sleep` (20 s in WASI, then echoes), `fanout` (600 outputs of 1 KiB), `drop`, `log`, `noisy` (writes to stderr, then echoes),
//! `flood` (1000 log lines, each trying to forge a second one), `metrics` (a counter, a
//! gauge, a name no metric may have, the counter's name as a gauge), `names` (60 counters), `poison` (breaks the
//! instance's state, then echoes), `check` (panics on a broken instance, else echoes) and
//! `slowpanic` (spins for config `spin_ms`, 100 by default, then panics: a failure that
//! costs nearly a deadline without hitting it); `fail:TEXT` fails (domain) with TEXT in
//! its message. Anything else is echoed, with config `key` as its output's key if set
//! (and, with config `attributes=copy`, the record's attributes as its output's).
//! Config `init=fail` or `init=panic` makes `init` refuse or trap.

use std::sync::atomic::{AtomicBool, Ordering};

use guest_sdk::{Config, Error, Output, Record, log};

/// Set by `poison`: the instance's state is broken from then on.
static POISONED: AtomicBool = AtomicBool::new(false);

/// The transform: does what the payload says.
pub fn transform(record: Record) -> Result<Vec<Output>, Error> {
    match record.text()?.trim() {
        "panic" => panic!("misbehave: asked to panic"),
        "slowpanic" => {
            let spin = guest_sdk::config()
                .get("spin_ms")
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(100);
            let until = std::time::Instant::now() + std::time::Duration::from_millis(spin);
            while std::time::Instant::now() < until {
                std::hint::black_box(0);
            }
            panic!("misbehave: asked to panic after {spin} ms")
        }
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "huge" => Ok(vec![Output::new(vec![b'x'; 8 << 20])]),
        "sleep" => {
            // Blocks in WASI (a clock pollable), where no CPU deadline reaches.
            std::thread::sleep(std::time::Duration::from_secs(20));
            Ok(vec![Output::new(record.payload())])
        }
        "fanout" => Ok((0..600).map(|_| Output::new(vec![b'f'; 1024])).collect()),
        "fail" => Err(Error::domain("misbehave: asked to fail")),
        "flaky" => Err(Error::infrastructure("misbehave: transient failure")),
        "drop" => Ok(Vec::new()),
        "poison" => {
            POISONED.store(true, Ordering::Relaxed);
            Ok(vec![Output::new(record.payload())])
        }
        "check" if POISONED.load(Ordering::Relaxed) => {
            panic!("misbehave: this instance was poisoned by an earlier record")
        }
        "noisy" => {
            eprintln!("noise from another record");
            Ok(vec![Output::new(record.payload())])
        }
        "flood" => {
            for i in 0..1000 {
                log::info(format!("flood {i}\nforged host line"));
            }
            Ok(vec![Output::new(record.payload())])
        }
        "metrics" => {
            guest_sdk::metrics::counter("seen", 1);
            guest_sdk::metrics::gauge("level", 7.5);
            guest_sdk::metrics::counter("bad name\nforged", 1);
            // A counter's name as a gauge: one name is one metric.
            guest_sdk::metrics::gauge("seen", 1.0);
            Ok(vec![Output::new(record.payload())])
        }
        "names" => {
            for i in 0..60 {
                guest_sdk::metrics::counter(&format!("n{i}"), 1);
            }
            Ok(vec![Output::new(record.payload())])
        }
        "log" => {
            log::info("misbehave: a log line");
            guest_sdk::metrics::counter("logged", 1);
            Ok(vec![Output::new(record.payload())])
        }
        failing if failing.starts_with("fail:") => {
            Err(Error::domain(format!("misbehave: {failing}")))
        }
        _ => {
            let mut output = Output::new(record.payload());
            // Config `attributes=copy`: the record's attributes go with its echo.
            if guest_sdk::config().get("attributes") == Some("copy") {
                for (name, value) in record.attributes() {
                    output = output.with_attribute(name, value);
                }
            }
            Ok(vec![match guest_sdk::config().get("key") {
                Some(key) => output.with_key(key),
                None => output,
            }])
        }
    }
}

/// Refuses or traps at start-up when configured to.
pub fn init(config: &Config) -> Result<(), Error> {
    match config.get("init") {
        Some("fail") => Err(Error::domain("misbehave: init refused by config")),
        Some("panic") => panic!("misbehave: init asked to panic"),
        _ => Ok(()),
    }
}

guest_sdk::export_transform!(transform, init = init);
