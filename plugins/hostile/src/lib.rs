//! Test plugin that answers with crafted batch tables, below the guest SDK, for the
//! host's decoder tests. Each record's payload says what its result claims:
//! `count` (an output count of 0xFFFF_FFFF: a 480 GB table if believed), `alias` (300
//! outputs that are all the same 1 MiB span: 300 MiB once copied into sinks), `stray`
//! (a failure for a record the batch does not have), `attrs` (one output whose 4096
//! attributes, names and values, and destination all alias one 1 MiB span: 8 GiB once
//! copied), anything else one empty output list (dropped).

use guest_sdk::__private::{InputBatch, OutputBatch, RecordFailure, WireError};
use wire_layout::{ATTRIBUTE_WORDS, NONE, OUTPUT_WORDS, RECORD_WORDS, RESULT_WORDS};

/// The payload of record `index` of `batch`, if its span is sound.
fn payload(batch: &InputBatch, index: usize) -> &[u8] {
    let words = &batch.records[index * RECORD_WORDS..(index + 1) * RECORD_WORDS];
    let (offset, len) = (words[2] as usize, words[3] as usize);
    batch.bytes.get(offset..offset + len).unwrap_or_default()
}

/// The offset of a 1 MiB span of `a`s in `bytes`, written the first time it is asked for.
fn one_mib(bytes: &mut Vec<u8>) -> u32 {
    if bytes.is_empty() {
        bytes.resize(1 << 20, b'a');
    }
    0
}

/// The crafted answer.
pub fn answer(batch: &InputBatch) -> OutputBatch {
    let records = batch.records.len() / RECORD_WORDS;
    let mut out = OutputBatch {
        bytes: Vec::new(),
        outputs: Vec::new(),
        attributes: Vec::new(),
        results: Vec::with_capacity(records * RESULT_WORDS),
        failures: Vec::new(),
    };
    for index in 0..records {
        match payload(batch, index) {
            b"count" => out.results.extend([0, u32::MAX]),
            b"alias" => {
                one_mib(&mut out.bytes);
                let first = (out.outputs.len() / OUTPUT_WORDS) as u32;
                for _ in 0..300 {
                    out.outputs.extend([0, 1 << 20, NONE, 0, NONE, 0, 0, 0]);
                }
                out.results.extend([first, 300]);
            }
            b"attrs" => {
                let span = one_mib(&mut out.bytes);
                let first = (out.attributes.len() / ATTRIBUTE_WORDS) as u32;
                for _ in 0..4096 {
                    out.attributes.extend([span, 1 << 20, span, 1 << 20]);
                }
                let output = (out.outputs.len() / OUTPUT_WORDS) as u32;
                out.outputs
                    .extend([span, 1, NONE, 0, span, 1 << 20, first, 4096]);
                out.results.extend([output, 1]);
            }
            b"stray" => {
                out.results.extend([0, 0]);
                out.failures.push(RecordFailure {
                    index: 1_000_000,
                    error: WireError::Domain("a record that is not there".into()),
                });
            }
            _ => out.results.extend([0, 0]),
        }
    }
    out
}

#[cfg(target_arch = "wasm32")]
const _: () = {
    use guest_sdk::__private::{Guest, PluginInfo, bindings};

    struct Plugin;
    impl Guest for Plugin {
        fn info() -> PluginInfo {
            guest_sdk::__private::info(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
        }
        fn init(_config: Vec<(String, String)>) -> Result<(), WireError> {
            Ok(())
        }
        fn transform(batch: InputBatch) -> OutputBatch {
            answer(&batch)
        }
    }
    bindings::__export_transform_world!(Plugin with_types_in bindings);
};
