//! Reference data through the host (contract 0.2): the tables the operator mapped for
//! the plugin (a DynamoDB table, an S3 object, an HTTP endpoint), read through the
//! host's cache. Ask once per batch: gather the keys the batch needs, [`lookup`] them,
//! then transform each record with what was [`Found`].
//!
//! ```ignore
//! fn transform(records: &[Record]) -> Vec<Result<Output, Error>> {
//!     let users = match lookup("users", records.iter().filter_map(|r| r.key())) {
//!         Ok(found) => found,
//!         // Throttled, unreachable, out of time: every record is retried.
//!         Err(e) => return records.iter().map(|_| Err(e.clone().into())).collect(),
//!     };
//!     records.iter().map(|r| enrich(r, &users)).collect()
//! }
//! ```
//!
//! Compiled natively (unit tests), the tables are the ones [`stub`] filled.

use std::collections::HashMap;

use crate::error::{DomainError, Error, InfrastructureError};

/// Why a lookup gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The plugin was not granted the table (its manifest does not declare it, or the
    /// operator did not map it): a bug to fix, not data to retry. As an [`Error`], a
    /// domain error.
    NotGranted(String),
    /// The table cannot be read now: throttled, timed out, unreachable, out of time.
    /// As an [`Error`], an infrastructure error: the record is retried or handed back,
    /// never dead-lettered as bad data.
    Unavailable(String),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotGranted(why) => write!(f, "lookup not granted: {why}"),
            Self::Unavailable(why) => write!(f, "lookup unavailable: {why}"),
        }
    }
}

impl std::error::Error for LookupError {}

impl From<LookupError> for Error {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::NotGranted(_) => Error::Domain(DomainError::new(e.to_string())),
            LookupError::Unavailable(_) => {
                Error::Infrastructure(InfrastructureError::new(e.to_string()))
            }
        }
    }
}

/// What one [`lookup`] found, by key.
#[derive(Debug, Default, Clone)]
pub struct Found {
    values: HashMap<String, Option<Vec<u8>>>,
}

impl Found {
    /// The value of `key` (its row as JSON, or an HTTP body), or `None` when the table
    /// has no such key or it was not asked.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.values.get(key)?.as_deref()
    }

    /// The value of `key` parsed as JSON; `Ok(None)` when the table has no such key.
    /// A value that does not parse is a [`DomainError`] naming the key.
    pub fn json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(bytes).map(Some).map_err(|e| {
                Error::Domain(DomainError::new(format!(
                    "the looked-up value of {key:?} is not the JSON expected: {e}"
                )))
            }),
        }
    }

    /// How many distinct keys were asked.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no key was asked.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Looks `keys` up in `table` with one call to the host (a key repeated is asked once).
pub fn lookup<'k>(
    table: &str,
    keys: impl IntoIterator<Item = &'k str>,
) -> Result<Found, LookupError> {
    let mut distinct: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for key in keys {
        if seen.insert(key) {
            distinct.push(key.to_owned());
        }
    }
    if distinct.is_empty() {
        return Ok(Found::default());
    }
    let values = get(table, &distinct)?;
    Ok(Found {
        values: distinct.into_iter().zip(values).collect(),
    })
}

/// The values of `keys` in `table`, in order: one call to the host, as it is.
pub fn get(table: &str, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, LookupError> {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::wire::bindings::pipeline::plugin::lookup as host;
        host::get(table, keys).map_err(|e| match e {
            host::LookupError::NotGranted(why) => LookupError::NotGranted(why),
            host::LookupError::Unavailable(why) => LookupError::Unavailable(why),
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    native::get(table, keys)
}

/// Fills table `table` for native unit tests of this thread (replacing what it held):
/// `rows` as key and JSON value. Lookups of a table never stubbed answer `NotGranted`.
#[cfg(not(target_arch = "wasm32"))]
pub fn stub<K: Into<String>>(table: &str, rows: impl IntoIterator<Item = (K, serde_json::Value)>) {
    native::stub(
        table,
        rows.into_iter()
            .map(|(k, v)| (k.into(), v.to_string().into_bytes())),
    );
}

/// Makes table `table` fail as unavailable for native unit tests of this thread (a
/// throttled table), until [`stub`] fills it again.
#[cfg(not(target_arch = "wasm32"))]
pub fn stub_unavailable(table: &str, why: &str) {
    native::fail(table, why);
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::LookupError;

    enum Stubbed {
        Rows(HashMap<String, Vec<u8>>),
        Failing(String),
    }

    thread_local! {
        static TABLES: RefCell<HashMap<String, Stubbed>> = RefCell::new(HashMap::new());
    }

    pub(super) fn stub(table: &str, rows: impl Iterator<Item = (String, Vec<u8>)>) {
        let rows = Stubbed::Rows(rows.collect());
        TABLES.with(|t| t.borrow_mut().insert(table.to_owned(), rows));
    }

    pub(super) fn fail(table: &str, why: &str) {
        let failing = Stubbed::Failing(why.to_owned());
        TABLES.with(|t| t.borrow_mut().insert(table.to_owned(), failing));
    }

    pub(super) fn get(table: &str, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, LookupError> {
        TABLES.with(|tables| match tables.borrow().get(table) {
            None => Err(LookupError::NotGranted(format!(
                "table `{table}` is not stubbed (guest_sdk::lookup::stub)"
            ))),
            Some(Stubbed::Failing(why)) => Err(LookupError::Unavailable(why.clone())),
            Some(Stubbed::Rows(rows)) => Ok(keys.iter().map(|k| rows.get(k).cloned()).collect()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_call_finds_each_distinct_key_and_misses_are_none() {
        stub("users", [("u1", json!({"segment": "gold"}))]);
        let found = lookup("users", ["u1", "u2", "u1"]).expect("stubbed");
        assert_eq!(found.len(), 2);
        let user: Option<serde_json::Value> = found.json("u1").expect("json");
        assert_eq!(user, Some(json!({"segment": "gold"})));
        assert_eq!(found.get("u2"), None);
    }

    #[test]
    fn an_unavailable_table_is_an_infrastructure_error_and_an_ungranted_one_a_domain_error() {
        stub_unavailable("prices", "throttled");
        let unavailable: Error = lookup("prices", ["p"]).expect_err("failing").into();
        assert!(
            matches!(unavailable, Error::Infrastructure(_)),
            "{unavailable:?}"
        );
        let ungranted: Error = lookup("nope", ["p"]).expect_err("not stubbed").into();
        assert!(matches!(ungranted, Error::Domain(_)), "{ungranted:?}");
    }
}
