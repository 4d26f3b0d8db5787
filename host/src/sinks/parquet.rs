//! Parquet for the S3 sink: JSON outputs into one file, through Arrow.

use std::sync::Arc;

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
    let mut values = Vec::with_capacity(payloads.len());
    for (i, payload) in payloads.iter().enumerate() {
        match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(value @ serde_json::Value::Object(_)) => values.push(value),
            Ok(_) => return Err(ParquetWriteError::NotAnObject(i)),
            Err(e) => return Err(ParquetWriteError::NotJson(i, e)),
        }
    }
    let schema =
        arrow_json::reader::infer_json_schema_from_iterator(values.iter().map(|v| Ok(v.clone())))?;
    let schema = Arc::new(schema);
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone()).build_decoder()?;
    decoder.serialize(&values)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(properties))?;
    while let Some(batch) = decoder.flush()? {
        writer.write(&batch)?;
    }
    Ok(writer.into_inner()?)
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
        assert!(err.to_string().contains("output 1"), "{err}");
    }
}
