//! AWS events as Lambda delivers them, built for the tests: Kinesis (KPL aggregates
//! too), SQS (standard and FIFO), Kafka, S3 notifications; and the answers'
//! `batchItemFailures`.

use base64::Engine as _;
use serde_json::{Value, json};

/// A Kinesis event: `(shard, payload)` per record, sequence numbers in order.
pub fn kinesis_event(records: &[(&str, &str)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, (shard, payload))| {
            let sequence = format!("4959033827149025660855969253836157109592157598913658{i:04}");
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0", "partitionKey": "k", "sequenceNumber": sequence,
                    "data": base64::engine::general_purpose::STANDARD.encode(payload),
                    "approximateArrivalTimestamp": 1764075600.987
                },
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": format!("{shard}:{sequence}"), "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/events"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// A Kinesis event of raw data records: `(shard, data)` per record, sequence numbers in
/// order (`kinesis_event` for text payloads).
pub fn kinesis_data_event(records: &[(&str, Vec<u8>)]) -> Value {
    let texts: Vec<(&str, &str)> = records.iter().map(|(shard, _)| (*shard, "")).collect();
    let mut event = kinesis_event(&texts);
    for (record, (_, data)) in event["Records"]
        .as_array_mut()
        .expect("records")
        .iter_mut()
        .zip(records)
    {
        record["kinesis"]["data"] = json!(base64::engine::general_purpose::STANDARD.encode(data));
    }
    event
}

/// A KPL aggregate of `(partition key, data)` user records, written here from the
/// format's description (magic bytes, protobuf `AggregatedRecord`, MD5), not by the host.
pub fn kpl_aggregate(records: &[(&str, &[u8])]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
        varint(out, number << 3 | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut body = Vec::new();
    for (key, _) in records {
        if !keys.contains(key) {
            keys.push(key);
            field(&mut body, 1, key.as_bytes());
        }
    }
    for (key, data) in records {
        let mut record = vec![0x08];
        varint(
            &mut record,
            keys.iter().position(|k| k == key).expect("a key") as u64,
        );
        field(&mut record, 3, data);
        field(&mut body, 3, &record);
    }
    use md5::Digest as _;
    let mut out = vec![0xf3, 0x89, 0x9a, 0xc2];
    out.extend_from_slice(&body);
    out.extend_from_slice(&md5::Md5::digest(&body));
    out
}

/// An MSK event of topic `orders`: `(partition, values)` per partition, offsets from
/// `first_offset` in each, each record keyed `k`.
pub fn kafka_event(first_offset: u64, partitions: &[(u32, &[&str])]) -> Value {
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut records = serde_json::Map::new();
    for (partition, values) in partitions {
        let batch: Vec<Value> = values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                json!({
                    "topic": "orders", "partition": partition, "offset": first_offset + i as u64,
                    "timestamp": 1764075600183u64, "timestampType": "CREATE_TIME",
                    "key": base64.encode("k"), "value": base64.encode(value),
                    "headers": [{"trace": [116, 49]}]
                })
            })
            .collect();
        records.insert(format!("orders-{partition}"), Value::Array(batch));
    }
    json!({
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/orders-cluster/0c1d-2",
        "bootstrapServers": "b-1.orders-cluster.kafka.us-east-1.amazonaws.com:9098",
        "records": records
    })
}

/// The sequence numbers of a Kinesis event's records, in order.
pub fn sequence_numbers(event: &Value) -> Vec<String> {
    event["Records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            r["kinesis"]["sequenceNumber"]
                .as_str()
                .expect("a sequence number")
                .to_owned()
        })
        .collect()
}

/// An SQS event from a standard queue: one message per body, ids `m-0`, `m-1`, ...
pub fn sqs_event(bodies: &[&str]) -> Value {
    let messages: Vec<(Option<&str>, &str)> = bodies.iter().map(|b| (None, *b)).collect();
    sqs_records(&messages, "in")
}

/// An SQS FIFO event: `(message group, body)` per message, ids `m-0`, `m-1`, ...
pub fn fifo_event(messages: &[(&str, &str)]) -> Value {
    let messages: Vec<(Option<&str>, &str)> =
        messages.iter().map(|(g, b)| (Some(*g), *b)).collect();
    sqs_records(&messages, "in.fifo")
}

fn sqs_records(messages: &[(Option<&str>, &str)], queue: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(i, (group, body))| {
            let mut attributes =
                json!({"ApproximateReceiveCount": "1", "SentTimestamp": "1764075600183"});
            if let Some(group) = group {
                attributes["MessageGroupId"] = json!(group);
                attributes["SequenceNumber"] = json!(i.to_string());
                attributes["MessageDeduplicationId"] = json!(format!("d-{i}"));
            }
            json!({
                "messageId": format!("m-{i}"), "receiptHandle": "handle", "body": body,
                "attributes": attributes, "messageAttributes": {}, "md5OfBody": "",
                "eventSource": "aws:sqs", "awsRegion": "us-east-1",
                "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{queue}")
            })
        })
        .collect();
    json!({ "Records": records })
}

/// An S3 notification naming `keys` in `bucket` without the ETag and version id S3
/// sends, so the host reads each as it is (the tests using it write each object once;
/// [`s3_version_event`] names one version).
pub fn s3_event(bucket: &str, keys: &[&str]) -> Value {
    let records: Vec<Value> = keys
        .iter()
        .map(|key| s3_record(bucket, json!({"key": key, "size": 1})))
        .collect();
    json!({ "Records": records })
}

/// An S3 notification naming one version of `key`, as S3 writes it: its ETag (without
/// the quotes PutObject's answer has) and, in a versioned bucket, its version id.
pub fn s3_version_event(bucket: &str, key: &str, etag: &str, version_id: Option<&str>) -> Value {
    let mut object = json!({
        "key": key, "size": 1, "eTag": etag.trim_matches('"'), "sequencer": "0A1B2C3D4E5F678901"
    });
    if let Some(version) = version_id {
        object["versionId"] = json!(version);
    }
    json!({ "Records": [s3_record(bucket, object)] })
}

/// One record of an S3 notification: `object` in `bucket`, created by a PUT.
fn s3_record(bucket: &str, object: Value) -> Value {
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-24T13:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "EXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"}, "responseElements": {},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "t",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": object}
    })
}

/// The item identifiers of an answer's `batchItemFailures`.
pub fn failures(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("no batchItemFailures in {answer}"))
        .iter()
        .map(|f| {
            f["itemIdentifier"]
                .as_str()
                .unwrap_or_else(|| panic!("an itemIdentifier in {answer}"))
                .to_owned()
        })
        .collect()
}
