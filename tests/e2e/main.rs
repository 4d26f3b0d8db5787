//! End-to-end tests: the real `host` binary running the real example plugins.
//!
//! The plugins are built for wasm32-wasip2 by `./dev test` (or `./dev plugins`) before
//! this runs; a missing plugin fails the test with that instruction.

mod emulator;
mod events;
mod exact;
mod faults;
mod infra;
mod lambda_harness;
mod proxy;
mod runtime_api;
mod support;

mod cases;
mod chain;
mod deadline;
mod dedup;
mod dlq_overflow;
mod front_doors;
mod lambda;
mod lifecycle;
mod limits;
mod matrix;
mod memories;
mod metrics;
mod new;
mod ordering;
mod python;
mod reprocess;
mod run;
mod s3_versions;
mod sqs_rules;
mod stall;
mod tiering;
