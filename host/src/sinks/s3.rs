//! S3 sink: one object per delivery — JSON lines (optionally gzip) or Parquet — under
//! Hive-style partitioned keys `prefix/dt=YYYY-MM-DD/hour=HH/<time>-<random>.<ext>`,
//! written with `If-None-Match: *` so an existing object is never overwritten.

use std::time::SystemTime;

use aws_sdk_s3::primitives::ByteStream;

use super::{DeliveryFailure, ObjectFormat, RetryPolicy, gzip};
use crate::aws::describe_error;
use crate::record::{FailureKind, Output};

/// Writes outputs as JSON-lines objects under one bucket and prefix.
#[derive(Debug, Clone)]
pub struct S3Sink {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    format: ObjectFormat,
}

impl S3Sink {
    /// A sink writing under `s3://bucket/prefix`.
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
        format: ObjectFormat,
    ) -> Self {
        Self {
            client,
            bucket,
            prefix: prefix.trim_end_matches('/').to_owned(),
            format,
        }
    }

    /// A fresh partitioned key for an object written now.
    pub fn object_key(&self, now: SystemTime) -> String {
        partitioned_key(
            &self.prefix,
            now,
            match self.format {
                ObjectFormat::JsonLines => "jsonl",
                ObjectFormat::JsonLinesGzip => "jsonl.gz",
                ObjectFormat::Parquet => "parquet",
            },
        )
    }

    /// Writes all `outputs` as one object; on failure every one of them fails.
    pub async fn deliver(
        &self,
        outputs: Vec<(usize, &Output)>,
        retry: RetryPolicy,
    ) -> Vec<DeliveryFailure> {
        if outputs.is_empty() {
            return Vec::new();
        }
        let body = match self.format {
            ObjectFormat::Parquet => {
                let payloads: Vec<&[u8]> = outputs.iter().map(|(_, o)| &o.payload[..]).collect();
                match super::parquet::from_json_payloads(&payloads) {
                    Ok(body) => body,
                    Err(message) => {
                        let message =
                            format!("S3 bucket {}: cannot write Parquet: {message}", self.bucket);
                        return outputs
                            .into_iter()
                            .map(|(item, _)| DeliveryFailure {
                                item,
                                kind: FailureKind::Delivery,
                                message: message.clone(),
                            })
                            .collect();
                    }
                }
            }
            ObjectFormat::JsonLines | ObjectFormat::JsonLinesGzip => {
                let mut body = Vec::new();
                for (_, output) in &outputs {
                    body.extend_from_slice(&json_line(&output.payload));
                    body.push(b'\n');
                }
                if self.format == ObjectFormat::JsonLinesGzip {
                    gzip(&body)
                } else {
                    body
                }
            }
        };
        match self.put_new(body, retry).await {
            Ok(key) => {
                tracing::debug!(bucket = %self.bucket, %key, outputs = outputs.len(), "wrote S3 object");
                Vec::new()
            }
            Err(message) => outputs
                .into_iter()
                .map(|(item, _)| DeliveryFailure {
                    item,
                    kind: FailureKind::Delivery,
                    message: message.clone(),
                })
                .collect(),
        }
    }

    /// Puts `body` under a new key, retrying with backoff; returns the key.
    pub async fn put_new(&self, body: Vec<u8>, retry: RetryPolicy) -> Result<String, String> {
        let mut last_error = String::new();
        for attempt in 1..=retry.max_attempts {
            let key = self.object_key(SystemTime::now());
            let result = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .if_none_match("*")
                .body(ByteStream::from(body.clone()))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(key),
                Err(e) => last_error = describe_error(&e),
            }
            if attempt < retry.max_attempts {
                tokio::time::sleep(crate::config::backoff(retry.base_delay, attempt)).await;
            }
        }
        Err(format!(
            "S3 bucket {}: PutObject failed {} times: {last_error}",
            self.bucket, retry.max_attempts
        ))
    }
}

/// `prefix/dt=YYYY-MM-DD/hour=HH/<unix-millis>-<random>.<extension>`.
pub fn partitioned_key(prefix: &str, now: SystemTime, extension: &str) -> String {
    let stamp = humantime::format_rfc3339_millis(now).to_string(); // 2026-11-24T13:05:11.123Z
    let millis = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let name = format!("{millis}-{:016x}.{extension}", fastrand::u64(..));
    let partition = format!("dt={}/hour={}", &stamp[..10], &stamp[11..13]);
    if prefix.is_empty() {
        format!("{partition}/{name}")
    } else {
        format!("{prefix}/{partition}/{name}")
    }
}

/// One JSON line for a payload: the payload itself when it is one line of JSON,
/// compacted when it is multi-line JSON, a JSON string otherwise.
pub fn json_line(payload: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(_) if !payload.contains(&b'\n') => payload.to_vec(),
        Ok(value) => value.to_string().into_bytes(),
        Err(_) => serde_json::Value::String(String::from_utf8_lossy(payload).into_owned())
            .to_string()
            .into_bytes(),
    }
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

    #[test]
    fn every_payload_becomes_one_json_line() {
        assert_eq!(json_line(br#"{"a":1}"#), br#"{"a":1}"#);
        assert_eq!(json_line(b"{\n \"a\": 1\n}"), br#"{"a":1}"#);
        assert_eq!(json_line(b"plain\ntext"), br#""plain\ntext""#);
    }
}
