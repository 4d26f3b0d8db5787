//! Components with more linear memories than their language gives them: the memory cap
//! is the plugin's total, and the number of memories is bounded, whatever the component
//! declares. The components are assembled here from a real plugin and extra core
//! instances (each with its own memory), then run through the real binary.

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

/// `(module (memory PAGES))`: a core module whose only content is one memory.
fn memory_module(pages: u32) -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    let mut memories = vec![1, 0x00];
    leb(pages, &mut memories);
    section(5, &memories, &mut module);
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

/// `name`'s component with `extra` more core instances, each of a module holding one
/// memory of `pages` 64 KiB pages: the component's exports are untouched, so the host
/// takes it as the same plugin, and instantiating it makes every one of those memories.
fn with_memories(name: &str, extra: u32, pages: u32) -> Vec<u8> {
    let mut component = std::fs::read(plugin(name)).expect("read the plugin");
    let first = top_level_modules(&component);
    let module = memory_module(pages);
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
    let s = Scratch::new();
    let wasm = s.path("two-memories.wasm");
    std::fs::write(&wasm, with_memories("misbehave", 2, 800)).expect("write");
    let input = s.write("in.txt", "echo\n");
    let run = s.host(
        &[
            "run",
            "--plugin",
            path_str(&wasm),
            "--input",
            path_str(&input),
            "--format",
            "lines",
            "--memory-mib",
            "80",
            "--dlq",
            path_str(&s.path("dlq.jsonl")),
        ],
        None,
    );
    assert!(!run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("memory limit of 83886080 bytes exceeded"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    // One more memory of 50 MiB fits; the plugin's own then has 30 MiB left, and the
    // record that grows it without end is the only one to fail.
    let wasm = s.path("one-more-memory.wasm");
    std::fs::write(&wasm, with_memories("misbehave", 1, 800)).expect("write");
    let input = s.write("in.txt", "echo\nalloc\necho\n");
    let run = s.host(
        &[
            "run",
            "--plugin",
            path_str(&wasm),
            "--input",
            path_str(&input),
            "--format",
            "lines",
            "--memory-mib",
            "80",
            "--emit",
            "payload",
            "--summary",
            "json",
            "--output",
            path_str(&s.path("out.jsonl")),
            "--dlq",
            path_str(&s.path("dlq.jsonl")),
        ],
        None,
    );
    assert!(run.status.success(), "{}", run.stderr);
    let summary: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout));
    assert_eq!(summary["transformed"], 2, "{summary}");
    assert_eq!(summary["failed_by_kind"]["memory-limit"], 1, "{summary}");
}

#[test]
fn a_component_with_too_many_memories_is_refused_at_start() {
    let s = Scratch::new();
    let wasm = s.path("many-memories.wasm");
    std::fs::write(&wasm, with_memories("misbehave", 9, 1)).expect("write");
    let input = s.write("in.txt", "echo\n");
    let run = s.host(
        &[
            "run",
            "--plugin",
            path_str(&wasm),
            "--input",
            path_str(&input),
            "--format",
            "lines",
            "--dlq",
            path_str(&s.path("dlq.jsonl")),
        ],
        None,
    );
    assert!(!run.status.success(), "{}", run.stderr);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(
        run.stderr.contains("memory count too high"),
        "{}",
        run.stderr
    );
}
