//! A plugin written in Python (`plugins-python/enrich`, on `guest-sdk-python`, built with
//! componentize-py) makes byte for byte the outputs of the Rust `enrich`, and fails the
//! same records with the same kinds.

use std::path::Path;

use crate::support::{Scratch, path_str, plugin, python_plugin};

#[test]
fn the_python_enrich_matches_the_rust_enrich_byte_for_byte() {
    crate::guests::assert_same_as_the_rust_enrich(&python_plugin("enrich"), "Python", &[]);
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
    crate::guests::swapped_in_for_the_rust_enrich(&python_plugin("enrich")).await;
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
