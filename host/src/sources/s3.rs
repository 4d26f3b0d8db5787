//! S3 objects as a source: streamed from `GetObject` and decoded in batches, so memory
//! stays bounded by a couple of batches whatever the object's size.
//!
//! The format comes from the key: `.jsonl`, `.ndjson`, `.json` (JSON lines), `.csv`
//! (CSV with a header), `.txt`/`.log` (lines), each optionally `.gz`; `.parquet` (each
//! row becomes a JSON object). Parquet needs random access: the object is streamed to a
//! temporary file first (disk, not memory), then read a batch of rows at a time.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};

use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use super::checkpoint::{Checkpoint, Checkpoints};
use super::{Decoded, FileSource, InputFormat, Item, ObjectRef, Source, SourceError};
use crate::aws::{AwsClients, AwsError};
use crate::record::Verdict;

/// The objects an S3 notification names, read one after the other in batches. S3
/// invokes asynchronously (no partial answers): nothing is redelivered item by item,
/// and a failure to read an object fails the invocation. With checkpoints, a run that
/// runs out of time records how far it got and the retry resumes there.
pub struct ObjectSource {
    aws: AwsClients,
    objects: VecDeque<ObjectRef>,
    current: Option<(ObjectRef, ObjectBatches)>,
    read: u64,
    max_record_bytes: usize,
    checkpoints: Option<(Checkpoints, String)>,
    /// Read the checkpoint yet?
    started: bool,
    /// A checkpoint was found: delete it once everything is done.
    resumed: bool,
    /// Objects finished, in order.
    objects_done: usize,
    /// Items of the current object settled (by this run or, resumed, an earlier one).
    items_done: u64,
    /// Items of the current object an earlier run settled, still to skip.
    skip: u64,
    names: Vec<String>,
}

impl ObjectSource {
    /// A source over `objects`, in order; lines longer than `max_record_bytes` are
    /// dead-lettered, cut.
    pub fn new(aws: AwsClients, objects: Vec<ObjectRef>, max_record_bytes: usize) -> Self {
        let names = objects
            .iter()
            .map(|o| format!("s3://{}/{}", o.bucket, o.key))
            .collect();
        Self {
            aws,
            objects: objects.into(),
            current: None,
            read: 0,
            max_record_bytes,
            checkpoints: None,
            started: false,
            resumed: false,
            objects_done: 0,
            items_done: 0,
            skip: 0,
            names,
        }
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
                    let batches =
                        ObjectBatches::open(&self.aws, &object, max, self.max_record_bytes).await?;
                    self.current.insert((object, batches))
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
                    let items: Vec<Item<u64>> = batch
                        .into_iter()
                        .map(|decoded| {
                            self.read += 1;
                            // The object's version (its ETag) and the record's line.
                            let identity = super::line_of(&decoded).map(|line| {
                                format!(
                                    "s3/{}/{}@{}#{line}",
                                    object.bucket,
                                    object.key,
                                    object.etag.as_deref().unwrap_or("").trim_matches('"')
                                )
                            });
                            Item {
                                id: self.read,
                                group: None,
                                identity,
                                origin: None,
                                delivered: Vec::new(),
                                decoded,
                            }
                        })
                        .collect();
                    if !items.is_empty() {
                        return Ok(Some(items));
                    }
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

    async fn suspend(&mut self) -> Result<bool, SourceError> {
        let Some((checkpoints, key)) = &self.checkpoints else {
            return Ok(false);
        };
        let checkpoint = Checkpoint {
            objects: self.names.clone(),
            objects_done: self.objects_done,
            items_done: self.items_done,
        };
        checkpoints.write(key, &checkpoint).await?;
        tracing::warn!(
            checkpoint = %key,
            objects_done = checkpoint.objects_done,
            items_done = checkpoint.items_done,
            "out of time: recorded how far this S3 notification got, for the retry"
        );
        Ok(false)
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
    /// Starts reading `object`: at most one batch waits while the caller processes one.
    pub async fn open(
        aws: &AwsClients,
        object: &ObjectRef,
        batch_size: usize,
        max_record_bytes: usize,
    ) -> Result<Self, SourceError> {
        let name = format!("s3://{}/{}", object.bucket, object.key);
        let label = name.clone();
        let layout = format_for_key(&object.key)?;
        let response = aws
            .s3
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
            .map_err(|e| AwsError::of(&name, &e))?;
        let (sender, receiver) = mpsc::channel(1);
        let (format, gzip) = match layout {
            ObjectLayout::Lines(format, gzip) => (format, gzip),
            ObjectLayout::Parquet => {
                let file = download(response.body, &name).await?;
                let reader = tokio::task::spawn_blocking(move || {
                    read_parquet(file, &name, batch_size, &sender)
                });
                return Ok(Self {
                    name: label,
                    receiver,
                    reader: Some(reader),
                });
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
            let source = match FileSource::within(raw, format, &name, limits) {
                Ok(source) => source.labelled("s3"),
                Err(e) => {
                    let _ = sender.blocking_send(Err(e));
                    return;
                }
            };
            let mut batch = Vec::with_capacity(batch_size);
            for item in source {
                match item {
                    Ok(decoded) => batch.push(decoded),
                    Err(e) => {
                        let _ = sender.blocking_send(Err(e));
                        return;
                    }
                }
                if batch.len() == batch_size
                    && sender
                        .blocking_send(Ok(std::mem::take(&mut batch)))
                        .is_err()
                {
                    return;
                }
            }
            if !batch.is_empty() {
                let _ = sender.blocking_send(Ok(batch));
            }
        });
        Ok(Self {
            name: label,
            receiver,
            reader: Some(reader),
        })
    }

    /// The next batch; `None` at the end of the object. A reader that died (a panic on
    /// a hostile file) is an error, never a silent end of the object.
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
