//! Metrics as CloudWatch Embedded Metric Format: one JSON document per Lambda invocation,
//! written to stdout, which Lambda ships to CloudWatch Logs, where CloudWatch extracts the
//! metrics (no API call, no latency added to the invocation).
//!
//! Dimensions are few and low-cardinality: the function, the plugin chain
//! (`name@version`) and the source kind, and the function alone (for alarms). The request id is a property, searchable in
//! Logs Insights but not a dimension.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::accounting::Summary;

/// What one invocation did, as the metrics document reports it.
pub struct Invocation<'a> {
    /// The function's name (`AWS_LAMBDA_FUNCTION_NAME`).
    pub function: &'a str,
    /// The plugin chain, `name@version` per stage.
    pub plugin: &'a str,
    /// `kinesis`, `sqs`, `dynamodb`, `s3`, `firehose` or `direct`.
    pub source: &'a str,
    /// The run's counts.
    pub summary: &'a Summary,
    /// Dead-lettered records by failure kind.
    pub failed_by_kind: &'a BTreeMap<&'static str, u64>,
    /// New plugin versions refused before the run.
    pub refused_versions: u64,
    /// From the event's arrival to the answer.
    pub duration: Duration,
    /// The invocation's request id.
    pub request_id: &'a str,
}

/// The EMF document of `invocation` under `namespace`, one line of JSON.
pub fn document(namespace: &str, invocation: &Invocation<'_>, now: SystemTime) -> Value {
    let s = invocation.summary;
    let mut metrics: Vec<(String, &str, f64)> = vec![
        ("RecordsIn".into(), "Count", s.input as f64),
        ("Transformed".into(), "Count", s.transformed as f64),
        ("Dropped".into(), "Count", s.dropped as f64),
        ("Failed".into(), "Count", s.failed as f64),
        ("Retried".into(), "Count", s.retried as f64),
        ("Duplicates".into(), "Count", s.duplicate as f64),
        ("Outputs".into(), "Count", s.outputs as f64),
        (
            "PluginVersionsRefused".into(),
            "Count",
            invocation.refused_versions as f64,
        ),
        (
            "Duration".into(),
            "Milliseconds",
            invocation.duration.as_secs_f64() * 1e3,
        ),
    ];
    for (kind, count) in invocation.failed_by_kind {
        metrics.push((format!("Failed.{kind}"), "Count", *count as f64));
    }
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                // Per plugin version and source, and per function (what alarms watch:
                // a new version starts a new series of the first set).
                "Dimensions": [["Function", "Plugin", "Source"], ["Function"]],
                "Metrics": metrics
                    .iter()
                    .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    root.insert("Function".into(), json!(invocation.function));
    root.insert("Plugin".into(), json!(invocation.plugin));
    root.insert("Source".into(), json!(invocation.source));
    root.insert("requestId".into(), json!(invocation.request_id));
    for (name, _, value) in metrics {
        root.insert(name, json!(value));
    }
    Value::Object(root)
}

/// Writes `document` to stdout as one line (CloudWatch reads EMF from the log stream).
pub fn emit(document: &Value) {
    use std::io::Write as _;
    let mut line = document.to_string();
    line.push('\n');
    let mut out = std::io::stdout().lock();
    // A lost metrics line must not fail the invocation.
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_and_dimension_has_its_value_at_the_root() {
        let summary = Summary {
            input: 5,
            transformed: 3,
            failed: 2,
            outputs: 4,
            ..Summary::default()
        };
        let kinds = BTreeMap::from([("domain", 1), ("trap", 1)]);
        let doc = document(
            "PipelineHost",
            &Invocation {
                function: "f",
                plugin: "enrich@1.0.0",
                source: "kinesis",
                summary: &summary,
                failed_by_kind: &kinds,
                refused_versions: 0,
                duration: Duration::from_millis(12),
                request_id: "r-1",
            },
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
        );
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], 1_795_000_000_000u64);
        for dimension in directive["Dimensions"][0]
            .as_array()
            .expect("a dimension set")
        {
            let name = dimension.as_str().expect("a dimension name");
            assert!(doc[name].is_string(), "{name}");
        }
        for metric in directive["Metrics"].as_array().expect("metrics") {
            let name = metric["Name"].as_str().expect("a metric name");
            assert!(doc[name].is_number(), "{name}");
        }
        assert_eq!(doc["RecordsIn"], 5.0);
        assert_eq!(doc["Failed.trap"], 1.0);
    }
}
