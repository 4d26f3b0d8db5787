//! The `host` command line: raw flags, resolved into [`Limits`] and a run.
//!
//! - `host run`: a plugin over a local input; outputs to a file (or to sinks with
//!   `--sink`), failures to the DLQ.
//! - `host reprocess`: DLQ entries back through the plugin and the sinks.
//! - `host publish`: a plugin version into S3 (module, manifest), or a rollback.
//! - `host keygen`: an ed25519 key pair for signing published plugins.
//! - `host lambda`: the Lambda custom runtime (also the default as a `bootstrap`).

mod local;
mod publish;
mod remote;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::Limits;
use crate::registry::{PluginLocation, verifying_key};
use crate::sinks::{Emit, SinkSpec};
use crate::sources::InputFormat;

/// Runs WebAssembly transform plugins over records.
#[derive(Debug, Parser)]
#[command(name = "host", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a plugin over an input: outputs to --output (or to --sink sinks), failures to --dlq.
    Run(Box<RunArgs>),
    /// Run dead-letter entries (from sqs://QUEUE or s3://BUCKET/PREFIX) through the plugin
    /// and the sinks again; each entry is deleted only once it is delivered.
    Reprocess(Box<ReprocessArgs>),
    /// Publish a plugin version to s3://BUCKET/plugins/NAME/ (module, then manifest), or
    /// with --rollback point the live manifest back at an earlier version.
    Publish(Box<publish::PublishArgs>),
    /// Make an ed25519 key pair: the secret key goes to --out, the public key is printed
    /// (give it to hosts as PIPELINE_PLUGIN_PUBLIC_KEY).
    Keygen(publish::KeygenArgs),
    /// Serve as an AWS Lambda custom runtime (the default when AWS_LAMBDA_RUNTIME_API
    /// is set and no command is given); configured by PIPELINE_* variables.
    Lambda,
}

/// The plugin and its limits, shared by `run` and `reprocess`.
#[derive(Debug, Args)]
struct PluginArgs {
    /// The plugin: a WebAssembly component built for wasm32-wasip2 (a path; with --sink
    /// or for reprocess also s3://BUCKET/plugins/NAME/). Repeat to chain plugins: each
    /// one's outputs are the next one's records.
    #[arg(long, required = true)]
    plugin: Vec<String>,
    /// Keep precompiled plugins in this directory, so the next start skips compiling.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Require manifests signed by this ed25519 public key (hex or base64).
    #[arg(long)]
    public_key: Option<String>,
    /// With an s3:// plugin: seconds between checks for a new version.
    #[arg(long, default_value_t = 30)]
    check_seconds: u64,
    /// A plugin setting, `key=value`; repeat for more.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
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
    /// Attempts for records failing with an infrastructure error, and for sink calls [default: 3].
    #[arg(long)]
    max_attempts: Option<u32>,
    /// First retry delay in milliseconds, doubled per attempt [default: 100].
    #[arg(long)]
    retry_base_ms: Option<u64>,
}

/// Flags of `host run`, as typed.
#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    plugin: PluginArgs,
    /// The input file, or `-` for stdin.
    #[arg(long)]
    input: String,
    /// How the input is split into records.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: InputFormat,
    /// Where outputs go (JSON lines); stdout when omitted. Not with --sink.
    #[arg(long, conflicts_with = "sink")]
    output: Option<PathBuf>,
    /// A named sink, `NAME=kinesis://STREAM|sqs://QUEUE|s3://BUCKET/PREFIX[?gzip=true]`;
    /// repeat for more. Outputs without a destination go to `default`.
    #[arg(long, value_name = "NAME=SPEC", value_parser = parse_sink)]
    sink: Vec<(String, SinkSpec)>,
    /// Where failed records go: a JSON-lines file, or with --sink, sqs://QUEUE or
    /// s3://BUCKET/PREFIX.
    #[arg(long, default_value = "dlq.jsonl")]
    dlq: String,
    /// How each output is written to --output.
    #[arg(long, value_enum, default_value = "envelope")]
    emit: Emit,
}

/// Flags of `host reprocess`, as typed.
#[derive(Debug, Args)]
struct ReprocessArgs {
    #[command(flatten)]
    plugin: PluginArgs,
    /// The dead-letter queue to drain: sqs://QUEUE or s3://BUCKET/PREFIX.
    #[arg(long, value_parser = parse_spec)]
    from: SinkSpec,
    /// A named sink, as for `host run`; repeat for more.
    #[arg(long, value_name = "NAME=SPEC", value_parser = parse_sink, required = true)]
    sink: Vec<(String, SinkSpec)>,
    /// Where records that fail again go: sqs://QUEUE or s3://BUCKET/PREFIX (may be --from).
    #[arg(long, value_parser = parse_spec)]
    dlq: SinkSpec,
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

fn parse_spec(raw: &str) -> Result<SinkSpec, String> {
    raw.parse()
        .map_err(|e: crate::sinks::SinkSpecError| e.to_string())
}

fn parse_sink(raw: &str) -> Result<(String, SinkSpec), String> {
    let (name, spec) = parse_key_value(raw)?;
    Ok((name, parse_spec(&spec)?))
}

impl PluginArgs {
    fn locations(&self) -> anyhow::Result<Vec<PluginLocation>> {
        self.plugin
            .iter()
            .map(|p| PluginLocation::parse(p).map_err(|e| anyhow::anyhow!("--plugin {e}")))
            .collect()
    }

    fn public_key(&self) -> anyhow::Result<Option<ed25519_dalek::VerifyingKey>> {
        self.public_key
            .as_deref()
            .map(|k| verifying_key(k).map_err(|e| anyhow::anyhow!("--public-key: {e}")))
            .transpose()
    }

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
        Command::Run(args) if args.sink.is_empty() => local::run(*args),
        Command::Run(args) => in_runtime(remote::run(*args)),
        Command::Reprocess(args) => in_runtime(remote::reprocess(*args)),
        Command::Publish(args) => in_runtime(publish::publish(*args)),
        Command::Keygen(args) => publish::keygen(&args),
        Command::Lambda => in_runtime(crate::lambda::run()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn in_runtime(future: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
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
