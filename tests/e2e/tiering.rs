//! Tiered start: a module the cache does not have runs its first batches on Winch's
//! quickly compiled code while Cranelift compiles it in the background; the runner moves
//! to Cranelift's code between two batches, and Cranelift's code is what the cache keeps.

use serde_json::Value;

use crate::support::{Scratch, path_str};

/// Enough batches of 100 for the background compile to finish long before the input
/// does (a debug host takes ~1 s; Cranelift ~0.2 s of one core for `enrich`).
const RECORDS: usize = 150_000;

fn events(s: &Scratch) -> std::path::PathBuf {
    let mut text = String::with_capacity(RECORDS * 100);
    for i in 0..RECORDS {
        text.push_str(&format!(
            "{{\"id\":\"e{i}\",\"user\":\"u{}\",\"action\":\"buy\",\"amount\":{}.{},\"ts\":\"2026-11-24T13:00:00Z\"}}\n",
            i % 100,
            i % 1000,
            i % 10
        ));
    }
    s.write("events.jsonl", &text)
}

/// `host run` of `enrich` at batch 100 with `extra`; (stderr, outputs, JSON summary).
fn run(
    s: &Scratch,
    input: &std::path::Path,
    name: &str,
    extra: &[&str],
) -> (String, String, Value) {
    let output = s.path(name);
    let summary = s.path(&format!("{name}.summary.json"));
    let run = s
        .run("enrich")
        .input(input)
        .output(&output)
        .flag("--batch-size", "100")
        .summary_json()
        .args(extra)
        .env("HOST_LOG", "info")
        .go();
    run.assert_ok();
    std::fs::write(&summary, &run.stdout).expect("summary");
    let json = run.summary();
    let outputs = std::fs::read_to_string(output).expect("outputs");
    (run.stderr, outputs, json)
}

fn tier_ups(summary: &Value) -> u64 {
    summary["stages"][0]["tier_ups"]
        .as_u64()
        .unwrap_or_else(|| panic!("no stages[0].tier_ups in {summary}"))
}

#[test]
fn a_new_module_starts_on_winch_and_moves_to_cranelift_with_the_same_outputs() {
    let s = Scratch::new();
    let input = events(&s);
    let cache = s.path("cache");
    let cache_flag = ["--cache-dir", path_str(&cache)];

    let (log, tiered, summary) = run(&s, &input, "tiered.jsonl", &cache_flag);
    let winch = log
        .find("running Winch's code while Cranelift compiles")
        .unwrap_or_else(|| panic!("no Winch start:\n{log}"));
    let ready = log
        .find("Cranelift's code is ready")
        .unwrap_or_else(|| panic!("the background compile never finished:\n{log}"));
    let moved = log
        .find("running Cranelift's code from this batch on")
        .unwrap_or_else(|| panic!("the runner never moved to Cranelift's code:\n{log}"));
    assert!(winch < ready && ready < moved, "{log}");
    // Batches ran on both: some before the move, the rest after it.
    let before = log[..moved].matches("batch done").count();
    let after = log[moved..].matches("batch done").count();
    assert!(
        before >= 1 && after >= 1,
        "{before} batches before the move, {after} after:\n{log}"
    );
    assert_eq!(before + after, RECORDS / 100);
    assert_eq!(tier_ups(&summary), 1, "{summary}");
    assert_eq!(summary["transformed"], RECORDS, "{summary}");

    // Cranelift's code is what the cache keeps: the next start loads it, no Winch.
    let entries = std::fs::read_dir(&cache).expect("cache dir").count();
    assert_eq!(entries, 1, "one precompiled entry");
    let (log, cached, summary) = run(&s, &input, "cached.jsonl", &cache_flag);
    assert!(log.contains("cache=\"hit\""), "{log}");
    assert!(!log.contains("Winch"), "{log}");
    assert_eq!(tier_ups(&summary), 0, "{summary}");

    // Without tiered start: Cranelift before the first batch, the same outputs.
    let other_cache = s.path("other-cache");
    let (log, plain, summary) = run(
        &s,
        &input,
        "plain.jsonl",
        &[
            "--cache-dir",
            path_str(&other_cache),
            "--tiered-start",
            "off",
        ],
    );
    assert!(log.contains("cache=\"miss\""), "{log}");
    assert!(!log.contains("Winch"), "{log}");
    assert_eq!(tier_ups(&summary), 0, "{summary}");
    assert!(
        tiered == plain && cached == plain,
        "Winch's and Cranelift's code disagree"
    );
}
