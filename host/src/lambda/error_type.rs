//! The `errorType` of every error the host answers Lambda with: a stable name from a
//! short documented list (`infra/README.md`, "When an invocation fails"), so operators
//! can alarm and search on it. Without this the runtime crate names the Rust type of the
//! boxed error (`&alloc::boxed::Box<dyn core::error::Error + ...>`), the same for every
//! failure.

use lambda_runtime::Diagnostic;

use crate::pipeline::{DeliverError, RunError, StartError};
use crate::registry::LoadError;
use crate::settings::SettingError;
use crate::sources::events::EventError;
use crate::sources::lambda::AnswerError;

/// The names, one per way an invocation or a cold start fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// The event is not one the host understands (its shape, its `eventSource`).
    InvalidEvent,
    /// The invocation's time ran out before a source without partial answers (S3, a
    /// direct invocation) was done; what finished is settled, the rest retried.
    OutOfTime,
    /// Records must be retried and the source (Kafka) takes its batch back only whole:
    /// the error is the answer that makes it deliver the batch again.
    RetryBatch,
    /// The dead-letter queue refused an entry the source cannot take back.
    DeadLetterRefused,
    /// The idempotency store could not be reached.
    IdempotencyStore,
    /// Reading the input failed (an S3 object, a checkpoint).
    SourceFailed,
    /// A sink broke for the rest of the run (a file that cannot be written).
    SinkFailed,
    /// A setting is missing or wrong (cold start).
    Config,
    /// The plugin was refused: a manifest, a signature, a module that does not compile
    /// or does not start (cold start).
    PluginRefused,
    /// The plugin or its manifest could not be fetched (cold start).
    PluginUnavailable,
    /// A sink or the dead-letter queue could not be reached at start (cold start).
    SinkUnavailable,
    /// A lookup table could not be set up at start: a DynamoDB table that cannot be
    /// described, an object table that cannot be read or parsed (cold start).
    LookupUnavailable,
    /// Anything else: a host bug (items and verdicts that do not balance, a plugin
    /// thread that died).
    Internal,
}

impl ErrorType {
    /// Every name, for the documentation test.
    pub const ALL: [ErrorType; 13] = [
        Self::InvalidEvent,
        Self::OutOfTime,
        Self::RetryBatch,
        Self::DeadLetterRefused,
        Self::IdempotencyStore,
        Self::SourceFailed,
        Self::SinkFailed,
        Self::Config,
        Self::PluginRefused,
        Self::PluginUnavailable,
        Self::SinkUnavailable,
        Self::LookupUnavailable,
        Self::Internal,
    ];

    /// The name Lambda reports as `errorType`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidEvent => "InvalidEvent",
            Self::OutOfTime => "OutOfTime",
            Self::RetryBatch => "RetryBatch",
            Self::DeadLetterRefused => "DeadLetterRefused",
            Self::IdempotencyStore => "IdempotencyStore",
            Self::SourceFailed => "SourceFailed",
            Self::SinkFailed => "SinkFailed",
            Self::Config => "Config",
            Self::PluginRefused => "PluginRefused",
            Self::PluginUnavailable => "PluginUnavailable",
            Self::SinkUnavailable => "SinkUnavailable",
            Self::LookupUnavailable => "LookupUnavailable",
            Self::Internal => "Internal",
        }
    }

    /// The name for `error`, from the first typed error in its chain that says.
    pub fn of(error: &anyhow::Error) -> Self {
        error
            .chain()
            .find_map(|e| {
                if e.is::<EventError>() {
                    return Some(Self::InvalidEvent);
                }
                if e.is::<SettingError>() {
                    return Some(Self::Config);
                }
                if let Some(answer) = e.downcast_ref::<AnswerError>() {
                    return Some(match answer {
                        AnswerError::HandedBack { .. } => Self::RetryBatch,
                        AnswerError::Json(_) => Self::Internal,
                    });
                }
                if let Some(run) = e.downcast_ref::<RunError>() {
                    return Some(Self::of_run(run));
                }
                if let Some(start) = e.downcast_ref::<StartError>() {
                    return Some(Self::of_start(start));
                }
                None
            })
            .unwrap_or(Self::Internal)
    }

    fn of_run(error: &RunError) -> Self {
        match error {
            RunError::Source(crate::sources::SourceError::Event { .. }) => Self::InvalidEvent,
            RunError::Source(crate::sources::SourceError::Settle(_)) => Self::Internal,
            RunError::Source(_) => Self::SourceFailed,
            RunError::Deliver(DeliverError::DeadLetterRefused { .. }) => Self::DeadLetterRefused,
            RunError::Deliver(_) => Self::Internal,
            RunError::OutOfTime(_) => Self::OutOfTime,
            RunError::Store(_) => Self::IdempotencyStore,
            RunError::Broken(_) | RunError::Finish(_) => Self::SinkFailed,
            RunError::PluginThread(_) | RunError::Unbalanced(_) => Self::Internal,
        }
    }

    fn of_start(error: &StartError) -> Self {
        match error {
            StartError::NoPlugin { .. } => Self::Config,
            StartError::Plugin {
                reason: LoadError::Fetch { .. },
                ..
            } => Self::PluginUnavailable,
            StartError::Plugin {
                reason: LoadError::Config(_) | LoadError::Lookups { .. },
                ..
            } => Self::Config,
            StartError::Lookups { .. } => Self::LookupUnavailable,
            StartError::Schemas { .. } => Self::Config,
            StartError::Plugin { .. } | StartError::Engine(_) => Self::PluginRefused,
            StartError::Sink { .. } | StartError::DeadLetters { .. } => Self::SinkUnavailable,
            #[allow(unreachable_patterns)]
            _ => Self::Internal,
        }
    }
}

/// What Lambda is told: the stable name and the error in one line.
pub(crate) fn diagnostic(error: &anyhow::Error) -> Diagnostic {
    Diagnostic {
        error_type: ErrorType::of(error).as_str().to_owned(),
        error_message: crate::report::one_line(error.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_of_no_known_kind_is_invalid_event() {
        let error = crate::sources::events::detect(&serde_json::json!({"hello": 1}))
            .map(|_| ())
            .map_err(anyhow::Error::from)
            .expect_err("not an event");
        let answer = diagnostic(&error);
        assert_eq!(answer.error_type, "InvalidEvent");
        assert!(
            answer.error_message.starts_with("not a known AWS event: "),
            "{}",
            answer.error_message
        );
    }

    #[test]
    fn a_wrapped_error_keeps_its_name() {
        let error = anyhow::Error::from(RunError::PluginThread("gone".into())).context("while");
        assert_eq!(ErrorType::of(&error), ErrorType::Internal);
        let error = anyhow::Error::from(SettingError {
            name: "PIPELINE_DLQ".into(),
            reason: "no".into(),
        })
        .context("cold start");
        assert_eq!(ErrorType::of(&error), ErrorType::Config);
    }

    #[test]
    fn every_name_is_documented_in_the_runbook() {
        let runbook = include_str!("../../../infra/README.md");
        for name in ErrorType::ALL {
            assert!(
                runbook.contains(&format!("| `{}` |", name.as_str())),
                "infra/README.md does not list errorType {}",
                name.as_str()
            );
        }
    }
}
