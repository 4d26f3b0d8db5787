//! Whether a new version's declared output schema may follow the published ones, under a
//! registry's compatibility mode: Confluent's (`BACKWARD`, `FORWARD`, `FULL`, each also
//! `_TRANSITIVE`, and `NONE`) and Glue's (`_ALL` for transitive, `DISABLED`: no change).
//! BACKWARD: consumers on the new schema read what the old one wrote; FORWARD: consumers
//! on the old schema read what the new one writes; FULL: both.

use super::outputs::DeclaredSchema;

/// A compatibility mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    backward: bool,
    forward: bool,
    /// Checked against every earlier version, not the live one alone.
    pub transitive: bool,
    /// No change at all (Glue's `DISABLED`).
    frozen: bool,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let upper = text.to_ascii_uppercase();
        let (base, transitive) = match upper
            .strip_suffix("_TRANSITIVE")
            .or_else(|| upper.strip_suffix("_ALL"))
        {
            Some(base) => (base, true),
            None => (upper.as_str(), false),
        };
        let (backward, forward, frozen) = match base {
            "NONE" => (false, false, false),
            "DISABLED" if !transitive => (false, false, true),
            "BACKWARD" => (true, false, false),
            "FORWARD" => (false, true, false),
            "FULL" => (true, true, false),
            _ => {
                return Err(format!(
                    "{text:?}: BACKWARD, FORWARD, FULL (each also _TRANSITIVE or _ALL), NONE or DISABLED"
                ));
            }
        };
        Ok(Self {
            backward,
            forward,
            transitive,
            frozen,
        })
    }
}

/// Whether `new` may follow `old` (one destination's schemas) under `mode`; the error
/// says what broke it.
pub fn check(mode: Mode, old: &DeclaredSchema, new: &DeclaredSchema) -> Result<(), String> {
    if mode.frozen {
        return if old == new {
            Ok(())
        } else {
            Err("the mode is DISABLED: the schema may not change".into())
        };
    }
    if !mode.backward && !mode.forward {
        return Ok(());
    }
    if old.format != new.format {
        return Err(format!(
            "its format changed from {} to {}",
            old.format, new.format
        ));
    }
    // `reads(writer, reader)`: data written with `writer` can be read with `reader`.
    let reads: &dyn Fn(&DeclaredSchema, &DeclaredSchema) -> Result<(), String> =
        match old.format.as_str() {
            "avro" => &avro_reads,
            _ => &json_reads,
        };
    if mode.backward {
        reads(old, new).map_err(|e| {
            format!(
                "not BACKWARD compatible (the new schema cannot read what the old one wrote): {e}"
            )
        })?;
    }
    if mode.forward {
        reads(new, old).map_err(|e| {
            format!(
                "not FORWARD compatible (the old schema cannot read what the new one writes): {e}"
            )
        })?;
    }
    Ok(())
}

fn avro_reads(writer: &DeclaredSchema, reader: &DeclaredSchema) -> Result<(), String> {
    let parse = |s: &DeclaredSchema| {
        apache_avro::Schema::parse_str(&s.definition)
            .map_err(|e| format!("not an Avro schema: {e}"))
    };
    apache_avro::schema_compatibility::SchemaCompatibility::can_read(
        &parse(writer)?,
        &parse(reader)?,
    )
    .map(drop)
    .map_err(|e| e.to_string())
}

/// JSON Schema, for objects: a reader that requires a field the writer did not require
/// cannot read it, and a field both describe must keep its `type`. (A subset of JSON
/// Schema's meaning: enough for the common break, a new required field or a changed
/// type.)
fn json_reads(writer: &DeclaredSchema, reader: &DeclaredSchema) -> Result<(), String> {
    let parse = |s: &DeclaredSchema| -> Result<serde_json::Value, String> {
        serde_json::from_str(&s.definition).map_err(|e| format!("not JSON: {e}"))
    };
    let (writer, reader) = (parse(writer)?, parse(reader)?);
    let required = |schema: &serde_json::Value| -> Vec<String> {
        schema["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let written = required(&writer);
    if let Some(field) = required(&reader).into_iter().find(|f| !written.contains(f)) {
        return Err(format!(
            "field `{field}` is required by the reader and not by the writer"
        ));
    }
    if let (Some(w), Some(r)) = (
        writer["properties"].as_object(),
        reader["properties"].as_object(),
    ) {
        for (field, kind) in r {
            if let Some(before) = w.get(field)
                && before.get("type").is_some()
                && before.get("type") != kind.get("type")
            {
                return Err(format!(
                    "field `{field}`'s type changed from {} to {}",
                    before["type"], kind["type"]
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avro(fields: &str) -> DeclaredSchema {
        DeclaredSchema {
            format: "avro".into(),
            definition: format!(r#"{{"type":"record","name":"Out","fields":[{fields}]}}"#),
        }
    }

    #[test]
    fn modes_read_as_both_registries_spell_them() {
        for text in [
            "BACKWARD",
            "backward_transitive",
            "FORWARD_ALL",
            "FULL",
            "NONE",
            "DISABLED",
        ] {
            assert!(text.parse::<Mode>().is_ok(), "{text}");
        }
        assert!("FULL_ALL".parse::<Mode>().expect("mode").transitive);
        assert!("SIDEWAYS".parse::<Mode>().is_err());
    }

    #[test]
    fn avro_changes_are_judged_by_the_mode() {
        let v1 = avro(r#"{"name":"id","type":"string"}"#);
        let with_default =
            avro(r#"{"name":"id","type":"string"},{"name":"cents","type":"long","default":0}"#);
        let without_default =
            avro(r#"{"name":"id","type":"string"},{"name":"cents","type":"long"}"#);
        let backward: Mode = "BACKWARD".parse().expect("mode");
        let forward: Mode = "FORWARD".parse().expect("mode");
        assert_eq!(check(backward, &v1, &with_default), Ok(()));
        let broke =
            check(backward, &v1, &without_default).expect_err("a new field without a default");
        assert!(
            broke.contains("BACKWARD") && broke.contains("cents"),
            "{broke}"
        );
        assert_eq!(
            check(forward, &v1, &without_default),
            Ok(()),
            "old readers ignore it"
        );
        assert!(check("FULL".parse().expect("mode"), &v1, &without_default).is_err());
        assert_eq!(
            check("NONE".parse().expect("mode"), &v1, &without_default),
            Ok(())
        );
        assert!(check("DISABLED".parse().expect("mode"), &v1, &with_default).is_err());
    }

    #[test]
    fn json_schema_changes_name_the_field() {
        let schema = |required: &str, kind: &str| DeclaredSchema {
            format: "json".into(),
            definition: format!(
                r#"{{"type":"object","required":[{required}],"properties":{{"id":{{"type":"string"}},"n":{{"type":"{kind}"}}}}}}"#
            ),
        };
        let backward: Mode = "BACKWARD".parse().expect("mode");
        let v1 = schema(r#""id""#, "integer");
        assert_eq!(check(backward, &v1, &schema(r#""id""#, "integer")), Ok(()));
        let required =
            check(backward, &v1, &schema(r#""id","n""#, "integer")).expect_err("newly required");
        assert!(required.contains("field `n` is required"), "{required}");
        let retyped = check(backward, &v1, &schema(r#""id""#, "string")).expect_err("retyped");
        assert!(retyped.contains("field `n`'s type changed"), "{retyped}");
    }
}
