//! The host as an AWS Lambda custom runtime (`provided.al2023`, binary `bootstrap`).
//!
//! Cold start reads the [`Settings`] from the environment (a mistake fails the cold
//! start, reported to the Runtime API, naming the variable), then starts the
//! [`Pipeline`]. Each invocation picks its source from the event — the event's own items
//! ([`LambdaEvent`]) or the objects an S3 notification names ([`ObjectSource`]) — runs it
//! through the pipeline, and answers with what the source settled: `batchItemFailures`,
//! the Firehose records, or a summary.
//!
//! Time is a budget: the invocation's deadline less `PIPELINE_TIME_MARGIN_MS`. Past it
//! no batch, plugin call or retry starts, and what is left is reported for retry (a
//! source without partial answers fails the invocation instead), so Lambda never kills
//! an invocation halfway and retries its finished records with the rest.

mod error_type;

pub use error_type::ErrorType;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use lambda_runtime::{LambdaEvent as Invocation, service_fn};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::Mutex;
use tracing::Instrument as _;

use crate::accounting::Summary;
use crate::aws::AwsClients;
use crate::limits::Budget;
use crate::pipeline::RunStats;
use crate::pipeline::{Outputs, Pipeline};
use crate::settings::Settings;
use crate::sinks::{ResponseSink, Router, Sink};
use crate::sources::carried::ObjectReader;
use crate::sources::{Checkpoints, EventKind, LambdaEvent, ObjectSource, events};

/// A warm Lambda host: the pipeline and the clients its sources use.
pub struct Host {
    pipeline: Pipeline,
    aws: AwsClients,
    time_margin: Duration,
    input_limits: crate::sources::InputLimits,
    checkpoints: Option<(String, String)>,
    /// The field naming a direct invocation's records.
    id_field: String,
    /// The idempotency store is on.
    deduplicates: bool,
    /// The CloudWatch namespace of the metrics; `None`: none are written.
    metrics_namespace: Option<String>,
    /// This function's name, a dimension of its metrics.
    function: String,
    /// An invocation running longer writes metrics as it goes.
    metrics_interval: Duration,
    /// How the plugins became ready, until the first invocation reports it.
    cold_start: Option<Vec<crate::registry::Timings>>,
}

impl Host {
    /// The cold start: settings from the environment, then the pipeline.
    pub async fn start(settings: &Settings) -> anyhow::Result<Self> {
        let aws = AwsClients::from_env(settings.s3_path_style, settings.aws_timeouts).await;
        let pipeline = Pipeline::start(settings, &aws).await?;
        let cold_start = Some(pipeline.start_timings().to_vec());
        Ok(Self {
            pipeline,
            aws,
            time_margin: settings.time_margin,
            input_limits: settings.input_limits(),
            checkpoints: settings.checkpoint_location(),
            id_field: settings.dedup_id_field.clone(),
            deduplicates: settings.dedup.is_some(),
            metrics_namespace: settings.metrics_namespace.clone(),
            function: std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
            metrics_interval: settings.metrics_interval,
            cold_start,
        })
    }

    /// The budget of an invocation whose deadline is `deadline_ms` (milliseconds since
    /// the Unix epoch, as the Runtime API gives it).
    pub fn budget(&self, deadline_ms: u64) -> Budget {
        let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
        let until_deadline = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let now = Instant::now();
        Budget::until(now + until_deadline.saturating_sub(self.time_margin))
            .with_hard_deadline(now + until_deadline.saturating_sub(crate::limits::ANSWER_TIME))
    }

    /// Handles one event (its JSON text) within `budget`; the answer is in the event
    /// source's terms. The invocation's metrics (EMF) go to stdout, tagged with
    /// `request_id`.
    pub async fn handle(
        &mut self,
        event: &str,
        budget: Budget,
        request_id: &str,
    ) -> anyhow::Result<Box<RawValue>> {
        let started = std::time::Instant::now();
        self.pipeline.reset_stats();
        let kind = events::detect_text(event)?;
        let Some(namespace) = self.metrics_namespace.clone() else {
            return self.run_event(kind, event, budget, &mut |_| {}).await;
        };
        let function = self.function.clone();
        let cold_start = self.cold_start.take();
        let mut reporter = crate::metrics::Reporter::new(
            &namespace,
            &function,
            kind.as_str(),
            request_id,
            self.pipeline.plugin_label(),
            self.metrics_interval,
            cold_start.as_deref(),
        );
        let answer = self
            .run_event(kind, event, budget, &mut |stats| reporter.batch_done(stats))
            .await;
        // A failed run still reports what it did before it stopped.
        reporter.finish(self.pipeline.stats(), started.elapsed());
        answer
    }

    /// One event through the pipeline: the answer, and the run's counts.
    async fn run_event(
        &mut self,
        kind: EventKind,
        event: &str,
        budget: Budget,
        watch: &mut (dyn FnMut(&RunStats) + Send),
    ) -> anyhow::Result<Box<RawValue>> {
        let event = events::EventJson::Text(event);
        let mut decoded = events::decode_within(kind, event, self.input_limits)?;
        decoded.identify_direct(&self.id_field);
        if kind == EventKind::S3 {
            let mut source =
                ObjectSource::new(self.aws.clone(), decoded.objects, self.input_limits.record);
            if let Some((bucket, prefix)) = &self.checkpoints {
                source = source.checkpointed(Checkpoints::new(
                    self.aws.clone(),
                    bucket.clone(),
                    prefix.clone(),
                ));
            }
            let summary = self
                .pipeline
                .run_watched(&mut source, Outputs::Sinks, budget, watch)
                .await?;
            let mut answer = self.summary_json(&summary);
            if let Value::Object(fields) = &mut answer {
                // Objects whose named version was gone: not items (nothing of them was
                // read), so counted beside them, and named.
                let gone = source.gone();
                fields.insert("gone".into(), gone.len().into());
                if !gone.is_empty() {
                    let named: Vec<Value> = gone.iter().map(|g| g.to_string().into()).collect();
                    fields.insert("gone_objects".into(), named.into());
                }
            }
            return Ok(serde_json::value::to_raw_value(&answer)?);
        }
        let mut source = LambdaEvent::new(decoded).reading_objects(ObjectReader {
            aws: self.aws.clone(),
            max_record_bytes: self.input_limits.record,
            checkpoints: self.checkpoints.clone(),
            budget,
        });
        let answer_sink = match kind {
            EventKind::Firehose => Some(ResponseSink::default()),
            EventKind::Pipes => Some(ResponseSink::pipes()),
            _ => None,
        };
        let summary = if let Some(sink) = answer_sink {
            // Firehose and Pipes take the outputs back in the answer: it is the sink.
            let answer = Router::only(Sink::Response(sink));
            self.pipeline
                .run_watched(&mut source, Outputs::To(&answer), budget, watch)
                .await?
        } else {
            self.pipeline
                .run_watched(&mut source, Outputs::Sinks, budget, watch)
                .await?
        };
        let answer = source.response(self.summary_json(&summary));
        if let Err(crate::sources::lambda::AnswerError::HandedBack { .. }) = &answer
            && !self.deduplicates
        {
            tracing::warn!(
                "the event is retried whole without the idempotency store \
                 (PIPELINE_DEDUP): what this delivery sent is sent again, and an event \
                 that takes longer than one invocation never finishes"
            );
        }
        Ok(answer?)
    }

    /// The answer to a direct invocation or an S3 notification: the counts, and the
    /// plugin version(s) that ran.
    fn summary_json(&self, s: &Summary) -> Value {
        let mut answer = s.to_json();
        answer.insert("plugin".into(), self.pipeline.plugin_label().into());
        Value::Object(answer)
    }
}

/// Runs the Lambda runtime loop: cold start, then one invocation at a time. A failed
/// cold start is reported to the Runtime API's init-error endpoint before exiting.
pub async fn run() -> anyhow::Result<()> {
    let host = match cold_start().await {
        Ok(host) => Arc::new(Mutex::new(host)),
        Err(e) => {
            if let Err(report) = report_init_error(&error_type::diagnostic(&e)).await {
                tracing::error!(error = %report, "cannot report the init error to the Runtime API");
            }
            return Err(e);
        }
    };
    // The event's text as it came: each kind parses it into its own types, without a
    // `Value` of the whole event first.
    lambda_runtime::run(service_fn(move |event: Invocation<Box<RawValue>>| {
        let host = host.clone();
        async move {
            let mut host = host.lock().await;
            let budget = host.budget(event.context.deadline);
            // Every log line of the invocation carries its request id and the plugin
            // chain serving when it began (a JSON log's `span`).
            let span = tracing::info_span!(
                "invocation",
                requestId = %event.context.request_id,
                plugin = %host.pipeline.plugin_label(),
            );
            host.handle(event.payload.get(), budget, &event.context.request_id)
                .instrument(span)
                .await
                .map_err(|e| error_type::diagnostic(&e))
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!("Lambda runtime: {e}"))
}

async fn cold_start() -> anyhow::Result<Host> {
    let settings = Settings::from_env()?;
    Host::start(&settings).await.context("cold start")
}

/// `POST /2018-06-01/runtime/init/error`, as the Runtime API documents it.
async fn report_init_error(error: &lambda_runtime::Diagnostic) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").map_err(std::io::Error::other)?;
    let kind = &error.error_type;
    let body =
        serde_json::json!({ "errorMessage": error.error_message, "errorType": kind }).to_string();
    let request = format!(
        "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\n\
         Lambda-Runtime-Function-Error-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&api).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(())
}
