//! Lookups: the `join` plugin reads reference data through the host, from local files
//! (`host run --lookup`), the emulator's DynamoDB and S3 (a Parquet table) and a loopback
//! HTTP server; grants refused at start and at call; the cache's hits and misses
//! counted; a throttled table retried inside the budget, and handed back when the time
//! is up. A plugin built against contract 0.1 runs unchanged.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::emulator::{Clients, Moto};
use crate::events::{failures, kinesis_event, sequence_numbers};
use crate::lambda_harness::Lambda;
use crate::proxy::{Fault, Proxy, Rule};
use crate::runtime_api::Answer;
use crate::support::{Scratch, dlq_kinds, path_str, plugin};

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lookups")
}

fn order(i: usize, user: &str, sku: &str) -> String {
    json!({"order_id": format!("o-{i}"), "user_id": user, "sku": sku, "quantity": 2}).to_string()
}

#[test]
fn host_run_joins_orders_with_file_tables_each_key_asked_once() {
    let s = Scratch::new();
    let users = format!("users=file://{}", examples().join("users.jsonl").display());
    let prices = format!(
        "prices=file://{}#sku",
        examples().join("prices.csv").display()
    );
    let out = s.path("out.jsonl");
    let run = s
        .run("join")
        .input(&examples().join("orders.jsonl"))
        .output(&out)
        .flag("--lookup", &users)
        .flag("--lookup", &prices)
        .summary_json()
        .go();
    run.assert_ok();
    let summary = run.summary();
    assert_eq!(
        (summary["transformed"].as_u64(), summary["failed"].as_u64()),
        (Some(4), Some(2)),
        "{summary}"
    );
    // Six orders, one not JSON: four distinct users and four distinct skus, each asked
    // once, from the tables loaded at start (no request during the run).
    assert_eq!(summary["lookups"]["users"]["hits"], 4, "{summary}");
    assert_eq!(summary["lookups"]["prices"]["hits"], 4, "{summary}");
    assert_eq!(summary["lookups"]["users"]["misses"], 0, "{summary}");
    let outputs = s.json_lines("out.jsonl");
    assert_eq!(outputs[0]["payload"]["user"]["segment"], "gold");
    assert_eq!(outputs[0]["payload"]["total_cents"], 135);
    let dead = std::fs::read_to_string(s.path("dlq.jsonl")).expect("dlq");
    assert_eq!(
        dlq_kinds(&dead.lines().map(str::to_owned).collect::<Vec<_>>()),
        ["domain", "domain"]
    );
    assert!(dead.contains("no price for sku \\\"sku-kiwi\\\""), "{dead}");
}

#[test]
fn a_table_that_cannot_be_read_fails_the_start_naming_it_and_its_row() {
    let s = Scratch::new();
    let bad = s.write("bad.jsonl", "{\"id\":\"a\"}\n{\"name\":\"no id\"}\n");
    s.run("join")
        .input(&examples().join("orders.jsonl"))
        .output(&s.path("out.jsonl"))
        .flag("--lookup", &format!("users=file://{}", bad.display()))
        .go()
        .assert_error("lookup table `users`")
        .assert_error("row 2: no string or number `id`");
    s.run("join")
        .input(&examples().join("orders.jsonl"))
        .output(&s.path("out.jsonl"))
        .flag("--lookup", "users=dynamodb://")
        .go()
        .assert_error("expected dynamodb://TABLE");
}

/// The Rust `enrich` built against contract 0.1 (the bytes a user has from before 0.2),
/// beside the one built now: the same outputs, and its manifest says 0.1.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_built_against_contract_0_1_runs_unchanged() {
    let s = Scratch::new();
    let old =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/plugins/enrich-0.1.wasm");
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events.jsonl");
    for (name, wasm) in [("old", old.clone()), ("new", plugin("enrich"))] {
        s.run(path_str(&wasm))
            .input(&input)
            .output(&s.path(&format!("{name}.jsonl")))
            .dlq(path_str(&s.path(&format!("{name}-dlq.jsonl"))))
            .go()
            .assert_ok();
    }
    let read = |n: &str| std::fs::read_to_string(s.path(n)).expect("written");
    assert_eq!(read("old.jsonl"), read("new.jsonl"));
    assert!(!read("old.jsonl").is_empty());
    assert_eq!(
        read("old-dlq.jsonl").lines().count(),
        read("new-dlq.jsonl").lines().count()
    );

    let moto = Moto::start();
    moto.clients().await.bucket("plugins").await;
    let args = [
        "publish",
        "--to",
        "s3://plugins/plugins/enrich/",
        "--plugin",
        path_str(&old),
    ];
    s.host_with_env(&args, None, &moto.env()).assert_ok();
    let manifest = moto
        .clients()
        .await
        .objects("plugins", "plugins/enrich/manifest.json")
        .await;
    let manifest: Value = serde_json::from_slice(&manifest[0].1).expect("a manifest");
    assert_eq!(manifest["world"], "pipeline:plugin@0.1.0");
}

/// `users` in DynamoDB (120 of the 150 users asked exist), `prices` a Parquet object in
/// S3; `join` published declaring both.
struct World {
    proxy: Proxy,
    moto: Moto,
    aws: Clients,
    scratch: Scratch,
}

const USERS: usize = 120;

impl World {
    async fn new(declared: &str) -> Self {
        let moto = Moto::start();
        let proxy = Proxy::start(&moto.endpoint);
        let aws = moto.clients().await;
        aws.stream("out").await;
        aws.queue("dlq").await;
        aws.bucket("plugins").await;
        aws.bucket("ref").await;
        aws.table("users").await;
        for i in 0..USERS {
            let item = [
                ("id", format!("u-{i}")),
                ("name", format!("User {i}")),
                ("segment", "gold".into()),
            ];
            let mut put = aws.dynamodb.put_item().table_name("users");
            for (name, value) in item {
                put = put.item(name, aws_sdk_dynamodb::types::AttributeValue::S(value));
            }
            put = put.item(
                "secret",
                aws_sdk_dynamodb::types::AttributeValue::S("not projected".into()),
            );
            put.send().await.expect("put a user");
        }
        aws.put_object("ref", "prices.parquet", prices_parquet())
            .await;
        let scratch = Scratch::new();
        let mut args = vec!["publish", "--to", "s3://plugins/plugins/join/", "--plugin"];
        let wasm = plugin("join");
        args.push(path_str(&wasm));
        if !declared.is_empty() {
            args.extend(["--lookups", declared]);
        }
        scratch.host_with_env(&args, None, &moto.env()).assert_ok();
        Self {
            proxy,
            moto,
            aws,
            scratch,
        }
    }

    fn lambda(&self, lookups: &str, extra: &[(&'static str, &str)]) -> Lambda {
        Lambda::builder(&self.moto)
            .plugin("s3://plugins/plugins/join/")
            .sinks("default=kinesis://out")
            .dlq("sqs://dlq")
            .env("PIPELINE_LOOKUPS", lookups)
            .env("PIPELINE_METRICS_NAMESPACE", "Tests/Lookups")
            .env("PIPELINE_RETRY_BASE_MS", "1")
            .envs(extra)
            .through(&self.proxy)
            .start(self.scratch.dir.path())
    }
}

const TABLES: &str =
    "users=dynamodb://users?fields=name,segment,prices=s3://ref/prices.parquet#sku";

/// A Parquet table of prices: `sku` text, `price_cents` a 64-bit integer.
fn prices_parquet() -> Vec<u8> {
    prices_parquet_at(45)
}

/// [`prices_parquet`] with the apple at `apple` cents.
fn prices_parquet_at(apple: i64) -> Vec<u8> {
    use arrow_schema::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("sku", DataType::Utf8, false),
        Field::new("price_cents", DataType::Int64, false),
    ]));
    let rows = [
        format!("{{\"sku\":\"sku-apple\",\"price_cents\":{apple}}}"),
        "{\"sku\":\"sku-pear\",\"price_cents\":60}".to_owned(),
    ];
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .build_decoder()
        .expect("decoder");
    decoder.decode(rows.join("\n").as_bytes()).expect("rows");
    let batch = decoder.flush().expect("flush").expect("a batch");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(Vec::new(), schema, None).expect("writer");
    writer.write(&batch).expect("write");
    writer.into_inner().expect("parquet")
}

/// 150 orders of 150 users, one of two skus, and one more whose user id is empty (a
/// key DynamoDB would refuse the whole request for).
fn orders_event() -> Value {
    let mut orders: Vec<String> = (0..150)
        .map(|i| {
            order(
                i,
                &format!("u-{i}"),
                if i % 2 == 0 { "sku-apple" } else { "sku-pear" },
            )
        })
        .collect();
    orders.push(order(150, "", "sku-apple"));
    kinesis_event(
        &orders
            .iter()
            .map(|o| ("shardId-0", o.as_str()))
            .collect::<Vec<_>>(),
    )
}

/// DynamoDB asked in calls of 100 keys, a projection kept, misses joined as null; the
/// next invocation answered from the cache: no call at all.
#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_and_s3_tables_batched_and_cached_across_invocations() {
    let world = World::new("users,prices").await;
    let lambda = world.lambda(TABLES, &[]);
    world.proxy.take_traffic();
    let answer = lambda.invoke(orders_event());
    assert!(
        failures(&answer).is_empty(),
        "{answer}; log:\n{}",
        lambda.log()
    );
    let first = world.proxy.take_traffic();
    // 150 distinct users: ceil(150 / 100) = 2 calls, the two at once.
    assert_eq!(
        first.get("BatchGetItem").map(|t| t.calls),
        Some(2),
        "{first:?}"
    );
    let outputs = world.aws.stream_records("out").await;
    assert_eq!(outputs.len(), 151);
    let joined: Vec<Value> = outputs
        .iter()
        .map(|o| serde_json::from_str(o).expect("json"))
        .collect();
    assert_eq!(
        joined[0]["user"],
        json!({"id": "u-0", "name": "User 0", "segment": "gold"})
    );
    assert_eq!(joined[0]["price_cents"], 45);
    assert_eq!(joined[1]["price_cents"], 60);
    assert_eq!(
        joined[149]["user"],
        Value::Null,
        "u-149 is not in the table"
    );
    assert_eq!(
        joined[150]["user"],
        Value::Null,
        "an empty key is in no table"
    );
    assert_eq!(lambda.metric_total("LookupMisses.users"), 150.0);
    assert_eq!(lambda.metric_total("LookupCalls.users"), 2.0);

    lambda.invoke(orders_event());
    let second = world.proxy.take_traffic();
    assert_eq!(
        second.get("BatchGetItem"),
        None,
        "all from the cache: {second:?}"
    );
    assert_eq!(
        lambda.metric_total("LookupHits.users"),
        150.0,
        "misses are cached too"
    );
    assert_eq!(lambda.metric_total("LookupHits.prices"), 4.0);
    assert_eq!(world.aws.stream_records("out").await.len(), 302);
}

/// An S3 table is read at start and asked again after each TTL with its ETag: unchanged,
/// the emulator's 304 keeps the rows; a new version of the object is read.
#[tokio::test(flavor = "multi_thread")]
async fn an_s3_table_is_read_again_when_its_object_changes() {
    let world = World::new("users,prices").await;
    // No manifest check during the test: the only S3 GETs are the table's.
    let lambda = world.lambda(
        TABLES,
        &[
            ("PIPELINE_LOOKUP_TTL_SECONDS", "1"),
            ("PIPELINE_PLUGIN_CHECK_SECONDS", "86400"),
        ],
    );
    let event = || kinesis_event(&[("shardId-0", order(1, "u-1", "sku-apple").as_str())]);
    let price = |outputs: &[String]| -> Value {
        let last: Value = serde_json::from_str(outputs.last().expect("an output")).expect("json");
        last["price_cents"].clone()
    };
    lambda.invoke(event());
    assert_eq!(price(&world.aws.stream_records("out").await), 45);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    world.proxy.take_traffic();
    lambda.invoke(event());
    let asked = world.proxy.take_traffic();
    assert_eq!(
        asked.get("S3.GET").map(|t| t.calls),
        Some(1),
        "asked again: {asked:?}"
    );
    assert_eq!(
        price(&world.aws.stream_records("out").await),
        45,
        "unchanged (304)"
    );
    world
        .aws
        .put_object("ref", "prices.parquet", prices_parquet_at(50))
        .await;
    std::thread::sleep(std::time::Duration::from_millis(1100));
    lambda.invoke(event());
    assert_eq!(
        price(&world.aws.stream_records("out").await),
        50,
        "the new version"
    );
    assert_eq!(lambda.metric_total("LookupErrors.prices"), 0.0);
}

/// A manifest that declares a table the operator did not map refuses the cold start
/// (`Config`, naming it); a table mapped but not declared is refused at the call, and
/// nothing is asked of it.
#[tokio::test(flavor = "multi_thread")]
async fn grants_refused_at_start_and_at_the_call() {
    let world = World::new("users,prices").await;
    let lambda = world.lambda("users=dynamodb://users", &[]);
    match lambda.invoke_answer(orders_event()) {
        Answer::InitError(e) => {
            assert_eq!(e["errorType"], "Config", "{e}");
            let message = e["errorMessage"].as_str().unwrap_or_default();
            assert!(
                message.contains("lookup table `prices`, which is not mapped"),
                "{message}"
            );
        }
        other => panic!("expected the start refused: {other:?}"),
    }
    drop(lambda);

    let world = World::new("prices").await;
    let lambda = world.lambda(TABLES, &[]);
    world.proxy.take_traffic();
    let answer = lambda.invoke(orders_event());
    assert!(failures(&answer).is_empty(), "{answer}");
    assert_eq!(
        world.proxy.take_traffic().get("BatchGetItem"),
        None,
        "nothing asked of users"
    );
    let dead = world.aws.drain_queue(&world.aws.queue("dlq").await).await;
    assert_eq!(dead.len(), 151);
    assert!(
        dead[0].contains("not granted lookup table `users`"),
        "{}",
        dead[0]
    );
    assert_eq!(
        dlq_kinds(&dead).iter().filter(|k| *k == "domain").count(),
        151
    );
}

/// Throttled four times (the SDK's three attempts, then one of the runner's retries):
/// the records are retried inside the invocation and all delivered. Throttled for good,
/// they are handed back when the time is up, never dead-lettered.
#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_table_is_retried_in_the_budget_and_handed_back_when_out_of_time() {
    let world = World::new("users,prices").await;
    world.proxy.set(vec![Rule {
        times: 4,
        ..Rule::always("BatchGetItem", Fault::Throttle)
    }]);
    let lambda = world.lambda(TABLES, &[("PIPELINE_MAX_ATTEMPTS", "3")]);
    let event = kinesis_event(&[
        ("shardId-0", &order(1, "u-1", "sku-apple")),
        ("shardId-0", &order(2, "u-2", "sku-pear")),
    ]);
    let answer = lambda.invoke(event);
    assert!(
        failures(&answer).is_empty(),
        "{answer}; log:\n{}",
        lambda.log()
    );
    assert_eq!(world.proxy.faulted("BatchGetItem"), 4);
    assert_eq!(world.aws.stream_records("out").await.len(), 2);
    assert!(lambda.metric_total("LookupErrors.users") >= 1.0);
    drop(lambda);

    world
        .proxy
        .set(vec![Rule::always("BatchGetItem", Fault::Throttle)]);
    let lambda = world.lambda(
        TABLES,
        &[
            ("PIPELINE_MAX_ATTEMPTS", "20"),
            ("PIPELINE_TIME_MARGIN_MS", "3500"),
        ],
    );
    lambda.set_timeout(std::time::Duration::from_secs(8));
    let event = kinesis_event(&[
        ("shardId-0", &order(3, "u-3", "sku-apple")),
        ("shardId-0", &order(4, "u-4", "sku-pear")),
    ]);
    let started = std::time::Instant::now();
    let answer = lambda.invoke(event.clone());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "answered before the deadline"
    );
    assert_eq!(
        failures(&answer),
        sequence_numbers(&event),
        "both handed back: {answer}"
    );
    assert_eq!(
        world.aws.stream_records("out").await.len(),
        2,
        "nothing more sent"
    );
    let dead = world.aws.drain_queue(&world.aws.queue("dlq").await).await;
    assert!(dead.is_empty(), "never dead-lettered: {dead:?}");
    let counts = lambda.last_counts();
    assert_eq!(counts["retried"], 2, "{counts}");
}

/// An HTTP table: one GET per key not cached, the key percent-encoded into the
/// operator's URL; 404 is a key the table does not have.
#[tokio::test(flavor = "multi_thread")]
async fn an_http_table_answers_per_key_and_a_404_is_a_miss() {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("a loopback server");
    let port = server.server_addr().to_ip().expect("an IP address").port();
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let served = Arc::new(AtomicUsize::new(0));
    let server = Arc::new(server);
    {
        let (server, asked, served) = (server.clone(), asked.clone(), served.clone());
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                asked.lock().expect("asked").push(request.url().to_owned());
                served.fetch_add(1, Ordering::Relaxed);
                let response = match request.url().strip_prefix("/users/") {
                    Some("u-1") => {
                        tiny_http::Response::from_string(r#"{"name":"Ann","segment":"gold"}"#)
                    }
                    Some("slow") => {
                        // Five times the plugin's CPU deadline in the last run below.
                        std::thread::sleep(std::time::Duration::from_millis(1000));
                        tiny_http::Response::from_string(r#"{"name":"Slow","segment":"new"}"#)
                    }
                    _ => tiny_http::Response::from_string("no such user").with_status_code(404),
                };
                let _ = request.respond(response);
            }
        });
    }
    let s = Scratch::new();
    let input = s.write(
        "orders.jsonl",
        &[
            order(1, "u-1", "sku-apple"),
            order(2, "u/../2", "sku-apple"),
            order(3, "u-1", "sku-pear"),
        ]
        .join("\n"),
    );
    let prices = format!(
        "prices=file://{}#sku",
        examples().join("prices.csv").display()
    );
    let users = format!("users=http://127.0.0.1:{port}/users/{{key}}");
    let run = s
        .run("join")
        .input(&input)
        .output(&s.path("out.jsonl"))
        .flag("--lookup", &users)
        .flag("--lookup", &prices)
        .summary_json()
        .go();
    run.assert_ok();
    let outputs = s.json_lines("out.jsonl");
    assert_eq!(outputs.len(), 3);
    assert_eq!(outputs[0]["payload"]["user"]["name"], "Ann");
    assert_eq!(outputs[1]["payload"]["user"], Value::Null);
    assert_eq!(
        served.load(Ordering::Relaxed),
        2,
        "two distinct users, each asked once"
    );
    let mut urls = asked.lock().expect("asked").clone();
    urls.sort();
    assert_eq!(urls, ["/users/u%2F%2E%2E%2F2", "/users/u-1"]);
    assert_eq!(run.summary()["lookups"]["users"]["calls"], 2);

    // Waiting on a table is not the plugin's CPU: a lookup of 1 s under a 200 ms
    // deadline does not trap the call.
    let slow = s.write("slow.jsonl", &order(4, "slow", "sku-apple"));
    let run = s
        .run("join")
        .input(&slow)
        .output(&s.path("slow-out.jsonl"))
        .flag("--lookup", &users)
        .flag("--lookup", &prices)
        .flag("--call-deadline-ms", "200")
        .go();
    run.assert_ok();
    assert_eq!(run.count("transformed"), 1, "{}", run.stderr);
    let joined = s.json_lines("slow-out.jsonl");
    assert_eq!(
        joined[0]["payload"]["user"]["name"],
        "Slow",
        "{joined:?} {:?} {}",
        asked.lock().expect("asked"),
        run.stderr
    );
    server.unblock();
}
