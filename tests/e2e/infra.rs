//! `infra/template.yaml`: linted with cfn-lint, and its resources that the emulator
//! supports created through CloudFormation on it (`tests/smoke_deploy.py`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::emulator::Moto;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn venv_bin(name: &str) -> PathBuf {
    let path = root().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `./dev test`, which installs it into .venv",
        path.display()
    );
    path
}

#[test]
fn the_template_passes_cfn_lint() {
    let output = Command::new(venv_bin("cfn-lint"))
        .arg("infra/template.yaml")
        .current_dir(root())
        .output()
        .expect("cfn-lint");
    assert!(
        output.status.success(),
        "cfn-lint found problems:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_template_deploys_on_the_emulator() {
    let moto = Moto::start();
    let output = Command::new(venv_bin("python"))
        .args(["tests/smoke_deploy.py", "--endpoint", &moto.endpoint])
        .current_dir(root())
        .output()
        .expect("smoke deploy");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "smoke deploy failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("stack status: CREATE_COMPLETE"), "{stdout}");
    for resource in [
        "PluginBucket",
        "LakeBucket",
        "InputStream",
        "OutputStream",
        "DeadLetterQueue",
        "OnFailureQueue",
        "DedupTable",
        "HostFunctionRole",
        "AlarmTopic",
        "DeadLettersAlarm",
        "IteratorAgeAlarm",
        "FunctionErrorsAlarm",
        "FunctionThrottlesAlarm",
        "FailedRecordsAlarm",
        "RefusedVersionAlarm",
        "PipelineDashboard",
    ] {
        assert!(
            stdout.contains(&format!(" {resource}\n")),
            "{resource} was not created:\n{stdout}"
        );
    }
    assert!(stdout.contains("no wildcard actions"), "{stdout}");
    assert!(
        stdout.contains("table DedupTable: TTL on `ttl`"),
        "{stdout}"
    );
}
