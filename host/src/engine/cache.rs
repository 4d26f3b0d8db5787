//! The precompiled-plugin cache: Cranelift's output for a module, kept on local disk
//! (Lambda's `/tmp`) so a cold start deserializes in well under a millisecond instead
//! of compiling for tens of milliseconds.
//!
//! An entry's name is the module's sha256 plus a hash of everything that makes an
//! artifact loadable by this engine (wasmtime version, target, compiler flags,
//! features: [`wasmtime::Engine::precompile_compatibility_hash`]), and the CRC-32 of
//! the artifact. An entry is never trusted as it is: its bytes are checked against that
//! CRC-32 before wasmtime maps it, and wasmtime checks its header again. An entry appears
//! by an atomic rename; a truncated, flipped or foreign one is reported, removed and
//! recompiled.
//!
//! The trust boundary is the directory: an entry is native code the host maps and runs,
//! so only the process's own user may be able to write it. The host creates the
//! directory owner-only, and refuses one (and any entry) that another user owns or that
//! group or others may write ([`private`]); the CRC-32 then guards against damage, not
//! against an attacker (a keyed hash would add nothing: its key would have to live where
//! only this user can read, which is the same boundary).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::component::Component;

/// What makes an artifact loadable by `engine` (wasmtime version, target, compiler flags,
/// features), as 16 hex digits.
pub fn engine_key(engine: &wasmtime::Engine) -> String {
    // DefaultHasher::new() has fixed keys: the same binary names entries the same way.
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// A directory of precompiled artifacts for one engine configuration.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

/// What the cache had for a module.
#[derive(Debug)]
pub enum Lookup {
    /// A sound entry, deserialized.
    Hit(Component),
    /// No entry.
    Miss,
    /// An entry that failed its check; it was removed. The reason says what was wrong.
    Rejected(String),
}

impl ArtifactCache {
    /// A cache in `dir` (created owner-only when missing) for artifacts of the engine
    /// whose [`engine_key`] this is;
    /// refused when another user owns it or group or others may write it.
    pub fn new(dir: &Path, engine_key: &str) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        private(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            engine_key: engine_key.to_owned(),
        })
    }

    /// Entries are named `<module sha256>-<engine hash>-<crc32 of the artifact>.cwasm`:
    /// the file itself is exactly wasmtime's artifact, so it can be mapped, not copied.
    fn stem(&self, module_sha256: &str) -> String {
        format!("{module_sha256}-{}-", self.engine_key)
    }

    /// The entry for `module_sha256`, if there is one, with the checksum its name carries.
    pub fn entry(&self, module_sha256: &str) -> Option<(PathBuf, String)> {
        let stem = self.stem(module_sha256);
        std::fs::read_dir(&self.dir).ok()?.flatten().find_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let crc = name.strip_prefix(&stem)?.strip_suffix(".cwasm")?.to_owned();
            Some((e.path(), crc))
        })
    }

    /// The entry for `module_sha256`, checked before wasmtime sees a byte of it.
    pub fn lookup(&self, engine: &wasmtime::Engine, module_sha256: &str) -> Lookup {
        let Some((path, crc)) = self.entry(module_sha256) else {
            return Lookup::Miss;
        };
        let rejected = |reason: String| {
            // Removing is best effort: a later store replaces it anyway.
            let _ = std::fs::remove_file(&path);
            Lookup::Rejected(format!("{}: {reason}", path.display()))
        };
        if let Err(reason) = private(&path) {
            return rejected(reason.to_string());
        }
        if let Err(reason) = check_file(&path, &crc) {
            return rejected(reason.to_string());
        }
        // SAFETY: the file is exactly what `store` wrote from `Component::serialize` of
        // this engine's configuration (its CRC-32 checked above; the name carries the
        // engine's compatibility hash), in a directory and a file only this user can
        // write (checked above and when the cache was opened); wasmtime checks the
        // header again.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Lookup::Hit(component),
            Err(e) => rejected(format!("wasmtime refused it: {e:#}")),
        }
    }

    /// Stores `component`'s artifact: written to a temporary file, then renamed, so a
    /// reader sees a whole entry or none.
    pub fn store(&self, module_sha256: &str, component: &Component) -> Result<PathBuf, CacheError> {
        let artifact = component
            .serialize()
            .map_err(|e| CacheError::Serialize(format!("{e:#}")))?;
        let path = self.dir.join(format!(
            "{}{:08x}.cwasm",
            self.stem(module_sha256),
            crc32fast::hash(&artifact)
        ));
        if let Some((old, _)) = self.entry(module_sha256) {
            let _ = std::fs::remove_file(old);
        }
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| CacheError::Io { path, source }
        };
        let mut file = tempfile::NamedTempFile::new_in(&self.dir).map_err(io(&self.dir))?;
        file.write_all(&artifact)
            .and_then(|()| file.as_file().sync_data())
            .map_err(io(file.path()))?;
        file.persist(&path).map_err(|e| io(&path)(e.error))?;
        Ok(path)
    }
}

/// A cache entry that cannot be written, or one that failed its checks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// wasmtime could not serialize the compiled component.
    #[error("cannot serialize: {0}")]
    Serialize(String),
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The entry is not what its name says.
    #[error("{0}")]
    Damaged(&'static str),
    /// The name carries no readable checksum.
    #[error("bad checksum in the name: {0:?}")]
    BadName(String),
}

/// Refuses `path` unless this process's user owns it and neither group nor others may
/// write it: whoever else could write there could make the host run their native code.
pub fn private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(path)?;
    // The owner of /proc/self is this process's effective user.
    let me = std::fs::metadata("/proc/self")?.uid();
    let refuse = |why: String| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{}: {why}; precompiled plugins are native code, refused from a place another user can write",
                path.display()
            ),
        ))
    };
    if meta.file_type().is_symlink() {
        return refuse("a symbolic link".into());
    }
    if meta.uid() != me {
        return refuse(format!("owned by user {}, not {me}", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return refuse(format!(
            "group or others may write it (mode {:o})",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// Checks a cache file against the CRC-32 its name carries. The file is mapped, not
/// read: its pages are already in the page cache, and mapping them costs a few faults
/// instead of a copy.
fn check_file(path: &Path, crc: &str) -> Result<(), CacheError> {
    let io = |source| CacheError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: a read-only private mapping of a file in a directory only this process
    // writes (entries are replaced by rename, never written in place).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    check(&map, crc)
}

/// Whether `artifact` has the CRC-32 (8 hex digits) `crc`.
fn check(artifact: &[u8], crc: &str) -> Result<(), CacheError> {
    let expected = u32::from_str_radix(crc, 16).map_err(|_| CacheError::BadName(crc.to_owned()))?;
    if artifact.is_empty() {
        return Err(CacheError::Damaged("empty (truncated)"));
    }
    if crc32fast::hash(artifact) != expected {
        return Err(CacheError::Damaged(
            "checksum mismatch (damaged or truncated)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check, private};

    #[test]
    fn a_directory_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(private(dir.path()).is_ok(), "a fresh tempdir is owner-only");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let err = private(dir.path()).expect_err("world-writable");
        assert!(err.to_string().contains("mode 777"), "{err}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        assert!(private(dir.path()).is_ok(), "others may read, not write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).expect("symlink");
        assert!(private(&link).is_err(), "a symbolic link is refused");
    }

    #[test]
    fn a_whole_entry_passes_and_any_damage_is_caught() {
        let good = b"artifact bytes".to_vec();
        let crc = format!("{:08x}", crc32fast::hash(&good));
        assert!(check(&good, &crc).is_ok());
        let mut flipped = good.clone();
        flipped[3] ^= 1;
        assert!(
            check(&flipped, &crc)
                .expect_err("flipped")
                .to_string()
                .contains("checksum")
        );
        assert!(
            check(&good[..good.len() - 1], &crc)
                .expect_err("short")
                .to_string()
                .contains("checksum")
        );
        assert!(
            check(b"", &crc)
                .expect_err("empty")
                .to_string()
                .contains("empty")
        );
        assert!(
            check(&good, "zz")
                .expect_err("name")
                .to_string()
                .contains("name")
        );
    }
}
