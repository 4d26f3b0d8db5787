//! The boundary alone: every record's payload becomes one output, unchanged, with no
//! other work (no parsing, no checks), so the throughput bench measures only what the
//! crossing costs: packing, the copy in, the SDK, the copy out, unpacking.

use guest_sdk::{Error, Output, Record};

/// One output per record, the record's payload.
pub fn transform(record: Record) -> Result<Output, Error> {
    Ok(Output::new(record.payload()))
}

guest_sdk::export_transform!(transform);
