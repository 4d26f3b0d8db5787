//! What a plugin instance may touch: WASI with nothing granted, a memory cap, the
//! host's logging and metrics imports, and a bounded tail of its stderr.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::pipeline::plugin::{host, lookup, types};
use super::bindings_v0_1::pipeline::plugin as v0_1;
use super::tables::{LookupFailure, MAX_KEY_BYTES, MAX_KEYS_PER_GET, Tables};

/// Longest log message or stderr tail the host keeps from a plugin.
const MAX_TEXT: usize = 4096;
/// Log lines a plugin may write in one call; the rest are dropped (said once).
const MAX_LOG_LINES_PER_CALL: u32 = 100;
/// Longest counter or gauge name, and how many distinct names one call may report.
const MAX_METRIC_NAME: usize = 128;
const MAX_METRIC_NAMES: usize = 256;
/// Linear memories, tables and instances one plugin instance may have, and elements per
/// table: generous for any language's component, bounded for a hostile one.
const MAX_MEMORIES: usize = 8;
const MAX_TABLES: usize = 64;
const MAX_INSTANCES: usize = 64;
const MAX_TABLE_ELEMENTS: usize = 1_000_000;
/// Host bytes one table element takes (a pointer): tables live outside linear memory, so
/// they are counted against the memory cap at this size (64 tables of a million elements
/// would otherwise be ~512 MiB of host memory the cap never saw).
const TABLE_ELEMENT_BYTES: usize = 8;

/// Per-instance state inside a wasmtime `Store`.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    stderr: StderrTail,
    label: String,
    pub(crate) telemetry: Telemetry,
    /// Log lines written in the current call.
    log_lines: u32,
    /// When the current call must end, blocked in WASI or not.
    call_deadline: Option<std::time::Instant>,
    /// The lookup tables the plugin may read (contract 0.2).
    tables: Tables,
    /// Time the current call waited on lookups (its deadline moved by as much).
    lookup_waited: std::time::Duration,
}

/// Counters and gauges a plugin reported during one call.
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    pub(crate) counters: BTreeMap<String, u64>,
    pub(crate) gauges: BTreeMap<String, f64>,
    /// Reports refused: a name that is not a valid metric name, or one too many.
    pub(crate) dropped: u64,
}

impl StoreState {
    pub(crate) fn new(memory_bytes: usize, label: String, tables: Tables) -> Self {
        let stderr = StderrTail::default();
        // No preopened directories, no environment, no arguments, no network (the
        // builder denies sockets and name lookups by default); stdout is discarded.
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                limit: memory_bytes,
                total: 0,
                hit: false,
            },
            stderr,
            label,
            telemetry: Telemetry::default(),
            log_lines: 0,
            call_deadline: None,
            tables,
            lookup_waited: std::time::Duration::ZERO,
        }
    }

    /// Before each call: what the plugin wrote to stderr before belongs to other
    /// records, the per-call log allowance starts again, and the call may run (or
    /// block in WASI) until `deadline`.
    pub(crate) fn begin_call(&mut self, deadline: std::time::Instant) {
        self.stderr.clear();
        self.log_lines = 0;
        self.call_deadline = Some(deadline);
        self.lookup_waited = std::time::Duration::ZERO;
    }

    /// Moves the current call's deadline for blocking WASI calls by `by` (time the
    /// call spent waiting on the host, not running).
    fn extend_call_deadline(&mut self, by: std::time::Duration) {
        if let Some(deadline) = &mut self.call_deadline {
            *deadline += by;
        }
    }

    /// The resource table and the current call's deadline, for WASI's blocking calls.
    pub(crate) fn poll_parts(&mut self) -> (&mut ResourceTable, Option<std::time::Instant>) {
        (&mut self.table, self.call_deadline)
    }

    /// Time the current call spent waiting on lookups.
    pub(crate) fn lookup_waited(&self) -> std::time::Duration {
        self.lookup_waited
    }

    /// When the CPU deadline is reached in a call that waited on lookups: the time left
    /// before the call's deadline moved by those waits (zero: none left). `None` for a
    /// call that did not wait: its deadline is the CPU deadline.
    pub(crate) fn time_left_after_waits(&self) -> Option<std::time::Duration> {
        if self.lookup_waited.is_zero() {
            return None;
        }
        let deadline = self.call_deadline?;
        Some(deadline.saturating_duration_since(std::time::Instant::now()))
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.memory
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The trap of a call that blocked in WASI until its deadline (raised by `blocking.rs`,
/// classified here with the other traps).
#[derive(Debug, thiserror::Error)]
#[error("blocked in WASI (a sleep or a poll) until the call's deadline")]
pub(crate) struct BlockedPastDeadline;

/// Denies memory growth past the cap by trapping, and remembers that it did. The cap
/// is on all of an instance's linear memories and tables together.
struct MemoryCap {
    limit: usize,
    /// Bytes of all memories so far.
    total: usize,
    hit: bool,
}

/// The trap raised when a plugin grows its memory past the cap.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (plugin asked for {desired} bytes)")]
pub(crate) struct MemoryLimitExceeded {
    limit: usize,
    desired: usize,
}

impl MemoryCap {
    /// Takes `bytes` more of the cap, or traps (remembering it) when they do not fit.
    fn grow(&mut self, bytes: usize) -> wasmtime::Result<bool> {
        let total = self.total.saturating_add(bytes);
        if total > self.limit {
            self.hit = true;
            return Err(MemoryLimitExceeded {
                limit: self.limit,
                desired: total,
            }
            .into());
        }
        self.total = total;
        Ok(true)
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.grow(
            desired
                .saturating_sub(current)
                .saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// How a call into the plugin failed, classified from the trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrapKind {
    Deadline,
    MemoryLimit,
    Other,
}

pub(crate) fn classify_trap(store: &Store<StoreState>, error: &wasmtime::Error) -> TrapKind {
    if store.data().memory.hit || error.downcast_ref::<MemoryLimitExceeded>().is_some() {
        TrapKind::MemoryLimit
    } else if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)
        || error.downcast_ref::<BlockedPastDeadline>().is_some()
    {
        TrapKind::Deadline
    } else {
        TrapKind::Other
    }
}

/// The trap, plus the last line the plugin wrote to stderr (its panic message).
pub(crate) fn describe_trap(store: &Store<StoreState>, error: &wasmtime::Error) -> String {
    let trap = match classify_trap(store, error) {
        TrapKind::Deadline if error.downcast_ref::<BlockedPastDeadline>().is_some() => {
            "deadline exceeded while blocked in WASI (a sleep or a poll)".to_owned()
        }
        TrapKind::Deadline => "CPU deadline exceeded".to_owned(),
        TrapKind::MemoryLimit => format!(
            "memory limit of {} bytes exceeded",
            store.data().memory.limit
        ),
        TrapKind::Other => match error.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{error}"),
        },
    };
    match store.data().stderr.last_line() {
        Some(line) => format!("{trap}; plugin stderr: {line}"),
        None => trap,
    }
}

impl types::Host for StoreState {}

// Contract 0.1: the same host functions, no lookups.
impl v0_1::types::Host for StoreState {}

impl v0_1::host::Host for StoreState {
    fn log(&mut self, level: v0_1::types::LogLevel, message: String) {
        let level = match level {
            v0_1::types::LogLevel::Trace => types::LogLevel::Trace,
            v0_1::types::LogLevel::Debug => types::LogLevel::Debug,
            v0_1::types::LogLevel::Info => types::LogLevel::Info,
            v0_1::types::LogLevel::Warn => types::LogLevel::Warn,
            v0_1::types::LogLevel::Error => types::LogLevel::Error,
        };
        host::Host::log(self, level, message);
    }

    fn counter(&mut self, name: String, delta: u64) {
        host::Host::counter(self, name, delta);
    }

    fn gauge(&mut self, name: String, value: f64) {
        host::Host::gauge(self, name, value);
    }
}

impl host::Host for StoreState {
    fn log(&mut self, level: types::LogLevel, message: String) {
        self.log_lines = self.log_lines.saturating_add(1);
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            if self.log_lines == MAX_LOG_LINES_PER_CALL + 1 {
                tracing::warn!(plugin = %self.label, "more than {MAX_LOG_LINES_PER_CALL} log lines in one call: the rest of this call's are dropped");
            }
            return;
        }
        // One plugin line is one host line: a line break cannot forge another entry.
        let message = truncate(&message).replace('\n', "\\n").replace('\r', "\\r");
        let plugin = self.label.as_str();
        match level {
            types::LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            types::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            types::LogLevel::Info => tracing::info!(plugin, "{message}"),
            types::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            types::LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn counter(&mut self, name: String, delta: u64) {
        if !self.telemetry.counters.contains_key(&name)
            && !new_metric_name(&name, self.telemetry.counters.len())
        {
            self.telemetry.dropped += 1;
            return;
        }
        let counter = self.telemetry.counters.entry(name).or_default();
        *counter = counter.saturating_add(delta);
    }

    fn gauge(&mut self, name: String, value: f64) {
        if !value.is_finite() {
            // CloudWatch takes no NaN or infinity.
            self.telemetry.dropped += 1;
            return;
        }
        if !self.telemetry.gauges.contains_key(&name)
            && !new_metric_name(&name, self.telemetry.gauges.len())
        {
            self.telemetry.dropped += 1;
            return;
        }
        self.telemetry.gauges.insert(name, value);
    }
}

impl lookup::Host for StoreState {
    fn get(
        &mut self,
        table: String,
        keys: Vec<String>,
    ) -> Result<Vec<Option<Vec<u8>>>, lookup::LookupError> {
        let refused = |why: String| Err(lookup::LookupError::NotGranted(why));
        let Some(reader) = self.tables.clone() else {
            return refused(format!(
                "no lookup table is granted to this plugin (asked for `{table}`)"
            ));
        };
        if keys.len() > MAX_KEYS_PER_GET {
            return refused(format!(
                "{} keys in one lookup of `{table}`: at most {MAX_KEYS_PER_GET}",
                keys.len()
            ));
        }
        // An empty key, or one longer than any table's key may be, is in no table: it is
        // answered `none` without being asked (a backend would refuse the whole request,
        // or an empty key would change the URL an HTTP table fetches).
        let askable = |k: &String| !k.is_empty() && k.len() <= MAX_KEY_BYTES;
        let asked: Vec<String> = keys.iter().filter(|k| askable(k)).cloned().collect();
        let started = std::time::Instant::now();
        let answer = if asked.is_empty() {
            Ok(Vec::new())
        } else {
            reader.get(&table, &asked)
        };
        // Waiting on a table is not the plugin's CPU: the deadline (and a WASI wait's)
        // moves by what the lookup took.
        let waited = started.elapsed();
        self.lookup_waited += waited;
        self.extend_call_deadline(waited);
        let values = match answer {
            Ok(values) if values.len() == asked.len() => values,
            Ok(values) => {
                return Err(lookup::LookupError::Unavailable(format!(
                    "table `{table}` answered {} values for {} keys (host bug)",
                    values.len(),
                    asked.len()
                )));
            }
            Err(LookupFailure::NotGranted(why)) => return refused(why),
            Err(LookupFailure::Unavailable(why)) => {
                return Err(lookup::LookupError::Unavailable(why));
            }
        };
        // The answer is copied into the plugin's memory: one larger than half its cap
        // could not fit beside the plugin's own data.
        let bytes: usize = values.iter().flatten().map(bytes::Bytes::len).sum();
        if bytes > self.memory.limit / 2 {
            return refused(format!(
                "the answer to a lookup of `{table}` is {bytes} bytes, more than half the plugin's memory cap ({} bytes): ask for fewer keys at once",
                self.memory.limit
            ));
        }
        let mut values = values.into_iter();
        Ok(keys
            .iter()
            .map(|k| {
                if askable(k) {
                    values.next().flatten().map(|b| b.to_vec())
                } else {
                    None
                }
            })
            .collect())
    }
}

/// Whether a name not seen yet in this call is taken: names are 1 to 128 characters of letters, digits
/// and `._-/:` (they become CloudWatch metric names and log fields, so nothing that could
/// break a log line or a query), and a call reports at most `MAX_METRIC_NAMES` of them.
fn new_metric_name(name: &str, names: usize) -> bool {
    names < MAX_METRIC_NAMES && valid_metric_name(name)
}

/// 1 to 128 characters of letters, digits and `._-/:`.
pub(crate) fn valid_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_METRIC_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b))
}

fn truncate(text: &str) -> &str {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A plugin's stderr: never full, never failing, keeps only the last few KiB
/// (where a panic message lands).
#[derive(Clone, Default)]
struct StderrTail {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl StderrTail {
    fn clear(&self) {
        if let Ok(mut buffer) = self.buffer.lock() {
            buffer.clear();
        }
    }

    fn append(&self, data: &[u8]) {
        let Ok(mut buffer) = self.buffer.lock() else {
            return;
        };
        buffer.extend_from_slice(data);
        if buffer.len() > 2 * MAX_TEXT {
            let excess = buffer.len() - MAX_TEXT;
            buffer.drain(..excess);
        }
    }

    /// The plugin's panic message if it panicked (`panicked at <where>:` and the
    /// message on the next line), else its last non-empty line.
    fn last_line(&self) -> Option<String> {
        let buffer = self.buffer.lock().ok()?;
        let text = String::from_utf8_lossy(&buffer);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let line = match lines.iter().rposition(|l| l.contains("panicked at")) {
            Some(at) => lines[at..]
                .iter()
                .take(2)
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
            None => (*lines.last()?).to_owned(),
        };
        Some(truncate(&line).to_owned())
    }
}

impl wasmtime_wasi::cli::IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(MAX_TEXT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module with two memories and `grow`, which grows each by 100 MiB.
    const TWO_MEMORIES: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type: () -> i32
        0x03, 0x02, 0x01, 0x00, // one function of that type
        0x05, 0x05, 0x02, 0x00, 0x00, 0x00, 0x00, // two memories, 0 pages each
        0x07, 0x08, 0x01, 0x04, b'g', b'r', b'o', b'w', 0x00, 0x00, // export "grow"
        0x0a, 0x0f, 0x01, 0x0d, 0x00, // code: one body, no locals
        0x41, 0xc0, 0x0c, 0x40, 0x00, 0x1a, // memory.grow 0 by 1600 pages; drop
        0x41, 0xc0, 0x0c, 0x40, 0x01, 0x0b, // memory.grow 1 by 1600 pages; end
    ];

    #[test]
    fn the_memory_cap_holds_across_all_memories() {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, TWO_MEMORIES).expect("a valid module");
        let mut store = Store::new(
            &engine,
            StoreState::new(128 << 20, "two-memories".into(), None),
        );
        store.limiter(|s| s.limiter());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).expect("instance");
        let grow = instance
            .get_typed_func::<(), i32>(&mut store, "grow")
            .expect("grow");
        // 100 MiB fits the 128 MiB cap; the second memory's 100 MiB would pass it.
        let err = grow
            .call(&mut store, ())
            .expect_err("the cap is on the total");
        assert!(
            err.downcast_ref::<MemoryLimitExceeded>().is_some(),
            "{err:?}"
        );
        assert_eq!(classify_trap(&store, &err), TrapKind::MemoryLimit);
    }
}
