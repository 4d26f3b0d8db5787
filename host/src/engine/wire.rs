//! Packing records into the WIT batch encoding and unpacking the plugin's answer.
//!
//! See the header of `wit/plugin.wit`: one byte buffer per batch plus flat `u32` tables,
//! so crossing into the sandbox costs a few `memcpy`s per batch, not allocations per record.

use bytes::Bytes;

use super::bindings::pipeline::plugin::types::{Error as WireError, InputBatch, OutputBatch};
use crate::record::{AttributeName, Output, Record};

use wire_layout::{
    ATTRIBUTE_WORDS, MAX_BATCH_BYTES, NONE, OUTPUT_WORDS, RECORD_WORDS, RESULT_WORDS,
};

/// Reusable buffers for packing input batches (no allocation per batch once warm).
pub(crate) struct Packer {
    batch: InputBatch,
    /// Attribute names already written in this batch (names repeat on every record).
    names: Vec<(AttributeName, [u32; 2])>,
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

/// How many attribute names a batch writes once and shares between its records.
const MAX_SHARED_NAMES: usize = 32;

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
            for (position, (name, value)) in record.attributes.iter().enumerate() {
                // Records of one source set the same names in the same order: the name
                // at this position is checked first, a search only when it differs.
                let known = match self.names.get(position) {
                    Some((n, span)) if same_name(n, name) => Some(*span),
                    _ => self
                        .names
                        .iter()
                        .find(|(n, _)| same_name(n, name))
                        .map(|(_, s)| *s),
                };
                let name = match known {
                    Some(span) => span,
                    None => {
                        let span = push(&mut batch.bytes, name.as_bytes());
                        // Bounded, so records that each bring new names (message
                        // attributes) cost a copy per name, not a search of every name.
                        if self.names.len() < MAX_SHARED_NAMES {
                            self.names.push((name.clone(), span));
                        }
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

/// `a == b`, for attribute names. The host's own names are `'static` and shared by every
/// record: the same pointer, and nothing to read (packing compares every attribute name
/// of every record, and a name read per record is a cache miss per record; measured in
/// `BENCHMARKS.md`). Other names of 4 to 16 bytes compare as two overlapping words each,
/// inline, where `==` calls `memcmp` for a few bytes.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if std::ptr::eq(a.as_ptr(), b.as_ptr()) {
        return true;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    fn ends<const N: usize>(s: &[u8]) -> Option<(&[u8; N], &[u8; N])> {
        Some((s.first_chunk::<N>()?, s.last_chunk::<N>()?))
    }
    match a.len() {
        8..=16 => ends::<8>(a) == ends::<8>(b),
        4..=7 => ends::<4>(a) == ends::<4>(b),
        _ => a == b,
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
    /// Over one of the [`OutputCaps`]: what was over, in words.
    OutputTooLarge(String),
}

/// How much output one call may return: what the host copies into the sinks, counted as
/// the sinks copy it (an output whose span aliases another's counts again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputCaps {
    /// Payload bytes of one output.
    pub(crate) output_bytes: usize,
    /// Outputs of one record.
    pub(crate) outputs_per_record: usize,
    /// Bytes of all the call's outputs: payloads, keys, destinations, attribute names
    /// and values.
    pub(crate) call_bytes: usize,
}

/// Attributes one output may carry. Every sink passes on far fewer (SQS takes 10 message
/// attributes, S3 2 KiB of metadata); each costs the host two strings, so a hostile
/// answer of thousands aliasing one span must not be copied.
pub(crate) const MAX_ATTRIBUTES_PER_OUTPUT: usize = 64;
/// Attributes all outputs of one call may carry together (each is two host strings, a
/// few dozen bytes of bookkeeping besides its bytes, whatever its length).
pub(crate) const MAX_ATTRIBUTES_PER_CALL: usize = 65_536;

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

/// What one call's outputs have taken so far, as the sinks will copy them.
#[derive(Debug, Default, Clone, Copy)]
struct Taken {
    bytes: usize,
    attributes: usize,
}

/// The bytes an output takes once a sink copies it: payload, key, destination, and its
/// attributes' names and values (`attribute_words`, its checked attribute entries).
fn copied_size(output: &[u32], attribute_words: &[u32]) -> usize {
    let optional = |offset: u32, len: u32| if offset == NONE { 0 } else { len as usize };
    let attributes: usize = attribute_words
        .chunks_exact(ATTRIBUTE_WORDS)
        .map(|a| a[1] as usize + a[3] as usize)
        .sum();
    output[1] as usize
        + optional(output[2], output[3])
        + optional(output[4], output[5])
        + attributes
}

/// Which cap a record's outputs (their table entries) pass, with `so_far` of the call's
/// earlier records taken; `None` when they fit. Its outputs' attribute entries are looked
/// up (checked) from `attribute_table`.
fn over_caps(
    output_words: &[u32],
    attribute_table: &[u32],
    caps: OutputCaps,
    so_far: Taken,
) -> Result<Option<String>, ContractViolation> {
    let count = output_words.len() / OUTPUT_WORDS;
    if count > caps.outputs_per_record {
        return Ok(Some(format!(
            "{count} outputs exceed max-outputs-per-record={}",
            caps.outputs_per_record
        )));
    }
    let largest = output_words
        .chunks_exact(OUTPUT_WORDS)
        .map(|o| o[1] as usize)
        .max()
        .unwrap_or(0);
    if largest > caps.output_bytes {
        return Ok(Some(format!(
            "an output of {largest} bytes exceeds max-output-bytes={}",
            caps.output_bytes
        )));
    }
    let mut record = Taken::default();
    for o in output_words.chunks_exact(OUTPUT_WORDS) {
        let attribute_words = entries(attribute_table, o[6], o[7], ATTRIBUTE_WORDS, "attribute")?;
        let attributes = attribute_words.len() / ATTRIBUTE_WORDS;
        if attributes > MAX_ATTRIBUTES_PER_OUTPUT {
            return Ok(Some(format!(
                "an output with {attributes} attributes exceeds the {MAX_ATTRIBUTES_PER_OUTPUT} one output may have"
            )));
        }
        record.attributes += attributes;
        record.bytes = record.bytes.saturating_add(copied_size(o, attribute_words));
    }
    if so_far.attributes + record.attributes > MAX_ATTRIBUTES_PER_CALL {
        return Ok(Some(format!(
            "this record's outputs ({} attributes) would take the call's past the {MAX_ATTRIBUTES_PER_CALL} attributes one call may return ({} before it)",
            record.attributes, so_far.attributes
        )));
    }
    if so_far.bytes.saturating_add(record.bytes) > caps.call_bytes {
        return Ok(Some(format!(
            "this record's outputs ({} bytes) would take the call's past max-call-output-bytes={} ({} bytes before it)",
            record.bytes, caps.call_bytes, so_far.bytes
        )));
    }
    Ok(None)
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

/// Unpacks an output batch for `expected` input records, checking every span. A record
/// whose outputs pass one of `caps` gets [`PluginResult::OutputTooLarge`]; the caps are
/// checked on the table entries, before any output is built.
pub(crate) fn unpack(
    batch: OutputBatch,
    expected: usize,
    caps: OutputCaps,
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
    let mut taken = Taken::default();
    for result in batch.results.chunks_exact(RESULT_WORDS) {
        // Sized from the checked table slices, never from the plugin's counts.
        let output_words = entries(&batch.outputs, result[0], result[1], OUTPUT_WORDS, "output")?;
        if let Some(over) = over_caps(output_words, &batch.attributes, caps, taken)? {
            results.push(PluginResult::OutputTooLarge(over));
            continue;
        }
        let mut outputs = Vec::with_capacity(output_words.len() / OUTPUT_WORDS);
        for o in output_words.chunks_exact(OUTPUT_WORDS) {
            let attribute_words =
                entries(&batch.attributes, o[6], o[7], ATTRIBUTE_WORDS, "attribute")?;
            taken.bytes += copied_size(o, attribute_words);
            taken.attributes += attribute_words.len() / ATTRIBUTE_WORDS;
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
        results.push(PluginResult::Ok(outputs));
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::bindings::pipeline::plugin::types::RecordFailure;
    use super::*;

    const CAPS: OutputCaps = OutputCaps {
        output_bytes: 8,
        outputs_per_record: 3,
        call_bytes: 20,
    };

    /// An output of `bytes[offset..offset + len]`, no key, destination or attributes.
    fn output(offset: u32, len: u32) -> [u32; OUTPUT_WORDS] {
        [offset, len, NONE, 0, NONE, 0, 0, 0]
    }

    fn batch(outputs: &[[u32; OUTPUT_WORDS]], results: &[[u32; 2]]) -> OutputBatch {
        OutputBatch {
            bytes: b"0123456789".to_vec(),
            outputs: outputs.iter().flatten().copied().collect(),
            attributes: Vec::new(),
            results: results.iter().flatten().copied().collect(),
            failures: Vec::new(),
        }
    }

    fn too_large(result: &PluginResult) -> &str {
        match result {
            PluginResult::OutputTooLarge(message) => message,
            other => panic!("expected output-too-large, got {other:?}"),
        }
    }

    #[test]
    fn outputs_sharing_bytes_count_each_time_toward_the_call() {
        // Three records of two outputs, every one the same 5 bytes: 10 bytes a record.
        let outputs = [output(0, 5); 6];
        let results = batch(&outputs, &[[0, 2], [2, 2], [4, 2]]);
        let unpacked = unpack(results, 3, CAPS).expect("a valid batch");
        assert!(matches!(&unpacked[0], PluginResult::Ok(o) if o.len() == 2));
        assert!(matches!(&unpacked[1], PluginResult::Ok(o) if o.len() == 2));
        let message = too_large(&unpacked[2]);
        assert!(message.contains("max-call-output-bytes=20"), "{message}");
    }

    #[test]
    fn a_record_with_too_many_or_too_large_outputs_fails_alone() {
        let outputs = [
            output(0, 1),
            output(0, 1),
            output(0, 1),
            output(0, 1),
            output(0, 9),
        ];
        let unpacked = unpack(batch(&outputs, &[[0, 4], [4, 1]]), 2, CAPS).expect("valid");
        assert!(too_large(&unpacked[0]).contains("4 outputs exceed max-outputs-per-record=3"));
        assert!(too_large(&unpacked[1]).contains("an output of 9 bytes exceeds"));
    }

    #[test]
    fn attributes_and_destinations_count_toward_the_call() {
        // One output whose destination and attribute names and values all alias the same
        // 10 bytes: 10 + 10 + 2 * 10 per attribute, counted as the sinks copy them.
        let mut answer = batch(&[[0, 0, NONE, 0, 0, 10, 0, 1]], &[[0, 1]]);
        answer.attributes = vec![0, 10, 0, 10];
        let unpacked = unpack(answer, 1, CAPS).expect("valid");
        let message = too_large(&unpacked[0]);
        assert!(message.contains("(30 bytes)"), "{message}");
        assert!(message.contains("max-call-output-bytes=20"), "{message}");
    }

    #[test]
    fn an_output_with_too_many_attributes_fails_its_record_alone() {
        let caps = OutputCaps {
            call_bytes: usize::MAX,
            ..CAPS
        };
        let many = MAX_ATTRIBUTES_PER_OUTPUT as u32 + 1;
        let mut answer = batch(
            &[[0, 1, NONE, 0, NONE, 0, 0, many], output(0, 1)],
            &[[0, 1], [1, 1]],
        );
        answer.attributes = [0, 1, 0, 1].repeat(many as usize);
        let unpacked = unpack(answer, 2, caps).expect("valid");
        let message = too_large(&unpacked[0]);
        assert!(
            message.contains("65 attributes exceeds the 64"),
            "{message}"
        );
        assert!(matches!(&unpacked[1], PluginResult::Ok(o) if o.len() == 1));
    }

    #[test]
    fn attributes_of_a_call_are_capped_across_its_records() {
        let caps = OutputCaps {
            call_bytes: usize::MAX,
            outputs_per_record: 2000,
            ..CAPS
        };
        // Records of 1,000 outputs of 64 empty attributes each (64,000 a record): the
        // second record would pass 65,536.
        let per_output = MAX_ATTRIBUTES_PER_OUTPUT as u32;
        let outputs = vec![[0, 1, NONE, 0, NONE, 0, 0, per_output]; 2000];
        let mut answer = batch(&outputs, &[[0, 1000], [1000, 1000]]);
        answer.attributes = [0, 0, 0, 0].repeat(per_output as usize);
        let unpacked = unpack(answer, 2, caps).expect("valid");
        assert!(matches!(&unpacked[0], PluginResult::Ok(o) if o.len() == 1000));
        let message = too_large(&unpacked[1]);
        assert!(
            message.contains("65536 attributes one call may return"),
            "{message}"
        );
    }

    /// Words a plugin might put in a table: small indices, lengths near the edges, and
    /// the largest values.
    fn word() -> impl Strategy<Value = u32> {
        prop_oneof![
            0u32..16,
            Just(NONE),
            Just(NONE - 1),
            Just(1 << 31),
            any::<u32>()
        ]
    }

    proptest! {
        /// The inline comparison of names agrees with `==`: every length (around the
        /// word sizes it switches at), names that differ in one byte anywhere.
        #[test]
        fn same_name_is_equality(
            name in "[ab]{0,20}",
            flip in any::<prop::sample::Index>(),
        ) {
            prop_assert!(same_name(&name, &name.clone()));
            if !name.is_empty() {
                let mut other = name.clone().into_bytes();
                let at = flip.index(other.len());
                other[at] = if other[at] == b'a' { b'b' } else { b'a' };
                let other = String::from_utf8(other).expect("ascii");
                prop_assert!(!same_name(&name, &other));
                // Two prefixes of one name: equal bytes as far as the shorter goes.
                let cut = flip.index(name.len());
                prop_assert!(!same_name(&name, &name[..cut]));
                prop_assert!(!same_name(&name[..cut], &name));
            }
        }

        /// No answer a plugin can give makes the decoder panic or allocate past what
        /// it was handed; a decoded answer always keeps the caps.
        #[test]
        fn any_answer_decodes_or_is_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..32),
            outputs in proptest::collection::vec(word(), 0..48),
            attributes in proptest::collection::vec(word(), 0..16),
            results in proptest::collection::vec(word(), 0..8),
            failures in proptest::collection::vec(word(), 0..3),
            expected in 0usize..4,
        ) {
            let answer = OutputBatch {
                bytes,
                outputs,
                attributes,
                results,
                failures: failures
                    .into_iter()
                    .map(|index| RecordFailure {
                        index,
                        error: WireError::Domain("no".into()),
                    })
                    .collect(),
            };
            if let Ok(unpacked) = unpack(answer, expected, CAPS) {
                prop_assert_eq!(unpacked.len(), expected);
                let mut call = 0;
                for result in &unpacked {
                    if let PluginResult::Ok(outputs) = result {
                        prop_assert!(outputs.len() <= CAPS.outputs_per_record);
                        for o in outputs {
                            prop_assert!(o.payload.len() <= CAPS.output_bytes);
                            prop_assert!(o.attributes.len() <= MAX_ATTRIBUTES_PER_OUTPUT);
                            call += o.payload.len()
                                + o.key.as_ref().map_or(0, |k| k.len())
                                + o.destination.as_ref().map_or(0, |d| d.len())
                                + o.attributes.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
                        }
                    }
                }
                prop_assert!(call <= CAPS.call_bytes);
            }
        }
    }
}
