//! AWS clients, built once per process from the standard AWS configuration
//! (environment, profile, instance role). `AWS_ENDPOINT_URL` points every client at
//! another endpoint (a local emulator); the `PIPELINE_S3_PATH_STYLE` setting makes S3 use
//! path-style addressing, which emulators need. Also the few S3 calls that sources and
//! sinks share: reading a whole object, and writing a new one under a partitioned key.

use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::primitives::ByteStream;

use crate::limits::{RetryPolicy, backoff};

/// The clients the host's sources, sinks and dead-letter queues use.
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// S3: objects to read, JSON-lines outputs, dead-letter objects.
    pub s3: aws_sdk_s3::Client,
    /// Kinesis Data Streams: `PutRecords` outputs.
    pub kinesis: aws_sdk_kinesis::Client,
    /// SQS: `SendMessageBatch` outputs and the dead-letter queue.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB: the idempotency store.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// Glue: schemas of records framed by its schema registry.
    pub glue: aws_sdk_glue::Client,
    /// Secrets Manager: a Confluent-compatible registry's credential.
    pub secrets: aws_sdk_secretsmanager::Client,
}

/// An AWS call that failed, naming what it was about.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{what}: {reason}")]
pub struct AwsError {
    /// `s3://bucket/key`, `SQS queue q`, ...
    pub what: String,
    /// The service's answer, with its causes.
    pub reason: String,
    /// Retrying stopped because the run's time budget ran out.
    pub out_of_time: bool,
}

impl AwsError {
    /// An error about `what`, from an SDK error.
    pub fn of<E: std::error::Error + 'static>(what: impl Into<String>, error: &E) -> Self {
        Self {
            what: what.into(),
            reason: describe_error(error),
            out_of_time: false,
        }
    }
}

/// How long an AWS call may take: a stalled connection fails the attempt, and the
/// call's own retries stop at the operation timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// One call, its retries included.
    pub operation: Duration,
    /// One attempt of a call.
    pub attempt: Duration,
}

impl AwsClients {
    /// Loads the AWS configuration from the environment and builds the clients.
    pub async fn from_env(s3_path_style: bool, timeouts: AwsTimeouts) -> Self {
        let timeouts = TimeoutConfig::builder()
            .operation_timeout(timeouts.operation)
            .operation_attempt_timeout(timeouts.attempt)
            .build();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts)
            .load()
            .await;
        Self::from_config(&config, s3_path_style)
    }

    /// The clients of a loaded configuration (benches point one at an emulator).
    pub fn from_config(config: &aws_config::SdkConfig, s3_path_style: bool) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(s3_path_style)
            .build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3),
            kinesis: aws_sdk_kinesis::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            glue: aws_sdk_glue::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
        }
    }

    /// Clients for a run that needs no AWS service (`host run` from files to files):
    /// nothing is looked up, so no region or credential probe slows the start.
    pub fn unconfigured() -> Self {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        Self::from_config(&config, false)
    }

    /// The whole body of `s3://bucket/key`; the error names the object.
    pub async fn object_bytes(&self, bucket: &str, key: &str) -> Result<bytes::Bytes, AwsError> {
        let what = || format!("s3://{bucket}/{key}");
        let object = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| AwsError::of(what(), &e))?;
        let body = object.body.collect().await.map_err(|e| AwsError {
            what: what(),
            reason: format!("reading: {e}"),
            out_of_time: false,
        })?;
        Ok(body.into_bytes())
    }

    /// Puts `body` under a new partitioned key of `prefix` (never over an existing
    /// object: `If-None-Match: *`), retrying with backoff; returns the key.
    pub async fn put_new_object(
        &self,
        bucket: &str,
        prefix: &str,
        extension: &str,
        body: Vec<u8>,
        retry: RetryPolicy,
    ) -> Result<String, AwsError> {
        let new_key = || partitioned_key(prefix, SystemTime::now(), extension);
        self.put_retrying(bucket, new_key, body, &[], retry, false)
            .await
    }

    /// Puts `body` at `key` unless an object is already there (`If-None-Match: *`),
    /// retrying with backoff. An object already there counts as written: the key is
    /// derived from the content, so it is this write, landed on an earlier attempt (a
    /// connection cut after the request was sent) or by an earlier try of the batch.
    /// `metadata` becomes the object's user metadata (`x-amz-meta-NAME`).
    pub async fn put_once(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        metadata: &[(&str, &str)],
        retry: RetryPolicy,
    ) -> Result<(), AwsError> {
        self.put_retrying(bucket, || key.to_owned(), body, metadata, retry, true)
            .await
            .map(drop)
    }

    /// The retry loop of both puts: `key()` for each attempt; with `existing_is_ours`, a
    /// 412 (the key is taken) is this write already landed.
    async fn put_retrying(
        &self,
        bucket: &str,
        key: impl Fn() -> String,
        body: Vec<u8>,
        metadata: &[(&str, &str)],
        retry: RetryPolicy,
        existing_is_ours: bool,
    ) -> Result<String, AwsError> {
        let mut last_error = String::new();
        let mut out_of_time = false;
        for attempt in 1..=retry.max_attempts {
            let key = key();
            let mut put = self
                .s3
                .put_object()
                .bucket(bucket)
                .key(&key)
                .if_none_match("*")
                .body(ByteStream::from(body.clone()));
            for (name, value) in metadata {
                put = put.metadata(*name, *value);
            }
            let call = put.send();
            let Ok(result) = retry.budget.bound(call).await else {
                last_error = crate::limits::CallOutOfTime.to_string();
                out_of_time = true;
                break;
            };
            match result {
                Ok(_) => return Ok(key),
                Err(e)
                    if existing_is_ours
                        && e.raw_response().is_some_and(|r| r.status().as_u16() == 412) =>
                {
                    tracing::info!(%bucket, %key, "the object is already written; not written again");
                    return Ok(key);
                }
                Err(e) => last_error = describe_error(&e),
            }
            if attempt < retry.max_attempts {
                let delay = backoff(retry.base_delay, attempt);
                if !retry.budget.allows_wait(delay) {
                    out_of_time = true;
                    break;
                }
                tokio::time::sleep(delay).await;
            }
        }
        let stopped = if out_of_time {
            "out of time".to_owned()
        } else {
            format!("{} attempts", retry.max_attempts)
        };
        Err(AwsError {
            what: format!("S3 bucket {bucket}"),
            reason: format!("PutObject failed ({stopped}): {last_error}"),
            out_of_time,
        })
    }

    /// The URL of the SQS queue named `queue`.
    pub async fn queue_url(&self, queue: &str) -> Result<String, AwsError> {
        let what = || format!("SQS queue {queue}");
        let response = self
            .sqs
            .get_queue_url()
            .queue_name(queue)
            .send()
            .await
            .map_err(|e| AwsError::of(what(), &e))?;
        response
            .queue_url()
            .map(str::to_owned)
            .ok_or_else(|| AwsError {
                what: what(),
                reason: "no URL returned".into(),
                out_of_time: false,
            })
    }
}

/// `prefix/dt=YYYY-MM-DD/hour=HH/<unix-millis>-<random>.<extension>`.
pub fn partitioned_key(prefix: &str, now: SystemTime, extension: &str) -> String {
    let millis = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let name = format!("{millis}-{:016x}.{extension}", fastrand::u64(..));
    partitioned(prefix, now, &name)
}

/// `prefix/dt=YYYY-MM-DD/hour=HH/<name>`.
pub fn partitioned(prefix: &str, now: SystemTime, name: &str) -> String {
    let stamp = humantime::format_rfc3339_millis(now).to_string(); // 2026-11-24T13:05:11.123Z
    let partition = format!("dt={}/hour={}", &stamp[..10], &stamp[11..13]);
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        format!("{partition}/{name}")
    } else {
        format!("{prefix}/{partition}/{name}")
    }
}

/// An AWS SDK error with its service message, in one line.
pub fn describe_error<E: std::error::Error + 'static>(error: &E) -> String {
    crate::report::one_line(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hive_partitioned_and_unique() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let a = partitioned_key("out/events", now, "jsonl.gz");
        let b = partitioned_key("out/events", now, "jsonl.gz");
        assert!(a.starts_with("out/events/dt=2026-11-18/hour="), "{a}");
        assert!(a.ends_with(".jsonl.gz"));
        assert_ne!(a, b);
    }
}
