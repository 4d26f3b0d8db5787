//! Plugins chained in one host: validate -> enrich -> route, with each stage's counts
//! and every input accounted for once; and `host run` reusing precompiled plugins.

use serde_json::Value;

use crate::support::{Scratch, text};

#[test]
fn a_chain_feeds_each_stage_into_the_next_and_accounts_per_stage() {
    let s = Scratch::new();
    let input = s.write(
        "events.jsonl",
        concat!(
            r#"{"id":"a1","user":"ann","action":"buy","amount":12.5,"ts":"2026-11-24T13:00:00Z"}"#, "\n",
            r#"{"id":"a2","user":"bob","action":"view","amount":0,"ts":"2026-11-24T13:00:01Z"}"#, "\n",
            r#"{"id":"a3","user":"cy","action":"buy","amount":1,"ts":"2026-11-24T13:00:02Z","test":true}"#, "\n",
            r#"{"id":"a4","user":"dee","action":"buy","amount":-5,"ts":"2026-11-24T13:00:03Z"}"#, "\n",
            r#"{"id":"a5","user":"eve","action":"buy","amount":3,"ts":"bad"}"#, "\n",
            "not json\n",
        ),
    );
    let output = s.path("out.jsonl");
    let run = s
        .run("validate")
        .plugin("enrich")
        .plugin("route")
        .config("audit=true")
        .config("route.buy=purchases")
        .input(&input)
        .output(&output)
        .go();
    run.assert_ok();
    // a1, a2 through; a3 dropped by validate; a4 refused by validate, a5 by enrich; the
    // last line never decodes.
    assert_eq!(run.balanced(), [6, 2, 1, 3], "{}", run.stderr);
    assert_eq!(run.count("outputs"), 4, "route fans each record out to two");
    for stage in [
        "[validate@0.1.0: in=5 out=3 dropped=1 failed=1 calls=1 traps=0",
        "[enrich@0.1.0: in=3 out=2 dropped=0 failed=1 calls=1 traps=0",
        "[route@0.1.0: in=2 out=4 dropped=0 failed=0 calls=1 traps=0",
    ] {
        assert!(run.stderr.contains(stage), "{stage} in {}", run.stderr);
    }

    let outputs = s.json_lines("out.jsonl");
    assert_eq!(outputs.len(), 4);
    let a1: Vec<&Value> = outputs
        .iter()
        .filter(|o| o["payload"]["id"] == "a1")
        .collect();
    assert_eq!(a1.len(), 2);
    // enrich's projection, seen through route; the file source's attribute survived two
    // stages; enrich's key (the user) is kept by route, which sets none.
    assert_eq!(a1[0]["payload"]["amount_cents"], 1250);
    assert_eq!(a1[0]["payload"]["source"], "file");
    assert_eq!(a1[0]["key"], "ann");
    let mut destinations: Vec<&str> = a1
        .iter()
        .map(|o| text(&o["destination"], "the output's destination"))
        .collect();
    destinations.sort_unstable();
    assert_eq!(destinations, ["audit", "purchases"]);

    let failed: Vec<(String, String)> = s
        .json_lines("dlq.jsonl")
        .iter()
        .map(|e| {
            (
                text(&e["plugin"]["name"], "the DLQ entry's plugin.name").to_owned(),
                text(&e["error"]["kind"], "the DLQ entry's error.kind").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        [
            ("validate".to_owned(), "domain".to_owned()),
            ("enrich".to_owned(), "domain".to_owned()),
            ("validate".to_owned(), "decode".to_owned()),
        ],
        "each entry names the stage that failed it, with the original record"
    );
    let dlq = s.json_lines("dlq.jsonl");
    let original: Value = serde_json::from_str(text(
        &dlq[1]["record"]["payload"],
        "the DLQ entry's record.payload",
    ))
    .expect("JSON");
    assert_eq!(
        original["ts"], "bad",
        "the DLQ holds the input, not an intermediate record"
    );
}

#[test]
fn host_run_with_a_cache_dir_compiles_once() {
    let s = Scratch::new();
    let input = s.write(
        "events.jsonl",
        r#"{"id":"a1","user":"ann","action":"buy","amount":12.5,"ts":"2026-11-24T13:00:00Z"}"#,
    );
    let cache = s.path("cache");
    let run = |name: &str| {
        let output = s.path(name);
        let run = s
            .run("enrich")
            .input(&input)
            .output(&output)
            .cache_dir(&cache)
            .env("HOST_LOG", "debug")
            .go();
        run.assert_ok();
        (run.stderr, std::fs::read_to_string(output).expect("output"))
    };
    let (first, first_out) = run("first.jsonl");
    assert!(first.contains("cache=\"miss\""), "{first}");
    let entries = std::fs::read_dir(&cache).expect("cache dir").count();
    assert_eq!(entries, 1, "one precompiled entry");
    let (second, second_out) = run("second.jsonl");
    assert!(second.contains("cache=\"hit\""), "{second}");
    assert_eq!(first_out, second_out);
}
