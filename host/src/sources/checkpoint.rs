//! How far an S3 notification got, for the retry after an invocation ran out of time.
//!
//! S3 invokes asynchronously and retries the whole notification, so without a record of
//! progress the retry would deliver again every batch the first try finished. When a run
//! runs out of time, [`super::ObjectSource`] writes a checkpoint — objects finished, and
//! items settled in the next one — under `PREFIX/checkpoints/<sha256 of the objects and
//! the versions they name>.json`; the retry reads it, skips what is done, and deletes it
//! at the end. A checkpoint counts lines of particular versions (ETags, and version ids
//! where the bucket keeps versions), and the reads it resumes are pinned to those same
//! versions: a later write to a key has another checkpoint, never this one.

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
    /// The objects of the notification and the versions they name, for whoever reads
    /// the checkpoint.
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
        let name = digest(objects);
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

/// The name of the checkpoint of a notification naming `objects`: a hash of each
/// object and the version it names.
fn digest(objects: &[ObjectRef]) -> String {
    let mut hash = sha2::Sha256::new();
    for object in objects {
        hash.update(object.bucket.as_bytes());
        hash.update(b"/");
        hash.update(object.key.as_bytes());
        hash.update(b"@");
        hash.update(object.etag.as_deref().unwrap_or_default().as_bytes());
        // Only when there is one: without, the name is what it was before version ids
        // counted, so a retry across an upgrade still finds its first try's checkpoint.
        if let Some(version) = &object.version_id {
            hash.update(b"?versionId=");
            hash.update(version.as_bytes());
        }
        hash.update(b"\n");
    }
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(etag: &str, version: Option<&str>) -> ObjectRef {
        ObjectRef {
            bucket: "b".into(),
            key: "k.jsonl".into(),
            etag: Some(etag.into()),
            version_id: version.map(str::to_owned),
        }
    }

    #[test]
    fn a_checkpoint_belongs_to_the_versions_it_counted() {
        let v1 = digest(&[object("e1", Some("v1"))]);
        assert_ne!(
            v1,
            digest(&[object("e1", Some("v2"))]),
            "the same bytes written again are another version"
        );
        assert_ne!(v1, digest(&[object("e2", Some("v1"))]));
        assert_ne!(digest(&[object("e1", None)]), digest(&[object("e2", None)]));
        // Without a version id, the name checkpoints had before version ids counted
        // (the sha256 of `b/k.jsonl@e1\n`).
        assert_eq!(
            digest(&[object("e1", None)]),
            "78e2de0595e5f776b04293ef866d96f5903dfe4183ed7a390ec2d595d4dac3ff"
        );
    }
}
