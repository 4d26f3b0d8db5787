//! The settings table: one row per setting, with its flag, its environment variable,
//! its default, its bounds and its parser, each written once. `mod.rs` applies the rows;
//! `docs/settings.md` is generated from them.

use std::path::PathBuf;
use std::time::Duration;

use super::{FrontDoor, Settings};
use crate::registry::{PluginLocation, verifying_key};
use crate::sinks::SinkSpec;

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
    /// Older spellings of the flag, still taken (a renamed flag keeps working).
    pub aliases: &'static [&'static str],
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
    pub(super) apply: fn(&mut Settings, &[String], &Setting) -> Result<(), String>,
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
        aliases: &[],
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
        flag: Some("plugin-config"),
        aliases: &["config"],
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
        flag: Some("plugin-check-seconds"),
        aliases: &["check-seconds"],
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
        flag: Some("plugin-public-key"),
        aliases: &["public-key"],
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
        aliases: &[],
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
        aliases: &[],
        env: "PIPELINE_SINKS",
        default: None,
        bounds: Bounds::Text(
            "`NAME=SPEC`, SPEC one of `kinesis://STREAM` (options `?gzip=true`, `?aggregate=true`: KPL aggregates), `sqs://QUEUE`, `s3://BUCKET/PREFIX` (options `?gzip=true`, `?format=parquet`); Kinesis and SQS also `?schema=glue://REGISTRY/SCHEMA` or `?schema=confluent://SUBJECT` (outputs written in that registry's framing)",
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
        aliases: &[],
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
        aliases: &[],
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
        aliases: &[],
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
        aliases: &[],
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
        aliases: &[],
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
        aliases: &[],
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
        aliases: &[],
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
        flag: Some("lookup"),
        aliases: &[],
        env: "PIPELINE_LOOKUPS",
        default: None,
        bounds: Bounds::Text(
            "`NAME=SPEC`, SPEC one of `dynamodb://TABLE` (option `?fields=a,b`: the projection), `s3://BUCKET/KEY#COLUMN` or `file://PATH#COLUMN` (JSON lines, or by its extension `.csv` or `.parquet`; `?format=`; the key column defaults to `id`), an `http(s)://` URL with `{key}` where the key goes",
        ),
        about: "the lookup tables plugins may read, by logical name; a plugin is granted those its signed manifest declares (`host publish --lookups`), every one without a manifest",
        required: Required::Never,
        list: true,
        apply: |s, values, _| {
            s.lookups.clear();
            for value in crate::lookup::join_specs(values) {
                let (name, spec) = key_value(&value)?;
                crate::lookup::check_table_name(&name)?;
                let spec = spec
                    .parse::<crate::lookup::TableSpec>()
                    .map_err(|e| format!("{name}: {e}"))?;
                s.lookups.insert(name, spec);
            }
            Ok(())
        },
    },
    Setting {
        flag: Some("lookup-ttl-seconds"),
        aliases: &[],
        env: "PIPELINE_LOOKUP_TTL_SECONDS",
        default: Some("300"),
        bounds: Bounds::Range {
            min: 0,
            max: 86_400,
            note: Some("0: no cache"),
        },
        about: "how long a looked-up value (or a key found missing) is served from the cache, and how often an S3 or file table is checked for a new version",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.lookup_cache.ttl = Duration::from_secs(row.number(values)?);
            Ok(())
        },
    },
    Setting {
        flag: Some("lookup-cache-entries"),
        aliases: &[],
        env: "PIPELINE_LOOKUP_CACHE_ENTRIES",
        default: Some("100000"),
        bounds: Bounds::Range {
            min: 0,
            max: 10_000_000,
            note: None,
        },
        about: "entries each DynamoDB or HTTP lookup table's cache keeps at most (the least recently used go first)",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.lookup_cache.entries = row.number(values)?;
            Ok(())
        },
    },
    Setting {
        flag: Some("lookup-cache-mb"),
        aliases: &[],
        env: "PIPELINE_LOOKUP_CACHE_MB",
        default: Some("64"),
        bounds: Bounds::Range {
            min: 0,
            max: 4096,
            note: None,
        },
        about: "MiB of keys and values each DynamoDB or HTTP lookup table's cache keeps at most",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.lookup_cache.bytes = row.number::<usize>(values)? << 20;
            Ok(())
        },
    },
    Setting {
        flag: Some("lookup-max-table-mb"),
        aliases: &[],
        env: "PIPELINE_LOOKUP_MAX_TABLE_MB",
        default: Some("256"),
        bounds: Bounds::Range {
            min: 1,
            max: 4096,
            note: None,
        },
        about: "MiB an S3 or file lookup table may have (it is held in memory whole); a larger one is refused before it is read",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.lookup_max_table_bytes = row.number::<u64>(values)? << 20;
            Ok(())
        },
    },
    Setting {
        flag: Some("schema-framing"),
        aliases: &[],
        env: "PIPELINE_SCHEMA_FRAMING",
        default: Some("none"),
        bounds: Bounds::Text("`none`, `auto` (either), `confluent` or `glue`"),
        about: "schema-registry framed records are opened before the plugin sees them: Confluent's (`0x00`, a schema id) and Glue's (header version 3, a schema version UUID); Avro becomes JSON; a record that does not decode against its schema goes to the DLQ as `schema`",
        required: Required::Never,
        list: false,
        apply: |s, values, _| {
            s.schema_framing = one(values)?.parse()?;
            Ok(())
        },
    },
    Setting {
        flag: Some("confluent-registry"),
        aliases: &[],
        env: "PIPELINE_CONFLUENT_REGISTRY",
        default: None,
        bounds: Bounds::Text("an `http(s)://` URL, optionally `https://KEY:SECRET@HOST`"),
        about: "the Confluent-compatible schema registry Confluent-framed records' schema ids are looked up in (Glue's is reached with the function's AWS credentials)",
        required: Required::Never,
        list: false,
        apply: |s, values, _| {
            let url = one(values)?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("{url:?}: expected an http(s):// URL"));
            }
            s.confluent_registry = Some(url.to_owned());
            Ok(())
        },
    },
    Setting {
        flag: Some("confluent-secret"),
        aliases: &[],
        env: "PIPELINE_CONFLUENT_SECRET",
        default: None,
        bounds: Bounds::Text("a Secrets Manager secret's name or ARN"),
        about: "the Confluent-compatible registry's credential, read at start from this secret: `KEY:SECRET`, or JSON with `username` and `password` (as Lambda's Kafka authentication secrets hold them); instead of one in the registry's URL",
        required: Required::Never,
        list: false,
        apply: |s, values, _| {
            s.confluent_secret = Some(one(values)?.to_owned());
            Ok(())
        },
    },
    Setting {
        flag: Some("schema-register"),
        aliases: &[],
        env: "PIPELINE_SCHEMA_REGISTER",
        default: Some("off"),
        bounds: Bounds::Text("`on` or `off`"),
        about: "a sink writing registry framing (`?schema=glue://REGISTRY/SCHEMA` or `?schema=confluent://SUBJECT`) registers the plugin's declared output schema as a new version when the registry does not have it (the registry's compatibility mode decides); `off`: outputs to it go to the DLQ as `schema` until it is registered",
        required: Required::Never,
        list: false,
        apply: |s, values, _| {
            s.schema_register = match one(values)? {
                "on" => true,
                "off" => false,
                other => return Err(format!("{other:?}: `on` or `off`")),
            };
            Ok(())
        },
    },
    Setting {
        flag: Some("envelopes"),
        aliases: &[],
        env: "PIPELINE_ENVELOPES",
        default: Some("on"),
        bounds: Bounds::Text("`on` or `off`"),
        about: "SQS, SNS and EventBridge messages are opened: an SNS notification inside an SQS message becomes its message, an S3 notification (or EventBridge's \"Object Created\") has its objects read and its message settled by their records; `off` hands every body to the plugin as it is",
        required: Required::Never,
        list: false,
        apply: |s, values, _| {
            s.envelopes = match one(values)? {
                "on" => true,
                "off" => false,
                other => return Err(format!("{other:?}: `on` or `off`")),
            };
            Ok(())
        },
    },
    Setting {
        flag: Some("batch-size"),
        aliases: &[],
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
        aliases: &[],
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
        aliases: &[],
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
        flag: Some("call-deadline-ms"),
        aliases: &["deadline-ms"],
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
        aliases: &[],
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
        aliases: &[],
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
        aliases: &[],
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
        aliases: &[],
        env: "PIPELINE_MAX_RECORD_BYTES",
        default: Some("4194304"),
        bounds: Bounds::Range {
            min: 1024,
            max: 256 << 20,
            note: None,
        },
        about: "longest input record (a line of a file or an S3 object, an inflated gzip record); a longer one goes to the DLQ as `input-too-large`, its first bytes kept (so does a CSV row of more fields than an eighth of it)",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.max_record_bytes = row.number(values)?;
            Ok(())
        },
    },
    Setting {
        flag: Some("max-event-bytes"),
        aliases: &[],
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
        aliases: &[],
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
        aliases: &[],
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
        aliases: &[],
        env: "PIPELINE_TIME_MARGIN_MS",
        default: Some("3500"),
        bounds: Bounds::Range {
            min: 0,
            max: 600_000,
            note: None,
        },
        about: "Lambda: no batch, plugin call or retry starts this close to the invocation's deadline; the items left are reported for retry; at least one AWS attempt (`PIPELINE_AWS_ATTEMPT_TIMEOUT_MS`) and 250 ms for the answer, as what is settled after is written in it",
        required: Required::Never,
        list: false,
        apply: |s, values, row| {
            s.time_margin = Duration::from_millis(row.number(values)?);
            Ok(())
        },
    },
    Setting {
        flag: Some("aws-timeout-ms"),
        aliases: &[],
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
        aliases: &[],
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
        aliases: &[],
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
        aliases: &[],
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
        aliases: &[],
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

impl Setting {
    /// The name a message uses for this setting at `door`.
    pub fn name_at(&self, door: FrontDoor) -> String {
        match (door, self.flag) {
            (FrontDoor::Cli, Some(flag)) => format!("--{flag}"),
            _ => self.env.to_owned(),
        }
    }
}

pub(super) fn split(raw: &str, list: bool) -> Vec<String> {
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
