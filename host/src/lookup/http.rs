//! An HTTP endpoint as a lookup table: one GET per key on the operator's URL template,
//! the key percent-encoded into it (so the plugin picks a key, never a URL: the
//! templates are the allow-list). 2xx is the value (its body, at most
//! [`MAX_VALUE_BYTES`]), 404 and 410 a key the table does not have; anything else,
//! a timeout or a refused connection makes the table unavailable for this lookup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::web::WebClient;

/// Longest body taken as a value.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// GETs of one lookup in flight at once.
const CONCURRENCY: usize = 16;

/// Everything but letters, digits and `-_~` is encoded: a key cannot add a path
/// segment (`/`, or a `..` a server would resolve), a query or a fragment.
const KEY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// One HTTP lookup table.
pub(super) struct HttpTable {
    client: WebClient,
    template: String,
    /// One GET's time.
    timeout: Duration,
}

impl HttpTable {
    pub(super) fn new(template: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            client: WebClient::new()?,
            template: template.to_owned(),
            timeout,
        })
    }

    /// The values of `keys` (distinct), in order. `calls` counts the requests.
    pub(super) async fn fetch(
        &self,
        keys: &[String],
        until: Instant,
        calls: &AtomicU64,
    ) -> Result<Vec<Option<Bytes>>, String> {
        let gets = keys.iter().map(|key| {
            calls.fetch_add(1, Ordering::Relaxed);
            self.get(key, until)
        });
        let answers: Vec<Result<Option<Bytes>, String>> = futures_util::stream::iter(gets)
            .buffered(CONCURRENCY)
            .collect()
            .await;
        answers.into_iter().collect()
    }

    async fn get(&self, key: &str, until: Instant) -> Result<Option<Bytes>, String> {
        let url = self
            .template
            .replace("{key}", &utf8_percent_encode(key, KEY).to_string());
        let ends = (Instant::now() + self.timeout).min(until);
        let (status, body) = self.client.get(&url, &[], MAX_VALUE_BYTES, ends).await?;
        if status == http::StatusCode::NOT_FOUND || status == http::StatusCode::GONE {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("GET {url}: {status}"));
        }
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_cannot_leave_its_place_in_the_url() {
        let encoded = utf8_percent_encode("../admin?x=1#y/é", KEY).to_string();
        assert_eq!(encoded, "%2E%2E%2Fadmin%3Fx%3D1%23y%2F%C3%A9");
    }
}
