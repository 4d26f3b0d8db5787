//! Where framed records' schemas come from: AWS Glue Schema Registry (`GetSchemaVersion`
//! by the version's UUID) and a Confluent-compatible registry (`GET /schemas/ids/ID`).
//! Each schema is fetched once and kept: a schema id never changes its schema.

use std::time::Instant;

use sha2::Digest as _;

use super::framing::SchemaRef;
use crate::web::WebClient;

/// Longest schema text taken from a registry.
const MAX_SCHEMA_BYTES: usize = 1 << 20;

/// How a schema's records are written.
#[derive(Debug)]
pub enum Format {
    /// Avro binary datums.
    Avro(Box<super::avro::Avro>),
    /// JSON documents (JSON Schema).
    Json,
    /// Protobuf messages: handed to the plugin as they are, unframed.
    Protobuf,
}

/// A resolved schema, and what records written with it are tagged with.
#[derive(Debug)]
pub struct Resolved {
    pub format: Format,
    /// The schema's name (Glue: the schema's; Confluent: the Avro record's full name, or
    /// its id).
    pub name: String,
    /// Glue's version number; Confluent's id.
    pub version: String,
    /// Hex SHA-256 of the schema (Avro: of its Parsing Canonical Form).
    pub fingerprint: String,
}

/// Why a schema could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// The registry says there is no such schema, or it does not parse: the record is
    /// bad data (`schema`).
    Bad(String),
    /// The registry could not be asked now: the record is retried.
    Unavailable(String),
}

impl Missing {
    /// What a record whose schema is missing fails as: `schema` (dead-lettered), or
    /// `unfinished` (retried).
    pub fn failure(&self) -> (crate::record::FailureKind, String) {
        match self {
            Self::Bad(why) => (crate::record::FailureKind::Schema, why.clone()),
            Self::Unavailable(why) => (crate::record::FailureKind::Unfinished, why.clone()),
        }
    }
}

/// The registries records may name.
#[derive(Clone)]
pub struct Registries {
    pub(super) glue: Option<aws_sdk_glue::Client>,
    /// A Confluent-compatible registry's base URL, its client, and a Basic credential.
    pub(super) confluent: Option<(String, WebClient, Option<String>)>,
}

impl Registries {
    /// Glue through `glue`; a Confluent-compatible registry at `confluent`, its base URL,
    /// optionally with a `user:password@` credential, or with `credential` (`user:password`,
    /// from a secret).
    pub fn new(
        glue: aws_sdk_glue::Client,
        confluent: Option<&str>,
        credential: Option<&str>,
    ) -> Result<Self, String> {
        use base64::Engine as _;
        let confluent = match confluent {
            None if credential.is_some() => {
                return Err("a credential for a Confluent registry, and no registry URL".into());
            }
            None => None,
            Some(url) => {
                let (url, in_url) = split_credential(url)?;
                let credential = match (in_url, credential) {
                    (Some(_), Some(_)) => {
                        return Err(
                            "a credential both in the registry's URL and in a secret: give one"
                                .into(),
                        );
                    }
                    (in_url, None) => in_url,
                    (None, Some(secret)) => {
                        Some(base64::engine::general_purpose::STANDARD.encode(secret))
                    }
                };
                Some((url, WebClient::new()?, credential))
            }
        };
        Ok(Self {
            glue: Some(glue),
            confluent,
        })
    }

    /// The schema `reference` names, by `ends`.
    pub async fn fetch(&self, reference: &SchemaRef, ends: Instant) -> Result<Resolved, Missing> {
        match reference {
            SchemaRef::Glue(id) => self.glue(id, ends).await,
            SchemaRef::Confluent(id) => self.confluent(*id, ends).await,
        }
    }

    async fn glue(&self, id: &str, ends: Instant) -> Result<Resolved, Missing> {
        let client = self.glue.as_ref().ok_or_else(|| {
            Missing::Bad("a Glue-framed record, and no Glue registry (host bug)".into())
        })?;
        let call = client.get_schema_version().schema_version_id(id).send();
        let answer = match tokio::time::timeout_at(ends.into(), call).await {
            Err(_) => {
                return Err(Missing::Unavailable(format!(
                    "glue schema version {id}: no answer in time"
                )));
            }
            Ok(Err(e)) => {
                let text = crate::aws::describe_error(&e);
                return Err(match e.as_service_error() {
                    Some(service)
                        if service.is_entity_not_found_exception()
                            || service.is_invalid_input_exception() =>
                    {
                        Missing::Bad(format!("glue schema version {id}: {text}"))
                    }
                    _ => Missing::Unavailable(format!("glue schema version {id}: {text}")),
                });
            }
            Ok(Ok(answer)) => answer,
        };
        let definition = answer
            .schema_definition()
            .ok_or_else(|| Missing::Bad(format!("glue schema version {id} has no definition")))?;
        let name = answer
            .schema_arn()
            .and_then(|arn| arn.rsplit('/').next())
            .unwrap_or(id)
            .to_owned();
        let version = answer
            .version_number()
            .map_or_else(String::new, |v| v.to_string());
        let format = match answer.data_format() {
            Some(aws_sdk_glue::types::DataFormat::Avro) => "AVRO",
            Some(aws_sdk_glue::types::DataFormat::Json) => "JSON",
            Some(aws_sdk_glue::types::DataFormat::Protobuf) => "PROTOBUF",
            other => {
                return Err(Missing::Bad(format!(
                    "glue schema version {id}: data format {other:?}"
                )));
            }
        };
        resolve(format, definition, name, version)
    }

    async fn confluent(&self, id: u32, ends: Instant) -> Result<Resolved, Missing> {
        let (base, client, credential) = self
            .confluent
            .as_ref()
            .ok_or_else(|| Missing::Bad(format!("confluent schema id {id}: no Confluent registry is set (PIPELINE_CONFLUENT_REGISTRY)")))?;
        let url = format!("{}/schemas/ids/{id}", base.trim_end_matches('/'));
        let mut headers = vec![("accept", "application/vnd.schemaregistry.v1+json")];
        let basic;
        if let Some(credential) = credential {
            basic = format!("Basic {credential}");
            headers.push(("authorization", basic.as_str()));
        }
        let (status, body) = client
            .get(&url, &headers, MAX_SCHEMA_BYTES, ends)
            .await
            .map_err(Missing::Unavailable)?;
        // Only the registry's own "schema not found" (40403) is about the record; any
        // other 404 (a wrong base URL, a proxy) is the registry not answering.
        let not_found = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|b| b.get("error_code")?.as_u64())
            == Some(40403);
        if status == http::StatusCode::NOT_FOUND && not_found {
            return Err(Missing::Bad(format!(
                "confluent schema id {id}: not in the registry"
            )));
        }
        if !status.is_success() {
            return Err(Missing::Unavailable(format!("GET {url}: {status}")));
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            schema: String,
            schema_type: Option<String>,
            #[serde(default)]
            references: Vec<serde_json::Value>,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| Missing::Unavailable(format!("GET {url}: not a schema: {e}")))?;
        if !answer.references.is_empty() {
            return Err(Missing::Bad(format!(
                "confluent schema id {id} refers to other schemas, which this host does not resolve"
            )));
        }
        // Before Confluent 8, an Avro schema's type was left out.
        let format = answer.schema_type.unwrap_or_else(|| "AVRO".into());
        resolve(&format, &answer.schema, id.to_string(), id.to_string())
    }
}

/// `https://user:password@host/…` as the URL without the credential, and the
/// credential as Basic authentication's base64.
fn split_credential(url: &str) -> Result<(String, Option<String>), String> {
    use base64::Engine as _;
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(s, _)| matches!(*s, "http" | "https"))
        .ok_or_else(|| format!("{url:?}: expected an http(s):// URL"))?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        None => Ok((url.to_owned(), None)),
        Some((credential, host)) => Ok((
            format!("{scheme}://{host}{}", &rest[authority_end..]),
            Some(base64::engine::general_purpose::STANDARD.encode(credential)),
        )),
    }
}

/// The `user:password` a Secrets Manager secret holds: its string as it is
/// (`KEY:SECRET`), or JSON with `username` and `password`.
pub async fn secret_credential(
    client: &aws_sdk_secretsmanager::Client,
    secret: &str,
) -> Result<String, String> {
    let answer = client
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| format!("secret {secret}: {}", crate::aws::describe_error(&e)))?;
    let text = answer
        .secret_string()
        .ok_or_else(|| format!("secret {secret} holds no string"))?;
    #[derive(serde::Deserialize)]
    struct UserPassword {
        username: String,
        password: String,
    }
    if text.trim_start().starts_with('{') {
        let pair: UserPassword = serde_json::from_str(text).map_err(|e| {
            format!("secret {secret}: JSON without a `username` and a `password` ({e})")
        })?;
        return Ok(format!("{}:{}", pair.username, pair.password));
    }
    if !text.contains(':') {
        return Err(format!(
            "secret {secret}: expected KEY:SECRET or JSON with `username` and `password`"
        ));
    }
    Ok(text.trim().to_owned())
}

/// Whether `schema` names a record inside that record (a list, a tree).
fn recursive(schema: &apache_avro::Schema, enclosing: &mut Vec<apache_avro::schema::Name>) -> bool {
    use apache_avro::Schema;
    match schema {
        Schema::Ref { name } => enclosing.contains(name),
        Schema::Record(record) => {
            enclosing.push(record.name.clone());
            let found = record
                .fields
                .iter()
                .any(|f| recursive(&f.schema, enclosing));
            enclosing.pop();
            found
        }
        Schema::Array(array) => recursive(&array.items, enclosing),
        Schema::Map(map) => recursive(&map.types, enclosing),
        Schema::Union(union) => union.variants().iter().any(|v| recursive(v, enclosing)),
        _ => false,
    }
}

/// A schema's text parsed as its `format` says.
pub(super) fn resolve(
    format: &str,
    definition: &str,
    name: String,
    version: String,
) -> Result<Resolved, Missing> {
    let hash = |text: &str| hex::encode(sha2::Sha256::digest(text.as_bytes()));
    match format {
        "AVRO" => {
            let schema = apache_avro::Schema::parse_str(definition)
                .map_err(|e| Missing::Bad(format!("schema {name} {version} is not Avro: {e}")))?;
            if recursive(&schema, &mut Vec::new()) {
                // A datum of a recursive type nests as deep as it says: decoding it would
                // recurse without a bound.
                return Err(Missing::Bad(format!(
                    "schema {name} {version} is recursive (a record inside itself), which this host does not decode"
                )));
            }
            let fingerprint = hash(&schema.canonical_form());
            // A Confluent schema has no name of its own: its record's, when it has one.
            let name = match schema.name() {
                Some(full) if name == version => full.to_string(),
                _ => name,
            };
            Ok(Resolved {
                format: Format::Avro(Box::new(
                    super::avro::Avro::new(schema)
                        .map_err(|e| Missing::Bad(format!("schema {name} {version}: {e}")))?,
                )),
                name,
                version,
                fingerprint,
            })
        }
        "JSON" => Ok(Resolved {
            format: Format::Json,
            fingerprint: hash(definition),
            name,
            version,
        }),
        "PROTOBUF" => Ok(Resolved {
            format: Format::Protobuf,
            fingerprint: hash(definition),
            name,
            version,
        }),
        other => Err(Missing::Bad(format!(
            "schema {name} {version}: unknown type {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_credential_leaves_the_url_for_a_header() {
        assert_eq!(
            split_credential("https://key:secret@registry.example/api"),
            Ok((
                "https://registry.example/api".into(),
                Some("a2V5OnNlY3JldA==".into())
            ))
        );
        assert_eq!(
            split_credential("http://127.0.0.1:8081"),
            Ok(("http://127.0.0.1:8081".into(), None))
        );
        assert!(split_credential("registry.example").is_err());
    }
}
