//! What a transform returns for one record.

use serde::Serialize;

use crate::error::Error;

/// One output record: a payload, and optionally a key, a named destination and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    payload: Vec<u8>,
    key: Option<Vec<u8>>,
    destination: Option<String>,
    attributes: Vec<(String, String)>,
}

impl Output {
    /// An output with these payload bytes, going to the default destination.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Self {
            payload: payload.into(),
            key: None,
            destination: None,
            attributes: Vec::new(),
        }
    }

    /// An output whose payload is `value` serialized as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        // Start at a typical record's size: growing from empty costs several
        // reallocations per record, and allocation is dear inside the sandbox.
        let mut payload = Vec::with_capacity(256);
        crate::json::to_vec(&mut payload, value)?;
        Ok(Self::new(payload))
    }

    /// The same output with this key (Kinesis partition key, FIFO group, ...).
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The same output, routed to the named destination (a sink the host knows by name).
    pub fn to(mut self, destination: impl Into<String>) -> Self {
        self.destination = Some(destination.into());
        self
    }

    /// The same output with one more attribute.
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((name.into(), value.into()));
        self
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The key, if set.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The destination, if set (none: the host's default sink).
    pub fn destination(&self) -> Option<&str> {
        self.destination.as_deref()
    }

    /// The attributes, in the order they were added.
    pub fn attributes(&self) -> &[(String, String)] {
        &self.attributes
    }
}

/// What a per-record transform may return on success: one output, maybe one, or many.
/// `None`, `()` and an empty `Vec` mean "drop this record deliberately".
pub trait IntoOutputs {
    /// Calls `emit` once per output.
    fn for_each_output(self, emit: impl FnMut(Output));
}

impl IntoOutputs for Output {
    fn for_each_output(self, mut emit: impl FnMut(Output)) {
        emit(self)
    }
}

impl IntoOutputs for Option<Output> {
    fn for_each_output(self, emit: impl FnMut(Output)) {
        self.into_iter().for_each(emit)
    }
}

impl IntoOutputs for Vec<Output> {
    fn for_each_output(self, emit: impl FnMut(Output)) {
        self.into_iter().for_each(emit)
    }
}

impl IntoOutputs for () {
    fn for_each_output(self, _emit: impl FnMut(Output)) {}
}
