//! SQS's own rules, which the emulator does not keep and the fault proxy does: a message
//! body or attribute with a character outside SQS's documented set makes SQS refuse the
//! whole call. Outputs and dead-letter entries holding such characters must still
//! arrive, exactly, and must not take the other messages of their call down with them.

use aws_config::BehaviorVersion;
use aws_sdk_sqs::config::{Credentials, Region};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::emulator::Moto;
use crate::events::kinesis_event;
use crate::lambda_harness::Lambda;
use crate::proxy::Proxy;
use crate::support::Scratch;

/// An SQS client that goes through `proxy`.
async fn sqs_through(proxy: &Proxy) -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&proxy.endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

#[tokio::test(flavor = "multi_thread")]
async fn characters_sqs_refuses_reach_the_queue_and_the_dlq_exactly() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    let out = aws.queue("out").await;
    let dlq = aws.queue("dlq").await;
    let proxy = Proxy::start(&moto.endpoint);

    // The proxy keeps SQS's rule: a body with U+FFFF is refused, and the call with it.
    let direct = sqs_through(&proxy).await;
    let refused = direct
        .send_message()
        .queue_url(&out)
        .message_body("a\u{FFFF}")
        .send()
        .await;
    assert!(refused.is_err(), "the proxy let U+FFFF through");
    assert_eq!(proxy.sqs_refused(), 1);

    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=sqs://out")
        .dlq("sqs://dlq")
        .env("PIPELINE_MAX_ATTEMPTS", "2")
        .env("PIPELINE_RETRY_BASE_MS", "1")
        .through(&proxy)
        .start(scratch.dir.path());
    // `misbehave` echoes the first and third; the second fails (domain), and its
    // partition key, in its DLQ entry, holds U+FFFE.
    let shard = "shardId-000000000001";
    let odd = "echo a\u{1}b\u{FFFF}c\u{FFFE}";
    let mut event = kinesis_event(&[(shard, odd), (shard, "fail"), (shard, "plain")]);
    event["Records"][1]["kinesis"]["partitionKey"] = json!("k\u{FFFE}\u{7}");
    let answer = lambda.invoke(event);
    assert_eq!(answer, json!({"batchItemFailures": []}), "{}", lambda.log());
    assert_eq!(
        proxy.sqs_refused(),
        1,
        "the host sent SQS a call it refuses: {}",
        lambda.log()
    );

    let mut bodies = aws.drain_queue(&out).await;
    bodies.sort();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[1], "plain");
    // The odd one travels as base64 (its `content-transfer-encoding` attribute says so).
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&bodies[0])
        .expect("the odd body is base64");
    assert_eq!(decoded, odd.as_bytes());

    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("\\ufffe"), "escaped: {}", dead[0]);
    let entry: Value = serde_json::from_str(&dead[0]).expect("a DLQ entry is JSON");
    assert_eq!(entry["record"]["key"], "k\u{FFFE}\u{7}", "{entry}");
    assert_eq!(entry["error"]["kind"], "domain", "{entry}");
}
