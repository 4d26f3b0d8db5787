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
    Attribute, Error as WireError, InputBatch, OutputBatch, OutputRecord, PluginInfo, Range,
    RecordResult, Span,
};

/// The bytes of `span`, or `None` if the host sent a span outside the buffer.
pub(crate) fn slice(bytes: &[u8], span: Span) -> Option<&[u8]> {
    let start = span.offset as usize;
    bytes.get(start..start.checked_add(span.len as usize)?)
}

/// The UTF-8 text of `span`, or `None` if it is out of bounds or not UTF-8.
pub(crate) fn text(bytes: &[u8], span: Span) -> Option<&str> {
    std::str::from_utf8(slice(bytes, span)?).ok()
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
                outputs: Vec::with_capacity(records),
                attributes: Vec::new(),
                results: Vec::with_capacity(records),
            },
        }
    }

    fn push_bytes(&mut self, data: &[u8]) -> Span {
        let offset = self.batch.bytes.len() as u32;
        self.batch.bytes.extend_from_slice(data);
        Span {
            offset,
            len: data.len() as u32,
        }
    }

    fn push_output(&mut self, output: Output) {
        let payload = self.push_bytes(output.payload());
        let key = output.key().map(|k| self.push_bytes(k));
        let destination = output.destination().map(|d| self.push_bytes(d.as_bytes()));
        let start = self.batch.attributes.len() as u32;
        for (name, value) in output.attributes() {
            let name = self.push_bytes(name.as_bytes());
            let value = self.push_bytes(value.as_bytes());
            self.batch.attributes.push(Attribute { name, value });
        }
        let count = self.batch.attributes.len() as u32 - start;
        self.batch.outputs.push(OutputRecord {
            payload,
            key,
            destination,
            attributes: Range { start, count },
        });
    }

    /// Records the result of the next input record.
    pub(crate) fn push_result(&mut self, result: Result<impl crate::IntoOutputs, Error>) {
        let entry = match result {
            Ok(outputs) => {
                let start = self.batch.outputs.len() as u32;
                outputs.for_each_output(|o| self.push_output(o));
                RecordResult::Ok(Range {
                    start,
                    count: self.batch.outputs.len() as u32 - start,
                })
            }
            Err(e) => RecordResult::Failed(e.into()),
        };
        self.batch.results.push(entry);
    }

    pub(crate) fn finish(self) -> OutputBatch {
        self.batch
    }
}
