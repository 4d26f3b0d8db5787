//! Appending short byte strings without `memory.copy`.

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
