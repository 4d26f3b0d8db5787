#!/usr/bin/env python3
"""Splits `perf` profiles of the throughput bench into where the time goes, and writes
the "Flame graphs" section of BENCHMARKS.md. Used by `./dev flamegraph`.

    profile_split.py BENCHMARKS.md MACHINE NAME=REPORT.txt ...

Each REPORT.txt is `perf report --no-children --sort dso,sym -g none --percent-limit 0`
of one configuration (recorded after the bench's set-up); symbols are put into the categories below (first match wins) and
their sample shares summed. Epoch checks are inline in the compiled code and do not show
up as a symbol: the bench measures them by switching them off.
"""

import re
import sys

CATEGORIES = [
    ("host: packing the batch", [r"engine::wire::Packer::pack"]),
    ("host: unpacking the answer", [r"engine::wire::unpack", r"bytes::bytes::", r"drop_in_place<pipeline_host::record::Output"]),
    ("host: lowering into / lifting out of the sandbox", [r"wasmtime::runtime::component::func", r"typed::Lift", r"typed::Lower", r"lower_list", r"catch_traps", r"wasmtime::runtime::vm::"]),
    ("host: runner, chain and outcomes", [r"as core::clone::Clone>::clone", r"pipeline_host::engine::runner", r"pipeline_host::engine::chain", r"throughput::run_", r"clock_gettime", r"IntoIter", r"SpecFromIter", r"Map<I,F>"]),
    ("copies (host memcpy, the sandbox's memory.copy)", [r"__memmove", r"__memcpy", r"memory_copy", r"__memset"]),
    # The host links mimalloc (`mi_*`); glibc's names stay for profiles of older builds.
    ("host: malloc and free", [r"\[\.\] _?mi_\w+", r"libc\.so.*\b(_int_malloc|_int_free|malloc|cfree|free|unlink_chunk|realloc|_int_realloc|malloc_consolidate)\b"]),
    ("comparisons (memcmp)", [r"__memcmp", r"\bmemcmp\b"]),
    ("allocator inside the plugin", [r"\bdlmalloc\b", r"\bdlfree\b", r"\bdlrealloc\b", r"__rust_alloc", r"__rust_dealloc", r"__rust_realloc", r"__rdl_", r"__rust_no_alloc_shim", r"cabi_realloc", r"SizeClasses", r"\[JIT\].*\b(malloc|free|realloc|aligned_alloc)\b", r"RawVec", r"raw_vec"]),
    ("JSON (serde_json, the SDK's reader and writer; in the plugin or native)", [r"serde_json", r"serde_core", r"5serde", r"itoa", r"ryu", r"\bround\b", r"guest_sdk4json", r"guest_sdk::json"]),
    ("UTF-8 checks (from_utf8)", [r"from_utf8", r"converts"]),
    ("SDK and bindings inside the plugin", [r"guest_sdk", r"\[JIT\].*FlattenCompat", r"Guest\$GT\$9transform", r"\[\.\] transform$", r"wit_bindgen"]),
    ("the plugin's own code", [r"6enrich", r"8validate", r"9misbehave", r"10echo_bench", r"5route"]),
    ("native code (the baseline)", [r"throughput::native_", r"enrich::transform", r"validate::transform"]),
    ("kernel (page faults, timers)", [r"\[k\]"]),
]


def split(report):
    totals = {name: 0.0 for name, _ in CATEGORIES}
    totals["other"] = 0.0
    tops = {}
    for line in open(report, encoding="utf-8", errors="replace"):
        m = re.match(r"\s*([\d.]+)%\s+(.*)$", line)
        if not m:
            continue
        share, rest = float(m.group(1)), m.group(2)
        for name, patterns in CATEGORIES:
            if any(re.search(p, rest) for p in patterns):
                totals[name] += share
                break
        else:
            totals["other"] += share
            tops[rest] = tops.get(rest, 0.0) + share
    return totals


def main():
    out, machine, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
    runs = [(p.split("=", 1)[0], split(p.split("=", 1)[1])) for p in pairs]
    names = [name for name, _ in CATEGORIES] + ["other"]
    lines = [
        "## Flame graphs (`./dev flamegraph`)",
        "",
        f"`perf record -g` of the throughput bench running one configuration for 10 s at batch 1000 "
        f"(plugins built with their function names, wasmtime writing a perf map). Machine: {machine}. "
        "Share of the samples by where they fell; the SVGs show the stacks (open them in a browser to "
        "search and zoom). Host stacks are shallow (the release build keeps no frame pointers), plugin "
        "stacks are whole. Epoch checks are inside each compiled function's own samples: the "
        "throughput section measures them by switching them off.",
        "",
        "| where | " + " | ".join(f"[{n}](host/benches/flamegraphs/{n}.svg)" for n, _ in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    for name in names:
        if all(t[name] < 0.05 for _, t in runs):
            continue
        lines.append(f"| {name} | " + " | ".join(f"{t[name]:.1f}%" for _, t in runs) + " |")
    body = "\n".join(lines) + "\n"
    begin, end = "<!-- flamegraphs:begin -->", "<!-- flamegraphs:end -->"
    text = open(out, encoding="utf-8").read()
    section = f"{begin}\n{body}{end}\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :].lstrip("\n")
    else:
        text = text.rstrip() + "\n\n" + section
    open(out, "w", encoding="utf-8").write(text)
    print(body)


if __name__ == "__main__":
    main()
