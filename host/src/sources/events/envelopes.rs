//! Envelopes: what a message carries when it is not the record itself. The usual
//! fan-out puts one message inside another (S3 -> SNS -> SQS -> Lambda), and the host
//! opens them, so the plugin sees the record and not its wrapping:
//!
//! - an SQS message whose body is an SNS notification (a subscription without raw
//!   delivery) becomes its `Message`, with the SNS message attributes;
//! - an SQS or SNS message, or an EventBridge event, that is an S3 notification (or
//!   EventBridge's "Object Created") is not a record but the objects it names: it is
//!   [`Carried`], the host reads the objects and settles the message by their records;
//!   S3's `s3:TestEvent` names none.
//!
//! Detection is by shape, on by default; `PIPELINE_ENVELOPES=off` hands every body to
//! the plugin as it is.

use serde::Deserialize;
use serde_json::Value;

use super::{DecodedEvent, EventItem, EventKind, ObjectRef, arn_name};
use crate::record::{AttributeName, Record, attribute_name};

/// A message of an event that carries S3 objects rather than a record: where it sat
/// among the event's items, what the event source knows it by, and the objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Carried {
    /// How many of the event's items come before it.
    pub at: usize,
    /// The message's id in its event source (what the answer names).
    pub id: String,
    /// Its ordering group (a FIFO message group), if any.
    pub group: Option<String>,
    /// The objects it names, each pinned to its version (none for a test event).
    pub objects: Vec<ObjectRef>,
}

/// An SNS notification, as SNS writes it into an SQS message (raw delivery off) and
/// into the `Sns` of a Lambda SNS event. Read leniently: only what the host uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SnsNotification {
    #[serde(rename = "Type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub message_id: Option<String>,
    pub topic_arn: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub message: String,
    #[serde(default)]
    pub message_attributes: std::collections::BTreeMap<String, SnsAttribute>,
}

/// One SNS message attribute: `String`, `String.Array`, `Number` or `Binary` (base64).
#[derive(Debug, Deserialize)]
pub(super) struct SnsAttribute {
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(rename = "Value", default)]
    value: String,
}

impl SnsNotification {
    /// The attributes a record from this notification gets: its topic, SNS message id
    /// and subject, and each message attribute as `message-attribute.NAME` (a `Binary`
    /// one as `message-attribute-base64.NAME`, its value the base64 SNS sends).
    pub(super) fn attributes(&self) -> Vec<(AttributeName, String)> {
        let mut attributes = vec![(
            AttributeName::from("topic"),
            arn_name(Some(&self.topic_arn), ":"),
        )];
        if let Some(id) = &self.message_id {
            attributes.push(("sns-message-id".into(), id.clone()));
        }
        if let Some(subject) = self.subject.as_ref().filter(|s| !s.is_empty()) {
            attributes.push(("subject".into(), subject.clone()));
        }
        for (name, attribute) in &self.message_attributes {
            let prefix = if attribute.kind == "Binary" {
                "message-attribute-base64"
            } else {
                "message-attribute"
            };
            attributes.push((format!("{prefix}.{name}").into(), attribute.value.clone()));
        }
        attributes
            .into_iter()
            .map(|(name, value)| (attribute_name(name.into_owned()), value))
            .collect()
    }
}

/// `body` as an SNS notification, if it is one.
fn sns_notification(body: &[u8]) -> Option<SnsNotification> {
    // Most bodies are not: look for the fields before parsing.
    if !body.starts_with(b"{") || !contains(body, b"\"TopicArn\"") {
        return None;
    }
    let notification: SnsNotification = serde_json::from_slice(body).ok()?;
    (notification.kind.as_deref() == Some("Notification")).then_some(notification)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The objects `body` names when it is an S3 notification, S3's test event (none), or
/// EventBridge's "Object Created"; `None` when it is none of these, an error when it is
/// an S3 notification that cannot be read.
pub(super) fn objects_named(body: &[u8]) -> Option<Result<Vec<ObjectRef>, String>> {
    if !body.starts_with(b"{")
        || !(contains(body, b"aws:s3")
            || contains(body, b"aws.s3")
            || contains(body, b"s3:TestEvent"))
    {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        tracing::info!(
            bucket = value
                .get("Bucket")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default(),
            "S3's test event: no object to read"
        );
        return Some(Ok(Vec::new()));
    }
    if super::detect(&value).ok() == Some(EventKind::S3) {
        return Some(
            super::s3::decode(super::EventJson::Value(&value))
                .map_err(|e| format!("the message is an S3 notification that cannot be read: {e}")),
        );
    }
    object_created(&value).map(|object| Ok(vec![object]))
}

/// The object an EventBridge "Object Created" event from S3 names.
pub(super) fn object_created(event: &Value) -> Option<ObjectRef> {
    if event.get("source").and_then(Value::as_str) != Some("aws.s3")
        || event.get("detail-type").and_then(Value::as_str) != Some("Object Created")
    {
        return None;
    }
    object_in_detail(event.get("detail")?)
}

/// The object of an "Object Created" event's `detail`. Its key is taken as it is:
/// unlike an S3 notification's, EventBridge's is not documented as URL-encoded.
fn object_in_detail(detail: &Value) -> Option<ObjectRef> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let object = detail.get("object")?;
    Some(ObjectRef {
        bucket: text(detail.get("bucket").and_then(|b| b.get("name")))?,
        key: text(object.get("key"))?,
        etag: text(object.get("etag"))
            .map(|etag| etag.trim_matches('"').to_owned())
            .filter(|etag| !etag.is_empty()),
        version_id: text(object.get("version-id"))
            .filter(|version| !version.is_empty() && version != "null"),
    })
}

/// The objects an EventBridge event's record names: its `detail` when the event is S3's
/// "Object Created".
fn objects_of_eventbridge(record: &Record) -> Option<Result<Vec<ObjectRef>, String>> {
    if record.attribute("event-source") != Some("aws.s3")
        || record.attribute("detail-type") != Some("Object Created")
    {
        return None;
    }
    let detail: Value = serde_json::from_slice(&record.payload).ok()?;
    Some(
        object_in_detail(&detail)
            .map(|object| vec![object])
            .ok_or_else(|| {
                "an S3 \"Object Created\" event without a bucket name and object key".to_owned()
            }),
    )
}

impl DecodedEvent {
    /// Opens the envelopes of an SQS, SNS or EventBridge event's messages: an SNS
    /// notification in an SQS message (also one a pipe sends) becomes its message; a
    /// message naming S3 objects moves from the items to [`DecodedEvent::carried`].
    pub(super) fn open_envelopes(&mut self) {
        if !matches!(
            self.kind,
            EventKind::Sqs | EventKind::Sns | EventKind::EventBridge | EventKind::Pipes
        ) {
            return;
        }
        let items = std::mem::take(&mut self.items);
        for mut item in items {
            let Ok(record) = &mut item.decoded else {
                self.items.push(item);
                continue;
            };
            let from_sqs = match self.kind {
                EventKind::Sqs => true,
                EventKind::Pipes => record.attribute("source") == Some("sqs"),
                _ => false,
            };
            if from_sqs && let Some(notification) = sns_notification(&record.payload) {
                unwrap_sns(record, notification);
            }
            if self.kind == EventKind::Pipes {
                // A pipe's answer is its outputs: a message's objects read here would
                // send theirs to no answer. An S3 notification stays the record.
                self.items.push(item);
                continue;
            }
            let objects = if self.kind == EventKind::EventBridge {
                objects_of_eventbridge(record)
            } else {
                objects_named(&record.payload)
            };
            match objects {
                Some(Ok(objects)) => self.carried.push(carried(&item, self.items.len(), objects)),
                Some(Err(reason)) => {
                    let record = std::mem::take(record);
                    item.decoded = Err(crate::sources::Undecodable::decode(record, reason));
                    self.items.push(item);
                }
                None => self.items.push(item),
            }
        }
    }
}

fn carried(item: &EventItem, at: usize, objects: Vec<ObjectRef>) -> Carried {
    Carried {
        at,
        id: item.id.clone(),
        group: item.group.clone(),
        objects,
    }
}

/// `record` (an SQS message's) becomes the notification's message; its own attributes
/// stay, the notification's are added.
fn unwrap_sns(record: &mut Record, notification: SnsNotification) {
    record.attributes.extend(notification.attributes());
    record.payload = notification.message.into_bytes().into();
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::sources::events::{self, EventKind};

    fn sqs_with(bodies: &[String]) -> serde_json::Value {
        let records: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                json!({"messageId": format!("m-{i}"), "body": body, "attributes": {},
                       "messageAttributes": {}, "eventSource": "aws:sqs",
                       "eventSourceARN": "arn:aws:sqs:us-east-1:1:in"})
            })
            .collect();
        json!({ "Records": records })
    }

    fn sns_body(message: &str) -> String {
        json!({
            "Type": "Notification", "MessageId": "sns-1",
            "TopicArn": "arn:aws:sns:us-east-1:1:orders", "Subject": "new order",
            "Message": message, "Timestamp": "2026-11-24T13:00:00.000Z",
            "SignatureVersion": "1", "Signature": "x", "SigningCertURL": "https://x",
            "UnsubscribeURL": "https://x",
            "MessageAttributes": {"region": {"Type": "String", "Value": "eu"},
                                  "blob": {"Type": "Binary", "Value": "AAE="}}
        })
        .to_string()
    }

    fn s3_notification(key: &str) -> String {
        json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                            "eventTime": "2026-11-24T13:00:00.000Z", "userIdentity": {},
                            "requestParameters": {},
                            "s3": {"bucket": {"name": "in"},
                                   "object": {"key": key, "eTag": "e1"}}}]})
        .to_string()
    }

    fn opened(bodies: &[String]) -> events::DecodedEvent {
        events::decode(EventKind::Sqs, sqs_with(bodies)).expect("an event")
    }

    #[test]
    fn an_sns_notification_in_an_sqs_message_becomes_its_message() {
        let decoded = opened(&[sns_body(r#"{"id":1}"#), "plain".into()]);
        let record = decoded.items[0].decoded.as_ref().expect("decoded");
        assert_eq!(&record.payload[..], br#"{"id":1}"#);
        assert_eq!(record.attribute("topic"), Some("orders"));
        assert_eq!(record.attribute("subject"), Some("new order"));
        assert_eq!(record.attribute("message-attribute.region"), Some("eu"));
        assert_eq!(
            record.attribute("message-attribute-base64.blob"),
            Some("AAE=")
        );
        assert_eq!(
            record.attribute("message-id"),
            Some("m-0"),
            "the SQS message's own"
        );
        let plain = decoded.items[1].decoded.as_ref().expect("decoded");
        assert_eq!(&plain.payload[..], b"plain");
    }

    #[test]
    fn s3_notifications_direct_or_through_sns_are_carried_objects() {
        let test_event =
            json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "in"}).to_string();
        let decoded = opened(&[
            "first".into(),
            s3_notification("a+b%3D1.jsonl"),
            sns_body(&s3_notification("c.jsonl")),
            test_event,
            "last".into(),
        ]);
        assert_eq!(decoded.items.len(), 2);
        let carried: Vec<(usize, &str, Vec<&str>)> = decoded
            .carried
            .iter()
            .map(|c| {
                (
                    c.at,
                    c.id.as_str(),
                    c.objects.iter().map(|o| o.key.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            carried,
            [
                (1, "m-1", vec!["a b=1.jsonl"]),
                (1, "m-2", vec!["c.jsonl"]),
                (1, "m-3", vec![]),
            ]
        );
    }

    #[test]
    fn an_eventbridge_object_created_event_names_its_object_as_it_is() {
        let event = json!({
            "version": "0", "id": "e-1", "detail-type": "Object Created", "source": "aws.s3",
            "account": "1", "time": "2026-11-24T13:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:s3:::in"],
            "detail": {"version": "0", "bucket": {"name": "in"},
                       "object": {"key": "raw/a b.jsonl", "size": 5, "etag": "e1",
                                  "version-id": "v1", "sequencer": "1"},
                       "reason": "PutObject"}
        });
        let decoded = opened(&[event.to_string()]);
        let object = &decoded.carried[0].objects[0];
        assert_eq!(
            (
                object.bucket.as_str(),
                object.key.as_str(),
                object.version_id.as_deref()
            ),
            ("in", "raw/a b.jsonl", Some("v1"))
        );
    }

    #[test]
    fn an_s3_notification_that_cannot_be_read_is_dead_lettered_not_handed_on() {
        let broken = json!({"Records": [{"eventSource": "aws:s3", "s3": {}}]}).to_string();
        let decoded = opened(std::slice::from_ref(&broken));
        let failed = decoded.items[0].decoded.as_ref().expect_err("undecodable");
        assert!(
            failed.reason.contains("S3 notification"),
            "{}",
            failed.reason
        );
        assert_eq!(&failed.record.payload[..], broken.as_bytes(), "kept whole");
    }

    #[test]
    fn bodies_that_only_look_like_envelopes_stay_records() {
        let not_sns = json!({"TopicArn": "x", "Message": "m", "Type": "SubscriptionConfirmation"});
        let mentions = json!({"note": "aws:s3 is a word here"});
        let decoded = opened(&[not_sns.to_string(), mentions.to_string()]);
        assert_eq!((decoded.items.len(), decoded.carried.len()), (2, 0));
    }
}
