//! SNS events (`Records[].Sns`), a Lambda function subscribed to a topic: one record per
//! notification, its `Message` the payload and its message attributes the record's.
//! SNS invokes asynchronously and retries the whole event on an error: it has no
//! partial answer. Its own file so that what an SNS notification becomes is read and
//! changed in one place.

use serde::Deserialize;

use super::envelopes::SnsNotification;
use super::{EventError, EventItem, EventJson, EventKind, arn_name, parse};
use crate::record::Record;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsEvent {
    records: Vec<SnsRecord>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsRecord {
    sns: SnsNotification,
}

/// The records of an SNS event: each notification's message, as it is.
pub(super) fn decode(event: EventJson<'_>) -> Result<Vec<EventItem>, EventError> {
    let event: SnsEvent = parse(EventKind::Sns, event)?;
    let mut items = Vec::new();
    for (index, r) in event.records.into_iter().enumerate() {
        let notification = r.sns;
        let topic = arn_name(Some(&notification.topic_arn), ":");
        let id = notification
            .message_id
            .clone()
            .unwrap_or_else(|| index.to_string());
        let mut attributes = vec![("source".into(), "sns".to_owned())];
        attributes.extend(notification.attributes());
        items.push(EventItem {
            first_position: None,
            position: notification
                .message_id
                .as_ref()
                .map(|message| format!("sns/{topic}/{message}")),
            id,
            group: None,
            delivered: Vec::new(),
            decoded: Ok(Record {
                key: None,
                payload: notification.message.into_bytes().into(),
                attributes,
            }),
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use crate::sources::events::EventKind;
    use crate::sources::events::tests::decode_fixture;

    #[test]
    fn an_sns_notification_is_its_message() {
        let event = decode_fixture("sns-event.json");
        assert_eq!(event.kind, EventKind::Sns);
        let item = &event.items[0];
        assert_eq!(
            item.position.as_deref(),
            Some("sns/orders/95df01b4-ee98-5cb9-9903-4c221d41eb5e")
        );
        let record = item.decoded.as_ref().expect("decoded");
        assert!(record.payload.starts_with(br#"{"id":"s1""#));
        assert_eq!(record.attribute("message-attribute.region"), Some("eu"));
        crate::record::assert_shared_names(&crate::record::Record {
            attributes: record
                .attributes
                .iter()
                .filter(|(n, _)| !n.starts_with("message-attribute"))
                .cloned()
                .collect(),
            ..Default::default()
        });
    }
}
