//! The idempotency store at the front doors the fault matrix does not cover: `host run
//! --sink --dedup` over the same file twice sends each record once (the second run
//! counts them `duplicate`); a store that cannot be reached stops a run whose input
//! cannot be redelivered, naming the store, before anything is sent; a run to files
//! that fails part-way marks nothing done, so its rerun writes every record; a direct
//! invocation names its records by the field the operator chose.

use serde_json::json;

use crate::emulator::Moto;
use crate::lambda_harness::Lambda;
use crate::proxy::{Fault, Proxy, Rule};
use crate::support::{Run, Scratch, path_str, plugin};

/// `host run` of `misbehave` over the lines of `input`, to a stream `out` and a queue
/// `dlq`, with the store `dedup`.
fn run_lines(scratch: &Scratch, moto: &Moto, input: &std::path::Path, dedup: &str) -> Run {
    let wasm = plugin("misbehave");
    let args = [
        "run",
        "--plugin",
        path_str(&wasm),
        "--input",
        path_str(input),
        "--format",
        "lines",
        "--sink",
        "default=kinesis://out",
        "--dlq",
        "sqs://dlq",
        "--dedup",
        dedup,
    ];
    scratch.host_with_env(&args, None, &moto.env())
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
    assert!(!third.stderr.contains("duplicate="), "{}", third.stderr);
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
    let wasm = plugin("misbehave");
    let args = [
        "run",
        "--plugin",
        path_str(&wasm),
        "--input",
        path_str(&input),
        "--format",
        "lines",
        "--output",
        path_str(&out),
        "--emit",
        "payload",
        "--dlq",
        path_str(&dlq),
        "--dedup",
        "dynamodb://dedup",
        "--batch-size",
        "2",
    ];
    let failed = scratch.host_with_env(&args, None, &proxy.env(moto.env()));
    failed.assert_error("idempotency store dynamodb://dedup");
    assert!(proxy.faulted("PutItem") > 0, "{}", failed.stderr);
    assert!(!out.exists() && !dlq.exists(), "{}", failed.stderr);
    // The store is reachable again: nothing of the failed run is a duplicate.
    let rerun = scratch.host_with_env(&args, None, &moto.env());
    rerun.assert_ok();
    assert_eq!(rerun.balanced(), [4, 3, 0, 1], "{}", rerun.stderr);
    assert!(!rerun.stderr.contains("duplicate="), "{}", rerun.stderr);
    let written = std::fs::read_to_string(&out).expect("the outputs");
    assert_eq!(written, "r-0\nr-2\nr-3\n");
    let dead = scratch.json_lines("dlq.jsonl");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["record"]["payload"], "fail");
    // And now they are done: a third run writes nothing again.
    let third = scratch.host_with_env(&args, None, &moto.env());
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
    let wasm = plugin("misbehave");
    let env = moto.env_with(&[
        ("PIPELINE_PLUGIN", path_str(&wasm)),
        ("PIPELINE_SINKS", "default=kinesis://out"),
        ("PIPELINE_DLQ", "sqs://dlq"),
        ("PIPELINE_DEDUP", "dynamodb://dedup"),
        ("PIPELINE_DEDUP_ID_FIELD", "key"),
    ]);
    let lambda = Lambda::start(&env, scratch.dir.path());
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
