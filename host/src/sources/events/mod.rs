//! AWS event JSON (as Lambda delivers it, or a captured test event) into records.
//!
//! Every record keeps the identifier its event source uses for it (Kinesis and DynamoDB
//! sequence number, SQS message id, Firehose record id, the index for direct
//! invocation), so the response can name the records to retry.
//!
//! # Layout
//! This file knows the kinds of event ([`EventKind`]), tells them apart ([`detect`]) and
//! hands each to its own decoder ([`decode_within`]); what the decoders share (the
//! record and its attributes, ARN names, gzip inflation) lives here too. One file per
//! event source:
//! - `kinesis.rs`: Kinesis Data Streams records, gzip inflated, KPL aggregates unpacked
//!   (`crate::kpl`: the aggregate format, read and written).
//! - `sqs.rs`: SQS messages, standard or FIFO.
//! - `sns.rs`: SNS notifications to a subscribed function.
//! - `eventbridge.rs`: an EventBridge event, its `detail` the record.
//! - `envelopes.rs`: what a message carries: an SNS notification inside an SQS message,
//!   an S3 notification (or EventBridge's "Object Created") naming objects to read.
//! - `kafka.rs`: Kafka records from MSK or a self-managed cluster, by topic-partition.
//! - `dynamodb.rs`: DynamoDB Streams changes, their images as exact JSON.
//! - `firehose.rs`: Kinesis Data Firehose transformation records, gzip inflated.
//! - `s3.rs`: the objects an S3 notification names (reading them is `sources/s3.rs`).
//! - `direct.rs`: a direct invocation's JSON array, and its records' identities.
//! - `pipes.rs`: an EventBridge Pipes enrichment batch, each element by its source's
//!   decoder.
//! - `detect.rs`: the kind of an invocation's event told from its text, without
//!   building it as a `Value`.
//! - `arrival.rs`: Kinesis's and Firehose's arrival times.

mod arrival;
mod detect;
mod direct;
mod dynamodb;
mod envelopes;
mod eventbridge;
mod firehose;
mod kafka;
mod kinesis;
mod pipes;
mod s3;
mod sns;
mod sqs;

use std::io::Read;

use bytes::Bytes;
use serde_json::Value;

pub use detect::detect_text;
pub use direct::direct_identity;
pub use envelopes::Carried;

use super::InputLimits;
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
    /// Kafka, Amazon MSK or self-managed (`records` by topic-partition).
    Kafka,
    /// SNS, a subscribed function (`Records[].Sns`).
    Sns,
    /// EventBridge, a rule's target (`detail-type`, `source`, `detail`).
    #[value(name = "eventbridge")]
    EventBridge,
    /// S3 object notifications (`Records[].s3`): each names an object to read.
    S3,
    /// Direct invocation with a JSON array; each element is one record's payload.
    Direct,
    /// EventBridge Pipes enrichment: a JSON array of the pipe's source records,
    /// answered with the enriched batch.
    Pipes,
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
    /// Messages that name S3 objects rather than carry a record (an S3 notification in
    /// an SQS or SNS message, EventBridge's "Object Created"), once
    /// [`DecodedEvent::open_envelopes`] found them.
    pub carried: Vec<Carried>,
}

impl EventKind {
    /// Every kind, in the order `host run --format` lists their formats.
    pub const ALL: [EventKind; 10] = [
        Self::Kinesis,
        Self::Sqs,
        Self::Kafka,
        Self::Sns,
        Self::EventBridge,
        Self::Dynamodb,
        Self::Firehose,
        Self::Direct,
        Self::Pipes,
        Self::S3,
    ];

    /// The source's name in metrics and logs: `kinesis`, `sqs`, `kafka`, `sns`,
    /// `eventbridge`, `dynamodb`, `firehose`, `s3`, `direct` or `pipes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kinesis => "kinesis",
            Self::Sqs => "sqs",
            Self::Kafka => "kafka",
            Self::Sns => "sns",
            Self::EventBridge => "eventbridge",
            Self::Dynamodb => "dynamodb",
            Self::Firehose => "firehose",
            Self::S3 => "s3",
            Self::Direct => "direct",
            Self::Pipes => "pipes",
        }
    }

    /// The `host run --format` value that names this kind (its name and `-event`), and
    /// what `host run --help` says of it.
    pub fn input_format(self) -> (&'static str, &'static str) {
        match self {
            Self::Kinesis => ("kinesis-event", "A Kinesis Data Streams event"),
            Self::Sqs => ("sqs-event", "An SQS event"),
            Self::Kafka => (
                "kafka-event",
                "A Kafka event (Amazon MSK or a self-managed cluster)",
            ),
            Self::Sns => ("sns-event", "An SNS event"),
            Self::EventBridge => ("eventbridge-event", "An EventBridge event"),
            Self::Dynamodb => ("dynamodb-event", "A DynamoDB Streams event"),
            Self::Firehose => (
                "firehose-event",
                "A Kinesis Data Firehose transformation event",
            ),
            Self::S3 => (
                "s3-event",
                "An S3 notification: the objects it names are read from S3",
            ),
            Self::Direct => (
                "direct-event",
                "A direct invocation: a JSON array of records",
            ),
            Self::Pipes => (
                "pipes-event",
                "An EventBridge Pipes enrichment batch: its source's records in an array",
            ),
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
            item.position = direct_identity(&item.decoded, field);
        }
    }
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
    if let Some(elements) = event.as_array() {
        if pipes::is_batch(elements) {
            return Ok(EventKind::Pipes);
        }
        return Ok(EventKind::Direct);
    }
    if event.get("deliveryStreamArn").is_some() || event.get("invocationId").is_some() {
        return Ok(EventKind::Firehose);
    }
    if let Some("aws:kafka" | "SelfManagedKafka") = event.get("eventSource").and_then(Value::as_str)
    {
        return Ok(EventKind::Kafka);
    }
    if event.get("detail-type").is_some() && event.get("detail").is_some() {
        return Ok(EventKind::EventBridge);
    }
    let source = event
        .get("Records")
        .and_then(|r| r.get(0))
        .and_then(|r| r.get("eventSource").or_else(|| r.get("EventSource")))
        .and_then(Value::as_str);
    match source {
        Some("aws:kinesis") => Ok(EventKind::Kinesis),
        Some("aws:sqs") => Ok(EventKind::Sqs),
        Some("aws:sns") => Ok(EventKind::Sns),
        Some("aws:dynamodb") => Ok(EventKind::Dynamodb),
        Some("aws:s3") => Ok(EventKind::S3),
        other => Err(EventError {
            expected: "known AWS".into(),
            reason: match other {
                Some(source) => format!("unsupported eventSource {source:?}"),
                None => "expected a JSON array (direct invocation), a Firehose or Kafka event, or `Records` with an `eventSource`".into(),
            },
        }),
    }
}

/// An event's JSON as the decoders take it: the text of an invocation, parsed straight
/// into its kind's types (building a 1,000-record event as a `Value` first was the
/// larger part of decoding it), or a `Value` already parsed (a file's event, a Pipes
/// batch's records in their source's shape).
#[derive(Debug, Clone, Copy)]
pub enum EventJson<'a> {
    /// The event's text.
    Text(&'a str),
    /// The event, parsed.
    Value(&'a Value),
}

impl EventJson<'_> {
    /// The event as a `Value`, for the decoders that walk one.
    fn to_value(self, kind: EventKind) -> Result<Value, EventError> {
        match self {
            Self::Text(text) => serde_json::from_str(text).map_err(|e| EventError {
                expected: format!("{kind:?}"),
                reason: format!("not JSON: {e}"),
            }),
            Self::Value(value) => Ok(value.clone()),
        }
    }
}

/// Decodes `event` as `kind`. Malformed records become [`Undecodable`] items; only an
/// event whose overall shape is wrong is an error.
///
/// [`Undecodable`]: super::Undecodable
pub fn decode(kind: EventKind, event: Value) -> Result<DecodedEvent, EventError> {
    decode_within(kind, EventJson::Value(&event), InputLimits::default())
}

/// [`decode`], gzip records inflating within `limits`.
pub fn decode_within(
    kind: EventKind,
    event: EventJson<'_>,
    limits: InputLimits,
) -> Result<DecodedEvent, EventError> {
    let mut inflation = Inflation::new(limits);
    let mut decoded = DecodedEvent {
        kind,
        items: Vec::new(),
        objects: Vec::new(),
        carried: Vec::new(),
    };
    match kind {
        EventKind::Direct => decoded.items = direct::decode(event.to_value(kind)?)?,
        EventKind::Pipes => decoded.items = pipes::decode(event.to_value(kind)?, &mut inflation)?,
        EventKind::Kinesis => decoded.items = kinesis::decode(event, &mut inflation)?,
        EventKind::Sqs => decoded.items = sqs::decode(event)?,
        EventKind::Kafka => decoded.items = kafka::decode(event)?,
        EventKind::Sns => decoded.items = sns::decode(event)?,
        EventKind::EventBridge => decoded.items = eventbridge::decode(event.to_value(kind)?)?,
        EventKind::Dynamodb => decoded.items = dynamodb::decode(event)?,
        EventKind::Firehose => decoded.items = firehose::decode(event, &mut inflation)?,
        EventKind::S3 => decoded.objects = s3::decode(event)?,
    }
    if limits.envelopes {
        decoded.open_envelopes();
    }
    Ok(decoded)
}

/// `event` as the AWS event type of `kind`; one of another shape is an error naming the
/// kind expected.
fn parse<T: serde::de::DeserializeOwned>(
    kind: EventKind,
    event: EventJson<'_>,
) -> Result<T, EventError> {
    let error = |e: serde_json::Error| EventError {
        expected: format!("{kind:?}"),
        reason: e.to_string(),
    };
    match event {
        // Text it does not parse from is read again as a `Value`: what that accepts (a
        // repeated key, its last value) is accepted, and what it refuses is said in the
        // same words as for an event read from a file.
        EventJson::Text(text) => serde_json::from_str(text).or_else(|_| {
            let value = EventJson::Text(text).to_value(kind)?;
            T::deserialize(&value).map_err(error)
        }),
        EventJson::Value(value) => T::deserialize(value).map_err(error),
    }
}

/// A record of `payload`, `key` and the attributes that are not empty.
fn record(
    payload: impl Into<Bytes>,
    key: Option<Bytes>,
    attributes: Vec<(&'static str, String)>,
) -> Record {
    Record {
        key,
        payload: payload.into(),
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

    /// Counts `bytes` of what unpacking an event makes (a KPL aggregate's user records)
    /// against the event's limit; past it, says what the limit is.
    pub fn charge(&mut self, bytes: usize) -> Result<(), String> {
        match self.left.checked_sub(bytes as u64) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(format!(
                "the {} bytes left of the event's limit (max-event-bytes)",
                self.left
            )),
        }
    }

    /// [`Inflation::inflate`] of shared bytes: data that is not gzip is passed on
    /// without a copy.
    pub fn inflate_bytes(&mut self, data: Bytes) -> Result<Bytes, (Bytes, FailureKind, String)> {
        if !data.starts_with(&[0x1f, 0x8b]) {
            return Ok(data);
        }
        self.inflate(data.to_vec())
            .map(Bytes::from)
            .map_err(|(raw, kind, reason)| (Bytes::from(raw), kind, reason))
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

    /// A captured event from `tests/fixtures`.
    pub(super) fn fixture(name: &str) -> Value {
        let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The `arrival-time` of each record of the event of `kind` whose text is `text`,
    /// decoded as an invocation's is.
    pub(super) fn arrival_times(kind: EventKind, text: &str) -> Vec<String> {
        let event =
            decode_within(kind, EventJson::Text(text), InputLimits::default()).expect("decodes");
        (event.items.iter())
            .map(|item| item.decoded.as_ref().expect("ok").attribute("arrival-time"))
            .map(|time| time.expect("an arrival time").to_owned())
            .collect()
    }

    /// A captured event from `tests/fixtures`, its kind detected, decoded.
    pub(super) fn decode_fixture(name: &str) -> DecodedEvent {
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
    fn every_fixture_is_detected_as_its_kind() {
        for kind in EventKind::ALL {
            let (format, _) = kind.input_format();
            let event = fixture(&format!("{format}.json"));
            assert_eq!(detect(&event).expect("known event"), kind, "{format}");
        }
    }

    #[test]
    fn all_names_every_kind_once() {
        let variants = <EventKind as clap::ValueEnum>::value_variants();
        assert_eq!(EventKind::ALL.len(), variants.len());
        for kind in variants {
            assert!(EventKind::ALL.contains(kind), "{kind:?} is not in ALL");
        }
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
