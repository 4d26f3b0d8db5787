//! The pipeline host: runs WebAssembly transform plugins over batches of records.
//!
//! Data flows one way: a source decodes input into [`Record`]s; the [`engine`] runs
//! them through the plugin in batches and returns one [`Outcome`] per record; outputs
//! go to sinks, failures to the dead-letter queue, and the [`Summary`] checks that
//! every record is accounted for.
//!
//! # Layout
//! - [`config`]: [`Limits`], validated in one place.
//! - [`record`]: the plain record, output and outcome types.
//! - [`engine`]: wasmtime, the sandbox, the packed batch encoding, the runner, chains,
//!   the precompiled cache.
//! - [`sources`]: input decoding: local files (JSON lines, CSV, lines) and AWS events.
//! - [`sinks`]: outputs: local JSON-lines files, Kinesis, SQS, S3.
//! - [`dlq`]: the dead-letter envelope.
//! - [`pipeline`]: one batch through plugin, sinks and DLQ, with per-item status.
//! - [`registry`]: plugin manifests, fetch and verify, hot swap, `host publish`.
//! - [`service`]: the pipeline around one plugin (plugin instance, sinks, DLQ).
//! - [`lambda`]: the Lambda custom runtime: environment, cold start, responses.
//! - [`aws`]: the AWS clients.
//! - [`accounting`]: the in = transformed + dropped + failed (+ retried) summary.
//! - [`cli`]: the `host` command line (`host run`, `host lambda`).
#![deny(missing_docs)]

pub mod accounting;
pub mod aws;
pub mod cli;
pub mod config;
pub mod dlq;
pub mod engine;
pub mod lambda;
pub mod pipeline;
pub mod record;
pub mod registry;
pub mod service;
pub mod sinks;
pub mod sources;

pub use accounting::Summary;
pub use config::{ConfigError, Limits};
pub use engine::{Engine, Plugin, PluginError, Runner};
pub use record::{Failure, FailureKind, Outcome, Output, Record};

/// The wasmtime this host embeds, for callers that need its types.
pub use wasmtime;
