//! One batch's outcomes to the sinks and the dead-letter queue, ending in one [`Verdict`]
//! per entry. The plugin's outcome is read, never rewritten: a delivery failure decides
//! the verdict next to it. Delivery goes in named phases ([`Delivery`]): what the plugin
//! decided alone, its failures to the DLQ, the outputs checked, sent, and what the
//! sinks refused to the DLQ.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::batch::Entry;
use super::dead_letters::{DeadLetters, Failed, Refused};
use crate::dlq::PluginRef;
use crate::record::{Failure, FailureKind, Outcome, Output, Record, Verdict};
use crate::schemas::{Encoder, Missing};
use crate::sinks::{DeliveryFailure, RetryPolicy, Router};

/// A batch that cannot be settled item by item: the run stops.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliverError {
    /// The dead-letter queue refused an entry and the source cannot take the item back.
    /// The batch's entries delivered meanwhile hold `Delivered` verdicts.
    #[error("the dead-letter queue refused an entry: {reason}")]
    DeadLetterRefused {
        /// Why.
        reason: String,
    },
    /// An item reached no verdict (a host bug).
    #[error("item {0} of the batch reached no verdict (host bug)")]
    NoVerdict(usize),
}

impl From<Refused> for DeliverError {
    fn from(Refused(reason): Refused) -> Self {
        Self::DeadLetterRefused { reason }
    }
}

/// Where a batch's outputs and failures go, and how its items are settled.
#[derive(Clone, Copy)]
pub(super) struct Target<'t> {
    pub(super) router: &'t Router,
    pub(super) dlq: &'t DeadLetters,
    pub(super) retry: RetryPolicy,
    /// The source delivers again what is settled as `Retry`. Then transient failures (an
    /// infrastructure error after the host's own attempts) and items whose DLQ write
    /// failed are handed back; without it they go to the DLQ, and an item the DLQ
    /// refuses is an error of the whole run.
    pub(super) redelivers: bool,
    /// The schemas the last stage's manifest declares for its outputs.
    pub(super) schemas: Option<&'t crate::schemas::OutputSchemas>,
}

/// Delivers what the plugin produced for the open entries of a batch: outputs to the
/// router, failures to the DLQ; every entry ends with its verdict.
///
/// Ordering: once an item of a group is handed back, every later item of that group is
/// handed back too, its outputs held back, in this batch and (through `held`) in the
/// later batches of the run: the source redelivers from the first one. The DLQ entries
/// of the plugin's failures are written before any output is sent, so a refused entry
/// still holds back the outputs of the later items of its group.
pub(super) async fn deliver(
    entries: &mut [Entry],
    plugins: &[PluginRef],
    held: &mut HashSet<String>,
    target: Target<'_>,
) -> Result<(), DeliverError> {
    let mut delivery = Delivery {
        // Per group, the first position from which items are held back: 0 for a group
        // held since an earlier batch, else just after its first item handed back.
        held_from: held.iter().map(|g| (g.clone(), 0)).collect(),
        entries,
        plugins,
        target,
    };
    let (failures, transformed) = delivery.decide_alone();
    delivery.dead_letter(failures).await?;
    let encoders = delivery.encoders(&transformed).await;
    let (sending, mut failures) = delivery.check_outputs(transformed, &encoders);
    let refusals = delivery.send(&sending).await;
    failures.extend(delivery.settle_sent(sending, refusals));
    delivery.dead_letter(failures).await?;
    // A refusal here holds back the group's items of the next batches; this batch's
    // later items were already delivered.
    held.extend(delivery.held_from.into_keys());
    match delivery.entries.iter().position(|e| e.verdict.is_none()) {
        Some(index) => Err(DeliverError::NoVerdict(index)),
        None => Ok(()),
    }
}

/// One batch being delivered.
struct Delivery<'b> {
    entries: &'b mut [Entry],
    plugins: &'b [PluginRef],
    target: Target<'b>,
    held_from: HashMap<String, usize>,
}

/// The outputs of an entry about to be sent: its position in the batch, its outputs.
type Sending = (usize, Vec<Output>);

impl Delivery<'_> {
    /// Whether the entry at `index` is held back behind an earlier one of its group.
    fn is_held(&self, index: usize) -> bool {
        self.entries[index]
            .group
            .as_ref()
            .and_then(|g| self.held_from.get(g))
            .is_some_and(|&from| from <= index)
    }

    /// Holds back the later items of the group of every entry handed back.
    fn hold_retried(&mut self) {
        for (index, entry) in self.entries.iter().enumerate() {
            if let (Some(Verdict::Retry(_)), Some(g)) = (&entry.verdict, &entry.group) {
                let from = self.held_from.entry(g.clone()).or_insert(index + 1);
                *from = (*from).min(index + 1);
            }
        }
    }

    /// Settles the entry at `index` as held back behind an earlier one of its group.
    fn hold(&mut self, index: usize) {
        let entry = &mut self.entries[index];
        entry.verdict = Some(held_back(entry.group.as_ref()));
    }

    /// Phase 1, what the plugin decided alone: drops, hand-backs (and the holds they
    /// make). Returns the failures that go to the DLQ and the outputs to deliver.
    fn decide_alone(&mut self) -> (Vec<(usize, Failure)>, Vec<Sending>) {
        let (mut failures, mut transformed) = (Vec::new(), Vec::new());
        for index in 0..self.entries.len() {
            if !self.entries[index].open() {
                continue;
            }
            if self.is_held(index) {
                self.hold(index);
                continue;
            }
            let entry = &mut self.entries[index];
            let Some(outcome) = entry.outcome.take() else {
                continue;
            };
            match outcome {
                Outcome::Dropped => entry.verdict = Some(Verdict::Dropped),
                Outcome::Failed(failure) if self.target.redelivers && hands_back(failure.kind) => {
                    if let Some(g) = &entry.group {
                        self.held_from.entry(g.clone()).or_insert(index + 1);
                    }
                    entry.verdict = Some(Verdict::Retry(failure.message));
                }
                Outcome::Failed(failure) => failures.push((index, failure)),
                Outcome::Transformed(outputs) => transformed.push((index, outputs)),
            }
        }
        (failures, transformed)
    }

    /// Phases 2 and 6: `failures` to the DLQ, then the holds that its hand-backs make.
    async fn dead_letter(&mut self, failures: Vec<(usize, Failure)>) -> Result<(), DeliverError> {
        let failed = Failed {
            entries: &mut *self.entries,
            failures,
            plugins: self.plugins,
            retry: self.target.retry,
            redelivers: self.target.redelivers,
        };
        self.target.dlq.write(failed).await?;
        self.hold_retried();
        Ok(())
    }

    /// Phase 3a: the registry schemas the framed sinks these outputs go to write with,
    /// by destination (resolved once per process and declared schema).
    async fn encoders(&self, transformed: &[Sending]) -> Encoders {
        let router = self.target.router;
        let mut destinations: Vec<&str> = transformed
            .iter()
            .flat_map(|(_, outputs)| outputs)
            .map(|o| o.destination.as_deref().unwrap_or("default"))
            .filter(|d| router.framing(d).is_some())
            .collect();
        destinations.sort_unstable();
        destinations.dedup();
        let ends =
            (self.target.retry.budget.ends()).unwrap_or_else(|| Instant::now() + REGISTRY_WAIT);
        let mut encoders = HashMap::new();
        for destination in destinations {
            let Some(writer) = router.framing(destination) else {
                continue;
            };
            let declared = (self.target.schemas)
                .and_then(|s| s.declared(destination))
                .map(|(declared, _)| declared);
            let encoder = writer.encoder(declared, ends).await;
            if let Err(missing) = &encoder {
                tracing::warn!(destination, reason = ?missing, "no schema to write the sink's framing with");
            }
            encoders.insert(destination.to_owned(), encoder);
        }
        encoders
    }

    /// Phase 3: each entry's outputs checked (routing, size, format) and named; an entry
    /// with an output that cannot go sends none. The Firehose answer takes all of an
    /// entry's outputs or none (`Router::admit`): one refused would leave the others
    /// listed as delivered though the item is answered `Dropped`, and reprocessing would
    /// send only the refused one. Returns what goes, and the failures of what cannot.
    fn check_outputs(
        &mut self,
        transformed: Vec<Sending>,
        encoders: &Encoders,
    ) -> (Vec<Sending>, Vec<(usize, Failure)>) {
        let last_stage = self.plugins.len().saturating_sub(1);
        let router = self.target.router;
        let mut sending = Vec::with_capacity(transformed.len());
        let mut failures = Vec::new();
        for (index, mut outputs) in transformed {
            if self.is_held(index) {
                self.hold(index);
                continue;
            }
            // Each output's identity: its record's, and its place among its outputs.
            let entry = &self.entries[index];
            let hashed;
            let identity = match &entry.position {
                Some(position) => position.as_str(),
                None => {
                    hashed = entry.original.as_ref().map(identity).unwrap_or_default();
                    hashed.as_str()
                }
            };
            for (position, output) in outputs.iter_mut().enumerate() {
                output.id = Some(output_id(identity, position));
                // The schema an output is written with is the host's to say: a
                // plugin's (or one copied from its input) would travel as the output's.
                output
                    .attributes
                    .retain(|(name, _)| !HOST_SCHEMA_ATTRIBUTES.contains(&name.as_str()));
            }
            // The declared schema first, then the sink's framing: the size limits are
            // the framed payload's.
            let checked = self
                .check_schemas(&mut outputs)
                .and_then(|()| frame(&mut outputs, encoders))
                .and_then(
                    |()| match outputs.iter().find_map(|o| router.check(o).err()) {
                        None => router.admit(&outputs),
                        Some(refused) => Err(refused),
                    },
                );
            match checked {
                Ok(()) => sending.push((index, outputs)),
                // A registry that could not answer: the record goes back to a source
                // that redelivers, and the later ones of its group are held behind it.
                Err((kind, message)) if self.target.redelivers && hands_back(kind) => {
                    let entry = &mut self.entries[index];
                    if let Some(g) = &entry.group {
                        self.held_from.entry(g.clone()).or_insert(index + 1);
                    }
                    entry.verdict = Some(Verdict::Retry(message));
                }
                Err((kind, message)) => failures.push((
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
        (sending, failures)
    }

    /// Each output against its destination's declared schema, tagged with the schema's
    /// fingerprint; the first that does not fit refuses its record's (`schema`).
    fn check_schemas(&self, outputs: &mut [Output]) -> Result<(), (FailureKind, String)> {
        let Some(schemas) = self.target.schemas else {
            return Ok(());
        };
        for output in outputs {
            match schemas.check(output.destination.as_deref(), &output.payload) {
                Ok(None) => {}
                Ok(Some(fingerprint)) => output
                    .attributes
                    .push(("schema-fingerprint".to_owned(), fingerprint.to_owned())),
                Err(why) => return Err((FailureKind::Schema, why)),
            }
        }
        Ok(())
    }

    /// Phase 4: the outputs to the sinks, but those an earlier try delivered. Returns,
    /// by entry, its first refusal and the places of its outputs refused.
    async fn send(&self, sending: &[Sending]) -> HashMap<usize, (DeliveryFailure, Vec<usize>)> {
        // Each output is tagged with its own slot, so a refusal names the output, not
        // only its item.
        let mut slots: Vec<(usize, usize)> = Vec::new();
        let mut routed: Vec<(usize, &Output)> = Vec::new();
        for (index, outputs) in sending {
            let before = &self.entries[*index].delivered_before;
            for (position, output) in outputs.iter().enumerate() {
                if !before.contains(&position) {
                    routed.push((slots.len(), output));
                    slots.push((*index, position));
                }
            }
        }
        let mut refusals: HashMap<usize, (DeliveryFailure, Vec<usize>)> = HashMap::new();
        let retry = self.target.retry;
        let delivered = (self.target.router).deliver_declared(routed, retry, self.target.schemas);
        for mut failure in delivered.await {
            let Some(&(index, position)) = slots.get(failure.item) else {
                continue;
            };
            failure.item = index;
            // The first refusal of each entry decides its failure.
            refusals
                .entry(index)
                .or_insert_with(|| (failure, Vec::new()))
                .1
                .push(position);
        }
        refusals
    }

    /// Phase 5: entries a sink refused go to the DLQ (returned), listing the outputs of
    /// theirs that went out, so reprocessing sends only the rest; the others are
    /// delivered. An entry whose delivery ran out of time with nothing sent goes back to
    /// a source that redelivers.
    fn settle_sent(
        &mut self,
        sending: Vec<Sending>,
        mut refusals: HashMap<usize, (DeliveryFailure, Vec<usize>)>,
    ) -> Vec<(usize, Failure)> {
        let last_stage = self.plugins.len().saturating_sub(1);
        let (retry, redelivers) = (self.target.retry, self.target.redelivers);
        let mut failures = Vec::new();
        for (index, outputs) in sending {
            let entry = &mut self.entries[index];
            let Some((refusal, failed)) = refusals.remove(&index) else {
                entry.verdict = Some(Verdict::Delivered(outputs));
                continue;
            };
            let went: Vec<usize> = (0..outputs.len()).filter(|p| !failed.contains(p)).collect();
            let nothing_sent = went.iter().all(|p| entry.delivered_before.contains(p));
            entry.delivered.extend(&went);
            entry.delivered.sort_unstable();
            entry.delivered.dedup();
            if redelivers && refusal.kind == FailureKind::Unfinished && nothing_sent {
                entry.verdict = Some(Verdict::Retry(refusal.message));
                continue;
            }
            failures.push((
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
            ));
        }
        failures
    }
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
    // Into a buffer, and no `format!`: `hex::encode` goes a char at a time, and both were
    // a measured share of a 1,000-record Firehose invocation, whose every record is
    // named this way.
    let mut hex = [0u8; 40];
    let written = hex::encode_to_slice(&hash.finalize()[..20], &mut hex);
    let hex = written.ok().and_then(|()| std::str::from_utf8(&hex).ok());
    let mut id = String::with_capacity(RECORD_PREFIX.len() + hex.map_or(0, str::len));
    id.push_str(RECORD_PREFIX);
    id.push_str(hex.unwrap_or_default());
    id
}

/// What the identity of a record without a source position starts with.
const RECORD_PREFIX: &str = "record/";

/// `IDENTITY#POSITION`, an output's identity: built without `format!`, which took a
/// measured share of a 1,000-record invocation's main thread (one per output).
fn output_id(identity: &str, position: usize) -> String {
    use std::fmt::Write as _;
    let mut id = String::with_capacity(identity.len() + 4);
    id.push_str(identity);
    id.push('#');
    match u8::try_from(position) {
        // Nearly every output is its record's first few.
        Ok(digit @ 0..=9) => id.push(char::from(b'0' + digit)),
        _ => {
            let _ = write!(id, "{position}");
        }
    }
    id
}

/// What a framed sink's registry schema came to, by destination.
type Encoders = HashMap<String, Result<Arc<Encoder>, Missing>>;

/// The attributes that say which schema an output is written with: set by the host
/// alone (the SQS sink sends them, the S3 sink's object metadata carries the
/// fingerprint).
const HOST_SCHEMA_ATTRIBUTES: [&str; 2] = ["schema-id", "schema-fingerprint"];

/// How long resolving a framed sink's schema may take outside an invocation.
const REGISTRY_WAIT: Duration = Duration::from_secs(30);

/// Each output bound for a framed sink written with its registry schema, tagged with
/// the schema's `schema-id` and `schema-fingerprint`; the first that cannot be refuses
/// its record's (`schema`; `unfinished` when the registry could not be asked).
fn frame(outputs: &mut [Output], encoders: &Encoders) -> Result<(), (FailureKind, String)> {
    for output in outputs {
        let destination = output.destination.as_deref().unwrap_or("default");
        let Some(encoder) = encoders.get(destination) else {
            continue;
        };
        let encoder = encoder.as_ref().map_err(Missing::failure)?;
        let framed = encoder.encode(&output.payload).map_err(|why| {
            (
                FailureKind::Schema,
                format!("an output to `{destination}` {why}"),
            )
        })?;
        output.payload = framed.into();
        output
            .attributes
            .retain(|(name, _)| !HOST_SCHEMA_ATTRIBUTES.contains(&name.as_str()));
        output
            .attributes
            .push(("schema-id".to_owned(), encoder.id.clone()));
        output
            .attributes
            .push(("schema-fingerprint".to_owned(), encoder.fingerprint.clone()));
    }
    Ok(())
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
    use std::time::Duration;

    use super::*;
    use crate::limits::Budget;
    use crate::sinks::{Answer, Emit, FileSink, ResponseSink, ScriptedSink, Sink, Target as File};
    use crate::sources::Item;

    fn output(bytes: usize) -> Output {
        Output {
            payload: vec![b'x'; bytes].into(),
            ..Output::default()
        }
    }

    /// The identities are what they were when `format!` wrote them: a DLQ entry or an
    /// SQS message of an earlier version names the same output.
    #[test]
    fn output_identities_are_written_as_before() {
        for position in [0, 1, 9, 10, 11, 99, 255, 256, 1000, usize::MAX] {
            let id = output_id("kinesis/s/shard-1/42", position);
            assert_eq!(id, format!("kinesis/s/shard-1/42#{position}"));
        }
        // A record without attributes or key hashes as `\0` and its payload.
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(b"\0payload");
        let expected = format!("record/{}", hex::encode(&digest[..20]));
        assert_eq!(identity(&Record::new(&b"payload"[..])), expected);
    }

    /// An output of `text`, keyed by `key`.
    fn keyed(text: &str, key: &str) -> Output {
        Output {
            payload: text.to_owned().into_bytes().into(),
            key: Some(key.to_owned().into_bytes().into()),
            ..Output::default()
        }
    }

    /// An entry of record `text` in `group`, at source position `text`, whose plugin
    /// outcome is `outcome`.
    fn entry(text: &str, group: Option<&str>, outcome: Outcome) -> Entry {
        let item = Item {
            id: (),
            group: group.map(str::to_owned),
            position: Some(format!("test/{text}")),
            first_position: None,
            delivered: Vec::new(),
            decoded: Ok(Record::new(text.to_owned())),
        };
        let (_, mut entry) = Entry::new(item);
        entry.original = Some(Record::new(text.to_owned()));
        entry.outcome = Some(outcome);
        entry
    }

    fn failed(kind: FailureKind) -> Outcome {
        Outcome::Failed(Failure {
            kind,
            message: format!("{kind} in the test"),
            attempts: 1,
            stage: 0,
        })
    }

    fn plugins() -> Vec<PluginRef> {
        vec![PluginRef {
            name: "p".into(),
            version: "1".into(),
        }]
    }

    fn retry(max_attempts: u32, budget: Budget) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::ZERO,
            budget,
        }
    }

    fn dead_letters(sink: Sink) -> DeadLetters {
        DeadLetters {
            sink,
            overflow: None,
        }
    }

    /// Delivers `entries` to `router` and `dlq` (one attempt per call unless `retry`
    /// says otherwise); every entry's verdict.
    async fn run(
        entries: &mut [Entry],
        router: &Router,
        dlq: &DeadLetters,
        retry: RetryPolicy,
        redelivers: bool,
    ) -> Result<Vec<Verdict>, DeliverError> {
        let target = Target {
            router,
            dlq,
            retry,
            redelivers,
            schemas: None,
        };
        deliver(entries, &plugins(), &mut HashSet::new(), target).await?;
        Ok(entries
            .iter_mut()
            .filter_map(|e| e.verdict.take())
            .collect())
    }

    /// The DLQ entries a scripted DLQ took, parsed.
    fn dlq_entries(dlq: &ScriptedSink) -> Vec<serde_json::Value> {
        dlq.taken()
            .iter()
            .map(|e| serde_json::from_str(e).expect("a DLQ entry is JSON"))
            .collect()
    }

    #[tokio::test]
    async fn the_firehose_answer_takes_all_of_a_records_outputs_or_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dlq.jsonl");
        let dlq = dead_letters(Sink::File(
            FileSink::create(&File::File(path.clone()), Emit::Payload).expect("DLQ file"),
        ));
        // Room for one output of 600 bytes (932 with base64 and framing), not two.
        let answer = Router::only(Sink::Response(ResponseSink::with_limit(1500)));
        let mut entries = [
            // Its first output fits, its second does not: neither is answered.
            entry(
                "r0",
                None,
                Outcome::Transformed(vec![output(600), output(2000)]),
            ),
            // And the first took no room from this one.
            entry("r1", None, Outcome::Transformed(vec![output(600)])),
        ];
        let verdicts = run(
            &mut entries,
            &answer,
            &dlq,
            retry(1, Budget::unbounded()),
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
        let answer = Router::only(Sink::Response(ResponseSink::with_limit(1500)));
        for redelivers in [true, false] {
            let queue = ScriptedSink::new(10, []);
            let dlq = dead_letters(Sink::Scripted(queue.clone()));
            // As `Claims::admit` lets a record in that another run still holds.
            let mut entries = [entry("r0", None, failed(FailureKind::Held))];
            let verdicts = run(
                &mut entries,
                &answer,
                &dlq,
                retry(1, Budget::unbounded()),
                redelivers,
            )
            .await
            .expect("verdicts");
            if redelivers {
                assert!(
                    matches!(verdicts[0], Verdict::Retry(_)),
                    "{:?}",
                    verdicts[0]
                );
                assert!(queue.calls().is_empty());
                continue;
            }
            assert!(
                matches!(verdicts[0], Verdict::DeadLettered(_)),
                "{:?}",
                verdicts[0]
            );
            // The entry names the record's identity: reprocessing claims it by that.
            let entries = dlq_entries(&queue);
            assert_eq!(entries[0]["error"]["kind"], "held");
            assert_eq!(entries[0]["identity"], "test/r0");
        }
    }

    /// A framed sink whose registry cannot answer: the records bound for it go back to
    /// a source that redelivers (and hold their group's later ones), else to the DLQ as
    /// `unfinished`; nothing is sent.
    #[tokio::test]
    async fn a_registry_that_cannot_answer_hands_back_records_bound_for_a_framed_sink() {
        let aws = crate::aws::AwsClients::unconfigured();
        // Nothing listens on port 9 of the loopback: refused at once.
        let registries =
            crate::schemas::Registries::new(aws.glue, Some("http://127.0.0.1:9"), None)
                .expect("registries");
        let target: crate::schemas::SchemaTarget = "confluent://out-value".parse().expect("target");
        for redelivers in [true, false] {
            let sink = ScriptedSink::new(10, []);
            let writer =
                crate::schemas::FramedWriter::new(target.clone(), registries.clone(), false)
                    .expect("writer");
            let router = Router::new(std::collections::BTreeMap::from([(
                "default".to_owned(),
                Sink::Scripted(sink.clone()),
            )]))
            .with_framing("default", writer);
            let queue = ScriptedSink::new(10, []);
            let dlq = dead_letters(Sink::Scripted(queue.clone()));
            let mut entries = [
                entry(
                    "a0",
                    Some("a"),
                    Outcome::Transformed(vec![keyed("{}", "a")]),
                ),
                entry(
                    "a1",
                    Some("a"),
                    Outcome::Transformed(vec![keyed("{}", "a")]),
                ),
            ];
            let verdicts = run(
                &mut entries,
                &router,
                &dlq,
                retry(1, Budget::unbounded()),
                redelivers,
            )
            .await
            .expect("verdicts");
            assert!(sink.calls().is_empty(), "nothing sent");
            if redelivers {
                assert!(
                    matches!(&verdicts[0], Verdict::Retry(why) if why.contains("Connection refused")),
                    "{verdicts:?}"
                );
                assert!(
                    matches!(&verdicts[1], Verdict::Retry(why) if why.starts_with("held back")),
                    "{verdicts:?}"
                );
                assert!(queue.calls().is_empty());
            } else {
                assert!(
                    verdicts
                        .iter()
                        .all(|v| matches!(v, Verdict::DeadLettered(_))),
                    "{verdicts:?}"
                );
                let kinds: Vec<_> = dlq_entries(&queue)
                    .iter()
                    .map(|e| e["error"]["kind"].clone())
                    .collect();
                assert_eq!(kinds, ["unfinished", "unfinished"]);
            }
        }
    }

    #[tokio::test]
    async fn an_item_handed_back_holds_back_the_later_items_of_its_group_only() {
        let sink = ScriptedSink::new(10, []);
        let router = Router::only(Sink::Scripted(sink.clone()));
        let dlq = dead_letters(Sink::Scripted(ScriptedSink::new(10, [])));
        let echo = |text: &str| Outcome::Transformed(vec![keyed(text, "k")]);
        let mut entries = [
            entry("a0", Some("a"), echo("a0")),
            entry("a1", Some("a"), failed(FailureKind::Infrastructure)),
            entry("a2", Some("a"), echo("a2")),
            entry("b0", Some("b"), echo("b0")),
            entry("a3", Some("a"), failed(FailureKind::Domain)),
        ];
        let verdicts = run(
            &mut entries,
            &router,
            &dlq,
            retry(1, Budget::unbounded()),
            true,
        )
        .await
        .expect("verdicts");
        let kinds: Vec<&str> = verdicts
            .iter()
            .map(|v| match v {
                Verdict::Delivered(_) => "delivered",
                Verdict::Retry(_) => "retry",
                _ => "other",
            })
            .collect();
        // a2 and a3 wait behind a1 (a3's own failure is not dead-lettered: it comes
        // again after a1); b carries on.
        assert_eq!(kinds, ["delivered", "retry", "retry", "delivered", "retry"]);
        assert_eq!(sink.taken(), ["a0", "b0"]);
    }

    #[tokio::test]
    async fn a_sink_call_cut_by_the_deadline_hands_back_what_it_did_not_take() {
        // The sink stalls past the run's hard deadline: the call is cut there, and its
        // records, nothing of them taken, go back to a source that redelivers (not to
        // the DLQ as undeliverable).
        let sink = ScriptedSink::new(10, [Answer::Stall(Duration::from_secs(30))]);
        let router = Router::only(Sink::Scripted(sink.clone()));
        let queue = ScriptedSink::new(10, []);
        let dlq = dead_letters(Sink::Scripted(queue.clone()));
        let now = Instant::now();
        let budget = Budget::until(now + Duration::from_millis(50))
            .with_hard_deadline(now + Duration::from_millis(200));
        let mut entries = [
            entry(
                "a0",
                Some("a"),
                Outcome::Transformed(vec![keyed("a0", "k")]),
            ),
            entry(
                "a1",
                Some("a"),
                Outcome::Transformed(vec![keyed("a1", "k")]),
            ),
        ];
        let verdicts = run(&mut entries, &router, &dlq, retry(3, budget), true)
            .await
            .expect("verdicts");
        assert!(
            verdicts.iter().all(|v| matches!(v, Verdict::Retry(_))),
            "{verdicts:?}"
        );
        assert!(
            now.elapsed() < Duration::from_secs(30),
            "the call was not cut"
        );
        assert!(sink.taken().is_empty());
        assert!(queue.calls().is_empty(), "nothing dead-lettered");
    }

    #[tokio::test]
    async fn a_record_partly_taken_is_dead_lettered_listing_what_went() {
        // Two outputs; the sink refuses the second every time. The record goes to the
        // DLQ, its entry listing output 0 as delivered, so reprocessing sends only 1.
        let sink = ScriptedSink::new(10, [Answer::Refuse(vec![1]), Answer::Refuse(vec![0])]);
        let router = Router::only(Sink::Scripted(sink.clone()));
        let queue = ScriptedSink::new(10, []);
        let dlq = dead_letters(Sink::Scripted(queue.clone()));
        let mut entries = [entry(
            "r0",
            None,
            Outcome::Transformed(vec![keyed("first", "a"), keyed("second", "b")]),
        )];
        let verdicts = run(
            &mut entries,
            &router,
            &dlq,
            retry(2, Budget::unbounded()),
            true,
        )
        .await
        .expect("verdicts");
        assert!(
            matches!(verdicts[0], Verdict::DeadLettered(_)),
            "{verdicts:?}"
        );
        assert_eq!(sink.taken(), ["first"]);
        let entries = dlq_entries(&queue);
        assert_eq!(entries[0]["error"]["kind"], "delivery");
        assert_eq!(entries[0]["delivered"], serde_json::json!([0]));
    }

    #[tokio::test]
    async fn entries_the_dlq_took_before_it_refused_another_stay_dead_lettered() {
        // A run that stops on the refusal marks what the queue took done (a rerun does
        // not write those entries twice).
        let router = Router::only(Sink::Scripted(ScriptedSink::new(10, [])));
        let queue = ScriptedSink::new(10, [Answer::Refuse(vec![1])]);
        let dlq = dead_letters(Sink::Scripted(queue.clone()));
        let mut entries = [
            entry("bad0", None, failed(FailureKind::Domain)),
            entry("bad1", None, failed(FailureKind::Domain)),
        ];
        let target = Target {
            router: &router,
            dlq: &dlq,
            retry: retry(1, Budget::unbounded()),
            redelivers: false,
            schemas: None,
        };
        let result = deliver(&mut entries, &plugins(), &mut HashSet::new(), target).await;
        assert!(
            matches!(result, Err(DeliverError::DeadLetterRefused { .. })),
            "{result:?}"
        );
        assert!(matches!(entries[0].verdict, Some(Verdict::DeadLettered(_))));
        assert!(entries[1].verdict.is_none());
        assert_eq!(dlq_entries(&queue).len(), 1);
    }

    #[tokio::test]
    async fn a_dlq_that_refuses_hands_back_where_the_source_redelivers_else_stops_the_run() {
        let router = Router::only(Sink::Scripted(ScriptedSink::new(10, [])));
        for redelivers in [true, false] {
            let queue = ScriptedSink::new(10, [Answer::Refuse(vec![0])]);
            let dlq = dead_letters(Sink::Scripted(queue));
            let mut entries = [
                entry("bad", Some("g"), failed(FailureKind::Domain)),
                entry(
                    "next",
                    Some("g"),
                    Outcome::Transformed(vec![keyed("next", "k")]),
                ),
            ];
            let verdicts = run(
                &mut entries,
                &router,
                &dlq,
                retry(1, Budget::unbounded()),
                redelivers,
            )
            .await;
            if redelivers {
                // Handed back, and its group's later item with it (the DLQ is written
                // before any output is sent).
                let verdicts = verdicts.expect("verdicts");
                assert!(
                    verdicts.iter().all(|v| matches!(v, Verdict::Retry(_))),
                    "{verdicts:?}"
                );
            } else {
                assert!(
                    matches!(verdicts, Err(DeliverError::DeadLetterRefused { .. })),
                    "{verdicts:?}"
                );
            }
        }
    }
}
