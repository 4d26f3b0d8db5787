//! Sinks: where outputs and dead-letter entries go.

mod file;

pub use file::{Emit, JsonLinesFile, Target};
