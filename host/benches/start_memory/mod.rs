//! What each way to a ready plugin costs in memory and time, each load in a process of
//! its own (a process's peak resident memory only grows, and a Lambda function's memory
//! must hold the peak): Cranelift on all cores; Cranelift on one thread (what a function
//! under one vCPU does); tiered start (Winch's code first, then Cranelift's in the
//! background); the signed precompiled artifact; the local cache. The bench runs its own
//! binary again with [`ENV`] set, once per load; that child loads, starts an instance
//! (`init`) and prints what it measured.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pipeline_host::engine::CacheUse;
use pipeline_host::registry::sha256_hex;
use pipeline_host::{Engine, Limits, Runner};

use crate::common::rss_kib;

/// Set in a child: `WAY:MODULE:SCRATCH`.
pub const ENV: &str = "START_MEMORY";
/// Memory a Lambda function under one vCPU is given here (serial compiles).
const SERIAL_FUNCTION_MIB: usize = 1024;
/// Loads per way and module (the median is kept).
const LOADS: usize = 3;

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Cranelift,
    CraneliftSerial,
    Tiered,
    Artifact,
    Cache,
}

const WAYS: [(Way, &str, &str); 5] = [
    (Way::Cranelift, "cranelift", "Cranelift, all cores"),
    (
        Way::CraneliftSerial,
        "serial",
        "Cranelift, one thread (a function under one vCPU)",
    ),
    (
        Way::Tiered,
        "tiered",
        "tiered start (Winch's code ready; then Cranelift's)",
    ),
    (Way::Artifact, "artifact", "the signed precompiled artifact"),
    (Way::Cache, "cache", "the local precompiled cache"),
];

/// What one child measured.
#[derive(Clone, Copy, Default)]
struct Load {
    /// From the module's bytes in memory to an instance after `init`.
    ready: Duration,
    /// Tiered start: until Cranelift's code is there too.
    optimized: Duration,
    /// The process's resident memory before the load (the engine made), and its peak
    /// until ready, and until the background compile ended.
    start_kib: u64,
    peak_kib: u64,
    peak_after_kib: u64,
}

fn engine(way: Way) -> Engine {
    Engine::new(&Limits {
        tiered_start: way == Way::Tiered,
        function_memory_mib: (way == Way::CraneliftSerial).then_some(SERIAL_FUNCTION_MIB),
        ..Limits::default()
    })
    .expect("engine")
}

/// In the child: one load the way `spec` says, printed as the parent reads it.
pub fn child(spec: &str) {
    let mut parts = spec.splitn(3, ':');
    let (Some(way), Some(module), Some(scratch)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("{ENV}=WAY:MODULE:SCRATCH");
    };
    let way = WAYS
        .iter()
        .find(|(_, name, _)| *name == way)
        .map(|(way, ..)| *way)
        .expect("a way");
    let scratch = Path::new(scratch);
    let engine = engine(way);
    let cache_dir = scratch.join(format!("cache-{}", std::process::id()));
    let cache = match way {
        Way::Cache => Some(engine.artifact_cache(scratch).expect("cache")),
        // A host loading the artifact keeps it in its (fresh) cache for the next start.
        Way::Artifact => Some(engine.artifact_cache(&cache_dir).expect("cache")),
        _ => None,
    };
    // A host loading the artifact never fetches the module: only its sha256 (from the
    // manifest) is known before the load.
    let mut bytes = std::fs::read(module).expect("module");
    let sha256 = sha256_hex(&bytes);
    let artifact_sha256 = std::fs::read_to_string(scratch.join("artifact.sha256"));
    if way == Way::Artifact {
        bytes = Vec::new();
    }
    // Linux: writing 5 to clear_refs resets the peak (VmHWM) to what is resident now.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let start_kib = rss_kib().1;
    let started = Instant::now();
    let (plugin, report) = if way == Way::Artifact {
        // The artifact's bytes arrive (as from S3) and are hashed against the signed
        // manifest's sha256 before they are loaded.
        let artifact = std::fs::read(scratch.join("artifact")).expect("artifact");
        assert_eq!(
            Ok(sha256_hex(&artifact)),
            artifact_sha256.map_err(|e| e.to_string()),
            "the artifact is the one the manifest lists"
        );
        engine.load_published(&artifact, &sha256, module, cache.as_ref())
    } else {
        engine.load_cached(&bytes, &sha256, module, cache.as_ref())
    }
    .expect("load");
    let runner = Runner::new(plugin, Vec::new()).expect("init");
    let ready = started.elapsed();
    let peak_kib = rss_kib().0;
    if way == Way::Cache {
        assert_eq!(report.cache, CacheUse::Hit, "the cache was warmed");
    }
    engine.finish_background();
    let optimized = started.elapsed();
    drop(runner);
    println!(
        "{} {} {start_kib} {peak_kib} {}",
        ready.as_micros(),
        optimized.as_micros(),
        rss_kib().0
    );
}

fn run_child(way: &str, module: &Path, scratch: &Path) -> Load {
    let out = Command::new(std::env::current_exe().expect("this bench"))
        .env(
            ENV,
            format!("{way}:{}:{}", module.display(), scratch.display()),
        )
        .output()
        .expect("child");
    assert!(
        out.status.success(),
        "{way} {}: {}",
        module.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<u64> = text
        .split_whitespace()
        .map(|f| f.parse().expect("a number"))
        .collect();
    let [ready, optimized, start_kib, peak_kib, peak_after_kib] = fields[..] else {
        panic!("child printed {text}");
    };
    Load {
        ready: Duration::from_micros(ready),
        optimized: Duration::from_micros(optimized),
        start_kib,
        peak_kib,
        peak_after_kib,
    }
}

fn median_by<K: PartialOrd + Copy>(loads: &[Load], key: impl Fn(&Load) -> K) -> K {
    let mut keys: Vec<K> = loads.iter().map(key).collect();
    keys.sort_by(|a, b| a.partial_cmp(b).expect("ordered"));
    keys[keys.len() / 2]
}

/// Every way for each of `modules` (a name and a component): the section's Markdown.
pub fn measure(modules: &[(&str, PathBuf)]) -> String {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n### Memory and time of each way to ready\n\n\
         Each load in a process of its own (`START_MEMORY`), from the module's bytes in memory to \
         an instance after `init`; medians of {LOADS}. \"Resident before\" is the process with its \
         engine made; the peak is what a Lambda function's memory must hold.\n\n\
         | plugin | way | **ready** | peak resident | of which the load | resident before |\n\
         |---|---|---:|---:|---:|---:|"
    );
    let mut break_even = Vec::new();
    for (name, module) in modules {
        let scratch = tempfile::tempdir().expect("tempdir");
        let bytes = std::fs::read(module).expect("build the plugins first: ./dev plugins");
        let prepare = engine(Way::Cranelift);
        let artifact = prepare
            .precompile(&bytes, name)
            .expect("precompile the module");
        std::fs::write(scratch.path().join("artifact"), &artifact).expect("artifact");
        std::fs::write(
            scratch.path().join("artifact.sha256"),
            sha256_hex(&artifact),
        )
        .expect("artifact's sha256");
        let cache = prepare.artifact_cache(scratch.path()).expect("cache");
        prepare
            .load_cached(&bytes, &sha256_hex(&bytes), name, Some(&cache))
            .expect("warm the cache");
        drop(prepare);
        let mut ready = Vec::new();
        for (way, key, label) in WAYS {
            let loads: Vec<Load> = (0..LOADS)
                .map(|_| run_child(key, module, scratch.path()))
                .collect();
            let time = median_by(&loads, |l| l.ready);
            let peak = median_by(&loads, |l| l.peak_kib);
            let start = median_by(&loads, |l| l.start_kib);
            let _ = writeln!(
                s,
                "| {name} | {label} | **{:.1} ms** | {:.0} MiB | {:.0} MiB | {:.0} MiB |",
                ms(time),
                mib(peak),
                mib(peak.saturating_sub(start)),
                mib(start)
            );
            if way == Way::Tiered {
                let _ = writeln!(
                    s,
                    "| {name} | … then Cranelift's code in the background | {:.1} ms | {:.0} MiB | {:.0} MiB | |",
                    ms(median_by(&loads, |l| l.optimized)),
                    mib(median_by(&loads, |l| l.peak_after_kib)),
                    mib(median_by(&loads, |l| l.peak_after_kib).saturating_sub(start)),
                );
            }
            ready.push(time);
        }
        // The artifact is fetched instead of the module: it pays while the extra bytes
        // arrive faster than the compile they save.
        let saved = ready[0].saturating_sub(ready[3]);
        let extra = artifact.len().saturating_sub(bytes.len());
        break_even.push(format!(
            "{name}: module {:.1} MB, artifact {:.1} MB; it saves {:.0} ms of compiling, so it pays \
             while S3 delivers the extra {:.1} MB faster than {:.0} MB/s",
            bytes.len() as f64 / 1e6,
            artifact.len() as f64 / 1e6,
            ms(saved),
            extra as f64 / 1e6,
            extra as f64 / 1e6 / saved.as_secs_f64().max(1e-9),
        ));
    }
    let _ = writeln!(
        s,
        "\nBreak-even of the signed artifact (against Cranelift on all cores): {}.",
        break_even.join("; ")
    );
    s
}
