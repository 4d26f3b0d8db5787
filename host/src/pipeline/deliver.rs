//! One batch through the plugin chain, then to the sinks and the dead-letter queue, ending
//! in one [`Verdict`] per item. The plugin's outcome is read, never rewritten: a delivery
//! failure decides the verdict next to it.

use std::collections::{HashMap, HashSet};

use super::dead_letters::DeadLetters;
use crate::config::Budget;
use crate::dlq::PluginRef;
use crate::engine::Chain;
use crate::record::{Failure, FailureKind, Outcome, Output, Record, Verdict};
use crate::sinks::{DeliveryFailure, RetryPolicy, Router};
use crate::sources::Decoded;

/// The plugin's verdict on a batch, before anything is delivered.
pub(super) struct Ran {
    /// The records the chain ran over.
    records: Vec<Record>,
    /// One per item: where its original record is.
    originals: Vec<Original>,
    outcomes: Vec<Outcome>,
    /// The chain's plugins, in order; a failure's `stage` indexes it.
    pub(super) plugins: Vec<PluginRef>,
}

/// An item's original record: one the chain ran over, or the raw one that could not be
/// decoded.
enum Original {
    Decoded(usize),
    Undecodable(Record),
}

impl Ran {
    pub(super) fn original(&self, index: usize) -> Option<&Record> {
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
pub(super) fn run_plugin(chain: &mut Chain, items: Vec<Decoded>, budget: Budget) -> Ran {
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
                    kind: bad.kind,
                    message: bad.reason,
                    attempts: 0,
                    stage: 0,
                })));
            }
        }
    }
    for (outcome, position) in chain.run(&records, budget).into_iter().zip(positions) {
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

/// What the pipeline knows of a batch's items besides their records, by position.
#[derive(Default)]
pub(super) struct Places {
    /// Each item's ordering group (see `Item::group`).
    pub(super) groups: Vec<Option<String>>,
    /// Each item's outputs an earlier try delivered (see `Item::delivered`).
    pub(super) delivered: Vec<Vec<usize>>,
    /// Each item's source position (see `Item::identity`).
    pub(super) identities: Vec<Option<String>>,
}

/// A batch that cannot be settled item by item: the run stops.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliverError {
    /// The dead-letter queue refused an entry and the source cannot take the item back.
    #[error("the dead-letter queue refused an entry: {reason}")]
    DeadLetterRefused {
        /// Why.
        reason: String,
        /// The items of the batch (by position) whose outputs had all gone out.
        delivered: Vec<usize>,
    },
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
///
/// Ordering: once an item of a group (`groups[i]`) is handed back, every later item of
/// that group is handed back too, its outputs held back, in this batch and (through
/// `held`) in the later batches of the run: the source redelivers from the first one.
/// The DLQ entries of the plugin's failures are written before any output is sent, so a
/// refused entry still holds back the outputs of the later items of its group.
#[allow(clippy::too_many_arguments)]
pub(super) async fn deliver(
    mut ran: Ran,
    places: &Places,
    held: &mut HashSet<String>,
    router: &Router,
    dlq: &DeadLetters,
    retry: RetryPolicy,
    redelivers: bool,
) -> Result<Vec<Verdict>, DeliverError> {
    let (groups, skip) = (&places.groups, &places.delivered);
    let outcomes = std::mem::take(&mut ran.outcomes);
    let count = outcomes.len();
    let last_stage = ran.plugins.len().saturating_sub(1);
    let group = |index: usize| groups.get(index).and_then(Option::as_ref);
    let mut verdicts: Vec<Option<Verdict>> = vec![None; count];
    // Outputs that went out, by item: an earlier try's (reprocessing a DLQ entry), then
    // this one's. Every DLQ entry written for the item lists them.
    let mut delivered: HashMap<usize, Vec<usize>> = skip
        .iter()
        .enumerate()
        .filter(|(_, done)| !done.is_empty())
        .map(|(index, done)| (index, done.clone()))
        .collect();
    // Per group, the first position from which items are held back: 0 for a group held
    // since an earlier batch, else just after its first item handed back.
    let mut held_from: HashMap<String, usize> = held.iter().map(|g| (g.clone(), 0)).collect();
    let is_held = |held_from: &HashMap<String, usize>, index: usize| {
        group(index)
            .and_then(|g| held_from.get(g))
            .is_some_and(|&from| from <= index)
    };
    // Every item handed back holds back the later items of its group.
    let hold_retried = |verdicts: &[Option<Verdict>], held_from: &mut HashMap<String, usize>| {
        for (index, verdict) in verdicts.iter().enumerate() {
            if let (Some(Verdict::Retry(_)), Some(g)) = (verdict, group(index)) {
                let from = held_from.entry(g.clone()).or_insert(index + 1);
                *from = (*from).min(index + 1);
            }
        }
    };

    // 1. What the plugin decided alone: drops, retries (and the holds they make), the
    //    failures that go to the DLQ.
    let mut plugin_failures = Vec::new();
    let mut transformed = Vec::new();
    for (index, outcome) in outcomes.into_iter().enumerate() {
        if is_held(&held_from, index) {
            verdicts[index] = Some(held_back(group(index)));
            continue;
        }
        match outcome {
            Outcome::Dropped => verdicts[index] = Some(Verdict::Dropped),
            Outcome::Failed(failure) if redelivers && hands_back(failure.kind) => {
                if let Some(g) = group(index) {
                    held_from.entry(g.clone()).or_insert(index + 1);
                }
                verdicts[index] = Some(Verdict::Retry(failure.message));
            }
            Outcome::Failed(failure) => plugin_failures.push((index, failure)),
            Outcome::Transformed(outputs) => transformed.push((index, outputs)),
        }
    }
    dlq.write(
        &ran,
        &places.identities,
        plugin_failures,
        &delivered,
        retry,
        redelivers,
        &mut verdicts,
    )
    .await?;
    hold_retried(&verdicts, &mut held_from);

    // 2. The outputs of the items not held back, each item's outputs checked first
    //    (routing, size, format): an item with an output that cannot go sends none. The
    //    Firehose answer takes all of an item's outputs or none (`Router::admit`): one
    //    refused would leave the others listed as delivered though the item is answered
    //    `Dropped`, and reprocessing would send only the refused one.
    let mut sending = Vec::with_capacity(transformed.len());
    let mut delivery_failures = Vec::new();
    for (index, mut outputs) in transformed {
        if is_held(&held_from, index) {
            verdicts[index] = Some(held_back(group(index)));
            continue;
        }
        // Each output's identity: its record's, and its place among the record's outputs.
        let identity = match places.identities.get(index).and_then(Option::as_ref) {
            Some(position) => position.clone(),
            None => ran.original(index).map(identity).unwrap_or_default(),
        };
        for (position, output) in outputs.iter_mut().enumerate() {
            output.id = Some(format!("{identity}#{position}"));
        }
        let checked = match outputs.iter().find_map(|o| router.check(o).err()) {
            None => router.admit(&outputs),
            Some(refused) => Err(refused),
        };
        match checked {
            Ok(()) => sending.push((index, outputs)),
            Err((kind, message)) => delivery_failures.push((
                index,
                Failure {
                    kind,
                    message,
                    attempts: 1,
                    stage: last_stage,
                },
            )),
        }
    }
    // Each output is tagged with its own slot, so a refusal names the output, not only
    // its item. Outputs an earlier try delivered (`skip`) are not sent again.
    let mut slots: Vec<(usize, usize)> = Vec::new();
    let mut routed: Vec<(usize, &Output)> = Vec::new();
    for (index, outputs) in &sending {
        let done = skip.get(*index).map_or(&[][..], Vec::as_slice);
        for (position, output) in outputs.iter().enumerate() {
            if !done.contains(&position) {
                routed.push((slots.len(), output));
                slots.push((*index, position));
            }
        }
    }
    // The first refusal of each item decides its failure; its other outputs that went
    // out are listed in its DLQ entry, so reprocessing sends only the rest.
    let mut refused: Vec<Option<DeliveryFailure>> = vec![None; count];
    let mut failed_positions: HashMap<usize, Vec<usize>> = HashMap::new();
    for mut failure in router.deliver(routed, retry).await {
        let Some(&(index, position)) = slots.get(failure.item) else {
            continue;
        };
        failed_positions.entry(index).or_default().push(position);
        failure.item = index;
        if let Some(slot) = refused.get_mut(index)
            && slot.is_none()
        {
            *slot = Some(failure);
        }
    }

    // 3. Items a sink refused go to the DLQ; the rest are delivered. An item whose
    // delivery ran out of time with nothing sent goes back to a source that redelivers.
    for (index, outputs) in sending {
        let refusal = refused.get_mut(index).and_then(Option::take);
        let mut went = Vec::new();
        if refusal.is_some() {
            let failed = failed_positions.remove(&index).unwrap_or_default();
            went = (0..outputs.len()).filter(|p| !failed.contains(p)).collect();
            if !went.is_empty() {
                delivered.entry(index).or_default().extend(&went);
            }
        }
        let nothing_sent = went
            .iter()
            .all(|p| skip.get(index).is_some_and(|s| s.contains(p)));
        match refusal {
            None => verdicts[index] = Some(Verdict::Delivered(outputs)),
            Some(refusal)
                if redelivers && refusal.kind == FailureKind::Unfinished && nothing_sent =>
            {
                verdicts[index] = Some(Verdict::Retry(refusal.message));
            }
            Some(refusal) => delivery_failures.push((
                index,
                Failure {
                    attempts: if refusal.kind == FailureKind::Delivery {
                        retry.max_attempts
                    } else {
                        1
                    },
                    kind: refusal.kind,
                    message: refusal.message,
                    stage: last_stage,
                },
            )),
        }
    }
    for outputs in delivered.values_mut() {
        outputs.sort_unstable();
        outputs.dedup();
    }
    let written = dlq
        .write(
            &ran,
            &places.identities,
            delivery_failures,
            &delivered,
            retry,
            redelivers,
            &mut verdicts,
        )
        .await;
    if let Err(DeliverError::DeadLetterRefused { reason, .. }) = written {
        // The outputs of other items went out already: the caller must know which.
        let delivered = verdicts
            .iter()
            .enumerate()
            .filter(|(_, v)| matches!(v, Some(Verdict::Delivered(_))))
            .map(|(index, _)| index)
            .collect();
        return Err(DeliverError::DeadLetterRefused { reason, delivered });
    }
    written?;
    // A refusal here holds back the group's items of the next batches; this batch's
    // later items were already delivered.
    hold_retried(&verdicts, &mut held_from);
    held.extend(held_from.into_keys());
    verdicts
        .into_iter()
        .enumerate()
        .map(|(index, verdict)| verdict.ok_or(DeliverError::NoVerdict(index)))
        .collect()
}

/// The identity of a record without a source position: `record/` and a hash of its
/// attributes (they carry what the source knows of it: a Firehose record id, a direct
/// record's index), key and payload.
fn identity(record: &Record) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    for (name, value) in &record.attributes {
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update((value.len() as u64).to_le_bytes());
        hash.update(value.as_bytes());
    }
    if let Some(key) = &record.key {
        hash.update(key);
    }
    hash.update(b"\0");
    hash.update(&record.payload);
    format!("record/{}", hex::encode(&hash.finalize()[..20]))
}

/// Whether a failure of this kind goes back to a source that redelivers, rather than to
/// the DLQ: a transient error after the host's own attempts, a record the run's time
/// did not allow to finish, or one another run held meanwhile (its redelivery finds it
/// done, or takes it over).
fn hands_back(kind: FailureKind) -> bool {
    matches!(
        kind,
        FailureKind::Infrastructure | FailureKind::Unfinished | FailureKind::Held
    )
}

/// The verdict of an item held back behind an earlier one of its group.
fn held_back(group: Option<&String>) -> Verdict {
    Verdict::Retry(format!(
        "held back: an earlier item of its group {:?} is to be retried",
        group.map_or("", String::as_str)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::{Emit, FileSink, ResponseSink, Sink, Target};

    fn output(bytes: usize) -> Output {
        Output {
            payload: vec![b'x'; bytes].into(),
            ..Output::default()
        }
    }

    #[tokio::test]
    async fn the_firehose_answer_takes_all_of_a_records_outputs_or_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dlq.jsonl");
        let dlq = DeadLetters {
            sink: Sink::File(
                FileSink::create(&Target::File(path.clone()), Emit::Payload).expect("DLQ file"),
            ),
            overflow: None,
        };
        // Room for one output of 600 bytes (932 with base64 and framing), not two.
        let answer = Router::only(Sink::Response(ResponseSink::with_limit(1500)));
        let ran = Ran {
            records: vec![Record::new("r0"), Record::new("r1")],
            originals: vec![Original::Decoded(0), Original::Decoded(1)],
            outcomes: vec![
                // Its first output fits, its second does not: neither is answered.
                Outcome::Transformed(vec![output(600), output(2000)]),
                // And the first took no room from this one.
                Outcome::Transformed(vec![output(600)]),
            ],
            plugins: vec![PluginRef {
                name: "p".into(),
                version: "1".into(),
            }],
        };
        let places = Places {
            groups: vec![None, None],
            delivered: vec![Vec::new(), Vec::new()],
            identities: vec![None, None],
        };
        let retry = RetryPolicy {
            max_attempts: 1,
            base_delay: std::time::Duration::ZERO,
            budget: Budget::unbounded(),
        };
        let verdicts = deliver(
            ran,
            &places,
            &mut HashSet::new(),
            &answer,
            &dlq,
            retry,
            false,
        )
        .await
        .expect("verdicts");
        assert!(
            matches!(verdicts[0], Verdict::DeadLettered(_)),
            "{:?}",
            verdicts[0]
        );
        assert!(
            matches!(&verdicts[1], Verdict::Delivered(outputs) if outputs.len() == 1),
            "{:?}",
            verdicts[1]
        );
        dlq.sink.finish().expect("DLQ file");
        let text = std::fs::read_to_string(&path).expect("DLQ entries");
        let entry: serde_json::Value = serde_json::from_str(text.trim()).expect("one entry");
        assert_eq!(entry["error"]["kind"], "delivery");
        // None of its outputs is in the answer: reprocessing it sends them all.
        assert!(entry.get("delivered").is_none(), "{entry}");
    }

    #[tokio::test]
    async fn a_record_another_run_held_goes_back_to_a_source_that_redelivers_else_to_the_dlq() {
        let dir = tempfile::tempdir().expect("tempdir");
        let answer = Router::only(Sink::Response(ResponseSink::with_limit(1500)));
        let retry = RetryPolicy {
            max_attempts: 1,
            base_delay: std::time::Duration::ZERO,
            budget: Budget::unbounded(),
        };
        for redelivers in [true, false] {
            let path = dir.path().join(format!("dlq-{redelivers}.jsonl"));
            let dlq = DeadLetters {
                sink: Sink::File(
                    FileSink::create(&Target::File(path.clone()), Emit::Payload).expect("DLQ file"),
                ),
                overflow: None,
            };
            // As `Claims::admit` lets a record in that another run still holds.
            let ran = Ran {
                records: Vec::new(),
                originals: vec![Original::Undecodable(Record::new("r0"))],
                outcomes: vec![Outcome::Failed(Failure {
                    kind: FailureKind::Held,
                    message: "another run is processing this record".into(),
                    attempts: 0,
                    stage: 0,
                })],
                plugins: vec![PluginRef {
                    name: "p".into(),
                    version: "1".into(),
                }],
            };
            let places = Places {
                groups: vec![None],
                delivered: vec![Vec::new()],
                identities: vec![Some("file/in.txt@4-1#1".into())],
            };
            let verdicts = deliver(
                ran,
                &places,
                &mut HashSet::new(),
                &answer,
                &dlq,
                retry,
                redelivers,
            )
            .await
            .expect("verdicts");
            dlq.sink.finish().expect("DLQ file");
            if redelivers {
                assert!(
                    matches!(verdicts[0], Verdict::Retry(_)),
                    "{:?}",
                    verdicts[0]
                );
                continue;
            }
            assert!(
                matches!(verdicts[0], Verdict::DeadLettered(_)),
                "{:?}",
                verdicts[0]
            );
            // The entry names the record's identity: reprocessing claims it by that.
            let text = std::fs::read_to_string(&path).expect("DLQ entries");
            let entry: serde_json::Value = serde_json::from_str(text.trim()).expect("one entry");
            assert_eq!(entry["error"]["kind"], "held");
            assert_eq!(entry["identity"], "file/in.txt@4-1#1");
        }
    }
}
