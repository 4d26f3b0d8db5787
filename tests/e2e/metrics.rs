//! The Lambda host's metrics: one CloudWatch Embedded Metric Format document per
//! invocation on stdout, valid by the format's rules, its values the run's counts.

use serde_json::Value;

use crate::emulator::Moto;
use crate::events::{kinesis_event, s3_event};
use crate::lambda_harness::Lambda;
use crate::support::Scratch;

/// The Embedded Metric Format's JSON Schema, written from AWS's specification.
const EMF_SCHEMA: &str = include_str!("emf.schema.json");

/// `doc` is a valid EMF document: it passes the specification's schema, and every
/// dimension a directive names is a string at the root and every metric a number or an
/// array of at most 100 numbers there (what a schema cannot say).
fn valid_emf(doc: &Value) -> Result<(), String> {
    let schema: Value = serde_json::from_str(EMF_SCHEMA).map_err(|e| e.to_string())?;
    let validator = jsonschema::validator_for(&schema).map_err(|e| e.to_string())?;
    if let Some(error) = validator.iter_errors(doc).next() {
        return Err(format!("{error} at {}", error.instance_path));
    }
    let directives = doc["_aws"]["CloudWatchMetrics"]
        .as_array()
        .ok_or("no directives")?;
    for directive in directives {
        for set in directive["Dimensions"].as_array().ok_or("no Dimensions")? {
            for name in set.as_array().ok_or("a dimension set is not an array")? {
                let name = name.as_str().ok_or("a dimension name is not a string")?;
                if !doc[name].is_string() {
                    return Err(format!("dimension {name} has no string value at the root"));
                }
            }
        }
        for metric in directive["Metrics"].as_array().ok_or("no Metrics")? {
            let name = metric["Name"].as_str().ok_or("a metric without a Name")?;
            let value = &doc[name];
            let numbers = value.as_array().is_some_and(|values| {
                (1..=100).contains(&values.len()) && values.iter().all(Value::is_number)
            });
            if !value.is_number() && !numbers {
                return Err(format!("metric {name} has no number at the root: {value}"));
            }
        }
    }
    Ok(())
}

/// The metric `name` of `doc`, which must be there.
fn metric(doc: &Value, name: &str) -> f64 {
    doc[name]
        .as_f64()
        .unwrap_or_else(|| panic!("no metric {name}: {doc}"))
}

/// A function running `misbehave` from Kinesis events to a stream, with `setting`.
async fn misbehave_to_kinesis(setting: (&'static str, &str)) -> (Moto, Scratch, Lambda) {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.stream("out").await;
    aws.queue("dlq").await;
    let scratch = Scratch::new();
    let (name, value) = setting;
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=kinesis://out")
        .dlq("sqs://dlq")
        .env(name, value)
        .start(scratch.dir.path());
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
        ("Dropped", 0.0),
        ("Failed", 2.0),
        ("Failed.domain", 1.0),
        ("Failed.trap", 1.0),
        ("Outputs", 2.0),
        ("Outputs.default", 2.0),
        ("Retried", 0.0),
        ("PluginVersionsSwapped", 0.0),
        ("PluginVersionsRefused", 0.0),
    ] {
        assert_eq!(metric(first, name), value, "{name}: {first}");
    }
    // The panic's call, then the halves isolating it; each trap costs an instance, the
    // cold start's instance is counted with the first invocation, and so is the move to
    // Cranelift's code when its background compile was done by then (tiered start).
    assert!(metric(first, "Traps") >= 1.0, "{first}");
    assert!(metric(first, "PluginTierUps") <= 1.0, "{first}");
    assert_eq!(
        metric(first, "InstancesStarted"),
        metric(first, "Traps") + 1.0 + metric(first, "PluginTierUps"),
        "{first}"
    );
    assert!(metric(first, "PluginCalls") >= 3.0, "{first}");
    assert!(metric(first, "IsolationCalls") >= 2.0, "{first}");
    assert!(metric(first, "PluginTime") > 0.0, "{first}");
    assert_eq!(first["BatchDuration"].as_array().map(Vec::len), Some(1));
    assert!(metric(first, "Duration") > 0.0);
    // The cold start is reported once, with the invocation after it.
    let compiled = metric(first, "ColdStart.Compile") + metric(first, "ColdStart.CacheLoad");
    assert!(compiled > 0.0, "{first}");
    assert!(metric(first, "ColdStart.Init") > 0.0, "{first}");
    assert!(docs[1].get("ColdStart.Init").is_none(), "{}", docs[1]);
    assert_eq!(metric(&docs[1], "RecordsIn"), 1.0);
    assert_eq!(metric(&docs[1], "PluginCalls"), 1.0);
    assert_eq!(metric(&docs[1], "Traps"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_counters_and_gauges_become_metrics_within_their_allowance() {
    let (_moto, _scratch, lambda) =
        misbehave_to_kinesis(("PIPELINE_METRICS_NAMESPACE", "Tests/Pipeline")).await;
    let shard = "shardId-000000000001";
    // Each `metrics` record counts `seen`, sets `level`, reports a name no metric may
    // have and sets `seen` as a gauge; `names` reports 60 new counter names, past the 50 a plugin may create.
    lambda.invoke(kinesis_event(&[(shard, "metrics"), (shard, "metrics")]));
    lambda.invoke(kinesis_event(&[(shard, "names")]));
    let docs = lambda.metrics();
    assert_eq!(docs.len(), 2, "{docs:?}");
    for doc in &docs {
        valid_emf(doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
    }
    let plugin_metrics = |doc: &Value| {
        doc.as_object()
            .map_or(0, |o| o.keys().filter(|k| k.starts_with("plugin.")).count())
    };
    assert_eq!(metric(&docs[0], "plugin.seen"), 2.0);
    assert_eq!(metric(&docs[0], "plugin.level"), 7.5);
    assert_eq!(plugin_metrics(&docs[0]), 2, "{}", docs[0]);
    assert_eq!(
        metric(&docs[0], "PluginMetricsDropped"),
        3.0,
        "the bad name, twice; the counter's name as a gauge, once a call"
    );
    // 48 names fit beside the 2 the plugin made before; the other 12 are dropped.
    // (A gauge is reported by the invocations that set it.)
    assert_eq!(plugin_metrics(&docs[1]), 48, "{}", docs[1]);
    assert_eq!(metric(&docs[1], "PluginMetricsDropped"), 12.0);
    let plugin_directive = &docs[1]["_aws"]["CloudWatchMetrics"][1];
    assert_eq!(plugin_directive["Dimensions"][0][1], "Plugin");
    // Dropped reports are said once, not once per report.
    let log = lambda.log();
    assert_eq!(
        log.matches("reports of new ones are dropped").count(),
        1,
        "{log}"
    );
    assert!(
        !log.contains("forged"),
        "an invalid name never reaches the log: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_invocation_writes_metrics_as_it_goes_and_they_add_up() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("incoming").await;
    aws.queue("out").await;
    aws.queue("dlq").await;
    let lines: Vec<String> = (0..45)
        .map(|i| {
            if i % 10 == 3 {
                "fail".into()
            } else {
                format!("r{i}")
            }
        })
        .collect();
    aws.put_object("incoming", "raw/long.txt", lines.join("\n").into_bytes())
        .await;
    let scratch = Scratch::new();
    let lambda = Lambda::builder(&moto)
        .plugin("misbehave")
        .sinks("default=sqs://out")
        .dlq("sqs://dlq")
        .env("PIPELINE_BATCH_SIZE", "10")
        // A document after every batch.
        .env("PIPELINE_METRICS_INTERVAL_SECONDS", "0")
        .start(scratch.dir.path());
    let answer = lambda.invoke(s3_event("incoming", &["raw/long.txt"]));
    let docs = lambda.metrics();
    // Five batches of at most 10 records: one document after each, then the last.
    assert_eq!(docs.len(), 6, "{answer}\n{}", lambda.log());
    for doc in &docs {
        valid_emf(doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
        assert_eq!(doc["Source"], "s3");
    }
    let (interim, last) = docs.split_at(5);
    assert!(interim.iter().all(|d| d["interim"] == true));
    assert!(last[0].get("interim").is_none() && last[0].get("Duration").is_some());
    // (A sink or failure kind with nothing new in a document is not in it.)
    let total = |name: &str| docs.iter().filter_map(|d| d[name].as_f64()).sum::<f64>();
    assert_eq!(total("RecordsIn"), 45.0);
    assert_eq!(total("Failed"), 5.0);
    assert_eq!(total("Transformed"), 40.0);
    assert_eq!(total("Outputs.default"), 40.0);
    assert_eq!(answer["in"], 45, "{answer}");
    assert_eq!(answer["failed"], 5, "{answer}");
    let batches: usize = docs
        .iter()
        .map(|d| d["BatchDuration"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(batches, 5);
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
    assert_eq!(done["span"]["plugin"], "misbehave@0.1.0", "{done}");
    // A plugin's own line (written on the plugin's thread) keeps its level, names the
    // plugin and carries the invocation's request id too.
    let plugin_line = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("flood 0"))
        })
        .unwrap_or_else(|| panic!("no plugin log line: {log}"));
    assert_eq!(plugin_line["level"], "INFO", "{plugin_line}");
    assert_eq!(plugin_line["plugin"], "misbehave@0.1.0", "{plugin_line}");
    assert_eq!(
        plugin_line["span"]["requestId"], done["span"]["requestId"],
        "{plugin_line}"
    );
    // The plugin's newline stays inside its line's message: no line starts with it.
    assert!(!log.lines().any(|l| l.starts_with("forged")), "{log}");
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("forged host line"))),
        "{log}"
    );
}
