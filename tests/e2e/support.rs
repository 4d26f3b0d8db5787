//! Shared helpers: plugin paths, running the binary, reading its files.

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
    /// The numbers of the `summary:` line, e.g. `count("failed")`.
    pub fn count(&self, name: &str) -> u64 {
        let line = self
            .stderr
            .lines()
            .find(|l| l.starts_with("summary:"))
            .unwrap_or_else(|| panic!("no summary line in stderr:\n{}", self.stderr));
        let prefix = format!("{name}=");
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {line}"))
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

    /// Runs `host run --plugin <name> --input <input> --dlq dlq.jsonl <extra...>`.
    pub fn run_plugin(&self, name: &str, input: &Path, extra: &[&str]) -> Run {
        self.run_plugin_with_env(name, input, extra, &[])
    }

    /// As [`Scratch::run_plugin`], with extra environment (`HOST_LOG=debug`, say).
    pub fn run_plugin_with_env(
        &self,
        name: &str,
        input: &Path,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Run {
        let plugin = plugin(name);
        let dlq = self.path("dlq.jsonl");
        let mut args = vec![
            "run",
            "--plugin",
            path_str(&plugin),
            "--input",
            path_str(input),
            "--dlq",
            path_str(&dlq),
        ];
        args.extend_from_slice(extra);
        self.host_with_env(&args, None, env)
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
}

pub fn parse_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}
