//! The Firehose transformation response as a sink: outputs are kept, in memory, for the
//! Lambda answer, up to the response's size limit; past it an output is refused like any
//! sink refuses what it cannot take (and its record goes to the dead-letter queue).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::DeliveryFailure;
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

    /// Takes outputs while the response stays within its limit (each output costs its
    /// base64 size, a newline, and the record's framing).
    pub fn deliver(&self, outputs: Vec<(usize, &Output)>) -> Vec<DeliveryFailure> {
        let mut failures = Vec::new();
        for (item, output) in outputs {
            let cost = (output.payload.len() + 1).div_ceil(3) * 4 + 128;
            let before = self.size.fetch_add(cost, Ordering::Relaxed);
            if before + cost > self.limit {
                self.size.fetch_sub(cost, Ordering::Relaxed);
                failures.push(DeliveryFailure {
                    item,
                    kind: FailureKind::Delivery,
                    message: format!(
                        "the Firehose response would pass its {} byte limit",
                        self.limit
                    ),
                });
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_past_the_limit_are_refused() {
        let sink = ResponseSink::with_limit(1100);
        let output = Output {
            payload: vec![b'x'; 300].into(),
            ..Output::default()
        };
        let failures = sink.deliver((0..4).map(|i| (i, &output)).collect());
        assert_eq!(failures.iter().map(|f| f.item).collect::<Vec<_>>(), [2, 3]);
    }
}
