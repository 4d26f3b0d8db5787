//! Framed records' price (`./dev bench`, "Schemas" in BENCHMARKS.md): Kinesis events of
//! `enrich` inputs through the pipeline to a file, as JSON records and as the same
//! content in Confluent-framed Avro (opened to JSON before the plugin), and Avro both
//! ways (the outputs written in Confluent framing with a subject's schema), at batch
//! 1000; and how often the loopback registry was asked.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use pipeline_host::aws::AwsClients;
use pipeline_host::limits::Budget;
use pipeline_host::pipeline::Outputs;
use pipeline_host::registry::PluginLocation;
use pipeline_host::schemas::{FramedWriter, FramingSetting, Registries};
use pipeline_host::sinks::{Emit, Router, Sink, SinkSpec};
use pipeline_host::sources::{EventKind, LambdaEvent, events};
use pipeline_host::{Pipeline, Settings};
use serde_json::{Value, json};

#[allow(dead_code)]
mod common;
use common::{kinesis_event, machine, write_section};

const BATCH: usize = 1000;
const EVENTS: usize = 20;

/// What `enrich` makes of an event.
const ENRICHED_AVRO: &str = r#"{"type":"record","name":"Enriched","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"user","type":"string"},{"name":"action","type":"string"},{"name":"amount_cents","type":["null","long"],"default":null},{"name":"currency","type":"string"},{"name":"day","type":"string"},{"name":"source","type":["null","string"],"default":null}]}"#;

const EVENT_AVRO: &str = r#"{"type":"record","name":"Event","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"user","type":"string"},{"name":"action","type":"string"},{"name":"amount","type":"double"},{"name":"ts","type":"string"}]}"#;

fn content(i: usize) -> (String, String, &'static str, f64, String) {
    let actions = ["buy", "view", "refund", "click"];
    (
        format!("evt-{i:08}"),
        format!("user-{:05}", i % 5000),
        actions[i % actions.len()],
        (i % 1000) as f64 + 0.25,
        format!("2026-11-24T13:{:02}:{:02}Z", (i / 60) % 60, i % 60),
    )
}

fn json_payload(i: usize) -> Vec<u8> {
    let (id, user, action, amount, ts) = content(i);
    json!({"id": id, "user": user, "action": action, "amount": amount, "ts": ts})
        .to_string()
        .into_bytes()
}

/// Avro's zigzag varint of `n`.
fn varint(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The same content as a Confluent-framed Avro datum of [`EVENT_AVRO`] (schema id 1).
fn avro_payload(i: usize) -> Vec<u8> {
    let (id, user, action, amount, ts) = content(i);
    let mut out = vec![0, 0, 0, 0, 1];
    for text in [id.as_str(), user.as_str(), action] {
        varint(&mut out, text.len() as i64);
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(&amount.to_le_bytes());
    varint(&mut out, ts.len() as i64);
    out.extend_from_slice(ts.as_bytes());
    out
}

fn event(b: usize, payload: fn(usize) -> Vec<u8>) -> Value {
    let payloads: Vec<Vec<u8>> = (0..BATCH).map(|i| payload(b * BATCH + i)).collect();
    kinesis_event(b, &payloads)
}

/// Records/s over `EVENTS` events (best of the events, the first one dropped); with
/// `framed_out`, the outputs written in Confluent framing with that subject's schema.
async fn rate(
    settings: &Settings,
    scratch: &Path,
    payload: fn(usize) -> Vec<u8>,
    framed_out: Option<&str>,
) -> f64 {
    let aws = AwsClients::unconfigured();
    let mut pipeline = Pipeline::start(settings, &aws).await.expect("pipeline");
    let out = Sink::connect(
        &SinkSpec::File {
            path: Some(scratch.join("out.jsonl")),
            emit: Emit::Payload,
        },
        &aws,
    )
    .await
    .expect("out");
    let router = match framed_out {
        None => Router::only(out),
        Some(subject) => {
            let registries = Registries::new(
                aws.glue.clone(),
                settings.confluent_registry.as_deref(),
                None,
            )
            .expect("registries");
            let target = format!("confluent://{subject}").parse().expect("a target");
            let writer = FramedWriter::new(target, registries, false).expect("a writer");
            Router::new(std::collections::BTreeMap::from([(
                "default".to_owned(),
                out,
            )]))
            .with_framing("default", writer)
        }
    };
    let mut best = f64::MAX;
    for b in 0..=EVENTS {
        let decoded = events::decode_within(
            EventKind::Kinesis,
            events::EventJson::Value(&event(b, payload)),
            pipeline_host::sources::InputLimits::default(),
        )
        .expect("event");
        let mut source = LambdaEvent::new(decoded);
        let started = Instant::now();
        let summary = pipeline
            .run(&mut source, Outputs::To(&router), Budget::unbounded())
            .await
            .expect("run");
        assert_eq!(summary.transformed, BATCH as u64, "{summary}");
        assert_eq!(summary.failed, 0, "{summary}");
        if b > 0 {
            best = best.min(started.elapsed().as_secs_f64());
        }
    }
    BATCH as f64 / best
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join("target/wasm32-wasip2/plugin/enrich.wasm");
    let server = tiny_http::Server::http("127.0.0.1:0").expect("a loopback server");
    let port = server.server_addr().to_ip().expect("an IP address").port();
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = asked.clone();
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            counted.fetch_add(1, Ordering::Relaxed);
            let body = if request.url().starts_with("/subjects/enriched-value/") {
                json!({"id": 2, "version": 1, "schema": ENRICHED_AVRO})
            } else {
                json!({"schema": EVENT_AVRO})
            };
            let _ = request.respond(tiny_http::Response::from_string(body.to_string()));
        }
    });
    let scratch = tempfile::tempdir().expect("scratch");
    let settings = |framing: FramingSetting| {
        let mut settings = Settings {
            plugins: vec![PluginLocation::File(wasm.clone())],
            dlq: SinkSpec::File {
                path: Some(scratch.path().join("dlq.jsonl")),
                emit: Emit::Payload,
            },
            cache_dir: None,
            ..Settings::default()
        };
        settings.limits.batch_size = BATCH;
        settings.schema_framing = framing;
        settings.confluent_registry = Some(format!("http://127.0.0.1:{port}"));
        settings
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (json_rate, avro_rate, both_rate) = runtime.block_on(async {
        let json_rate = rate(
            &settings(FramingSetting::None),
            scratch.path(),
            json_payload,
            None,
        )
        .await;
        let avro_rate = rate(
            &settings(FramingSetting::Confluent),
            scratch.path(),
            avro_payload,
            None,
        )
        .await;
        let both_rate = rate(
            &settings(FramingSetting::Confluent),
            scratch.path(),
            avro_payload,
            Some("enriched-value"),
        )
        .await;
        (json_rate, avro_rate, both_rate)
    });
    let asked = asked.load(Ordering::Relaxed);
    let (json_bytes, avro_bytes) = (json_payload(7).len(), avro_payload(7).len());
    let mut out = String::new();
    let _ = writeln!(out, "## Schemas (`./dev bench`)\n");
    let _ = writeln!(
        out,
        "Machine: {}; `host` built {}. Kinesis events of {BATCH} `enrich` inputs through the pipeline to a file (decode, plugin, out), the best of {EVENTS} events after one to warm up. The JSON row is the baseline: the same content, no schema work.\n",
        machine(),
        if cfg!(debug_assertions) {
            "unoptimized"
        } else {
            "optimized (the bench profile)"
        }
    );
    let _ = writeln!(out, "| records | bytes/record | records/s |");
    let _ = writeln!(out, "|---|---|---|");
    let _ = writeln!(out, "| JSON | {json_bytes} | {json_rate:.0} |");
    let _ = writeln!(
        out,
        "| Confluent-framed Avro in, opened to JSON before the plugin; JSON out | {avro_bytes} | {avro_rate:.0} |"
    );
    let _ = writeln!(
        out,
        "| Avro in and out: the outputs written as Confluent-framed Avro (`?schema=confluent://SUBJECT`) | {avro_bytes} | {both_rate:.0} |"
    );
    let _ = writeln!(
        out,
        "\nOpening Avro costs {:.0}% of the JSON rate here (the datum decoded, then written as JSON for the plugin); writing the outputs as Avro too, {:.0}% (each output parsed as JSON, resolved against the schema, encoded). The registry was asked {asked} times in {} framed batches: each schema once per pipeline (the input's by id in the two framed runs, the output subject's latest version), then from memory: 0 lookups per batch after the first.\n",
        (1.0 - avro_rate / json_rate) * 100.0,
        (1.0 - both_rate / json_rate) * 100.0,
        2 * (EVENTS + 1)
    );
    print!("{out}");
    write_section(&root.join("BENCHMARKS.md"), "schemas", &out);
}
