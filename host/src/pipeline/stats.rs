//! What a run did, beyond its verdicts' counts: each stage's plugin work, the plugin
//! versions swapped in or refused before it, and how long each batch took. Metrics
//! documents, the progress line and the JSON summary are all made from it.
//!
//! Counts only grow during a run, so "what happened since the last document" is one
//! snapshot less an earlier one ([`RunStats::since`]): documents written as a long run
//! goes add up to the run.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::accounting::{Ledger, Summary};
use crate::engine::RunnerMetrics;
use crate::lookup::TableStats;

/// A run's counts so far (or, from [`RunStats::since`], between two snapshots).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunStats {
    /// The verdicts' counts.
    pub summary: Summary,
    /// Dead-lettered items by failure kind.
    pub failed_by_kind: BTreeMap<&'static str, u64>,
    /// Delivered outputs by sink name.
    pub outputs_by_sink: BTreeMap<String, u64>,
    /// Each stage's plugin (`name@version`) and what its runner saw, in chain order.
    pub stages: Vec<(String, RunnerMetrics)>,
    /// New plugin versions taken before the run.
    pub swaps: u64,
    /// New plugin versions refused before the run (each logged with its reason).
    pub refused_versions: u64,
    /// How long each batch took, from read to settled, in order.
    pub batch_durations: Vec<Duration>,
    /// What each lookup table did, by logical name.
    pub lookups: BTreeMap<String, TableStats>,
}

impl RunStats {
    /// The ledger's counts taken into these.
    pub(super) fn record_ledger(&mut self, ledger: &Ledger) {
        self.summary = ledger.summary();
        self.failed_by_kind.clone_from(ledger.failed_by_kind());
        self.outputs_by_sink.clone_from(ledger.outputs_by_sink());
    }

    /// What a stage's runner saw since its last report, added to that stage.
    pub(super) fn record_stage(&mut self, index: usize, label: String, metrics: RunnerMetrics) {
        if self.stages.len() <= index {
            self.stages.resize_with(index + 1, Default::default);
        }
        let stage = &mut self.stages[index];
        stage.0 = label;
        stage.1.add(metrics);
    }

    /// A batch's lookups, added to the run's.
    pub(super) fn record_lookups(&mut self, tables: BTreeMap<String, TableStats>) {
        for (name, batch) in tables {
            let total = self.lookups.entry(name).or_default();
            total.hits += batch.hits;
            total.misses += batch.misses;
            total.calls += batch.calls;
            total.errors += batch.errors;
            total.time += batch.time;
        }
    }

    /// Every stage's plugin work together.
    pub fn plugin_totals(&self) -> RunnerMetrics {
        let mut total = RunnerMetrics::default();
        for (_, metrics) in &self.stages {
            total.add(metrics.clone());
        }
        total
    }

    /// The plugins' counters and gauges by metric name: the plugin's own name, or for a
    /// chain `N-PLUGIN.NAME` (N the stage, from 1), so two stages' names never merge,
    /// not even two stages of the same plugin.
    pub fn plugin_metrics(&self) -> (BTreeMap<String, u64>, BTreeMap<String, f64>) {
        let chained = self.stages.len() > 1;
        let name = |stage: usize, label: &str, metric: &str| {
            if chained {
                let plugin = label.split('@').next().unwrap_or(label);
                format!("{}-{plugin}.{metric}", stage + 1)
            } else {
                metric.to_owned()
            }
        };
        let mut counters = BTreeMap::new();
        let mut gauges = BTreeMap::new();
        for (stage, (label, metrics)) in self.stages.iter().enumerate() {
            for (metric, value) in &metrics.counters {
                *counters.entry(name(stage, label, metric)).or_default() += value;
            }
            for (metric, value) in &metrics.gauges {
                gauges.insert(name(stage, label, metric), *value);
            }
        }
        (counters, gauges)
    }

    /// What happened after `earlier`, a snapshot of the same run. Gauges are levels,
    /// not counts: the latest value of each stays.
    pub fn since(&self, earlier: &RunStats) -> RunStats {
        let s = &self.summary;
        let e = &earlier.summary;
        RunStats {
            summary: Summary {
                input: s.input.saturating_sub(e.input),
                transformed: s.transformed.saturating_sub(e.transformed),
                dropped: s.dropped.saturating_sub(e.dropped),
                failed: s.failed.saturating_sub(e.failed),
                retried: s.retried.saturating_sub(e.retried),
                duplicate: s.duplicate.saturating_sub(e.duplicate),
                outputs: s.outputs.saturating_sub(e.outputs),
            },
            failed_by_kind: subtract(&self.failed_by_kind, &earlier.failed_by_kind),
            outputs_by_sink: subtract(&self.outputs_by_sink, &earlier.outputs_by_sink),
            stages: self
                .stages
                .iter()
                .enumerate()
                .map(|(i, (label, now))| {
                    let delta = match earlier.stages.get(i) {
                        Some((_, before)) => now.since(before),
                        None => now.clone(),
                    };
                    (label.clone(), delta)
                })
                .collect(),
            swaps: self.swaps.saturating_sub(earlier.swaps),
            refused_versions: self
                .refused_versions
                .saturating_sub(earlier.refused_versions),
            batch_durations: self
                .batch_durations
                .get(earlier.batch_durations.len()..)
                .unwrap_or_default()
                .to_vec(),
            lookups: self
                .lookups
                .iter()
                .map(|(name, now)| {
                    let before = earlier.lookups.get(name).copied().unwrap_or_default();
                    let delta = TableStats {
                        hits: now.hits.saturating_sub(before.hits),
                        misses: now.misses.saturating_sub(before.misses),
                        calls: now.calls.saturating_sub(before.calls),
                        errors: now.errors.saturating_sub(before.errors),
                        time: now.time.saturating_sub(before.time),
                    };
                    (name.clone(), delta)
                })
                .collect(),
        }
    }
}

fn subtract<K: Ord + Clone>(now: &BTreeMap<K, u64>, before: &BTreeMap<K, u64>) -> BTreeMap<K, u64> {
    now.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(input: u64, calls: u64, counter: u64, batches: usize) -> RunStats {
        RunStats {
            summary: Summary {
                input,
                transformed: input,
                outputs: input,
                ..Summary::default()
            },
            outputs_by_sink: BTreeMap::from([("default".to_owned(), input)]),
            stages: vec![(
                "p@1".into(),
                RunnerMetrics {
                    calls,
                    counters: BTreeMap::from([("seen".to_owned(), counter)]),
                    gauges: BTreeMap::from([("level".to_owned(), counter as f64)]),
                    ..RunnerMetrics::default()
                },
            )],
            batch_durations: vec![Duration::from_millis(1); batches],
            ..RunStats::default()
        }
    }

    #[test]
    fn snapshots_less_earlier_ones_add_up_to_the_run() {
        let first = stats(100, 1, 7, 1);
        let last = stats(250, 3, 9, 3);
        let later = last.since(&first);
        assert_eq!(later.summary.input, 150);
        assert_eq!(later.outputs_by_sink["default"], 150);
        assert_eq!(later.stages[0].1.calls, 2);
        assert_eq!(later.stages[0].1.counters["seen"], 2);
        assert_eq!(
            later.stages[0].1.gauges["level"], 9.0,
            "a gauge keeps its level"
        );
        assert_eq!(later.batch_durations.len(), 2);
        assert_eq!(
            first.summary.input + later.summary.input,
            last.summary.input
        );
        // A counter that did not move is not reported again.
        assert!(
            stats(250, 3, 9, 3).since(&last).stages[0]
                .1
                .counters
                .is_empty()
        );
    }

    #[test]
    fn a_chain_names_each_stage_plugins_metrics_apart() {
        let mut run = stats(1, 1, 2, 1);
        run.stages.push(run.stages[0].clone());
        let (counters, gauges) = run.plugin_metrics();
        assert_eq!(
            counters.keys().collect::<Vec<_>>(),
            ["1-p.seen", "2-p.seen"],
            "two stages of one plugin"
        );
        assert_eq!(gauges.len(), 2);
        assert_eq!(run.plugin_totals().calls, 2);
    }
}
