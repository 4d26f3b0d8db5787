//! The layout of the packed batches of `wit/plugin.wit`, written once for both sides:
//! the host packs input batches and unpacks output batches with these numbers, the guest
//! SDK does the reverse. `wit/` describes the tables in words; this crate is the same
//! description as constants, so the two sides cannot drift apart.
//!
//! A *span* is two words, offset and length, into the batch's `bytes`.
#![no_std]
#![deny(missing_docs)]

/// Offset of an absent optional span (no key, no destination).
pub const NONE: u32 = u32::MAX;

/// Words per input record: key span, payload span, first attribute, attribute count.
pub const RECORD_WORDS: usize = 6;

/// Words per attribute: name span, value span.
pub const ATTRIBUTE_WORDS: usize = 4;

/// Words per output: payload span, key span, destination span, first attribute,
/// attribute count.
pub const OUTPUT_WORDS: usize = 8;

/// Words per result: first output, output count.
pub const RESULT_WORDS: usize = 2;

/// The largest batch the 32-bit offsets can address (offsets below [`NONE`]).
pub const MAX_BATCH_BYTES: usize = NONE as usize;
