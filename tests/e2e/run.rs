//! `host run` with the example plugins: outputs, drops, DLQ, formats and bad input.

use std::path::Path;

use crate::support::{Scratch, parse_lines, path_str, text};

const EVENTS: &str = include_str!("../../examples/events.jsonl");

#[test]
fn enrich_transforms_valid_events_and_dead_letters_the_rest() {
    let s = Scratch::new();
    let input = s.write("events.jsonl", EVENTS);
    let run = s
        .run("enrich")
        .input(&input)
        .config("currency=USD")
        .output(Path::new("out.jsonl"))
        .go();
    run.assert_ok();
    // 8 events: the non-JSON line fails decoding, e7 has no amount (domain error).
    assert_eq!(run.balanced(), [8, 6, 0, 2]);
    let outputs = s.json_lines("out.jsonl");
    assert_eq!(outputs.len(), 6);
    assert_eq!(outputs[0]["payload"]["amount_cents"], 1250);
    assert_eq!(outputs[0]["payload"]["currency"], "USD");
    assert_eq!(outputs[0]["payload"]["source"], "file");
    assert_eq!(outputs[0]["key"], "ann");
    let dlq = s.json_lines("dlq.jsonl");
    let kinds: Vec<_> = dlq
        .iter()
        .map(|e| text(&e["error"]["kind"], "the DLQ entry's error.kind"))
        .collect();
    assert_eq!(kinds, ["decode", "domain"]);
    assert_eq!(dlq[0]["record"]["payload"], "this line is not JSON");
    assert_eq!(dlq[0]["record"]["attributes"]["line"], "6");
    assert!(
        text(&dlq[1]["error"]["message"], "the DLQ entry's error.message").contains("amount"),
        "{}",
        dlq[1]
    );
    assert_eq!(dlq[1]["plugin"]["name"], "enrich");
    assert_eq!(dlq[1]["plugin"]["version"], "0.1.0");
    assert_eq!(dlq[1]["attempts"], 1);
}

#[test]
fn validate_drops_test_events_and_names_the_broken_rule() {
    let s = Scratch::new();
    let input = s.write("events.jsonl", EVENTS);
    let run = s
        .run("validate")
        .input(&input)
        .emit("payload")
        .flag("--batch-size", "3")
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [8, 2, 1, 5]);
    // Payload mode writes each output's bytes unchanged.
    let outputs = parse_lines(&run.stdout);
    assert_eq!(
        outputs.iter().map(|o| o["id"].clone()).collect::<Vec<_>>(),
        ["e1", "e2"]
    );
    let messages: Vec<String> = s
        .json_lines("dlq.jsonl")
        .iter()
        .map(|e| text(&e["error"]["message"], "the DLQ entry's error.message").to_owned())
        .collect();
    assert_eq!(messages.len(), 5);
    assert_eq!(messages[0], "missing `id`");
    assert!(
        messages[1].contains("e5: amount -20 outside"),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("e8: amount 250000 outside")),
        "{messages:?}"
    );
}

#[test]
fn route_sends_records_to_named_destinations_with_fan_out() {
    let s = Scratch::new();
    let input = s.write("events.jsonl", EVENTS);
    let run = s
        .run("route")
        .input(&input)
        .config("route.buy=orders")
        .config("audit=true")
        .go();
    run.assert_ok();
    let [input_count, transformed, _, failed] = run.balanced();
    assert_eq!((input_count, transformed, failed), (8, 7, 1));
    assert_eq!(run.count("outputs"), 14);
    let outputs = parse_lines(&run.stdout);
    let destinations: Vec<_> = outputs
        .iter()
        .map(|o| o["destination"].as_str().unwrap_or("default"))
        .collect();
    assert_eq!(destinations.iter().filter(|d| **d == "audit").count(), 7);
    assert_eq!(destinations.iter().filter(|d| **d == "orders").count(), 4);
    assert_eq!(outputs[0]["attributes"]["action"], "buy");
}

#[test]
fn csv_from_stdin_becomes_json_records() {
    let s = Scratch::new();
    let run = s
        .run("route")
        .stdin("action,user\nbuy,ann\nview\nview,bob\n")
        .format("csv")
        .emit("payload")
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [3, 2, 0, 1]);
    assert_eq!(
        run.stdout.lines().next(),
        Some(r#"{"action":"buy","user":"ann"}"#)
    );
    let dlq = s.json_lines("dlq.jsonl");
    assert_eq!(dlq[0]["error"]["kind"], "decode");
    assert!(
        text(&dlq[0]["error"]["message"], "the DLQ entry's error.message").contains("CSV line 3"),
        "{}",
        dlq[0]
    );
}

#[test]
fn bad_flags_fail_with_the_setting_named_and_nothing_written() {
    let s = Scratch::new();
    let input = s.write("events.jsonl", EVENTS);
    s.run("enrich")
        .input(&input)
        .flag("--batch-size", "0")
        .output(Path::new("out.jsonl"))
        .go()
        .assert_error("batch-size");
    s.run("enrich")
        .input(&input)
        .config("novalue")
        .go()
        .assert_error("expected KEY=VALUE");
    assert!(!s.path("out.jsonl").exists() && !s.path("dlq.jsonl").exists());
}

#[test]
fn missing_input_and_missing_plugin_are_named() {
    let s = Scratch::new();
    let missing = s.path("nope.jsonl");
    s.run("enrich")
        .input(&missing)
        .go()
        .assert_error("cannot open input");
    let input = s.write("events.jsonl", EVENTS);
    s.run("/nonexistent/p.wasm")
        .input(&input)
        .go()
        .assert_error("cannot read plugin /nonexistent/p.wasm");
    assert!(!s.path("dlq.jsonl").exists());
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let s = Scratch::new();
    let input = s.write("events.jsonl", EVENTS);
    for (name, bytes, reason) in [
        (
            "core.wasm",
            &b"\0asm\x01\0\0\0"[..],
            "it is a core wasm module",
        ),
        ("text.wasm", &b"hello"[..], "not a WebAssembly component"),
    ] {
        let path = s.path(name);
        std::fs::write(&path, bytes).expect("write");
        s.run(path_str(&path))
            .input(&input)
            .go()
            .assert_error(reason);
    }
}

#[test]
fn a_component_of_another_world_is_refused() {
    let s = Scratch::new();
    let input = s.write("events.jsonl", EVENTS);
    // The smallest valid component: the header alone. It exports nothing.
    let path = s.path("empty-component.wasm");
    std::fs::write(&path, b"\0asm\x0d\0\x01\0").expect("write");
    s.run(path_str(&path))
        .input(&input)
        .go()
        .assert_error("does not export the world `transform`");
}

#[test]
fn a_captured_kinesis_event_replays_locally() {
    let s = Scratch::new();
    let event = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/kinesis-event.json");
    for format in ["kinesis-event", "event"] {
        let run = s
            .run("enrich")
            .input(&event)
            .format(format)
            .emit("payload")
            .go();
        run.assert_ok();
        assert_eq!(run.balanced(), [4, 2, 0, 2]);
        let outputs = parse_lines(&run.stdout);
        assert_eq!(
            outputs[1]["id"], "k2",
            "the gzip-compressed record is inflated"
        );
        assert_eq!(outputs[0]["source"], "kinesis");
    }
    let sqs =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sqs-event.json");
    s.run("enrich")
        .input(&sqs)
        .format("kinesis-event")
        .go()
        .assert_error("not a Kinesis event");
}

#[test]
fn a_cache_directory_others_may_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt as _;
    // Precompiled plugins are native code: one another user could have planted is never
    // loaded. The run compiles instead, saying why.
    let s = Scratch::new();
    let cache = s.path("shared-cache");
    std::fs::create_dir(&cache).expect("mkdir");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let input = s.write("in.jsonl", "{\"id\":1}\n");
    let run = s.run("misbehave").input(&input).cache_dir(&cache).go();
    run.assert_ok();
    assert!(
        run.stderr
            .contains("group or others may write it (mode 777)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_dir(&cache).expect("list").count(),
        0,
        "nothing stored"
    );
    assert!(run.stdout.contains("{\"id\":1}"), "{}", run.stdout);
}

/// `--output -` is stdout, as `--input -` is stdin (not a file named `-`).
#[test]
fn output_dash_is_stdout() {
    let s = Scratch::new();
    let run = s
        .run("misbehave")
        .stdin("one\ntwo\n")
        .format("lines")
        .flag("--output", "-")
        .emit("payload")
        .go();
    run.assert_ok();
    assert_eq!(run.stdout, "one\ntwo\n", "{}", run.stderr);
    assert!(!s.path("-").exists());
}

/// The binary's allocator commits its arenas as they are used (mimalloc's default commits
/// them eagerly, which doubled `host run`'s resident memory): the setting is made before
/// `main`, from the library, and this checks it reached the binary that ships.
#[test]
fn the_host_commits_allocator_memory_as_it_is_used() {
    let s = Scratch::new();
    let run = s.host_with_env(&["--help"], None, &[("MIMALLOC_VERBOSE", "1".into())]);
    run.assert_ok();
    let setting = run
        .stderr
        .lines()
        .find(|line| line.contains("option 'arena_eager_commit'"))
        .unwrap_or_else(|| panic!("mimalloc printed no options:\n{}", run.stderr));
    assert!(setting.trim_end().ends_with(": 0"), "{setting}");
}
