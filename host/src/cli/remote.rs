//! `host run --sink ...` and `host reprocess`: the Lambda host's pipeline, driven from
//! the command line against real (or emulated) AWS services.

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::Context as _;

use super::{PluginArgs, ReprocessArgs, RunArgs, local};
use crate::accounting::Summary;
use crate::aws::{AwsClients, describe_error};
use crate::dlq::DlqEntry;
use crate::lambda::LambdaConfig;
use crate::pipeline::ItemStatus;
use crate::service::Service;
use crate::sinks::{ObjectFormat, RetryPolicy, S3Sink, SinkSpec, queue_url};
use crate::sources::{Decoded, EventKind, InputFormat, events};

async fn start(
    plugin: &PluginArgs,
    sinks: Vec<(String, SinkSpec)>,
    dlq: SinkSpec,
) -> anyhow::Result<(Service, AwsClients)> {
    let limits = plugin.limits();
    limits.validate()?;
    anyhow::ensure!(
        !matches!(dlq, SinkSpec::Kinesis { .. }),
        "--dlq: the dead-letter queue must be sqs://QUEUE or s3://BUCKET/PREFIX"
    );
    let config = LambdaConfig {
        plugins: plugin.locations()?,
        plugin_config: plugin.config.clone(),
        check_interval: std::time::Duration::from_secs(plugin.check_seconds),
        cache_dir: plugin.cache_dir.clone(),
        public_key: plugin.public_key()?,
        sinks: sinks.into_iter().collect::<BTreeMap<_, _>>(),
        dlq,
        limits,
    };
    let aws = AwsClients::from_env().await;
    Ok((Service::start(config, &aws).await?, aws))
}

fn print_summary(summary: &Summary, host: &Service) {
    eprintln!(
        "summary: {summary} plugin={} stages: {}",
        host.plugin_label(),
        host.stage_report()
    );
}

/// `host run --sink ...`: input in batches through the plugin into the sinks.
pub(super) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let dlq: SinkSpec = args.dlq.parse().map_err(|_| {
        anyhow::anyhow!("--dlq {}: with --sink, the dead-letter queue must be sqs://QUEUE or s3://BUCKET/PREFIX", args.dlq)
    })?;
    if args.format == InputFormat::S3Event {
        return run_s3_event(args, dlq).await;
    }
    let source = local::open_input(&args)?;
    let batch_size = args.plugin.limits().batch_size;
    let (mut host, _aws) = start(&args.plugin, args.sink.clone(), dlq).await?;
    let mut summary = Summary::default();
    let mut source = source.peekable();
    while source.peek().is_some() {
        let items: Vec<Decoded> = source.by_ref().take(batch_size).collect::<Result<_, _>>()?;
        let report = host.process(items, false, false).await?;
        summary.add(&report.summary);
    }
    print_summary(&summary, &host);
    Ok(())
}

/// `host run --format s3-event`: the objects an S3 notification names, streamed
/// through the pipeline as the Lambda host does.
async fn run_s3_event(args: RunArgs, dlq: SinkSpec) -> anyhow::Result<()> {
    let text = if args.input == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&args.input)
            .with_context(|| format!("cannot open input {}", args.input))?
    };
    let event: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("input {}: not JSON", args.input))?;
    let decoded =
        events::decode(EventKind::S3, event).with_context(|| format!("input {}", args.input))?;
    let (mut host, _aws) = start(&args.plugin, args.sink.clone(), dlq).await?;
    let mut summary = Summary::default();
    for object in &decoded.objects {
        summary.add(&host.process_object(object).await?);
    }
    print_summary(&summary, &host);
    Ok(())
}

/// `host reprocess`: dead-letter entries written before this run started go through the
/// plugin and the sinks again. An entry is deleted once its record is delivered,
/// dropped, or dead-lettered anew; one that fails transiently stays where it is.
pub(super) async fn reprocess(args: ReprocessArgs) -> anyhow::Result<()> {
    let started = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let (mut host, aws) = start(&args.plugin, args.sink.clone(), args.dlq.clone()).await?;
    let mut summary = Summary::default();
    match &args.from {
        SinkSpec::Sqs { queue } => {
            let url = queue_url(&aws, queue).await.map_err(anyhow::Error::msg)?;
            reprocess_queue(&mut host, &aws, &url, &started, &mut summary).await?;
        }
        SinkSpec::S3 { bucket, prefix, .. } => {
            let retry = RetryPolicy {
                max_attempts: 3,
                base_delay: std::time::Duration::from_millis(100),
            };
            let sink = S3Sink::new(
                aws.s3.clone(),
                bucket.clone(),
                prefix.clone(),
                ObjectFormat::JsonLines,
            );
            reprocess_bucket(&mut host, &aws, bucket, prefix, &sink, retry, &mut summary).await?;
        }
        SinkSpec::Kinesis { .. } => {
            anyhow::bail!("--from: a dead-letter queue is sqs://QUEUE or s3://BUCKET/PREFIX")
        }
    }
    print_summary(&summary, &host);
    Ok(())
}

/// Entries this run can take: parsed, and failed before it started (entries this run
/// writes are left for the next one, so a record that fails again is not looped on).
fn original(text: &str, started: &str) -> Option<Decoded> {
    match serde_json::from_str::<DlqEntry>(text) {
        Ok(entry) if entry.failed_at.as_str() < started => match entry.original() {
            Ok(record) => Some(Ok(record)),
            Err(e) => {
                tracing::error!(error = %e, "a DLQ entry's payload is not valid base64; left in place");
                None
            }
        },
        Ok(_) => None,
        Err(e) => {
            tracing::error!(error = %e, "not a DLQ entry; left in place");
            None
        }
    }
}

async fn reprocess_queue(
    host: &mut Service,
    aws: &AwsClients,
    url: &str,
    started: &str,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    loop {
        let response = aws
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(300)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("--from {url}: {}", describe_error(&e)))?;
        if response.messages().is_empty() {
            return Ok(());
        }
        let mut fresh = false;
        let mut handles = Vec::new();
        let mut items = Vec::new();
        for message in response.messages() {
            let Some(handle) = message.receipt_handle() else {
                continue;
            };
            if !seen.insert(message.message_id().unwrap_or_default().to_owned()) {
                // Received again (this receive hid it): give it back.
                release(aws, url, handle).await?;
                continue;
            }
            fresh = true;
            match original(message.body().unwrap_or_default(), started) {
                Some(item) => {
                    items.push(item);
                    handles.push(handle.to_owned());
                }
                None => release(aws, url, handle).await?,
            }
        }
        if !fresh {
            // Only entries already seen came back: everything there was is handled.
            return Ok(());
        }
        if items.is_empty() {
            continue;
        }
        let report = host.process(items, false, true).await?;
        summary.add(&report.summary);
        for (handle, status) in handles.iter().zip(&report.statuses) {
            if *status == ItemStatus::Retry {
                release(aws, url, handle).await?;
            } else {
                aws.sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "deleting a reprocessed entry from {url}: {}",
                            describe_error(&e)
                        )
                    })?;
            }
        }
    }
}

/// Makes a received message visible again at once (it stays in the queue).
async fn release(aws: &AwsClients, url: &str, handle: &str) -> anyhow::Result<()> {
    aws.sqs
        .change_message_visibility()
        .queue_url(url)
        .receipt_handle(handle)
        .visibility_timeout(0)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("releasing an entry of {url}: {}", describe_error(&e)))?;
    Ok(())
}

async fn reprocess_bucket(
    host: &mut Service,
    aws: &AwsClients,
    bucket: &str,
    prefix: &str,
    sink: &S3Sink,
    retry: RetryPolicy,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let started = SystemTime::now();
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = aws
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("--from s3://{bucket}/{prefix}: {}", describe_error(&e))
            })?;
        listed.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        match page.next_continuation_token() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    let cutoff = humantime::format_rfc3339_millis(started).to_string();
    for key in &listed {
        let body = aws
            .object_bytes(bucket, key)
            .await
            .map_err(anyhow::Error::msg)?;
        let lines: Vec<&str> = std::str::from_utf8(&body)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let taken: Vec<(usize, Decoded)> = lines
            .iter()
            .enumerate()
            .filter_map(|(i, line)| original(line, &cutoff).map(|item| (i, item)))
            .collect();
        if taken.is_empty() {
            continue;
        }
        let (indexes, items): (Vec<usize>, Vec<Decoded>) = taken.into_iter().unzip();
        let report = host.process(items, false, true).await?;
        summary.add(&report.summary);
        // Entries not taken, or handed back, stay: written to a new object first, then
        // the old object goes.
        let done: std::collections::HashSet<usize> = indexes
            .iter()
            .zip(&report.statuses)
            .filter(|(_, s)| **s == ItemStatus::Done)
            .map(|(i, _)| *i)
            .collect();
        let keep: Vec<&str> = lines
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !done.contains(i))
            .map(|(_, l)| l)
            .collect();
        if !keep.is_empty() {
            let body = keep.join("\n").into_bytes();
            sink.put_new(body, retry)
                .await
                .map_err(anyhow::Error::msg)?;
        }
        aws.s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("deleting s3://{bucket}/{key}: {}", describe_error(&e)))?;
    }
    Ok(())
}
