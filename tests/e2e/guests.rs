//! What the tests of plugins in other languages share: `enrich` written again (in Python,
//! in JavaScript) must make the Rust `enrich`'s outputs byte for byte over the sample
//! events and these edge cases, fail the same records with the same kinds, and swap in
//! for the Rust one as its next version.

use std::path::Path;

use crate::support::{Scratch, path_str, plugin, text};

/// Beyond the sample events: rounding halves both ways, text beyond ASCII, a date cut
/// inside a character, a short time, fields of the wrong type, JSON that is not an
/// object, an amount too large for the cents to fit, odd cents past 2^52, cents past what
/// an i64 holds, numbers no f64 holds, a time that is not text (a lone surrogate).
pub const EDGE_CASES: &[&str] = &[
    r#"{"id":"h1","user":"zoë","action":"buy","amount":0.125,"ts":"2026-11-24T13:00:00Z"}"#,
    r#"{"id":"h2","user":"ü","action":"refund","amount":-0.125,"ts":"2026-11-24T13:00:00Z"}"#,
    r#"{"id":"h3","user":"u","action":"buy","amount":1,"ts":"2026-11-2é"}"#,
    r#"{"id":"h4","user":"u","action":"buy","amount":1,"ts":"2026"}"#,
    r#"{"id":5,"user":"u","action":"buy","amount":1,"ts":"2026-11-24T13:00:00Z"}"#,
    r#"{"id":"h6","user":"u","action":"buy","amount":"1","ts":"2026-11-24T13:00:00Z"}"#,
    r#"[1,2,3]"#,
    r#"{"id":"h8","user":"u","action":"buy","amount":1e300,"ts":"2026-11-24T13:00:00Z","x":{"y":[1]}}"#,
    r#"{"id":"h9","user":"\"quoted\"","action":"b\\uy","amount":2.675,"ts":"2026-11-24"}"#,
    // Odd cents past 2^52 (no halves there), and cents past what an i64 holds.
    r#"{"id":"h10","user":"u","action":"buy","amount":45035996273704.97,"ts":"2026-11-24"}"#,
    r#"{"id":"h11","user":"u","action":"buy","amount":1e307,"ts":"2026-11-24"}"#,
    // Numbers no f64 holds, and a time that is not text (a lone surrogate).
    r#"{"id":"h12","user":"u","action":"buy","amount":1e400,"ts":"2026-11-24"}"#,
    r#"{"id":"h13","user":"u","action":"buy","amount":10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000,"ts":"2026-11-24"}"#,
    r#"{"id":"h14","user":"u","action":"buy","amount":1,"ts":"\ud800-11-24T00:00:00Z"}"#,
];

/// `host run` of `wasm` over `input`: the outputs' bytes, and each DLQ entry's line and
/// failure kind.
pub fn run(s: &Scratch, wasm: &Path, input: &Path, tag: &str) -> (Vec<u8>, Vec<(String, String)>) {
    let output = s.path(&format!("{tag}.out"));
    let dlq = s.path(&format!("{tag}.dlq"));
    let cache = crate::support::shared_cache();
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

/// The sample events and [`EDGE_CASES`] (and `more`) through the Rust `enrich` and
/// `other`: the same output bytes, the same records failed with the same kinds.
pub fn assert_same_as_the_rust_enrich(other: &Path, language: &str, more: &[&str]) {
    let s = Scratch::new();
    let mut input = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events.jsonl"),
    )
    .expect("the sample events");
    for line in EDGE_CASES.iter().chain(more) {
        input.push_str(line);
        input.push('\n');
    }
    let input = s.write("in.jsonl", &input);
    let (rust, rust_dlq) = run(&s, &plugin("enrich"), &input, "rust");
    let (theirs, their_dlq) = run(&s, other, &input, "other");
    assert!(!rust.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&theirs),
        String::from_utf8_lossy(&rust),
        "the {language} enrich's outputs differ from the Rust one's"
    );
    assert_eq!(
        their_dlq, rust_dlq,
        "the same records fail, with the same kinds"
    );
}

/// The Rust `enrich` published and serving a Lambda host, then `next` published as its
/// next version: the host swaps it in, and it answers as the Rust one did.
pub async fn swapped_in_for_the_rust_enrich(next: &Path) {
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
        // Room to compile the next version in place: the JavaScript engine's 8.8 MiB of
        // code takes ~540 MiB, more than a 512 MB function has (it would refuse the
        // version and keep the Rust one, unless precompiled and signed).
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

    // The same logic in another language is just the next version.
    publish(next, "2.0.0");
    let theirs = lambda.invoke(event);
    assert_eq!(
        theirs["plugin"],
        "enrich@2.0.0",
        "{theirs}\n{}",
        lambda.log()
    );
    for answer in [&rust, &theirs] {
        assert_eq!(
            (&answer["in"], &answer["transformed"], &answer["failed"]),
            (&2.into(), &1.into(), &1.into()),
            "{answer}"
        );
    }
    assert_eq!(aws.drain_queue(&out).await, rust_out);
}
