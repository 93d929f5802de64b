//! The REST client the remote commands share (`refundry plugin ... --url`, `refundry batch
//! --url`): a running service's base URL, a bearer token, one connection pool.

use anyhow::{Context, Result};
use refundry_api::error::ErrorBody;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode, Url};

/// A running `refundry serve` and the token to call it with.
pub struct ServiceClient {
    base: Url,
    token: String,
    http: reqwest::Client,
}

/// One answer: status, headers and the raw body.
pub struct HttpAnswer {
    /// The URL called (for messages).
    pub url: Url,
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body, as received.
    pub body: Vec<u8>,
}

impl ServiceClient {
    /// A client for the service at `base`. `token` is required: the error names `scope`, the one
    /// the command needs.
    pub fn new(base: Url, token: Option<&str>, scope: &str) -> Result<Self> {
        let token = token.with_context(|| {
            format!("--url needs --token (or REFUNDRY_TOKEN): a bearer token with scope {scope}")
        })?;
        let http = reqwest::Client::builder()
            // A service that does not even accept the connection is not worth waiting on; an
            // answer may take a while (a refund's retries), so the whole request gets longer.
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base,
            token: token.to_owned(),
            http,
        })
    }

    /// `path` (relative, e.g. `v1/refunds`) under the base URL.
    pub fn url(&self, path: &str) -> Result<Url> {
        let base = &self.base;
        base.join(path).with_context(|| format!("{base} + {path}"))
    }

    /// Sends one request (with the bearer token unless `authorized` is false); `content_type` is
    /// set when given. An error means no answer came.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
        authorized: bool,
    ) -> Result<HttpAnswer> {
        let url = self.url(path)?;
        let mut req = self.http.request(method, url.clone());
        if authorized {
            req = req.bearer_auth(&self.token);
        }
        if let Some(kind) = content_type {
            req = req.header(CONTENT_TYPE, kind);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let response = req.send().await.with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {url}"))?
            .to_vec();
        Ok(HttpAnswer {
            url,
            status,
            headers,
            body,
        })
    }
}

impl HttpAnswer {
    /// The body as `T` (an empty body reads as JSON `null`).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        let text: &[u8] = if self.body.is_empty() {
            b"null"
        } else {
            &self.body
        };
        serde_json::from_slice(text).with_context(|| {
            format!(
                "unexpected answer from {} ({}): {}",
                self.url,
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The API's one error shape.
    pub fn error(&self) -> Result<ErrorBody> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "{} answered {}: {}",
                self.url,
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}
