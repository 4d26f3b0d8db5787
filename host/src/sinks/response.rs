//! The Firehose transformation response as a sink: outputs are kept, in memory, for the
//! Lambda answer, up to the response's size limit. The answer holds a record whole (`Ok`
//! with all its outputs) or not at all (`Dropped`, the record in the dead-letter queue),
//! so room is made for all of a record's outputs before any is sent, or for none: a
//! record that does not fit is refused whole, like any sink's failed check.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::record::{FailureKind, Output};

/// Firehose refuses a transformation response over 6 MB; keep a margin for the JSON.
pub const FIREHOSE_RESPONSE_LIMIT: usize = 6_000_000 - (64 << 10);

/// Counts what one response will hold; one per invocation.
#[derive(Debug, Clone)]
pub struct ResponseSink {
    size: Arc<AtomicUsize>,
    limit: usize,
}

impl Default for ResponseSink {
    fn default() -> Self {
        Self::with_limit(FIREHOSE_RESPONSE_LIMIT)
    }
}

impl ResponseSink {
    /// A response of at most `limit` bytes (base64 and framing included).
    pub fn with_limit(limit: usize) -> Self {
        Self {
            size: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Makes room in the response for all of one record's `outputs`, or for none of
    /// them (each output costs its base64 size, a newline, and the record's framing).
    pub fn admit(&self, outputs: &[Output]) -> Result<(), (FailureKind, String)> {
        let cost: usize = outputs
            .iter()
            .map(|o| (o.payload.len() + 1).div_ceil(3) * 4 + 128)
            .sum();
        let before = self.size.fetch_add(cost, Ordering::Relaxed);
        if before.saturating_add(cost) > self.limit {
            self.size.fetch_sub(cost, Ordering::Relaxed);
            return Err((
                FailureKind::Delivery,
                format!(
                    "the Firehose response would pass its {} byte limit",
                    self.limit
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(bytes: usize) -> Output {
        Output {
            payload: vec![b'x'; bytes].into(),
            ..Output::default()
        }
    }

    #[test]
    fn a_record_has_room_for_all_its_outputs_or_takes_none() {
        // 532 bytes for an output of 300, 132 for an empty one.
        let sink = ResponseSink::with_limit(1100);
        assert!(sink.admit(&[output(300)]).is_ok());
        // Its first output would fit, its second not: the record is refused whole...
        assert!(sink.admit(&[output(0), output(300), output(300)]).is_err());
        // ...and took no room from the records after it.
        assert!(sink.admit(&[output(300)]).is_ok());
        assert!(sink.admit(&[output(0)]).is_err());
    }
}
