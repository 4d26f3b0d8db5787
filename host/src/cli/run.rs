//! `host run` and `host reprocess`: each picks a source (a file, the objects of an S3
//! notification, a dead-letter queue) and where outputs go (a file, or the sinks), and
//! hands both to the one [`Pipeline`].

use std::io::BufRead;

use anyhow::Context as _;

use super::{ReprocessArgs, RunArgs, SummaryFormat};
use crate::accounting::Summary;
use crate::aws::AwsClients;
use crate::limits::Budget;
use crate::pipeline::{Outputs, Pipeline, RunStats};
use crate::settings::Settings;
use crate::sinks::{Router, Sink, SinkSpec};
use crate::sources::carried::ObjectReader;
use crate::sources::dlq::{BucketDlq, QueueDlq};
use crate::sources::{
    EventKind, FileSource, InputFormat, LambdaEvent, ObjectSource, read_event, read_event_carrying,
};

/// `host run`: the input through the pipeline; outputs to `--output` (or stdout), or with
/// `--sink` to the sinks. Output and DLQ files appear only once the whole input is done.
pub(super) async fn run(mut args: RunArgs) -> anyhow::Result<()> {
    // `-` is stdout, as `--input -` is stdin.
    if args.output.as_deref() == Some(std::path::Path::new("-")) {
        args.output = None;
    }
    let settings = args.settings.resolve()?;
    let to_files = settings.sinks.is_empty();
    if !to_files && args.output.is_some() {
        // `--sink` and `--output` conflict as flags; sinks may also come from PIPELINE_SINKS.
        anyhow::bail!(
            "--output: outputs go to the sinks (--sink or PIPELINE_SINKS), not to a file"
        );
    }
    let needs_aws = !to_files
        || settings.dedup.is_some()
        || !matches!(settings.dlq, SinkSpec::File { .. })
        || args.format == InputFormat::Event(Some(EventKind::S3))
        // Lookup tables in DynamoDB or S3; schemas in Glue's registry, a registry's
        // credential in Secrets Manager.
        || settings.lookups.values().any(|t| {
            matches!(
                t,
                crate::lookup::TableSpec::Dynamodb { .. } | crate::lookup::TableSpec::S3 { .. }
            )
        })
        || matches!(
            settings.schema_framing,
            crate::schemas::FramingSetting::Auto | crate::schemas::FramingSetting::Glue
        )
        || settings.confluent_secret.is_some()
        || settings
            .plugins
            .iter()
            .any(|p| !matches!(p, crate::registry::PluginLocation::File(_)));
    let aws = if needs_aws {
        AwsClients::from_env(settings.s3_path_style, settings.aws_timeouts).await
    } else {
        AwsClients::unconfigured()
    };
    if args.format == InputFormat::Event(Some(EventKind::S3)) {
        let objects = read_notification(&args, &settings)?;
        let mut source = ObjectSource::new(aws.clone(), objects, settings.max_record_bytes);
        drive(&settings, &aws, &args, &mut source).await?;
        // Objects whose named version was gone are not items, so not in the summary's
        // counts: said after it (each was logged as it was met).
        let gone = source.gone();
        if !gone.is_empty() {
            eprintln!("gone={}", gone.len());
            for object in gone {
                eprintln!("gone: {object}");
            }
        }
        return Ok(());
    }
    if let InputFormat::Event(kind) = args.format {
        // Read whole (an event is one JSON document): if its messages name S3 objects,
        // they are read as the Lambda host reads them.
        let event = read_input(&args)?;
        let decoded = read_event_carrying(&event[..], kind, &args.input, settings.input_limits())?;
        if !decoded.carried.is_empty() {
            return run_carrying(&settings, &args, decoded).await;
        }
        let mut source = open_input(&args, &settings, Some(event))?;
        return drive(&settings, &aws, &args, &mut source).await;
    }
    let mut source = open_input(&args, &settings, None)?;
    drive(&settings, &aws, &args, &mut source).await
}

/// An event whose messages name S3 objects: its records, and the objects read from S3
/// in their messages' places; the messages handed back are listed after the summary
/// (what the Lambda host would name for a retry).
async fn run_carrying(
    settings: &Settings,
    args: &RunArgs,
    decoded: crate::sources::DecodedEvent,
) -> anyhow::Result<()> {
    let aws = AwsClients::from_env(settings.s3_path_style, settings.aws_timeouts).await;
    let mut source = LambdaEvent::new(decoded).reading_objects(ObjectReader {
        aws: aws.clone(),
        max_record_bytes: settings.max_record_bytes,
        checkpoints: settings.checkpoint_location(),
        budget: Budget::unbounded(),
    });
    drive(settings, &aws, args, &mut source).await?;
    let back = source.handed_back();
    if !back.is_empty() {
        eprintln!("handed_back={}", back.len());
        for (id, reason) in back {
            eprintln!("handed back: {id}: {reason}");
        }
    }
    Ok(())
}

/// The whole input (an event), at most the size an event may have.
fn read_input(args: &RunArgs) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut event = Vec::new();
    let limit = crate::sources::MAX_EVENT_BYTES;
    if args.input == "-" {
        std::io::stdin().take(limit).read_to_end(&mut event)
    } else {
        std::fs::File::open(&args.input)
            .with_context(|| format!("cannot open input {}", args.input))?
            .take(limit)
            .read_to_end(&mut event)
    }
    .with_context(|| format!("cannot read input {}", args.input))?;
    Ok(event)
}

/// Starts the pipeline and runs `source` through it; outputs to files unless sinks are
/// configured.
async fn drive<S: crate::sources::Source>(
    settings: &Settings,
    aws: &AwsClients,
    args: &RunArgs,
    source: &mut S,
) -> anyhow::Result<()> {
    let mut pipeline = Pipeline::start(settings, aws).await?;
    let files = if settings.sinks.is_empty() {
        let spec = SinkSpec::File {
            path: args.output.clone(),
            emit: args.emit,
        };
        let sink = Sink::connect(&spec, aws)
            .await
            .context("cannot create --output")?;
        Some(Router::only(sink))
    } else {
        None
    };
    let outputs = files.as_ref().map_or(Outputs::Sinks, Outputs::To);
    let mut progress = Progress::on_terminal();
    let summary = pipeline
        .run_watched(source, outputs, Budget::unbounded(), &mut |stats| {
            progress.show(stats);
        })
        .await;
    progress.clear();
    let summary = summary?;
    // The output file is committed with the DLQ's, then the records in them marked done.
    pipeline.finish(outputs).await?;
    // With outputs on stdout, a JSON summary there would be mistaken for one.
    let outputs_on_stdout = settings.sinks.is_empty() && args.output.is_none();
    print_summary(
        &pipeline,
        &summary,
        args.summary,
        outputs_on_stdout,
        progress.started,
    );
    Ok(())
}

/// The closing summary, as a line on stderr or as JSON.
fn print_summary(
    pipeline: &Pipeline,
    summary: &Summary,
    format: SummaryFormat,
    outputs_on_stdout: bool,
    started: std::time::Instant,
) {
    match format {
        SummaryFormat::Text => eprintln!("{}", pipeline.summary_line(summary)),
        SummaryFormat::Json => {
            let document = summary_json(
                pipeline.stats(),
                &pipeline.plugin_label(),
                started.elapsed(),
            );
            if outputs_on_stdout {
                eprintln!("{document}");
            } else {
                println!("{document}");
            }
        }
    }
}

/// A run's summary for scripts: the counts, failures by kind, outputs by sink, each
/// stage's plugin work, the time taken and the process's peak memory.
fn summary_json(
    stats: &RunStats,
    plugin: &str,
    duration: std::time::Duration,
) -> serde_json::Value {
    let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let stages: Vec<serde_json::Value> = stats
        .stages
        .iter()
        .map(|(label, m)| {
            serde_json::json!({
                "plugin": label,
                "calls": m.calls,
                "isolation_calls": m.isolation_calls,
                "traps": m.traps,
                "instances": m.instances,
                "tier_ups": m.tier_ups,
                "plugin_ms": ms(m.plugin_time),
                "boundary_ms": ms(m.boundary_time),
                "counters": m.counters,
                "gauges": m.gauges,
                "metrics_dropped": m.metrics_dropped,
            })
        })
        .collect();
    let mut summary = stats.summary.to_json();
    summary.extend([
        (
            "failed_by_kind".to_owned(),
            serde_json::json!(stats.failed_by_kind),
        ),
        (
            "outputs_by_sink".to_owned(),
            serde_json::json!(stats.outputs_by_sink),
        ),
        ("plugin".to_owned(), plugin.into()),
        ("stages".to_owned(), stages.into()),
        (
            "lookups".to_owned(),
            stats
                .lookups
                .iter()
                .map(|(table, t)| {
                    let counts = serde_json::json!({
                        "hits": t.hits, "misses": t.misses, "calls": t.calls,
                        "errors": t.errors, "time_ms": ms(t.time),
                    });
                    (table.clone(), counts)
                })
                .collect::<serde_json::Map<_, _>>()
                .into(),
        ),
        ("duration_ms".to_owned(), ms(duration).into()),
        (
            "peak_memory_bytes".to_owned(),
            crate::report::peak_memory_bytes().into(),
        ),
    ]);
    serde_json::Value::Object(summary)
}

/// A progress line on stderr while a long input runs, only when stderr is a terminal
/// (a script or a log file gets the summary alone).
struct Progress {
    started: std::time::Instant,
    /// When the line was last drawn; `None` when stderr is not a terminal.
    drawn: Option<Option<std::time::Instant>>,
}

impl Progress {
    fn on_terminal() -> Self {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Self {
            started: std::time::Instant::now(),
            drawn: terminal.then_some(None),
        }
    }

    fn show(&mut self, stats: &RunStats) {
        let Some(drawn) = &mut self.drawn else {
            return;
        };
        if drawn.is_some_and(|at| at.elapsed() < std::time::Duration::from_millis(250)) {
            return;
        }
        *drawn = Some(std::time::Instant::now());
        eprint!("\r\x1b[K{}", progress_line(stats, self.started.elapsed()));
    }

    fn clear(&self) {
        if matches!(self.drawn, Some(Some(_))) {
            eprint!("\r\x1b[K");
        }
    }
}

/// `12000 records, 8400/s, 3 failed, 11990 outputs`.
fn progress_line(stats: &RunStats, elapsed: std::time::Duration) -> String {
    let s = &stats.summary;
    let rate = s.input as f64 / elapsed.as_secs_f64().max(1e-3);
    format!(
        "{} records, {rate:.0}/s, {} failed, {} outputs",
        s.input, s.failed, s.outputs
    )
}

/// Opens `--input` (a file, or `-` for stdin) as a record source.
fn open_input(
    args: &RunArgs,
    settings: &Settings,
    read: Option<Vec<u8>>,
) -> anyhow::Result<FileSource> {
    let mut version = None;
    let reader: Box<dyn BufRead + Send> = if let Some(bytes) = read.filter(|_| args.input == "-") {
        // Standard input, already read: it cannot be read again.
        Box::new(std::io::Cursor::new(bytes))
    } else if args.input == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("cannot open input {}", args.input))?;
        // Which contents of the path this is: a file rewritten in place (a rotated log,
        // the next day's export) is new input, not a redelivery of the old one.
        if let Ok(meta) = file.metadata() {
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            version = Some(format!("{}-{modified}", meta.len()));
        }
        Box::new(std::io::BufReader::with_capacity(1 << 16, file))
    };
    let source = FileSource::within(reader, args.format, &args.input, settings.input_limits())?
        .with_id_field(&settings.dedup_id_field);
    Ok(match version {
        Some(version) => source.with_version(&version),
        None => source,
    })
}

/// The objects a captured S3 notification (`--format s3-event`) names.
fn read_notification(
    args: &RunArgs,
    settings: &Settings,
) -> anyhow::Result<Vec<crate::sources::ObjectRef>> {
    let reader: Box<dyn std::io::Read> = if args.input == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&args.input)
                .with_context(|| format!("cannot open input {}", args.input))?,
        )
    };
    Ok(read_event(
        reader,
        Some(EventKind::S3),
        &args.input,
        settings.input_limits(),
    )?
    .objects)
}

/// `host reprocess`: dead-letter entries written before this run started go through the
/// pipeline again; each is settled by its verdict (see [`crate::sources::dlq`]).
pub(super) async fn reprocess(args: ReprocessArgs) -> anyhow::Result<()> {
    let settings = args.settings.resolve()?;
    anyhow::ensure!(
        !settings.sinks.is_empty(),
        "--sink: reprocessing delivers to sinks; give at least one"
    );
    let aws = AwsClients::from_env(settings.s3_path_style, settings.aws_timeouts).await;
    let mut pipeline = Pipeline::start(&settings, &aws).await?;
    let started = std::time::Instant::now();
    let summary = match &args.from {
        SinkSpec::Sqs { queue, .. } => {
            let mut source = QueueDlq::open(&aws, queue).await?;
            pipeline
                .run(&mut source, Outputs::Sinks, Budget::unbounded())
                .await?
        }
        SinkSpec::S3 { bucket, prefix, .. } => {
            let mut source = BucketDlq::open(&aws, bucket, prefix).await?;
            let summary = pipeline
                .run(&mut source, Outputs::Sinks, Budget::unbounded())
                .await?;
            for key in source.skipped() {
                eprintln!(
                    "skipped s3://{bucket}/{key}: not JSON lines (see the log); left in place"
                );
            }
            summary
        }
        SinkSpec::Kinesis { .. } | SinkSpec::File { .. } => {
            anyhow::bail!("--from: a dead-letter queue is sqs://QUEUE or s3://BUCKET/PREFIX")
        }
    };
    pipeline.finish(Outputs::Sinks).await?;
    print_summary(&pipeline, &summary, args.summary, false, started);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_says_records_rate_and_failures() {
        let stats = RunStats {
            summary: Summary {
                input: 12_000,
                failed: 3,
                outputs: 11_990,
                ..Summary::default()
            },
            ..RunStats::default()
        };
        assert_eq!(
            progress_line(&stats, std::time::Duration::from_secs(2)),
            "12000 records, 6000/s, 3 failed, 11990 outputs"
        );
    }
}
