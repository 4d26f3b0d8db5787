//! Declared output schemas: a plugin's manifest may name, per destination, the Avro or
//! JSON Schema its outputs there follow (`host publish --output-schema DEST=FILE`,
//! signed with the rest). The host checks every output against it before anything of
//! its record is sent, and tags it with the schema's fingerprint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// One destination's schema, as a manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredSchema {
    /// `avro` or `json` (JSON Schema).
    pub format: String,
    /// The schema's text.
    pub definition: String,
}

impl DeclaredSchema {
    /// The schema in `path`: Avro for `.avsc`, JSON Schema for `.json`.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("avsc") => "avro",
            Some("json") => "json",
            _ => {
                return Err(format!(
                    "{}: a schema file is .avsc (Avro) or .json (JSON Schema)",
                    path.display()
                ));
            }
        };
        let definition =
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let declared = Self {
            format: format.into(),
            definition,
        };
        Checker::compile(&declared).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(declared)
    }
}

/// A declared schema, ready to check outputs.
enum Checker {
    Avro(Box<apache_avro::Schema>),
    Json(Box<jsonschema::Validator>),
}

impl Checker {
    fn compile(declared: &DeclaredSchema) -> Result<Self, String> {
        match declared.format.as_str() {
            "avro" => apache_avro::Schema::parse_str(&declared.definition)
                .map(|s| Self::Avro(Box::new(s)))
                .map_err(|e| format!("not an Avro schema: {e}")),
            "json" => {
                let schema: serde_json::Value = serde_json::from_str(&declared.definition)
                    .map_err(|e| format!("a JSON Schema that is not JSON: {e}"))?;
                jsonschema::validator_for(&schema)
                    .map(|v| Self::Json(Box::new(v)))
                    .map_err(|e| format!("not a JSON Schema: {e}"))
            }
            other => Err(format!("schema format {other:?}: `avro` or `json`")),
        }
    }

    fn check(&self, value: &serde_json::Value) -> Result<(), String> {
        match self {
            Self::Avro(schema) => {
                let avro = apache_avro::types::Value::try_from(value.clone())
                    .map_err(|e| format!("no Avro form: {e}"))?;
                avro.resolve(schema)
                    .map(drop)
                    .map_err(|e| format!("does not fit the Avro schema: {e}"))
            }
            Self::Json(validator) => match validator.iter_errors(value).next() {
                None => Ok(()),
                Some(error) => Err(format!(
                    "does not fit the JSON Schema at {}: {error}",
                    error.instance_path
                )),
            },
        }
    }
}

/// A plugin's declared output schemas, by destination (`default` for outputs without
/// one), each with its fingerprint.
#[derive(Default)]
pub struct OutputSchemas {
    by_destination: BTreeMap<String, (Checker, String, DeclaredSchema)>,
}

impl std::fmt::Debug for OutputSchemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_destination.keys()).finish()
    }
}

impl OutputSchemas {
    /// Compiles `declared`; the error names the destination.
    pub fn compile(declared: &BTreeMap<String, DeclaredSchema>) -> Result<Self, String> {
        let mut by_destination = BTreeMap::new();
        for (destination, schema) in declared {
            let checker = Checker::compile(schema)
                .map_err(|e| format!("output schema of `{destination}`: {e}"))?;
            let fingerprint = match &checker {
                Checker::Avro(avro) => avro.canonical_form(),
                Checker::Json(_) => schema.definition.clone(),
            };
            let fingerprint = hex::encode(sha2::Sha256::digest(fingerprint.as_bytes()));
            by_destination.insert(destination.clone(), (checker, fingerprint, schema.clone()));
        }
        Ok(Self { by_destination })
    }

    /// The schema `destination` declares, and its fingerprint.
    pub fn declared(&self, destination: &str) -> Option<(&DeclaredSchema, &str)> {
        self.by_destination
            .get(destination)
            .map(|(_, fingerprint, declared)| (declared, fingerprint.as_str()))
    }

    /// Whether no destination has a schema.
    pub fn is_empty(&self) -> bool {
        self.by_destination.is_empty()
    }

    /// Checks a payload bound for `destination` (`None`: the default): the schema's
    /// fingerprint when it fits, `Ok(None)` when the destination declares no schema.
    pub fn check(&self, destination: Option<&str>, payload: &[u8]) -> Result<Option<&str>, String> {
        let destination = destination.unwrap_or("default");
        let Some((checker, fingerprint, _)) = self.by_destination.get(destination) else {
            return Ok(None);
        };
        let value: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| format!("an output to `{destination}` is not JSON, and `{destination}` declares a schema: {e}"))?;
        checker
            .check(&value)
            .map_err(|e| format!("an output to `{destination}` {e}"))?;
        Ok(Some(fingerprint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> BTreeMap<String, DeclaredSchema> {
        BTreeMap::from([
            (
                "default".to_owned(),
                DeclaredSchema {
                    format: "avro".into(),
                    definition: r#"{"type":"record","name":"Out","fields":[{"name":"id","type":"string"},{"name":"cents","type":"long"}]}"#.into(),
                },
            ),
            (
                "audit".to_owned(),
                DeclaredSchema {
                    format: "json".into(),
                    definition: r#"{"type":"object","required":["who"],"properties":{"who":{"type":"string"}}}"#.into(),
                },
            ),
        ])
    }

    #[test]
    fn outputs_are_checked_against_their_destinations_schema() {
        let schemas = OutputSchemas::compile(&declared()).expect("compiles");
        let fits = schemas
            .check(None, br#"{"id":"o1","cents":250}"#)
            .expect("fits");
        assert_eq!(fits.map(str::len), Some(64), "the fingerprint");
        let missing = schemas
            .check(None, br#"{"id":"o1"}"#)
            .expect_err("no cents");
        assert!(
            missing.contains("does not fit the Avro schema"),
            "{missing}"
        );
        assert!(schemas.check(Some("audit"), br#"{"who":"ann"}"#).is_ok());
        let wrong = schemas
            .check(Some("audit"), br#"{"who":7}"#)
            .expect_err("not a string");
        assert!(wrong.contains("/who"), "{wrong}");
        assert!(
            schemas
                .check(None, b"not json")
                .expect_err("text")
                .contains("not JSON")
        );
        assert_eq!(schemas.check(Some("other"), b"anything"), Ok(None));
    }

    #[test]
    fn a_schema_that_does_not_compile_names_its_destination() {
        let mut bad = declared();
        bad.insert(
            "broken".into(),
            DeclaredSchema {
                format: "avro".into(),
                definition: "{\"type\":\"nope\"}".into(),
            },
        );
        let error = OutputSchemas::compile(&bad).expect_err("broken");
        assert!(error.contains("`broken`"), "{error}");
    }
}
