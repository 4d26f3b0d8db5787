//! A small server speaking the documented Lambda Runtime API (next invocation,
//! response, error, init error), so tests run the real `host` binary as a custom
//! runtime exactly as Lambda would.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tiny_http::{Header, Response, Server};

/// What the runtime answered for one invocation (or for its start-up).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Response(Value),
    Error(Value),
    InitError(Value),
}

pub struct RuntimeApi {
    server: Arc<Server>,
    queue: Arc<Mutex<Queue>>,
    answers: Receiver<Answer>,
    pub address: String,
}

/// Events not yet handed out, and `next` requests waiting for one (as Lambda holds
/// them open between invocations).
#[derive(Default)]
struct Queue {
    events: VecDeque<Value>,
    parked: Vec<tiny_http::Request>,
    next_id: u64,
    /// The function's timeout: each invocation's deadline is this far from its start.
    timeout: Option<Duration>,
}

impl RuntimeApi {
    pub fn start(events: Vec<Value>) -> Self {
        let server = Arc::new(Server::http("127.0.0.1:0").expect("runtime API server"));
        let address = server
            .server_addr()
            .to_ip()
            .expect("ip address")
            .to_string();
        let (send, answers) = channel();
        let serving = server.clone();
        let queue = Arc::new(Mutex::new(Queue {
            events: events.into(),
            ..Queue::default()
        }));
        let shared = queue.clone();
        std::thread::spawn(move || serve(&serving, &shared, &send));
        Self {
            server,
            queue,
            answers,
            address,
        }
    }

    /// Gives the next invocations this timeout (the default is 300 s).
    pub fn set_timeout(&self, timeout: Duration) {
        self.queue.lock().expect("queue").timeout = Some(timeout);
    }

    /// Hands `event` to the function: now if it is waiting, else on its next request.
    pub fn push(&self, event: Value) {
        let mut queue = self.queue.lock().expect("queue");
        match queue.parked.pop() {
            Some(request) => {
                queue.next_id += 1;
                invoke(request, &event, queue.next_id, queue.timeout);
            }
            None => queue.events.push_back(event),
        }
    }

    /// Waits for the next answer.
    pub fn next_answer(&self, timeout: Duration) -> Answer {
        self.answers
            .recv_timeout(timeout)
            .expect("the runtime did not answer in time")
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn serve(server: &Server, queue: &Mutex<Queue>, answers: &Sender<Answer>) {
    for mut request in server.incoming_requests() {
        let url = request.url().to_owned();
        let mut body = String::new();
        let _ = std::io::Read::read_to_string(request.as_reader(), &mut body);
        let parsed = serde_json::from_str(&body).unwrap_or(Value::String(body));
        let accepted = || Response::from_string("").with_status_code(202);
        if url == "/2018-06-01/runtime/invocation/next" {
            let mut queue = queue.lock().expect("queue");
            match queue.events.pop_front() {
                Some(event) => {
                    queue.next_id += 1;
                    invoke(request, &event, queue.next_id, queue.timeout);
                }
                // No event yet: hold the request open, as Lambda does between invocations.
                None => queue.parked.push(request),
            }
        } else if url.ends_with("/response") {
            let _ = answers.send(Answer::Response(parsed));
            let _ = request.respond(accepted());
        } else if url == "/2018-06-01/runtime/init/error" {
            let _ = answers.send(Answer::InitError(parsed));
            let _ = request.respond(accepted());
        } else if url.ends_with("/error") {
            let _ = answers.send(Answer::Error(parsed));
            let _ = request.respond(accepted());
        } else {
            let _ = request.respond(Response::from_string("not found").with_status_code(404));
        }
    }
}

/// Answers a `next` request with an invocation, headers as the Runtime API documents.
fn invoke(request: tiny_http::Request, event: &Value, id: u64, timeout: Option<Duration>) {
    let header =
        |k: &str, v: String| Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("header");
    let deadline = std::time::SystemTime::now() + timeout.unwrap_or(Duration::from_secs(300));
    let deadline_ms = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let response = Response::from_string(event.to_string())
        .with_header(header(
            "Lambda-Runtime-Aws-Request-Id",
            format!("request-{id}"),
        ))
        .with_header(header(
            "Lambda-Runtime-Deadline-Ms",
            deadline_ms.to_string(),
        ))
        .with_header(header(
            "Lambda-Runtime-Invoked-Function-Arn",
            "arn:aws:lambda:us-east-1:123456789012:function:pipeline-host".into(),
        ))
        .with_header(header(
            "Lambda-Runtime-Trace-Id",
            "Root=1-00000000-000000000000000000000000".into(),
        ))
        .with_header(header("Content-Type", "application/json".into()));
    let _ = request.respond(response);
}

/// The `host` binary started as Lambda starts a `bootstrap`: no arguments, the runtime
/// API's address and the function's environment. Killed (by PID) when dropped.
pub struct Function {
    child: Child,
    pub log: std::path::PathBuf,
}

impl Function {
    pub fn start(api: &RuntimeApi, env: &[(&str, String)], dir: &Path) -> Self {
        let log = dir.join("function.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        // Metrics (EMF) are written to stdout, as Lambda expects them.
        let stdout = std::fs::File::create(dir.join("function.out")).expect("stdout file");
        let child = Command::new(env!("CARGO_BIN_EXE_host"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", &api.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", "pipeline-host")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/pipeline-host")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("HOST_LOG", "info")
            // Each function gets its own precompiled cache, as each Lambda sandbox has its /tmp.
            .env("PIPELINE_CACHE_DIR", dir.join("plugin-cache"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start host as a Lambda runtime");
        Self { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the function wrote to stdout (its metrics documents).
    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(self.log.with_file_name("function.out")).unwrap_or_default()
    }

    /// Waits for the process to exit by itself (a failed cold start).
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "the function did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
