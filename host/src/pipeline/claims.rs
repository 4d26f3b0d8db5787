//! The idempotency store's part of a batch: before the plugin runs, each item with a
//! source position is claimed; an item an earlier delivery finished settles as a
//! duplicate without running, one another run holds is handed back (or, for a source
//! that does not redeliver, waited for, then dead-lettered as `held`). Once the batch
//! has its verdicts, this run's claims are marked done, or released for the items handed
//! back.

use std::time::{Duration, Instant};

use crate::idempotency::{Claim, Store};
use crate::limits::{Budget, RetryPolicy, backoff};
use crate::record::{FailureKind, Verdict};
use crate::sources::{Decoded, Undecodable};

use super::batch::Entry;

/// Why an item held by another run goes back to its source.
const BUSY: &str = "another run is processing this record (claimed in the idempotency store)";

/// The claims of one batch, by item (`None` for an item without a source position),
/// and why a busy one goes back.
#[derive(Clone)]
pub(super) struct Claims {
    claims: Vec<Option<Claim>>,
    /// What the store knows each item by, by position: kept here, so the claims can be
    /// released even when the batch's entries are lost (a plugin thread that died).
    keys: Vec<Option<String>>,
    /// The kind a busy item fails with: `held` when another run holds it (its entry, if
    /// dead-lettered, is reprocessed under the record's identity), `unfinished` when the
    /// store could not be asked.
    busy_kind: FailureKind,
    busy: String,
    /// The batch's source delivers again what is handed back.
    redelivers: bool,
}

impl Claims {
    /// No store: nothing claimed.
    pub(super) fn none(count: usize, redelivers: bool) -> Self {
        Self {
            claims: vec![None; count],
            keys: vec![None; count],
            busy_kind: FailureKind::Held,
            busy: String::new(),
            redelivers,
        }
    }

    /// Whether the batch's source delivers again what is handed back.
    pub(super) fn redelivers(&self) -> bool {
        self.redelivers
    }

    /// Claims every identity. An item another run holds is waited for, until its holder
    /// finishes it (a duplicate) or its claim expires (a holder that died: taken over),
    /// within `budget` and the store's claim time; what is still held then goes back to
    /// a source that redelivers, or is dead-lettered as `held`. While it waits this
    /// run holds nothing: two runs that each hold part of a batch would wait for each
    /// other. A store that cannot be reached is an error.
    pub(super) async fn make(
        store: &Store,
        entries: &[Entry],
        redelivers: bool,
        budget: Budget,
        time_margin: Duration,
    ) -> Result<Self, crate::aws::AwsError> {
        let identities: Vec<Option<String>> = entries.iter().map(|e| e.key.clone()).collect();
        let mut claims = vec![None; identities.len()];
        // An identity met again in the same batch (a message delivered twice at once, a
        // direct record naming an id already used) is that record again: a duplicate.
        let mut seen = std::collections::HashSet::new();
        let mut asking = Vec::new();
        for (index, identity) in identities.iter().enumerate() {
            let Some(identity) = identity else { continue };
            if seen.insert(identity.as_str()) {
                asking.push(index);
            } else {
                claims[index] = Some(Claim::Done);
            }
        }
        let names = |indices: &[usize], claims: &[Option<Claim>], only: Option<Claim>| {
            indices
                .iter()
                .filter(|&&i| only.is_none() || claims[i] == only)
                .filter_map(|&i| identities[i].clone())
                .collect::<Vec<_>>()
        };
        let started = Instant::now();
        let mut attempt = 0;
        while !asking.is_empty() {
            // A claim lasts as long as this run may still be delivering: its budget and
            // the margin kept before the deadline.
            let asked = names(&asking, &claims, None);
            let claiming = store.claim(&asked, budget.left().map(|l| l + time_margin));
            // Claims a cut call made expire by themselves (they last the budget).
            let answers = budget
                .bound(claiming)
                .await
                .map_err(|cut| crate::aws::AwsError {
                    what: "the idempotency store".into(),
                    reason: cut.to_string(),
                    out_of_time: true,
                })??;
            for (&i, answer) in asking.iter().zip(&answers) {
                claims[i] = Some(*answer);
            }
            let busy = asking
                .iter()
                .filter(|&&i| claims[i] == Some(Claim::Busy))
                .count();
            if busy == 0 {
                break;
            }
            attempt += 1;
            let delay = backoff(Duration::from_millis(200), attempt).min(Duration::from_secs(5));
            // A claim lasts at most the claim time (plus the second its expiry is
            // rounded to): waiting longer could not make it expire.
            if started.elapsed() + delay > store.claim_time() + Duration::from_secs(2)
                || !budget.allows_wait(delay)
            {
                break;
            }
            if attempt == 1 {
                tracing::info!(
                    records = busy,
                    "waiting for records another run holds in the idempotency store"
                );
            }
            let ours = names(&asking, &claims, Some(Claim::Ours));
            store.release(&ours).await?;
            asking.retain(|&i| claims[i] != Some(Claim::Done));
            tokio::time::sleep(delay).await;
        }
        Ok(Self {
            claims,
            keys: identities,
            busy_kind: FailureKind::Held,
            busy: BUSY.into(),
            redelivers,
        })
    }

    /// Every claimable item handed back: the store could not be asked.
    pub(super) fn unavailable(entries: &[Entry], error: &crate::aws::AwsError) -> Self {
        Self {
            claims: entries
                .iter()
                .map(|e| e.key.as_ref().map(|_| Claim::Busy))
                .collect(),
            keys: entries.iter().map(|e| e.key.clone()).collect(),
            // No other run is known to hold them: this run could not finish them.
            busy_kind: FailureKind::Unfinished,
            busy: format!("the idempotency store cannot be reached: {error}"),
            // Only a source that redelivers gets its items back this way.
            redelivers: true,
        }
    }

    /// Whether item `index` is a duplicate (settles without running).
    pub(super) fn is_duplicate(&self, index: usize) -> bool {
        self.claims.get(index) == Some(&Some(Claim::Done))
    }

    /// Item `index` as it enters the chain: a busy one as a record that cannot finish
    /// now (handed back to a source that redelivers, else dead-lettered as `held`).
    pub(super) fn admit(&self, index: usize, decoded: Decoded) -> Decoded {
        if self.claims.get(index) != Some(&Some(Claim::Busy)) {
            return decoded;
        }
        let record = match decoded {
            Ok(record) => record,
            Err(bad) => bad.record,
        };
        Err(Undecodable {
            record,
            kind: self.busy_kind,
            reason: self.busy.clone(),
        })
    }

    /// The run stops before the batch settles: with `kept`, the entries that reached a
    /// final place so far (their outputs went out to sinks that keep them, or their DLQ
    /// entry was taken) are marked done; this run's other claims are released, every one
    /// of them when the entries are lost (`entries` shorter than the batch).
    pub(super) async fn abandon(
        &self,
        store: &Store,
        entries: &[Entry],
        kept: bool,
        retry: RetryPolicy,
    ) {
        let (mut done, mut release) = (Vec::new(), Vec::new());
        for (index, (claim, key)) in self.claims.iter().zip(&self.keys).enumerate() {
            let (Some(Claim::Ours), Some(identity)) = (claim, key) else {
                continue;
            };
            let verdict = entries.get(index).and_then(|e| e.verdict.as_ref());
            if kept
                && matches!(
                    verdict,
                    Some(Verdict::Delivered(_) | Verdict::DeadLettered(_))
                )
            {
                done.push(identity.clone());
            } else {
                release.push(identity.clone());
            }
        }
        if let Err(e) = store.done(&done, retry).await {
            tracing::error!(error = %e, records = done.len(), "cannot mark records done in the idempotency store");
        }
        if let Err(e) = store.release(&release).await {
            tracing::error!(error = %e, records = release.len(), "cannot release claims in the idempotency store; a retry waits for them to expire");
        }
    }

    /// Marks this run's claims done (a final verdict) or releases them (a retry).
    /// `settled` holds every item's verdict, in order. A store that cannot be written
    /// is logged: the verdicts stand (a mark left claimed expires, a redelivery then
    /// runs the record again and deterministic sink writes absorb what they can).
    ///
    /// With `uncommitted`, the batch's outputs and DLQ entries sit in files that become
    /// final only when the run commits them: the identities to mark done are added
    /// there instead, their claims held until the commit (a run that fails first
    /// removes the files, and a rerun must find the records not done).
    pub(super) async fn finish(
        &self,
        store: &Store,
        settled: &[Verdict],
        retry: RetryPolicy,
        uncommitted: Option<&mut Vec<String>>,
    ) {
        let (mut done, mut release) = (Vec::new(), Vec::new());
        for ((claim, key), verdict) in self.claims.iter().zip(&self.keys).zip(settled) {
            let (Some(Claim::Ours), Some(identity)) = (claim, key) else {
                continue;
            };
            match verdict {
                Verdict::Retry(_) => release.push(identity.clone()),
                _ => done.push(identity.clone()),
            }
        }
        if let Some(uncommitted) = uncommitted {
            uncommitted.append(&mut done);
        }
        if let Err(e) = store.done(&done, retry).await {
            tracing::error!(error = %e, records = done.len(), "cannot mark records done in the idempotency store; a redelivery after their claims expire runs them again");
        }
        if let Err(e) = store.release(&release).await {
            tracing::error!(error = %e, records = release.len(), "cannot release claims in the idempotency store; their retry waits for the claims to expire");
        }
    }
}
