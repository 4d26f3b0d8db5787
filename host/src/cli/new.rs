//! `host new`: a plugin project of its own, outside this workspace, that builds with one
//! command and runs its own tests: a crate on `guest-sdk` with a sample transform, a
//! native unit test, golden cases for `host test`, its toolchain (with the
//! `wasm32-wasip2` target) and a README with the authoring loop.

use std::path::PathBuf;

use anyhow::Context as _;

use super::NewArgs;

/// The toolchain this host and its SDK are built with (the generated project's too).
const TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");

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
    let sdk = sdk_dependency(args)?;
    let crate_name = args.name.replace('-', "_");
    let files: [(&str, String); 7] = [
        ("Cargo.toml", cargo_toml(&args.name, &sdk)),
        ("rust-toolchain.toml", toolchain()),
        (".gitignore", "/target\n".into()),
        ("src/lib.rs", LIB_RS.replace("{name}", &args.name)),
        ("tests/cases/sample.json", SAMPLE_CASE.into()),
        ("tests/cases/bad-input.json", BAD_INPUT_CASE.into()),
        (
            "README.md",
            README
                .replace("{name}", &args.name)
                .replace("{crate}", &crate_name),
        ),
    ];
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "created {} in {}\n  build:  cargo build --release --target wasm32-wasip2\n  test:   cargo test && host test --plugin target/wasm32-wasip2/release/{crate_name}.wasm --cases tests/cases",
        args.name,
        dir.display()
    );
    Ok(())
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
        "message": "invalid JSON payload: expected ident at line 1 column 2"
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
