//! How an error reads at the edges (the command line's `error:` line, the Lambda error
//! and init-error messages): one line, the error and its causes joined by `: `, each
//! cause once — typed errors often repeat their cause in their own message already.

/// `error: cause: cause`, skipping a cause whose text is already in the line.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = next.source();
    }
    line
}

/// The process's peak resident memory (`VmHWM` on Linux), or `None` where it is not
/// known.
pub fn peak_memory_bytes() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// The process's resident memory now (`VmRSS` on Linux), or `None` where it is not known.
pub fn resident_memory_bytes() -> Option<u64> {
    status_bytes("VmRSS:")
}

/// A `kB` line of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line
        .trim_start_matches(field)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read input x.jsonl: {source}")]
    struct Repeats {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("reading failed")]
    struct Hides {
        source: std::io::Error,
    }

    #[test]
    fn each_cause_appears_once() {
        let io = || std::io::Error::other("disk on fire");
        assert_eq!(
            one_line(&Repeats { source: io() }),
            "cannot read input x.jsonl: disk on fire"
        );
        assert_eq!(
            one_line(&Hides { source: io() }),
            "reading failed: disk on fire"
        );
    }
}
