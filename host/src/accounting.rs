//! Accounting: every input record ends as transformed, dropped, failed (DLQ), or, in
//! Lambda, handed back to its event source for a retry.

use crate::record::Outcome;

/// Counts for a run. `input == transformed + dropped + failed + retried` always holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Input records read (including ones that could not be decoded).
    pub input: u64,
    /// Input records that produced at least one output.
    pub transformed: u64,
    /// Input records the plugin deliberately dropped.
    pub dropped: u64,
    /// Input records sent to the dead-letter queue.
    pub failed: u64,
    /// Input records handed back to the event source for a retry (Lambda only).
    pub retried: u64,
    /// Output records produced (fan-out makes this differ from `transformed`).
    pub outputs: u64,
}

impl Summary {
    /// Counts one input record's outcome.
    pub fn count(&mut self, outcome: &Outcome) {
        self.input += 1;
        match outcome {
            Outcome::Transformed(outputs) => {
                self.transformed += 1;
                self.outputs += outputs.len() as u64;
            }
            Outcome::Dropped => self.dropped += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }

    /// Adds another summary's counts to these.
    pub fn add(&mut self, other: &Summary) {
        self.input += other.input;
        self.transformed += other.transformed;
        self.dropped += other.dropped;
        self.failed += other.failed;
        self.retried += other.retried;
        self.outputs += other.outputs;
    }

    /// Counts one input record handed back to the event source.
    pub fn count_retry(&mut self) {
        self.input += 1;
        self.retried += 1;
    }

    /// Whether every input record is accounted for.
    pub fn balanced(&self) -> bool {
        self.input == self.transformed + self.dropped + self.failed + self.retried
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "in={} transformed={} dropped={} failed={} outputs={}",
            self.input, self.transformed, self.dropped, self.failed, self.outputs
        )?;
        if self.retried > 0 {
            write!(f, " retried={}", self.retried)?;
        }
        Ok(())
    }
}
