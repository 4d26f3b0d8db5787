//! One plugin call and nothing else, for the throughput decomposition: batches packed
//! once before timing, then lowered into the sandbox, transformed and lifted out, with
//! the engine's epoch interruption on (as the host runs plugins) or off. What the host
//! adds around a call (packing, unpacking into outputs, outcomes) is the difference
//! between this and a `Runner`.

use std::path::Path;

use pipeline_host::Record;
use pipeline_host::wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use pipeline_host::wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pipeline_host::wasmtime::component::bindgen!({ path: "../wit", world: "transform" });

use pipeline::plugin::{host, lookup, types};

/// A store's state: WASI with nothing granted (what the benchmarked plugins import).
pub struct Ctx {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl Ctx {
    pub fn new() -> Self {
        Self {
            wasi: wasmtime_wasi::WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for Ctx {}

/// The benchmarked plugins log nothing and count nothing per record.
impl host::Host for Ctx {
    fn log(&mut self, _: types::LogLevel, _: String) {}
    fn counter(&mut self, _: String, _: u64) {}
    fn gauge(&mut self, _: String, _: f64) {}
}

/// The benchmarked plugins read no tables.
impl lookup::Host for Ctx {
    fn get(
        &mut self,
        table: String,
        _: Vec<String>,
    ) -> Result<Vec<Option<Vec<u8>>>, lookup::LookupError> {
        Err(lookup::LookupError::NotGranted(table))
    }
}

/// How a call is interrupted: the epoch (the host's CPU deadline), fuel (a count of
/// instructions), or not at all.
#[derive(Clone, Copy, PartialEq, Eq)]
#[allow(
    dead_code,
    reason = "the throughput bench's; the compilers bench uses none"
)]
pub enum Interrupt {
    Epoch,
    Fuel,
    Off,
}

pub struct RawPlugin {
    store: std::cell::RefCell<Store<Ctx>>,
    bindings: Transform,
    /// Fuel is refilled before each call (else the epoch deadline is pushed away).
    fuel: bool,
}

impl RawPlugin {
    /// The component at `path` on an engine with Cranelift at `speed` (as the host's)
    /// and epoch interruption `epoch`.
    #[allow(
        dead_code,
        reason = "the throughput bench's; the compilers bench makes its own engines"
    )]
    pub fn load(path: &Path, epoch: bool) -> Self {
        let interrupt = if epoch {
            Interrupt::Epoch
        } else {
            Interrupt::Off
        };
        Self::load_with(path, interrupt, |_| {})
    }

    /// The component at `path` on the host's engine settings, interrupted by
    /// `interrupt`, with `tune` applied last.
    #[allow(
        dead_code,
        reason = "the throughput bench's; the compilers bench makes its own engines"
    )]
    pub fn load_with(path: &Path, interrupt: Interrupt, tune: fn(&mut Config)) -> Self {
        let mut config = Config::new();
        config.epoch_interruption(interrupt == Interrupt::Epoch);
        config.consume_fuel(interrupt == Interrupt::Fuel);
        config.cranelift_opt_level(pipeline_host::wasmtime::OptLevel::Speed);
        tune(&mut config);
        let engine = Engine::new(&config).expect("engine");
        let component = Component::from_file(&engine, path).expect("component");
        Self::start_with(&engine, &component, interrupt == Interrupt::Fuel)
    }

    /// An instance of `component`, compiled by `engine`, after its `init`.
    #[allow(dead_code, reason = "the compilers bench's")]
    pub fn start(engine: &Engine, component: &Component) -> Self {
        Self::start_with(engine, component, false)
    }

    fn start_with(engine: &Engine, component: &Component, fuel: bool) -> Self {
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
        Transform::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).expect("host imports");
        let pre =
            TransformPre::new(linker.instantiate_pre(component).expect("link")).expect("world");
        let mut store = Store::new(engine, Ctx::new());
        store.set_epoch_deadline(1 << 40);
        if fuel {
            store.set_fuel(u64::MAX).expect("fuel is on");
        }
        let bindings = pre.instantiate(&mut store).expect("instantiate");
        bindings
            .call_init(&mut store, &[])
            .expect("init")
            .expect("init accepted");
        Self {
            store: store.into(),
            bindings,
            fuel,
        }
    }

    /// Calls `transform` once per batch; returns the outputs.
    pub fn run(&self, batches: &[InputBatch]) -> usize {
        let mut store = self.store.borrow_mut();
        let mut outputs = 0;
        for batch in batches {
            if self.fuel {
                store.set_fuel(u64::MAX).expect("fuel is on");
            } else {
                store.set_epoch_deadline(1 << 40);
            }
            let answer = self
                .bindings
                .call_transform(&mut *store, batch)
                .expect("transform");
            outputs += answer.outputs.len() / wire_layout::OUTPUT_WORDS;
        }
        outputs
    }
}

/// `records` packed as the host packs them, `batch_size` to a batch.
pub fn pack(records: &[Record], batch_size: usize) -> Vec<InputBatch> {
    records
        .chunks(batch_size)
        .map(|chunk| {
            let mut batch = InputBatch {
                bytes: Vec::new(),
                records: Vec::new(),
                attributes: Vec::new(),
            };
            let mut push = |data: &[u8]| {
                let offset = batch.bytes.len() as u32;
                batch.bytes.extend_from_slice(data);
                [offset, data.len() as u32]
            };
            let mut records = Vec::new();
            let mut attributes = Vec::new();
            for record in chunk {
                let key = record
                    .key
                    .as_ref()
                    .map_or([wire_layout::NONE, 0], |k| push(k));
                let payload = push(&record.payload);
                let first = (attributes.len() / wire_layout::ATTRIBUTE_WORDS) as u32;
                for (name, value) in &record.attributes {
                    let [n0, n1] = push(name.as_bytes());
                    let [v0, v1] = push(value.as_bytes());
                    attributes.extend_from_slice(&[n0, n1, v0, v1]);
                }
                let count = record.attributes.len() as u32;
                records.extend_from_slice(&[key[0], key[1], payload[0], payload[1], first, count]);
            }
            batch.records = records;
            batch.attributes = attributes;
            batch
        })
        .collect()
}
