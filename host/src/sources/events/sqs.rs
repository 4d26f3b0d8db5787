//! SQS events: one record per message (`Records[].body`), standard or FIFO; a FIFO
//! message's group is its record's key and its ordering group. Its own file so that what
//! an SQS message becomes (attributes, identity, group) is read and changed in one place.

use aws_lambda_events::event::sqs::SqsEvent;

use super::{EventError, EventItem, EventJson, EventKind, arn_name, parse, record};

/// The records of an SQS event: each message's body, as it is.
pub(super) fn decode(event: EventJson<'_>) -> Result<Vec<EventItem>, EventError> {
    let event: SqsEvent = parse(EventKind::Sqs, event)?;
    let mut items = Vec::new();
    for (index, m) in event.records.into_iter().enumerate() {
        let id = m.message_id.clone().unwrap_or_else(|| index.to_string());
        let mut attributes = vec![
            ("source", "sqs".into()),
            ("queue", arn_name(m.event_source_arn.as_deref(), ":")),
            ("message-id", id.clone()),
        ];
        if let Some(sent) = m
            .attributes
            .get("SentTimestamp")
            .and_then(|t| t.parse::<u64>().ok())
        {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(sent);
            attributes.push((
                "arrival-time",
                humantime::format_rfc3339_millis(time).to_string(),
            ));
        }
        if let Some(count) = m.attributes.get("ApproximateReceiveCount") {
            attributes.push(("receive-count", count.clone()));
        }
        // FIFO queues keep order within a message group; standard queues have none.
        let group = m.attributes.get("MessageGroupId").cloned();
        let key = group.clone().map(|g| bytes::Bytes::from(g.into_bytes()));
        let body = m.body.unwrap_or_default().into_bytes();
        let queue = arn_name(m.event_source_arn.as_deref(), ":");
        items.push(EventItem {
            first_position: None,
            position: m.message_id.map(|message| format!("sqs/{queue}/{message}")),
            id,
            group,
            delivered: Vec::new(),
            decoded: Ok(record(body, key, attributes)),
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use crate::sources::events::EventKind;
    use crate::sources::events::tests::decode_fixture;

    #[test]
    fn sqs_fifo_group_becomes_the_key() {
        let event = decode_fixture("sqs-event.json");
        assert_eq!(event.kind, EventKind::Sqs);
        assert_eq!(event.items[0].id, "059f36b4-87a3-44ab-83d2-661975830a7d");
        let record = event.items[0].decoded.as_ref().expect("ok");
        assert_eq!(record.key.as_deref(), Some(&b"ann"[..]));
        assert_eq!(record.attribute("queue"), Some("orders.fifo"));
        assert_eq!(
            record.attribute("arrival-time"),
            Some("2025-11-25T13:00:00.183Z")
        );
        assert_eq!(event.items[1].decoded.as_ref().expect("ok").key, None);
    }
}
