//! A batch as the core carries it: one [`Entry`] per item, whole, from its claim to its
//! verdict. Each stage reads what it needs from the entries and writes its part back (the
//! plugin's outcome, the outputs that went out, the verdict), so no stage keeps vectors
//! of its own beside the batch or maps positions between them.

use crate::dlq::PluginRef;
use crate::engine::Chain;
use crate::record::{Failure, FailureKind, Outcome, Record, Verdict};
use crate::sources::{Decoded, Item};

/// One item of a batch, as the core works on it.
pub(super) struct Entry {
    /// What the idempotency store knows the item by (see `Item::position`; a DLQ
    /// entry's own, not its record's, unless the entry is `held`: see `sources::dlq`).
    pub(super) key: Option<String>,
    /// Its ordering group (see `Item::group`).
    pub(super) group: Option<String>,
    /// Its record's source position: its outputs' identities start with it, its DLQ
    /// entry names it (a reprocessed entry's first source, see `Item::first_position`).
    pub(super) position: Option<String>,
    /// Its outputs an earlier try delivered (see `Item::delivered`): not sent again.
    pub(super) delivered_before: Vec<usize>,
    /// Its outputs that went out, earlier tries' and this one's: a DLQ entry lists them.
    pub(super) delivered: Vec<usize>,
    /// The record, or why it could not be decoded, until the plugin run takes it.
    decoded: Option<Decoded>,
    /// The record the plugin ran over (or the raw one that could not be decoded), for
    /// its DLQ entry.
    pub(super) original: Option<Record>,
    /// What the plugin made of it; taken by delivery.
    pub(super) outcome: Option<Outcome>,
    /// Its verdict, once it has one (a duplicate's before anything runs).
    pub(super) verdict: Option<Verdict>,
}

impl Entry {
    /// The entry of `item`; the source's own id for it is returned beside it (the core
    /// never reads it: it goes back to the source with the verdict).
    pub(super) fn new<Id>(item: Item<Id>) -> (Id, Self) {
        let Item {
            id,
            group,
            position: identity,
            first_position: origin,
            delivered,
            decoded,
        } = item;
        let entry = Self {
            position: origin.or_else(|| identity.clone()),
            key: identity,
            group,
            delivered: delivered.clone(),
            delivered_before: delivered,
            decoded: Some(decoded),
            original: None,
            outcome: None,
            verdict: None,
        };
        (id, entry)
    }

    /// The record (or why it could not be decoded), until the plugin run takes it.
    pub(super) fn decoded_mut(&mut self) -> Option<&mut Decoded> {
        self.decoded.as_mut()
    }

    /// Whether the entry still waits for its verdict.
    pub(super) fn open(&self) -> bool {
        self.verdict.is_none()
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

/// Runs the open entries of a batch (at most the batch size) through the chain: each
/// gets its outcome and keeps its record. `admit` sees each record as it enters (a
/// record another run holds enters as one that cannot finish now). Blocking: inside an
/// async runtime, call it from a blocking thread.
pub(super) fn run_plugin(
    chain: &mut Chain,
    entries: &mut [Entry],
    admit: impl Fn(usize, Decoded) -> Decoded,
    budget: crate::limits::Budget,
) {
    // The chain runs over one slice of records; `ran` says whose each one is.
    let mut records = Vec::with_capacity(entries.len());
    let mut ran = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter_mut().enumerate() {
        let Some(decoded) = entry.decoded.take().filter(|_| entry.open()) else {
            continue;
        };
        match admit(index, decoded) {
            Ok(record) => {
                ran.push(index);
                records.push(record);
            }
            Err(bad) => {
                entry.original = Some(bad.record);
                entry.outcome = Some(Outcome::Failed(Failure {
                    kind: bad.kind,
                    message: bad.reason,
                    attempts: 0,
                    stage: 0,
                }));
            }
        }
    }
    let outcomes = chain.run(&records, budget);
    let mut outcomes = outcomes.into_iter();
    for (index, record) in ran.into_iter().zip(records) {
        let entry = &mut entries[index];
        entry.original = Some(record);
        entry.outcome = Some(outcomes.next().unwrap_or_else(|| {
            Outcome::Failed(Failure {
                kind: FailureKind::Contract,
                message: "no outcome was recorded (host bug)".to_owned(),
                attempts: 0,
                stage: 0,
            })
        }));
    }
}
