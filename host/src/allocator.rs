//! The host's allocator: mimalloc, for everything linked with this library (the `host`
//! binary, its tests and its benches, so what the benches measure is what ships).
//!
//! Why: crossing into the sandbox allocates and frees per record (each record's outputs,
//! their lists), a thousand at a time, more than glibc's per-thread cache holds; glibc's
//! slower path took ~15% of the boundary's time, and mimalloc cut the boundary (echo) by
//! ~12% and a two-plugin chain by ~20% (`BENCHMARKS.md`).
//!
//! Its default where memory is overcommitted (Linux, macOS) commits each arena eagerly,
//! which doubled the resident memory of `host run` (29 -> 58 MiB over 300,000 records)
//! for no measured speed; a Lambda function pays for memory, so on Linux arenas are
//! committed as they are used, set before `main` runs (mimalloc's own
//! `MIMALLOC_ARENA_EAGER_COMMIT` is then ignored). `tests/e2e/run.rs` checks the binary.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc 3's `mimalloc.h` (the crate names the
/// stable options only).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Runs before `main` (and before a test harness or bench starts), so the first arena is
/// already reserved without an eager commit.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static CONFIGURE: extern "C" fn() = configure;

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
extern "C" fn configure() {
    // SAFETY: sets one entry of mimalloc's option table; it takes any option and value.
    unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) };
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn arenas_are_committed_as_they_are_used() {
        // SAFETY: reads mimalloc's version and one entry of its option table.
        let (version, eager) = unsafe {
            (
                libmimalloc_sys::mi_version(),
                libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT),
            )
        };
        // Option numbers are mimalloc 3's: another major version needs them checked.
        assert!((30000..40000).contains(&version), "mimalloc {version}");
        assert_eq!(eager, 0, "mi_option_arena_eager_commit");
    }
}
