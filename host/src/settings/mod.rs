//! Every setting of the pipeline in one table: its flag, its environment variable, its
//! default, its bounds and its parser. The Lambda host reads the environment; the command
//! line reads its flags, then the same environment variables, then the defaults. A value
//! out of range is refused with the name the user spelled it by.
//!
//! [`SETTINGS`] is the table; [`Settings::resolve`] applies it; the settings table of
//! `docs/settings.md` is [`markdown_table`] (a test keeps the two the same).
//!
//! # Layout
//! - `mod.rs`: [`Settings`], their defaults (read from the table), [`Settings::resolve`]
//!   for either front door, and the rules between settings.
//! - `table.rs`: [`SETTINGS`], the table.

mod table;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;

use crate::aws::AwsTimeouts;
use crate::limits::Limits;
use crate::registry::PluginLocation;
use crate::sinks::SinkSpec;

use table::split;
pub use table::{Bounds, Required, SETTINGS, Setting};

/// Which front door is reading the settings: it decides where values come from and
/// which settings must be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontDoor {
    /// The Lambda host: the environment only.
    Lambda,
    /// `host run` / `host reprocess`: flags, then the environment.
    Cli,
}

/// The resolved configuration of one pipeline, whichever front door built it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The plugin locations, in chain order (at least one).
    pub plugins: Vec<PluginLocation>,
    /// Plugin settings, over the manifest's shipped ones; every stage sees them.
    pub plugin_config: Vec<(String, String)>,
    /// Least time between two checks of a manifest for a new version.
    pub check_interval: Duration,
    /// Manifests must be signed by this key, when set.
    pub public_key: Option<VerifyingKey>,
    /// Where precompiled plugins are kept; `None`: compile every start.
    pub cache_dir: Option<PathBuf>,
    /// Named sinks; `default` takes outputs without a destination.
    pub sinks: BTreeMap<String, SinkSpec>,
    /// Where failed records go.
    pub dlq: SinkSpec,
    /// Where a DLQ entry too large for its queue is stored whole (bucket, prefix).
    pub dlq_overflow: Option<(String, String)>,
    /// Where S3 notifications record how far they got when out of time (bucket,
    /// prefix); when unset, next to an S3 DLQ.
    pub checkpoints: Option<(String, String)>,
    /// Resource limits and retry policy; `limits.batch_size` is the one batch size.
    pub limits: Limits,
    /// Path-style S3 addressing (emulators need it).
    pub s3_path_style: bool,
    /// Longest input record (a line of a file or an S3 object) taken whole.
    pub max_record_bytes: usize,
    /// Bytes the gzip records of one event may inflate to together.
    pub max_event_bytes: usize,
    /// How long AWS calls may take.
    pub aws_timeouts: AwsTimeouts,
    /// In Lambda, no batch or retry starts later than this before the invocation's
    /// deadline; what is left is handed back to the event source.
    pub time_margin: Duration,
    /// The idempotency store, when records are deduplicated.
    pub dedup: Option<crate::idempotency::StoreSpec>,
    /// How long the store remembers a record as done.
    pub dedup_ttl: Duration,
    /// Longest a claim on a record lasts (a Lambda invocation's lasts until its deadline).
    pub dedup_claim: Duration,
    /// The field of a direct invocation's records that names them.
    pub dedup_id_field: String,
    /// Open SQS, SNS and EventBridge envelopes (`PIPELINE_ENVELOPES`).
    pub envelopes: bool,
    /// Which schema-registry framings are opened.
    pub schema_framing: crate::schemas::FramingSetting,
    /// A Confluent-compatible schema registry's URL.
    pub confluent_registry: Option<String>,
    /// The Secrets Manager secret holding the Confluent registry's credential.
    pub confluent_secret: Option<String>,
    /// Whether a sink writing registry framing registers a declared schema the
    /// registry lacks.
    pub schema_register: bool,
    /// The lookup tables plugins may read, by logical name.
    pub lookups: BTreeMap<String, crate::lookup::TableSpec>,
    /// Each lookup table's cache.
    pub lookup_cache: crate::lookup::CacheLimits,
    /// Bytes an S3 or file lookup table may have.
    pub lookup_max_table_bytes: u64,
    /// The CloudWatch namespace of the Lambda host's metrics; `None`: none written.
    pub metrics_namespace: Option<String>,
    /// An invocation running longer than this writes its metrics as it goes.
    pub metrics_interval: Duration,
    /// The front door that read these settings: messages name a setting as it spells it.
    pub door: FrontDoor,
}

/// Every setting at its default, read from [`SETTINGS`] (the one place a default is
/// written); a setting without one is empty. The limits, the AWS timeouts and the input
/// limits take their defaults from here too.
impl Default for Settings {
    fn default() -> Self {
        let mut settings = Self::blank();
        for row in SETTINGS {
            if let Some(default) = row.default {
                // Every default parses: `every_default_is_accepted_by_its_own_parser`.
                if let Err(reason) = (row.apply)(&mut settings, &[default.to_owned()], row) {
                    unreachable!("{}'s default {default:?} is refused: {reason}", row.env);
                }
            }
        }
        settings
    }
}

impl Default for Limits {
    fn default() -> Self {
        Settings::default().limits
    }
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        Settings::default().aws_timeouts
    }
}

impl Default for crate::sources::InputLimits {
    fn default() -> Self {
        Settings::default().input_limits()
    }
}

impl Settings {
    /// Settings with nothing set, before the table's defaults apply: every value here is
    /// empty or zero, and every one a row has a default for is overwritten by it.
    fn blank() -> Self {
        Self {
            plugins: Vec::new(),
            plugin_config: Vec::new(),
            check_interval: Duration::ZERO,
            public_key: None,
            cache_dir: None,
            sinks: BTreeMap::new(),
            dlq: SinkSpec::File {
                path: None,
                emit: crate::sinks::Emit::Payload,
            },
            dlq_overflow: None,
            checkpoints: None,
            limits: Limits {
                memory_bytes: 0,
                deadline: Duration::ZERO,
                max_output_bytes: 0,
                max_outputs_per_record: 0,
                max_call_output_bytes: 0,
                batch_size: 0,
                max_attempts: 0,
                retry_base_delay: Duration::ZERO,
                tiered_start: false,
                function_memory_mib: None,
            },
            s3_path_style: false,
            max_record_bytes: 0,
            max_event_bytes: 0,
            aws_timeouts: AwsTimeouts {
                operation: Duration::ZERO,
                attempt: Duration::ZERO,
            },
            time_margin: Duration::ZERO,
            dedup: None,
            dedup_ttl: Duration::ZERO,
            dedup_claim: Duration::ZERO,
            dedup_id_field: String::new(),
            envelopes: false,
            schema_framing: crate::schemas::FramingSetting::None,
            confluent_registry: None,
            confluent_secret: None,
            schema_register: false,
            lookups: BTreeMap::new(),
            lookup_cache: crate::lookup::CacheLimits {
                ttl: Duration::ZERO,
                entries: 0,
                bytes: 0,
            },
            lookup_max_table_bytes: 0,
            metrics_namespace: None,
            metrics_interval: Duration::ZERO,
            door: FrontDoor::Cli,
        }
    }
}

/// A setting that is missing or out of range, named as the user spelled it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{name}: {reason}")]
pub struct SettingError {
    /// The flag (`--batch-size`) or environment variable (`PIPELINE_BATCH_SIZE`).
    pub name: String,
    /// What is wrong, and what is allowed.
    pub reason: String,
}

/// The name of the setting whose variable is `env`, as `door` spells it (its flag on the
/// command line, where it has one).
pub fn name_of(env: &str, door: FrontDoor) -> String {
    SETTINGS
        .iter()
        .find(|row| row.env == env)
        .map_or_else(|| env.to_owned(), |row| row.name_at(door))
}

/// The variable Lambda sets to the function's memory, in MiB.
const FUNCTION_MEMORY: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";

impl Settings {
    /// The lookup tables and how they are kept; an HTTP GET has the AWS attempt's time.
    pub fn lookup_settings(&self) -> crate::lookup::LookupSettings {
        crate::lookup::LookupSettings {
            tables: self.lookups.clone(),
            cache: self.lookup_cache,
            max_table_bytes: self.lookup_max_table_bytes,
            http_timeout: self.aws_timeouts.attempt,
        }
    }

    /// The input limits these settings give.
    pub fn input_limits(&self) -> crate::sources::InputLimits {
        crate::sources::InputLimits {
            record: self.max_record_bytes,
            event: self.max_event_bytes,
            envelopes: self.envelopes,
        }
    }

    /// Where S3 notifications keep their checkpoints: the setting, else next to an S3
    /// dead-letter queue.
    pub fn checkpoint_location(&self) -> Option<(String, String)> {
        self.checkpoints.clone().or_else(|| match &self.dlq {
            SinkSpec::S3 { bucket, prefix, .. } => Some((bucket.clone(), prefix.clone())),
            _ => None,
        })
    }

    /// Resolves every setting of the table. `flags(row)` gives the values typed on the
    /// command line for a row (empty when none, and always at [`FrontDoor::Lambda`]);
    /// `env(name)` reads an environment variable.
    pub fn resolve(
        door: FrontDoor,
        flags: impl Fn(&Setting) -> Vec<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingError> {
        let mut settings = Settings::default();
        // The rows that took their default (the function's memory may lower some).
        let mut defaulted = Vec::new();
        for row in SETTINGS {
            let typed = match door {
                FrontDoor::Cli => flags(row),
                FrontDoor::Lambda => Vec::new(),
            };
            let (values, name) = if !typed.is_empty() {
                (typed, row.name_at(door))
            } else if let Some(raw) = env(row.env).filter(|v| !v.trim().is_empty()) {
                (split(&raw, row.list), row.env.to_owned())
            } else {
                let required = match row.required {
                    Required::Always => true,
                    Required::InLambda => door == FrontDoor::Lambda,
                    Required::Never => false,
                };
                if required {
                    return Err(SettingError {
                        name: row.name_at(door),
                        reason: "is not set".into(),
                    });
                }
                match row.default {
                    Some(default) => {
                        defaulted.push(row.env);
                        (vec![default.to_owned()], row.name_at(door))
                    }
                    None => continue,
                }
            };
            (row.apply)(&mut settings, &values, row)
                .map_err(|reason| SettingError { name, reason })?;
        }
        if let Some(mib) = env(FUNCTION_MEMORY).and_then(|v| v.trim().parse::<usize>().ok()) {
            settings.fit_function_memory(mib, &defaulted);
        }
        settings.door = door;
        settings.check_together(door)?;
        Ok(settings)
    }

    /// In a Lambda function of `mib` MiB: what one event may inflate to, and what one
    /// plugin call may answer, default to an eighth of it each (64 MiB in 512), where the
    /// fixed defaults (256 MiB each) overran a 512 MB function: inflated records, the
    /// batch packed for the plugin, the plugin's memory and its outputs are all held at
    /// once. Only the settings left at their default (`defaulted`) move. The engine fits
    /// its compiles in `mib` too.
    fn fit_function_memory(&mut self, mib: usize, defaulted: &[&str]) {
        self.limits.function_memory_mib = Some(mib);
        let share = (mib << 20) / 8;
        if defaulted.contains(&"PIPELINE_MAX_EVENT_BYTES") {
            self.max_event_bytes = share.clamp(1 << 20, self.max_event_bytes);
        }
        if defaulted.contains(&"PIPELINE_MAX_CALL_OUTPUT_BYTES") {
            self.limits.max_call_output_bytes =
                share.clamp(1 << 20, self.limits.max_call_output_bytes);
        }
    }

    /// The name of the setting whose variable is `env`, as the front door that read
    /// these settings spells it.
    pub fn name_of(&self, env: &str) -> String {
        name_of(env, self.door)
    }

    /// The rules between settings. In Lambda the margin must hold one AWS call attempt:
    /// what is settled after the budget ends (DLQ entries, checkpoints, done marks) is
    /// written in it, and no call runs past the deadline.
    fn check_together(&self, door: FrontDoor) -> Result<(), SettingError> {
        // A file DLQ only where the outputs are files too (`host run` without sinks): a
        // Lambda's or a sink's failures must outlast the process.
        if matches!(self.dlq, SinkSpec::File { .. })
            && (door == FrontDoor::Lambda || !self.sinks.is_empty())
        {
            return Err(SettingError {
                name: name_of("PIPELINE_DLQ", door),
                reason: "the dead-letter queue must be sqs://QUEUE or s3://BUCKET/PREFIX where outputs go to sinks or in Lambda (a file only for `host run` without sinks)".into(),
            });
        }
        let needed = self.aws_timeouts.attempt + crate::limits::ANSWER_TIME;
        if door == FrontDoor::Lambda && self.time_margin < needed {
            return Err(SettingError {
                name: "PIPELINE_TIME_MARGIN_MS".into(),
                reason: format!(
                    "is {} ms, shorter than one AWS call attempt and the answer (PIPELINE_AWS_ATTEMPT_TIMEOUT_MS={} ms + {} ms): what is settled after the budget ends is written in the margin, so it must hold one attempt",
                    self.time_margin.as_millis(),
                    self.aws_timeouts.attempt.as_millis(),
                    crate::limits::ANSWER_TIME.as_millis()
                ),
            });
        }
        Ok(())
    }

    /// The settings of the Lambda host, from the process environment.
    pub fn from_env() -> Result<Self, SettingError> {
        Self::resolve(
            FrontDoor::Lambda,
            |_| Vec::new(),
            |name| std::env::var(name).ok(),
        )
    }
}

/// Whether S3 takes path-style addresses, from `PIPELINE_S3_PATH_STYLE` alone (for
/// commands that read no other setting, as `host publish`).
pub fn s3_path_style_from_env() -> Result<bool, SettingError> {
    Ok(some_from_env(&["PIPELINE_S3_PATH_STYLE"])?.s3_path_style)
}

/// The settings named by `envs` from their variables, the others at their defaults (for
/// commands that read a few settings only, as `host publish`).
pub fn some_from_env(envs: &[&str]) -> Result<Settings, SettingError> {
    let mut settings = Settings::default();
    for row in SETTINGS.iter().filter(|r| envs.contains(&r.env)) {
        if let Some(raw) = std::env::var(row.env).ok().filter(|v| !v.trim().is_empty()) {
            (row.apply)(&mut settings, &split(&raw, row.list), row).map_err(|reason| {
                SettingError {
                    name: row.env.to_owned(),
                    reason,
                }
            })?;
        }
    }
    Ok(settings)
}

/// The settings table of `docs/settings.md`, generated from [`SETTINGS`] (a test keeps
/// the page the same).
pub fn markdown_table() -> String {
    let mut table =
        String::from("| flag | variable | default | allowed | meaning |\n|---|---|---|---|---|\n");
    for row in SETTINGS {
        let flag = row.flag.map_or_else(
            || "—".to_owned(),
            |f| {
                let older: Vec<String> = row.aliases.iter().map(|a| format!("`--{a}`")).collect();
                match older.as_slice() {
                    [] => format!("`--{f}`"),
                    older => format!("`--{f}` (or {})", older.join(", ")),
                }
            },
        );
        let default = match (row.required, row.default) {
            (Required::Always, _) => "required".to_owned(),
            (Required::InLambda, Some(d)) => format!("`{d}` (required in Lambda)"),
            (_, Some(d)) => format!("`{d}`"),
            (_, None) => "none".to_owned(),
        };
        let repeat = if row.list {
            " (repeat the flag; comma-separated in the variable)"
        } else {
            ""
        };
        table.push_str(&format!(
            "| {flag} | `{}` | {default} | {} | {}{repeat} |\n",
            row.env, row.bounds, row.about
        ));
    }
    table
}
