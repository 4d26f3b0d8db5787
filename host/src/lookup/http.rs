//! An HTTP endpoint as a lookup table: one GET per key on the operator's URL template,
//! the key percent-encoded into it (so the plugin picks a key, never a URL: the
//! templates are the allow-list). 2xx is the value (its body, at most
//! [`MAX_VALUE_BYTES`]), 404 and 410 a key the table does not have; anything else,
//! a timeout or a refused connection makes the table unavailable for this lookup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Longest body taken as a value.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// GETs of one lookup in flight at once.
const CONCURRENCY: usize = 16;

/// Everything but letters, digits and `-_~` is encoded: a key cannot add a path
/// segment (`/`, or a `..` a server would resolve), a query or a fragment.
const KEY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// One HTTP lookup table.
pub(super) struct HttpTable {
    client: Client<Https, Empty<Bytes>>,
    template: String,
    /// One GET's time.
    timeout: Duration,
}

impl HttpTable {
    pub(super) fn new(template: &str, timeout: Duration) -> Result<Self, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no TLS root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
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
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let ends = (Instant::now() + self.timeout).min(until);
        let request = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|e| format!("GET {url}: {}", describe(&e)))?;
            let status = response.status();
            if status == http::StatusCode::NOT_FOUND || status == http::StatusCode::GONE {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(format!("GET {url}: {status}"));
            }
            let body = Limited::new(response.into_body(), MAX_VALUE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    format!("GET {url}: {e} (a value is at most {MAX_VALUE_BYTES} bytes)")
                })?;
            Ok(Some(body.to_bytes()))
        };
        tokio::time::timeout_at(ends.into(), request)
            .await
            .map_err(|_| format!("GET {url}: no answer in time"))?
    }
}

/// An error with its causes.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
