//! Parquet for the S3 source: rows out of a file as JSON objects, a batch at a time,
//! through Arrow.

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A Parquet file that cannot be read as rows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParquetReadError {
    /// Not a Parquet file, or a damaged one.
    #[error("not a readable Parquet file: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A row group could not be turned into JSON.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// Reads a Parquet file (any seekable source) as JSON objects, `batch_size` rows at a time.
pub fn json_rows<R: parquet::file::reader::ChunkReader + 'static>(
    file: R,
    batch_size: usize,
) -> Result<impl Iterator<Item = Result<Vec<Vec<u8>>, ParquetReadError>>, ParquetReadError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(batch_size)
        .build()?;
    Ok(reader.map(|batch| {
        let batch = batch?;
        let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
        writer.write(&batch)?;
        writer.finish()?;
        let text = writer.into_inner();
        Ok(text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect())
    }))
}

/// A Parquet file in memory, for tests and small objects.
pub fn rows_of(bytes: Vec<u8>, batch_size: usize) -> Result<Vec<Vec<u8>>, ParquetReadError> {
    let mut rows = Vec::new();
    for batch in json_rows(bytes::Bytes::from(bytes), batch_size)? {
        rows.extend(batch?);
    }
    Ok(rows)
}
