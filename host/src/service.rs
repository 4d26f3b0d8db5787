//! The pipeline around one plugin, shared by the Lambda host and `host run --sink` /
//! `host reprocess`: the plugin instance, the sinks, the dead-letter queue, and the two
//! ways records arrive (decoded items, or an S3 object streamed in batches).

use std::collections::BTreeMap;

use anyhow::Context as _;

use crate::accounting::Summary;
use crate::aws::AwsClients;
use crate::engine::{Engine, Runner};
use crate::lambda::LambdaConfig;
use crate::pipeline::{self, BatchReport, Delivery};
use crate::sinks::{RetryPolicy, Router, Sink};
use crate::sources::s3::ObjectBatches;
use crate::sources::{Decoded, ObjectRef};

/// The pipeline around one plugin: the plugin instance, the sinks, the dead-letter queue.
/// Built once (a Lambda cold start, or a `host run --sink` / `host reprocess` start).
pub struct Service {
    /// `None` only while a batch runs on a blocking thread.
    runner: Option<Runner>,
    router: Router,
    dlq: Sink,
    retry: RetryPolicy,
    aws: AwsClients,
}

impl Service {
    /// The cold start: plugin, sinks, DLQ. Errors name what failed.
    pub async fn start(config: LambdaConfig, aws: &AwsClients) -> anyhow::Result<Self> {
        let engine = Engine::new(&config.limits)?;
        let plugin = match config.plugin.strip_prefix("s3://") {
            Some(location) => {
                let (bucket, key) = location.split_once('/').ok_or_else(|| {
                    anyhow::anyhow!(
                        "PIPELINE_PLUGIN {:?}: expected s3://bucket/key",
                        config.plugin
                    )
                })?;
                let bytes = aws.object_bytes(bucket, key).await.map_err(|e| {
                    anyhow::anyhow!("PIPELINE_PLUGIN {}: cannot fetch: {e}", config.plugin)
                })?;
                engine.load_bytes(&bytes, &config.plugin)?
            }
            None => engine.load_file(std::path::Path::new(&config.plugin))?,
        };
        tracing::info!(plugin = %plugin.label(), "plugin loaded");
        let runner = Runner::new(plugin, config.plugin_config)?;
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
            runner: Some(runner),
            router: Router::new(sinks),
            dlq,
            retry,
        })
    }

    /// `name@version` of the plugin serving.
    pub fn plugin_label(&self) -> String {
        self.runner
            .as_ref()
            .map_or_else(|| "(none)".into(), |r| r.plugin().label())
    }

    /// Runs decoded items through the plugin and delivers the results: outputs to the
    /// sinks (or, `in_response`, kept in the report), failures to the DLQ.
    pub async fn process(
        &mut self,
        items: Vec<Decoded>,
        in_response: bool,
        source_retries: bool,
    ) -> anyhow::Result<BatchReport> {
        // The plugin runs on a blocking thread: WASI's sync bindings must not block an
        // async worker, and a long batch should not stall the runtime's other tasks.
        let mut runner = self
            .runner
            .take()
            .context("the plugin instance was lost by an earlier failure")?;
        let (runner, ran) = tokio::task::spawn_blocking(move || {
            let ran = pipeline::run_plugin(&mut runner, items);
            (runner, ran)
        })
        .await
        .context("the plugin thread failed")?;
        self.runner = Some(runner);
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
        let batch_size = self
            .runner
            .as_ref()
            .map_or(1000, |r| r.plugin().limits().batch_size);
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
