//! Accounting: inputs are counted where they enter the pipeline and verdicts where they
//! settle, separately, so an item that entered and never settled (or settled twice) is
//! caught instead of balancing by construction.

use crate::record::{Output, Verdict};

/// Counts for a run: what entered, and what the verdicts were.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Items that entered (including ones that could not be decoded).
    pub input: u64,
    /// Items whose outputs were all delivered.
    pub transformed: u64,
    /// Items the plugin deliberately dropped.
    pub dropped: u64,
    /// Items sent to the dead-letter queue.
    pub failed: u64,
    /// Items handed back to the event source for a retry.
    pub retried: u64,
    /// Items an earlier delivery already finished (the idempotency store knew them).
    pub duplicate: u64,
    /// Outputs delivered (fan-out makes this differ from `transformed`).
    pub outputs: u64,
}

impl Summary {
    /// The counts as a JSON object (`in`, `transformed`, `dropped`, `failed`,
    /// `retried`, `duplicate`, `outputs`), for answers and summaries to add to.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let counts = [
            ("in", self.input),
            ("transformed", self.transformed),
            ("dropped", self.dropped),
            ("failed", self.failed),
            ("retried", self.retried),
            ("duplicate", self.duplicate),
            ("outputs", self.outputs),
        ];
        counts
            .into_iter()
            .map(|(name, n)| (name.to_owned(), n.into()))
            .collect()
    }

    /// Items with a verdict.
    pub fn settled(&self) -> u64 {
        self.transformed + self.dropped + self.failed + self.retried + self.duplicate
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
        if self.duplicate > 0 {
            write!(f, " duplicate={}", self.duplicate)?;
        }
        Ok(())
    }
}

/// Some items entered and did not settle exactly once.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "accounting does not balance: {entered} items entered, {settled} verdicts settled ({summary})"
)]
pub struct Unbalanced {
    /// Items that entered.
    pub entered: u64,
    /// Verdicts that settled.
    pub settled: u64,
    /// The counts.
    pub summary: Summary,
}

/// The two counts of a run: one bumped where items enter, one where verdicts settle
/// (and, for the metrics, the dead-lettered items by failure kind).
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    entered: u64,
    settled: Summary,
    failed_by_kind: std::collections::BTreeMap<&'static str, u64>,
    outputs_by_sink: std::collections::BTreeMap<String, u64>,
}

impl Ledger {
    /// `n` items entered the pipeline.
    pub fn enter(&mut self, n: usize) {
        self.entered += n as u64;
    }

    /// One item's verdict settled; a delivered item's outputs are counted under the
    /// sink `sink_of` names.
    pub fn settle(&mut self, verdict: &Verdict, sink_of: impl Fn(&Output) -> &str) {
        let s = &mut self.settled;
        match verdict {
            Verdict::Delivered(outputs) => {
                s.transformed += 1;
                s.outputs += outputs.len() as u64;
                for output in outputs {
                    let sink = sink_of(output);
                    match self.outputs_by_sink.get_mut(sink) {
                        Some(count) => *count += 1,
                        None => {
                            self.outputs_by_sink.insert(sink.to_owned(), 1);
                        }
                    }
                }
            }
            Verdict::Dropped => s.dropped += 1,
            Verdict::DeadLettered(failure) => {
                s.failed += 1;
                *self
                    .failed_by_kind
                    .entry(failure.kind.as_str())
                    .or_default() += 1;
            }
            Verdict::Retry(_) => s.retried += 1,
            Verdict::Duplicate => s.duplicate += 1,
        }
    }

    /// The dead-lettered items so far, by failure kind.
    pub fn failed_by_kind(&self) -> &std::collections::BTreeMap<&'static str, u64> {
        &self.failed_by_kind
    }

    /// The delivered outputs so far, by sink.
    pub fn outputs_by_sink(&self) -> &std::collections::BTreeMap<String, u64> {
        &self.outputs_by_sink
    }

    /// The summary so far (`input` is what entered).
    pub fn summary(&self) -> Summary {
        Summary {
            input: self.entered,
            ..self.settled
        }
    }

    /// The summary, if every item that entered settled exactly once.
    pub fn close(&self) -> Result<Summary, Unbalanced> {
        let summary = self.summary();
        let settled = self.settled.settled();
        if settled != self.entered {
            return Err(Unbalanced {
                entered: self.entered,
                settled,
                summary,
            });
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Failure, FailureKind, Output};

    fn failure() -> Failure {
        Failure {
            kind: FailureKind::Domain,
            message: "bad".into(),
            attempts: 1,
            stage: 0,
        }
    }

    #[test]
    fn every_verdict_counts_once() {
        let mut ledger = Ledger::default();
        ledger.enter(5);
        for verdict in [
            Verdict::Delivered(vec![Output::default(), Output::default()]),
            Verdict::Dropped,
            Verdict::DeadLettered(failure()),
            Verdict::Retry("throttled".into()),
            Verdict::Duplicate,
        ] {
            ledger.settle(&verdict, |_| "default");
        }
        let summary = ledger.close().expect("balanced");
        assert_eq!(
            summary.to_string(),
            "in=5 transformed=1 dropped=1 failed=1 outputs=2 retried=1 duplicate=1"
        );
    }

    #[test]
    fn a_lost_item_is_caught() {
        let mut ledger = Ledger::default();
        ledger.enter(3);
        ledger.settle(&Verdict::Dropped, |_| "default");
        ledger.settle(&Verdict::DeadLettered(failure()), |_| "default");
        let err = ledger.close().expect_err("one item never settled");
        assert_eq!((err.entered, err.settled), (3, 2));
        assert!(
            err.to_string().contains("3 items entered, 2 verdicts"),
            "{err}"
        );
    }

    #[test]
    fn an_item_settled_twice_is_caught() {
        let mut ledger = Ledger::default();
        ledger.enter(1);
        ledger.settle(&Verdict::Dropped, |_| "default");
        ledger.settle(&Verdict::Dropped, |_| "default");
        assert!(ledger.close().is_err());
    }
}
