//! The kind of an invocation's event, told from its text: the few top-level fields
//! [`super::detect`] looks at, read while the rest (a thousand records) is skipped, so
//! the event is then parsed once, straight into its kind's types.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;

use super::{EventError, EventKind, detect};

/// The kind of the event whose JSON is `text`: what [`detect`] says of it as a `Value`.
pub fn detect_text(text: &str) -> Result<EventKind, EventError> {
    // An object the probe reads; anything else (an array: a direct invocation or a
    // pipe's batch; an odd shape) is read as a `Value`, and told apart as before.
    if text.trim_start().starts_with('{')
        && let Ok(probe) = serde_json::from_str::<Probe>(text)
    {
        return detect(&probe.as_value());
    }
    let event: Value = serde_json::from_str(text).map_err(|e| EventError {
        expected: "known AWS".into(),
        reason: format!("not JSON: {e}"),
    })?;
    detect(&event)
}

/// The top-level fields [`detect`] reads. A field given twice fails the derive (a
/// `Value` keeps the last), as does a shape [`FirstSource`] does not read: then the
/// text is read as a `Value` instead.
#[derive(Deserialize)]
struct Probe {
    #[serde(default, rename = "deliveryStreamArn")]
    delivery_stream_arn: Present,
    #[serde(default, rename = "invocationId")]
    invocation_id: Present,
    #[serde(default, rename = "eventSource")]
    event_source: Option<Value>,
    #[serde(default, rename = "detail-type")]
    detail_type: Present,
    #[serde(default)]
    detail: Present,
    #[serde(default, rename = "Records")]
    records: FirstSource,
}

impl Probe {
    /// The event as [`detect`] sees it: these fields, with stand-ins for their values.
    fn as_value(&self) -> Value {
        let mut event = serde_json::Map::new();
        let present = [
            ("deliveryStreamArn", self.delivery_stream_arn),
            ("invocationId", self.invocation_id),
            ("detail-type", self.detail_type),
            ("detail", self.detail),
        ];
        for (name, Present(here)) in present {
            if here {
                event.insert(name.into(), Value::Null);
            }
        }
        if let Some(source) = &self.event_source {
            event.insert("eventSource".into(), source.clone());
        }
        if let FirstSource(Some(first)) = &self.records {
            event.insert("Records".into(), Value::Array(vec![first.clone()]));
        }
        Value::Object(event)
    }
}

/// Whether a field is there, whatever its value (`null` included, as `Value::get` says).
#[derive(Debug, Default, Clone, Copy)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Self(true))
    }
}

/// `Records[0]`'s `eventSource` and `EventSource` ([`SourceFields`]); `None` when
/// `Records` is an empty array. Any other shape (`Records` not an array, its first
/// element not an object) fails the probe, and [`detect`] reads the event as a `Value`.
#[derive(Debug, Default)]
struct FirstSource(Option<Value>);

impl<'de> Deserialize<'de> for FirstSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(FirstSourceVisitor)
    }
}

struct FirstSourceVisitor;

impl<'de> Visitor<'de> for FirstSourceVisitor {
    type Value = FirstSource;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstSource, A::Error> {
        let first = seq.next_element::<SourceFields>()?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(FirstSource(first.map(SourceFields::into_value)))
    }
}

/// An element's `eventSource` and `EventSource`, each kept when it is there, `null`
/// included (a `null` `eventSource` names no source, and `EventSource` is not asked).
/// A field given twice, or an element that is not an object, fails the probe.
#[derive(Deserialize)]
struct SourceFields {
    #[serde(default, rename = "eventSource", deserialize_with = "present")]
    event_source: Option<Value>,
    #[serde(default, rename = "EventSource", deserialize_with = "present")]
    event_source_capitalized: Option<Value>,
}

impl SourceFields {
    /// The two fields as an object of those there are.
    fn into_value(self) -> Value {
        let fields = [
            ("eventSource", self.event_source),
            ("EventSource", self.event_source_capitalized),
        ];
        let fields = fields
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), value?)));
        Value::Object(fields.collect())
    }
}

/// A field's value, `null` included (`Option`'s own reading makes `null` absent).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::events::tests::fixture;

    /// `detect_text` and `detect` agree: the kind, or an error (its words may differ).
    fn agree(text: &str) {
        let value: Value = serde_json::from_str(text).expect("JSON");
        match (detect_text(text), detect(&value)) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{text}: from text {a:?}, from a Value {b:?}"),
        }
    }

    #[test]
    fn every_fixture_is_told_apart_from_its_text_as_from_its_value() {
        for kind in EventKind::ALL {
            let (format, _) = kind.input_format();
            let text = serde_json::to_string(&fixture(&format!("{format}.json"))).expect("json");
            assert_eq!(detect_text(&text).expect("known"), kind, "{format}");
        }
    }

    #[test]
    fn odd_shapes_are_told_apart_as_a_value_would_be() {
        for text in [
            r#"{"deliveryStreamArn": null, "records": []}"#,
            r#"{"invocationId": 5}"#,
            r#"{"eventSource": "aws:kafka", "records": {}}"#,
            r#"{"eventSource": 7}"#,
            r#"{"detail-type": "x", "detail": null}"#,
            r#"{"detail-type": "x"}"#,
            r#"{"Records": [{"eventSource": "aws:sqs", "body": "a"}, 5, "x"]}"#,
            r#"{"Records": [{"EventSource": "aws:sns"}]}"#,
            r#"{"Records": [{"eventSource": null, "EventSource": "aws:sns"}]}"#,
            r#"{"Records": [{"eventSource": "aws:sqs", "eventSource": "aws:kinesis"}]}"#,
            r#"{"Records": [5]}"#,
            r#"{"Records": []}"#,
            r#"{"Records": {"eventSource": "aws:sqs"}}"#,
            r#"{"Records": "aws:sqs"}"#,
            r#"{"Records": [[{"eventSource": "aws:sqs"}]]}"#,
            r#"{"eventSource": "aws:s3", "eventSource": "aws:kafka"}"#,
            r#"{"hello": 1}"#,
            r#"  {"Records": [{"eventSource": "aws:dynamodb"}]}"#,
            r#"[{"eventSource": "aws:sqs", "body": "a"}]"#,
            r#"[1, 2]"#,
            r#""text""#,
        ] {
            agree(text);
        }
    }

    #[test]
    fn text_that_is_not_json_is_an_error_saying_so() {
        let err = detect_text("{\"Records\": [").expect_err("not JSON");
        assert!(err.to_string().contains("not JSON"), "{err}");
    }
}
