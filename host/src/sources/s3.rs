//! S3 objects as a source: streamed from `GetObject` and decoded in batches, so memory
//! stays bounded by a couple of batches whatever the object's size.
//!
//! The format comes from the key: `.jsonl`, `.ndjson`, `.json` (JSON lines), `.csv`
//! (CSV with a header), `.txt`/`.log` (lines), each optionally `.gz`; `.parquet` (each
//! row becomes a JSON object). Parquet needs random access: the object is streamed to a
//! temporary file first (disk, not memory), then read a batch of rows at a time.
//!
//! An object is read in one `GetObject` (a retry that resumes from a checkpoint reads it
//! again from the start and skips what is done), pinned to the version the notification
//! names: its version id, else `If-Match` on its ETag. Without the pin a notification
//! read after a later write delivered that write's lines under its own name, and the
//! later write's notification delivered them again. A named version that is gone (404,
//! or 412 on the ETag) is not read at all: it is logged, and counted as `gone`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};

use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use aws_sdk_s3::error::ProvideErrorMetadata as _;

use super::checkpoint::{Checkpoint, Checkpoints};
use super::events::ObjectVersion;
use super::{Decoded, FileSource, InputFormat, Item, ObjectRef, OutOfTime, Source, SourceError};
use crate::aws::{AwsClients, AwsError};
use crate::record::Verdict;

/// The objects an S3 notification names, read one after the other in batches. S3
/// invokes asynchronously (no partial answers): nothing is redelivered item by item,
/// and a failure to read an object fails the invocation. With checkpoints, a run that
/// runs out of time records how far it got and the retry resumes there. An object whose
/// named version is gone is skipped and listed in [`ObjectSource::gone`]: no retry can
/// read it, and reading what the key holds instead is what the pin is there to stop.
pub struct ObjectSource {
    aws: AwsClients,
    objects: VecDeque<ObjectRef>,
    current: Option<(ObjectRef, ObjectBatches)>,
    read: u64,
    max_record_bytes: usize,
    checkpoints: Option<(Checkpoints, String)>,
    /// Read the checkpoint yet?
    started: bool,
    /// The checkpoint (or its absence) was read: how far this run got is known. Not
    /// after a failed read, whose run must not write its zeros over a checkpoint.
    progress_known: bool,
    /// A checkpoint was found: delete it once everything is done.
    resumed: bool,
    /// Objects finished, in order.
    objects_done: usize,
    /// Items of the current object settled (by this run or, resumed, an earlier one).
    items_done: u64,
    /// Items of the current object an earlier run settled, still to skip.
    skip: u64,
    /// The objects and the versions they name, for the checkpoint's reader.
    names: Vec<String>,
    /// Objects whose named version was gone, in order.
    gone: Vec<Gone>,
}

impl ObjectSource {
    /// A source over `objects`, in order; lines longer than `max_record_bytes` are
    /// dead-lettered, cut.
    pub fn new(aws: AwsClients, objects: Vec<ObjectRef>, max_record_bytes: usize) -> Self {
        let names = objects
            .iter()
            .map(|o| format!("s3://{}/{} ({})", o.bucket, o.key, o.version()))
            .collect();
        Self {
            aws,
            objects: objects.into(),
            current: None,
            read: 0,
            max_record_bytes,
            checkpoints: None,
            started: false,
            progress_known: false,
            resumed: false,
            objects_done: 0,
            items_done: 0,
            skip: 0,
            names,
            gone: Vec::new(),
        }
    }

    /// The objects whose named version was gone (deleted, or overwritten in a bucket
    /// without versions) when this run came to read them, so it read none of their
    /// lines. They are not items, so the answer and the summary count them beside the
    /// items, as `gone`.
    pub fn gone(&self) -> &[Gone] {
        &self.gone
    }

    /// The same source, keeping its checkpoints in `checkpoints`.
    pub fn checkpointed(mut self, checkpoints: Checkpoints) -> Self {
        let objects: Vec<ObjectRef> = self.objects.iter().cloned().collect();
        let key = checkpoints.key(&objects);
        self.checkpoints = Some((checkpoints, key));
        self
    }

    /// Reads the checkpoint an earlier try left, and skips what it finished.
    async fn resume(&mut self) -> Result<(), SourceError> {
        self.started = true;
        self.resume_from_checkpoint().await?;
        self.progress_known = true;
        Ok(())
    }

    async fn resume_from_checkpoint(&mut self) -> Result<(), SourceError> {
        let Some((checkpoints, key)) = &self.checkpoints else {
            return Ok(());
        };
        let Some(checkpoint) = checkpoints.read(key).await? else {
            return Ok(());
        };
        tracing::info!(
            checkpoint = %key,
            objects_done = checkpoint.objects_done,
            items_done = checkpoint.items_done,
            "resuming an S3 notification where an earlier try stopped"
        );
        for _ in 0..checkpoint.objects_done.min(self.objects.len()) {
            self.objects.pop_front();
        }
        self.resumed = true;
        self.objects_done = checkpoint.objects_done;
        self.items_done = checkpoint.items_done;
        self.skip = checkpoint.items_done;
        Ok(())
    }
}

impl Source for ObjectSource {
    type Id = u64;

    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Item<u64>>>, SourceError> {
        if !self.started {
            self.resume().await?;
        }
        loop {
            let (object, batches) = match &mut self.current {
                Some(current) => current,
                None => {
                    let Some(object) = self.objects.pop_front() else {
                        if self.resumed
                            && let Some((checkpoints, key)) = &self.checkpoints
                        {
                            checkpoints.delete(key).await?;
                            self.resumed = false;
                        }
                        return Ok(None);
                    };
                    match ObjectBatches::open(&self.aws, &object, max, self.max_record_bytes)
                        .await?
                    {
                        Opened::Reading(batches) => self.current.insert((object, batches)),
                        Opened::Gone(gone) => {
                            tracing::warn!(
                                bucket = %object.bucket,
                                key = %object.key,
                                named = %object.version(),
                                answer = %gone.answer,
                                "the version this S3 notification names is gone (deleted, or \
                                 overwritten without versioning): not read, counted as gone"
                            );
                            self.gone.push(gone);
                            // Done with, as far as a checkpoint is concerned: a retry must
                            // not count its items against the next object.
                            self.objects_done += 1;
                            self.items_done = 0;
                            self.skip = 0;
                            continue;
                        }
                    }
                }
            };
            match batches.next().await {
                Some(batch) => {
                    let mut batch = batch?;
                    // Settled by an earlier try: not this run's items.
                    let skipped = batch
                        .len()
                        .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                    batch.drain(..skipped);
                    self.skip -= skipped as u64;
                    let version = identity_version(object);
                    let items: Vec<Item<u64>> = batch
                        .into_iter()
                        .map(|decoded| {
                            self.read += 1;
                            // The object's version and the record's line.
                            let identity = super::line_of(&decoded).map(|line| {
                                format!("s3/{}/{}@{version}#{line}", object.bucket, object.key)
                            });
                            Item {
                                id: self.read,
                                group: None,
                                position: identity,
                                first_position: None,
                                delivered: Vec::new(),
                                decoded,
                            }
                        })
                        .collect();
                    // Even none (blank lines, or items an earlier try settled): reading
                    // them took time, and the pipeline checks its budget between batches.
                    return Ok(Some(items));
                }
                None => {
                    tracing::info!(bucket = %object.bucket, key = %object.key, "object read");
                    if let Some((_, batches)) = self.current.take() {
                        batches.finish().await;
                    }
                    self.objects_done += 1;
                    self.items_done = 0;
                    self.skip = 0;
                }
            }
        }
    }

    fn redelivers(&self) -> bool {
        false
    }

    async fn settle(&mut self, settled: Vec<(u64, Verdict)>) -> Result<(), SourceError> {
        self.items_done += settled.len() as u64;
        Ok(())
    }

    async fn out_of_time(&mut self) -> Result<OutOfTime, SourceError> {
        if self.record_progress().await? {
            tracing::warn!(
                objects_done = self.objects_done,
                items_done = self.items_done,
                "out of time: recorded how far this S3 notification got, for the retry"
            );
        }
        Ok(OutOfTime::FailTheRun)
    }
}

impl ObjectSource {
    /// Writes how far this notification got (objects finished, items settled of the
    /// next), so that a retry resumes there; `false` without checkpoints.
    pub async fn record_progress(&self) -> Result<bool, SourceError> {
        let Some((checkpoints, key)) = &self.checkpoints else {
            return Ok(false);
        };
        if !self.progress_known {
            // Not read yet, or it could not be: this run knows nothing of the progress
            // of earlier ones, and the checkpoint they left stays.
            return Ok(false);
        }
        let checkpoint = Checkpoint {
            objects: self.names.clone(),
            objects_done: self.objects_done,
            items_done: self.items_done,
        };
        checkpoints.write(key, &checkpoint).await?;
        tracing::info!(checkpoint = %key, "progress recorded for the retry");
        Ok(true)
    }
}

/// How an object is read, from its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectLayout {
    /// A line-based format, gzip-compressed or not.
    Lines(InputFormat, bool),
    /// Parquet.
    Parquet,
}

/// How an item's identity names the version of its object: the ETag, and where the
/// bucket keeps versions the version id too (`ETAG?versionId=V`), so that the same bytes
/// written twice are two inputs, as a file rewritten in place is.
fn identity_version(object: &ObjectRef) -> String {
    let etag = object.etag.as_deref().unwrap_or_default();
    match &object.version_id {
        Some(version) => format!("{etag}?versionId={version}"),
        None => etag.to_owned(),
    }
}

/// The version a notification names is no longer in S3, so nothing of it can be read:
/// deleted, or (named by its ETag) overwritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object} ({named}) is gone (S3 answered {answer}): not read")]
pub struct Gone {
    /// `s3://BUCKET/KEY`.
    pub object: String,
    /// The version named: `version V`, or `ETag E`.
    pub named: String,
    /// S3's answer to the pinned read: `404 NoSuchVersion`, `412 PreconditionFailed`, ...
    pub answer: String,
}

/// An object opened for reading, or word that the version its notification names is gone.
pub enum Opened {
    /// Its records, a batch at a time.
    Reading(ObjectBatches),
    /// The version named is gone: there is nothing to read.
    Gone(Gone),
}

/// Whether S3's answer (`status`, and the error code of its body) to a read pinned to
/// `version` says that version is gone, rather than that this read failed (access,
/// throttling, a malformed version id: those fail the invocation, and S3's retry may
/// succeed). A read that names no version never finds it gone: a missing key fails it,
/// as it always did.
fn gone_answer(version: ObjectVersion<'_>, status: u16, code: Option<&str>) -> Option<String> {
    let gone = match (version, status, code) {
        (ObjectVersion::Current, ..) => false,
        // No such version (deleted), or no such key (every version of it deleted, or,
        // named by its ETag, the object deleted).
        (_, 404, Some("NoSuchVersion" | "NoSuchKey")) => true,
        // `If-Match` on the ETag refused: the key holds another write now.
        (ObjectVersion::ETag(_), 412, _) => true,
        // The version id names a delete marker: there is no object to read.
        (ObjectVersion::Id(_), 405, _) => true,
        _ => false,
    };
    gone.then(|| match code {
        Some(code) => format!("{status} {code}"),
        None => status.to_string(),
    })
}

/// The layout of an object, from its key.
pub fn format_for_key(key: &str) -> Result<ObjectLayout, SourceError> {
    let (stem, gzip) = match key.strip_suffix(".gz") {
        Some(stem) => (stem, true),
        None => (key, false),
    };
    let extension = stem
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let format = match extension.as_str() {
        "jsonl" | "ndjson" | "json" => InputFormat::Jsonl,
        "csv" => InputFormat::Csv,
        "txt" | "log" => InputFormat::Lines,
        "parquet" if !gzip => return Ok(ObjectLayout::Parquet),
        _ => {
            return Err(SourceError::Format(format!(
                "{key}: cannot tell the format from the extension (.jsonl, .csv, .txt, optionally .gz, or .parquet)"
            )));
        }
    };
    Ok(ObjectLayout::Lines(format, gzip))
}

/// A stream of record batches read from one S3 object on a blocking thread.
pub struct ObjectBatches {
    name: String,
    receiver: mpsc::Receiver<Result<Vec<Decoded>, SourceError>>,
    /// `None` once joined.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl ObjectBatches {
    /// Starts reading the version of `object` its notification names (the one read of
    /// it: lines and Parquet alike come from this response's body), or finds that version
    /// gone. At most one batch waits while the caller processes one.
    pub async fn open(
        aws: &AwsClients,
        object: &ObjectRef,
        batch_size: usize,
        max_record_bytes: usize,
    ) -> Result<Opened, SourceError> {
        let name = format!("s3://{}/{}", object.bucket, object.key);
        let label = name.clone();
        let layout = format_for_key(&object.key)?;
        let version = object.version();
        let mut request = aws.s3.get_object().bucket(&object.bucket).key(&object.key);
        request = match version {
            ObjectVersion::Id(id) => request.version_id(id),
            // Quoted, as HTTP writes an entity tag (S3 takes it bare too).
            ObjectVersion::ETag(etag) => request.if_match(format!("\"{etag}\"")),
            ObjectVersion::Current => request,
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                if let Some(answer) =
                    status.and_then(|status| gone_answer(version, status, e.code()))
                {
                    return Ok(Opened::Gone(Gone {
                        object: name,
                        named: version.to_string(),
                        answer,
                    }));
                }
                let what = match version {
                    ObjectVersion::Current => name,
                    named => format!("{name} ({named})"),
                };
                return Err(AwsError::of(what, &e).into());
            }
        };
        let (sender, receiver) = mpsc::channel(1);
        let (format, gzip) = match layout {
            ObjectLayout::Lines(format, gzip) => (format, gzip),
            ObjectLayout::Parquet => {
                let file = download(response.body, &name).await?;
                let reader = tokio::task::spawn_blocking(move || {
                    read_parquet(file, &name, batch_size, &sender)
                });
                return Ok(Opened::Reading(Self {
                    name: label,
                    receiver,
                    reader: Some(reader),
                }));
            }
        };
        let body = SyncIoBridge::new(response.body.into_async_read());
        let reader = tokio::task::spawn_blocking(move || {
            let raw: Box<dyn BufRead + Send> = if gzip {
                Box::new(BufReader::with_capacity(
                    1 << 16,
                    flate2::read::MultiGzDecoder::new(body),
                ))
            } else {
                Box::new(BufReader::with_capacity(1 << 16, body))
            };
            let limits = super::InputLimits {
                record: max_record_bytes,
                ..super::InputLimits::default()
            };
            let mut source = match FileSource::within(raw, format, &name, limits) {
                Ok(source) => source.labelled("s3"),
                Err(e) => {
                    let _ = sender.blocking_send(Err(e));
                    return;
                }
            };
            // A batch may come short, or empty, after blank lines (see `next_items`).
            loop {
                let batch: Vec<Decoded> = match source.next_items(batch_size) {
                    Ok(Some(items)) => items.into_iter().map(|(decoded, _)| decoded).collect(),
                    Ok(None) => return,
                    Err(e) => {
                        let _ = sender.blocking_send(Err(e));
                        return;
                    }
                };
                if sender.blocking_send(Ok(batch)).is_err() {
                    return;
                }
            }
        });
        Ok(Opened::Reading(Self {
            name: label,
            receiver,
            reader: Some(reader),
        }))
    }

    /// The next batch (empty after blank lines only); `None` at the end of the object. A
    /// reader that died (a panic on a hostile file) is an error, never a silent end of
    /// the object.
    pub async fn next(&mut self) -> Option<Result<Vec<Decoded>, SourceError>> {
        if let Some(batch) = self.receiver.recv().await {
            return Some(batch);
        }
        let reader = self.reader.take()?;
        match reader.await {
            Ok(()) => None,
            Err(e) => Some(Err(SourceError::Read {
                input: self.name.clone(),
                source: std::io::Error::other(format!("the reader failed: {e}")),
            })),
        }
    }

    /// Waits for the reading thread to finish.
    pub async fn finish(self) {
        drop(self.receiver);
        if let Some(reader) = self.reader {
            let _ = reader.await;
        }
    }
}

/// Streams an object's body into an anonymous temporary file.
async fn download(
    mut body: aws_sdk_s3::primitives::ByteStream,
    name: &str,
) -> Result<std::fs::File, SourceError> {
    use std::io::{Seek, Write};
    let read_error = |source: std::io::Error| SourceError::Read {
        input: name.to_owned(),
        source,
    };
    let mut file = tempfile::tempfile().map_err(read_error)?;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| read_error(std::io::Error::other(e)))?
    {
        file.write_all(&chunk).map_err(read_error)?;
    }
    file.rewind().map_err(read_error)?;
    Ok(file)
}

/// Sends a Parquet file's rows as JSON-object records, a batch at a time.
fn read_parquet(
    file: std::fs::File,
    name: &str,
    batch_size: usize,
    sender: &mpsc::Sender<Result<Vec<Decoded>, SourceError>>,
) {
    let fail = |reason: super::parquet::ParquetReadError| {
        let error = std::io::Error::other(reason);
        let _ = sender.blocking_send(Err(SourceError::Read {
            input: name.to_owned(),
            source: error,
        }));
    };
    let batches = match super::parquet::json_rows(file, batch_size) {
        Ok(batches) => batches,
        Err(reason) => return fail(reason),
    };
    let mut row = 0u64;
    for batch in batches {
        let rows = match batch {
            Ok(rows) => rows,
            Err(reason) => return fail(reason),
        };
        let records = rows
            .into_iter()
            .map(|json| {
                row += 1;
                Ok(parquet_row(name, row, json))
            })
            .collect();
        if sender.blocking_send(Ok(records)).is_err() {
            return;
        }
    }
}

/// Row `row` (counted from 1) of Parquet object `name`, as JSON.
fn parquet_row(name: &str, row: u64, json: Vec<u8>) -> crate::record::Record {
    crate::record::Record {
        key: None,
        payload: json.into(),
        attributes: vec![
            ("source".into(), "s3".into()),
            ("file".into(), name.to_owned()),
            ("row".into(), row.to_string()),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parquet_row_names_its_object_and_row_with_shared_names() {
        let record = parquet_row("in/a.parquet", 7, b"{}".to_vec());
        assert_eq!(crate::record::assert_shared_names(&record), 3);
        assert_eq!(record.attribute("row"), Some("7"));
        assert_eq!(record.attribute("file"), Some("in/a.parquet"));
    }

    #[test]
    fn only_a_pinned_read_finds_its_version_gone() {
        let id = ObjectVersion::Id("v1");
        let etag = ObjectVersion::ETag("e1");
        assert_eq!(
            gone_answer(id, 404, Some("NoSuchVersion")).as_deref(),
            Some("404 NoSuchVersion")
        );
        assert!(gone_answer(id, 404, Some("NoSuchKey")).is_some());
        assert!(gone_answer(etag, 404, Some("NoSuchKey")).is_some());
        assert_eq!(
            gone_answer(etag, 412, Some("PreconditionFailed")).as_deref(),
            Some("412 PreconditionFailed")
        );
        assert!(
            gone_answer(id, 405, Some("MethodNotAllowed")).is_some(),
            "a delete marker"
        );
        // Failures of the read, not news about the version: the invocation fails.
        assert_eq!(gone_answer(id, 403, Some("AccessDenied")), None);
        assert_eq!(gone_answer(id, 400, Some("InvalidArgument")), None);
        assert_eq!(gone_answer(id, 404, Some("NoSuchBucket")), None);
        assert_eq!(gone_answer(id, 503, Some("SlowDown")), None);
        // Nothing named: a missing key fails the invocation, as before.
        assert_eq!(
            gone_answer(ObjectVersion::Current, 404, Some("NoSuchKey")),
            None
        );
    }

    #[test]
    fn an_identity_names_the_version_read() {
        let object = |version: Option<&str>| ObjectRef {
            bucket: "b".into(),
            key: "k.jsonl".into(),
            etag: Some("e1".into()),
            version_id: version.map(str::to_owned),
        };
        assert_eq!(identity_version(&object(None)), "e1");
        assert_eq!(identity_version(&object(Some("v1"))), "e1?versionId=v1");
    }

    #[test]
    fn format_comes_from_the_extension() {
        assert_eq!(
            format_for_key("a/b.jsonl.gz").ok(),
            Some(ObjectLayout::Lines(InputFormat::Jsonl, true))
        );
        assert_eq!(
            format_for_key("a/b.CSV").ok(),
            Some(ObjectLayout::Lines(InputFormat::Csv, false))
        );
        assert_eq!(
            format_for_key("a/b.parquet").ok(),
            Some(ObjectLayout::Parquet)
        );
        assert!(
            format_for_key("a/b.parquet.gz").is_err_and(|e| e.to_string().contains("extension"))
        );
        assert!(format_for_key("a/b").is_err_and(|e| e.to_string().contains("extension")));
    }
}
