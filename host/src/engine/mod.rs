//! The plugin engine: wasmtime with the component model, knowing nothing about AWS.
//!
//! One [`Engine`] per process (compilers, linkers, epoch ticker); one [`Plugin`] per
//! loaded component (compiled once, or deserialized from the [`ArtifactCache`], then
//! pre-instantiated; with tiered start, first compiled by Winch while Cranelift compiles
//! it in the background); instances are made from it by the [`Runner`], which owns the
//! per-batch call, the trap handling, the retries and the move to Cranelift's code; a
//! [`Chain`] runs several runners in a row.
//!
//! # Layout
//! - `mod.rs`: [`Engine`] (compiler settings, linkers, epoch ticker, tiered start) and
//!   [`Plugin`].
//! - `sandbox.rs`: what an instance may touch: WASI with nothing granted, the memory cap,
//!   the host's log and metric imports.
//! - `wire.rs`: packing records into the batch encoding and checking the answer.
//! - `runner.rs`: one call per batch, trap isolation by bisection, retries.
//! - `chain.rs`: several runners in a row, one outcome per input record.
//! - `cache.rs`: precompiled artifacts on disk, checked before use.
//! - `budget.rs`: what a compile is expected to take, against the function's memory.

mod blocking;
mod budget;
mod cache;
mod chain;
mod runner;
mod sandbox;
mod tables;
mod wire;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Store, Strategy};

pub use cache::{ArtifactCache, CacheError, Lookup};
pub use chain::{Chain, StageStats};
pub use runner::{MAX_PLUGIN_METRICS, Runner, RunnerMetrics};
pub(crate) use sandbox::StoreState;
pub use tables::{LookupFailure, MAX_KEY_BYTES, MAX_KEYS_PER_GET, TableReader};

use crate::limits::Limits;
use budget::{Plan, Turn};

/// Host-side bindings generated from `wit/plugin.wit`.
#[allow(missing_docs, clippy::all)]
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
    });
}

/// Contract 0.1's imports (`wit/0.1/plugin.wit`), linked beside 0.2's so that plugins
/// built against it run unchanged. Its exports are 0.2's, type for type: a 0.1
/// component is called through [`bindings`].
#[allow(missing_docs, dead_code, clippy::all)]
pub(crate) mod bindings_v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1",
        world: "transform",
    });
}

/// The WIT package version this host implements; plugins built against it load.
pub const WIT_VERSION: &str = "pipeline:plugin@0.2.0";

/// Every contract this host serves, newest first.
pub const WIT_VERSIONS: [&str; 2] = [WIT_VERSION, "pipeline:plugin@0.1.0"];

/// How often the epoch ticker advances; CPU deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Winch's wasm stack: twice wasmtime's default, for its bigger frames (plugin threads
/// have 2 MiB of native stack).
const BASELINE_WASM_STACK: usize = 1 << 20;

/// Why a plugin could not be loaded or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The `.wasm` file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly component (a core module, or not Wasm at all).
    #[error("{origin} is not a WebAssembly component (build plugins for wasm32-wasip2): {reason}")]
    NotAComponent {
        /// Where the bytes came from.
        origin: String,
        /// What the parser said.
        reason: String,
    },
    /// The component imports something the sandbox does not provide.
    #[error("{origin} needs an import this host does not provide: {reason}")]
    UnsupportedImport {
        /// Where the bytes came from.
        origin: String,
        /// What the linker said.
        reason: String,
    },
    /// The component does not export the `transform` world of `wit/plugin.wit`.
    #[error("{origin} does not export the world `transform` of {WIT_VERSION}: {reason}")]
    WrongWorld {
        /// Where the bytes came from.
        origin: String,
        /// What is missing or mismatched.
        reason: String,
    },
    /// Instantiating the component or its `init` trapped or ran out of limits.
    #[error("{plugin} failed to start: {reason}")]
    Start {
        /// `name@version` or the origin.
        plugin: String,
        /// The trap or limit.
        reason: String,
    },
    /// The plugin's `init` refused its configuration.
    #[error("{plugin} refused its configuration: {reason}")]
    InitRefused {
        /// `name@version`.
        plugin: String,
        /// The plugin's own message.
        reason: String,
    },
    /// The engine itself could not be set up.
    #[error("cannot set up the wasm engine: {0}")]
    Engine(String),
    /// Compiling the module would not fit in the function's memory.
    #[error(
        "compiling {origin} ({code_mib:.1} MiB of code) needs about {need_mib} MiB, more than the function's {memory_mib} MiB (AWS_LAMBDA_FUNCTION_MEMORY_SIZE): give the function at least {size_mb} MB ({tiered_mb} MB for a tiered start), or publish the module with `host publish --precompile` and a signing key and give the host the public key (PIPELINE_PLUGIN_PUBLIC_KEY), so that it loads the signed artifact instead of compiling"
    )]
    TooLarge {
        /// Where the bytes came from.
        origin: String,
        /// MiB of function bodies in the module.
        code_mib: f64,
        /// The expected peak of the process while compiling it, MiB.
        need_mib: u64,
        /// The function's memory, MiB.
        memory_mib: usize,
        /// The least memory size the compile fits in, MB.
        size_mb: u64,
        /// The least memory size a tiered start fits in, MB.
        tiered_mb: u64,
    },
}

/// The process-wide wasm engine: compiler settings, linker and epoch ticker.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    /// Cranelift: the code plugins run on, and the code the cache keeps.
    engine: wasmtime::Engine,
    /// [`cache::engine_key`] of `engine`, computed once.
    key: String,
    linker: Linker<StoreState>,
    /// Winch and its linker when tiered start is on: a module not in the cache runs on
    /// Winch's code (compiled ~5x faster, running ~1.8x slower; BENCHMARKS.md) until
    /// Cranelift's, compiled in the background, is ready.
    baseline: Option<(wasmtime::Engine, Linker<StoreState>)>,
    /// The background Cranelift compiles, joined by [`Engine::finish_background`].
    background: Mutex<Vec<thread::JoinHandle<()>>>,
    /// Turns to compile, when compiles must fit in the function's memory
    /// (`limits.function_memory_mib`): a large compile runs alone.
    turns: Arc<RwLock<()>>,
    limits: Limits,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Engine {
    /// An engine enforcing `limits` on every plugin it runs.
    pub fn new(limits: &Limits) -> Result<Self, PluginError> {
        // A function with one vCPU's time or less gains nothing from compiling on several
        // threads; each holds a function's compile in memory.
        let serial = limits
            .function_memory_mib
            .is_some_and(|mib| mib < budget::ONE_VCPU_MIB);
        let mut config = base_config(serial);
        // Plugins are small; a fixed strategy keeps precompiled artifacts comparable.
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine =
            wasmtime::Engine::new(&config).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let linker = sandbox_linker(&engine)?;
        let baseline = if limits.tiered_start {
            let mut config = base_config(serial);
            config.strategy(Strategy::Winch);
            // Winch's frames are bigger than Cranelift's: the same recursion needs more.
            config.max_wasm_stack(BASELINE_WASM_STACK);
            let winch = wasmtime::Engine::new(&config)
                .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
            let linker = sandbox_linker(&winch)?;
            Some((winch, linker))
        } else {
            None
        };
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let mut ticked = vec![engine.clone()];
        ticked.extend(baseline.as_ref().map(|(winch, _)| winch.clone()));
        spawn_epoch_ticker(ticked, stop_ticker.clone())?;
        Ok(Self {
            inner: Arc::new(EngineInner {
                key: cache::engine_key(&engine),
                engine,
                linker,
                baseline,
                background: Mutex::new(Vec::new()),
                turns: Arc::new(RwLock::new(())),
                limits: limits.clone(),
                stop_ticker,
            }),
        })
    }

    /// The limits this engine enforces.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Waits for the Cranelift compiles of tiered starts still running, so their code
    /// reaches the cache before a short-lived process (`host run`) exits.
    pub fn finish_background(&self) {
        let handles = std::mem::take(
            &mut *self
                .inner
                .background
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for handle in handles {
            let _ = handle.join();
        }
    }

    /// Loads a plugin from a `.wasm` file.
    pub fn load_file(&self, path: &Path) -> Result<Plugin, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load_bytes(&bytes, &path.display().to_string())
    }

    /// Compiles and checks a plugin component; `origin` names it in errors.
    pub fn load_bytes(&self, bytes: &[u8], origin: &str) -> Result<Plugin, PluginError> {
        let component = self.compile(bytes, origin)?;
        self.prepare(&component, origin)
    }

    /// A cache of precompiled artifacts in `dir`, for this engine's settings.
    pub fn artifact_cache(&self, dir: &Path) -> std::io::Result<ArtifactCache> {
        ArtifactCache::new(dir, &self.inner.key)
    }

    /// Loads a module whose sha256 is known (checked by the caller), through `cache`:
    /// a sound entry is deserialized, anything else is compiled and stored.
    pub fn load_cached(
        &self,
        bytes: &[u8],
        sha256: &str,
        origin: &str,
        cache: Option<&ArtifactCache>,
    ) -> Result<(Plugin, LoadReport), PluginError> {
        let started = Instant::now();
        let lookup = cache.map_or(Lookup::Miss, |c| c.lookup(&self.inner.engine, sha256));
        let miss = match lookup {
            Lookup::Hit(component) => {
                let loaded = started.elapsed();
                return self.finish_load(&component, origin, CacheUse::Hit, loaded);
            }
            miss => miss,
        };
        if let Lookup::Rejected(reason) = &miss {
            tracing::warn!(plugin = origin, %reason, "ignoring a bad precompiled cache entry; recompiling");
        }
        let cache_use = match (miss, cache) {
            (Lookup::Rejected(reason), _) => CacheUse::Rejected(reason),
            (_, None) => CacheUse::Off,
            _ => CacheUse::Miss,
        };
        // In a Lambda function a compile must fit in its memory.
        let budgeted = match self.inner.limits.function_memory_mib {
            Some(memory_mib) => Some(self.plan(bytes, origin, memory_mib)?),
            None => None,
        };
        let plan = budgeted
            .as_ref()
            .map_or(Plan::AsConfigured, |(plan, ..)| *plan);
        let alone = budgeted.as_ref().map(|(_, alone, _)| *alone);
        // Tiered start: Winch's code now, Cranelift's (into the cache) when ready. What
        // Winch cannot compile (a proposal it lacks) Cranelift compiles now, as without.
        let baseline = self
            .inner
            .baseline
            .as_ref()
            .filter(|_| plan == Plan::AsConfigured);
        let baseline = baseline.and_then(|(winch, linker)| {
            compile_with(winch, bytes, origin)
                .inspect_err(|e| tracing::debug!(plugin = origin, reason = %e, "Winch cannot compile it; Cranelift does"))
                .ok()
                .map(|component| (component, linker))
        });
        if let Some((component, linker)) = baseline {
            // The background compile takes a turn of its own.
            drop(budgeted);
            let loaded = started.elapsed();
            let started = Instant::now();
            let mut plugin = self.prepare_with(linker, &component, origin)?;
            tracing::info!(
                plugin = origin,
                compile_ms = loaded.as_millis() as u64,
                "running Winch's code while Cranelift compiles in the background"
            );
            plugin.optimized =
                Some(self.optimize_in_background(bytes, sha256, origin, cache, alone));
            let report = LoadReport {
                cache: cache_use,
                load: loaded,
                prepare: started.elapsed(),
            };
            return Ok((plugin, report));
        }
        let component = self.compile(bytes, origin)?;
        drop(budgeted);
        if let Some(Err(reason)) = cache.map(|c| c.store(sha256, &component)) {
            tracing::warn!(plugin = origin, %reason, "cannot store the precompiled artifact");
        }
        let loaded = started.elapsed();
        self.finish_load(&component, origin, cache_use, loaded)
    }

    /// How to compile `bytes` in a function of `memory_mib` MiB: as configured if it
    /// fits (a tiered start holds Winch's code while Cranelift compiles), else with
    /// Cranelift alone, else not at all; with whether it runs alone, and its turn.
    fn plan(
        &self,
        bytes: &[u8],
        origin: &str,
        memory_mib: usize,
    ) -> Result<(Plan, bool, Turn<'_>), PluginError> {
        let code = budget::code_bytes(bytes);
        let measure = || {
            let resident = crate::report::resident_memory_bytes().unwrap_or(0);
            budget::Estimate::new(resident, code)
        };
        // After the large compile running, if any; a large one also after the others.
        let mut turn = Turn::take(&self.inner.turns, false);
        let mut estimate = measure();
        let alone = estimate.alone(memory_mib);
        if alone {
            drop(turn);
            turn = Turn::take(&self.inner.turns, true);
            estimate = measure();
        }
        let tiered = self.inner.baseline.is_some();
        let plan = estimate.plan(memory_mib, tiered);
        match plan {
            Plan::TooLarge => {
                return Err(PluginError::TooLarge {
                    origin: origin.to_owned(),
                    code_mib: estimate.code_mib(),
                    need_mib: estimate.one_compiler_mib,
                    memory_mib,
                    size_mb: budget::memory_size_for(estimate.one_compiler_mib),
                    tiered_mb: budget::memory_size_for(estimate.tiered_mib),
                });
            }
            Plan::CraneliftOnly => tracing::warn!(
                plugin = origin,
                memory_mib,
                tiered_mib = estimate.tiered_mib,
                compile_mib = estimate.one_compiler_mib,
                "Winch's code and Cranelift's compile would not fit together in the function's memory: compiling with Cranelift before the first batch (a tiered start needs {} MB)",
                budget::memory_size_for(estimate.tiered_mib)
            ),
            Plan::AsConfigured => tracing::debug!(
                plugin = origin,
                memory_mib,
                tiered_mib = estimate.tiered_mib,
                compile_mib = estimate.one_compiler_mib,
                "the compile fits in the function's memory"
            ),
        }
        Ok((plan, alone, turn))
    }

    fn finish_load(
        &self,
        component: &Component,
        origin: &str,
        cache: CacheUse,
        load: Duration,
    ) -> Result<(Plugin, LoadReport), PluginError> {
        let started = Instant::now();
        let plugin = self.prepare(component, origin)?;
        let report = LoadReport {
            cache,
            load,
            prepare: started.elapsed(),
        };
        Ok((plugin, report))
    }

    /// Compiles `bytes` with Cranelift on a thread of its own, stores the code in
    /// `cache`, and links it: where it will appear is returned. A failure is logged and
    /// leaves the plugin on Winch's code.
    /// `alone`: whether it must wait for every other compile, or only for a large one
    /// (`None`: for nothing, outside Lambda).
    fn optimize_in_background(
        &self,
        bytes: &[u8],
        sha256: &str,
        origin: &str,
        cache: Option<&ArtifactCache>,
        alone: Option<bool>,
    ) -> Arc<OnceLock<bindings::TransformPre<StoreState>>> {
        let found = Arc::new(OnceLock::new());
        let slot = found.clone();
        let (engine, linker) = (self.inner.engine.clone(), self.inner.linker.clone());
        let (bytes, sha256, label) = (bytes.to_vec(), sha256.to_owned(), origin.to_owned());
        let cache = cache.cloned();
        let turns = self.inner.turns.clone();
        let compile = move || {
            let origin = label;
            let turn = alone.map(|alone| Turn::take(&turns, alone));
            let started = Instant::now();
            let compiled = compile_with(&engine, &bytes, &origin);
            drop(turn);
            let component = match compiled {
                Ok(component) => component,
                Err(e) => {
                    tracing::warn!(plugin = %origin, reason = %e, "Cranelift could not compile what Winch did; staying on Winch's code");
                    return;
                }
            };
            if let Some(Err(reason)) = cache.as_ref().map(|c| c.store(&sha256, &component)) {
                tracing::warn!(plugin = %origin, %reason, "cannot store the precompiled artifact");
            }
            let linked = linker
                .instantiate_pre(&component)
                .and_then(bindings::TransformPre::new);
            match linked {
                Ok(pre) => {
                    tracing::info!(plugin = %origin, compile_ms = started.elapsed().as_millis() as u64, "Cranelift's code is ready");
                    let _ = slot.set(pre);
                }
                Err(e) => {
                    tracing::warn!(plugin = %origin, reason = %format!("{e:#}"), "Cranelift's code does not link; staying on Winch's code");
                }
            }
        };
        match thread::Builder::new()
            .name("cranelift".into())
            .spawn(compile)
        {
            Ok(handle) => {
                let mut background =
                    (self.inner.background.lock()).unwrap_or_else(|poisoned| poisoned.into_inner());
                // A long-lived host (Lambda) never joins: finished ones go here.
                background.retain(|h| !h.is_finished());
                background.push(handle);
            }
            Err(e) => {
                tracing::warn!(plugin = origin, reason = %e, "cannot start the background compile; staying on Winch's code");
            }
        }
        found
    }

    /// This engine's compatibility key: artifacts made by an engine with another key
    /// cannot be loaded by this one.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// Compiles a component ahead of time: wasmtime's artifact, loadable by an engine
    /// with the same [`Engine::key`].
    pub fn precompile(&self, bytes: &[u8], origin: &str) -> Result<Vec<u8>, PluginError> {
        self.compile(bytes, origin)?;
        self.inner
            .engine
            .precompile_component(bytes)
            .map_err(|e| PluginError::Engine(format!("precompiling {origin}: {e:#}")))
    }

    /// Loads a module from its published artifact instead of compiling it, and keeps it
    /// in `cache` for the next start.
    ///
    /// The caller vouches for `artifact`: its sha256 is the one a manifest lists, and
    /// that manifest's signature verified with the configured public key (an artifact
    /// is native code: nothing weaker may lead here).
    pub fn load_published(
        &self,
        artifact: &[u8],
        module_sha256: &str,
        origin: &str,
        cache: Option<&ArtifactCache>,
    ) -> Result<(Plugin, LoadReport), PluginError> {
        let started = Instant::now();
        // SAFETY: the artifact's bytes hash to what a manifest signed by the configured
        // key lists for this engine's compatibility key (checked by the caller), so they
        // are what the publisher's `precompile` made; wasmtime checks its header and
        // engine compatibility again before using it.
        let component =
            unsafe { Component::deserialize(&self.inner.engine, artifact) }.map_err(|e| {
                PluginError::NotAComponent {
                    origin: origin.to_owned(),
                    reason: format!("its published artifact does not load: {e:#}"),
                }
            })?;
        if let Some(Err(reason)) = cache.map(|c| c.store(module_sha256, &component)) {
            tracing::warn!(plugin = origin, %reason, "cannot store the precompiled artifact");
        }
        let loaded = started.elapsed();
        let started = Instant::now();
        let plugin = self.prepare(&component, origin)?;
        Ok((
            plugin,
            LoadReport {
                cache: CacheUse::Published,
                load: loaded,
                prepare: started.elapsed(),
            },
        ))
    }

    /// Cranelift compile, with the header checks that give plain errors.
    fn compile(&self, bytes: &[u8], origin: &str) -> Result<Component, PluginError> {
        compile_with(&self.inner.engine, bytes, origin)
    }

    /// Links a Cranelift-compiled component against the sandbox and asks it who it is.
    fn prepare(&self, component: &Component, origin: &str) -> Result<Plugin, PluginError> {
        self.prepare_with(&self.inner.linker, component, origin)
    }

    /// Links a component compiled by `linker`'s engine and asks it who it is.
    fn prepare_with(
        &self,
        linker: &Linker<StoreState>,
        component: &Component,
        origin: &str,
    ) -> Result<Plugin, PluginError> {
        let origin = origin.to_owned();
        let pre =
            linker
                .instantiate_pre(component)
                .map_err(|e| PluginError::UnsupportedImport {
                    origin: origin.clone(),
                    reason: format!("{e:#}"),
                })?;
        let pre = bindings::TransformPre::new(pre).map_err(|e| PluginError::WrongWorld {
            origin: origin.clone(),
            reason: format!("{e:#}"),
        })?;
        let mut plugin = Plugin {
            engine: self.clone(),
            world: world_of(component, self.inner.linker.engine()),
            pre,
            name: origin.clone(),
            version: String::new(),
            optimized: None,
            tables: None,
            output_schemas: None,
        };
        let (mut store, bindings) = plugin.instantiate()?;
        let info = bindings
            .call_info(&mut store)
            .map_err(|e| PluginError::Start {
                plugin: origin,
                reason: sandbox::describe_trap(&store, &e),
            })?;
        plugin.name = info.name;
        plugin.version = info.version;
        Ok(plugin)
    }
}

/// How a plugin got compiled code, and how long each step took.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// What the precompiled cache contributed.
    pub cache: CacheUse,
    /// Compile, or deserialize from the cache (including the cache's own checks).
    pub load: Duration,
    /// Link against the sandbox, instantiate once and call `info`.
    pub prepare: Duration,
}

/// What the precompiled cache contributed to a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheUse {
    /// Deserialized from the cache: no compile.
    Hit,
    /// Compiled, then stored.
    Miss,
    /// A cache entry failed its checks (the reason); compiled and stored anew.
    Rejected(String),
    /// No cache configured: compiled.
    Off,
    /// Loaded from the signed artifact published with the module: no compile.
    Published,
}

impl CacheUse {
    /// Whether the module was compiled for this load (no cache entry or artifact used).
    pub fn compiled(&self) -> bool {
        matches!(self, Self::Miss | Self::Rejected(_) | Self::Off)
    }

    /// `hit`, `miss`, `rejected`, `off` or `published`, for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Rejected(_) => "rejected",
            Self::Off => "off",
            Self::Published => "published",
        }
    }
}

/// A core module starts with the same magic but has layer 0; components have layer 1.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes.starts_with(b"\0asm") && bytes[6..8] == [0, 0]
}

/// What both compilers' engines share: the CPU deadline, names for `perf`, and whether
/// a compile uses one thread (`serial`) or all cores.
fn base_config(serial: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.parallel_compilation(!serial);
    #[cfg(feature = "profiling")]
    config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    config
}

/// `engine`'s compile, with the header checks that give plain errors.
fn compile_with(
    engine: &wasmtime::Engine,
    bytes: &[u8],
    origin: &str,
) -> Result<Component, PluginError> {
    let origin = origin.to_owned();
    if is_core_module(bytes) || !bytes.starts_with(b"\0asm") {
        let reason = if bytes.starts_with(b"\0asm") {
            "it is a core wasm module".to_owned()
        } else {
            "missing the `\\0asm` header".to_owned()
        };
        return Err(PluginError::NotAComponent { origin, reason });
    }
    // What the compile frees goes back to the system at once (allocator.rs).
    let _compiling = crate::allocator::Compiling::start();
    Component::new(engine, bytes).map_err(|e| PluginError::NotAComponent {
        origin,
        reason: format!("{e:#}"),
    })
}

/// A linker giving components the sandbox's imports: WASI with nothing granted, its
/// blocking calls shadowed to keep the call's deadline (`blocking.rs`), the host's own.
fn sandbox_linker(engine: &wasmtime::Engine) -> Result<Linker<StoreState>, PluginError> {
    let mut linker = Linker::new(engine);
    let add = |linker: &mut Linker<StoreState>| -> wasmtime::Result<()> {
        wasmtime_wasi::p2::add_to_linker_sync(linker)?;
        blocking::shadow_poll(linker)?;
        bindings::Transform::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
        bindings_v0_1::Transform::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
        Ok(())
    };
    add(&mut linker).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
    Ok(linker)
}

fn spawn_epoch_ticker(
    engines: Vec<wasmtime::Engine>,
    stop: Arc<AtomicBool>,
) -> Result<(), PluginError> {
    thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(EPOCH_TICK);
                for engine in &engines {
                    engine.increment_epoch();
                }
            }
        })
        .map(drop)
        .map_err(|e| PluginError::Engine(format!("cannot start the epoch ticker: {e}")))
}

/// A compiled, type-checked plugin, ready to be instantiated cheaply.
#[derive(Clone)]
pub struct Plugin {
    engine: Engine,
    /// Linked code: Cranelift's, or Winch's while `optimized` is set.
    pre: bindings::TransformPre<StoreState>,
    name: String,
    version: String,
    /// Where Cranelift's code appears once compiled in the background (tiered start).
    optimized: Option<Arc<OnceLock<bindings::TransformPre<StoreState>>>>,
    /// The contract the component was built against (one of [`WIT_VERSIONS`]).
    world: &'static str,
    /// The lookup tables its instances may read.
    tables: tables::Tables,
    /// The schemas its manifest declares for its outputs.
    output_schemas: Option<Arc<crate::schemas::OutputSchemas>>,
}

impl Plugin {
    /// The name the plugin reports (its crate name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version the plugin reports.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The same plugin under its published name and version (from its manifest), which
    /// logs and dead-letter entries then name.
    pub fn with_identity(mut self, name: &str, version: &str) -> Self {
        name.clone_into(&mut self.name);
        version.clone_into(&mut self.version);
        self
    }

    /// The contract the component was built against, `pipeline:plugin@X.Y.Z`.
    pub fn world(&self) -> &'static str {
        self.world
    }

    /// The same plugin, its instances reading lookup tables through `tables` (the
    /// grants are the reader's to check).
    pub fn with_tables(mut self, tables: Arc<dyn TableReader>) -> Self {
        self.tables = Some(tables);
        self
    }

    /// The same plugin, its outputs checked against `schemas` (from its manifest).
    pub fn with_output_schemas(mut self, schemas: Arc<crate::schemas::OutputSchemas>) -> Self {
        self.output_schemas = Some(schemas);
        self
    }

    /// The schemas its manifest declares for its outputs, if any.
    pub fn output_schemas(&self) -> Option<Arc<crate::schemas::OutputSchemas>> {
        self.output_schemas.clone()
    }

    /// The limits the plugin runs under.
    pub fn limits(&self) -> &Limits {
        self.engine.limits()
    }

    /// The same plugin on Cranelift's code, once a tiered start's background compile
    /// made it; `None` before then and for a plugin already on it.
    pub(crate) fn optimized(&self) -> Option<Plugin> {
        let pre = self.optimized.as_ref()?.get()?.clone();
        Some(Plugin {
            engine: self.engine.clone(),
            pre,
            name: self.name.clone(),
            version: self.version.clone(),
            optimized: None,
            world: self.world,
            tables: self.tables.clone(),
            output_schemas: self.output_schemas.clone(),
        })
    }

    /// `name@version`, as used in logs and dead-letter entries (before the plugin said
    /// who it is: where it came from).
    pub fn label(&self) -> String {
        if self.version.is_empty() {
            return self.name.clone();
        }
        format!("{}@{}", self.name, self.version)
    }

    /// A fresh sandboxed instance with limits set (before any guest code runs).
    pub(crate) fn instantiate(
        &self,
    ) -> Result<(Store<StoreState>, bindings::Transform), PluginError> {
        let limits = self.engine.limits();
        let state = StoreState::new(
            limits.memory_bytes,
            format!("{}@{}", self.name, self.version),
            self.tables.clone(),
        );
        // The store belongs to the engine that compiled this code (Cranelift or Winch).
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| s.limiter());
        store.set_epoch_deadline(deadline_ticks(limits.deadline));
        // Time a call spends waiting on lookups moves its deadline (the call's own
        // clock, `begin_call`): at the CPU deadline, a call that waited runs on until
        // that moved deadline; one that did not is interrupted (a trap, as without the
        // callback).
        store.epoch_deadline_callback(|store| match store.data().time_left_after_waits() {
            Some(left) if !left.is_zero() => {
                Ok(wasmtime::UpdateDeadline::Continue(deadline_ticks(left)))
            }
            _ => Err(wasmtime::Trap::Interrupt.into()),
        });
        // Start and `init` run under the same deadline as a call.
        store
            .data_mut()
            .begin_call(Instant::now() + limits.deadline);
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| PluginError::Start {
                plugin: self.label(),
                reason: sandbox::describe_trap(&store, &e),
            })?;
        Ok((store, bindings))
    }
}

/// The contract a component was built against, from the versions of the
/// `pipeline:plugin` interfaces it imports: 0.1 when it names 0.1's, else this host's.
fn world_of(component: &Component, engine: &wasmtime::Engine) -> &'static str {
    let imports_v0_1 = component
        .component_type()
        .imports(engine)
        .any(|(name, _)| name.starts_with("pipeline:plugin/") && name.contains("@0.1."));
    if imports_v0_1 {
        WIT_VERSIONS[1]
    } else {
        WIT_VERSION
    }
}

pub(crate) fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64
}

/// An example plugin `./dev test` builds before the tests run (`misbehave`, `enrich`, ...),
/// loaded in an engine with `limits`.
#[cfg(test)]
pub(crate) fn test_plugin(name: &str, limits: &Limits) -> Plugin {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/wasm32-wasip2/plugin/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `./dev plugins`",
        path.display()
    );
    let limits = Limits {
        // The tests' records are few: no background compile to wait for.
        tiered_start: false,
        ..limits.clone()
    };
    Engine::new(&limits)
        .and_then(|engine| engine.load_file(&path))
        .unwrap_or_else(|e| panic!("load {name}: {e}"))
}
