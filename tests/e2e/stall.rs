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
use crate::support::{Scratch, path_str, plugin};

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_sink_fails_its_attempts_in_time_and_the_records_are_dead_lettered() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    let dlq = aws.queue("dlq").await;
    let proxy = Proxy::start(&moto.endpoint);
    proxy.set(vec![Rule::always("PutRecords", Fault::Hold)]);
    let scratch = Scratch::new();
    let wasm = plugin("misbehave");
    let env = proxy.env(moto.env_with(&[
        ("PIPELINE_PLUGIN", path_str(&wasm)),
        ("PIPELINE_SINKS", "default=kinesis://out"),
        ("PIPELINE_DLQ", "sqs://dlq"),
        ("PIPELINE_MAX_ATTEMPTS", "2"),
        ("PIPELINE_RETRY_BASE_MS", "1"),
        ("PIPELINE_AWS_ATTEMPT_TIMEOUT_MS", "300"),
        ("PIPELINE_AWS_TIMEOUT_MS", "1000"),
    ]));
    let lambda = Lambda::start(&env, scratch.dir.path());
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
    assert!(
        log.contains("in=2 transformed=0 dropped=0 failed=2"),
        "{log}"
    );
}
