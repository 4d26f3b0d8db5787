//! The pipeline host: runs WebAssembly transform plugins over batches of records.
//!
//! Data flows one way, through one [`Pipeline`] whatever the front door: a source yields
//! items, each with its own identity; the [`engine`] runs their records through the
//! plugin chain, a batch per call, one [`Outcome`] per record; outputs go to sinks,
//! failures to the dead-letter queue; each item ends in one [`Verdict`], which its source
//! settles (an answer to Lambda, a deleted DLQ entry, ...); the [`Summary`] counts items
//! where they enter and verdicts where they settle, and the two must agree.
//!
//! # Layout
//! - [`settings`]: every setting in one table (flag, variable, default, bounds, parser).
//! - [`limits`]: [`Limits`], the time [`limits::Budget`] and the retry policy: the values the
//!   engine and sinks share (where each comes from: [`settings`]).
//! - [`record`]: the plain record, output, outcome and verdict types.
//! - [`sources`]: where items come from and where verdicts go back: local files, Lambda
//!   events (one decoder per event source, envelopes opened), S3 objects (also those a
//!   message names), dead-letter queues.
//! - [`engine`]: wasmtime, the sandbox, the packed batch encoding, the runner, chains,
//!   the precompiled cache. Knows nothing about AWS.
//! - [`sinks`]: outputs: JSON-lines files, Kinesis (KPL aggregates optional), SQS, S3,
//!   the Firehose and Pipes answers, and a scripted in-process sink the delivery rules
//!   are unit-tested with.
//! - [`kpl`]: the KPL aggregate format, read (Kinesis sources) and written (the
//!   aggregating Kinesis sink).
//! - [`dlq`]: the dead-letter envelope.
//! - [`pipeline`]: source -> batch -> chain -> sinks -> DLQ -> settle, for every front door.
//! - [`registry`]: plugin manifests, fetch and verify, hot swap, `host publish`.
//! - [`lambda`]: the Lambda front door: cold start, one source per event, the answer,
//!   and the stable `errorType` of every failure.
//! - [`metrics`]: CloudWatch Embedded Metric Format documents, one per invocation.
//! - [`cli`]: the command-line front doors (`host run`, `host reprocess`, `host publish`).
//! - [`aws`]: the AWS clients and the S3 calls sources and sinks share.
//! - [`idempotency`]: the store that remembers which records are done (DynamoDB).
//! - [`accounting`]: the ledger: items in == verdicts out.
//! - [`report`]: errors in one line at the edges.
//! - `allocator`: the host's allocator (mimalloc), set up before `main`.
#![deny(missing_docs)]

pub mod accounting;
mod allocator;
pub mod aws;
pub mod cli;
pub mod dlq;
pub mod engine;
pub mod idempotency;
pub mod kpl;
pub mod lambda;
pub mod limits;
pub mod lookup;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod registry;
pub mod report;
pub mod schemas;
pub mod settings;
pub mod sinks;
pub mod sources;
pub mod web;

pub use accounting::Summary;
pub use engine::{Engine, Plugin, PluginError, Runner};
pub use limits::Limits;
pub use pipeline::Pipeline;
pub use record::{Failure, FailureKind, Outcome, Output, Record, Verdict};
pub use settings::Settings;

/// The wasmtime this host embeds, for callers that need its types.
pub use wasmtime;
