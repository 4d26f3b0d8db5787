//! Sources: where items come from, and where their verdicts go back. A source knows
//! nothing about Wasm or sinks: it yields batches of [`Item`]s, each carrying its own
//! identity (a Lambda item id, an SQS receipt handle, a DLQ object and line, ...), and
//! settles each item from the verdict the pipeline reached for it.
//!
//! A record that cannot be decoded is not an error of the run: it comes out as
//! [`Undecodable`] and ends in the dead-letter queue.
//!
//! # Layout
//! - `events/`: AWS event JSON into items: `mod.rs` tells the kinds apart and shares
//!   what their decoders need; one file per source (`kinesis.rs`, `sqs.rs`,
//!   `dynamodb.rs` with its images as exact JSON, `firehose.rs`, `s3.rs` for the objects
//!   a notification names, `direct.rs`).
//! - `capped.rs`: CSV rows, each cut at the record limit over however many lines.
//! - `lambda.rs`: one Lambda event as a source; its settle step is the Lambda answer.
//! - `carried.rs`: the objects a message of the event names (an S3 notification in an
//!   SQS or SNS message), read in its place, the message settled by their records.
//! - `file.rs`: local input (JSON lines, CSV, lines, a captured event).
//! - `s3.rs`: the objects an S3 notification names, streamed in batches.
//! - `checkpoint.rs`: how far an S3 notification got, for the retry after a timeout.
//! - `parquet.rs`: Parquet rows as JSON objects.
//! - `dlq.rs`: dead-letter queues (SQS, S3) read back for `host reprocess`.

mod capped;
pub mod carried;
mod checkpoint;
pub mod dlq;
pub mod events;
mod file;
pub mod lambda;
pub mod parquet;
pub mod s3;

use std::future::Future;

pub use checkpoint::{Checkpoint, Checkpoints};
pub use events::{Carried, DecodedEvent, EventItem, EventKind, ObjectRef};
pub use file::{FileSource, InputFormat, MAX_EVENT_BYTES, read_event, read_event_carrying};
pub use lambda::LambdaEvent;
pub use s3::ObjectSource;

use crate::aws::AwsError;
use crate::record::{FailureKind, Record, Verdict};

/// An input record the source could not decode, with its raw bytes and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Undecodable {
    /// The raw record (payload = the bytes as read, or as many as the record limit
    /// allows), with its position attributes.
    pub record: Record,
    /// `Decode`, or `InputTooLarge` for a record over the record limit.
    pub kind: FailureKind,
    /// What was wrong, e.g. `line 3 is not JSON: expected value at column 1`.
    pub reason: String,
}

impl Undecodable {
    /// A record that could not be decoded, and why.
    pub fn decode(record: Record, reason: String) -> Self {
        Self {
            record,
            kind: FailureKind::Decode,
            reason,
        }
    }
}

/// How input is read: how large it may be (one record, a line or an inflated gzip
/// record; all the gzip records of one event inflated together), and how far an event's
/// messages are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Bytes of one record.
    pub record: usize,
    /// Bytes the gzip records of one event may inflate to together.
    pub event: usize,
    /// Open envelopes: an SNS notification in an SQS message, a message naming S3
    /// objects (`events::Carried`).
    pub envelopes: bool,
}

/// One item from a source: a record, or one that could not be decoded.
pub type Decoded = Result<Record, Undecodable>;

/// A record's line in its file or object (`row` for Parquet), decoded or not.
pub(crate) fn line_of(decoded: &Decoded) -> Option<&str> {
    let record = match decoded {
        Ok(record) => record,
        Err(bad) => &bad.record,
    };
    record.attribute("line").or_else(|| record.attribute("row"))
}

/// One item of a batch: what the source knows it by, its ordering group, and its record.
#[derive(Debug, Clone, PartialEq)]
pub struct Item<Id> {
    /// The source's own handle for the item: what it settles it by (a Kinesis sequence
    /// number, an SQS receipt, a line number). Nothing else reads it.
    pub id: Id,
    /// Items of one group must finish in order (a Kinesis shard, a DynamoDB stream, an
    /// SQS FIFO message group): once one is handed back for a retry, every later item of
    /// its group is too. `None`: the item is on its own.
    pub group: Option<String>,
    /// Where the record sits in its source, the same on every delivery of it (a Kinesis
    /// shard and sequence number, an SQS message id, an S3 object's version and line, a
    /// file and line, a DLQ entry): what the idempotency store remembers it by, and what
    /// its outputs' identities start with. `None`: it has no stable position (a Firehose
    /// record, whose answer is its delivery; a direct record without its id field; stdin).
    pub position: Option<String>,
    /// The record's identity in the source it first came from, when this item is a later
    /// try of it (a DLQ entry being reprocessed): its outputs and a new DLQ entry keep
    /// that one, so they match what a first try sent.
    pub first_position: Option<String>,
    /// Outputs of this record (by their place among its outputs) an earlier try already
    /// delivered (a DLQ entry's `delivered`): they are not sent again.
    pub delivered: Vec<usize>,
    /// The record, or why it could not be decoded.
    pub decoded: Decoded,
}

impl<Id> Item<Id> {
    /// The same item, known by `id(self.id)`.
    pub fn with_id<New>(self, id: impl FnOnce(Id) -> New) -> Item<New> {
        Item {
            id: id(self.id),
            group: self.group,
            position: self.position,
            first_position: self.first_position,
            delivered: self.delivered,
            decoded: self.decoded,
        }
    }
}

/// Where a pipeline's items come from and where their verdicts go back.
///
/// The pipeline asks for batches of at most its batch size, and settles every item of
/// a batch, in order, before it asks for the next one.
pub trait Source: Send {
    /// What the source knows an item by.
    type Id: Send + 'static;

    /// The next batch of at most `max` items; `None` once the source is exhausted. A
    /// batch may be empty: the input read held no item (blank lines), and the pipeline
    /// checks its budget before asking again.
    fn next_batch(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Option<Vec<Item<Self::Id>>>, SourceError>> + Send;

    /// Whether the source delivers again what is settled as [`Verdict::Retry`] (SQS,
    /// Kinesis, DynamoDB Streams, a DLQ being reprocessed). When it does not, transient
    /// failures go to the dead-letter queue instead.
    fn redelivers(&self) -> bool;

    /// Settles one batch: one verdict per item, in the batch's order.
    fn settle(
        &mut self,
        settled: Vec<(Self::Id, Verdict)>,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Verdicts of items the source settled itself, without handing them out, since it
    /// was last asked (an SQS FIFO message held behind one of its group that went back
    /// unread): the pipeline counts them as entered and settled, so the run's counts
    /// hold every record of the input.
    fn settled_unread(&mut self) -> Vec<Verdict> {
        Vec::new()
    }

    /// The run's time is up and the source does not redeliver item by item: what
    /// becomes of the items left. It may first record how far it got, so that the whole
    /// retry its own source makes resumes there (an S3 notification's checkpoint).
    fn out_of_time(&mut self) -> impl Future<Output = Result<OutOfTime, SourceError>> + Send {
        async { Ok(OutOfTime::FailTheRun) }
    }
}

/// What a source that does not redeliver item by item does with the items left when the
/// run's time is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfTime {
    /// Settle them as [`Verdict::Retry`]: the source takes them back one by one (Firehose
    /// answers them `ProcessingFailed`).
    HandBack,
    /// Fail the run: the source's own retry brings the whole input back (from its
    /// checkpoint, if it keeps one).
    FailTheRun,
}

/// A source failed as a whole (unreadable file, broken CSV header, an AWS call): the
/// run stops.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Reading the input failed.
    #[error("cannot read input {input}: {source}")]
    Read {
        /// The input's name (`-` for stdin).
        input: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The input is not the AWS event it was said to be.
    #[error("input {input}: {source}")]
    Event {
        /// The input's name.
        input: String,
        /// What is wrong with the event.
        source: events::EventError,
    },
    /// The CSV header is missing or unreadable.
    #[error("input {input}: bad CSV header: {reason}")]
    CsvHeader {
        /// The input's name.
        input: String,
        /// What the CSV reader said.
        reason: String,
    },
    /// An object's format cannot be told from its key.
    #[error("{0}")]
    Format(String),
    /// Verdicts that do not belong to what the source handed out (a host bug).
    #[error("cannot settle: {0}")]
    Settle(String),
    /// An AWS call of the source (reading, deleting, releasing) failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
}
