//! Dead-letter queues read back, for `host reprocess`: an SQS queue or an S3 prefix of
//! JSON-lines objects. Only entries written before the run started are taken (entries
//! this run writes are left for the next one, so a record that fails again is not
//! looped on). An entry is settled by its verdict: gone once its record is delivered,
//! dropped or dead-lettered anew; kept where it is when the record must be retried.
//!
//! The idempotency store claims an entry by the entry itself, except a `held` one: that
//! record was held by another run, which may have finished it, so it is claimed by the
//! record's own identity (see `claim_identity`).

use std::collections::{HashSet, VecDeque};
use std::time::SystemTime;

use super::{Decoded, Item, Source, SourceError};
use crate::aws::{AwsClients, AwsError};
use crate::dlq::DlqEntry;
use crate::limits::RetryPolicy;
use crate::record::{FailureKind, Verdict};

/// The time a reprocessing run started, as DLQ entries write theirs.
fn now_stamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The entry of `text`, if this run may take it (written before `started`).
fn entry(text: &str, started: &str) -> Option<DlqEntry> {
    match serde_json::from_str::<DlqEntry>(text) {
        Ok(entry) if entry.failed_at.as_str() < started => Some(entry),
        Ok(_) => None,
        Err(e) => {
            tracing::error!(error = %e, "not a DLQ entry; left in place");
            None
        }
    }
}

/// A DLQ entry's identity: a hash of its text, the same wherever the entry is (a message
/// sent twice, a line moved by a rewrite of its object), different for each try's entry
/// (each has its own `failed_at`).
fn entry_identity(text: &str) -> String {
    use sha2::Digest as _;
    format!("dlq/{}", hex::encode(&sha2::Sha256::digest(text)[..16]))
}

/// What the idempotency store claims `entry` (whose text is `text`) by.
///
/// Most entries: the entry itself ([`entry_identity`]). The run that dead-lettered the
/// record marked the record's own identity done, so claiming that would call every such
/// entry a duplicate and lose it.
///
/// A `held` entry with the record's identity: that identity. The run that dead-lettered
/// it never held the record; another run did and may have delivered it since. Claimed by
/// the record's identity, a record its holder finished settles as a duplicate (the entry
/// goes, nothing is sent again), one whose holder died or let go runs once, and one still
/// held is left for later; two entries of one record (two runs waited for it) are one.
fn claim_identity(entry: &DlqEntry, text: &str) -> String {
    match &entry.identity {
        Some(identity) if entry.error.kind == FailureKind::Held.as_str() => identity.clone(),
        _ => entry_identity(text),
    }
}

fn record_of(entry: &DlqEntry) -> Option<Decoded> {
    // Only the first bytes of such a record were kept: running them would deliver a
    // cut record as if it were whole.
    if entry.cut.is_some() || entry.error.kind == "input-too-large" {
        tracing::error!(
            kind = %entry.error.kind,
            "a DLQ entry that holds only part of its record; left in place"
        );
        return None;
    }
    match entry.original() {
        Ok(record) => Some(Ok(record)),
        Err(e) => {
            tracing::error!(error = %e, "a DLQ entry's payload is not valid base64; left in place");
            None
        }
    }
}

/// The whole entry a queue's pointer names (`"overflow": "s3://bucket/key"`).
async fn follow(aws: &AwsClients, pointer: &DlqEntry) -> Option<DlqEntry> {
    let location = pointer.overflow.as_deref()?;
    let Some((bucket, key)) = location
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
    else {
        tracing::error!(%location, "a DLQ pointer that is not s3://BUCKET/KEY; left in place");
        return None;
    };
    match aws.object_bytes(bucket, key).await {
        Ok(bytes) => match serde_json::from_slice::<DlqEntry>(&bytes) {
            Ok(entry) => Some(entry),
            Err(e) => {
                tracing::error!(%location, error = %e, "the entry a DLQ pointer names is not one; left in place");
                None
            }
        },
        Err(e) => {
            tracing::error!(error = %e, "cannot read the entry a DLQ pointer names; left in place");
            None
        }
    }
}

/// An SQS dead-letter queue: items are messages, known by their receipt handles.
pub struct QueueDlq {
    aws: AwsClients,
    url: String,
    started: String,
    seen: HashSet<String>,
    drained: bool,
}

impl QueueDlq {
    /// Opens the queue named `queue`.
    pub async fn open(aws: &AwsClients, queue: &str) -> Result<Self, SourceError> {
        let started = now_stamp();
        Ok(Self {
            url: aws.queue_url(queue).await?,
            aws: aws.clone(),
            started,
            seen: HashSet::new(),
            drained: false,
        })
    }

    /// Makes a received message visible again at once (it stays in the queue).
    async fn release(&self, handle: &str) -> Result<(), AwsError> {
        self.aws
            .sqs
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| AwsError::of(format!("releasing an entry of {}", self.url), &e))?;
        Ok(())
    }
}

impl Source for QueueDlq {
    type Id = String;

    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Item<String>>>, SourceError> {
        while !self.drained {
            let response = self
                .aws
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(max.clamp(1, 10) as i32)
                .visibility_timeout(300)
                .send()
                .await
                .map_err(|e| AwsError::of(format!("--from {}", self.url), &e))?;
            if response.messages().is_empty() {
                self.drained = true;
                break;
            }
            let mut fresh = false;
            let mut items = Vec::new();
            for message in response.messages() {
                let Some(handle) = message.receipt_handle() else {
                    continue;
                };
                let id = message.message_id().unwrap_or(handle).to_owned();
                if !self.seen.insert(id) {
                    // Received again (this receive hid it): give it back.
                    self.release(handle).await?;
                    continue;
                }
                fresh = true;
                let mut taken = message.body().and_then(|body| entry(body, &self.started));
                if let Some(pointer) = taken.take_if(|e| e.overflow.is_some()) {
                    taken = follow(&self.aws, &pointer).await;
                }
                let delivered = taken
                    .as_ref()
                    .map(|e| e.delivered.clone())
                    .unwrap_or_default();
                let origin = taken.as_ref().and_then(|e| e.identity.clone());
                // By the message's text (a pointer's, for an entry stored whole in S3).
                let identity = taken
                    .as_ref()
                    .map(|e| claim_identity(e, message.body().unwrap_or_default()));
                match taken.as_ref().and_then(record_of) {
                    Some(decoded) => items.push(Item {
                        id: handle.to_owned(),
                        group: None,
                        position: identity,
                        first_position: origin,
                        delivered,
                        decoded,
                    }),
                    None => self.release(handle).await?,
                }
            }
            if !fresh {
                // Only entries already seen came back: everything there was is handled.
                self.drained = true;
                break;
            }
            if !items.is_empty() {
                return Ok(Some(items));
            }
        }
        Ok(None)
    }

    fn redelivers(&self) -> bool {
        true
    }

    async fn settle(&mut self, settled: Vec<(String, Verdict)>) -> Result<(), SourceError> {
        for (handle, verdict) in settled {
            if matches!(verdict, Verdict::Retry(_)) {
                self.release(&handle).await?;
                continue;
            }
            self.aws
                .sqs
                .delete_message()
                .queue_url(&self.url)
                .receipt_handle(&handle)
                .send()
                .await
                .map_err(|e| {
                    AwsError::of(
                        format!("deleting a reprocessed entry from {}", self.url),
                        &e,
                    )
                })?;
        }
        Ok(())
    }
}

/// An S3 dead-letter prefix: items are the lines of its objects, one object at a time.
/// Once every taken line of an object is settled, the lines to keep (not taken, or to be
/// retried) are written to a new object and then the old one is deleted.
pub struct BucketDlq {
    aws: AwsClients,
    bucket: String,
    prefix: String,
    started: String,
    keys: VecDeque<String>,
    open: Option<OpenObject>,
    /// Objects that could not be read as JSON lines, left in place.
    skipped: Vec<String>,
}

/// Largest a gzip DLQ object may inflate to.
const MAX_INFLATED_OBJECT: u64 = 1 << 30;

fn inflate(body: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let mut inflated = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(MAX_INFLATED_OBJECT + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| e.to_string())?;
    if inflated.len() as u64 > MAX_INFLATED_OBJECT {
        return Err(format!("inflates past {MAX_INFLATED_OBJECT} bytes"));
    }
    Ok(inflated)
}

impl BucketDlq {
    /// The objects skipped so far (not gzip that inflates, or not UTF-8), left in place.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }
}

struct OpenObject {
    key: String,
    lines: Vec<String>,
    /// Taken lines not yet handed out.
    taken: VecDeque<TakenLine>,
    /// Handed out, not yet settled.
    outstanding: usize,
    /// Settled as finished (their lines go).
    done: HashSet<usize>,
}

/// A line of an open object taken to reprocess.
struct TakenLine {
    /// Its index into the object's `lines`.
    line: usize,
    /// Its entry's `delivered`.
    delivered: Vec<usize>,
    /// Its record's identity (the entry's `identity`).
    origin: Option<String>,
    /// What the idempotency store claims it by ([`claim_identity`]); by the entry's text
    /// for most, the same after its object is rewritten (under another key) without the
    /// entries already reprocessed.
    identity: String,
    decoded: Decoded,
}

/// Retries for rewriting a DLQ object.
const REWRITE_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: std::time::Duration::from_millis(100),
    budget: crate::limits::Budget::unbounded(),
};

impl BucketDlq {
    /// Lists the objects under `s3://bucket/prefix` (as of now).
    pub async fn open(aws: &AwsClients, bucket: &str, prefix: &str) -> Result<Self, SourceError> {
        let started = now_stamp();
        let mut keys = VecDeque::new();
        let mut token: Option<String> = None;
        loop {
            let page = aws
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::of(format!("--from s3://{bucket}/{prefix}"), &e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
        }
        Ok(Self {
            aws: aws.clone(),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            started,
            keys,
            open: None,
            skipped: Vec::new(),
        })
    }

    /// Reads the next object with entries to take.
    async fn open_next(&mut self) -> Result<Option<OpenObject>, SourceError> {
        while let Some(key) = self.keys.pop_front() {
            let body = self.aws.object_bytes(&self.bucket, &key).await?;
            let body = if key.ends_with(".gz") {
                match inflate(&body) {
                    Ok(inflated) => inflated,
                    Err(reason) => {
                        tracing::error!(bucket = %self.bucket, %key, %reason, "a DLQ object that does not inflate; skipped, left in place");
                        self.skipped.push(key);
                        continue;
                    }
                }
            } else {
                body.to_vec()
            };
            let Ok(text) = std::str::from_utf8(&body) else {
                tracing::error!(bucket = %self.bucket, %key, "a DLQ object that is not UTF-8; skipped, left in place");
                self.skipped.push(key);
                continue;
            };
            let lines: Vec<String> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect();
            let taken: VecDeque<TakenLine> = lines
                .iter()
                .enumerate()
                .filter_map(|(i, line)| {
                    let entry = entry(line, &self.started)?;
                    record_of(&entry).map(|decoded| TakenLine {
                        line: i,
                        delivered: entry.delivered.clone(),
                        origin: entry.identity.clone(),
                        identity: claim_identity(&entry, line),
                        decoded,
                    })
                })
                .collect();
            if !taken.is_empty() {
                return Ok(Some(OpenObject {
                    key,
                    lines,
                    taken,
                    outstanding: 0,
                    done: HashSet::new(),
                }));
            }
        }
        Ok(None)
    }

    /// Writes the lines to keep to a new object, then deletes the old one.
    async fn rewrite(&self, object: OpenObject) -> Result<(), SourceError> {
        let keep: Vec<&str> = object
            .lines
            .iter()
            .enumerate()
            .filter(|(i, _)| !object.done.contains(i))
            .map(|(_, l)| l.as_str())
            .collect();
        if !keep.is_empty() {
            let body = keep.join("\n").into_bytes();
            self.aws
                .put_new_object(&self.bucket, &self.prefix, "jsonl", body, REWRITE_RETRY)
                .await?;
        }
        self.aws
            .s3
            .delete_object()
            .bucket(&self.bucket)
            .key(&object.key)
            .send()
            .await
            .map_err(|e| {
                AwsError::of(format!("deleting s3://{}/{}", self.bucket, object.key), &e)
            })?;
        Ok(())
    }
}

/// An entry of an S3 DLQ: its object's key and its line in it.
pub type EntryId = (String, usize);

impl Source for BucketDlq {
    type Id = EntryId;

    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Item<EntryId>>>, SourceError> {
        if self.open.is_none() {
            self.open = self.open_next().await?;
        }
        let Some(object) = &mut self.open else {
            return Ok(None);
        };
        let count = object.taken.len().min(max);
        let key = &object.key;
        let batch: Vec<Item<EntryId>> = object
            .taken
            .drain(..count)
            .map(|taken| Item {
                position: Some(taken.identity),
                first_position: taken.origin,
                id: (key.clone(), taken.line),
                group: None,
                delivered: taken.delivered,
                decoded: taken.decoded,
            })
            .collect();
        object.outstanding += batch.len();
        Ok(Some(batch))
    }

    fn redelivers(&self) -> bool {
        true
    }

    async fn settle(&mut self, settled: Vec<(EntryId, Verdict)>) -> Result<(), SourceError> {
        let Some(object) = &mut self.open else {
            return Err(SourceError::Settle(format!(
                "{} verdicts for s3://{}/{} with no object open",
                settled.len(),
                self.bucket,
                self.prefix
            )));
        };
        for ((key, line), verdict) in settled {
            if key != object.key || object.outstanding == 0 {
                return Err(SourceError::Settle(format!(
                    "a verdict for s3://{}/{key} line {line}, but s3://{}/{} is the object open",
                    self.bucket, self.bucket, object.key
                )));
            }
            object.outstanding -= 1;
            if !matches!(verdict, Verdict::Retry(_)) {
                object.done.insert(line);
            }
        }
        if object.taken.is_empty()
            && object.outstanding == 0
            && let Some(object) = self.open.take()
        {
            self.rewrite(object).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of an entry of `kind`, for the record at `identity`.
    fn entry_text(kind: &str, identity: Option<&str>) -> String {
        let mut entry = serde_json::json!({
            "record": {"payload": "r-0", "attributes": {"line": "1", "source": "file"}},
            "error": {"kind": kind, "message": "why"},
            "plugin": {"name": "p", "version": "1"},
            "attempts": 0,
            "failed_at": "2026-01-01T00:00:00.000Z",
        });
        if let Some(identity) = identity {
            entry["identity"] = identity.into();
        }
        entry.to_string()
    }

    /// What the store claims the entry of `kind` by, and the entry's own identity.
    fn claimed(kind: &str, identity: Option<&str>) -> (String, String) {
        let text = entry_text(kind, identity);
        let entry: DlqEntry = serde_json::from_str(&text).expect("an entry");
        (claim_identity(&entry, &text), entry_identity(&text))
    }

    #[test]
    fn a_held_entry_is_claimed_by_its_records_identity_any_other_by_itself() {
        let record = "file/in.txt@4-1#1";
        // Another run held the record: its done mark, if any, is that run's.
        assert_eq!(claimed("held", Some(record)).0, record);
        // This host marked the record done when it dead-lettered it: claiming the
        // record would call the entry a duplicate. Without an identity there is none.
        for (kind, identity) in [
            ("unfinished", Some(record)),
            ("domain", Some(record)),
            ("held", None),
        ] {
            let (claim, own) = claimed(kind, identity);
            assert_eq!(claim, own, "{kind}");
            assert!(claim.starts_with("dlq/"), "{claim}");
        }
    }
}
