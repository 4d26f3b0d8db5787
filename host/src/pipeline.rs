//! One batch of event items through the whole path: plugin, routing, sinks, dead-letter
//! queue. Every item ends as exactly one of: done (delivered, dropped or dead-lettered)
//! or handed back to the event source for a retry.

use crate::accounting::Summary;
use crate::dlq::{DlqEntry, PluginRef};
use crate::engine::Chain;
use crate::record::{Failure, FailureKind, Outcome, Output, Record};
use crate::sinks::{RetryPolicy, Router, Sink};
use crate::sources::Decoded;

/// What the host tells the event source about one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemStatus {
    /// Finished: delivered, dropped, or in the dead-letter queue.
    Done,
    /// Not finished: the event source should deliver it again.
    Retry,
}

/// The result of one batch.
#[derive(Debug)]
pub struct BatchReport {
    /// One status per input item, in order.
    pub statuses: Vec<ItemStatus>,
    /// One final outcome per input item (a delivery failure turns `Transformed` into `Failed`).
    pub outcomes: Vec<Outcome>,
    /// The counts; `input = transformed + dropped + failed + retried`.
    pub summary: Summary,
}

/// Where outputs go: to sinks, or back in the response (Firehose).
pub enum Delivery<'a> {
    /// Route outputs to these sinks.
    Sinks(&'a Router),
    /// Keep outputs in the report; the caller returns them.
    InResponse,
}

/// The plugin's verdict on a batch, before anything is delivered.
pub struct Ran {
    records: Vec<Record>,
    undecodable: Vec<Record>,
    /// Where each item's original record is: `Ok(i)` in `records`, `Err(i)` in `undecodable`.
    origin: Vec<Result<usize, usize>>,
    outcomes: Vec<Outcome>,
    /// The chain's plugins, in order; a failure's `stage` indexes it.
    plugins: Vec<PluginRef>,
}

/// Runs `items` through the plugins, in batches of the configured size. Blocking: inside
/// an async runtime, call it from a blocking thread (WASI's sync bindings block on it).
pub fn run_plugin(chain: &mut Chain, items: Vec<Decoded>) -> Ran {
    let batch_size = chain.batch_size();
    let mut records: Vec<Record> = Vec::with_capacity(items.len());
    let mut undecodable: Vec<Record> = Vec::new();
    let mut origin = Vec::with_capacity(items.len());
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(items.len());
    let mut positions = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match item {
            Ok(record) => {
                positions.push(index);
                origin.push(Ok(records.len()));
                records.push(record);
                outcomes.push(None);
            }
            Err(bad) => {
                origin.push(Err(undecodable.len()));
                undecodable.push(bad.record);
                let failure = Failure {
                    kind: FailureKind::Decode,
                    message: bad.reason,
                    attempts: 0,
                    stage: 0,
                };
                outcomes.push(Some(Outcome::Failed(failure)));
            }
        }
    }
    for (chunk, chunk_positions) in records.chunks(batch_size).zip(positions.chunks(batch_size)) {
        for (outcome, &position) in chain.run(chunk).into_iter().zip(chunk_positions) {
            outcomes[position] = Some(outcome);
        }
    }
    let outcomes = outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                let message = "no outcome was recorded (host bug)".to_owned();
                Outcome::Failed(Failure {
                    kind: FailureKind::Contract,
                    message,
                    attempts: 0,
                    stage: 0,
                })
            })
        })
        .collect();
    Ran {
        records,
        undecodable,
        origin,
        outcomes,
        plugins: PluginRef::of_chain(chain),
    }
}

/// Delivers what the plugin produced: outputs to sinks, failures to the DLQ.
///
/// `source_retries`: the event source redelivers items reported as `Retry` (SQS,
/// Kinesis, DynamoDB Streams with partial batch responses). Then transient failures
/// (an infrastructure error after the host's own attempts) and items whose DLQ write
/// failed are handed back; without it they go to the DLQ, and an item the DLQ refuses
/// is an error of the whole invocation.
pub async fn deliver(
    ran: Ran,
    delivery: Delivery<'_>,
    dlq: &Sink,
    retry: RetryPolicy,
    source_retries: bool,
) -> Result<BatchReport, String> {
    let Ran {
        records,
        undecodable,
        origin,
        mut outcomes,
        plugins,
    } = ran;
    let last_stage = plugins.len().saturating_sub(1);
    if let Delivery::Sinks(router) = delivery {
        let outputs: Vec<(usize, &Output)> = outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                Outcome::Transformed(list) => Some(list.iter().map(move |out| (i, out))),
                _ => None,
            })
            .flatten()
            .collect();
        let failures = router.deliver(outputs, retry).await;
        for failure in failures {
            if matches!(outcomes[failure.item], Outcome::Transformed(_)) {
                let attempts = if failure.kind == FailureKind::Delivery {
                    retry.max_attempts
                } else {
                    1
                };
                outcomes[failure.item] = Outcome::Failed(Failure {
                    kind: failure.kind,
                    message: failure.message,
                    attempts,
                    stage: last_stage,
                });
            }
        }
    }

    let mut statuses = vec![ItemStatus::Done; outcomes.len()];
    let mut dead_letters: Vec<(usize, Output)> = Vec::new();
    for (index, outcome) in outcomes.iter().enumerate() {
        let Outcome::Failed(failure) = outcome else {
            continue;
        };
        if source_retries && failure.kind == FailureKind::Infrastructure {
            statuses[index] = ItemStatus::Retry;
            continue;
        }
        let original = match origin[index] {
            Ok(i) => &records[i],
            Err(i) => &undecodable[i],
        };
        let entry = DlqEntry::new(original, failure, &plugins[failure.stage.min(last_stage)]);
        match serde_json::to_vec(&entry) {
            Ok(json) => dead_letters.push((
                index,
                Output {
                    payload: json.into(),
                    ..Output::default()
                },
            )),
            // Cannot happen for this plain type; if it did, the record must not be lost.
            Err(e) if source_retries => {
                tracing::error!(error = %e, "cannot encode a DLQ entry; handing the record back");
                statuses[index] = ItemStatus::Retry;
            }
            Err(e) => return Err(format!("cannot encode a DLQ entry: {e}")),
        }
    }
    let refused = dlq
        .deliver(dead_letters.iter().map(|(i, o)| (*i, o)).collect(), retry)
        .await;
    for failure in refused {
        tracing::error!(item = failure.item, reason = %failure.message, "the dead-letter queue refused an entry");
        if !source_retries {
            return Err(format!(
                "the dead-letter queue refused an entry: {}",
                failure.message
            ));
        }
        statuses[failure.item] = ItemStatus::Retry;
    }

    let mut summary = Summary::default();
    for (outcome, status) in outcomes.iter().zip(&statuses) {
        match status {
            ItemStatus::Done => summary.count(outcome),
            ItemStatus::Retry => summary.count_retry(),
        }
    }
    let plugin = plugins
        .iter()
        .map(|p| format!("{}@{}", p.name, p.version))
        .collect::<Vec<_>>()
        .join(" -> ");
    tracing::info!(%plugin, %summary, "batch done");
    Ok(BatchReport {
        statuses,
        outcomes,
        summary,
    })
}
