//! The sandbox's one door to reference data: the `lookup` import of contract 0.2. The
//! engine knows nothing of where tables live; it calls a [`TableReader`] the host gives
//! the plugin (`crate::lookup`), checks what comes back, and keeps the time the call
//! spent waiting off the plugin's CPU deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::bindings::pipeline::plugin::lookup;
use super::sandbox::StoreState;

/// Keys one `get` may ask for: a batch's worth, many times over. Past it the call is
/// refused before anything is fetched (the host would otherwise hold a list sized by
/// the plugin).
pub const MAX_KEYS_PER_GET: usize = 100_000;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 2048;

/// Why a table gave no answer, as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupFailure {
    /// The plugin was not granted the table: nothing was asked.
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

impl StoreState {
    /// Time spent in lookups during the current call, not yet given back to the CPU
    /// deadline; taken (and zeroed) when the deadline is reached.
    pub(crate) fn take_lookup_credit(&mut self) -> Duration {
        std::mem::take(&mut self.lookup_credit)
    }
}

impl lookup::Host for StoreState {
    fn get(
        &mut self,
        table: String,
        keys: Vec<String>,
    ) -> Result<Vec<Option<Vec<u8>>>, lookup::LookupError> {
        let Some(reader) = self.tables.clone() else {
            return Err(lookup::LookupError::NotGranted(format!(
                "no lookup table is granted to this plugin (asked for `{table}`)"
            )));
        };
        if keys.len() > MAX_KEYS_PER_GET {
            return Err(lookup::LookupError::NotGranted(format!(
                "{} keys in one lookup of `{table}`: at most {MAX_KEYS_PER_GET}",
                keys.len()
            )));
        }
        if let Some(key) = keys.iter().find(|k| k.len() > MAX_KEY_BYTES) {
            return Err(lookup::LookupError::NotGranted(format!(
                "a key of {} bytes in a lookup of `{table}`: at most {MAX_KEY_BYTES}",
                key.len()
            )));
        }
        let started = Instant::now();
        let answer = reader.get(&table, &keys);
        // Waiting on a table is not the plugin's CPU: the deadline (and a WASI wait's)
        // moves by what the lookup took.
        let waited = started.elapsed();
        self.lookup_credit += waited;
        self.extend_call_deadline(waited);
        match answer {
            Ok(values) if values.len() == keys.len() => {
                Ok(values.into_iter().map(|v| v.map(|b| b.to_vec())).collect())
            }
            Ok(values) => Err(lookup::LookupError::Unavailable(format!(
                "table `{table}` answered {} values for {} keys (host bug)",
                values.len(),
                keys.len()
            ))),
            Err(LookupFailure::NotGranted(why)) => Err(lookup::LookupError::NotGranted(why)),
            Err(LookupFailure::Unavailable(why)) => Err(lookup::LookupError::Unavailable(why)),
        }
    }
}
