//! How far an S3 notification got, for the retry after an invocation ran out of time.
//!
//! S3 invokes asynchronously and retries the whole notification, so without a record of
//! progress the retry would deliver again every batch the first try finished. When a run
//! runs out of time, [`super::ObjectSource`] writes a checkpoint — objects finished, and
//! items settled in the next one — under `PREFIX/checkpoints/<sha256 of the objects and
//! their ETags>.json`; the retry reads it, skips what is done, and deletes it at the end.

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::{ObjectRef, SourceError};
use crate::aws::{AwsClients, AwsError};

/// Where checkpoints are kept.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    aws: AwsClients,
    bucket: String,
    prefix: String,
}

/// The progress of one notification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The objects of the notification, for whoever reads the checkpoint.
    pub objects: Vec<String>,
    /// How many of them, in order, are finished.
    pub objects_done: usize,
    /// How many items of the next one are settled.
    pub items_done: u64,
}

impl Checkpoints {
    /// Checkpoints under `s3://bucket/prefix/checkpoints/`.
    pub fn new(aws: AwsClients, bucket: String, prefix: String) -> Self {
        Self {
            aws,
            bucket,
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// The key of the checkpoint of a notification naming `objects`.
    pub fn key(&self, objects: &[ObjectRef]) -> String {
        let mut hash = sha2::Sha256::new();
        for object in objects {
            hash.update(object.bucket.as_bytes());
            hash.update(b"/");
            hash.update(object.key.as_bytes());
            hash.update(b"@");
            hash.update(object.etag.as_deref().unwrap_or_default().as_bytes());
            hash.update(b"\n");
        }
        let name = hex::encode(hash.finalize());
        if self.prefix.is_empty() {
            format!("checkpoints/{name}.json")
        } else {
            format!("{}/checkpoints/{name}.json", self.prefix)
        }
    }

    /// The checkpoint at `key`, if an earlier try left one.
    pub async fn read(&self, key: &str) -> Result<Option<Checkpoint>, SourceError> {
        let what = || format!("checkpoint s3://{}/{key}", self.bucket);
        let response = self
            .aws
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let object = match response {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => return Err(AwsError::of(what(), &e).into()),
        };
        let body = object.body.collect().await.map_err(|e| AwsError {
            what: what(),
            reason: e.to_string(),
            out_of_time: false,
        })?;
        serde_json::from_slice(&body.into_bytes())
            .map(Some)
            .map_err(|e| SourceError::Settle(format!("{}: not a checkpoint: {e}", what())))
    }

    /// Writes `checkpoint` at `key` (replacing an older one).
    pub async fn write(&self, key: &str, checkpoint: &Checkpoint) -> Result<(), SourceError> {
        let body = serde_json::to_vec(checkpoint)
            .map_err(|e| SourceError::Settle(format!("cannot encode a checkpoint: {e}")))?;
        self.aws
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .map_err(|e| AwsError::of(format!("checkpoint s3://{}/{key}", self.bucket), &e))?;
        Ok(())
    }

    /// Removes the checkpoint at `key` (the notification is done).
    pub async fn delete(&self, key: &str) -> Result<(), SourceError> {
        self.aws
            .s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| AwsError::of(format!("checkpoint s3://{}/{key}", self.bucket), &e))?;
        Ok(())
    }
}
