//! The host's REST request parsing: one request (method, target, headers, body; layout:
//! `corpus::rest`) through the API's real router (authentication, routing, path and query
//! parsing, JSON bodies with their field errors, the body limit, the error shapes) in front of a
//! service double that never fails.
//!
//! Besides "no panic": no 500 (the double never fails, so one would be the API's own), a 503
//! only as a create's outcome and with `Retry-After`, every error in the API's one shape, a 2xx
//! from a scoped route only with a configured token, and every 2xx JSON body valid JSON.
//!
//! `GET /openapi.json` is left out: it generates the whole document per request, which is no
//! request parsing and would cost the run most of its executions.
#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use libfuzzer_sys::fuzz_target;
use refundry_fuzz::corpus::Fields;
use refundry_fuzz::corpus::rest::{ADMIN_TOKEN, REFUNDS_TOKEN};
use refundry_fuzz::{header_lines, rest};
use tokio::runtime::Runtime;
use tower::ServiceExt;

/// One runtime and one router for the whole run: building them per input would be most of the
/// work.
fn app() -> &'static (Runtime, Router) {
    static APP: OnceLock<(Runtime, Router)> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let router = refundry_api::router(rest::Service::default(), &rest::tokens());
        (runtime, router)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut fields = Fields::new(data);
    // What hyper would refuse before the router sees it is left out: a bad method or target.
    let Ok(method) = Method::from_bytes(fields.field()) else {
        return;
    };
    let Ok(uri) = Uri::try_from(fields.field()) else {
        return;
    };
    if uri.path() == "/openapi.json" {
        return;
    }
    let mut request = Request::builder().method(method.clone()).uri(uri.clone());
    let mut authorization = None;
    for (name, value) in header_lines(&fields.text()) {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            continue;
        };
        if name == header::AUTHORIZATION && authorization.is_none() {
            authorization = Some(value.as_bytes().to_vec());
        }
        request = request.header(name, value);
    }
    let body = fields.field().to_vec();
    let request = request.body(Body::from(body)).expect("a request");

    let (runtime, router) = app();
    let (status, headers, body) = runtime.block_on(async {
        let response = router.clone().oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .expect("a body that ends");
        (parts.status, parts.headers, body)
    });

    let path = uri.path();
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{method} {uri}");
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!((&method, path), (&Method::POST, "/v1/refunds"));
        assert!(headers.contains_key(header::RETRY_AFTER));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if status.is_client_error() || status.is_server_error() {
        assert!(
            content_type.starts_with("application/json"),
            "{status} as {content_type:?}"
        );
        let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
        assert!(json["error"]["code"].is_string(), "{json}");
        assert!(json["error"]["message"].is_string(), "{json}");
    }
    if status.is_success() {
        let open = path == "/healthz" || path.starts_with("/v1/webhooks/");
        if !open {
            let token = authorization.unwrap_or_default();
            let has = |t: &str| token.windows(t.len()).any(|w| w == t.as_bytes());
            assert!(
                has(REFUNDS_TOKEN) || has(ADMIN_TOKEN),
                "{status} for {method} {uri} without a token"
            );
        }
        if content_type.starts_with("application/json") {
            serde_json::from_slice::<serde_json::Value>(&body).expect("a JSON body");
        }
    }
});
