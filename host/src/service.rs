//! The pipeline around one plugin or a chain, shared by the Lambda host and
//! `host run --sink` / `host reprocess`: the plugin instances and where they come from
//! (checked for new versions between batches, never during one), the sinks, the
//! dead-letter queue, and the two ways records arrive (decoded items, or an S3 object
//! streamed in batches).

use std::collections::BTreeMap;

use anyhow::Context as _;

use crate::accounting::Summary;
use crate::aws::AwsClients;
use crate::engine::{Chain, Engine};
use crate::lambda::LambdaConfig;
use crate::pipeline::{self, BatchReport, Delivery};
use crate::registry::{PluginSource, SourceSettings};
use crate::sinks::{RetryPolicy, Router, Sink};
use crate::sources::s3::ObjectBatches;
use crate::sources::{Decoded, ObjectRef};

/// The pipeline around one plugin (or a chain): the plugin instances, where they come
/// from, the sinks, the dead-letter queue. Built once (a Lambda cold start, or a
/// `host run --sink` / `host reprocess` start).
pub struct Service {
    /// `None` only while a batch runs on a blocking thread.
    chain: Option<Chain>,
    /// One per stage: where its plugin comes from, checked between batches.
    sources: Vec<PluginSource>,
    router: Router,
    dlq: Sink,
    retry: RetryPolicy,
    aws: AwsClients,
}

impl Service {
    /// The cold start: plugins, sinks, DLQ. Errors name what failed.
    pub async fn start(config: LambdaConfig, aws: &AwsClients) -> anyhow::Result<Self> {
        let engine = Engine::new(&config.limits)?;
        let cache = config.cache_dir.as_ref().and_then(|dir| {
            engine
                .artifact_cache(dir)
                .inspect_err(|e| {
                    tracing::warn!(dir = %dir.display(), error = %e, "no precompiled cache: compiling every cold start");
                })
                .ok()
        });
        let mut sources = Vec::new();
        let mut runners = Vec::new();
        for location in &config.plugins {
            let settings = SourceSettings {
                check_interval: config.check_interval,
                cache: cache.clone(),
                public_key: config.public_key,
                config: config.plugin_config.clone(),
            };
            let mut source = PluginSource::new(location.clone(), engine.clone(), settings);
            let loaded = source
                .load(Some(aws))
                .await
                .with_context(|| format!("PIPELINE_PLUGIN {location}"))?;
            loaded.log_ready("plugin ready");
            runners.push(loaded.runner);
            sources.push(source);
        }
        anyhow::ensure!(!runners.is_empty(), "PIPELINE_PLUGIN: no plugin configured");
        let mut sinks = BTreeMap::new();
        for (name, spec) in &config.sinks {
            let sink = Sink::connect(spec, aws)
                .await
                .map_err(|e| anyhow::anyhow!("PIPELINE_SINKS {name}: {e}"))?;
            sinks.insert(name.clone(), sink);
        }
        let dlq = Sink::connect(&config.dlq, aws)
            .await
            .map_err(|e| anyhow::anyhow!("PIPELINE_DLQ: {e}"))?;
        let retry = RetryPolicy {
            max_attempts: config.limits.max_attempts,
            base_delay: config.limits.retry_base_delay,
        };
        Ok(Self {
            aws: aws.clone(),
            chain: Some(Chain::new(runners)),
            sources,
            router: Router::new(sinks),
            dlq,
            retry,
        })
    }

    /// `name@version` of the plugins serving, in chain order.
    pub fn plugin_label(&self) -> String {
        self.chain
            .as_ref()
            .map_or_else(|| "(none)".into(), Chain::label)
    }

    /// Per-stage counts since the start, `name@version: in=… out=…` per stage.
    pub fn stage_report(&self) -> String {
        self.chain.as_ref().map_or_else(String::new, |chain| {
            chain
                .stages()
                .iter()
                .zip(chain.stats())
                .map(|(runner, stats)| format!("[{}: {stats}]", runner.plugin().label()))
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    /// Between batches: takes any new plugin version that is due, verified and started.
    /// A version that fails any step is logged with its reason; the serving one stays.
    async fn refresh(&mut self) {
        let Some(chain) = self.chain.as_mut() else {
            return;
        };
        for (stage, source) in self.sources.iter_mut().enumerate() {
            match source.check(&self.aws).await {
                Ok(None) => {}
                Ok(Some(loaded)) => {
                    let before = chain.stages()[stage].plugin().label();
                    loaded.log_ready(&format!("plugin swapped (was {before})"));
                    chain.replace(stage, loaded.runner);
                }
                Err(e) => tracing::error!(
                    location = %source.location(),
                    serving = %chain.stages()[stage].plugin().label(),
                    reason = %e,
                    "new plugin version refused; the serving version stays"
                ),
            }
        }
    }

    /// Runs decoded items through the plugin and delivers the results: outputs to the
    /// sinks (or, `in_response`, kept in the report), failures to the DLQ.
    pub async fn process(
        &mut self,
        items: Vec<Decoded>,
        in_response: bool,
        source_retries: bool,
    ) -> anyhow::Result<BatchReport> {
        self.refresh().await;
        // The plugin runs on a blocking thread: WASI's sync bindings must not block an
        // async worker, and a long batch should not stall the runtime's other tasks.
        let mut chain = self
            .chain
            .take()
            .context("the plugin instance was lost by an earlier failure")?;
        let (chain, ran) = tokio::task::spawn_blocking(move || {
            let ran = pipeline::run_plugin(&mut chain, items);
            (chain, ran)
        })
        .await
        .context("the plugin thread failed")?;
        let chained = chain.stages().len() > 1;
        self.chain = Some(chain);
        if chained {
            tracing::info!(stages = %self.stage_report(), "chain counts since the start");
        }
        let delivery = if in_response {
            Delivery::InResponse
        } else {
            Delivery::Sinks(&self.router)
        };
        let report = pipeline::deliver(ran, delivery, &self.dlq, self.retry, source_retries)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        anyhow::ensure!(
            report.summary.balanced(),
            "accounting does not balance: {}",
            report.summary
        );
        Ok(report)
    }

    /// Streams one S3 object through the pipeline in batches. S3 invokes asynchronously
    /// (no partial responses): a failure to read the object fails the invocation.
    pub async fn process_object(&mut self, object: &ObjectRef) -> anyhow::Result<Summary> {
        let batch_size = self.chain.as_ref().map_or(1000, Chain::batch_size);
        let aws = self.aws.clone();
        let mut batches = ObjectBatches::open(&aws, object, batch_size)
            .await
            .map_err(anyhow::Error::msg)?;
        let mut summary = Summary::default();
        while let Some(batch) = batches.next().await {
            let report = self.process(batch?, false, false).await?;
            summary.add(&report.summary);
        }
        batches.finish().await;
        tracing::info!(bucket = %object.bucket, key = %object.key, %summary, "object done");
        Ok(summary)
    }
}
