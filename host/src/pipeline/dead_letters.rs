//! The dead-letter queue as the pipeline writes it: one entry per failed item, each
//! entry fitted to its queue first. An entry too large for the queue (SQS takes
//! 256 KiB) is stored whole in the overflow bucket with a pointer in the queue, or
//! without an overflow bucket cut to fit, the cut stated in the entry and the whole
//! payload's hash logged. Such a refusal is never a retry: retrying would not make the
//! entry smaller, only redeliver it, and every later item of its shard, forever.

use std::collections::BTreeMap;

use super::batch::Entry;
use crate::aws::AwsClients;
use crate::dlq::{DlqEntry, PluginRef};
use crate::record::{Failure, Output, Verdict};
use crate::sinks::{RetryPolicy, Sink};

/// Where the whole of an entry too large for the queue goes.
pub(super) struct Overflow {
    pub(super) aws: AwsClients,
    pub(super) bucket: String,
    pub(super) prefix: String,
}

/// The DLQ sink and its overflow bucket.
pub(super) struct DeadLetters {
    pub(super) sink: Sink,
    pub(super) overflow: Option<Overflow>,
}

/// The dead-letter queue refused an entry of an item its source cannot take back.
#[derive(Debug)]
pub(super) struct Refused(pub(super) String);

/// The batch's entries, what they failed with (by position in `entries`), and how the
/// rest of the batch is settled.
pub(super) struct Failed<'b> {
    pub(super) entries: &'b mut [Entry],
    pub(super) failures: Vec<(usize, Failure)>,
    /// The chain's plugins, in order; a failure's `stage` indexes it.
    pub(super) plugins: &'b [PluginRef],
    pub(super) retry: RetryPolicy,
    /// The source delivers again what is settled as `Retry`.
    pub(super) redelivers: bool,
}

impl DeadLetters {
    /// Writes the DLQ entries of `failed`, setting their verdicts: dead-lettered, or
    /// (a refused entry, when the source redelivers) handed back. Each entry lists the
    /// outputs of its record that already went out and its source position.
    pub(super) async fn write(&self, failed: Failed<'_>) -> Result<(), Refused> {
        let Failed {
            entries,
            failures,
            plugins,
            retry,
            redelivers,
        } = failed;
        let last_stage = plugins.len().saturating_sub(1);
        let mut written: Vec<(usize, Output, Failure)> = Vec::with_capacity(failures.len());
        for (index, failure) in failures {
            let plugin = &plugins[failure.stage.min(last_stage)];
            let item = &entries[index];
            let Some(original) = item.original.as_ref() else {
                return Err(Refused(format!(
                    "item {index} of the batch has no record to dead-letter (host bug)"
                )));
            };
            let mut entry = DlqEntry::new(original, &failure, plugin);
            entry.delivered.clone_from(&item.delivered);
            entry.identity.clone_from(&item.position);
            match self.fit(entry, retry).await {
                Ok(json) => {
                    let output = Output {
                        payload: json.into(),
                        ..Output::default()
                    };
                    written.push((index, output, failure));
                }
                Err(reason) if redelivers => {
                    tracing::error!(%reason, "cannot write a DLQ entry; handing the record back");
                    entries[index].verdict = Some(Verdict::Retry(reason));
                }
                Err(reason) => return Err(Refused(reason)),
            }
        }
        let refused = self
            .sink
            .deliver(written.iter().map(|(i, o, _)| (*i, o)).collect(), retry)
            .await;
        let mut refused_items = BTreeMap::new();
        for failure in refused {
            tracing::error!(item = failure.item, reason = %failure.message, "the dead-letter queue refused an entry");
            refused_items.insert(failure.item, failure.message);
        }
        // The entries the queue took are dead-lettered whatever happens next: a run that
        // stops on a refusal marks them done, and a rerun does not write them again.
        let mut first_refusal = None;
        for (index, _, failure) in written {
            entries[index].verdict = match refused_items.remove(&index) {
                Some(reason) if !redelivers => {
                    first_refusal.get_or_insert(reason);
                    None
                }
                Some(reason) => Some(Verdict::Retry(format!(
                    "the dead-letter queue refused it: {reason}"
                ))),
                None => Some(Verdict::DeadLettered(failure)),
            };
        }
        match first_refusal {
            Some(reason) => Err(Refused(reason)),
            None => Ok(()),
        }
    }

    /// The entry as the queue will hold it: whole when it fits; else its pointer, the
    /// whole entry stored in the overflow bucket; else cut to fit.
    async fn fit(&self, entry: DlqEntry, retry: RetryPolicy) -> Result<Vec<u8>, String> {
        let json = entry
            .to_json()
            .map_err(|e| format!("cannot encode a DLQ entry: {e}"))?;
        let Some(max) = self.sink.max_entry_bytes().filter(|max| json.len() > *max) else {
            return Ok(json);
        };
        if let Some(overflow) = &self.overflow {
            let key = overflow
                .aws
                .put_new_object(&overflow.bucket, &overflow.prefix, "json", json, retry)
                .await
                .map_err(|e| {
                    format!("cannot store a large DLQ entry in the overflow bucket: {e}")
                })?;
            let pointer = entry.pointer(format!("s3://{}/{key}", overflow.bucket));
            return pointer
                .to_json()
                .map_err(|e| format!("cannot encode a DLQ pointer: {e}"));
        }
        let (cut, json) = entry.cut_to_fit(max).ok_or_else(|| {
            format!("a DLQ entry does not fit the queue's {max} bytes even without its payload")
        })?;
        if let Some(cut) = &cut.cut {
            tracing::error!(
                payload_bytes = cut.payload_bytes,
                sha256 = %cut.sha256,
                "a DLQ entry was cut to fit the queue (set PIPELINE_DLQ_OVERFLOW to keep it whole)"
            );
        }
        Ok(json)
    }
}
