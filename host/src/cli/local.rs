//! `host run` over local files: outputs and DLQ as JSON-lines files.

use std::io::BufRead;

use anyhow::Context as _;

use super::RunArgs;
use crate::accounting::Summary;
use crate::dlq::{DlqEntry, PluginRef};
use crate::engine::{Engine, Runner};
use crate::record::{Failure, FailureKind, Outcome};
use crate::sinks::{JsonLinesFile, Target};
use crate::sources::{FileSource, Undecodable};

/// Opens `--input` (a file, or `-` for stdin) as a record source.
pub(super) fn open_input(args: &RunArgs) -> anyhow::Result<FileSource> {
    let reader: Box<dyn BufRead> = if args.input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("cannot open input {}", args.input))?;
        Box::new(std::io::BufReader::with_capacity(1 << 16, file))
    };
    Ok(FileSource::new(reader, args.format, &args.input)?)
}

/// `host run`: everything is checked before the first output is written; output and
/// DLQ files appear only when the whole input was processed.
pub(super) fn run(args: RunArgs) -> anyhow::Result<()> {
    let limits = args.plugin.limits();
    limits.validate()?;
    let dlq_path = std::path::PathBuf::from(&args.dlq);
    let source = open_input(&args)?;
    let engine = Engine::new(&limits)?;
    let plugin = engine.load_file(&args.plugin.plugin)?;
    let plugin_ref = PluginRef {
        name: plugin.name().to_owned(),
        version: plugin.version().to_owned(),
    };
    let mut runner = Runner::new(plugin, args.plugin.config.clone())?;
    let output_target = args.output.clone().map_or(Target::Stdout, Target::File);
    let mut outputs = JsonLinesFile::create(&output_target).context("cannot create --output")?;
    let mut dlq = JsonLinesFile::create(&Target::File(dlq_path.clone()))
        .with_context(|| format!("cannot create --dlq {}", dlq_path.display()))?;

    let mut summary = Summary::default();
    let mut source = source.peekable();
    while source.peek().is_some() {
        // Undecodable items go to the DLQ in input order: each remembers how many
        // records preceded it in the batch.
        let mut records = Vec::with_capacity(limits.batch_size);
        let mut undecodable = Vec::new();
        for item in source.by_ref().take(limits.batch_size) {
            match item? {
                Ok(record) => records.push(record),
                Err(bad) => undecodable.push((records.len(), bad)),
            }
        }
        let outcomes = runner.run(&records);
        anyhow::ensure!(
            outcomes.len() == records.len(),
            "runner returned {} outcomes for {} records",
            outcomes.len(),
            records.len()
        );
        let mut undecodable = undecodable.into_iter().peekable();
        for (position, (record, outcome)) in records.iter().zip(&outcomes).enumerate() {
            while let Some((_, bad)) = undecodable.next_if(|(before, _)| *before == position) {
                write_undecodable(&mut dlq, &mut summary, bad, &plugin_ref)?;
            }
            summary.count(outcome);
            match outcome {
                Outcome::Transformed(list) => {
                    for output in list {
                        outputs
                            .write_output(output, args.emit)
                            .context("cannot write output")?;
                    }
                }
                Outcome::Dropped => {}
                Outcome::Failed(failure) => {
                    dlq.write_json(&DlqEntry::new(record, failure, &plugin_ref))
                        .context("cannot write DLQ")?;
                }
            }
        }
        for (_, bad) in undecodable {
            write_undecodable(&mut dlq, &mut summary, bad, &plugin_ref)?;
        }
    }
    outputs.commit().context("cannot finish --output")?;
    dlq.commit().context("cannot finish --dlq")?;
    let metrics = runner.metrics();
    eprintln!(
        "summary: {summary} plugin={}@{} calls={} traps={}{}",
        plugin_ref.name,
        plugin_ref.version,
        metrics.calls,
        metrics.traps,
        metrics
            .counters
            .iter()
            .map(|(k, v)| format!(" counter.{k}={v}"))
            .collect::<String>(),
    );
    anyhow::ensure!(summary.balanced(), "accounting does not balance: {summary}");
    Ok(())
}

fn write_undecodable(
    dlq: &mut JsonLinesFile,
    summary: &mut Summary,
    bad: Undecodable,
    plugin: &PluginRef,
) -> anyhow::Result<()> {
    let failure = Failure {
        kind: FailureKind::Decode,
        message: bad.reason,
        attempts: 0,
    };
    dlq.write_json(&DlqEntry::new(&bad.record, &failure, plugin))
        .context("cannot write DLQ")?;
    summary.count(&Outcome::Failed(failure));
    Ok(())
}
