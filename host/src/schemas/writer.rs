//! Outputs written in a registry's framing, for consumers that read it (Glue's and
//! Confluent's deserializers, Lambda's Kafka schema validation, Powertools): a sink
//! given `?schema=glue://REGISTRY/SCHEMA` or `?schema=confluent://SUBJECT` encodes each
//! output (JSON from the plugin) with the schema, behind its registry's header.
//!
//! Which schema: the one the last plugin's manifest declares for the destination,
//! found in the registry by its text, and registered as a new version only where the
//! operator allows it (`PIPELINE_SCHEMA_REGISTER=on`: the registry's compatibility
//! rules then decide); without a declared one, the registry's latest version when it
//! is first needed. Each is resolved once per process and declared schema.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_glue::types::{
    Compatibility, DataFormat, RegistryId, SchemaId, SchemaVersionNumber, SchemaVersionStatus,
};
use sha2::Digest as _;

use super::avro::Avro;
use super::outputs::DeclaredSchema;
use super::registry::{Missing, Registries};

/// Longest answer taken from a registry.
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// How often a Glue version still being checked is asked about again.
const PENDING_POLL: Duration = Duration::from_millis(200);

/// Where a sink's schema lives: `glue://REGISTRY/SCHEMA` or `confluent://SUBJECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaTarget {
    /// A schema of a Glue registry.
    Glue {
        /// The registry's name.
        registry: String,
        /// The schema's name.
        schema: String,
    },
    /// A subject of the Confluent-compatible registry (`PIPELINE_CONFLUENT_REGISTRY`).
    Confluent {
        /// The subject (often `TOPIC-value`).
        subject: String,
    },
}

impl std::str::FromStr for SchemaTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // A subject goes into a URL path: only characters that need no escaping.
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
        };
        match text.split_once("://") {
            Some(("glue", rest)) => match rest.split_once('/') {
                Some((registry, schema)) if plain(registry) && plain(schema) => Ok(Self::Glue {
                    registry: registry.to_owned(),
                    schema: schema.to_owned(),
                }),
                _ => Err(format!("{text:?}: expected glue://REGISTRY/SCHEMA")),
            },
            Some(("confluent", subject)) if plain(subject) => Ok(Self::Confluent {
                subject: subject.to_owned(),
            }),
            _ => Err(format!(
                "{text:?}: expected glue://REGISTRY/SCHEMA or confluent://SUBJECT (letters, digits, `.`, `_`, `-`, `:`)"
            )),
        }
    }
}

impl std::fmt::Display for SchemaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Glue { registry, schema } => write!(f, "glue://{registry}/{schema}"),
            Self::Confluent { subject } => write!(f, "confluent://{subject}"),
        }
    }
}

/// How an encoder writes a datum.
enum Writes {
    /// An encoder lives as long as the process (one per sink and declared schema).
    Avro(Box<Avro>),
    Json(Box<jsonschema::Validator>),
}

/// One registered schema version, ready to frame outputs with.
pub struct Encoder {
    header: Vec<u8>,
    writes: Writes,
    /// Hex SHA-256 of the schema (Avro: of its Parsing Canonical Form), as on inputs.
    pub fingerprint: String,
    /// The registry's id of the version: Confluent's number, Glue's UUID.
    pub id: String,
}

impl Encoder {
    fn new(header: Vec<u8>, format: &str, definition: &str, id: String) -> Result<Self, Missing> {
        let hash = |text: &str| hex::encode(sha2::Sha256::digest(text.as_bytes()));
        let (writes, fingerprint) = match format {
            "AVRO" => {
                let schema = apache_avro::Schema::parse_str(definition)
                    .map_err(|e| Missing::Bad(format!("schema version {id} is not Avro: {e}")))?;
                let fingerprint = hash(&schema.canonical_form());
                let avro = Avro::new(schema)
                    .map_err(|e| Missing::Bad(format!("schema version {id}: {e}")))?;
                (Writes::Avro(Box::new(avro)), fingerprint)
            }
            "JSON" => {
                let schema: serde_json::Value = serde_json::from_str(definition)
                    .map_err(|e| Missing::Bad(format!("schema version {id} is not JSON: {e}")))?;
                let validator = jsonschema::validator_for(&schema).map_err(|e| {
                    Missing::Bad(format!("schema version {id} is not a JSON Schema: {e}"))
                })?;
                (Writes::Json(Box::new(validator)), hash(definition))
            }
            other => {
                return Err(Missing::Bad(format!(
                    "schema version {id} is {other}: outputs are written as Avro or JSON"
                )));
            }
        };
        Ok(Self {
            header,
            writes,
            fingerprint,
            id,
        })
    }

    /// `payload` (JSON) written with the schema, behind the registry's header.
    pub fn encode(&self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let value: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| format!("is not JSON, and its sink writes schema {}: {e}", self.id))?;
        let mut framed = self.header.clone();
        match &self.writes {
            Writes::Avro(avro) => avro
                .write_json(value, &mut framed)
                .map_err(|e| format!("does not fit schema version {}: {e}", self.id))?,
            Writes::Json(validator) => {
                if let Some(error) = validator.iter_errors(&value).next() {
                    return Err(format!(
                        "does not fit schema version {} at {}: {error}",
                        self.id, error.instance_path
                    ));
                }
                framed.extend_from_slice(payload);
            }
        }
        Ok(framed)
    }
}

/// A declared schema's format and text; `None`: the registry's latest version.
type DeclaredKey = Option<(String, String)>;

/// A sink's registry framing: its target, and the encoders resolved so far.
pub struct FramedWriter {
    target: SchemaTarget,
    registries: Registries,
    /// Whether a declared schema missing from the registry is registered.
    register: bool,
    /// By the declared schema's format and text (not its fingerprint: Avro's canonical
    /// form leaves defaults out, and a version changing only a default is another
    /// registry version); `None` for the registry's latest version.
    encoders: Mutex<HashMap<DeclaredKey, Arc<Encoder>>>,
}

impl std::fmt::Debug for FramedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FramedWriter({})", self.target)
    }
}

impl FramedWriter {
    /// A writer to `target`; the registry is asked only when an encoder is first needed.
    pub fn new(
        target: SchemaTarget,
        registries: Registries,
        register: bool,
    ) -> Result<Self, String> {
        if matches!(target, SchemaTarget::Confluent { .. }) && registries.confluent.is_none() {
            return Err(format!(
                "{target}: no Confluent registry is set (PIPELINE_CONFLUENT_REGISTRY)"
            ));
        }
        Ok(Self {
            target,
            registries,
            register,
            encoders: Mutex::new(HashMap::new()),
        })
    }

    /// The encoder for outputs declared with `declared` (their destination's schema),
    /// or, without one, for the registry's latest version; asked by `ends`.
    pub async fn encoder(
        &self,
        declared: Option<&DeclaredSchema>,
        ends: Instant,
    ) -> Result<Arc<Encoder>, Missing> {
        let key = declared.map(|d| (d.format.clone(), d.definition.clone()));
        if let Some(known) = self.encoders.lock().ok().and_then(|e| e.get(&key).cloned()) {
            return Ok(known);
        }
        let encoder = Arc::new(match &self.target {
            SchemaTarget::Glue { registry, schema } => {
                self.glue(registry, schema, declared, ends).await?
            }
            SchemaTarget::Confluent { subject } => self.confluent(subject, declared, ends).await?,
        });
        tracing::info!(sink_schema = %self.target, id = %encoder.id, fingerprint = %encoder.fingerprint, "output schema resolved");
        if let Ok(mut encoders) = self.encoders.lock() {
            encoders.insert(key, encoder.clone());
        }
        Ok(encoder)
    }

    async fn glue(
        &self,
        registry: &str,
        schema: &str,
        declared: Option<&DeclaredSchema>,
        ends: Instant,
    ) -> Result<Encoder, Missing> {
        let client =
            self.registries.glue.as_ref().ok_or_else(|| {
                Missing::Bad(format!("{}: no Glue client (host bug)", self.target))
            })?;
        let id = || {
            SchemaId::builder()
                .registry_name(registry)
                .schema_name(schema)
                .build()
        };
        let target = &self.target;
        let failed = |what: &str, error: String, bad: bool| {
            let text = format!("{target}: {what}: {error}");
            if bad {
                Missing::Bad(text)
            } else {
                Missing::Unavailable(text)
            }
        };
        let Some(declared) = declared else {
            let latest = SchemaVersionNumber::builder().latest_version(true).build();
            let call = client
                .get_schema_version()
                .schema_id(id())
                .schema_version_number(latest)
                .send();
            let answer = in_time(call, ends, target).await?.map_err(|e| {
                let bad = e.as_service_error().is_some_and(|s| {
                    s.is_entity_not_found_exception() || s.is_invalid_input_exception()
                });
                failed("its latest version", crate::aws::describe_error(&e), bad)
            })?;
            let version = answer.schema_version_id().unwrap_or_default().to_owned();
            let format = glue_format(answer.data_format());
            let definition = answer.schema_definition().unwrap_or_default();
            return Encoder::new(glue_header(&version)?, format, definition, version);
        };
        let format = declared.format.to_ascii_uppercase();
        let call = client
            .get_schema_by_definition()
            .schema_id(id())
            .schema_definition(&declared.definition)
            .send();
        let (version, status) = match in_time(call, ends, target).await? {
            Ok(found) => (
                found.schema_version_id().unwrap_or_default().to_owned(),
                found.status().cloned(),
            ),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                if !self.register {
                    return Err(Missing::Bad(format!(
                        "{target} has no version with the declared schema; register it, or let the host (PIPELINE_SCHEMA_REGISTER=on)"
                    )));
                }
                self.glue_register(client, registry, schema, declared, ends)
                    .await?
            }
            Err(e) => {
                let error = crate::aws::describe_error(&e);
                return Err(failed("finding the declared schema", error, false));
            }
        };
        let status = glue_available(client, &version, status, ends, target).await?;
        if status != SchemaVersionStatus::Available {
            return Err(Missing::Bad(format!(
                "{target}: the declared schema's version {version} is {status}: the registry did not accept it (incompatible with its compatibility mode?)"
            )));
        }
        Encoder::new(
            glue_header(&version)?,
            &format,
            &declared.definition,
            version,
        )
    }

    /// Registers `declared` as a new version of the schema, creating the schema
    /// (compatibility BACKWARD) when the registry has none of that name.
    async fn glue_register(
        &self,
        client: &aws_sdk_glue::Client,
        registry: &str,
        schema: &str,
        declared: &DeclaredSchema,
        ends: Instant,
    ) -> Result<(String, Option<SchemaVersionStatus>), Missing> {
        let target = &self.target;
        let id = SchemaId::builder()
            .registry_name(registry)
            .schema_name(schema)
            .build();
        let call = client
            .register_schema_version()
            .schema_id(id)
            .schema_definition(&declared.definition)
            .send();
        match in_time(call, ends, target).await? {
            Ok(registered) => {
                tracing::info!(sink_schema = %target, version = ?registered.version_number(), "output schema registered");
                return Ok((
                    registered
                        .schema_version_id()
                        .unwrap_or_default()
                        .to_owned(),
                    registered.status().cloned(),
                ));
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) => {}
            Err(e) => {
                let bad = e
                    .as_service_error()
                    .is_some_and(|s| s.is_invalid_input_exception());
                let text = format!(
                    "{target}: registering the declared schema: {}",
                    crate::aws::describe_error(&e)
                );
                return Err(if bad {
                    Missing::Bad(text)
                } else {
                    Missing::Unavailable(text)
                });
            }
        }
        let data_format = if declared.format == "avro" {
            DataFormat::Avro
        } else {
            DataFormat::Json
        };
        let call = client
            .create_schema()
            .registry_id(RegistryId::builder().registry_name(registry).build())
            .schema_name(schema)
            .data_format(data_format)
            .compatibility(Compatibility::Backward)
            .schema_definition(&declared.definition)
            .send();
        let created = in_time(call, ends, target).await?.map_err(|e| {
            let bad = e.as_service_error().is_some_and(|s| {
                s.is_invalid_input_exception() || s.is_entity_not_found_exception()
            });
            let text = format!(
                "{target}: creating the schema: {}",
                crate::aws::describe_error(&e)
            );
            if bad {
                Missing::Bad(text)
            } else {
                Missing::Unavailable(text)
            }
        })?;
        tracing::info!(sink_schema = %target, "output schema created");
        Ok((
            created.schema_version_id().unwrap_or_default().to_owned(),
            created.schema_version_status().cloned(),
        ))
    }

    async fn confluent(
        &self,
        subject: &str,
        declared: Option<&DeclaredSchema>,
        ends: Instant,
    ) -> Result<Encoder, Missing> {
        let target = &self.target;
        let (base, client, credential) = self.registries.confluent.as_ref().ok_or_else(|| {
            Missing::Bad(format!("{target}: no Confluent registry is set (host bug)"))
        })?;
        let base = base.trim_end_matches('/');
        let basic = credential.as_ref().map(|c| format!("Basic {c}"));
        let mut headers = vec![
            ("accept", "application/vnd.schemaregistry.v1+json"),
            ("content-type", "application/vnd.schemaregistry.v1+json"),
        ];
        if let Some(basic) = &basic {
            headers.push(("authorization", basic.as_str()));
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Version {
            id: u32,
            #[serde(default)]
            schema: Option<String>,
            #[serde(default)]
            schema_type: Option<String>,
        }
        let parse = |url: &str, body: &[u8]| {
            serde_json::from_slice::<Version>(body)
                .map_err(|e| Missing::Unavailable(format!("{url}: not a schema version: {e}")))
        };
        let error_code = |body: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|b| b.get("error_code")?.as_u64())
        };
        let Some(declared) = declared else {
            let url = format!("{base}/subjects/{subject}/versions/latest");
            let (status, body) = client
                .get(&url, &headers, MAX_ANSWER_BYTES, ends)
                .await
                .map_err(Missing::Unavailable)?;
            if status == http::StatusCode::NOT_FOUND && error_code(&body) == Some(40401) {
                return Err(Missing::Bad(format!("{target}: no such subject")));
            }
            if !status.is_success() {
                return Err(Missing::Unavailable(format!("GET {url}: {status}")));
            }
            let version = parse(&url, &body)?;
            let format = version.schema_type.unwrap_or_else(|| "AVRO".into());
            let definition = version.schema.unwrap_or_default();
            return Encoder::new(
                confluent_header(version.id),
                &format,
                &definition,
                version.id.to_string(),
            );
        };
        let format = declared.format.to_ascii_uppercase();
        let request = bytes::Bytes::from(
            serde_json::json!({"schema": declared.definition, "schemaType": format}).to_string(),
        );
        // Is the declared schema one of the subject's versions?
        let url = format!("{base}/subjects/{subject}");
        let (status, body) = client
            .post(&url, &headers, request.clone(), MAX_ANSWER_BYTES, ends)
            .await
            .map_err(Missing::Unavailable)?;
        let id = if status.is_success() {
            parse(&url, &body)?.id
        } else if status == http::StatusCode::NOT_FOUND
            && matches!(error_code(&body), Some(40401 | 40403))
        {
            if !self.register {
                return Err(Missing::Bad(format!(
                    "{target} has no version with the declared schema; register it, or let the host (PIPELINE_SCHEMA_REGISTER=on)"
                )));
            }
            let url = format!("{base}/subjects/{subject}/versions");
            let (status, body) = client
                .post(&url, &headers, request, MAX_ANSWER_BYTES, ends)
                .await
                .map_err(Missing::Unavailable)?;
            // 409: incompatible with the subject's compatibility mode; 422: not a schema.
            if matches!(status.as_u16(), 409 | 422) {
                return Err(Missing::Bad(format!(
                    "{target}: the registry refused the declared schema ({status}): {}",
                    String::from_utf8_lossy(&body)
                )));
            }
            if !status.is_success() {
                return Err(Missing::Unavailable(format!("POST {url}: {status}")));
            }
            let id = parse(&url, &body)?.id;
            tracing::info!(sink_schema = %target, id, "output schema registered");
            id
        } else {
            return Err(Missing::Unavailable(format!("POST {url}: {status}")));
        };
        Encoder::new(
            confluent_header(id),
            &format,
            &declared.definition,
            id.to_string(),
        )
    }
}

impl Encoder {
    /// An encoder for a schema given by its text (`avro` or `json`), behind the framing
    /// `reference` names: what a producer sends (golden cases frame their inputs with
    /// one).
    pub fn framing(
        reference: &super::SchemaRef,
        format: &str,
        definition: &str,
    ) -> Result<Self, String> {
        let id = match reference {
            super::SchemaRef::Confluent(id) => id.to_string(),
            super::SchemaRef::Glue(version) => version.clone(),
        };
        Self::new(
            header_of(reference)?,
            &format.to_ascii_uppercase(),
            definition,
            id,
        )
        .map_err(|m| m.failure().1)
    }
}

/// The header a datum written with the schema `reference` names goes behind.
pub fn header_of(reference: &super::SchemaRef) -> Result<Vec<u8>, String> {
    match reference {
        super::SchemaRef::Confluent(id) => Ok(confluent_header(*id)),
        super::SchemaRef::Glue(version) => glue_header(version).map_err(|m| m.failure().1),
    }
}

/// `call`, or the registry not answering by `ends`.
async fn in_time<F: std::future::Future>(
    call: F,
    ends: Instant,
    target: &SchemaTarget,
) -> Result<F::Output, Missing> {
    tokio::time::timeout_at(ends.into(), call)
        .await
        .map_err(|_| Missing::Unavailable(format!("{target}: no answer in time")))
}

/// A Glue version's status once its compatibility check ended (Glue checks a new
/// version after answering, while it is `PENDING`).
async fn glue_available(
    client: &aws_sdk_glue::Client,
    version: &str,
    mut status: Option<SchemaVersionStatus>,
    ends: Instant,
    target: &SchemaTarget,
) -> Result<SchemaVersionStatus, Missing> {
    loop {
        match status {
            Some(SchemaVersionStatus::Pending) | None => {}
            Some(done) => return Ok(done),
        }
        if Instant::now() + PENDING_POLL >= ends {
            return Err(Missing::Unavailable(format!(
                "{target}: version {version} is still being checked by the registry"
            )));
        }
        tokio::time::sleep(PENDING_POLL).await;
        let call = client
            .get_schema_version()
            .schema_version_id(version)
            .send();
        let answer = in_time(call, ends, target).await?.map_err(|e| {
            Missing::Unavailable(format!(
                "{target}: version {version}: {}",
                crate::aws::describe_error(&e)
            ))
        })?;
        status = Some(
            answer
                .status()
                .cloned()
                .unwrap_or(SchemaVersionStatus::Available),
        );
    }
}

fn glue_format(format: Option<&DataFormat>) -> &'static str {
    match format {
        Some(DataFormat::Avro) => "AVRO",
        Some(DataFormat::Json) => "JSON",
        _ => "PROTOBUF",
    }
}

/// Glue's header: version 3, no compression, the version's UUID.
fn glue_header(version: &str) -> Result<Vec<u8>, Missing> {
    let uuid = super::framing::uuid_bytes(version)
        .ok_or_else(|| Missing::Bad(format!("glue schema version {version:?} is not a UUID")))?;
    let mut header = vec![3, 0];
    header.extend_from_slice(&uuid);
    Ok(header)
}

/// Confluent's header: a zero byte and the id, big-endian.
fn confluent_header(id: u32) -> Vec<u8> {
    let mut header = vec![0];
    header.extend_from_slice(&id.to_be_bytes());
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_name_themselves() {
        for text in ["glue://shop/orders", "confluent://orders-value"] {
            let target: SchemaTarget = text.parse().expect(text);
            assert_eq!(target.to_string(), text);
        }
        for bad in [
            "glue://shop",
            "confluent://a/b",
            "confluent://",
            "kafka://x",
            "orders",
        ] {
            assert!(bad.parse::<SchemaTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn avro_outputs_are_framed_and_round_trip() {
        let schema = r#"{"type":"record","name":"Out","fields":[{"name":"id","type":"string"},{"name":"n","type":"long"},{"name":"note","type":["null","string"],"default":null}]}"#;
        let encoder = Encoder::new(confluent_header(9), "AVRO", schema, "9".into()).expect("avro");
        let framed = encoder.encode(br#"{"id":"a","n":3}"#).expect("fits");
        assert_eq!(&framed[..5], &[0, 0, 0, 0, 9]);
        let parsed = apache_avro::Schema::parse_str(schema).expect("schema");
        let back = Avro::new(parsed)
            .expect("resolves")
            .to_json(&framed[5..])
            .expect("decodes");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&back).expect("json"),
            serde_json::json!({"id": "a", "n": 3, "note": null})
        );
        let wrong = encoder.encode(br#"{"id":"a"}"#).expect_err("no n");
        assert!(wrong.contains("does not fit schema version 9"), "{wrong}");
        assert!(
            encoder
                .encode(b"nope")
                .expect_err("text")
                .contains("not JSON")
        );
    }

    #[test]
    fn json_outputs_are_checked_and_framed_as_they_are() {
        let uuid = "b7b4a7f0-0f3a-4b8e-9a57-0c0f5f1d2e3a";
        let schema = r#"{"type":"object","required":["id"]}"#;
        let encoder = Encoder::new(
            glue_header(uuid).expect("uuid"),
            "JSON",
            schema,
            uuid.into(),
        )
        .expect("json");
        let framed = encoder.encode(br#"{"id":1}"#).expect("fits");
        assert_eq!(&framed[..2], &[3, 0]);
        assert_eq!(&framed[18..], br#"{"id":1}"#);
        assert!(encoder.encode(b"{}").is_err());
        assert!(Encoder::new(vec![], "PROTOBUF", "", "1".into()).is_err());
    }
}
