//! The `http` capability: one outbound request at a time, only to the provider's own origin.
//!
//! Deny by default: the scheme, host and port must be those of the provider's configured
//! `base_url`; headers that would let a plugin steer the connection (`Host`, `Content-Length`,
//! hop-by-hop headers) are refused; redirects are not followed (a redirect could point anywhere);
//! each request has a timeout and a response size cap.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bindings::http::{HttpError, Method, Request, Response};
use crate::limits::HttpLimits;
use crate::secret::Redactor;

/// Headers the host sets itself or that control the connection (RFC 9110 §7.6.1): a plugin may
/// not send them.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What carries a checked request to the provider and back: reqwest by default
/// ([`ReqwestTransport`]), a gateway's own HTTP client, or an in-process fake in benchmarks. The
/// policy (origin, headers, timeout, size cap) is applied around it, whatever it is.
pub trait Transport: Send + Sync + 'static {
    /// Sends `req` to `url` (already checked) and reads at most `max_body` response bytes.
    fn exchange<'a>(
        &'a self,
        req: &'a Request,
        url: reqwest::Url,
        max_body: usize,
    ) -> Pin<Box<dyn Future<Output = Result<Response, HttpError>> + Send + 'a>>;
}

/// The real network, through one shared reqwest client (one connection pool for every provider).
#[derive(Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// A transport on a new client that never follows redirects (a redirect could point anywhere).
    pub fn new() -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a reqwest client with default TLS settings builds"),
        }
    }
}

impl Default for ReqwestTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport for ReqwestTransport {
    fn exchange<'a>(
        &'a self,
        req: &'a Request,
        url: reqwest::Url,
        max_body: usize,
    ) -> Pin<Box<dyn Future<Output = Result<Response, HttpError>> + Send + 'a>> {
        Box::pin(self.send(req, url, max_body))
    }
}

impl ReqwestTransport {
    async fn send(
        &self,
        req: &Request,
        url: reqwest::Url,
        max_body: usize,
    ) -> Result<Response, HttpError> {
        let mut builder = self.client.request(method(req.method), url);
        for (name, value) in &req.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| HttpError::InvalidRequest(format!("header name {name:?}: {e}")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| HttpError::InvalidRequest(format!("header {name} value: {e}")))?;
            builder = builder.header(name, value);
        }
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let mut resp = builder.send().await.map_err(transport_error)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        if resp.content_length().is_some_and(|n| n > max_body as u64) {
            return Err(HttpError::ResponseTooLarge(max_body as u64));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > max_body {
                return Err(HttpError::ResponseTooLarge(max_body as u64));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// A provider's outbound HTTP: the transport behind the origin policy.
#[derive(Clone)]
pub struct HttpPolicy {
    transport: Arc<dyn Transport>,
    /// The only origin allowed; `None` allows nothing (a plugin being inspected).
    origin: Option<reqwest::Url>,
    /// `origin` up to its path (`https://host:port`), when it has no user or password: see
    /// [`HttpPolicy::within_origin`].
    origin_prefix: Option<String>,
    limits: HttpLimits,
    redactor: Redactor,
    provider: Arc<str>,
}

impl HttpPolicy {
    /// The HTTP of one provider, allowed to reach `origin`'s scheme, host and port only (nothing
    /// at all for `None`).
    pub fn new(
        transport: Arc<dyn Transport>,
        origin: Option<reqwest::Url>,
        limits: HttpLimits,
        redactor: Redactor,
        provider: Arc<str>,
    ) -> Self {
        let origin_prefix = origin
            .as_ref()
            .filter(|o| o.username().is_empty() && o.password().is_none())
            .and_then(|o| {
                let port = o.port().map(|p| format!(":{p}")).unwrap_or_default();
                Some(format!("{}://{}{port}", o.scheme(), o.host_str()?))
            });
        Self {
            transport,
            origin,
            origin_prefix,
            limits,
            redactor,
            provider,
        }
    }

    /// Checks the request against the policy without sending it.
    pub fn check(&self, req: &Request) -> Result<reqwest::Url, HttpError> {
        let url = match self.within_origin(&req.url) {
            Some(url) => url,
            None => reqwest::Url::parse(&req.url)
                .map_err(|e| HttpError::InvalidRequest(format!("bad url: {e}")))?,
        };
        let Some(origin) = &self.origin else {
            return Err(HttpError::Denied(
                "this plugin is granted no network access".into(),
            ));
        };
        let same_origin = url.scheme() == origin.scheme()
            && url.host_str() == origin.host_str()
            && url.port_or_known_default() == origin.port_or_known_default();
        if !same_origin {
            return Err(HttpError::Denied(format!(
                "{} is not this provider's origin ({})",
                origin_of(&url),
                origin_of(origin)
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpError::Denied(
                "credentials in the url are not allowed".into(),
            ));
        }
        for (name, _) in &req.headers {
            if FORBIDDEN_HEADERS
                .iter()
                .any(|f| f.eq_ignore_ascii_case(name))
            {
                return Err(HttpError::Denied(format!(
                    "header {name} is set by the host"
                )));
            }
        }
        Ok(url)
    }

    /// `url` parsed relative to the origin, when it begins with the origin spelled as the origin
    /// itself is (`origin_prefix`) and then a path: the URL a plugin builds from its `base_url`.
    /// The origin's host is then not parsed again (host parsing, IDNA included, was most of a
    /// request's check). The result is what parsing `url` whole gives; the caller checks it all
    /// the same. `None` for any other URL, which is parsed whole.
    fn within_origin(&self, url: &str) -> Option<reqwest::Url> {
        let origin = self.origin.as_ref()?;
        let rest = url.strip_prefix(self.origin_prefix.as_deref()?)?;
        let mut chars = rest.chars();
        // A `/` ends the authority. Read relative to the origin, `//` or `/\` would begin
        // another one, and a parser drops tabs and line breaks before reading, wherever they are.
        if chars.next() != Some('/')
            || matches!(chars.next(), Some('/' | '\\'))
            || rest.contains(['\t', '\n', '\r'])
        {
            return None;
        }
        origin.join(rest).ok()
    }

    /// Checks the request and sends it once, within the timeout and size cap.
    pub async fn send(&self, req: &Request) -> Result<Response, HttpError> {
        let url = self.check(req)?;
        self.exchange(req, url).await
    }

    /// Sends a request [`HttpPolicy::check`] passed (as `url`) once and reads the answer,
    /// within the timeout and size cap.
    pub async fn exchange(&self, req: &Request, url: reqwest::Url) -> Result<Response, HttpError> {
        let started = Instant::now();
        let exchange = self
            .transport
            .exchange(req, url.clone(), self.limits.max_response_bytes);
        let result = tokio::time::timeout(self.limits.timeout, exchange)
            .await
            .unwrap_or(Err(HttpError::Timeout));
        self.trace(&method(req.method), &url, &result, started.elapsed());
        result
    }

    fn trace(
        &self,
        method: &reqwest::Method,
        url: &reqwest::Url,
        result: &Result<Response, HttpError>,
        elapsed: Duration,
    ) {
        // URLs can carry ids but no secrets by contract; redact anyway (only for a line that is
        // written: a macro's fields are read only when its level is enabled).
        let redacted_url = || self.redactor.redact(url.as_str());
        let ms = elapsed.as_secs_f64() * 1e3;
        match result {
            Ok(r) => tracing::debug!(
                target: "refundry::http", provider = %self.provider, %method, url = %redacted_url(),
                status = r.status, latency_ms = ms, "provider exchange"
            ),
            Err(e) => tracing::warn!(
                target: "refundry::http", provider = %self.provider, %method, url = %redacted_url(),
                error = ?e, latency_ms = ms, "provider exchange failed"
            ),
        }
    }
}

/// The contract's method as reqwest's (and, with `as_str`, its name on the wire).
pub fn method(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    }
}

fn origin_of(url: &reqwest::Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// Classifies a reqwest failure by whether the request can have reached the provider.
fn transport_error(e: reqwest::Error) -> HttpError {
    if e.is_connect() {
        // No connection was made, so nothing was sent: safe to retry.
        HttpError::ConnectFailed(error_chain(&e))
    } else if e.is_timeout() {
        HttpError::Timeout
    } else if e.is_builder() {
        HttpError::InvalidRequest(error_chain(&e))
    } else {
        HttpError::Transport(error_chain(&e))
    }
}

/// An error with its sources, `: `-separated (reqwest puts the useful part, "connection refused",
/// in a source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(origin: &str) -> HttpPolicy {
        HttpPolicy::new(
            Arc::new(ReqwestTransport::new()),
            Some(reqwest::Url::parse(origin).unwrap()),
            HttpLimits::default(),
            Redactor::default(),
            "p".into(),
        )
    }

    fn get(url: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: Method::Get,
            url: url.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: None,
        }
    }

    #[test]
    fn only_the_configured_origin_is_allowed() {
        let c = cap("http://127.0.0.1:8080");
        assert!(
            c.check(&get("http://127.0.0.1:8080/v1/refunds?x=1", &[]))
                .is_ok()
        );
        for other in [
            "http://127.0.0.2:8080/v1",
            "http://127.0.0.1:8081/v1",
            "https://127.0.0.1:8080/v1",
            "http://localhost:8080/v1",
            "http://user:pw@127.0.0.1:8080/v1",
        ] {
            assert!(
                matches!(c.check(&get(other, &[])), Err(HttpError::Denied(_))),
                "{other}"
            );
        }
        assert!(matches!(
            c.check(&get("not a url", &[])),
            Err(HttpError::InvalidRequest(_))
        ));
    }

    #[test]
    fn a_url_read_relative_to_the_origin_is_the_url_parsed_whole() {
        for origin in [
            "http://127.0.0.1:8080",
            "https://api.example",
            "https://API.Example:443/base/",
            "http://[::1]:9000",
            "https://bücher.example",
            "http://user:pw@127.0.0.1:8080",
        ] {
            let c = cap(origin);
            let o = reqwest::Url::parse(origin).unwrap();
            let base = o.as_str().trim_end_matches(o.path());
            let mut relative = 0;
            for rest in [
                "/v1/refunds?x=1&y=%41#f",
                "/",
                "/a/../b/./c",
                "/a\\b",
                "/ü/ space?q=ü ",
                "/%2e%2e/x",
                "//evil.example/v1",
                "/\\evil.example/v1",
                "/\t/evil.example/v1",
                "/\n/evil.example",
                "/x\r/y",
                "?q",
                "#f",
                ":8081/v1",
                ".evil.example/v1",
                "@evil.example/v1",
                "/v1 ",
            ] {
                let url = format!("{base}{rest}");
                let whole = reqwest::Url::parse(&url).ok();
                if let Some(read) = c.within_origin(&url) {
                    relative += 1;
                    assert_eq!(Some(&read), whole.as_ref(), "{url}");
                    assert_eq!(Some(read.as_str()), whole.as_ref().map(|w| w.as_str()));
                }
                // And the check allows exactly the URLs of the origin, parsed whole.
                let allowed = whole.filter(|w| {
                    w.host_str() == o.host_str()
                        && w.port_or_known_default() == o.port_or_known_default()
                        && w.username().is_empty()
                        && o.username().is_empty()
                });
                assert_eq!(c.check(&get(&url, &[])).ok(), allowed, "{url}");
            }
            // The origin with a path read relative to it, except where the origin has a user.
            assert_eq!(relative > 0, o.username().is_empty(), "{origin}");
        }
    }

    #[test]
    fn default_ports_compare_equal() {
        let c = cap("https://api.example");
        assert!(c.check(&get("https://api.example:443/v1", &[])).is_ok());
    }

    #[test]
    fn host_and_hop_by_hop_headers_are_refused() {
        let c = cap("http://127.0.0.1:8080");
        for h in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "Connection",
            "Upgrade",
        ] {
            let r = get("http://127.0.0.1:8080/", &[(h, "x")]);
            assert!(matches!(c.check(&r), Err(HttpError::Denied(_))), "{h}");
        }
        assert!(
            c.check(&get("http://127.0.0.1:8080/", &[("X-Api-Key", "k")]))
                .is_ok()
        );
    }

    #[tokio::test]
    async fn unreachable_port_is_a_connect_failure() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let origin = format!("http://127.0.0.1:{port}");
        let err = cap(&origin)
            .send(&get(&format!("{origin}/x"), &[]))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::ConnectFailed(_)), "{err:?}");
    }

    /// A one-shot HTTP server on loopback that answers any request with `response` after `delay`.
    async fn serve_once(response: Vec<u8>, delay: Duration) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            tokio::time::sleep(delay).await;
            let _ = socket.write_all(&response).await;
        });
        origin
    }

    fn limited(origin: &str, limits: HttpLimits) -> HttpPolicy {
        HttpPolicy::new(
            Arc::new(ReqwestTransport::new()),
            Some(reqwest::Url::parse(origin).unwrap()),
            limits,
            Redactor::default(),
            "p".into(),
        )
    }

    #[tokio::test]
    async fn response_over_the_cap_is_refused() {
        let body = vec![b'x'; 2048];
        let mut response =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        response.extend_from_slice(&body);
        let origin = serve_once(response, Duration::ZERO).await;
        let limits = HttpLimits {
            max_response_bytes: 1024,
            ..HttpLimits::default()
        };
        let err = limited(&origin, limits)
            .send(&get(&format!("{origin}/"), &[]))
            .await
            .unwrap_err();
        assert_eq!(err, HttpError::ResponseTooLarge(1024));
    }

    #[tokio::test]
    async fn slow_provider_times_out() {
        let origin = serve_once(
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
            Duration::from_secs(5),
        )
        .await;
        let limits = HttpLimits {
            timeout: Duration::from_millis(100),
            ..HttpLimits::default()
        };
        let err = limited(&origin, limits)
            .send(&get(&format!("{origin}/"), &[]))
            .await
            .unwrap_err();
        assert_eq!(err, HttpError::Timeout);
    }
}
