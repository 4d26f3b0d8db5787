#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
//!
//! # Layout
//! - `record`: [`Record`], the zero-copy view of one input record.
//! - `output`: [`Output`] and [`IntoOutputs`], what a transform returns.
//! - `error`: [`DomainError`], [`InfrastructureError`] and [`Error`].
//! - `json`: the JSON reader and writer behind `Record::json` and `Output::json`
//!   (serde_json's answers, strings scanned a word at a time).
//! - `config`: [`Config`] and [`config()`], the settings handed to `init`.
//! - `telemetry`: [`log`] and [`metrics`] through the host.
//! - [`lookup`]: reference data through the host, one call per batch of keys.
//! - `append`: short byte strings copied inline (the output batch, the JSON writer).
//! - `wire`: the packed batch encoding of `wit/plugin.wit` (hidden).

extern crate self as guest_sdk;

#[cfg(all(
    feature = "allocator",
    any(test, all(target_arch = "wasm32", not(target_feature = "atomics")))
))]
mod alloc;
mod append;
mod config;
mod error;
mod json;
pub mod lookup;
mod output;
mod record;
mod telemetry;
mod wire;

pub use config::{Config, config};
pub use error::{DomainError, Error, InfrastructureError};
pub use lookup::{Found, LookupError, lookup};
pub use output::{IntoOutputs, Output};
pub use record::Record;

/// The allocator of every plugin built with the SDK's default feature `allocator`: free
/// lists by size class, see `alloc.rs`.
#[cfg(all(
    feature = "allocator",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: alloc::SizeClasses = alloc::SizeClasses::new();

/// Log lines, tagged by the host with the plugin's name and version.
pub mod log {
    pub use crate::telemetry::{debug, error, info, trace, warn};
}

/// Counters and gauges, aggregated by the host per batch.
pub mod metrics {
    pub use crate::telemetry::{counter, gauge};
}

/// What the export macros expand to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::wire::bindings;
    pub use crate::wire::bindings::Guest;
    pub use crate::wire::{InputBatch, OutputBatch, PluginInfo, RecordFailure, WireError};
    pub use wit_bindgen;

    use crate::wire::OutputBuilder;
    use crate::{Config, Error, IntoOutputs, Record};

    pub fn info(name: &str, version: &str) -> PluginInfo {
        PluginInfo {
            name: name.to_owned(),
            version: version.to_owned(),
        }
    }

    pub fn no_init(_: &Config) -> Result<(), Error> {
        Ok(())
    }

    pub fn init<E: Into<Error>>(
        entries: Vec<(String, String)>,
        user_init: fn(&Config) -> Result<(), E>,
    ) -> Result<(), WireError> {
        let config = Config::new(entries);
        user_init(&config).map_err(|e| WireError::from(e.into()))?;
        config.install();
        Ok(())
    }

    fn records(batch: &InputBatch) -> impl Iterator<Item = Result<Record<'_>, Error>> {
        (0..batch.records.len() / crate::wire::RECORD_WORDS).map(|i| {
            Record::from_batch(batch, i)
                .ok_or_else(|| Error::domain("host sent a record with spans outside its batch"))
        })
    }

    pub fn run_per_record<O, E, F>(batch: &InputBatch, transform: F) -> OutputBatch
    where
        F: Fn(Record<'_>) -> Result<O, E>,
        O: IntoOutputs,
        E: Into<Error>,
    {
        let mut out = OutputBuilder::with_capacity(
            batch.records.len() / crate::wire::RECORD_WORDS,
            batch.bytes.len(),
        );
        for record in records(batch) {
            out.push_result(record.and_then(|r| transform(r).map_err(Into::into)));
        }
        out.finish()
    }

    pub fn run_batch<O, E, F>(batch: &InputBatch, transform: F) -> OutputBatch
    where
        F: Fn(&[Record<'_>]) -> Vec<Result<O, E>>,
        O: IntoOutputs,
        E: Into<Error>,
    {
        let mut out = OutputBuilder::with_capacity(
            batch.records.len() / crate::wire::RECORD_WORDS,
            batch.bytes.len(),
        );
        let decoded: Vec<_> = records(batch).collect();
        let valid: Vec<Record<'_>> = decoded
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        let mut results = transform(&valid).into_iter();
        let returned = results.len();
        for record in decoded {
            let result = match record {
                Err(e) => Err(e),
                Ok(_) => match results.next() {
                    Some(r) => r.map_err(Into::into),
                    None => Err(Error::domain(format!(
                        "batch transform returned {returned} results for {} records",
                        valid.len()
                    ))),
                },
            };
            out.push_result(result);
        }
        out.finish()
    }
}

/// Exports a per-record transform as this crate's plugin.
///
/// `transform` is any `fn(Record) -> Result<O, E>` where `O` is an [`Output`],
/// `Option<Output>`, `Vec<Output>` or `()`, and `E` converts into [`Error`]
/// ([`DomainError`], [`InfrastructureError`], `serde_json::Error`, ...).
/// An optional `init = f` names a `fn(&Config) -> Result<(), E>` run once per instance;
/// its error refuses the plugin at start-up.
///
/// ```ignore
/// guest_sdk::export_transform!(transform);
/// guest_sdk::export_transform!(transform, init = check_config);
/// ```
#[macro_export]
macro_rules! export_transform {
    ($transform:path $(,)?) => {
        $crate::export_transform!($transform, init = $crate::__private::no_init);
    };
    ($transform:path, init = $init:path $(,)?) => {
        $crate::__export_plugin!($init, |batch| $crate::__private::run_per_record(
            batch, $transform
        ));
    };
}

/// Exports a batch transform: `fn(&[Record]) -> Vec<Result<O, E>>`, one result per
/// record, in order. Use it when records of a batch are worth handling together.
#[macro_export]
macro_rules! export_batch_transform {
    ($transform:path $(,)?) => {
        $crate::export_batch_transform!($transform, init = $crate::__private::no_init);
    };
    ($transform:path, init = $init:path $(,)?) => {
        $crate::__export_plugin!($init, |batch| $crate::__private::run_batch(
            batch, $transform
        ));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin {
    ($init:path, $run:expr) => {
        // Only the wasm build exports the component's functions; a native build of the
        // plugin crate (unit tests, benches) links as a plain library.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Plugin;
            impl $crate::__private::Guest for Plugin {
                fn info() -> $crate::__private::PluginInfo {
                    $crate::__private::info(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
                }
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), $crate::__private::WireError> {
                    $crate::__private::init(config, $init)
                }
                fn transform(
                    batch: $crate::__private::InputBatch,
                ) -> $crate::__private::OutputBatch {
                    let run = $run;
                    run(&batch)
                }
            }
            $crate::__private::bindings::__export_transform_world!(
                Plugin with_types_in $crate::__private::bindings
            );
        };
    };
}
