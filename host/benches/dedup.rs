//! The idempotency store's price, against the emulator on loopback: records per second
//! through the Lambda pipeline (a Kinesis event in, `enrich`, a Kinesis stream out) with
//! dedup off, on, and on for an event delivered again (every record a duplicate); the
//! store's calls and bytes per batch, counted by a proxy in front of the emulator; and
//! how claims are best made: parallel conditional `PutItem`s against
//! `TransactWriteItems` groups of 100. Written to BENCHMARKS.md, "Idempotency store".
//!
//! The emulator (moto, a Python server) is much slower than DynamoDB and Kinesis: the
//! absolute rates say little about AWS, the ratios and call counts do.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use base64::Engine as _;
use pipeline_host::aws::AwsClients;
use pipeline_host::idempotency::{Store, StoreSpec};
use pipeline_host::limits::Budget;
use pipeline_host::pipeline::Outputs;
use pipeline_host::registry::PluginLocation;
use pipeline_host::sinks::SinkSpec;
use pipeline_host::sources::{EventKind, LambdaEvent, events};
use pipeline_host::{Pipeline, Settings};
use serde_json::{Value, json};

#[allow(dead_code)]
mod common;
use common::{machine, write_section};

/// The emulator and the proxy the end-to-end tests start, started the same way here.
#[allow(dead_code)]
#[path = "../../tests/e2e/emulator.rs"]
mod emulator;
#[allow(dead_code)]
#[path = "../../tests/e2e/proxy.rs"]
mod proxy;
use emulator::Moto;
use proxy::{Proxy, Traffic};

const RECORDS: usize = 1000;
const BATCH: usize = 100;
const ROUNDS: usize = 3;
const CLAIMS: usize = 500;

/// A Kinesis event of `RECORDS` `enrich` inputs, its sequence numbers unique to `round`.
fn event(round: usize) -> Value {
    let records: Vec<Value> = (0..RECORDS)
        .map(|i| {
            let payload = format!(
                r#"{{"id":"e{round}-{i}","user":"u{}","action":"buy","amount":12.5,"ts":"2026-11-24T13:00:00Z"}}"#,
                i % 50
            );
            let sequence = format!("49590338271490256608559692538361571095921575989{round:03}{i:06}");
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0", "partitionKey": format!("u{}", i % 50),
                    "sequenceNumber": sequence,
                    "data": base64::engine::general_purpose::STANDARD.encode(payload),
                    "approximateArrivalTimestamp": 1764075600.987
                },
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": format!("shardId-000000000001:{sequence}"),
                "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/events"
            })
        })
        .collect();
    json!({ "Records": records })
}

async fn clients(endpoint: &str) -> AwsClients {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    AwsClients::from_config(&config, false)
}

fn settings(wasm: PathBuf, dedup: bool) -> Settings {
    let mut settings = Settings {
        plugins: vec![PluginLocation::File(wasm)],
        dlq: SinkSpec::dead_letters("sqs://dlq").expect("dlq"),
        cache_dir: None,
        ..Settings::default()
    };
    settings.sinks.insert(
        "default".into(),
        "kinesis://out".parse().expect("a sink spec"),
    );
    settings.limits.batch_size = BATCH;
    if dedup {
        settings.dedup = Some("dynamodb://dedup".parse::<StoreSpec>().expect("spec"));
    }
    settings
}

/// One mode's rounds: the median rate, and the store's traffic per batch.
struct Measured {
    rate: f64,
    summary: String,
    store: BTreeMap<String, Traffic>,
}

async fn measure(
    pipeline: &mut Pipeline,
    proxy: &Proxy,
    events: impl Fn(usize) -> Value,
) -> Measured {
    let mut rates = Vec::new();
    let mut summary = String::new();
    proxy.take_traffic();
    for round in 0..ROUNDS {
        let decoded = events::decode_within(
            EventKind::Kinesis,
            events::EventJson::Value(&events(round)),
            pipeline_host::sources::InputLimits::default(),
        )
        .expect("event");
        let mut source = LambdaEvent::new(decoded);
        let started = Instant::now();
        let done = pipeline
            .run(&mut source, Outputs::Sinks, Budget::unbounded())
            .await
            .expect("run");
        rates.push(RECORDS as f64 / started.elapsed().as_secs_f64());
        summary = done.to_string();
    }
    rates.sort_by(f64::total_cmp);
    let store = proxy
        .take_traffic()
        .into_iter()
        .filter(|(op, _)| matches!(op.as_str(), "PutItem" | "GetItem" | "BatchWriteItem"))
        .collect();
    Measured {
        rate: rates[ROUNDS / 2],
        summary,
        store,
    }
}

/// Claims `CLAIMS` new identities as `TransactWriteItems` groups of 100, each put
/// conditional as the store's are; the groups sent one after the other.
async fn transact_claims(client: &aws_sdk_dynamodb::Client, tag: &str) -> Duration {
    let started = Instant::now();
    for group in (0..CLAIMS).collect::<Vec<_>>().chunks(100) {
        let items = group
            .iter()
            .map(|i| {
                let put = Put::builder()
                    .table_name("dedup")
                    .item("id", AttributeValue::S(format!("{tag}/{i}")))
                    .item("state", AttributeValue::S("claimed".into()))
                    .item("expires", AttributeValue::N("9999999999".into()))
                    .item("ttl", AttributeValue::N("9999999999".into()))
                    .condition_expression("attribute_not_exists(id) OR (#state = :claimed AND expires < :now) OR #ttl < :now")
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_names("#ttl", "ttl")
                    .expression_attribute_values(":claimed", AttributeValue::S("claimed".into()))
                    .expression_attribute_values(":now", AttributeValue::N("1".into()))
                    .build()
                    .expect("put");
                TransactWriteItem::builder().put(put).build()
            })
            .collect::<Vec<_>>();
        client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .expect("transaction");
    }
    started.elapsed()
}

fn per_batch(traffic: &BTreeMap<String, Traffic>, batches: usize) -> String {
    if traffic.is_empty() {
        return "none".into();
    }
    traffic
        .iter()
        .map(|(op, t)| {
            format!(
                "{op} {:.1} calls, {:.1} KiB out, {:.1} KiB back",
                t.calls as f64 / batches as f64,
                t.sent as f64 / batches as f64 / 1024.0,
                t.received as f64 / batches as f64 / 1024.0
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join("target/wasm32-wasip2/plugin/enrich.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run ./dev plugins",
        wasm.display()
    );
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.endpoint);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(async {
        let setup = moto.clients().await;
        setup.stream("out").await;
        setup.queue("dlq").await;
        setup.table("dedup").await;
        let aws = clients(&proxy.endpoint).await;
        let batches = RECORDS.div_ceil(BATCH) * ROUNDS;

        let mut off = Pipeline::start(&settings(wasm.clone(), false), &aws)
            .await
            .expect("pipeline");
        let off = measure(&mut off, &proxy, event).await;
        let mut on = Pipeline::start(&settings(wasm.clone(), true), &aws)
            .await
            .expect("pipeline");
        // Fresh records (rounds 10..), then the same events again: all duplicates.
        let fresh = measure(&mut on, &proxy, |r| event(10 + r)).await;
        let again = measure(&mut on, &proxy, |r| event(10 + r)).await;

        let store = Store::new(
            aws.dynamodb.clone(),
            &"dynamodb://dedup".parse().expect("spec"),
            Duration::from_secs(86_400),
            Duration::from_secs(900),
        );
        let names: Vec<String> = (0..CLAIMS).map(|i| format!("bench/put/{i}")).collect();
        let started = Instant::now();
        store.claim(&names, None).await.expect("claims");
        let puts = started.elapsed();
        let transact = transact_claims(&aws.dynamodb, "bench/transact").await;

        let mut out = String::new();
        let _ = writeln!(out, "## Idempotency store (`./dev bench`)\n");
        let _ = writeln!(out, "Machine: {}; moto 5.2.5 on loopback (a Python server: rates are the emulator's, the ratios and call counts are the host's). `host` built {}. {RECORDS} Kinesis records per event through `enrich` to a Kinesis stream, batch size {BATCH}, median of {ROUNDS} events.\n", machine(), if cfg!(debug_assertions) { "unoptimized (`cargo bench --profile dev`)" } else { "optimized (the bench profile)" });
        let _ = writeln!(out, "| dedup | records/s | store calls and bytes per batch of {BATCH} | summary of the last event |");
        let _ = writeln!(out, "|---|---|---|---|");
        for (label, m) in [("off", &off), ("on, new records", &fresh), ("on, the same events again", &again)] {
            let _ = writeln!(out, "| {label} | {:.0} | {} | `{}` |", m.rate, per_batch(&m.store, batches), m.summary);
        }
        let _ = writeln!(out, "\nThe store costs {:.0}% of the rate here (each claim is a call to a Python server; DynamoDB answers a conditional `PutItem` in single-digit milliseconds and 32 run at once). An event delivered again costs only the claims: nothing runs, nothing is sent.\n", (1.0 - fresh.rate / off.rate) * 100.0);
        let _ = writeln!(out, "Claiming {CLAIMS} new identities: parallel conditional `PutItem`s (32 at once, what the host does) {:.0} ms, `TransactWriteItems` in groups of 100 one after the other {:.0} ms. The host uses the `PutItem`s: {}, and each record gets its own answer, where a transaction fails whole on one record already done and must be sent again without it.\n", puts.as_secs_f64() * 1e3, transact.as_secs_f64() * 1e3, if puts < transact { "faster here" } else { "slower here, but" });
        out
    });
    print!("{report}");
    write_section(&root.join("BENCHMARKS.md"), "dedup", &report);
}
