//! A reader that cuts long lines: bytes past `max` on one line are dropped (up to its
//! newline) and the line's number is remembered, so one endless CSV row cannot take the
//! memory while the CSV parser, reading through it, sees a row it can still end.

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::{Arc, Mutex};

/// The numbers (1-based) of the lines a [`CappedLines`] cut, shared with its reader.
#[derive(Debug, Clone, Default)]
pub struct CutLines(Arc<Mutex<BTreeSet<u64>>>);

impl CutLines {
    fn insert(&self, line: u64) {
        match self.0.lock() {
            Ok(mut lines) => lines.insert(line),
            Err(poisoned) => poisoned.into_inner().insert(line),
        };
    }

    /// Whether a line in `first..=last` was cut (those lines are then forgotten).
    pub fn take_between(&self, first: u64, last: u64) -> bool {
        let mut lines = match self.0.lock() {
            Ok(lines) => lines,
            Err(poisoned) => poisoned.into_inner(),
        };
        let hit: Vec<u64> = lines.range(first..=last).copied().collect();
        for line in &hit {
            lines.remove(line);
        }
        !hit.is_empty()
    }
}

/// Passes `inner` through, keeping at most `max` bytes of each line.
pub struct CappedLines<R> {
    inner: R,
    max: usize,
    /// Bytes of the current line so far.
    in_line: usize,
    /// The current line's number.
    line: u64,
    cut: CutLines,
    scratch: Vec<u8>,
}

impl<R: Read> CappedLines<R> {
    /// A reader over `inner` cutting lines past `max` bytes, noting them in `cut`.
    pub fn new(inner: R, max: usize, cut: CutLines) -> Self {
        Self {
            inner,
            max,
            in_line: 0,
            line: 1,
            cut,
            scratch: vec![0; 1 << 16],
        }
    }
}

impl<R: Read> Read for CappedLines<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let want = out.len().min(self.scratch.len());
            let n = self.inner.read(&mut self.scratch[..want])?;
            if n == 0 {
                return Ok(0);
            }
            let mut kept = 0;
            for &byte in &self.scratch[..n] {
                if byte == b'\n' || byte == b'\r' {
                    // A bare `\r` ends a line for the CSV parser too.
                    out[kept] = byte;
                    kept += 1;
                    if byte == b'\n' {
                        self.line += 1;
                    }
                    self.in_line = 0;
                } else if self.in_line < self.max {
                    out[kept] = byte;
                    kept += 1;
                    self.in_line += 1;
                } else if self.in_line == self.max {
                    self.cut.insert(self.line);
                    self.in_line += 1;
                }
            }
            // Everything read was dropped (the middle of a long line): read on.
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_noted() {
        let cut = CutLines::default();
        let text = format!("a,b\n{}\nc,d\n", "x".repeat(100));
        let mut reader = CappedLines::new(text.as_bytes(), 10, cut.clone());
        let mut out = String::new();
        reader.read_to_string(&mut out).expect("read");
        assert_eq!(out, format!("a,b\n{}\nc,d\n", "x".repeat(10)));
        assert!(!cut.take_between(1, 1));
        assert!(cut.take_between(2, 2));
        assert!(!cut.take_between(2, 2), "forgotten once taken");
    }
}
