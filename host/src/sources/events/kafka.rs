//! Kafka events, from Amazon MSK (`aws:kafka`) and self-managed clusters
//! (`SelfManagedKafka`): one record per Kafka record, grouped by topic-partition and in
//! offset order within it, its key and value base64-decoded, its headers attributes. Its
//! own file so that what a Kafka record becomes (attributes, identity, group) is read and
//! changed in one place.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::{EventError, EventItem, EventJson, EventKind, arn_name, parse};
use crate::record::{Record, attribute_name};
use crate::sources::Undecodable;

/// A Kafka event as Lambda's Kafka event source mapping sends it. Read by the host's own
/// type: records keyed by topic-partition in a sorted map (the answer and the logs list
/// partitions in one order), and a record without headers is still a record.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KafkaEvent {
    #[serde(default)]
    event_source_arn: Option<String>,
    #[serde(default)]
    bootstrap_servers: Option<String>,
    records: BTreeMap<String, Vec<KafkaRecord>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KafkaRecord {
    topic: String,
    #[serde(deserialize_with = "number_or_text")]
    partition: i64,
    #[serde(deserialize_with = "number_or_text")]
    offset: i64,
    // What only this record is read by is read leniently, as JSON: a field of another
    // shape makes the record undecodable, not the whole event (which Kafka would retry
    // without end, the partition stalled behind it).
    #[serde(default)]
    timestamp: Value,
    #[serde(default)]
    timestamp_type: Option<String>,
    #[serde(default)]
    key: Value,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    headers: Vec<BTreeMap<String, Value>>,
}

/// A number Lambda writes as a number and Pipes, for some fields, as text.
fn number_or_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(i64),
        Text(String),
    }
    match Either::deserialize(deserializer)? {
        Either::Number(n) => Ok(n),
        Either::Text(text) => text.parse().map_err(serde::de::Error::custom),
    }
}

/// The records of a Kafka event; one whose key, value or header does not decode is
/// [`Undecodable`], its text kept.
pub(super) fn decode(event: EventJson<'_>) -> Result<Vec<EventItem>, EventError> {
    let event: KafkaEvent = parse(EventKind::Kafka, event)?;
    let cluster = cluster_name(&event);
    let mut items = Vec::new();
    for (partition_name, records) in event.records {
        for r in records {
            let position = format!("kafka/{cluster}/{}/{}/{}", r.topic, r.partition, r.offset);
            let id = format!("{}-{}@{}", r.topic, r.partition, r.offset);
            items.push(EventItem {
                first_position: None,
                position: Some(position),
                id,
                group: Some(partition_name.clone()),
                delivered: Vec::new(),
                decoded: record_of(r, &cluster),
            });
        }
    }
    Ok(items)
}

/// What names the cluster in identities: an MSK cluster's name (its ARN's), else the
/// first of a self-managed cluster's bootstrap servers in sorted order (the same
/// whichever order Lambda lists them in).
fn cluster_name(event: &KafkaEvent) -> String {
    if let Some(arn) = event.event_source_arn.as_deref().filter(|a| !a.is_empty()) {
        return arn_name(Some(arn), ":cluster/");
    }
    let mut servers: Vec<&str> = event
        .bootstrap_servers
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    servers.sort_unstable();
    servers.first().copied().unwrap_or("kafka").to_owned()
}

fn record_of(r: KafkaRecord, cluster: &str) -> Result<Record, Undecodable> {
    let mut attributes: Vec<(crate::record::AttributeName, String)> = vec![
        ("source".into(), "kafka".into()),
        ("cluster".into(), cluster.to_owned()),
        ("topic".into(), r.topic.clone()),
        ("partition".into(), r.partition.to_string()),
        ("offset".into(), r.offset.to_string()),
    ];
    let millis = match &r.timestamp {
        Value::Number(n) => n.as_u64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    };
    if let Some(time) =
        millis.map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
    {
        attributes.push((
            "timestamp".into(),
            humantime::format_rfc3339_millis(time).to_string(),
        ));
    }
    if let Some(kind) = r.timestamp_type.filter(|t| !t.is_empty()) {
        attributes.push(("timestamp-type".into(), kind));
    }
    if r.value.is_null() {
        // A tombstone: in a compacted topic, "delete this key".
        attributes.push(("tombstone".into(), "true".into()));
    }
    let mut problems = Vec::new();
    for (name, bytes) in r.headers.iter().flat_map(|h| h.iter()) {
        match header_bytes(bytes) {
            Some(bytes) => attributes.push(header(name, bytes)),
            None => problems.push(format!("header {name:?} is not an array of bytes")),
        }
    }
    let base64 = base64::engine::general_purpose::STANDARD;
    let key = match &r.key {
        Value::Null => None,
        Value::String(text) => match base64.decode(text) {
            Ok(key) => Some(key.into()),
            Err(e) => {
                problems.push(format!("key is not base64: {e}"));
                None
            }
        },
        other => {
            problems.push(format!("key is not a base64 string: {other}"));
            None
        }
    };
    let payload = match r.value {
        Value::Null => Vec::new(),
        Value::String(text) => match base64.decode(&text) {
            Ok(payload) => payload,
            Err(e) => {
                problems.push(format!("value is not base64: {e}"));
                text.into_bytes()
            }
        },
        other => {
            problems.push("value is not a base64 string".into());
            other.to_string().into_bytes()
        }
    };
    for (name, _) in &mut attributes {
        *name = attribute_name(name.to_string());
    }
    let record = Record {
        key,
        payload: payload.into(),
        attributes,
    };
    if problems.is_empty() {
        Ok(record)
    } else {
        Err(Undecodable::decode(record, problems.join("; ")))
    }
}

/// A header's bytes as Lambda lists them (Java's signed bytes; unsigned ones read too).
fn header_bytes(value: &Value) -> Option<Vec<u8>> {
    value
        .as_array()?
        .iter()
        .map(|v| {
            let n = v.as_i64()?;
            i8::try_from(n)
                .map(|b| b as u8)
                .or_else(|_| u8::try_from(n))
                .ok()
        })
        .collect()
}

/// A header as an attribute: `header.NAME` with its text, or `header-base64.NAME` with
/// its bytes in base64 when they are not UTF-8.
fn header(name: &str, bytes: Vec<u8>) -> (crate::record::AttributeName, String) {
    match String::from_utf8(bytes) {
        Ok(text) => (format!("header.{name}").into(), text),
        Err(bytes) => (
            format!("header-base64.{name}").into(),
            base64::engine::general_purpose::STANDARD.encode(bytes.into_bytes()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::sources::events::tests::decode_fixture;
    use crate::sources::events::{self, EventKind};

    #[test]
    fn kafka_records_are_grouped_by_partition_in_offset_order_and_decoded() {
        let event = decode_fixture("kafka-event.json");
        assert_eq!(event.kind, EventKind::Kafka);
        let seen: Vec<(&str, Option<&str>, &str)> = event
            .items
            .iter()
            .map(|i| {
                (
                    i.position.as_deref().expect("a position"),
                    i.group.as_deref(),
                    i.id.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "kafka/orders-cluster/orders/0/41",
                    Some("orders-0"),
                    "orders-0@41"
                ),
                (
                    "kafka/orders-cluster/orders/0/42",
                    Some("orders-0"),
                    "orders-0@42"
                ),
                (
                    "kafka/orders-cluster/orders/1/7",
                    Some("orders-1"),
                    "orders-1@7"
                ),
            ]
        );
        let first = event.items[0].decoded.as_ref().expect("decoded");
        assert!(first.payload.starts_with(br#"{"id":"o1""#), "{first:?}");
        assert_eq!(first.key.as_deref(), Some(&b"ann"[..]));
        assert_eq!(first.attribute("header.trace"), Some("abc"));
        assert_eq!(
            first.attribute("timestamp"),
            Some("2025-11-25T13:00:00.183Z")
        );
        let binary = event.items[1].decoded.as_ref().expect("decoded");
        assert_eq!(binary.attribute("header-base64.sig"), Some("/wA="));
        let tombstone = event.items[2].decoded.as_ref().expect("decoded");
        assert_eq!(
            (tombstone.payload.len(), tombstone.attribute("tombstone")),
            (0, Some("true"))
        );
    }

    #[test]
    fn a_record_of_another_shape_is_undecodable_alone() {
        let event = json!({
            "eventSource": "aws:kafka", "eventSourceArn": "arn:aws:kafka:us-east-1:1:cluster/c/u",
            "records": {"t-0": [
                {"topic": "t", "partition": 0, "offset": 1, "value": "b2s=",
                 "headers": [{"h": "not bytes"}]},
                {"topic": "t", "partition": 0, "offset": 2, "value": 7, "timestamp": "x"},
                {"topic": "t", "partition": 0, "offset": 3, "value": "b2s=", "key": null}
            ]}
        });
        let decoded = events::decode(EventKind::Kafka, event).expect("the event stands");
        let reasons: Vec<String> = decoded
            .items
            .iter()
            .map(|i| match &i.decoded {
                Ok(_) => "ok".into(),
                Err(bad) => bad.reason.clone(),
            })
            .collect();
        assert!(reasons[0].contains("header \"h\""), "{reasons:?}");
        assert!(
            reasons[1].contains("value is not a base64 string"),
            "{reasons:?}"
        );
        assert_eq!(reasons[2], "ok");
    }

    #[test]
    fn a_self_managed_cluster_is_named_by_its_first_bootstrap_server() {
        let event = json!({
            "eventSource": "SelfManagedKafka",
            "bootstrapServers": "kafka-2.internal:9092, kafka-1.internal:9092",
            "records": {"t-0": [{"topic": "t", "partition": 0, "offset": 3,
                                 "value": "bm90IGJhc2U2NA==!!"}]}
        });
        assert_eq!(events::detect(&event).expect("known"), EventKind::Kafka);
        let decoded = events::decode(EventKind::Kafka, event).expect("an event");
        assert_eq!(
            decoded.items[0].position.as_deref(),
            Some("kafka/kafka-1.internal:9092/t/0/3")
        );
        let bad = decoded.items[0].decoded.as_ref().expect_err("bad base64");
        assert!(bad.reason.contains("value is not base64"), "{}", bad.reason);
        assert_eq!(
            &bad.record.payload[..],
            b"bm90IGJhc2U2NA==!!",
            "the text kept"
        );
    }
}
