//! The two ways a record can fail, as types.

use std::fmt;

/// The record's data is bad: retrying cannot help.
///
/// The host sends the record to the dead-letter queue at once, with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainError(String);

impl DomainError {
    /// A domain error with this message, e.g. `DomainError::new("missing field `id`")`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// Something transient went wrong (a lookup table not loaded yet, a quota hit).
///
/// The host retries the record with backoff a bounded number of times, then sends
/// it to the dead-letter queue with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfrastructureError(String);

impl InfrastructureError {
    /// An infrastructure error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// Why a transform failed one record: either kind converts into it with `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Bad data: to the dead-letter queue, never retried.
    Domain(DomainError),
    /// Transient: retried, then to the dead-letter queue.
    Infrastructure(InfrastructureError),
}

impl Error {
    /// Shorthand for `Error::Domain(DomainError::new(message))`.
    pub fn domain(message: impl Into<String>) -> Self {
        Self::Domain(DomainError::new(message))
    }

    /// Shorthand for `Error::Infrastructure(InfrastructureError::new(message))`.
    pub fn infrastructure(message: impl Into<String>) -> Self {
        Self::Infrastructure(InfrastructureError::new(message))
    }

    /// The message, whatever the kind.
    pub fn message(&self) -> &str {
        match self {
            Self::Domain(e) => e.message(),
            Self::Infrastructure(e) => e.message(),
        }
    }

    /// Whether the host should retry the record.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Infrastructure(_))
    }
}

impl From<DomainError> for Error {
    fn from(e: DomainError) -> Self {
        Self::Domain(e)
    }
}

impl From<InfrastructureError> for Error {
    fn from(e: InfrastructureError) -> Self {
        Self::Infrastructure(e)
    }
}

/// A payload that is not the JSON the transform expects is bad data.
impl From<serde_json::Error> for DomainError {
    fn from(e: serde_json::Error) -> Self {
        Self::new(format!("invalid JSON payload: {e}"))
    }
}

/// A payload that is not the JSON the transform expects is bad data.
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Domain(e.into())
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for InfrastructureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(e) => write!(f, "domain error: {e}"),
            Self::Infrastructure(e) => write!(f, "infrastructure error: {e}"),
        }
    }
}

impl std::error::Error for DomainError {}
impl std::error::Error for InfrastructureError {}
impl std::error::Error for Error {}
