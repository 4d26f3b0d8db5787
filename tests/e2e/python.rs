//! A plugin written in Python (`plugins-python/enrich`, on `guest-sdk-python`, built with
//! componentize-py) makes byte for byte the outputs of the Rust `enrich`, and fails the
//! same records with the same kinds.

use std::path::Path;

use crate::support::{Scratch, path_str, plugin, python_plugin, text};

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
        // Odd cents past 2^52 (no halves there), and cents past what an i64 holds.
        r#"{"id":"h10","user":"u","action":"buy","amount":45035996273704.97,"ts":"2026-11-24"}"#,
        r#"{"id":"h11","user":"u","action":"buy","amount":1e307,"ts":"2026-11-24"}"#,
        // Numbers no f64 holds, and a time that is not text (a lone surrogate).
        r#"{"id":"h12","user":"u","action":"buy","amount":1e400,"ts":"2026-11-24"}"#,
        r#"{"id":"h13","user":"u","action":"buy","amount":10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000,"ts":"2026-11-24"}"#,
        r#"{"id":"h14","user":"u","action":"buy","amount":1,"ts":"\ud800-11-24T00:00:00Z"}"#,
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
    assert_eq!(rust_dlq.len(), 10, "{rust_dlq:?}");
}

/// `host run` of the Python `enrich` over 1,000 sample records with a cache that has never
/// seen it, in a Lambda function of `memory_mib`: the run, and its JSON summary when it
/// succeeded.
fn fresh_start_in(s: &Scratch, memory_mib: &str) -> (crate::support::Run, serde_json::Value) {
    let sample = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events.jsonl"),
    )
    .expect("the sample events");
    let lines: Vec<&str> = sample.lines().collect();
    let records: String = (0..1000)
        .map(|i| format!("{}\n", lines[i % lines.len()]))
        .collect();
    let input = s.write(&format!("in-{memory_mib}.jsonl"), &records);
    let python = python_plugin("enrich");
    let (out, dlq, cache) = (
        s.path(&format!("{memory_mib}.out")),
        s.path(&format!("{memory_mib}.dlq")),
        s.path(&format!("cache-{memory_mib}")),
    );
    let run = s
        .run(path_str(&python))
        .input(&input)
        .config("currency=USD")
        .output(&out)
        .dlq(path_str(&dlq))
        .cache_dir(&cache)
        .summary_json()
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mib)
        .env("HOST_LOG", "info")
        .go();
    // A run refused at start writes no summary.
    let summary = if run.status.success() {
        run.summary()
    } else {
        serde_json::Value::Null
    };
    (run, summary)
}

/// The process's peak in `summary`, MiB.
fn peak_mib(summary: &serde_json::Value) -> u64 {
    summary["peak_memory_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no peak in {summary}"))
        >> 20
}

#[test]
fn a_fresh_python_start_stays_inside_a_512_mb_function() {
    // The 18 MB component compiles twice on a fresh start: Winch's code for the first
    // batches, Cranelift's in the background. Both compiles together peaked at ~500-610
    // MiB before they were fitted to the function (one thread under one vCPU, memory
    // freed while compiling given back at once); ~426 MiB now.
    let s = Scratch::new();
    let (run, summary) = fresh_start_in(&s, "512");
    run.assert_ok();
    assert!(
        run.stderr
            .contains("running Winch's code while Cranelift compiles in the background")
            && run.stderr.contains("Cranelift's code is ready"),
        "a tiered start fits in 512 MB:\n{}",
        run.stderr
    );
    assert_eq!(
        (&summary["in"], &summary["transformed"]),
        (&1000.into(), &750.into()),
        "{summary}"
    );
    let peak = peak_mib(&summary);
    assert!(peak < 512, "peak {peak} MiB in a 512 MB function");
}

#[test]
fn a_smaller_function_compiles_with_cranelift_alone_or_says_what_it_needs() {
    let s = Scratch::new();
    // Winch's code resident while Cranelift compiles would not fit: Cranelift alone,
    // before the first batch.
    let (run, summary) = fresh_start_in(&s, "416");
    run.assert_ok();
    assert!(
        run.stderr
            .contains("compiling with Cranelift before the first batch")
            && !run.stderr.contains("running Winch's code"),
        "{}",
        run.stderr
    );
    assert_eq!(summary["transformed"], 750, "{summary}");
    let peak = peak_mib(&summary);
    assert!(peak < 416, "peak {peak} MiB in a 416 MB function");

    // Not even one compiler fits: refused before compiling, saying what would do.
    let (run, _) = fresh_start_in(&s, "256");
    run.assert_error("more than the function's 256 MiB (AWS_LAMBDA_FUNCTION_MEMORY_SIZE)");
    assert!(
        run.stderr.contains("give the function at least")
            && run.stderr.contains("host publish --precompile"),
        "{}",
        run.stderr
    );
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
    let lambda = Lambda::builder(&moto)
        .plugin("s3://plugins/plugins/enrich/")
        .env("PIPELINE_PLUGIN_CHECK_SECONDS", "0")
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

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_precompiled_artifact_loads_without_compiling_and_a_foreign_one_never_loads() {
    use crate::emulator::Moto;
    use crate::lambda_harness::Lambda;

    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("plugins").await;
    let out = aws.queue("out").await;
    aws.queue("dlq").await;
    let s = Scratch::new();
    let key_file = s.path("signing.key");
    let keygen = s.host(&["keygen", "--out", path_str(&key_file)], None);
    keygen.assert_ok();
    let public_key = keygen.stdout.trim().to_owned();
    let python = python_plugin("enrich");
    let publish = |extra: &[&str]| {
        let mut args = vec![
            "publish",
            "--plugin",
            path_str(&python),
            "--to",
            "s3://plugins/plugins/enrich/",
        ];
        args.extend_from_slice(extra);
        s.host_with_env(&args, None, &moto.env())
    };
    let arch = std::env::consts::ARCH;

    // An artifact nobody signed would be native code trusted by its location: refused.
    let unsigned = publish(&["--precompile", arch]);
    unsigned.assert_error("--precompile needs --signing-key");
    let published = publish(&["--precompile", arch, "--signing-key", path_str(&key_file)]);
    published.assert_ok();
    assert!(
        published
            .stdout
            .contains(&format!("precompiled for {arch}")),
        "{}",
        published.stdout
    );

    // A host with the public key and a cache that has never seen the module.
    let event = serde_json::json!([
        {"id": "a1", "user": "u", "action": "buy", "amount": 2.5, "ts": "2026-11-26T12:00:00Z"}
    ]);
    let start = |public_key: Option<&str>, cache: &str| {
        let mut function = Lambda::builder(&moto)
            .plugin("s3://plugins/plugins/enrich/")
            .sinks("default=sqs://out")
            .dlq("sqs://dlq")
            .env("PIPELINE_CACHE_DIR", path_str(&s.path(cache)));
        if let Some(key) = public_key {
            function = function.env("PIPELINE_PLUGIN_PUBLIC_KEY", key);
        }
        let dir = s.path(cache).with_extension("run");
        std::fs::create_dir_all(&dir).expect("mkdir");
        function.start(&dir)
    };
    let ready_line = |log: &str| {
        log.lines()
            .find(|l| l.contains("plugin ready"))
            .unwrap_or_else(|| panic!("no `plugin ready` line: {log}"))
            .to_owned()
    };
    let lambda = start(Some(&public_key), "cache-a");
    let answer = lambda.invoke(event.clone());
    assert_eq!(answer["transformed"], 1, "{answer}\n{}", lambda.log());
    let ready = ready_line(&lambda.log());
    assert!(ready.contains("cache=\"published\""), "{ready}");
    let doc = &lambda.metrics()[0];
    assert_eq!(doc["ColdStart.Compile"], 0.0, "loaded, not compiled: {doc}");
    assert!(
        doc["ColdStart.CacheLoad"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0),
        "{doc}"
    );
    let expected = aws.drain_queue(&out).await;
    assert_eq!(expected.len(), 1);
    drop(lambda);

    // Without the public key nothing vouches for the artifact: the module is compiled.
    let lambda = start(None, "cache-b");
    lambda.invoke(event.clone());
    let ready = ready_line(&lambda.log());
    assert!(ready.contains("cache=\"miss\""), "{ready}");
    assert_eq!(aws.drain_queue(&out).await, expected);
    drop(lambda);

    // Someone who can write the bucket swaps the artifact: its hash no longer matches
    // the signed manifest, so it never loads; the module is compiled instead.
    let artifacts = aws.objects("plugins", "plugins/enrich/artifacts/").await;
    assert_eq!(artifacts.len(), 1, "one artifact");
    let rust_artifact = std::fs::read(plugin("enrich")).expect("another module");
    aws.put_object("plugins", &artifacts[0].0, rust_artifact)
        .await;
    let lambda = start(Some(&public_key), "cache-c");
    lambda.invoke(event);
    let log = lambda.log();
    assert!(
        log.contains("the published artifact is refused") && log.contains("sha256 mismatch"),
        "{log}"
    );
    assert!(ready_line(&log).contains("cache=\"miss\""), "{log}");
    assert_eq!(aws.drain_queue(&out).await, expected);
}

/// The Python `join` (`prepare` looks the batch's keys up once per table) passes the
/// Rust `join`'s golden cases, tables inline: the same outputs and dead letters.
#[test]
fn the_python_join_passes_the_rust_joins_golden_cases() {
    let s = Scratch::new();
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/join/tests/cases");
    let cache = s.path("cache");
    let run = s.host_test(
        &python_plugin("join"),
        &cases,
        &["--cache-dir", path_str(&cache)],
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.stderr.contains("2 cases passed"), "{}", run.stderr);
}

/// The SDK's own unit tests, natively, on the contract's Python bindings: lookups
/// against stubbed tables.
#[test]
fn the_python_sdk_unit_tests_pass_natively() {
    let s = Scratch::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bindings = s.path("bindings");
    let status = std::process::Command::new(root.join(".venv/bin/componentize-py"))
        .args([
            "-d",
            path_str(&root.join("wit")),
            "-w",
            "transform",
            "bindings",
        ])
        .arg(&bindings)
        .status()
        .expect("componentize-py (./dev installs it in .venv)");
    assert!(status.success(), "bindings: {status}");
    let sdk = root.join("guest-sdk-python");
    let out = std::process::Command::new("python3")
        .args(["-m", "unittest", "-v", "test_pipeline_plugin"])
        .current_dir(&sdk)
        .env(
            "PYTHONPATH",
            format!("{}:{}", bindings.display(), sdk.display()),
        )
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("Ran 2 tests") && report.contains("OK"),
        "{report}"
    );
}
