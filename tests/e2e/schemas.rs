//! Schema-registry framed records, opened before the plugin: Glue's framing against the
//! emulator's Glue registry, Confluent's against a loopback server that answers as
//! Confluent's REST API does. Avro becomes JSON with the schema's attributes; a datum
//! that does not decode, or a schema the registry does not have, goes to the DLQ as
//! `schema`; a registry that cannot answer leaves the record `unfinished`.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::emulator::Moto;
use crate::events::kinesis_data_event;
use crate::support::{Scratch, dlq_kinds};

const ORDER_AVRO: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int"},{"name":"note","type":["null","string"],"default":null}]}"#;

/// `{"id": id, "qty": qty, "note": null}` as an Avro datum of [`ORDER_AVRO`].
fn order_datum(id: &str, qty: u8) -> Vec<u8> {
    let mut datum = vec![(id.len() as u8) * 2];
    datum.extend_from_slice(id.as_bytes());
    datum.push(qty * 2);
    datum.push(0);
    datum
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("zlib");
    encoder.finish().expect("zlib")
}

fn glue_frame(version: &str, compressed: bool, datum: &[u8]) -> Vec<u8> {
    let mut framed = vec![3, if compressed { 5 } else { 0 }];
    framed.extend(pipeline_host::schemas::uuid_bytes(version).expect("a uuid"));
    framed.extend_from_slice(datum);
    framed
}

fn confluent_frame(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend(id.to_be_bytes());
    framed.extend_from_slice(datum);
    framed
}

/// `host run` of `misbehave` (echoes, copying each record's attributes) over a Kinesis
/// event of `data`, with `flags`: the run, its outputs (envelopes) and its DLQ kinds.
fn run(
    s: &Scratch,
    data: Vec<Vec<u8>>,
    flags: &[&str],
    env: &[(&str, String)],
) -> (crate::support::Run, Vec<Value>, Vec<String>) {
    let records: Vec<(&str, Vec<u8>)> = data.into_iter().map(|d| ("shardId-0", d)).collect();
    let event = s.write("event.json", &kinesis_data_event(&records).to_string());
    let out = s.path("out.jsonl");
    let dlq = s.path("dlq.jsonl");
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&dlq);
    let plugin = crate::support::plugin("misbehave");
    let mut args = vec![
        "run",
        "--plugin",
        crate::support::path_str(&plugin),
        "--input",
        crate::support::path_str(&event),
        "--format",
        "event",
        "--config",
        "attributes=copy",
        "--output",
        crate::support::path_str(&out),
        "--emit",
        "envelope",
        "--dlq",
        crate::support::path_str(&dlq),
        "--cache-dir",
        "off",
    ];
    args.extend_from_slice(flags);
    let run = s.host_with_env(&args, None, env);
    let outputs = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an envelope"))
        .collect();
    let dead: Vec<String> = std::fs::read_to_string(&dlq)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    (run, outputs, dead)
}

#[tokio::test(flavor = "multi_thread")]
async fn glue_framed_avro_becomes_json_with_its_schema_and_a_bad_datum_is_dead_lettered_as_schema()
{
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.glue
        .create_registry()
        .registry_name("shop")
        .send()
        .await
        .expect("registry");
    let created = aws
        .glue
        .create_schema()
        .registry_id(
            aws_sdk_glue::types::RegistryId::builder()
                .registry_name("shop")
                .build(),
        )
        .schema_name("orders")
        .data_format(aws_sdk_glue::types::DataFormat::Avro)
        .compatibility(aws_sdk_glue::types::Compatibility::Backward)
        .schema_definition(ORDER_AVRO)
        .send()
        .await
        .expect("schema");
    let version = created
        .schema_version_id()
        .expect("a version id")
        .to_owned();
    let mut trailing = order_datum("o3", 1);
    trailing.push(0);
    let data = vec![
        glue_frame(&version, false, &order_datum("o1", 3)),
        glue_frame(&version, true, &zlib(&order_datum("o2", 4))),
        glue_frame(&version, false, &trailing),
        glue_frame(
            "00000000-0000-4000-8000-000000000000",
            false,
            &order_datum("o4", 1),
        ),
        br#"{"plain":true}"#.to_vec(),
    ];
    let s = Scratch::new();
    let (run, outputs, dead) = run(&s, data, &["--schema-framing", "auto"], &moto.env());
    run.assert_ok();
    assert_eq!(run.balanced(), [5, 3, 0, 2], "{}\n{dead:#?}", run.stderr);
    let payloads: Vec<&Value> = outputs.iter().map(|o| &o["payload"]).collect();
    assert_eq!(payloads[0], &json!({"id": "o1", "qty": 3, "note": null}));
    assert_eq!(
        payloads[1],
        &json!({"id": "o2", "qty": 4, "note": null}),
        "zlib inflated"
    );
    assert_eq!(
        payloads[2],
        &json!({"plain": true}),
        "not framed: as it came"
    );
    let attributes = &outputs[0]["attributes"];
    assert_eq!(attributes["schema-name"], "orders", "{attributes}");
    assert_eq!(attributes["schema-version"], "1");
    assert_eq!(attributes["schema-format"], "avro");
    // The input's `schema-id` and `schema-fingerprint` reached the plugin, but on an
    // output they are the host's to say (the schema it is written with): not copied.
    for host_only in ["schema-id", "schema-fingerprint"] {
        assert!(attributes.get(host_only).is_none(), "{attributes}");
    }
    assert!(outputs[2]["attributes"].get("schema-name").is_none());
    assert_eq!(dlq_kinds(&dead), ["schema", "schema"]);
    assert!(
        dead[0].contains("bytes left after the Avro datum"),
        "{}",
        dead[0]
    );
    assert!(
        dead[1].contains("00000000-0000-4000-8000-000000000000"),
        "{}",
        dead[1]
    );
}

/// A loopback server answering `GET /schemas/ids/ID` as Confluent's registry does:
/// 7 an Avro schema (no `schemaType`, as before Confluent 8), 8 a JSON Schema, 10 a
/// 503; anything else 404. It records each request's path and `Authorization`.
/// The requests a registry answered: each one's path and `Authorization` header.
type Asked = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn confluent_registry() -> (String, Asked) {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("a loopback server");
    let port = server.server_addr().to_ip().expect("an IP address").port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let auth = request
                .headers()
                .iter()
                .find(|h| h.field.equiv("Authorization"))
                .map(|h| h.value.to_string());
            seen.lock()
                .expect("asked")
                .push((request.url().to_owned(), auth));
            let response = match request.url() {
                "/api/schemas/ids/7" => {
                    tiny_http::Response::from_string(json!({"schema": ORDER_AVRO}).to_string())
                }
                "/api/schemas/ids/8" => tiny_http::Response::from_string(
                    json!({"schemaType": "JSON", "schema": "{\"type\":\"object\"}"}).to_string(),
                ),
                "/api/schemas/ids/10" => {
                    tiny_http::Response::from_string("busy").with_status_code(503)
                }
                // A 404 that is not the registry's "schema not found" (a proxy's).
                "/api/schemas/ids/11" => {
                    tiny_http::Response::from_string("<html>not found</html>").with_status_code(404)
                }
                _ => tiny_http::Response::from_string(
                    r#"{"error_code":40403,"message":"Schema not found"}"#,
                )
                .with_status_code(404),
            };
            let _ = request.respond(response);
        }
    });
    (format!("http://key:secret@127.0.0.1:{port}/api"), asked)
}

#[test]
fn confluent_framed_avro_and_json_are_opened_each_schema_asked_once() {
    let (registry, asked) = confluent_registry();
    let data = vec![
        confluent_frame(7, &order_datum("o1", 3)),
        confluent_frame(7, &order_datum("o2", 5)),
        confluent_frame(8, br#"{"k":1}"#),
        confluent_frame(8, b"not json"),
        confluent_frame(9, &order_datum("o3", 1)),
        confluent_frame(10, &order_datum("o4", 1)),
        confluent_frame(11, &order_datum("o5", 1)),
        // A string that says 2 bytes and has 1: cut short, not a null.
        confluent_frame(7, &[4, b'o']),
    ];
    let s = Scratch::new();
    let (run, outputs, dead) = run(
        &s,
        data,
        &[
            "--schema-framing",
            "confluent",
            "--confluent-registry",
            &registry,
        ],
        &[],
    );
    run.assert_ok();
    assert_eq!(run.balanced(), [8, 3, 0, 5], "{}", run.stderr);
    assert_eq!(
        outputs[1]["payload"],
        json!({"id": "o2", "qty": 5, "note": null})
    );
    assert_eq!(
        outputs[0]["attributes"]["schema-name"], "shop.Order",
        "the record's name"
    );
    assert_eq!(outputs[0]["attributes"]["schema-version"], "7");
    assert_eq!(outputs[2]["payload"], json!({"k": 1}));
    assert_eq!(outputs[2]["attributes"]["schema-format"], "json");
    // Not JSON, a schema the registry lacks: bad data. A registry that cannot answer:
    // the record is unfinished (this source does not redeliver: dead-lettered to rerun).
    let mut kinds = dlq_kinds(&dead);
    kinds.sort();
    assert_eq!(
        kinds,
        ["schema", "schema", "schema", "unfinished", "unfinished"]
    );
    assert!(
        dead.iter().any(|d| d.contains("not in the registry")),
        "{dead:?}"
    );
    assert!(
        dead.iter()
            .filter(|d| d.contains("does not decode against its Avro schema"))
            .count()
            == 1,
        "{dead:?}"
    );
    let asked = asked.lock().expect("asked").clone();
    let paths: Vec<&str> = asked.iter().map(|(p, _)| p.as_str()).collect();
    for id in ["7", "8", "9", "10", "11"] {
        let path = format!("/api/schemas/ids/{id}");
        assert_eq!(
            paths.iter().filter(|p| **p == path).count(),
            1,
            "{id} once: {paths:?}"
        );
    }
    assert!(
        asked
            .iter()
            .all(|(_, auth)| auth.as_deref() == Some("Basic a2V5OnNlY3JldA==")),
        "{asked:?}"
    );
}

/// The registry's credential from Secrets Manager (as Lambda's Kafka secrets hold
/// one: JSON with `username` and `password`) rather than in its URL; one in both is
/// refused at start.
#[tokio::test(flavor = "multi_thread")]
async fn a_registry_credential_comes_from_secrets_manager() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.secrets
        .create_secret()
        .name("registry")
        .secret_string(r#"{"username":"team","password":"s3cret"}"#)
        .send()
        .await
        .expect("secret");
    let (registry, asked) = confluent_registry();
    let bare = registry.replace("key:secret@", "");
    let s = Scratch::new();
    let data = vec![confluent_frame(7, &order_datum("o1", 3))];
    let (run1, outputs, _) = run(
        &s,
        data.clone(),
        &[
            "--schema-framing",
            "confluent",
            "--confluent-registry",
            &bare,
            "--confluent-secret",
            "registry",
        ],
        &moto.env(),
    );
    run1.assert_ok();
    assert_eq!(run1.balanced(), [1, 1, 0, 0], "{}", run1.stderr);
    assert_eq!(outputs[0]["payload"]["id"], "o1");
    let asked = asked.lock().expect("asked").clone();
    assert_eq!(
        asked,
        [(
            "/api/schemas/ids/7".to_owned(),
            Some("Basic dGVhbTpzM2NyZXQ=".to_owned())
        )],
        "team:s3cret"
    );
    let (both, _, _) = run(
        &s,
        data,
        &[
            "--schema-framing",
            "confluent",
            "--confluent-registry",
            &registry,
            "--confluent-secret",
            "registry",
        ],
        &moto.env(),
    );
    both.assert_error("a credential both in the registry's URL and in a secret");
}

/// A schema published with the plugin (`--output-schema`, signed into the manifest):
/// every output is checked against it before its record's outputs go, and carries its
/// fingerprint; one that does not fit sends its record to the DLQ as `schema`.
#[tokio::test(flavor = "multi_thread")]
async fn outputs_are_checked_against_the_schema_the_manifest_declares() {
    let moto = Moto::start();
    moto.clients().await.bucket("plugins").await;
    let s = Scratch::new();
    let avsc = s.write(
        "out.avsc",
        r#"{"type":"record","name":"Out","fields":[{"name":"id","type":"string"}]}"#,
    );
    let wasm = crate::support::plugin("misbehave");
    let publish = |schema: &str| {
        let flag = format!("default={schema}");
        let args = [
            "publish",
            "--to",
            "s3://plugins/plugins/misbehave/",
            "--plugin",
            crate::support::path_str(&wasm),
            "--output-schema",
            &flag,
        ];
        s.host_with_env(&args, None, &moto.env())
    };
    let bad = s.write("out.txt", "{}");
    publish(crate::support::path_str(&bad))
        .assert_error("a schema file is .avsc (Avro) or .json (JSON Schema)");
    publish(crate::support::path_str(&avsc)).assert_ok();
    let input = s.write(
        "in.txt",
        "{\"id\":\"a\"}\n{\"id\":7}\n{\"nope\":1}\nhello\n",
    );
    let run = s
        .run("s3://plugins/plugins/misbehave/")
        .input(&input)
        .format("lines")
        .emit("envelope")
        .output(&s.path("out.jsonl"))
        .envs(moto.env())
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [4, 1, 0, 3], "{}", run.stderr);
    let outputs = s.json_lines("out.jsonl");
    assert_eq!(outputs[0]["payload"], json!({"id": "a"}));
    assert_eq!(
        outputs[0]["attributes"]["schema-fingerprint"]
            .as_str()
            .map(str::len),
        Some(64),
        "{}",
        outputs[0]
    );
    let dead: Vec<String> = std::fs::read_to_string(s.path("dlq.jsonl"))
        .expect("dlq")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(dlq_kinds(&dead), ["schema", "schema", "schema"]);
    assert!(
        dead[0].contains("does not fit the Avro schema"),
        "{}",
        dead[0]
    );
    assert!(dead[2].contains("is not JSON"), "{}", dead[2]);

    // The next version's schema must follow the live one's (BACKWARD by default): a new
    // field without a default cannot read what the old schema wrote.
    let next = |fields: &str, version: &str, extra: &[&str]| {
        let file = s.write(
            &format!("v{version}.avsc"),
            &format!(r#"{{"type":"record","name":"Out","fields":[{{"name":"id","type":"string"}}{fields}]}}"#),
        );
        let flag = format!("default={}", file.display());
        let mut args = vec![
            "publish",
            "--to",
            "s3://plugins/plugins/misbehave/",
            "--plugin",
            crate::support::path_str(&wasm),
            "--version",
            version,
            "--output-schema",
            &flag,
        ];
        args.extend_from_slice(extra);
        s.host_with_env(&args, None, &moto.env())
    };
    let cents = r#",{"name":"cents","type":"long"}"#;
    next(cents, "2.0.0", &[]).assert_error(
        "the output schema of `default` does not follow version 0.1.0's: not BACKWARD compatible",
    );
    next(
        r#",{"name":"cents","type":"long","default":0}"#,
        "2.0.0",
        &[],
    )
    .assert_ok();
    next(cents, "3.0.0", &["--compatibility", "FORWARD"]).assert_ok();
    next(r#",{"name":"cents","type":"string"}"#, "4.0.0", &[])
        .assert_error("not BACKWARD compatible");
    next(
        r#",{"name":"cents","type":"string"}"#,
        "4.0.0",
        &["--allow-incompatible"],
    )
    .assert_ok();
}
