//! The host's plain record types: what sources produce and sinks consume.

use std::borrow::Cow;

use bytes::Bytes;

/// The name of a record's attribute. The names the host sets (`source`, `stream`,
/// `shard`, ...) are `'static` and shared by every record, so a source allocates nothing
/// for them and packing a batch tells them apart without reading them; names that come
/// with the data (a chained plugin's output attributes) are owned.
pub type AttributeName = Cow<'static, str>;

/// The attribute names the host's sources set.
const HOST_NAMES: [&str; 35] = [
    "source",
    "stream",
    "shard",
    "sequence-number",
    "sub-sequence-number",
    "explicit-hash-key",
    "arrival-time",
    "queue",
    "message-id",
    "receive-count",
    "cluster",
    "topic",
    "partition",
    "offset",
    "timestamp",
    "timestamp-type",
    "tombstone",
    "sns-message-id",
    "subject",
    "event-source",
    "detail-type",
    "event-id",
    "table",
    "event-name",
    "delivery-stream",
    "record-id",
    "file",
    "line",
    "row",
    "index",
    "schema-id",
    "schema-name",
    "schema-version",
    "schema-format",
    "schema-fingerprint",
];

/// `name` as an [`AttributeName`]: one of the host's own names is shared, any other is
/// kept as it is (for names read back from a dead-letter entry or set by a plugin).
pub fn attribute_name(name: String) -> AttributeName {
    match HOST_NAMES.iter().find(|known| **known == name) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(name),
    }
}

/// An output as an element of a pipe's enriched batch: its JSON when it is JSON (what a
/// pipe's target expects), else its text as a string, else its bytes as a base64 string.
pub fn pipes_element(payload: &[u8]) -> serde_json::Value {
    use base64::Engine as _;
    if let Ok(value) = serde_json::from_slice(payload) {
        return value;
    }
    match std::str::from_utf8(payload) {
        Ok(text) => text.into(),
        Err(_) => base64::engine::general_purpose::STANDARD
            .encode(payload)
            .into(),
    }
}

/// How many attributes `record` has; panics if one of their names is not in
/// [`HOST_NAMES`] (the sources' tests: a name a source sets should be shared).
#[cfg(test)]
pub(crate) fn assert_shared_names(record: &Record) -> usize {
    for (name, _) in &record.attributes {
        let shared = attribute_name(name.to_string());
        assert!(
            matches!(shared, Cow::Borrowed(_)),
            "`{name}` is not in record::HOST_NAMES"
        );
    }
    record.attributes.len()
}

/// One input record, as decoded from a source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Partition key, message group, ...; `None` when the source has none.
    pub key: Option<Bytes>,
    /// The payload bytes handed to the plugin.
    pub payload: Bytes,
    /// Where the record came from: `source`, `stream`, `shard`, `line`, ...
    pub attributes: Vec<(AttributeName, String)>,
}

impl Record {
    /// A record with this payload and no key or attributes.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            key: None,
            payload: payload.into(),
            attributes: Vec::new(),
        }
    }

    /// The value of attribute `name`, if set.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One output record produced by a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    /// The payload bytes.
    pub payload: Bytes,
    /// The key the sink partitions by, if the plugin set one.
    pub key: Option<Bytes>,
    /// The named destination; `None` means the default sink.
    pub destination: Option<String>,
    /// Attributes the plugin attached.
    pub attributes: Vec<(String, String)>,
    /// A stable identity, `SOURCE-IDENTITY#N`: its input record's position in its source
    /// (or, without one, a hash of the record) and its place among that record's outputs.
    /// Set by the pipeline; the same record delivered again gets the same one. SQS sinks
    /// send it as the `pipeline-output-id` attribute (a FIFO queue deduplicates by it),
    /// DLQ entries list their item's.
    pub id: Option<String>,
}

/// What became of one input record: exactly one of these, always.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The plugin produced these outputs (at least one).
    Transformed(Vec<Output>),
    /// The plugin deliberately produced nothing.
    Dropped,
    /// The record could not be processed; it belongs in the dead-letter queue.
    Failed(Failure),
}

/// Why a record ended in the dead-letter queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The class of failure.
    pub kind: FailureKind,
    /// A human-readable reason.
    pub message: String,
    /// How many times the record was handed to the plugin.
    pub attempts: u32,
    /// Which plugin of a chain failed it (0: the first, or the only one).
    pub stage: usize,
}

/// The class of a record's failure; decides whether a retry could help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The source could not decode the record (e.g. a line that is not JSON).
    Decode,
    /// A schema-registry framed record that does not decode against its schema, or
    /// names a schema its registry does not have: its framed bytes are kept.
    Schema,
    /// An input record over the record limit (`max-record-bytes`): its first bytes are
    /// kept.
    InputTooLarge,
    /// The plugin rejected the data (`DomainError`): never retried.
    Domain,
    /// The plugin reported a transient error and retries ran out.
    Infrastructure,
    /// The plugin trapped (panic, abort, ...) on this record.
    Trap,
    /// The plugin ran past its CPU deadline on this record.
    Deadline,
    /// The plugin tried to grow its memory past the cap on this record.
    MemoryLimit,
    /// One of the record's outputs is larger than the per-output limit.
    OutputTooLarge,
    /// The plugin broke the WIT contract (wrong result count, bad spans).
    Contract,
    /// An output names a destination no sink is configured for.
    Routing,
    /// An output cannot be written in its sink's format (a Parquet row that is not a
    /// JSON object).
    Encoding,
    /// A sink could not take an output, after its retries.
    Delivery,
    /// The run's time (a Lambda invocation's deadline) ran out before the record was
    /// done: handed back to a source that redelivers, else dead-lettered to run again.
    Unfinished,
    /// Another run held the record's claim in the idempotency store past this run's
    /// time: handed back to a source that redelivers, else dead-lettered. Its own kind
    /// because the holder may well have delivered the record meanwhile: `host reprocess`
    /// claims such an entry by the record's identity (not the entry's), so a record its
    /// holder finished is not sent again.
    Held,
}

impl FailureKind {
    /// The kebab-case name used in DLQ entries and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Schema => "schema",
            Self::InputTooLarge => "input-too-large",
            Self::Domain => "domain",
            Self::Infrastructure => "infrastructure",
            Self::Trap => "trap",
            Self::Deadline => "deadline",
            Self::MemoryLimit => "memory-limit",
            Self::OutputTooLarge => "output-too-large",
            Self::Contract => "contract",
            Self::Routing => "routing",
            Self::Encoding => "encoding",
            Self::Delivery => "delivery",
            Self::Unfinished => "unfinished",
            Self::Held => "held",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of one input item once the pipeline is done with it: the one fact its
/// source settles it by. Exactly one per item that entered.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every output was taken by its sink (they are kept here for sources that answer
    /// with them, as Firehose does).
    Delivered(Vec<Output>),
    /// The plugin deliberately produced nothing.
    Dropped,
    /// In the dead-letter queue, for this reason.
    DeadLettered(Failure),
    /// Not finished: the event source should deliver it again (the reason, for logs).
    Retry(String),
    /// Already done by an earlier delivery of the same record (the idempotency store
    /// says so): nothing is sent again.
    Duplicate,
}
