//! Test helpers: a signing client for the sandbox, a tiny webhook receiver, and polling.
//!
//! The request signer here is written from the spec again (not imported from the crate), so a
//! mistake in the sandbox's signer cannot hide behind the same mistake in the tests.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use chrono::{SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use refundry_sandbox::SandboxHandle;
use refundry_sandbox::mfs_africa::{self, Config};
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const API_KEY: &str = "pk_test_key";
pub const API_SECRET: &str = "sk_test_secret";
pub const WEBHOOK_SECRET: &str = "whsec_test";

/// `hex(HMAC-SHA256(secret, METHOD\nTARGET\nTIMESTAMP\nhex(sha256(body))))`.
pub fn sign(secret: &str, method: &str, target: &str, timestamp: &str, body: &[u8]) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{method}\n{target}\n{timestamp}\n{body_hash}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `hex(HMAC-SHA256(secret, timestamp + "." + body))`.
pub fn sign_webhook(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub fn now_timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An answer from the sandbox.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// `error.code` of an API error body, after checking the body's shape.
    pub fn code(&self) -> &str {
        let object = self.body.as_object().expect("error body is an object");
        assert_eq!(
            object.len(),
            2,
            "error body has error and trace_id only: {}",
            self.body
        );
        let trace = object["trace_id"].as_str().expect("trace_id");
        assert!(trace.starts_with("tr_"), "{trace}");
        let error = object["error"].as_object().expect("error object");
        assert_eq!(error.len(), 2, "error has code and message only");
        assert!(error["message"].is_string());
        error["code"].as_str().expect("code")
    }
}

/// A running sandbox with a signing client.
pub struct Sandbox {
    pub handle: SandboxHandle,
    pub base: String,
    pub http: reqwest::Client,
}

pub async fn start() -> Sandbox {
    let mut config = Config::new(API_KEY, API_SECRET, WEBHOOK_SECRET);
    config.webhook_retry_base = Duration::from_millis(20);
    start_with(config).await
}

pub async fn start_with(config: Config) -> Sandbox {
    let handle = mfs_africa::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("sandbox starts");
    let base = handle.base_url();
    Sandbox {
        handle,
        base,
        http: reqwest::Client::new(),
    }
}

impl Sandbox {
    /// A correctly signed API request.
    pub async fn api(&self, method: Method, target: &str, body: Option<&str>) -> Answer {
        self.api_with_headers(method, target, body, &[]).await
    }

    /// A correctly signed API request that also carries `extra` headers (signing covers none).
    pub async fn api_with_headers(
        &self,
        method: Method,
        target: &str,
        body: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let timestamp = now_timestamp();
        let mut request =
            self.signed_request(method, target, body, API_KEY, API_SECRET, &timestamp);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        answer(request.send().await.expect("request sent")).await
    }

    /// An API request with the given credentials and timestamp.
    pub async fn api_as(
        &self,
        method: Method,
        target: &str,
        body: Option<&str>,
        key: &str,
        secret: &str,
        timestamp: &str,
    ) -> Answer {
        let request = self.signed_request(method, target, body, key, secret, timestamp);
        answer(request.send().await.expect("request sent")).await
    }

    fn signed_request(
        &self,
        method: Method,
        target: &str,
        body: Option<&str>,
        key: &str,
        secret: &str,
        timestamp: &str,
    ) -> reqwest::RequestBuilder {
        let body = body.unwrap_or("").as_bytes().to_vec();
        let signature = sign(secret, method.as_str(), target, timestamp, &body);
        let mut request = self
            .http
            .request(method, format!("{}{target}", self.base))
            .header("X-Api-Key", key)
            .header("X-Timestamp", timestamp)
            .header("X-Signature", signature);
        if !body.is_empty() {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        request
    }

    pub async fn create(&self, body: &str) -> Answer {
        self.api(Method::POST, "/v1/refunds", Some(body)).await
    }

    /// A control request.
    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        answer(request.send().await.expect("control request sent")).await
    }

    pub async fn seed(&self, body: Value) {
        let answer = self
            .control(Method::POST, "/_sandbox/transactions", Some(body))
            .await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
    }

    /// Seeds `txn_1`: 5000.00 KES, settled, completed an hour ago.
    pub async fn seed_default(&self) {
        let completed =
            (Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
        self.seed(serde_json::json!({
            "transaction_id": "txn_1", "amount": "5000.00", "currency": "KES",
            "completed_at": completed, "settled": true
        }))
        .await;
    }

    pub async fn fault(&self, body: Value) {
        let answer = self
            .control(Method::POST, "/_sandbox/faults", Some(body))
            .await;
        assert!(
            answer.status == 200 || answer.status == 201,
            "{:?}",
            answer.body
        );
    }

    pub async fn set_status(&self, refund_id: &str, body: Value) -> Answer {
        self.control(
            Method::POST,
            &format!("/_sandbox/refunds/{refund_id}/status"),
            Some(body),
        )
        .await
    }

    pub async fn stats(&self) -> Value {
        self.control(Method::GET, "/_sandbox/stats", None)
            .await
            .body
    }

    pub async fn deliveries(&self) -> Vec<Value> {
        let answer = self
            .control(Method::GET, "/_sandbox/webhooks/deliveries", None)
            .await;
        answer.body.as_array().expect("deliveries array").clone()
    }

    pub async fn set_callback(&self, url: &str) {
        let answer = self
            .control(
                Method::POST,
                "/_sandbox/webhooks/config",
                Some(serde_json::json!({ "callback_url": url })),
            )
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body read");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// A body for `POST /v1/refunds` against `txn_1`.
pub fn create_body(external_id: &str, amount: &str) -> String {
    serde_json::json!({
        "original_transaction_id": "txn_1", "refund_amount": amount, "currency": "KES",
        "reason": "customer_return", "external_refund_id": external_id
    })
    .to_string()
}

/// One webhook request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("header {name} present"))
            .to_str()
            .expect("ASCII header")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }
}

/// A webhook receiver that records every request and answers 500 to the first `fail_first`.
pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

pub async fn receiver(fail_first: u32) -> Receiver {
    let received = Arc::new(Mutex::new(Vec::new()));
    let failures_left = Arc::new(AtomicU32::new(fail_first));
    let record = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let record = Arc::clone(&record);
            let failures_left = Arc::clone(&failures_left);
            async move {
                record.lock().unwrap().push(Received { headers, body });
                let fail = failures_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if fail {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url: format!("http://{addr}/hooks"),
        received,
    }
}

/// Polls `check` every 10 ms until it gives a value, failing the test after 10 s.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks a received webhook's signature and timestamp as a merchant would.
pub fn assert_signed(received: &Received) {
    let timestamp = received.header("x-mfs-timestamp");
    let signature = received.header("x-mfs-signature");
    assert_eq!(
        signature,
        sign_webhook(WEBHOOK_SECRET, timestamp, &received.body),
        "webhook signature"
    );
    let at = chrono::DateTime::parse_from_rfc3339(timestamp).expect("RFC 3339 timestamp");
    assert!(timestamp.ends_with('Z'));
    assert!((Utc::now() - at.to_utc()).num_seconds().abs() < 300);
    assert_eq!(received.header("content-type"), "application/json");
    assert_eq!(
        received.header("x-mfs-event-id"),
        received.json()["event_id"].as_str().unwrap()
    );
}
