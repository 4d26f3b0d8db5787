//! Logs and metrics, sent to the host (the plugin has no other way out).
//!
//! Compiled natively (unit tests, benches) they write to stderr or do nothing.

#[cfg(target_arch = "wasm32")]
use crate::wire::bindings::pipeline::plugin::{host, types::LogLevel};

macro_rules! log_fn {
    ($name:ident, $level:ident) => {
        #[doc = concat!("Logs `message` at level `", stringify!($name), "` through the host.")]
        pub fn $name(message: impl AsRef<str>) {
            #[cfg(target_arch = "wasm32")]
            host::log(LogLevel::$level, message.as_ref());
            #[cfg(not(target_arch = "wasm32"))]
            eprintln!("[{}] {}", stringify!($name), message.as_ref());
        }
    };
}

log_fn!(trace, Trace);
log_fn!(debug, Debug);
log_fn!(info, Info);
log_fn!(warn, Warn);
log_fn!(error, Error);

/// Adds `delta` to the host-side counter `name`.
///
/// Counters and gauges become metrics (`plugin.NAME` in the Lambda host's CloudWatch
/// metrics). A name is 1 to 128 letters, digits or `._-/:`; a plugin version may create
/// at most 50 names. Reports past either rule are dropped and counted by the host
/// (`PluginMetricsDropped`), with one warning.
pub fn counter(name: &str, delta: u64) {
    #[cfg(target_arch = "wasm32")]
    host::counter(name, delta);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (name, delta);
}

/// Sets the host-side gauge `name` to `value` (finite; the names as for [`counter`]).
pub fn gauge(name: &str, value: f64) {
    #[cfg(target_arch = "wasm32")]
    host::gauge(name, value);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (name, value);
}
