//! One Lambda function under test: a Runtime API server and the `host` binary started
//! against it, driven one invocation at a time. [`Lambda::builder`] gives it its settings
//! as a function's configuration would; [`Lambda::start`] takes them as environment.
//! Built on [`RuntimeApi`] and [`Function`], which stay available for anything this does
//! not cover.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;

use crate::emulator::Moto;
use crate::proxy::Proxy;
use crate::runtime_api::{Answer, Function, RuntimeApi};
use crate::support::{plugin_location, text};

/// How long an invocation (or a cold start's init error) may take to be answered:
/// generous, as a cold start compiles the plugin.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(90);

/// A started function and its Runtime API. Dropping it kills the function (by PID),
/// then stops the server.
pub struct Lambda {
    // Declared first so it is dropped first: the function goes before its API server.
    function: Function,
    api: RuntimeApi,
}

/// A function's settings, one by one, on the emulator: [`Lambda::builder`], then
/// [`LambdaBuilder::start`] (or [`LambdaBuilder::invoke`] for one event). A setting given
/// twice takes the last value.
pub struct LambdaBuilder {
    env: Vec<(&'static str, String)>,
}

impl LambdaBuilder {
    /// `PIPELINE_PLUGIN`: an example's name (`"enrich"`), or a path or URL (anything with
    /// a `/`, a comma-separated chain of them too).
    pub fn plugin(self, name_or_path: &str) -> Self {
        self.env("PIPELINE_PLUGIN", &plugin_location(name_or_path))
    }

    /// `PIPELINE_SINKS`, e.g. `default=kinesis://out`.
    pub fn sinks(self, specs: &str) -> Self {
        self.env("PIPELINE_SINKS", specs)
    }

    /// `PIPELINE_DLQ`, e.g. `sqs://dlq`.
    pub fn dlq(self, spec: &str) -> Self {
        self.env("PIPELINE_DLQ", spec)
    }

    /// Any other setting, e.g. `env("PIPELINE_BATCH_SIZE", "4")`.
    pub fn env(mut self, name: &'static str, value: &str) -> Self {
        self.env.retain(|(k, _)| *k != name);
        self.env.push((name, value.to_owned()));
        self
    }

    /// More settings, in order (the last of a name counts).
    pub fn envs(self, pairs: &[(&'static str, &str)]) -> Self {
        pairs
            .iter()
            .fold(self, |function, &(name, value)| function.env(name, value))
    }

    /// Every AWS call through `proxy` (its `AWS_ENDPOINT_URL`).
    pub fn through(mut self, proxy: &Proxy) -> Self {
        self.env = proxy.env(std::mem::take(&mut self.env));
        self
    }

    /// Starts the function, working (and logging to `function.log`) in `dir`.
    pub fn start(self, dir: &Path) -> Lambda {
        Lambda::start(&self.env, dir)
    }

    /// Starts the function, sends it one event and stops it: the response, and the
    /// function's log as it was when the response came.
    pub fn invoke(self, dir: &Path, event: Value) -> (Value, String) {
        let lambda = self.start(dir);
        let response = lambda.invoke(event);
        (response, lambda.log())
    }
}

impl Lambda {
    /// A function pointed at `moto`, to be given its settings: [`LambdaBuilder`].
    pub fn builder(moto: &Moto) -> LambdaBuilder {
        LambdaBuilder { env: moto.env() }
    }

    /// Starts a Runtime API server with no queued event, and the function against it
    /// with `env`, working (and logging to `function.log`) in `dir`.
    pub fn start(env: &[(&str, String)], dir: &Path) -> Self {
        let api = RuntimeApi::start(Vec::new());
        let function = Function::start(&api, env, dir);
        Self { function, api }
    }

    /// Gives the next invocations this timeout (their deadline), as the function's
    /// configuration does in Lambda.
    pub fn set_timeout(&self, timeout: Duration) {
        self.api.set_timeout(timeout);
    }

    /// Sends `event` and returns the response; panics with the function's log when the
    /// answer is an error (or does not come within [`ANSWER_TIMEOUT`]).
    pub fn invoke(&self, event: Value) -> Value {
        match self.invoke_answer(event) {
            Answer::Response(value) => value,
            other => panic!("expected a response, got {other:?}; log:\n{}", self.log()),
        }
    }

    /// Sends `event` and returns whatever the function answered.
    pub fn invoke_answer(&self, event: Value) -> Answer {
        self.send(event);
        self.next_answer()
    }

    /// Queues `event` without waiting for its answer ([`Lambda::next_answer`]).
    pub fn send(&self, event: Value) {
        self.api.push(event);
    }

    /// Waits for the next answer without sending anything (a cold start's init error).
    pub fn next_answer(&self) -> Answer {
        self.api.next_answer(ANSWER_TIMEOUT)
    }

    /// The metrics documents (EMF) the function wrote so far, one per invocation.
    pub fn metrics(&self) -> Vec<Value> {
        self.function
            .stdout_text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a metrics line is JSON"))
            .collect()
    }

    /// The counts of each invocation so far, in order, named as the answer to a direct
    /// invocation names them (`in`, `transformed`, `dropped`, `failed`, `outputs`,
    /// `retried`, `duplicate`): read from its metrics documents, summed (an invocation
    /// running past the metrics interval writes some as it goes, and they add up).
    pub fn counts(&self) -> Vec<Value> {
        const NAMES: [(&str, &str); 7] = [
            ("RecordsIn", "in"),
            ("Transformed", "transformed"),
            ("Dropped", "dropped"),
            ("Failed", "failed"),
            ("Outputs", "outputs"),
            ("Retried", "retried"),
            ("Duplicates", "duplicate"),
        ];
        let mut invocations: Vec<(String, [f64; 7])> = Vec::new();
        for doc in self.metrics() {
            let id = text(&doc["requestId"], "a metrics document's requestId").to_owned();
            if invocations.last().is_none_or(|(last, _)| *last != id) {
                invocations.push((id, [0.0; 7]));
            }
            if let Some((_, sums)) = invocations.last_mut() {
                for (sum, (metric, _)) in sums.iter_mut().zip(NAMES) {
                    *sum += doc[metric]
                        .as_f64()
                        .unwrap_or_else(|| panic!("no {metric} in {doc}"));
                }
            }
        }
        invocations
            .into_iter()
            .map(|(_, sums)| {
                let counts: serde_json::Map<String, Value> = NAMES
                    .iter()
                    .zip(sums)
                    .map(|((_, name), n)| ((*name).to_owned(), Value::from(n as u64)))
                    .collect();
                Value::Object(counts)
            })
            .collect()
    }

    /// [`Lambda::counts`] of the last invocation.
    pub fn last_counts(&self) -> Value {
        self.counts()
            .pop()
            .unwrap_or_else(|| panic!("no metrics document yet; log:\n{}", self.log()))
    }

    /// The metric `name` summed over every metrics document so far (0 if none has it).
    pub fn metric_total(&self, name: &str) -> f64 {
        self.metrics()
            .iter()
            .filter_map(|doc| doc[name].as_f64())
            .sum()
    }

    /// The function's log so far.
    pub fn log(&self) -> String {
        self.function.log_text()
    }

    /// Waits for the function to exit by itself (a failed cold start).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.function.wait_exit(timeout)
    }
}
