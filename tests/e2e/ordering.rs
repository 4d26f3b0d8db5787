//! Ordered sources: Kinesis and DynamoDB Streams redeliver from the lowest item reported
//! for retry, SQS FIFO keeps each message group in order. Once an item of a shard or a
//! group is handed back, every later item of it is handed back too and none of their
//! outputs go out; other shards and groups carry on.

use serde_json::json;

use crate::emulator::Moto;
use crate::events::{failures, fifo_event, kinesis_event, sequence_numbers};
use crate::lambda_harness::Lambda;
use crate::support::{Scratch, assert_counts};

/// A function running `misbehave` (two attempts, 1 ms apart) to `sinks`, dead letters to
/// the queue `dlq`.
fn misbehave(moto: &Moto, scratch: &Scratch, sinks: &str) -> Lambda {
    Lambda::builder(moto)
        .env("PIPELINE_MAX_ATTEMPTS", "2")
        .env("PIPELINE_RETRY_BASE_MS", "1")
        .plugin("misbehave")
        .sinks(sinks)
        .dlq("sqs://dlq")
        .start(scratch.dir.path())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kinesis_record_to_retry_holds_back_the_rest_of_its_shard() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let lambda = misbehave(&moto, &scratch, "default=kinesis://out");
    let (a, b) = ("shardId-000000000006", "shardId-000000000007");
    let event = kinesis_event(&[
        (a, "a-first"),
        (a, "flaky"),
        (a, "a-after"),
        (a, "fail"),
        (b, "b-only"),
        (a, "a-last"),
    ]);
    let ids = sequence_numbers(&event);
    let answer = lambda.invoke(event);
    // The flaky record and every later one of its shard; shard b is unaffected.
    assert_eq!(
        failures(&answer),
        [ids[1].as_str(), &ids[2], &ids[3], &ids[5]],
        "{answer}"
    );
    assert_eq!(aws.stream_records("out").await, ["a-first", "b-only"]);
    // `fail` comes after the retried record: it is redelivered, not dead-lettered now.
    assert!(aws.drain_queue(&dlq).await.is_empty());
    assert_counts(
        &lambda.last_counts(),
        &json!({"in": 6, "transformed": 2, "dropped": 0, "failed": 0, "outputs": 2, "retried": 4}),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sqs_fifo_message_to_retry_holds_back_the_rest_of_its_group() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    let out = aws.queue("out").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let lambda = misbehave(&moto, &scratch, "default=sqs://out");
    let answer = lambda.invoke(fifo_event(&[
        ("ann", "ann-1"),
        ("ann", "flaky"),
        ("bob", "bob-1"),
        ("ann", "ann-2"),
        ("bob", "bob-2"),
    ]));
    assert_eq!(failures(&answer), ["m-1", "m-3"], "{answer}");
    let mut delivered = aws.drain_queue(&out).await;
    delivered.sort();
    assert_eq!(delivered, ["ann-1", "bob-1", "bob-2"]);
    assert!(aws.drain_queue(&dlq).await.is_empty());
    assert_counts(
        &lambda.last_counts(),
        &json!({"in": 5, "transformed": 3, "dropped": 0, "failed": 0, "outputs": 3, "retried": 2}),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_records_with_the_same_body_both_reach_a_fifo_queue() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    let out = aws.queue("out.fifo").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let lambda = misbehave(&moto, &scratch, "default=sqs://out.fifo");
    // Two different messages (ids m-0, m-1) with the same body: the FIFO queue's
    // deduplication must not take one for a retry of the other.
    let answer = lambda.invoke(fifo_event(&[("ann", "same"), ("ann", "same")]));
    assert_eq!(failures(&answer), Vec::<String>::new(), "{answer}");
    assert_eq!(aws.drain_queue(&out).await, ["same", "same"]);
    assert!(aws.drain_queue(&dlq).await.is_empty());
}
