//! End-to-end tests: the real `host` binary running the real example plugins.
//!
//! The plugins are built for wasm32-wasip2 by `./dev test` (or `./dev plugins`) before
//! this runs; a missing plugin fails the test with that instruction.
//!
//! Helper modules, no tests of their own:
//! - `support`: plugin paths, `host` runs (`Scratch::host` for any command, the
//!   `Scratch::run` builder for `host run`), the `Run` it leaves (its summary's counts,
//!   text or JSON), DLQ entries' kinds;
//! - `lambda_harness`: one Lambda function under test (`Lambda::builder` for its
//!   settings), invoked one event at a time, its answers, log, metrics documents and the
//!   counts they add up to;
//! - `runtime_api`: the Lambda Runtime API server and the function process under it;
//! - `emulator`: the local AWS emulator (moto) and SDK clients pointed at it;
//! - `events`: AWS events as Lambda delivers them, and `batchItemFailures`;
//! - `proxy`: a fault-injecting proxy in front of the emulator.
//!
//! Every other module is tests, one subject each (its first lines say which); `matrix`
//! borrows `s3_versions::versioned_bucket`.

mod emulator;
mod events;
mod lambda_harness;
mod proxy;
mod runtime_api;
mod support;

mod cases;
mod chain;
mod deadline;
mod dedup;
mod dlq_overflow;
mod envelopes;
mod exact;
mod faults;
mod front_doors;
mod guests;
mod infra;
mod javascript;
mod lambda;
mod lifecycle;
mod limits;
mod lookups;
mod matrix;
mod memories;
mod metrics;
mod new;
mod ordering;
mod python;
mod reprocess;
mod run;
mod s3_versions;
mod schemas;
mod schemas_out;
mod sqs_rules;
mod stall;
mod streams;
mod tiering;
