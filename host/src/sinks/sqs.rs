//! SQS sink: `SendMessageBatch` packed to the service limits (10 messages, 256 KiB per
//! message and per call), retrying only the messages the service failed.

use std::ops::Range;

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use base64::Engine as _;

use super::{DeliveryFailure, RetryPolicy, send_with_retries};
use crate::aws::describe_error;
use crate::record::{FailureKind, Output};

const MAX_MESSAGES: usize = 10;
pub(super) const MAX_BYTES: usize = 256 << 10;

/// Writes outputs to one SQS queue (standard or FIFO).
#[derive(Debug, Clone)]
pub struct SqsSink {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

#[derive(Debug, Clone)]
struct Message {
    item: usize,
    body: String,
    base64: bool,
    group: Option<String>,
    /// The output's identity: sent as the `pipeline-output-id` attribute; a FIFO
    /// queue's deduplication id is its hash.
    id: Option<String>,
    /// The output's registry schema (`schema-id`, `schema-fingerprint`), sent as
    /// attributes of those names.
    schema: Vec<(&'static str, String)>,
}

/// The attribute an output's identity travels in.
const OUTPUT_ID: &str = "pipeline-output-id";

/// Whether SQS takes `text` as it is, in a message body or a string attribute: only
/// #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF (its documented set). A call
/// with one message outside it is refused whole, for every message in it.
pub(crate) fn sqs_accepts(text: &str) -> bool {
    text.chars().all(|c| {
        matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
    })
}

/// Whether `group` is a FIFO message group id SQS takes: 1 to 128 letters, digits and
/// ASCII punctuation.
fn valid_group(group: &str) -> bool {
    (1..=128).contains(&group.len())
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b.is_ascii_punctuation())
}

/// A message body for `payload`: the text itself when SQS takes it as it is, else its
/// base64 (flagged by the `content-transfer-encoding` attribute), so bytes that are not
/// UTF-8 or hold characters SQS refuses still arrive exactly.
fn body(payload: &[u8]) -> (String, bool) {
    match std::str::from_utf8(payload) {
        Ok(text) if sqs_accepts(text) => (text.to_owned(), false),
        _ => (
            base64::engine::general_purpose::STANDARD.encode(payload),
            true,
        ),
    }
}

/// The host's schema attributes on an output (its framing's, or its declared
/// schema's), which travel as message attributes.
fn schema_attributes(output: &Output) -> Vec<(&'static str, String)> {
    ["schema-id", "schema-fingerprint"]
        .into_iter()
        .filter_map(|name| {
            let (_, value) = output.attributes.iter().rev().find(|(n, _)| n == name)?;
            Some((name, value.clone()))
        })
        .collect()
}

/// What a message counts against the 256 KiB limit: its body and its attributes (a
/// base64 body's `content-transfer-encoding` among them).
fn message_size(
    body: usize,
    base64: bool,
    id: Option<&String>,
    schema: &[(&str, String)],
) -> usize {
    let attribute = |name: &str, value: &str| name.len() + "String".len() + value.len();
    body + if base64 {
        attribute("content-transfer-encoding", "base64")
    } else {
        0
    } + id.map_or(0, |id| attribute(OUTPUT_ID, id))
        + schema.iter().map(|(n, v)| attribute(n, v)).sum::<usize>()
}

impl SqsSink {
    /// A sink sending to the queue at `queue_url` (a `.fifo` URL is a FIFO queue).
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }

    /// What can be known about `output` before sending: the size of its message body,
    /// its identity and its FIFO message group as SQS takes them (one message SQS
    /// refuses would fail its whole call, the other records' messages with it).
    pub fn check(&self, output: &Output) -> Result<(), (FailureKind, String)> {
        let (body, base64) = match std::str::from_utf8(&output.payload) {
            Ok(text) if sqs_accepts(text) => (text.len(), false),
            _ => (output.payload.len().div_ceil(3) * 4, true),
        };
        if let Some(id) = &output.id
            && !sqs_accepts(id)
        {
            return Err((
                FailureKind::Encoding,
                "the output's identity (the pipeline-output-id attribute) has a character SQS does not accept".into(),
            ));
        }
        if self.is_fifo()
            && let Some(key) = &output.key
            && !std::str::from_utf8(key).is_ok_and(valid_group)
        {
            return Err((
                FailureKind::Encoding,
                format!(
                    "the output's key ({} bytes) is not a FIFO message group id SQS takes: 1 to 128 letters, digits and ASCII punctuation",
                    key.len()
                ),
            ));
        }
        let size = message_size(body, base64, output.id.as_ref(), &schema_attributes(output));
        if size > MAX_BYTES {
            return Err((
                FailureKind::OutputTooLarge,
                format!("an SQS message of {size} bytes exceeds the 256 KiB limit"),
            ));
        }
        Ok(())
    }

    fn is_fifo(&self) -> bool {
        self.queue_url.ends_with(".fifo")
    }

    /// Sends `outputs`; returns the ones that could not be delivered, and why.
    pub async fn deliver(
        &self,
        outputs: Vec<(usize, &Output)>,
        retry: RetryPolicy,
    ) -> Vec<DeliveryFailure> {
        let mut failures = Vec::new();
        let mut pending = Vec::with_capacity(outputs.len());
        for (item, output) in outputs {
            let (body, base64) = body(&output.payload);
            let schema = schema_attributes(output);
            if message_size(body.len(), base64, output.id.as_ref(), &schema) > MAX_BYTES {
                failures.push(DeliveryFailure {
                    item,
                    kind: FailureKind::OutputTooLarge,
                    message: format!(
                        "an SQS message of {} bytes exceeds the 256 KiB limit",
                        body.len()
                    ),
                });
                continue;
            }
            let group = output
                .key
                .as_ref()
                .map(|k| String::from_utf8_lossy(k).into_owned());
            pending.push(Message {
                item,
                body,
                base64,
                group,
                id: output.id.clone(),
                schema,
            });
        }
        let send = async |chunk: &[Message]| {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| self.entry(i, m))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let response = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| describe_error(&e))?;
            // Entry ids are the positions in the call.
            Ok(response
                .failed()
                .iter()
                .filter_map(|f| {
                    let position = f.id().parse::<usize>().ok()?;
                    Some((
                        position,
                        format!("{}: {}", f.code(), f.message().unwrap_or_default()),
                    ))
                })
                .collect())
        };
        // A FIFO queue keeps each message group in order; a standard queue has none.
        let fifo = self.is_fifo();
        let key =
            |m: &Message| fifo.then(|| m.group.clone().unwrap_or_else(|| "default".to_owned()));
        let left = send_with_retries(pending, retry, pack, key, send).await;
        let call = format!("SQS queue {}: SendMessageBatch", self.queue_url);
        failures.extend(left.failures(&call, retry, |m| m.item));
        failures
    }

    fn entry(
        &self,
        index: usize,
        m: &Message,
    ) -> Result<SendMessageBatchRequestEntry, aws_sdk_sqs::error::BuildError> {
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(&m.body);
        if m.base64 {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value("base64")
                .build()?;
            entry = entry.message_attributes("content-transfer-encoding", value);
        }
        if let Some(id) = &m.id {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(id)
                .build()?;
            entry = entry.message_attributes(OUTPUT_ID, value);
        }
        for (name, value) in &m.schema {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()?;
            entry = entry.message_attributes(*name, value);
        }
        if self.is_fifo() {
            // FIFO queues need a group. The deduplication id is the output's identity (its
            // record's and its place), so a retried send is dropped by the queue while two
            // different records with the same body both arrive.
            let dedup = m.id.as_deref().map_or_else(|| dedup_id(&m.body), hashed_id);
            entry = entry
                .message_group_id(m.group.clone().unwrap_or_else(|| "default".into()))
                .message_deduplication_id(dedup);
        }
        entry.build()
    }
}

/// A deduplication id (at most 128 characters) for an output identity of any length.
fn hashed_id(id: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(id))
}

fn dedup_id(body: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    format!("{:016x}{:08x}", hasher.finish(), body.len())
}

/// Splits messages into calls of at most 10 messages and 256 KiB.
fn pack(messages: &[Message]) -> Vec<Range<usize>> {
    super::pack(messages, MAX_MESSAGES, MAX_BYTES, |m| {
        message_size(m.body.len(), m.base64, m.id.as_ref(), &m.schema)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(size: usize) -> Message {
        Message {
            item: 0,
            body: "x".repeat(size),
            base64: false,
            group: None,
            id: None,
            schema: Vec::new(),
        }
    }

    #[test]
    fn a_body_sqs_would_refuse_travels_as_base64() {
        assert_eq!(
            body(b"plain \t\n text \xe2\x82\xac"),
            ("plain \t\n text \u{20ac}".into(), false)
        );
        for refused in ["nul \0", "bell \u{7}", "\u{FFFE}", "\u{FFFF}"] {
            let (text, base64) = body(refused.as_bytes());
            assert!(base64, "{refused:?}");
            assert_eq!(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .expect("base64"),
                refused.as_bytes()
            );
        }
        assert!(body(&[0xff, 0xfe]).1, "not UTF-8");
    }

    #[test]
    fn fifo_group_ids_are_checked_before_sending() {
        assert!(valid_group("user-42"));
        assert!(valid_group(&"g".repeat(128)));
        assert!(!valid_group(""));
        assert!(!valid_group(&"g".repeat(129)));
        assert!(!valid_group("with space"));
        assert!(!valid_group("caf\u{e9}"));
    }

    #[test]
    fn packs_ten_per_call_and_256_kib_per_call() {
        let small: Vec<_> = (0..25).map(|_| message(10)).collect();
        assert_eq!(pack(&small), [0..10, 10..20, 20..25]);
        let big: Vec<_> = (0..3).map(|_| message(100 << 10)).collect();
        assert_eq!(pack(&big), [0..2, 2..3]);
    }
}
