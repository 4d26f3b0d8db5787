//! The `host` command line: flags in, a front door out. Every setting's flag comes from
//! the one table in `settings/table.rs` (so `--batch-size` and `PIPELINE_BATCH_SIZE` are the
//! same setting); the commands only add what is theirs (the input, where outputs go).
//!
//! - `host run`: a plugin over a local input; outputs to a file (or to sinks with
//!   `--sink`), failures to the DLQ.
//! - `host reprocess`: DLQ entries back through the plugin and the sinks.
//! - `host test`: a plugin against golden cases (input, expected outputs and failures).
//! - `host new`: a plugin project of its own, outside this workspace.
//! - `host publish`: a plugin version into S3 (module, manifest), or a rollback.
//! - `host keygen`: an ed25519 key pair for signing published plugins.
//! - `host lambda`: the Lambda custom runtime (also the default as a `bootstrap`).
//!
//! # Layout
//! - `mod.rs`: the flags, and the table's settings as flags.
//! - `run.rs`: `host run` and `host reprocess`, each a source into the pipeline.
//! - `golden.rs`: `host test`, golden cases through the pipeline.
//! - `new.rs`: `host new`, a plugin project from templates.
//! - `publish.rs`: `host publish`, `host keygen`.

mod golden;
mod new;
mod new_js;
mod publish;
mod run;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Args, Parser, Subcommand};

use crate::settings::{FrontDoor, SETTINGS, SettingError, Settings};
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
    /// Start a plugin project of its own (outside this workspace): a crate on guest-sdk
    /// with a sample transform, unit tests and golden cases; builds with one command.
    New(NewArgs),
    /// Check a plugin against golden cases: each case file in --cases holds an input and
    /// the outputs, dead letters and drops expected; --update writes what it does now.
    Test(Box<TestArgs>),
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

/// The pipeline settings as typed on the command line, one flag per row of
/// [`SETTINGS`]; resolved (flag, then variable, then default) by [`SettingArgs::resolve`].
#[derive(Debug, Clone, Default)]
struct SettingArgs {
    typed: BTreeMap<&'static str, Vec<String>>,
}

impl SettingArgs {
    fn resolve(&self) -> Result<Settings, SettingError> {
        Settings::resolve(
            FrontDoor::Cli,
            |row| {
                row.flag
                    .and_then(|flag| self.typed.get(flag).cloned())
                    .unwrap_or_default()
            },
            |name| std::env::var(name).ok(),
        )
    }
}

impl Args for SettingArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        SETTINGS.iter().fold(command, |command, row| {
            let Some(flag) = row.flag else {
                return command;
            };
            let default = row
                .default
                .map_or_else(String::new, |d| format!(", default {d}"));
            let help = format!("{} ({}{default}; env {})", row.about, row.bounds, row.env);
            let action = if row.list {
                ArgAction::Append
            } else {
                ArgAction::Set
            };
            command.arg(
                Arg::new(flag)
                    .long(flag)
                    .visible_aliases(row.aliases)
                    .help(help)
                    .action(action),
            )
        })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl clap::FromArgMatches for SettingArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut typed = BTreeMap::new();
        for flag in SETTINGS.iter().filter_map(|row| row.flag) {
            if let Some(values) = matches.get_many::<String>(flag) {
                typed.insert(flag, values.cloned().collect());
            }
        }
        Ok(Self { typed })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// Flags of `host run`, as typed.
#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    settings: SettingArgs,
    /// The input file, or `-` for stdin.
    #[arg(long)]
    input: String,
    /// How the input is split into records.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: InputFormat,
    /// Where outputs go (JSON lines); stdout when omitted or `-`. Not with --sink.
    #[arg(long, conflicts_with = "sink")]
    output: Option<PathBuf>,
    /// How each output is written to --output.
    #[arg(long, value_enum, default_value = "envelope")]
    emit: Emit,
    /// How the run's closing summary is written: a line on stderr, or one JSON object on
    /// stdout (on stderr when the outputs go to stdout).
    #[arg(long, value_enum, default_value = "text")]
    summary: SummaryFormat,
}

/// The closing summary's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SummaryFormat {
    /// `summary: in=… transformed=…` on stderr.
    Text,
    /// One JSON object, for scripts.
    Json,
}

/// Flags of `host new`, as typed.
#[derive(Debug, Args)]
struct NewArgs {
    /// The plugin's name (its crate name): lowercase letters, digits, `-`, `_`.
    name: String,
    /// The language it is written in.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Where the project goes (default: ./NAME); must not exist or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rust: guest-sdk from this folder (default: the checkout this host was built from).
    #[arg(long, conflicts_with = "sdk_git")]
    sdk_path: Option<PathBuf>,
    /// Rust: guest-sdk from this git repository instead.
    #[arg(long)]
    sdk_git: Option<String>,
}

/// A plugin's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Lang {
    /// Rust, through guest-sdk.
    Rust,
    /// Python, through guest-sdk-python and componentize-py.
    Python,
    /// JavaScript, through guest-sdk-js and componentize-js.
    Js,
    /// TypeScript, through guest-sdk-js (its type declarations) and componentize-js.
    Ts,
}

/// Flags of `host test`, as typed.
#[derive(Debug, Args)]
struct TestArgs {
    #[command(flatten)]
    settings: SettingArgs,
    /// The folder of case files (`*.json`).
    #[arg(long, default_value = "tests/cases")]
    cases: PathBuf,
    /// Write what the plugin does now as each case's expectation.
    #[arg(long)]
    update: bool,
}

/// Flags of `host reprocess`, as typed.
#[derive(Debug, Args)]
struct ReprocessArgs {
    #[command(flatten)]
    settings: SettingArgs,
    /// The dead-letter queue to drain: sqs://QUEUE or s3://BUCKET/PREFIX.
    #[arg(long, value_parser = parse_spec)]
    from: SinkSpec,
    /// How the run's closing summary is written: a line on stderr, or one JSON object on
    /// stdout.
    #[arg(long, value_enum, default_value = "text")]
    summary: SummaryFormat,
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

/// Entry point of the `host` binary: parses flags, runs, prints one-line errors.
pub fn main() -> ExitCode {
    // As a Lambda `bootstrap`, the binary is started without arguments.
    let lambda =
        std::env::args_os().len() == 1 && std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let lambda_command = std::env::args_os().nth(1).is_some_and(|a| a == "lambda");
    // The Lambda log is the operator's record of each batch; on the command line the
    // summary line says it, and only warnings and errors join it unless HOST_LOG asks.
    init_logging(
        if lambda || lambda_command {
            "info"
        } else {
            "warn"
        },
        // Lambda's advanced logging controls: one JSON object per line.
        (lambda || lambda_command)
            && std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")),
    );
    let command = if lambda {
        Command::Lambda
    } else {
        Cli::parse().command
    };
    let result = match command {
        Command::Run(args) => in_runtime(run::run(*args)),
        Command::Reprocess(args) => in_runtime(run::reprocess(*args)),
        Command::Test(args) => in_runtime(golden::test(*args)),
        Command::New(args) => new::new(&args),
        Command::Publish(args) => in_runtime(publish::publish(*args)),
        Command::Keygen(args) => publish::keygen(&args),
        Command::Lambda => in_runtime(crate::lambda::run()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", crate::report::one_line(e.as_ref()));
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

/// Text logs on stderr; with `json`, one JSON object per line (timestamp, level,
/// message, the event's fields, and the span's: the Lambda runtime's carries the
/// request id), which CloudWatch Logs parses.
fn init_logging(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}
