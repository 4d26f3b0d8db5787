//! Kinesis Data Streams events: one record per `Records[].kinesis`, its data inflated
//! when it is gzip, its partition key the record's key, ordered within its shard. Its
//! own file so that what a Kinesis record becomes (attributes, identity, group) is read
//! and changed in one place.

use aws_lambda_events::event::kinesis::KinesisEvent;
use serde_json::Value;

use super::{EventError, EventItem, EventKind, Inflation, arn_name, parse, record};
use crate::sources::Undecodable;

/// The records of a Kinesis event; one whose data does not inflate (or inflates past
/// the limits) is [`Undecodable`].
pub(super) fn decode(
    event: Value,
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
        let key = Some(k.partition_key.into_bytes());
        let item = match inflation.inflate(k.data.0) {
            Ok(payload) => Ok(record(payload, key, attributes)),
            Err((raw, kind, reason)) => Err(Undecodable {
                kind,
                record: record(raw, key, attributes),
                reason,
            }),
        };
        items.push(EventItem {
            first_position: None,
            position: Some(format!("kinesis/{stream}/{shard}/{}", k.sequence_number)),
            id: k.sequence_number,
            // Without an `eventID` the shard is unknown: the stream stands for it.
            group: Some(if shard.is_empty() { stream } else { shard }),
            delivered: Vec::new(),
            decoded: item,
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use crate::sources::events::EventKind;
    use crate::sources::events::tests::decode_fixture;

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
