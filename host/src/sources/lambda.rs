//! One Lambda event (Kinesis, SQS, Kafka, SNS, EventBridge, DynamoDB Streams, Firehose,
//! Pipes, direct) as a source. Its settle step collects the verdicts by item id and its
//! answer is the event source's own: `batchItemFailures` naming the items to retry, the
//! Firehose records (outputs joined by newlines), a pipe's enriched batch, the run's
//! summary, or (a source that takes its event back only whole) an error.

use aws_lambda_events::event::firehose::{KinesisFirehoseResponse, KinesisFirehoseResponseRecord};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use aws_lambda_events::event::streams::{
    DynamoDbBatchItemFailure, DynamoDbEventResponse, KinesisBatchItemFailure, KinesisEventResponse,
};
use serde_json::Value;
use serde_json::value::{RawValue, to_raw_value};

use super::carried::{CarriedRun, ObjectReader};
use super::{DecodedEvent, EventItem, EventKind, Item, OutOfTime, Source, SourceError};
use crate::record::Verdict;

/// The items of one Lambda event, and the verdicts they settled with. Messages that
/// name S3 objects ([`super::Carried`]) are read where they sit among the items, with
/// an [`ObjectReader`]; each settles as one verdict, by its records.
pub struct LambdaEvent {
    kind: EventKind,
    pending: std::vec::IntoIter<EventItem>,
    /// Items handed out so far: a carried message sits after `at` of them.
    handed_out: usize,
    carried: std::collections::VecDeque<super::Carried>,
    reader: Option<ObjectReader>,
    current: Option<CarriedRun>,
    /// FIFO groups of carried messages handed back before they were read: the later
    /// messages of the group go back with them, unread.
    held: std::collections::HashSet<String>,
    settled: Vec<(String, Verdict)>,
    /// Items held that way since the pipeline last asked: their verdicts, to count.
    unread: Vec<Verdict>,
}

/// What a [`LambdaEvent`] knows a handed-out item by.
#[derive(Debug)]
pub enum Handle {
    /// One of the event's own items, by its id.
    Item(String),
    /// A record of a carried message's objects.
    Line(u64),
}

impl LambdaEvent {
    /// The source over a decoded event's items (an S3 notification has none: its
    /// objects are an [`super::ObjectSource`]).
    pub fn new(event: DecodedEvent) -> Self {
        Self {
            kind: event.kind,
            settled: Vec::with_capacity(event.items.len()),
            pending: event.items.into_iter(),
            handed_out: 0,
            carried: event.carried.into(),
            reader: None,
            current: None,
            held: std::collections::HashSet::new(),
            unread: Vec::new(),
        }
    }

    /// The same source, reading the objects its carried messages name with `reader`.
    pub fn reading_objects(mut self, reader: ObjectReader) -> Self {
        self.reader = Some(reader);
        self
    }

    /// The next carried message, if the items before it are all handed out: started,
    /// or (out of time, behind a message of its group handed back, nothing to read it
    /// with) handed back unread.
    fn next_carried(&mut self) -> Option<()> {
        if self.carried.front()?.at > self.handed_out {
            return None;
        }
        let message = self.carried.pop_front()?;
        let held = message
            .group
            .as_ref()
            .is_some_and(|g| self.held.contains(g));
        let reason = match &self.reader {
            None => Some("the host has no S3 reader here".to_owned()),
            Some(_) if held => Some("a message of its group before it was handed back".into()),
            Some(reader) if reader.budget.exhausted() => {
                Some("the invocation's time ran out before its objects were read".into())
            }
            Some(reader) => {
                self.current = Some(CarriedRun::start(message.clone(), reader));
                None
            }
        };
        if let Some(reason) = reason {
            if let Some(group) = &message.group {
                self.held.insert(group.clone());
            }
            self.settled.push((message.id, Verdict::Retry(reason)));
        }
        Some(())
    }

    /// The items (and carried messages) settled for retry, each id once, with why.
    pub fn handed_back(&self) -> Vec<(&str, &str)> {
        let mut named = std::collections::HashSet::new();
        self.settled
            .iter()
            .filter_map(|(id, verdict)| match verdict {
                Verdict::Retry(reason) => Some((id.as_str(), reason.as_str())),
                _ => None,
            })
            .filter(|(id, _)| named.insert(*id))
            .collect()
    }

    /// The answer to the invocation, in the event source's terms, as JSON text (written
    /// straight from its types: a Firehose answer carries every output); `summary`
    /// answers a direct invocation and a Kafka event.
    pub fn response(self, summary: Value) -> Result<Box<RawValue>, AnswerError> {
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
                Ok(to_raw_value(&response)?)
            }
            EventKind::Kinesis => {
                let mut response = KinesisEventResponse::default();
                for id in retry_ids() {
                    let mut failure = KinesisBatchItemFailure::default();
                    failure.item_identifier = Some(id);
                    response.batch_item_failures.push(failure);
                }
                Ok(to_raw_value(&response)?)
            }
            EventKind::Dynamodb => {
                let mut response = DynamoDbEventResponse::default();
                for id in retry_ids() {
                    let mut failure = DynamoDbBatchItemFailure::default();
                    failure.item_identifier = Some(id);
                    response.batch_item_failures.push(failure);
                }
                Ok(to_raw_value(&response)?)
            }
            EventKind::Firehose => Ok(to_raw_value(&firehose_response(self.settled))?),
            // A pipe's enriched batch: each delivered record's outputs, in order; the
            // records dropped, dead-lettered or filtered are not in it (a pipe filters
            // by fewer elements). One to retry fails the invocation: the pipe retries
            // the batch by its source's policy.
            EventKind::Pipes => retried_whole(retry_ids()).and_then(|()| {
                let enriched = Value::Array(
                    self.settled
                        .iter()
                        .filter_map(|(_, verdict)| match verdict {
                            Verdict::Delivered(outputs) => Some(outputs),
                            _ => None,
                        })
                        .flatten()
                        .map(|output| crate::record::pipes_element(&output.payload))
                        .collect(),
                );
                Ok(to_raw_value(&enriched)?)
            }),
            // Kafka's event source mapping takes a batch back whole, by a function error:
            // the one answer every mapping understands (its partial batch responses are
            // a provisioned-mode option whose item names are not documented). Records
            // already delivered come back with the batch: duplicates, with the store on.
            // SNS and EventBridge invoke asynchronously: an error is their retry too (a
            // message whose objects could not all be read).
            EventKind::Kafka | EventKind::Sns | EventKind::EventBridge => {
                retried_whole(retry_ids())?;
                Ok(to_raw_value(&summary)?)
            }
            EventKind::Direct | EventKind::S3 => Ok(to_raw_value(&summary)?),
        }
    }
}

/// For a source that takes its event back only whole: an error naming the records to
/// retry (each id once, in order), if there are any.
fn retried_whole(mut ids: impl Iterator<Item = String>) -> Result<(), AnswerError> {
    match ids.next() {
        None => Ok(()),
        Some(first) => Err(AnswerError::HandedBack {
            count: 1 + ids.count(),
            first,
        }),
    }
}

/// Why an invocation's answer is an error.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// Records must be retried and the source takes its batch back only whole.
    #[error(
        "{count} records must be retried (the first: {first}); the event is retried \
         whole: records already delivered come back as duplicates with the idempotency \
         store on"
    )]
    HandedBack {
        /// How many.
        count: usize,
        /// The first of them (a Kafka record as `TOPIC-PARTITION@OFFSET`).
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
    type Id = Handle;

    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Item<Handle>>>, SourceError> {
        loop {
            if let Some(run) = &mut self.current {
                // Out of time, the pipeline still asks for batches to hand them back:
                // the message goes back as it stands, without reading on (the rest of an
                // object, the next one: a Parquet download).
                if self.reader.as_ref().is_some_and(|r| r.budget.exhausted()) {
                    run.out_of_time().await;
                }
                if let Some(lines) = run.next_batch(max).await {
                    return Ok(Some(
                        lines.into_iter().map(|i| i.with_id(Handle::Line)).collect(),
                    ));
                }
                if let Some(run) = self.current.take() {
                    let group = run.message_group().map(str::to_owned);
                    let (id, verdict) = run.verdict();
                    if let (Some(group), Verdict::Retry(_)) = (group, &verdict) {
                        self.held.insert(group);
                    }
                    self.settled.push((id, verdict));
                }
                continue;
            }
            if self.next_carried().is_some() {
                continue;
            }
            let room = self
                .carried
                .front()
                .map_or(max, |next| (next.at - self.handed_out).min(max));
            let mut batch: Vec<EventItem> = self.pending.by_ref().take(room).collect();
            // A KPL aggregate's user records (one id, the aggregate's) go in one batch:
            // a batch is where the run may stop for time, and Lambda takes an aggregate
            // back only whole, so one cut inside would repeat its first records on
            // every delivery and an aggregate longer than a batch would never finish.
            while let (Some(last), Some(next)) = (batch.last(), self.pending.as_slice().first())
                && last.id == next.id
                && self.kind == EventKind::Kinesis
            {
                batch.extend(self.pending.next());
            }
            if batch.is_empty() && self.carried.is_empty() {
                return Ok(None);
            }
            self.handed_out += batch.len();
            let mut items = Vec::with_capacity(batch.len());
            for item in batch {
                match &item.group {
                    // Behind a carried message of its FIFO group that went back unread.
                    Some(group) if self.held.contains(group) => {
                        let verdict = Verdict::Retry(
                            "a message of its group before it was handed back".into(),
                        );
                        self.unread.push(verdict.clone());
                        self.settled.push((item.id, verdict));
                    }
                    _ => items.push(item.with_id(Handle::Item)),
                }
            }
            return Ok(Some(items));
        }
    }

    fn settled_unread(&mut self) -> Vec<Verdict> {
        std::mem::take(&mut self.unread)
    }

    fn redelivers(&self) -> bool {
        matches!(
            self.kind,
            EventKind::Kinesis
                | EventKind::Sqs
                | EventKind::Kafka
                | EventKind::Dynamodb
                | EventKind::Pipes
        )
    }

    async fn settle(&mut self, settled: Vec<(Handle, Verdict)>) -> Result<(), SourceError> {
        let mut lines = Vec::new();
        for (handle, verdict) in settled {
            match handle {
                Handle::Item(id) => self.settled.push((id, verdict)),
                Handle::Line(line) => lines.push((line, verdict)),
            }
        }
        match &mut self.current {
            Some(run) => run.settle(lines).await,
            None if lines.is_empty() => Ok(()),
            None => Err(SourceError::Settle(format!(
                "{} records of no carried message",
                lines.len()
            ))),
        }
    }

    /// Firehose takes records back one by one (`ProcessingFailed`, to its error output)
    /// rather than the whole batch again, which would repeat what is already done; a
    /// direct invocation, SNS and EventBridge fail, their caller retrying (a carried
    /// message first records how far it got).
    async fn out_of_time(&mut self) -> Result<OutOfTime, SourceError> {
        if let Some(run) = &mut self.current {
            run.out_of_time().await;
        }
        Ok(if self.kind == EventKind::Firehose {
            OutOfTime::HandBack
        } else {
            OutOfTime::FailTheRun
        })
    }
}
