//! CSV input: rows, each within the record limit, the header and rows as JSON objects.
//! A row longer than the limit, on one line or over many (a quoted field may span any
//! number of lines), is parsed to its end but keeps only its first bytes, so no row can
//! take the memory. Blank input is handed back as it is skipped, so input of nothing but
//! empty lines still returns to its reader, which counts it towards its batch (and the
//! run's budget is checked between batches).

use std::io::BufRead;

use csv_core::ReadRecordResult;

/// What one step through CSV input found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A row; its fields are [`CsvRows::fields`].
    Row {
        /// The line it starts on (1-based; before the empty lines skipped ahead of it).
        line: u64,
        /// Longer than the limit: only its first bytes are kept.
        cut: bool,
        /// The input bytes this step read.
        bytes: usize,
    },
    /// Only blank input (empty lines) was read: this many bytes.
    Blank(usize),
    /// The input is done.
    End,
}

/// Reads CSV rows (comma-separated, `"`-quoted, any line end) from `input`, keeping at
/// most the limit of each.
pub struct CsvRows {
    input: Box<dyn BufRead + Send>,
    core: csv_core::Reader,
    max: usize,
    /// The row's unescaped bytes; of a cut row, those before the cut.
    fields: Vec<u8>,
    /// Where each of its fields ends in `fields`.
    ends: Vec<usize>,
    /// How much of `fields` and `ends` the last row filled.
    filled: (usize, usize),
    /// Where a cut row's bytes past the limit are parsed to, and dropped.
    spill: Vec<u8>,
    spill_ends: Vec<usize>,
    /// The line the row being read starts on, kept across the blank input handed back.
    start: Option<u64>,
}

impl CsvRows {
    /// Rows of `input`, each cut past `max` bytes: its fields' bytes and the commas
    /// between them, so a row of many empty fields counts too.
    pub fn new(input: Box<dyn BufRead + Send>, max: usize) -> Self {
        Self {
            input,
            core: csv_core::Reader::new(),
            max,
            fields: vec![0; max.saturating_add(2).min(1 << 10)],
            ends: vec![0; 16],
            filled: (0, 0),
            spill: vec![0; 1 << 12],
            spill_ends: vec![0; 64],
            start: None,
        }
    }

    /// The next row, blank input or the end.
    pub fn next_step(&mut self) -> std::io::Result<Step> {
        let line = *self.start.get_or_insert(self.core.line());
        // Room for one byte past the limit, so a row of exactly the limit is not cut.
        let room = self.max.saturating_add(2);
        // Field ends are a word each: a row of commas would hold eight times its bytes.
        // A row with more fields than this is as good as too long, and is cut.
        let ends_room = (room / std::mem::size_of::<usize>()).max(64);
        let (mut out, mut ends, mut bytes) = (0, 0, 0);
        let mut cut = false;
        loop {
            let input = match self.input.fill_buf() {
                Ok(input) => input,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let (result, nin, nout, nend) = if cut {
                self.core
                    .read_record(input, &mut self.spill, &mut self.spill_ends)
            } else {
                self.core
                    .read_record(input, &mut self.fields[out..], &mut self.ends[ends..])
            };
            self.input.consume(nin);
            bytes += nin;
            if !cut {
                (out, ends) = (out + nout, ends + nend);
                // The row so far is its bytes and a comma after each field it ended.
                cut = out + ends > self.max.saturating_add(1);
            }
            match result {
                ReadRecordResult::Record | ReadRecordResult::End => {
                    self.start = None;
                    self.filled = if cut {
                        (out.min(self.max), ends)
                    } else {
                        (out, ends)
                    };
                    if result == ReadRecordResult::End {
                        return Ok(Step::End);
                    }
                    return Ok(Step::Row { line, cut, bytes });
                }
                // Nothing of a row yet: empty lines, handed back as they are read.
                ReadRecordResult::InputEmpty if !cut && out == 0 && ends == 0 && bytes > 0 => {
                    return Ok(Step::Blank(bytes));
                }
                ReadRecordResult::InputEmpty => {}
                // Past the cut the spill buffers are written over.
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull if cut => {}
                ReadRecordResult::OutputFull => {
                    let grown = (self.fields.len() * 2).min(room);
                    self.fields.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let grown = (self.ends.len() * 2).min(ends_room);
                    if grown <= self.ends.len() {
                        cut = true;
                    } else {
                        self.ends.resize(grown, 0);
                    }
                }
            }
        }
    }

    /// The fields of the last row; of a cut row, those (or their part) before the cut.
    pub fn fields(&self) -> impl Iterator<Item = &[u8]> {
        let (out, ends) = self.filled;
        let bytes = &self.fields[..out];
        let ends = self.ends[..ends].iter().map(move |&end| end.min(out));
        let mut from = 0;
        ends.chain(self.open().then_some(out)).map(move |end| {
            let field = bytes.get(from..end).unwrap_or_default();
            from = end.max(from);
            field
        })
    }

    /// How many fields [`CsvRows::fields`] yields.
    pub fn field_count(&self) -> usize {
        self.filled.1 + usize::from(self.open())
    }

    /// Whether the last row's last field was cut before it ended (or began).
    fn open(&self) -> bool {
        let (out, ends) = self.filled;
        self.ends[..ends].last().is_none_or(|&end| end < out)
    }
}

/// The header row of CSV input: its first row. Blank input before it counts against the
/// record limit, so input of nothing but empty lines fails early instead of being read
/// to its end.
pub fn csv_headers(rows: &mut CsvRows, max: usize) -> Result<Vec<String>, String> {
    let mut blank = 0usize;
    loop {
        match rows.next_step().map_err(|e| e.to_string())? {
            Step::End => return Err("the input has no header row".into()),
            Step::Blank(bytes) => {
                blank = blank.saturating_add(bytes);
                if blank > max {
                    return Err(format!(
                        "no header row in the first {max} bytes (max-record-bytes), all blank"
                    ));
                }
            }
            Step::Row { cut: true, .. } => {
                return Err(format!(
                    "the header row is longer than the {max}-byte record limit (max-record-bytes)"
                ));
            }
            Step::Row { .. } => break,
        }
    }
    rows.fields()
        .map(|f| std::str::from_utf8(f).map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the header row is not UTF-8: {e}"))
}

/// `{"header": "field", ...}` in header order.
pub fn csv_row_to_json(headers: &[String], row: &CsvRows) -> Result<Vec<u8>, String> {
    if row.field_count() != headers.len() {
        return Err(format!(
            "{} fields, the header has {}",
            row.field_count(),
            headers.len()
        ));
    }
    let bytes: usize = row.fields().map(<[u8]>::len).sum();
    let mut json = Vec::with_capacity(bytes + 16 * headers.len());
    json.push(b'{');
    for (i, (name, field)) in headers.iter().zip(row.fields()).enumerate() {
        let value =
            std::str::from_utf8(field).map_err(|_| format!("field `{name}` is not UTF-8"))?;
        if i > 0 {
            json.push(b',');
        }
        serde_json::to_writer(&mut json, name).map_err(|e| e.to_string())?;
        json.push(b':');
        serde_json::to_writer(&mut json, value).map_err(|e| e.to_string())?;
    }
    json.push(b'}');
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: String, max: usize) -> CsvRows {
        CsvRows::new(Box::new(std::io::Cursor::new(text)), max)
    }

    fn fields(rows: &CsvRows) -> Vec<String> {
        rows.fields()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    }

    #[test]
    fn rows_keep_their_fields_and_first_lines() {
        let mut rows = rows("a,b\n\"x\ny\",2\n\n3,\"\"\"q\"\"\"\n".into(), 1024);
        assert!(matches!(
            rows.next_step(),
            Ok(Step::Row {
                line: 1,
                cut: false,
                ..
            })
        ));
        assert_eq!(fields(&rows), ["a", "b"]);
        assert!(matches!(
            rows.next_step(),
            Ok(Step::Row {
                line: 2,
                cut: false,
                ..
            })
        ));
        assert_eq!(fields(&rows), ["x\ny", "2"]);
        assert!(matches!(
            rows.next_step(),
            Ok(Step::Row {
                line: 4,
                cut: false,
                ..
            })
        ));
        assert_eq!(fields(&rows), ["3", "\"q\""]);
        assert!(matches!(rows.next_step(), Ok(Step::End)));
    }

    #[test]
    fn a_row_of_more_fields_than_an_eighth_of_the_limit_is_cut() {
        // Each field's end is a word of memory: 1024 bytes hold 128 of them, not the
        // 300 this row of 600 bytes has.
        let many = vec!["x"; 300].join(",");
        let mut rows = rows(format!("{many}\na,b\n"), 1024);
        assert!(matches!(rows.next_step(), Ok(Step::Row { cut: true, .. })));
        assert!(matches!(
            rows.next_step(),
            Ok(Step::Row {
                line: 2,
                cut: false,
                ..
            })
        ));
        assert_eq!(fields(&rows), ["a", "b"]);
    }

    #[test]
    fn a_row_of_exactly_the_limit_is_whole() {
        let mut rows = rows(format!("{},b\n", "x".repeat(8)), 10);
        assert!(matches!(rows.next_step(), Ok(Step::Row { cut: false, .. })));
        assert_eq!(fields(&rows), ["x".repeat(8), "b".into()]);
    }

    #[test]
    fn a_quoted_field_over_many_short_lines_is_cut_and_the_next_row_read() {
        let field = "x\n".repeat(100_000);
        let mut rows = rows(format!("1,\"{field}\"\n2,after\n"), 1024);
        assert!(matches!(
            rows.next_step(),
            Ok(Step::Row {
                line: 1,
                cut: true,
                ..
            })
        ));
        let kept: usize = rows.fields().map(<[u8]>::len).sum();
        assert!(kept <= 1024, "{kept}");
        assert!(rows.fields.len() <= 1026, "{}", rows.fields.len());
        assert!(matches!(
            rows.next_step(),
            Ok(Step::Row {
                line: 100_002,
                cut: false,
                ..
            })
        ));
        assert_eq!(fields(&rows), ["2", "after"]);
    }

    #[test]
    fn a_row_of_endless_empty_fields_is_cut() {
        let mut rows = rows(format!("{}\nz\n", ",".repeat(100_000)), 1024);
        assert!(matches!(rows.next_step(), Ok(Step::Row { cut: true, .. })));
        assert!(rows.ends.len() <= 1026, "{}", rows.ends.len());
        assert!(matches!(
            rows.next_step(),
            Ok(Step::Row {
                line: 2,
                cut: false,
                ..
            })
        ));
        assert_eq!(fields(&rows), ["z"]);
    }

    #[test]
    fn blank_input_is_handed_back_and_the_row_after_keeps_its_line() {
        let mut rows = CsvRows::new(
            Box::new(std::io::BufReader::with_capacity(
                64,
                std::io::Cursor::new(format!("{}a\n", "\n".repeat(1000))),
            )),
            1024,
        );
        let mut blank = 0;
        let line = loop {
            match rows.next_step() {
                Ok(Step::Blank(bytes)) => blank += bytes,
                Ok(Step::Row { line, .. }) => break line,
                other => panic!("{other:?}"),
            }
        };
        assert!(blank >= 900, "{blank}");
        // As the CSV reader counted it: where the row's search began.
        assert_eq!(line, 1);
        assert_eq!(fields(&rows), ["a"]);
    }
}
