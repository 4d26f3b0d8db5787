//! `host publish` and `host keygen`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use ed25519_dalek::SigningKey;

use super::parse_key_value;
use crate::aws::AwsClients;
use crate::engine::Engine;
use crate::limits::Limits;
use crate::registry::key_bytes;
use crate::registry::publish::{self, Prefix, Published, Release};

/// Flags of `host publish`.
#[derive(Debug, Args)]
pub(super) struct PublishArgs {
    /// The plugin's prefix: s3://BUCKET/plugins/NAME/.
    #[arg(long)]
    to: Prefix,
    /// The component to publish. Not with --rollback.
    #[arg(
        long,
        required_unless_present = "rollback",
        conflicts_with = "rollback"
    )]
    plugin: Option<PathBuf>,
    /// Publish under this version instead of the one the plugin reports; with
    /// --rollback, the version to go back to (default: the one before the live one).
    #[arg(long)]
    version: Option<String>,
    /// Publish under this name instead of the one the plugin reports.
    #[arg(long, conflicts_with = "rollback")]
    name: Option<String>,
    /// A setting the version ships with, `key=value` (hosts' own settings override it);
    /// checked by calling the plugin's `init` before anything is uploaded.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value, conflicts_with = "rollback")]
    config: Vec<(String, String)>,
    /// Sign the manifest (name, version, module hash, settings, sequence) with this
    /// ed25519 secret key file (from `host keygen`); a rollback of a signed version
    /// needs it too.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// Point the live manifest back at an earlier version.
    #[arg(long)]
    rollback: bool,
    /// Pin the live manifest: later publishes store their version without making it live.
    #[arg(long)]
    pin: bool,
    /// Make the version live even though the live manifest is pinned.
    #[arg(long, conflicts_with = "rollback")]
    force: bool,
    /// Store the module precompiled for these architectures (this host's own, e.g.
    /// x86_64), signed with the manifest: a host with the public key and the same engine
    /// loads it instead of compiling. Needs --signing-key.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "ARCH",
        conflicts_with = "rollback"
    )]
    precompile: Vec<String>,
    /// The lookup tables the plugin reads, by logical name: signed into the manifest,
    /// they are all it may read, and a host refuses to start it unless the operator
    /// mapped each (PIPELINE_LOOKUPS).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "TABLE",
        conflicts_with = "rollback"
    )]
    lookups: Vec<String>,
    /// The schema of a destination's outputs, `DEST=FILE` (`.avsc`: Avro, `.json`: JSON
    /// Schema; `default` for outputs without a destination): signed into the manifest,
    /// every output there is checked against it before anything of its record is sent.
    #[arg(
        long = "output-schema",
        value_name = "DEST=FILE",
        conflicts_with = "rollback"
    )]
    output_schemas: Vec<String>,
    /// How a destination's new output schema must fit the live version's (the
    /// registries' modes: BACKWARD, FORWARD, FULL, each also _TRANSITIVE or _ALL against
    /// every published version; NONE; DISABLED: no change).
    #[arg(long, default_value = "BACKWARD", conflicts_with = "rollback")]
    compatibility: crate::schemas::Mode,
    /// Publish even when an output schema does not fit under --compatibility.
    #[arg(long, conflicts_with = "rollback")]
    allow_incompatible: bool,
}

/// Flags of `host keygen`.
#[derive(Debug, Args)]
pub(super) struct KeygenArgs {
    /// Where the secret key goes (hex; created, never overwritten).
    #[arg(long)]
    out: PathBuf,
}

pub(super) async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let settings = crate::settings::some_from_env(&[
        "PIPELINE_S3_PATH_STYLE",
        "PIPELINE_AWS_TIMEOUT_MS",
        "PIPELINE_AWS_ATTEMPT_TIMEOUT_MS",
    ])?;
    // A publish uploads whole modules and artifacts (an 18 MB Python component): each
    // attempt gets at least a minute, whatever the function's own timeouts are.
    let timeouts = crate::aws::AwsTimeouts {
        operation: settings
            .aws_timeouts
            .operation
            .max(Duration::from_secs(300)),
        attempt: settings.aws_timeouts.attempt.max(Duration::from_secs(60)),
    };
    let aws = AwsClients::from_env(settings.s3_path_style, timeouts).await;
    let signing_key = args
        .signing_key
        .as_ref()
        .map(|file| -> anyhow::Result<SigningKey> {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read --signing-key {}", file.display()))?;
            let bytes = key_bytes(&text)
                .map_err(|e| anyhow::anyhow!("--signing-key {}: {e}", file.display()))?;
            Ok(SigningKey::from_bytes(&bytes))
        })
        .transpose()?;
    let at = format!("s3://{}/{}", args.to.bucket, args.to.prefix);
    if args.rollback {
        let (was, now) = publish::rollback(
            &aws.s3,
            &args.to,
            args.version.as_deref(),
            args.pin,
            signing_key.as_ref(),
        )
        .await?;
        println!(
            "{at}: live version is now {} (was {}){}",
            now.label(),
            was.label(),
            if now.pinned { ", pinned" } else { "" }
        );
        return Ok(());
    }
    let path = args.plugin.context("--plugin is required")?;
    let module = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let engine = Engine::new(&Limits::default())?;
    let release = Release {
        module,
        name: args.name,
        version: args.version,
        config: args.config.into_iter().collect(),
        signing_key,
        pin: args.pin,
        force: args.force,
        precompile: args.precompile,
        lookups: args.lookups,
        output_schemas: output_schemas(&args.output_schemas)?,
        compatibility: args.compatibility,
        allow_incompatible: args.allow_incompatible,
    };
    match publish::publish(&engine, &aws.s3, &args.to, release).await? {
        Published::Live(manifest) => println!(
            "{at}: {} is live (sha256 {}){}{}{}",
            manifest.label(),
            manifest.sha256,
            if manifest.signature.is_some() {
                ", signed"
            } else {
                ""
            },
            if manifest.pinned { ", pinned" } else { "" },
            manifest
                .artifacts
                .iter()
                .map(|a| format!(", precompiled for {}", a.arch))
                .collect::<String>()
        ),
        Published::HeldByPin { published, pinned } => println!(
            "{at}: {} is published but not live: the live manifest is pinned to {} \
             (make it live with --force, or --rollback --version {})",
            published.label(),
            pinned.label(),
            published.version
        ),
    }
    Ok(())
}

pub(super) fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&args.out)
        .with_context(|| format!("cannot create --out {}", args.out.display()))?;
    writeln!(file, "{}", hex::encode(key.to_bytes()))?;
    println!("{}", hex::encode(key.verifying_key().to_bytes()));
    Ok(())
}

/// `DEST=FILE` flags as each destination's schema, read and checked.
fn output_schemas(
    flags: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, crate::schemas::DeclaredSchema>> {
    let mut schemas = std::collections::BTreeMap::new();
    for flag in flags {
        let (destination, file) = flag
            .split_once('=')
            .filter(|(d, f)| !d.is_empty() && !f.is_empty())
            .ok_or_else(|| anyhow::anyhow!("--output-schema {flag:?}: expected DEST=FILE"))?;
        let schema = crate::schemas::DeclaredSchema::from_file(std::path::Path::new(file))
            .map_err(|e| anyhow::anyhow!("--output-schema {destination}: {e}"))?;
        schemas.insert(destination.to_owned(), schema);
    }
    Ok(schemas)
}
