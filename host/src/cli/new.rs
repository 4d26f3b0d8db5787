//! `host new`: a plugin project of its own, outside this workspace, that builds with one
//! command and runs its own tests: a crate on `guest-sdk` with a sample transform, a
//! native unit test, golden cases for `host test`, its toolchain (with the
//! `wasm32-wasip2` target) and a README with the authoring loop.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{Lang, NewArgs};

/// The toolchain this host and its SDK are built with (the generated project's too).
const TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");
const CARGO_CONFIG: &str = include_str!("../../../.cargo/config.toml");

/// The Python SDK and the contract, copied into a Python project.
const PYTHON_SDK: &str = include_str!("../../../guest-sdk-python/pipeline_plugin.py");
const WIT: &str = include_str!("../../../wit/plugin.wit");

/// What `record.json()` says of `not json`, in each SDK.
const RUST_JSON_ERROR: &str = "invalid JSON payload: expected ident at line 1 column 2";
const PYTHON_JSON_ERROR: &str = "invalid JSON payload: Expecting value: line 1 column 1 (char 0)";

/// Where `guest-sdk` was when this binary was built (the default `--sdk-path`).
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

/// `host new NAME`: writes the project, or refuses a bad name or a folder in use.
pub(super) fn new(args: &NewArgs) -> anyhow::Result<()> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(true)
    {
        anyhow::bail!(
            "--dir {}: already exists and is not empty; choose another folder",
            dir.display()
        );
    }
    let files = match args.lang {
        Lang::Rust => rust_files(args)?,
        Lang::Python => python_files(&args.name),
        Lang::Js | Lang::Ts => {
            let mut files = super::new_js::files(&args.name, args.lang == Lang::Ts)?;
            files.extend(cases(super::new_js::JSON_ERROR));
            files
        }
    };
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "sh") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", path.display()))?;
        }
    }
    let crate_name = args.name.replace('-', "_");
    let (build, test) = match args.lang {
        Lang::Rust => (
            "cargo build --release --target wasm32-wasip2".to_owned(),
            format!(
                "cargo test && host test --plugin target/wasm32-wasip2/release/{crate_name}.wasm --cases tests/cases"
            ),
        ),
        Lang::Python => (
            "./build.sh".to_owned(),
            format!(
                "./test.sh && host test --plugin {}.wasm --cases tests/cases",
                args.name
            ),
        ),
        Lang::Js | Lang::Ts => (
            "npm install && npm run build".to_owned(),
            format!(
                "npm test && host test --plugin {}.wasm --cases tests/cases",
                args.name
            ),
        ),
    };
    eprintln!(
        "created {} in {}\n  build:  {build}\n  test:   {test}",
        args.name,
        dir.display()
    );
    Ok(())
}

/// A Rust project: a crate on `guest-sdk`.
fn rust_files(args: &NewArgs) -> anyhow::Result<Vec<(&'static str, String)>> {
    let sdk = sdk_dependency(args)?;
    let crate_name = args.name.replace('-', "_");
    Ok(vec![
        ("Cargo.toml", cargo_toml(&args.name, &sdk)),
        ("rust-toolchain.toml", toolchain()),
        // The build settings the project's own plugins use (why: in the file).
        (".cargo/config.toml", CARGO_CONFIG.into()),
        (".gitignore", "/target\n".into()),
        ("src/lib.rs", LIB_RS.replace("{name}", &args.name)),
        ("tests/cases/sample.json", SAMPLE_CASE.into()),
        (
            "tests/cases/bad-input.json",
            BAD_INPUT_CASE.replace("{message}", RUST_JSON_ERROR),
        ),
        (
            "README.md",
            README
                .replace("{name}", &args.name)
                .replace("{crate}", &crate_name),
        ),
    ])
}

/// A Python project: `app.py` on the Python SDK, with the SDK and the contract copied in
/// (the project builds with componentize-py alone).
fn python_files(name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("app.py", APP_PY.replace("{name}", name)),
        ("test_app.py", TEST_APP_PY.into()),
        ("pipeline_plugin.py", PYTHON_SDK.into()),
        ("wit/plugin.wit", WIT.into()),
        ("build.sh", BUILD_SH.replace("{name}", name)),
        ("test.sh", TEST_SH.into()),
        (".gitignore", "/.bindings\n/*.wasm\n__pycache__/\n".into()),
        ("tests/cases/sample.json", SAMPLE_CASE.into()),
        (
            "tests/cases/bad-input.json",
            BAD_INPUT_CASE.replace("{message}", PYTHON_JSON_ERROR),
        ),
        ("README.md", PYTHON_README.replace("{name}", name)),
    ]
}

/// The golden cases every project starts with: `sample.json`, and `bad-input.json`
/// with what `record.json()` says of `not json` in the project's SDK.
fn cases(json_error: &str) -> [(&'static str, String); 2] {
    [
        ("tests/cases/sample.json", SAMPLE_CASE.into()),
        (
            "tests/cases/bad-input.json",
            BAD_INPUT_CASE.replace("{message}", json_error),
        ),
    ]
}

/// A crate name: lowercase letters, digits, `-` and `_`, starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    anyhow::ensure!(
        valid,
        "{name:?}: a plugin name is 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter"
    );
    Ok(())
}

/// The `guest-sdk` dependency line: `--sdk-git`, `--sdk-path`, or this checkout's.
fn sdk_dependency(args: &NewArgs) -> anyhow::Result<String> {
    if let Some(url) = &args.sdk_git {
        return Ok(format!("{{ git = {} }}", toml_string(url)));
    }
    let path = match &args.sdk_path {
        Some(path) => path.clone(),
        None => PathBuf::from(BUILT_SDK),
    };
    let path = std::fs::canonicalize(&path).with_context(|| {
        format!(
            "guest-sdk not found at {} (give --sdk-path DIR or --sdk-git URL)",
            path.display()
        )
    })?;
    anyhow::ensure!(
        path.join("Cargo.toml").is_file(),
        "--sdk-path {}: no Cargo.toml there",
        path.display()
    );
    Ok(format!(
        "{{ path = {} }}",
        toml_string(&path.to_string_lossy())
    ))
}

fn toml_string(text: &str) -> String {
    // A TOML basic string is a JSON string, escapes and all.
    serde_json::Value::String(text.to_owned()).to_string()
}

fn cargo_toml(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the WebAssembly component (--target wasm32-wasip2); rlib: native unit tests.
crate-type = ["cdylib", "rlib"]

[dependencies]
guest-sdk = {sdk}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# Small, fast components.
[profile.release]
lto = true
codegen-units = 1
opt-level = 3
strip = true
panic = "abort"

# A project of its own, even inside another workspace's folder.
[workspace]
"#
    )
}

/// The host's toolchain, with the component target.
fn toolchain() -> String {
    let channel = TOOLCHAIN
        .lines()
        .find(|l| l.trim_start().starts_with("channel"))
        .unwrap_or("channel = \"stable\"");
    format!(
        "# Plugins build for wasm32-wasip2 (a WebAssembly component); tests run natively.\n[toolchain]\n{channel}\ntargets = [\"wasm32-wasip2\"]\nprofile = \"minimal\"\n"
    )
}

const LIB_RS: &str = r##"//! {name}: a pipeline transform plugin.
//!
//! Keeps orders of at least `min_amount` (config, default 0) as `{id, amount_cents,
//! source}` keyed by id; drops smaller ones; a negative amount is bad data (the record
//! goes to the dead-letter queue with the message).

use guest_sdk::{DomainError, Error, Output, Record, config};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Order {
    id: String,
    amount: f64,
}

#[derive(Serialize)]
struct Kept<'a> {
    id: &'a str,
    amount_cents: i64,
    source: &'a str,
}

/// One record in: one output, none (dropped on purpose) or an error.
pub fn transform(record: Record) -> Result<Option<Output>, Error> {
    let order: Order = record.json()?;
    if order.amount < 0.0 {
        return Err(DomainError::new(format!("{}: negative amount", order.id)).into());
    }
    let min: f64 = config().parse_or("min_amount", 0.0)?;
    if order.amount < min {
        return Ok(None);
    }
    let kept = Kept {
        id: &order.id,
        amount_cents: (order.amount * 100.0).round() as i64,
        source: record.attribute("source").unwrap_or("unknown"),
    };
    Ok(Some(Output::json(&kept)?.with_key(order.id.as_bytes())))
}

guest_sdk::export_transform!(transform);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_an_order_in_cents() {
        let out = transform(Record::new(br#"{"id":"o1","amount":12.5}"#))
            .expect("a valid order")
            .expect("kept");
        let value: serde_json::Value = serde_json::from_slice(out.payload()).expect("JSON");
        assert_eq!(value["amount_cents"], 1250);
        assert_eq!(out.key(), Some(&b"o1"[..]));
    }

    #[test]
    fn a_negative_amount_is_bad_data() {
        let err = transform(Record::new(br#"{"id":"o2","amount":-1}"#)).expect_err("refused");
        assert_eq!(err.message(), "o2: negative amount");
    }
}
"##;

const SAMPLE_CASE: &str = r#"{
  "about": "orders of at least min_amount are kept in cents, smaller ones dropped, negative ones refused",
  "config": {
    "min_amount": "1"
  },
  "input": [
    { "id": "o1", "amount": 12.5 },
    { "id": "o2", "amount": -1 },
    { "id": "o3", "amount": 0.5 }
  ],
  "expect": {
    "outputs": [
      {
        "destination": null,
        "key": "o1",
        "payload": { "id": "o1", "amount_cents": 1250, "source": "file" }
      }
    ],
    "dead_letters": [
      {
        "payload": { "id": "o2", "amount": -1 },
        "kind": "domain",
        "message": "o2: negative amount"
      }
    ],
    "dropped": 1
  }
}
"#;

const BAD_INPUT_CASE: &str = r#"{
  "about": "a line that is not an order goes to the dead-letter queue",
  "lines": ["not json"],
  "expect": {
    "outputs": [],
    "dead_letters": [
      {
        "payload": "not json",
        "kind": "domain",
        "message": "{message}"
      }
    ],
    "dropped": 0
  }
}
"#;

const README: &str = r#"# {name}

A transform plugin for the pipeline host: a WebAssembly component built against the
host's `wit/plugin.wit` through `guest-sdk`.

```sh
cargo build --release --target wasm32-wasip2        # the component:
                                                     # target/wasm32-wasip2/release/{crate}.wasm
cargo test                                           # unit tests, natively
host test --plugin target/wasm32-wasip2/release/{crate}.wasm --cases tests/cases
host run --plugin target/wasm32-wasip2/release/{crate}.wasm --input orders.jsonl --dlq dlq.jsonl
host publish --plugin target/wasm32-wasip2/release/{crate}.wasm --to s3://BUCKET/plugins/{name}/
```

- `src/lib.rs`: the transform. Return an output, a list of outputs or `None` (dropped on
  purpose); `DomainError` sends the record to the dead-letter queue, `InfrastructureError`
  is retried with backoff.
- `tests/cases/*.json`: golden cases. Each holds an input (`input`: JSON records;
  `lines`: raw lines; `event`: an AWS event), optional `config`, and what the plugin makes
  of it (`expect`). `host test --update` writes `expect` from what the plugin does now;
  without it, a change prints a diff and fails.
"#;

const APP_PY: &str = r#""""{name}: a pipeline transform plugin.

Keeps orders of at least `min_amount` (config, default 0) as `{id, amount_cents, source}`
keyed by id; drops smaller ones; a negative amount is bad data (the record goes to the
dead-letter queue with the message).
"""

import math

import pipeline_plugin as pp


def transform(record):
    order = record.json()
    if not isinstance(order, dict) or not isinstance(order.get("id"), str):
        raise pp.DomainError("an order needs an `id`")
    amount = order.get("amount")
    if not isinstance(amount, (int, float)) or isinstance(amount, bool):
        raise pp.DomainError(f"{order['id']}: `amount` is not a number")
    if amount < 0:
        raise pp.DomainError(f"{order['id']}: negative amount")
    if amount < pp.config().parse_or("min_amount", 0.0):
        return None
    kept = {
        "id": order["id"],
        "amount_cents": math.floor(amount * 100 + 0.5),
        "source": record.attribute("source") or "unknown",
    }
    return pp.Output.json(kept).with_key(order["id"])


WitWorld = pp.plugin("{name}", "0.1.0", transform)
"#;

const TEST_APP_PY: &str = r#""""Unit tests of app.py, run natively by ./test.sh."""

import json
import unittest

import pipeline_plugin as pp
from app import transform


class TransformTest(unittest.TestCase):
    def test_keeps_an_order_in_cents(self):
        out = transform(pp.Record(b'{"id":"o1","amount":12.5}'))
        self.assertEqual(json.loads(out.payload)["amount_cents"], 1250)
        self.assertEqual(out.key, b"o1")

    def test_a_negative_amount_is_bad_data(self):
        with self.assertRaises(pp.DomainError) as caught:
            transform(pp.Record(b'{"id":"o2","amount":-1}'))
        self.assertEqual(str(caught.exception), "o2: negative amount")


if __name__ == "__main__":
    unittest.main()
"#;

const BUILD_SH: &str = r#"#!/bin/sh
# Builds {name}.wasm, a WebAssembly component, from app.py (needs componentize-py:
# pip install componentize-py==0.25.1).
set -eu
cd "$(dirname "$0")"
componentize-py -d wit -w transform componentize -p . app -o {name}.wasm
"#;

const TEST_SH: &str = r#"#!/bin/sh
# Unit tests, natively: the contract's Python bindings, then unittest.
set -eu
cd "$(dirname "$0")"
componentize-py -d wit -w transform bindings .bindings
PYTHONPATH=.bindings python3 -m unittest -v test_app
"#;

const PYTHON_README: &str = r#"# {name}

A transform plugin for the pipeline host, in Python: `app.py` on `pipeline_plugin.py`
(the host's Python SDK, copied in), built against `wit/plugin.wit` (the host's contract,
copied in) with componentize-py (`pip install componentize-py==0.25.1`).

```sh
./build.sh                                          # the component: {name}.wasm
./test.sh                                           # unit tests, natively
host test --plugin {name}.wasm --cases tests/cases
host run --plugin {name}.wasm --input orders.jsonl --dlq dlq.jsonl
host publish --plugin {name}.wasm --to s3://BUCKET/plugins/{name}/
```

- `app.py`: the transform. Return an `Output`, a list of outputs or `None` (dropped on
  purpose); raise `DomainError` to send the record to the dead-letter queue,
  `InfrastructureError` to have it retried. Any other exception is a bug: the host
  isolates the record and dead-letters it as a `trap`.
- `tests/cases/*.json`: golden cases. `host test --update` writes each case's `expect`
  from what the plugin does now; without it, a change prints a diff and fails.
- A Python component is about 18 MB and takes seconds to compile; the host keeps the
  compiled code in its cache (`--cache-dir`), so later starts take milliseconds.
"#;
