//! A plugin written in Python (`plugins-python/enrich`, on `guest-sdk-python`, built with
//! componentize-py) makes byte for byte the outputs of the Rust `enrich`, and fails the
//! same records with the same kinds.

use std::path::{Path, PathBuf};

use crate::support::{Scratch, path_str, plugin, text};

fn python_plugin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/python")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `./dev plugins` (./dev test does) first",
        path.display()
    );
    path
}

/// `host run` of `wasm` over `input`: the outputs' bytes, and each DLQ entry's line and
/// failure kind.
fn run(s: &Scratch, wasm: &Path, input: &Path, tag: &str) -> (Vec<u8>, Vec<(String, String)>) {
    let output = s.path(&format!("{tag}.out"));
    let dlq = s.path(&format!("{tag}.dlq"));
    let cache = s.path("cache");
    let run = s.host(
        &[
            "run",
            "--plugin",
            path_str(wasm),
            "--input",
            path_str(input),
            "--config",
            "currency=USD",
            "--emit",
            "payload",
            "--output",
            path_str(&output),
            "--dlq",
            path_str(&dlq),
            "--cache-dir",
            path_str(&cache),
        ],
        None,
    );
    assert!(run.status.success(), "{tag}: {}", run.stderr);
    let kinds = s
        .json_lines(&format!("{tag}.dlq"))
        .iter()
        .map(|e| {
            (
                text(&e["record"]["attributes"]["line"], "line").to_owned(),
                text(&e["error"]["kind"], "kind").to_owned(),
            )
        })
        .collect();
    (std::fs::read(&output).expect("outputs"), kinds)
}

#[test]
fn the_python_enrich_matches_the_rust_enrich_byte_for_byte() {
    let s = Scratch::new();
    let mut input = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events.jsonl"),
    )
    .expect("the sample events");
    // Beyond the sample: rounding halves both ways, text beyond ASCII, a date cut inside
    // a character, a short time, fields of the wrong type, JSON that is not an object, an
    // amount too large for the cents to fit.
    for line in [
        r#"{"id":"h1","user":"zoë","action":"buy","amount":0.125,"ts":"2026-11-24T13:00:00Z"}"#,
        r#"{"id":"h2","user":"ü","action":"refund","amount":-0.125,"ts":"2026-11-24T13:00:00Z"}"#,
        r#"{"id":"h3","user":"u","action":"buy","amount":1,"ts":"2026-11-2é"}"#,
        r#"{"id":"h4","user":"u","action":"buy","amount":1,"ts":"2026"}"#,
        r#"{"id":5,"user":"u","action":"buy","amount":1,"ts":"2026-11-24T13:00:00Z"}"#,
        r#"{"id":"h6","user":"u","action":"buy","amount":"1","ts":"2026-11-24T13:00:00Z"}"#,
        r#"[1,2,3]"#,
        r#"{"id":"h8","user":"u","action":"buy","amount":1e300,"ts":"2026-11-24T13:00:00Z","x":{"y":[1]}}"#,
        r#"{"id":"h9","user":"\"quoted\"","action":"b\\uy","amount":2.675,"ts":"2026-11-24"}"#,
    ] {
        input.push_str(line);
        input.push('\n');
    }
    let input = s.write("in.jsonl", &input);
    let (rust, rust_dlq) = run(&s, &plugin("enrich"), &input, "rust");
    let (python, python_dlq) = run(&s, &python_plugin("enrich"), &input, "python");
    assert!(!rust.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&python),
        String::from_utf8_lossy(&rust),
        "the Python enrich's outputs differ from the Rust one's"
    );
    assert_eq!(
        python_dlq, rust_dlq,
        "the same records fail, with the same kinds"
    );
    assert_eq!(rust_dlq.len(), 7, "{rust_dlq:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_version_is_published_and_swapped_in_for_the_rust_one() {
    use crate::emulator::Moto;
    use crate::lambda_harness::Lambda;

    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("plugins").await;
    let out = aws.queue("out").await;
    aws.queue("dlq").await;
    let s = Scratch::new();
    let publish = |wasm: &Path, version: &str| {
        let run = s.host_with_env(
            &[
                "publish",
                "--plugin",
                path_str(wasm),
                "--to",
                "s3://plugins/plugins/enrich/",
                "--version",
                version,
            ],
            None,
            &moto.env(),
        );
        assert!(run.status.success(), "publish {version}: {}", run.stderr);
    };
    publish(&plugin("enrich"), "1.0.0");
    let mut env = moto.env();
    env.extend([
        ("PIPELINE_PLUGIN", "s3://plugins/plugins/enrich/".to_owned()),
        ("PIPELINE_PLUGIN_CHECK_SECONDS", "0".to_owned()),
        ("PIPELINE_SINKS", "default=sqs://out".to_owned()),
        ("PIPELINE_DLQ", "sqs://dlq".to_owned()),
    ]);
    let lambda = Lambda::start(&env, s.dir.path());
    let event = serde_json::json!([
        {"id": "p1", "user": "zoë", "action": "buy", "amount": 0.125, "ts": "2026-11-26T12:00:00Z"},
        {"id": "p2", "user": "u"}
    ]);
    let rust = lambda.invoke(event.clone());
    assert_eq!(rust["plugin"], "enrich@1.0.0", "{rust}");
    let rust_out = aws.drain_queue(&out).await;

    // The same logic in another language is just the next version.
    publish(&python_plugin("enrich"), "2.0.0");
    let python = lambda.invoke(event);
    assert_eq!(
        python["plugin"],
        "enrich@2.0.0",
        "{python}\n{}",
        lambda.log()
    );
    for answer in [&rust, &python] {
        assert_eq!(
            (&answer["in"], &answer["transformed"], &answer["failed"]),
            (&2.into(), &1.into(), &1.into()),
            "{answer}"
        );
    }
    assert_eq!(aws.drain_queue(&out).await, rust_out);
}
