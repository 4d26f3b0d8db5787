//! The real `host` binary as a Lambda custom runtime, fed real event JSON through the
//! Runtime API, with every source, sink and DLQ on the local AWS emulator.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::emulator::Moto;
use crate::events::{s3_event, sqs_event};
use crate::lambda_harness::Lambda;
use crate::runtime_api::Answer;
use crate::support::{Scratch, assert_counts, dlq_kinds, plugin, text};

fn fixture(name: &str) -> Value {
    let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn kinesis_event_to_kinesis_with_a_plugin_from_s3_and_an_sqs_dlq() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("plugins").await;
    aws.put_object(
        "plugins",
        "enrich/enrich.wasm",
        std::fs::read(plugin("enrich")).expect("wasm"),
    )
    .await;
    aws.stream("enriched").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("s3://plugins/enrich/enrich.wasm")
        .env("PIPELINE_PLUGIN_CONFIG", "currency=USD")
        .sinks("default=kinesis://enriched")
        .dlq("sqs://dlq")
        .start(scratch.dir.path());
    let answer = lambda.invoke(fixture("kinesis-event.json"));
    assert_eq!(
        answer,
        json!({"batchItemFailures": []}),
        "domain and decode failures are done, not retried"
    );
    let delivered = aws.stream_records("enriched").await;
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    let first: Value = serde_json::from_str(&delivered[0]).expect("JSON");
    assert_eq!(
        (
            first["id"].as_str(),
            first["currency"].as_str(),
            first["source"].as_str()
        ),
        (Some("k1"), Some("USD"), Some("kinesis"))
    );
    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dlq_kinds(&dead), ["decode", "domain"]);
    assert_counts(
        &lambda.last_counts(),
        &json!({"in": 4, "transformed": 2, "dropped": 0, "failed": 2}),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqs_event_reports_only_transient_failures_and_dead_letters_to_s3() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    let out = aws.queue("out.fifo").await;
    aws.bucket("dead").await;
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=sqs://out.fifo")
        .dlq("s3://dead/letters")
        .env("PIPELINE_MAX_ATTEMPTS", "2")
        .env("PIPELINE_RETRY_BASE_MS", "1")
        .start(scratch.dir.path());
    let answer = lambda.invoke(sqs_event(&["echo", "flaky", "fail", "drop", "panic"]));
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m-1"}]})
    );
    assert_eq!(aws.drain_queue(&out).await, ["echo"]);
    let objects = aws.objects("dead", "letters/").await;
    assert_eq!(objects.len(), 1, "one DLQ object per invocation");
    assert!(objects[0].0.starts_with("letters/dt="), "{}", objects[0].0);
    let lines: Vec<String> = String::from_utf8_lossy(&objects[0].1)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(dlq_kinds(&lines), ["domain", "trap"]);
    assert_counts(
        &lambda.last_counts(),
        &json!({"in": 5, "transformed": 1, "dropped": 1, "failed": 2, "outputs": 1, "retried": 1}),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn firehose_transformation_answers_per_record() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let (answer, _) = Lambda::builder(&moto)
        .plugin("enrich")
        .dlq("sqs://dlq")
        .invoke(scratch.dir.path(), fixture("firehose-event.json"));
    let records = answer["records"].as_array().expect("records");
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0]["recordId"],
        "49546986683135544286507457936321625675700192471156785154"
    );
    assert_eq!(records[0]["result"], "Ok");
    let data = base64::engine::general_purpose::STANDARD
        .decode(text(&records[0]["data"], "the first record's data"))
        .expect("base64");
    let enriched: Value = serde_json::from_slice(&data).expect("JSON");
    assert_eq!(enriched["source"], "firehose");
    // Dead-lettered by the host: the DLQ is its one place, so Firehose is told `Dropped`
    // (`ProcessingFailed` would put a second copy in Firehose's error output).
    assert_eq!(records[1]["result"], "Dropped");
    assert_eq!(dlq_kinds(&aws.drain_queue(&dlq).await), ["domain"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_invocation_routes_to_s3_and_kinesis_and_dead_letters_oversize_records() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("lake").await;
    aws.stream("orders").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let event = json!([
        {"id": "d1", "action": "buy"},
        {"id": "d2", "action": "view"},
        {"id": "d3", "action": "view"},
        {"id": "d4", "action": "refund"}
    ]);
    let (answer, _) = Lambda::builder(&moto)
        .plugin("route")
        .env(
            "PIPELINE_PLUGIN_CONFIG",
            "route.buy=orders,route.refund=refunds",
        )
        .sinks("default=s3://lake/events?gzip=true, orders=kinesis://orders")
        .dlq("sqs://dlq")
        .invoke(scratch.dir.path(), event);
    assert_eq!(answer["in"], 4);
    assert_eq!(answer["transformed"], 3);
    assert_eq!(answer["failed"], 1, "no sink is named `refunds`: {answer}");
    let orders = aws.stream_records("orders").await;
    assert_eq!(orders.len(), 1);
    let objects = aws.objects("lake", "events/").await;
    assert_eq!(objects.len(), 1);
    assert!(
        objects[0].0.contains("/dt=")
            && objects[0].0.contains("/hour=")
            && objects[0].0.ends_with(".jsonl.gz"),
        "{}",
        objects[0].0
    );
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&objects[0].1[..]),
        &mut text,
    )
    .expect("gzip");
    assert_eq!(text.lines().count(), 2);
    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dlq_kinds(&dead), ["routing"]);

    // A second function: an 8 MiB output passes the plugin limit but not Kinesis' 1 MiB.
    let (answer, _) = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=kinesis://orders")
        .dlq("sqs://dlq")
        .env("PIPELINE_MAX_OUTPUT_BYTES", "16777216")
        .invoke(scratch.dir.path(), json!(["huge", "echo"]));
    assert_eq!(
        (answer["transformed"].as_u64(), answer["failed"].as_u64()),
        (Some(1), Some(1)),
        "{answer}"
    );
    assert_eq!(aws.stream_records("orders").await.len(), 2);
    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dlq_kinds(&dead), ["output-too-large"]);
    assert!(dead[0].contains("exceeds the 1 MiB limit"), "{}", dead[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_setting_fails_the_cold_start_naming_the_variable() {
    let moto = Moto::start();
    let scratch = Scratch::new();
    let mut lambda = Lambda::builder(&moto)
        .plugin("enrich")
        .start(scratch.dir.path());
    match lambda.invoke_answer(fixture("direct-event.json")) {
        Answer::InitError(error) => {
            let message = text(&error["errorMessage"], "the init error's errorMessage");
            assert!(message.contains("PIPELINE_DLQ"), "{message}");
            assert_eq!(error["errorType"], "Config", "{error}");
        }
        other => panic!("expected an init error, got {other:?}"),
    }
    assert!(!lambda.wait_exit(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_of_no_known_kind_is_answered_with_a_stable_error_type() {
    // Operators alarm and search on `errorType`: it is a documented name, never the
    // Rust type of a boxed error, and the function keeps serving after it.
    let moto = Moto::start();
    let aws = moto.clients().await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("enrich")
        .sinks("default=kinesis://orders")
        .dlq("sqs://dlq")
        .start(scratch.dir.path());
    match lambda.invoke_answer(json!({"Records": [{"eventSource": "aws:carrier-pigeon"}]})) {
        Answer::Error(error) => {
            assert_eq!(error["errorType"], "InvalidEvent", "{error}");
            let message = text(&error["errorMessage"], "the error's errorMessage");
            assert!(
                message.contains("not a known AWS event") && message.contains("aws:carrier-pigeon"),
                "{message}"
            );
        }
        other => panic!("expected an error, got {other:?}\n{}", lambda.log()),
    }
    let answer = lambda.invoke(json!([]));
    assert_eq!(answer["in"], 0, "{answer}");
    assert!(aws.drain_queue(&dlq).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_objects_stream_through_in_batches() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("incoming").await;
    aws.bucket("lake").await;
    let dlq = aws.queue("dlq").await;
    // 2,500 JSON lines, gzip-compressed, one of them broken; and a small CSV.
    let mut lines: Vec<String> = (0..2500)
        .map(|i| format!(r#"{{"id":"s{i}","user":"u{}","action":"view","amount":{i},"ts":"2026-11-24T13:00:00Z"}}"#, i % 7))
        .collect();
    lines[1234] = "{broken".into();
    let gz = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder
            .write_all(lines.join("\n").as_bytes())
            .expect("gzip");
        encoder.finish().expect("gzip")
    };
    aws.put_object("incoming", "raw/day 1/events.jsonl.gz", gz)
        .await;
    aws.put_object(
        "incoming",
        "raw/users.csv",
        b"id,user,action,amount,ts\nc1,ann,buy,5,2026-11-24T13:00:00Z\nc2,bob\n".to_vec(),
    )
    .await;
    let scratch = Scratch::new();
    let (answer, _) = Lambda::builder(&moto)
        .plugin("validate")
        .sinks("default=s3://lake/valid")
        .dlq("sqs://dlq")
        .env("PIPELINE_BATCH_SIZE", "1000")
        .invoke(
            scratch.dir.path(),
            s3_event("incoming", &["raw/day+1/events.jsonl.gz", "raw/users.csv"]),
        );
    // 2,500 + 2 records in; the broken line and the short CSV row fail decoding; CSV
    // fields are text, so the validator refuses the other row's "5" as an amount.
    assert_eq!(
        answer,
        json!({"in": 2502, "transformed": 2499, "dropped": 0, "failed": 3, "retried": 0, "duplicate": 0, "outputs": 2499,
               "gone": 0, "plugin": "validate@0.1.0"})
    );
    let objects = aws.objects("lake", "valid/").await;
    assert_eq!(
        objects.len(),
        3,
        "one object per batch with outputs: 1000 + 999 + 500"
    );
    let written: usize = objects
        .iter()
        .map(|(_, body)| String::from_utf8_lossy(body).lines().count())
        .sum();
    assert_eq!(written, 2499);
    assert_eq!(
        dlq_kinds(&aws.drain_queue(&dlq).await),
        ["decode", "decode", "domain"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_objects_in_and_parquet_objects_out() {
    use pipeline_host::sinks::parquet::from_json_payloads;
    use pipeline_host::sources::parquet::rows_of;
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("incoming").await;
    aws.bucket("lake").await;
    let dlq = aws.queue("dlq").await;
    let rows: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"id":"p{i}","user":"u{i}","action":"buy","amount":{}.5,"ts":"2026-11-24T13:00:00Z"}}"#, i % 50))
        .collect();
    let payloads: Vec<&[u8]> = rows.iter().map(|r| r.as_bytes()).collect();
    aws.put_object(
        "incoming",
        "raw/orders.parquet",
        from_json_payloads(&payloads).expect("parquet"),
    )
    .await;
    let scratch = Scratch::new();
    let (answer, _) = Lambda::builder(&moto)
        .plugin("enrich")
        .sinks("default=s3://lake/enriched?format=parquet")
        .dlq("sqs://dlq")
        .env("PIPELINE_BATCH_SIZE", "128")
        .invoke(
            scratch.dir.path(),
            s3_event("incoming", &["raw/orders.parquet"]),
        );
    assert_eq!(answer["transformed"], 300, "{answer}");
    let objects = aws.objects("lake", "enriched/").await;
    assert_eq!(objects.len(), 3, "batches of 128: 128 + 128 + 44");
    assert!(objects.iter().all(|(key, _)| key.ends_with(".parquet")));
    let mut total = 0;
    for (_, body) in objects {
        let rows = rows_of(body, 1000).expect("a Parquet object");
        let first: Value = serde_json::from_slice(&rows[0]).expect("row JSON");
        assert_eq!(first["source"], "s3");
        assert!(first["amount_cents"].is_i64(), "{first}");
        total += rows.len();
    }
    assert_eq!(total, 300);
    assert!(aws.drain_queue(&dlq).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_stream_images_arrive_as_plain_json() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    let out = aws.queue("changes").await;
    let dlq = aws.queue("dlq").await;
    let scratch = Scratch::new();
    let (answer, _) = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=sqs://changes")
        .dlq("sqs://dlq")
        .invoke(scratch.dir.path(), fixture("dynamodb-event.json"));
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let changes: Vec<Value> = aws
        .drain_queue(&out)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).expect("JSON"))
        .collect();
    assert_eq!(changes.len(), 2);
    let modify = changes
        .iter()
        .find(|c| c["eventName"] == "MODIFY")
        .expect("the MODIFY record");
    assert_eq!(modify["oldImage"]["Message"], "New item!");
    assert!(aws.drain_queue(&dlq).await.is_empty());
}
