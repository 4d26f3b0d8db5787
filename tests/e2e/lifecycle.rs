//! The plugin lifecycle against the emulator: `host publish`, a Lambda host following
//! the manifest between invocations, broken versions refused while the serving one
//! stays, rollback, signatures, and the precompiled cache across cold starts.

use std::time::{Duration, Instant};

use pipeline_host::registry::publish::{Prefix, get_live, replace_live};
use pipeline_host::registry::sha256_hex;
use serde_json::{Value, json};

use crate::emulator::{Clients, Moto};
use crate::lambda_harness::{ANSWER_TIMEOUT, Lambda};
use crate::runtime_api::Answer;
use crate::support::{Run, Scratch, path_str, plugin, text};

const PREFIX: &str = "s3://plugins/plugins/enrich/";
/// The function looks at the manifest at most this often.
const CHECK_SECONDS: u64 = 1;

fn publish(scratch: &Scratch, moto: &Moto, args: &[&str]) -> Run {
    let mut all = vec!["publish", "--to", PREFIX];
    all.extend_from_slice(args);
    scratch.host_with_env(&all, None, &moto.env())
}

fn wasm(name: &str) -> String {
    path_str(&plugin(name)).to_owned()
}

/// The same component with a custom section appended: another module (another
/// sha256) with the same code, as a rebuilt plugin would be.
fn rebuilt(name: &str, note: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(plugin(name)).expect("wasm");
    let mut payload = vec![u8::try_from(b"note".len()).expect("short")];
    payload.extend_from_slice(b"note");
    payload.extend_from_slice(note.as_bytes());
    bytes.push(0); // custom section id
    bytes.push(u8::try_from(payload.len()).expect("short note"));
    bytes.extend(payload);
    bytes
}

/// One good event and one that `enrich` refuses (no `user`).
fn event(id: &str) -> Value {
    json!([
        {"id": id, "user": "u1", "action": "buy", "amount": 1.5, "ts": "2026-11-26T12:00:00Z"},
        {"id": format!("{id}-bad")}
    ])
}

/// A function following the plugin published at [`PREFIX`], from direct invocations to
/// the queue `out`, dead letters to `dlq`, with `extra` settings.
fn start_lambda(moto: &Moto, scratch: &Scratch, extra: &[(&'static str, &str)]) -> Lambda {
    Lambda::builder(moto)
        .plugin(PREFIX)
        .env("PIPELINE_PLUGIN_CHECK_SECONDS", &CHECK_SECONDS.to_string())
        .sinks("default=sqs://out")
        .dlq("sqs://dlq")
        .envs(extra)
        .start(scratch.dir.path())
}

/// Sends one event and returns the plugin version that answered, after checking the
/// outputs (currency) and the DLQ entry (which names the version) it produced.
async fn invoke(lambda: &Lambda, aws: &Clients, id: &str) -> (String, String) {
    let answer = lambda.invoke(event(id));
    assert_eq!(
        (
            answer["in"].as_u64(),
            answer["transformed"].as_u64(),
            answer["failed"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{answer}"
    );
    let label = text(&answer["plugin"], "the answer's plugin").to_owned();
    let out = aws.drain_queue(&queue_url(aws, "out").await).await;
    assert_eq!(out.len(), 1, "{out:?}");
    let output: Value = serde_json::from_str(&out[0]).expect("output JSON");
    assert_eq!(output["id"], id);
    let dead = aws.drain_queue(&queue_url(aws, "dlq").await).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let entry: Value = serde_json::from_str(&dead[0]).expect("DLQ JSON");
    let dlq_label = format!(
        "{}@{}",
        text(&entry["plugin"]["name"], "the DLQ entry's plugin.name"),
        text(
            &entry["plugin"]["version"],
            "the DLQ entry's plugin.version"
        )
    );
    assert_eq!(dlq_label, label, "the DLQ entry names the version that ran");
    let currency = text(&output["currency"], "the output's currency").to_owned();
    (label, currency)
}

async fn queue_url(aws: &Clients, name: &str) -> String {
    aws.sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .expect("queue url")
        .queue_url()
        .expect("url")
        .to_owned()
}

/// A new signing key in the scratch folder: its file, and the public key `keygen` prints.
fn signing_key(scratch: &Scratch) -> (std::path::PathBuf, String) {
    let key_file = scratch.path("signing.key");
    let keygen = scratch.host(&["keygen", "--out", path_str(&key_file)], None);
    keygen.assert_ok();
    (key_file, keygen.stdout.trim().to_owned())
}

/// Waits past the check interval, so the next invocation looks at the manifest.
fn after_check_interval() {
    std::thread::sleep(Duration::from_millis(CHECK_SECONDS * 1000 + 200));
}

/// A manifest written by hand (as a careless or rogue publisher would), live at once.
async fn put_live(aws: &Clients, manifest: &Value, module: Option<(&str, Vec<u8>)>) {
    if let Some((key, bytes)) = module {
        aws.put_object("plugins", key, bytes).await;
    }
    aws.put_object(
        "plugins",
        "plugins/enrich/manifest.json",
        serde_json::to_vec(manifest).expect("json"),
    )
    .await;
}

/// A manifest written by hand, at a sequence past any `host publish` of the test.
fn manifest(version: &str, module_key: &str, sha256: &str, config: Value) -> Value {
    json!({
        "name": "enrich", "version": version, "world": "pipeline:plugin@0.1.0",
        "module": module_key, "sha256": sha256, "config": config,
        "created_at": "2026-11-26T13:00:00.000Z", "sequence": 100
    })
}

/// The emulator with the plugin bucket, the output queue and the DLQ.
async fn emulator_with_queues() -> (Moto, Clients, Scratch) {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("plugins").await;
    aws.queue("out").await;
    aws.queue("dlq").await;
    (moto, aws, Scratch::new())
}

fn wait_for_log(lambda: &Lambda, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let log = lambda.log();
        if log.contains(needle) {
            return log;
        }
        assert!(
            start.elapsed() < ANSWER_TIMEOUT,
            "{needle:?} never logged:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_published_version_goes_live_between_batches_and_broken_ones_are_refused() {
    let (moto, aws, scratch) = emulator_with_queues().await;
    publish(
        &scratch,
        &moto,
        &[
            "--plugin",
            &wasm("enrich"),
            "--version",
            "1.0.0",
            "--config",
            "currency=EUR",
        ],
    )
    .assert_ok();

    let lambda = start_lambda(&moto, &scratch, &[]);
    assert_eq!(
        invoke(&lambda, &aws, "e1").await,
        ("enrich@1.0.0".into(), "EUR".into())
    );
    // 1.0.0's Cranelift code reaches the cache in the background (tiered start); the
    // rollback at the end finds it there.
    wait_for_log(&lambda, "Cranelift's code is ready");

    // v2: another module, other shipped settings. Live from the first batch after the interval.
    let v2 = scratch.path("enrich-v2.wasm");
    std::fs::write(&v2, rebuilt("enrich", "v2")).expect("write");
    let published = publish(
        &scratch,
        &moto,
        &[
            "--plugin",
            path_str(&v2),
            "--version",
            "2.0.0",
            "--config",
            "currency=USD",
        ],
    );
    published.assert_ok();
    assert!(
        published.stdout.contains("enrich@2.0.0 is live"),
        "{}",
        published.stdout
    );
    after_check_interval();
    assert_eq!(
        invoke(&lambda, &aws, "e2").await,
        ("enrich@2.0.0".into(), "USD".into())
    );
    wait_for_log(&lambda, "plugin swapped (was enrich@1.0.0)");

    // Broken v3s, each refused with its reason while v2 keeps serving.
    let trapping = std::fs::read(plugin("misbehave")).expect("wasm");
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let wrong_hash = sha256_hex(b"some other module");
    let broken = [
        (
            "3.0.0",
            Some(rebuilt("enrich", "v3")),
            wrong_hash.clone(),
            json!({}),
            "module sha256 mismatch",
        ),
        (
            "3.0.1",
            Some(core_module.clone()),
            sha256_hex(&core_module),
            json!({}),
            "is not a WebAssembly component",
        ),
        (
            "3.0.2",
            Some(trapping.clone()),
            sha256_hex(&trapping),
            json!({"init": "panic"}),
            "enrich@3.0.2 failed to start",
        ),
        (
            "3.0.3",
            None,
            wrong_hash,
            json!({}),
            "cannot fetch the module of enrich@3.0.3",
        ),
    ];
    for (n, (version, module, sha256, config, reason)) in broken.into_iter().enumerate() {
        let key = format!("plugins/enrich/modules/{version}.wasm");
        let module = module.map(|bytes| (key.as_str(), bytes));
        put_live(&aws, &manifest(version, &key, &sha256, config), module).await;
        after_check_interval();
        let id = format!("e{}", n + 3);
        assert_eq!(invoke(&lambda, &aws, &id).await.0, "enrich@2.0.0");
        wait_for_log(&lambda, reason);
    }
    assert!(
        lambda.metric_total("PluginVersionsRefused") >= 4.0,
        "{}",
        lambda.log()
    );

    // Roll back to 1.0.0 by name: the live manifest points at it again.
    let rolled = publish(&scratch, &moto, &["--rollback", "--version", "1.0.0"]);
    rolled.assert_ok();
    assert!(
        rolled
            .stdout
            .contains("live version is now enrich@1.0.0 (was enrich@3.0.3)"),
        "{}",
        rolled.stdout
    );
    after_check_interval();
    assert_eq!(
        invoke(&lambda, &aws, "e7").await,
        ("enrich@1.0.0".into(), "EUR".into())
    );

    // Swapping did not recompile what the cache already had.
    let log = lambda.log();
    assert!(
        log.contains("cache=\"hit\"") || log.contains("cache=hit"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_keeps_versions_immutable_and_respects_a_pin() {
    let moto = Moto::start();
    let aws = moto.clients().await;
    aws.bucket("plugins").await;
    let scratch = Scratch::new();
    publish(
        &scratch,
        &moto,
        &["--plugin", &wasm("enrich"), "--version", "1.0.0", "--pin"],
    )
    .assert_ok();
    let live = |aws: &Clients| {
        let s3 = aws.s3.clone();
        async move {
            let object = s3
                .get_object()
                .bucket("plugins")
                .key("plugins/enrich/manifest.json")
                .send()
                .await
                .expect("manifest");
            let body = object.body.collect().await.expect("body").into_bytes();
            serde_json::from_slice::<Value>(&body).expect("manifest JSON")
        }
    };
    let v1 = live(&aws).await;
    assert_eq!(
        (v1["version"].as_str(), v1["pinned"].as_bool()),
        (Some("1.0.0"), Some(true))
    );
    assert_eq!(
        v1["sha256"],
        sha256_hex(&std::fs::read(plugin("enrich")).expect("wasm"))
    );
    let module = aws
        .objects("plugins", text(&v1["module"], "the manifest's module key"))
        .await;
    assert_eq!(
        module.len(),
        1,
        "the module is stored where the manifest says"
    );

    // Same version, other module: refused. Same version, same module: a no-op.
    let v2 = scratch.path("enrich-v2.wasm");
    std::fs::write(&v2, rebuilt("enrich", "v2")).expect("write");
    let v2 = path_str(&v2);
    publish(&scratch, &moto, &["--plugin", v2, "--version", "1.0.0"])
        .assert_error("enrich@1.0.0 is already published with another module");
    publish(
        &scratch,
        &moto,
        &["--plugin", &wasm("enrich"), "--version", "1.0.0", "--pin"],
    )
    .assert_ok();

    // Pinned: a new version is stored but not made live, until --force.
    let held = publish(&scratch, &moto, &["--plugin", v2, "--version", "2.0.0"]);
    held.assert_ok();
    assert!(
        held.stdout.contains("published but not live"),
        "{}",
        held.stdout
    );
    assert_eq!(live(&aws).await["version"], "1.0.0");
    publish(
        &scratch,
        &moto,
        &["--plugin", v2, "--version", "2.0.0", "--force"],
    )
    .assert_ok();
    assert_eq!(live(&aws).await["version"], "2.0.0");

    // Rollback without a version goes to the one published before the live one.
    let rolled = publish(&scratch, &moto, &["--rollback"]);
    rolled.assert_ok();
    assert_eq!(live(&aws).await["version"], "1.0.0", "{}", rolled.stdout);

    // The live manifest is replaced only if it is still the one read: a publisher that
    // read it before another one moved it gets an error, and nothing changes.
    let prefix: Prefix = PREFIX.parse().expect("prefix");
    let (stale, etag) = get_live(&aws.s3, &prefix)
        .await
        .expect("get")
        .expect("live");
    publish(&scratch, &moto, &["--rollback", "--version", "2.0.0"]).assert_ok();
    let raced = replace_live(&aws.s3, &prefix, &stale, Some(&etag))
        .await
        .expect_err("a stale ETag");
    assert!(
        raced.to_string().contains("changed since it was read"),
        "{raced:#}"
    );
    assert_eq!(live(&aws).await["version"], "2.0.0");

    // Nothing that would not start is published: an init that refuses its settings.
    publish(
        &scratch,
        &moto,
        &["--plugin", &wasm("validate"), "--config", "max_amount=lots"],
    )
    .assert_error("refused");
    assert_eq!(
        aws.objects("plugins", "plugins/enrich/versions/")
            .await
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_with_a_public_key_runs_only_signed_versions() {
    let (moto, aws, scratch) = emulator_with_queues().await;
    let (key_file, public_key) = signing_key(&scratch);
    assert_eq!(public_key.len(), 64, "hex public key: {public_key}");

    // Unsigned at a cold start: the start fails, naming the reason.
    publish(
        &scratch,
        &moto,
        &["--plugin", &wasm("enrich"), "--version", "1.0.0"],
    )
    .assert_ok();
    let mut lambda = start_lambda(
        &moto,
        &scratch,
        &[("PIPELINE_PLUGIN_PUBLIC_KEY", &public_key)],
    );
    match lambda.next_answer() {
        Answer::InitError(error) => {
            assert!(
                text(&error["errorMessage"], "the init error's errorMessage")
                    .contains("signature refused"),
                "{error}"
            );
            assert_eq!(error["errorType"], "PluginRefused", "{error}");
        }
        other => panic!("expected an init error, got {other:?}"),
    }
    assert!(!lambda.wait_exit(ANSWER_TIMEOUT).success());

    // Signed: runs. A later unsigned version is refused; the signed one keeps serving.
    let key = path_str(&key_file);
    publish(
        &scratch,
        &moto,
        &[
            "--plugin",
            &wasm("enrich"),
            "--version",
            "1.0.1",
            "--signing-key",
            key,
        ],
    )
    .assert_ok();
    let lambda = start_lambda(
        &moto,
        &scratch,
        &[("PIPELINE_PLUGIN_PUBLIC_KEY", &public_key)],
    );
    assert_eq!(invoke(&lambda, &aws, "s1").await.0, "enrich@1.0.1");
    let v2 = scratch.path("enrich-v2.wasm");
    std::fs::write(&v2, rebuilt("enrich", "v2")).expect("write");
    publish(
        &scratch,
        &moto,
        &["--plugin", path_str(&v2), "--version", "2.0.0"],
    )
    .assert_ok();
    after_check_interval();
    assert_eq!(invoke(&lambda, &aws, "s2").await.0, "enrich@1.0.1");
    wait_for_log(
        &lambda,
        "the host requires a signature and the manifest has none",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_cache_skips_the_compile_and_a_damaged_entry_is_recompiled() {
    let (moto, aws, scratch) = emulator_with_queues().await;
    publish(
        &scratch,
        &moto,
        &["--plugin", &wasm("enrich"), "--version", "1.0.0"],
    )
    .assert_ok();
    let cold_start = || {
        let lambda = start_lambda(&moto, &scratch, &[]);
        let log = wait_for_log(&lambda, "plugin ready");
        let line = log
            .lines()
            .find(|l| l.contains("plugin ready"))
            .expect("the log has a `plugin ready` line")
            .to_owned();
        (lambda, line)
    };
    let cache_use = |line: &str| {
        ["hit", "miss", "rejected", "off"]
            .into_iter()
            .find(|c| {
                line.contains(&format!("cache=\"{c}\"")) || line.contains(&format!("cache={c} "))
            })
            .unwrap_or_else(|| panic!("no cache= in {line}"))
    };
    let (lambda, line) = cold_start();
    assert_eq!(cache_use(&line), "miss", "{line}");
    assert_eq!(invoke(&lambda, &aws, "c1").await.0, "enrich@1.0.0");
    // A miss runs Winch's code; Cranelift's, compiled meanwhile, is what the cache keeps.
    wait_for_log(&lambda, "Cranelift's code is ready");
    drop(lambda);

    let entries: Vec<_> = std::fs::read_dir(scratch.path("plugin-cache"))
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let (lambda, line) = cold_start();
    assert_eq!(cache_use(&line), "hit", "{line}");
    assert_eq!(invoke(&lambda, &aws, "c2").await.0, "enrich@1.0.0");
    drop(lambda);

    // One flipped byte in the middle of the artifact.
    let mut bytes = std::fs::read(&entries[0]).expect("entry");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&entries[0], bytes).expect("corrupt");
    let (lambda, line) = cold_start();
    assert_eq!(cache_use(&line), "rejected", "{line}");
    let log = lambda.log();
    assert!(log.contains("checksum mismatch"), "{log}");
    assert_eq!(invoke(&lambda, &aws, "c3").await.0, "enrich@1.0.0");
    wait_for_log(&lambda, "Cranelift's code is ready");
    drop(lambda);

    let (_lambda, line) = cold_start();
    assert_eq!(
        cache_use(&line),
        "hit",
        "the recompiled entry replaced the damaged one: {line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_version_cannot_be_changed_or_rolled_back_through_the_bucket() {
    let (moto, aws, scratch) = emulator_with_queues().await;
    let (key_file, public_key) = signing_key(&scratch);
    let key = path_str(&key_file);
    let v2 = scratch.path("enrich-v2.wasm");
    std::fs::write(&v2, rebuilt("enrich", "v2")).expect("write");
    for (module, version) in [
        (wasm("enrich"), "1.0.0"),
        (path_str(&v2).to_owned(), "2.0.0"),
    ] {
        let args = [
            "--plugin",
            &module,
            "--version",
            version,
            "--signing-key",
            key,
        ];
        publish(&scratch, &moto, &args).assert_ok();
    }
    let lambda = start_lambda(
        &moto,
        &scratch,
        &[("PIPELINE_PLUGIN_PUBLIC_KEY", &public_key)],
    );
    assert_eq!(invoke(&lambda, &aws, "s1").await.0, "enrich@2.0.0");

    // Whoever can write the bucket changes the shipped settings of the signed version:
    // refused, 2.0.0 keeps serving.
    let prefix: Prefix = PREFIX.parse().expect("prefix");
    let (live, etag) = get_live(&aws.s3, &prefix)
        .await
        .expect("get")
        .expect("live");
    let mut tampered = live.clone();
    tampered.config.insert("currency".into(), "USD".into());
    replace_live(&aws.s3, &prefix, &tampered, Some(&etag))
        .await
        .expect("replace");
    after_check_interval();
    assert_eq!(invoke(&lambda, &aws, "s2").await.0, "enrich@2.0.0");
    wait_for_log(&lambda, "does not verify with the configured public key");

    // ... or puts the older signed version's own manifest back as live: refused too.
    let old = aws
        .s3
        .get_object()
        .bucket("plugins")
        .key("plugins/enrich/versions/1.0.0.json")
        .send()
        .await
        .expect("the 1.0.0 manifest");
    let old = old.body.collect().await.expect("body").into_bytes();
    let old = pipeline_host::registry::Manifest::parse(&old).expect("a manifest");
    let (_, etag) = get_live(&aws.s3, &prefix)
        .await
        .expect("get")
        .expect("live");
    replace_live(&aws.s3, &prefix, &old, Some(&etag))
        .await
        .expect("replace");
    after_check_interval();
    assert_eq!(invoke(&lambda, &aws, "s3").await.0, "enrich@2.0.0");
    wait_for_log(&lambda, "is older than the serving version");

    // A rollback is a publish: a new, signed sequence, which the host takes.
    let unsigned = publish(&scratch, &moto, &["--rollback", "--version", "1.0.0"]);
    unsigned.assert_error("must be signed too (--signing-key)");
    publish(
        &scratch,
        &moto,
        &["--rollback", "--version", "1.0.0", "--signing-key", key],
    )
    .assert_ok();
    after_check_interval();
    assert_eq!(invoke(&lambda, &aws, "s4").await.0, "enrich@1.0.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_manifest_copied_over_another_plugins_is_refused() {
    // Both manifests verify with the key; only the place tells them apart. `route`'s
    // signed manifest written over `enrich`'s (by anyone who can write the bucket)
    // must not make the enrich function run route: not at a cold start, not as a swap.
    let (moto, aws, scratch) = emulator_with_queues().await;
    let (key_file, public_key) = signing_key(&scratch);
    let key = path_str(&key_file);
    publish(
        &scratch,
        &moto,
        &[
            "--plugin",
            &wasm("enrich"),
            "--version",
            "1.0.0",
            "--signing-key",
            key,
        ],
    )
    .assert_ok();
    let route_prefix = "s3://plugins/plugins/route/";
    scratch
        .host_with_env(
            &[
                "publish",
                "--to",
                route_prefix,
                "--plugin",
                &wasm("route"),
                "--version",
                "1.0.0",
                "--signing-key",
                key,
            ],
            None,
            &moto.env(),
        )
        .assert_ok();
    let route_manifest = aws
        .objects("plugins", "plugins/route/manifest.json")
        .await
        .pop()
        .expect("route's manifest")
        .1;

    let lambda = start_lambda(
        &moto,
        &scratch,
        &[("PIPELINE_PLUGIN_PUBLIC_KEY", &public_key)],
    );
    assert_eq!(invoke(&lambda, &aws, "p1").await.0, "enrich@1.0.0");
    // The swap: refused, enrich keeps serving.
    aws.put_object(
        "plugins",
        "plugins/enrich/manifest.json",
        route_manifest.clone(),
    )
    .await;
    after_check_interval();
    assert_eq!(invoke(&lambda, &aws, "p2").await.0, "enrich@1.0.0");
    let log = wait_for_log(&lambda, "but found under");
    assert!(log.contains("plugins/route/"), "{log}");
    drop(lambda);

    // A cold start on the copied manifest fails, naming why.
    let mut cold = start_lambda(
        &moto,
        &scratch,
        &[("PIPELINE_PLUGIN_PUBLIC_KEY", &public_key)],
    );
    match cold.next_answer() {
        Answer::InitError(error) => {
            let message = text(&error["errorMessage"], "the init error's errorMessage");
            assert!(
                message.contains(
                    "published to \"plugins/route/\" but found under \"plugins/enrich/\""
                ),
                "{message}"
            );
            assert_eq!(error["errorType"], "PluginRefused", "{error}");
        }
        other => panic!("expected an init error, got {other:?}"),
    }
    assert!(!cold.wait_exit(ANSWER_TIMEOUT).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_start_never_goes_back_to_an_older_signed_manifest_the_table_remembers() {
    // Whoever can write the bucket puts the older signed 1.0.0 manifest back as live.
    // A warm host refuses it (its floor is in memory); a new host must too: the floor
    // is kept in the idempotency table, which writing the bucket does not reach.
    let (moto, aws, scratch) = emulator_with_queues().await;
    aws.table("dedup").await;
    let (key_file, public_key) = signing_key(&scratch);
    let key = path_str(&key_file);
    let v2 = scratch.path("enrich-v2.wasm");
    std::fs::write(&v2, rebuilt("enrich", "v2")).expect("write");
    for (module, version) in [
        (wasm("enrich"), "1.0.0"),
        (path_str(&v2).to_owned(), "2.0.0"),
    ] {
        let args = [
            "--plugin",
            &module,
            "--version",
            version,
            "--signing-key",
            key,
        ];
        publish(&scratch, &moto, &args).assert_ok();
    }
    let with_table = [
        ("PIPELINE_PLUGIN_PUBLIC_KEY", public_key.as_str()),
        ("PIPELINE_DEDUP", "dynamodb://dedup"),
    ];
    let first = start_lambda(&moto, &scratch, &with_table);
    assert_eq!(invoke(&first, &aws, "f1").await.0, "enrich@2.0.0");
    drop(first);

    let prefix: Prefix = PREFIX.parse().expect("prefix");
    let old = aws
        .objects("plugins", "plugins/enrich/versions/1.0.0.json")
        .await
        .pop()
        .expect("the 1.0.0 manifest")
        .1;
    let old = pipeline_host::registry::Manifest::parse(&old).expect("a manifest");
    let (_, etag) = get_live(&aws.s3, &prefix)
        .await
        .expect("get")
        .expect("live");
    replace_live(&aws.s3, &prefix, &old, Some(&etag))
        .await
        .expect("replace");

    // A new host with the table: refused at its cold start, naming why.
    let mut cold = start_lambda(&moto, &scratch, &with_table);
    match cold.invoke_answer(event("f2")) {
        Answer::InitError(error) => {
            let message = text(&error["errorMessage"], "the init error's errorMessage");
            assert!(
                message.contains("sequence 1 is older than the serving version's 2"),
                "{message}"
            );
            assert_eq!(error["errorType"], "PluginRefused", "{error}");
        }
        other => panic!("expected an init error, got {other:?}\n{}", cold.log()),
    }
    assert!(!cold.wait_exit(ANSWER_TIMEOUT).success());

    // Without the table there is nothing to remember by: a new host serves what the
    // bucket says (docs/operations.md states this limit).
    let bare = start_lambda(&moto, &scratch, &with_table[..1]);
    assert_eq!(invoke(&bare, &aws, "f3").await.0, "enrich@1.0.0");
}
