//! DLQ entries that do not fit their queue (SQS takes 256 KiB): never a retry, which
//! would redeliver the record, and every later one of its shard, until the source gives
//! up. With an overflow bucket the entry is stored whole and the queue keeps a pointer
//! that `host reprocess` follows; without one the entry is cut to fit, saying so.

use serde_json::{Value, json};

use crate::emulator::Moto;
use crate::events::kinesis_event;
use crate::lambda_harness::{Lambda, LambdaBuilder};
use crate::support::{Scratch, path_str, plugin, text};

/// A 300 KB record `enrich` refuses (no `user`): its DLQ entry is over 256 KiB.
fn big_refused_record() -> String {
    json!({"id": "big", "pad": "x".repeat(300_000)}).to_string()
}

/// A record `enrich` takes.
const AFTER: &str =
    r#"{"id":"after","user":"u1","action":"buy","amount":1.5,"ts":"2026-11-26T12:00:00Z"}"#;

/// A function running `enrich` from Kinesis to the stream `out`, dead letters to `dlq`.
fn enrich(moto: &Moto) -> LambdaBuilder {
    Lambda::builder(moto)
        .plugin("enrich")
        .sinks("default=kinesis://out")
        .dlq("sqs://dlq")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_too_large_for_the_queue_is_cut_to_fit_and_said_so() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let record = big_refused_record();
    let shard = "shardId-000000000001";
    let (answer, log) = enrich(&moto).invoke(
        scratch.dir.path(),
        kinesis_event(&[(shard, &record), (shard, AFTER)]),
    );
    // Not a retry: the record is dead-lettered and the one after it goes on.
    assert_eq!(answer, json!({"batchItemFailures": []}), "{log}");
    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dead.len(), 1, "{log}");
    let entry: Value = serde_json::from_str(&dead[0]).expect("JSON");
    assert_eq!(entry["error"]["kind"], "domain");
    assert_eq!(entry["cut"]["payload_bytes"], json!(record.len()));
    let kept = text(&entry["record"]["payload"], "the kept payload");
    assert!(kept.len() < record.len() && record.starts_with(kept));
    assert!(log.contains("cut to fit"), "{log}");
    assert_eq!(aws.stream_records("out").await.len(), 1);

    // A cut entry holds only part of its record: reprocessing leaves it where it is.
    aws.sqs
        .send_message()
        .queue_url(&dlq)
        .message_body(&dead[0])
        .send()
        .await
        .expect("put the entry back");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let misbehave = plugin("misbehave");
    let run = scratch.host_with_env(
        &[
            "reprocess",
            "--plugin",
            path_str(&misbehave),
            "--from",
            "sqs://dlq",
            "--sink",
            "default=kinesis://out",
            "--dlq",
            "sqs://dlq",
        ],
        None,
        &moto.env(),
    );
    run.assert_ok();
    assert_eq!(run.count("in"), 0, "{}", run.stderr);
    assert_eq!(
        aws.stream_records("out").await.len(),
        1,
        "nothing cut was sent"
    );
    assert_eq!(aws.drain_queue(&dlq).await.len(), 1, "the entry stays");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_too_large_for_the_queue_overflows_to_s3_and_reprocess_follows_it() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    aws.stream("again").await;
    aws.bucket("dead").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let record = big_refused_record();
    let shard = "shardId-000000000001";
    let (answer, log) = enrich(&moto)
        .env("PIPELINE_DLQ_OVERFLOW", "s3://dead/overflow")
        .invoke(scratch.dir.path(), kinesis_event(&[(shard, &record)]));
    assert_eq!(answer, json!({"batchItemFailures": []}), "{log}");
    let objects = aws.objects("dead", "overflow/").await;
    assert_eq!(objects.len(), 1, "the whole entry is stored: {log}");
    let whole: Value = serde_json::from_slice(&objects[0].1).expect("JSON");
    assert_eq!(text(&whole["record"]["payload"], "payload"), record);

    // The queue holds the pointer; reprocessing reads the whole record through it
    // (`misbehave` passes it through) and delivers it exactly.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let misbehave = plugin("misbehave");
    let run = scratch.host_with_env(
        &[
            "reprocess",
            "--plugin",
            path_str(&misbehave),
            "--from",
            "sqs://dlq",
            "--sink",
            "default=kinesis://again",
            "--dlq",
            "sqs://dlq",
        ],
        None,
        &moto.env(),
    );
    run.assert_ok();
    assert_eq!(run.balanced(), [1, 1, 0, 0]);
    assert_eq!(aws.stream_records("again").await, [record]);
    assert!(
        aws.drain_queue(&dlq).await.is_empty(),
        "the pointer is gone"
    );
}
