//! `host run` over local files: outputs and DLQ as JSON-lines files.

use std::io::BufRead;

use anyhow::Context as _;

use super::RunArgs;
use crate::accounting::Summary;
use crate::dlq::{DlqEntry, PluginRef};
use crate::engine::{Chain, Engine};
use crate::record::{Failure, FailureKind, Outcome};
use crate::registry::{PluginLocation, load_file};
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
    let mut chain = load_chain(&args, &limits)?;
    let plugins = PluginRef::of_chain(&chain);
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
        let outcomes = chain.run(&records);
        anyhow::ensure!(
            outcomes.len() == records.len(),
            "runner returned {} outcomes for {} records",
            outcomes.len(),
            records.len()
        );
        let mut undecodable = undecodable.into_iter().peekable();
        for (position, (record, outcome)) in records.iter().zip(&outcomes).enumerate() {
            while let Some((_, bad)) = undecodable.next_if(|(before, _)| *before == position) {
                write_undecodable(&mut dlq, &mut summary, bad, &plugins[0])?;
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
                    let plugin = &plugins[failure.stage.min(plugins.len() - 1)];
                    dlq.write_json(&DlqEntry::new(record, failure, plugin))
                        .context("cannot write DLQ")?;
                }
            }
        }
        for (_, bad) in undecodable {
            write_undecodable(&mut dlq, &mut summary, bad, &plugins[0])?;
        }
    }
    outputs.commit().context("cannot finish --output")?;
    dlq.commit().context("cannot finish --dlq")?;
    // One plugin: its numbers follow the summary. A chain: one bracket per stage.
    let mut line = format!("summary: {summary} plugin={}", chain.label());
    let chained = chain.stages().len() > 1;
    for (runner, stats) in chain.stages().iter().zip(chain.stats()) {
        let metrics = runner.metrics();
        let mut numbers = format!("calls={} traps={}", metrics.calls, metrics.traps);
        for (name, value) in &metrics.counters {
            numbers.push_str(&format!(" counter.{name}={value}"));
        }
        if chained {
            line.push_str(&format!(
                " [{}: {stats} {numbers}]",
                runner.plugin().label()
            ));
        } else {
            line.push_str(&format!(" {numbers}"));
        }
    }
    eprintln!("{line}");
    anyhow::ensure!(summary.balanced(), "accounting does not balance: {summary}");
    Ok(())
}

/// The `--plugin` files, started in order (through `--cache-dir` when given).
fn load_chain(args: &RunArgs, limits: &crate::config::Limits) -> anyhow::Result<Chain> {
    let engine = Engine::new(limits)?;
    let cache = match &args.plugin.cache_dir {
        Some(dir) => Some(
            engine
                .artifact_cache(dir)
                .with_context(|| format!("--cache-dir {}", dir.display()))?,
        ),
        None => None,
    };
    anyhow::ensure!(
        args.plugin.public_key.is_none(),
        "--public-key needs s3:// plugins with signed manifests (and --sink)"
    );
    let mut runners = Vec::new();
    for location in args.plugin.locations()? {
        let PluginLocation::File(path) = location else {
            anyhow::bail!("--plugin {location}: S3 plugins run with --sink (the Lambda pipeline)");
        };
        let loaded = load_file(&engine, &path, cache.as_ref(), &args.plugin.config)?;
        tracing::debug!(plugin = %loaded.runner.plugin().label(), cache = loaded.timings.load.cache.as_str(), "plugin ready");
        runners.push(loaded.runner);
    }
    Ok(Chain::new(runners))
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
        stage: 0,
    };
    dlq.write_json(&DlqEntry::new(&bad.record, &failure, plugin))
        .context("cannot write DLQ")?;
    summary.count(&Outcome::Failed(failure));
    Ok(())
}
