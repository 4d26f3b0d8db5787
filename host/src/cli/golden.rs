//! `host test`: golden cases. A case is one JSON file: an input (JSON records, raw
//! lines, one AWS event, or records framed with inline schemas as a registry's producer
//! frames them), optional plugin config and lookup tables, and what the plugin is expected to
//! make of it: the outputs (destination, key, attributes, payload), the records
//! dead-lettered (their payload, failure kind and message) and how many were dropped.
//! Each case runs through the same pipeline as `host run`; a mismatch prints a line diff
//! of expected against actual, and `--update` writes what the plugin does now.
//!
//! ```json
//! { "about": "a purchase is enriched",
//!   "config": { "currency": "USD" },
//!   "input": [ { "id": "e1", "user": "ann", "action": "buy", "amount": 1.5, "ts": "..." } ],
//!   "expect": { "outputs": [ ... ], "dead_letters": [ ... ], "dropped": 0 } }
//! ```

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::TestArgs;
use crate::aws::AwsClients;
use crate::limits::Budget;
use crate::pipeline::{Outputs, Pipeline};
use crate::schemas::{Encoder, FramingSetting, SchemaRef};
use crate::settings::Settings;
use crate::sinks::{Emit, Router, Sink, SinkSpec};
use crate::sources::{FileSource, InputFormat};

/// One case file.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the case shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    about: Option<String>,
    /// Plugin settings for this case, over the command line's `--config`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    config: BTreeMap<String, String>,
    /// Records as JSON values (each becomes one JSON line).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    input: Vec<Value>,
    /// Records as raw lines (for input that is not JSON).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    lines: Vec<String>,
    /// One AWS event (Kinesis, SQS, DynamoDB Streams, Firehose, a direct invocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<Value>,
    /// Lookup tables the plugin reads, inline: `NAME` (or `NAME#COLUMN`, the key
    /// column, `id` by default) to its rows, JSON objects. They replace tables of the
    /// same name mapped on the command line.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    lookups: BTreeMap<String, Vec<Value>>,
    /// Schemas `framed` records name, inline: a Confluent schema id (`"7"`) or a Glue
    /// schema version's UUID, to `{"avro": SCHEMA}` or `{"json": SCHEMA}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    schemas: BTreeMap<String, Value>,
    /// Records framed as a registry's producer frames them, arriving as one Kafka event
    /// (topic `golden`, partition 0): `{"schema": "7", "value": ...}` written with the
    /// schema, or `{"schema": "7", "datum_base64": "..."}` for bytes as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    framed: Vec<FramedInput>,
    /// What the plugin makes of it; absent until `--update` writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expect: Option<Expect>,
}

/// One framed input record.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FramedInput {
    /// A key of the case's `schemas`.
    schema: String,
    /// The record's content, written with the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
    /// Or the datum's bytes as they are (a record that does not decode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    datum_base64: Option<String>,
}

/// What a case's input becomes.
#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// The outputs, in order, as `host run --emit envelope` writes them.
    outputs: Vec<Value>,
    /// The records that went to the DLQ, in order.
    dead_letters: Vec<DeadLetter>,
    /// Records the plugin dropped on purpose.
    dropped: u64,
}

/// A dead-lettered record: which one, and why.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct DeadLetter {
    payload: Value,
    kind: String,
    message: String,
}

/// How a case went.
enum Verdict {
    Passed,
    Failed(String),
    Updated,
}

/// `host test`: every `*.json` case under `--cases`, in name order.
pub(super) async fn test(args: TestArgs) -> anyhow::Result<()> {
    let settings = args.settings.resolve()?;
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&args.cases)
        .with_context(|| format!("--cases {}: cannot read the folder", args.cases.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    cases.sort();
    anyhow::ensure!(
        !cases.is_empty(),
        "--cases {}: no *.json case files",
        args.cases.display()
    );
    // One compile for all cases: a private cache unless one is configured.
    let scratch = tempfile::tempdir().context("cannot make a scratch folder")?;
    let mut failed = Vec::new();
    let mut updated = 0;
    for path in &cases {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match run_case(&settings, path, &name, scratch.path(), args.update).await {
            Ok(Verdict::Passed) => eprintln!("ok      {name}"),
            Ok(Verdict::Updated) => {
                updated += 1;
                eprintln!("updated {name}");
            }
            Ok(Verdict::Failed(diff)) => {
                eprintln!("FAILED  {name}\n{diff}");
                failed.push(name);
            }
            Err(e) => {
                eprintln!("FAILED  {name}: {}", crate::report::one_line(e.as_ref()));
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} cases failed: {}",
            failed.len(),
            cases.len(),
            failed.join(", ")
        );
    }
    if args.update {
        eprintln!("{} cases, {updated} updated", cases.len());
    } else {
        eprintln!("{} cases passed", cases.len());
    }
    Ok(())
}

async fn run_case(
    settings: &Settings,
    path: &Path,
    name: &str,
    scratch: &Path,
    update: bool,
) -> anyhow::Result<Verdict> {
    let text = std::fs::read_to_string(path).context("cannot read the case")?;
    let mut case: Case = serde_json::from_str(&text).context("not a case file")?;
    let actual = run_input(settings, &case, name, scratch).await?;
    if update {
        if case.expect.as_ref() == Some(&actual) {
            return Ok(Verdict::Passed);
        }
        case.expect = Some(actual);
        let mut text = serde_json::to_string_pretty(&case)?;
        text.push('\n');
        std::fs::write(path, text).context("cannot write the case")?;
        return Ok(Verdict::Updated);
    }
    let Some(expected) = &case.expect else {
        return Ok(Verdict::Failed(
            "  no \"expect\" yet: run with --update to write what the plugin does now".into(),
        ));
    };
    if *expected == actual {
        return Ok(Verdict::Passed);
    }
    Ok(Verdict::Failed(line_diff(
        &serde_json::to_string_pretty(expected)?,
        &serde_json::to_string_pretty(&actual)?,
    )))
}

/// Runs the case's input through the pipeline and reads back what came out.
async fn run_input(
    settings: &Settings,
    case: &Case,
    name: &str,
    scratch: &Path,
) -> anyhow::Result<Expect> {
    let framed = (!case.framed.is_empty())
        .then(|| framed_event(case))
        .transpose()?;
    let event = case.event.as_ref().or(framed.as_ref());
    let (input, format) = match (event, case.input.is_empty(), case.lines.is_empty()) {
        (Some(event), true, true) if case.event.is_none() || framed.is_none() => {
            (serde_json::to_vec(event)?, InputFormat::Event(None))
        }
        (None, false, true) => {
            let mut text = Vec::new();
            for record in &case.input {
                serde_json::to_writer(&mut text, record)?;
                text.push(b'\n');
            }
            (text, InputFormat::Jsonl)
        }
        (None, true, false) => (case.lines.join("\n").into_bytes(), InputFormat::Lines),
        _ => anyhow::bail!("give exactly one of \"input\", \"lines\", \"event\" or \"framed\""),
    };
    let outputs = scratch.join(format!("{name}.outputs.jsonl"));
    let dlq = scratch.join(format!("{name}.dlq.jsonl"));
    let mut settings = settings.clone();
    for (key, value) in &case.config {
        settings.plugin_config.retain(|(k, _)| k != key);
        settings.plugin_config.push((key.clone(), value.clone()));
    }
    for (table, rows) in &case.lookups {
        let (table, column) = table
            .split_once('#')
            .unwrap_or((table, crate::lookup::DEFAULT_KEY_COLUMN));
        crate::lookup::check_table_name(table).map_err(|e| anyhow::anyhow!("\"lookups\": {e}"))?;
        let path = scratch.join(format!("{name}.lookup.{table}.jsonl"));
        let mut text = Vec::new();
        for row in rows {
            anyhow::ensure!(
                row.is_object(),
                "\"lookups\".{table}: a row is a JSON object, not {row}"
            );
            serde_json::to_writer(&mut text, row)?;
            text.push(b'\n');
        }
        std::fs::write(&path, text).context("cannot write a lookup table")?;
        let spec = crate::lookup::TableSpec::File {
            path,
            column: column.to_owned(),
            format: crate::lookup::TableFormat::JsonLines,
        };
        settings.lookups.insert(table.to_owned(), spec);
    }
    settings.sinks.clear();
    settings.dedup = None;
    settings.dlq = SinkSpec::File {
        path: Some(dlq.clone()),
        emit: Emit::Payload,
    };
    if settings.cache_dir.is_none() {
        settings.cache_dir = Some(scratch.join("cache"));
    }
    if !case.schemas.is_empty() && settings.schema_framing == FramingSetting::None {
        settings.schema_framing = FramingSetting::Auto;
    }
    let aws = AwsClients::unconfigured();
    let mut pipeline = Pipeline::start(&settings, &aws).await?;
    for (key, schema) in &case.schemas {
        let (reference, format, definition) = inline_schema(key, schema)?;
        if let Some(schemas) = pipeline.schemas() {
            schemas
                .know(reference, format, &definition)
                .map_err(|e| anyhow::anyhow!("\"schemas\".{key}: {e}"))?;
        }
    }
    let out = Sink::connect(
        &SinkSpec::File {
            path: Some(outputs.clone()),
            emit: Emit::Envelope,
        },
        &aws,
    )
    .await
    .context("cannot write the outputs")?;
    let router = Router::only(out);
    let mut source = FileSource::within(
        Box::new(Cursor::new(input)),
        format,
        name,
        settings.input_limits(),
    )?;
    let summary = pipeline
        .run(&mut source, Outputs::To(&router), Budget::unbounded())
        .await?;
    pipeline.finish(Outputs::To(&router)).await?;
    let dead_letters = read_lines(&dlq)?
        .into_iter()
        .map(|entry| DeadLetter {
            payload: payload_value(&entry["record"]),
            kind: entry["error"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            message: entry["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        })
        .collect();
    Ok(Expect {
        outputs: read_lines(&outputs)?,
        dead_letters,
        dropped: summary.dropped,
    })
}

/// A case's inline schema: what names it, its format, its text.
fn inline_schema(key: &str, schema: &Value) -> anyhow::Result<(SchemaRef, &'static str, String)> {
    let reference: SchemaRef = key
        .parse()
        .map_err(|e| anyhow::anyhow!("\"schemas\": {e}"))?;
    let (format, text) = match (schema.get("avro"), schema.get("json")) {
        (Some(avro), None) => ("avro", avro),
        (None, Some(json)) => ("json", json),
        _ => anyhow::bail!("\"schemas\".{key}: give {{\"avro\": SCHEMA}} or {{\"json\": SCHEMA}}"),
    };
    // An Avro schema may be a bare type name ("string"); a JSON value otherwise.
    let definition = match text {
        Value::String(name) => serde_json::to_string(name)?,
        other => other.to_string(),
    };
    Ok((reference, format, definition))
}

/// The case's framed records as one Kafka event of topic `golden`, partition 0.
fn framed_event(case: &Case) -> anyhow::Result<Value> {
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut records = Vec::with_capacity(case.framed.len());
    let mut encoders = BTreeMap::new();
    for (offset, framed) in case.framed.iter().enumerate() {
        let schema = case.schemas.get(&framed.schema).ok_or_else(|| {
            anyhow::anyhow!(
                "\"framed\"[{offset}] names schema {:?}, which \"schemas\" lacks",
                framed.schema
            )
        })?;
        let (reference, format, definition) = inline_schema(&framed.schema, schema)?;
        let bytes = match (&framed.value, &framed.datum_base64) {
            (Some(value), None) => {
                if !encoders.contains_key(&framed.schema) {
                    let encoder = Encoder::framing(&reference, format, &definition)
                        .map_err(|e| anyhow::anyhow!("\"schemas\".{}: {e}", framed.schema))?;
                    encoders.insert(framed.schema.clone(), encoder);
                }
                let encoder = &encoders[&framed.schema];
                encoder
                    .encode(&serde_json::to_vec(value)?)
                    .map_err(|e| anyhow::anyhow!("\"framed\"[{offset}]: the value {e}"))?
            }
            (None, Some(datum)) => {
                let mut bytes = crate::schemas::header_of(&reference)
                    .map_err(|e| anyhow::anyhow!("\"framed\"[{offset}]: {e}"))?;
                bytes.extend(
                    base64
                        .decode(datum)
                        .map_err(|e| anyhow::anyhow!("\"framed\"[{offset}].datum_base64: {e}"))?,
                );
                bytes
            }
            _ => anyhow::bail!("\"framed\"[{offset}]: give \"value\" or \"datum_base64\""),
        };
        records.push(serde_json::json!({
            "topic": "golden", "partition": 0, "offset": offset,
            "timestamp": 0, "timestampType": "CREATE_TIME",
            "value": base64.encode(bytes), "headers": [],
        }));
    }
    Ok(serde_json::json!({
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:000000000000:cluster/golden/0",
        "bootstrapServers": "golden:9092",
        "records": {"golden-0": records},
    }))
}

/// A DLQ entry's record payload: JSON when it is JSON, else the text.
fn payload_value(record: &Value) -> Value {
    match record["payload"].as_str() {
        Some(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into())),
        None => record["payload_base64"].clone(),
    }
}

/// The JSON lines of `path`; none when the file was never written.
fn read_lines(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("{}: not JSON", path.display())))
        .collect()
}

/// Largest expected-by-actual line table the diff aligns (4 bytes a cell).
const MAX_DIFF_CELLS: usize = 4_000_000;

/// A line diff of `expected` against `actual`: `-` lines expected and missing, `+` lines
/// there and not expected, two lines of context around each change.
fn line_diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    if (a.len() + 1).saturating_mul(b.len() + 1) > MAX_DIFF_CELLS {
        // Too big to align line by line in bounded memory: the first difference.
        let first = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let line = |lines: &[&str]| {
            lines
                .get(first)
                .map_or_else(|| "(end)".to_owned(), |l| l.chars().take(200).collect())
        };
        return format!(
            "  --- expected\n  +++ actual\n    (first difference at line {})\n  - {}\n  + {}\n",
            first + 1,
            line(&a),
            line(&b)
        );
    }
    // Longest common subsequence table, from the ends (cases are small).
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut lines = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            lines.push((' ', a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            lines.push(('-', a[i]));
            i += 1;
        } else {
            lines.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        lines[k.saturating_sub(2)..(k + 3).min(lines.len())]
            .iter()
            .any(|(mark, _)| *mark != ' ')
    };
    let mut out = String::from("  --- expected\n  +++ actual\n");
    let mut skipped = false;
    for (k, (mark, line)) in lines.iter().enumerate() {
        if near_change(k) {
            out.push_str(&format!("  {mark} {line}\n"));
            skipped = false;
        } else if !skipped {
            out.push_str("    ...\n");
            skipped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_marks_what_changed_with_context() {
        let diff = line_diff("a\nb\nc\nd\ne\nf\ng", "a\nb\nc\nD\ne\nf\ng");
        assert_eq!(
            diff,
            "  --- expected\n  +++ actual\n    ...\n    b\n    c\n  - d\n  + D\n    e\n    f\n    ...\n"
        );
    }
}
