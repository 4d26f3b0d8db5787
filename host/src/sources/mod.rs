//! Sources: decode input into [`Record`]s. A record that cannot be decoded is not an
//! error of the run: it comes out as [`Undecodable`] and ends in the dead-letter queue.

pub mod events;
mod file;
pub mod s3;

pub use events::{DecodedEvent, EventItem, EventKind, ObjectRef};
pub use file::{FileSource, InputFormat};

use crate::record::Record;

/// An input record the source could not decode, with its raw bytes and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Undecodable {
    /// The raw record (payload = the bytes as read), with its position attributes.
    pub record: Record,
    /// What was wrong, e.g. `line 3 is not JSON: expected value at column 1`.
    pub reason: String,
}

/// One item from a source: a record, or one that could not be decoded.
pub type Decoded = Result<Record, Undecodable>;

/// A source failed as a whole (unreadable file, broken CSV header): the run stops.
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
}
