//! What real streams carry, through the real binary as a Lambda function: KPL-aggregated
//! Kinesis records.

use serde_json::json;

use crate::emulator::Moto;
use crate::events::{failures, kinesis_data_event, kpl_aggregate};
use crate::lambda_harness::Lambda;
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
    assert_eq!(aws.stream_records("out").await, ["first", "second", "third"]);
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
