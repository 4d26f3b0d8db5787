//! Components with more memories, tables and instances than their language gives them:
//! the memory cap is the plugin's total, and the numbers of memories, tables, table
//! elements and instances are bounded, whatever the component declares. The components
//! are assembled here from a real plugin and extra core instances, then run through the
//! real binary.

use crate::support::{Scratch, path_str, plugin};

/// `value` as unsigned LEB128.
fn leb(mut value: u32, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(u32::try_from(content.len()).expect("a small section"), out);
    out.extend_from_slice(content);
}

/// What each extra core module holds.
#[derive(Clone, Copy)]
enum Holds {
    /// One memory of this many 64 KiB pages.
    Memory(u32),
    /// `funcref` tables: how many, and their elements each.
    Tables(u32, u32),
    /// Nothing (an instance is all it costs).
    Nothing,
}

/// A core module holding `holds`, e.g. `(module (memory PAGES))`.
fn core_module(holds: Holds) -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    match holds {
        Holds::Memory(pages) => {
            let mut memories = vec![1, 0x00];
            leb(pages, &mut memories);
            section(5, &memories, &mut module);
        }
        Holds::Tables(count, elements) => {
            let mut tables = Vec::new();
            leb(count, &mut tables);
            for _ in 0..count {
                tables.extend([0x70, 0x00]);
                leb(elements, &mut tables);
            }
            section(4, &tables, &mut module);
        }
        Holds::Nothing => {}
    }
    module
}

/// The core modules a component defines at its top level (nested ones aside).
fn top_level_modules(component: &[u8]) -> u32 {
    let mut depth = 0u32;
    let mut modules = 0;
    // Every module or component, nested or not, starts with `Version` and ends with `End`.
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        match payload.expect("a valid component") {
            wasmparser::Payload::ModuleSection { .. } if depth == 1 => modules += 1,
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth -= 1,
            _ => {}
        }
    }
    modules
}

/// `name`'s component with `extra` more core instances, each of a module holding
/// `holds`: the component's exports are untouched, so the host takes it as the same
/// plugin, and instantiating it makes every one of those instances.
fn with_instances(name: &str, extra: u32, holds: Holds) -> Vec<u8> {
    let mut component = std::fs::read(plugin(name)).expect("read the plugin");
    let first = top_level_modules(&component);
    let module = core_module(holds);
    let mut instances = Vec::new();
    leb(extra, &mut instances);
    for i in 0..extra {
        section(1, &module, &mut component);
        instances.push(0x00);
        leb(first + i, &mut instances);
        leb(0, &mut instances);
    }
    section(2, &instances, &mut component);
    component
}

#[test]
fn the_memory_cap_counts_every_memory_of_a_component() {
    // Two more memories of 50 MiB: each fits an 80 MiB cap, the three together do not.
    refused_at_start(
        with_instances("misbehave", 2, Holds::Memory(800)),
        &["--memory-mib", "80"],
        "memory limit of 83886080 bytes exceeded",
    );

    let s = Scratch::new();
    // One more memory of 50 MiB fits; the plugin's own then has 30 MiB left, and the
    // record that grows it without end is the only one to fail.
    let wasm = s.path("one-more-memory.wasm");
    std::fs::write(&wasm, with_instances("misbehave", 1, Holds::Memory(800))).expect("write");
    let input = s.write("in.txt", "echo\nalloc\necho\n");
    let run = s
        .run(path_str(&wasm))
        .input(&input)
        .format("lines")
        .flag("--memory-mib", "80")
        .emit("payload")
        .summary_json()
        .output(&s.path("out.jsonl"))
        .go();
    assert!(run.status.success(), "{}", run.stderr);
    let summary = run.summary();
    assert_eq!(summary["transformed"], 2, "{summary}");
    assert_eq!(summary["failed_by_kind"]["memory-limit"], 1, "{summary}");
}

/// `host run` of `component` over one record with `extra` flags: it must be refused at
/// start, with an error saying `reason`, and write nothing.
fn refused_at_start(component: Vec<u8>, extra: &[&str], reason: &str) {
    let s = Scratch::new();
    let wasm = s.path("crafted.wasm");
    std::fs::write(&wasm, component).expect("write");
    let input = s.write("in.txt", "echo\n");
    let run = s
        .run(path_str(&wasm))
        .input(&input)
        .format("lines")
        .args(extra)
        .go();
    assert!(!run.status.success(), "{}", run.stderr);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(run.stderr.contains(reason), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn a_component_past_the_memories_tables_or_instances_allowed_is_refused_at_start() {
    // 8 memories, 64 tables, 64 instances, 1,000,000 elements per table.
    refused_at_start(
        with_instances("misbehave", 9, Holds::Memory(1)),
        &[],
        "memory count too high",
    );
    refused_at_start(
        with_instances("misbehave", 1, Holds::Tables(70, 1)),
        &[],
        "table count too high",
    );
    refused_at_start(
        with_instances("misbehave", 70, Holds::Nothing),
        &[],
        "instance count too high",
    );
    refused_at_start(
        with_instances("misbehave", 1, Holds::Tables(1, 2_000_000)),
        &[],
        "table minimum size of 2000000 elements exceeds table limits",
    );
}

#[test]
fn tables_count_toward_the_memory_cap() {
    // Tables live in host memory, outside any linear memory: 60 tables of a million
    // elements (~480 MiB of host memory at 8 bytes an element) within the count limits
    // would pass a cap that saw only memories. They are counted at 8 bytes an element.
    refused_at_start(
        with_instances("misbehave", 1, Holds::Tables(60, 1_000_000)),
        &[],
        "memory limit of 134217728 bytes exceeded",
    );
    // Two tables of a million elements (16 MB) fit the default 128 MiB cap beside the
    // plugin's own memory: tables are counted, not refused.
    let s = Scratch::new();
    let wasm = s.path("tables.wasm");
    std::fs::write(
        &wasm,
        with_instances("misbehave", 1, Holds::Tables(2, 1_000_000)),
    )
    .expect("write");
    let input = s.write("in.txt", "echo\n");
    let run = s
        .run(path_str(&wasm))
        .input(&input)
        .format("lines")
        .emit("payload")
        .output(&s.path("out.jsonl"))
        .go();
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(s.path("out.jsonl")).expect("the output"),
        "echo\n"
    );
}
