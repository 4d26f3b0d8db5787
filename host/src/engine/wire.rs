//! Packing records into the WIT batch encoding and unpacking the plugin's answer.
//!
//! See the header of `wit/plugin.wit`: one byte buffer per batch plus tables of spans,
//! so crossing into the sandbox costs three copies per batch instead of several per record.

use bytes::Bytes;

use super::bindings::pipeline::plugin::types::{
    Attribute, Error as WireError, InputBatch, InputRecord, OutputBatch, Range, RecordResult, Span,
};
use crate::record::{Output, Record};

/// Reusable buffers for packing input batches (no allocation per batch once warm).
pub(crate) struct Packer {
    batch: InputBatch,
    /// Attribute names already written in this batch (names repeat on every record).
    names: Vec<(String, Span)>,
}

impl Default for Packer {
    fn default() -> Self {
        let batch = InputBatch {
            bytes: Vec::new(),
            records: Vec::new(),
            attributes: Vec::new(),
        };
        Self {
            batch,
            names: Vec::new(),
        }
    }
}

/// A batch that does not fit the encoding's 32-bit offsets.
#[derive(Debug, thiserror::Error)]
#[error("batch of {bytes} bytes is too large for one call (the limit is 4 GiB)")]
pub(crate) struct BatchTooLarge {
    bytes: usize,
}

impl Packer {
    /// Packs `records` into the reusable batch and returns it.
    pub(crate) fn pack<'r>(
        &mut self,
        records: impl Iterator<Item = &'r Record>,
    ) -> Result<&InputBatch, BatchTooLarge> {
        let batch = &mut self.batch;
        batch.bytes.clear();
        batch.records.clear();
        batch.attributes.clear();
        self.names.clear();
        for record in records {
            let key = record.key.as_ref().map(|k| push(&mut batch.bytes, k));
            let payload = push(&mut batch.bytes, &record.payload);
            let start = batch.attributes.len() as u32;
            for (name, value) in &record.attributes {
                let name = match self.names.iter().find(|(n, _)| n == name) {
                    Some((_, span)) => *span,
                    None => {
                        let span = push(&mut batch.bytes, name.as_bytes());
                        self.names.push((name.clone(), span));
                        span
                    }
                };
                let value = push(&mut batch.bytes, value.as_bytes());
                batch.attributes.push(Attribute { name, value });
            }
            let count = batch.attributes.len() as u32 - start;
            batch.records.push(InputRecord {
                key,
                payload,
                attributes: Range { start, count },
            });
        }
        if batch.bytes.len() > u32::MAX as usize {
            return Err(BatchTooLarge {
                bytes: batch.bytes.len(),
            });
        }
        Ok(&self.batch)
    }
}

fn push(bytes: &mut Vec<u8>, data: &[u8]) -> Span {
    let offset = bytes.len() as u32;
    bytes.extend_from_slice(data);
    Span {
        offset,
        len: data.len() as u32,
    }
}

/// One record's result as the plugin reported it.
#[derive(Debug)]
pub(crate) enum PluginResult {
    Ok(Vec<Output>),
    Domain(String),
    Infrastructure(String),
    OutputTooLarge { bytes: usize },
}

/// The plugin's answer broke the contract; the whole call counts as failed.
#[derive(Debug, thiserror::Error)]
#[error("plugin broke the batch contract: {0}")]
pub(crate) struct ContractViolation(String);

/// Unpacks an output batch for `expected` input records, checking every span.
pub(crate) fn unpack(
    batch: OutputBatch,
    expected: usize,
    max_output_bytes: usize,
) -> Result<Vec<PluginResult>, ContractViolation> {
    if batch.results.len() != expected {
        return Err(ContractViolation(format!(
            "{} results for {expected} records",
            batch.results.len()
        )));
    }
    let bytes = Bytes::from(batch.bytes);
    let slice = |span: Span| -> Result<Bytes, ContractViolation> {
        let start = span.offset as usize;
        let end = start + span.len as usize;
        if end > bytes.len() {
            return Err(ContractViolation(format!(
                "span {start}..{end} outside {} bytes",
                bytes.len()
            )));
        }
        Ok(bytes.slice(start..end))
    };
    let text = |span: Span| -> Result<String, ContractViolation> {
        String::from_utf8(slice(span)?.to_vec())
            .map_err(|_| ContractViolation("a destination or attribute is not UTF-8".into()))
    };
    let range =
        |r: Range, len: usize, what: &str| -> Result<std::ops::Range<usize>, ContractViolation> {
            let (start, end) = (r.start as usize, r.start as usize + r.count as usize);
            if end > len {
                return Err(ContractViolation(format!(
                    "{what} range {start}..{end} outside {len} entries"
                )));
            }
            Ok(start..end)
        };
    let mut results = Vec::with_capacity(expected);
    for result in batch.results {
        let entry = match result {
            RecordResult::Failed(WireError::Domain(m)) => PluginResult::Domain(m),
            RecordResult::Failed(WireError::Infrastructure(m)) => PluginResult::Infrastructure(m),
            RecordResult::Ok(outputs) => {
                let mut unpacked = Vec::with_capacity(outputs.count as usize);
                let mut too_large = None;
                for entry in &batch.outputs[range(outputs, batch.outputs.len(), "output")?] {
                    if entry.payload.len as usize > max_output_bytes {
                        too_large = Some(entry.payload.len as usize);
                    }
                    let mut attributes = Vec::with_capacity(entry.attributes.count as usize);
                    for a in &batch.attributes
                        [range(entry.attributes, batch.attributes.len(), "attribute")?]
                    {
                        attributes.push((text(a.name)?, text(a.value)?));
                    }
                    unpacked.push(Output {
                        payload: slice(entry.payload)?,
                        key: entry.key.map(&slice).transpose()?,
                        destination: entry.destination.map(&text).transpose()?,
                        attributes,
                    });
                }
                match too_large {
                    Some(bytes) => PluginResult::OutputTooLarge { bytes },
                    None => PluginResult::Ok(unpacked),
                }
            }
        };
        results.push(entry);
    }
    Ok(results)
}
