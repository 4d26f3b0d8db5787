//! The Lambda deadline is a budget: with the function's timeout close, no batch, plugin
//! call or retry starts past the invocation's deadline less the margin, and the records
//! left are reported for retry — in order, as Kinesis redelivers from the first one —
//! instead of Lambda killing the invocation and retrying the finished records with them.

use std::time::Duration;

use serde_json::Value;

use crate::emulator::Moto;
use crate::events::{failures, kinesis_event, s3_event, sequence_numbers};
use crate::lambda_harness::{Lambda, LambdaBuilder};
use crate::support::Scratch;

const SHARD: &str = "shardId-000000000001";

/// `first`, six records that spin until the CPU deadline, `last`: one shard.
fn slow_event() -> (Value, Vec<String>) {
    let mut payloads = vec!["first"];
    payloads.extend(["loop"; 6]);
    payloads.push("last");
    let records: Vec<(&str, &str)> = payloads.iter().map(|p| (SHARD, *p)).collect();
    let event = kinesis_event(&records);
    let ids = sequence_numbers(&event);
    (event, ids)
}

/// A function running `misbehave` to the stream `out` with `dlq`, 400 ms of CPU a call,
/// a 1.5 s margin before the deadline, AWS attempts of at most 1 s.
fn misbehave(moto: &Moto, dlq: &str) -> LambdaBuilder {
    Lambda::builder(moto)
        .plugin("misbehave")
        .sinks("default=kinesis://out")
        .dlq(dlq)
        .env("PIPELINE_DEADLINE_MS", "400")
        .env("PIPELINE_TIME_MARGIN_MS", "1500")
        .env("PIPELINE_AWS_ATTEMPT_TIMEOUT_MS", "1000")
}

/// Runs the slow event with `batch_size` records per plugin call, a 2.5 s function
/// timeout and a 1.5 s margin (1 s of work), and checks what was left for the retry.
async fn runs_out_of_time(batch_size: &str) {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let lambda = misbehave(&moto, "sqs://dlq")
        .env("PIPELINE_BATCH_SIZE", batch_size)
        .start(scratch.dir.path());
    lambda.set_timeout(Duration::from_millis(2500));
    let (event, ids) = slow_event();
    let answer = lambda.invoke(event);
    let retried = failures(&answer);
    let log = lambda.log();
    // Six 400 ms loops cannot all run in 1 s: the rest is handed back, and it is the
    // tail of the shard (Kinesis redelivers from the first one reported).
    assert!(
        !retried.is_empty(),
        "nothing left for the retry: {answer}\n{log}"
    );
    assert_eq!(retried[..], ids[ids.len() - retried.len()..], "{answer}");
    // What ran is done: the loops that ran are dead-lettered, `first` delivered.
    let dead = aws.drain_queue(&dlq).await;
    let delivered = aws.stream_records("out").await;
    assert!(
        dead.iter().all(|e| e.contains(r#""kind":"deadline""#)),
        "{dead:?}"
    );
    assert!(delivered.iter().all(|d| d == "first"), "{delivered:?}");
    assert_eq!(
        delivered.len() + dead.len() + retried.len(),
        ids.len(),
        "every record in exactly one place: {log}"
    );
    let counts = lambda.last_counts();
    assert_eq!(
        counts["retried"],
        retried.len(),
        "the summary counts the retried records: {counts}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_batch_starts_past_the_deadline_and_the_rest_of_the_shard_is_retried() {
    runs_out_of_time("1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_stops_bisecting_at_the_deadline_and_its_rest_is_retried() {
    runs_out_of_time("100").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_notification_out_of_time_records_how_far_it_got_and_the_retry_resumes() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("incoming").await;
    aws.bucket("dead").await;
    aws.stream("out").await;
    let lines = [
        "one", "loop", "two", "loop", "three", "loop", "four", "five",
    ];
    aws.put_object("incoming", "raw/slow.txt", lines.join("\n").into_bytes())
        .await;
    let scratch = Scratch::new();
    // Checkpoints go next to an S3 DLQ.
    let lambda = misbehave(&moto, "s3://dead/letters")
        .env("PIPELINE_BATCH_SIZE", "1")
        .start(scratch.dir.path());
    let event = s3_event("incoming", &["raw/slow.txt"]);

    // 1 s of work for three 400 ms loops: the first try runs out of time. S3 invokes
    // asynchronously, so the invocation fails (S3 retries it) after a checkpoint.
    lambda.set_timeout(Duration::from_millis(2500));
    match lambda.invoke_answer(event.clone()) {
        crate::runtime_api::Answer::Error(error) => {
            assert!(error.to_string().contains("out of time"), "{error}");
            assert_eq!(error["errorType"], "OutOfTime", "{error}");
        }
        other => panic!(
            "expected the first try to fail, got {other:?}\n{}",
            lambda.log()
        ),
    }
    let checkpoints = aws.objects("dead", "letters/checkpoints/").await;
    assert_eq!(checkpoints.len(), 1, "{}", lambda.log());

    // S3's retry, with time enough: it resumes where the first try stopped.
    lambda.set_timeout(Duration::from_secs(120));
    let answer = lambda.invoke(event);
    let log = lambda.log();
    assert_eq!(
        aws.stream_records("out").await,
        ["one", "two", "three", "four", "five"],
        "every line once, in order: {answer}\n{log}"
    );
    let dead: usize = aws
        .objects("dead", "letters/dt=")
        .await
        .iter()
        .map(|(_, body)| {
            String::from_utf8_lossy(body)
                .lines()
                .filter(|l| l.contains(r#""kind":"deadline""#))
                .count()
        })
        .sum();
    assert_eq!(dead, 3, "each loop dead-lettered once: {log}");
    assert!(
        aws.objects("dead", "letters/checkpoints/").await.is_empty(),
        "the checkpoint is gone once the notification is done"
    );
    assert!(log.contains("resuming an S3 notification"), "{log}");
}
