//! The plugin manifest: what a published version is, and the checks a host makes
//! before running it (hash, contract version, signature).
//!
//! ```json
//! {"name":"enrich","version":"0.2.0","world":"pipeline:plugin@0.1.0",
//!  "module":"plugins/enrich/modules/9f86d0….wasm","sha256":"9f86d0…",
//!  "config":{"currency":"EUR"},"created_at":"2026-11-26T12:00:00.000Z",
//!  "signature":"base64 ed25519 over the 32 hash bytes","pinned":false}
//! ```

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::engine::WIT_VERSION;

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
    /// Base64 ed25519 signature over the 32 bytes of the module's sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// A pinned manifest is not moved by publishing a newer version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
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
    #[error("built for {world}, but this host implements {WIT_VERSION}")]
    UnsupportedWorld {
        /// From the manifest.
        world: String,
    },
    /// A signature is required and missing, or does not verify.
    #[error("signature refused: {0}")]
    Signature(String),
}

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
    pub fn check(&self, key: Option<&VerifyingKey>) -> Result<(), ManifestError> {
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
        let signature = BASE64
            .decode(signature)
            .ok()
            .and_then(|bytes| ed25519_dalek::Signature::from_slice(&bytes).ok())
            .ok_or_else(|| ManifestError::Signature("not a base64 ed25519 signature".into()))?;
        let digest = hash_bytes(&self.sha256)?;
        key.verify(&digest, &signature).map_err(|_| {
            ManifestError::Signature("it does not verify with the configured public key".into())
        })
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

    /// Signs the module hash with `key`.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), ManifestError> {
        let digest = hash_bytes(&self.sha256)?;
        self.signature = Some(BASE64.encode(key.sign(&digest).to_bytes()));
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
    match (split(world), split(WIT_VERSION)) {
        (Some((package, theirs)), Some((ours_package, ours))) => {
            package == ours_package
                && theirs[0] == ours[0]
                && (ours[0] != 0 || theirs[1] == ours[1])
        }
        _ => false,
    }
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

    fn manifest(module: &[u8]) -> Manifest {
        Manifest {
            name: "enrich".into(),
            version: "0.2.0".into(),
            world: WIT_VERSION.into(),
            module: "plugins/enrich/modules/x.wasm".into(),
            sha256: sha256_hex(module),
            config: BTreeMap::new(),
            created_at: "2026-11-26T12:00:00.000Z".into(),
            signature: None,
            pinned: false,
        }
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
        assert!(!world_supported("pipeline:plugin@0.2.0"));
        assert!(!world_supported("pipeline:plugin@1.1.0"));
        assert!(!world_supported("other:plugin@0.1.0"));
        assert!(!world_supported("pipeline:plugin"));
        let mut m = manifest(b"m");
        m.world = "pipeline:plugin@0.2.0".into();
        assert!(matches!(
            m.check(None),
            Err(ManifestError::UnsupportedWorld { .. })
        ));
    }

    #[test]
    fn signatures_bind_the_module_hash() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key();
        let mut m = manifest(b"module");
        assert!(m.check(Some(&public)).is_err(), "unsigned is refused");
        m.sign(&key).expect("sign");
        assert_eq!(m.check(Some(&public)), Ok(()));
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(m.check(Some(&other)).is_err(), "another key is refused");
        let mut swapped = m.clone();
        swapped.sha256 = sha256_hex(b"other module");
        assert!(
            swapped.check(Some(&public)).is_err(),
            "the signature covers the hash"
        );
        let text = serde_json::to_vec(&m).expect("json");
        assert_eq!(Manifest::parse(&text), Ok(m));
        assert_eq!(verifying_key(&hex::encode(public.to_bytes())), Ok(public));
    }
}
