//! The host's own HTTP client (lookup tables behind HTTP, a Confluent schema registry):
//! HTTP/1.1 over rustls with the system's roots, every request bounded in time and in
//! the bytes of its answer.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client, cheap to clone (connections are pooled).
#[derive(Clone)]
pub struct WebClient {
    client: Client<Https, Full<Bytes>>,
}

impl WebClient {
    /// A client trusting the system's root certificates.
    pub fn new() -> Result<Self, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no TLS root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// GET `url` with `headers`, by `ends`: its status and body (at most `cap` bytes;
    /// a longer one is an error, as is no answer in time).
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        cap: usize,
        ends: Instant,
    ) -> Result<(http::StatusCode, Bytes), String> {
        self.call(http::Method::GET, url, headers, Bytes::new(), cap, ends)
            .await
    }

    /// POST `body` to `url`, as [`WebClient::get`] asks.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        cap: usize,
        ends: Instant,
    ) -> Result<(http::StatusCode, Bytes), String> {
        self.call(http::Method::POST, url, headers, body, cap, ends)
            .await
    }

    async fn call(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        cap: usize,
        ends: Instant,
    ) -> Result<(http::StatusCode, Bytes), String> {
        let mut request = http::Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{method} {url}: {}", describe(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), cap)
                .collect()
                .await
                .map_err(|e| format!("{method} {url}: {e} (at most {cap} bytes)"))?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout_at(ends.into(), call)
            .await
            .map_err(|_| format!("{method} {url}: no answer in time"))?
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
