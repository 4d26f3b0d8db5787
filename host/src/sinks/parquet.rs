//! Parquet for the S3 sink: JSON outputs into one file, through Arrow. The columns are
//! the destination's declared schema's (Avro or JSON Schema, mapped to Arrow types), or
//! without one, inferred from the outputs.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};

use crate::schemas::DeclaredSchema;

use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// Outputs that cannot become one Parquet file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParquetWriteError {
    /// An output is JSON, but not an object (a row needs named columns).
    #[error("output {0} is JSON but not an object")]
    NotAnObject(usize),
    /// An output is not JSON.
    #[error("output {0} is not JSON: {1}")]
    NotJson(usize, serde_json::Error),
    /// Arrow could not infer a schema or convert the rows.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The Parquet writer failed.
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// A Parquet file (Snappy pages) holding `payloads`, each a JSON object; the schema is
/// inferred from all of them. A payload that is not a JSON object is an error.
pub fn from_json_payloads(payloads: &[&[u8]]) -> Result<Vec<u8>, ParquetWriteError> {
    let values = objects(payloads)?;
    let schema =
        arrow_json::reader::infer_json_schema_from_iterator(values.iter().map(|v| Ok(v.clone())))?;
    write(Arc::new(schema), &values)
}

/// Payloads that do not fit the columns: each one's index, and why.
pub type Misfits = Vec<(usize, String)>;

/// A destination's Parquet columns, from its declared schema.
#[derive(Debug)]
pub struct Columns {
    arrow: Arc<Schema>,
    /// The declared Avro schema: each output is read with it first, so a field it leaves
    /// out takes its default, as it would written as Avro.
    avro: Option<apache_avro::Schema>,
}

impl Columns {
    /// The Arrow schema of the file.
    pub fn arrow(&self) -> &Arc<Schema> {
        &self.arrow
    }

    /// `payload` as a row of these columns (JSON; with an Avro schema, its defaults
    /// filled in and its unions unwrapped); the error says why it is not one.
    fn row(&self, payload: &[u8]) -> Result<serde_json::Value, String> {
        let value = match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(value @ serde_json::Value::Object(_)) => value,
            Ok(_) => return Err("is JSON but not an object (a row)".into()),
            Err(e) => return Err(format!("is not JSON: {e}")),
        };
        let Some(schema) = &self.avro else {
            return Ok(value);
        };
        let avro = apache_avro::types::Value::try_from(value)
            .map_err(|e| format!("has no Avro form: {e}"))?
            .resolve(schema)
            .map_err(|e| format!("does not fit the declared schema: {e}"))?;
        serde_json::Value::try_from(avro).map_err(|e| format!("has no JSON form: {e}"))
    }
}

/// A Parquet file of `payloads` in `columns` (see [`columns_of`]), and the payloads that
/// do not fit them, by index and why (left out of the file).
pub fn typed(
    columns: &Columns,
    payloads: &[&[u8]],
) -> Result<(Vec<u8>, Misfits), ParquetWriteError> {
    let schema = &columns.arrow;
    let mut fitting = Vec::with_capacity(payloads.len());
    let mut refused = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        match columns.row(payload) {
            Ok(row) => fitting.push((i, row)),
            Err(why) => refused.push((i, why)),
        }
    }
    let rows = |fitting: &[(usize, serde_json::Value)]| {
        fitting.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()
    };
    // One pass for the usual case; only when it fails is each row tried alone, to
    // refuse those that do not fit and keep the rest.
    if decode(schema, &rows(&fitting)).is_err() {
        fitting.retain(
            |(i, value)| match decode(schema, std::slice::from_ref(value)) {
                Ok(_) => true,
                Err(e) => {
                    refused.push((*i, format!("does not fit the Parquet columns: {e}")));
                    false
                }
            },
        );
    }
    refused.sort_unstable_by_key(|(i, _)| *i);
    Ok((write(schema.clone(), &rows(&fitting))?, refused))
}

/// Each payload as a JSON object.
fn objects(payloads: &[&[u8]]) -> Result<Vec<serde_json::Value>, ParquetWriteError> {
    let mut values = Vec::with_capacity(payloads.len());
    for (i, payload) in payloads.iter().enumerate() {
        match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(value @ serde_json::Value::Object(_)) => values.push(value),
            Ok(_) => return Err(ParquetWriteError::NotAnObject(i)),
            Err(e) => return Err(ParquetWriteError::NotJson(i, e)),
        }
    }
    Ok(values)
}

/// `values` as Arrow record batches of `schema`.
fn decode(
    schema: &Arc<Schema>,
    values: &[serde_json::Value],
) -> Result<Vec<arrow_array::RecordBatch>, arrow_schema::ArrowError> {
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone()).build_decoder()?;
    decoder.serialize(values)?;
    let mut batches = Vec::new();
    while let Some(batch) = decoder.flush()? {
        batches.push(batch);
    }
    Ok(batches)
}

fn write(schema: Arc<Schema>, values: &[serde_json::Value]) -> Result<Vec<u8>, ParquetWriteError> {
    let batches = decode(&schema, values)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(properties))?;
    for batch in &batches {
        writer.write(batch)?;
    }
    Ok(writer.into_inner()?)
}

/// Named Avro types nested this deep are refused (a recursive type never ends).
const MAX_DEPTH: usize = 32;

/// The Parquet columns a declared schema gives: an Avro record's fields, or a JSON
/// Schema object's properties, mapped to Arrow types. The error names the field whose
/// type has no column.
pub fn columns_of(declared: &DeclaredSchema) -> Result<Columns, String> {
    let mut avro = None;
    let fields = match declared.format.as_str() {
        "avro" => {
            let schema = apache_avro::Schema::parse_str(&declared.definition)
                .map_err(|e| format!("not an Avro schema: {e}"))?;
            let mut named = std::collections::HashMap::new();
            let fields = match avro_type(&schema, &mut named, 0, "")? {
                (DataType::Struct(fields), _) => fields,
                _ => return Err("the Avro schema is not a record: no columns".into()),
            };
            avro = Some(schema);
            fields
        }
        "json" => {
            let schema: serde_json::Value = serde_json::from_str(&declared.definition)
                .map_err(|e| format!("a JSON Schema that is not JSON: {e}"))?;
            match json_type(&schema, 0, "")? {
                (DataType::Struct(fields), _) => fields,
                _ => {
                    return Err(
                        "the JSON Schema is not an object with properties: no columns".into(),
                    );
                }
            }
        }
        other => return Err(format!("schema format {other:?}")),
    };
    Ok(Columns {
        arrow: Arc::new(Schema::new(fields)),
        avro,
    })
}

/// An Avro type's Arrow type, and whether it may be null.
fn avro_type(
    schema: &apache_avro::Schema,
    named: &mut std::collections::HashMap<apache_avro::schema::Name, apache_avro::Schema>,
    depth: usize,
    path: &str,
) -> Result<(DataType, bool), String> {
    use apache_avro::Schema as A;
    if depth > MAX_DEPTH {
        return Err(format!(
            "`{path}` nests past {MAX_DEPTH} levels (a recursive type?)"
        ));
    }
    let data_type = match schema {
        A::Null => return Ok((DataType::Null, true)),
        A::Boolean => DataType::Boolean,
        A::Int => DataType::Int32,
        A::Long => DataType::Int64,
        A::Float => DataType::Float32,
        A::Double => DataType::Float64,
        A::String | A::Uuid(_) => DataType::Utf8,
        A::Enum(e) => {
            named.insert(e.name.clone(), schema.clone());
            DataType::Utf8
        }
        A::Date => DataType::Date32,
        A::TimeMillis => DataType::Time32(TimeUnit::Millisecond),
        A::TimeMicros => DataType::Time64(TimeUnit::Microsecond),
        A::TimestampMillis => DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
        A::TimestampMicros => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        A::TimestampNanos => DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
        A::LocalTimestampMillis => DataType::Timestamp(TimeUnit::Millisecond, None),
        A::LocalTimestampMicros => DataType::Timestamp(TimeUnit::Microsecond, None),
        A::LocalTimestampNanos => DataType::Timestamp(TimeUnit::Nanosecond, None),
        A::Array(array) => {
            let (item, nullable) = avro_type(&array.items, named, depth + 1, &format!("{path}[]"))?;
            DataType::List(Arc::new(Field::new("item", item, nullable)))
        }
        A::Map(map) => {
            let (value, nullable) =
                avro_type(&map.types, named, depth + 1, &format!("{path}{{}}"))?;
            let entries = Fields::from(vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", value, nullable),
            ]);
            DataType::Map(
                Arc::new(Field::new("entries", DataType::Struct(entries), false)),
                false,
            )
        }
        A::Union(union) => {
            let variants = union.variants();
            let others: Vec<_> = variants.iter().filter(|v| !matches!(v, A::Null)).collect();
            return match others.as_slice() {
                [one] => {
                    let (data_type, _) = avro_type(one, named, depth + 1, path)?;
                    Ok((data_type, others.len() < variants.len()))
                }
                _ => Err(format!(
                    "`{path}` is a union of {} types: a Parquet column has one (a union with null is a nullable column)",
                    others.len()
                )),
            };
        }
        A::Record(record) => {
            named.insert(record.name.clone(), schema.clone());
            let mut fields = Vec::with_capacity(record.fields.len());
            for field in &record.fields {
                let at = if path.is_empty() {
                    field.name.clone()
                } else {
                    format!("{path}.{}", field.name)
                };
                let (data_type, nullable) = avro_type(&field.schema, named, depth + 1, &at)?;
                fields.push(Field::new(&field.name, data_type, nullable));
            }
            DataType::Struct(Fields::from(fields))
        }
        A::Ref { name } => {
            let target = named
                .get(name)
                .cloned()
                .ok_or_else(|| format!("`{path}` names {name}, which is not defined before it"))?;
            return avro_type(&target, named, depth + 1, path);
        }
        A::Bytes | A::Fixed(_) | A::Decimal(_) | A::BigDecimal | A::Duration(_) => {
            return Err(format!(
                "`{path}` is {schema:?}-typed: bytes have no JSON form a Parquet column takes (declare a string)"
            ));
        }
    };
    Ok((data_type, false))
}

/// A JSON Schema type's Arrow type, and whether it may be null.
fn json_type(
    schema: &serde_json::Value,
    depth: usize,
    path: &str,
) -> Result<(DataType, bool), String> {
    if depth > MAX_DEPTH {
        return Err(format!("`{path}` nests past {MAX_DEPTH} levels"));
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(serde_json::Value::String(t)) => vec![t.as_str()],
        Some(serde_json::Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str()).collect(),
        _ => {
            return Err(format!(
                "`{path}` has no `type` (or uses $ref, oneOf, anyOf): a Parquet column needs one type"
            ));
        }
    };
    let nullable = types.contains(&"null");
    let others: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
    let [one] = others.as_slice() else {
        return Err(format!(
            "`{path}` may be any of {others:?}: a Parquet column has one type"
        ));
    };
    let data_type = match *one {
        "string" => DataType::Utf8,
        "integer" => DataType::Int64,
        "number" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "array" => {
            let items = schema
                .get("items")
                .ok_or_else(|| format!("`{path}` is an array without `items`"))?;
            let (item, nullable) = json_type(items, depth + 1, &format!("{path}[]"))?;
            DataType::List(Arc::new(Field::new("item", item, nullable)))
        }
        "object" => {
            let properties = schema
                .get("properties")
                .and_then(|p| p.as_object())
                .ok_or_else(|| format!("`{path}` is an object without `properties`"))?;
            let required: Vec<&str> = schema
                .get("required")
                .and_then(|r| r.as_array())
                .map(|r| r.iter().filter_map(|n| n.as_str()).collect())
                .unwrap_or_default();
            let mut fields = Vec::with_capacity(properties.len());
            for (name, property) in properties {
                let at = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                let (data_type, nullable) = json_type(property, depth + 1, &at)?;
                let optional = nullable || !required.contains(&name.as_str());
                fields.push(Field::new(name, data_type, optional));
            }
            DataType::Struct(Fields::from(fields))
        }
        other => return Err(format!("`{path}` is of type {other:?}")),
    };
    Ok((data_type, nullable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_outputs_round_trip_through_parquet() {
        let payloads: Vec<&[u8]> =
            vec![br#"{"id":"a","n":1}"#, br#"{"id":"b","n":2,"extra":true}"#];
        let file = from_json_payloads(&payloads).expect("parquet");
        assert_eq!(&file[..4], b"PAR1");
        let rows = crate::sources::parquet::rows_of(file, 10).expect("rows");
        assert_eq!(rows.len(), 2);
        let second: serde_json::Value = serde_json::from_slice(&rows[1]).expect("json");
        assert_eq!(
            second,
            serde_json::json!({"id": "b", "n": 2, "extra": true})
        );
    }

    #[test]
    fn declared_columns_type_the_file_and_an_output_that_does_not_fit_is_refused_alone() {
        let declared = DeclaredSchema {
            format: "avro".into(),
            definition: r#"{"type":"record","name":"Out","fields":[
                {"name":"id","type":"string"},
                {"name":"cents","type":"long"},
                {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"tags","type":{"type":"array","items":"string"}},
                {"name":"note","type":["null","string"],"default":null},
                {"name":"qty","type":"int","default":1}]}"#
                .into(),
        };
        let columns = columns_of(&declared).expect("columns");
        let arrow = columns.arrow();
        assert_eq!(arrow.field(1).data_type(), &DataType::Int64);
        assert!(arrow.field(4).is_nullable() && !arrow.field(0).is_nullable());
        let payloads: Vec<&[u8]> = vec![
            br#"{"id":"a","cents":1,"at":1700000000000,"tags":["x"]}"#,
            br#"{"cents":2,"at":0,"tags":[]}"#,
            br#"{"id":"c","cents":3,"at":0,"tags":[],"note":"n","qty":5}"#,
            b"[1]",
        ];
        let (file, refused) = typed(&columns, &payloads).expect("parquet");
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert_eq!(refused[0].0, 1, "the one without an id");
        assert_eq!(
            refused[1],
            (3, "is JSON but not an object (a row)".to_owned())
        );
        let rows = crate::sources::parquet::rows_of(file, 10).expect("rows");
        assert_eq!(rows.len(), 2);
        let first: serde_json::Value = serde_json::from_slice(&rows[0]).expect("json");
        assert_eq!(first["cents"], 1);
        assert_eq!(first["qty"], 1, "a field left out takes its default");
        let second: serde_json::Value = serde_json::from_slice(&rows[1]).expect("json");
        assert_eq!(second["qty"], 5);
        // Even when every row is written, the types are the schema's, not guessed.
        let (whole, refused) = typed(&columns, &payloads[2..3]).expect("parquet");
        assert!(refused.is_empty());
        let reader = parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(whole))
            .expect("reader");
        use parquet::file::reader::FileReader as _;
        let text = format!("{:?}", reader.metadata().file_metadata().schema());
        assert!(
            text.contains("TIMESTAMP") || text.contains("Timestamp"),
            "{text}"
        );
    }

    #[test]
    fn json_schema_columns_follow_required_and_types_without_one_are_named() {
        let declared = DeclaredSchema {
            format: "json".into(),
            definition: r#"{"type":"object","required":["id"],"properties":{"id":{"type":"string"},"n":{"type":["integer","null"]},"tags":{"type":"array","items":{"type":"string"}}}}"#.into(),
        };
        let columns = columns_of(&declared).expect("columns");
        let arrow = columns.arrow();
        assert!(!arrow.field_with_name("id").expect("id").is_nullable());
        assert!(arrow.field_with_name("n").expect("n").is_nullable());
        let mixed = DeclaredSchema {
            format: "json".into(),
            definition: r#"{"type":"object","properties":{"v":{"type":["string","integer"]}}}"#
                .into(),
        };
        assert!(columns_of(&mixed).expect_err("mixed").contains("`v`"));
        let union = DeclaredSchema {
            format: "avro".into(),
            definition:
                r#"{"type":"record","name":"R","fields":[{"name":"u","type":["int","string"]}]}"#
                    .into(),
        };
        assert!(columns_of(&union).expect_err("union").contains("`u`"));
    }

    #[test]
    fn a_non_object_output_is_named() {
        let err = from_json_payloads(&[b"{}", b"[1]"]).expect_err("array");
        assert!(err.to_string().contains("output 1"), "{err}");
    }
}
