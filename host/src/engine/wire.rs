//! Packing records into the WIT batch encoding and unpacking the plugin's answer.
//!
//! See the header of `wit/plugin.wit`: one byte buffer per batch plus flat `u32` tables,
//! so crossing into the sandbox costs a few `memcpy`s per batch, not allocations per record.

use bytes::Bytes;

use super::bindings::pipeline::plugin::types::{Error as WireError, InputBatch, OutputBatch};
use crate::record::{Output, Record};

use wire_layout::{
    ATTRIBUTE_WORDS, MAX_BATCH_BYTES, NONE, OUTPUT_WORDS, RECORD_WORDS, RESULT_WORDS,
};

/// Reusable buffers for packing input batches (no allocation per batch once warm).
pub(crate) struct Packer {
    batch: InputBatch,
    /// Attribute names already written in this batch (names repeat on every record).
    names: Vec<(String, [u32; 2])>,
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
            let [key_offset, key_len] = match &record.key {
                Some(key) => push(&mut batch.bytes, key),
                None => [NONE, 0],
            };
            let [payload_offset, payload_len] = push(&mut batch.bytes, &record.payload);
            let first = (batch.attributes.len() / ATTRIBUTE_WORDS) as u32;
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
                batch
                    .attributes
                    .extend_from_slice(&[name[0], name[1], value[0], value[1]]);
            }
            let count = record.attributes.len() as u32;
            let words: [u32; RECORD_WORDS] = [
                key_offset,
                key_len,
                payload_offset,
                payload_len,
                first,
                count,
            ];
            batch.records.extend_from_slice(&words);
        }
        if batch.bytes.len() >= MAX_BATCH_BYTES {
            return Err(BatchTooLarge {
                bytes: batch.bytes.len(),
            });
        }
        Ok(&self.batch)
    }
}

fn push(bytes: &mut Vec<u8>, data: &[u8]) -> [u32; 2] {
    let offset = bytes.len() as u32;
    bytes.extend_from_slice(data);
    [offset, data.len() as u32]
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

/// Reads spans and tables of one output batch, checking every bound.
struct Reader {
    bytes: Bytes,
}

impl Reader {
    fn slice(&self, offset: u32, len: u32) -> Result<Bytes, ContractViolation> {
        let (start, end) = (offset as usize, offset as usize + len as usize);
        if end > self.bytes.len() {
            return Err(ContractViolation(format!(
                "span {start}..{end} outside {} bytes",
                self.bytes.len()
            )));
        }
        Ok(self.bytes.slice(start..end))
    }

    fn optional(&self, offset: u32, len: u32) -> Result<Option<Bytes>, ContractViolation> {
        if offset == NONE {
            Ok(None)
        } else {
            self.slice(offset, len).map(Some)
        }
    }

    fn text(&self, offset: u32, len: u32) -> Result<String, ContractViolation> {
        String::from_utf8(self.slice(offset, len)?.to_vec())
            .map_err(|_| ContractViolation("a destination or attribute is not UTF-8".into()))
    }
}

/// `words[first * width .. (first + count) * width]`, checked.
fn entries<'w>(
    words: &'w [u32],
    first: u32,
    count: u32,
    width: usize,
    what: &str,
) -> Result<&'w [u32], ContractViolation> {
    let (start, end) = (
        first as usize * width,
        (first as usize + count as usize) * width,
    );
    words.get(start..end).ok_or_else(|| {
        ContractViolation(format!(
            "{what} entries {first}+{count} outside the {what} table"
        ))
    })
}

/// Unpacks an output batch for `expected` input records, checking every span.
pub(crate) fn unpack(
    batch: OutputBatch,
    expected: usize,
    max_output_bytes: usize,
) -> Result<Vec<PluginResult>, ContractViolation> {
    if batch.results.len() != expected * RESULT_WORDS {
        return Err(ContractViolation(format!(
            "{} results for {expected} records",
            batch.results.len() / RESULT_WORDS
        )));
    }
    let reader = Reader {
        bytes: Bytes::from(batch.bytes),
    };
    let mut results = Vec::with_capacity(expected);
    for result in batch.results.chunks_exact(RESULT_WORDS) {
        // Sized from the checked table slices, never from the plugin's counts.
        let output_words = entries(&batch.outputs, result[0], result[1], OUTPUT_WORDS, "output")?;
        let mut outputs = Vec::with_capacity(output_words.len() / OUTPUT_WORDS);
        let mut too_large = None;
        for o in output_words.chunks_exact(OUTPUT_WORDS) {
            if o[1] as usize > max_output_bytes {
                too_large = Some(o[1] as usize);
            }
            let attribute_words =
                entries(&batch.attributes, o[6], o[7], ATTRIBUTE_WORDS, "attribute")?;
            let mut attributes = Vec::with_capacity(attribute_words.len() / ATTRIBUTE_WORDS);
            for a in attribute_words.chunks_exact(ATTRIBUTE_WORDS) {
                attributes.push((reader.text(a[0], a[1])?, reader.text(a[2], a[3])?));
            }
            outputs.push(Output {
                payload: reader.slice(o[0], o[1])?,
                key: reader.optional(o[2], o[3])?,
                destination: reader
                    .optional(o[4], o[5])?
                    .map(|_| reader.text(o[4], o[5]))
                    .transpose()?,
                attributes,
                id: None,
            });
        }
        results.push(match too_large {
            Some(bytes) => PluginResult::OutputTooLarge { bytes },
            None => PluginResult::Ok(outputs),
        });
    }
    for failure in batch.failures {
        let slot = results.get_mut(failure.index as usize).ok_or_else(|| {
            ContractViolation(format!(
                "failure for record {} of {expected}",
                failure.index
            ))
        })?;
        *slot = match failure.error {
            WireError::Domain(message) => PluginResult::Domain(message),
            WireError::Infrastructure(message) => PluginResult::Infrastructure(message),
        };
    }
    Ok(results)
}
