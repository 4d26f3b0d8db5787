//! Reference data for plugins: the logical tables the operator maps
//! (`PIPELINE_LOOKUPS=users=dynamodb://users-table,prices=s3://bucket/prices.parquet#sku`,
//! `host run --lookup`), read through one cache per table, granted per plugin by its
//! signed manifest. The sandbox reaches them only through contract 0.2's `lookup`
//! import (`engine::TableReader`).
//!
//! # Layout
//! - `mod.rs`: [`Tables`] (every mapped table, its cache and counts) and the grant a
//!   plugin reads through.
//! - `spec.rs`: [`TableSpec`], where a table lives.
//! - `cache.rs`: the per-table cache (entries, bytes, TTL; misses cached too).
//! - `dynamodb.rs`, `object.rs`, `http.rs`: the backends.
//!
//! A lookup that cannot be answered (throttled, timed out, unreachable, out of the
//! invocation's time) is `unavailable`: the plugin fails its records as infrastructure
//! errors, which are retried or handed back, never dead-lettered as bad data.

mod cache;
mod dynamodb;
mod http;
mod object;
mod spec;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use cache::CacheLimits;
pub use dynamodb::KEYS_PER_CALL;
pub use http::MAX_VALUE_BYTES;
pub use spec::{
    DEFAULT_KEY_COLUMN, TableFormat, TableSpec, TableSpecError, check_table_name, join_specs,
};

use crate::aws::AwsClients;
use crate::engine::{LookupFailure, TableReader};
use cache::Cache;
use dynamodb::DynamoTable;
use http::HttpTable;
use object::{ObjectTable, Origin};

/// How long a lookup may take when no invocation bounds it (`host run`, a new
/// version's `init` between runs): throttled keys are not asked forever.
const UNBOUNDED_LOOKUP: Duration = Duration::from_secs(30);

/// How the tables are mapped and kept.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupSettings {
    /// Logical name to backend.
    pub tables: BTreeMap<String, TableSpec>,
    /// Each table's cache (DynamoDB and HTTP tables), and how often an object table is
    /// checked for a new version (its TTL).
    pub cache: CacheLimits,
    /// Bytes an object table may have.
    pub max_table_bytes: u64,
    /// One HTTP GET's time.
    pub http_timeout: Duration,
}

/// A table that cannot be set up at start.
#[derive(Debug, thiserror::Error)]
#[error("lookup table `{name}` ({spec}): {reason}")]
pub struct LookupStartError {
    /// The logical name.
    pub name: String,
    /// Where it was mapped.
    pub spec: String,
    /// Why.
    pub reason: String,
}

/// What one table did since the counts were last taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Keys answered from memory (the cache, or an object table already loaded).
    pub hits: u64,
    /// Keys that needed a request to the backend.
    pub misses: u64,
    /// Requests made (`BatchGetItem` calls, GETs, object reads).
    pub calls: u64,
    /// Lookups that failed (the plugin was answered `unavailable`).
    pub errors: u64,
    /// Time spent in lookups.
    pub time: Duration,
}

#[derive(Default)]
struct Counts {
    hits: AtomicU64,
    misses: AtomicU64,
    calls: AtomicU64,
    errors: AtomicU64,
    micros: AtomicU64,
}

enum Backend {
    Dynamodb(DynamoTable),
    Object(ObjectTable),
    Http(HttpTable),
}

struct Table {
    spec: TableSpec,
    backend: Backend,
    cache: Mutex<Cache>,
    counts: Counts,
}

/// Every mapped table, shared by the plugins that were granted some of them.
pub struct Tables {
    tables: BTreeMap<String, Table>,
    runtime: tokio::runtime::Handle,
    /// When lookups must have ended: the current run's budget.
    until: Mutex<Option<Instant>>,
}

impl Tables {
    /// Sets up every table: a DynamoDB table's key is learned, an object table loaded
    /// (so a table that cannot be read fails the start, naming it). Must run inside
    /// the runtime lookups will use.
    pub async fn connect(
        settings: &LookupSettings,
        aws: Option<&AwsClients>,
    ) -> Result<Arc<Self>, LookupStartError> {
        let mut tables = BTreeMap::new();
        for (name, spec) in &settings.tables {
            let failed = |reason: String| LookupStartError {
                name: name.clone(),
                spec: spec.to_string(),
                reason,
            };
            let aws = || aws.ok_or_else(|| failed("needs AWS clients (host bug)".into()));
            let object = |origin, column: &String, format| {
                ObjectTable::new(
                    origin,
                    column.clone(),
                    format,
                    settings.max_table_bytes,
                    settings.cache.ttl,
                )
            };
            let backend = match spec {
                TableSpec::Dynamodb { table, fields } => Backend::Dynamodb(
                    DynamoTable::connect(aws()?.dynamodb.clone(), table, fields)
                        .await
                        .map_err(failed)?,
                ),
                TableSpec::S3 {
                    bucket,
                    key,
                    column,
                    format,
                } => {
                    let origin = Origin::S3 {
                        aws: aws()?.clone(),
                        bucket: bucket.clone(),
                        key: key.clone(),
                    };
                    Backend::Object(object(origin, column, *format))
                }
                TableSpec::File {
                    path,
                    column,
                    format,
                } => Backend::Object(object(Origin::File(path.clone()), column, *format)),
                TableSpec::Http { template } => {
                    Backend::Http(HttpTable::new(template, settings.http_timeout).map_err(failed)?)
                }
            };
            if let Backend::Object(table) = &backend {
                table
                    .rows(Instant::now() + UNBOUNDED_LOOKUP)
                    .await
                    .map_err(failed)?;
            }
            tables.insert(
                name.clone(),
                Table {
                    spec: spec.clone(),
                    backend,
                    cache: Mutex::new(Cache::new(settings.cache)),
                    counts: Counts::default(),
                },
            );
        }
        Ok(Arc::new(Self {
            tables,
            runtime: tokio::runtime::Handle::current(),
            until: Mutex::new(None),
        }))
    }

    /// The reader a plugin gets: the tables its manifest `declared` (each must be
    /// mapped, else the plugin is refused at start, naming the table), or, for a
    /// plugin without a manifest (a local file), every mapped table.
    pub fn grant(
        self: &Arc<Self>,
        declared: Option<&[String]>,
    ) -> Result<Arc<dyn TableReader>, String> {
        let names: BTreeSet<String> = match declared {
            None => self.tables.keys().cloned().collect(),
            Some(declared) => {
                if let Some(missing) = declared.iter().find(|t| !self.tables.contains_key(*t)) {
                    return Err(format!(
                        "it reads lookup table `{missing}`, which is not mapped (PIPELINE_LOOKUPS, `host run --lookup`); mapped: {}",
                        self.names()
                    ));
                }
                declared.iter().cloned().collect()
            }
        };
        Ok(Arc::new(Granted {
            tables: self.clone(),
            names,
        }))
    }

    /// Lookups of the coming run end by `until` (its budget); `None`: no limit.
    pub fn set_until(&self, until: Option<Instant>) {
        if let Ok(mut current) = self.until.lock() {
            *current = until;
        }
    }

    /// Each table's counts since they were last taken (zeroed).
    pub fn take_stats(&self) -> BTreeMap<String, TableStats> {
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        self.tables
            .iter()
            .map(|(name, table)| {
                let c = &table.counts;
                let stats = TableStats {
                    hits: take(&c.hits),
                    misses: take(&c.misses),
                    calls: take(&c.calls),
                    errors: take(&c.errors),
                    time: Duration::from_micros(take(&c.micros)),
                };
                (name.clone(), stats)
            })
            .collect()
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.tables.keys().map(String::as_str).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// The values of `keys` in table `name` (granted), in order.
    async fn get(&self, name: &str, keys: &[String]) -> Result<Vec<Option<Bytes>>, LookupFailure> {
        let table = self.tables.get(name).ok_or_else(|| {
            LookupFailure::NotGranted(format!("no lookup table `{name}` is mapped"))
        })?;
        let started = Instant::now();
        let until = (self.until.lock().ok().and_then(|u| *u)).unwrap_or(started + UNBOUNDED_LOOKUP);
        let answer = if until <= started {
            Err("the invocation's time is up".to_owned())
        } else {
            table.get(keys, until).await
        };
        let c = &table.counts;
        c.micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        answer.map_err(|reason| {
            c.errors.fetch_add(1, Ordering::Relaxed);
            LookupFailure::Unavailable(format!("lookup table `{name}` ({}): {reason}", table.spec))
        })
    }
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.tables
                    .iter()
                    .map(|(name, t)| (name, t.spec.to_string())),
            )
            .finish()
    }
}

impl Table {
    async fn get(&self, keys: &[String], until: Instant) -> Result<Vec<Option<Bytes>>, String> {
        let c = &self.counts;
        if let Backend::Object(object) = &self.backend {
            let answer = object.rows(until).await?;
            let distinct = keys.iter().collect::<HashSet<_>>().len();
            let counted = if answer.fetched { &c.misses } else { &c.hits };
            counted.fetch_add(distinct as u64, Ordering::Relaxed);
            if answer.fetched {
                c.calls.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(keys.iter().map(|k| answer.rows.get(k).cloned()).collect());
        }
        // Each distinct key once; what the cache holds is not asked.
        let now = Instant::now();
        let mut known: HashMap<&str, Option<Bytes>> = HashMap::new();
        let mut missing: Vec<String> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        {
            let mut cache = self
                .cache
                .lock()
                .map_err(|_| "the cache's lock was poisoned (host bug)")?;
            for key in keys {
                if !seen.insert(key.as_str()) {
                    continue;
                }
                match cache.get(key, now) {
                    Some(value) => {
                        known.insert(key, value);
                    }
                    None => missing.push(key.clone()),
                }
            }
        }
        c.hits.fetch_add(known.len() as u64, Ordering::Relaxed);
        c.misses.fetch_add(missing.len() as u64, Ordering::Relaxed);
        if !missing.is_empty() {
            let fetched = match &self.backend {
                Backend::Dynamodb(table) => table.fetch(&missing, until, &c.calls).await?,
                Backend::Http(table) => table.fetch(&missing, until, &c.calls).await?,
                Backend::Object(object) => {
                    let rows = object.rows(until).await?.rows;
                    missing.iter().map(|k| rows.get(k).cloned()).collect()
                }
            };
            let now = Instant::now();
            let mut cache = self
                .cache
                .lock()
                .map_err(|_| "the cache's lock was poisoned (host bug)")?;
            for (key, value) in missing.iter().zip(fetched) {
                cache.put(key, value.clone(), now);
                known.insert(key, value);
            }
        }
        Ok(keys
            .iter()
            .map(|k| known.get(k.as_str()).cloned().flatten())
            .collect())
    }
}

/// The tables one plugin may read.
struct Granted {
    tables: Arc<Tables>,
    names: BTreeSet<String>,
}

impl TableReader for Granted {
    fn get(&self, table: &str, keys: &[String]) -> Result<Vec<Option<Bytes>>, LookupFailure> {
        if !self.names.contains(table) {
            // Nothing leaves the host for a table the plugin was not granted.
            return Err(LookupFailure::NotGranted(format!(
                "this plugin was not granted lookup table `{table}` (its manifest declares: {})",
                if self.names.is_empty() {
                    "none".to_owned()
                } else {
                    self.names.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            )));
        }
        // The plugin's thread is a blocking one: it waits here for the runtime's I/O.
        self.tables.runtime.block_on(self.tables.get(table, keys))
    }
}
