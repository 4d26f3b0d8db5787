//! What the sandbox's one door to reference data (the `lookup` import of contract 0.2,
//! served in `sandbox.rs`) reads through: a [`TableReader`] the host gives the plugin
//! (the host's `lookup` module). The engine knows nothing of where tables live.

use std::sync::Arc;

use bytes::Bytes;

/// Keys one `get` may ask for: one per record of the largest batch. Past it the call is
/// refused before any table is asked (the keys themselves are already in the host,
/// copied out of the plugin's memory, which its cap bounds).
pub const MAX_KEYS_PER_GET: usize = 100_000;
/// Longest key a table is asked for, in bytes (DynamoDB's limit for a partition key); a
/// longer one is answered `none`.
pub const MAX_KEY_BYTES: usize = 2048;

/// Why a table gave no answer, as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupFailure {
    /// The plugin was not granted the table, or the lookup is beyond the host's limits:
    /// nothing was asked.
    #[error("{0}")]
    NotGranted(String),
    /// The table cannot be read now (throttled, timed out, unreachable, out of time).
    #[error("{0}")]
    Unavailable(String),
}

/// Reads the tables a plugin was granted. Called on the plugin's thread, blocking it:
/// the implementation bounds its own waiting by the invocation's time.
pub trait TableReader: Send + Sync {
    /// The values of `keys` in `table`, in the keys' order (`None`: the table has no
    /// such key).
    fn get(&self, table: &str, keys: &[String]) -> Result<Vec<Option<Bytes>>, LookupFailure>;
}

/// The tables an instance may read, if any (a plugin without grants gets
/// `not-granted` for every table).
pub(crate) type Tables = Option<Arc<dyn TableReader>>;
