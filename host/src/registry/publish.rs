//! `host publish`: put a plugin version into S3 (module, then its version manifest,
//! then the live manifest), and `--rollback`: point the live manifest at an earlier one.

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use aws_sdk_s3::primitives::ByteStream;
use ed25519_dalek::SigningKey;

use super::{Artifact, MANIFEST, Manifest, sha256_hex};
use crate::aws::describe_error;
use crate::engine::{Engine, Runner};

/// A plugin's prefix in S3, `s3://bucket/plugins/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, ending in `/`.
    pub prefix: String,
}

/// A plugin prefix that is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?}: expected s3://BUCKET/PREFIX/")]
pub struct PrefixError(String);

impl std::str::FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(raw: &str) -> Result<Self, PrefixError> {
        let (bucket, prefix) = raw
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/'))
            .filter(|(b, p)| !b.is_empty() && !p.trim_matches('/').is_empty())
            .ok_or_else(|| PrefixError(raw.to_owned()))?;
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: format!("{}/", prefix.trim_end_matches('/')),
        })
    }
}

impl Prefix {
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn version_key(&self, version: &str) -> String {
        self.key(&format!("versions/{version}.json"))
    }
}

/// What to publish.
pub struct Release {
    /// The module's bytes.
    pub module: Vec<u8>,
    /// Overrides the name the plugin reports.
    pub name: Option<String>,
    /// Overrides the version the plugin reports.
    pub version: Option<String>,
    /// Settings the version ships with (checked by calling `init` with them).
    pub config: BTreeMap<String, String>,
    /// Signs the module hash when set.
    pub signing_key: Option<SigningKey>,
    /// Make the live manifest pinned (newer publishes do not move it).
    pub pin: bool,
    /// Move the live manifest even when it is pinned.
    pub force: bool,
    /// Architectures to precompile the module for (signed artifacts next to it).
    pub precompile: Vec<String>,
    /// The lookup tables the plugin reads (signed into the manifest).
    pub lookups: Vec<String>,
    /// Each destination's output schema (signed into the manifest).
    pub output_schemas: BTreeMap<String, crate::schemas::DeclaredSchema>,
    /// How a destination's new schema must fit the published ones.
    pub compatibility: crate::schemas::Mode,
    /// Publish even when a schema does not fit (`--allow-incompatible`).
    pub allow_incompatible: bool,
}

/// What publishing did.
#[derive(Debug)]
pub enum Published {
    /// The version is live.
    Live(Box<Manifest>),
    /// The version is stored, but the live manifest is pinned to another one.
    HeldByPin {
        /// What was published.
        published: Box<Manifest>,
        /// What stays live.
        pinned: Box<Manifest>,
    },
}

/// Checks the module the way a host will (compile, link, `info`, `init` with the
/// shipped settings), then uploads module, version manifest and live manifest, in
/// that order.
pub async fn publish(
    engine: &Engine,
    s3: &aws_sdk_s3::Client,
    to: &Prefix,
    release: Release,
) -> anyhow::Result<Published> {
    let sha256 = sha256_hex(&release.module);
    check_release(&release)?;
    let config: Vec<(String, String)> = release.config.clone().into_iter().collect();
    let checked = check_module(
        engine,
        to,
        release.module,
        config,
        !release.precompile.is_empty(),
    )
    .await?;
    let (module, artifact) = (checked.module, checked.artifact);
    // Read first: the new manifest's sequence is the live one's plus one (and the
    // replace below is conditional on this read).
    let live = get_live(s3, to).await?;
    if !release.allow_incompatible {
        let live = live.as_ref().map(|(m, _)| m);
        check_schemas(s3, to, live, &release.output_schemas, release.compatibility).await?;
    }
    let sequence = match &live {
        Some((live, _)) => next_sequence(live)?,
        None => 1,
    };
    let mut manifest = Manifest {
        name: release.name.unwrap_or(checked.name),
        version: release.version.unwrap_or(checked.version),
        world: checked.world.to_owned(),
        module: to.key(&format!("modules/{sha256}.wasm")),
        sha256,
        config: release.config,
        created_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        sequence,
        signature: None,
        pinned: false,
        prefix: to.prefix.clone(),
        artifacts: artifact.iter().map(|(a, _)| a.clone()).collect(),
        lookups: release.lookups,
        output_schemas: release.output_schemas,
    };
    if manifest.version.is_empty() || manifest.version.contains('/') {
        bail!("version {:?} cannot name a manifest", manifest.version);
    }
    if let Some(key) = &release.signing_key {
        manifest.sign(key)?;
    }
    // Content-addressed: an existing object with this key has these very bytes.
    put_new(s3, &to.bucket, &manifest.module, module).await?;
    if let Some((artifact, bytes)) = artifact {
        put_new(s3, &to.bucket, &artifact.key, bytes).await?;
    }
    let version_key = to.version_key(&manifest.version);
    if !put_new(
        s3,
        &to.bucket,
        &version_key,
        serde_json::to_vec_pretty(&manifest)?,
    )
    .await?
    {
        let existing = get_manifest(s3, &to.bucket, &version_key)
            .await?
            .context("the version manifest vanished")?;
        manifest = published_again(existing, manifest, to, release.signing_key.as_ref())?;
    }
    if let Some((live, _)) = &live
        && live.pinned
        && !release.force
        && live.sha256 != manifest.sha256
    {
        return Ok(Published::HeldByPin {
            published: Box::new(manifest),
            pinned: Box::new(live.clone()),
        });
    }
    manifest.pinned = release.pin;
    let expected = live.as_ref().map(|(_, etag)| etag.as_str());
    replace_live(s3, to, &manifest, expected).await?;
    Ok(Published::Live(Box::new(manifest)))
}

/// What a release asks that no host could serve: an artifact without a signature, one
/// for another architecture, a lookup table's name no manifest takes.
fn check_release(release: &Release) -> anyhow::Result<()> {
    if !release.precompile.is_empty() && release.signing_key.is_none() {
        bail!(
            "--precompile needs --signing-key: a host loads only artifacts whose manifest signature it verifies (native code from a bucket is trusted by signature, never by location)"
        );
    }
    for arch in &release.precompile {
        if arch != std::env::consts::ARCH {
            bail!(
                "--precompile {arch}: this host compiles for {} only; precompile on a host of that architecture",
                std::env::consts::ARCH
            );
        }
    }
    for table in &release.lookups {
        crate::lookup::check_table_name(table).map_err(|e| anyhow::anyhow!("--lookups: {e}"))?;
    }
    Ok(())
}

/// A module checked the way a host will take it, and what it says of itself.
struct Checked {
    module: Vec<u8>,
    name: String,
    version: String,
    world: &'static str,
    /// Its precompiled artifact for this host's engine, when asked for, and its bytes.
    artifact: Option<(Artifact, Vec<u8>)>,
}

/// Compiles `module`, links it, asks its `info` and runs its `init` with the shipped
/// `config` (off the async threads: compiling takes seconds), and precompiles it for
/// `to` when `precompile`.
async fn check_module(
    engine: &Engine,
    to: &Prefix,
    module: Vec<u8>,
    config: Vec<(String, String)>,
    precompile: bool,
) -> anyhow::Result<Checked> {
    let compiling = engine.clone();
    let (module, name, version, world, bytes) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let plugin = compiling.load_bytes(&module, "the module")?;
            let (name, version) = (plugin.name().to_owned(), plugin.version().to_owned());
            let world = plugin.world();
            Runner::new(plugin, config).context("the shipped settings are refused")?;
            let artifact = if precompile {
                Some(compiling.precompile(&module, "the module")?)
            } else {
                None
            };
            Ok((module, name, version, world, artifact))
        })
        .await??;
    let artifact = bytes.map(|bytes| {
        let sha256 = sha256_hex(&bytes);
        let artifact = Artifact {
            arch: std::env::consts::ARCH.to_owned(),
            engine: engine.key().to_owned(),
            // Content-addressed like modules: an object already at this key has these
            // very bytes (whatever sits at a guessable name cannot pass for them).
            key: to.key(&format!("artifacts/{sha256}.cwasm")),
            sha256,
        };
        (artifact, bytes)
    });
    Ok(Checked {
        module,
        name,
        version,
        world,
        artifact,
    })
}

/// A version already stored (`existing`) published again: the same module, settings and
/// name as `new` or refused; made live again as first published, at `new`'s sequence,
/// with the artifact just made if it had none for this engine.
fn published_again(
    existing: Manifest,
    new: Manifest,
    to: &Prefix,
    key: Option<&SigningKey>,
) -> anyhow::Result<Manifest> {
    if existing.sha256 != new.sha256 || existing.config != new.config || existing.name != new.name {
        bail!(
            "{} is already published with another module or settings ({}); publish a new version",
            new.label(),
            existing.sha256
        );
    }
    let mut manifest = existing;
    vouch(&mut manifest, to, key)?;
    for artifact in new.artifacts {
        if manifest
            .artifact_for(&artifact.arch, &artifact.engine)
            .is_none()
        {
            manifest.artifacts.push(artifact);
        }
    }
    manifest.sequence = new.sequence;
    resign(&mut manifest, to, key)?;
    Ok(manifest)
}

/// Points the live manifest at `version`, or at the version published before the live
/// one. Returns (was live, now live).
pub async fn rollback(
    s3: &aws_sdk_s3::Client,
    to: &Prefix,
    version: Option<&str>,
    pin: bool,
    signing_key: Option<&SigningKey>,
) -> anyhow::Result<(Manifest, Manifest)> {
    let (live, etag) = get_live(s3, to).await?.with_context(|| {
        format!(
            "nothing is published under s3://{}/{}",
            to.bucket, to.prefix
        )
    })?;
    let mut target = match version {
        Some(version) => get_manifest(s3, &to.bucket, &to.version_key(version))
            .await?
            .with_context(|| format!("version {version} was never published here"))?,
        None => previous(s3, to, &live)
            .await?
            .with_context(|| format!("no version was published before {}", live.label()))?,
    };
    vouch(&mut target, to, signing_key)?;
    target.pinned = pin;
    // A rollback is a publish: the next sequence, so hosts take it (and never take the
    // bucket's older manifests back by themselves).
    target.sequence = next_sequence(&live)?;
    resign(&mut target, to, signing_key)?;
    replace_live(s3, to, &target, Some(&etag)).await?;
    Ok((live, target))
}

/// Before a manifest read back from the bucket is signed again: a signed one must still
/// verify with this key (the bucket may have been written since it was signed), and one
/// no signature of ours covers (unsigned, or signed before sequences) loses its
/// artifacts (native code we did not vouch for).
fn vouch(manifest: &mut Manifest, to: &Prefix, key: Option<&SigningKey>) -> anyhow::Result<()> {
    let Some(key) = key else {
        return Ok(());
    };
    if !manifest.prefix.is_empty() && manifest.prefix != to.prefix {
        bail!(
            "{}: its stored manifest was published to {:?}, not {:?} (copied from another plugin); publish a new version",
            manifest.label(),
            manifest.prefix,
            to.prefix
        );
    }
    match manifest.signature.clone() {
        Some(signature) if manifest.sequence > 0 => manifest
            .verify_signature(&signature, &key.verifying_key())
            .with_context(|| {
                format!(
                    "{}: its stored manifest's signature does not verify with this signing key (signed by another key, or altered in the bucket); publish a new version",
                    manifest.label()
                )
            }),
        _ => {
            manifest.artifacts.clear();
            Ok(())
        }
    }
}

/// The sequence after the live manifest's (a bucket writer could have set it to the
/// largest one: refused, not wrapped).
fn next_sequence(live: &Manifest) -> anyhow::Result<u64> {
    live.sequence.checked_add(1).with_context(|| {
        format!(
            "the live manifest's sequence {} has no next one; publish to a new prefix",
            live.sequence
        )
    })
}

/// Signs `manifest` again after its sequence changed, bound to `to`; one that was
/// signed cannot go live unsigned.
fn resign(manifest: &mut Manifest, to: &Prefix, key: Option<&SigningKey>) -> anyhow::Result<()> {
    manifest.prefix.clone_from(&to.prefix);
    match key {
        Some(key) => manifest.sign(key)?,
        None if manifest.signature.is_some() => bail!(
            "{} is signed: its new sequence must be signed too (--signing-key)",
            manifest.label()
        ),
        None => {}
    }
    Ok(())
}

/// Each destination's new output schema against the live version's (every published
/// version's, for a transitive mode): an error naming the destination, the version and
/// what broke.
async fn check_schemas(
    s3: &aws_sdk_s3::Client,
    to: &Prefix,
    live: Option<&Manifest>,
    schemas: &BTreeMap<String, crate::schemas::DeclaredSchema>,
    mode: crate::schemas::Mode,
) -> anyhow::Result<()> {
    if schemas.is_empty() {
        return Ok(());
    }
    let earlier: Vec<Manifest> = if mode.transitive {
        versions(s3, to).await?
    } else {
        live.cloned().into_iter().collect()
    };
    for old in &earlier {
        for (destination, new) in schemas {
            let Some(before) = old.output_schemas.get(destination) else {
                continue;
            };
            crate::schemas::check_compatibility(mode, before, new).map_err(|why| {
                anyhow::anyhow!(
                    "the output schema of `{destination}` does not follow version {}'s: {why} (publish with --allow-incompatible to publish it anyway)",
                    old.version
                )
            })?;
        }
    }
    Ok(())
}

/// The newest version manifest published before `live`.
async fn previous(
    s3: &aws_sdk_s3::Client,
    to: &Prefix,
    live: &Manifest,
) -> anyhow::Result<Option<Manifest>> {
    let mut best: Option<Manifest> = None;
    for candidate in versions(s3, to).await? {
        let earlier = candidate.created_at < live.created_at && candidate.version != live.version;
        if earlier
            && best
                .as_ref()
                .is_none_or(|b| candidate.created_at > b.created_at)
        {
            best = Some(candidate);
        }
    }
    Ok(best)
}

/// Every version manifest published under `to` (`versions/*.json`).
async fn versions(s3: &aws_sdk_s3::Client, to: &Prefix) -> anyhow::Result<Vec<Manifest>> {
    let mut versions = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(&to.bucket)
        .prefix(to.key("versions/"))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| anyhow::anyhow!("listing versions: {}", describe_error(&e)))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            versions.extend(get_manifest(s3, &to.bucket, key).await?);
        }
    }
    Ok(versions)
}

async fn get_manifest(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<Manifest>> {
    Ok(get_tagged(s3, bucket, key)
        .await?
        .map(|(manifest, _)| manifest))
}

/// The live manifest and its ETag, for a conditional replace.
pub async fn get_live(
    s3: &aws_sdk_s3::Client,
    to: &Prefix,
) -> anyhow::Result<Option<(Manifest, String)>> {
    get_tagged(s3, &to.bucket, &to.key(MANIFEST)).await
}

async fn get_tagged(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<(Manifest, String)>> {
    let object = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => object,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) => bail!("s3://{bucket}/{key}: {}", describe_error(&e)),
    };
    let etag = object.e_tag.clone().unwrap_or_default();
    let body = object.body.collect().await?.into_bytes();
    let manifest = Manifest::parse(&body).with_context(|| format!("s3://{bucket}/{key}"))?;
    Ok(Some((manifest, etag)))
}

/// Writes the live manifest only if it is still the one read (`If-Match` its ETag), or
/// still absent: two publishers racing on one plugin cannot silently undo each other.
pub async fn replace_live(
    s3: &aws_sdk_s3::Client,
    to: &Prefix,
    manifest: &Manifest,
    expected_etag: Option<&str>,
) -> anyhow::Result<()> {
    let key = to.key(MANIFEST);
    let request = s3
        .put_object()
        .bucket(&to.bucket)
        .key(&key)
        .content_type("application/json")
        .body(ByteStream::from(serde_json::to_vec_pretty(manifest)?));
    let request = match expected_etag {
        Some(etag) => request.if_match(etag),
        None => request.if_none_match("*"),
    };
    match request.send().await {
        Ok(_) => Ok(()),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => bail!(
            "s3://{}/{key} changed since it was read (another publish or rollback?); \
             the live version was not changed: run again",
            to.bucket
        ),
        Err(e) => bail!("s3://{}/{key}: {}", to.bucket, describe_error(&e)),
    }
}

/// `If-None-Match: *` put; `false` when the key already exists.
async fn put_new(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
) -> anyhow::Result<bool> {
    match s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .if_none_match("*")
        .body(ByteStream::from(body))
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(false),
        Err(e) => bail!("s3://{bucket}/{key}: {}", describe_error(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::Prefix;

    #[test]
    fn prefixes_end_in_a_slash() {
        let p: Prefix = "s3://b/plugins/enrich".parse().expect("prefix");
        assert_eq!(p.prefix, "plugins/enrich/");
        assert_eq!(p.version_key("0.1.0"), "plugins/enrich/versions/0.1.0.json");
        assert!("s3://b/".parse::<Prefix>().is_err());
        assert!("plugins/enrich/".parse::<Prefix>().is_err());
    }
}
