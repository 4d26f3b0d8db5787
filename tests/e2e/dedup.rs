//! The idempotency store at the front doors the fault matrix does not cover: `host run
//! --sink --dedup` over the same file twice sends each record once (the second run
//! counts them `duplicate`); a store that cannot be reached stops a run whose input
//! cannot be redelivered, naming the store, before anything is sent; a run to files
//! that fails part-way marks nothing done, so its rerun writes every record; a direct
//! invocation names its records by the field the operator chose; a record another run
//! held past `host run`'s time is dead-lettered `held`, and reprocessing its entry after
//! the holder delivered it sends nothing again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;

use crate::emulator::{Clients, Moto};
use crate::lambda_harness::Lambda;
use crate::proxy::{Fault, Proxy, Rule};
use crate::support::{Run, Scratch, path_str, plugin};

/// `host run` of `misbehave` over the lines of `input`, to a stream `out` and a queue
/// `dlq`, with the store `dedup`; the summary as JSON.
fn run_lines(scratch: &Scratch, moto: &Moto, input: &std::path::Path, dedup: &str) -> Run {
    scratch
        .run("misbehave")
        .input(input)
        .format("lines")
        .sink("default=kinesis://out")
        .dlq("sqs://dlq")
        .dedup(dedup)
        .summary_json()
        .envs(moto.env())
        .go()
}

#[tokio::test(flavor = "multi_thread")]
async fn host_run_over_the_same_file_twice_sends_each_record_once() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    aws.queue("dlq").await;
    aws.table("dedup").await;
    let scratch = Scratch::new();
    let input = scratch.write("events.jsonl", "r-0\nr-1\nfail\nr-3\ndrop\n");
    let run = || run_lines(&scratch, &moto, &input, "dynamodb://dedup");
    let first = run();
    first.assert_ok();
    assert_eq!(first.count("transformed"), 3, "{}", first.stderr);
    let second = run();
    second.assert_ok();
    // Every record finished the first time: delivered, dead-lettered or dropped.
    assert_eq!(second.count("duplicate"), 5, "{}", second.stderr);
    assert_eq!(second.count("transformed"), 0, "{}", second.stderr);
    assert_eq!(aws.stream_records("out").await, ["r-0", "r-1", "r-3"]);
    let dlq = aws.queue("dlq").await;
    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let entry: serde_json::Value = serde_json::from_str(&dead[0]).expect("an entry");
    let identity = entry["identity"].as_str().expect("an identity");
    // The path, the file's size and time, the line.
    assert!(
        identity.starts_with("file/")
            && identity.contains("events.jsonl@")
            && identity.ends_with("#3"),
        "{identity}"
    );
    // The same path with new contents (a rotated log) is new input, not a redelivery.
    std::thread::sleep(std::time::Duration::from_millis(20));
    scratch.write("events.jsonl", "r-0\nr-1\nr-5\n");
    let third = run();
    third.assert_ok();
    assert_eq!(third.count("transformed"), 3, "{}", third.stderr);
    assert_eq!(third.count("duplicate"), 0, "{}", third.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_cannot_be_reached_stops_the_run_before_anything_is_sent() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    aws.queue("dlq").await;
    // No table.
    let scratch = Scratch::new();
    let input = scratch.write("events.jsonl", "r-0\nr-1\n");
    let run = run_lines(&scratch, &moto, &input, "dynamodb://missing");
    run.assert_error("idempotency store dynamodb://missing");
    assert!(aws.stream_records("out").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_to_files_that_fails_part_way_leaves_every_record_to_its_rerun() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.table("dedup").await;
    let proxy = Proxy::start(&moto.endpoint);
    // The first batch's two claims go through; every later one fails: the store cannot
    // be reached, and a file is not redelivered, so the run stops after one batch went
    // to the files (their `.partial`s, removed with the failed run).
    proxy.set(vec![Rule {
        skip: 2,
        ..Rule::always("PutItem", Fault::Down)
    }]);
    let scratch = Scratch::new();
    let input = scratch.write("events.txt", "r-0\nfail\nr-2\nr-3\n");
    let (out, dlq) = (scratch.path("out.jsonl"), scratch.path("dlq.jsonl"));
    let run = scratch
        .run("misbehave")
        .input(&input)
        .format("lines")
        .output(&out)
        .emit("payload")
        .dlq(path_str(&dlq))
        .dedup("dynamodb://dedup")
        .flag("--batch-size", "2")
        .summary_json();
    let failed = run.clone().envs(proxy.env(moto.env())).go();
    failed.assert_error("idempotency store dynamodb://dedup");
    assert!(proxy.faulted("PutItem") > 0, "{}", failed.stderr);
    assert!(!out.exists() && !dlq.exists(), "{}", failed.stderr);
    // The store is reachable again: nothing of the failed run is a duplicate.
    let run = run.envs(moto.env());
    let rerun = run.go();
    rerun.assert_ok();
    assert_eq!(rerun.balanced(), [4, 3, 0, 1], "{}", rerun.stderr);
    assert_eq!(rerun.count("duplicate"), 0, "{}", rerun.stdout);
    let written = std::fs::read_to_string(&out).expect("the outputs");
    assert_eq!(written, "r-0\nr-2\nr-3\n");
    let dead = scratch.json_lines("dlq.jsonl");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["record"]["payload"], "fail");
    // And now they are done: a third run writes nothing again.
    let third = run.go();
    third.assert_ok();
    assert_eq!(third.count("duplicate"), 4, "{}", third.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_direct_invocation_names_its_records_by_their_id_field() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    aws.queue("dlq").await;
    aws.table("dedup").await;
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=kinesis://out")
        .dlq("sqs://dlq")
        .env("PIPELINE_DEDUP", "dynamodb://dedup")
        .env("PIPELINE_DEDUP_ID_FIELD", "key")
        .start(scratch.dir.path());
    // `a` twice in one event: the second is the same record again. No `key`: not
    // deduplicated, so sent each time.
    let event = json!([{"key": "a"}, {"key": "a"}, {"key": 7}, {"other": 1}]);
    let first = lambda.invoke(event.clone());
    assert_eq!(
        (first["transformed"].clone(), first["duplicate"].clone()),
        (json!(3), json!(1)),
        "{first}"
    );
    let second = lambda.invoke(event);
    assert_eq!(
        (second["transformed"].clone(), second["duplicate"].clone()),
        (json!(1), json!(3)),
        "{second}"
    );
    assert_eq!(
        aws.stream_records("out").await,
        [
            r#"{"key":"a"}"#,
            r#"{"key":7}"#,
            r#"{"other":1}"#,
            r#"{"other":1}"#
        ]
    );
}

/// Writes the store's item for `identity` as another host would (`dedup` table): a
/// claim or a done mark, by `fields`.
async fn put_mark(aws: &Clients, identity: &str, fields: Vec<(&str, AttributeValue)>) {
    let mut put = aws
        .dynamodb
        .put_item()
        .table_name("dedup")
        .item("id", AttributeValue::S(identity.to_owned()));
    for (name, value) in fields {
        put = put.item(name, value);
    }
    put.send().await.expect("put a store item");
}

/// The epoch second `after` from now, as the store keeps a claim's expiry and a TTL.
fn epoch_seconds(after: Duration) -> AttributeValue {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    AttributeValue::N((now + after).as_secs().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_another_run_held_is_dead_lettered_held_and_not_sent_again_by_reprocess() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    let dlq = aws.queue("dlq").await;
    aws.table("dedup").await;
    let scratch = Scratch::new();
    let input = scratch.write("events.txt", "r-0\n");
    // Its line's identity, as `host run` names it: the path as given, this content's size
    // and modification time (nanoseconds), the line.
    let meta = std::fs::metadata(&input).expect("the input's metadata");
    let modified = meta
        .modified()
        .expect("a modification time")
        .duration_since(UNIX_EPOCH)
        .expect("a modification time after 1970")
        .as_nanos();
    let identity = format!("file/{}@{}-{modified}#1", path_str(&input), meta.len());
    // Another run holds it, for an hour.
    put_mark(
        &aws,
        &identity,
        vec![
            ("state", AttributeValue::S("claimed".into())),
            ("owner", AttributeValue::S("another-run".into())),
            ("expires", epoch_seconds(Duration::from_secs(3600))),
            ("ttl", epoch_seconds(Duration::from_secs(90_000))),
        ],
    )
    .await;

    // A file is not redelivered: once this run has waited out its claim time (1 s, and
    // the 2 s it allows besides), the record is dead-lettered.
    let first = scratch
        .run("misbehave")
        .input(&input)
        .format("lines")
        .sink("default=kinesis://out")
        .dlq("sqs://dlq")
        .dedup("dynamodb://dedup")
        .flag("--dedup-claim-seconds", "1")
        .envs(moto.env())
        .go();
    first.assert_ok();
    assert_eq!(first.balanced(), [1, 0, 0, 1], "{}", first.stderr);
    assert!(aws.stream_records("out").await.is_empty());
    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let entry: serde_json::Value = serde_json::from_str(&dead[0]).expect("an entry");
    assert_eq!(entry["error"]["kind"], "held", "{entry}");
    assert_eq!(entry["identity"], identity.as_str(), "{entry}");
    aws.sqs
        .send_message()
        .queue_url(&dlq)
        .message_body(&dead[0])
        .send()
        .await
        .expect("put the entry back");

    // The holder finishes the record: delivers it and marks it done.
    aws.kinesis
        .put_record()
        .stream_name("out")
        .partition_key("r-0")
        .data(aws_sdk_kinesis::primitives::Blob::new("r-0"))
        .send()
        .await
        .expect("the holder's delivery");
    put_mark(
        &aws,
        &identity,
        vec![
            ("state", AttributeValue::S("done".into())),
            ("ttl", epoch_seconds(Duration::from_secs(86_400))),
        ],
    )
    .await;

    // Reprocessing claims the `held` entry by its record's identity: done, so a
    // duplicate; the entry goes and nothing is sent.
    std::thread::sleep(Duration::from_millis(50));
    let wasm = plugin("misbehave");
    let reprocess = scratch.host_with_env(
        &[
            "reprocess",
            "--plugin",
            path_str(&wasm),
            "--from",
            "sqs://dlq",
            "--sink",
            "default=kinesis://out",
            "--dlq",
            "sqs://dlq",
            "--dedup",
            "dynamodb://dedup",
        ],
        None,
        &moto.env(),
    );
    reprocess.assert_ok();
    assert_eq!(reprocess.count("in"), 1, "{}", reprocess.stderr);
    assert_eq!(
        reprocess.count("transformed"),
        0,
        "the holder delivered it: {}",
        reprocess.stderr
    );
    assert_eq!(reprocess.count("duplicate"), 1, "{}", reprocess.stderr);
    assert_eq!(aws.stream_records("out").await, ["r-0"]);
    assert!(aws.drain_queue(&dlq).await.is_empty());
}
