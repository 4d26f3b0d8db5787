//! The packed batch encoding of `wit/plugin.wit`: bindings, span helpers, and the
//! builder that packs a plugin's answer into one buffer.

use crate::error::Error;
use crate::output::Output;

#[allow(missing_docs, clippy::all, unsafe_op_in_unsafe_fn)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "transform",
        pub_export_macro: true,
        export_macro_name: "__export_transform_world",
        default_bindings_module: "::guest_sdk::__private::bindings",
        runtime_path: "::guest_sdk::__private::wit_bindgen::rt",
    });
}

pub use bindings::pipeline::plugin::types::{
    Error as WireError, InputBatch, OutputBatch, PluginInfo, RecordFailure,
};

pub(crate) use wire_layout::{ATTRIBUTE_WORDS, NONE, OUTPUT_WORDS, RECORD_WORDS, RESULT_WORDS};

/// The bytes at `offset..offset + len`, or `None` if the span is outside `bytes`.
pub(crate) fn slice(bytes: &[u8], offset: u32, len: u32) -> Option<&[u8]> {
    let start = offset as usize;
    bytes.get(start..start.checked_add(len as usize)?)
}

/// The UTF-8 text of a span, or `None` if it is out of bounds or not UTF-8.
pub(crate) fn text(bytes: &[u8], offset: u32, len: u32) -> Option<&str> {
    std::str::from_utf8(slice(bytes, offset, len)?).ok()
}

impl From<Error> for WireError {
    fn from(e: Error) -> Self {
        match e {
            Error::Domain(e) => WireError::Domain(e.message().to_owned()),
            Error::Infrastructure(e) => WireError::Infrastructure(e.message().to_owned()),
        }
    }
}

/// Appends `data` to `out`. Slices of up to 16 bytes are copied as two overlapping
/// words (or single bytes), inline: a copy of a length the compiler cannot see becomes
/// wasm's `memory.copy`, which the host's compiler turns into a call out of the sandbox
/// and into `memmove`, dear for the few bytes of a field name or a key.
#[inline]
pub(crate) fn append(out: &mut Vec<u8>, data: &[u8]) {
    let n = data.len();
    if n > 16 {
        out.extend_from_slice(data);
        return;
    }
    out.reserve(n);
    let len = out.len();
    let src = data.as_ptr();
    // SAFETY: `reserve` made room for `n` more bytes after `len`; every read below is
    // within `data` (its length is checked by each arm) and every write within
    // `len..len + n`, and all of `len..len + n` is written before `set_len`.
    unsafe {
        let dst = out.as_mut_ptr().add(len);
        match n {
            8..=16 => {
                let (head, tail) = (
                    src.cast::<u64>().read_unaligned(),
                    src.add(n - 8).cast::<u64>().read_unaligned(),
                );
                dst.cast::<u64>().write_unaligned(head);
                dst.add(n - 8).cast::<u64>().write_unaligned(tail);
            }
            4..=7 => {
                let (head, tail) = (
                    src.cast::<u32>().read_unaligned(),
                    src.add(n - 4).cast::<u32>().read_unaligned(),
                );
                dst.cast::<u32>().write_unaligned(head);
                dst.add(n - 4).cast::<u32>().write_unaligned(tail);
            }
            1..=3 => {
                *dst = *src;
                *dst.add(n / 2) = *src.add(n / 2);
                *dst.add(n - 1) = *src.add(n - 1);
            }
            _ => {}
        }
        out.set_len(len + n);
    }
}

/// Packs outputs and per-record results into one [`OutputBatch`].
pub(crate) struct OutputBuilder {
    batch: OutputBatch,
}

impl OutputBuilder {
    /// A builder sized for an input batch of `records` records of `bytes` bytes in all.
    pub(crate) fn with_capacity(records: usize, bytes: usize) -> Self {
        Self {
            batch: OutputBatch {
                bytes: Vec::with_capacity(bytes + bytes / 4),
                outputs: Vec::with_capacity(records * OUTPUT_WORDS),
                attributes: Vec::new(),
                results: Vec::with_capacity(records * RESULT_WORDS),
                failures: Vec::new(),
            },
        }
    }

    fn push_bytes(&mut self, data: &[u8]) -> [u32; 2] {
        let offset = self.batch.bytes.len() as u32;
        append(&mut self.batch.bytes, data);
        [offset, data.len() as u32]
    }

    fn push_optional(&mut self, data: Option<&[u8]>) -> [u32; 2] {
        data.map_or([NONE, 0], |d| self.push_bytes(d))
    }

    fn push_output(&mut self, output: Output) {
        let [payload_offset, payload_len] = self.push_bytes(output.payload());
        let [key_offset, key_len] = self.push_optional(output.key());
        let [dest_offset, dest_len] = self.push_optional(output.destination().map(str::as_bytes));
        let first = (self.batch.attributes.len() / ATTRIBUTE_WORDS) as u32;
        for (name, value) in output.attributes() {
            let name = self.push_bytes(name.as_bytes());
            let value = self.push_bytes(value.as_bytes());
            self.batch
                .attributes
                .extend_from_slice(&[name[0], name[1], value[0], value[1]]);
        }
        let count = output.attributes().len() as u32;
        self.batch.outputs.extend_from_slice(&[
            payload_offset,
            payload_len,
            key_offset,
            key_len,
            dest_offset,
            dest_len,
            first,
            count,
        ]);
    }

    /// Records the result of the next input record.
    pub(crate) fn push_result(&mut self, result: Result<impl crate::IntoOutputs, Error>) {
        let first = (self.batch.outputs.len() / OUTPUT_WORDS) as u32;
        match result {
            Ok(outputs) => outputs.for_each_output(|o| self.push_output(o)),
            Err(e) => {
                let record = (self.batch.results.len() / RESULT_WORDS) as u32;
                self.batch.failures.push(RecordFailure {
                    index: record,
                    error: e.into(),
                });
            }
        }
        let count = (self.batch.outputs.len() / OUTPUT_WORDS) as u32 - first;
        self.batch.results.extend_from_slice(&[first, count]);
    }

    pub(crate) fn finish(self) -> OutputBatch {
        self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::append;

    #[test]
    fn append_matches_extend_from_slice_at_every_length() {
        let data: Vec<u8> = (0..40u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        for before in 0..20 {
            for len in 0..=data.len() {
                for start in [0, 1, 3] {
                    let piece = &data[start..(start + len).min(data.len())];
                    let mut expected: Vec<u8> = vec![0xEE; before];
                    let mut got = Vec::with_capacity(before);
                    got.extend_from_slice(&expected);
                    expected.extend_from_slice(piece);
                    append(&mut got, piece);
                    assert_eq!(
                        got,
                        expected,
                        "{before} bytes before, {} appended",
                        piece.len()
                    );
                }
            }
        }
    }
}
