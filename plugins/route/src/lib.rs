//! Example plugin: a router and fan-out.
//!
//! Sends each event to the destination named after its `action` when the config has
//! `route.<action>=<destination>`, else to the default destination; with `audit=true`
//! every record is also copied to the `audit` destination.

use guest_sdk::{Error, Output, Record, config};
use serde::Deserialize;

#[derive(Deserialize)]
struct Event<'a> {
    action: &'a str,
}

/// The transform: one or two outputs per record.
pub fn transform(record: Record) -> Result<Vec<Output>, Error> {
    let event: Event = record.json()?;
    let config = config();
    let mut primary = Output::new(record.payload()).with_attribute("action", event.action);
    if let Some(destination) = config.get(&format!("route.{}", event.action)) {
        primary = primary.to(destination);
    }
    let mut outputs = vec![primary];
    if config.get("audit") == Some("true") {
        outputs.push(Output::new(record.payload()).to("audit"));
    }
    Ok(outputs)
}

guest_sdk::export_transform!(transform);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrouted_action_goes_to_default() {
        let out = transform(Record::new(br#"{"action":"view"}"#)).expect("valid");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].destination(), None);
        assert_eq!(
            out[0].attributes(),
            &[("action".to_owned(), "view".to_owned())]
        );
    }
}
