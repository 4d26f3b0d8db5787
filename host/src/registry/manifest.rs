//! The plugin manifest: what a published version is, and the checks a host makes
//! before running it (hash, contract version, signature).
//!
//! ```json
//! {"name":"enrich","version":"0.2.0","world":"pipeline:plugin@0.1.0",
//!  "module":"plugins/enrich/modules/9f86d0….wasm","sha256":"9f86d0…",
//!  "config":{"currency":"EUR"},"created_at":"2026-11-26T12:00:00.000Z","sequence":3,
//!  "signature":"base64 ed25519 over the manifest's signed fields","pinned":false}
//! ```
//!
//! The signature covers [`Manifest::signed_bytes`]: a domain-separated encoding of the
//! name, version, world, module sha256, shipped config and publish sequence, so whoever
//! can write the bucket cannot change what a signed version does (its settings), what it
//! is called (logs, DLQ entries), or roll a host back to an older signed version: every
//! publish and rollback takes a higher sequence, and a host refuses a lower one than it
//! serves.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::engine::WIT_VERSIONS;

/// One published plugin version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The plugin's name (as it reports it, unless published under another).
    pub name: String,
    /// The published version; DLQ entries and logs name it.
    pub version: String,
    /// The WIT package the module was built against, `pipeline:plugin@X.Y.Z`.
    pub world: String,
    /// The module's key in the same bucket (content-addressed, never overwritten).
    pub module: String,
    /// Hex sha256 of the module's bytes.
    pub sha256: String,
    /// Plugin settings the version ships with; the host's own settings override them.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// When it was published (RFC 3339, UTC).
    pub created_at: String,
    /// The publish's place in the plugin's history: every publish and rollback takes
    /// one higher than the live manifest's. Signed; a host never goes to a lower one.
    #[serde(default)]
    pub sequence: u64,
    /// Base64 ed25519 signature over [`Manifest::signed_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// A pinned manifest is not moved by publishing a newer version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    /// The key prefix the version was published under (`plugins/enrich/`). Signed: a
    /// host refuses a signed manifest found under another prefix, so one plugin's
    /// manifest copied over another's does not run there. Empty in manifests from
    /// before it was signed (refused where signatures are required).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// The module precompiled (`host publish --precompile`), one artifact per target
    /// and engine. Signed with the rest; a host loads one only when it verifies the
    /// signature and the artifact was made by an engine like its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// The lookup tables the plugin reads, by logical name (`host publish --lookups`).
    /// Signed: a host grants it these and no others, and refuses to start it when one
    /// is not mapped (`PIPELINE_LOOKUPS`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lookups: Vec<String>,
    /// The schema of each destination's outputs (`host publish --output-schema
    /// DEST=FILE`; `default` for outputs without one). Signed: a host checks every
    /// output against it before anything of its record is sent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub output_schemas: BTreeMap<String, crate::schemas::DeclaredSchema>,
}

/// The module compiled ahead of time for one target: wasmtime's native code, which a
/// host with the same engine loads without compiling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The CPU architecture, e.g. `x86_64` or `aarch64`.
    pub arch: String,
    /// The engine's compatibility key (wasmtime version, target, compiler settings):
    /// a host whose key differs compiles instead.
    pub engine: String,
    /// The artifact's key in the same bucket (content-addressed).
    pub key: String,
    /// Hex sha256 of the artifact's bytes.
    pub sha256: String,
}

/// Why a manifest or its module was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest is not valid JSON of the documented shape.
    #[error("not a plugin manifest: {0}")]
    Malformed(String),
    /// The module's bytes do not hash to the manifest's sha256.
    #[error("module sha256 mismatch: the manifest says {expected}, the module is {actual}")]
    HashMismatch {
        /// From the manifest.
        expected: String,
        /// Of the bytes fetched.
        actual: String,
    },
    /// The module targets a contract this host does not implement.
    #[error("built for {world}, but this host implements {}", WIT_VERSIONS.join(" and "))]
    UnsupportedWorld {
        /// From the manifest.
        world: String,
    },
    /// A signature is required and missing, or does not verify.
    #[error("signature refused: {0}")]
    Signature(String),
    /// A signed manifest found under another plugin's prefix than the one it was
    /// published to (copied over another plugin's).
    #[error(
        "published to {signed:?} but found under {found:?}: a signed manifest serves only the plugin it was published for"
    )]
    Misplaced {
        /// The prefix it was signed for.
        signed: String,
        /// Where the host found it.
        found: String,
    },
    /// An older publish than the one serving (a rollback of the bucket, not a publish).
    #[error(
        "sequence {sequence} is older than the serving version's {serving} (or the highest this location served, kept in the idempotency table): a rollback is a new publish (`host publish --rollback`), with a higher sequence"
    )]
    Stale {
        /// The manifest's.
        sequence: u64,
        /// The serving manifest's.
        serving: u64,
    },
}

/// What a signature starts with: these bytes sign manifests, nothing else.
const SIGNED_DOMAIN: &[u8] = b"pipeline-host plugin manifest v2\0";

impl Manifest {
    /// Parses a manifest.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))
    }

    /// `name@version`, as logs and DLQ entries name it.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Checks everything that can be checked before downloading the module: the
    /// contract version, and the signature when `key` is configured.
    pub fn check(&self, key: Option<&VerifyingKey>, prefix: &str) -> Result<(), ManifestError> {
        if !world_supported(&self.world) {
            return Err(ManifestError::UnsupportedWorld {
                world: self.world.clone(),
            });
        }
        let Some(key) = key else { return Ok(()) };
        let signature = self.signature.as_deref().ok_or_else(|| {
            ManifestError::Signature(
                "the host requires a signature and the manifest has none".into(),
            )
        })?;
        if self.sequence == 0 {
            return Err(ManifestError::Signature(
                "the manifest has no publish sequence: its signature (from an older `host publish`) covers only the module hash; publish the version again".into(),
            ));
        }
        self.verify_signature(signature, key)?;
        if self.prefix.is_empty() {
            return Err(ManifestError::Signature(
                "the manifest is not bound to a plugin prefix (signed by an older `host publish`); publish the version again".into(),
            ));
        }
        if self.prefix != prefix {
            return Err(ManifestError::Misplaced {
                signed: self.prefix.clone(),
                found: prefix.to_owned(),
            });
        }
        Ok(())
    }

    /// Whether `signature` (base64) is `key`'s over [`Manifest::signed_bytes`].
    pub fn verify_signature(
        &self,
        signature: &str,
        key: &VerifyingKey,
    ) -> Result<(), ManifestError> {
        let signature = BASE64
            .decode(signature)
            .ok()
            .and_then(|bytes| ed25519_dalek::Signature::from_slice(&bytes).ok())
            .ok_or_else(|| ManifestError::Signature("not a base64 ed25519 signature".into()))?;
        key.verify(&self.signed_bytes()?, &signature).map_err(|_| {
            ManifestError::Signature(
                "it does not verify with the configured public key (the name, version, module, settings, sequence, artifacts, prefix, lookup tables or output schemas differ from what was signed, or another key signed it)".into(),
            )
        })
    }

    /// What the signature covers: the domain, then each signed field length-prefixed
    /// (name, version, world, the module's 32 hash bytes, the config's pairs in key
    /// order, the sequence), then, only when there are artifacts, their count and each
    /// one's architecture, engine key and 32 hash bytes (so a manifest without artifacts
    /// signs as it always did, and none can be added, dropped or swapped). `created_at`,
    /// `pinned` and an artifact's key are not covered: they change nothing a host runs
    /// (a moved artifact fails its hash). Then, each only when it has one, the prefix,
    /// the lookup tables (their count, each name) and the output schemas (their count,
    /// each destination, format and text), each after a tag of its own length (so no
    /// field before can pass for it).
    pub fn signed_bytes(&self) -> Result<Vec<u8>, ManifestError> {
        let mut out = SIGNED_DOMAIN.to_vec();
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        field(self.name.as_bytes());
        field(self.version.as_bytes());
        field(self.world.as_bytes());
        field(&hash_bytes(&self.sha256)?);
        field(&(self.config.len() as u64).to_le_bytes());
        for (key, value) in &self.config {
            field(key.as_bytes());
            field(value.as_bytes());
        }
        field(&self.sequence.to_le_bytes());
        if !self.artifacts.is_empty() {
            field(&(self.artifacts.len() as u64).to_le_bytes());
            for artifact in &self.artifacts {
                field(artifact.arch.as_bytes());
                field(artifact.engine.as_bytes());
                field(&hash_bytes(&artifact.sha256)?);
            }
        }
        if !self.prefix.is_empty() {
            field(b"prefix");
            field(self.prefix.as_bytes());
        }
        if !self.lookups.is_empty() {
            field(b"lookups");
            field(&(self.lookups.len() as u64).to_le_bytes());
            for table in &self.lookups {
                field(table.as_bytes());
            }
        }
        if !self.output_schemas.is_empty() {
            field(b"output-schemas");
            field(&(self.output_schemas.len() as u64).to_le_bytes());
            for (destination, schema) in &self.output_schemas {
                field(destination.as_bytes());
                field(schema.format.as_bytes());
                field(schema.definition.as_bytes());
            }
        }
        Ok(out)
    }

    /// The artifact a host of `arch` whose engine key is `engine` may load instead of
    /// compiling, if the manifest has one.
    pub fn artifact_for(&self, arch: &str, engine: &str) -> Option<&Artifact> {
        self.artifacts
            .iter()
            .find(|a| a.arch == arch && a.engine == engine)
    }

    /// Refuses a manifest older than the one serving (`serving`: its sequence).
    pub fn check_sequence(&self, serving: Option<u64>) -> Result<(), ManifestError> {
        match serving {
            Some(serving) if self.sequence < serving => Err(ManifestError::Stale {
                sequence: self.sequence,
                serving,
            }),
            _ => Ok(()),
        }
    }

    /// Checks fetched module bytes against the manifest's sha256.
    pub fn verify_module(&self, module: &[u8]) -> Result<(), ManifestError> {
        let actual = sha256_hex(module);
        if actual.eq_ignore_ascii_case(&self.sha256) {
            Ok(())
        } else {
            Err(ManifestError::HashMismatch {
                expected: self.sha256.clone(),
                actual,
            })
        }
    }

    /// Signs [`Manifest::signed_bytes`] with `key`.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), ManifestError> {
        let signed = self.signed_bytes()?;
        self.signature = Some(BASE64.encode(key.sign(&signed).to_bytes()));
        Ok(())
    }
}

/// Hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn hash_bytes(sha256: &str) -> Result<[u8; 32], ManifestError> {
    hex::decode(sha256)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| ManifestError::Malformed(format!("sha256 {sha256:?} is not 64 hex digits")))
}

/// Whether this host runs modules built against `world`: the same package, and a
/// semver-compatible version (same major; for 0.x, same minor), as WIT itself rules.
pub fn world_supported(world: &str) -> bool {
    let split = |w: &str| -> Option<(String, Vec<u64>)> {
        let (package, version) = w.split_once('@')?;
        let parts = version
            .split('.')
            .map(|p| p.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        (parts.len() == 3).then(|| (package.to_owned(), parts))
    };
    WIT_VERSIONS
        .iter()
        .any(|served| match (split(world), split(served)) {
            (Some((package, theirs)), Some((ours_package, ours))) => {
                package == ours_package
                    && theirs[0] == ours[0]
                    && (ours[0] != 0 || theirs[1] == ours[1])
            }
            _ => false,
        })
}

/// A key that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// Not hex, not base64.
    #[error("neither hex nor base64")]
    Encoding,
    /// The wrong number of bytes.
    #[error("{0} bytes, an ed25519 key has 32")]
    Length(usize),
    /// 32 bytes that are not a point of the curve.
    #[error("not an ed25519 public key: {0}")]
    NotAPublicKey(String),
}

/// Reads an ed25519 key (32 bytes, hex or base64), as configured or kept in a file.
pub fn key_bytes(text: &str) -> Result<[u8; 32], KeyError> {
    let text = text.trim();
    let bytes = hex::decode(text)
        .ok()
        .or_else(|| BASE64.decode(text).ok())
        .ok_or(KeyError::Encoding)?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| KeyError::Length(b.len()))
}

/// Reads an ed25519 public key (32 bytes, hex or base64).
pub fn verifying_key(text: &str) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_bytes(&key_bytes(text)?).map_err(|e| KeyError::NotAPublicKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::WIT_VERSION;

    fn manifest(module: &[u8]) -> Manifest {
        Manifest {
            name: "enrich".into(),
            version: "0.2.0".into(),
            world: WIT_VERSION.into(),
            module: "plugins/enrich/modules/x.wasm".into(),
            sha256: sha256_hex(module),
            config: BTreeMap::new(),
            created_at: "2026-11-26T12:00:00.000Z".into(),
            sequence: 3,
            signature: None,
            pinned: false,
            prefix: PREFIX.into(),
            artifacts: Vec::new(),
            lookups: Vec::new(),
            output_schemas: BTreeMap::new(),
        }
    }

    const PREFIX: &str = "plugins/enrich/";

    #[test]
    fn a_signed_manifest_serves_only_the_prefix_it_was_published_to() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key();
        let mut m = manifest(b"module");
        m.sign(&key).expect("sign");
        assert_eq!(m.check(Some(&public), PREFIX), Ok(()));
        // Copied over another plugin's manifest: refused there.
        let err = m
            .check(Some(&public), "plugins/validate/")
            .expect_err("another plugin's place");
        assert!(
            err.to_string()
                .contains("published to \"plugins/enrich/\" but found under \"plugins/validate/\""),
            "{err}"
        );
        // The prefix cannot be rewritten to match: it is signed.
        let mut moved = m.clone();
        moved.prefix = "plugins/validate/".into();
        assert!(matches!(
            moved.check(Some(&public), "plugins/validate/"),
            Err(ManifestError::Signature(_))
        ));
        // Nor dropped: a signed manifest bound to no prefix is refused.
        let mut unbound = manifest(b"module");
        unbound.prefix.clear();
        unbound.sign(&key).expect("sign");
        let err = unbound.check(Some(&public), PREFIX).expect_err("unbound");
        assert!(
            err.to_string().contains("publish the version again"),
            "{err}"
        );
        assert_eq!(
            unbound.check(None, PREFIX),
            Ok(()),
            "without a key nothing is verified"
        );
    }

    #[test]
    fn the_module_must_match_its_hash() {
        let m = manifest(b"module");
        assert_eq!(m.verify_module(b"module"), Ok(()));
        let err = m.verify_module(b"modulf").expect_err("mismatch");
        assert!(err.to_string().contains("sha256 mismatch"), "{err}");
    }

    #[test]
    fn worlds_follow_semver() {
        assert!(world_supported(WIT_VERSION));
        assert!(world_supported("pipeline:plugin@0.1.7"));
        assert!(world_supported("pipeline:plugin@0.2.3"));
        assert!(!world_supported("pipeline:plugin@0.3.0"));
        assert!(!world_supported("pipeline:plugin@1.1.0"));
        assert!(!world_supported("other:plugin@0.1.0"));
        assert!(!world_supported("pipeline:plugin"));
        let mut m = manifest(b"m");
        m.world = "pipeline:plugin@0.3.0".into();
        assert!(matches!(
            m.check(None, PREFIX),
            Err(ManifestError::UnsupportedWorld { .. })
        ));
    }

    #[test]
    fn signatures_bind_every_field_a_host_runs_by() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key();
        let mut m = manifest(b"module");
        m.config.insert("currency".into(), "EUR".into());
        assert!(
            m.check(Some(&public), PREFIX).is_err(),
            "unsigned is refused"
        );
        m.sign(&key).expect("sign");
        assert_eq!(m.check(Some(&public), PREFIX), Ok(()));
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(
            m.check(Some(&other), PREFIX).is_err(),
            "another key is refused"
        );
        type Change = (&'static str, fn(&mut Manifest));
        let changes: [Change; 10] = [
            ("output schemas", |m| {
                m.output_schemas.insert(
                    "default".into(),
                    crate::schemas::DeclaredSchema {
                        format: "json".into(),
                        definition: "{}".into(),
                    },
                );
            }),
            ("lookups", |m| m.lookups = vec!["users".into()]),
            ("lookups", |m| {
                m.lookups = vec!["users".into(), "prices".into()]
            }),
            ("prefix", |m| m.prefix = "plugins/route/".into()),
            ("module", |m| m.sha256 = sha256_hex(b"other module")),
            ("name", |m| m.name = "route".into()),
            ("version", |m| m.version = "9.9.9".into()),
            ("world", |m| m.world = "pipeline:plugin@0.1.9".into()),
            ("config", |m| {
                m.config.insert("currency".into(), "USD".into());
            }),
            ("sequence", |m| m.sequence = 2),
        ];
        for (what, change) in changes {
            let mut changed = m.clone();
            change(&mut changed);
            assert!(
                changed.check(Some(&public), PREFIX).is_err(),
                "the signature covers the {what}"
            );
        }
        // Artifacts are covered, each field, once there are any.
        let mut with_artifact = m.clone();
        with_artifact.artifacts.push(Artifact {
            arch: "x86_64".into(),
            engine: "0123456789abcdef".into(),
            key: "plugins/enrich/artifacts/a.cwasm".into(),
            sha256: sha256_hex(b"artifact"),
        });
        assert!(
            with_artifact.check(Some(&public), PREFIX).is_err(),
            "one added"
        );
        with_artifact.sign(&key).expect("sign");
        assert_eq!(with_artifact.check(Some(&public), PREFIX), Ok(()));
        type ArtifactChange = (&'static str, fn(&mut Artifact));
        let artifact_changes: [ArtifactChange; 3] = [
            ("arch", |a| a.arch = "aarch64".into()),
            ("engine", |a| a.engine = "fedcba9876543210".into()),
            ("sha256", |a| a.sha256 = sha256_hex(b"other artifact")),
        ];
        for (what, change) in artifact_changes {
            let mut changed = with_artifact.clone();
            change(&mut changed.artifacts[0]);
            assert!(
                changed.check(Some(&public), PREFIX).is_err(),
                "the signature covers an artifact's {what}"
            );
        }
        let mut dropped = with_artifact.clone();
        dropped.artifacts.clear();
        assert!(dropped.check(Some(&public), PREFIX).is_err(), "one dropped");
        // Neither is covered: they change nothing a host runs.
        let mut moved = m.clone();
        moved.pinned = true;
        moved.created_at = "2027-01-01T00:00:00.000Z".into();
        assert_eq!(moved.check(Some(&public), PREFIX), Ok(()));
        let text = serde_json::to_vec(&m).expect("json");
        assert_eq!(Manifest::parse(&text), Ok(m));
        assert_eq!(verifying_key(&hex::encode(public.to_bytes())), Ok(public));
    }

    #[test]
    fn a_manifest_from_before_sequences_is_refused_when_signatures_are_required() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut m = manifest(b"module");
        m.sequence = 0;
        m.sign(&key).expect("sign");
        let err = m
            .check(Some(&key.verifying_key()), PREFIX)
            .expect_err("no sequence");
        assert!(
            err.to_string().contains("publish the version again"),
            "{err}"
        );
        assert_eq!(
            m.check(None, PREFIX),
            Ok(()),
            "without a key nothing is verified"
        );
    }

    #[test]
    fn a_host_never_goes_back_to_an_older_publish() {
        let m = manifest(b"module");
        assert_eq!(m.check_sequence(None), Ok(()));
        assert_eq!(m.check_sequence(Some(3)), Ok(()));
        assert_eq!(m.check_sequence(Some(2)), Ok(()));
        let err = m.check_sequence(Some(4)).expect_err("older");
        assert!(
            err.to_string().contains("sequence 3 is older than"),
            "{err}"
        );
    }
}
