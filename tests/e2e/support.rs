//! Shared helpers: plugin paths, running the binary (`host run` through [`HostRun`]),
//! reading its files and its summaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Path of a built example plugin; panics with the fix when it was not built.
pub fn plugin(name: &str) -> PathBuf {
    built("target/wasm32-wasip2/plugin", name)
}

/// Path of a built Python example plugin (`plugins-python/NAME`).
pub fn python_plugin(name: &str) -> PathBuf {
    built("target/python", name)
}

/// A JavaScript example plugin as `./dev plugins` builds it (`plugins-js/NAME`).
pub fn js_plugin(name: &str) -> PathBuf {
    built("target/js", name)
}

/// A precompiled cache the tests share, for the big Python and JavaScript components
/// that several tests run without testing how they compile: each is compiled once per
/// suite instead of once per test. Entries are keyed by the module's sha256 and the
/// engine's settings and written by rename, so tests running at once can share it.
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-cache")
}

fn built(dir: &str, name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir)
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `./dev plugins` (./dev test does) first",
        path.display()
    );
    path
}

/// The path as text, for command lines and settings; panics naming it when it is not UTF-8.
pub fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("{} is not valid UTF-8", p.display()))
}

/// The JSON string at `v`, which the test relies on; panics naming `what` and showing
/// the value when it is missing or not a string.
pub fn text<'a>(v: &'a serde_json::Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected {what} to be a JSON string, got {v}"))
}

/// A scratch directory with helpers to write inputs and read results.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

/// What one run of `host` left behind.
pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The count `name` of the run's summary, e.g. `count("failed")`: from the
    /// `summary:` line on stderr, or, for `--summary json`, from the JSON summary.
    pub fn count(&self, name: &str) -> u64 {
        let Some(line) = self.stderr.lines().find(|l| l.starts_with("summary:")) else {
            let summary = self.summary();
            return summary[name]
                .as_u64()
                .unwrap_or_else(|| panic!("no {name} in the summary {summary}"));
        };
        let prefix = format!("{name}=");
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {line}"))
    }

    /// The JSON summary (`--summary json`) the run wrote on stdout.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "no summary line in stderr, and the summary on stdout is not JSON ({e}): {}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts in == transformed + dropped + failed and returns the four counts.
    pub fn balanced(&self) -> [u64; 4] {
        let counts = [
            self.count("in"),
            self.count("transformed"),
            self.count("dropped"),
            self.count("failed"),
        ];
        assert_eq!(
            counts[0],
            counts[1] + counts[2] + counts[3],
            "unbalanced: {}",
            self.stderr
        );
        counts
    }

    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "host failed: {}\nstderr:\n{}",
            self.status,
            self.stderr
        );
        self
    }

    pub fn assert_error(&self, needle: &str) -> &Self {
        assert!(
            !self.status.success(),
            "host should have failed; stderr:\n{}",
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} in stderr:\n{}",
            self.stderr
        );
        self
    }
}

/// `host run`, flag by flag: [`Scratch::run`] names the plugin, each method adds a flag
/// (in any order: the command line does not mind), [`HostRun::go`] runs it, as often as
/// wanted. The DLQ is the scratch directory's `dlq.jsonl` unless [`HostRun::dlq`] names
/// another.
#[derive(Clone)]
pub struct HostRun<'a> {
    scratch: &'a Scratch,
    args: Vec<String>,
    dlq: String,
    env: Vec<(&'static str, String)>,
    stdin: Option<String>,
}

impl HostRun<'_> {
    /// One more `--plugin` (an example's name, or a path): a chain, in the order named.
    pub fn plugin(self, name_or_path: &str) -> Self {
        self.flag("--plugin", &plugin_location(name_or_path))
    }

    /// `--input PATH`.
    pub fn input(self, path: &Path) -> Self {
        let path = path_str(path).to_owned();
        self.flag("--input", &path)
    }

    /// `--input -`, fed `text` on stdin.
    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.to_owned());
        self.flag("--input", "-")
    }

    /// `--format FORMAT` (`lines`, `csv`, `kinesis-event`, ...).
    pub fn format(self, format: &str) -> Self {
        self.flag("--format", format)
    }

    /// `--config KEY=VALUE`, for the plugin.
    pub fn config(self, key_value: &str) -> Self {
        self.flag("--config", key_value)
    }

    /// `--emit payload|record`.
    pub fn emit(self, what: &str) -> Self {
        self.flag("--emit", what)
    }

    /// `--output PATH` (relative: to the scratch directory, where the host runs).
    pub fn output(self, path: &Path) -> Self {
        let path = path_str(path).to_owned();
        self.flag("--output", &path)
    }

    /// `--sink NAME=URL`.
    pub fn sink(self, spec: &str) -> Self {
        self.flag("--sink", spec)
    }

    /// `--dlq SPEC` instead of the scratch directory's `dlq.jsonl`.
    pub fn dlq(mut self, spec: &str) -> Self {
        self.dlq = spec.to_owned();
        self
    }

    /// `--dedup STORE`.
    pub fn dedup(self, store: &str) -> Self {
        self.flag("--dedup", store)
    }

    /// `--cache-dir PATH`.
    pub fn cache_dir(self, path: &Path) -> Self {
        let path = path_str(path).to_owned();
        self.flag("--cache-dir", &path)
    }

    /// `--summary json`: the summary as JSON on stdout ([`Run::summary`]).
    pub fn summary_json(self) -> Self {
        self.flag("--summary", "json")
    }

    /// Any other flag and its value, e.g. `flag("--batch-size", "100")`.
    pub fn flag(mut self, name: &str, value: &str) -> Self {
        self.args.extend([name.to_owned(), value.to_owned()]);
        self
    }

    /// More arguments as they are, e.g. a test's extra flags.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// An environment variable for the host (`HOST_LOG`, say; the default is `warn`).
    pub fn env(mut self, name: &'static str, value: &str) -> Self {
        self.env.push((name, value.to_owned()));
        self
    }

    /// More environment, e.g. the emulator's (`moto.env()`).
    pub fn envs(mut self, env: Vec<(&'static str, String)>) -> Self {
        self.env.extend(env);
        self
    }

    /// Runs it: `host run --plugin ... [flags] --dlq ...`.
    pub fn go(&self) -> Run {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(["--dlq", self.dlq.as_str()]);
        self.scratch
            .host_with_env(&args, self.stdin.as_deref(), &self.env)
    }
}

/// A plugin as the tests name it: an example's name (`"enrich"`) is its built module; a
/// path or a URL (anything with a `/`) is taken as it is.
pub fn plugin_location(name_or_path: &str) -> String {
    if name_or_path.contains('/') {
        name_or_path.to_owned()
    } else {
        path_str(&plugin(name_or_path)).to_owned()
    }
}

/// The `error.kind` of each DLQ entry (JSON text, as a queue or an S3 object holds
/// them), sorted: a queue keeps no order.
pub fn dlq_kinds(entries: &[String]) -> Vec<String> {
    let mut kinds: Vec<String> = entries
        .iter()
        .map(|e| {
            let entry: serde_json::Value = serde_json::from_str(e).expect("DLQ JSON");
            text(&entry["error"]["kind"], "the DLQ entry's error.kind").to_owned()
        })
        .collect();
    kinds.sort();
    kinds
}

/// Asserts that `summary` (a JSON summary, a Lambda's answer, or its counts:
/// [`crate::lambda_harness::Lambda::counts`]) has each count `expected` names, e.g.
/// `json!({"in": 4, "failed": 2})`; the counts it does not name are not looked at.
pub fn assert_counts(summary: &serde_json::Value, expected: &serde_json::Value) {
    let expected = expected
        .as_object()
        .expect("the expected counts are a JSON object");
    let found: serde_json::Map<String, serde_json::Value> = expected
        .keys()
        .map(|name| (name.clone(), summary[name.as_str()].clone()))
        .collect();
    assert_eq!(&found, expected, "{summary}");
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write input");
        path
    }

    /// Runs `host` with `args` (paths relative to nothing; pass absolute ones), feeding `stdin`.
    pub fn host(&self, args: &[&str], stdin: Option<&str>) -> Run {
        self.host_with_env(args, stdin, &[])
    }

    /// As [`Scratch::host`], with extra environment (the emulator's endpoint, say).
    pub fn host_with_env(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, String)]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("HOST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        command.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn host");
        if let Some(text) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("wait host");
        Run {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// `host run` of `plugin` (an example's name, or a path), to be given its flags:
    /// [`HostRun`].
    pub fn run(&self, plugin: &str) -> HostRun<'_> {
        HostRun {
            scratch: self,
            args: vec!["run".to_owned()],
            dlq: path_str(&self.path("dlq.jsonl")).to_owned(),
            env: Vec::new(),
            stdin: None,
        }
        .plugin(plugin)
    }

    /// `host test --plugin WASM --cases CASES EXTRA...`.
    pub fn host_test(&self, wasm: &Path, cases: &Path, extra: &[&str]) -> Run {
        let mut args = vec![
            "test",
            "--plugin",
            path_str(wasm),
            "--cases",
            path_str(cases),
        ];
        args.extend_from_slice(extra);
        self.host(&args, None)
    }

    /// The JSON lines of a file in the scratch dir.
    pub fn json_lines(&self, name: &str) -> Vec<serde_json::Value> {
        let text =
            std::fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
        parse_lines(&text)
    }

    /// `(record.payload, error.kind)` of each entry of the DLQ file `dlq.jsonl`, in order.
    pub fn dead_letters(&self) -> Vec<(String, String)> {
        self.json_lines("dlq.jsonl")
            .iter()
            .map(|e| {
                let payload = text(&e["record"]["payload"], "the DLQ entry's record.payload");
                let kind = text(&e["error"]["kind"], "the DLQ entry's error.kind");
                (payload.to_owned(), kind.to_owned())
            })
            .collect()
    }
}

pub fn parse_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}
