//! One batch through the plugin chain, then to the sinks and the dead-letter queue, ending
//! in one [`Verdict`] per item. The plugin's outcome is read, never rewritten: a delivery
//! failure decides the verdict next to it.

use crate::dlq::{DlqEntry, PluginRef};
use crate::engine::Chain;
use crate::record::{Failure, FailureKind, Outcome, Output, Record, Verdict};
use crate::sinks::{DeliveryFailure, RetryPolicy, Router, Sink};
use crate::sources::Decoded;

/// The plugin's verdict on a batch, before anything is delivered.
pub(super) struct Ran {
    /// The records the chain ran over.
    records: Vec<Record>,
    /// One per item: where its original record is.
    originals: Vec<Original>,
    outcomes: Vec<Outcome>,
    /// The chain's plugins, in order; a failure's `stage` indexes it.
    plugins: Vec<PluginRef>,
}

/// An item's original record: one the chain ran over, or the raw one that could not be
/// decoded.
enum Original {
    Decoded(usize),
    Undecodable(Record),
}

impl Ran {
    fn original(&self, index: usize) -> Option<&Record> {
        match self.originals.get(index)? {
            Original::Decoded(i) => self.records.get(*i),
            Original::Undecodable(record) => Some(record),
        }
    }
}

/// The plugin of each stage of `chain`, in order.
pub(super) fn plugin_refs(chain: &Chain) -> Vec<PluginRef> {
    chain
        .stages()
        .iter()
        .map(|r| PluginRef {
            name: r.plugin().name().to_owned(),
            version: r.plugin().version().to_owned(),
        })
        .collect()
}

/// Runs one batch (at most the batch size) through the chain: one outcome per item.
/// Blocking: inside an async runtime, call it from a blocking thread.
pub(super) fn run_plugin(chain: &mut Chain, items: Vec<Decoded>) -> Ran {
    let mut originals = Vec::with_capacity(items.len());
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(items.len());
    let mut records = Vec::with_capacity(items.len());
    let mut positions = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Ok(record) => {
                positions.push(originals.len());
                originals.push(Original::Decoded(records.len()));
                records.push(record);
                outcomes.push(None);
            }
            Err(bad) => {
                originals.push(Original::Undecodable(bad.record));
                outcomes.push(Some(Outcome::Failed(Failure {
                    kind: FailureKind::Decode,
                    message: bad.reason,
                    attempts: 0,
                    stage: 0,
                })));
            }
        }
    }
    for (outcome, position) in chain.run(&records).into_iter().zip(positions) {
        outcomes[position] = Some(outcome);
    }
    let outcomes = outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                Outcome::Failed(Failure {
                    kind: FailureKind::Contract,
                    message: "no outcome was recorded (host bug)".to_owned(),
                    attempts: 0,
                    stage: 0,
                })
            })
        })
        .collect();
    Ran {
        records,
        originals,
        outcomes,
        plugins: plugin_refs(chain),
    }
}

/// A batch that cannot be settled item by item: the run stops.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliverError {
    /// The dead-letter queue refused an entry and the source cannot take the item back.
    #[error("the dead-letter queue refused an entry: {0}")]
    DeadLetterRefused(String),
    /// An item reached no verdict (a host bug).
    #[error("item {0} of the batch reached no verdict (host bug)")]
    NoVerdict(usize),
}

/// Delivers what the plugin produced: outputs to `router`, failures to `dlq`; returns one
/// verdict per item, in order.
///
/// `redelivers`: the source delivers again what is settled as `Retry`. Then transient
/// failures (an infrastructure error after the host's own attempts) and items whose DLQ
/// write failed are handed back; without it they go to the DLQ, and an item the DLQ
/// refuses is an error of the whole run.
pub(super) async fn deliver(
    mut ran: Ran,
    router: &Router,
    dlq: &Sink,
    retry: RetryPolicy,
    redelivers: bool,
) -> Result<Vec<Verdict>, DeliverError> {
    let outcomes = std::mem::take(&mut ran.outcomes);
    let plugins = &ran.plugins;
    let last_stage = plugins.len().saturating_sub(1);
    let outputs: Vec<(usize, &Output)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Outcome::Transformed(list) => Some(list.iter().map(move |out| (i, out))),
            _ => None,
        })
        .flatten()
        .collect();
    // The first refusal of each item decides its failure.
    let mut refused: Vec<Option<DeliveryFailure>> = vec![None; outcomes.len()];
    for failure in router.deliver(outputs, retry).await {
        if let Some(slot) = refused.get_mut(failure.item)
            && slot.is_none()
        {
            *slot = Some(failure);
        }
    }

    let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(outcomes.len());
    let mut dead_letters: Vec<(usize, Output, Failure)> = Vec::new();
    for (index, (outcome, refusal)) in outcomes.into_iter().zip(refused).enumerate() {
        let failure = match (outcome, refusal) {
            (Outcome::Transformed(outputs), None) => {
                verdicts.push(Some(Verdict::Delivered(outputs)));
                continue;
            }
            (Outcome::Dropped, _) => {
                verdicts.push(Some(Verdict::Dropped));
                continue;
            }
            (Outcome::Failed(failure), _) => failure,
            (Outcome::Transformed(_), Some(refusal)) => Failure {
                attempts: if refusal.kind == FailureKind::Delivery {
                    retry.max_attempts
                } else {
                    1
                },
                kind: refusal.kind,
                message: refusal.message,
                stage: last_stage,
            },
        };
        if redelivers && failure.kind == FailureKind::Infrastructure {
            verdicts.push(Some(Verdict::Retry(failure.message)));
            continue;
        }
        let plugin = &plugins[failure.stage.min(last_stage)];
        let Some(original) = ran.original(index) else {
            return Err(DeliverError::NoVerdict(index));
        };
        let entry = DlqEntry::new(original, &failure, plugin);
        match serde_json::to_vec(&entry) {
            Ok(json) => {
                let output = Output {
                    payload: json.into(),
                    ..Output::default()
                };
                dead_letters.push((index, output, failure));
                verdicts.push(None);
            }
            // Cannot happen for this plain type; if it did, the record must not be lost.
            Err(e) if redelivers => {
                tracing::error!(error = %e, "cannot encode a DLQ entry; handing the record back");
                verdicts.push(Some(Verdict::Retry(format!(
                    "cannot encode a DLQ entry: {e}"
                ))));
            }
            Err(e) => {
                return Err(DeliverError::DeadLetterRefused(format!(
                    "cannot encode a DLQ entry: {e}"
                )));
            }
        }
    }
    let refused = dlq
        .deliver(
            dead_letters.iter().map(|(i, o, _)| (*i, o)).collect(),
            retry,
        )
        .await;
    let mut refused_items = std::collections::BTreeMap::new();
    for failure in refused {
        tracing::error!(item = failure.item, reason = %failure.message, "the dead-letter queue refused an entry");
        if !redelivers {
            return Err(DeliverError::DeadLetterRefused(failure.message));
        }
        refused_items.insert(failure.item, failure.message);
    }
    for (index, _, failure) in dead_letters {
        verdicts[index] = Some(match refused_items.remove(&index) {
            Some(reason) => Verdict::Retry(format!("the dead-letter queue refused it: {reason}")),
            None => Verdict::DeadLettered(failure),
        });
    }
    verdicts
        .into_iter()
        .enumerate()
        .map(|(index, verdict)| verdict.ok_or(DeliverError::NoVerdict(index)))
        .collect()
}
