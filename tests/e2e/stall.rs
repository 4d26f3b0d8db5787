//! A sink that stalls: a loopback proxy in front of the emulator holds every Kinesis
//! `PutRecords` call open and never answers. Every AWS call has an attempt and an
//! operation timeout, so the records fail their delivery in bounded time and go to the
//! DLQ (through the same proxy, which forwards everything else) instead of the
//! invocation hanging until Lambda kills it.

use serde_json::json;

use crate::emulator::Moto;
use crate::events::{failures, kinesis_event};
use crate::lambda_harness::Lambda;
use crate::proxy::{Fault, Proxy, Rule};
use crate::support::{Scratch, assert_counts};

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_sink_fails_its_attempts_in_time_and_the_records_are_dead_lettered() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    let dlq = aws.queue("dlq").await;
    let proxy = Proxy::start(&moto.endpoint);
    proxy.set(vec![Rule::always("PutRecords", Fault::Hold)]);
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=kinesis://out")
        .dlq("sqs://dlq")
        .env("PIPELINE_MAX_ATTEMPTS", "2")
        .env("PIPELINE_RETRY_BASE_MS", "1")
        .env("PIPELINE_AWS_ATTEMPT_TIMEOUT_MS", "300")
        .env("PIPELINE_AWS_TIMEOUT_MS", "1000")
        .through(&proxy)
        .start(scratch.dir.path());
    let shard = "shardId-000000000001";
    let answer = lambda.invoke(kinesis_event(&[(shard, "one"), (shard, "two")]));
    let log = lambda.log();
    assert!(
        proxy.faulted("PutRecords") > 0,
        "the proxy held no call: {log}"
    );
    assert!(failures(&answer).is_empty(), "{answer}");
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dead.len(), 2, "{log}");
    assert!(
        dead.iter().all(|e| e.contains(r#""kind":"delivery""#)),
        "{dead:?}"
    );
    assert!(aws.stream_records("out").await.is_empty());
    assert_counts(
        &lambda.last_counts(),
        &json!({"in": 2, "transformed": 0, "dropped": 0, "failed": 2}),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_stalled_near_the_deadline_is_cut_before_it_and_its_records_handed_back() {
    // One sink call whose SDK attempts (3 of 1.25 s) outlast the 3.5 s invocation: started
    // inside the budget, it would still be running when Lambda kills the function, which
    // then retries the whole batch. The call is cut at the deadline (less the time kept
    // for the answer) and its records are handed back, in order, with an answer in time.
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    let dlq = aws.queue("dlq").await;
    let proxy = Proxy::start(&moto.endpoint);
    proxy.set(vec![Rule::always("PutRecords", Fault::Hold)]);
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=kinesis://out")
        .dlq("sqs://dlq")
        .env("PIPELINE_TIME_MARGIN_MS", "1500")
        .env("PIPELINE_AWS_ATTEMPT_TIMEOUT_MS", "1250")
        .env("PIPELINE_AWS_TIMEOUT_MS", "30000")
        .through(&proxy)
        .start(scratch.dir.path());
    // The cold start first (compiling the plugin), with time to spare.
    let warm = lambda.invoke(json!([]));
    assert_eq!(warm["in"], 0, "{warm}");
    let timeout = std::time::Duration::from_millis(3500);
    lambda.set_timeout(timeout);
    let shard = "shardId-000000000001";
    let event = kinesis_event(&[(shard, "one"), (shard, "two")]);
    let sent = std::time::Instant::now();
    let answer = lambda.invoke(event.clone());
    // Measured from before the event was handed over: the deadline came later than this.
    let took = sent.elapsed();
    assert!(
        took < timeout,
        "answered after {took:?}, past the {timeout:?} deadline: {}",
        lambda.log()
    );
    assert!(proxy.faulted("PutRecords") > 0, "{}", lambda.log());
    assert_eq!(
        failures(&answer),
        crate::events::sequence_numbers(&event),
        "both records handed back: {answer}"
    );
    assert!(aws.drain_queue(&dlq).await.is_empty());
}
