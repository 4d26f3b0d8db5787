//! A configured plugin location, followed over time: the version serving now, and the
//! check between batches that finds, verifies and starts a newer one.
//!
//! The check is a conditional GET of the manifest with the ETag last seen, so an
//! unchanged manifest costs one small request that returns 304. A changed manifest is
//! taken in full before anything switches: fetch, hash check, contract and signature
//! checks, compile (or the precompiled cache), `init`. Only a version that passed all of
//! them replaces the serving one; the caller swaps between two batches.
//!
//! A signed manifest may list precompiled artifacts (`host publish --precompile`). A host
//! that verifies signatures, whose engine made one of them, and whose cache does not hold
//! the module yet fetches that artifact instead of the module and loads it without
//! compiling; an artifact whose bytes do not hash to the signed sha256 is refused (said
//! in the log) and the module compiled instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;

use super::{Artifact, LoadError, Manifest, PluginLocation, sha256_hex};
use crate::aws::{AwsClients, describe_error};
use crate::engine::{ArtifactCache, Engine, LoadReport, PluginError, Runner};
use crate::lookup::Tables;

/// Longest wait for the manifest or the module: a check runs between two batches, so a
/// hung request must not hold the next batch for long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How a source is followed and checked.
#[derive(Debug, Clone, Default)]
pub struct FollowSettings {
    /// Least time between two manifest checks; zero checks before every batch.
    pub check_interval: Duration,
    /// Where precompiled artifacts are kept; `None` compiles every time.
    pub cache: Option<ArtifactCache>,
    /// When set, a manifest must carry a signature by this key.
    pub public_key: Option<VerifyingKey>,
    /// The host's plugin settings; they override the manifest's defaults.
    pub config: Vec<(String, String)>,
    /// The lowest publish sequence the location may serve, kept outside the bucket.
    pub floor: Option<super::SequenceFloor>,
    /// The lookup tables the operator mapped; each version is granted those its
    /// manifest declares.
    pub lookups: Option<Arc<Tables>>,
}

/// A plugin version, started and ready for its first batch.
pub struct Loaded {
    /// The started plugin (`init` done).
    pub runner: Runner,
    /// The manifest it came from, when there is one.
    pub manifest: Option<Manifest>,
    /// Where the time went.
    pub timings: Timings,
}

impl Loaded {
    /// Logs that this version is ready, with where the time went.
    pub fn log_ready(&self, what: &str) {
        let t = &self.timings;
        tracing::info!(
            plugin = %self.runner.plugin().label(),
            sha256 = self.manifest.as_ref().map_or("", |m| &m.sha256[..m.sha256.len().min(12)]),
            cache = t.load.cache.as_str(),
            fetch_ms = ms(t.fetch),
            verify_ms = ms(t.verify),
            load_ms = ms(t.load.load),
            prepare_ms = ms(t.load.prepare),
            init_ms = ms(t.init),
            "{what}"
        );
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// The steps of making a plugin version ready.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    /// Fetching the manifest and module (with the contract and signature checks made
    /// between the two, microseconds).
    pub fetch: Duration,
    /// Hashing the module and comparing with the manifest's sha256.
    pub verify: Duration,
    /// Compile or deserialize, link, first instance.
    pub load: LoadReport,
    /// Starting the serving instance and calling `init`.
    pub init: Duration,
}

/// One configured plugin location and what serves from it.
pub struct FollowedPlugin {
    location: PluginLocation,
    engine: Engine,
    settings: FollowSettings,
    etag: Option<String>,
    /// `(sha256, version, config)` of the serving version: a manifest rewritten with the
    /// same three is not a new version.
    serving: Option<(String, String, BTreeMap<String, String>)>,
    /// The serving manifest's publish sequence: a manifest with a lower one is refused.
    serving_sequence: Option<u64>,
    next_check: Instant,
}

impl FollowedPlugin {
    /// A source for `location`, loaded with `engine`.
    pub fn new(location: PluginLocation, engine: Engine, settings: FollowSettings) -> Self {
        Self {
            location,
            engine,
            settings,
            etag: None,
            serving: None,
            serving_sequence: None,
            next_check: Instant::now(),
        }
    }

    /// Where the plugin comes from.
    pub fn location(&self) -> &PluginLocation {
        &self.location
    }

    /// The cold start: the current version, or why it cannot run.
    pub async fn load(&mut self, aws: Option<&AwsClients>) -> Result<Loaded, LoadError> {
        self.next_check = Instant::now() + self.settings.check_interval;
        if self.settings.public_key.is_some()
            && !matches!(self.location, PluginLocation::S3Manifest { .. })
        {
            return Err(LoadError::Config(format!(
                "{}: a signed plugin needs a manifest (publish it with `host publish`)",
                self.location
            )));
        }
        let started = Instant::now();
        let location = self.location.clone();
        let (bytes, origin, manifest) = match &location {
            PluginLocation::File(path) => {
                let bytes = read_file(path)?;
                (
                    Code::Module(bytes::Bytes::from(bytes)),
                    path.display().to_string(),
                    None,
                )
            }
            PluginLocation::S3Module { bucket, key } => {
                let bytes = s3(aws, &location)?
                    .object_bytes(bucket, key)
                    .await
                    .map_err(|e| LoadError::Fetch {
                        what: location.to_string(),
                        reason: e.reason,
                    })?;
                (Code::Module(bytes), location.to_string(), None)
            }
            PluginLocation::S3Manifest { .. } => {
                let aws = s3(aws, &location)?;
                if let Some(floor) = &self.settings.floor {
                    let floor = floor.read().await.map_err(|e| LoadError::Fetch {
                        what: e.what,
                        reason: e.reason,
                    })?;
                    self.serving_sequence = Some(floor);
                }
                let Some(manifest) = self.fetch_manifest(aws, None).await? else {
                    return Err(LoadError::Config(
                        "the manifest answered 304 to an unconditional GET".into(),
                    ));
                };
                // A cold start goes no lower than the kept floor either.
                let code = self.fetch_newer_code(aws, &manifest).await?;
                (code, manifest.label(), Some(manifest))
            }
        };
        let fetch = started.elapsed();
        self.start(bytes, origin, manifest, fetch).await
    }

    /// Between batches: a new version, verified and started, if the manifest changed
    /// since the last check and the interval has passed; `Ok(None)` when nothing is due
    /// or nothing changed. An error leaves the serving version in place, and the same
    /// manifest is not tried again until it changes.
    pub async fn check(&mut self, aws: &AwsClients) -> Result<Option<Loaded>, LoadError> {
        if !matches!(self.location, PluginLocation::S3Manifest { .. })
            || Instant::now() < self.next_check
        {
            return Ok(None);
        }
        self.next_check = Instant::now() + self.settings.check_interval;
        let previous = self.etag.clone();
        let result = self.check_changed(aws, previous.as_deref()).await;
        if let Err(LoadError::Fetch { .. }) = &result {
            // Possibly transient (a throttled GET, a module not yet visible): look again
            // at the next check. Every other refusal waits for the manifest to change.
            self.etag = previous;
        }
        result
    }

    async fn check_changed(
        &mut self,
        aws: &AwsClients,
        etag: Option<&str>,
    ) -> Result<Option<Loaded>, LoadError> {
        let started = Instant::now();
        let Some(manifest) = self.fetch_manifest(aws, etag).await? else {
            return Ok(None);
        };
        if self.serving.as_ref() == Some(&identity(&manifest)) {
            return Ok(None);
        }
        let code = self.fetch_newer_code(aws, &manifest).await?;
        let label = manifest.label();
        self.start(code, label, Some(manifest), started.elapsed())
            .await
            .map(Some)
    }

    /// GET the manifest, conditional on `etag`; `None` when it is unchanged (304). The
    /// new ETag is kept as soon as the body arrives, so a manifest that does not parse
    /// is not fetched again until it changes.
    async fn fetch_manifest(
        &mut self,
        aws: &AwsClients,
        etag: Option<&str>,
    ) -> Result<Option<Manifest>, LoadError> {
        let PluginLocation::S3Manifest { bucket, key } = &self.location else {
            return Ok(None);
        };
        let fetch_error = |reason: String| LoadError::Fetch {
            what: self.location.to_string(),
            reason,
        };
        let request = aws
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_if_none_match(etag.map(str::to_owned));
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, async {
            let object = match request.send().await {
                Ok(object) => object,
                // The SDK has no modelled "not modified": an error with the status.
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 304) => {
                    return Ok(None);
                }
                Err(e) => return Err(describe_error(&e)),
            };
            let etag = object.e_tag.clone();
            let body = object.body.collect().await;
            body.map(|b| Some((etag, b.into_bytes())))
                .map_err(|e| format!("reading: {e}"))
        })
        .await
        .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))
        .flatten()
        .map_err(fetch_error)?;
        let Some((new_etag, body)) = fetched else {
            return Ok(None);
        };
        self.etag = new_etag;
        let manifest = Manifest::parse(&body).map_err(|source| LoadError::Refused {
            plugin: self.location.to_string(),
            source,
        })?;
        Ok(Some(manifest))
    }

    /// [`Self::fetch_code`] for a manifest no older than the one serving (or the floor a
    /// cold start read): an older one is refused before anything is fetched.
    async fn fetch_newer_code(
        &self,
        aws: &AwsClients,
        manifest: &Manifest,
    ) -> Result<Code, LoadError> {
        manifest
            .check_sequence(self.serving_sequence)
            .map_err(|source| LoadError::Refused {
                plugin: manifest.label(),
                source,
            })?;
        self.fetch_code(aws, manifest).await
    }

    /// What to run a manifest's version from, after the checks that need no module
    /// bytes: its signed artifact for this engine when one may be used, else its module.
    async fn fetch_code(&self, aws: &AwsClients, manifest: &Manifest) -> Result<Code, LoadError> {
        let PluginLocation::S3Manifest { bucket, .. } = &self.location else {
            return Err(LoadError::Config("not a manifest location".into()));
        };
        let prefix = self.location.plugin_prefix().unwrap_or_default();
        manifest
            .check(self.settings.public_key.as_ref(), prefix)
            .map_err(|source| LoadError::Refused {
                plugin: manifest.label(),
                source,
            })?;
        if let Some(artifact) = self.usable_artifact(manifest) {
            match fetch_artifact(aws, bucket, artifact).await {
                Ok(bytes) => return Ok(Code::Artifact(bytes)),
                Err(reason) => tracing::warn!(
                    plugin = %manifest.label(),
                    artifact = %artifact.key,
                    %reason,
                    "the published artifact is refused; compiling the module instead"
                ),
            }
        }
        fetch_object(aws, bucket, &manifest.module)
            .await
            .map(Code::Module)
            .map_err(|reason| LoadError::Fetch {
                what: format!("the module of {}", manifest.label()),
                reason,
            })
    }

    /// The manifest's artifact for this host, when it may be loaded: signatures are
    /// required (so [`Manifest::check`] verified the one covering it), it was made by an
    /// engine like this one, and the local cache does not already hold the module.
    fn usable_artifact<'m>(&self, manifest: &'m Manifest) -> Option<&'m Artifact> {
        self.settings.public_key?;
        let sha256 = manifest.sha256.to_ascii_lowercase();
        if let Some(cache) = &self.settings.cache
            && cache.entry(&sha256).is_some()
        {
            return None;
        }
        manifest.artifact_for(std::env::consts::ARCH, self.engine.key())
    }

    /// Hash check, compile or cache, `init`: the CPU-bound part, on a blocking thread.
    async fn start(
        &mut self,
        code: Code,
        origin: String,
        manifest: Option<Manifest>,
        fetch: Duration,
    ) -> Result<Loaded, LoadError> {
        let engine = self.engine.clone();
        let cache = self.settings.cache.clone();
        let config = self.settings.config.clone();
        let lookups = self.settings.lookups.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            prepare(
                &engine,
                &code,
                &origin,
                manifest,
                cache.as_ref(),
                &config,
                lookups.as_ref(),
                fetch,
            )
        })
        .await
        .map_err(|e| LoadError::Config(format!("the loading thread failed: {e}")))??;
        self.serving = loaded.manifest.as_ref().map(identity);
        self.serving_sequence = loaded.manifest.as_ref().map(|m| m.sequence);
        if let (Some(floor), Some(manifest)) = (&self.settings.floor, &loaded.manifest)
            && let Err(e) = floor.raise(manifest.sequence).await
        {
            // The version serves; the floor stays lower until the next version raises it.
            tracing::warn!(plugin = %manifest.label(), error = %e, "cannot raise the plugin's sequence floor");
        }
        Ok(loaded)
    }
}

/// A version's code as fetched.
enum Code {
    /// The module: verified against the manifest's sha256, then compiled or found in
    /// the cache.
    Module(bytes::Bytes),
    /// The signed artifact for this engine, its sha256 already checked.
    Artifact(bytes::Bytes),
}

/// An object of the plugin's bucket, within [`FETCH_TIMEOUT`].
async fn fetch_object(aws: &AwsClients, bucket: &str, key: &str) -> Result<bytes::Bytes, String> {
    tokio::time::timeout(FETCH_TIMEOUT, aws.object_bytes(bucket, key))
        .await
        .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))
        .and_then(|fetched| fetched.map_err(|e| e.reason))
}

/// An artifact's bytes, if they hash to what the (signed) manifest says.
async fn fetch_artifact(
    aws: &AwsClients,
    bucket: &str,
    artifact: &Artifact,
) -> Result<bytes::Bytes, String> {
    let bytes = fetch_object(aws, bucket, &artifact.key).await?;
    let actual = sha256_hex(&bytes);
    if !actual.eq_ignore_ascii_case(&artifact.sha256) {
        return Err(format!(
            "sha256 mismatch: the manifest says {}, the artifact is {actual}",
            artifact.sha256
        ));
    }
    Ok(bytes)
}

/// Loads a local `.wasm` file (through the cache, if any) and starts it. Blocking.
pub fn load_file(
    engine: &Engine,
    path: &std::path::Path,
    cache: Option<&ArtifactCache>,
    config: &[(String, String)],
) -> Result<Loaded, LoadError> {
    let started = Instant::now();
    let bytes = read_file(path)?;
    let origin = path.display().to_string();
    prepare(
        engine,
        &Code::Module(bytes.into()),
        &origin,
        None,
        cache,
        config,
        None,
        started.elapsed(),
    )
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| {
        LoadError::Plugin(PluginError::Read {
            path: path.display().to_string(),
            source,
        })
    })
}

/// Verifies a module against the manifest, compiles (or deserializes) it, or loads
/// the published artifact, grants it the lookup tables its manifest declares (every
/// mapped one without a manifest), and starts it with the manifest's settings overlaid
/// by `config`. Blocking.
#[allow(clippy::too_many_arguments)]
fn prepare(
    engine: &Engine,
    code: &Code,
    origin: &str,
    manifest: Option<Manifest>,
    cache: Option<&ArtifactCache>,
    config: &[(String, String)],
    lookups: Option<&Arc<Tables>>,
    fetch: Duration,
) -> Result<Loaded, LoadError> {
    let started = Instant::now();
    let (mut plugin, load, verify) = match (code, &manifest) {
        (Code::Artifact(artifact), Some(manifest)) => {
            let sha256 = manifest.sha256.to_ascii_lowercase();
            let (plugin, load) = engine.load_published(artifact, &sha256, origin, cache)?;
            (plugin, load, Duration::ZERO)
        }
        (Code::Artifact(_), None) => {
            return Err(LoadError::Config(
                "an artifact without its manifest (host bug)".into(),
            ));
        }
        (Code::Module(bytes), _) => {
            let sha256 = sha256_hex(bytes);
            if let Some(manifest) = &manifest {
                manifest
                    .verify_module(bytes)
                    .map_err(|source| LoadError::Refused {
                        plugin: manifest.label(),
                        source,
                    })?;
            }
            let verify = started.elapsed();
            let (plugin, load) = engine.load_cached(bytes, &sha256, origin, cache)?;
            (plugin, load, verify)
        }
    };
    let mut settings: BTreeMap<String, String> = BTreeMap::new();
    if let Some(manifest) = &manifest {
        plugin = plugin.with_identity(&manifest.name, &manifest.version);
        settings.clone_from(&manifest.config);
    }
    if let Some(manifest) = manifest.as_ref().filter(|m| !m.output_schemas.is_empty()) {
        let schemas =
            crate::schemas::OutputSchemas::compile(&manifest.output_schemas).map_err(|reason| {
                LoadError::Refused {
                    plugin: manifest.label(),
                    source: super::ManifestError::Malformed(reason),
                }
            })?;
        plugin = plugin.with_output_schemas(Arc::new(schemas));
    }
    let declared = manifest.as_ref().map(|m| m.lookups.as_slice());
    match (lookups, declared) {
        (Some(tables), declared) => {
            let granted = tables
                .grant(declared)
                .map_err(|reason| LoadError::Lookups {
                    plugin: plugin.label(),
                    reason,
                })?;
            plugin = plugin.with_tables(granted);
        }
        (None, Some(declared)) if !declared.is_empty() => {
            return Err(LoadError::Lookups {
                plugin: plugin.label(),
                reason: format!(
                    "it reads lookup tables ({}), and none is mapped (PIPELINE_LOOKUPS, `host run --lookup`)",
                    declared.join(", ")
                ),
            });
        }
        (None, _) => {}
    }
    settings.extend(config.iter().cloned());
    let started = Instant::now();
    let runner = Runner::new(plugin, settings.into_iter().collect())?;
    let timings = Timings {
        fetch,
        verify,
        load,
        init: started.elapsed(),
    };
    Ok(Loaded {
        runner,
        manifest,
        timings,
    })
}

fn identity(manifest: &Manifest) -> (String, String, BTreeMap<String, String>) {
    (
        manifest.sha256.to_ascii_lowercase(),
        manifest.version.clone(),
        manifest.config.clone(),
    )
}

fn s3<'a>(
    aws: Option<&'a AwsClients>,
    location: &PluginLocation,
) -> Result<&'a AwsClients, LoadError> {
    aws.ok_or_else(|| LoadError::Config(format!("{location}: S3 locations need AWS clients")))
}
