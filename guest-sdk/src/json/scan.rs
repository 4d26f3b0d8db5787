//! Finding the bytes JSON escapes (a control byte, `"`, `\\`) a word at a time.
//!
//! Inside the sandbox every loop iteration is a loop header with an epoch check (the CPU
//! deadline), and a wasm32 word is 4 bytes: scanning eight bytes per iteration as a u64
//! (a native 64-bit operation under Cranelift) is what makes these loops cheap.

const ONES: u64 = u64::from_le_bytes([1; 8]);
const HIGH: u64 = u64::from_le_bytes([0x80; 8]);

/// The high bit of each byte of `word` that JSON escapes (a control byte, `"` or `\`).
/// Only the lowest bit set is exact (borrows may set higher ones), which is all
/// [`first_escape`] reads.
#[inline]
fn escapes(word: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    (control | zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\'))))
        & HIGH
}

#[inline]
fn escaped(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The first of `word`'s (little-endian) bytes that needs an escape, or with
/// `NON_ASCII` also the first byte above 0x7f, if any.
#[inline]
fn first_in<const NON_ASCII: bool>(word: u64) -> Option<usize> {
    let found = escapes(word) | if NON_ASCII { word & HIGH } else { 0 };
    match found {
        0 => None,
        found => Some(found.trailing_zeros() as usize / 8),
    }
}

/// The index of the first byte of `s` that JSON escapes. Up to 16 bytes with at most two
/// (overlapping) word loads; longer strings eight bytes per iteration.
#[inline]
pub(super) fn first_escape(s: &[u8]) -> Option<usize> {
    first_special::<false>(s)
}

/// The index of the first byte of `s` that JSON escapes or that is not ASCII (the
/// reader: a string of ASCII bytes is text with no further check).
#[inline]
pub(super) fn first_escape_or_non_ascii(s: &[u8]) -> Option<usize> {
    first_special::<true>(s)
}

#[inline]
fn first_special<const NON_ASCII: bool>(s: &[u8]) -> Option<usize> {
    let n = s.len();
    let special = |byte: u8| escaped(byte) || (NON_ASCII && byte > 0x7f);
    let word8 = |at: usize| s.get(at..).and_then(|s| s.first_chunk::<8>()).copied();
    let word4 = |at: usize| s.get(at..).and_then(|s| s.first_chunk::<4>()).copied();
    match n {
        0 => None,
        1..=3 => (0..n).find(|&i| special(s[i])),
        4..=7 => {
            // Two 4-byte words, widened with 0x7f bytes, which are neither escaped nor
            // above ASCII.
            let wide = |w: [u8; 4]| u64::from(u32::from_le_bytes(w)) | 0x7f7f_7f7f << 32;
            let head = first_in::<NON_ASCII>(wide(word4(0)?));
            head.or_else(|| Some(first_in::<NON_ASCII>(wide(word4(n - 4)?))? + n - 4))
        }
        _ => {
            let (words, tail) = s.as_chunks::<8>();
            for (i, word) in words.iter().enumerate() {
                if let Some(at) = first_in::<NON_ASCII>(u64::from_le_bytes(*word)) {
                    return Some(i * 8 + at);
                }
            }
            // The last bytes, as the word that ends the string (it overlaps checked ones).
            match tail.is_empty() {
                false => Some(first_in::<NON_ASCII>(u64::from_le_bytes(word8(n - 8)?))? + n - 8),
                true => None,
            }
        }
    }
}

/// Whether a string of up to 16 bytes has a byte JSON escapes: one word check, no loop.
/// (A false "yes" would only cost the exact path; there is none: see the tests.)
#[inline(always)]
pub(super) fn short_has_escape(s: &[u8]) -> bool {
    let n = s.len();
    let word = match (s.first_chunk::<8>(), s.last_chunk::<8>()) {
        (Some(head), Some(tail)) => {
            return escapes(u64::from_le_bytes(*head)) | escapes(u64::from_le_bytes(*tail)) != 0;
        }
        _ => match (s.first_chunk::<4>(), s.last_chunk::<4>()) {
            // 4 to 7 bytes: both (overlapping) halves in one word.
            (Some(head), Some(tail)) => {
                u64::from(u32::from_le_bytes(*head)) | u64::from(u32::from_le_bytes(*tail)) << 32
            }
            // 1 to 3 bytes: first, middle and last, the rest 0xff (never an escape).
            _ if n > 0 => {
                u64::from(s[0])
                    | u64::from(s[n / 2]) << 8
                    | u64::from(s[n - 1]) << 16
                    | u64::MAX << 24
            }
            _ => return false,
        },
    };
    escapes(word) != 0
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn first_escape_finds_the_first_byte_json_escapes(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff],
                0..40,
            ),
        ) {
            prop_assert_eq!(first_escape(&bytes), bytes.iter().position(|&b| escaped(b)));
            prop_assert_eq!(
                first_escape_or_non_ascii(&bytes),
                bytes.iter().position(|&b| escaped(b) || b > 0x7f)
            );
            let short = &bytes[..bytes.len().min(16)];
            prop_assert_eq!(short_has_escape(short), short.iter().any(|&b| escaped(b)));
        }
    }
}
