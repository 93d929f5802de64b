//! Provider HTTP exchanges as the ledger keeps them: what a plugin sent and what came back, with
//! secrets removed.
//!
//! Redaction removes every configured secret value (the [`Redactor`]), the values of headers that
//! carry credentials, and the values of JSON fields named like credentials (a token a provider
//! issues at run time is no configured secret, but it is one all the same). A body is kept as it
//! was sent, byte for byte, unless a credential field had to be removed from it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use refundry_runtime::bindings::http::{HttpError, Request, Response};
use refundry_runtime::secret::Redactor;

/// What replaces a removed value.
pub use refundry_runtime::secret::REDACTED;

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
            method: refundry_runtime::caps::http::method(req.method).to_string(),
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

/// A body as the log keeps it: without the configured secrets, and, when it is JSON, without the
/// values of credential-named fields. A JSON body is written again (compact) only when such a
/// field was redacted; any other body is kept as it was sent.
fn redact_body(redactor: &Redactor, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    // Every body of every exchange passes here. A field name can only hold a credential word
    // that the text spells, as is or behind an escape: a text that spells none and escapes
    // nothing has no field to redact, and is not parsed.
    let may_name_one = text.contains('\\') || is_sensitive_name(&text);
    let redacted = may_name_one
        .then(|| serde_json::from_str::<serde_json::Value>(&text).ok())
        .flatten()
        .and_then(|mut v| redact_json(&mut v).then(|| v.to_string()));
    match redacted {
        Some(rewritten) => redactor.redact(&rewritten),
        None => redactor.redact(&text),
    }
}

/// Replaces the values of credential-named fields; whether there was one.
fn redact_json(v: &mut serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(map) => {
            let mut redacted = false;
            for (k, v) in map.iter_mut() {
                if is_sensitive_name(k) && !v.is_object() && !v.is_array() {
                    *v = serde_json::Value::String(REDACTED.to_owned());
                    redacted = true;
                } else {
                    redacted |= redact_json(v);
                }
            }
            redacted
        }
        serde_json::Value::Array(items) => items.iter_mut().fold(false, |r, i| redact_json(i) | r),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use refundry_runtime::bindings::http::Method;
    use refundry_runtime::secret::Secret;

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

    fn logged_body(body: &str) -> String {
        let redactor = Redactor::new([&Secret::new("s3cr3t-value")]);
        redact_body(&redactor, body.as_bytes())
    }

    #[test]
    fn a_body_with_nothing_to_redact_is_kept_as_it_was_sent() {
        // Key order, spacing, and a credential word that is only a value, not a field's name.
        for body in [
            "{ \"zeta\": 1,\n  \"amount\": \"10.00\" }",
            r#"{"status":"pending","note":"token expired","items":[{"b":2,"a":1}]}"#,
            "not json, no secret",
            "",
        ] {
            assert_eq!(logged_body(body), body);
        }
        // A configured secret is removed all the same.
        assert_eq!(
            logged_body(r#"{"note":"s3cr3t-value"}"#),
            format!(r#"{{"note":"{REDACTED}"}}"#)
        );
    }

    #[test]
    fn a_credential_field_is_redacted_however_its_name_is_spelled() {
        for body in [
            r#"{"amount":"10.00","access_token":"abc-123"}"#,
            r#"{"data":[{"ApiKey":"abc-123"}]}"#,
            // Spelled with an escape: the text itself never says "token".
            r#"{"access_t\u006fken":"abc-123"}"#,
        ] {
            let logged = logged_body(body);
            assert!(!logged.contains("abc-123"), "{body} logged as {logged}");
            assert!(logged.contains(REDACTED), "{logged}");
        }
    }
}
