//! Example plugin: a validator.
//!
//! Records that break a rule go to the dead-letter queue with a domain error saying
//! which rule; records marked `"test": true` are dropped deliberately; the rest pass
//! unchanged. Config: `max_amount` (default 10000).

use guest_sdk::{DomainError, Error, Output, Record, config, metrics};
use serde::Deserialize;

#[derive(Deserialize)]
struct Event {
    id: Option<String>,
    amount: Option<f64>,
    #[serde(default)]
    test: bool,
}

/// The transform: pass, drop (`None`) or fail with the rule that was broken.
pub fn transform(record: Record) -> Result<Option<Output>, Error> {
    let event: Event = record.json()?;
    if event.test {
        metrics::counter("test-events-dropped", 1);
        return Ok(None);
    }
    let id = event
        .id
        .filter(|id| !id.is_empty())
        .ok_or(DomainError::new("missing `id`"))?;
    let amount = event
        .amount
        .ok_or_else(|| DomainError::new(format!("{id}: missing `amount`")))?;
    let max: f64 = config().parse_or("max_amount", 10_000.0)?;
    if !(0.0..=max).contains(&amount) {
        return Err(DomainError::new(format!("{id}: amount {amount} outside 0..={max}")).into());
    }
    Ok(Some(Output::new(record.payload())))
}

/// Refuses a `max_amount` that is not a number, before any record is seen.
pub fn init(config: &guest_sdk::Config) -> Result<(), Error> {
    config.parse_or("max_amount", 0.0).map(drop)
}

guest_sdk::export_transform!(transform, init = init);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_drops_and_fails() {
        let ok = transform(Record::new(br#"{"id":"a","amount":5}"#)).expect("valid");
        assert!(ok.is_some());
        let dropped =
            transform(Record::new(br#"{"id":"a","amount":5,"test":true}"#)).expect("test");
        assert!(dropped.is_none());
        let err = transform(Record::new(br#"{"amount":5}"#)).expect_err("no id");
        assert_eq!(err.message(), "missing `id`");
        let err = transform(Record::new(br#"{"id":"b","amount":-1}"#)).expect_err("negative");
        assert!(err.message().contains("outside"), "{err}");
    }
}
