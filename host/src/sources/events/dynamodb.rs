//! DynamoDB Streams events: one record per change (`Records[].dynamodb`), its payload
//! `{"eventName","keys","newImage","oldImage"}`, its key the item's keys, ordered within
//! its stream. Its own file so that what a change becomes is read and changed in one
//! place, with how its images are written.
//!
//! Images become plain JSON, exactly: numbers keep the digits DynamoDB sent (no trip
//! through `f64`, so big ids and decimals arrive unchanged), binary values are base64
//! strings, sets are arrays, maps keep their keys in sorted order.

use std::collections::HashMap;

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use base64::Engine as _;
use serde_dynamo::AttributeValue;

use super::{EventError, EventItem, EventJson, EventKind, arn_name, parse, record};

/// The records of a DynamoDB Streams event: each change, its images as exact JSON.
pub(super) fn decode(event: EventJson<'_>) -> Result<Vec<EventItem>, EventError> {
    let event: DynamoDbEvent = parse(EventKind::Dynamodb, event)?;
    let mut items = Vec::new();
    for (index, r) in event.records.into_iter().enumerate() {
        let change = r.change;
        let id = change
            .sequence_number
            .clone()
            .unwrap_or_else(|| index.to_string());
        let attributes = vec![
            ("source", "dynamodb".into()),
            ("table", arn_name(r.event_source_arn.as_deref(), "table/")),
            ("event-name", r.event_name.clone()),
            ("sequence-number", id.clone()),
            (
                "arrival-time",
                change.approximate_creation_date_time.to_rfc3339(),
            ),
        ];
        // Built as text, so numbers keep DynamoDB's digits (see `image_json`).
        let mut payload = Vec::with_capacity(256);
        payload.extend_from_slice(b"{\"eventName\":");
        let _ = serde_json::to_writer(&mut payload, &r.event_name);
        payload.extend_from_slice(b",\"keys\":");
        let keys_start = payload.len();
        image_json(change.keys.inner(), &mut payload);
        let key = payload[keys_start..].to_vec();
        payload.extend_from_slice(b",\"newImage\":");
        image_json(change.new_image.inner(), &mut payload);
        payload.extend_from_slice(b",\"oldImage\":");
        image_json(change.old_image.inner(), &mut payload);
        payload.push(b'}');
        let item = Ok(record(payload, Some(key.into()), attributes));
        // A batch holds the records of one shard of the stream, in order.
        let group = Some(r.event_source_arn.clone().unwrap_or_default());
        let table = arn_name(r.event_source_arn.as_deref(), "table/");
        // Without an event id, the sequence number (unique in its shard); without
        // either, none: an index in the batch would collide across batches.
        let position = if r.event_id.is_empty() {
            change.sequence_number.clone()
        } else {
            Some(r.event_id.clone())
        };
        items.push(EventItem {
            first_position: None,
            position: position.map(|p| format!("dynamodb/{table}/{p}")),
            id,
            group,
            delivered: Vec::new(),
            decoded: item,
        });
    }
    Ok(items)
}

/// Writes `image` as a JSON object into `out`.
fn image_json(image: &HashMap<String, AttributeValue>, out: &mut Vec<u8>) {
    let mut names: Vec<&String> = image.keys().collect();
    names.sort();
    out.push(b'{');
    for (i, name) in names.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(name, out);
        out.push(b':');
        if let Some(value) = image.get(name) {
            value_json(value, out);
        }
    }
    out.push(b'}');
}

fn value_json(value: &AttributeValue, out: &mut Vec<u8>) {
    match value {
        AttributeValue::N(number) => number_json(number, out),
        AttributeValue::S(text) => string(text, out),
        AttributeValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        AttributeValue::Null(_) => out.extend_from_slice(b"null"),
        AttributeValue::B(bytes) => string(&base64(bytes), out),
        AttributeValue::M(map) => image_json(map, out),
        AttributeValue::L(list) => array(list.iter(), out, value_json),
        AttributeValue::Ss(texts) => array(texts.iter(), out, |t, out| string(t, out)),
        AttributeValue::Ns(numbers) => array(numbers.iter(), out, |n, out| number_json(n, out)),
        AttributeValue::Bs(blobs) => array(blobs.iter(), out, |b, out| string(&base64(b), out)),
    }
}

/// A DynamoDB number as a JSON number with the same digits; one JSON cannot spell
/// (`+1`, `.5`) becomes a string of the same text.
fn number_json(number: &str, out: &mut Vec<u8>) {
    let text = number.trim();
    let is_json_number = !text.is_empty()
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'e' | b'E' | b'+'));
    if is_json_number {
        out.extend_from_slice(text.as_bytes());
    } else {
        string(number, out);
    }
}

fn array<T>(items: impl Iterator<Item = T>, out: &mut Vec<u8>, write: impl Fn(T, &mut Vec<u8>)) {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(item, out);
    }
    out.push(b']');
}

fn string(text: &str, out: &mut Vec<u8>) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::sources::events::tests::decode_fixture;

    #[test]
    fn dynamodb_images_become_plain_json() {
        let event = decode_fixture("dynamodb-event.json");
        assert_eq!(event.kind, EventKind::Dynamodb);
        let modify = event.items[1].decoded.as_ref().expect("ok");
        let payload: Value = serde_json::from_slice(&modify.payload).expect("json");
        assert_eq!(payload["eventName"], "MODIFY");
        assert_eq!(payload["newImage"]["Message"], "This item has changed");
        assert_eq!(payload["oldImage"]["Id"], 101);
        assert_eq!(modify.attribute("table"), Some("ExampleTableWithStream"));
        assert_eq!(event.items[1].id, "4421584500000000017450439092");
    }

    #[test]
    fn numbers_keep_their_digits() {
        let image: HashMap<String, AttributeValue> = [
            (
                "id".to_owned(),
                AttributeValue::N("12345678901234567890123".into()),
            ),
            (
                "price".to_owned(),
                AttributeValue::N("0.1000000000000000055511151231257827".into()),
            ),
            ("odd".to_owned(), AttributeValue::N("+5".into())),
            ("blob".to_owned(), AttributeValue::B(vec![0xff, 0])),
            (
                "tags".to_owned(),
                AttributeValue::Ns(vec!["1".into(), "2.50".into()]),
            ),
            (
                "nested".to_owned(),
                AttributeValue::M(
                    [
                        ("b".to_owned(), AttributeValue::Null(true)),
                        ("a".to_owned(), AttributeValue::Bool(true)),
                    ]
                    .into_iter()
                    .collect(),
                ),
            ),
        ]
        .into_iter()
        .collect();
        let mut out = Vec::new();
        image_json(&image, &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            r#"{"blob":"/wA=","id":12345678901234567890123,"nested":{"a":true,"b":null},"odd":"+5","price":0.1000000000000000055511151231257827,"tags":[1,2.50]}"#
        );
    }
}
