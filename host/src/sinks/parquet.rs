//! Parquet for the S3 sink: JSON outputs into one file, through Arrow.

use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// A Parquet file (Snappy pages) holding `payloads`, each a JSON object; the schema is
/// inferred from all of them. A payload that is not a JSON object is an error.
pub fn from_json_payloads(payloads: &[&[u8]]) -> Result<Vec<u8>, String> {
    let mut values = Vec::with_capacity(payloads.len());
    for (i, payload) in payloads.iter().enumerate() {
        match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(value @ serde_json::Value::Object(_)) => values.push(value),
            Ok(_) => return Err(format!("output {i} is JSON but not an object")),
            Err(e) => return Err(format!("output {i} is not JSON: {e}")),
        }
    }
    let schema =
        arrow_json::reader::infer_json_schema_from_iterator(values.iter().map(|v| Ok(v.clone())))
            .map_err(|e| e.to_string())?;
    let schema = Arc::new(schema);
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .build_decoder()
        .map_err(|e| e.to_string())?;
    decoder.serialize(&values).map_err(|e| e.to_string())?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer =
        ArrowWriter::try_new(Vec::new(), schema, Some(properties)).map_err(|e| e.to_string())?;
    while let Some(batch) = decoder.flush().map_err(|e| e.to_string())? {
        writer.write(&batch).map_err(|e| e.to_string())?;
    }
    writer.into_inner().map_err(|e| e.to_string())
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
    fn a_non_object_output_is_named() {
        let err = from_json_payloads(&[b"{}", b"[1]"]).expect_err("array");
        assert!(err.contains("output 1"), "{err}");
    }
}
