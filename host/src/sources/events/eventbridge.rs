//! EventBridge events, a Lambda function as a rule's target: one record, its `detail`
//! the payload, its `source`, `detail-type` and `id` attributes. EventBridge invokes
//! asynchronously and retries the event on an error: it has no partial answer. S3's
//! "Object Created" names an object to read (`envelopes.rs`). Its own file so that what
//! an EventBridge event becomes is read and changed in one place.

use serde_json::Value;

use super::{EventError, EventItem, record};

/// The one record of an EventBridge event.
pub(super) fn decode(event: Value) -> Result<Vec<EventItem>, EventError> {
    let text = |name: &str| {
        event
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (id, source, detail_type, time) = (
        text("id"),
        text("source"),
        text("detail-type"),
        text("time"),
    );
    let Some(detail) = event.get("detail") else {
        return Err(EventError {
            expected: "EventBridge".into(),
            reason: "an event without `detail`".into(),
        });
    };
    let payload = match detail {
        Value::String(text) => text.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    };
    let attributes = vec![
        ("source", "eventbridge".to_owned()),
        ("event-source", source),
        ("detail-type", detail_type),
        ("event-id", id.clone()),
        ("arrival-time", time),
    ];
    Ok(vec![EventItem {
        first_position: None,
        position: (!id.is_empty()).then(|| format!("eventbridge/{id}")),
        id,
        group: None,
        delivered: Vec::new(),
        decoded: Ok(record(payload, None, attributes)),
    }])
}

#[cfg(test)]
mod tests {
    use crate::sources::events::EventKind;
    use crate::sources::events::tests::decode_fixture;

    #[test]
    fn an_eventbridge_event_is_its_detail() {
        let event = decode_fixture("eventbridge-event.json");
        assert_eq!(event.kind, EventKind::EventBridge);
        let item = &event.items[0];
        assert_eq!(
            item.position.as_deref(),
            Some("eventbridge/53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa")
        );
        let record = item.decoded.as_ref().expect("decoded");
        let detail: serde_json::Value = serde_json::from_slice(&record.payload).expect("JSON");
        assert_eq!(detail["id"], "e1", "{record:?}");
        assert_eq!(record.attribute("detail-type"), Some("Order Placed"));
        assert_eq!(record.attribute("event-source"), Some("com.example.orders"));
        crate::record::assert_shared_names(record);
    }
}
