//! The packed batch encoding of `wit/plugin.wit`: bindings, span helpers, and the
//! builder that packs a plugin's answer into one buffer.

use crate::append::append;
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
