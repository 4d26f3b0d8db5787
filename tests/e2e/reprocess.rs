//! The user's round trip against the emulator: run into sinks, find the broken records
//! in the DLQ with their reasons, fix the cause, reprocess them.

use serde_json::Value;

use crate::emulator::Moto;
use crate::support::{Run, Scratch, path_str, plugin};

const EVENTS: &str = include_str!("../../examples/events.jsonl");

fn host(scratch: &Scratch, moto: &Moto, args: &[&str]) -> Run {
    scratch.host_with_env(args, None, &moto.env())
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_from_a_run_into_sinks_are_reprocessed_after_a_fix() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("valid").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let input = scratch.write("events.jsonl", EVENTS);
    let wasm = plugin("validate");
    let wasm = path_str(&wasm);

    let run = scratch
        .run(wasm)
        .input(&input)
        .sink("default=kinesis://valid")
        .dlq("sqs://dlq")
        .envs(moto.env())
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [8, 2, 1, 5]);
    assert_eq!(aws.stream_records("valid").await.len(), 2);

    // The amounts limit was too strict: raise it and reprocess what was dead-lettered.
    std::thread::sleep(std::time::Duration::from_millis(1100)); // entries are stamped to the second
    let run = host(
        &scratch,
        &moto,
        &[
            "reprocess",
            "--plugin",
            wasm,
            "--config",
            "max_amount=1000000",
            "--from",
            "sqs://dlq",
            "--sink",
            "default=kinesis://valid",
            "--dlq",
            "sqs://dlq",
        ],
    );
    run.assert_ok();
    assert_eq!(
        run.balanced(),
        [5, 1, 0, 4],
        "e8 passes now; the other four fail again"
    );
    let delivered = aws.stream_records("valid").await;
    assert_eq!(delivered.len(), 3);
    assert!(delivered[2].contains("\"e8\""), "{delivered:?}");
    // The five old entries are gone; the four that failed again are new entries.
    let remaining: Vec<Value> = aws
        .drain_queue(&dlq)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).expect("entry"))
        .collect();
    assert_eq!(remaining.len(), 4);
    assert!(
        remaining
            .iter()
            .all(|e| e["attempts"] == 1 && e["error"]["kind"] == "domain"),
        "{remaining:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kinesis_dlq_or_a_file_dlq_with_sinks_is_refused() {
    let moto = Moto::start();
    let scratch = Scratch::new();
    let input = scratch.write("events.jsonl", EVENTS);
    let run = |sink: &str, dlq: &str| {
        scratch
            .run("validate")
            .input(&input)
            .sink(sink)
            .dlq(dlq)
            .envs(moto.env())
            .go()
    };
    run("default=kinesis://x", "dlq.jsonl")
    .assert_error("--dlq: the dead-letter queue must be sqs://QUEUE or s3://BUCKET/PREFIX where outputs go to sinks");
    run("default=kinesis://x", "kinesis://y")
        .assert_error("--dlq: the dead-letter queue must be sqs://QUEUE or s3://BUCKET/PREFIX");
    run("default=sqs://missing", "sqs://missing")
        .assert_error("sink default (--sink): SQS queue missing");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_dead_letter_prefix_is_reprocessed_object_by_object() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("lake").await;
    aws.bucket("dead").await;
    let scratch = Scratch::new();
    let input = scratch.write("events.jsonl", EVENTS);
    let wasm = plugin("validate");
    let wasm = path_str(&wasm);
    let run = scratch
        .run(wasm)
        .input(&input)
        .sink("default=s3://lake/valid")
        .dlq("s3://dead/letters")
        .envs(moto.env())
        .go();
    run.assert_ok();
    let before = aws.objects("dead", "letters/").await;
    assert_eq!(before.len(), 1);
    assert_eq!(String::from_utf8_lossy(&before[0].1).lines().count(), 5);

    let run = host(
        &scratch,
        &moto,
        &[
            "reprocess",
            "--plugin",
            wasm,
            "--config",
            "max_amount=1000000",
            "--from",
            "s3://dead/letters",
            "--sink",
            "default=s3://lake/valid",
            "--dlq",
            "s3://dead/letters",
        ],
    );
    run.assert_ok();
    assert_eq!(run.balanced(), [5, 1, 0, 4]);
    let after = aws.objects("dead", "letters/").await;
    assert_eq!(
        after.len(),
        1,
        "the old object is gone, the four new entries are in a new one"
    );
    assert_ne!(after[0].0, before[0].0);
    assert_eq!(String::from_utf8_lossy(&after[0].1).lines().count(), 4);
    let delivered: usize = aws
        .objects("lake", "valid/")
        .await
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).lines().count())
        .sum();
    assert_eq!(delivered, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_captured_s3_notification_replays_from_the_command_line() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("incoming").await;
    aws.stream("enriched").await;
    let dlq = aws.queue("dlq").await;
    aws.put_object(
        "incoming",
        "raw/2026-11-24/events part=1.jsonl.gz",
        pipeline_host::sinks::gzip(EVENTS.as_bytes()),
    )
    .await;
    let scratch = Scratch::new();
    // The standard test event names incoming/raw/2026-11-24/events+part%3D1.jsonl.gz; it
    // is given the ETag of the object just written, as S3 would have, since the host
    // reads only the version a notification names (If-Match on its ETag).
    let head = aws
        .s3
        .head_object()
        .bucket("incoming")
        .key("raw/2026-11-24/events part=1.jsonl.gz")
        .send()
        .await
        .expect("head the object");
    let etag = head.e_tag().expect("an ETag").trim_matches('"').to_owned();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/s3-event.json");
    let mut captured: Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture).expect("the fixture"))
            .expect("the fixture is JSON");
    captured["Records"][0]["s3"]["object"]["eTag"] = etag.into();
    let event = scratch.write("s3-event.json", &captured.to_string());
    let run = scratch
        .run("enrich")
        .input(&event)
        .format("s3-event")
        .sink("default=kinesis://enriched")
        .dlq("sqs://dlq")
        .envs(moto.env())
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [8, 6, 0, 2]);
    assert_eq!(aws.stream_records("enriched").await.len(), 6);
    assert_eq!(aws.drain_queue(&dlq).await.len(), 2);
    let local = scratch.run("enrich").input(&event).format("event").go();
    local.assert_error("use --format s3-event, which reads them from S3");
}

#[tokio::test(flavor = "multi_thread")]
async fn reprocess_reads_gzip_dlq_objects_and_names_what_it_skips() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("dead").await;
    aws.stream("again").await;
    let entry = serde_json::json!({
        "record": {"payload": "from a gzip object", "attributes": {}},
        "error": {"kind": "domain", "message": "x"},
        "plugin": {"name": "p", "version": "1"}, "attempts": 1,
        "failed_at": "2026-01-01T00:00:00.000Z"
    });
    aws.put_object(
        "dead",
        "letters/old.jsonl.gz",
        pipeline_host::sinks::gzip(entry.to_string().as_bytes()),
    )
    .await;
    aws.put_object(
        "dead",
        "letters/broken.jsonl.gz",
        b"not gzip at all".to_vec(),
    )
    .await;
    let scratch = Scratch::new();
    let wasm = plugin("misbehave");
    let run = host(
        &scratch,
        &moto,
        &[
            "reprocess",
            "--plugin",
            path_str(&wasm),
            "--from",
            "s3://dead/letters",
            "--sink",
            "default=kinesis://again",
            "--dlq",
            "s3://dead/letters",
        ],
    );
    run.assert_ok();
    assert_eq!(run.balanced(), [1, 1, 0, 0]);
    assert_eq!(aws.stream_records("again").await, ["from a gzip object"]);
    assert!(
        run.stderr
            .contains("skipped s3://dead/letters/broken.jsonl.gz"),
        "{}",
        run.stderr
    );
    let left: Vec<String> = aws
        .objects("dead", "letters/")
        .await
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(left, ["letters/broken.jsonl.gz"], "the read object is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_partly_delivered_is_reprocessed_without_what_already_went_out() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let input = scratch.write(
        "events.jsonl",
        "{\"id\":\"e1\",\"action\":\"buy\"}\n{\"id\":\"e2\",\"action\":\"view\"}\n",
    );
    let wasm = plugin("route");
    // Each record has two outputs: the first to `default`, an audit copy to `audit`,
    // whose stream does not exist yet: the first goes out, the second is refused.
    let args = |command: &'static str, from: Option<&'static str>| {
        let mut args = vec![
            command,
            "--plugin",
            path_str(&wasm),
            "--config",
            "audit=true",
        ];
        match from {
            Some(from) => args.extend(["--from", from]),
            None => args.extend(["--input", path_str(&input)]),
        }
        args.extend([
            "--sink",
            "default=kinesis://out",
            "--sink",
            "audit=kinesis://audit",
            "--dlq",
            "sqs://dlq",
            "--retry-base-ms",
            "1",
        ]);
        args
    };
    let run = host(&scratch, &moto, &args("run", None));
    run.assert_ok();
    assert_eq!(run.balanced(), [2, 0, 0, 2]);
    assert_eq!(aws.stream_records("out").await.len(), 2);
    let entries = aws.drain_queue(&dlq).await;
    assert_eq!(entries.len(), 2);
    for entry in &entries {
        let entry: Value = serde_json::from_str(entry).expect("JSON");
        assert_eq!(entry["error"]["kind"], "delivery");
        assert_eq!(entry["delivered"], serde_json::json!([0]), "{entry}");
        aws.sqs
            .send_message()
            .queue_url(&dlq)
            .message_body(entry.to_string())
            .send()
            .await
            .expect("put the entry back");
    }

    // The audit stream exists now: reprocessing sends the audit copies only.
    aws.stream("audit").await;
    std::thread::sleep(std::time::Duration::from_millis(50));
    let run = host(&scratch, &moto, &args("reprocess", Some("sqs://dlq")));
    run.assert_ok();
    assert_eq!(run.balanced(), [2, 2, 0, 0]);
    assert_eq!(
        aws.stream_records("out").await.len(),
        2,
        "nothing sent twice"
    );
    assert_eq!(aws.stream_records("audit").await.len(), 2);
    assert!(aws.drain_queue(&dlq).await.is_empty());
}
