//! The host as an AWS Lambda custom runtime (`provided.al2023`, binary `bootstrap`).
//!
//! Cold start reads the configuration from the environment, loads the plugin (a local
//! path or `s3://bucket/key`), connects the sinks and the DLQ, and starts the plugin;
//! any mistake fails the cold start with a message naming the variable. Each invocation
//! decodes its event, runs it through [`crate::pipeline`], and answers in the event
//! source's own terms: `batchItemFailures` for SQS, Kinesis and DynamoDB Streams, the
//! Firehose transformation response, a summary for direct invocations.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `PIPELINE_PLUGIN` | `s3://bucket/plugins/NAME/` (follows its `manifest.json`), `s3://bucket/…/versions/V.json` (stays on V), `s3://bucket/key.wasm` or a path; several, comma-separated, make a chain | required |
//! | `PIPELINE_PLUGIN_CONFIG` | plugin settings, `key=value,key=value`, over the manifest's defaults; every stage sees them | none |
//! | `PIPELINE_PLUGIN_CHECK_SECONDS` | least time between two checks of the manifest for a new version (`0`: before every batch) | `30` |
//! | `PIPELINE_PLUGIN_PUBLIC_KEY` | ed25519 public key (hex or base64); manifests must be signed by it | none |
//! | `PIPELINE_CACHE_DIR` | where precompiled plugins are kept (`off`: compile every cold start) | `/tmp/plugin-cache` |
//! | `PIPELINE_SINKS` | `name=spec,...`; `default` takes outputs without a destination | none |
//! | `PIPELINE_DLQ` | `sqs://QUEUE` or `s3://BUCKET/PREFIX` | required |
//! | `PIPELINE_BATCH_SIZE`, `PIPELINE_MEMORY_MIB`, `PIPELINE_DEADLINE_MS`, `PIPELINE_MAX_OUTPUT_BYTES`, `PIPELINE_MAX_ATTEMPTS`, `PIPELINE_RETRY_BASE_MS` | limits, as the `host run` flags | as `host run` |
//! | `PIPELINE_S3_PATH_STYLE` | `true` for S3 emulators | `false` |

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::firehose::{KinesisFirehoseResponse, KinesisFirehoseResponseRecord};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use aws_lambda_events::event::streams::{
    DynamoDbBatchItemFailure, DynamoDbEventResponse, KinesisBatchItemFailure, KinesisEventResponse,
};
use ed25519_dalek::VerifyingKey;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::accounting::Summary;
use crate::aws::AwsClients;
use crate::config::{ConfigError, Limits};
use crate::pipeline::{BatchReport, ItemStatus};
use crate::record::Outcome;
use crate::registry::{PluginLocation, verifying_key};
use crate::service::Service;
use crate::sinks::SinkSpec;
use crate::sources::{EventKind, events};

/// Firehose refuses a transformation response over 6 MB; keep a margin for the JSON.
const FIREHOSE_RESPONSE_LIMIT: usize = 6_000_000 - (64 << 10);

/// Where precompiled plugins go: Lambda's writable `/tmp`, kept across warm invocations.
const DEFAULT_CACHE_DIR: &str = "/tmp/plugin-cache";

/// How often a warm host looks for a new plugin version by default.
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The Lambda configuration, as read from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaConfig {
    /// `PIPELINE_PLUGIN`: one location, or several for a chain.
    pub plugins: Vec<PluginLocation>,
    /// `PIPELINE_PLUGIN_CONFIG`.
    pub plugin_config: Vec<(String, String)>,
    /// `PIPELINE_PLUGIN_CHECK_SECONDS`.
    pub check_interval: Duration,
    /// `PIPELINE_CACHE_DIR`; `None` when off.
    pub cache_dir: Option<PathBuf>,
    /// `PIPELINE_PLUGIN_PUBLIC_KEY`.
    pub public_key: Option<VerifyingKey>,
    /// `PIPELINE_SINKS`.
    pub sinks: BTreeMap<String, SinkSpec>,
    /// `PIPELINE_DLQ`.
    pub dlq: SinkSpec,
    /// The limits.
    pub limits: Limits,
}

/// A missing or malformed environment variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("environment variable {variable}: {reason}")]
pub struct EnvError {
    /// The variable's name.
    pub variable: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl LambdaConfig {
    /// Reads the configuration through `get` (the process environment in production).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let required = |variable: &'static str| {
            get(variable)
                .filter(|v| !v.trim().is_empty())
                .ok_or(EnvError {
                    variable,
                    reason: "is not set".into(),
                })
        };
        let pairs = |variable: &'static str| -> Result<Vec<(String, String)>, EnvError> {
            let Some(raw) = get(variable) else {
                return Ok(Vec::new());
            };
            raw.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() => {
                        Ok((k.trim().to_owned(), v.trim().to_owned()))
                    }
                    _ => Err(EnvError {
                        variable,
                        reason: format!("expected name=value, got {pair:?}"),
                    }),
                })
                .collect()
        };
        let number = |variable: &'static str| -> Result<Option<u64>, EnvError> {
            get(variable)
                .map(|raw| {
                    raw.trim().parse().map_err(|e| EnvError {
                        variable,
                        reason: format!("{raw:?}: {e}"),
                    })
                })
                .transpose()
        };
        let mut sinks = BTreeMap::new();
        for (name, spec) in pairs("PIPELINE_SINKS")? {
            let spec = spec
                .parse()
                .map_err(|e: crate::sinks::SinkSpecError| EnvError {
                    variable: "PIPELINE_SINKS",
                    reason: e.to_string(),
                })?;
            sinks.insert(name, spec);
        }
        let dlq = required("PIPELINE_DLQ")?
            .parse()
            .map_err(|e: crate::sinks::SinkSpecError| EnvError {
                variable: "PIPELINE_DLQ",
                reason: e.to_string(),
            })?;
        if matches!(dlq, SinkSpec::Kinesis { .. }) {
            return Err(EnvError {
                variable: "PIPELINE_DLQ",
                reason: "must be sqs://QUEUE or s3://BUCKET/PREFIX".into(),
            });
        }
        let d = Limits::default();
        let limits = Limits {
            batch_size: number("PIPELINE_BATCH_SIZE")?.map_or(d.batch_size, |n| n as usize),
            memory_bytes: number("PIPELINE_MEMORY_MIB")?
                .map_or(d.memory_bytes, |n| (n as usize).saturating_mul(1 << 20)),
            deadline: number("PIPELINE_DEADLINE_MS")?.map_or(d.deadline, Duration::from_millis),
            max_output_bytes: number("PIPELINE_MAX_OUTPUT_BYTES")?
                .map_or(d.max_output_bytes, |n| n as usize),
            max_attempts: number("PIPELINE_MAX_ATTEMPTS")?.map_or(d.max_attempts, |n| n as u32),
            retry_base_delay: number("PIPELINE_RETRY_BASE_MS")?
                .map_or(d.retry_base_delay, Duration::from_millis),
        };
        limits
            .validate()
            .map_err(|ConfigError { setting, reason }| EnvError {
                variable: env_name(setting),
                reason,
            })?;
        let plugins = required("PIPELINE_PLUGIN")?
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PluginLocation::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| EnvError {
                variable: "PIPELINE_PLUGIN",
                reason,
            })?;
        let cache_dir = match get("PIPELINE_CACHE_DIR").map(|v| v.trim().to_owned()) {
            None => Some(PathBuf::from(DEFAULT_CACHE_DIR)),
            Some(v) if v.is_empty() || v == "off" => None,
            Some(v) => Some(PathBuf::from(v)),
        };
        let public_key = get("PIPELINE_PLUGIN_PUBLIC_KEY")
            .filter(|v| !v.trim().is_empty())
            .map(|v| verifying_key(&v))
            .transpose()
            .map_err(|reason| EnvError {
                variable: "PIPELINE_PLUGIN_PUBLIC_KEY",
                reason,
            })?;
        Ok(Self {
            plugins,
            plugin_config: pairs("PIPELINE_PLUGIN_CONFIG")?,
            check_interval: number("PIPELINE_PLUGIN_CHECK_SECONDS")?
                .map_or(DEFAULT_CHECK_INTERVAL, Duration::from_secs),
            cache_dir,
            public_key,
            sinks,
            dlq,
            limits,
        })
    }
}

/// The environment variable behind a limit's setting name.
fn env_name(setting: &str) -> &'static str {
    match setting {
        "memory-mib" => "PIPELINE_MEMORY_MIB",
        "deadline-ms" => "PIPELINE_DEADLINE_MS",
        "max-output-bytes" => "PIPELINE_MAX_OUTPUT_BYTES",
        "batch-size" => "PIPELINE_BATCH_SIZE",
        "max-attempts" => "PIPELINE_MAX_ATTEMPTS",
        _ => "PIPELINE_RETRY_BASE_MS",
    }
}

/// Handles one event; the response is in the event source's terms.
pub async fn handle(service: &mut Service, event: Value) -> anyhow::Result<Value> {
    let kind = events::detect(&event)?;
    let decoded = events::decode(kind, event)?;
    if kind == EventKind::S3 {
        let mut summary = Summary::default();
        for object in &decoded.objects {
            summary.add(&service.process_object(object).await?);
        }
        return Ok(summary_json(&summary, service));
    }
    let ids: Vec<String> = decoded.items.iter().map(|i| i.id.clone()).collect();
    let items = decoded.items.into_iter().map(|i| i.decoded).collect();
    let source_retries = matches!(
        kind,
        EventKind::Kinesis | EventKind::Sqs | EventKind::Dynamodb
    );
    let report = service
        .process(items, kind == EventKind::Firehose, source_retries)
        .await?;
    let retry_ids: Vec<String> = ids
        .iter()
        .zip(&report.statuses)
        .filter(|(_, s)| **s == ItemStatus::Retry)
        .map(|(id, _)| id.clone())
        .collect();
    // The response types are `#[non_exhaustive]`: built from `Default`, field by field.
    let response = match kind {
        EventKind::Sqs => {
            let mut response = SqsBatchResponse::default();
            for id in retry_ids {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
            serde_json::to_value(response)?
        }
        EventKind::Kinesis => {
            let mut response = KinesisEventResponse::default();
            for id in retry_ids {
                let mut failure = KinesisBatchItemFailure::default();
                failure.item_identifier = Some(id);
                response.batch_item_failures.push(failure);
            }
            serde_json::to_value(response)?
        }
        EventKind::Dynamodb => {
            let mut response = DynamoDbEventResponse::default();
            for id in retry_ids {
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(id);
                response.batch_item_failures.push(failure);
            }
            serde_json::to_value(response)?
        }
        EventKind::Firehose => serde_json::to_value(firehose_response(&ids, &report))?,
        EventKind::Direct | EventKind::S3 => summary_json(&report.summary, service),
    };
    Ok(response)
}

/// One response record per input record: `Ok` with the outputs' payloads joined by
/// newlines, `Dropped`, or `ProcessingFailed` (also once the 6 MB response limit is hit).
fn firehose_response(ids: &[String], report: &BatchReport) -> KinesisFirehoseResponse {
    let mut size = 0;
    let records = ids
        .iter()
        .zip(&report.outcomes)
        .map(|(id, outcome)| {
            let (result, data) = match outcome {
                Outcome::Transformed(outputs) => {
                    let data = outputs.iter().map(|o| &o.payload[..]).collect::<Vec<_>>().join(&b"\n"[..]);
                    size += data.len() * 4 / 3 + id.len() + 64;
                    if size > FIREHOSE_RESPONSE_LIMIT {
                        tracing::error!(record_id = %id, "Firehose response size limit reached; failing the rest");
                        ("ProcessingFailed", Vec::new())
                    } else {
                        ("Ok", data)
                    }
                }
                Outcome::Dropped => ("Dropped", Vec::new()),
                Outcome::Failed(_) => ("ProcessingFailed", Vec::new()),
            };
            let mut record = KinesisFirehoseResponseRecord::default();
            record.record_id = Some(id.clone());
            record.result = Some(result.to_owned());
            *record.data = data;
            record
        })
        .collect();
    let mut response = KinesisFirehoseResponse::default();
    response.records = records;
    response
}

/// The answer to a direct invocation or an S3 notification: the counts, and the plugin
/// version(s) that ran.
fn summary_json(s: &Summary, service: &Service) -> Value {
    serde_json::json!({
        "in": s.input, "transformed": s.transformed, "dropped": s.dropped,
        "failed": s.failed, "retried": s.retried, "outputs": s.outputs,
        "plugin": service.plugin_label(),
    })
}

/// Runs the Lambda runtime loop: cold start, then one invocation at a time. A failed
/// cold start is reported to the Runtime API's init-error endpoint before exiting.
pub async fn run() -> anyhow::Result<()> {
    let service = match cold_start().await {
        Ok(service) => Arc::new(Mutex::new(service)),
        Err(e) => {
            let message = format!("{e:#}");
            if let Err(report) = report_init_error(&message).await {
                tracing::error!(error = %report, "cannot report the init error to the Runtime API");
            }
            return Err(e);
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let service = service.clone();
        async move {
            let mut service = service.lock().await;
            handle(&mut service, event.payload)
                .await
                .map_err(|e| lambda_runtime::Error::from(format!("{e:#}")))
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!("Lambda runtime: {e}"))
}

async fn cold_start() -> anyhow::Result<Service> {
    let config = LambdaConfig::from_env(|name| std::env::var(name).ok())?;
    let aws = AwsClients::from_env().await;
    Service::start(config, &aws).await
}

/// `POST /2018-06-01/runtime/init/error`, as the Runtime API documents it.
async fn report_init_error(message: &str) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").map_err(std::io::Error::other)?;
    let body =
        serde_json::json!({ "errorMessage": message, "errorType": "Runtime.ColdStartError" })
            .to_string();
    let request = format!(
        "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\n\
         Lambda-Runtime-Function-Error-Type: Runtime.ColdStartError\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&api).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn reads_a_full_configuration() {
        let config = LambdaConfig::from_env(env(&[
            ("PIPELINE_PLUGIN", "s3://plugins/enrich.wasm"),
            ("PIPELINE_PLUGIN_CONFIG", "currency=USD, region=eu"),
            (
                "PIPELINE_SINKS",
                "default=kinesis://out?gzip=true,audit=s3://lake/audit",
            ),
            ("PIPELINE_DLQ", "sqs://dlq"),
            ("PIPELINE_BATCH_SIZE", "250"),
        ]))
        .expect("valid");
        assert_eq!(config.plugin_config[1], ("region".into(), "eu".into()));
        assert_eq!(
            config.sinks["default"],
            SinkSpec::Kinesis {
                stream: "out".into(),
                gzip: true
            }
        );
        assert_eq!(config.limits.batch_size, 250);
        assert_eq!(config.plugins.len(), 1);
        assert_eq!(config.check_interval, DEFAULT_CHECK_INTERVAL);
        assert_eq!(config.cache_dir, Some(PathBuf::from(DEFAULT_CACHE_DIR)));
        assert_eq!(config.public_key, None);
    }

    #[test]
    fn reads_a_chain_of_followed_plugins() {
        let public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let config = LambdaConfig::from_env(env(&[
            (
                "PIPELINE_PLUGIN",
                "s3://plugins/plugins/validate/, s3://plugins/plugins/enrich/versions/0.2.0.json",
            ),
            ("PIPELINE_DLQ", "sqs://dlq"),
            ("PIPELINE_PLUGIN_CHECK_SECONDS", "0"),
            ("PIPELINE_CACHE_DIR", "off"),
            ("PIPELINE_PLUGIN_PUBLIC_KEY", public),
        ]))
        .expect("valid");
        assert_eq!(
            config.plugins,
            [
                PluginLocation::S3Manifest {
                    bucket: "plugins".into(),
                    key: "plugins/validate/manifest.json".into()
                },
                PluginLocation::S3Manifest {
                    bucket: "plugins".into(),
                    key: "plugins/enrich/versions/0.2.0.json".into()
                }
            ]
        );
        assert_eq!(config.check_interval, Duration::ZERO);
        assert_eq!(config.cache_dir, None);
        assert!(config.public_key.is_some());
        let bad = LambdaConfig::from_env(env(&[
            ("PIPELINE_PLUGIN", "s3://plugins/plugins/validate/"),
            ("PIPELINE_DLQ", "sqs://dlq"),
            ("PIPELINE_PLUGIN_PUBLIC_KEY", "not-a-key"),
        ]))
        .expect_err("bad key");
        assert_eq!(bad.variable, "PIPELINE_PLUGIN_PUBLIC_KEY");
    }

    #[test]
    fn errors_name_the_variable() {
        let err =
            LambdaConfig::from_env(env(&[("PIPELINE_DLQ", "sqs://dlq")])).expect_err("no plugin");
        assert_eq!(err.variable, "PIPELINE_PLUGIN");
        let base = [("PIPELINE_PLUGIN", "p.wasm"), ("PIPELINE_DLQ", "sqs://dlq")];
        let with = |extra: (&'static str, &'static str)| {
            let mut pairs = base.to_vec();
            pairs.push(extra);
            LambdaConfig::from_env(env(&pairs))
                .expect_err("bad")
                .variable
        };
        assert_eq!(with(("PIPELINE_BATCH_SIZE", "lots")), "PIPELINE_BATCH_SIZE");
        assert_eq!(with(("PIPELINE_BATCH_SIZE", "0")), "PIPELINE_BATCH_SIZE");
        assert_eq!(
            with(("PIPELINE_SINKS", "default=ftp://x")),
            "PIPELINE_SINKS"
        );
        assert_eq!(with(("PIPELINE_DLQ", "kinesis://x")), "PIPELINE_DLQ");
    }
}
