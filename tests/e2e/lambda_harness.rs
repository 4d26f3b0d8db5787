//! One Lambda function under test: a Runtime API server and the `host` binary started
//! against it, driven one invocation at a time. Built on [`RuntimeApi`] and [`Function`],
//! which stay available for anything this does not cover.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;

use crate::runtime_api::{Answer, Function, RuntimeApi};

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

impl Lambda {
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

    /// The function's log so far.
    pub fn log(&self) -> String {
        self.function.log_text()
    }

    /// Waits for the function to exit by itself (a failed cold start).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.function.wait_exit(timeout)
    }
}

/// Starts a function, sends it one event and stops it: the response, and the function's
/// log as it was when the response came.
pub fn invoke(env: &[(&str, String)], dir: &Path, event: Value) -> (Value, String) {
    let lambda = Lambda::start(env, dir);
    let response = lambda.invoke(event);
    (response, lambda.log())
}
