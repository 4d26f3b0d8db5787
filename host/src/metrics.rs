//! Metrics as CloudWatch Embedded Metric Format: one JSON document per Lambda invocation
//! (and, for an invocation running long, one per interval as it goes: they add up),
//! written to stdout, which Lambda ships to CloudWatch Logs, where CloudWatch extracts the
//! metrics (no API call, no latency added to the invocation).
//!
//! Dimensions are few and low-cardinality: the function, the plugin chain
//! (`name@version` per stage) and the source kind, and the function alone (for alarms).
//! The request id is a property, searchable in Logs Insights but not a dimension. A
//! plugin's own counters and gauges are metrics `plugin.NAME` under the function and
//! plugin; the runner bounds how many names a plugin may create.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::pipeline::RunStats;
use crate::registry::Timings;

/// The most metrics one directive may declare, and values one metric may carry
/// (the format's rules).
const MAX_PER_DIRECTIVE: usize = 100;
const MAX_VALUES: usize = 100;

/// What one invocation did (or, as it goes, did since its last document).
pub struct Invocation<'a> {
    /// The function's name (`AWS_LAMBDA_FUNCTION_NAME`).
    pub function: &'a str,
    /// The plugin chain, `name@version` per stage.
    pub plugin: &'a str,
    /// `kinesis`, `sqs`, `dynamodb`, `s3`, `firehose` or `direct`.
    pub source: &'a str,
    /// The counts this document reports.
    pub stats: &'a RunStats,
    /// From the event's arrival to the answer: the invocation's last document only.
    pub duration: Option<Duration>,
    /// How each plugin became ready: the first document after a cold start only.
    pub cold_start: Option<&'a [Timings]>,
    /// The invocation's request id.
    pub request_id: &'a str,
}

/// A metric's name, unit and value(s).
struct Metric {
    name: String,
    unit: &'static str,
    value: Value,
}

fn count(name: impl Into<String>, value: u64) -> Metric {
    Metric {
        name: name.into(),
        unit: "Count",
        value: json!(value as f64),
    }
}

fn millis(name: impl Into<String>, value: Duration) -> Metric {
    Metric {
        name: name.into(),
        unit: "Milliseconds",
        value: json!(value.as_secs_f64() * 1e3),
    }
}

/// A name part taken from configuration (a sink's name) as a metric name may carry it.
fn name_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// The pipeline's metrics for `invocation`.
fn pipeline_metrics(invocation: &Invocation<'_>) -> Vec<Metric> {
    let stats = invocation.stats;
    let s = &stats.summary;
    let plugin = stats.plugin_totals();
    let mut metrics = vec![
        count("RecordsIn", s.input),
        count("Transformed", s.transformed),
        count("Dropped", s.dropped),
        count("Failed", s.failed),
        count("Retried", s.retried),
        count("Duplicates", s.duplicate),
        count("Outputs", s.outputs),
        count("PluginCalls", plugin.calls),
        count("IsolationCalls", plugin.isolation_calls),
        count("Traps", plugin.traps),
        count("InstancesStarted", plugin.instances),
        count("PluginTierUps", plugin.tier_ups),
        millis("PluginTime", plugin.plugin_time),
        millis("BoundaryTime", plugin.boundary_time),
        count("PluginMetricsDropped", plugin.metrics_dropped),
        count("PluginVersionsSwapped", stats.swaps),
        count("PluginVersionsRefused", stats.refused_versions),
    ];
    for (kind, n) in &stats.failed_by_kind {
        metrics.push(count(format!("Failed.{kind}"), *n));
    }
    for (sink, n) in &stats.outputs_by_sink {
        metrics.push(count(format!("Outputs.{}", name_part(sink)), *n));
    }
    // Lookups: the totals, then each table's (`LookupHits.users`).
    if !stats.lookups.is_empty() {
        let mut total = crate::lookup::TableStats::default();
        let mut by_table = Vec::new();
        for (table, t) in &stats.lookups {
            total.hits += t.hits;
            total.misses += t.misses;
            total.calls += t.calls;
            total.errors += t.errors;
            total.time += t.time;
            by_table.push((format!(".{}", name_part(table)), *t));
        }
        for (suffix, t) in std::iter::once((String::new(), total)).chain(by_table) {
            metrics.push(count(format!("LookupHits{suffix}"), t.hits));
            metrics.push(count(format!("LookupMisses{suffix}"), t.misses));
            metrics.push(count(format!("LookupCalls{suffix}"), t.calls));
            metrics.push(count(format!("LookupErrors{suffix}"), t.errors));
            metrics.push(millis(format!("LookupTime{suffix}"), t.time));
        }
    }
    let batches = &stats.batch_durations;
    if !batches.is_empty() {
        // The latest ones, should a document ever gather more than the format allows.
        let recent = &batches[batches.len().saturating_sub(MAX_VALUES)..];
        metrics.push(Metric {
            name: "BatchDuration".into(),
            unit: "Milliseconds",
            value: json!(
                recent
                    .iter()
                    .map(|d| d.as_secs_f64() * 1e3)
                    .collect::<Vec<_>>()
            ),
        });
    }
    if let Some(duration) = invocation.duration {
        metrics.push(millis("Duration", duration));
    }
    if let Some(timings) = invocation.cold_start {
        let sum = |f: &dyn Fn(&Timings) -> Duration| timings.iter().map(f).sum::<Duration>();
        let (compiled, loaded): (Vec<&Timings>, Vec<&Timings>) =
            timings.iter().partition(|t| t.load.cache.compiled());
        let load = |ts: Vec<&Timings>| ts.iter().map(|t| t.load.load).sum::<Duration>();
        metrics.push(millis("ColdStart.Fetch", sum(&|t| t.fetch)));
        metrics.push(millis("ColdStart.Verify", sum(&|t| t.verify)));
        metrics.push(millis("ColdStart.Compile", load(compiled)));
        metrics.push(millis("ColdStart.CacheLoad", load(loaded)));
        metrics.push(millis("ColdStart.Prepare", sum(&|t| t.load.prepare)));
        metrics.push(millis("ColdStart.Init", sum(&|t| t.init)));
    }
    metrics
}

/// The plugins' own counters (`Count`) and gauges (`None`), as `plugin.NAME`.
fn plugin_metrics(stats: &RunStats) -> Vec<Metric> {
    let (counters, gauges) = stats.plugin_metrics();
    let counters = counters.into_iter().map(|(name, n)| Metric {
        name: format!("plugin.{name}"),
        unit: "Count",
        value: json!(n as f64),
    });
    let gauges = gauges.into_iter().map(|(name, v)| Metric {
        name: format!("plugin.{name}"),
        unit: "None",
        value: json!(v),
    });
    counters.chain(gauges).collect()
}

/// The EMF document of `invocation` under `namespace`, one line of JSON.
pub fn document(namespace: &str, invocation: &Invocation<'_>, now: SystemTime) -> Value {
    let pipeline = pipeline_metrics(invocation);
    let plugin = plugin_metrics(invocation.stats);
    let mut directives = Vec::new();
    let mut directive = |metrics: &[Metric], dimensions: Value| {
        for chunk in metrics.chunks(MAX_PER_DIRECTIVE) {
            directives.push(json!({
                "Namespace": namespace,
                "Dimensions": dimensions,
                "Metrics": chunk
                    .iter()
                    .map(|m| json!({"Name": m.name, "Unit": m.unit}))
                    .collect::<Vec<_>>(),
            }));
        }
    };
    // Per plugin version and source, and per function (what alarms watch: a new
    // version starts a new series of the first set).
    directive(
        &pipeline,
        json!([["Function", "Plugin", "Source"], ["Function"]]),
    );
    directive(&plugin, json!([["Function", "Plugin"]]));
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            "CloudWatchMetrics": directives,
        }),
    );
    root.insert("Function".into(), json!(invocation.function));
    root.insert("Plugin".into(), json!(invocation.plugin));
    root.insert("Source".into(), json!(invocation.source));
    root.insert("requestId".into(), json!(invocation.request_id));
    if invocation.duration.is_none() {
        // Readers summing an invocation's documents can tell the last one apart.
        root.insert("interim".into(), json!(true));
    }
    for metric in pipeline.into_iter().chain(plugin) {
        root.insert(metric.name, metric.value);
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

/// Writes an invocation's documents: one as it goes whenever `interval` passed (or the
/// batch durations it holds reach the format's limit), and the last at its end, each
/// with what happened since the one before.
pub struct Reporter<'a> {
    namespace: &'a str,
    function: &'a str,
    source: &'a str,
    request_id: &'a str,
    /// The chain serving when the invocation began (named when no batch ran).
    plugin: String,
    interval: Duration,
    cold_start: Option<&'a [Timings]>,
    last: RunStats,
    last_at: std::time::Instant,
}

impl<'a> Reporter<'a> {
    /// A reporter for one invocation of `function` by a `source` event, the chain
    /// `plugin` serving; `cold_start` goes in its first document.
    pub fn new(
        namespace: &'a str,
        function: &'a str,
        source: &'a str,
        request_id: &'a str,
        plugin: String,
        interval: Duration,
        cold_start: Option<&'a [Timings]>,
    ) -> Self {
        Self {
            namespace,
            function,
            source,
            request_id,
            plugin,
            interval,
            cold_start,
            last: RunStats::default(),
            last_at: std::time::Instant::now(),
        }
    }

    /// After a batch: a document for what happened since the last one, if it is time.
    pub fn batch_done(&mut self, stats: &RunStats) {
        let batches = stats
            .batch_durations
            .len()
            .saturating_sub(self.last.batch_durations.len());
        if self.last_at.elapsed() >= self.interval || batches >= MAX_VALUES {
            self.write(stats, None);
        }
    }

    /// The invocation's last document: what happened since the one before, and its
    /// whole duration.
    pub fn finish(mut self, stats: &RunStats, duration: Duration) {
        self.write(stats, Some(duration));
    }

    fn write(&mut self, stats: &RunStats, duration: Option<Duration>) {
        let delta = stats.since(&self.last);
        let label = if stats.stages.is_empty() {
            self.plugin.clone()
        } else {
            stats
                .stages
                .iter()
                .map(|(label, _)| label.as_str())
                .collect::<Vec<_>>()
                .join(" -> ")
        };
        let invocation = Invocation {
            function: self.function,
            plugin: &label,
            source: self.source,
            stats: &delta,
            duration,
            cold_start: self.cold_start.take(),
            request_id: self.request_id,
        };
        emit(&document(self.namespace, &invocation, SystemTime::now()));
        self.last = stats.clone();
        self.last_at = std::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::accounting::Summary;
    use crate::engine::RunnerMetrics;

    #[test]
    fn every_metric_and_dimension_has_its_value_at_the_root() {
        let stats = RunStats {
            summary: Summary {
                input: 5,
                transformed: 3,
                failed: 2,
                outputs: 4,
                ..Summary::default()
            },
            failed_by_kind: BTreeMap::from([("domain", 1), ("trap", 1)]),
            outputs_by_sink: BTreeMap::from([("events out".to_owned(), 4)]),
            stages: vec![(
                "enrich@1.0.0".into(),
                RunnerMetrics {
                    calls: 2,
                    counters: BTreeMap::from([("seen".to_owned(), 5)]),
                    ..RunnerMetrics::default()
                },
            )],
            batch_durations: vec![Duration::from_millis(3); 150],
            ..RunStats::default()
        };
        let doc = document(
            "PipelineHost",
            &Invocation {
                function: "f",
                plugin: "enrich@1.0.0",
                source: "kinesis",
                stats: &stats,
                duration: Some(Duration::from_millis(12)),
                cold_start: None,
                request_id: "r-1",
            },
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
        );
        assert_eq!(doc["_aws"]["Timestamp"], 1_795_000_000_000u64);
        let directives = doc["_aws"]["CloudWatchMetrics"]
            .as_array()
            .expect("directives");
        assert_eq!(directives.len(), 2, "the pipeline's, the plugin's");
        for directive in directives {
            for set in directive["Dimensions"].as_array().expect("dimension sets") {
                for dimension in set.as_array().expect("a dimension set") {
                    let name = dimension.as_str().expect("a dimension name");
                    assert!(doc[name].is_string(), "{name}");
                }
            }
            for metric in directive["Metrics"].as_array().expect("metrics") {
                let name = metric["Name"].as_str().expect("a metric name");
                assert!(doc[name].is_number() || doc[name].is_array(), "{name}");
            }
        }
        assert_eq!(doc["RecordsIn"], 5.0);
        assert_eq!(doc["Failed.trap"], 1.0);
        assert_eq!(doc["Outputs.events_out"], 4.0);
        assert_eq!(doc["PluginCalls"], 2.0);
        assert_eq!(doc["plugin.seen"], 5.0);
        assert_eq!(
            doc["BatchDuration"].as_array().map(Vec::len),
            Some(MAX_VALUES)
        );
        assert!(doc.get("interim").is_none());
    }
}
