//! EventBridge Pipes enrichment: a pipe calls the function synchronously with a batch of
//! its source's records (SQS, Kinesis, DynamoDB Streams, Kafka), a JSON array of them
//! without the `Records` wrapper Lambda's own events have, and takes the answer, a JSON
//! array, as the enriched batch. Each element is decoded by its source's decoder, so a
//! record from a pipe is the record Lambda's event would give; but the answer is its
//! delivery (as for Firehose), so no record has a position the idempotency store keeps.

use serde_json::{Map, Value, json};

use super::{EventError, EventItem, EventJson, Inflation, dynamodb, kafka, kinesis, sqs};

/// The sources a pipe's batch may come from, by their elements' `eventSource`.
const SOURCES: [&str; 5] = [
    "aws:sqs",
    "aws:kinesis",
    "aws:dynamodb",
    "aws:kafka",
    "SelfManagedKafka",
];

/// Whether `elements` look like a pipe's batch: every one an object from one of the
/// sources a pipe reads (a direct invocation's records rarely all are).
pub(super) fn is_batch(elements: &[Value]) -> bool {
    !elements.is_empty()
        && elements.iter().all(|e| {
            e.get("eventSource")
                .and_then(Value::as_str)
                .is_some_and(|s| SOURCES.contains(&s))
        })
}

/// The records of a pipe's batch, in order.
pub(super) fn decode(
    event: Value,
    inflation: &mut Inflation,
) -> Result<Vec<EventItem>, EventError> {
    let error = |reason: String| EventError {
        expected: "Pipes".into(),
        reason,
    };
    let Value::Array(elements) = event else {
        return Err(error("expected a JSON array of the pipe's records".into()));
    };
    let source = elements
        .first()
        .and_then(|e| e.get("eventSource"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Some(other) = elements
        .iter()
        .find(|e| e.get("eventSource").and_then(Value::as_str) != Some(source.as_str()))
    {
        return Err(error(format!(
            "records of two sources in one batch: {source:?} and {:?}",
            other.get("eventSource")
        )));
    }
    let mut items = match source.as_str() {
        "aws:sqs" => sqs::decode(EventJson::Value(&json!({ "Records": elements })))?,
        "aws:dynamodb" => dynamodb::decode(EventJson::Value(&json!({ "Records": elements })))?,
        "aws:kinesis" => {
            let records: Vec<Value> = elements.into_iter().map(kinesis_record).collect();
            kinesis::decode(EventJson::Value(&json!({ "Records": records })), inflation)?
        }
        "aws:kafka" | "SelfManagedKafka" => {
            kafka::decode(EventJson::Value(&kafka_event(&source, elements)))?
        }
        other => return Err(error(format!("records of an unknown source {other:?}"))),
    };
    for item in &mut items {
        item.position = None;
    }
    Ok(items)
}

/// A pipe's Kinesis element (the record's fields at the top) as a Lambda event's record
/// (under `kinesis`).
fn kinesis_record(element: Value) -> Value {
    let Value::Object(mut fields) = element else {
        return element;
    };
    let mut kinesis = Map::new();
    for name in [
        "kinesisSchemaVersion",
        "partitionKey",
        "sequenceNumber",
        "data",
        "approximateArrivalTimestamp",
    ] {
        if let Some(value) = fields.remove(name) {
            kinesis.insert(name.into(), value);
        }
    }
    fields.insert("kinesis".into(), Value::Object(kinesis));
    Value::Object(fields)
}

/// A pipe's Kafka elements (one per record, `eventSourceKey` naming its topic-partition)
/// as a Lambda Kafka event.
fn kafka_event(source: &str, elements: Vec<Value>) -> Value {
    let text = |name: &str| {
        elements
            .first()
            .and_then(|e| e.get(name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (arn, servers) = (text("eventSourceArn"), text("bootstrapServers"));
    let mut records: Map<String, Value> = Map::new();
    for element in elements {
        let key = element
            .get("eventSourceKey")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let topic = element
                    .get("topic")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let partition = element
                    .get("partition")
                    .map(Value::to_string)
                    .unwrap_or_default();
                format!("{topic}-{}", partition.trim_matches('"'))
            });
        if let Value::Array(batch) = records.entry(key).or_insert_with(|| json!([])) {
            batch.push(element);
        }
    }
    json!({"eventSource": source, "eventSourceArn": arn, "bootstrapServers": servers,
           "records": records})
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use serde_json::json;

    use crate::sources::events::{self, EventKind};

    #[test]
    fn a_pipes_batch_of_each_source_is_its_records_without_positions() {
        let data = base64::engine::general_purpose::STANDARD.encode("k-data");
        let batches = [
            json!([{"messageId": "m-1", "body": "sqs-body", "attributes": {},
                    "messageAttributes": {}, "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:1:q"}]),
            json!([{"eventSource": "aws:kinesis", "eventID": "shardId-1:42",
                    "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/s",
                    "kinesisSchemaVersion": "1.0", "partitionKey": "p",
                    "sequenceNumber": "42", "data": data,
                    "approximateArrivalTimestamp": 1764075600.5}]),
            json!([{"eventSource": "aws:kafka", "eventSourceKey": "t-0",
                    "eventSourceArn": "arn:aws:kafka:us-east-1:1:cluster/c/u",
                    "topic": "t", "partition": "0", "offset": 9,
                    "timestamp": 1764075600183u64, "timestampType": "CREATE_TIME",
                    "value": base64::engine::general_purpose::STANDARD.encode("kafka-value"),
                    "headers": []}]),
        ];
        let mut payloads = Vec::new();
        for batch in batches {
            assert_eq!(events::detect(&batch).expect("known"), EventKind::Pipes);
            let decoded = events::decode(EventKind::Pipes, batch).expect("a batch");
            let item = &decoded.items[0];
            assert_eq!(item.position, None, "the answer is the delivery");
            let record = item.decoded.as_ref().expect("decoded");
            payloads.push(String::from_utf8_lossy(&record.payload).into_owned());
        }
        assert_eq!(payloads, ["sqs-body", "k-data", "kafka-value"]);
    }

    #[test]
    fn an_sns_notification_in_a_pipes_sqs_record_is_its_message() {
        let body = json!({"Type": "Notification", "MessageId": "n-1",
                          "TopicArn": "arn:aws:sns:us-east-1:1:orders", "Message": "inner"});
        let batch = json!([{"messageId": "m-1", "body": body.to_string(), "attributes": {},
                            "messageAttributes": {}, "eventSource": "aws:sqs",
                            "eventSourceARN": "arn:aws:sqs:us-east-1:1:q"}]);
        let decoded = events::decode(EventKind::Pipes, batch).expect("a batch");
        let record = decoded.items[0].decoded.as_ref().expect("decoded");
        assert_eq!(&record.payload[..], b"inner");
        assert_eq!(record.attribute("topic"), Some("orders"));
        assert!(decoded.carried.is_empty());
    }

    #[test]
    fn a_direct_invocation_is_not_a_pipes_batch_and_mixed_sources_are_refused() {
        let direct = json!([{"id": 1}, {"eventSource": "aws:sqs"}]);
        assert_eq!(events::detect(&direct).expect("known"), EventKind::Direct);
        let mixed = json!([{"eventSource": "aws:sqs", "body": "a"},
                           {"eventSource": "aws:kinesis"}]);
        let err = events::decode(EventKind::Pipes, mixed).expect_err("two sources");
        assert!(err.to_string().contains("two sources"), "{err}");
    }
}
