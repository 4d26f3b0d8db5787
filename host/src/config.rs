//! Limits and the retry policy: plain values the engine and the sinks share. Where each
//! value comes from (flag, environment variable, default, bounds) is `settings.rs`.

use std::time::{Duration, Instant};

/// Resource limits and retry policy for running a plugin.
///
/// Every field has a default; [`Limits::validate`] names the setting that is out of range.
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

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 128 << 20,
            deadline: Duration::from_secs(1),
            max_output_bytes: 1 << 20,
            max_outputs_per_record: 1000,
            max_call_output_bytes: 256 << 20,
            batch_size: 1000,
            max_attempts: 3,
            retry_base_delay: Duration::from_millis(100),
            tiered_start: true,
            function_memory_mib: None,
        }
    }
}

/// A setting that is out of its allowed range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid setting `{setting}`: {reason}")]
pub struct ConfigError {
    /// The setting's name as the user spells it (flag or environment variable).
    pub setting: &'static str,
    /// What is wrong and what is allowed.
    pub reason: String,
}

fn check<T: PartialOrd + std::fmt::Debug>(
    setting: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError {
            setting,
            reason: format!("{value:?} is outside {min:?} ..= {max:?}"),
        });
    }
    Ok(())
}

impl Limits {
    /// Checks every setting, naming the first one out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check("memory-mib", self.memory_bytes >> 20, 1, 4096)?;
        check(
            "deadline-ms",
            self.deadline,
            Duration::from_millis(10),
            Duration::from_secs(900),
        )?;
        check("max-output-bytes", self.max_output_bytes, 1, 64 << 20)?;
        check(
            "max-outputs-per-record",
            self.max_outputs_per_record,
            1,
            1_000_000,
        )?;
        check(
            "max-call-output-bytes",
            self.max_call_output_bytes,
            1 << 20,
            4 << 30,
        )?;
        check("batch-size", self.batch_size, 1, 100_000)?;
        check("max-attempts", self.max_attempts, 1, 20)?;
        check(
            "retry-base-ms",
            self.retry_base_delay,
            Duration::ZERO,
            Duration::from_secs(60),
        )?;
        Ok(())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Limits::default().validate(), Ok(()));
    }

    #[test]
    fn error_names_the_setting() {
        let limits = Limits {
            batch_size: 0,
            ..Limits::default()
        };
        let err = limits.validate().expect_err("zero batch");
        assert_eq!(err.setting, "batch-size");
        assert!(err.to_string().contains("batch-size"), "{err}");
    }
}
