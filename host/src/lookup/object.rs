//! A table held whole in memory: an S3 object or a local file of JSON lines, CSV or
//! Parquet, keyed by one column. Loaded at start; after each TTL the next lookup asks
//! whether it changed (S3: a GET conditional on the ETag, 304 when not; a file: its
//! modification time and size) and reloads it if it did. A reload that fails keeps the
//! rows already loaded (logged); only a table never loaded is unavailable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::Mutex;

use super::spec::TableFormat;
use crate::aws::AwsClients;

/// Rows by key; each row a JSON object.
pub(super) type Rows = Arc<HashMap<String, Bytes>>;

/// Where the object comes from.
pub(super) enum Origin {
    S3 {
        aws: AwsClients,
        bucket: String,
        key: String,
    },
    File(std::path::PathBuf),
}

/// What identifies a version of the object: an ETag, or a file's mtime and size.
#[derive(Clone, PartialEq, Eq, Debug)]
enum Version {
    Etag(String),
    File(SystemTime, u64),
}

struct Loaded {
    rows: Rows,
    version: Option<Version>,
    checked: Instant,
}

/// One object table.
pub(super) struct ObjectTable {
    origin: Origin,
    column: String,
    format: TableFormat,
    /// Bytes the object may have; a larger one is refused before it is read.
    max_bytes: u64,
    ttl: Duration,
    loaded: Mutex<Option<Loaded>>,
}

/// The answer to a lookup: the rows, and whether getting them needed a request.
pub(super) struct Answer {
    pub(super) rows: Rows,
    pub(super) fetched: bool,
}

impl ObjectTable {
    pub(super) fn new(
        origin: Origin,
        column: String,
        format: TableFormat,
        max_bytes: u64,
        ttl: Duration,
    ) -> Self {
        Self {
            origin,
            column,
            format,
            max_bytes,
            ttl,
            loaded: Mutex::new(None),
        }
    }

    /// The rows, loaded or refreshed first when due; a reload not done by `until` is
    /// given up (the rows loaded before are served).
    pub(super) async fn rows(&self, until: Instant) -> Result<Answer, String> {
        let mut loaded = self.loaded.lock().await;
        if let Some(current) = loaded.as_ref()
            && current.checked.elapsed() < self.ttl
        {
            return Ok(Answer {
                rows: current.rows.clone(),
                fetched: false,
            });
        }
        let known = loaded.as_ref().and_then(|l| l.version.clone());
        let fetched = tokio::time::timeout_at(until.into(), self.fetch(known.as_ref()))
            .await
            .unwrap_or_else(|_| Err("not read before the invocation's time ran out".into()));
        match fetched {
            Ok(None) => {
                let current = loaded
                    .as_mut()
                    .ok_or("a table answered `unchanged` before it was loaded")?;
                current.checked = Instant::now();
                Ok(Answer {
                    rows: current.rows.clone(),
                    fetched: true,
                })
            }
            Ok(Some((bytes, version))) => {
                let rows: Rows = Arc::new(parse(&bytes, self.format, &self.column)?);
                *loaded = Some(Loaded {
                    rows: rows.clone(),
                    version,
                    checked: Instant::now(),
                });
                Ok(Answer {
                    rows,
                    fetched: true,
                })
            }
            Err(e) => match loaded.as_mut() {
                // The rows already loaded stand; asked again after another TTL.
                Some(current) => {
                    tracing::warn!(table = %self.describe(), error = %e, "cannot refresh a lookup table: serving the rows loaded before");
                    current.checked = Instant::now();
                    Ok(Answer {
                        rows: current.rows.clone(),
                        fetched: true,
                    })
                }
                None => Err(e),
            },
        }
    }

    /// The object's bytes and version, or `None` when it is still `known`.
    async fn fetch(
        &self,
        known: Option<&Version>,
    ) -> Result<Option<(Bytes, Option<Version>)>, String> {
        match &self.origin {
            Origin::File(path) => {
                let meta =
                    std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let version = meta.modified().ok().map(|m| Version::File(m, meta.len()));
                if version.is_some() && version.as_ref() == known {
                    return Ok(None);
                }
                self.check_size(meta.len())?;
                let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                self.check_size(bytes.len() as u64)?;
                Ok(Some((bytes.into(), version)))
            }
            Origin::S3 { aws, bucket, key } => {
                let mut get = aws.s3.get_object().bucket(bucket).key(key);
                if let Some(Version::Etag(etag)) = known {
                    get = get.if_none_match(etag);
                }
                let object = match get.send().await {
                    Ok(object) => object,
                    Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 304) => {
                        return Ok(None);
                    }
                    Err(e) => return Err(crate::aws::describe_error(&e)),
                };
                let length = object.content_length().and_then(|l| u64::try_from(l).ok());
                self.check_size(length.unwrap_or(0))?;
                let version = object.e_tag().map(|e| Version::Etag(e.to_owned()));
                // Read at most one byte past the cap, whatever the length said.
                let mut body = object.body.into_async_read();
                let mut bytes = Vec::new();
                use tokio::io::AsyncReadExt as _;
                (&mut body)
                    .take(self.max_bytes + 1)
                    .read_to_end(&mut bytes)
                    .await
                    .map_err(|e| e.to_string())?;
                self.check_size(bytes.len() as u64)?;
                Ok(Some((bytes.into(), version)))
            }
        }
    }

    fn check_size(&self, bytes: u64) -> Result<(), String> {
        if bytes > self.max_bytes {
            return Err(format!(
                "{bytes} bytes, more than a lookup table may hold ({} bytes; PIPELINE_LOOKUP_MAX_TABLE_MB)",
                self.max_bytes
            ));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match &self.origin {
            Origin::S3 { bucket, key, .. } => format!("s3://{bucket}/{key}"),
            Origin::File(path) => path.display().to_string(),
        }
    }
}

/// The rows of a table's bytes, by the value of `column`. A row without the column (or
/// with a value that is not a string or a number), or that does not parse, refuses the
/// whole table, naming the row: a table half read would answer "no such key" for rows
/// that exist.
pub(super) fn parse(
    bytes: &[u8],
    format: TableFormat,
    column: &str,
) -> Result<HashMap<String, Bytes>, String> {
    match format {
        TableFormat::JsonLines => json_lines(bytes, column),
        TableFormat::Csv => csv(bytes, column),
        TableFormat::Parquet => json_lines(&parquet_to_json_lines(bytes)?, column),
    }
}

fn json_lines(bytes: &[u8], column: &str) -> Result<HashMap<String, Bytes>, String> {
    let mut rows = HashMap::new();
    for (number, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let row: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line)
            .map_err(|e| format!("row {}: not a JSON object: {e}", number + 1))?;
        let key = key_of(&row, column).ok_or_else(|| {
            format!(
                "row {}: no string or number `{column}` (the key column)",
                number + 1
            )
        })?;
        insert_once(&mut rows, key, Bytes::copy_from_slice(line), number + 1)?;
    }
    Ok(rows)
}

/// Adds a row; a key met twice refuses the table (which row would a lookup mean?).
fn insert_once(
    rows: &mut HashMap<String, Bytes>,
    key: String,
    row: Bytes,
    number: usize,
) -> Result<(), String> {
    match rows.entry(key) {
        std::collections::hash_map::Entry::Occupied(taken) => Err(format!(
            "row {number}: key {:?} again (a key names one row)",
            taken.key()
        )),
        std::collections::hash_map::Entry::Vacant(free) => {
            free.insert(row);
            Ok(())
        }
    }
}

fn key_of(row: &serde_json::Map<String, serde_json::Value>, column: &str) -> Option<String> {
    match row.get(column)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// CSV with a header: each row becomes a JSON object of its columns' texts.
fn csv(bytes: &[u8], column: &str) -> Result<HashMap<String, Bytes>, String> {
    let mut reader = csv_core::Reader::new();
    let mut input = bytes;
    let mut field = vec![0u8; 1024];
    let mut fields: Vec<String> = Vec::new();
    let mut current = Vec::new();
    let mut header: Option<Vec<String>> = None;
    let mut rows = HashMap::new();
    let mut number = 0usize;
    loop {
        let (result, read, written) = reader.read_field(input, &mut field);
        input = &input[read..];
        current.extend_from_slice(&field[..written]);
        match result {
            // All input read: the next call, with none, ends the last record. A field
            // longer than the buffer comes in pieces.
            csv_core::ReadFieldResult::InputEmpty | csv_core::ReadFieldResult::OutputFull => {}
            csv_core::ReadFieldResult::Field { record_end } => {
                let text = String::from_utf8(std::mem::take(&mut current))
                    .map_err(|_| format!("row {}: not UTF-8", number + 1))?;
                fields.push(text);
                if record_end {
                    number += 1;
                    let record = std::mem::take(&mut fields);
                    match &header {
                        None => header = Some(record),
                        Some(names) => {
                            if record.len() == 1 && record[0].is_empty() {
                                continue;
                            }
                            if record.len() != names.len() {
                                return Err(format!(
                                    "row {number}: {} fields, the header has {}",
                                    record.len(),
                                    names.len()
                                ));
                            }
                            let row: serde_json::Map<String, serde_json::Value> = names
                                .iter()
                                .cloned()
                                .zip(record.into_iter().map(serde_json::Value::String))
                                .collect();
                            let key = key_of(&row, column).ok_or_else(|| {
                                format!("the header has no column `{column}` (the key column)")
                            })?;
                            let json = serde_json::to_vec(&row).map_err(|e| e.to_string())?;
                            insert_once(&mut rows, key, json.into(), number)?;
                        }
                    }
                }
            }
            csv_core::ReadFieldResult::End => break,
        }
    }
    Ok(rows)
}

/// A Parquet file's rows as JSON lines (arrow's JSON writer: each column's type kept).
fn parquet_to_json_lines(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::copy_from_slice(bytes))
        .and_then(|b| b.build())
        .map_err(|e| format!("not a Parquet file: {e}"))?;
    let mut out = Vec::new();
    {
        let mut writer = arrow_json::LineDelimitedWriter::new(&mut out);
        for batch in reader {
            let batch = batch.map_err(|e| format!("Parquet: {e}"))?;
            writer
                .write(&batch)
                .map_err(|e| format!("Parquet to JSON: {e}"))?;
        }
        writer
            .finish()
            .map_err(|e| format!("Parquet to JSON: {e}"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(rows: &HashMap<String, Bytes>, key: &str) -> serde_json::Value {
        serde_json::from_slice(&rows[key]).expect("a JSON row")
    }

    #[test]
    fn json_lines_and_csv_rows_by_their_key_column() {
        let rows = parse(
            b"{\"id\":\"u1\",\"segment\":\"gold\"}\n\n{\"id\":7,\"segment\":\"new\"}\n",
            TableFormat::JsonLines,
            "id",
        )
        .expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(value(&rows, "7")["segment"], "new");
        let rows =
            parse(b"sku,price\r\np1,\"1,50\"\np2,3\n", TableFormat::Csv, "sku").expect("rows");
        assert_eq!(
            value(&rows, "p1"),
            serde_json::json!({"sku": "p1", "price": "1,50"})
        );
        assert_eq!(value(&rows, "p2")["price"], "3");
    }

    #[test]
    fn a_bad_row_refuses_the_table_naming_it() {
        for (bytes, format, why) in [
            (
                &b"{\"id\":\"a\"}\nnot json\n"[..],
                TableFormat::JsonLines,
                "row 2",
            ),
            (
                b"{\"id\":\"a\"}\n{\"name\":\"b\"}\n",
                TableFormat::JsonLines,
                "row 2: no string",
            ),
            (b"id,x\na,1\nb\n", TableFormat::Csv, "row 3: 1 fields"),
            (b"name\na\n", TableFormat::Csv, "no column `id`"),
            (
                b"{\"id\":\"a\"}\n{\"id\":\"a\"}\n",
                TableFormat::JsonLines,
                "row 2: key \"a\" again",
            ),
            (b"PAR1 nope", TableFormat::Parquet, "not a Parquet file"),
        ] {
            let error = parse(bytes, format, "id").expect_err(why);
            assert!(error.contains(why), "{error}");
        }
    }
}
