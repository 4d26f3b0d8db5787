//! Runs batches through a plugin: one call per batch, per-record outcomes, and the
//! recovery rules that make sure no record is lost.
//!
//! - A trap (panic, CPU deadline, memory cap, contract violation) fails the whole call
//!   and kills the instance. The runner starts a fresh instance from the pre-instantiated
//!   component and re-runs the batch split in halves until the record that traps is
//!   alone: only that record fails, its neighbours are processed normally. A record that
//!   traps alone on an instance earlier records ran in gets one more try on a fresh
//!   instance before it is blamed (their state may be what broke it). A call that ran
//!   out of time is re-run one record at a time instead: a record that stalls costs one
//!   more deadline, not one per level of halving. Isolating a batch is bounded, in calls
//!   into the deadline and in the time its failed calls took (a plugin that fails just
//!   short of the deadline, or whose `init` is slow, costs as much): past the allowance
//!   of [`MAX_DEADLINE_CALLS`] deadlines, the records left fail together as `deadline`.
//! - An infrastructure error is retried, only for the records that reported it, with
//!   exponential backoff and jitter, up to `max-attempts`; then the record fails.
//! - A time [`Budget`] bounds it all: no call or backoff starts past it, and the records
//!   not done by then fail as `Unfinished` (the pipeline hands them back to the source).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::bindings::Transform;
use super::bindings::pipeline::plugin::types::Error as WireError;
use super::sandbox::{self, StoreState, TrapKind};
use super::wire::{OutputCaps, Packer, PluginResult, unpack};
use super::{Plugin, PluginError, deadline_ticks};
use crate::limits::Budget;
use crate::record::{Failure, FailureKind, Outcome, Record};

const UNFINISHED: &str = "the run's time ran out before this record was done";
/// Calls of one batch that may run into the deadline before isolating stops: a plugin
/// that stalls on every record would otherwise cost a whole deadline per record. Past
/// it, the records left of a call that hit the deadline fail together.
const MAX_DEADLINE_CALLS: u32 = 8;

fn unfinished(attempts: u32) -> Outcome {
    Outcome::Failed(Failure {
        kind: FailureKind::Unfinished,
        message: UNFINISHED.into(),
        attempts,
        stage: 0,
    })
}

/// Distinct counter and gauge names one plugin version may report over its life: each
/// becomes a CloudWatch metric, billed per metric. Past it reports are dropped and
/// counted ([`RunnerMetrics::metrics_dropped`]), with one warning.
pub const MAX_PLUGIN_METRICS: usize = 50;

/// What the runner observed, for the summary, the metrics and benchmarks.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunnerMetrics {
    /// Calls into the plugin's `transform`.
    pub calls: u64,
    /// Calls that trapped (each one costs a fresh instance).
    pub traps: u64,
    /// Instances started (the first one included).
    pub instances: u64,
    /// Moves from Winch's code to Cranelift's (tiered start), each with a new instance.
    pub tier_ups: u64,
    /// Calls made to isolate a failing record (a failed call's halves, a record's second
    /// chance on a fresh instance).
    pub isolation_calls: u64,
    /// Time inside the plugin's `transform` (the component boundary's copies included).
    pub plugin_time: Duration,
    /// Time the host spent packing batches and unpacking results.
    pub boundary_time: Duration,
    /// The packing's part of `boundary_time` (the rest is unpacking): the most that
    /// records already laid out in the batch encoding could save.
    pub packing_time: Duration,
    /// Counters the plugin reported.
    pub counters: BTreeMap<String, u64>,
    /// Gauges the plugin reported (last value).
    pub gauges: BTreeMap<String, f64>,
    /// Counter and gauge reports refused: an invalid name, or a name past
    /// [`MAX_PLUGIN_METRICS`].
    pub metrics_dropped: u64,
}

impl RunnerMetrics {
    /// Adds `other`'s counts to these (gauges: `other`'s values win).
    pub fn add(&mut self, other: RunnerMetrics) {
        self.calls += other.calls;
        self.traps += other.traps;
        self.instances += other.instances;
        self.tier_ups += other.tier_ups;
        self.isolation_calls += other.isolation_calls;
        self.plugin_time += other.plugin_time;
        self.boundary_time += other.boundary_time;
        self.packing_time += other.packing_time;
        self.metrics_dropped += other.metrics_dropped;
        for (name, delta) in other.counters {
            let counter = self.counters.entry(name).or_default();
            *counter = counter.saturating_add(delta);
        }
        self.gauges.extend(other.gauges);
    }

    /// What happened after `earlier`, a snapshot of the same counts (gauges are levels:
    /// their latest values stay).
    pub fn since(&self, earlier: &RunnerMetrics) -> RunnerMetrics {
        RunnerMetrics {
            calls: self.calls.saturating_sub(earlier.calls),
            traps: self.traps.saturating_sub(earlier.traps),
            instances: self.instances.saturating_sub(earlier.instances),
            tier_ups: self.tier_ups.saturating_sub(earlier.tier_ups),
            isolation_calls: self.isolation_calls.saturating_sub(earlier.isolation_calls),
            plugin_time: self.plugin_time.saturating_sub(earlier.plugin_time),
            boundary_time: self.boundary_time.saturating_sub(earlier.boundary_time),
            packing_time: self.packing_time.saturating_sub(earlier.packing_time),
            counters: self
                .counters
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.saturating_sub(earlier.counters.get(k).copied().unwrap_or(0)),
                    )
                })
                .filter(|(_, v)| *v > 0)
                .collect(),
            gauges: self.gauges.clone(),
            metrics_dropped: self.metrics_dropped.saturating_sub(earlier.metrics_dropped),
        }
    }
}

struct Live {
    store: Store<StoreState>,
    bindings: Transform,
}

/// A failed call: the batch it carried has no results.
struct CallFailure {
    kind: FailureKind,
    message: String,
    /// The call ran on an instance started for it (no earlier record's state in it).
    fresh: bool,
    /// From the call's start (its instance's start included) to the failure.
    took: Duration,
}

/// Runs batches through one plugin, keeping one live instance between calls.
pub struct Runner {
    plugin: Plugin,
    config: Vec<(String, String)>,
    live: Option<Live>,
    packer: Packer,
    metrics: RunnerMetrics,
    /// Calls of the current batch that hit the deadline.
    deadline_calls: u32,
    /// Time the current batch's other failed calls took (all but those into the
    /// deadline), starting their instances included.
    failed_time: Duration,
    /// Time the last call spent waiting on lookups.
    last_waited: Duration,
    /// Counter and gauge names taken so far (at most [`MAX_PLUGIN_METRICS`]), each with
    /// whether it is a gauge: one name is one metric, a counter or a gauge, not both.
    metric_names: BTreeMap<String, bool>,
    /// Dropped counter or gauge reports were said (once per runner for each reason: an
    /// invalid report, a name past the allowance).
    warned_metrics: (bool, bool),
}

impl Runner {
    /// Starts an instance and calls `init(config)`: a refused or trapping `init` is an
    /// error here, before any record is touched.
    pub fn new(plugin: Plugin, config: Vec<(String, String)>) -> Result<Self, PluginError> {
        let mut runner = Self {
            plugin,
            config,
            live: None,
            packer: Packer::default(),
            metrics: RunnerMetrics::default(),
            deadline_calls: 0,
            failed_time: Duration::ZERO,
            last_waited: Duration::ZERO,
            metric_names: BTreeMap::new(),
            warned_metrics: (false, false),
        };
        runner.live = Some(runner.start()?);
        Ok(runner)
    }

    /// The plugin this runner runs.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// What happened since the runner started or [`Runner::take_metrics`] last ran.
    pub fn metrics(&self) -> &RunnerMetrics {
        &self.metrics
    }

    /// What happened since the last time, leaving the counts at zero.
    pub fn take_metrics(&mut self) -> RunnerMetrics {
        std::mem::take(&mut self.metrics)
    }

    fn start(&mut self) -> Result<Live, PluginError> {
        let (mut store, bindings) = self.plugin.instantiate()?;
        self.metrics.instances += 1;
        match bindings.call_init(&mut store, &self.config) {
            Ok(Ok(())) => Ok(Live { store, bindings }),
            Ok(Err(WireError::Domain(reason) | WireError::Infrastructure(reason))) => {
                Err(PluginError::InitRefused {
                    plugin: self.plugin.label(),
                    reason,
                })
            }
            Err(trap) => Err(PluginError::Start {
                plugin: self.plugin.label(),
                reason: sandbox::describe_trap(&store, &trap),
            }),
        }
    }

    /// Transforms `records` within `budget`; returns exactly one outcome per record, in
    /// order.
    pub fn run(&mut self, records: &[Record], budget: Budget) -> Vec<Outcome> {
        // Between two batches is where a runner on Winch's code moves to Cranelift's,
        // once the background compile is done (tiered start).
        if let Some(optimized) = self.plugin.optimized() {
            self.plugin = optimized;
            self.live = None;
            self.metrics.tier_ups += 1;
            tracing::info!(plugin = %self.plugin.label(), "running Cranelift's code from this batch on");
        }
        let limits = self.plugin.engine.limits().clone();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        let mut pending: Vec<usize> = (0..records.len()).collect();
        self.deadline_calls = 0;
        self.failed_time = Duration::ZERO;
        for attempt in 1..=limits.max_attempts {
            let mut retry = Vec::new();
            self.run_isolating(records, &pending, budget, &mut |index, result| {
                let fail = |kind, message| {
                    Some(Outcome::Failed(Failure {
                        kind,
                        message,
                        attempts: attempt,
                        stage: 0,
                    }))
                };
                outcomes[index] = match result {
                    Ok(PluginResult::Ok(outputs)) if outputs.is_empty() => Some(Outcome::Dropped),
                    Ok(PluginResult::Ok(outputs)) => Some(Outcome::Transformed(outputs)),
                    Ok(PluginResult::Domain(message)) => fail(FailureKind::Domain, message),
                    Ok(PluginResult::Infrastructure(_)) if attempt < limits.max_attempts => {
                        retry.push(index);
                        None
                    }
                    Ok(PluginResult::Infrastructure(message)) => {
                        fail(FailureKind::Infrastructure, message)
                    }
                    Ok(PluginResult::OutputTooLarge(message)) => {
                        fail(FailureKind::OutputTooLarge, message)
                    }
                    Err(CallFailure { kind, message, .. }) => fail(kind, message),
                };
            });
            if retry.is_empty() {
                break;
            }
            let delay = crate::limits::backoff(limits.retry_base_delay, attempt);
            if !budget.allows_wait(delay) {
                for index in retry {
                    outcomes[index] = Some(unfinished(attempt));
                }
                break;
            }
            std::thread::sleep(delay);
            pending = retry;
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Outcome::Failed(Failure {
                        kind: FailureKind::Contract,
                        message: "no outcome was recorded for this record (host bug)".into(),
                        attempts: 0,
                        stage: 0,
                    })
                })
            })
            .collect()
    }

    /// Calls the plugin on `indices`; on a failed call, bisects until the failing
    /// record is alone.
    fn run_isolating(
        &mut self,
        records: &[Record],
        indices: &[usize],
        budget: Budget,
        report: &mut dyn FnMut(usize, Result<PluginResult, CallFailure>),
    ) {
        if indices.is_empty() {
            return;
        }
        if budget.exhausted() {
            for &index in indices {
                report(
                    index,
                    Err(CallFailure {
                        kind: FailureKind::Unfinished,
                        message: UNFINISHED.into(),
                        fresh: true,
                        took: Duration::ZERO,
                    }),
                );
            }
            return;
        }
        if self.allowance_spent() {
            // The batch's allowance for failed calls is spent: no more calls.
            self.fail_together(indices, "not run", true, report);
            return;
        }
        let called = self.call(records, indices);
        if let Err(failure) = &called
            && failure.kind != FailureKind::Deadline
        {
            // Waiting on lookups is not the plugin's doing.
            self.failed_time += failure.took.saturating_sub(self.last_waited);
        }
        match called {
            Ok(results) => {
                for (&index, result) in indices.iter().zip(results) {
                    report(index, Ok(result));
                }
            }
            // A trap on an instance earlier records ran in may be their doing (state they
            // corrupted): the record gets a second chance on a fresh instance first.
            Err(failure)
                if indices.len() == 1
                    && !failure.fresh
                    && matches!(failure.kind, FailureKind::Trap | FailureKind::MemoryLimit) =>
            {
                // Once more, on a fresh instance, under the same rules (the budget, the
                // batch's allowance of calls into the deadline) as any call; with the
                // allowance spent, the record keeps its own failure.
                if self.allowance_spent() {
                    report(indices[0], Err(failure));
                    return;
                }
                self.live = None;
                self.metrics.isolation_calls += 1;
                self.run_isolating(records, indices, budget, report);
            }
            Err(failure) if indices.len() == 1 => {
                if failure.kind == FailureKind::Deadline {
                    self.deadline_calls += 1;
                }
                report(indices[0], Err(failure));
            }
            // A call that ran out of time goes on one record at a time: the record that
            // stalls costs one more deadline, where halving would cost one per level.
            Err(failure) if failure.kind == FailureKind::Deadline => {
                self.deadline_calls += 1;
                for (position, &index) in indices.iter().enumerate() {
                    if self.allowance_spent() {
                        let why = format!("{}; not isolated", failure.message);
                        self.fail_together(&indices[position..], &why, failure.fresh, report);
                        return;
                    }
                    self.metrics.isolation_calls += 1;
                    self.run_isolating(records, &[index], budget, report);
                }
            }
            Err(failure) if self.allowance_spent() => {
                let why = format!("{}; not isolated", failure.message);
                self.fail_together(indices, &why, failure.fresh, report);
            }
            Err(failure) => {
                tracing::debug!(plugin = %self.plugin.label(), records = indices.len(), reason = %failure.message, "call failed; bisecting");
                let (left, right) = indices.split_at(indices.len() / 2);
                self.metrics.isolation_calls += 2;
                self.run_isolating(records, left, budget, report);
                self.run_isolating(records, right, budget, report);
            }
        }
    }

    /// Whether the batch's allowance for failed calls, [`MAX_DEADLINE_CALLS`] deadlines,
    /// is spent: a call into the deadline costs one, any other failed call the time it
    /// took (a plugin that panics just short of the deadline costs nearly as much).
    fn allowance_spent(&self) -> bool {
        let deadline = self.plugin.engine.limits().deadline;
        deadline.saturating_mul(self.deadline_calls) + self.failed_time
            >= deadline.saturating_mul(MAX_DEADLINE_CALLS)
    }

    /// Fails the records at `indices` as `deadline`, together: the batch's allowance for
    /// failed calls is spent.
    fn fail_together(
        &self,
        indices: &[usize],
        why: &str,
        fresh: bool,
        report: &mut dyn FnMut(usize, Result<PluginResult, CallFailure>),
    ) {
        let message = format!(
            "{why}: this batch's failed calls cost its allowance of {MAX_DEADLINE_CALLS} deadlines ({} ran into the deadline, the others took {} ms), so the {} records left fail together",
            self.deadline_calls,
            self.failed_time.as_millis(),
            indices.len()
        );
        for &index in indices {
            report(
                index,
                Err(CallFailure {
                    kind: FailureKind::Deadline,
                    message: message.clone(),
                    fresh,
                    took: Duration::ZERO,
                }),
            );
        }
    }

    /// One call into the plugin's `transform` with the records at `indices`.
    fn call(
        &mut self,
        records: &[Record],
        indices: &[usize],
    ) -> Result<Vec<PluginResult>, CallFailure> {
        let limits = self.plugin.engine.limits().clone();
        let fresh = self.live.is_none();
        self.last_waited = Duration::ZERO;
        // Four clock reads a call that succeeds on a live instance (five when it starts
        // one), each ending one span and starting the next: at batch size 1 reading the
        // clock is a measurable share of the call. A failure reads it once more, for the
        // batch's allowance of failed calls.
        let began = Instant::now();
        let failed = |kind, message: String| CallFailure {
            kind,
            message,
            fresh: true,
            took: began.elapsed(),
        };
        let (mut live, packing) = match self.live.take() {
            Some(live) => (live, began),
            None => {
                let live = self
                    .start()
                    .map_err(|e| failed(FailureKind::Trap, e.to_string()))?;
                (live, Instant::now())
            }
        };
        let batch = self
            .packer
            .pack(indices.iter().map(|&i| &records[i]))
            .map_err(|e| failed(FailureKind::Contract, e.to_string()))?;
        let calling = Instant::now();
        let packed = calling - packing;
        self.metrics.boundary_time += packed;
        self.metrics.packing_time += packed;
        live.store
            .set_epoch_deadline(deadline_ticks(limits.deadline));
        live.store.data_mut().begin_call(calling + limits.deadline);
        self.metrics.calls += 1;
        let answer = live.bindings.call_transform(&mut live.store, batch);
        self.last_waited = live.store.data().lookup_waited();
        let unpacking = Instant::now();
        self.metrics.plugin_time += unpacking - calling;
        // Telemetry counts only from calls whose results are kept: a trapped call's
        // records run again, and their counters would count twice.
        let telemetry = std::mem::take(&mut live.store.data_mut().telemetry);
        if answer.is_ok() {
            self.keep_telemetry(telemetry);
        }
        match answer {
            Ok(batch) => {
                self.live = Some(live);
                let caps = OutputCaps {
                    output_bytes: limits.max_output_bytes,
                    outputs_per_record: limits.max_outputs_per_record,
                    call_bytes: limits.max_call_output_bytes,
                };
                let results = unpack(batch, indices.len(), caps)
                    .map_err(|e| failed(FailureKind::Contract, e.to_string()));
                self.metrics.boundary_time += unpacking.elapsed();
                results
            }
            Err(trap) => {
                // The instance is unusable after a trap; the next call starts a fresh one.
                self.metrics.traps += 1;
                let kind = match sandbox::classify_trap(&live.store, &trap) {
                    TrapKind::Deadline => FailureKind::Deadline,
                    TrapKind::MemoryLimit => FailureKind::MemoryLimit,
                    TrapKind::Other => FailureKind::Trap,
                };
                Err(CallFailure {
                    kind,
                    message: sandbox::describe_trap(&live.store, &trap),
                    fresh,
                    took: began.elapsed(),
                })
            }
        }
    }

    /// Keeps a call's counters and gauges, within the plugin's allowance of names. The
    /// first report dropped is said once, with why.
    fn keep_telemetry(&mut self, telemetry: sandbox::Telemetry) {
        enum Report {
            Counter(u64),
            Gauge(f64),
        }
        // Refused: by the sandbox (a bad name or value), or here (a name of the other
        // kind); and names past the allowance.
        let mut invalid = telemetry.dropped;
        let mut over = 0;
        let mut first_over = None;
        let counters = (telemetry.counters.into_iter()).map(|(n, d)| (n, Report::Counter(d)));
        let gauges = (telemetry.gauges.into_iter()).map(|(n, v)| (n, Report::Gauge(v)));
        for (name, report) in counters.chain(gauges) {
            let gauge = matches!(report, Report::Gauge(_));
            match self.metric_names.get(&name) {
                Some(&kind) if kind == gauge => {}
                // A counter's name reported as a gauge, or the other way round.
                Some(_) => {
                    invalid += 1;
                    continue;
                }
                None if self.metric_names.len() >= MAX_PLUGIN_METRICS => {
                    over += 1;
                    first_over.get_or_insert(name);
                    continue;
                }
                None => {
                    self.metric_names.insert(name.clone(), gauge);
                }
            }
            match report {
                Report::Counter(delta) => {
                    let counter = self.metrics.counters.entry(name).or_default();
                    *counter = counter.saturating_add(delta);
                }
                Report::Gauge(value) => {
                    self.metrics.gauges.insert(name, value);
                }
            }
        }
        if let Some(name) = first_over
            && !self.warned_metrics.1
        {
            self.warned_metrics.1 = true;
            tracing::warn!(plugin = %self.plugin.label(), name = %name, "more than {MAX_PLUGIN_METRICS} counter and gauge names: reports of new ones are dropped and counted (PluginMetricsDropped)");
        }
        if invalid > 0 && !self.warned_metrics.0 {
            self.warned_metrics.0 = true;
            tracing::warn!(plugin = %self.plugin.label(), "a counter or gauge report was dropped and counted (PluginMetricsDropped): names are 1 to 128 letters, digits or ._-/:, values finite, and a name is a counter or a gauge, not both");
        }
        self.metrics.metrics_dropped += invalid + over;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::limits::Limits;

    fn runner(limits: &Limits, config: &[(&str, &str)]) -> Runner {
        let config = config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Runner::new(super::super::test_plugin("misbehave", limits), config).expect("runner")
    }

    fn records(texts: &[&str]) -> Vec<Record> {
        texts.iter().map(|t| Record::new((*t).to_owned())).collect()
    }

    fn kind(outcome: &Outcome) -> Option<FailureKind> {
        match outcome {
            Outcome::Failed(failure) => Some(failure.kind),
            _ => None,
        }
    }

    #[test]
    fn a_trap_fails_only_its_record_and_the_others_run_on_a_fresh_instance() {
        let mut runner = runner(&Limits::default(), &[]);
        let outcomes = runner.run(&records(&["a", "panic", "b", "c"]), Budget::unbounded());
        let kinds: Vec<_> = outcomes.iter().map(kind).collect();
        assert_eq!(kinds, [None, Some(FailureKind::Trap), None, None]);
        assert!(matches!(&outcomes[2], Outcome::Transformed(o) if o[0].payload == "b"));
        assert!(runner.metrics().traps >= 1);
        assert!(
            runner.metrics().instances >= 2,
            "a fresh instance after the trap"
        );
    }

    #[test]
    fn an_infrastructure_error_is_retried_then_fails_with_its_attempts() {
        let limits = Limits {
            max_attempts: 3,
            retry_base_delay: Duration::ZERO,
            ..Limits::default()
        };
        let mut runner = runner(&limits, &[]);
        let outcomes = runner.run(&records(&["flaky", "ok"]), Budget::unbounded());
        match &outcomes[0] {
            Outcome::Failed(failure) => {
                assert_eq!(failure.kind, FailureKind::Infrastructure);
                assert_eq!(failure.attempts, 3);
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        assert!(matches!(&outcomes[1], Outcome::Transformed(_)));
        // The batch's call, then one per retry of the flaky record alone.
        assert_eq!(runner.metrics().calls, 3);
    }

    #[test]
    fn nothing_runs_past_the_budget() {
        let mut runner = runner(&Limits::default(), &[]);
        let spent = Budget::until(Instant::now());
        let outcomes = runner.run(&records(&["a", "b"]), spent);
        assert!(
            outcomes
                .iter()
                .all(|o| kind(o) == Some(FailureKind::Unfinished)),
            "{outcomes:?}"
        );
        assert_eq!(runner.metrics().calls, 0);
    }

    #[test]
    fn failed_calls_spend_the_batchs_allowance_by_the_time_they_take() {
        // Each record fails after 60 ms of a 100 ms deadline: 8 deadlines (800 ms) of
        // failed calls are spent after at most 14 calls, whatever the batch's size.
        let limits = Limits {
            deadline: Duration::from_millis(100),
            ..Limits::default()
        };
        let mut runner = runner(&limits, &[("spin_ms", "60")]);
        let outcomes = runner.run(&records(&["slowpanic"; 40]), Budget::unbounded());
        assert!(outcomes.iter().all(|o| kind(o).is_some()), "{outcomes:?}");
        assert!(
            runner.metrics().calls <= 14,
            "{} calls",
            runner.metrics().calls
        );
        assert!(
            outcomes
                .iter()
                .any(|o| kind(o) == Some(FailureKind::Deadline)),
            "the records left fail together once the allowance is spent"
        );
    }
}
