//! Example plugin: typed JSON enrichment and projection.
//!
//! Reads an event, keeps the fields downstream needs, and adds what the host knows
//! about where the record came from. Config: `currency` (default `EUR`).

use std::borrow::Cow;

use guest_sdk::{Error, Output, Record, config};
use serde::{Deserialize, Serialize};

/// An incoming event; unknown fields are ignored (projected away).
#[derive(Deserialize)]
pub struct Event<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub user: Cow<'a, str>,
    #[serde(borrow)]
    pub action: Cow<'a, str>,
    pub amount: f64,
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
}

/// The event as it leaves the pipeline.
#[derive(Serialize)]
pub struct Enriched<'a> {
    pub id: &'a str,
    pub user: &'a str,
    pub action: &'a str,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub day: &'a str,
    pub source: &'a str,
}

/// The transform: one event in, one enriched event out (keyed by user).
pub fn transform(record: Record) -> Result<Output, Error> {
    let event: Event = record.json()?;
    let enriched = Enriched {
        id: &event.id,
        user: &event.user,
        action: &event.action,
        amount_cents: (event.amount * 100.0).round() as i64,
        currency: config().get("currency").unwrap_or("EUR"),
        day: event
            .ts
            .get(..10)
            .ok_or_else(|| Error::domain("`ts` is not an RFC 3339 time"))?,
        source: record.attribute("source").unwrap_or("unknown"),
    };
    Ok(Output::json(&enriched)?.with_key(event.user.as_bytes()))
}

guest_sdk::export_transform!(transform);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enriches_and_projects() {
        let payload = br#"{"id":"e1","user":"ann","action":"buy","amount":12.345,"ts":"2026-11-24T13:00:00Z","extra":1}"#;
        let attributes = [("source", "kinesis")];
        let out =
            transform(Record::new(payload).with_attributes(&attributes)).expect("valid event");
        let value: serde_json::Value = serde_json::from_slice(out.payload()).expect("json");
        assert_eq!(value["amount_cents"], 1235);
        assert_eq!(value["day"], "2026-11-24");
        assert_eq!(value["source"], "kinesis");
        assert!(value.get("extra").is_none());
        assert_eq!(out.key(), Some(&b"ann"[..]));
    }

    #[test]
    fn bad_json_is_a_domain_error() {
        let err = transform(Record::new(b"{not json")).expect_err("must fail");
        assert!(matches!(err, Error::Domain(_)), "{err}");
    }
}
