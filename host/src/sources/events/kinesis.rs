//! Kinesis Data Streams events: one record per `Records[].kinesis`, its data inflated
//! when it is gzip, its partition key the record's key, ordered within its shard. A KPL
//! aggregate (`kpl.rs`) comes apart into its user records, each an item of its own. Its
//! own file so that what a Kinesis record becomes (attributes, identity, group) is read
//! and changed in one place.

use aws_lambda_events::encodings::Base64Data;
use bytes::Bytes;
use serde::Deserialize;

use super::arrival::Seconds;
use super::{EventError, EventItem, EventJson, EventKind, Inflation, arn_name, parse, record};
use crate::kpl::{self, UserRecord};
use crate::record::FailureKind;
use crate::sources::Undecodable;

/// What one user record of an aggregate is counted as against the event's limit
/// (`max-event-bytes`) besides its data: its identity, attributes and place in the
/// batch. Unpacking multiplies records, so a small event of tiny user records could
/// otherwise take more memory than its bytes say.
const PER_USER_RECORD: usize = 256;

/// A Kinesis event: what of it the host reads (`aws_lambda_events`' type has the
/// arrival time `arrival.rs` replaces, and fields nothing reads).
#[derive(Deserialize)]
struct KinesisEvent {
    #[serde(rename = "Records")]
    records: Vec<KinesisEventRecord>,
}

#[derive(Deserialize)]
struct KinesisEventRecord {
    #[serde(default, rename = "eventID")]
    event_id: Option<String>,
    #[serde(default, rename = "eventSourceARN")]
    event_source_arn: Option<String>,
    kinesis: KinesisRecord,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KinesisRecord {
    approximate_arrival_timestamp: Seconds,
    data: Base64Data,
    #[serde(default)]
    partition_key: String,
    #[serde(default)]
    sequence_number: String,
}

/// The records of a Kinesis event; one whose data does not inflate (or inflates past
/// the limits), or an aggregate that cannot be read, is [`Undecodable`].
pub(super) fn decode(
    event: EventJson<'_>,
    inflation: &mut Inflation,
) -> Result<Vec<EventItem>, EventError> {
    let event: KinesisEvent = parse(EventKind::Kinesis, event)?;
    let mut items = Vec::new();
    for r in event.records {
        let k = r.kinesis;
        let shard: String = r
            .event_id
            .as_deref()
            .and_then(|id| id.split(':').next())
            .unwrap_or_default()
            .into();
        let stream = arn_name(r.event_source_arn.as_deref(), "stream/");
        let position = format!("kinesis/{stream}/{shard}/{}", k.sequence_number);
        let attributes = vec![
            ("source", "kinesis".into()),
            ("stream", stream.clone()),
            ("shard", shard.clone()),
            ("sequence-number", k.sequence_number.clone()),
            (
                "arrival-time",
                k.approximate_arrival_timestamp.0.to_rfc3339(),
            ),
        ];
        // Without an `eventID` the shard is unknown: the stream stands for it.
        let group = if shard.is_empty() { stream } else { shard };
        let item = |position: String, decoded| EventItem {
            first_position: None,
            position: Some(position),
            id: k.sequence_number.clone(),
            group: Some(group.clone()),
            delivered: Vec::new(),
            decoded,
        };
        let key = Bytes::from(k.partition_key.into_bytes());
        let data = Bytes::from(k.data.0);
        match unpack(&data, inflation) {
            Unpacked::Plain => {
                let decoded = inflated(inflation, data, key, attributes);
                items.push(item(position, decoded));
            }
            Unpacked::Records(records) => {
                for (index, user) in records.into_iter().enumerate() {
                    let UserRecord {
                        partition_key,
                        explicit_hash_key,
                        data,
                    } = user;
                    let mut attributes = attributes.clone();
                    attributes.push(("sub-sequence-number", index.to_string()));
                    let hash_key = explicit_hash_key
                        .map(|k| String::from_utf8_lossy(&k).into_owned())
                        .unwrap_or_default();
                    attributes.push(("explicit-hash-key", hash_key));
                    let decoded = inflated(inflation, data, partition_key, attributes);
                    // The aggregate's sequence number and the user record's place in
                    // it: what the KCL calls its subsequence number.
                    items.push(item(format!("{position}/{index}"), decoded));
                }
            }
            Unpacked::Refused(kind, reason) => {
                let undecodable = Undecodable {
                    kind,
                    record: record(data, Some(key), attributes),
                    reason,
                };
                items.push(item(position, Err(undecodable)));
            }
        }
    }
    Ok(items)
}

/// What a Kinesis record's data holds.
enum Unpacked {
    /// One record (not a KPL aggregate).
    Plain,
    /// An aggregate's user records.
    Records(Vec<UserRecord>),
    /// An aggregate that cannot be read, or unpacks past the event's limit: its bytes
    /// go to the dead-letter queue whole.
    Refused(FailureKind, String),
}

fn unpack(data: &Bytes, inflation: &mut Inflation) -> Unpacked {
    match kpl::deaggregate(data) {
        Ok(None) => Unpacked::Plain,
        Ok(Some(records)) => {
            // Each record's identity, attributes (its explicit hash key copied) and place.
            let cost = records.iter().fold(0usize, |sum, r| {
                sum.saturating_add(PER_USER_RECORD)
                    .saturating_add(r.explicit_hash_key.as_ref().map_or(0, Bytes::len))
            });
            match inflation.charge(cost) {
                Ok(()) => Unpacked::Records(records),
                Err(limit) => Unpacked::Refused(
                    FailureKind::InputTooLarge,
                    format!(
                        "a KPL aggregate of {} user records: unpacked with the event's \
                         others, they pass {limit}",
                        records.len()
                    ),
                ),
            }
        }
        Err(malformed) => Unpacked::Refused(FailureKind::Decode, malformed.to_string()),
    }
}

/// The record of `data` (inflated when it is gzip), or why it cannot be one.
fn inflated(
    inflation: &mut Inflation,
    data: Bytes,
    key: Bytes,
    attributes: Vec<(&'static str, String)>,
) -> crate::sources::Decoded {
    match inflation.inflate_bytes(data) {
        Ok(payload) => Ok(record(payload, Some(key), attributes)),
        Err((raw, kind, reason)) => Err(Undecodable {
            kind,
            record: record(raw, Some(key), attributes),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use crate::sources::events::EventKind;
    use crate::sources::events::tests::{arrival_times, decode_fixture};

    /// Seconds whose last digit of milliseconds is 0 come without it (`.98`): 980 ms
    /// (`aws_lambda_events`' decoder made it 98).
    #[test]
    fn arrival_times_keep_their_milliseconds() {
        let record = |seconds: &str| {
            format!(
                r#"{{"eventID": "shardId-0:1", "kinesis": {{"partitionKey": "k",
                "sequenceNumber": "1", "data": "eA==", "approximateArrivalTimestamp": {seconds}}}}}"#
            )
        };
        let text = format!(
            r#"{{"Records": [{}, {}]}}"#,
            record("1545084650.98"),
            record("1545084650.987")
        );
        assert_eq!(
            arrival_times(EventKind::Kinesis, &text),
            [
                "2018-12-17T22:10:50.980+00:00",
                "2018-12-17T22:10:50.987+00:00"
            ]
        );
    }

    #[test]
    fn kinesis_inflates_gzip_and_keeps_bad_records_for_the_dlq() {
        let event = decode_fixture("kinesis-event.json");
        assert_eq!(event.kind, EventKind::Kinesis);
        assert_eq!(event.items.len(), 4);
        let first = event.items[0].decoded.as_ref().expect("plain");
        assert!(first.payload.starts_with(br#"{"id":"k1""#));
        assert_eq!(first.key.as_deref(), Some(&b"ann"[..]));
        assert_eq!(first.attribute("stream"), Some("events"));
        assert_eq!(first.attribute("shard"), Some("shardId-000000000006"));
        assert_eq!(
            event.items[0].id,
            "49590338271490256608559692538361571095921575989136588801"
        );
        let gzipped = event.items[1].decoded.as_ref().expect("inflated");
        assert!(gzipped.payload.starts_with(br#"{"id":"k2""#));
        assert!(
            event.items[2].decoded.is_ok(),
            "not-JSON is the plugin's call, not the source's"
        );
        let broken = event.items[3].decoded.as_ref().expect_err("bad gzip");
        assert!(
            broken.reason.contains("does not inflate"),
            "{}",
            broken.reason
        );
    }
}

#[cfg(test)]
mod aggregate_tests {
    use base64::Engine as _;
    use serde_json::{Value, json};

    use crate::kpl;
    use crate::record::FailureKind;
    use crate::sources::InputLimits;
    use crate::sources::events::{self, EventKind};

    fn event(datas: &[Vec<u8>]) -> Value {
        let records: Vec<Value> = datas
            .iter()
            .enumerate()
            .map(|(i, data)| {
                json!({
                    "kinesis": {"partitionKey": "outer", "sequenceNumber": format!("{i}00"),
                                "data": base64::engine::general_purpose::STANDARD.encode(data),
                                "approximateArrivalTimestamp": 1764075600.987,
                                "kinesisSchemaVersion": "1.0"},
                    "eventSource": "aws:kinesis", "eventID": format!("shardId-1:{i}00"),
                    "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/s"
                })
            })
            .collect();
        json!({ "Records": records })
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).expect("gzip");
        encoder.finish().expect("gzip")
    }

    #[test]
    fn each_user_record_of_an_aggregate_is_an_item_named_by_its_place() {
        let zipped = gzip(b"two");
        let packed = kpl::aggregate([("a", &b"one"[..]), ("b", &zipped), ("a", b"three")]);
        let decoded =
            events::decode(EventKind::Kinesis, event(&[packed, b"plain".to_vec()])).expect("event");
        let items = &decoded.items;
        assert_eq!(items.len(), 4);
        type Seen<'a> = (&'a str, &'a [u8], Option<&'a [u8]>, Option<&'a str>);
        let seen: Vec<Seen> = items
            .iter()
            .map(|i| {
                let r = i.decoded.as_ref().expect("decoded");
                (
                    i.position.as_deref().expect("a position"),
                    &r.payload[..],
                    r.key.as_deref(),
                    r.attribute("sub-sequence-number"),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "kinesis/s/shardId-1/000/0",
                    &b"one"[..],
                    Some(&b"a"[..]),
                    Some("0")
                ),
                ("kinesis/s/shardId-1/000/1", b"two", Some(b"b"), Some("1")),
                ("kinesis/s/shardId-1/000/2", b"three", Some(b"a"), Some("2")),
                ("kinesis/s/shardId-1/100", b"plain", Some(b"outer"), None),
            ]
        );
        // Lambda can only be told the aggregate's sequence number.
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["000", "000", "000", "100"]);
        assert!(
            items
                .iter()
                .all(|i| i.group.as_deref() == Some("shardId-1"))
        );
        for item in items {
            crate::record::assert_shared_names(item.decoded.as_ref().expect("decoded"));
        }
    }

    #[test]
    fn an_unreadable_aggregate_keeps_its_bytes_for_the_dead_letter_queue() {
        let mut body = vec![0x1a, 0x05, 0x08];
        let digest = {
            use md5::Digest as _;
            md5::Md5::digest(&body)
        };
        let mut bad = kpl::MAGIC.to_vec();
        bad.append(&mut body);
        bad.extend_from_slice(&digest);
        let decoded =
            events::decode(EventKind::Kinesis, event(std::slice::from_ref(&bad))).expect("event");
        let failed = decoded.items[0].decoded.as_ref().expect_err("malformed");
        assert_eq!(failed.kind, FailureKind::Decode);
        assert_eq!(&failed.record.payload[..], &bad[..], "every byte kept");
        assert!(failed.reason.contains("KPL aggregate"), "{}", failed.reason);
    }

    #[test]
    fn an_aggregate_of_more_user_records_than_the_event_may_hold_is_refused_whole() {
        let tiny: Vec<(String, Vec<u8>)> = (0..100).map(|i| ("k".into(), vec![i])).collect();
        let packed = kpl::aggregate(tiny.iter().map(|(k, d)| (k.as_str(), &d[..])));
        let limits = InputLimits {
            record: 1 << 20,
            event: 10_000,
            ..InputLimits::default()
        };
        let decoded = events::decode_within(
            EventKind::Kinesis,
            events::EventJson::Value(&event(std::slice::from_ref(&packed))),
            limits,
        )
        .expect("event");
        assert_eq!(decoded.items.len(), 1);
        let refused = decoded.items[0].decoded.as_ref().expect_err("too many");
        assert_eq!(refused.kind, FailureKind::InputTooLarge);
        assert_eq!(&refused.record.payload[..], &packed[..]);
        assert!(
            refused.reason.contains("max-event-bytes"),
            "{}",
            refused.reason
        );
    }
}
