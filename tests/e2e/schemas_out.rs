//! Outputs written with a schema: a Kinesis sink writing Glue's framing with the
//! plugin's declared schema (found in the emulator's Glue registry, registered only when
//! the operator allows it), an SQS sink writing Confluent's with a subject's latest
//! version (a loopback server that answers as Confluent's REST API does), and a Parquet
//! object typed by the declared schema, tagged with its fingerprint.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::emulator::Moto;
use crate::events::kinesis_data_event;
use crate::support::{Scratch, dlq_kinds, path_str, plugin};

const OUT_AVRO: &str = r#"{"type":"record","name":"Out","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"cents","type":"long"}]}"#;

/// Publishes `misbehave` (it echoes each line) to `s3://plugins/plugins/misbehave/`,
/// declaring `schema` (a file's text, `.avsc`) for its default destination.
fn publish_echo(s: &Scratch, moto: &Moto, schema: &str) {
    let avsc = s.write("out.avsc", schema);
    let flag = format!("default={}", path_str(&avsc));
    let wasm = plugin("misbehave");
    let args = [
        "publish",
        "--to",
        "s3://plugins/plugins/misbehave/",
        "--plugin",
        path_str(&wasm),
        "--output-schema",
        &flag,
    ];
    s.host_with_env(&args, None, &moto.env()).assert_ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kinesis_sink_writes_glue_framing_with_the_declared_schema_registered_only_when_allowed()
{
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("plugins").await;
    aws.stream("out").await;
    let dlq = aws.queue("dlq").await;
    aws.glue
        .create_registry()
        .registry_name("shop")
        .send()
        .await
        .expect("registry");
    let s = Scratch::new();
    publish_echo(&s, &moto, OUT_AVRO);
    let input = s.write(
        "in.txt",
        "{\"id\":\"a\",\"cents\":1}\n{\"id\":\"b\",\"cents\":250}\n{\"id\":7}\n",
    );
    let run = |register: &str| {
        s.run("s3://plugins/plugins/misbehave/")
            .input(&input)
            .format("lines")
            .sink("default=kinesis://out?schema=glue://shop/orders-out")
            .dlq("sqs://dlq")
            .flag("--schema-register", register)
            .envs(moto.env())
            .go()
    };

    // The registry has no such schema, and the host may not register it: nothing is
    // sent, every record is dead-lettered as `schema`, saying why.
    let refused = run("off");
    refused.assert_ok();
    assert_eq!(refused.balanced(), [3, 0, 0, 3], "{}", refused.stderr);
    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dlq_kinds(&dead), ["schema", "schema", "schema"]);
    assert_eq!(
        dead.iter()
            .filter(|d| d.contains("has no version with the declared schema"))
            .count(),
        2,
        "{dead:#?}"
    );
    assert!(aws.stream_data("out").await.is_empty());

    // Allowed: the schema is created with the declared text, and the outputs that fit
    // are framed with its version; twice, still one version.
    for _ in 0..2 {
        let sent = run("on");
        sent.assert_ok();
        assert_eq!(sent.balanced(), [3, 2, 0, 1], "{}", sent.stderr);
        assert_eq!(dlq_kinds(&aws.drain_queue(&dlq).await), ["schema"]);
    }
    let latest = aws
        .glue
        .get_schema_version()
        .schema_id(
            aws_sdk_glue::types::SchemaId::builder()
                .registry_name("shop")
                .schema_name("orders-out")
                .build(),
        )
        .schema_version_number(
            aws_sdk_glue::types::SchemaVersionNumber::builder()
                .latest_version(true)
                .build(),
        )
        .send()
        .await
        .expect("the registered version");
    assert_eq!(latest.version_number(), Some(1));
    assert_eq!(latest.schema_definition(), Some(OUT_AVRO));
    let version = latest.schema_version_id().expect("an id").to_owned();
    let uuid = pipeline_host::schemas::uuid_bytes(&version).expect("a uuid");
    let records = aws.stream_data("out").await;
    assert_eq!(records.len(), 4);
    for (_, data) in &records {
        assert_eq!(data[..2], [3, 0], "Glue's header, uncompressed");
        assert_eq!(data[2..18], uuid);
    }

    // What was written reads back: the same host opens the framing it wrote.
    let event = kinesis_data_event(
        &records
            .iter()
            .map(|(_, data)| ("shardId-0", data.clone()))
            .collect::<Vec<_>>(),
    );
    let event = s.write("event.json", &event.to_string());
    let back = s
        .run("misbehave")
        .input(&event)
        .format("event")
        .config("attributes=copy")
        .emit("envelope")
        .output(&s.path("back.jsonl"))
        .flag("--schema-framing", "glue")
        .envs(moto.env())
        .go();
    back.assert_ok();
    assert_eq!(back.balanced(), [4, 4, 0, 0], "{}", back.stderr);
    let read = s.json_lines("back.jsonl");
    assert_eq!(read[1]["payload"], json!({"id": "b", "cents": 250}));
    assert_eq!(read[1]["attributes"]["schema-version"], "1");
    assert_eq!(read[1]["attributes"]["schema-name"], "orders-out");
}

/// A loopback server answering as Confluent's registry does:
/// - `GET /subjects/SUBJECT/versions/latest`: `orders-value` is version 3, id 21, of
///   [`OUT_AVRO`]; `busy-value` answers 503; any other subject is 40401;
/// - `POST /subjects/SUBJECT` (is this schema a version?): 40403 until it is registered;
/// - `POST /subjects/SUBJECT/versions` (register): id 40, then 41, ...
fn confluent_subjects() -> (String, Arc<Mutex<Vec<String>>>) {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("a loopback server");
    let port = server.server_addr().to_ip().expect("an IP address").port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    std::thread::spawn(move || {
        let mut registered: Vec<(String, String)> = Vec::new();
        let not_found = |code: u32| {
            tiny_http::Response::from_string(
                json!({"error_code": code, "message": "not found"}).to_string(),
            )
            .with_status_code(404)
        };
        for mut request in server.incoming_requests() {
            let url = request.url().to_owned();
            seen.lock()
                .expect("asked")
                .push(format!("{} {url}", request.method()));
            let mut body = String::new();
            let _ = request.as_reader().read_to_string(&mut body);
            let schema = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|b| b["schema"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let subject = url
                .strip_prefix("/subjects/")
                .and_then(|rest| rest.split('/').next())
                .unwrap_or_default()
                .to_owned();
            let response = match (request.method(), url.as_str()) {
                (tiny_http::Method::Get, "/subjects/orders-value/versions/latest") => {
                    tiny_http::Response::from_string(
                        json!({"subject": "orders-value", "id": 21, "version": 3, "schema": OUT_AVRO})
                            .to_string(),
                    )
                }
                (tiny_http::Method::Get, "/subjects/busy-value/versions/latest") => {
                    tiny_http::Response::from_string("busy").with_status_code(503)
                }
                (tiny_http::Method::Post, path) if path.ends_with("/versions") => {
                    registered.push((subject.clone(), schema.clone()));
                    let id = 39 + registered.len();
                    tiny_http::Response::from_string(json!({"id": id}).to_string())
                }
                (tiny_http::Method::Post, _) => {
                    match registered
                        .iter()
                        .position(|(s, d)| *s == subject && *d == schema)
                    {
                        Some(i) => tiny_http::Response::from_string(
                            json!({"subject": subject, "id": 40 + i, "version": i + 1, "schema": schema})
                                .to_string(),
                        ),
                        None => not_found(40403),
                    }
                }
                _ => not_found(40401),
            };
            let _ = request.respond(response);
        }
    });
    (format!("http://127.0.0.1:{port}"), asked)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sqs_sink_writes_confluent_framing_with_the_subjects_latest_version() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    let url = aws.queue("out").await;
    let dlq = aws.queue("dlq").await;
    let (registry, asked) = confluent_subjects();
    let s = Scratch::new();
    let input = s.write(
        "in.txt",
        "{\"id\":\"a\",\"cents\":1}\n{\"id\":\"b\"}\n{\"id\":\"c\",\"cents\":3}\n",
    );
    let run = |subject: &str| {
        s.run("misbehave")
            .input(&input)
            .format("lines")
            .sink(&format!("default=sqs://out?schema=confluent://{subject}"))
            .dlq("sqs://dlq")
            .flag("--confluent-registry", &registry)
            .flag("--batch-size", "2")
            .envs(moto.env())
            .go()
    };
    let sent = run("orders-value");
    sent.assert_ok();
    assert_eq!(sent.balanced(), [3, 2, 0, 1], "{}", sent.stderr);
    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dlq_kinds(&dead), ["schema"]);
    assert!(
        dead[0].contains("does not fit schema version 21"),
        "{}",
        dead[0]
    );
    // Asked once, for two batches.
    assert_eq!(
        asked.lock().expect("asked").as_slice(),
        ["GET /subjects/orders-value/versions/latest"]
    );
    let received = aws
        .sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive");
    let messages = received.messages();
    assert_eq!(messages.len(), 2);
    let mut ids = Vec::new();
    for message in messages {
        let attribute = |name: &str| {
            message
                .message_attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.string_value())
                .map(str::to_owned)
        };
        assert_eq!(
            attribute("content-transfer-encoding").as_deref(),
            Some("base64")
        );
        assert_eq!(attribute("schema-id").as_deref(), Some("21"));
        assert_eq!(attribute("schema-fingerprint").map(|f| f.len()), Some(64));
        let body = base64::engine::general_purpose::STANDARD
            .decode(message.body().expect("a body"))
            .expect("base64");
        assert_eq!(body[..5], [0, 0, 0, 0, 21], "Confluent's header");
        // The datum: the id's length (zigzag) and bytes, then the cents.
        ids.push((body[6] as char, body[7..].to_vec()));
        aws.sqs
            .delete_message()
            .queue_url(&url)
            .receipt_handle(message.receipt_handle().expect("a handle"))
            .send()
            .await
            .expect("delete");
    }
    ids.sort();
    assert_eq!(ids, [('a', vec![2]), ('c', vec![6])]);

    // A registry that cannot answer leaves the records unfinished; one without the
    // subject dead-letters them as `schema`.
    let busy = run("busy-value");
    busy.assert_ok();
    assert_eq!(busy.balanced(), [3, 0, 0, 3], "{}", busy.stderr);
    let kinds = dlq_kinds(&aws.drain_queue(&dlq).await);
    assert_eq!(kinds, ["unfinished", "unfinished", "unfinished"]);
    let missing = run("nobody-value");
    assert_eq!(missing.balanced(), [3, 0, 0, 3], "{}", missing.stderr);
    let dead = aws.drain_queue(&dlq).await;
    assert_eq!(dlq_kinds(&dead), ["schema", "schema", "schema"]);
    assert!(
        dead.iter().any(|d| d.contains("no such subject")),
        "{dead:#?}"
    );

    // A declared schema: looked up in the subject by its text; registered when allowed,
    // then found.
    aws.bucket("plugins").await;
    publish_echo(&s, &moto, OUT_AVRO);
    let declared = |register: &str| {
        s.run("s3://plugins/plugins/misbehave/")
            .input(&input)
            .format("lines")
            .sink("default=sqs://out?schema=confluent://shop-out-value")
            .dlq("sqs://dlq")
            .flag("--confluent-registry", &registry)
            .flag("--schema-register", register)
            .envs(moto.env())
            .go()
    };
    asked.lock().expect("asked").clear();
    let refused = declared("off");
    assert_eq!(refused.balanced(), [3, 0, 0, 3], "{}", refused.stderr);
    assert_eq!(dlq_kinds(&aws.drain_queue(&dlq).await), ["schema"; 3]);
    for _ in 0..2 {
        let sent = declared("on");
        assert_eq!(sent.balanced(), [3, 2, 0, 1], "{}", sent.stderr);
        assert_eq!(dlq_kinds(&aws.drain_queue(&dlq).await), ["schema"]);
    }
    assert_eq!(
        asked.lock().expect("asked").as_slice(),
        [
            "POST /subjects/shop-out-value",
            "POST /subjects/shop-out-value",
            "POST /subjects/shop-out-value/versions",
            "POST /subjects/shop-out-value",
        ],
        "registered once, by the run allowed to"
    );
    let framed = aws.drain_payloads_bytes(&url).await;
    assert_eq!(framed.len(), 4);
    assert!(framed.iter().all(|f| f[..5] == [0, 0, 0, 0, 40]), "id 40");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parquet_object_takes_its_columns_from_the_declared_schema_and_carries_its_fingerprint() {
    use parquet::file::reader::FileReader as _;
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("plugins").await;
    aws.bucket("lake").await;
    aws.queue("dlq").await;
    let s = Scratch::new();
    // Inferred from these rows, `ratio` would be an integer and `at` a number.
    publish_echo(
        &s,
        &moto,
        r#"{"type":"record","name":"Row","fields":[{"name":"id","type":"string"},{"name":"ratio","type":"double"},{"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},{"name":"note","type":["null","string"],"default":null}]}"#,
    );
    let input = s.write(
        "in.txt",
        "{\"id\":\"a\",\"ratio\":1,\"at\":1700000000000}\n{\"id\":\"b\",\"ratio\":2,\"at\":0,\"note\":\"n\"}\n",
    );
    let run = s
        .run("s3://plugins/plugins/misbehave/")
        .input(&input)
        .format("lines")
        .sink("default=s3://lake/rows?format=parquet")
        .dlq("sqs://dlq")
        .envs(moto.env())
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [2, 2, 0, 0], "{}", run.stderr);
    let objects = aws.objects("lake", "rows/").await;
    assert_eq!(objects.len(), 1);
    let head = aws
        .s3
        .head_object()
        .bucket("lake")
        .key(&objects[0].0)
        .send()
        .await
        .expect("head");
    let fingerprint = head
        .metadata()
        .and_then(|m| m.get("schema-fingerprint"))
        .expect("the fingerprint metadata");
    assert_eq!(fingerprint.len(), 64);
    let file =
        parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(objects[0].1.clone()))
            .expect("a Parquet object");
    let columns: Vec<(String, String)> = file
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), format!("{:?}", c.physical_type())))
        .collect();
    assert_eq!(
        columns,
        [
            ("id".to_owned(), "BYTE_ARRAY".to_owned()),
            ("ratio".to_owned(), "DOUBLE".to_owned()),
            ("at".to_owned(), "INT64".to_owned()),
            ("note".to_owned(), "BYTE_ARRAY".to_owned()),
        ]
    );
    let at = file.metadata().file_metadata().schema_descr().column(2);
    assert!(
        format!("{:?}", at.logical_type_ref()).contains("Timestamp"),
        "{:?}",
        at.logical_type_ref()
    );
    let rows =
        pipeline_host::sources::parquet::rows_of(objects[0].1.clone(), 10).expect("the rows");
    let second: Value = serde_json::from_slice(&rows[1]).expect("json");
    assert_eq!(second["ratio"], json!(2.0));
    assert_eq!(second["note"], "n");
}
