//! The `host` command line: raw flags, resolved into [`Limits`] and a local run.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::accounting::Summary;
use crate::config::Limits;
use crate::dlq::{DlqEntry, PluginRef};
use crate::engine::{Engine, Runner};
use crate::record::{Failure, FailureKind, Outcome};
use crate::sinks::{Emit, JsonLinesFile, Target};
use crate::sources::{FileSource, InputFormat, Undecodable};

/// Runs WebAssembly transform plugins over records.
#[derive(Debug, Parser)]
#[command(name = "host", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a plugin over a local input: outputs to --output, failures to --dlq.
    Run(Box<RunArgs>),
    /// Serve as an AWS Lambda custom runtime (the default when AWS_LAMBDA_RUNTIME_API
    /// is set and no command is given); configured by PIPELINE_* variables.
    Lambda,
}

/// Flags of `host run`, as typed.
#[derive(Debug, Args)]
struct RunArgs {
    /// The plugin: a WebAssembly component built for wasm32-wasip2.
    #[arg(long)]
    plugin: PathBuf,
    /// The input file, or `-` for stdin.
    #[arg(long)]
    input: String,
    /// How the input is split into records.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: InputFormat,
    /// A plugin setting, `key=value`; repeat for more.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// Where outputs go (JSON lines); stdout when omitted.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Where failed records go, with their error (JSON lines).
    #[arg(long, default_value = "dlq.jsonl")]
    dlq: PathBuf,
    /// How each output is written.
    #[arg(long, value_enum, default_value = "envelope")]
    emit: Emit,
    /// Records per call into the plugin [default: 1000].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Memory cap of the plugin in MiB [default: 128].
    #[arg(long)]
    memory_mib: Option<usize>,
    /// CPU deadline per batch call in milliseconds [default: 1000].
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Largest payload one output may have, in bytes [default: 1048576].
    #[arg(long)]
    max_output_bytes: Option<usize>,
    /// Attempts for records failing with an infrastructure error [default: 3].
    #[arg(long)]
    max_attempts: Option<u32>,
    /// First retry delay in milliseconds, doubled per attempt [default: 100].
    #[arg(long)]
    retry_base_ms: Option<u64>,
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

impl RunArgs {
    fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            memory_bytes: self
                .memory_mib
                .map_or(d.memory_bytes, |m| m.saturating_mul(1 << 20)),
            deadline: self.deadline_ms.map_or(d.deadline, Duration::from_millis),
            max_output_bytes: self.max_output_bytes.unwrap_or(d.max_output_bytes),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            max_attempts: self.max_attempts.unwrap_or(d.max_attempts),
            retry_base_delay: self
                .retry_base_ms
                .map_or(d.retry_base_delay, Duration::from_millis),
        }
    }
}

/// Entry point of the `host` binary: parses flags, runs, prints one-line errors.
pub fn main() -> ExitCode {
    init_logging();
    // As a Lambda `bootstrap`, the binary is started without arguments.
    let lambda =
        std::env::args_os().len() == 1 && std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let command = if lambda {
        Command::Lambda
    } else {
        Cli::parse().command
    };
    let result = match command {
        Command::Run(args) => run(*args),
        Command::Lambda => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(crate::lambda::run())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// `host run`: everything is checked before the first output is written; output and
/// DLQ files appear only when the whole input was processed.
fn run(args: RunArgs) -> anyhow::Result<()> {
    let limits = args.limits();
    limits.validate()?;
    let reader: Box<dyn BufRead> = if args.input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("cannot open input {}", args.input))?;
        Box::new(std::io::BufReader::with_capacity(1 << 16, file))
    };
    let source = FileSource::new(reader, args.format, &args.input)?;
    let engine = Engine::new(&limits)?;
    let plugin = engine.load_file(&args.plugin)?;
    let plugin_ref = PluginRef {
        name: plugin.name().to_owned(),
        version: plugin.version().to_owned(),
    };
    let mut runner = Runner::new(plugin, args.config.clone())?;
    let output_target = args.output.clone().map_or(Target::Stdout, Target::File);
    let mut outputs = JsonLinesFile::create(&output_target).context("cannot create --output")?;
    let mut dlq = JsonLinesFile::create(&Target::File(args.dlq.clone()))
        .with_context(|| format!("cannot create --dlq {}", args.dlq.display()))?;

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
