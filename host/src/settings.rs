//! Every setting of the pipeline in one table: its flag, its environment variable, its
//! default, its bounds and its parser. The Lambda host reads the environment; the command
//! line reads its flags, then the same environment variables, then the defaults. A value
//! out of range is refused with the name the user spelled it by.
//!
//! [`SETTINGS`] is the table; [`Settings::resolve`] applies it; the settings table of
//! `docs/settings.md` is [`markdown_table`] (a test keeps the two the same).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;

use crate::aws::AwsTimeouts;
use crate::config::Limits;
use crate::registry::{PluginLocation, verifying_key};
use crate::sinks::SinkSpec;

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

/// Where a setting must be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    /// Everywhere.
    Always,
    /// In Lambda (the command line has a default).
    InLambda,
    /// Nowhere: the default applies.
    Never,
}

/// One row of the settings table.
pub struct Setting {
    /// The command-line flag, without `--`; `None`: environment only.
    pub flag: Option<&'static str>,
    /// The environment variable.
    pub env: &'static str,
    /// The default, as it would be written; `None`: no value.
    pub default: Option<&'static str>,
    /// The allowed values: a range (which the parser keeps), or words.
    pub bounds: Bounds,
    /// What it means.
    pub about: &'static str,
    /// Whether it must be given.
    pub required: Required,
    /// Repeatable: the flag may be given several times, the variable is comma-separated.
    pub list: bool,
    /// Sets the value on the settings; a number is read within the row's range.
    apply: fn(&mut Settings, &[String], &Setting) -> Result<(), String>,
}

/// A setting's allowed values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounds {
    /// A whole number in `min ..= max` (the parser refuses the rest), with a note.
    Range {
        /// The least value.
        min: u64,
        /// The greatest value.
        max: u64,
        /// What a value means beyond its number (`0: before every batch`).
        note: Option<&'static str>,
    },
    /// Anything else, in words.
    Text(&'static str),
}

impl std::fmt::Display for Bounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Range { min, max, note } => {
                write!(f, "{min} ..= {max}")?;
                if let Some(note) = note {
                    write!(f, " ({note})")?;
                }
                Ok(())
            }
            Self::Text(text) => f.write_str(text),
        }
    }
}

/// The settings, in the order `docs/settings.md` lists them.
pub static SETTINGS: &[Setting] = &[
    Setting {
        flag: Some("plugin"),
        env: "PIPELINE_PLUGIN",
        default: None,
        bounds: Bounds::Text(
            "a path, `s3://B/plugins/NAME/` (follows its manifest), `s3://B/…/versions/V.json` or `s3://B/key.wasm`; several make a chain",
        ),
        about: "the plugin(s), in chain order",
        required: Required::Always,
        list: true,
        apply: |s, values, _| {
            s.plugins = values
                .iter()
                .map(|v| PluginLocation::parse(v).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?;
            Ok(())
        },
    },
    Setting {
        flag: Some("config"),
        env: "PIPELINE_PLUGIN_CONFIG",
        default: None,
        bounds: Bounds::Text("`key=value`"),
        about: "plugin settings, over the manifest's shipped ones; every stage sees them",
        required: Required::Never,
        list: true,
        apply: |s, values, _| {
            s.plugin_config = values
                .iter()
                .map(|v| key_value(v))
                .collect::<Result<_, _>>()?;
            Ok(())
        },
    },
    Setting {
        flag: Some("check-seconds"),
        env: "PIPELINE_PLUGIN_CHECK_SECONDS",
        default: Some("30"),
        bounds: Bounds::Range {
            min: 0,
            max: 86_400,
            note: Some("0: before every batch"),
        },
        about: "least time between two checks of a manifest for a new version",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.check_interval = Duration::from_secs(row.number(values)?);
            Ok(())
        },
    },
    Setting {
        flag: Some("public-key"),
        env: "PIPELINE_PLUGIN_PUBLIC_KEY",
        default: None,
        bounds: Bounds::Text("ed25519 public key, hex or base64"),
        about: "only manifests signed with this key run",
        required: Required::Never,
        list: false,
        apply: |s, values, _| {
            s.public_key = Some(verifying_key(one(values)?).map_err(|e| e.to_string())?);
            Ok(())
        },
    },
    Setting {
        flag: Some("cache-dir"),
        env: "PIPELINE_CACHE_DIR",
        default: Some("/tmp/plugin-cache"),
        bounds: Bounds::Text("a directory, or `off`"),
        about: "where precompiled plugins are kept across starts",
        required: Required::Never,
        list: false,
        apply: |s, values, _| {
            let value = one(values)?;
            s.cache_dir = (value != "off").then(|| PathBuf::from(value));
            Ok(())
        },
    },
    Setting {
        flag: Some("sink"),
        env: "PIPELINE_SINKS",
        default: None,
        bounds: Bounds::Text(
            "`NAME=SPEC`, SPEC one of `kinesis://STREAM`, `sqs://QUEUE`, `s3://BUCKET/PREFIX` (options `?gzip=true`, `?format=parquet`)",
        ),
        about: "named sinks; `default` takes outputs without a destination",
        required: Required::Never,
        list: true,
        apply: |s, values, _| {
            s.sinks.clear();
            for value in values {
                let (name, spec) = key_value(value)?;
                let spec: SinkSpec = spec
                    .parse()
                    .map_err(|e: crate::sinks::SinkSpecError| e.to_string())?;
                if matches!(spec, SinkSpec::File { .. }) {
                    return Err(format!("{name}: a sink is kinesis://, sqs:// or s3://"));
                }
                s.sinks.insert(name, spec);
            }
            Ok(())
        },
    },
    Setting {
        flag: Some("dlq"),
        env: "PIPELINE_DLQ",
        default: Some("dlq.jsonl"),
        bounds: Bounds::Text(
            "`sqs://QUEUE`, `s3://BUCKET/PREFIX`, or (`host run` without sinks) a file",
        ),
        about: "where failed records go, with their error",
        required: Required::InLambda,
        list: false,
        apply: |s, values, _| {
            s.dlq = SinkSpec::dead_letters(one(values)?).map_err(|e| e.to_string())?;
            Ok(())
        },
    },
    Setting {
        flag: Some("dlq-overflow"),
        env: "PIPELINE_DLQ_OVERFLOW",
        default: None,
        bounds: Bounds::Text("`s3://BUCKET/PREFIX`"),
        about: "where a DLQ entry too large for its queue is stored whole, the queue keeping a pointer `host reprocess` follows; without it such an entry is cut to fit, saying so",
        required: Required::Never,
        list: false,
        apply: |s, values, _| {
            match one(values)?
                .parse::<SinkSpec>()
                .map_err(|e| e.to_string())?
            {
                SinkSpec::S3 { bucket, prefix, .. } => s.dlq_overflow = Some((bucket, prefix)),
                other => return Err(format!("{other}: expected s3://BUCKET/PREFIX")),
            }
            Ok(())
        },
    },
    Setting {
        flag: Some("checkpoints"),
        env: "PIPELINE_CHECKPOINTS",
        default: None,
        bounds: Bounds::Text("`s3://BUCKET/PREFIX` (unset: next to an S3 DLQ, if it is one)"),
        about: "where an S3 notification that runs out of time records how far it got, so S3's retry resumes there",
        required: Required::Never,
        list: false,
        apply: |s, values, _| {
            match one(values)?
                .parse::<SinkSpec>()
                .map_err(|e| e.to_string())?
            {
                SinkSpec::S3 { bucket, prefix, .. } => s.checkpoints = Some((bucket, prefix)),
                other => return Err(format!("{other}: expected s3://BUCKET/PREFIX")),
            }
            Ok(())
        },
    },
    Setting {
        flag: Some("dedup"),
        env: "PIPELINE_DEDUP",
        default: None,
        bounds: Bounds::Text("`dynamodb://TABLE` (partition key `id`, a string; TTL on `ttl`)"),
        about: "the idempotency store: a record delivered again (same source position) is counted `duplicate` and not sent twice",
        required: Required::Never,
        list: false,
        apply: |s, values, _| {
            s.dedup = Some(one(values)?.parse()?);
            Ok(())
        },
    },
    Setting {
        flag: Some("dedup-ttl-seconds"),
        env: "PIPELINE_DEDUP_TTL_SECONDS",
        default: Some("86400"),
        bounds: Bounds::Range {
            min: 60,
            max: 31_536_000,
            note: None,
        },
        about: "how long the store remembers a record as done; a redelivery later than this is processed again",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.dedup_ttl = Duration::from_secs(row.number(values)?);
            Ok(())
        },
    },
    Setting {
        flag: Some("dedup-claim-seconds"),
        env: "PIPELINE_DEDUP_CLAIM_SECONDS",
        default: Some("900"),
        bounds: Bounds::Range {
            min: 1,
            max: 86_400,
            note: None,
        },
        about: "longest a claim on a record lasts before another run may take it over (in Lambda, at most until the invocation's deadline); keep it longer than a batch can take (`host run` to files: than the run)",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.dedup_claim = Duration::from_secs(row.number(values)?);
            Ok(())
        },
    },
    Setting {
        flag: None,
        env: "PIPELINE_DEDUP_ID_FIELD",
        default: Some("id"),
        bounds: Bounds::Text("a top-level field name"),
        about: "direct invocations: the field whose value (a string or number) identifies a record; a record without it is not deduplicated",
        required: Required::Never,
        list: false,
        apply: |s, values, _| {
            let field = one(values)?;
            if field.is_empty() {
                return Err("expected a field name".into());
            }
            s.dedup_id_field = field.to_owned();
            Ok(())
        },
    },
    Setting {
        flag: Some("batch-size"),
        env: "PIPELINE_BATCH_SIZE",
        default: Some("1000"),
        bounds: Bounds::Range {
            min: 1,
            max: 100_000,
            note: None,
        },
        about: "records per call into a plugin",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.limits.batch_size = row.number(values)?;
            Ok(())
        },
    },
    Setting {
        flag: Some("memory-mib"),
        env: "PIPELINE_MEMORY_MIB",
        default: Some("128"),
        bounds: Bounds::Range {
            min: 1,
            max: 4096,
            note: None,
        },
        about: "memory cap of a plugin instance, MiB",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.limits.memory_bytes = row.number::<usize>(values)? << 20;
            Ok(())
        },
    },
    Setting {
        flag: Some("tiered-start"),
        env: "PIPELINE_TIERED_START",
        default: Some("on"),
        bounds: Bounds::Text("`on` or `off`"),
        about: "a module not in the cache runs on Winch's quickly compiled code until Cranelift's is ready",
        required: Required::Never,
        list: false,
        apply: |s, values, _| {
            s.limits.tiered_start = match one(values)? {
                "on" => true,
                "off" => false,
                other => return Err(format!("{other:?}: `on` or `off`")),
            };
            Ok(())
        },
    },
    Setting {
        flag: Some("deadline-ms"),
        env: "PIPELINE_DEADLINE_MS",
        default: Some("1000"),
        bounds: Bounds::Range {
            min: 10,
            max: 900_000,
            note: None,
        },
        about: "CPU deadline of one call into a plugin, ms",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.limits.deadline = Duration::from_millis(row.number(values)?);
            Ok(())
        },
    },
    Setting {
        flag: Some("max-output-bytes"),
        env: "PIPELINE_MAX_OUTPUT_BYTES",
        default: Some("1048576"),
        bounds: Bounds::Range {
            min: 1,
            max: 64 << 20,
            note: None,
        },
        about: "largest payload one output may have",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.limits.max_output_bytes = row.number(values)?;
            Ok(())
        },
    },
    Setting {
        flag: Some("max-outputs-per-record"),
        env: "PIPELINE_MAX_OUTPUTS_PER_RECORD",
        default: Some("1000"),
        bounds: Bounds::Range {
            min: 1,
            max: 1_000_000,
            note: None,
        },
        about: "most outputs one record may have; more sends the record to the DLQ as `output-too-large`",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.limits.max_outputs_per_record = row.number(values)?;
            Ok(())
        },
    },
    Setting {
        flag: Some("max-call-output-bytes"),
        env: "PIPELINE_MAX_CALL_OUTPUT_BYTES",
        default: Some("268435456"),
        bounds: Bounds::Range {
            min: 1 << 20,
            max: 4 << 30,
            note: None,
        },
        about: "bytes all outputs of one plugin call may have together (payloads, keys, destinations, attribute names and values), as the sinks copy them (spans sharing bytes count each time); the records past it go to the DLQ as `output-too-large`; in a Lambda function (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`) the default is an eighth of its memory, if less",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.limits.max_call_output_bytes = row.number(values)?;
            Ok(())
        },
    },
    Setting {
        flag: Some("max-record-bytes"),
        env: "PIPELINE_MAX_RECORD_BYTES",
        default: Some("4194304"),
        bounds: Bounds::Range {
            min: 1024,
            max: 256 << 20,
            note: None,
        },
        about: "longest input record (a line of a file or an S3 object, an inflated gzip record); a longer one goes to the DLQ as `input-too-large`, its first bytes kept",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.max_record_bytes = row.number(values)?;
            Ok(())
        },
    },
    Setting {
        flag: Some("max-event-bytes"),
        env: "PIPELINE_MAX_EVENT_BYTES",
        default: Some("268435456"),
        bounds: Bounds::Range {
            min: 1 << 20,
            max: 4 << 30,
            note: None,
        },
        about: "what the gzip records of one event may inflate to together; past it they go to the DLQ as `input-too-large`; in a Lambda function (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`) the default is an eighth of its memory, if less",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.max_event_bytes = row.number(values)?;
            Ok(())
        },
    },
    Setting {
        flag: Some("max-attempts"),
        env: "PIPELINE_MAX_ATTEMPTS",
        default: Some("3"),
        bounds: Bounds::Range {
            min: 1,
            max: 20,
            note: None,
        },
        about: "tries for records with an infrastructure error, and for sink calls",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.limits.max_attempts = row.number(values)?;
            Ok(())
        },
    },
    Setting {
        flag: Some("retry-base-ms"),
        env: "PIPELINE_RETRY_BASE_MS",
        default: Some("100"),
        bounds: Bounds::Range {
            min: 0,
            max: 60_000,
            note: None,
        },
        about: "first retry delay, doubled per attempt, plus jitter, ms",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.limits.retry_base_delay = Duration::from_millis(row.number(values)?);
            Ok(())
        },
    },
    Setting {
        flag: None,
        env: "PIPELINE_TIME_MARGIN_MS",
        default: Some("3000"),
        bounds: Bounds::Range {
            min: 0,
            max: 600_000,
            note: None,
        },
        about: "Lambda: no batch, plugin call or retry starts this close to the invocation's deadline; the items left are reported for retry; at least one AWS attempt (`PIPELINE_AWS_ATTEMPT_TIMEOUT_MS`), as what is settled after is written in it",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.time_margin = Duration::from_millis(row.number(values)?);
            Ok(())
        },
    },
    Setting {
        flag: Some("aws-timeout-ms"),
        env: "PIPELINE_AWS_TIMEOUT_MS",
        default: Some("30000"),
        bounds: Bounds::Range {
            min: 100,
            max: 900_000,
            note: None,
        },
        about: "longest an AWS call may take, its own retries included",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.aws_timeouts.operation = Duration::from_millis(row.number(values)?);
            Ok(())
        },
    },
    Setting {
        flag: Some("aws-attempt-timeout-ms"),
        env: "PIPELINE_AWS_ATTEMPT_TIMEOUT_MS",
        default: Some("3000"),
        bounds: Bounds::Range {
            min: 100,
            max: 900_000,
            note: None,
        },
        about: "longest one attempt of an AWS call may take (a stalled connection)",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.aws_timeouts.attempt = Duration::from_millis(row.number(values)?);
            Ok(())
        },
    },
    Setting {
        flag: None,
        env: "PIPELINE_METRICS_NAMESPACE",
        default: Some("PipelineHost"),
        bounds: Bounds::Text("1 to 255 of letters, digits, `.-_/#:`; or `off`"),
        about: "Lambda: the CloudWatch namespace of the metrics each invocation writes to stdout (Embedded Metric Format)",
        required: Required::Never,
        list: false,
        apply: |s, values, _| {
            let value = one(values)?;
            if value == "off" {
                s.metrics_namespace = None;
                return Ok(());
            }
            let valid = (1..=255).contains(&value.len())
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_/#:".contains(c));
            if !valid {
                return Err(format!(
                    "{value:?}: 1 to 255 of letters, digits, `.-_/#:`, or `off`"
                ));
            }
            s.metrics_namespace = Some(value.to_owned());
            Ok(())
        },
    },
    Setting {
        flag: None,
        env: "PIPELINE_METRICS_INTERVAL_SECONDS",
        default: Some("60"),
        bounds: Bounds::Range {
            min: 0,
            max: 900,
            note: None,
        },
        about: "Lambda: an invocation running longer (a large S3 object) writes a metrics document for what it did so far every this many seconds (0: after every batch); the documents add up to the invocation",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.metrics_interval = Duration::from_secs(row.number(values)?);
            Ok(())
        },
    },
    Setting {
        flag: None,
        env: "PIPELINE_S3_PATH_STYLE",
        default: Some("false"),
        bounds: Bounds::Text("`true` or `false`"),
        about: "path-style S3 addressing, for S3 emulators",
        required: Required::Never,
        list: false,
        apply: |s, values, _| {
            s.s3_path_style = match one(values)? {
                "true" | "1" => true,
                "false" | "0" => false,
                other => return Err(format!("{other:?}: expected true or false")),
            };
            Ok(())
        },
    },
];

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

impl Setting {
    /// The name a message uses for this setting at `door`.
    pub fn name_at(&self, door: FrontDoor) -> String {
        match (door, self.flag) {
            (FrontDoor::Cli, Some(flag)) => format!("--{flag}"),
            _ => self.env.to_owned(),
        }
    }
}

impl Settings {
    /// The input limits these settings give.
    pub fn input_limits(&self) -> crate::sources::InputLimits {
        crate::sources::InputLimits {
            record: self.max_record_bytes,
            event: self.max_event_bytes,
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
        if door == FrontDoor::Lambda && self.time_margin < self.aws_timeouts.attempt {
            return Err(SettingError {
                name: "PIPELINE_TIME_MARGIN_MS".into(),
                reason: format!(
                    "is {} ms, shorter than one AWS call attempt (PIPELINE_AWS_ATTEMPT_TIMEOUT_MS={} ms): what is settled after the budget ends is written in the margin, so it must hold one attempt",
                    self.time_margin.as_millis(),
                    self.aws_timeouts.attempt.as_millis()
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
    let mut settings = Settings::default();
    for row in SETTINGS
        .iter()
        .filter(|r| r.env == "PIPELINE_S3_PATH_STYLE")
    {
        if let Some(raw) = std::env::var(row.env).ok().filter(|v| !v.trim().is_empty()) {
            (row.apply)(&mut settings, &split(&raw, row.list), row).map_err(|reason| {
                SettingError {
                    name: row.env.to_owned(),
                    reason,
                }
            })?;
        }
    }
    Ok(settings.s3_path_style)
}

/// The settings table of `docs/settings.md`, generated from [`SETTINGS`] (a test keeps
/// the page the same).
pub fn markdown_table() -> String {
    let mut table =
        String::from("| flag | variable | default | allowed | meaning |\n|---|---|---|---|---|\n");
    for row in SETTINGS {
        let flag = row
            .flag
            .map_or_else(|| "—".to_owned(), |f| format!("`--{f}`"));
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

fn split(raw: &str, list: bool) -> Vec<String> {
    if !list {
        return vec![raw.trim().to_owned()];
    }
    raw.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

fn one(values: &[String]) -> Result<&str, String> {
    match values {
        [value] => Ok(value.trim()),
        _ => Err(format!("expected one value, got {}", values.len())),
    }
}

fn key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

impl Setting {
    /// The row's one value as a number within its range, in the type its field has.
    fn number<T: TryFrom<u64>>(&self, values: &[String]) -> Result<T, String> {
        let Bounds::Range { min, max, .. } = self.bounds else {
            return Err(format!("{} has no range (host bug)", self.env));
        };
        let raw = one(values)?;
        let value: u64 = raw.parse().map_err(|e| format!("{raw:?}: {e}"))?;
        if value < min || value > max {
            return Err(format!("{value} is outside {min} ..= {max}"));
        }
        T::try_from(value).map_err(|_| format!("{value} does not fit this machine"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn lambda(pairs: &[(&str, &str)]) -> Result<Settings, SettingError> {
        Settings::resolve(FrontDoor::Lambda, |_| Vec::new(), env(pairs))
    }

    #[test]
    fn resolving_with_nothing_given_is_the_defaults() {
        // Only the one setting that has no default is given: everything else is the
        // table's default, which is what `Settings::default()` (and so `Limits::default()`)
        // reads, at either front door.
        let plugin = |row: &Setting| match row.env {
            "PIPELINE_PLUGIN" => vec!["p.wasm".to_owned()],
            _ => Vec::new(),
        };
        let expected = Settings {
            plugins: vec![PluginLocation::File("p.wasm".into())],
            ..Settings::default()
        };
        let cli = Settings::resolve(FrontDoor::Cli, plugin, |_| None).expect("resolve");
        assert_eq!(cli, expected);
        assert_eq!(cli.limits, Limits::default());
        assert_eq!(cli.aws_timeouts, AwsTimeouts::default());
        assert_eq!(cli.input_limits(), crate::sources::InputLimits::default());
        // In Lambda the DLQ must be given (and not a file): the rest is the same.
        let lambda = lambda(&[("PIPELINE_PLUGIN", "p.wasm"), ("PIPELINE_DLQ", "sqs://dlq")])
            .expect("resolve");
        assert_eq!(
            lambda,
            Settings {
                dlq: "sqs://dlq".parse().expect("a DLQ spec"),
                door: FrontDoor::Lambda,
                ..expected
            }
        );
    }

    #[test]
    fn a_file_dlq_is_only_for_host_run_without_sinks_and_the_message_names_the_setting() {
        let file = [("PIPELINE_PLUGIN", "p.wasm"), ("PIPELINE_DLQ", "dlq.jsonl")];
        let err = lambda(&file).expect_err("a file DLQ in Lambda");
        assert_eq!(err.name, "PIPELINE_DLQ");
        let flags = |row: &Setting| match row.env {
            "PIPELINE_PLUGIN" => vec!["p.wasm".to_owned()],
            "PIPELINE_SINKS" => vec!["default=kinesis://out".to_owned()],
            _ => Vec::new(),
        };
        let err = Settings::resolve(FrontDoor::Cli, flags, |_| None).expect_err("with sinks");
        assert_eq!(err.name, "--dlq");
        assert!(
            err.reason.contains("sqs://QUEUE or s3://BUCKET/PREFIX"),
            "{err}"
        );
    }

    #[test]
    fn the_function_memory_lowers_the_defaults_not_what_was_set() {
        let base = [("PIPELINE_PLUGIN", "p.wasm"), ("PIPELINE_DLQ", "sqs://dlq")];
        let plain = lambda(&base).expect("defaults");
        assert_eq!(plain.max_event_bytes, 256 << 20);
        assert_eq!(plain.limits.function_memory_mib, None);
        let sized = [base[0], base[1], ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")];
        let fitted = lambda(&sized).expect("512 MiB");
        assert_eq!(fitted.max_event_bytes, 64 << 20);
        assert_eq!(fitted.limits.function_memory_mib, Some(512));
        assert_eq!(fitted.limits.max_call_output_bytes, 64 << 20);
        let large = [
            base[0],
            base[1],
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "10240"),
        ];
        assert_eq!(lambda(&large).expect("10 GiB").max_event_bytes, 256 << 20);
        let set = [
            base[0],
            base[1],
            sized[2],
            ("PIPELINE_MAX_EVENT_BYTES", "134217728"),
        ];
        let kept = lambda(&set).expect("set");
        assert_eq!(kept.max_event_bytes, 128 << 20, "a set value stays");
        assert_eq!(kept.limits.max_call_output_bytes, 64 << 20);
    }

    #[test]
    fn in_lambda_the_margin_holds_one_aws_attempt() {
        let base = [("PIPELINE_PLUGIN", "p.wasm"), ("PIPELINE_DLQ", "sqs://dlq")];
        assert!(lambda(&base).is_ok(), "the defaults keep the rule");
        let short = [base[0], base[1], ("PIPELINE_TIME_MARGIN_MS", "1000")];
        let err = lambda(&short).expect_err("a margin shorter than an attempt");
        assert!(
            err.to_string().starts_with("PIPELINE_TIME_MARGIN_MS: is 1000 ms, shorter than one AWS call attempt (PIPELINE_AWS_ATTEMPT_TIMEOUT_MS=3000 ms)"),
            "{err}"
        );
        let both = [
            short[0],
            short[1],
            short[2],
            ("PIPELINE_AWS_ATTEMPT_TIMEOUT_MS", "800"),
        ];
        assert!(lambda(&both).is_ok());
    }

    #[test]
    fn reads_a_full_configuration() {
        let settings = lambda(&[
            ("PIPELINE_PLUGIN", "s3://plugins/enrich.wasm"),
            ("PIPELINE_PLUGIN_CONFIG", "currency=USD, region=eu"),
            (
                "PIPELINE_SINKS",
                "default=kinesis://out?gzip=true,audit=s3://lake/audit",
            ),
            ("PIPELINE_DLQ", "sqs://dlq"),
            ("PIPELINE_BATCH_SIZE", "250"),
        ])
        .expect("valid");
        assert_eq!(settings.plugin_config[1], ("region".into(), "eu".into()));
        assert_eq!(
            settings.sinks["default"],
            SinkSpec::Kinesis {
                stream: "out".into(),
                gzip: true
            }
        );
        assert_eq!(settings.limits.batch_size, 250);
        assert_eq!(settings.plugins.len(), 1);
        assert_eq!(settings.check_interval, Duration::from_secs(30));
        assert_eq!(settings.cache_dir, Some(PathBuf::from("/tmp/plugin-cache")));
        assert_eq!(settings.public_key, None);
        assert!(!settings.s3_path_style);
    }

    #[test]
    fn reads_a_chain_of_followed_plugins() {
        let public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let settings = lambda(&[
            (
                "PIPELINE_PLUGIN",
                "s3://plugins/plugins/validate/, s3://plugins/plugins/enrich/versions/0.2.0.json",
            ),
            ("PIPELINE_DLQ", "sqs://dlq"),
            ("PIPELINE_PLUGIN_CHECK_SECONDS", "0"),
            ("PIPELINE_CACHE_DIR", "off"),
            ("PIPELINE_PLUGIN_PUBLIC_KEY", public),
        ])
        .expect("valid");
        assert_eq!(
            settings.plugins,
            [
                PluginLocation::S3Manifest {
                    bucket: "plugins".into(),
                    key: "plugins/validate/manifest.json".into()
                },
                PluginLocation::S3Manifest {
                    bucket: "plugins".into(),
                    key: "plugins/enrich/versions/0.2.0.json".into()
                }
            ]
        );
        assert_eq!(settings.check_interval, Duration::ZERO);
        assert_eq!(settings.cache_dir, None);
        assert!(settings.public_key.is_some());
    }

    #[test]
    fn errors_name_the_variable_or_the_flag() {
        let err = lambda(&[("PIPELINE_DLQ", "sqs://dlq")]).expect_err("no plugin");
        assert_eq!(err.name, "PIPELINE_PLUGIN");
        let err = lambda(&[("PIPELINE_PLUGIN", "p.wasm")]).expect_err("no DLQ in Lambda");
        assert_eq!(err.name, "PIPELINE_DLQ");
        let base = [("PIPELINE_PLUGIN", "p.wasm"), ("PIPELINE_DLQ", "sqs://dlq")];
        let with = |extra: (&'static str, &'static str)| {
            let mut pairs = base.to_vec();
            pairs.push(extra);
            lambda(&pairs).expect_err("bad").name
        };
        for (variable, bad) in [
            ("PIPELINE_BATCH_SIZE", "lots"),
            ("PIPELINE_BATCH_SIZE", "0"),
            // Would wrap to 1 through `as u32`.
            ("PIPELINE_MAX_ATTEMPTS", "4294967297"),
            ("PIPELINE_MEMORY_MIB", "5000"),
            ("PIPELINE_DEADLINE_MS", "5"),
            ("PIPELINE_MAX_OUTPUT_BYTES", "0"),
            ("PIPELINE_RETRY_BASE_MS", "60001"),
            ("PIPELINE_PLUGIN_CHECK_SECONDS", "-1"),
            // Would overflow `Instant + Duration` at the first check.
            ("PIPELINE_PLUGIN_CHECK_SECONDS", "18446744073709551615"),
            ("PIPELINE_PLUGIN_PUBLIC_KEY", "not-a-key"),
            ("PIPELINE_SINKS", "default=ftp://x"),
            ("PIPELINE_DLQ", "kinesis://x"),
            ("PIPELINE_S3_PATH_STYLE", "yes"),
        ] {
            assert_eq!(with((variable, bad)), variable, "{variable}={bad}");
        }
        // The command line names the flag it was given by.
        let err = Settings::resolve(
            FrontDoor::Cli,
            |row| match row.flag {
                Some("plugin") => vec!["p.wasm".into()],
                Some("max-attempts") => vec!["21".into()],
                _ => Vec::new(),
            },
            env(&[]),
        )
        .expect_err("too many attempts");
        assert_eq!(err.to_string(), "--max-attempts: 21 is outside 1 ..= 20");
    }

    #[test]
    fn the_command_line_falls_back_to_the_environment_then_the_defaults() {
        let settings = Settings::resolve(
            FrontDoor::Cli,
            |row| match row.flag {
                Some("plugin") => vec!["a.wasm".into(), "b.wasm".into()],
                Some("batch-size") => vec!["7".into()],
                _ => Vec::new(),
            },
            env(&[("PIPELINE_BATCH_SIZE", "9"), ("PIPELINE_MAX_ATTEMPTS", "5")]),
        )
        .expect("valid");
        assert_eq!(settings.plugins.len(), 2);
        assert_eq!(settings.limits.batch_size, 7, "a flag beats the variable");
        assert_eq!(settings.limits.max_attempts, 5);
        assert_eq!(settings.dlq, Settings::default().dlq);
    }

    #[test]
    fn every_default_is_accepted_by_its_own_parser() {
        for row in SETTINGS {
            if let Some(default) = row.default {
                let mut settings = Settings::default();
                (row.apply)(&mut settings, &[default.to_owned()], row)
                    .unwrap_or_else(|e| panic!("{}: default {default:?}: {e}", row.env));
            }
        }
    }

    #[test]
    fn the_docs_list_every_setting_as_the_table_does() {
        let page = include_str!("../../docs/settings.md");
        let table = markdown_table();
        assert!(
            page.contains(&table),
            "docs/settings.md's settings table differs from settings::SETTINGS; it should read:\n{table}"
        );
    }
}
