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
//!
//! While a plugin compiles, memory freed goes back to the system at once ([`Compiling`]):
//! mimalloc keeps freed memory committed for a second by default, and a compile frees
//! and allocates hundreds of MiB in that time (the 18 MB Python `enrich`'s fresh start
//! peaked ~100-150 MiB higher with the delay).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc 3's `mimalloc.h` (the crate names the
/// stable options only).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h`: how long freed memory stays
/// committed before it goes back to the system (1000 ms by default; 0: at once).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The compiles running now, and the purge delay to put back when the last one ends.
static COMPILES: std::sync::Mutex<(usize, std::ffi::c_long)> = std::sync::Mutex::new((0, 0));

/// Held for the length of a compile: until the last one running ends, memory freed goes
/// back to the system at once instead of after mimalloc's purge delay. Between compiles
/// (the batch loop) the delay is what it was, so memory reused batch after batch is not
/// given back and faulted in again.
pub(crate) struct Compiling(());

impl Compiling {
    pub(crate) fn start() -> Self {
        let mut compiles = COMPILES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if compiles.0 == 0 {
            // SAFETY: reads and sets one entry of mimalloc's option table; mimalloc reads
            // the purge delay each time it schedules or runs a purge.
            compiles.1 = unsafe {
                let delay = libmimalloc_sys::mi_option_get(PURGE_DELAY);
                libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
                delay
            };
        }
        compiles.0 += 1;
        Self(())
    }
}

impl Drop for Compiling {
    fn drop(&mut self) {
        let mut compiles = COMPILES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        compiles.0 -= 1;
        if compiles.0 == 0 {
            // SAFETY: sets one entry of mimalloc's option table back to what it was.
            unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, compiles.1) };
        }
    }
}

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

    #[test]
    fn a_compile_purges_at_once_and_the_delay_comes_back() {
        // Other tests compile plugins meanwhile: what holds whoever else compiles is
        // checked, not the value between compiles.
        let compiling = Compiling::start();
        // SAFETY: reads one entry of mimalloc's option table.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, 0);
        let saved = COMPILES.lock().expect("lock").1;
        assert_eq!(saved, 1000, "mi_option_purge_delay's default (mimalloc 3)");
        let nested = Compiling::start();
        drop(compiling);
        // SAFETY: as above.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, 0);
        drop(nested);
    }
}
