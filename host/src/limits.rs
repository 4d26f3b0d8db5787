//! Limits and the retry policy: plain values the engine and the sinks share. Where each
//! value comes from (flag, environment variable, default, bounds) is `settings/table.rs`.

use std::time::{Duration, Instant};

/// Resource limits and retry policy for running a plugin.
///
/// Every field's default and bounds are its row of the settings table (`settings/table.rs`),
/// the one place they are written: `Limits::default()` reads them there.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Cap on a plugin instance's linear memory. Default 128 MiB; 1 MiB ..= 4 GiB.
    pub memory_bytes: usize,
    /// CPU deadline for one call into the plugin (one batch). Default 1 s; 10 ms ..= 15 min.
    pub deadline: Duration,
    /// Largest payload a single output may have. Default 1 MiB (Kinesis' record limit).
    pub max_output_bytes: usize,
    /// Most outputs one record may have. Default 1000; 1 ..= 1,000,000.
    pub max_outputs_per_record: usize,
    /// Bytes (payloads, keys, destinations, attributes) all the outputs of one call may have together, counted as
    /// the sinks copy them. Default 256 MiB; 1 MiB ..= 4 GiB.
    pub max_call_output_bytes: usize,
    /// Records per call into the plugin. Default 1000; 1 ..= 100,000.
    pub batch_size: usize,
    /// Times a record with an infrastructure error is handed to the plugin before it
    /// goes to the dead-letter queue. Default 3; 1 ..= 20.
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt, with jitter. Default 100 ms; at most 60 s.
    pub retry_base_delay: Duration,
    /// A module with no precompiled code runs its first batches on code from Winch
    /// (wasmtime's fast baseline compiler) while Cranelift compiles it in the background;
    /// its runners move to Cranelift's code between two batches. Default on.
    pub tiered_start: bool,
    /// The memory of the Lambda function this runs in, MiB (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`),
    /// which a plugin's compile must fit in; `None` outside Lambda (no such bound).
    pub function_memory_mib: Option<usize>,
}

/// Kept free at the end of a Lambda invocation for the answer (and the metrics
/// document): no AWS call runs into it ([`Budget::bound`]).
pub const ANSWER_TIME: Duration = Duration::from_millis(250);

/// The time a run may take: until an instant (a Lambda invocation's deadline less a
/// margin), or unbounded (a command). Work that would start after it does not start.
/// A run may also have a hard deadline (the invocation's own, less the time to answer):
/// no AWS call runs past it, however many attempts its SDK has left ([`Budget::bound`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    until: Option<Instant>,
    hard: Option<Instant>,
}

/// An AWS call that was not made, or was cut, because the run's hard deadline came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no answer before the invocation's deadline (the call was cut or not started)")]
pub struct CallOutOfTime;

impl Budget {
    /// No limit.
    pub const fn unbounded() -> Self {
        Self {
            until: None,
            hard: None,
        }
    }

    /// Work may start until `until`.
    pub fn until(until: Instant) -> Self {
        Self {
            until: Some(until),
            hard: None,
        }
    }

    /// The same budget, and no AWS call running past `hard`.
    pub fn with_hard_deadline(self, hard: Instant) -> Self {
        Self {
            hard: Some(hard),
            ..self
        }
    }

    /// Runs one AWS call (`call`, all its SDK attempts) within what is left before the
    /// hard deadline: not started when none is left, cut when it comes. Settling calls
    /// made after [`Budget::exhausted`] (a DLQ entry, a checkpoint) still run, in the
    /// margin, which is why the margin must hold one attempt.
    pub async fn bound<F: std::future::Future>(&self, call: F) -> Result<F::Output, CallOutOfTime> {
        let Some(hard) = self.hard else {
            return Ok(call.await);
        };
        let left = hard.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CallOutOfTime);
        }
        tokio::time::timeout(left, call)
            .await
            .map_err(|_| CallOutOfTime)
    }

    /// When work may no longer start, when there is a limit.
    pub fn ends(&self) -> Option<Instant> {
        self.until
    }

    /// Whether the time is up.
    pub fn exhausted(&self) -> bool {
        self.until.is_some_and(|until| Instant::now() >= until)
    }

    /// The time left, when there is a limit.
    pub fn left(&self) -> Option<Duration> {
        self.until
            .map(|until| until.saturating_duration_since(Instant::now()))
    }

    /// Whether waiting `delay` (a backoff) would run past the budget.
    pub fn allows_wait(&self, delay: Duration) -> bool {
        self.until
            .is_none_or(|until| Instant::now() + delay < until)
    }
}

/// How a sink retries the part of a delivery the service refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub max_attempts: u32,
    /// First delay; doubled per attempt, plus jitter.
    pub base_delay: Duration,
    /// No retry starts past this budget; what is left is unfinished.
    pub budget: Budget,
}

impl RetryPolicy {
    /// The policy `limits` describe, without a time budget.
    pub fn of(limits: &Limits) -> Self {
        Self {
            max_attempts: limits.max_attempts,
            base_delay: limits.retry_base_delay,
            budget: Budget::unbounded(),
        }
    }
}

/// Delay before retry number `attempt` (1-based): `base * 2^(attempt-1)`, plus up to
/// `base` of random jitter so that retries from many callers do not align.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exponential = base.saturating_mul(1 << attempt.saturating_sub(1).min(10));
    let jitter = Duration::from_micros(fastrand::u64(0..=base.as_micros() as u64));
    exponential + jitter
}
