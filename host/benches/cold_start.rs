//! Cold start: how long a host takes from "here is a manifest in S3" to "the plugin is
//! ready for its first batch", step by step, for each example plugin; and how long a
//! new version takes from its upload to its first batch in a warm host.
//!
//! Steps: fetch manifest and module from the S3 emulator (moto on 127.0.0.1, started
//! and stopped here), verify (sha256 of the module), compile with Cranelift or
//! deserialize from the precompiled cache, prepare (link, first instance, `info`), and
//! `init` (the serving instance). Run with `./dev bench`; writes the "Cold start"
//! section of `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use pipeline_host::aws::AwsClients;
use pipeline_host::engine::{CacheUse, Chain};
use pipeline_host::limits::Budget;
use pipeline_host::registry::publish::{self, Prefix, Release};
use pipeline_host::registry::{FollowSettings, FollowedPlugin, PluginLocation, Timings, load_file};
use pipeline_host::{Engine, Limits, Record};

mod common;
mod start_memory;
use common::{machine, wasmtime_version, write_section};

/// The emulator the end-to-end tests start, started the same way here.
#[allow(dead_code)]
#[path = "../../tests/e2e/emulator.rs"]
mod emulator;
use emulator::Moto;

const PLUGINS: [&str; 4] = ["enrich", "validate", "route", "misbehave"];
/// Loads per plugin without a cache (each one a full Cranelift compile).
const COMPILES: usize = 5;
/// Loads per plugin from a warm cache.
const WARM: usize = 50;
/// New versions published into a warm host.
const SWAPS: usize = 5;

fn main() {
    if let Ok(spec) = std::env::var(start_memory::ENV) {
        start_memory::child(&spec);
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm_dir = root.join("target/wasm32-wasip2/plugin");
    let moto = Moto::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(async {
        let clients = moto.clients().await;
        let aws = AwsClients {
            s3: clients.s3,
            kinesis: clients.kinesis,
            sqs: clients.sqs,
            dynamodb: clients.dynamodb,
            glue: clients.glue,
            secrets: clients.secrets,
        };
        aws.s3
            .create_bucket()
            .bucket("plugins")
            .send()
            .await
            .expect("bucket");
        // Cranelift before the first batch (tiered start off), and the host's default:
        // Winch first, Cranelift in the background.
        let engine = Engine::new(&Limits {
            tiered_start: false,
            ..Limits::default()
        })
        .expect("engine");
        let tiered = Engine::new(&Limits::default()).expect("engine");
        let mut rows = Vec::new();
        for name in PLUGINS {
            let module = std::fs::read(wasm_dir.join(format!("{name}.wasm")))
                .expect("build plugins first: ./dev plugins");
            let size = module.len();
            let prefix: Prefix = format!("s3://plugins/plugins/{name}/")
                .parse()
                .expect("prefix");
            publish::publish(&engine, &aws.s3, &prefix, release(module))
                .await
                .expect("publish");
            let location =
                PluginLocation::parse(&format!("s3://plugins/plugins/{name}/")).expect("location");
            let scratch = tempfile::tempdir().expect("tempdir");
            let mut uncached = Vec::new();
            let mut tiered_loads = Vec::new();
            for _ in 0..COMPILES {
                uncached.push(load(&engine, &aws, &location, None).await);
                tiered_loads.push(load(&tiered, &aws, &location, None).await);
                // Not timed: the background compile, so it takes no CPU from what is.
                tiered.finish_background();
            }
            let mut warm = Vec::new();
            let cold = load(&engine, &aws, &location, Some(scratch.path())).await;
            assert_eq!(cold.load.cache, CacheUse::Miss);
            for _ in 0..WARM {
                let timings = load(&engine, &aws, &location, Some(scratch.path())).await;
                assert_eq!(timings.load.cache, CacheUse::Hit);
                warm.push(timings);
            }
            // The same, back to back with nothing else going on (no S3 request, so the
            // emulator is idle): the plugin-ready time alone.
            let path = wasm_dir.join(format!("{name}.wasm"));
            let cache = engine.artifact_cache(scratch.path()).expect("cache");
            let quiet: Vec<Timings> = (0..WARM)
                .map(|_| {
                    load_file(&engine, &path, Some(&cache), &[])
                        .expect("load")
                        .timings
                })
                .collect();
            rows.push(Row {
                name,
                size,
                uncached,
                tiered: tiered_loads,
                warm,
                quiet,
            });
            eprintln!("{name} done");
        }
        let swaps = swap_latency(&engine, &aws, &wasm_dir, "cranelift").await;
        let tiered_swaps = swap_latency(&tiered, &aws, &wasm_dir, "tiered").await;
        let python = guest_enrich(&engine, &tiered, &aws, &root, &PYTHON).await;
        let javascript = guest_enrich(&engine, &tiered, &aws, &root, &JAVASCRIPT).await;
        let mut report = render(&rows, &swaps, &tiered_swaps, &root);
        report.push_str(&python);
        report.push_str(&javascript);
        report
    });
    drop(moto);
    let report = report
        + &start_memory::measure(&[
            ("Rust `enrich`", wasm_dir.join("enrich.wasm")),
            ("Python `enrich`", root.join(PYTHON.path)),
            ("JavaScript `enrich`", root.join(JAVASCRIPT.path)),
        ]);
    write_section(&root.join("BENCHMARKS.md"), "cold-start", &report);
    println!("{report}");
}

fn release(module: Vec<u8>) -> Release {
    Release {
        module,
        name: None,
        version: None,
        config: Default::default(),
        signing_key: None,
        pin: false,
        force: true,
        precompile: Vec::new(),
        lookups: Vec::new(),
        output_schemas: Default::default(),
        compatibility: "BACKWARD".parse().expect("a mode"),
        allow_incompatible: false,
    }
}

/// Loads per way for the Python and JavaScript enrich (each compile takes seconds).
const PYTHON_LOADS: usize = 3;

/// An `enrich` written in another language, built by `./dev plugins`.
struct Guest {
    /// The language, as the section names it.
    language: &'static str,
    /// Its folder of plugins, and the tool that built it.
    source: &'static str,
    /// Its component, from the workspace root.
    path: &'static str,
    /// Where it is published in the emulator.
    prefix: &'static str,
}

const PYTHON: Guest = Guest {
    language: "Python",
    source: "`plugins-python/enrich`, componentize-py 0.25.1",
    path: "target/python/enrich.wasm",
    prefix: "s3://plugins/python/enrich/",
};

const JAVASCRIPT: Guest = Guest {
    language: "JavaScript",
    source: "`plugins-js/enrich`, componentize-js 0.23.0",
    path: "target/js/enrich.wasm",
    prefix: "s3://plugins/js/enrich/",
};

/// Another language's enrich from S3: compiled, from its signed precompiled artifact,
/// and from a warm local cache.
async fn guest_enrich(
    engine: &Engine,
    tiered: &Engine,
    aws: &AwsClients,
    root: &Path,
    guest: &Guest,
) -> String {
    let path = root.join(guest.path);
    let module = std::fs::read(&path).expect("build the plugins first: ./dev plugins");
    let size = module.len();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let prefix: Prefix = guest.prefix.parse().expect("prefix");
    let published = Instant::now();
    let mut with_artifact = release(module);
    with_artifact.signing_key = Some(key.clone());
    with_artifact.precompile = vec![std::env::consts::ARCH.to_owned()];
    publish::publish(engine, &aws.s3, &prefix, with_artifact)
        .await
        .expect("publish");
    let publish_time = published.elapsed();
    let location = PluginLocation::parse(guest.prefix).expect("location");
    let load_with = |public_key: bool, cache: Option<std::path::PathBuf>| {
        let settings = FollowSettings {
            cache: cache.map(|dir| engine.artifact_cache(&dir).expect("cache")),
            public_key: public_key.then(|| key.verifying_key()),
            ..FollowSettings::default()
        };
        let location = location.clone();
        async move {
            let mut source = FollowedPlugin::new(location, engine.clone(), settings);
            source.load(Some(aws)).await.expect("load").timings
        }
    };
    let mut compiled = Vec::new();
    let mut tiered_loads = Vec::new();
    let mut published_loads = Vec::new();
    let warm_dir = tempfile::tempdir().expect("tempdir");
    for _ in 0..PYTHON_LOADS {
        compiled.push(load_with(false, None).await);
        let mut source =
            FollowedPlugin::new(location.clone(), tiered.clone(), FollowSettings::default());
        tiered_loads.push(source.load(Some(aws)).await.expect("load").timings);
        tiered.finish_background();
        let fresh = tempfile::tempdir().expect("tempdir");
        let timings = load_with(true, Some(fresh.path().to_owned())).await;
        assert_eq!(timings.load.cache, CacheUse::Published);
        published_loads.push(timings);
    }
    load_with(true, Some(warm_dir.path().to_owned())).await;
    let mut warm = Vec::new();
    for _ in 0..PYTHON_LOADS {
        let timings = load_with(true, Some(warm_dir.path().to_owned())).await;
        assert_eq!(timings.load.cache, CacheUse::Hit);
        warm.push(timings);
    }
    let ready = |t: &Timings| t.fetch + t.verify + t.load.load + t.load.prepare + t.init;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n### A {} plugin\n\nThe {} `enrich` ({}): \
         a {:.1} MB component. From its manifest in S3 to ready, medians of {PYTHON_LOADS} loads each; \
         publishing it with `--precompile` (compile, precompile, upload) took {} ms.\n",
        guest.language,
        guest.language,
        guest.source,
        size as f64 / 1e6,
        ms(publish_time)
    );
    let _ = writeln!(
        s,
        "| way | fetch | compile or load | prepare | init | **ready** |\n|---|---:|---:|---:|---:|---:|"
    );
    for (way, timings) in [
        ("compiled (no cache, no artifact)", &compiled),
        (
            "tiered start: Winch's code first (no cache, no artifact)",
            &tiered_loads,
        ),
        (
            "from the signed precompiled artifact (fresh cache)",
            &published_loads,
        ),
        ("from the local precompiled cache", &warm),
    ] {
        let _ = writeln!(
            s,
            "| {way} | {} ms | {} ms | {} ms | {} ms | **{} ms** |",
            ms(column(timings, |t| t.fetch)),
            ms(column(timings, |t| t.load.load)),
            ms(column(timings, |t| t.load.prepare)),
            ms(column(timings, |t| t.init)),
            ms(column(timings, ready)),
        );
    }
    let _ = writeln!(
        s,
        "\nThe artifact is fetched instead of the module (both from S3) and is loaded only when the \
         host has the publisher's public key, the manifest's signature covers the artifact's sha256, \
         and the artifact was made by an engine like the host's; otherwise the module is compiled."
    );
    s
}

async fn load(
    engine: &Engine,
    aws: &AwsClients,
    location: &PluginLocation,
    cache_dir: Option<&Path>,
) -> Timings {
    let settings = FollowSettings {
        cache: cache_dir.map(|dir| engine.artifact_cache(dir).expect("cache")),
        ..FollowSettings::default()
    };
    let mut source = FollowedPlugin::new(location.clone(), engine.clone(), settings);
    source.load(Some(aws)).await.expect("load").timings
}

/// From the moment a new version's manifest is uploaded until a batch has run on it,
/// in a host checking before every batch (interval 0). The upload is the module and
/// the manifest written straight to S3; the new module is not in the cache.
async fn swap_latency(
    engine: &Engine,
    aws: &AwsClients,
    wasm_dir: &Path,
    name: &str,
) -> Vec<Duration> {
    let module = std::fs::read(wasm_dir.join("enrich.wasm")).expect("enrich.wasm");
    let prefix: Prefix = format!("s3://plugins/{name}/enrich/")
        .parse()
        .expect("prefix");
    publish::publish(engine, &aws.s3, &prefix, release(module.clone()))
        .await
        .expect("publish");
    let location =
        PluginLocation::parse(&format!("s3://plugins/{name}/enrich/")).expect("location");
    let scratch = tempfile::tempdir().expect("tempdir");
    let settings = FollowSettings {
        cache: Some(engine.artifact_cache(scratch.path()).expect("cache")),
        check_interval: Duration::ZERO,
        ..FollowSettings::default()
    };
    let mut source = FollowedPlugin::new(location, engine.clone(), settings);
    let mut chain = Chain::new(vec![source.load(Some(aws)).await.expect("load").runner]);
    let record = Record::new(
        &br#"{"id":"e1","user":"ann","action":"buy","amount":12.5,"ts":"2026-11-24T13:00:00Z"}"#[..],
    );
    let mut latencies = Vec::new();
    for i in 0..SWAPS {
        // The same code with a custom section: a new module, as a rebuild would give.
        let mut bytes = module.clone();
        let note = format!("swap{i}");
        bytes.extend([
            0,
            u8::try_from(note.len() + 1).expect("short"),
            u8::try_from(note.len()).expect("short"),
        ]);
        bytes.extend(note.as_bytes());
        let version = format!("0.2.{i}");
        let sha256 = pipeline_host::registry::sha256_hex(&bytes);
        let key = format!("{name}/enrich/modules/{sha256}.wasm");
        put(aws, &key, bytes).await;
        let manifest = serde_json::json!({
            "name": "enrich", "version": version, "world": pipeline_host::engine::WIT_VERSION,
            "module": key, "sha256": sha256, "created_at": "2026-11-26T12:00:00.000Z",
            // Past the first publish's (1): a host never goes back to a lower sequence.
            "sequence": i + 2
        });
        put(
            aws,
            &format!("{name}/enrich/manifest.json"),
            manifest.to_string().into_bytes(),
        )
        .await;
        let uploaded = Instant::now();
        let loaded = source
            .check(aws)
            .await
            .expect("check")
            .expect("a new version");
        chain.replace(0, loaded.runner);
        let outcomes = chain.run(std::slice::from_ref(&record), Budget::unbounded());
        assert_eq!(outcomes.len(), 1);
        assert_eq!(chain.stages()[0].plugin().version(), version);
        latencies.push(uploaded.elapsed());
        engine.finish_background();
    }
    latencies
}

async fn put(aws: &AwsClients, key: &str, body: Vec<u8>) {
    aws.s3
        .put_object()
        .bucket("plugins")
        .key(key)
        .body(body.into())
        .send()
        .await
        .expect("put");
}

struct Row {
    name: &'static str,
    size: usize,
    uncached: Vec<Timings>,
    /// Loads with tiered start: ready when Winch's code is.
    tiered: Vec<Timings>,
    warm: Vec<Timings>,
    quiet: Vec<Timings>,
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn column(timings: &[Timings], f: impl Fn(&Timings) -> Duration) -> Duration {
    median(timings.iter().map(f).collect())
}

fn render(rows: &[Row], swaps: &[Duration], tiered_swaps: &[Duration], root: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Cold start (`./dev bench`)\n");
    let _ = writeln!(
        s,
        "From a manifest in S3 (the emulator, on loopback) to a plugin ready for its first batch, \
         wasmtime {}, Cranelift at `speed`. Medians: {COMPILES} loads per plugin compiling, {WARM} from a \
         warm precompiled cache. Machine: {}.\n",
        wasmtime_version(root),
        machine()
    );
    let _ = writeln!(
        s,
        "| plugin | module | fetch | verify (sha256) | compile | prepare | init | **ready, compiling** | Winch compile | **ready, tiered start** | deserialize (cache) | prepare | init | **ready from the cache** | with fetch | ready from the cache, back to back |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let ready_compiling = column(&r.uncached, |t| {
            t.verify + t.load.load + t.load.prepare + t.init
        });
        let ready_tiered = column(&r.tiered, |t| {
            t.verify + t.load.load + t.load.prepare + t.init
        });
        let ready_cached = column(&r.warm, |t| t.load.load + t.load.prepare + t.init);
        let with_fetch = column(&r.warm, |t| {
            t.fetch + t.verify + t.load.load + t.load.prepare + t.init
        });
        let quiet = column(&r.quiet, |t| t.load.load + t.load.prepare + t.init);
        let _ = writeln!(
            s,
            "| {} | {:.0} KB | {} ms | {} ms | {} ms | {} ms | {} ms | **{} ms** | {} ms | **{} ms** | {} ms | {} ms | {} ms | **{} ms** | {} ms | {} ms |",
            r.name,
            r.size as f64 / 1000.0,
            ms(column(&r.uncached, |t| t.fetch)),
            ms(column(&r.uncached, |t| t.verify)),
            ms(column(&r.uncached, |t| t.load.load)),
            ms(column(&r.uncached, |t| t.load.prepare)),
            ms(column(&r.uncached, |t| t.init)),
            ms(ready_compiling),
            ms(column(&r.tiered, |t| t.load.load)),
            ms(ready_tiered),
            ms(column(&r.warm, |t| t.load.load)),
            ms(column(&r.warm, |t| t.load.prepare)),
            ms(column(&r.warm, |t| t.init)),
            ms(ready_cached),
            ms(with_fetch),
            ms(quiet),
        );
    }
    let mut sorted = swaps.to_vec();
    sorted.sort_unstable();
    let _ = writeln!(
        s,
        "\nSwap latency, upload to the first batch on the new version (a host checking before every \
         batch; the new module is not in the cache): median **{} ms** with tiered start (the first batch \
         on Winch's code), **{} ms** compiling with Cranelift first (range {}..{} ms over {} swaps). A \
         Lambda host checks at most every `PIPELINE_PLUGIN_CHECK_SECONDS` (default 30 s), which bounds \
         the wait before this starts.\n",
        ms(median(tiered_swaps.to_vec())),
        ms(median(swaps.to_vec())),
        ms(sorted.first().copied().unwrap_or_default()),
        ms(sorted.last().copied().unwrap_or_default()),
        swaps.len()
    );
    let _ = writeln!(
        s,
        "\"Ready from the cache\" is what the issue's < 1 ms goal names: deserialize (reading the \
         entry, its CRC-32, wasmtime's load) + prepare + init. \"Ready, compiling\" adds the sha256 \
         check and the Cranelift compile that the cache saves. \"Ready, tiered start\" is the host's \
         default for a module not in the cache: Winch compiles it and the first batch runs on Winch's \
         code while Cranelift compiles in the background (see the compilers section for how much slower \
         that code is). \"Back to back\" repeats the cached load \
         with no S3 request in between: the emulator (a Python process on the same two cores) is idle, \
         which is closer to a Lambda sandbox, where S3 is elsewhere. A native Rust transform has no load \
         step at all: its cost is a redeploy of the function, which this design avoids."
    );
    s
}
