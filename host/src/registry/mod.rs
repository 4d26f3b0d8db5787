//! Where plugins come from and how a new version becomes live: the manifest, fetching
//! and verifying a module, the precompiled cache, the periodic check for a new
//! version, and `host publish`.
//!
//! A plugin published to `s3://bucket/plugins/enrich/` is laid out as
//!
//! ```text
//! plugins/enrich/modules/<sha256>.wasm   the module, content-addressed, never overwritten
//! plugins/enrich/versions/<version>.json one manifest per published version
//! plugins/enrich/manifest.json           the live version: a copy of one of the above
//! ```
//!
//! The module is written before any manifest naming it, so a reader never finds a
//! manifest pointing at a missing module. A host configured with the prefix follows
//! `manifest.json`; configured with `versions/<version>.json` it stays on that version.
//!
//! # Layout
//! - `mod.rs`: [`PluginLocation`] and [`LoadError`].
//! - `manifest.rs`: the manifest, its checks (contract version, sha256, signature), keys.
//! - `followed.rs`: one configured location, followed: load at start, check for a new version.
//! - `floor.rs`: the lowest publish sequence a location may serve, kept in the
//!   idempotency table (a cold start never goes back to an older signed manifest).
//! - `publish.rs`: `host publish` and rollback.

mod floor;
mod followed;
mod manifest;
pub mod publish;

use std::path::PathBuf;

pub use floor::SequenceFloor;
pub use followed::{FollowSettings, FollowedPlugin, Loaded, Timings, load_file};
pub use manifest::{
    Artifact, KeyError, Manifest, ManifestError, key_bytes, sha256_hex, verifying_key,
    world_supported,
};

/// The live manifest's name under a plugin's prefix.
pub const MANIFEST: &str = "manifest.json";

/// Where a plugin is configured to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginLocation {
    /// A local `.wasm` file: loaded once.
    File(PathBuf),
    /// A bare module in S3 (no manifest, so no hash to check): loaded once.
    S3Module {
        /// The bucket.
        bucket: String,
        /// The module's key.
        key: String,
    },
    /// A manifest in S3 (`prefix/` means `prefix/manifest.json`): checked for new versions.
    S3Manifest {
        /// The bucket.
        bucket: String,
        /// The manifest's key.
        key: String,
    },
}

/// A plugin location that is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?}: expected s3://BUCKET/KEY or s3://BUCKET/PREFIX/")]
pub struct LocationError(String);

impl PluginLocation {
    /// Parses `s3://bucket/prefix/`, `s3://bucket/….json`, `s3://bucket/….wasm` or a path.
    pub fn parse(raw: &str) -> Result<Self, LocationError> {
        let Some(rest) = raw.strip_prefix("s3://") else {
            return Ok(Self::File(PathBuf::from(raw)));
        };
        let (bucket, key) = rest
            .split_once('/')
            .filter(|(b, k)| !b.is_empty() && !k.is_empty())
            .ok_or_else(|| LocationError(raw.to_owned()))?;
        let bucket = bucket.to_owned();
        Ok(if key.ends_with('/') {
            Self::S3Manifest {
                bucket,
                key: format!("{key}{MANIFEST}"),
            }
        } else if key.ends_with(".json") {
            Self::S3Manifest {
                bucket,
                key: key.to_owned(),
            }
        } else {
            Self::S3Module {
                bucket,
                key: key.to_owned(),
            }
        })
    }
}

impl PluginLocation {
    /// The plugin prefix a manifest location serves, as `host publish` lays a prefix
    /// out: `P/manifest.json` and `P/versions/V.json` both serve `P/`. A manifest
    /// elsewhere serves its folder. `None` for a module without a manifest.
    pub fn plugin_prefix(&self) -> Option<&str> {
        let Self::S3Manifest { key, .. } = self else {
            return None;
        };
        let folder = key.rfind('/').map_or("", |slash| &key[..=slash]);
        Some(folder.strip_suffix("versions/").unwrap_or(folder))
    }
}

impl std::fmt::Display for PluginLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::S3Module { bucket, key } | Self::S3Manifest { bucket, key } => {
                write!(f, "s3://{bucket}/{key}")
            }
        }
    }
}

/// Why a plugin version could not be made ready. The previous version (if any) keeps
/// serving; at a cold start the start fails with this message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The manifest or module could not be fetched.
    #[error("cannot fetch {what}: {reason}")]
    Fetch {
        /// `s3://bucket/key`.
        what: String,
        /// The service's answer.
        reason: String,
    },
    /// The manifest or the module failed a check.
    #[error("{plugin}: {source}")]
    Refused {
        /// `name@version` or the location.
        plugin: String,
        /// The check that failed.
        source: ManifestError,
    },
    /// The module did not compile, link, or start.
    #[error(transparent)]
    Plugin(#[from] crate::engine::PluginError),
    /// A configuration mistake (a signature required for a bare module, ...).
    #[error("{0}")]
    Config(String),
    /// The plugin reads lookup tables the operator did not map.
    #[error("{plugin}: {reason}")]
    Lookups {
        /// `name@version`.
        plugin: String,
        /// Which table, and what is mapped.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            PluginLocation::parse("s3://b/plugins/enrich/"),
            Ok(PluginLocation::S3Manifest {
                bucket: "b".into(),
                key: "plugins/enrich/manifest.json".into()
            })
        );
        assert_eq!(
            PluginLocation::parse("s3://b/plugins/enrich/versions/0.1.0.json"),
            Ok(PluginLocation::S3Manifest {
                bucket: "b".into(),
                key: "plugins/enrich/versions/0.1.0.json".into()
            })
        );
        assert!(matches!(
            PluginLocation::parse("s3://b/enrich.wasm"),
            Ok(PluginLocation::S3Module { .. })
        ));
        assert!(matches!(
            PluginLocation::parse("enrich.wasm"),
            Ok(PluginLocation::File(_))
        ));
        let prefix = |raw: &str| {
            PluginLocation::parse(raw)
                .expect("a location")
                .plugin_prefix()
                .map(str::to_owned)
        };
        assert_eq!(
            prefix("s3://b/plugins/enrich/").as_deref(),
            Some("plugins/enrich/")
        );
        assert_eq!(
            prefix("s3://b/plugins/enrich/versions/0.1.0.json").as_deref(),
            Some("plugins/enrich/")
        );
        assert_eq!(prefix("s3://b/live.json").as_deref(), Some(""));
        assert_eq!(prefix("s3://b/enrich.wasm"), None);
        assert!(PluginLocation::parse("s3://bucket").is_err());
        assert!(PluginLocation::parse("s3:///key").is_err());
    }
}
