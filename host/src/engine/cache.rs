//! The precompiled-plugin cache: Cranelift's output for a module, kept on local disk
//! (Lambda's `/tmp`) so a cold start deserializes in well under a millisecond instead
//! of compiling for tens of milliseconds.
//!
//! An entry's name is the module's sha256 plus a hash of everything that makes an
//! artifact loadable by this engine (wasmtime version, target, compiler flags,
//! features: [`wasmtime::Engine::precompile_compatibility_hash`]). An entry is never
//! trusted as it is: it carries its own length and CRC-32, written before the atomic
//! rename that publishes it, and wasmtime checks its header again when loading. A
//! torn, truncated, flipped or foreign entry is reported, removed and recompiled.
//!
//! The directory is private to the process's owner (Lambda's `/tmp` is private to the
//! execution environment); the check guards against damage, not against an attacker
//! who can already write there.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"PLGCWASM";
const HEADER: usize = MAGIC.len() + 4 + 8;

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
    /// A cache in `dir` (created when missing) for artifacts of `engine`.
    pub fn new(dir: &Path, engine: &wasmtime::Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        // DefaultHasher::new() has fixed keys: the same binary names entries the same way.
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// Where the artifact of the module with this sha256 lives.
    pub fn path_for(&self, module_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{module_sha256}-{}.cwasm", self.engine_key))
    }

    /// The entry for `module_sha256`, checked before wasmtime sees a byte of it.
    pub fn lookup(&self, engine: &wasmtime::Engine, module_sha256: &str) -> Lookup {
        let path = self.path_for(module_sha256);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Rejected(format!("{}: cannot read: {e}", path.display())),
        };
        let rejected = |reason: String| {
            // Removing is best effort: a later store overwrites it anyway.
            let _ = std::fs::remove_file(&path);
            Lookup::Rejected(format!("{}: {reason}", path.display()))
        };
        let artifact = match check(&bytes) {
            Ok(artifact) => artifact,
            Err(reason) => return rejected(reason),
        };
        // SAFETY: the bytes are exactly what `store` wrote from `Component::serialize`
        // of this engine's configuration (length and CRC-32 checked above, the file
        // name carries the engine's compatibility hash); wasmtime re-checks the header.
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(component) => Lookup::Hit(component),
            Err(e) => rejected(format!("wasmtime refused it: {e:#}")),
        }
    }

    /// Stores `component`'s artifact: written to a temporary file, then renamed, so a
    /// reader sees a whole entry or none.
    pub fn store(&self, module_sha256: &str, component: &Component) -> Result<PathBuf, String> {
        let artifact = component
            .serialize()
            .map_err(|e| format!("cannot serialize: {e:#}"))?;
        let path = self.path_for(module_sha256);
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&artifact);
        let written = file
            .write_all(MAGIC)
            .and_then(|()| file.write_all(&crc.finalize().to_le_bytes()))
            .and_then(|()| file.write_all(&(artifact.len() as u64).to_le_bytes()))
            .and_then(|()| file.write_all(&artifact))
            .and_then(|()| file.as_file().sync_data());
        written.map_err(|e| format!("{}: {e}", file.path().display()))?;
        file.persist(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }
}

/// The artifact inside a cache file, if the file is whole.
fn check(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a cache entry (bad header)".into());
    }
    let crc = u32::from_le_bytes(
        bytes[8..12]
            .try_into()
            .map_err(|_| "bad header".to_owned())?,
    );
    let len = u64::from_le_bytes(
        bytes[12..HEADER]
            .try_into()
            .map_err(|_| "bad header".to_owned())?,
    );
    let artifact = &bytes[HEADER..];
    if artifact.len() as u64 != len {
        return Err(format!(
            "truncated or padded: {} bytes, header says {len}",
            artifact.len()
        ));
    }
    if crc32fast::hash(artifact) != crc {
        return Err("checksum mismatch (damaged)".into());
    }
    Ok(artifact)
}

#[cfg(test)]
mod tests {
    use super::check;

    fn entry(artifact: &[u8]) -> Vec<u8> {
        let mut bytes = super::MAGIC.to_vec();
        bytes.extend(crc32fast::hash(artifact).to_le_bytes());
        bytes.extend((artifact.len() as u64).to_le_bytes());
        bytes.extend(artifact);
        bytes
    }

    #[test]
    fn a_whole_entry_passes_and_any_damage_is_caught() {
        let good = entry(b"artifact bytes");
        assert_eq!(check(&good), Ok(&b"artifact bytes"[..]));
        let mut flipped = good.clone();
        *flipped.last_mut().expect("not empty") ^= 1;
        assert!(check(&flipped).expect_err("flipped").contains("checksum"));
        assert!(
            check(&good[..good.len() - 1])
                .expect_err("short")
                .contains("truncated")
        );
        assert!(check(b"PLGC").expect_err("tiny").contains("header"));
    }
}
