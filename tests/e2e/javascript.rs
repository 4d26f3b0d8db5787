//! Plugins written in JavaScript (`plugins-js/enrich`, on `guest-sdk-js`, built with
//! componentize-js): the same outputs as the Rust `enrich`, byte for byte, where
//! JavaScript's numbers would differ (halves, integers past 2^53, an i64 saturated); an
//! uncaught exception isolated like a panic; the JS version swapped in for the Rust one;
//! the SDK's and the plugin's own tests on Node.js.

use std::path::Path;
use std::process::Command;

use crate::support::{Scratch, js_plugin, path_str};

#[test]
fn the_javascript_enrich_matches_the_rust_enrich_byte_for_byte() {
    // Beyond the Python enrich's edge cases, JavaScript's own: halves past the cents
    // (its `Math.round` rounds them up), cents past 2^53 and past an i64 going down (its
    // numbers print such integers rounded), control and separator characters, a key
    // JavaScript orders first (integer-like), a byte order mark (JSON refuses it).
    crate::guests::assert_same_as_the_rust_enrich(
        &js_plugin("enrich"),
        "JavaScript",
        &[
            r#"{"id":"h15","user":"u","action":"buy","amount":-2.5,"ts":"2026-11-24"}"#,
            r#"{"id":"h16","user":"u","action":"buy","amount":92233720368547758.07,"ts":"2026-11-24"}"#,
            r#"{"id":"h17","user":"u","action":"buy","amount":-1e19,"ts":"2026-11-24"}"#,
            r#"{"id":"h18","user":"u\u0001\u007f\u2028","action":"buy","amount":0.005,"ts":"2026-11-24","1":"x"}"#,
            "\u{feff}{\"id\":\"h19\",\"user\":\"u\",\"action\":\"buy\",\"amount\":1,\"ts\":\"2026-11-24\"}",
            r#"{"id":"h20","user":"u","action":"buy","amount":10000000000000000,"ts":"2026-11-24"}"#,
        ],
    );
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
        // The files by a glob: Node 21 and later take `--test`'s arguments as globs.
        let out = Command::new("sh")
            .args(["-c", "node --test test/*.test.js"])
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
    crate::guests::swapped_in_for_the_rust_enrich(&js_plugin("enrich")).await;
}
