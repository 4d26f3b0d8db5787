//! Kinesis Data Firehose transformation events: one record per `records[].data`, its
//! data inflated when it is gzip. A Firehose record has no identity: the answer to the
//! invocation is its delivery. Its own file so that what a Firehose record becomes is
//! read and changed in one place.

use aws_lambda_events::encodings::Base64Data;
use serde::Deserialize;

use super::arrival::Milliseconds;
use super::{EventError, EventItem, EventJson, EventKind, Inflation, arn_name, parse, record};
use crate::sources::Undecodable;

/// A Firehose transformation event: what of it the host reads (`aws_lambda_events`'
/// type has the arrival time `arrival.rs` replaces, and keeps every other field of each
/// record, which costs its decoding a buffered copy of each).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KinesisFirehoseEvent {
    #[serde(default)]
    delivery_stream_arn: Option<String>,
    records: Vec<KinesisFirehoseEventRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KinesisFirehoseEventRecord {
    #[serde(default)]
    record_id: Option<String>,
    approximate_arrival_timestamp: Milliseconds,
    data: Base64Data,
}

/// The records of a Firehose event; one whose data does not inflate (or inflates past
/// the limits) is [`Undecodable`].
pub(super) fn decode(
    event: EventJson<'_>,
    inflation: &mut Inflation,
) -> Result<Vec<EventItem>, EventError> {
    let event: KinesisFirehoseEvent = parse(EventKind::Firehose, event)?;
    let stream = arn_name(event.delivery_stream_arn.as_deref(), "deliverystream/");
    let mut items = Vec::new();
    for (index, r) in event.records.into_iter().enumerate() {
        let id = r.record_id.clone().unwrap_or_else(|| index.to_string());
        let attributes = vec![
            ("source", "firehose".into()),
            ("delivery-stream", stream.clone()),
            ("record-id", id.clone()),
            (
                "arrival-time",
                r.approximate_arrival_timestamp.0.to_rfc3339(),
            ),
        ];
        let item = match inflation.inflate(r.data.0) {
            Ok(payload) => Ok(record(payload, None, attributes)),
            Err((raw, kind, reason)) => Err(Undecodable {
                kind,
                record: record(raw, None, attributes),
                reason,
            }),
        };
        items.push(EventItem {
            first_position: None,
            id,
            group: None,
            // The answer to Firehose is the delivery: a retried invocation must
            // answer every record again, never skip one as a duplicate.
            position: None,
            delivered: Vec::new(),
            decoded: item,
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use crate::sources::events::EventKind;
    use crate::sources::events::tests::{arrival_times, decode_fixture};

    #[test]
    fn firehose_records_keep_their_record_ids() {
        let event = decode_fixture("firehose-event.json");
        assert_eq!(event.kind, EventKind::Firehose);
        assert_eq!(
            event.items[1].id,
            "49546986683135544286507457936321625675700192471156785155"
        );
        let record = event.items[0].decoded.as_ref().expect("ok");
        assert_eq!(record.attribute("delivery-stream"), Some("events-to-s3"));
    }

    /// Read from an invocation's text, as Lambda hands it over; a fractional millisecond
    /// (which panicked the decoder `aws_lambda_events` has) is rounded.
    #[test]
    fn arrival_times_are_read_to_the_millisecond_from_the_text() {
        let text = r#"{"records": [
            {"recordId": "a", "approximateArrivalTimestamp": 1495072949453, "data": "eA=="},
            {"recordId": "b", "approximateArrivalTimestamp": 1495072949453.6, "data": "eA=="}
        ]}"#;
        assert_eq!(
            arrival_times(EventKind::Firehose, text),
            [
                "2017-05-18T02:02:29.453+00:00",
                "2017-05-18T02:02:29.454+00:00"
            ]
        );
    }
}
