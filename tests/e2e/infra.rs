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

/// `tests/smoke_deploy.py` against a fresh emulator, with these parameters: its output.
fn smoke_deploy(parameters: &[&str]) -> String {
    let moto = Moto::start();
    let mut command = Command::new(venv_bin("python"));
    command.args(["tests/smoke_deploy.py", "--endpoint", &moto.endpoint]);
    for parameter in parameters {
        command.args(["--parameter", parameter]);
    }
    let output = command.current_dir(root()).output().expect("smoke deploy");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "smoke deploy failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Source s3-via-sqs: the upload bucket notifies its queue (dead-lettering after five
/// receives); no input stream, no iterator-age alarm.
#[test]
fn the_template_deploys_with_uploads_through_sqs_as_its_source() {
    let stdout = smoke_deploy(&["Source=s3-via-sqs"]);
    assert!(stdout.contains("stack status: CREATE_COMPLETE"), "{stdout}");
    for resource in [
        "UploadBucket",
        "UploadQueue",
        "UploadDeadLetterQueue",
        "OutputStream",
    ] {
        assert!(
            stdout.contains(&format!(" {resource}\n")),
            "{resource} was not created:\n{stdout}"
        );
    }
    for absent in ["InputStream", "IteratorAgeAlarm"] {
        assert!(
            !stdout.contains(&format!(" {absent}\n")),
            "{absent} was created:\n{stdout}"
        );
    }
    assert!(stdout.contains("no wildcard actions"), "{stdout}");
}

/// Sources msk and kafka: the role carries what the mapping needs (the cluster and its
/// network interfaces; the SASL secret, when named), nothing wider than named actions.
#[test]
fn the_template_deploys_with_kafka_as_its_source() {
    for parameters in [
        &[
            "Source=msk",
            "KafkaClusterArn=arn:aws:kafka:us-east-1:123456789012:cluster/c/u-1",
        ][..],
        &[
            "Source=kafka",
            "KafkaBootstrapServers=kafka-1.internal:9092,kafka-2.internal:9092",
            "KafkaSecretArn=arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-AbCdEf",
        ][..],
    ] {
        let stdout = smoke_deploy(parameters);
        assert!(stdout.contains("stack status: CREATE_COMPLETE"), "{stdout}");
        assert!(stdout.contains(" HostFunctionRole\n"), "{stdout}");
        assert!(!stdout.contains(" InputStream\n"), "{stdout}");
        assert!(stdout.contains("no wildcard actions"), "{stdout}");
    }
}

/// Lookups: the mapping reaches the function, and its role may read the tables and
/// objects named, those only; without them, no lookup grant at all.
#[test]
fn the_template_grants_read_on_the_mapped_lookup_tables_only() {
    let stdout = smoke_deploy(&[
        "Lookups=users=dynamodb://users,prices=s3://ref/prices.parquet#sku",
        "LookupTableArns=arn:aws:dynamodb:us-east-1:123456789012:table/users",
        "LookupObjectArns=arn:aws:s3:::ref/prices.parquet",
    ]);
    assert!(stdout.contains("stack status: CREATE_COMPLETE"), "{stdout}");
    assert!(
        stdout.contains("grant ReadLookupTables: dynamodb:DescribeTable dynamodb:BatchGetItem on arn:aws:dynamodb:us-east-1:123456789012:table/users\n"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("grant ReadLookupObjects: s3:GetObject on arn:aws:s3:::ref/prices.parquet\n"),
        "{stdout}"
    );
    assert!(stdout.contains("no wildcard actions"), "{stdout}");
    let without = smoke_deploy(&[]);
    assert!(!without.contains("grant ReadLookup"), "{without}");
}

/// Schemas out: writing the output stream in Glue's framing grants finding the schema,
/// and registering it only when allowed; a registry credential's secret is readable.
#[test]
fn the_template_grants_the_output_schemas_registry_as_the_parameters_say() {
    let stdout = smoke_deploy(&[
        "OutputSchema=glue://shop/orders",
        "SchemaRegister=on",
        "ConfluentSecretArn=arn:aws:secretsmanager:us-east-1:123456789012:secret:registry-AbCdEf",
    ]);
    assert!(stdout.contains("stack status: CREATE_COMPLETE"), "{stdout}");
    assert!(
        stdout.contains("grant FindOutputSchema: glue:GetSchemaByDefinition on "),
        "{stdout}"
    );
    assert!(
        stdout.contains("grant ReadOutputSchemaVersions: glue:GetSchemaVersion on *\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "grant RegisterOutputSchema: glue:RegisterSchemaVersion glue:CreateSchema on "
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("grant ConfluentCredential: secretsmanager:GetSecretValue on arn:aws:secretsmanager:us-east-1:123456789012:secret:registry-AbCdEf\n"),
        "{stdout}"
    );
    let finding = smoke_deploy(&["OutputSchema=glue://shop/orders"]);
    assert!(finding.contains("grant FindOutputSchema"), "{finding}");
    assert!(!finding.contains("grant RegisterOutputSchema"), "{finding}");
    let without = smoke_deploy(&[]);
    assert!(!without.contains("OutputSchema"), "{without}");
}

#[test]
fn the_template_deploys_on_the_emulator() {
    let stdout = smoke_deploy(&[]);
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
