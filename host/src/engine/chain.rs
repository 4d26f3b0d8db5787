//! Plugins in a row: each stage's outputs are the next stage's records, and every
//! input record still ends as exactly one outcome.
//!
//! An input record's outcome is decided over the whole chain: `Transformed` with the
//! last stage's outputs; `Dropped` when some stage dropped everything it led to;
//! `Failed` as soon as any record it led to fails, with that stage's failure (its
//! `stage` set). A failed input is dead-lettered whole, with none of its other outputs
//! delivered, so reprocessing it through the chain does not duplicate anything.
//!
//! A record handed to the next stage keeps the attributes of the record it came from,
//! overlaid with the ones the plugin attached; an output without a destination or a key
//! inherits the ones an earlier stage chose.

use super::Runner;
use crate::limits::Budget;
use crate::record::{Outcome, Output, Record};

/// What one stage saw: records in, and what became of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageStats {
    /// Records handed to the stage.
    pub input: u64,
    /// Outputs it produced.
    pub outputs: u64,
    /// Records it dropped.
    pub dropped: u64,
    /// Records it failed.
    pub failed: u64,
}

impl std::fmt::Display for StageStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "in={} out={} dropped={} failed={}",
            self.input, self.outputs, self.dropped, self.failed
        )
    }
}

/// One or more plugins, run in order over each batch.
pub struct Chain {
    stages: Vec<Runner>,
    stats: Vec<StageStats>,
}

impl Chain {
    /// A chain of `stages`, in order; at least one.
    pub fn new(stages: Vec<Runner>) -> Self {
        let stats = vec![StageStats::default(); stages.len()];
        Self { stages, stats }
    }

    /// The stages, in order.
    pub fn stages(&self) -> &[Runner] {
        &self.stages
    }

    /// Replaces stage `index` (a new plugin version) between two batches.
    pub fn replace(&mut self, index: usize, runner: Runner) {
        if let Some(stage) = self.stages.get_mut(index) {
            *stage = runner;
        }
    }

    /// Each stage's plugin (`name@version`) and what its runner saw since the last
    /// call, in order.
    pub fn take_metrics(&mut self) -> Vec<(String, super::RunnerMetrics)> {
        self.stages
            .iter_mut()
            .map(|runner| (runner.plugin().label(), runner.take_metrics()))
            .collect()
    }

    /// Per-stage counts since the chain was built.
    pub fn stats(&self) -> &[StageStats] {
        &self.stats
    }

    /// `name@version` of each stage, joined with ` -> `.
    pub fn label(&self) -> String {
        self.stages
            .iter()
            .map(|r| r.plugin().label())
            .collect::<Vec<_>>()
            .join(" -> ")
    }

    /// Records per call into a plugin (the first stage's limit).
    pub fn batch_size(&self) -> usize {
        self.stages
            .first()
            .map_or(1, |s| s.plugin().limits().batch_size)
    }

    /// Runs `records` through every stage within `budget`; one outcome per record, in
    /// order.
    pub fn run(&mut self, records: &[Record], budget: Budget) -> Vec<Outcome> {
        let batch_size = self.batch_size();
        let Some((first, rest)) = self.stages.split_first_mut() else {
            return vec![Outcome::Dropped; records.len()];
        };
        let mut outcomes = first.run(records, budget);
        tally(&mut self.stats[0], records.len(), &outcomes);
        if rest.is_empty() {
            return outcomes;
        }
        // The records in flight between stages: the input each came from, the record,
        // and the destination chosen so far. An input taking part keeps an emptied
        // `Transformed` outcome until the last stage fills it.
        let mut flight = Flight::default();
        for (owner, outcome) in outcomes.iter_mut().enumerate() {
            if let Outcome::Transformed(outputs) = outcome {
                for output in std::mem::take(outputs) {
                    flight.push(owner, &records[owner], output);
                }
            }
        }
        let stages = rest.len();
        for (offset, stage) in rest.iter_mut().enumerate() {
            let index = offset + 1;
            let mut results = Vec::with_capacity(flight.records.len());
            for chunk in flight.records.chunks(batch_size) {
                results.extend(stage.run(chunk, budget));
            }
            tally(&mut self.stats[index], flight.records.len(), &results);
            let mut next = Flight::default();
            for (j, result) in results.into_iter().enumerate() {
                let owner = flight.owners[j];
                match result {
                    Outcome::Transformed(outputs) => {
                        for mut output in outputs {
                            if output.destination.is_none() {
                                output.destination.clone_from(&flight.destinations[j]);
                            }
                            if output.key.is_none() {
                                output.key.clone_from(&flight.records[j].key);
                            }
                            match &mut outcomes[owner] {
                                Outcome::Transformed(list) if index == stages => list.push(output),
                                Outcome::Transformed(_) => {
                                    next.push(owner, &flight.records[j], output);
                                }
                                _ => {}
                            }
                        }
                    }
                    Outcome::Dropped => {}
                    Outcome::Failed(mut failure) => {
                        if matches!(outcomes[owner], Outcome::Transformed(_)) {
                            failure.stage = index;
                            outcomes[owner] = Outcome::Failed(failure);
                        }
                    }
                }
            }
            // A record whose input failed later in this stage goes no further.
            flight = next.retain(|owner| matches!(outcomes[owner], Outcome::Transformed(_)));
        }
        for outcome in &mut outcomes {
            if matches!(outcome, Outcome::Transformed(list) if list.is_empty()) {
                *outcome = Outcome::Dropped;
            }
        }
        outcomes
    }
}

/// Records between two stages, column by column (the runner takes a `&[Record]`).
#[derive(Default)]
struct Flight {
    owners: Vec<usize>,
    records: Vec<Record>,
    destinations: Vec<Option<String>>,
}

impl Flight {
    fn push(&mut self, owner: usize, from: &Record, output: Output) {
        let destination = output.destination.clone();
        self.owners.push(owner);
        self.records.push(output_to_record(from, output));
        self.destinations.push(destination);
    }

    fn retain(self, keep: impl Fn(usize) -> bool) -> Self {
        let mut kept = Self::default();
        for ((owner, record), destination) in self
            .owners
            .into_iter()
            .zip(self.records)
            .zip(self.destinations)
        {
            if keep(owner) {
                kept.owners.push(owner);
                kept.records.push(record);
                kept.destinations.push(destination);
            }
        }
        kept
    }
}

fn output_to_record(from: &Record, output: Output) -> Record {
    let mut attributes = from.attributes.clone();
    for (name, value) in output.attributes {
        match attributes.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => attributes.push((crate::record::attribute_name(name), value)),
        }
    }
    Record {
        key: output.key,
        payload: output.payload,
        attributes,
    }
}

fn tally(stats: &mut StageStats, input: usize, outcomes: &[Outcome]) {
    stats.input += input as u64;
    for outcome in outcomes {
        match outcome {
            Outcome::Transformed(outputs) => stats.outputs += outputs.len() as u64,
            Outcome::Dropped => stats.dropped += 1,
            Outcome::Failed(_) => stats.failed += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::record::FailureKind;

    fn stage() -> Runner {
        Runner::new(
            super::super::test_plugin("misbehave", &Limits::default()),
            Vec::new(),
        )
        .expect("runner")
    }

    #[test]
    fn each_input_ends_as_one_outcome_over_the_whole_chain() {
        let mut chain = Chain::new(vec![stage(), stage()]);
        let records: Vec<Record> = ["echo", "drop", "fail", "more"]
            .iter()
            .map(|t| Record::new((*t).to_owned()))
            .collect();
        let outcomes = chain.run(&records, Budget::unbounded());
        assert_eq!(outcomes.len(), 4);
        assert!(matches!(&outcomes[0], Outcome::Transformed(o) if o[0].payload == "echo"));
        assert!(matches!(outcomes[1], Outcome::Dropped));
        match &outcomes[2] {
            Outcome::Failed(failure) => {
                assert_eq!(failure.kind, FailureKind::Domain);
                assert_eq!(failure.stage, 0, "the stage that failed it");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        // The second stage saw only what the first passed on.
        let stats = chain.stats();
        assert_eq!(
            (stats[0].input, stats[0].dropped, stats[0].failed),
            (4, 1, 1)
        );
        assert_eq!((stats[1].input, stats[1].outputs), (2, 2));
    }
}
