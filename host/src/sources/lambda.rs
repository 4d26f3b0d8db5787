//! One Lambda event (Kinesis, SQS, Kafka, DynamoDB Streams, Firehose, direct) as a source. Its
//! settle step collects the verdicts by item id and its answer is the event source's own:
//! `batchItemFailures` naming the items to retry, the Firehose records (outputs joined by
//! newlines), or the run's summary for a direct invocation.

use aws_lambda_events::event::firehose::{KinesisFirehoseResponse, KinesisFirehoseResponseRecord};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use aws_lambda_events::event::streams::{
    DynamoDbBatchItemFailure, DynamoDbEventResponse, KinesisBatchItemFailure, KinesisEventResponse,
};
use serde_json::Value;

use super::{DecodedEvent, EventItem, EventKind, Item, OutOfTime, Source, SourceError};
use crate::record::Verdict;

/// The items of one Lambda event, and the verdicts they settled with.
pub struct LambdaEvent {
    kind: EventKind,
    pending: std::vec::IntoIter<EventItem>,
    settled: Vec<(String, Verdict)>,
}

impl LambdaEvent {
    /// The source over a decoded event's items (an S3 notification has none: its
    /// objects are an [`super::ObjectSource`]).
    pub fn new(event: DecodedEvent) -> Self {
        Self {
            kind: event.kind,
            settled: Vec::with_capacity(event.items.len()),
            pending: event.items.into_iter(),
        }
    }

    /// The answer to the invocation, in the event source's terms; `summary` answers a
    /// direct invocation and a Kafka event.
    pub fn response(self, summary: Value) -> Result<Value, AnswerError> {
        // Each once: the user records of one KPL aggregate share its sequence number,
        // the only name Lambda takes back (handing one back hands back the aggregate).
        let retry_ids = || {
            let mut named = std::collections::HashSet::new();
            self.settled
                .iter()
                .filter(|(_, v)| matches!(v, Verdict::Retry(_)))
                .filter(move |(id, _)| named.insert(id.as_str()))
                .map(|(id, _)| id.clone())
        };
        // The response types are `#[non_exhaustive]`: built from `Default`, field by field.
        match self.kind {
            EventKind::Sqs => {
                let mut response = SqsBatchResponse::default();
                for id in retry_ids() {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    response.batch_item_failures.push(failure);
                }
                Ok(serde_json::to_value(response)?)
            }
            EventKind::Kinesis => {
                let mut response = KinesisEventResponse::default();
                for id in retry_ids() {
                    let mut failure = KinesisBatchItemFailure::default();
                    failure.item_identifier = Some(id);
                    response.batch_item_failures.push(failure);
                }
                Ok(serde_json::to_value(response)?)
            }
            EventKind::Dynamodb => {
                let mut response = DynamoDbEventResponse::default();
                for id in retry_ids() {
                    let mut failure = DynamoDbBatchItemFailure::default();
                    failure.item_identifier = Some(id);
                    response.batch_item_failures.push(failure);
                }
                Ok(serde_json::to_value(response)?)
            }
            EventKind::Firehose => Ok(serde_json::to_value(firehose_response(self.settled))?),
            // Kafka's event source mapping takes a batch back whole, by a function error:
            // the one answer every mapping understands (its partial batch responses are
            // a provisioned-mode option whose item names are not documented). Records
            // already delivered come back with the batch: duplicates, with the store on.
            EventKind::Kafka => match retry_ids().next() {
                None => Ok(summary),
                Some(first) => Err(AnswerError::HandedBack {
                    count: retry_ids().count(),
                    first,
                }),
            },
            EventKind::Direct | EventKind::S3 => Ok(summary),
        }
    }
}

/// Why an invocation's answer is an error.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// Records must be retried and the source takes its batch back only whole.
    #[error(
        "{count} records must be retried (the first: {first}); a Kafka batch is retried \
         whole: records already delivered come back as duplicates with the idempotency \
         store on"
    )]
    HandedBack {
        /// How many.
        count: usize,
        /// The first of them, as `TOPIC-PARTITION@OFFSET`.
        first: String,
    },
    /// The answer could not be written (a host bug).
    #[error("cannot write the answer: {0}")]
    Json(#[from] serde_json::Error),
}

/// One response record per input record: `Ok` with the outputs' payloads joined by
/// newlines, or `Dropped`: for a record the plugin dropped, and for one the host
/// dead-lettered (also when the answer's 6 MB limit refused it) — the DLQ is that
/// record's one place, with its error, ready for `host reprocess`; answering
/// `ProcessingFailed` would put a second copy in Firehose's error output.
fn firehose_response(settled: Vec<(String, Verdict)>) -> KinesisFirehoseResponse {
    let records = settled
        .into_iter()
        .map(|(id, verdict)| {
            let (result, data) = match verdict {
                Verdict::Delivered(outputs) => {
                    let data = outputs
                        .iter()
                        .map(|o| &o.payload[..])
                        .collect::<Vec<_>>()
                        .join(&b"\n"[..]);
                    ("Ok", data)
                }
                // (Firehose records have no identity: none is ever a duplicate.)
                Verdict::Dropped | Verdict::DeadLettered(_) | Verdict::Duplicate => {
                    ("Dropped", Vec::new())
                }
                // Firehose does not redeliver item by item: it retries on this answer.
                Verdict::Retry(_) => ("ProcessingFailed", Vec::new()),
            };
            let mut record = KinesisFirehoseResponseRecord::default();
            record.record_id = Some(id);
            record.result = Some(result.to_owned());
            *record.data = data;
            record
        })
        .collect();
    let mut response = KinesisFirehoseResponse::default();
    response.records = records;
    response
}

impl Source for LambdaEvent {
    type Id = String;

    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Item<String>>>, SourceError> {
        let batch: Vec<Item<String>> = self.pending.by_ref().take(max).collect();
        Ok((!batch.is_empty()).then_some(batch))
    }

    fn redelivers(&self) -> bool {
        matches!(
            self.kind,
            EventKind::Kinesis | EventKind::Sqs | EventKind::Kafka | EventKind::Dynamodb
        )
    }

    async fn settle(&mut self, settled: Vec<(String, Verdict)>) -> Result<(), SourceError> {
        self.settled.extend(settled);
        Ok(())
    }

    /// Firehose takes records back one by one (`ProcessingFailed`, to its error output)
    /// rather than the whole batch again, which would repeat what is already done; a
    /// direct invocation fails, its caller deciding.
    async fn out_of_time(&mut self) -> Result<OutOfTime, SourceError> {
        Ok(if self.kind == EventKind::Firehose {
            OutOfTime::HandBack
        } else {
            OutOfTime::FailTheRun
        })
    }
}
