//! Parquet for the S3 source: rows out of a file as JSON objects, a batch at a time,
//! through Arrow.

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Reads a Parquet file (any seekable source) as JSON objects, `batch_size` rows at a time.
pub fn json_rows<R: parquet::file::reader::ChunkReader + 'static>(
    file: R,
    batch_size: usize,
) -> Result<impl Iterator<Item = Result<Vec<Vec<u8>>, String>>, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("not a readable Parquet file: {e}"))?
        .with_batch_size(batch_size)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(reader.map(|batch| {
        let batch = batch.map_err(|e| e.to_string())?;
        let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
        writer.write(&batch).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
        let text = writer.into_inner();
        Ok(text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect())
    }))
}

/// A Parquet file in memory, for tests and small objects.
pub fn rows_of(bytes: Vec<u8>, batch_size: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut rows = Vec::new();
    for batch in json_rows(bytes::Bytes::from(bytes), batch_size)? {
        rows.extend(batch?);
    }
    Ok(rows)
}

