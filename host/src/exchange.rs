//! Provider HTTP exchanges as the ledger keeps them: what a plugin sent and what came back, with
//! secrets removed, collected per operation so that each can be linked to its refund.
//!
//! Redaction removes every configured secret value (the [`Redactor`]), the values of headers that
//! carry credentials, and the values of JSON fields named like credentials (a token a provider
//! issues at run time is no configured secret, but it is one all the same).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::bindings::http::{HttpError, Request, Response};
use crate::secret::Redactor;

/// What replaces a removed value.
pub const REDACTED: &str = "[redacted]";

/// One request a plugin sent through the `http` capability, and its answer, redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Exchange {
    /// HTTP method.
    pub method: String,
    /// Request URL.
    pub url: String,
    /// Request headers.
    pub request_headers: Vec<(String, String)>,
    /// Request body, as text.
    pub request_body: Option<String>,
    /// Response status, when an answer came.
    pub status: Option<u16>,
    /// Response headers.
    pub response_headers: Vec<(String, String)>,
    /// Response body, as text.
    pub response_body: Option<String>,
    /// Why no answer came.
    pub error: Option<String>,
    /// Time from send to the last body byte (or the failure).
    pub latency_ms: f64,
    /// When it was sent (UTC, ms since the epoch).
    pub sent_at_ms: i64,
}

impl Exchange {
    /// Builds the redacted record of one exchange.
    pub fn record(
        redactor: &Redactor,
        req: &Request,
        result: &Result<Response, HttpError>,
        latency: Duration,
        sent_at_ms: i64,
    ) -> Self {
        let (status, response_headers, response_body, error) = match result {
            Ok(r) => (
                Some(r.status),
                redact_headers(redactor, &r.headers),
                Some(redact_body(redactor, &r.body)),
                None,
            ),
            Err(e) => (
                None,
                Vec::new(),
                None,
                Some(redactor.redact(&format!("{e:?}"))),
            ),
        };
        Self {
            method: crate::caps::http::method(req.method).to_string(),
            url: redactor.redact(&req.url),
            request_headers: redact_headers(redactor, &req.headers),
            request_body: req.body.as_deref().map(|b| redact_body(redactor, b)),
            status,
            response_headers,
            response_body,
            error,
            latency_ms: latency.as_secs_f64() * 1e3,
            sent_at_ms,
        }
    }
}

/// Where the exchanges of one plugin operation are collected. Shared with the instance's state,
/// so that exchanges made before a trap or a deadline are kept too. It may also carry the
/// operation's [`Recorder`](crate::replay::Recorder), which the instance's capabilities fill.
#[derive(Clone, Default)]
pub struct Exchanges(Arc<Mutex<Collected>>);

impl std::fmt::Debug for Exchanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.lock();
        f.debug_struct("Exchanges")
            .field("done", &c.done)
            .field("sent", &c.sent)
            .field("recording", &c.recorder.is_some())
            .finish()
    }
}

#[derive(Default)]
struct Collected {
    done: Vec<Exchange>,
    /// Credentials the provider issued in the operation's answers (see [`Exchanges::issued`]).
    issued: Vec<String>,
    sent: usize,
    recorder: Option<crate::replay::Recorder>,
}

impl Exchanges {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty collection that also records the operation (see [`crate::replay`]).
    pub fn recording(recorder: crate::replay::Recorder) -> Self {
        let exchanges = Self::default();
        exchanges.lock().recorder = Some(recorder);
        exchanges
    }

    /// The operation's recorder, when it is recorded.
    pub fn recorder(&self) -> Option<crate::replay::Recorder> {
        self.lock().recorder.clone()
    }

    /// Notes that `req` is about to go on the wire: from here on the provider may have it. The
    /// returned watch records the exchange when [`Watch::finish`]ed with the answer, or, if the
    /// operation is cut off first (the plugin's deadline drops it), as cut off.
    pub fn sending<'a>(
        &'a self,
        redactor: &'a Redactor,
        req: &'a Request,
        sent_at_ms: i64,
    ) -> Watch<'a> {
        self.lock().sent += 1;
        Watch {
            exchanges: self,
            redactor,
            req,
            sent_at_ms,
            started: std::time::Instant::now(),
            done: false,
        }
    }

    /// Adds one finished exchange.
    pub fn push(&self, exchange: Exchange) {
        self.lock().done.push(exchange);
    }

    /// Takes every finished exchange collected so far.
    pub fn take(&self) -> Vec<Exchange> {
        std::mem::take(&mut self.lock().done)
    }

    /// The credentials the provider issued in this operation's answers so far (values of
    /// credential-named JSON fields and headers, as [`crate::secret::credentials_in`] finds
    /// them): removed from the plugin's answer with the configured secrets.
    pub fn issued(&self) -> Vec<String> {
        self.lock().issued.clone()
    }

    /// How many requests were put on the wire, finished or not.
    pub fn sent(&self) -> usize {
        self.lock().sent
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Collected> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One request on the wire; see [`Exchanges::sending`].
pub struct Watch<'a> {
    exchanges: &'a Exchanges,
    redactor: &'a Redactor,
    req: &'a Request,
    sent_at_ms: i64,
    started: std::time::Instant,
    done: bool,
}

impl Watch<'_> {
    /// Records the exchange with its answer.
    pub fn finish(mut self, result: &Result<Response, HttpError>) {
        self.done = true;
        if let Ok(r) = result {
            let mut found = crate::secret::credentials_in(&r.body);
            found.extend(crate::secret::credential_headers(&r.headers));
            if !found.is_empty() {
                self.exchanges.lock().issued.extend(found);
            }
        }
        let e = Exchange::record(
            self.redactor,
            self.req,
            result,
            self.started.elapsed(),
            self.sent_at_ms,
        );
        self.exchanges.push(e);
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if !self.done {
            let cut = Err(HttpError::Transport(
                "cut off before the answer: the plugin operation ended (deadline)".into(),
            ));
            let e = Exchange::record(
                self.redactor,
                self.req,
                &cut,
                self.started.elapsed(),
                self.sent_at_ms,
            );
            self.exchanges.push(e);
        }
    }
}

/// Whether a header or JSON field name says its value is a credential.
fn is_sensitive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "authorization",
        "secret",
        "token",
        "signature",
        "password",
        "key",
        "hash",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

fn redact_headers(redactor: &Redactor, headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let v = if is_sensitive_name(k) {
                REDACTED.to_owned()
            } else {
                redactor.redact(v)
            };
            (k.clone(), v)
        })
        .collect()
}

fn redact_body(redactor: &Redactor, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(mut v) => {
            redact_json(&mut v);
            v.to_string()
        }
        Err(_) => text.into_owned(),
    };
    redactor.redact(&text)
}

fn redact_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_sensitive_name(k) && !v.is_object() && !v.is_array() {
                    *v = serde_json::Value::String(REDACTED.to_owned());
                } else {
                    redact_json(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::http::Method;
    use crate::secret::Secret;

    #[test]
    fn secrets_headers_and_token_fields_are_removed() {
        let secret = Secret::new("s3cr3t-value");
        let redactor = Redactor::new([&secret]);
        let req = Request {
            method: Method::Post,
            url: "http://p/refunds?sig=s3cr3t-value".into(),
            headers: vec![
                ("Authorization".into(), "Bearer abc".into()),
                ("X-Api-Key".into(), "k1".into()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: Some(br#"{"amount":"10.00","secretKey":"x","nested":{"token":"t"}}"#.to_vec()),
        };
        let resp = Ok(Response {
            status: 200,
            headers: vec![],
            body: br#"{"data":{"token":"tok-123","note":"s3cr3t-value"}}"#.to_vec(),
        });
        let e = Exchange::record(&redactor, &req, &resp, Duration::from_millis(3), 0);
        let all = serde_json::to_string(&e).unwrap();
        for leaked in [
            "s3cr3t-value",
            "Bearer abc",
            "k1",
            "tok-123",
            "\"x\"",
            "\"t\"",
        ] {
            assert!(!all.contains(leaked), "{leaked} leaked in {all}");
        }
        assert!(all.contains("10.00") && all.contains("application/json"));
    }

    #[test]
    fn credentials_the_provider_issues_are_noted() {
        let redactor = Redactor::default();
        let req = Request {
            method: Method::Post,
            url: "http://p/auth".into(),
            headers: vec![],
            body: None,
        };
        let exchanges = Exchanges::new();
        exchanges.sending(&redactor, &req, 0).finish(&Ok(Response {
            status: 200,
            headers: vec![("X-Session-Token".into(), "hdr-0123456789abcdef".into())],
            body: br#"{"data":{"access_token":"tok-0123456789abcdef","key":"1"}}"#.to_vec(),
        }));
        let mut issued = exchanges.issued();
        issued.sort();
        assert_eq!(issued, ["hdr-0123456789abcdef", "tok-0123456789abcdef"]);
    }
}
