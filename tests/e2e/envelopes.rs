//! Envelopes, through the real binary as a Lambda function: an SNS notification inside
//! an SQS message, S3 notifications inside SQS and SNS messages (their objects read from
//! the emulator, each message settled by their records), SNS and EventBridge events.

use serde_json::{Value, json};

use crate::emulator::Moto;
use crate::events::{failures, fifo_event, s3_event, sqs_event};
use crate::lambda_harness::Lambda;
use crate::support::{Scratch, assert_counts};

/// An SNS notification as SNS writes it into an SQS queue (raw delivery off).
fn sns_envelope(message: &str) -> String {
    json!({
        "Type": "Notification", "MessageId": "5f1a0c2e-0000-4000-8000-000000000001",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:uploads", "Message": message,
        "Timestamp": "2026-11-24T13:00:00.000Z", "SignatureVersion": "1",
        "Signature": "EXAMPLE", "SigningCertURL": "https://example.invalid/cert.pem",
        "UnsubscribeURL": "https://example.invalid/unsubscribe",
        "MessageAttributes": {"team": {"Type": "String", "Value": "ingest"}}
    })
    .to_string()
}

/// S3 -> SQS and S3 -> SNS -> SQS beside plain and SNS-wrapped messages: each message
/// that names objects is done when their lines are, and handed back (its progress kept)
/// when one of them must be retried; delivered again, it resumes where it stopped.
#[tokio::test(flavor = "multi_thread")]
async fn s3_notifications_inside_sqs_and_sns_messages_are_read_and_settle_their_message() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("uploads").await;
    aws.bucket("dead").await;
    aws.put_object("uploads", "a.txt", b"a1\na2\n".to_vec())
        .await;
    aws.put_object("uploads", "b.txt", b"b1\nflaky\nb3\n".to_vec())
        .await;
    let out = aws.queue("out").await;
    aws.table("dedup").await;
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=sqs://out")
        .dlq("s3://dead/letters")
        .env("PIPELINE_DEDUP", "dynamodb://dedup")
        .env("PIPELINE_MAX_ATTEMPTS", "2")
        .env("PIPELINE_RETRY_BASE_MS", "1")
        .start(scratch.dir.path());
    let notification = |key: &str| s3_event("uploads", &[key])["Records"].clone();
    let s3_body = |key: &str| json!({ "Records": notification(key) }).to_string();
    let test_event =
        json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "uploads"}).to_string();
    let bodies = [
        "hello".to_owned(),
        sns_envelope("from-sns"),
        s3_body("a.txt"),
        sns_envelope(&s3_body("b.txt")),
        test_event,
    ];
    let event = sqs_event(&bodies.iter().map(String::as_str).collect::<Vec<_>>());

    let answer = lambda.invoke(event.clone());
    assert_eq!(failures(&answer), ["m-3"], "{answer}");
    let mut sent = aws.drain_queue(&out).await;
    sent.sort();
    assert_eq!(sent, ["a1", "a2", "b1", "from-sns", "hello"]);
    assert_counts(
        &lambda.last_counts(),
        &json!({"in": 7, "transformed": 5, "retried": 2, "duplicate": 0, "failed": 0}),
    );
    let checkpoints = aws.objects("dead", "letters/checkpoints/").await;
    assert_eq!(checkpoints.len(), 1, "b.txt's progress is kept");

    // SQS delivers the event again (m-3's visibility timeout): the others are done
    // (duplicates with the store on), and m-3 resumes after `b1`.
    let answer = lambda.invoke(event);
    assert_eq!(failures(&answer), ["m-3"], "{answer}");
    assert_counts(
        &lambda.last_counts(),
        &json!({"in": 6, "transformed": 0, "retried": 2, "duplicate": 4}),
    );
    assert!(aws.drain_queue(&out).await.is_empty());
}

/// A message naming an object that is not there is handed back alone: its queue's own
/// retries and redrive policy decide, and the other messages go on.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_naming_an_object_that_cannot_be_read_is_handed_back_alone() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("uploads").await;
    let out = aws.queue("out").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=sqs://out")
        .dlq("sqs://dlq")
        .start(scratch.dir.path());
    let missing = json!({ "Records": s3_event("uploads", &["missing.txt"])["Records"].clone() });
    let answer = lambda.invoke(sqs_event(&["one", &missing.to_string(), "two"]));
    assert_eq!(failures(&answer), ["m-1"], "{answer}");
    let mut sent = aws.drain_queue(&out).await;
    sent.sort();
    assert_eq!(sent, ["one", "two"]);
    assert!(aws.drain_queue(&dlq).await.is_empty());
    assert!(
        lambda.log().contains("cannot be read"),
        "the log names why: {}",
        lambda.log()
    );
}

/// With `PIPELINE_ENVELOPES=off`, every body reaches the plugin as it is.
#[tokio::test(flavor = "multi_thread")]
async fn envelopes_off_hands_every_body_on_as_it_is() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    let out = aws.queue("out").await;
    aws.queue("dlq").await;
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=sqs://out")
        .dlq("sqs://dlq")
        .env("PIPELINE_ENVELOPES", "off")
        .start(scratch.dir.path());
    let wrapped = sns_envelope("inner");
    let answer = lambda.invoke(sqs_event(&[&wrapped]));
    assert_eq!(failures(&answer), Vec::<String>::new());
    assert_eq!(aws.drain_queue(&out).await, [wrapped]);
}

/// SNS to a subscribed function and an EventBridge rule's target: the message and the
/// `detail` are the records; S3's "Object Created" through EventBridge names an object.
#[tokio::test(flavor = "multi_thread")]
async fn sns_and_eventbridge_events_and_an_object_created_through_eventbridge() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("uploads").await;
    aws.put_object("uploads", "raw/c d.txt", b"c1\nc2\n".to_vec())
        .await;
    let out = aws.queue("out").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=sqs://out")
        .dlq("sqs://dlq")
        .start(scratch.dir.path());
    let sns: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../tests/fixtures/sns-event.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture"),
    )
    .expect("JSON");
    let answer = lambda.invoke(sns);
    assert_counts(&answer, &json!({"in": 1, "transformed": 1}));
    let sent = aws.drain_queue(&out).await;
    assert!(sent[0].starts_with(r#"{"id":"s1""#), "{sent:?}");

    let rule = json!({"version": "0", "id": "ev-1", "detail-type": "Order Placed",
                      "source": "com.example.orders", "account": "123456789012",
                      "time": "2026-11-24T13:00:00Z", "region": "us-east-1", "resources": [],
                      "detail": "order-1"});
    let answer = lambda.invoke(rule);
    assert_counts(&answer, &json!({"in": 1, "transformed": 1}));
    assert_eq!(
        aws.drain_queue(&out).await,
        ["order-1"],
        "a text detail is its text"
    );

    let created = json!({"version": "0", "id": "ev-2", "detail-type": "Object Created",
                         "source": "aws.s3", "account": "123456789012",
                         "time": "2026-11-24T13:00:00Z", "region": "us-east-1",
                         "resources": ["arn:aws:s3:::uploads"],
                         "detail": {"version": "0", "bucket": {"name": "uploads"},
                                    "object": {"key": "raw/c d.txt", "size": 6},
                                    "reason": "PutObject"}});
    let answer = lambda.invoke(created);
    assert_counts(&answer, &json!({"in": 2, "transformed": 2}));
    assert_eq!(aws.drain_queue(&out).await, ["c1", "c2"]);
    assert!(aws.drain_queue(&dlq).await.is_empty());
}

/// `host run` replays an SQS event whose messages name S3 objects as the Lambda host
/// runs it: the objects read in their messages' places, a message whose object cannot
/// be read listed as handed back.
#[tokio::test(flavor = "multi_thread")]
async fn host_run_reads_the_objects_an_event_s_messages_name() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("uploads").await;
    aws.put_object("uploads", "a.txt", b"a1\na2\n".to_vec())
        .await;
    let scratch = Scratch::new();
    let body = |key: &str| json!({ "Records": s3_event("uploads", &[key])["Records"].clone() });
    let event = sqs_event(&[
        "plain",
        &body("a.txt").to_string(),
        &body("missing.txt").to_string(),
        "last",
    ]);
    let input = scratch.write("event.json", &event.to_string());
    let out = scratch.path("out.txt");
    let run = scratch
        .run("misbehave")
        .input(&input)
        .format("event")
        .output(&out)
        .emit("payload")
        .envs(moto.env())
        .go();
    assert!(run.status.success(), "{}", run.stderr);
    let written = std::fs::read_to_string(&out).expect("the outputs");
    assert_eq!(written, "plain\na1\na2\nlast\n");
    assert!(
        run.stderr.contains("handed_back=1") && run.stderr.contains("handed back: m-2"),
        "{}",
        run.stderr
    );
}

/// FIFO: a message whose object cannot be read is handed back with the later messages of
/// its group (unread, in order) and not those of another; every record is counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_message_handed_back_unread_holds_its_group_and_is_counted() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("uploads").await;
    let out = aws.queue("out").await;
    aws.queue("dlq").await;
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=sqs://out")
        .dlq("sqs://dlq")
        .start(scratch.dir.path());
    let missing = json!({ "Records": s3_event("uploads", &["missing.txt"])["Records"].clone() });
    let missing = missing.to_string();
    let answer = lambda.invoke(fifo_event(&[
        ("g", "first"),
        ("g", &missing),
        ("g", "after"),
        ("h", "other"),
    ]));
    assert_eq!(failures(&answer), ["m-1", "m-2"], "{answer}");
    let mut sent = aws.drain_queue(&out).await;
    sent.sort();
    assert_eq!(sent, ["first", "other"]);
    assert_counts(
        &lambda.last_counts(),
        &json!({"in": 3, "transformed": 2, "retried": 1}),
    );
}
