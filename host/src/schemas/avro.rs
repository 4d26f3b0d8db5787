//! Avro datums to and from JSON, each schema's named types resolved once. A schema is
//! parsed once per process (a registry's id never changes its schema, an encoder lives
//! as long as its sink), and leaked so its resolved names and the library's reader and
//! writer can borrow it for `'static`: without that, every datum would resolve the
//! schema again, which cost more than decoding it.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::ResolvedSchema;
use apache_avro::writer::datum::GenericDatumWriter;

/// One Avro schema, ready to read and write datums.
pub struct Avro {
    schema: &'static Schema,
    names: ResolvedSchema<'static>,
    reader: GenericDatumReader<'static>,
    writer: GenericDatumWriter<'static>,
}

impl std::fmt::Debug for Avro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Avro({:?})", self.schema.name())
    }
}

impl Avro {
    /// `schema`, resolved. Call it once per schema a process uses: the schema is kept
    /// for the rest of the process.
    pub fn new(schema: Schema) -> Result<Self, String> {
        let schema: &'static Schema = Box::leak(Box::new(schema));
        let names = || ResolvedSchema::try_from(schema).map_err(|e| e.to_string());
        let reader = GenericDatumReader::builder(schema)
            .resolved_writer_schemata(names()?)
            .build()
            .map_err(|e| e.to_string())?;
        // Each value is resolved against the schema before it is written: the writer
        // need not check it again.
        let writer = GenericDatumWriter::builder(schema)
            .resolved_schemata(names()?)
            .validate(false)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            schema,
            names: names()?,
            reader,
            writer,
        })
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        self.schema
    }

    /// An Avro binary datum as compact JSON (unions unwrapped, enums as strings).
    pub fn to_json(&self, datum: &[u8]) -> Result<Vec<u8>, String> {
        let mut rest = datum;
        let value = self
            .reader
            .read_value(&mut rest)
            .map_err(|e| format!("the datum does not decode against its Avro schema: {e}"))?;
        // A datum cut short inside a field decodes as null: not one the schema allows.
        if !value.validate_with_names(self.schema, self.names.get_names()) {
            return Err("the datum does not decode against its Avro schema (cut short?)".into());
        }
        if !rest.is_empty() {
            return Err(format!(
                "{} bytes left after the Avro datum: not written with its schema",
                rest.len()
            ));
        }
        let json = serde_json::Value::try_from(value)
            .map_err(|e| format!("the Avro datum has no JSON form: {e}"))?;
        serde_json::to_vec(&json).map_err(|e| e.to_string())
    }

    /// `value` written as an Avro binary datum onto `out`; the error says why it does
    /// not fit the schema (a missing field, a wrong type).
    pub fn write_json(&self, value: serde_json::Value, out: &mut Vec<u8>) -> Result<(), String> {
        let avro = apache_avro::types::Value::try_from(value)
            .map_err(|e| format!("no Avro form: {e}"))?
            .resolve_with_names(self.schema, self.names.get_names())
            .map_err(|e| e.to_string())?;
        self.writer
            .write_value_ref(out, &avro)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Avro {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int"},{"name":"note","type":["null","string"],"default":null}]}"#,
        )
        .expect("a schema");
        Avro::new(schema).expect("resolves")
    }

    #[test]
    fn avro_datums_become_json_and_leftovers_are_refused() {
        let avro = order();
        // "o1" (length 2 zigzag = 4), 3 (zigzag 6), union branch 1 then "hi".
        let datum = [4, b'o', b'1', 6, 2, 4, b'h', b'i'];
        let json: serde_json::Value =
            serde_json::from_slice(&avro.to_json(&datum).expect("decodes")).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"id": "o1", "qty": 3, "note": "hi"})
        );
        let mut longer = datum.to_vec();
        longer.push(0);
        assert!(
            avro.to_json(&longer)
                .expect_err("leftover")
                .contains("1 bytes left")
        );
        assert!(avro.to_json(&datum[..3]).is_err());
    }

    #[test]
    fn json_written_as_avro_reads_back() {
        let avro = order();
        let mut datum = Vec::new();
        avro.write_json(serde_json::json!({"id": "o1", "qty": 3}), &mut datum)
            .expect("fits");
        assert_eq!(datum, [4, b'o', b'1', 6, 0], "the note's default: null");
        let back: serde_json::Value =
            serde_json::from_slice(&avro.to_json(&datum).expect("decodes")).expect("json");
        assert_eq!(back["note"], serde_json::Value::Null);
        let misfit = avro
            .write_json(serde_json::json!({"id": 1, "qty": 3}), &mut Vec::new())
            .expect_err("a number for a string");
        assert!(!misfit.is_empty());
    }
}
