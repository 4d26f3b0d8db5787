//! Sinks: where outputs and dead-letter entries go. Sinks know nothing about Wasm or
//! about where records came from: they take outputs tagged with the position of the
//! item they belong to, and answer with the ones they could not take.
//!
//! A sink is named by a spec: `kinesis://STREAM` (`?aggregate=true`: KPL aggregates),
//! `sqs://QUEUE`, `s3://BUCKET/PREFIX` (JSON lines, or `?format=parquet`), each with an
//! optional `?gzip=true`; or a local JSON-lines file. A plugin output picks a sink by its
//! destination name; outputs without one go to the sink named `default`. A [`Router`]
//! can also send every output to one sink (`host run` to a file, the Firehose or Pipes
//! answer).
//!
//! # Layout
//! - `file.rs`: JSON-lines files (and stdout), committed by rename.
//! - `kinesis.rs`, `sqs.rs`, `s3.rs`: the AWS sinks, packed to the service limits (the
//!   Kinesis one also into KPL aggregates).
//! - `parquet.rs`: JSON outputs into a Parquet object.
//! - `response.rs`: the answers that are the delivery, the Firehose transformation
//!   response and a Pipes enrichment's batch, within their size limit.
//! - `scripted.rs`: an in-process sink answering as a script says, for unit tests of
//!   the delivery rules.

mod file;
mod kinesis;
pub mod parquet;
mod response;
mod s3;
mod scripted;
mod sqs;

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;

pub use crate::limits::RetryPolicy;
pub use file::{Emit, FileSink, JsonLinesFile, Target};
pub use kinesis::KinesisSink;
pub use response::ResponseSink;
pub use s3::{S3Sink, json_line};
pub use scripted::{Answer, ScriptedSink};
pub use sqs::SqsSink;

use crate::aws::{AwsClients, AwsError};
use crate::record::{FailureKind, Output};
use crate::schemas::{DeclaredSchema, FramedWriter, OutputSchemas, SchemaTarget};

/// An output a sink could not take: which input item it came from, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// Index of the input item (record) the output came from.
    pub item: usize,
    /// `OutputTooLarge` (never retried) or `Delivery` (retries ran out).
    pub kind: FailureKind,
    /// What the service said.
    pub message: String,
}

/// A parsed sink spec, before any client exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// A local JSON-lines file (`None`: stdout), each output written as `emit` says.
    File {
        /// The file; `None` for stdout.
        path: Option<std::path::PathBuf>,
        /// How each output is written.
        emit: Emit,
    },
    /// `kinesis://STREAM[?gzip=true][&aggregate=true][&schema=…]`
    Kinesis {
        /// Stream name.
        stream: String,
        /// Gzip each record.
        gzip: bool,
        /// Pack the outputs of one partition key into KPL aggregates.
        aggregate: bool,
        /// Write each output in this registry schema's framing.
        schema: Option<SchemaTarget>,
    },
    /// `sqs://QUEUE[?schema=…]` (a name; its URL is looked up at start)
    Sqs {
        /// Queue name.
        queue: String,
        /// Write each output in this registry schema's framing.
        schema: Option<SchemaTarget>,
    },
    /// `s3://BUCKET/PREFIX[?gzip=true|?format=parquet]`
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix (may be empty).
        prefix: String,
        /// How objects are written.
        format: ObjectFormat,
    },
}

/// How an S3 sink writes each object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectFormat {
    /// JSON lines (`.jsonl`).
    JsonLines,
    /// Gzip-compressed JSON lines (`.jsonl.gz`).
    JsonLinesGzip,
    /// Parquet with Snappy pages (`.parquet`); the schema is inferred from the outputs.
    Parquet,
}

/// A sink spec that cannot be parsed, or that cannot serve where it was given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkSpecError {
    /// Not a sink spec.
    #[error(
        "bad sink {spec:?}: {reason} (expected kinesis://STREAM[?gzip=true][&aggregate=true], sqs://QUEUE or s3://BUCKET/PREFIX[?gzip=true|?format=parquet]; kinesis:// and sqs:// take schema=glue://REGISTRY/SCHEMA or schema=confluent://SUBJECT)"
    )]
    Malformed {
        /// The spec as given.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// A Kinesis stream given as the dead-letter queue.
    #[error("the dead-letter queue must be sqs://QUEUE or s3://BUCKET/PREFIX")]
    NotADeadLetterQueue,
}

impl std::str::FromStr for SinkSpec {
    type Err = SinkSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let error = |reason: &str| SinkSpecError::Malformed {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = spec.split_once("://").ok_or_else(|| error("no scheme"))?;
        let (target, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (mut gzip, mut parquet, mut aggregate) = (false, false, false);
        let mut schema = None;
        for option in query.split('&').filter(|o| !o.is_empty()) {
            if let Some(target) = option.strip_prefix("schema=") {
                if !matches!(scheme, "kinesis" | "sqs") {
                    return Err(error("registry framing is for kinesis:// and sqs:// sinks"));
                }
                schema = Some(target.parse::<SchemaTarget>().map_err(|e| error(&e))?);
                continue;
            }
            match option {
                "gzip=true" => gzip = true,
                "gzip=false" => gzip = false,
                "aggregate=true" if scheme == "kinesis" => aggregate = true,
                "aggregate=false" if scheme == "kinesis" => aggregate = false,
                "format=parquet" => parquet = true,
                "format=jsonl" => parquet = false,
                _ => return Err(error(&format!("unknown option {option:?}"))),
            }
        }
        if target.is_empty() {
            return Err(error("no name"));
        }
        match scheme {
            // A consumer reads the registry's header first: compressed, it would not.
            "kinesis" if gzip && schema.is_some() => {
                Err(error("registry framing and gzip do not go together"))
            }
            "kinesis" if !parquet => Ok(Self::Kinesis {
                stream: target.to_owned(),
                gzip,
                aggregate,
                schema,
            }),
            "sqs" if !gzip && !parquet => Ok(Self::Sqs {
                queue: target.to_owned(),
                schema,
            }),
            "s3" => {
                let (bucket, prefix) = target.split_once('/').unwrap_or((target, ""));
                let format = match (gzip, parquet) {
                    (false, false) => ObjectFormat::JsonLines,
                    (true, false) => ObjectFormat::JsonLinesGzip,
                    (false, true) => ObjectFormat::Parquet,
                    (true, true) => {
                        return Err(error("Parquet objects are compressed inside; no gzip"));
                    }
                };
                Ok(Self::S3 {
                    bucket: bucket.to_owned(),
                    prefix: prefix.trim_matches('/').to_owned(),
                    format,
                })
            }
            "kinesis" | "sqs" => Err(error("option not available for this sink")),
            _ => Err(error("unknown scheme")),
        }
    }
}

impl SinkSpec {
    /// A dead-letter queue: `sqs://QUEUE`, `s3://BUCKET/PREFIX`, or a file path (each
    /// entry one JSON line).
    pub fn dead_letters(raw: &str) -> Result<Self, SinkSpecError> {
        if !raw.contains("://") {
            return Ok(Self::File {
                path: Some(raw.into()),
                emit: Emit::Payload,
            });
        }
        match raw.parse::<Self>()? {
            Self::Kinesis { .. } => Err(SinkSpecError::NotADeadLetterQueue),
            spec => Ok(spec),
        }
    }
}

impl SinkSpec {
    /// The registry schema whose framing this sink writes, if any.
    pub fn schema(&self) -> Option<&SchemaTarget> {
        match self {
            Self::Kinesis { schema, .. } | Self::Sqs { schema, .. } => schema.as_ref(),
            Self::File { .. } | Self::S3 { .. } => None,
        }
    }
}

impl std::fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File { path: None, .. } => f.write_str("stdout"),
            Self::File { path: Some(p), .. } => write!(f, "{}", p.display()),
            Self::Kinesis { stream, .. } => write!(f, "kinesis://{stream}"),
            Self::Sqs { queue, .. } => write!(f, "sqs://{queue}"),
            Self::S3 { bucket, prefix, .. } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// A sink that could not be set up (a missing queue, an unwritable file).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The AWS side refused.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The local file could not be created.
    #[error("cannot create {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: std::io::Error,
    },
}

/// A sink with its client, ready to deliver.
#[derive(Debug, Clone)]
pub enum Sink {
    /// A local JSON-lines file or stdout.
    File(FileSink),
    /// Outputs kept for the Firehose response.
    Response(ResponseSink),
    /// Kinesis Data Streams.
    Kinesis(KinesisSink),
    /// SQS.
    Sqs(SqsSink),
    /// S3 JSON-lines objects.
    S3(S3Sink),
    /// In process, answering as its script says (tests of the delivery rules).
    Scripted(ScriptedSink),
}

impl Sink {
    /// Connects `spec` (looks up an SQS queue's URL, so a wrong name fails at start).
    pub async fn connect(spec: &SinkSpec, aws: &AwsClients) -> Result<Self, ConnectError> {
        Ok(match spec {
            SinkSpec::File { path, emit } => {
                let target = path.clone().map_or(Target::Stdout, Target::File);
                Self::File(FileSink::create(&target, *emit).map_err(|reason| {
                    ConnectError::File {
                        path: spec.to_string(),
                        reason,
                    }
                })?)
            }
            SinkSpec::Kinesis {
                stream,
                gzip,
                aggregate,
                ..
            } => {
                let sink = KinesisSink::new(aws.kinesis.clone(), stream.clone(), *gzip);
                Self::Kinesis(if *aggregate { sink.aggregating() } else { sink })
            }
            SinkSpec::Sqs { queue, .. } => {
                Self::Sqs(SqsSink::new(aws.sqs.clone(), aws.queue_url(queue).await?))
            }
            SinkSpec::S3 {
                bucket,
                prefix,
                format,
            } => Self::S3(S3Sink::new(
                aws.clone(),
                bucket.clone(),
                prefix.clone(),
                *format,
            )),
        })
    }

    /// Delivers `outputs`, each tagged with its input item; returns what failed.
    pub async fn deliver(
        &self,
        outputs: Vec<(usize, &Output)>,
        retry: RetryPolicy,
    ) -> Vec<DeliveryFailure> {
        self.deliver_declared(outputs, retry, None).await
    }

    /// Delivers `outputs` declared with `declared` (their destination's schema, which
    /// types a Parquet object's columns).
    pub async fn deliver_declared(
        &self,
        outputs: Vec<(usize, &Output)>,
        retry: RetryPolicy,
        declared: Option<&DeclaredSchema>,
    ) -> Vec<DeliveryFailure> {
        match self {
            Self::File(sink) => sink.deliver(outputs),
            // Each record's room was made whole by `Router::admit`; the outputs go into
            // the answer from their record's verdict.
            Self::Response(_) => Vec::new(),
            Self::Kinesis(sink) => sink.deliver(outputs, retry).await,
            Self::Sqs(sink) => sink.deliver(outputs, retry).await,
            Self::S3(sink) => sink.deliver(outputs, retry, declared).await,
            Self::Scripted(sink) => sink.deliver(outputs, retry).await,
        }
    }

    /// What can be checked about `output` before anything is sent (size limits, the
    /// sink's format), so a record with an output that cannot go sends none.
    pub fn check(&self, output: &Output) -> Result<(), (FailureKind, String)> {
        match self {
            Self::Kinesis(sink) => sink.check(output),
            Self::Sqs(sink) => sink.check(output),
            Self::S3(sink) => sink.check(output),
            Self::File(_) | Self::Response(_) | Self::Scripted(_) => Ok(()),
        }
    }

    /// The largest entry this sink takes, when it has a limit (an SQS message body).
    pub fn max_entry_bytes(&self) -> Option<usize> {
        match self {
            Self::Sqs(_) => Some(sqs::MAX_BYTES),
            _ => None,
        }
    }

    /// Why this sink can take nothing more, if so: a file that failed a write (a full
    /// disk, a closed pipe) stops the run instead of failing each record in turn.
    pub fn broken(&self) -> Option<String> {
        match self {
            Self::File(sink) => sink.broken(),
            _ => None,
        }
    }

    /// Whether what this sink took is final only once [`Sink::finish`] commits it (a
    /// file): the idempotency store may mark its records done only then.
    pub fn commits_at_finish(&self) -> bool {
        match self {
            Self::File(sink) => sink.commits_at_finish(),
            _ => false,
        }
    }

    /// Makes what was delivered final: a file is flushed and moved into place. Until
    /// then a file sink's outputs are in `<name>.partial`, removed if the run fails.
    pub fn finish(&self) -> std::io::Result<()> {
        match self {
            Self::File(sink) => sink.commit(),
            _ => Ok(()),
        }
    }
}

/// Named sinks; outputs without a destination go to `default`.
#[derive(Debug, Clone, Default)]
pub struct Router {
    sinks: BTreeMap<String, Sink>,
    /// When set, every output goes here whatever its destination.
    every: Option<Sink>,
    /// The named sinks that write a registry's framing (`?schema=`).
    framed: BTreeMap<String, std::sync::Arc<FramedWriter>>,
}

impl Router {
    /// A router over these named sinks.
    pub fn new(sinks: BTreeMap<String, Sink>) -> Self {
        Self {
            sinks,
            every: None,
            framed: BTreeMap::new(),
        }
    }

    /// A router sending every output to `sink`, whatever its destination.
    pub fn only(sink: Sink) -> Self {
        Self {
            sinks: BTreeMap::new(),
            every: Some(sink),
            framed: BTreeMap::new(),
        }
    }

    /// The sink named `name` writes its outputs through `writer`.
    pub fn with_framing(mut self, name: &str, writer: FramedWriter) -> Self {
        self.framed
            .insert(name.to_owned(), std::sync::Arc::new(writer));
        self
    }

    /// The registry framing of the sink outputs to `destination` go to, if it has one.
    pub fn framing(&self, destination: &str) -> Option<&FramedWriter> {
        match self.every {
            Some(_) => None,
            None => self.framed.get(destination).map(|w| &**w),
        }
    }

    /// Whether `output` can go: its destination has a sink, and that sink's checks pass.
    pub fn check(&self, output: &Output) -> Result<(), (FailureKind, String)> {
        if let Some(sink) = &self.every {
            return sink.check(output);
        }
        let (_, sink) = self.route(output)?;
        sink.check(output)
    }

    /// Whether all of one record's `outputs` can go, together, once each passed
    /// [`Router::check`]: a sink that answers with whole records (the Firehose response)
    /// makes room here for all of them or for none, so no record is part in the answer
    /// and part in the dead-letter queue.
    pub fn admit(&self, outputs: &[Output]) -> Result<(), (FailureKind, String)> {
        match &self.every {
            Some(Sink::Response(sink)) => sink.admit(outputs),
            _ => Ok(()),
        }
    }

    /// The named sink `output` goes to, or the routing failure.
    fn route<'o>(&self, output: &'o Output) -> Result<(&'o str, &Sink), (FailureKind, String)> {
        let name = output.destination.as_deref().unwrap_or("default");
        self.sinks
            .get(name)
            .map(|sink| (name, sink))
            .ok_or_else(|| {
                (
                    FailureKind::Routing,
                    format!("no sink is configured for destination {name:?}"),
                )
            })
    }

    /// The name `output` is counted under: its sink's, or for a router sending
    /// everything to one sink, that sink's kind (`file`, `answer`, ...), whatever the
    /// plugin named (so a plugin cannot make up metric names).
    pub fn sink_name<'o>(&self, output: &'o Output) -> &'o str {
        match &self.every {
            Some(Sink::File(_)) => "file",
            Some(Sink::Response(_)) => "answer",
            Some(Sink::Kinesis(_)) => "kinesis",
            Some(Sink::Sqs(_)) => "sqs",
            Some(Sink::S3(_)) => "s3",
            Some(Sink::Scripted(_)) => "scripted",
            None => output.destination.as_deref().unwrap_or("default"),
        }
    }

    /// The first sink that can take nothing more, and why (see [`Sink::broken`]).
    pub fn broken(&self) -> Option<String> {
        self.sinks
            .values()
            .chain(&self.every)
            .find_map(Sink::broken)
    }

    /// Whether any sink's deliveries are final only once committed (see
    /// [`Sink::commits_at_finish`]).
    pub fn commits_at_finish(&self) -> bool {
        self.sinks
            .values()
            .chain(&self.every)
            .any(Sink::commits_at_finish)
    }

    /// Makes every sink's deliveries final (see [`Sink::finish`]).
    pub fn finish(&self) -> std::io::Result<()> {
        for sink in self.sinks.values().chain(&self.every) {
            sink.finish()?;
        }
        Ok(())
    }

    /// Delivers every output to its sink (sinks in parallel). Outputs naming an
    /// unknown destination fail with `Routing`.
    pub async fn deliver(
        &self,
        outputs: Vec<(usize, &Output)>,
        retry: RetryPolicy,
    ) -> Vec<DeliveryFailure> {
        self.deliver_declared(outputs, retry, None).await
    }

    /// Delivers as [`Router::deliver`] does, each destination's outputs with the schema
    /// `schemas` declares for it.
    pub async fn deliver_declared(
        &self,
        outputs: Vec<(usize, &Output)>,
        retry: RetryPolicy,
        schemas: Option<&OutputSchemas>,
    ) -> Vec<DeliveryFailure> {
        if let Some(sink) = &self.every {
            return sink.deliver(outputs, retry).await;
        }
        let mut by_sink: BTreeMap<&str, Vec<(usize, &Output)>> = BTreeMap::new();
        let mut failures = Vec::new();
        for (item, output) in outputs {
            match self.route(output) {
                Ok((name, _)) => by_sink.entry(name).or_default().push((item, output)),
                Err((kind, message)) => failures.push(DeliveryFailure {
                    item,
                    kind,
                    message,
                }),
            }
        }
        let deliveries = by_sink.into_iter().filter_map(|(name, outputs)| {
            let declared = schemas.and_then(|s| s.declared(name)).map(|(d, _)| d);
            self.sinks
                .get(name)
                .map(|sink| sink.deliver_declared(outputs, retry, declared))
        });
        for result in futures_util::future::join_all(deliveries).await {
            failures.extend(result);
        }
        failures
    }
}

/// Splits `items` into consecutive runs of at most `max_count` items and `max_bytes`
/// bytes (by `size`), as a service's batch call allows. An item is never split.
pub(crate) fn pack<T>(
    items: &[T],
    max_count: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<Range<usize>> {
    let mut calls = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        if i > start && (i - start == max_count || bytes + size(item) > max_bytes) {
            calls.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size(item);
    }
    if start < items.len() {
        calls.push(start..items.len());
    }
    calls
}

/// What a batching sink could not deliver.
pub(crate) struct Undelivered<T> {
    /// The entries still refused at the end, in order.
    pub(crate) entries: Vec<T>,
    /// The last reason the service gave.
    pub(crate) last_error: String,
    /// Retrying stopped because the run's time budget ran out, not the attempts.
    pub(crate) out_of_time: bool,
}

impl<T> Undelivered<T> {
    /// The failure kind of what is left: out of time, or out of attempts.
    pub(crate) fn kind(&self) -> FailureKind {
        if self.out_of_time {
            FailureKind::Unfinished
        } else {
            FailureKind::Delivery
        }
    }

    /// One failure per entry left, saying which `call` failed and why it stopped.
    pub(crate) fn failures(
        self,
        call: &str,
        retry: RetryPolicy,
        item: impl Fn(&T) -> usize,
    ) -> impl Iterator<Item = DeliveryFailure> {
        self.failures_of_each(call, retry, move |e| [item(e)])
    }

    /// [`Undelivered::failures`] for entries that carry several items' outputs (a KPL
    /// aggregate): each of them fails.
    pub(crate) fn failures_of_each<I: IntoIterator<Item = usize>>(
        self,
        call: &str,
        retry: RetryPolicy,
        items: impl Fn(&T) -> I,
    ) -> impl Iterator<Item = DeliveryFailure> {
        let kind = self.kind();
        let stopped = if self.out_of_time {
            "out of time".to_owned()
        } else {
            format!("{} attempts", retry.max_attempts)
        };
        let message = format!("{call} failed ({stopped}): {}", self.last_error);
        self.entries.into_iter().flat_map(move |e| {
            let message = message.clone();
            items(&e).into_iter().map(move |item| DeliveryFailure {
                item,
                kind,
                message: message.clone(),
            })
        })
    }
}

/// The retry rule every batching sink follows: send `pending` in `pack`ed calls; `send`
/// answers for one call which entries (by position in the call) the service refused,
/// and why; only those are sent again, after a backoff, up to `retry.max_attempts` and
/// within `retry.budget`.
///
/// Entries with the same `key` (a partition key, a FIFO message group) stay in order:
/// once one is refused, the later ones of its key in the same call are sent again after
/// it (even though they were taken), and those of later calls wait for the next attempt.
///
/// What the service took once stays taken: an entry sent again only to stay behind a
/// refused one of its key is delivered whatever its later calls answer (a call failing
/// whole on the last attempt does not make it undelivered, to be dead-lettered or
/// retried and so sent once more).
pub(crate) async fn send_with_retries<T: Clone>(
    pending: Vec<T>,
    retry: RetryPolicy,
    pack: impl Fn(&[T]) -> Vec<Range<usize>>,
    key: impl Fn(&T) -> Option<String>,
    mut send: impl AsyncFnMut(&[T]) -> Result<Vec<(usize, String)>, String>,
) -> Undelivered<T> {
    // Each entry with whether the service has taken it in any attempt so far.
    let mut pending: Vec<(T, bool)> = pending.into_iter().map(|e| (e, false)).collect();
    let mut last_error = String::new();
    let mut out_of_time = false;
    // A call was cut, or not made, by the run's hard deadline: what is left is unfinished
    // (handed back), not a delivery failure.
    let mut cut_by_time = false;
    for attempt in 1..=retry.max_attempts {
        // What goes again, and whether the service took it, now or before (then it is
        // sent again only to stay behind a refused entry of its key).
        let mut failed: Vec<(T, bool)> = Vec::new();
        let mut blocked: std::collections::HashSet<String> = std::collections::HashSet::new();
        let entries: Vec<T> = pending.iter().map(|(e, _)| e.clone()).collect();
        for range in pack(&entries) {
            let mut chunk = Vec::with_capacity(range.len());
            let mut chunk_taken = Vec::with_capacity(range.len());
            for (entry, taken) in &pending[range] {
                match key(entry) {
                    // An earlier entry of its key is to be sent again: this one waits.
                    Some(k) if blocked.contains(&k) => failed.push((entry.clone(), *taken)),
                    _ => {
                        chunk.push(entry.clone());
                        chunk_taken.push(*taken);
                    }
                }
            }
            if chunk.is_empty() {
                continue;
            }
            let mut refused = vec![false; chunk.len()];
            let answer = match retry.budget.bound(send(&chunk)).await {
                Ok(answer) => answer,
                Err(cut) => {
                    cut_by_time = true;
                    Err(cut.to_string())
                }
            };
            match answer {
                Ok(answer) => {
                    for (position, reason) in answer {
                        if let Some(slot) = refused.get_mut(position) {
                            *slot = true;
                            last_error = reason;
                        }
                    }
                }
                Err(reason) => {
                    refused.fill(true);
                    last_error = reason;
                }
            }
            for ((entry, refused), taken_before) in chunk.into_iter().zip(refused).zip(chunk_taken)
            {
                let k = key(&entry);
                let behind = k.as_ref().is_some_and(|k| blocked.contains(k));
                let taken = taken_before || !refused;
                // Refused (even if an earlier copy was taken: its last copy must stay
                // in order) or behind a refused one: it goes again, and its key's
                // later entries after it.
                if refused || behind {
                    if let Some(k) = k {
                        blocked.insert(k);
                    }
                    failed.push((entry, taken));
                }
            }
        }
        let last = attempt == retry.max_attempts;
        let delay = crate::limits::backoff(retry.base_delay, attempt);
        let no_time = cut_by_time || (!last && !retry.budget.allows_wait(delay));
        pending = failed;
        if last || no_time {
            // No more tries: what the service took is delivered, whatever its order.
            pending.retain(|(_, taken)| !taken);
            out_of_time = no_time && !pending.is_empty();
            break;
        }
        if pending.is_empty() {
            break;
        }
        tracing::warn!(entries = pending.len(), attempt, reason = %last_error, "a sink call partly failed; retrying those entries");
        tokio::time::sleep(delay).await;
    }
    Undelivered {
        entries: pending.into_iter().map(|(e, _)| e).collect(),
        last_error,
        out_of_time,
    }
}

/// Gzip-compresses `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 2 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limits::Budget;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            budget: Budget::unbounded(),
        }
    }

    /// `send_with_retries` over `entries` (`(name, key)`, each call one `pack`ed call of
    /// everything), with the service answering call `n` as `script[n]` says: `Ok` the
    /// positions it refused, `Err` the whole call failed. Returns what was left
    /// undelivered and every call's entries, by name.
    async fn scripted(
        entries: &[(&'static str, &'static str)],
        attempts: u32,
        script: Vec<Result<Vec<usize>, String>>,
    ) -> (Vec<&'static str>, Vec<Vec<&'static str>>) {
        let mut script = script.into_iter();
        let mut calls = Vec::new();
        let left = send_with_retries(
            entries.to_vec(),
            policy(attempts),
            |all| std::iter::once(0..all.len()).collect(),
            |(_, key)| Some((*key).to_owned()),
            async |chunk: &[(&'static str, &'static str)]| {
                calls.push(chunk.iter().map(|(name, _)| *name).collect::<Vec<_>>());
                match script.next().expect("a scripted answer for every call") {
                    Ok(refused) => Ok(refused.into_iter().map(|i| (i, "refused".into())).collect()),
                    Err(reason) => Err(reason),
                }
            },
        )
        .await;
        (left.entries.iter().map(|(name, _)| *name).collect(), calls)
    }

    #[tokio::test]
    async fn what_the_service_took_stays_taken_when_a_later_call_fails_whole() {
        // a1 refused, a2 taken (sent again behind a1 to keep the key's order), b taken.
        // The second and last attempt fails whole: a2 was delivered on the first, and
        // must not come back as undelivered (it would be dead-lettered or retried, and
        // so sent again).
        let (left, calls) = scripted(
            &[("a1", "a"), ("a2", "a"), ("b", "b")],
            2,
            vec![Ok(vec![0]), Err("connection reset".into())],
        )
        .await;
        assert_eq!(calls, [vec!["a1", "a2", "b"], vec!["a1", "a2"]]);
        assert_eq!(left, ["a1"]);
    }

    #[tokio::test]
    async fn a_copy_taken_earlier_goes_again_until_its_last_copy_is_in_order() {
        // a1 refused then taken; a2 taken, then refused behind it: it goes a third time
        // so its last copy follows a1's.
        let (left, calls) = scripted(
            &[("a1", "a"), ("a2", "a")],
            3,
            vec![Ok(vec![0]), Ok(vec![1]), Ok(vec![])],
        )
        .await;
        assert_eq!(calls, [vec!["a1", "a2"], vec!["a1", "a2"], vec!["a2"]]);
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn entries_never_taken_are_left_after_the_last_attempt() {
        let (left, calls) = scripted(
            &[("a1", "a"), ("b1", "b"), ("a2", "a")],
            2,
            vec![Err("throttled".into()), Ok(vec![2])],
        )
        .await;
        assert_eq!(calls.len(), 2);
        assert_eq!(left, ["a2"]);
    }
}
