//! What real streams carry, through the real binary as a Lambda function: KPL-aggregated
//! Kinesis records, Kafka (MSK and self-managed), an EventBridge Pipes enrichment batch.

use serde_json::json;

use crate::emulator::Moto;
use crate::events::{failures, kafka_event, kinesis_data_event, kpl_aggregate};
use crate::lambda_harness::Lambda;
use crate::runtime_api::Answer;
use crate::support::{Scratch, assert_counts, dlq_kinds};

/// One aggregate's user records are items of their own; one handed back hands back its
/// aggregate (the only name Lambda takes), and with the store on, its siblings already
/// delivered come back as duplicates, not as second copies. An aggregate whose digest
/// matches but whose protobuf does not parse goes to the DLQ whole.
#[tokio::test(flavor = "multi_thread")]
async fn kpl_user_records_are_items_and_an_aggregate_handed_back_comes_back_as_duplicates() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    let dlq = aws.queue("dlq").await;
    aws.table("dedup").await;
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=kinesis://out")
        .dlq("sqs://dlq")
        .env("PIPELINE_DEDUP", "dynamodb://dedup")
        .env("PIPELINE_MAX_ATTEMPTS", "2")
        .env("PIPELINE_RETRY_BASE_MS", "1")
        .start(scratch.dir.path());

    let aggregate = kpl_aggregate(&[("a", b"first"), ("b", b"second"), ("a", b"third")]);
    // The same bytes framed right, but the protobuf cut short.
    let mut broken = vec![0xf3, 0x89, 0x9a, 0xc2, 0x1a, 0x05, 0x08];
    {
        use md5::Digest as _;
        let digest = md5::Md5::digest([0x1a, 0x05, 0x08]);
        broken.extend_from_slice(&digest);
    }
    let event = kinesis_data_event(&[
        ("shardId-1", aggregate.clone()),
        ("shardId-2", broken.clone()),
    ]);
    let answer = lambda.invoke(event);
    assert_eq!(failures(&answer), Vec::<String>::new(), "{answer}");
    assert_eq!(
        aws.stream_records("out").await,
        ["first", "second", "third"]
    );
    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dlq_kinds(&dead), ["decode"]);
    let entry: serde_json::Value = serde_json::from_str(&dead[0]).expect("a DLQ entry");
    assert!(
        entry["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("KPL aggregate")),
        "{entry}"
    );
    assert_counts(
        &lambda.last_counts(),
        &json!({"in": 4, "transformed": 3, "failed": 1, "retried": 0, "duplicate": 0}),
    );

    // The second user record fails for a while: its aggregate is handed back once, and
    // the third (later in the shard) with it.
    let flaky = kpl_aggregate(&[("a", b"fourth"), ("b", b"flaky"), ("a", b"sixth")]);
    let mut event = kinesis_data_event(&[("shardId-1", flaky)]);
    let sequence = "49590338271490256608559692538361571095921575989136589999";
    event["Records"][0]["kinesis"]["sequenceNumber"] = json!(sequence);
    event["Records"][0]["eventID"] = json!(format!("shardId-1:{sequence}"));
    let answer = lambda.invoke(event.clone());
    assert_eq!(failures(&answer), [sequence]);
    assert_counts(
        &lambda.last_counts(),
        &json!({"in": 3, "transformed": 1, "retried": 2, "duplicate": 0}),
    );
    // Lambda delivers the aggregate again: `fourth` is not sent twice.
    let answer = lambda.invoke(event);
    assert_eq!(failures(&answer).len(), 1, "{answer}");
    assert_counts(
        &lambda.last_counts(),
        &json!({"in": 3, "transformed": 0, "retried": 2, "duplicate": 1}),
    );
    assert_eq!(
        aws.stream_records("out").await,
        ["first", "second", "third", "fourth"]
    );
}

/// A Kafka batch: records in order per partition, headers as attributes, the summary as
/// the answer. A record that must be retried fails the invocation (`RetryBatch`): Kafka
/// takes a batch back only whole, so the later records of its partition are held back
/// and the other partition's already delivered come back as duplicates.
#[tokio::test(flavor = "multi_thread")]
async fn a_kafka_batch_is_delivered_in_partition_order_and_retried_whole() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    let out = aws.queue("out").await;
    let dlq = aws.queue("dlq").await;
    aws.table("dedup").await;
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=sqs://out")
        .dlq("sqs://dlq")
        .env("PIPELINE_DEDUP", "dynamodb://dedup")
        .env("PIPELINE_MAX_ATTEMPTS", "2")
        .env("PIPELINE_RETRY_BASE_MS", "1")
        .start(scratch.dir.path());

    let answer = lambda.invoke(kafka_event(100, &[(0, &["a", "b", "fail"]), (3, &["c"])]));
    assert_counts(
        &answer,
        &json!({"in": 4, "transformed": 3, "failed": 1, "retried": 0}),
    );
    let mut sent = aws.drain_queue(&out).await;
    sent.sort();
    assert_eq!(sent, ["a", "b", "c"]);
    assert_eq!(dlq_kinds(&aws.drain_queue(&dlq).await), ["domain"]);

    let event = kafka_event(200, &[(0, &["d", "flaky", "e"]), (1, &["f"])]);
    for (round, duplicates) in [(0, 0), (1, 2)] {
        match lambda.invoke_answer(event.clone()) {
            Answer::Error(error) => {
                assert_eq!(error["errorType"], "RetryBatch", "{error}");
                let message = error["errorMessage"].as_str().unwrap_or_default();
                assert!(
                    message.contains("2 records") && message.contains("orders-0@201"),
                    "{message}"
                );
            }
            other => panic!("round {round}: expected an error, got {other:?}"),
        }
        assert_counts(
            &lambda.last_counts(),
            &json!({"in": 4, "transformed": 2 - duplicates, "retried": 2, "duplicate": duplicates}),
        );
    }
    let mut sent = aws.drain_queue(&out).await;
    sent.sort();
    assert_eq!(
        sent,
        ["d", "f"],
        "each sent once, for two deliveries of the batch"
    );
}

/// A pipe's enrichment batch (SQS records, as Pipes sends them): the answer is the
/// enriched batch, JSON outputs as JSON and text as strings; records dropped or
/// dead-lettered are filtered out of it. One to retry fails the invocation, for the
/// pipe to retry the batch.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipes_enrichment_batch_is_answered_with_its_outputs() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    let dlq = aws.queue("dlq").await;
    let sink = aws.queue("sink").await;
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=sqs://sink")
        .dlq("sqs://dlq")
        .env("PIPELINE_MAX_ATTEMPTS", "2")
        .env("PIPELINE_RETRY_BASE_MS", "1")
        .start(scratch.dir.path());
    let batch = |bodies: &[&str]| {
        let elements: Vec<serde_json::Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                json!({"messageId": format!("p-{i}"), "receiptHandle": "h", "body": body,
                       "attributes": {"ApproximateReceiveCount": "1"},
                       "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                       "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:in",
                       "awsRegion": "us-east-1"})
            })
            .collect();
        serde_json::Value::Array(elements)
    };
    let answer = lambda.invoke(batch(&[r#"{"a":1}"#, "drop", "fail", "text"]));
    assert_eq!(answer, json!([{"a": 1}, "text"]));
    assert!(
        aws.drain_queue(&sink).await.is_empty(),
        "the answer is the delivery"
    );
    assert_eq!(dlq_kinds(&aws.drain_queue(&dlq).await), ["domain"]);
    assert_counts(
        &lambda.last_counts(),
        &json!({"in": 4, "transformed": 2, "dropped": 1, "failed": 1}),
    );
    match lambda.invoke_answer(batch(&["ok", "flaky"])) {
        Answer::Error(error) => assert_eq!(error["errorType"], "RetryBatch", "{error}"),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// `kinesis://STREAM?aggregate=true` packs the outputs of one partition key into KPL
/// aggregates; read back through a Kinesis source they come apart, in order, each once.
#[tokio::test(flavor = "multi_thread")]
async fn an_aggregating_kinesis_sink_writes_what_the_kinesis_source_takes_apart() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("packed").await;
    let out = aws.queue("out").await;
    aws.queue("dlq").await;
    let scratch = Scratch::new();
    let writer = Lambda::builder(&moto)
        .plugin("misbehave")
        .env("PIPELINE_PLUGIN_CONFIG", "key=user-1")
        .sinks("default=kinesis://packed?aggregate=true")
        .dlq("sqs://dlq")
        .start(scratch.dir.path());
    let answer = writer.invoke(json!(["r-0", "r-1", "r-2", "r-3", "r-4"]));
    assert_counts(&answer, &json!({"in": 5, "transformed": 5, "outputs": 5}));
    let written = aws.stream_data("packed").await;
    assert_eq!(written.len(), 1, "one aggregate for one key: {written:?}");
    assert_eq!(written[0].0, "user-1");
    assert!(written[0].1.starts_with(&[0xf3, 0x89, 0x9a, 0xc2]));

    let reader_dir = Scratch::new();
    let reader = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=sqs://out")
        .dlq("sqs://dlq")
        .start(reader_dir.dir.path());
    let data: Vec<(&str, Vec<u8>)> = written
        .iter()
        .map(|(_, d)| ("shardId-000000000000", d.clone()))
        .collect();
    let answer = reader.invoke(kinesis_data_event(&data));
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(
        aws.drain_queue(&out).await,
        ["r-0", "r-1", "r-2", "r-3", "r-4"]
    );
}

/// `host run --format kinesis-event` unpacks aggregates as the Lambda host does. One of
/// 60,000 tiny records stays inside a 512 MB function; one naming a partition key longer
/// than Kinesis allows (which every record would carry through the plugin and the
/// sinks) goes to the DLQ whole.
#[test]
fn host_run_unpacks_aggregates_and_refuses_keys_kinesis_would() {
    let s = Scratch::new();
    let many = kpl_aggregate(&vec![("k", &b"x"[..]); 60_000]);
    assert!(many.len() < 1 << 20, "a Kinesis record is at most 1 MiB");
    let plain = kpl_aggregate(&[("a", br#"{"n":1}"#), ("b", br#"{"n":2}"#)]);
    let long_key = "k".repeat(512 << 10);
    let hostile = kpl_aggregate(&[(long_key.as_str(), &b"x"[..]), ("short", b"y")]);
    let event = kinesis_data_event(&[
        ("shardId-1", plain),
        ("shardId-2", many),
        ("shardId-3", hostile),
    ]);
    let input = s.write("event.json", &event.to_string());
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
    assert_eq!(
        (&summary["in"], &summary["transformed"], &summary["failed"]),
        (&json!(60_003), &json!(60_002), &json!(1)),
        "{summary}"
    );
    let written = std::fs::read_to_string(&out).expect("the outputs");
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(&lines[..2], [r#"{"n":1}"#, r#"{"n":2}"#]);
    assert_eq!(lines.len(), 60_002);
    let dead = s.json_lines("dlq.jsonl");
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("longer than 256")),
        "{}",
        dead[0]
    );
    let peak = summary["peak_memory_bytes"].as_u64().expect("the peak");
    assert!(
        peak < 512 << 20,
        "peak {} MiB in a 512 MB function",
        peak >> 20
    );
}
