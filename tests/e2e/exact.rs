//! Exact data and input limits: bytes and numbers arrive as sent, a line that is not
//! UTF-8 is a `decode` failure with its exact bytes in the DLQ, and a line over the
//! record limit goes to the DLQ as `input-too-large` (its first bytes kept) while the
//! host carries on.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::emulator::Moto;
use crate::lambda_harness::Lambda;
use crate::support::{Scratch, text};

#[test]
fn invalid_utf8_and_overlong_lines_are_dead_lettered_exactly() {
    let s = Scratch::new();
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"id\":\"a\"}\n");
    let not_utf8: &[u8] = b"{\"id\":\"\xff\xfe\"}";
    input.extend_from_slice(not_utf8);
    input.push(b'\n');
    let long = format!("{{\"pad\":\"{}\"}}", "x".repeat(2000));
    input.extend_from_slice(long.as_bytes());
    input.push(b'\n');
    input.extend_from_slice(b"{\"id\":\"b\"}\n");
    let path = s.path("events.jsonl");
    std::fs::write(&path, &input).expect("write input");
    let out = s.path("out.jsonl");
    let run = s
        .run("misbehave")
        .input(&path)
        .output(&out)
        .emit("payload")
        .flag("--max-record-bytes", "1024")
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [4, 2, 0, 2]);
    assert_eq!(
        std::fs::read_to_string(&out).expect("outputs"),
        "{\"id\":\"a\"}\n{\"id\":\"b\"}\n"
    );
    let dlq = s.json_lines("dlq.jsonl");
    let kinds: Vec<&str> = dlq
        .iter()
        .map(|e| text(&e["error"]["kind"], "kind"))
        .collect();
    assert_eq!(kinds, ["decode", "input-too-large"]);
    let exact = base64::engine::general_purpose::STANDARD
        .decode(text(&dlq[0]["record"]["payload_base64"], "the raw bytes"))
        .expect("base64");
    assert_eq!(exact, not_utf8, "the DLQ keeps the bytes as read");
    assert!(text(&dlq[0]["error"]["message"], "message").contains("not UTF-8"));
    let kept = text(&dlq[1]["record"]["payload"], "the kept bytes");
    assert_eq!(
        kept,
        &long[..1024],
        "the first bytes of the long line are kept"
    );
    assert_eq!(dlq[1]["record"]["attributes"]["line"], "3");
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_numbers_and_binary_arrive_exactly() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let event = json!({"Records": [{
        "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1764075600,
            "Keys": {"Id": {"N": "12345678901234567890123"}},
            "NewImage": {
                "Id": {"N": "12345678901234567890123"},
                "Price": {"N": "0.1000000000000000055511151231257827"},
                "Blob": {"B": "/wA="}
            },
            "SequenceNumber": "1", "SizeBytes": 26, "StreamViewType": "NEW_AND_OLD_IMAGES"
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2015-06-27T00:48:05.899"
    }]});
    let (answer, log) = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=kinesis://out")
        .dlq("sqs://dlq")
        .invoke(scratch.dir.path(), event);
    assert_eq!(answer, json!({"batchItemFailures": []}), "{log}");
    let delivered = aws.stream_records("out").await;
    assert_eq!(delivered.len(), 1, "{log}");
    assert!(
        delivered[0].contains(r#""Id":12345678901234567890123"#)
            && delivered[0].contains(r#""Price":0.1000000000000000055511151231257827"#)
            && delivered[0].contains(r#""Blob":"/wA=""#),
        "{}",
        delivered[0]
    );
    let parsed: Value = serde_json::from_str(&delivered[0]).expect("JSON");
    assert_eq!(parsed["eventName"], "INSERT");
    assert!(aws.drain_queue(&dlq).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_with_an_output_that_cannot_go_sends_none_of_them() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    // `route` with audit=true gives every record a second output, to `audit`; there is
    // no `audit` sink, so no record may send its first output either.
    let input = scratch.write(
        "events.jsonl",
        "{\"id\":\"e1\",\"action\":\"buy\"}\n{\"id\":\"e2\",\"action\":\"view\"}\n",
    );
    let run = scratch
        .run("route")
        .config("audit=true")
        .input(&input)
        .sink("default=kinesis://out")
        .dlq("sqs://dlq")
        .envs(moto.env())
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [2, 0, 0, 2]);
    assert!(
        aws.stream_records("out").await.is_empty(),
        "a dead-lettered record sent nothing"
    );
    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dead.len(), 2);
    assert!(
        dead.iter().all(|e| e.contains(r#""kind":"routing""#)),
        "{dead:?}"
    );
}

#[test]
fn a_maximal_gzip_event_stays_inside_a_512_mb_function() {
    // 400 records of 1 KiB of gzip, each inflating to 1 MiB (the largest output): 400 MiB
    // if all were inflated. In a 512 MB function the event may inflate to 64 MiB (an
    // eighth), so 64 records are read and echoed, the rest dead-lettered with their
    // compressed bytes; the inflated records, their packed batch, the plugin's memory and
    // its outputs together stay inside the function. (With the fixed 256 MiB defaults
    // the peak passed 512 MiB.)
    let s = Scratch::new();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gzip, &vec![b'a'; 1 << 20]).expect("gzip");
    let data = base64::engine::general_purpose::STANDARD.encode(gzip.finish().expect("gzip"));
    let records: Vec<serde_json::Value> = (0..400u32)
        .map(|seq| {
            json!({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "k",
                            "sequenceNumber": seq.to_string(), "data": data,
                            "approximateArrivalTimestamp": 1764075600.987},
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": format!("shardId-000000000001:{seq}"), "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/r", "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/events"
            })
        })
        .collect();
    let event = json!({ "Records": records }).to_string();
    assert!(event.len() < 6 << 20, "a Lambda event is at most 6 MB");
    let input = s.write("event.json", &event);
    let out = s.path("out.jsonl");
    let run = s
        .run("misbehave")
        .input(&input)
        .format("kinesis-event")
        .output(&out)
        .emit("payload")
        .summary_json()
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .go();
    assert!(run.status.success(), "{}", run.stderr);
    let summary = run.summary();
    assert_eq!(summary["in"], 400, "{summary}");
    assert_eq!(summary["transformed"], 64, "{summary}");
    assert_eq!(
        summary["failed_by_kind"]["input-too-large"], 336,
        "{summary}"
    );
    let peak = summary["peak_memory_bytes"].as_u64().expect("the peak");
    assert!(
        peak < 512 << 20,
        "peak {} MiB in a 512 MB function",
        peak >> 20
    );
}

#[test]
fn gzip_records_that_inflate_past_the_limits_are_dead_lettered_and_the_host_survives() {
    let s = Scratch::new();
    let gz = |text: String| {
        base64::engine::general_purpose::STANDARD
            .encode(pipeline_host::sinks::gzip(text.as_bytes()))
    };
    let record = |seq: u32, data: String| {
        json!({
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "k",
                        "sequenceNumber": seq.to_string(), "data": data,
                        "approximateArrivalTimestamp": 1764075600.987},
            "eventSource": "aws:kinesis", "eventVersion": "1.0",
            "eventID": format!("shardId-000000000001:{seq}"), "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/r", "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/events"
        })
    };
    // 2 MiB of `x` compresses to a few KiB: a record over the 1 MiB record limit. Then
    // two of 600 KB: together over the 1 MiB event limit.
    let event = json!({"Records": [
        record(1, gz("small".into())),
        record(2, gz("x".repeat(2 << 20))),
        record(3, gz("y".repeat(600_000))),
        record(4, gz("z".repeat(600_000))),
    ]});
    let input = s.write("event.json", &event.to_string());
    let out = s.path("out.jsonl");
    let run = s
        .run("misbehave")
        .input(&input)
        .format("kinesis-event")
        .output(&out)
        .emit("payload")
        .flag("--max-record-bytes", "1048576")
        .flag("--max-event-bytes", "1048576")
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [4, 2, 0, 2]);
    let outputs = std::fs::read_to_string(&out).expect("outputs");
    let lengths: Vec<usize> = outputs.lines().map(str::len).collect();
    assert_eq!(lengths, [5, 600_000]);
    let dlq = s.json_lines("dlq.jsonl");
    let kinds: Vec<&str> = dlq
        .iter()
        .map(|e| text(&e["error"]["kind"], "kind"))
        .collect();
    assert_eq!(kinds, ["input-too-large", "input-too-large"]);
    // The DLQ keeps the record as it came: the compressed bytes.
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text(&dlq[0]["record"]["payload_base64"], "the gzip bytes"))
        .expect("base64");
    assert!(raw.starts_with(&[0x1f, 0x8b]) && raw.len() < 64 << 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_that_is_not_a_parquet_row_fails_alone() {
    use pipeline_host::sources::parquet::rows_of;
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("lake").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    // `misbehave` passes each line through: two JSON objects and one JSON array.
    let input = scratch.write("rows.jsonl", "{\"a\":1}\n[1,2]\n{\"a\":2}\n");
    let run = scratch
        .run("misbehave")
        .input(&input)
        .sink("default=s3://lake/rows?format=parquet")
        .dlq("sqs://dlq")
        .envs(moto.env())
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [3, 2, 0, 1]);
    let objects = aws.objects("lake", "rows/").await;
    assert_eq!(objects.len(), 1);
    let rows = rows_of(objects[0].1.clone(), 10).expect("a Parquet object");
    assert_eq!(
        rows.len(),
        2,
        "the two objects are written, the array is not"
    );
    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].contains(r#""kind":"encoding""#), "{}", dead[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_object_fails_the_invocation_rather_than_ending_early() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("incoming").await;
    aws.stream("out").await;
    aws.queue("dlq").await;
    let mut broken = b"PAR1".to_vec();
    broken.extend_from_slice(&[0u8; 64]);
    broken.extend_from_slice(b"PAR1");
    aws.put_object("incoming", "raw/broken.parquet", broken)
        .await;
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=kinesis://out")
        .dlq("sqs://dlq")
        .start(scratch.dir.path());
    let event = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-24T13:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "EXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"}, "responseElements": {},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "t",
               "bucket": {"name": "incoming", "arn": "arn:aws:s3:::incoming"},
               "object": {"key": "raw/broken.parquet", "size": 72}}
    }]});
    match lambda.invoke_answer(event) {
        crate::runtime_api::Answer::Error(error) => {
            assert!(error.to_string().contains("broken.parquet"), "{error}");
            assert_eq!(error["errorType"], "SourceFailed", "{error}");
        }
        other => panic!("expected an error, got {other:?}\n{}", lambda.log()),
    }
}

#[test]
fn a_csv_row_over_the_record_limit_is_dead_lettered_and_the_rest_is_read() {
    let s = Scratch::new();
    let long = "x".repeat(5000);
    let input = s.write(
        "rows.csv",
        &format!("id,note\n1,short\n2,{long}\n3,also short\n"),
    );
    let out = s.path("out.jsonl");
    let run = s
        .run("misbehave")
        .input(&input)
        .format("csv")
        .output(&out)
        .emit("payload")
        .flag("--max-record-bytes", "1024")
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [3, 2, 0, 1]);
    assert_eq!(
        std::fs::read_to_string(&out).expect("outputs"),
        "{\"id\":\"1\",\"note\":\"short\"}\n{\"id\":\"3\",\"note\":\"also short\"}\n"
    );
    let dlq = s.json_lines("dlq.jsonl");
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["error"]["kind"], "input-too-large");
    assert_eq!(dlq[0]["record"]["attributes"]["line"], "3");
    let kept = text(&dlq[0]["record"]["payload"], "the kept bytes");
    assert!(kept.len() <= 1024 && kept.starts_with("2,xxx"), "{kept}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_records_delivered_twice_write_one_s3_object() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("lake").await;
    aws.queue("dlq").await;
    let scratch = Scratch::new();
    let input = scratch.write("rows.jsonl", "{\"a\":1}\n{\"a\":2}\n");
    let run = scratch
        .run("misbehave")
        .input(&input)
        .sink("default=s3://lake/rows")
        .dlq("sqs://dlq")
        .envs(moto.env());
    // A retry of the same records (here: the same run twice) makes the same key, and
    // the second write finds the first in place.
    for _ in 0..2 {
        let run = run.go();
        run.assert_ok();
        assert_eq!(run.balanced(), [2, 2, 0, 0]);
    }
    let objects = aws.objects("lake", "rows/").await;
    assert_eq!(
        objects.len(),
        1,
        "{:?}",
        objects.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    assert_eq!(
        String::from_utf8_lossy(&objects[0].1),
        "{\"a\":1}\n{\"a\":2}\n"
    );
}
