//! The Lambda host's metrics: one CloudWatch Embedded Metric Format document per
//! invocation on stdout, valid by the format's rules, its values the run's counts.

use serde_json::Value;

use crate::emulator::Moto;
use crate::events::kinesis_event;
use crate::lambda_harness::Lambda;
use crate::support::{Scratch, path_str, plugin};

/// The rules of the Embedded Metric Format specification a document must keep: a root
/// object with `_aws` (an integer `Timestamp` in ms, a non-empty `CloudWatchMetrics`
/// array); each directive a `Namespace` (1-255 chars), `Dimensions` (arrays of at most
/// 30 names, each a string at the root), `Metrics` (at most 100, each a `Name` that is a
/// number at the root, an optional known `Unit`).
fn valid_emf(doc: &Value) -> Result<(), String> {
    let aws = doc.get("_aws").ok_or("no _aws")?;
    aws["Timestamp"]
        .as_u64()
        .ok_or("Timestamp is not an integer")?;
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .filter(|d| !d.is_empty())
        .ok_or("CloudWatchMetrics is not a non-empty array")?;
    for directive in directives {
        let namespace = directive["Namespace"].as_str().ok_or("no Namespace")?;
        if !(1..=255).contains(&namespace.len()) {
            return Err(format!("Namespace {namespace:?} has a bad length"));
        }
        for set in directive["Dimensions"].as_array().ok_or("no Dimensions")? {
            let set = set.as_array().ok_or("a dimension set is not an array")?;
            if set.len() > 30 {
                return Err("more than 30 dimensions in a set".into());
            }
            for name in set {
                let name = name.as_str().ok_or("a dimension name is not a string")?;
                if !doc[name].is_string() {
                    return Err(format!("dimension {name} has no string value at the root"));
                }
            }
        }
        let metrics = directive["Metrics"].as_array().ok_or("no Metrics")?;
        if metrics.len() > 100 {
            return Err("more than 100 metrics in a directive".into());
        }
        for metric in metrics {
            let name = metric["Name"].as_str().ok_or("a metric without a Name")?;
            if !doc[name].is_number() {
                return Err(format!("metric {name} has no number at the root"));
            }
            if let Some(unit) = metric.get("Unit") {
                let known = ["Count", "Milliseconds", "Seconds", "Bytes", "None"];
                if !unit.as_str().is_some_and(|u| known.contains(&u)) {
                    return Err(format!("metric {name} has an unknown unit {unit}"));
                }
            }
        }
    }
    Ok(())
}

/// A function running `misbehave` from Kinesis events to a stream, with `setting`.
async fn misbehave_to_kinesis(setting: (&'static str, &str)) -> (Moto, Scratch, Lambda) {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    aws.queue("dlq").await;
    let scratch = Scratch::new();
    let wasm = plugin("misbehave");
    let lambda = Lambda::start(
        &moto.env_with(&[
            ("PIPELINE_PLUGIN", path_str(&wasm)),
            ("PIPELINE_SINKS", "default=kinesis://out"),
            ("PIPELINE_DLQ", "sqs://dlq"),
            setting,
        ]),
        scratch.dir.path(),
    );
    (moto, scratch, lambda)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_invocation_writes_one_emf_document_with_its_counts() {
    let (_moto, _scratch, lambda) =
        misbehave_to_kinesis(("PIPELINE_METRICS_NAMESPACE", "Tests/Pipeline")).await;
    let shard = "shardId-000000000001";
    lambda.invoke(kinesis_event(&[
        (shard, "a"),
        (shard, "fail"),
        (shard, "panic"),
        (shard, "b"),
    ]));
    lambda.invoke(kinesis_event(&[(shard, "c")]));
    let docs = lambda.metrics();
    assert_eq!(docs.len(), 2, "{docs:?}");
    for doc in &docs {
        valid_emf(doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Tests/Pipeline"
        );
        assert_eq!(doc["Function"], "pipeline-host");
        assert_eq!(doc["Plugin"], "misbehave@0.1.0");
        assert_eq!(doc["Source"], "kinesis");
        assert!(
            doc["requestId"].as_str().is_some_and(|r| !r.is_empty()),
            "{doc}"
        );
    }
    let first = &docs[0];
    for (name, value) in [
        ("RecordsIn", 4.0),
        ("Transformed", 2.0),
        ("Failed", 2.0),
        ("Failed.domain", 1.0),
        ("Failed.trap", 1.0),
        ("Outputs", 2.0),
        ("Retried", 0.0),
    ] {
        assert_eq!(first[name], value, "{name}: {first}");
    }
    assert_eq!(docs[1]["RecordsIn"], 1.0);
    // The summary line of the same invocation says the same.
    let log = lambda.log();
    assert!(
        log.contains("in=4 transformed=2 dropped=0 failed=2 outputs=2"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_request_id_and_cannot_be_forged() {
    let (_moto, _scratch, lambda) = misbehave_to_kinesis(("AWS_LAMBDA_LOG_FORMAT", "JSON")).await;
    let shard = "shardId-000000000001";
    // `flood` writes log lines that each try to forge a second one with a newline.
    lambda.invoke(kinesis_event(&[
        (shard, "a"),
        (shard, "flood"),
        (shard, "log"),
    ]));
    let log = lambda.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
    let done = lines
        .iter()
        .find(|l| l["message"] == "run done")
        .unwrap_or_else(|| panic!("no `run done` line: {log}"));
    assert!(
        done["span"]["requestId"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{done}"
    );
    assert_eq!(done["plugin"], "misbehave@0.1.0");
    // The plugin's newline stays inside its line's message: no line starts with it.
    assert!(!log.lines().any(|l| l.starts_with("forged")), "{log}");
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("forged host line"))),
        "{log}"
    );
}
