//! S3 objects as a source: streamed from `GetObject` and decoded in batches, so memory
//! stays bounded by a couple of batches whatever the object's size.
//!
//! The format comes from the key: `.jsonl`, `.ndjson`, `.json` (JSON lines), `.csv`
//! (CSV with a header), `.txt`/`.log` (lines), each optionally `.gz`.

use std::io::{BufRead, BufReader};

use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use super::{Decoded, FileSource, InputFormat, ObjectRef, SourceError};
use crate::aws::{AwsClients, describe_error};

/// The input format and compression of an object, from its key.
pub fn format_for_key(key: &str) -> Result<(InputFormat, bool), String> {
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
        "parquet" => {
            return Err(format!(
                "{key}: Parquet objects are not supported by this host version"
            ));
        }
        _ => {
            return Err(format!(
                "{key}: cannot tell the format from the extension (.jsonl, .csv or .txt, optionally .gz)"
            ));
        }
    };
    Ok((format, gzip))
}

/// A stream of record batches read from one S3 object on a blocking thread.
pub struct ObjectBatches {
    receiver: mpsc::Receiver<Result<Vec<Decoded>, SourceError>>,
    reader: tokio::task::JoinHandle<()>,
}

impl ObjectBatches {
    /// Starts reading `object`: at most one batch waits while the caller processes one.
    pub async fn open(
        aws: &AwsClients,
        object: &ObjectRef,
        batch_size: usize,
    ) -> Result<Self, String> {
        let name = format!("s3://{}/{}", object.bucket, object.key);
        let (format, gzip) = format_for_key(&object.key)?;
        let response = aws
            .s3
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
            .map_err(|e| format!("{name}: {}", describe_error(&e)))?;
        let body = SyncIoBridge::new(response.body.into_async_read());
        let (sender, receiver) = mpsc::channel(1);
        let reader = tokio::task::spawn_blocking(move || {
            let raw: Box<dyn BufRead> = if gzip {
                Box::new(BufReader::with_capacity(
                    1 << 16,
                    flate2::read::MultiGzDecoder::new(body),
                ))
            } else {
                Box::new(BufReader::with_capacity(1 << 16, body))
            };
            let source = match FileSource::new(raw, format, &name) {
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
        Ok(Self { receiver, reader })
    }

    /// The next batch; `None` at the end of the object.
    pub async fn next(&mut self) -> Option<Result<Vec<Decoded>, SourceError>> {
        self.receiver.recv().await
    }

    /// Waits for the reading thread to finish.
    pub async fn finish(self) {
        drop(self.receiver);
        let _ = self.reader.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_comes_from_the_extension() {
        assert_eq!(
            format_for_key("a/b.jsonl.gz"),
            Ok((InputFormat::Jsonl, true))
        );
        assert_eq!(format_for_key("a/b.CSV"), Ok((InputFormat::Csv, false)));
        assert!(format_for_key("a/b.parquet").is_err_and(|e| e.contains("Parquet")));
        assert!(format_for_key("a/b").is_err_and(|e| e.contains("extension")));
    }
}
