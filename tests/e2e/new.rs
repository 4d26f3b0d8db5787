//! `host new`: a generated plugin project builds on its own (outside this workspace), its
//! unit tests pass natively, and its golden cases pass under `host test`.

use std::path::Path;
use std::process::Command;

use crate::support::{Scratch, path_str};

/// `cargo ARGS` in `dir`, offline, with a target folder kept between runs.
fn cargo(dir: &Path, args: &[&str]) -> std::process::Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold");
    Command::new(cargo)
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap_or_else(|e| panic!("cargo {args:?}: {e}"))
}

#[test]
fn a_new_plugin_project_builds_and_passes_its_own_tests() {
    let s = Scratch::new();
    let dir = s.path("my-filter");
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    let run = s.host(
        &[
            "new",
            "my-filter",
            "--dir",
            path_str(&dir),
            "--sdk-path",
            path_str(&sdk),
        ],
        None,
    );
    assert!(run.status.success(), "{}", run.stderr);
    for file in [
        "Cargo.toml",
        "rust-toolchain.toml",
        ".cargo/config.toml",
        "src/lib.rs",
        "README.md",
    ] {
        assert!(dir.join(file).is_file(), "{file} is missing");
    }

    let build = cargo(&dir, &["build", "--release", "--target", "wasm32-wasip2"]);
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let unit = cargo(&dir, &["test"]);
    let unit_out = String::from_utf8_lossy(&unit.stdout);
    assert!(
        unit.status.success(),
        "{unit_out}{}",
        String::from_utf8_lossy(&unit.stderr)
    );
    assert!(unit_out.contains("test result: ok. 2 passed"), "{unit_out}");

    let wasm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/scaffold/wasm32-wasip2/release/my_filter.wasm");
    let cases = dir.join("tests/cases");
    let golden = s.host_test(&wasm, &cases, &[]);
    assert!(golden.status.success(), "{}", golden.stderr);
    assert!(
        golden.stderr.contains("2 cases passed"),
        "{}",
        golden.stderr
    );

    // The folder is taken now, and a name cargo would refuse is refused first.
    let again = s.host(&["new", "my-filter", "--dir", path_str(&dir)], None);
    assert!(!again.status.success());
    assert!(again.stderr.contains("not empty"), "{}", again.stderr);
    let bad = s.host(&["new", "My Filter", "--dir", path_str(&s.path("x"))], None);
    assert!(!bad.status.success());
    assert!(bad.stderr.contains("a plugin name is"), "{}", bad.stderr);
}

#[test]
fn a_new_python_plugin_project_builds_and_passes_its_own_tests() {
    let s = Scratch::new();
    let dir = s.path("py-filter");
    let run = s.host(
        &[
            "new",
            "py-filter",
            "--lang",
            "python",
            "--dir",
            path_str(&dir),
        ],
        None,
    );
    assert!(run.status.success(), "{}", run.stderr);
    // componentize-py is one of the tools ./dev installs in .venv.
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin");
    let path = format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for script in ["./build.sh", "./test.sh"] {
        let out = Command::new(script)
            .current_dir(&dir)
            .env("PATH", &path)
            .output()
            .unwrap_or_else(|e| panic!("{script}: {e}"));
        assert!(
            out.status.success(),
            "{script}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if script == "./test.sh" {
            let report = String::from_utf8_lossy(&out.stderr);
            assert!(
                report.contains("Ran 2 tests") && report.contains("OK"),
                "{report}"
            );
        }
    }
    let wasm = dir.join("py-filter.wasm");
    let cases = dir.join("tests/cases");
    let cache = s.path("cache");
    let golden = s.host_test(&wasm, &cases, &["--cache-dir", path_str(&cache)]);
    assert!(golden.status.success(), "{}", golden.stderr);
    assert!(
        golden.stderr.contains("2 cases passed"),
        "{}",
        golden.stderr
    );
}

/// `host new --lang js` and `--lang ts`: a project of its own that installs its tools
/// (here, the SDK's own, linked: no download in a test), passes its unit tests on Node.js
/// (TypeScript type-checked first), builds its component and passes its golden cases.
#[test]
fn new_javascript_and_typescript_projects_build_and_pass_their_own_tests() {
    let s = Scratch::new();
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk-js/node_modules");
    for (lang, name) in [("js", "js-filter"), ("ts", "ts-filter")] {
        let dir = s.path(name);
        let run = s.host(
            &["new", name, "--lang", lang, "--dir", path_str(&dir)],
            None,
        );
        assert!(run.status.success(), "{lang}: {}", run.stderr);
        assert!(run.stderr.contains("npm test"), "{}", run.stderr);
        std::os::unix::fs::symlink(&tools, dir.join("node_modules")).expect("node_modules");
        for script in ["test", "run build"] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("npm {script}"))
                .current_dir(&dir)
                .output()
                .unwrap_or_else(|e| panic!("npm {script}: {e}"));
            let report = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{lang}: npm {script}: {report}");
            if script == "test" {
                assert!(
                    report.contains("# pass 2") && report.contains("# fail 0"),
                    "{report}"
                );
            }
        }
        let wasm = dir.join(format!("{name}.wasm"));
        let golden = s.host_test(
            &wasm,
            &dir.join("tests/cases"),
            &["--cache-dir", path_str(&s.path("cache"))],
        );
        assert!(golden.status.success(), "{lang}: {}", golden.stderr);
        assert!(
            golden.stderr.contains("2 cases passed"),
            "{}",
            golden.stderr
        );
    }
}
