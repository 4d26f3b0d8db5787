//! The settings table resolved at both front doors: defaults, bounds, errors, docs.
use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn lambda(pairs: &[(&str, &str)]) -> Result<Settings, SettingError> {
    Settings::resolve(FrontDoor::Lambda, |_| Vec::new(), env(pairs))
}

#[test]
fn resolving_with_nothing_given_is_the_defaults() {
    // Only the one setting that has no default is given: everything else is the
    // table's default, which is what `Settings::default()` (and so `Limits::default()`)
    // reads, at either front door.
    let plugin = |row: &Setting| match row.env {
        "PIPELINE_PLUGIN" => vec!["p.wasm".to_owned()],
        _ => Vec::new(),
    };
    let expected = Settings {
        plugins: vec![PluginLocation::File("p.wasm".into())],
        ..Settings::default()
    };
    let cli = Settings::resolve(FrontDoor::Cli, plugin, |_| None).expect("resolve");
    assert_eq!(cli, expected);
    assert_eq!(cli.limits, Limits::default());
    assert_eq!(cli.aws_timeouts, AwsTimeouts::default());
    assert_eq!(cli.input_limits(), crate::sources::InputLimits::default());
    // In Lambda the DLQ must be given (and not a file): the rest is the same.
    let lambda =
        lambda(&[("PIPELINE_PLUGIN", "p.wasm"), ("PIPELINE_DLQ", "sqs://dlq")]).expect("resolve");
    assert_eq!(
        lambda,
        Settings {
            dlq: "sqs://dlq".parse().expect("a DLQ spec"),
            door: FrontDoor::Lambda,
            ..expected
        }
    );
}

#[test]
fn a_file_dlq_is_only_for_host_run_without_sinks_and_the_message_names_the_setting() {
    let file = [("PIPELINE_PLUGIN", "p.wasm"), ("PIPELINE_DLQ", "dlq.jsonl")];
    let err = lambda(&file).expect_err("a file DLQ in Lambda");
    assert_eq!(err.name, "PIPELINE_DLQ");
    let flags = |row: &Setting| match row.env {
        "PIPELINE_PLUGIN" => vec!["p.wasm".to_owned()],
        "PIPELINE_SINKS" => vec!["default=kinesis://out".to_owned()],
        _ => Vec::new(),
    };
    let err = Settings::resolve(FrontDoor::Cli, flags, |_| None).expect_err("with sinks");
    assert_eq!(err.name, "--dlq");
    assert!(
        err.reason.contains("sqs://QUEUE or s3://BUCKET/PREFIX"),
        "{err}"
    );
}

#[test]
fn the_function_memory_lowers_the_defaults_not_what_was_set() {
    let base = [("PIPELINE_PLUGIN", "p.wasm"), ("PIPELINE_DLQ", "sqs://dlq")];
    let plain = lambda(&base).expect("defaults");
    assert_eq!(plain.max_event_bytes, 256 << 20);
    assert_eq!(plain.limits.function_memory_mib, None);
    let sized = [base[0], base[1], ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")];
    let fitted = lambda(&sized).expect("512 MiB");
    assert_eq!(fitted.max_event_bytes, 64 << 20);
    assert_eq!(fitted.limits.function_memory_mib, Some(512));
    assert_eq!(fitted.limits.max_call_output_bytes, 64 << 20);
    let large = [
        base[0],
        base[1],
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "10240"),
    ];
    assert_eq!(lambda(&large).expect("10 GiB").max_event_bytes, 256 << 20);
    let set = [
        base[0],
        base[1],
        sized[2],
        ("PIPELINE_MAX_EVENT_BYTES", "134217728"),
    ];
    let kept = lambda(&set).expect("set");
    assert_eq!(kept.max_event_bytes, 128 << 20, "a set value stays");
    assert_eq!(kept.limits.max_call_output_bytes, 64 << 20);
}

#[test]
fn in_lambda_the_margin_holds_one_aws_attempt() {
    let base = [("PIPELINE_PLUGIN", "p.wasm"), ("PIPELINE_DLQ", "sqs://dlq")];
    assert!(lambda(&base).is_ok(), "the defaults keep the rule");
    let short = [base[0], base[1], ("PIPELINE_TIME_MARGIN_MS", "1000")];
    let err = lambda(&short).expect_err("a margin shorter than an attempt");
    assert!(
        err.to_string().starts_with("PIPELINE_TIME_MARGIN_MS: is 1000 ms, shorter than one AWS call attempt and the answer (PIPELINE_AWS_ATTEMPT_TIMEOUT_MS=3000 ms + 250 ms)"),
        "{err}"
    );
    let both = [
        short[0],
        short[1],
        short[2],
        ("PIPELINE_AWS_ATTEMPT_TIMEOUT_MS", "700"),
    ];
    assert!(lambda(&both).is_ok());
}

#[test]
fn reads_a_full_configuration() {
    let settings = lambda(&[
        ("PIPELINE_PLUGIN", "s3://plugins/enrich.wasm"),
        ("PIPELINE_PLUGIN_CONFIG", "currency=USD, region=eu"),
        (
            "PIPELINE_SINKS",
            "default=kinesis://out?gzip=true,audit=s3://lake/audit",
        ),
        ("PIPELINE_DLQ", "sqs://dlq"),
        ("PIPELINE_BATCH_SIZE", "250"),
    ])
    .expect("valid");
    assert_eq!(settings.plugin_config[1], ("region".into(), "eu".into()));
    assert_eq!(
        settings.sinks["default"],
        SinkSpec::Kinesis {
            stream: "out".into(),
            gzip: true,
            aggregate: false,
            schema: None,
        }
    );
    assert_eq!(settings.limits.batch_size, 250);
    assert_eq!(settings.plugins.len(), 1);
    assert_eq!(settings.check_interval, Duration::from_secs(30));
    assert_eq!(settings.cache_dir, Some(PathBuf::from("/tmp/plugin-cache")));
    assert_eq!(settings.public_key, None);
    assert!(!settings.s3_path_style);
}

#[test]
fn reads_a_chain_of_followed_plugins() {
    let public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let settings = lambda(&[
        (
            "PIPELINE_PLUGIN",
            "s3://plugins/plugins/validate/, s3://plugins/plugins/enrich/versions/0.2.0.json",
        ),
        ("PIPELINE_DLQ", "sqs://dlq"),
        ("PIPELINE_PLUGIN_CHECK_SECONDS", "0"),
        ("PIPELINE_CACHE_DIR", "off"),
        ("PIPELINE_PLUGIN_PUBLIC_KEY", public),
    ])
    .expect("valid");
    assert_eq!(
        settings.plugins,
        [
            PluginLocation::S3Manifest {
                bucket: "plugins".into(),
                key: "plugins/validate/manifest.json".into()
            },
            PluginLocation::S3Manifest {
                bucket: "plugins".into(),
                key: "plugins/enrich/versions/0.2.0.json".into()
            }
        ]
    );
    assert_eq!(settings.check_interval, Duration::ZERO);
    assert_eq!(settings.cache_dir, None);
    assert!(settings.public_key.is_some());
}

#[test]
fn errors_name_the_variable_or_the_flag() {
    let err = lambda(&[("PIPELINE_DLQ", "sqs://dlq")]).expect_err("no plugin");
    assert_eq!(err.name, "PIPELINE_PLUGIN");
    let err = lambda(&[("PIPELINE_PLUGIN", "p.wasm")]).expect_err("no DLQ in Lambda");
    assert_eq!(err.name, "PIPELINE_DLQ");
    let base = [("PIPELINE_PLUGIN", "p.wasm"), ("PIPELINE_DLQ", "sqs://dlq")];
    let with = |extra: (&'static str, &'static str)| {
        let mut pairs = base.to_vec();
        pairs.push(extra);
        lambda(&pairs).expect_err("bad").name
    };
    for (variable, bad) in [
        ("PIPELINE_BATCH_SIZE", "lots"),
        ("PIPELINE_BATCH_SIZE", "0"),
        // Would wrap to 1 through `as u32`.
        ("PIPELINE_MAX_ATTEMPTS", "4294967297"),
        ("PIPELINE_MEMORY_MIB", "5000"),
        ("PIPELINE_DEADLINE_MS", "5"),
        ("PIPELINE_MAX_OUTPUT_BYTES", "0"),
        ("PIPELINE_RETRY_BASE_MS", "60001"),
        ("PIPELINE_PLUGIN_CHECK_SECONDS", "-1"),
        // Would overflow `Instant + Duration` at the first check.
        ("PIPELINE_PLUGIN_CHECK_SECONDS", "18446744073709551615"),
        ("PIPELINE_PLUGIN_PUBLIC_KEY", "not-a-key"),
        ("PIPELINE_SINKS", "default=ftp://x"),
        ("PIPELINE_DLQ", "kinesis://x"),
        ("PIPELINE_S3_PATH_STYLE", "yes"),
    ] {
        assert_eq!(with((variable, bad)), variable, "{variable}={bad}");
    }
    // The command line names the flag it was given by.
    let err = Settings::resolve(
        FrontDoor::Cli,
        |row| match row.flag {
            Some("plugin") => vec!["p.wasm".into()],
            Some("max-attempts") => vec!["21".into()],
            _ => Vec::new(),
        },
        env(&[]),
    )
    .expect_err("too many attempts");
    assert_eq!(err.to_string(), "--max-attempts: 21 is outside 1 ..= 20");
}

#[test]
fn the_command_line_falls_back_to_the_environment_then_the_defaults() {
    let settings = Settings::resolve(
        FrontDoor::Cli,
        |row| match row.flag {
            Some("plugin") => vec!["a.wasm".into(), "b.wasm".into()],
            Some("batch-size") => vec!["7".into()],
            _ => Vec::new(),
        },
        env(&[("PIPELINE_BATCH_SIZE", "9"), ("PIPELINE_MAX_ATTEMPTS", "5")]),
    )
    .expect("valid");
    assert_eq!(settings.plugins.len(), 2);
    assert_eq!(settings.limits.batch_size, 7, "a flag beats the variable");
    assert_eq!(settings.limits.max_attempts, 5);
    assert_eq!(settings.dlq, Settings::default().dlq);
}

#[test]
fn every_default_is_accepted_by_its_own_parser() {
    for row in SETTINGS {
        if let Some(default) = row.default {
            let mut settings = Settings::default();
            (row.apply)(&mut settings, &[default.to_owned()], row)
                .unwrap_or_else(|e| panic!("{}: default {default:?}: {e}", row.env));
        }
    }
}

#[test]
fn the_docs_list_every_setting_as_the_table_does() {
    let page = include_str!("../../../docs/settings.md");
    let table = markdown_table();
    assert!(
        page.contains(&table),
        "docs/settings.md's settings table differs from settings::SETTINGS; it should read:\n{table}"
    );
}
