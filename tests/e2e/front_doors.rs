//! One pipeline for every front door: the same input through `host run --sink` and
//! through the Lambda host (a direct invocation) ends the same way — the same outputs in
//! the same sinks, the same dead-letter entries (their timestamps aside), the same counts.

use serde_json::{Value, json};

use crate::emulator::{Clients, Moto};
use crate::lambda_harness::Lambda;
use crate::support::{Scratch, path_str, plugin};

const EVENTS: &str = include_str!("../../examples/events.jsonl");

/// The sample events as a direct invocation: JSON lines as values, the rest as text.
fn direct_event() -> Value {
    let records: Vec<Value> = EVENTS
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| Value::String(line.into())))
        .collect();
    Value::Array(records)
}

const CONFIG: [&str; 3] = ["currency=USD", "route.buy=orders", "audit=true"];

fn chain() -> Vec<String> {
    ["validate", "enrich", "route"]
        .iter()
        .map(|name| path_str(&plugin(name)).to_owned())
        .collect()
}

/// Every message of a queue, sorted (a standard queue keeps no order).
async fn queue_bodies(aws: &Clients, name: &str) -> Vec<String> {
    let url = aws.queue(name).await;
    let mut bodies = aws.drain_queue(&url).await;
    bodies.sort();
    bodies
}

/// What one front door left in its own sinks: the default stream, the `orders` and
/// `audit` queues, the DLQ entries without their timestamps.
async fn results(aws: &Clients, door: &str) -> (Vec<String>, Vec<String>, Vec<Value>) {
    let stream = aws.stream_records(&format!("out-{door}")).await;
    let mut orders = queue_bodies(aws, &format!("orders-{door}")).await;
    orders.extend(queue_bodies(aws, &format!("audit-{door}")).await);
    let dlq_url = aws.queue(&format!("dlq-{door}")).await;
    let mut dead: Vec<Value> = aws
        .drain_queue(&dlq_url)
        .await
        .iter()
        .map(|text| {
            let mut entry: Value = serde_json::from_str(text).expect("a DLQ entry is JSON");
            let stamp = entry
                .as_object_mut()
                .and_then(|o| o.remove("failed_at"))
                .expect("a DLQ entry has failed_at");
            assert!(stamp.is_string(), "{stamp}");
            entry
        })
        .collect();
    dead.sort_by_key(Value::to_string);
    (stream, orders, dead)
}

async fn sinks_for(aws: &Clients, door: &str) {
    aws.stream(&format!("out-{door}")).await;
    aws.queue(&format!("orders-{door}")).await;
    aws.queue(&format!("audit-{door}")).await;
    aws.queue(&format!("dlq-{door}")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_input_through_host_run_and_the_lambda_host_ends_the_same_way() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    sinks_for(&aws, "cli").await;
    sinks_for(&aws, "lambda").await;
    let scratch = Scratch::new();
    let event = direct_event();
    let input = scratch.write("event.json", &event.to_string());
    let plugins = chain();

    // The command line.
    let mut cli = scratch.run(&plugins[0]);
    for p in &plugins[1..] {
        cli = cli.plugin(p);
    }
    for c in CONFIG {
        cli = cli.config(c);
    }
    let run = cli
        .input(&input)
        .format("direct-event")
        .sink("default=kinesis://out-cli")
        .sink("orders=sqs://orders-cli")
        .sink("audit=sqs://audit-cli")
        .dlq("sqs://dlq-cli")
        .envs(moto.env())
        .go();
    run.assert_ok();
    let cli_counts = [
        run.count("in"),
        run.count("transformed"),
        run.count("dropped"),
        run.count("failed"),
        run.count("outputs"),
    ];

    // The Lambda host, invoked directly with the same event.
    let (answer, _log) = Lambda::builder(&moto)
        .plugin(&plugins.join(","))
        .env("PIPELINE_PLUGIN_CONFIG", &CONFIG.join(","))
        .sinks("default=kinesis://out-lambda,orders=sqs://orders-lambda,audit=sqs://audit-lambda")
        .dlq("sqs://dlq-lambda")
        .invoke(scratch.dir.path(), event);
    let count = |name: &str| {
        answer[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no {name} in {answer}"))
    };
    let lambda_counts = [
        count("in"),
        count("transformed"),
        count("dropped"),
        count("failed"),
        count("outputs"),
    ];
    assert_eq!(answer["retried"], json!(0), "{answer}");

    // Both front doors: the same counts, and not trivially (every fate is taken).
    assert_eq!(
        cli_counts, lambda_counts,
        "cli {}\nlambda {answer}",
        run.stderr
    );
    let [input_count, transformed, dropped, failed, outputs] = cli_counts;
    assert_eq!(input_count, 8);
    assert_eq!(input_count, transformed + dropped + failed);
    assert!(
        transformed > 0 && dropped > 0 && failed > 0,
        "{}",
        run.stderr
    );
    assert!(
        outputs > transformed,
        "audit copies fan out: {}",
        run.stderr
    );

    let (cli_stream, cli_orders, cli_dead) = results(&aws, "cli").await;
    let (lambda_stream, lambda_orders, lambda_dead) = results(&aws, "lambda").await;
    assert_eq!(cli_stream, lambda_stream);
    assert_eq!(cli_orders, lambda_orders);
    assert_eq!(cli_dead, lambda_dead);
    // Every output is in exactly one sink, every failure in the DLQ.
    assert_eq!(
        (cli_stream.len() + cli_orders.len()) as u64,
        outputs,
        "{}",
        run.stderr
    );
    assert_eq!(cli_dead.len() as u64, failed);
    assert!(!cli_orders.is_empty(), "a buy is routed to `orders`");
}
