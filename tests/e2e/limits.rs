//! The sandbox's limits, driven through the real binary with the misbehaving plugin:
//! the host survives every failure and every record is accounted for.

use std::path::Path;

use crate::support::{Scratch, text};

#[test]
fn every_kind_of_misbehaviour_fails_only_its_own_record() {
    let s = Scratch::new();
    let input = s.write(
        "in.txt",
        "echo\npanic\necho\nloop\necho\nalloc\necho\nhuge\nfail\nflaky\ndrop\nlog\n",
    );
    let run = s
        .run("misbehave")
        .input(&input)
        .format("lines")
        .flag("--deadline-ms", "200")
        .flag("--memory-mib", "32")
        .flag("--retry-base-ms", "1")
        .emit("payload")
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [12, 5, 1, 6]);
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        ["echo", "echo", "echo", "echo", "log"]
    );
    let kinds = s.dead_letters();
    let expected = [
        ("panic", "trap"),
        ("loop", "deadline"),
        ("alloc", "memory-limit"),
        ("huge", "output-too-large"),
        ("fail", "domain"),
        ("flaky", "infrastructure"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(p, k)| (p.to_string(), k.to_string()))
        .collect();
    assert_eq!(kinds, expected);
    let dlq = s.json_lines("dlq.jsonl");
    assert!(
        text(&dlq[0]["error"]["message"], "the DLQ entry's error.message")
            .contains("misbehave: asked to panic"),
        "the panic message reaches the DLQ: {}",
        dlq[0]
    );
    assert_eq!(
        dlq[5]["attempts"], 3,
        "infrastructure errors are retried up to max-attempts"
    );
    assert_eq!(run.count("counter.logged"), 1, "{}", run.stderr);
}

#[test]
fn a_poison_record_in_a_large_batch_is_isolated_by_bisection() {
    let s = Scratch::new();
    let mut lines: Vec<&str> = vec!["echo"; 200];
    lines[137] = "panic";
    let input = s.write("in.txt", &lines.join("\n"));
    let run = s
        .run("misbehave")
        .input(&input)
        .format("lines")
        .flag("--batch-size", "200")
        .emit("payload")
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [200, 199, 0, 1]);
    assert_eq!(run.stdout.lines().count(), 199);
    let dlq = s.json_lines("dlq.jsonl");
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["record"]["attributes"]["line"], "138");
    // One failed call per level of the bisection, never one per record.
    let traps = run.count("traps");
    assert!((1..=9).contains(&traps), "traps={traps}: {}", run.stderr);
}

#[test]
fn init_that_refuses_or_traps_stops_the_run_before_any_output() {
    let s = Scratch::new();
    let input = s.write("in.txt", "echo\n");
    s.run("misbehave")
        .input(&input)
        .format("lines")
        .config("init=fail")
        .output(Path::new("out.jsonl"))
        .go()
        .assert_error("refused its configuration: misbehave: init refused by config");
    s.run("misbehave")
        .input(&input)
        .format("lines")
        .config("init=panic")
        .go()
        .assert_error("failed to start");
    assert!(!s.path("out.jsonl").exists());
}

#[test]
fn validate_refuses_a_bad_setting_at_init() {
    let s = Scratch::new();
    let input = s.write("in.jsonl", "{}\n");
    s.run("validate")
        .input(&input)
        .config("max_amount=lots")
        .go()
        .assert_error("max_amount");
}

#[test]
fn a_trap_does_not_carry_what_an_earlier_record_wrote_to_stderr() {
    let s = Scratch::new();
    let input = s.write("in.txt", "noisy\nloop\n");
    let run = s
        .run("misbehave")
        .input(&input)
        .format("lines")
        .flag("--deadline-ms", "200")
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [2, 1, 0, 1]);
    let dlq = s.json_lines("dlq.jsonl");
    let message = text(&dlq[0]["error"]["message"], "the trap's message");
    assert!(message.contains("CPU deadline"), "{message}");
    assert!(
        !message.contains("noise from another record"),
        "another record's stderr blamed on this one: {message}"
    );
}

#[test]
fn a_plugin_cannot_flood_or_forge_host_log_lines() {
    let s = Scratch::new();
    let input = s.write("in.txt", "flood\n");
    let run = s
        .run("misbehave")
        .input(&input)
        .format("lines")
        .env("HOST_LOG", "info")
        .go();
    run.assert_ok();
    let plugin_lines = run.stderr.lines().filter(|l| l.contains("flood ")).count();
    assert_eq!(plugin_lines, 100, "{}", run.stderr);
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.starts_with("forged host line")),
        "a plugin line broke into a second host line"
    );
    assert!(run.stderr.contains("the rest of this call's are dropped"));
}

#[test]
fn a_record_broken_by_an_earlier_one_gets_a_fresh_instance_before_it_is_blamed() {
    let s = Scratch::new();
    // `poison` breaks the instance; `check` then panics on it, but not on a fresh one.
    let input = s.write("in.txt", "poison\ncheck\n");
    let out = s.path("out.jsonl");
    let run = s
        .run("misbehave")
        .input(&input)
        .format("lines")
        .output(&out)
        .emit("payload")
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [2, 2, 0, 0]);
    assert_eq!(
        std::fs::read_to_string(&out).expect("outputs"),
        "poison\ncheck\n"
    );
}

#[test]
fn a_plugin_that_sleeps_is_stopped_at_its_deadline() {
    // A sleep blocks in WASI, where the CPU deadline does not reach: the host's poll
    // gives up at the call's deadline instead of waiting the 20 s out (which would
    // echo the record).
    let s = Scratch::new();
    let input = s.write("in.txt", "echo\nsleep\necho\n");
    let run = s
        .run("misbehave")
        .input(&input)
        .format("lines")
        .flag("--deadline-ms", "500")
        .emit("payload")
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [3, 2, 0, 1]);
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), ["echo", "echo"]);
    // About one deadline more than the batch's: after the batch call runs out of time
    // the records go one at a time, and only the sleeper's call runs out again (halving
    // would have run into it once per level).
    assert_eq!(run.count("traps"), 2, "{}", run.stderr);
    assert_eq!(run.count("calls"), 4, "{}", run.stderr);
    let dlq = s.json_lines("dlq.jsonl");
    assert_eq!(
        s.dead_letters(),
        [("sleep".to_owned(), "deadline".to_owned())]
    );
    assert!(
        text(&dlq[0]["error"]["message"], "the DLQ entry's error.message")
            .contains("blocked in WASI"),
        "{}",
        dlq[0]
    );
}

#[test]
fn isolating_records_that_all_stall_has_a_bound() {
    // Every record sleeps: isolating them would cost a whole deadline per record. After
    // 8 calls into the deadline the records left fail together, saying why.
    let s = Scratch::new();
    let input = s.write("in.txt", &["sleep"; 16].join("\n"));
    let run = s
        .run("misbehave")
        .input(&input)
        .format("lines")
        .flag("--deadline-ms", "100")
        .flag("--batch-size", "16")
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [16, 0, 0, 16]);
    // The batch's call, then one call per record until 8 calls ran into the deadline.
    assert_eq!(run.count("calls"), 8, "{}", run.stderr);
    let dlq = s.json_lines("dlq.jsonl");
    assert!(
        dlq.iter().all(|e| e["error"]["kind"] == "deadline"),
        "{dlq:?}"
    );
    assert!(
        dlq.iter()
            .any(|e| text(&e["error"]["message"], "message").contains("not isolated")),
        "{dlq:?}"
    );
}

#[test]
fn isolating_records_that_fail_just_short_of_the_deadline_has_a_bound() {
    // Every record spins 150 ms of a 200 ms deadline, then panics: no call runs into
    // the deadline, yet isolating 40 such records by halves would take 79 calls (12 s).
    // Failed calls spend the batch's allowance of 8 deadlines (1.6 s) by the time they
    // take: each takes at least 150 ms, so at most 11 calls are made.
    let s = Scratch::new();
    let input = s.write("in.txt", &["slowpanic"; 40].join("\n"));
    let run = s
        .run("misbehave")
        .input(&input)
        .format("lines")
        .flag("--deadline-ms", "200")
        .flag("--batch-size", "40")
        .config("spin_ms=150")
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [40, 0, 0, 40]);
    let calls = run.count("calls");
    assert!((2..=11).contains(&calls), "{calls} calls: {}", run.stderr);
    let dlq = s.json_lines("dlq.jsonl");
    assert_eq!(dlq.len(), 40);
    assert!(
        dlq.iter()
            .any(|e| text(&e["error"]["message"], "message").contains("allowance of 8 deadlines")),
        "{dlq:?}"
    );
}

#[test]
fn output_is_capped_per_record_and_per_call() {
    // `fanout` makes 600 outputs of 1 KiB: one fits a 1 MiB call, two do not; with 500
    // outputs allowed per record, none does.
    let s = Scratch::new();
    let input = s.write("in.txt", "fanout\nfanout\necho\n");
    let run = s
        .run("misbehave")
        .input(&input)
        .format("lines")
        .flag("--max-call-output-bytes", "1048576")
        .emit("payload")
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [3, 2, 0, 1]);
    assert_eq!(run.stdout.lines().count(), 601, "{}", run.stderr);
    let dlq = s.json_lines("dlq.jsonl");
    assert_eq!(
        s.dead_letters(),
        [("fanout".to_owned(), "output-too-large".to_owned())]
    );
    let message = text(&dlq[0]["error"]["message"], "message");
    assert!(
        message.contains("max-call-output-bytes=1048576"),
        "{message}"
    );

    let s = Scratch::new();
    let input = s.write("in.txt", "fanout\necho\n");
    let run = s
        .run("misbehave")
        .input(&input)
        .format("lines")
        .flag("--max-outputs-per-record", "500")
        .go();
    run.assert_ok();
    assert_eq!(run.balanced(), [2, 1, 0, 1]);
    let message = text(&s.json_lines("dlq.jsonl")[0]["error"]["message"], "message").to_owned();
    assert!(
        message.contains("600 outputs exceed max-outputs-per-record=500"),
        "{message}"
    );
}

#[test]
fn crafted_batch_tables_fail_only_their_own_record() {
    // `hostile` answers below the guest SDK: an output count of 0xFFFF_FFFF, 300 outputs
    // aliasing one 1 MiB span (300 MiB once copied), a failure for a record that is not
    // there. The host survives each, and only the guilty record reaches the DLQ.
    let s = Scratch::new();
    let input = s.write("in.txt", "one\ncount\ntwo\nalias\nstray\nthree\n");
    let run = s.run("hostile").input(&input).format("lines").go();
    run.assert_ok();
    assert_eq!(run.balanced(), [6, 0, 3, 3]);
    let kinds = s.dead_letters();
    assert_eq!(
        kinds,
        [
            ("count".to_owned(), "contract".to_owned()),
            ("alias".to_owned(), "output-too-large".to_owned()),
            ("stray".to_owned(), "contract".to_owned()),
        ]
    );
    let dlq = s.json_lines("dlq.jsonl");
    let messages: Vec<&str> = dlq
        .iter()
        .map(|e| text(&e["error"]["message"], "message"))
        .collect();
    assert!(
        messages[0].contains("outside the output table"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("max-call-output-bytes"),
        "{messages:?}"
    );
    assert!(
        messages[2].contains("failure for record 1000000"),
        "{messages:?}"
    );
}

/// `host run` of `plugin` over `lines` with `extra` flags and `--summary json`: the
/// summary, parsed.
fn json_summary(plugin: &str, lines: &str, extra: &[&str]) -> serde_json::Value {
    let s = Scratch::new();
    let input = s.write("in.txt", lines);
    let run = s
        .run(plugin)
        .input(&input)
        .format("lines")
        .summary_json()
        .output(&s.path("out.jsonl"))
        .args(extra)
        .go();
    run.assert_ok();
    run.summary()
}

fn peak_memory(summary: &serde_json::Value) -> u64 {
    summary["peak_memory_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no peak_memory_bytes: {summary}"))
}

#[test]
fn the_json_summary_counts_what_the_run_did() {
    let summary = json_summary("misbehave", "echo\nfail\nmetrics\npanic\n", &[]);
    assert_eq!(
        (
            &summary["in"],
            &summary["transformed"],
            &summary["failed"],
            &summary["outputs"]
        ),
        (&4.into(), &2.into(), &2.into(), &2.into()),
        "{summary}"
    );
    assert_eq!(summary["failed_by_kind"]["domain"], 1, "{summary}");
    assert_eq!(summary["failed_by_kind"]["trap"], 1, "{summary}");
    assert_eq!(summary["outputs_by_sink"]["file"], 2, "{summary}");
    let stage = &summary["stages"][0];
    assert_eq!(stage["plugin"], "misbehave@0.1.0");
    assert_eq!(stage["counters"]["seen"], 1, "{summary}");
    assert_eq!(stage["gauges"]["level"], 7.5, "{summary}");
    assert_eq!(
        stage["metrics_dropped"], 2,
        "the invalid name, the counter's name as a gauge: {summary}"
    );
    assert!(stage["traps"].as_u64().is_some_and(|t| t >= 1), "{summary}");
    assert!(peak_memory(&summary) > 0);
}

#[test]
fn host_memory_stays_within_the_caps_whatever_the_plugin_asks() {
    // The same host and plugin doing nothing much: the baseline.
    let base = peak_memory(&json_summary(
        "misbehave",
        "echo\necho\n",
        &["--memory-mib", "64"],
    ));
    // `alloc` grows its memory without end (4 GiB is Wasm's own bound): the 64 MiB cap
    // stops it, and the host holds no more than that on its behalf.
    let alloc = json_summary("misbehave", "echo\nalloc\necho\n", &["--memory-mib", "64"]);
    assert_eq!(alloc["failed_by_kind"]["memory-limit"], 1, "{alloc}");
    let mib = 1 << 20;
    assert!(
        peak_memory(&alloc) <= base + 64 * mib + 32 * mib,
        "peak {} MiB over a {} MiB baseline with a 64 MiB cap",
        peak_memory(&alloc) / mib,
        base / mib
    );
    // `alias` claims 300 outputs that are one 1 MiB span: 300 MiB if the host copied
    // them. The call's output cap refuses it before anything is copied.
    let alias = json_summary("hostile", "one\nalias\n", &[]);
    assert_eq!(alias["failed_by_kind"]["output-too-large"], 1, "{alias}");
    let base = peak_memory(&json_summary("hostile", "one\ntwo\n", &[]));
    assert!(
        peak_memory(&alias) <= base + 32 * mib,
        "peak {} MiB over a {} MiB baseline",
        peak_memory(&alias) / mib,
        base / mib
    );
    // `attrs` answers one output whose 4096 attributes and destination all alias one
    // 1 MiB span (64 KiB of table in the guest): 8 GiB of host strings if copied, which
    // took `host run` to 4.2 GB before attributes were capped and counted.
    let attrs = json_summary("hostile", "one\nattrs\ntwo\n", &[]);
    assert_eq!(attrs["failed_by_kind"]["output-too-large"], 1, "{attrs}");
    assert_eq!(attrs["in"], 3, "{attrs}");
    assert!(
        peak_memory(&attrs) <= base + 32 * mib,
        "peak {} MiB over a {} MiB baseline",
        peak_memory(&attrs) / mib,
        base / mib
    );
}
