//! S3 sink: one object per delivery — JSON lines (optionally gzip) or Parquet — under
//! Hive-style partitioned keys `prefix/dt=YYYY-MM-DD/hour=HH/<time>-<random>.<ext>`,
//! written with `If-None-Match: *` so an existing object is never overwritten.

use super::{DeliveryFailure, ObjectFormat, RetryPolicy, gzip};
use crate::aws::AwsClients;
use crate::record::{FailureKind, Output};
use crate::schemas::DeclaredSchema;

/// Writes outputs as JSON-lines objects under one bucket and prefix.
#[derive(Debug, Clone)]
pub struct S3Sink {
    aws: AwsClients,
    bucket: String,
    prefix: String,
    format: ObjectFormat,
}

impl S3Sink {
    /// A sink writing under `s3://bucket/prefix`.
    pub fn new(aws: AwsClients, bucket: String, prefix: String, format: ObjectFormat) -> Self {
        Self {
            aws,
            bucket,
            prefix: prefix.trim_end_matches('/').to_owned(),
            format,
        }
    }

    /// Writes all `outputs` as one object; on failure every one of them fails. A
    /// Parquet object takes its columns from `declared` (the destination's declared
    /// schema), refusing each output that does not fit them; without one, it infers
    /// them. The object's `schema-fingerprint` metadata is its outputs' (when they share
    /// one).
    pub async fn deliver(
        &self,
        mut outputs: Vec<(usize, &Output)>,
        retry: RetryPolicy,
        declared: Option<&DeclaredSchema>,
    ) -> Vec<DeliveryFailure> {
        let mut refused = Vec::new();
        let body = match self.format {
            ObjectFormat::Parquet => {
                let payloads: Vec<&[u8]> = outputs.iter().map(|(_, o)| &o.payload[..]).collect();
                let written = match declared {
                    None => super::parquet::from_json_payloads(&payloads),
                    Some(declared) => match super::parquet::columns_of(declared) {
                        Ok(columns) => match super::parquet::typed(&columns, &payloads) {
                            Ok((body, misfits)) => {
                                for (i, why) in misfits.into_iter().rev() {
                                    let (item, _) = outputs.remove(i);
                                    refused.push(DeliveryFailure {
                                        item,
                                        kind: FailureKind::Schema,
                                        message: format!(
                                            "an output to S3 bucket {} {why}",
                                            self.bucket
                                        ),
                                    });
                                }
                                Ok(body)
                            }
                            Err(e) => Err(e),
                        },
                        Err(why) => {
                            let message = format!(
                                "S3 bucket {}: the declared schema has no Parquet columns: {why}",
                                self.bucket
                            );
                            return outputs
                                .into_iter()
                                .map(|(item, _)| DeliveryFailure {
                                    item,
                                    kind: FailureKind::Schema,
                                    message: message.clone(),
                                })
                                .collect();
                        }
                    },
                };
                match written {
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
        if outputs.is_empty() {
            return refused;
        }
        // The same outputs make the same key on every attempt and every try of the batch,
        // so a write that already landed is not made twice.
        let key = crate::aws::partitioned(
            &self.prefix,
            std::time::SystemTime::now(),
            &format!("{}.{}", content_name(&outputs, &body), self.extension()),
        );
        let fingerprint = shared_fingerprint(&outputs);
        let metadata: Vec<(&str, &str)> = fingerprint
            .iter()
            .map(|f| ("schema-fingerprint", *f))
            .collect();
        let put = self
            .aws
            .put_once(&self.bucket, &key, body, &metadata, retry)
            .await;
        match put {
            Ok(()) => {
                tracing::debug!(bucket = %self.bucket, %key, outputs = outputs.len(), "wrote S3 object");
                refused
            }
            Err(error) => {
                let failed = outputs.into_iter().map(|(item, _)| DeliveryFailure {
                    item,
                    kind: if error.out_of_time {
                        FailureKind::Unfinished
                    } else {
                        FailureKind::Delivery
                    },
                    message: error.to_string(),
                });
                refused.into_iter().chain(failed).collect()
            }
        }
    }

    /// What can be known about `output` before writing: a Parquet row must be a JSON
    /// object (one output that is not fails alone, not the whole object).
    pub fn check(&self, output: &Output) -> Result<(), (FailureKind, String)> {
        if self.format == ObjectFormat::Parquet {
            match serde_json::from_slice::<serde_json::Value>(&output.payload) {
                Ok(serde_json::Value::Object(_)) => {}
                Ok(_) => {
                    return Err((
                        FailureKind::Encoding,
                        "a Parquet row must be a JSON object".into(),
                    ));
                }
                Err(e) => {
                    return Err((
                        FailureKind::Encoding,
                        format!(
                            "a Parquet row must be a JSON object; this output is not JSON: {e}"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn extension(&self) -> &'static str {
        match self.format {
            ObjectFormat::JsonLines => "jsonl",
            ObjectFormat::JsonLinesGzip => "jsonl.gz",
            ObjectFormat::Parquet => "parquet",
        }
    }
}

/// The name of an object holding `outputs`, the same on every attempt: the identities of
/// its first and last outputs (their records' source positions, hashed to fit a key) and
/// a hash of everything it holds.
fn content_name(outputs: &[(usize, &Output)], body: &[u8]) -> String {
    use sha2::Digest as _;
    let short = |output: Option<&(usize, &Output)>| match output.and_then(|(_, o)| o.id.as_ref()) {
        Some(id) => hex::encode(&sha2::Sha256::digest(id)[..6]),
        None => "0".repeat(12),
    };
    let mut hash = sha2::Sha256::new();
    for (_, output) in outputs {
        if let Some(id) = &output.id {
            hash.update(id.as_bytes());
        }
        hash.update(b"\n");
    }
    hash.update(sha2::Sha256::digest(body));
    format!(
        "{}-{}-{}",
        short(outputs.first()),
        short(outputs.last()),
        hex::encode(&hash.finalize()[..12])
    )
}

/// One JSON line for a payload: the payload itself when it is one line of JSON,
/// its newlines dropped when it is multi-line JSON, a JSON string when it is other text, and
/// `{"payload_base64": ...}` when it is not text.
pub fn json_line(payload: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde::de::IgnoredAny>(payload) {
        Ok(_) if !payload.contains(&b'\n') => payload.to_vec(),
        // Valid JSON holds a raw newline only as whitespace between tokens (inside a
        // string it must be escaped): dropping those keeps the text exactly as written
        // otherwise (its key order, every digit of its numbers), where parsing and
        // writing it again would sort the keys and round big numbers.
        Ok(_) => payload
            .iter()
            .copied()
            .filter(|b| !matches!(b, b'\n' | b'\r'))
            .collect(),
        Err(_) => match std::str::from_utf8(payload) {
            Ok(text) => serde_json::Value::String(text.to_owned())
                .to_string()
                .into_bytes(),
            // Bytes that are not text stay exact, as the DLQ keeps them.
            Err(_) => {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
                serde_json::json!({ "payload_base64": encoded })
                    .to_string()
                    .into_bytes()
            }
        },
    }
}

/// The `schema-fingerprint` every output carries, when they all carry the same one.
fn shared_fingerprint<'o>(outputs: &[(usize, &'o Output)]) -> Option<&'o str> {
    let fingerprint = |o: &'o Output| {
        o.attributes
            .iter()
            .rev()
            .find(|(name, _)| name == "schema-fingerprint")
            .map(|(_, value)| value.as_str())
    };
    let first = fingerprint(outputs.first()?.1)?;
    outputs
        .iter()
        .all(|(_, o)| fingerprint(o) == Some(first))
        .then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_payload_becomes_one_json_line() {
        assert_eq!(json_line(br#"{"a":1}"#), br#"{"a":1}"#);
        assert_eq!(json_line(b"{\n \"a\": 1\n}"), br#"{ "a": 1}"#);
        // Key order and every digit stay as the plugin wrote them.
        assert_eq!(
            json_line(b"{\"z\": 12345678901234567890123,\r\n \"a\": \"x\\ny\"}"),
            br#"{"z": 12345678901234567890123, "a": "x\ny"}"#
        );
        assert_eq!(json_line(b"plain\ntext"), br#""plain\ntext""#);
        assert_eq!(json_line(&[0xff, 0x00]), br#"{"payload_base64":"/wA="}"#);
    }
}
