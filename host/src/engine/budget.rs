//! Compiling inside the function's memory.
//!
//! A compile holds every function's output until it links them, so its memory grows
//! with the module's function bodies: the 18.5 MB Python `enrich` (6.3 MiB of code
//! sections, 10.7 MiB of data segments) took the process from ~62 MiB resident to 351
//! MiB with Winch, 345 MiB with Cranelift, and 426 MiB with Cranelift compiling while
//! Winch's code and an instance were resident (a tiered start), compiling on one thread
//! with freed memory given back at once (`host run`, debug build). In a Lambda
//! function the engine plans each compile against what is resident and the function's
//! memory: a tiered start when it fits, else Cranelift alone, else a refusal naming the
//! memory or the signed artifact the module needs. A compile that takes over a quarter
//! of the memory runs alone ([`Turn`]): what is resident when it is planned is then what
//! it counts on.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Below this a Lambda function has at most one vCPU's time (1,769 MB is one vCPU):
/// compiling on several threads saves nothing there, and holds several functions'
/// compiles in memory at once.
pub(super) const ONE_VCPU_MIB: usize = 1770;

/// What any compile adds, MiB (engine state, the component's trampolines, a few copies).
const FIXED_MIB: u64 = 16;
/// What one compiler (Winch or Cranelift) adds per MiB of function bodies, rounded up
/// from the Python `enrich`'s ~46.
const ONE_COMPILER_PER_CODE_MIB: u64 = 48;
/// What Cranelift adds per MiB of function bodies while Winch's code and an instance of
/// the same module are resident (a tiered start), rounded up from ~58.
const TIERED_PER_CODE_MIB: u64 = 60;

/// What compiling a module is expected to take, as the process's resident memory at its
/// peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Estimate {
    /// Resident when planned, MiB.
    pub resident_mib: u64,
    /// Bytes of function bodies in the module.
    pub code_bytes: u64,
    /// One compiler, nothing else of the module resident, MiB.
    pub one_compiler_mib: u64,
    /// Cranelift in the background of Winch's code, MiB.
    pub tiered_mib: u64,
}

impl Estimate {
    /// The estimate for a module with `code_bytes` of function bodies, in a process with
    /// `resident_bytes` resident now.
    pub(super) fn new(resident_bytes: u64, code_bytes: u64) -> Self {
        let per = |mib_per_code_mib: u64| {
            (resident_bytes + code_bytes * mib_per_code_mib).div_ceil(1 << 20) + FIXED_MIB
        };
        Self {
            resident_mib: resident_bytes.div_ceil(1 << 20),
            code_bytes,
            one_compiler_mib: per(ONE_COMPILER_PER_CODE_MIB),
            tiered_mib: per(TIERED_PER_CODE_MIB),
        }
    }

    /// How to compile within `memory_mib`, `tiered` being whether a tiered start is
    /// wanted.
    pub(super) fn plan(&self, memory_mib: usize, tiered: bool) -> Plan {
        let memory = memory_mib as u64;
        if self.one_compiler_mib > memory {
            Plan::TooLarge
        } else if tiered && self.tiered_mib > memory {
            Plan::CraneliftOnly
        } else {
            Plan::AsConfigured
        }
    }

    /// Whether the compile takes over a quarter of `memory_mib`: it then runs alone.
    pub(super) fn alone(&self, memory_mib: usize) -> bool {
        self.tiered_mib.saturating_sub(self.resident_mib) * 4 > memory_mib as u64
    }

    /// MiB of function bodies, for messages.
    pub(super) fn code_mib(&self) -> f64 {
        self.code_bytes as f64 / 1_048_576.0
    }
}

/// A turn to compile, held for the length of the compile: small compiles run together
/// (one module's Winch compile beside another's Cranelift compile in the background, as
/// the stages of a chain start), a large one alone.
pub(super) enum Turn<'a> {
    /// Beside other small compiles.
    Shared { _held: RwLockReadGuard<'a, ()> },
    /// Alone.
    Alone { _held: RwLockWriteGuard<'a, ()> },
}

impl<'a> Turn<'a> {
    /// Waits for the turn: for the large compile running, or (`alone`) for every compile.
    pub(super) fn take(turns: &'a RwLock<()>, alone: bool) -> Self {
        if alone {
            let held = turns.write().unwrap_or_else(PoisonError::into_inner);
            Self::Alone { _held: held }
        } else {
            let held = turns.read().unwrap_or_else(PoisonError::into_inner);
            Self::Shared { _held: held }
        }
    }
}

/// How a module not in the cache gets compiled in the function's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    /// As the settings say (a tiered start, or Cranelift when it is off).
    AsConfigured,
    /// Cranelift alone, before the first batch: Winch's code resident while Cranelift
    /// compiles would not fit.
    CraneliftOnly,
    /// Not even one compiler fits.
    TooLarge,
}

/// `mib` rounded up to a memory size to name in a message (a multiple of 64 MB).
pub(super) fn memory_size_for(mib: u64) -> u64 {
    mib.div_ceil(64) * 64
}

/// Bytes of function bodies in `bytes` (the code sections of a component's modules,
/// nested ones included): what a compile's memory grows with. Counting stops at
/// anything that does not parse (the compile then says what is wrong).
pub(super) fn code_bytes(bytes: &[u8]) -> u64 {
    use wasmtime::wasmparser::{Parser, Payload};
    Parser::new(0)
        .parse_all(bytes)
        .map_while(Result::ok)
        .map(|payload| match payload {
            Payload::CodeSectionStart { range, .. } => range.end - range.start,
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_python_enrich_starts_tiered_in_512_mb_and_on_cranelift_in_less() {
        // What `host run` had resident before compiling it (debug build), and its code.
        let python = Estimate::new(62 * MIB, 6_570_867);
        assert!((6.2..6.3).contains(&python.code_mib()), "{python:?}");
        // Measured 426 MiB tiered, 345-351 MiB with one compiler (module docs).
        assert!((426..=470).contains(&python.tiered_mib), "{python:?}");
        assert!((351..=390).contains(&python.one_compiler_mib), "{python:?}");
        assert_eq!(python.plan(512, true), Plan::AsConfigured);
        assert_eq!(python.plan(448, true), Plan::CraneliftOnly);
        assert_eq!(python.plan(448, false), Plan::AsConfigured);
        assert_eq!(python.plan(256, true), Plan::TooLarge);
        assert_eq!(memory_size_for(python.tiered_mib), 512);
        assert!(python.alone(512));
    }

    #[test]
    fn a_small_plugin_fits_the_smallest_function() {
        // The Rust `enrich`: ~0.2 MB of code, peaking at ~60 MiB (release).
        let rust = Estimate::new(40 * MIB, 200_000);
        assert_eq!(rust.plan(128, true), Plan::AsConfigured);
        assert!(!rust.alone(128), "{rust:?}: compiles beside the others");
    }

    #[test]
    fn code_is_counted_in_nested_modules_and_bad_bytes_count_nothing() {
        // A component (layer 1) holding one core module with a code section of one
        // empty function: `(module (func))`.
        let module: &[u8] = &[
            0, b'a', b's', b'm', 1, 0, 0, 0, // core module header
            1, 4, 1, 0x60, 0, 0, // type section: () -> ()
            3, 2, 1, 0, // function section: one function of type 0
            10, 4, 1, 2, 0, 0x0b, // code section: 4 bytes
        ];
        let mut component = vec![0, b'a', b's', b'm', 0x0d, 0, 1, 0, 1];
        component.push(module.len() as u8);
        component.extend_from_slice(module);
        assert_eq!(code_bytes(module), 4);
        assert_eq!(code_bytes(&component), 4);
        assert_eq!(code_bytes(b"not wasm"), 0);
    }
}
