//! The answer as a sink, for the sources whose answer is the delivery: a Firehose
//! transformation response, an EventBridge Pipes enrichment's batch. Outputs are kept, in
//! memory, for the Lambda answer, up to its size limit. The answer holds a record whole
//! (Firehose: `Ok` with all its outputs; Pipes: each output an element) or not at all
//! (the record in the dead-letter queue), so room is made for all of a record's outputs
//! before any is sent, or for none: a record that does not fit is refused whole, like
//! any sink's failed check.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::record::{FailureKind, Output, pipes_element};

/// Firehose refuses a transformation response over 6 MB; keep a margin for the JSON.
pub const FIREHOSE_RESPONSE_LIMIT: usize = 6_000_000 - (64 << 10);

/// Pipes refuses an enrichment answer over 6 MB: the same margin.
pub const PIPES_RESPONSE_LIMIT: usize = FIREHOSE_RESPONSE_LIMIT;

/// Which answer the outputs go into, and so what each costs of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Firehose's records: each output base64, joined by newlines.
    Firehose,
    /// A pipe's enriched batch: each output one JSON element ([`pipes_element`]).
    Pipes,
}

/// Counts what one response will hold; one per invocation.
#[derive(Debug, Clone)]
pub struct ResponseSink {
    size: Arc<AtomicUsize>,
    limit: usize,
    answer: Answer,
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
            answer: Answer::Firehose,
        }
    }

    /// A pipe's enriched batch, within its limit.
    pub fn pipes() -> Self {
        Self {
            answer: Answer::Pipes,
            ..Self::with_limit(PIPES_RESPONSE_LIMIT)
        }
    }

    /// Makes room in the response for all of one record's `outputs`, or for none of
    /// them (Firehose: each output costs its base64 size, a newline, and the record's
    /// framing; Pipes: its element's JSON and a comma).
    pub fn admit(&self, outputs: &[Output]) -> Result<(), (FailureKind, String)> {
        let cost: usize = outputs
            .iter()
            .map(|o| match self.answer {
                Answer::Firehose => (o.payload.len() + 1).div_ceil(3) * 4 + 128,
                Answer::Pipes => pipes_element(&o.payload).to_string().len() + 1,
            })
            .sum();
        let before = self.size.fetch_add(cost, Ordering::Relaxed);
        if before.saturating_add(cost) > self.limit {
            self.size.fetch_sub(cost, Ordering::Relaxed);
            return Err((
                FailureKind::Delivery,
                format!(
                    "the {} answer would pass its {} byte limit",
                    match self.answer {
                        Answer::Firehose => "Firehose",
                        Answer::Pipes => "Pipes enrichment",
                    },
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

#[cfg(test)]
mod pipes_tests {
    use super::*;

    #[test]
    fn a_pipes_element_is_json_text_or_base64() {
        assert_eq!(pipes_element(br#"{"a":1}"#), serde_json::json!({"a": 1}));
        assert_eq!(
            pipes_element(b"plain text"),
            serde_json::json!("plain text")
        );
        assert_eq!(pipes_element(&[0xff, 0x00]), serde_json::json!("/wA="));
    }

    #[test]
    fn a_pipes_answer_counts_each_element_as_written() {
        let sink = ResponseSink {
            limit: 20,
            ..ResponseSink::pipes()
        };
        let text = |t: &str| Output {
            payload: t.as_bytes().to_vec().into(),
            ..Output::default()
        };
        // `"\u0001"` is 8 bytes written, not 1: ten of them do not fit in 20.
        assert!(sink.admit(&[text("\u{1}")]).is_ok());
        assert!(sink.admit(&[text(&"\u{1}".repeat(3))]).is_err());
        assert!(
            sink.admit(&[text("123456789")]).is_ok(),
            "a JSON number: 9 bytes and a comma"
        );
    }
}
