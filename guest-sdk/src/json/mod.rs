//! The SDK's JSON, behind [`Output::json`](crate::Output::json) and
//! [`Record::json`](crate::Record::json): serde_json's answers, faster inside the sandbox.
//!
//! serde_json walks strings one byte per loop iteration (writing) or one 4-byte wasm32
//! word (reading), and inside the sandbox every iteration is also a loop header with an
//! epoch check, the CPU deadline's cost (BENCHMARKS.md). These read and write the usual
//! shapes of a record (objects, arrays, strings, plain numbers) with strings scanned
//! eight bytes at a time, and hand anything else back to serde_json:
//! - `write`: a value serde_json's writer would write differently or refuse (a map key
//!   that is not a string, serde_json's private types) is written again by serde_json;
//!   numbers and escapes are written by serde_json's own formatter.
//! - `read`: on any error, and on what it leaves alone (`\u` escapes, enums, numbers
//!   past the exact fast path), the text is read again by serde_json, so the value, or
//!   the error message, is serde_json's.

mod read;
mod scan;
mod write;

pub(crate) use read::read;
pub(crate) use write::to_vec;

/// Generators for the tests of both directions.
#[cfg(test)]
mod strategies {
    use proptest::prelude::*;
    use serde_json::Value;

    /// Strings made of what escaping turns on: controls, quotes, backslashes, non-ASCII,
    /// and plain letters, at every length around the word sizes.
    pub(super) fn text() -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            Just('a'),
            Just('"'),
            Just('\\'),
            Just('\u{7f}'),
            Just('é'),
            Just('😀'),
            (0u8..0x20).prop_map(char::from),
            any::<char>(),
        ];
        proptest::collection::vec(pieces, 0..40).prop_map(String::from_iter)
    }

    pub(super) fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map(text(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
