//! `host test`: the example plugins' golden cases pass, a case that no longer matches
//! fails with a diff, and `--update` writes what the plugin does now.

use std::path::Path;

use crate::support::{Scratch, path_str, plugin, python_plugin};

fn cases_of(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(name)
        .join("tests/cases")
}

#[test]
fn every_example_plugin_passes_its_golden_cases() {
    let s = Scratch::new();
    for name in ["enrich", "validate", "route", "join"] {
        let wasm = plugin(name);
        let cases = cases_of(name);
        let run = s.host_test(&wasm, &cases, &[]);
        assert!(run.status.success(), "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains(" cases passed"),
            "{name}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("FAILED"), "{name}: {}", run.stderr);
    }
}

/// The Rust enrich's ten cases (every event shape, framed Avro), with the JavaScript
/// SDK's own error messages: the same outputs, dead-letter kinds and drops.
#[test]
fn the_javascript_enrich_passes_its_golden_cases() {
    let s = Scratch::new();
    let wasm = crate::support::js_plugin("enrich");
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins-js/enrich/tests/cases");
    let cache = crate::support::shared_cache();
    let run = s.host_test(&wasm, &cases, &["--cache-dir", path_str(&cache)]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.stderr.contains("10 cases passed"), "{}", run.stderr);
}

#[test]
fn the_python_enrich_passes_its_golden_cases() {
    // The Rust enrich's cases, with the Python SDK's own error messages: the same
    // outputs, dead-letter kinds and drops.
    let s = Scratch::new();
    let wasm = python_plugin("enrich");
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins-python/enrich/tests/cases");
    let cache = crate::support::shared_cache();
    let run = s.host_test(&wasm, &cases, &["--cache-dir", path_str(&cache)]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.stderr.contains("3 cases passed"), "{}", run.stderr);
}

#[test]
fn a_case_that_no_longer_matches_fails_with_a_diff_until_updated() {
    let s = Scratch::new();
    let cases = s.path("cases");
    std::fs::create_dir(&cases).expect("mkdir");
    let case = cases.join("currency.json");
    let text = std::fs::read_to_string(cases_of("enrich").join("currency.json")).expect("read");
    assert!(text.contains("\"currency\": \"USD\""), "{text}");
    // What the plugin made last time, says the case; it makes USD now.
    std::fs::write(
        &case,
        text.replace("\"currency\": \"USD\",", "\"currency\": \"GBP\","),
    )
    .expect("write");
    std::fs::write(cases.join("new.json"), r#"{"input": [{"id": "n"}]}"#).expect("write");
    let wasm = plugin("enrich");
    let test = |extra: &[&str]| s.host_test(&wasm, &cases, extra);
    let run = test(&[]);
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("FAILED  currency.json"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("-         \"currency\": \"GBP\","),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("+         \"currency\": \"USD\","),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("FAILED  new.json"), "{}", run.stderr);
    assert!(run.stderr.contains("run with --update"), "{}", run.stderr);
    assert!(run.stderr.contains("2 of 2 cases failed"), "{}", run.stderr);

    let run = test(&["--update"]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.stderr.contains("2 cases, 2 updated"), "{}", run.stderr);
    let updated: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cases.join("new.json")).expect("read"))
            .expect("JSON");
    assert_eq!(
        updated["expect"]["dead_letters"][0]["kind"], "domain",
        "{updated}"
    );
    assert!(test(&[]).status.success());
}
