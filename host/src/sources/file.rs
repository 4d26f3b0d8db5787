//! Local input for `host run`: JSON lines, CSV with a header, or raw lines.

use std::io::{BufRead, Read};

use bytes::Bytes;

use super::capped::{CsvRows, Step, csv_headers, csv_row_to_json};
use super::events::{self, DecodedEvent, EventError, EventKind};
use super::{Decoded, InputLimits, Item, Source, SourceError, Undecodable};
use crate::record::{FailureKind, Record, Verdict};

/// How `host run` splits its input into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One JSON document per line; a line that is not JSON goes to the dead-letter queue.
    Jsonl,
    /// CSV with a header row; each row becomes a JSON object of header -> text.
    Csv,
    /// Each line is a record, as is.
    Lines,
    /// One AWS event JSON (a captured Lambda event): `None` (`--format event`) detects
    /// its source from its shape; `Some(kind)` (`--format kinesis-event`, ...) reads it
    /// as that kind's (`s3-event`: the objects it names are read from S3).
    Event(Option<EventKind>),
}

/// Every format, in the order `host run --help` lists them: the line formats, `event`,
/// then one per event kind ([`EventKind::ALL`]).
static FORMATS: [InputFormat; 4 + EventKind::ALL.len()] = {
    let mut formats = [InputFormat::Event(None); 4 + EventKind::ALL.len()];
    formats[0] = InputFormat::Jsonl;
    formats[1] = InputFormat::Csv;
    formats[2] = InputFormat::Lines;
    let mut i = 0;
    while i < EventKind::ALL.len() {
        formats[4 + i] = InputFormat::Event(Some(EventKind::ALL[i]));
        i += 1;
    }
    formats
};

/// `--format`'s values: `jsonl`, `csv`, `lines`, `event`, and for each event kind its
/// name and `-event` (`kinesis-event`, ...; see [`EventKind::input_format`]).
impl clap::ValueEnum for InputFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &FORMATS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let (name, help) = match self {
            Self::Jsonl => (
                "jsonl",
                "One JSON document per line; a line that is not JSON goes to the dead-letter queue",
            ),
            Self::Csv => (
                "csv",
                "CSV with a header row; each row becomes a JSON object of header -> text",
            ),
            Self::Lines => ("lines", "Each line is a record, as is"),
            Self::Event(None) => (
                "event",
                "One AWS event JSON (a captured Lambda event); its source is detected",
            ),
            Self::Event(Some(kind)) => kind.input_format(),
        };
        Some(clap::builder::PossibleValue::new(name).help(help))
    }
}

/// Largest event `host run` reads (Lambda's own payload limit is 6 MB).
pub const MAX_EVENT_BYTES: u64 = 64 << 20;

/// Reads records from a file or stdin. Blank lines are skipped in every format, but
/// count towards a batch (see [`FileSource::next_items`]).
pub struct FileSource {
    input: String,
    /// Items read so far.
    read: u64,
    /// Longest record (line) taken whole; longer ones are dead-lettered, cut.
    max_record_bytes: usize,
    /// The `source` attribute of every record (`file`, `s3`).
    source: &'static str,
    /// The field naming a direct invocation's records.
    id_field: String,
    /// Which contents of the input this is (its size and time), when known: a line's
    /// identity names it.
    version: Option<String>,
    reader: Reader,
}

/// An item and its source position.
type Positioned = (Decoded, Option<String>);

enum Reader {
    Lines {
        reader: Box<dyn BufRead + Send>,
        json: bool,
        line: u64,
        buffer: Vec<u8>,
    },
    Csv {
        rows: Box<CsvRows>,
        headers: Vec<String>,
    },
    /// The records of an AWS event, with their source positions; `direct`: a direct
    /// invocation's, named by their id field.
    Items {
        items: std::vec::IntoIter<super::EventItem>,
        direct: bool,
    },
}

impl FileSource {
    /// A source over `reader`; `input` names it in attributes and errors.
    pub fn new(
        reader: Box<dyn BufRead + Send>,
        format: InputFormat,
        input: &str,
    ) -> Result<Self, SourceError> {
        Self::within(reader, format, input, InputLimits::default())
    }

    /// A source over `reader` whose records stay within `limits`.
    pub fn within(
        reader: Box<dyn BufRead + Send>,
        format: InputFormat,
        input: &str,
        limits: InputLimits,
    ) -> Result<Self, SourceError> {
        let reader = match format {
            InputFormat::Jsonl | InputFormat::Lines => Reader::Lines {
                reader,
                json: format == InputFormat::Jsonl,
                line: 0,
                buffer: Vec::new(),
            },
            InputFormat::Csv => {
                let mut rows = CsvRows::new(reader, limits.record);
                let headers = csv_headers(&mut rows, limits.record).map_err(|reason| {
                    SourceError::CsvHeader {
                        input: input.to_owned(),
                        reason,
                    }
                })?;
                Reader::Csv {
                    rows: Box::new(rows),
                    headers,
                }
            }
            InputFormat::Event(kind) => {
                if kind == Some(EventKind::S3) {
                    return Err(SourceError::Event {
                        input: input.to_owned(),
                        source: EventError {
                            expected: "record-carrying".into(),
                            reason:
                                "an S3 notification names objects: read them with an ObjectSource"
                                    .into(),
                        },
                    });
                }
                let event = read_event(reader, kind, input, limits)?;
                Reader::Items {
                    direct: event.kind == EventKind::Direct,
                    items: event.items.into_iter(),
                }
            }
        };
        Ok(Self {
            input: input.to_owned(),
            read: 0,
            max_record_bytes: limits.record,
            source: "file",
            id_field: "id".into(),
            version: None,
            reader,
        })
    }

    /// The same source, its lines named as lines of this `version` of the input (its
    /// size and modification time): `file/PATH@VERSION#LINE`.
    pub fn with_version(mut self, version: &str) -> Self {
        self.version = Some(version.to_owned());
        self
    }

    /// The same source, naming a direct invocation's records by their `field`.
    pub fn with_id_field(mut self, field: &str) -> Self {
        field.clone_into(&mut self.id_field);
        self
    }

    /// The same source, naming `source` in each record's `source` attribute.
    pub fn labelled(mut self, source: &'static str) -> Self {
        self.source = source;
        self
    }

    fn record(&self, payload: Vec<u8>, line: u64) -> Record {
        Record {
            key: None,
            payload: Bytes::from(payload),
            attributes: vec![
                ("source".into(), self.source.into()),
                ("file".into(), self.input.clone()),
                ("line".into(), line.to_string()),
            ],
        }
    }

    /// The next items, at most `max`, each with its source position (the event's for an
    /// AWS event, else the file's name and version and the record's line); `None` at the
    /// end. Blank input counts too: once as many bytes of it as a record may have were
    /// skipped, the items so far come back, none even, so that the caller's time and
    /// progress are checked for input of nothing but empty lines.
    pub fn next_items(&mut self, max: usize) -> Result<Option<Vec<Positioned>>, SourceError> {
        let mut items = Vec::with_capacity(max.min(4096));
        let mut blank = 0usize;
        while items.len() < max && blank < self.max_record_bytes {
            if let Reader::Items {
                items: queued,
                direct,
            } = &mut self.reader
            {
                let Some(item) = queued.next() else { break };
                let identity = if *direct {
                    events::direct_identity(&item.decoded, &self.id_field)
                } else {
                    item.position
                };
                items.push((item.decoded, identity));
                continue;
            }
            let decoded = match self.next_read()? {
                None => break,
                Some(Next::Blank(bytes)) => {
                    blank = blank.saturating_add(bytes.max(1));
                    continue;
                }
                Some(Next::Item(decoded)) => decoded,
            };
            // Without a version (standard input) the input has no place to come back to.
            let identity = self.version.as_ref().and_then(|version| {
                super::line_of(&decoded).map(|line| format!("file/{}@{version}#{line}", self.input))
            });
            items.push((decoded, identity));
        }
        let done = items.len() < max && blank < self.max_record_bytes;
        Ok((!(done && items.is_empty())).then_some(items))
    }

    fn next_item(&mut self) -> Result<Option<Decoded>, SourceError> {
        loop {
            match self.next_read()? {
                None => return Ok(None),
                Some(Next::Item(decoded)) => return Ok(Some(decoded)),
                Some(Next::Blank(_)) => {}
            }
        }
    }

    /// One line (or CSV row) of the input: a record, or blank input skipped.
    fn next_read(&mut self) -> Result<Option<Next>, SourceError> {
        let read_error = |source| SourceError::Read {
            input: self.input.clone(),
            source,
        };
        match &mut self.reader {
            Reader::Items { items, .. } => Ok(items.next().map(|item| Next::Item(item.decoded))),
            Reader::Lines {
                reader,
                json,
                line,
                buffer,
            } => {
                buffer.clear();
                let max = self.max_record_bytes;
                let (read, cut) = read_line_capped(reader, buffer, max).map_err(read_error)?;
                if read == 0 {
                    return Ok(None);
                }
                *line += 1;
                let text = trim_line_end(buffer);
                if !cut && text.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Some(Next::Blank(read)));
                }
                let (json, line) = (*json, *line);
                if cut || text.len() > max {
                    let kept = text[..text.len().min(max)].to_vec();
                    return Ok(Some(Next::Item(Err(Undecodable {
                        record: self.record(kept, line),
                        kind: FailureKind::InputTooLarge,
                        reason: format!(
                            "line {line} is longer than the {max}-byte record limit (max-record-bytes); its first {max} bytes are kept"
                        ),
                    }))));
                }
                let payload = text.to_vec();
                let invalid = if !json {
                    None
                } else if let Err(e) = std::str::from_utf8(&payload) {
                    // serde_json does not check the bytes inside strings it skips.
                    Some(format!("line {line} is not UTF-8: {e}"))
                } else {
                    serde_json::from_slice::<serde::de::IgnoredAny>(&payload)
                        .err()
                        .map(|e| format!("line {line} is not JSON: {e}"))
                };
                let record = self.record(payload, line);
                Ok(Some(Next::Item(match invalid {
                    None => Ok(record),
                    Some(reason) => Err(Undecodable::decode(record, reason)),
                })))
            }
            Reader::Csv { rows, headers } => {
                let (line, cut, bytes) = match rows.next_step().map_err(read_error)? {
                    Step::End => return Ok(None),
                    Step::Blank(bytes) => return Ok(Some(Next::Blank(bytes))),
                    Step::Row { line, cut, bytes } => (line, cut, bytes),
                };
                // A cut row is dead-lettered even when what was kept is blank (a quoted
                // field of endless empty lines), as a long line of spaces is.
                if !cut && rows.fields().all(|f| f.trim_ascii().is_empty()) {
                    return Ok(Some(Next::Blank(bytes)));
                }
                let raw = || rows.fields().collect::<Vec<_>>().join(&b","[..]);
                if cut {
                    let max = self.max_record_bytes;
                    let mut kept = raw();
                    kept.truncate(max);
                    return Ok(Some(Next::Item(Err(Undecodable {
                        kind: FailureKind::InputTooLarge,
                        record: self.record(kept, line),
                        reason: format!(
                            "the CSV row at line {line} is longer than the {max}-byte record limit (max-record-bytes), over however many lines; its first {max} bytes are kept"
                        ),
                    }))));
                }
                let decoded = csv_row_to_json(headers, rows).map_err(|reason| (raw(), reason));
                Ok(Some(Next::Item(match decoded {
                    Ok(json) => Ok(self.record(json, line)),
                    Err((raw, reason)) => Err(Undecodable {
                        kind: crate::record::FailureKind::Decode,
                        record: self.record(raw, line),
                        reason: format!("CSV line {line}: {reason}"),
                    }),
                })))
            }
        }
    }
}

/// What one read of the input found.
enum Next {
    /// A record, or one that could not be decoded.
    Item(Decoded),
    /// A blank line (or CSV input holding no row), of this many bytes.
    Blank(usize),
}

/// Items are numbered in input order; the files they end in are sinks, committed by the
/// front door once the whole input went through.
impl Source for FileSource {
    type Id = u64;

    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Item<u64>>>, SourceError> {
        let Some(items) = self.next_items(max)? else {
            return Ok(None);
        };
        let batch = items
            .into_iter()
            .map(|(decoded, identity)| {
                self.read += 1;
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
        Ok(Some(batch))
    }

    fn redelivers(&self) -> bool {
        false
    }

    async fn settle(&mut self, _settled: Vec<(u64, Verdict)>) -> Result<(), SourceError> {
        Ok(())
    }
}

impl Iterator for FileSource {
    type Item = Result<Decoded, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

/// Reads and decodes one event; `kind` `None` detects the source from its shape. An
/// event whose messages name S3 objects ([`super::Carried`]) is refused: a file source
/// reads no objects ([`read_event_carrying`] keeps them, for a source that does).
pub fn read_event(
    reader: impl std::io::Read,
    kind: Option<EventKind>,
    input: &str,
    limits: InputLimits,
) -> Result<DecodedEvent, SourceError> {
    let event_error = |source| SourceError::Event {
        input: input.to_owned(),
        source,
    };
    let decoded = read_event_carrying(reader, kind, input, limits)?;
    if let Some(first) = decoded.carried.first() {
        let ids: Vec<&str> = decoded.carried.iter().map(|c| c.id.as_str()).collect();
        return Err(event_error(EventError {
            expected: "record-carrying".into(),
            reason: format!(
                "message {} names S3 objects (an S3 notification inside it; {} such: {}): \
                 `host run` and the Lambda host read them from S3, a case file cannot \
                 (or pass --envelopes off to hand such messages on as they are)",
                first.id,
                ids.len(),
                ids.join(", ")
            ),
        }));
    }
    Ok(decoded)
}

/// [`read_event`], keeping the messages that name S3 objects in
/// [`DecodedEvent::carried`].
pub fn read_event_carrying(
    reader: impl std::io::Read,
    kind: Option<EventKind>,
    input: &str,
    limits: InputLimits,
) -> Result<DecodedEvent, SourceError> {
    let event_error = |source| SourceError::Event {
        input: input.to_owned(),
        source,
    };
    let mut text = Vec::new();
    reader
        .take(MAX_EVENT_BYTES)
        .read_to_end(&mut text)
        .map_err(|source| SourceError::Read {
            input: input.to_owned(),
            source,
        })?;
    // Checked as JSON whole first (skipping every value, building none), so that what is
    // not JSON says so before anything else; then parsed once, into its kind's types. (A
    // skipped value is checked less than a `Value` is: a number past f64's range or a lone
    // surrogate escape in a field no decoder reads passes, as it does in an invocation.)
    let not_json = |reason: String| {
        event_error(EventError {
            expected: "a JSON".into(),
            reason,
        })
    };
    let text = std::str::from_utf8(&text).map_err(|e| not_json(e.to_string()))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| not_json(e.to_string()))?;
    let kind = match kind {
        Some(kind) => kind,
        None => match events::detect_text(text).map_err(event_error)? {
            EventKind::S3 => {
                return Err(event_error(EventError {
                    expected: "record-carrying".into(),
                    reason: "an S3 notification names objects to read: use --format s3-event, which reads them from S3".into(),
                }));
            }
            kind => kind,
        },
    };
    events::decode_within(kind, events::EventJson::Text(text), limits).map_err(event_error)
}

/// Reads one line (through its `\n`) into `buffer`, keeping at most `max` bytes of it
/// (plus a line end) and skipping the rest, so one endless line cannot take the memory.
/// Returns the bytes consumed (0 at the end of the input) and whether the line was cut.
fn read_line_capped(
    reader: &mut dyn BufRead,
    buffer: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<(usize, bool)> {
    let keep = max.saturating_add(2);
    let (mut consumed, mut cut) = (0, false);
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok((consumed, cut));
        }
        let (chunk, end) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = keep.saturating_sub(buffer.len());
        if chunk.len() > room {
            buffer.extend_from_slice(&chunk[..room]);
            cut = true;
        } else {
            buffer.extend_from_slice(chunk);
        }
        let taken = chunk.len();
        reader.consume(taken);
        consumed += taken;
        if end {
            return Ok((consumed, cut));
        }
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(format: InputFormat, text: &'static str) -> Vec<Decoded> {
        let source = FileSource::new(Box::new(text.as_bytes()), format, "t").expect("source");
        source.collect::<Result<_, _>>().expect("readable")
    }

    /// `--format`'s values, in the order `--help` lists them: one per event kind.
    #[test]
    fn format_names_are_the_command_lines() {
        use clap::ValueEnum as _;
        let names: Vec<String> = InputFormat::value_variants()
            .iter()
            .filter_map(|format| format.to_possible_value())
            .map(|value| value.get_name().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "jsonl",
                "csv",
                "lines",
                "event",
                "kinesis-event",
                "sqs-event",
                "kafka-event",
                "sns-event",
                "eventbridge-event",
                "dynamodb-event",
                "firehose-event",
                "direct-event",
                "pipes-event",
                "s3-event",
            ]
        );
        for (format, name) in InputFormat::value_variants().iter().zip(&names) {
            assert_eq!(InputFormat::from_str(name, false), Ok(*format), "{name}");
        }
        assert_eq!(
            InputFormat::from_str("s3-event", false),
            Ok(InputFormat::Event(Some(EventKind::S3)))
        );
        assert_eq!(
            InputFormat::from_str("event", false),
            Ok(InputFormat::Event(None))
        );
    }

    #[test]
    fn jsonl_skips_blank_lines_and_flags_bad_ones() {
        let items = read(InputFormat::Jsonl, "{\"a\":1}\r\n\n  \nnot json\n{\"b\":2}");
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[0].as_ref().map(|r| &r.payload[..]).ok(),
            Some(&b"{\"a\":1}"[..])
        );
        let bad = items[1].as_ref().expect_err("line 4 is bad");
        assert!(
            bad.reason.starts_with("line 4 is not JSON"),
            "{}",
            bad.reason
        );
        assert_eq!(bad.record.attribute("line"), Some("4"));
        assert!(items[2].is_ok());
    }

    #[test]
    fn every_attribute_name_is_a_shared_host_name() {
        let mut seen = 0;
        for (format, text) in [
            (InputFormat::Jsonl, "{\"a\":1}\nnot json\n"),
            (InputFormat::Csv, "id,name\n1,ann\n2\n"),
        ] {
            for item in read(format, text) {
                let record = match item {
                    Ok(record) => record,
                    Err(undecodable) => undecodable.record,
                };
                seen += crate::record::assert_shared_names(&record);
            }
        }
        assert_eq!(seen, 4 * 3, "source, file and line for each of 4 records");
    }

    #[test]
    fn a_long_line_of_leading_blanks_is_cut_not_skipped() {
        let text = format!("{}x\n{{\"a\":1}}\n", " ".repeat(3000));
        let limits = InputLimits {
            record: 1024,
            ..InputLimits::default()
        };
        let source = FileSource::within(
            Box::new(std::io::Cursor::new(text)),
            InputFormat::Jsonl,
            "t",
            limits,
        )
        .expect("source");
        let items: Vec<Decoded> = source.collect::<Result<_, _>>().expect("readable");
        assert_eq!(items.len(), 2);
        let cut = items[0].as_ref().expect_err("too long");
        assert_eq!(cut.kind, FailureKind::InputTooLarge);
        assert!(items[1].is_ok());
    }

    #[test]
    fn csv_rows_become_json_objects() {
        let items = read(InputFormat::Csv, "id,name\n1,ann\n2\n3,bob\n");
        assert_eq!(items.len(), 3);
        let first = items[0].as_ref().expect("row 1");
        assert_eq!(&first.payload[..], br#"{"id":"1","name":"ann"}"#);
        let bad = items[1].as_ref().expect_err("short row");
        assert!(
            bad.reason.contains("1 fields, the header has 2"),
            "{}",
            bad.reason
        );
        assert_eq!(&bad.record.payload[..], b"2");
    }

    fn limited(reader: Box<dyn BufRead + Send>, format: InputFormat) -> FileSource {
        let limits = InputLimits {
            record: 1024,
            ..InputLimits::default()
        };
        FileSource::within(reader, format, "t", limits).expect("source")
    }

    /// `text` through a reader handing out `chunk` bytes at a time, as a stream does.
    fn chunked(text: String, chunk: usize) -> Box<dyn BufRead + Send> {
        Box::new(std::io::BufReader::with_capacity(
            chunk,
            std::io::Cursor::new(text),
        ))
    }

    #[test]
    fn a_csv_row_over_many_short_lines_is_cut_at_the_record_limit() {
        // One quoted field of 100,000 short lines: no line is long, the row is.
        let field = "x\n".repeat(100_000);
        let text = format!("id,note\n1,\"{field}\"\n2,after\n");
        let source = limited(chunked(text, 1 << 16), InputFormat::Csv);
        let items: Vec<Decoded> = source.collect::<Result<_, _>>().expect("readable");
        assert_eq!(items.len(), 2);
        let cut = items[0].as_ref().expect_err("too long");
        assert_eq!(cut.kind, FailureKind::InputTooLarge);
        assert!(
            cut.record.payload.len() <= 1024 && cut.record.payload.starts_with(b"1,x\nx"),
            "{:?}",
            cut.record.payload
        );
        assert_eq!(cut.record.attribute("line"), Some("2"));
        let after = items[1].as_ref().expect("the next row");
        assert_eq!(&after.payload[..], br#"{"id":"2","note":"after"}"#);
        assert_eq!(after.attribute("line"), Some("100003"));
    }

    #[tokio::test]
    async fn blank_lines_count_towards_a_batch() {
        let blank = "\n".repeat(5000);
        for (format, text) in [
            (InputFormat::Jsonl, format!("{blank}{{\"a\":1}}\n")),
            (InputFormat::Lines, format!("{blank}a\n")),
            (InputFormat::Csv, format!("a\n{blank}1\n")),
        ] {
            let mut source = limited(chunked(text, 256), format);
            // Each record limit's worth of blank input comes back as a batch, empty.
            let first = source.next_batch(1000).await.expect("readable");
            assert_eq!(first.map(|b| b.len()), Some(0), "{format:?}");
            let mut batches = 1;
            let record = loop {
                match source.next_batch(1000).await.expect("readable") {
                    Some(batch) if batch.is_empty() => batches += 1,
                    Some(batch) => break batch,
                    None => panic!("{format:?}: no record"),
                }
            };
            assert_eq!(record.len(), 1, "{format:?}");
            assert!(batches <= 5000 / 1024 + 1, "{format:?}: {batches}");
            assert!(source.next_batch(1000).await.expect("readable").is_none());
        }
    }

    #[test]
    fn csv_input_blank_past_the_record_limit_has_no_header() {
        let text = format!("{}id\n1\n", "\n".repeat(5000));
        let err = FileSource::within(
            chunked(text, 256),
            InputFormat::Csv,
            "blank.csv",
            InputLimits {
                record: 1024,
                ..InputLimits::default()
            },
        )
        .err()
        .expect("no header within the limit");
        assert!(err.to_string().contains("no header row"), "{err}");
    }

    #[test]
    fn csv_without_header_is_an_error() {
        let err = FileSource::new(Box::new(&b""[..]), InputFormat::Csv, "empty.csv")
            .err()
            .expect("no header");
        assert!(err.to_string().contains("empty.csv"), "{err}");
    }
}
