//! The objects a message names (an S3 notification inside an SQS or SNS message,
//! EventBridge's "Object Created"), read as part of the event that carries the message,
//! and the message settled by what became of their records.
//!
//! A message is done when every record of its objects is: delivered, dropped, in the
//! DLQ or a duplicate. A record handed back (its sink failed for a while, the time ran
//! out) hands back its message, and the later records of its objects wait with it (they
//! share the message's ordering group). How far the message got is then kept as an S3
//! notification's checkpoint, so the message delivered again resumes there rather than
//! sending again what went out. An object that cannot be read hands its message back
//! too, for its queue's own retries and redrive policy to decide.

use super::{Carried, Checkpoints, Item, ObjectSource, Source as _, SourceError};
use crate::aws::AwsClients;
use crate::limits::Budget;
use crate::record::Verdict;

/// What reading a carried message's objects needs.
#[derive(Clone)]
pub struct ObjectReader {
    /// The clients the objects (and checkpoints) are read with.
    pub aws: AwsClients,
    /// Lines longer than this are dead-lettered, cut.
    pub max_record_bytes: usize,
    /// Where checkpoints are kept (`BUCKET`, `PREFIX`), if anywhere.
    pub checkpoints: Option<(String, String)>,
    /// The invocation's budget: past it, no message's objects start to be read.
    pub budget: Budget,
}

/// One carried message whose objects are being read.
pub struct CarriedRun {
    message: Carried,
    source: ObjectSource,
    /// The ordering group its records share: its FIFO message group, else its own.
    group: String,
    /// Why the message is handed back, once it is.
    handed_back: Option<String>,
}

impl CarriedRun {
    /// Starts reading `message`'s objects.
    pub fn start(message: Carried, reader: &ObjectReader) -> Self {
        let mut source = ObjectSource::new(
            reader.aws.clone(),
            message.objects.clone(),
            reader.max_record_bytes,
        );
        if let Some((bucket, prefix)) = &reader.checkpoints {
            source = source.checkpointed(Checkpoints::new(
                reader.aws.clone(),
                bucket.clone(),
                prefix.clone(),
            ));
        }
        let group = message
            .group
            .clone()
            .unwrap_or_else(|| format!("message/{}", message.id));
        Self {
            message,
            source,
            group,
            handed_back: None,
        }
    }

    /// The message's id in its event.
    pub fn id(&self) -> &str {
        &self.message.id
    }

    /// The message's ordering group, if it has one of its own (FIFO).
    pub fn message_group(&self) -> Option<&str> {
        self.message.group.as_deref()
    }

    /// The next batch of the message's records; `None` once its objects are read, or
    /// it was handed back. An object that cannot be read hands the message back.
    pub async fn next_batch(&mut self, max: usize) -> Option<Vec<Item<u64>>> {
        if self.handed_back.is_some() {
            return None;
        }
        match self.source.next_batch(max).await {
            Ok(Some(mut items)) => {
                for item in &mut items {
                    item.group = Some(self.group.clone());
                }
                Some(items)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(
                    message = %self.message.id, %error,
                    "an object this message names cannot be read: the message is handed back"
                );
                self.hand_back(format!("an object it names cannot be read: {error}"))
                    .await;
                None
            }
        }
    }

    /// Settles a batch of the message's records (in order): those before the first
    /// handed back are done; from it on, the message is handed back.
    pub async fn settle(&mut self, settled: Vec<(u64, Verdict)>) -> Result<(), SourceError> {
        if self.handed_back.is_some() {
            return Ok(());
        }
        let first_back = settled
            .iter()
            .position(|(_, verdict)| matches!(verdict, Verdict::Retry(_)));
        let mut settled = settled;
        let back = first_back.map(|at| settled.split_off(at));
        self.source.settle(settled).await?;
        if let Some(back) = back
            && let Some((_, Verdict::Retry(reason))) = back.into_iter().next()
        {
            self.hand_back(reason).await;
        }
        Ok(())
    }

    /// Hands the message back, keeping how far it got for its next delivery.
    async fn hand_back(&mut self, reason: String) {
        if let Err(error) = self.source.record_progress().await {
            // Without it the next delivery starts over: with the store on, what went
            // out comes back as duplicates; without it, it is sent again.
            tracing::warn!(message = %self.message.id, %error, "cannot record the message's progress");
        }
        self.handed_back = Some(reason);
    }

    /// Hands the message back, its progress recorded, when the run's time is up with it
    /// unfinished (once).
    pub async fn out_of_time(&mut self) {
        if self.handed_back.is_some() {
            return;
        }
        self.hand_back("the invocation's time ran out before its objects were read".into())
            .await;
    }

    /// The message's verdict: handed back, or done (its records are where they belong).
    pub fn verdict(self) -> (String, Verdict) {
        for gone in self.source.gone() {
            tracing::warn!(message = %self.message.id, %gone, "a named object is gone");
        }
        let verdict = match self.handed_back {
            Some(reason) => Verdict::Retry(reason),
            None => Verdict::Delivered(Vec::new()),
        };
        (self.message.id, verdict)
    }
}
