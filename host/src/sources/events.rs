//! AWS event JSON (as Lambda delivers it, or a captured test event) into records.
//!
//! Every record keeps the identifier its event source uses for it (Kinesis and DynamoDB
//! sequence number, SQS message id, Firehose record id, the index for direct
//! invocation), so the response can name the records to retry.

use std::io::Read;

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::firehose::KinesisFirehoseEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::s3::S3Event;
use aws_lambda_events::event::sqs::SqsEvent;
use bytes::Bytes;
use serde_json::Value;

use super::{InputLimits, Undecodable};
use crate::record::FailureKind;
use crate::record::Record;

/// The event sources the host understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventKind {
    /// Kinesis Data Streams (`Records[].kinesis`).
    Kinesis,
    /// SQS, standard or FIFO (`Records[].body`).
    Sqs,
    /// DynamoDB Streams (`Records[].dynamodb`).
    Dynamodb,
    /// Kinesis Data Firehose data transformation (`records[].data`).
    Firehose,
    /// S3 object notifications (`Records[].s3`): each names an object to read.
    S3,
    /// Direct invocation with a JSON array; each element is one record's payload.
    Direct,
}

/// One record of an event: the identifier its source knows it by, its ordering group
/// (the Kinesis shard, the DynamoDB stream, the SQS FIFO message group), its record.
pub type EventItem = super::Item<String>;

/// An S3 object named by a notification: one version of it, not whatever its key holds
/// when the host gets to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Bucket name.
    pub bucket: String,
    /// Object key, URL-decoded.
    pub key: String,
    /// The ETag of the version written, as the notification gives it, without quotes.
    pub etag: Option<String>,
    /// The version written, where the bucket keeps versions. Never `null`: S3 writes
    /// that for an object put while versioning was off or suspended, and a later write
    /// replaces such a version in place, so it names nothing that stays.
    pub version_id: Option<String>,
}

/// Which version of an object its notification names, and so what every read of it is
/// pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectVersion<'a> {
    /// The version id (a versioned bucket): that version and no other is read.
    Id(&'a str),
    /// The ETag (an unversioned bucket): read with `If-Match`, so a later write to the
    /// key is refused (412) rather than read under this notification's name.
    ETag(&'a str),
    /// Neither was given (a hand-written event): the object as it is now.
    Current,
}

impl ObjectRef {
    /// The version the notification names: by its id when there is one, else by its
    /// ETag.
    pub fn version(&self) -> ObjectVersion<'_> {
        match (&self.version_id, &self.etag) {
            (Some(version), _) => ObjectVersion::Id(version),
            (None, Some(etag)) => ObjectVersion::ETag(etag),
            (None, None) => ObjectVersion::Current,
        }
    }
}

impl std::fmt::Display for ObjectVersion<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(version) => write!(f, "version {version}"),
            Self::ETag(etag) => write!(f, "ETag {etag}"),
            Self::Current => f.write_str("object as it is now"),
        }
    }
}

/// A decoded event: records, or for S3, the objects to read.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedEvent {
    /// Which source sent it.
    pub kind: EventKind,
    /// Its records, in order (empty for S3).
    pub items: Vec<EventItem>,
    /// The objects an S3 notification names (empty otherwise).
    pub objects: Vec<ObjectRef>,
}

impl EventKind {
    /// The source's name in metrics and logs: `kinesis`, `sqs`, `dynamodb`, `firehose`,
    /// `s3` or `direct`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kinesis => "kinesis",
            Self::Sqs => "sqs",
            Self::Dynamodb => "dynamodb",
            Self::Firehose => "firehose",
            Self::S3 => "s3",
            Self::Direct => "direct",
        }
    }
}

impl DecodedEvent {
    /// Gives each record of a direct invocation the identity its caller named: the value
    /// of its top-level `field` (a string or a number), as `direct/VALUE`. A record
    /// without one has none, and is not deduplicated.
    pub fn identify_direct(&mut self, field: &str) {
        if self.kind != EventKind::Direct {
            return;
        }
        for item in &mut self.items {
            item.identity = direct_identity(&item.decoded, field);
        }
    }
}

/// Longest id value a direct record's identity holds as it is.
const MAX_DIRECT_ID: usize = 256;

/// A direct invocation's record's identity: `direct/VALUE`, the value of its top-level
/// `field` (a string or a number); `None` without one.
pub fn direct_identity(decoded: &super::Decoded, field: &str) -> Option<String> {
    let record = decoded.as_ref().ok()?;
    let value = serde_json::from_slice::<Value>(&record.payload).ok()?;
    let value = match value.get(field)? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    // A long value is named by its hash: output identities travel in SQS attributes.
    if value.len() > MAX_DIRECT_ID {
        use sha2::Digest as _;
        return Some(format!(
            "direct/sha256:{}",
            hex::encode(sha2::Sha256::digest(value))
        ));
    }
    Some(format!("direct/{value}"))
}

/// An event that is not one the host understands.
#[derive(Debug, thiserror::Error)]
#[error("not a {expected} event: {reason}")]
pub struct EventError {
    /// What was expected (`Kinesis`, `known AWS`, ...).
    pub expected: String,
    /// What was wrong.
    pub reason: String,
}

/// Works out which source sent `event` from its shape.
pub fn detect(event: &Value) -> Result<EventKind, EventError> {
    if event.is_array() {
        return Ok(EventKind::Direct);
    }
    if event.get("deliveryStreamArn").is_some() || event.get("invocationId").is_some() {
        return Ok(EventKind::Firehose);
    }
    let source = event
        .get("Records")
        .and_then(|r| r.get(0))
        .and_then(|r| r.get("eventSource").or_else(|| r.get("EventSource")))
        .and_then(Value::as_str);
    match source {
        Some("aws:kinesis") => Ok(EventKind::Kinesis),
        Some("aws:sqs") => Ok(EventKind::Sqs),
        Some("aws:dynamodb") => Ok(EventKind::Dynamodb),
        Some("aws:s3") => Ok(EventKind::S3),
        other => Err(EventError {
            expected: "known AWS".into(),
            reason: match other {
                Some(source) => format!("unsupported eventSource {source:?}"),
                None => "expected a JSON array (direct invocation), a Firehose event, or `Records` with an `eventSource`".into(),
            },
        }),
    }
}

/// Decodes `event` as `kind`. Malformed records become [`Undecodable`] items; only an
/// event whose overall shape is wrong is an error.
pub fn decode(kind: EventKind, event: Value) -> Result<DecodedEvent, EventError> {
    decode_within(kind, event, InputLimits::default())
}

/// [`decode`], gzip records inflating within `limits`.
pub fn decode_within(
    kind: EventKind,
    event: Value,
    limits: InputLimits,
) -> Result<DecodedEvent, EventError> {
    let mut inflation = Inflation::new(limits);
    let shape = |e: serde_json::Error| EventError {
        expected: format!("{kind:?}"),
        reason: e.to_string(),
    };
    let mut decoded = DecodedEvent {
        kind,
        items: Vec::new(),
        objects: Vec::new(),
    };
    match kind {
        EventKind::Direct => {
            let Value::Array(values) = event else {
                return Err(EventError {
                    expected: "Direct".into(),
                    reason: "expected a JSON array of records".into(),
                });
            };
            for (index, value) in values.into_iter().enumerate() {
                let payload = match value {
                    Value::String(text) => text.into_bytes(),
                    other => other.to_string().into_bytes(),
                };
                let record = record(
                    payload,
                    None,
                    vec![("source", "direct".into()), ("index", index.to_string())],
                );
                decoded.items.push(EventItem {
                    origin: None,
                    id: index.to_string(),
                    group: None,
                    // Named by the caller's id field, if it has one: see `identify_direct`.
                    identity: None,
                    delivered: Vec::new(),
                    decoded: Ok(record),
                });
            }
        }
        EventKind::Kinesis => {
            let event: KinesisEvent = serde_json::from_value(event).map_err(shape)?;
            for r in event.records {
                let k = r.kinesis;
                let shard: String = r
                    .event_id
                    .as_deref()
                    .and_then(|id| id.split(':').next())
                    .unwrap_or_default()
                    .into();
                let stream = arn_name(r.event_source_arn.as_deref(), "stream/");
                let attributes = vec![
                    ("source", "kinesis".into()),
                    ("stream", stream.clone()),
                    ("shard", shard.clone()),
                    ("sequence-number", k.sequence_number.clone()),
                    (
                        "arrival-time",
                        k.approximate_arrival_timestamp.0.to_rfc3339(),
                    ),
                ];
                let key = Some(k.partition_key.into_bytes());
                let item = match inflation.inflate(k.data.0) {
                    Ok(payload) => Ok(record(payload, key, attributes)),
                    Err((raw, kind, reason)) => Err(Undecodable {
                        kind,
                        record: record(raw, key, attributes),
                        reason,
                    }),
                };
                decoded.items.push(EventItem {
                    origin: None,
                    identity: Some(format!("kinesis/{stream}/{shard}/{}", k.sequence_number)),
                    id: k.sequence_number,
                    // Without an `eventID` the shard is unknown: the stream stands for it.
                    group: Some(if shard.is_empty() { stream } else { shard }),
                    delivered: Vec::new(),
                    decoded: item,
                });
            }
        }
        EventKind::Sqs => {
            let event: SqsEvent = serde_json::from_value(event).map_err(shape)?;
            for (index, m) in event.records.into_iter().enumerate() {
                let id = m.message_id.clone().unwrap_or_else(|| index.to_string());
                let mut attributes = vec![
                    ("source", "sqs".into()),
                    ("queue", arn_name(m.event_source_arn.as_deref(), ":")),
                    ("message-id", id.clone()),
                ];
                if let Some(sent) = m
                    .attributes
                    .get("SentTimestamp")
                    .and_then(|t| t.parse::<u64>().ok())
                {
                    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(sent);
                    attributes.push((
                        "arrival-time",
                        humantime::format_rfc3339_millis(time).to_string(),
                    ));
                }
                if let Some(count) = m.attributes.get("ApproximateReceiveCount") {
                    attributes.push(("receive-count", count.clone()));
                }
                // FIFO queues keep order within a message group; standard queues have none.
                let group = m.attributes.get("MessageGroupId").cloned();
                let key = group.clone().map(String::into_bytes);
                let body = m.body.unwrap_or_default().into_bytes();
                let queue = arn_name(m.event_source_arn.as_deref(), ":");
                decoded.items.push(EventItem {
                    origin: None,
                    identity: m.message_id.map(|message| format!("sqs/{queue}/{message}")),
                    id,
                    group,
                    delivered: Vec::new(),
                    decoded: Ok(record(body, key, attributes)),
                });
            }
        }
        EventKind::Dynamodb => {
            let event: DynamoDbEvent = serde_json::from_value(event).map_err(shape)?;
            for (index, r) in event.records.into_iter().enumerate() {
                let change = r.change;
                let id = change
                    .sequence_number
                    .clone()
                    .unwrap_or_else(|| index.to_string());
                let attributes = vec![
                    ("source", "dynamodb".into()),
                    ("table", arn_name(r.event_source_arn.as_deref(), "table/")),
                    ("event-name", r.event_name.clone()),
                    ("sequence-number", id.clone()),
                    (
                        "arrival-time",
                        change.approximate_creation_date_time.to_rfc3339(),
                    ),
                ];
                // Built as text, so numbers keep DynamoDB's digits (see dynamodb.rs).
                let mut payload = Vec::with_capacity(256);
                payload.extend_from_slice(b"{\"eventName\":");
                let _ = serde_json::to_writer(&mut payload, &r.event_name);
                payload.extend_from_slice(b",\"keys\":");
                let keys_start = payload.len();
                super::dynamodb::image_json(change.keys.inner(), &mut payload);
                let key = payload[keys_start..].to_vec();
                payload.extend_from_slice(b",\"newImage\":");
                super::dynamodb::image_json(change.new_image.inner(), &mut payload);
                payload.extend_from_slice(b",\"oldImage\":");
                super::dynamodb::image_json(change.old_image.inner(), &mut payload);
                payload.push(b'}');
                let item = Ok(record(payload, Some(key), attributes));
                // A batch holds the records of one shard of the stream, in order.
                let group = Some(r.event_source_arn.clone().unwrap_or_default());
                let table = arn_name(r.event_source_arn.as_deref(), "table/");
                // Without an event id, the sequence number (unique in its shard); without
                // either, none: an index in the batch would collide across batches.
                let position = if r.event_id.is_empty() {
                    change.sequence_number.clone()
                } else {
                    Some(r.event_id.clone())
                };
                decoded.items.push(EventItem {
                    origin: None,
                    identity: position.map(|p| format!("dynamodb/{table}/{p}")),
                    id,
                    group,
                    delivered: Vec::new(),
                    decoded: item,
                });
            }
        }
        EventKind::Firehose => {
            let event: KinesisFirehoseEvent = serde_json::from_value(event).map_err(shape)?;
            let stream = arn_name(event.delivery_stream_arn.as_deref(), "deliverystream/");
            for (index, r) in event.records.into_iter().enumerate() {
                let id = r.record_id.clone().unwrap_or_else(|| index.to_string());
                let attributes = vec![
                    ("source", "firehose".into()),
                    ("delivery-stream", stream.clone()),
                    ("record-id", id.clone()),
                    (
                        "arrival-time",
                        r.approximate_arrival_timestamp.0.to_rfc3339(),
                    ),
                ];
                let item = match inflation.inflate(r.data.0) {
                    Ok(payload) => Ok(record(payload, None, attributes)),
                    Err((raw, kind, reason)) => Err(Undecodable {
                        kind,
                        record: record(raw, None, attributes),
                        reason,
                    }),
                };
                decoded.items.push(EventItem {
                    origin: None,
                    id,
                    group: None,
                    // The answer to Firehose is the delivery: a retried invocation must
                    // answer every record again, never skip one as a duplicate.
                    identity: None,
                    delivered: Vec::new(),
                    decoded: item,
                });
            }
        }
        EventKind::S3 => {
            let event: S3Event = serde_json::from_value(event).map_err(shape)?;
            for r in event.records {
                let (Some(bucket), Some(key)) = (r.s3.bucket.name, r.s3.object.key) else {
                    return Err(EventError {
                        expected: "S3".into(),
                        reason: "a record without bucket or key".into(),
                    });
                };
                let etag =
                    r.s3.object
                        .e_tag
                        .map(|etag| etag.trim_matches('"').to_owned())
                        .filter(|etag| !etag.is_empty());
                let version_id =
                    r.s3.object
                        .version_id
                        .filter(|version| !version.is_empty() && version != "null");
                decoded.objects.push(ObjectRef {
                    bucket,
                    key: url_decode_key(&key),
                    etag,
                    version_id,
                });
            }
        }
    }
    Ok(decoded)
}

fn record(
    payload: Vec<u8>,
    key: Option<Vec<u8>>,
    attributes: Vec<(&'static str, String)>,
) -> Record {
    Record {
        key: key.map(Bytes::from),
        payload: Bytes::from(payload),
        attributes: attributes
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.into(), v))
            .collect(),
    }
}

/// The resource name at the end of an ARN, after `marker` (`stream/`, `table/`, ...).
fn arn_name(arn: Option<&str>, marker: &str) -> String {
    let Some(arn) = arn else { return String::new() };
    let name = arn.rsplit_once(marker).map_or(arn, |(_, name)| name);
    name.split('/').next().unwrap_or(name).to_owned()
}

/// S3 notification keys are form-encoded (`+` for space, `%XX`).
fn url_decode_key(key: &str) -> String {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// How much gzip records may inflate to: each, and all of one event together, so a
/// small event of gzip bombs cannot take the memory.
pub struct Inflation {
    per_record: u64,
    left: u64,
}

impl Inflation {
    /// Within `limits`.
    pub fn new(limits: InputLimits) -> Self {
        Self {
            per_record: limits.record as u64,
            left: limits.event as u64,
        }
    }

    /// Inflates gzip data (detected by its magic bytes); other data passes unchanged.
    /// On failure, returns the raw bytes, the failure's kind and the reason.
    pub fn inflate(&mut self, data: Vec<u8>) -> Result<Vec<u8>, (Vec<u8>, FailureKind, String)> {
        if !data.starts_with(&[0x1f, 0x8b]) {
            return Ok(data);
        }
        let cap = self.per_record.min(self.left);
        let mut inflated = Vec::with_capacity(data.len().saturating_mul(4).min(cap as usize));
        let result = flate2::read::MultiGzDecoder::new(&data[..])
            .take(cap + 1)
            .read_to_end(&mut inflated);
        match result {
            Ok(_) if inflated.len() as u64 > cap => {
                let reason = if cap < self.per_record {
                    format!(
                        "the event's gzip records inflate past its {} byte limit (max-event-bytes)",
                        self.left
                    )
                } else {
                    format!(
                        "gzip payload inflates past the {} byte record limit (max-record-bytes)",
                        self.per_record
                    )
                };
                Err((data, FailureKind::InputTooLarge, reason))
            }
            Ok(_) => {
                self.left -= inflated.len() as u64;
                Ok(inflated)
            }
            Err(e) => Err((
                data,
                FailureKind::Decode,
                format!("payload has a gzip header but does not inflate: {e}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn decode_fixture(name: &str) -> DecodedEvent {
        let event = fixture(name);
        let kind = detect(&event).expect("known event");
        decode(kind, event).expect("decodes")
    }

    /// Every name a source sets is one the host shares again when it reads the name back
    /// (a DLQ entry reprocessed, a chained plugin's output): `record::HOST_NAMES` knows it.
    #[test]
    fn every_attribute_name_a_source_sets_is_a_shared_host_name() {
        let mut seen = 0;
        for name in [
            "direct-event.json",
            "dynamodb-event.json",
            "firehose-event.json",
            "kinesis-event.json",
            "sqs-event.json",
        ] {
            for item in decode_fixture(name).items {
                let record = match item.decoded {
                    Ok(record) => record,
                    Err(undecodable) => undecodable.record,
                };
                seen += crate::record::assert_shared_names(&record);
            }
        }
        assert!(seen > 20, "only {seen} attributes decoded");
        let other = crate::record::attribute_name("colour".into());
        assert!(matches!(other, std::borrow::Cow::Owned(n) if n == "colour"));
    }

    #[test]
    fn kinesis_inflates_gzip_and_keeps_bad_records_for_the_dlq() {
        let event = decode_fixture("kinesis-event.json");
        assert_eq!(event.kind, EventKind::Kinesis);
        assert_eq!(event.items.len(), 4);
        let first = event.items[0].decoded.as_ref().expect("plain");
        assert!(first.payload.starts_with(br#"{"id":"k1""#));
        assert_eq!(first.key.as_deref(), Some(&b"ann"[..]));
        assert_eq!(first.attribute("stream"), Some("events"));
        assert_eq!(first.attribute("shard"), Some("shardId-000000000006"));
        assert_eq!(
            event.items[0].id,
            "49590338271490256608559692538361571095921575989136588801"
        );
        let gzipped = event.items[1].decoded.as_ref().expect("inflated");
        assert!(gzipped.payload.starts_with(br#"{"id":"k2""#));
        assert!(
            event.items[2].decoded.is_ok(),
            "not-JSON is the plugin's call, not the source's"
        );
        let broken = event.items[3].decoded.as_ref().expect_err("bad gzip");
        assert!(
            broken.reason.contains("does not inflate"),
            "{}",
            broken.reason
        );
    }

    #[test]
    fn sqs_fifo_group_becomes_the_key() {
        let event = decode_fixture("sqs-event.json");
        assert_eq!(event.kind, EventKind::Sqs);
        assert_eq!(event.items[0].id, "059f36b4-87a3-44ab-83d2-661975830a7d");
        let record = event.items[0].decoded.as_ref().expect("ok");
        assert_eq!(record.key.as_deref(), Some(&b"ann"[..]));
        assert_eq!(record.attribute("queue"), Some("orders.fifo"));
        assert_eq!(
            record.attribute("arrival-time"),
            Some("2025-11-25T13:00:00.183Z")
        );
        assert_eq!(event.items[1].decoded.as_ref().expect("ok").key, None);
    }

    #[test]
    fn dynamodb_images_become_plain_json() {
        let event = decode_fixture("dynamodb-event.json");
        assert_eq!(event.kind, EventKind::Dynamodb);
        let modify = event.items[1].decoded.as_ref().expect("ok");
        let payload: Value = serde_json::from_slice(&modify.payload).expect("json");
        assert_eq!(payload["eventName"], "MODIFY");
        assert_eq!(payload["newImage"]["Message"], "This item has changed");
        assert_eq!(payload["oldImage"]["Id"], 101);
        assert_eq!(modify.attribute("table"), Some("ExampleTableWithStream"));
        assert_eq!(event.items[1].id, "4421584500000000017450439092");
    }

    #[test]
    fn firehose_records_keep_their_record_ids() {
        let event = decode_fixture("firehose-event.json");
        assert_eq!(event.kind, EventKind::Firehose);
        assert_eq!(
            event.items[1].id,
            "49546986683135544286507457936321625675700192471156785155"
        );
        let record = event.items[0].decoded.as_ref().expect("ok");
        assert_eq!(record.attribute("delivery-stream"), Some("events-to-s3"));
    }

    #[test]
    fn s3_keys_are_url_decoded() {
        let event = decode_fixture("s3-event.json");
        assert_eq!(
            event.objects,
            [ObjectRef {
                bucket: "incoming".into(),
                key: "raw/2026-11-24/events part=1.jsonl.gz".into(),
                etag: Some("0123456789abcdef0123456789abcdef".into()),
                version_id: None,
            }]
        );
    }

    #[test]
    fn an_s3_notification_names_a_version_and_null_names_none() {
        let event = |object: Value| {
            serde_json::json!({"Records": [{
                "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                "eventTime": "2026-11-24T13:00:00.000Z", "userIdentity": {},
                "requestParameters": {},
                "s3": {"bucket": {"name": "b"}, "object": object}
            }]})
        };
        let objects = |object: Value| {
            decode(EventKind::S3, event(object))
                .expect("an S3 event")
                .objects
        };
        let versioned = objects(serde_json::json!(
            {"key": "k.jsonl", "eTag": "\"e1\"", "versionId": "v1"}
        ));
        assert_eq!(versioned[0].etag.as_deref(), Some("e1"), "quotes trimmed");
        assert_eq!(versioned[0].version(), ObjectVersion::Id("v1"));
        // `null`: written while versioning was off or suspended, replaced in place by a
        // later write, so only the ETag tells this write from the next.
        let suspended = objects(serde_json::json!(
            {"key": "k.jsonl", "eTag": "e1", "versionId": "null"}
        ));
        assert_eq!(suspended[0].version_id, None);
        assert_eq!(suspended[0].version(), ObjectVersion::ETag("e1"));
        let bare = objects(serde_json::json!({"key": "k.jsonl"}));
        assert_eq!(bare[0].version(), ObjectVersion::Current);
    }

    #[test]
    fn direct_invocation_takes_any_json_values() {
        let event = decode_fixture("direct-event.json");
        assert_eq!(event.kind, EventKind::Direct);
        let texts: Vec<_> = event
            .items
            .iter()
            .map(|i| i.decoded.as_ref().expect("ok").payload.clone())
            .collect();
        assert_eq!(texts[2], Bytes::from_static(b"plain text record"));
        assert_eq!(event.items[2].id, "2");
    }

    #[test]
    fn an_unknown_shape_names_what_was_expected() {
        let err = detect(&serde_json::json!({"hello": 1})).expect_err("unknown");
        assert!(err.to_string().contains("eventSource"), "{err}");
        let err = decode(
            EventKind::Kinesis,
            serde_json::json!({"Records": [{"kinesis": 5}]}),
        )
        .expect_err("bad");
        assert!(err.to_string().starts_with("not a Kinesis event"), "{err}");
    }
}
