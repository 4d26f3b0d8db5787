//! The one pipeline every front door runs: source -> batch -> plugin chain -> route ->
//! sinks -> DLQ -> settle. A front door (the Lambda handler, `host run`, `host run
//! --sink`, `host reprocess`) only chooses the [`Source`] and, for `host run` to a file or
//! a Firehose answer, where outputs go; everything else happens here, the same way.
//!
//! # Layout
//! - `mod.rs`: [`Pipeline`]: start (plugins, sinks, DLQ), the batch loop, hot swap
//!   between batches, the summary.
//! - `batch.rs`: a batch's entries, whole from claim to verdict, and the plugin run.
//! - `deliver.rs`: a batch's outcomes to the sinks and the DLQ, in named phases, into
//!   verdicts.
//! - `dead_letters.rs`: DLQ entries fitted to their queue (overflow bucket, or cut).
//! - `claims.rs`: a batch's claims in the idempotency store.
//! - `stats.rs`: [`RunStats`], what a run did, for metrics and summaries.

mod batch;
mod claims;
mod dead_letters;
mod deliver;
mod stats;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use batch::Entry;
use claims::Claims;
use dead_letters::{DeadLetters, Overflow};
pub use deliver::DeliverError;
use deliver::Target;
pub use stats::RunStats;

use crate::accounting::{Ledger, Summary, Unbalanced};
use crate::aws::{AwsClients, AwsError};
use crate::engine::{Chain, Engine, PluginError, Runner};
use crate::idempotency::Store;
use crate::limits::Budget;
use crate::lookup::Tables;
use crate::record::Verdict;
use crate::registry::{FollowSettings, FollowedPlugin, LoadError, PluginLocation, SequenceFloor};
use crate::schemas::{FramedWriter, Registries, Schemas};
use crate::settings::Settings;
use crate::sinks::{ConnectError, ObjectFormat, RetryPolicy, Router, Sink, SinkSpec};
use crate::sources::{OutOfTime, Source, SourceError};

/// A pipeline that could not start; the message names the setting behind it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The wasm engine could not be set up.
    #[error(transparent)]
    Engine(#[from] PluginError),
    /// No plugin is configured.
    #[error("no plugin configured ({setting})")]
    NoPlugin {
        /// The setting, as the front door spells it (`--plugin`, `PIPELINE_PLUGIN`).
        setting: String,
    },
    /// A plugin could not be loaded.
    #[error("plugin {location} ({setting}): {reason}")]
    Plugin {
        /// Where it was configured to come from.
        location: String,
        /// The setting that named it, as the front door spells it.
        setting: String,
        /// Why it did not load.
        reason: LoadError,
    },
    /// A sink could not be set up.
    #[error("sink {name} ({setting}): {reason}")]
    Sink {
        /// Its name.
        name: String,
        /// The setting that named it, as the front door spells it.
        setting: String,
        /// Why.
        reason: ConnectError,
    },
    /// The dead-letter queue could not be set up.
    #[error("dead-letter queue {spec} ({setting}): {reason}")]
    DeadLetters {
        /// Its spec.
        spec: String,
        /// The setting that named it, as the front door spells it.
        setting: String,
        /// Why.
        reason: ConnectError,
    },
    /// The schema registry's client could not be set up.
    #[error("schema registry ({setting}): {reason}")]
    Schemas {
        /// The setting, as the front door spells it.
        setting: String,
        /// Why.
        reason: String,
    },
    /// A lookup table could not be set up.
    #[error("{reason} ({setting})")]
    Lookups {
        /// The setting that mapped it, as the front door spells it.
        setting: String,
        /// Which table, and why.
        reason: crate::lookup::LookupStartError,
    },
}

/// A run that stopped: the source failed, the DLQ refused what no one else can take, or
/// the accounting found an item without a verdict.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Reading or settling the source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A batch could not be delivered item by item.
    #[error(transparent)]
    Deliver(#[from] DeliverError),
    /// The plugin thread panicked, or an earlier one lost the plugin instance.
    #[error("the plugin thread failed: {0}")]
    PluginThread(String),
    /// Items entered and did not settle exactly once.
    #[error(transparent)]
    Unbalanced(#[from] Unbalanced),
    /// A file sink could not be committed.
    #[error("cannot finish the outputs: {0}")]
    Finish(std::io::Error),
    /// A sink can take nothing more (a local file that cannot be written).
    #[error("{0}")]
    Broken(String),
    /// The time ran out before the source was done, and it does not redeliver.
    #[error("out of time before the input was done (so far: {0})")]
    OutOfTime(Summary),
    /// The idempotency store could not be asked, and the source does not redeliver.
    #[error(transparent)]
    Store(AwsError),
}

const OUT_OF_TIME: &str = "the invocation's time ran out before this item's batch started";

/// Counts a batch's verdicts, checks that every item that entered has one, and only then
/// hands them to the source (which may delete a DLQ entry, answer Lambda, ...).
async fn settle<S: Source>(
    ledger: &mut Ledger,
    source: &mut S,
    settled: Vec<(S::Id, Verdict)>,
    router: &Router,
) -> Result<(), RunError> {
    for (_, verdict) in &settled {
        ledger.settle(verdict, |output| router.sink_name(output));
    }
    ledger.close()?;
    source.settle(settled).await?;
    Ok(())
}

/// Where a run's outputs go.
#[derive(Clone, Copy)]
pub enum Outputs<'a> {
    /// To the configured sinks, by destination.
    Sinks,
    /// Every output to this router instead (a file for `host run`, the Firehose answer).
    To(&'a Router),
}

/// The plugin chain, where its plugins come from, the sinks and the DLQ. Built once (a
/// Lambda cold start, or the start of a command) and run over any number of sources.
pub struct Pipeline {
    /// `None` only while a batch runs on a blocking thread.
    chain: Option<Chain>,
    /// One per stage: where its plugin comes from, checked between batches.
    plugins: Vec<FollowedPlugin>,
    router: Router,
    dlq: DeadLetters,
    retry: RetryPolicy,
    batch_size: usize,
    aws: AwsClients,
    /// The idempotency store, when records are deduplicated.
    store: Option<Store>,
    /// Records whose verdict is final but whose outputs or DLQ entries sit in files not
    /// yet committed: marked done by [`Pipeline::finish`] once they are, released if the
    /// run fails (the files are then removed, and a rerun must send them again).
    uncommitted: Vec<String>,
    /// How long past a run's budget it may still be delivering (a claim lasts as long).
    time_margin: std::time::Duration,
    /// What the current (or last) run did so far.
    stats: RunStats,
    /// How each stage's plugin became ready at start.
    start_timings: Vec<crate::registry::Timings>,
    /// The engine the stages run on (its background compiles end with [`Pipeline::finish`]).
    engine: Engine,
    /// The lookup tables the plugins may read, when any is mapped.
    lookups: Option<Arc<Tables>>,
    /// Schema-registry framed records opened, when a framing is on.
    schemas: Option<Schemas>,
}

impl Pipeline {
    /// Loads the plugins and connects the sinks and the DLQ. Errors name what failed.
    pub async fn start(settings: &Settings, aws: &AwsClients) -> Result<Self, StartError> {
        let engine = Engine::new(&settings.limits)?;
        let cache = settings.cache_dir.as_ref().and_then(|dir| {
            engine
                .artifact_cache(dir)
                .inspect_err(|e| {
                    tracing::warn!(dir = %dir.display(), error = %e, "no precompiled cache: compiling every start");
                })
                .ok()
        });
        let (lookups, schemas, registries) = reference_data(settings, aws).await?;
        let followed = FollowSettings {
            check_interval: settings.check_interval,
            cache,
            public_key: settings.public_key,
            config: settings.plugin_config.clone(),
            floor: None,
            lookups: lookups.clone(),
        };
        let (plugins, runners, start_timings) =
            load_plugins(settings, aws, &engine, followed).await?;
        let router = connect_sinks(settings, aws, registries, runners.last()).await?;
        let dlq =
            Sink::connect(&settings.dlq, aws)
                .await
                .map_err(|reason| StartError::DeadLetters {
                    spec: settings.dlq.to_string(),
                    setting: settings.name_of("PIPELINE_DLQ"),
                    reason,
                })?;
        Ok(Self {
            engine,
            chain: Some(Chain::new(runners)),
            plugins,
            router,
            dlq: DeadLetters {
                sink: dlq,
                overflow: settings
                    .dlq_overflow
                    .as_ref()
                    .map(|(bucket, prefix)| Overflow {
                        aws: aws.clone(),
                        bucket: bucket.clone(),
                        prefix: prefix.clone(),
                    }),
            },
            retry: RetryPolicy::of(&settings.limits),
            batch_size: settings.limits.batch_size,
            aws: aws.clone(),
            store: settings.dedup.as_ref().map(|spec| {
                Store::new(
                    aws.dynamodb.clone(),
                    spec,
                    settings.dedup_ttl,
                    settings.dedup_claim,
                )
            }),
            uncommitted: Vec::new(),
            time_margin: settings.time_margin,
            stats: RunStats::default(),
            start_timings,
            lookups,
            schemas,
        })
    }

    /// Runs every item of `source` through the pipeline, a batch at a time, settling
    /// each batch before the next is read, within `budget`. The summary balances, or
    /// this is an error.
    ///
    /// Once the budget is spent no batch starts: a source that redelivers gets its
    /// remaining items back for a retry, and so does one whose [`Source::out_of_time`] asks
    /// for it (Firehose); any other source makes this an error ([`RunError::OutOfTime`]),
    /// its finished batches already settled and, for an S3 notification, a checkpoint
    /// written.
    pub async fn run<S: Source>(
        &mut self,
        source: &mut S,
        outputs: Outputs<'_>,
        budget: Budget,
    ) -> Result<Summary, RunError> {
        self.run_watched(source, outputs, budget, &mut |_| {}).await
    }

    /// [`Pipeline::run`], showing `watch` the run's counts so far after each batch
    /// settles (for metrics documents written as a long run goes, a progress line).
    pub async fn run_watched<S: Source>(
        &mut self,
        source: &mut S,
        outputs: Outputs<'_>,
        budget: Budget,
        watch: &mut (dyn FnMut(&RunStats) + Send),
    ) -> Result<Summary, RunError> {
        let ran = self.run_batches(source, outputs, budget, watch).await;
        if let Some(tables) = &self.lookups {
            // Between runs (a new version's `init` at a check) lookups have the fallback
            // bound of a run without a budget.
            tables.set_until(None);
        }
        if ran.is_err() {
            // The files will not be committed: what waited for them is not done.
            self.release_uncommitted().await;
        }
        ran
    }

    /// The batch loop of [`Pipeline::run_watched`].
    async fn run_batches<S: Source>(
        &mut self,
        source: &mut S,
        outputs: Outputs<'_>,
        budget: Budget,
        watch: &mut (dyn FnMut(&RunStats) + Send),
    ) -> Result<Summary, RunError> {
        self.stats = RunStats::default();
        let retry = RetryPolicy {
            budget,
            ..self.retry
        };
        let mut ledger = Ledger::default();
        // Ordering groups with an item handed back: their later items wait too.
        let mut held = HashSet::new();
        // Out of time, a source that does not redeliver may still take its items back.
        let mut hand_back = false;
        // Outputs or DLQ entries written to files are not final until the files are
        // committed at the end: their records are marked done only then.
        let uncommitted =
            self.router_for(outputs).commits_at_finish() || self.dlq.sink.commits_at_finish();
        // A new plugin version is taken between runs (a Lambda invocation, a command),
        // never during one: every batch of a run meets the same version.
        if let Some(tables) = &self.lookups {
            // A lookup ends when no more work may start: its records are retried then
            // (an `init` that looks up, in a restart or a new version, included).
            tables.set_until(budget.ends());
        }
        if self.chain.is_none() {
            self.restart().await?;
        }
        self.refresh().await;
        loop {
            let started = std::time::Instant::now();
            // Out of time, a source that fails the run stops before reading more: reading
            // (an S3 object, a Parquet download) is time the invocation no longer has.
            if budget.exhausted() && !source.redelivers() && !hand_back {
                hand_back = source.out_of_time().await? == OutOfTime::HandBack;
                if !hand_back {
                    return Err(RunError::OutOfTime(ledger.summary()));
                }
            }
            let next = source.next_batch(self.batch_size).await?;
            let unread = source.settled_unread();
            ledger.enter(unread.len());
            for verdict in &unread {
                ledger.settle(verdict, |output| self.router_for(outputs).sink_name(output));
            }
            let Some(batch) = next else {
                break;
            };
            ledger.enter(batch.len());
            if budget.exhausted() {
                if !source.redelivers() && !hand_back {
                    hand_back = source.out_of_time().await? == OutOfTime::HandBack;
                    if !hand_back {
                        // This batch entered and will not settle: the source's own retry
                        // brings it back (from its checkpoint, if it keeps one).
                        return Err(RunError::OutOfTime(ledger.summary()));
                    }
                }
                let verdicts = batch
                    .into_iter()
                    .map(|item| (item.id, Verdict::Retry(OUT_OF_TIME.into())))
                    .collect();
                settle(&mut ledger, source, verdicts, self.router_for(outputs)).await?;
                continue;
            }
            if batch.is_empty() {
                // Blank input only: nothing to run, but the budget was checked.
                continue;
            }
            let (ids, mut entries): (Vec<S::Id>, Vec<Entry>) =
                batch.into_iter().map(Entry::new).unzip();
            if let Some(schemas) = &self.schemas {
                let mut items: Vec<_> = entries.iter_mut().filter_map(Entry::decoded_mut).collect();
                schemas.open(&mut items, budget.ends()).await;
            }
            let claims = self.claim(&entries, source.redelivers(), budget).await?;
            let ran = self
                .run_claimed(&mut entries, &claims, &mut held, outputs, retry)
                .await;
            if let Err(e) = ran {
                // The run stops. Items whose outputs went out are done (not those in
                // files, removed with the failed run); the other claims go, so a retry
                // need not wait for them to expire.
                if let Some(store) = &self.store {
                    let kept = !uncommitted
                        && matches!(e, RunError::Deliver(DeliverError::DeadLetterRefused { .. }));
                    claims.abandon(store, &entries, kept, retry).await;
                }
                return Err(e);
            }
            let verdicts = entries
                .iter_mut()
                .enumerate()
                .map(|(index, entry)| {
                    entry
                        .verdict
                        .take()
                        .ok_or(RunError::Deliver(DeliverError::NoVerdict(index)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(store) = &self.store {
                let waiting = uncommitted.then_some(&mut self.uncommitted);
                claims.finish(store, &verdicts, retry, waiting).await;
            }
            let settled = ids.into_iter().zip(verdicts).collect();
            settle(&mut ledger, source, settled, self.router_for(outputs)).await?;
            tracing::info!(plugin = %self.plugin_label(), summary = %ledger.summary(), "batch done");
            self.stats.record_ledger(&ledger);
            self.stats.batch_durations.push(started.elapsed());
            watch(&self.stats);
        }
        let summary = ledger.close()?;
        self.stats.record_ledger(&ledger);
        tracing::info!(plugin = %self.plugin_label(), %summary, "run done");
        Ok(summary)
    }

    /// One claimed batch through the chain, the sinks and the DLQ: every entry ends with
    /// its verdict (a duplicate's without running).
    async fn run_claimed(
        &mut self,
        entries: &mut Vec<Entry>,
        claims: &Claims,
        held: &mut HashSet<String>,
        outputs: Outputs<'_>,
        retry: RetryPolicy,
    ) -> Result<(), RunError> {
        for (index, entry) in entries.iter_mut().enumerate() {
            if claims.is_duplicate(index) {
                entry.verdict = Some(Verdict::Duplicate);
            }
        }
        let mut chain = self
            .chain
            .take()
            .ok_or_else(|| RunError::PluginThread("the plugin instance was lost".into()))?;
        let budget = retry.budget;
        // The plugin runs on a blocking thread: WASI's sync bindings must not block an
        // async worker, and a long batch should not stall the runtime's other tasks.
        // The plugin's log lines belong to the invocation's span (its request id).
        let span = tracing::Span::current();
        let admitting = claims.clone();
        let mut running = std::mem::take(entries);
        let (chain, running) = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            batch::run_plugin(
                &mut chain,
                &mut running,
                |i, d| admitting.admit(i, d),
                budget,
            );
            (chain, running)
        })
        .await
        // The chain is gone with the thread: the next run starts the plugins again.
        .map_err(|e| RunError::PluginThread(e.to_string()))?;
        *entries = running;
        let mut chain = chain;
        for (index, (label, metrics)) in chain.take_metrics().into_iter().enumerate() {
            self.stats.record_stage(index, label, metrics);
        }
        if let Some(tables) = &self.lookups {
            self.stats.record_lookups(tables.take_stats());
        }
        let plugins = batch::plugin_refs(&chain);
        // The outputs are the last stage's: its manifest's schemas check them.
        let schemas = (chain.stages().last()).and_then(|r| r.plugin().output_schemas());
        self.chain = Some(chain);
        let router = self.router_for(outputs);
        let target = Target {
            router,
            dlq: &self.dlq,
            retry,
            redelivers: claims.redelivers(),
            schemas: schemas.as_deref(),
        };
        deliver::deliver(entries, &plugins, held, target).await?;
        if let Some(reason) = router.broken().or_else(|| self.dlq.sink.broken()) {
            return Err(RunError::Broken(reason));
        }
        Ok(())
    }

    /// Where `outputs` go.
    fn router_for<'r>(&'r self, outputs: Outputs<'r>) -> &'r Router {
        match outputs {
            Outputs::Sinks => &self.router,
            Outputs::To(router) => router,
        }
    }

    /// Claims a batch's items in the idempotency store, if there is one. A store that
    /// cannot be reached hands every item back to a source that redelivers, and stops
    /// the run of one that does not.
    async fn claim(
        &self,
        entries: &[Entry],
        redelivers: bool,
        budget: Budget,
    ) -> Result<Claims, RunError> {
        let Some(store) = &self.store else {
            return Ok(Claims::none(entries.len(), redelivers));
        };
        match Claims::make(store, entries, redelivers, budget, self.time_margin).await {
            Ok(claims) => Ok(claims),
            Err(e) if redelivers => {
                tracing::error!(error = %e, "the idempotency store cannot be reached; the batch goes back to its source");
                Ok(Claims::unavailable(entries, &e))
            }
            Err(e) => Err(RunError::Store(e)),
        }
    }

    /// Makes every delivery final (file sinks move into place: those of `outputs` too),
    /// then marks done in the idempotency store the records that waited for it. Call
    /// once the run is complete; a pipeline dropped without it leaves no half-written
    /// files (and its records' claims expire).
    pub async fn finish(&mut self, outputs: Outputs<'_>) -> Result<(), RunError> {
        // A tiered start's Cranelift compile still running finishes into the cache, so
        // the next `host run` of the same plugin starts from it.
        self.engine.finish_background();
        let committed = match outputs {
            Outputs::To(router) => router.finish(),
            Outputs::Sinks => Ok(()),
        }
        .and_then(|()| self.router.finish())
        .and_then(|()| self.dlq.sink.finish());
        if let Err(e) = committed {
            self.release_uncommitted().await;
            return Err(RunError::Finish(e));
        }
        let done = std::mem::take(&mut self.uncommitted);
        if let Some(store) = &self.store
            && let Err(e) = store.done(&done, self.retry).await
        {
            // The files stand; a rerun after the claims expire sends these records again.
            tracing::error!(error = %e, records = done.len(), "cannot mark records done in the idempotency store; a rerun after their claims expire runs them again");
        }
        Ok(())
    }

    /// Releases the claims of the records that waited for files that will not be
    /// committed, so a rerun takes them at once instead of waiting for them to expire.
    async fn release_uncommitted(&mut self) {
        let waiting = std::mem::take(&mut self.uncommitted);
        if let Some(store) = &self.store
            && let Err(e) = store.release(&waiting).await
        {
            tracing::error!(error = %e, records = waiting.len(), "cannot release claims in the idempotency store; a rerun waits for them to expire");
        }
    }

    /// Starts every stage's plugin again (after a plugin thread was lost to a panic).
    async fn restart(&mut self) -> Result<(), RunError> {
        let mut runners = Vec::with_capacity(self.plugins.len());
        for source in &mut self.plugins {
            let loaded = source.load(Some(&self.aws)).await.map_err(|e| {
                RunError::PluginThread(format!("cannot start {} again: {e}", source.location()))
            })?;
            loaded.log_ready("plugin started again");
            runners.push(loaded.runner);
        }
        self.chain = Some(Chain::new(runners));
        Ok(())
    }

    /// Before a run: takes any new plugin version that is due, verified and started.
    /// A version that fails any step is logged with its reason; the serving one stays.
    async fn refresh(&mut self) {
        let Some(chain) = self.chain.as_mut() else {
            return;
        };
        for (stage, source) in self.plugins.iter_mut().enumerate() {
            match source.check(&self.aws).await {
                Ok(None) => {}
                Ok(Some(loaded)) => {
                    let before = chain.stages()[stage].plugin().label();
                    loaded.log_ready(&format!("plugin swapped (was {before})"));
                    // What the old version did since the last batch stays counted.
                    for (index, (label, metrics)) in chain.take_metrics().into_iter().enumerate() {
                        self.stats.record_stage(index, label, metrics);
                    }
                    chain.replace(stage, loaded.runner);
                    self.stats.swaps += 1;
                }
                Err(e) => {
                    self.stats.refused_versions += 1;
                    tracing::error!(
                        location = %source.location(),
                        serving = %chain.stages()[stage].plugin().label(),
                        reason = %e,
                        "new plugin version refused; the serving version stays"
                    );
                }
            }
        }
    }

    /// The framed records' opener, when a framing is on.
    pub fn schemas(&self) -> Option<&Schemas> {
        self.schemas.as_ref()
    }

    /// How each stage's plugin became ready when the pipeline started.
    pub fn start_timings(&self) -> &[crate::registry::Timings] {
        &self.start_timings
    }

    /// Forgets the last run's counts (before an invocation that may fail before its run
    /// starts, so it does not report the last one's again).
    pub fn reset_stats(&mut self) {
        self.stats = RunStats::default();
    }

    /// What the current or last run did so far (a failed run: up to its last settled
    /// batch).
    pub fn stats(&self) -> &RunStats {
        &self.stats
    }

    /// `name@version` of the plugins serving, in chain order.
    pub fn plugin_label(&self) -> String {
        self.chain
            .as_ref()
            .map_or_else(|| "(none)".into(), Chain::label)
    }

    /// The closing line of a command: the counts, the plugin(s), and what the runner saw
    /// (one bracket per stage for a chain).
    pub fn summary_line(&self, summary: &Summary) -> String {
        let mut line = format!("summary: {summary} plugin={}", self.plugin_label());
        let Some(chain) = &self.chain else {
            return line;
        };
        let chained = chain.stages().len() > 1;
        for (index, stats) in chain.stats().iter().enumerate() {
            let Some((label, metrics)) = self.stats.stages.get(index) else {
                continue;
            };
            let mut numbers = format!("calls={} traps={}", metrics.calls, metrics.traps);
            for (name, value) in &metrics.counters {
                numbers.push_str(&format!(" counter.{name}={value}"));
            }
            if metrics.metrics_dropped > 0 {
                numbers.push_str(&format!(" metrics_dropped={}", metrics.metrics_dropped));
            }
            if chained {
                line.push_str(&format!(" [{label}: {stats} {numbers}]"));
            } else {
                line.push_str(&format!(" {numbers}"));
            }
        }
        for (table, t) in &self.stats.lookups {
            line.push_str(&format!(
                " lookup.{table}=hits:{},misses:{},calls:{},errors:{}",
                t.hits, t.misses, t.calls, t.errors
            ));
        }
        line
    }
}

/// Loads each plugin of the chain, in order, as `followed` says (each manifest with its
/// own sequence floor): their sources, their runners, and how each became ready.
async fn load_plugins(
    settings: &Settings,
    aws: &AwsClients,
    engine: &Engine,
    followed: FollowSettings,
) -> Result<
    (
        Vec<FollowedPlugin>,
        Vec<Runner>,
        Vec<crate::registry::Timings>,
    ),
    StartError,
> {
    let mut plugins = Vec::new();
    let mut runners = Vec::new();
    let mut start_timings = Vec::new();
    for location in &settings.plugins {
        let source_settings = FollowSettings {
            // With the idempotency table, a followed manifest's sequence floor is kept
            // there, where writing the bucket cannot lower it. Per manifest: a function
            // pinned to a version's manifest has its own. Only where sequences are
            // signed: unsigned, they protect nothing.
            floor: match (location, &settings.dedup) {
                (PluginLocation::S3Manifest { .. }, Some(store))
                    if settings.public_key.is_some() =>
                {
                    Some(SequenceFloor::new(
                        aws.dynamodb.clone(),
                        store.table.clone(),
                        &location.to_string(),
                    ))
                }
                _ => None,
            },
            ..followed.clone()
        };
        let mut source = FollowedPlugin::new(location.clone(), engine.clone(), source_settings);
        let loaded = source
            .load(Some(aws))
            .await
            .map_err(|reason| StartError::Plugin {
                location: location.to_string(),
                setting: settings.name_of("PIPELINE_PLUGIN"),
                reason,
            })?;
        loaded.log_ready("plugin ready");
        start_timings.push(loaded.timings);
        runners.push(loaded.runner);
        plugins.push(source);
    }
    if runners.is_empty() {
        return Err(StartError::NoPlugin {
            setting: settings.name_of("PIPELINE_PLUGIN"),
        });
    }
    Ok((plugins, runners, start_timings))
}

/// The named sinks, connected (a wrong queue name fails here), each writing its
/// registry's framing when its spec asks; Parquet sinks checked against the columns the
/// `last` stage declares.
async fn connect_sinks(
    settings: &Settings,
    aws: &AwsClients,
    registries: Registries,
    last: Option<&Runner>,
) -> Result<Router, StartError> {
    let schemas_error = |reason| StartError::Schemas {
        setting: settings.name_of("PIPELINE_SINKS"),
        reason,
    };
    let mut sinks = BTreeMap::new();
    for (name, spec) in &settings.sinks {
        let sink = Sink::connect(spec, aws)
            .await
            .map_err(|reason| StartError::Sink {
                name: name.clone(),
                setting: settings.name_of("PIPELINE_SINKS"),
                reason,
            })?;
        sinks.insert(name.clone(), sink);
    }
    let mut router = Router::new(sinks);
    for (name, spec) in &settings.sinks {
        if let Some(target) = spec.schema() {
            let writer =
                FramedWriter::new(target.clone(), registries.clone(), settings.schema_register)
                    .map_err(|reason| schemas_error(format!("sink `{name}`: {reason}")))?;
            router = router.with_framing(name, writer);
        }
    }
    check_parquet_columns(settings, last).map_err(schemas_error)?;
    Ok(router)
}

/// A Parquet sink takes its columns from the schema the last stage declares for it: one
/// with no Parquet form (a union of two types, bytes) stops the start, named, rather than
/// dead-lettering every output. (A version swapped in later is checked per batch.)
fn check_parquet_columns(settings: &Settings, last: Option<&Runner>) -> Result<(), String> {
    let Some(schemas) = last.and_then(|r| r.plugin().output_schemas()) else {
        return Ok(());
    };
    for (name, spec) in &settings.sinks {
        let parquet = matches!(
            spec,
            SinkSpec::S3 {
                format: ObjectFormat::Parquet,
                ..
            }
        );
        if let (true, Some((declared, _))) = (parquet, schemas.declared(name)) {
            crate::sinks::parquet::columns_of(declared).map_err(|why| {
                format!("sink `{name}` writes Parquet in the columns of the plugin's declared schema, which has none: {why}")
            })?;
        }
    }
    Ok(())
}

/// What plugins read and records are opened and written with, set up at start: the
/// lookup tables (when any is mapped), the schema registries, and the framed records'
/// opener (when a framing is on).
async fn reference_data(
    settings: &Settings,
    aws: &AwsClients,
) -> Result<(Option<Arc<Tables>>, Option<Schemas>, Registries), StartError> {
    let lookups = if settings.lookups.is_empty() {
        None
    } else {
        let tables = Tables::connect(&settings.lookup_settings(), Some(aws))
            .await
            .map_err(|reason| StartError::Lookups {
                setting: settings.name_of("PIPELINE_LOOKUPS"),
                reason,
            })?;
        Some(tables)
    };
    let credential = match &settings.confluent_secret {
        None => None,
        Some(secret) => Some(
            crate::schemas::secret_credential(&aws.secrets, secret)
                .await
                .map_err(|reason| StartError::Schemas {
                    setting: settings.name_of("PIPELINE_CONFLUENT_SECRET"),
                    reason,
                })?,
        ),
    };
    let registries = Registries::new(
        aws.glue.clone(),
        settings.confluent_registry.as_deref(),
        credential.as_deref(),
    )
    .map_err(|reason| StartError::Schemas {
        setting: settings.name_of("PIPELINE_CONFLUENT_REGISTRY"),
        reason,
    })?;
    let schemas = Schemas::new(
        settings.schema_framing,
        registries.clone(),
        settings.max_record_bytes,
    );
    Ok((lookups, schemas, registries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::PluginLocation;
    use crate::sinks::{Emit, SinkSpec};
    use crate::sources::{FileSource, InputFormat};

    /// The example plugin `./dev test` builds before the tests run.
    fn enrich() -> std::path::PathBuf {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/wasm32-wasip2/plugin/enrich.wasm");
        assert!(
            path.exists(),
            "{} is missing: run `./dev plugins`",
            path.display()
        );
        path
    }

    fn source(text: &'static str) -> FileSource {
        FileSource::new(Box::new(text.as_bytes()), InputFormat::Jsonl, "t").expect("source")
    }

    /// A record `enrich` transforms.
    const EVENT: &str =
        r#"{"id":"a","user":"u","action":"buy","amount":1,"ts":"2026-11-26T12:00:00Z"}"#;

    /// A pipeline running `enrich`, its DLQ and outputs files in `dir`.
    async fn started(dir: &std::path::Path) -> (Pipeline, Router) {
        let settings = Settings {
            plugins: vec![PluginLocation::File(enrich())],
            dlq: SinkSpec::File {
                path: Some(dir.join("dlq.jsonl")),
                emit: Emit::Payload,
            },
            cache_dir: None,
            ..Settings::default()
        };
        let aws = AwsClients::unconfigured();
        let pipeline = Pipeline::start(&settings, &aws).await.expect("start");
        let out = Sink::connect(
            &SinkSpec::File {
                path: Some(dir.join("out.jsonl")),
                emit: Emit::Payload,
            },
            &aws,
        )
        .await
        .expect("output file");
        (pipeline, Router::only(out))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_plugin_thread_lost_to_a_panic_is_started_again_for_the_next_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut pipeline, router) = started(dir.path()).await;
        // What a panic on the plugin thread leaves behind: no chain.
        pipeline.chain = None;
        let summary = pipeline
            .run(
                &mut source(EVENT),
                Outputs::To(&router),
                Budget::unbounded(),
            )
            .await
            .expect("the next run starts the plugins again");
        assert_eq!((summary.input, summary.transformed), (1, 1));
        assert!(pipeline.chain.is_some());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn blank_input_comes_back_for_the_budget_and_runs_no_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut pipeline, router) = started(dir.path()).await;
        let text = format!("{}{EVENT}\n", "\n".repeat(10_000));
        let limits = crate::sources::InputLimits {
            record: 1024,
            ..crate::sources::InputLimits::default()
        };
        let mut source = FileSource::within(
            Box::new(std::io::Cursor::new(text)),
            InputFormat::Jsonl,
            "t",
            limits,
        )
        .expect("source");
        let summary = pipeline
            .run(&mut source, Outputs::To(&router), Budget::unbounded())
            .await
            .expect("run");
        assert_eq!((summary.input, summary.transformed), (1, 1));
        // The empty batches of blank lines before the record ran nothing.
        assert_eq!(pipeline.stats().batch_durations.len(), 1);
    }
}
