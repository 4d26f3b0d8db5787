//! Plugins written in JavaScript (`plugins-js/enrich`, on `guest-sdk-js`, built with
//! componentize-js): the same outputs as the Rust `enrich`, byte for byte, where
//! JavaScript's numbers would differ (halves, integers past 2^53, an i64 saturated); an
//! uncaught exception isolated like a panic; the JS version swapped in for the Rust one;
//! the SDK's and the plugin's own tests on Node.js.

use std::path::Path;
use std::process::Command;

use crate::support::{Scratch, js_plugin, path_str, plugin, text};

/// `host run` of `wasm` over `input`: the outputs' bytes, and each DLQ entry's line and
/// failure kind.
fn run(s: &Scratch, wasm: &Path, input: &Path, tag: &str) -> (Vec<u8>, Vec<(String, String)>) {
    let output = s.path(&format!("{tag}.out"));
    let dlq = s.path(&format!("{tag}.dlq"));
    let cache = s.path("cache");
    let run = s
        .run(path_str(wasm))
        .input(input)
        .config("currency=USD")
        .emit("payload")
        .output(&output)
        .dlq(path_str(&dlq))
        .cache_dir(&cache)
        .go();
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
fn the_javascript_enrich_matches_the_rust_enrich_byte_for_byte() {
    let s = Scratch::new();
    let mut input = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events.jsonl"),
    )
    .expect("the sample events");
    // The Python enrich's edge cases, and JavaScript's own: halves both ways (its
    // `Math.round` rounds them up), cents past 2^53 and past an i64 (its numbers print
    // such integers rounded), numbers no double holds, a lone surrogate (JSON.parse takes
    // it), keys JavaScript orders first (integer-like), a byte order mark.
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
        r#"{"id":"h10","user":"u","action":"buy","amount":45035996273704.97,"ts":"2026-11-24"}"#,
        r#"{"id":"h11","user":"u","action":"buy","amount":1e307,"ts":"2026-11-24"}"#,
        r#"{"id":"h12","user":"u","action":"buy","amount":1e400,"ts":"2026-11-24"}"#,
        r#"{"id":"h14","user":"u","action":"buy","amount":1,"ts":"\ud800-11-24T00:00:00Z"}"#,
        r#"{"id":"h15","user":"u","action":"buy","amount":-2.5,"ts":"2026-11-24"}"#,
        r#"{"id":"h16","user":"u","action":"buy","amount":92233720368547758.07,"ts":"2026-11-24"}"#,
        r#"{"id":"h17","user":"u","action":"buy","amount":-1e19,"ts":"2026-11-24"}"#,
        r#"{"id":"h18","user":"u\u0001\u007f\u2028","action":"buy","amount":0.005,"ts":"2026-11-24","1":"x"}"#,
        "\u{feff}{\"id\":\"h19\",\"user\":\"u\",\"action\":\"buy\",\"amount\":1,\"ts\":\"2026-11-24\"}",
    ] {
        input.push_str(line);
        input.push('\n');
    }
    let input = s.write("in.jsonl", &input);
    let (rust, rust_dlq) = run(&s, &plugin("enrich"), &input, "rust");
    let (js, js_dlq) = run(&s, &js_plugin("enrich"), &input, "js");
    assert!(!rust.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&js),
        String::from_utf8_lossy(&rust),
        "the JavaScript enrich's outputs differ from the Rust one's"
    );
    assert_eq!(
        js_dlq, rust_dlq,
        "the same records fail, with the same kinds"
    );
    assert_eq!(rust_dlq.len(), 10, "{rust_dlq:?}");
    // The cases that tell: an i64 saturated, written exactly.
    let written = String::from_utf8_lossy(&rust);
    assert!(
        written.contains(r#""amount_cents":9223372036854775807"#),
        "{written}"
    );
    assert!(written.contains(r#""amount_cents":-250"#), "{written}");
}

/// A JavaScript plugin's bug (an exception it does not catch) traps its instance, as a
/// Rust panic does: the host dead-letters that record alone, as a `trap`, and carries on
/// with the rest of the batch on a fresh instance.
#[test]
fn an_uncaught_exception_is_isolated_like_a_panic() {
    let s = Scratch::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let project = s.path("buggy");
    std::fs::create_dir_all(&project).expect("project");
    std::os::unix::fs::symlink(root.join("guest-sdk-js"), project.join("sdk")).expect("sdk");
    std::fs::write(
        project.join("app.js"),
        r#"import { Output, plugin } from './sdk/pipeline-plugin.js';
export default plugin({
  name: 'buggy',
  version: '0.1.0',
  transform(record) {
    const text = record.text();
    if (text === 'bug') return null.field;
    return new Output(text.toUpperCase());
  },
});
"#,
    )
    .expect("app.js");
    let wasm = s.path("buggy.wasm");
    let build = Command::new("node")
        .arg(root.join("guest-sdk-js/build.mjs"))
        .arg(&project)
        .args(["--out", path_str(&wasm), "--wit"])
        .arg(root.join("wit"))
        .output()
        .expect("node");
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let input = s.write("in.txt", "a\nbug\nc\n");
    let run = s
        .run(path_str(&wasm))
        .input(&input)
        .format("lines")
        .emit("payload")
        .output(&s.path("out.txt"))
        .cache_dir(&s.path("cache"))
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [3, 2, 0, 1], "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(s.path("out.txt")).expect("out"),
        "A\nC\n"
    );
    let dead = s.json_lines("dlq.jsonl");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["error"]["kind"], "trap", "{}", dead[0]);
    assert_eq!(dead[0]["record"]["payload"], "bug");
}

/// The SDK's own tests and the JavaScript enrich's unit tests, on Node.js.
#[test]
fn the_javascript_sdk_and_plugin_unit_tests_pass_on_node() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["guest-sdk-js", "plugins-js/enrich"] {
        let out = Command::new("node")
            .args(["--test", "test/"])
            .current_dir(root.join(dir))
            .output()
            .expect("node");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{dir}: {report}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            report.contains("# fail 0") && !report.contains("# pass 0"),
            "{dir}: {report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_version_is_published_and_swapped_in_for_the_rust_one() {
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
    let lambda = Lambda::builder(&moto)
        .plugin("s3://plugins/plugins/enrich/")
        .env("PIPELINE_PLUGIN_CHECK_SECONDS", "0")
        // Compiling the JavaScript engine's 8.8 MiB of code takes ~540 MiB: a 512 MB
        // function refuses the version (and keeps the Rust one) unless it is
        // precompiled and signed; this one has room.
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .sinks("default=sqs://out")
        .dlq("sqs://dlq")
        .start(s.dir.path());
    let event = serde_json::json!([
        {"id": "p1", "user": "zoë", "action": "buy", "amount": 0.125, "ts": "2026-11-26T12:00:00Z"},
        {"id": "p2", "user": "u"}
    ]);
    let rust = lambda.invoke(event.clone());
    assert_eq!(rust["plugin"], "enrich@1.0.0", "{rust}");
    let rust_out = aws.drain_queue(&out).await;

    publish(&js_plugin("enrich"), "2.0.0");
    let js = lambda.invoke(event);
    assert!(
        !lambda.log().contains("new plugin version refused"),
        "{}",
        lambda.log()
    );
    assert_eq!(js["plugin"], "enrich@2.0.0", "{js}\n{}", lambda.log());
    for answer in [&rust, &js] {
        assert_eq!(
            (&answer["in"], &answer["transformed"], &answer["failed"]),
            (&2.into(), &1.into(), &1.into()),
            "{answer}"
        );
    }
    assert_eq!(aws.drain_queue(&out).await, rust_out);
}
