//! An S3 notification names one version of an object (its version id, its ETag), and
//! the host delivers that version or nothing: never what the key holds by the time the
//! host reads it, which is a later write with its own notification to deliver it.

use serde_json::{Value, json};

use crate::emulator::{Clients, Moto};
use crate::events::s3_version_event;
use crate::lambda_harness::Lambda;
use crate::support::Scratch;

const KEY: &str = "raw/events.txt";
const V1: [&str; 3] = ["v1 one", "v1 two", "v1 three"];
const V2: [&str; 3] = ["v2 one", "v2 two", "v2 three"];

/// One write of an object, as PutObject answered it.
struct Written {
    etag: String,
    /// `None` in a bucket without versioning.
    version_id: Option<String>,
}

async fn write(aws: &Clients, bucket: &str, lines: &[&str]) -> Written {
    let answer = aws
        .s3
        .put_object()
        .bucket(bucket)
        .key(KEY)
        .body(lines.join("\n").into_bytes().into())
        .send()
        .await
        .expect("put object");
    Written {
        etag: answer
            .e_tag()
            .expect("PutObject answers an ETag")
            .to_owned(),
        version_id: answer.version_id().map(str::to_owned),
    }
}

/// A bucket that keeps every version of its objects.
pub async fn versioned_bucket(aws: &Clients, bucket: &str) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    aws.bucket(bucket).await;
    aws.s3
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning on");
}

/// A function echoing every line (`misbehave`) to the stream `out`, dead letters to the
/// queue `dlq`; both are made here.
async fn function(moto: &Moto, aws: &Clients, scratch: &Scratch) -> Lambda {
    aws.stream("out").await;
    aws.queue("dlq").await;
    Lambda::builder(moto)
        .plugin("misbehave")
        .sinks("default=kinesis://out")
        .dlq("sqs://dlq")
        .start(scratch.dir.path())
}

/// The answer's counts that say what became of the lines and the object.
fn counts(answer: &Value) -> Value {
    json!({
        "in": answer["in"], "transformed": answer["transformed"], "failed": answer["failed"],
        "gone": answer["gone"],
    })
}

/// An answer that says the object named is gone, and names it.
fn assert_gone(answer: &Value, named: &str, log: &str) {
    assert_eq!(
        counts(answer),
        json!({"in": 0, "transformed": 0, "failed": 0, "gone": 1}),
        "{answer}\n{log}"
    );
    let said = answer["gone_objects"][0].as_str().unwrap_or_default();
    assert!(
        said.contains(&format!("s3://incoming/{KEY}")) && said.contains(named),
        "{answer}"
    );
    assert!(log.contains("is gone"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_delivers_the_version_it_names_not_a_later_one() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    versioned_bucket(&aws, "incoming").await;
    let v1 = write(&aws, "incoming", &V1).await;
    // v2 overwrites the key before the host gets to v1's notification.
    let v2 = write(&aws, "incoming", &V2).await;
    let (Some(first), Some(second)) = (v1.version_id.as_deref(), v2.version_id.as_deref()) else {
        panic!("a versioned bucket answers PutObject with a version id");
    };
    assert_ne!(first, second);
    let scratch = Scratch::new();
    let lambda = function(&moto, &aws, &scratch).await;

    let answer = lambda.invoke(s3_version_event("incoming", KEY, &v1.etag, Some(first)));
    assert_eq!(
        aws.stream_records("out").await,
        V1,
        "v1's notification delivers v1's lines: {answer}\n{}",
        lambda.log()
    );
    assert_eq!(
        counts(&answer),
        json!({"in": 3, "transformed": 3, "failed": 0, "gone": 0}),
        "{answer}"
    );

    // v2's own notification delivers v2's lines, and only now.
    let answer = lambda.invoke(s3_version_event("incoming", KEY, &v2.etag, Some(second)));
    assert_eq!(answer["transformed"], 3, "{answer}");
    let mut both = V1.to_vec();
    both.extend(V2);
    assert_eq!(
        aws.stream_records("out").await,
        both,
        "each version's lines once: {}",
        lambda.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_naming_a_deleted_version_delivers_nothing_and_counts_it_gone() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    versioned_bucket(&aws, "incoming").await;
    let v1 = write(&aws, "incoming", &V1).await;
    write(&aws, "incoming", &V2).await;
    let first = v1.version_id.expect("a version id");
    aws.s3
        .delete_object()
        .bucket("incoming")
        .key(KEY)
        .version_id(&first)
        .send()
        .await
        .expect("delete v1");
    let scratch = Scratch::new();
    let lambda = function(&moto, &aws, &scratch).await;

    let answer = lambda.invoke(s3_version_event(
        "incoming",
        KEY,
        &v1.etag,
        Some(first.as_str()),
    ));
    assert_gone(&answer, &first, &lambda.log());
    assert!(
        aws.stream_records("out").await.is_empty(),
        "v2's lines are not delivered as v1's: {}",
        lambda.log()
    );
    let dlq = aws.queue("dlq").await;
    assert!(
        aws.drain_queue(&dlq).await.is_empty(),
        "a gone version is not a dead letter: there is nothing to reprocess"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_versions_an_overwritten_object_is_gone_by_its_etag() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("incoming").await;
    let v1 = write(&aws, "incoming", &V1).await;
    let v2 = write(&aws, "incoming", &V2).await;
    assert_eq!(v1.version_id, None, "the bucket keeps no versions");
    assert_ne!(v1.etag, v2.etag);
    let scratch = Scratch::new();
    let lambda = function(&moto, &aws, &scratch).await;

    // v1's notification names v1 by its ETag alone; the key holds v2 now.
    let answer = lambda.invoke(s3_version_event("incoming", KEY, &v1.etag, None));
    assert_gone(&answer, v1.etag.trim_matches('"'), &lambda.log());
    assert!(
        aws.stream_records("out").await.is_empty(),
        "{}",
        lambda.log()
    );

    // v2's notification: v2's lines, read with its own ETag.
    let answer = lambda.invoke(s3_version_event("incoming", KEY, &v2.etag, None));
    assert_eq!(
        counts(&answer),
        json!({"in": 3, "transformed": 3, "failed": 0, "gone": 0}),
        "{answer}"
    );
    assert_eq!(aws.stream_records("out").await, V2, "{}", lambda.log());
}
