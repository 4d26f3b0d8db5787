//! The plugin's configuration, handed over once by the host's `init` call.

use std::str::FromStr;
use std::sync::OnceLock;

use crate::error::Error;

/// Key/value settings given to the plugin (`host run --config key=value`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// The configuration of this plugin instance (empty before `init`).
pub fn config() -> &'static Config {
    CONFIG.get_or_init(Config::default)
}

impl Config {
    /// A configuration with these entries (for tests; the host builds the real one).
    pub fn new<K: Into<String>, V: Into<String>>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            entries: entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Makes this the process-wide configuration returned by [`config()`]. The SDK does
    /// this in `init`; native tests may call it once. Returns `false` if one was already set.
    pub fn install(self) -> bool {
        CONFIG.set(self).is_ok()
    }

    /// The value of `key`, if set (the last one wins when a key repeats).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or a domain error naming the missing setting.
    pub fn require(&self, key: &str) -> Result<&str, Error> {
        self.get(key)
            .ok_or_else(|| Error::domain(format!("missing config setting `{key}`")))
    }

    /// The value of `key` parsed as `T`, `default` when unset, or an error naming the setting.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, Error>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| Error::domain(format!("config setting `{key}`={raw:?}: {e}"))),
        }
    }

    /// All entries, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}
