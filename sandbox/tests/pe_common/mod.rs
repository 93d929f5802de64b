//! Test helpers for the PagoEfectivo simulator: an authorizing, signing client.
//!
//! The hash, canonical string and signatures here are written from the spec again (not imported
//! from the crate), so a mistake in the sandbox cannot hide behind the same mistake in the tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use chrono::{DateTime, FixedOffset, Utc};
use hmac::{Hmac, Mac};
use refundry_sandbox::SandboxHandle;
use refundry_sandbox::pagoefectivo::{self, Config};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::Received;

pub const ID_SERVICE: u64 = 1024;
pub const ACCESS_KEY: &str = "AK1";
pub const SECRET_KEY: &str = "sk_test_secret";

/// The keys of the refund object, in the spec's order.
pub const REFUND_KEYS: [&str; 10] = [
    "refundId",
    "referenceId",
    "transactionId",
    "transactionCode",
    "refundAmount",
    "currency",
    "status",
    "statusReason",
    "dateCreation",
    "dateUpdate",
];

/// `at` as the spec writes dates: `YYYY-MM-DDTHH:MM:SS-05:00`.
pub fn lima(at: DateTime<Utc>) -> String {
    let offset = FixedOffset::west_opt(5 * 3600).unwrap();
    at.with_timezone(&offset)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

pub fn lima_now() -> String {
    lima(Utc::now())
}

/// Parses a spec date after checking its exact shape.
pub fn parse_lima(text: &str) -> DateTime<Utc> {
    assert_eq!(text.len(), 25, "{text}");
    assert!(text.ends_with("-05:00"), "{text}");
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// `hex(sha256(idService.accessKey.secretKey.dateRequest))`.
pub fn hash_string(id_service: u64, access_key: &str, secret_key: &str, date: &str) -> String {
    hex::encode(Sha256::digest(
        [
            id_service.to_string().as_str(),
            access_key,
            secret_key,
            date,
        ]
        .join(".")
        .as_bytes(),
    ))
}

/// The spec's canonical string: the body's top-level string fields sorted by key (bytewise),
/// `key=value` joined with `&`, nulls left out; the target for an empty body.
pub fn canonical(target: &str, body: &str) -> String {
    if body.is_empty() {
        return target.to_owned();
    }
    let value: Value = serde_json::from_str(body).expect("test bodies are JSON");
    // BTreeMap<Vec<u8>, _> sorts bytewise by construction.
    let sorted: BTreeMap<Vec<u8>, String> = value
        .as_object()
        .expect("test bodies are objects")
        .iter()
        .filter_map(|(key, value)| match value {
            Value::Null => None,
            Value::String(text) => Some((key.clone().into_bytes(), format!("{key}={text}"))),
            other => Some((key.clone().into_bytes(), format!("{key}={other}"))),
        })
        .collect();
    sorted.into_values().collect::<Vec<_>>().join("&")
}

/// `hex(HMAC-SHA256(secret, message))`.
pub fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// The `PE-Signature` of a request.
pub fn sign(target: &str, body: &str) -> String {
    hmac_hex(SECRET_KEY, canonical(target, body).as_bytes())
}

/// A correct authorization body for `date`.
pub fn authorization_body(date: &str) -> Value {
    json!({"accessKey": ACCESS_KEY, "idService": ID_SERVICE, "dateRequest": date,
           "hashString": hash_string(ID_SERVICE, ACCESS_KEY, SECRET_KEY, date)})
}

/// An answer from the sandbox.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub raw: Bytes,
    pub body: Value,
}

impl Answer {
    /// `code` of an error body, after checking the body's shape.
    pub fn code(&self) -> &str {
        let object = self.body.as_object().expect("error body is an object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "data", "message"], "{}", self.body);
        assert!(object["message"].is_string());
        for entry in object["data"].as_array().expect("data is an array") {
            let entry = entry.as_object().expect("data entries are objects");
            assert_eq!(entry.len(), 2, "{entry:?}");
            assert!(entry["field"].is_string() && entry["message"].is_string());
        }
        let code = object["code"].as_str().expect("code is a string");
        assert!(
            code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()),
            "{code}"
        );
        code
    }

    /// The `field`s named in an error body's `data`.
    pub fn fields(&self) -> Vec<&str> {
        self.body["data"]
            .as_array()
            .expect("data array")
            .iter()
            .map(|entry| entry["field"].as_str().unwrap())
            .collect()
    }

    /// The success envelope's `data`, after checking `code` (and `message` when `with_message`).
    pub fn data(&self, with_message: bool) -> &Value {
        let object = self.body.as_object().expect("body is an object");
        assert_eq!(object["code"], "100", "{}", self.body);
        if with_message {
            assert_eq!(object.len(), 3, "{}", self.body);
            assert_eq!(object["message"], "Solicitud exitosa.");
        } else {
            assert_eq!(object.len(), 2, "{}", self.body);
        }
        &object["data"]
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.raw).expect("UTF-8 body")
    }
}

/// A running sandbox with a client that authorizes once and signs every call.
pub struct Pe {
    pub handle: SandboxHandle,
    pub base: String,
    pub http: reqwest::Client,
    token: Mutex<Option<String>>,
}

pub fn config() -> Config {
    let mut config = Config::new(ID_SERVICE, ACCESS_KEY, SECRET_KEY);
    config.webhook_retry_base = Duration::from_millis(20);
    config
}

pub async fn start() -> Pe {
    start_with(config()).await
}

pub async fn start_with(config: Config) -> Pe {
    let handle = pagoefectivo::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("sandbox starts");
    let base = handle.base_url();
    Pe {
        handle,
        base,
        http: reqwest::Client::new(),
        token: Mutex::new(None),
    }
}

impl Pe {
    /// `POST /v1/authorizations` with this body.
    pub async fn authorize_with(&self, body: Value) -> Answer {
        let request = self
            .http
            .post(format!("{}/v1/authorizations", self.base))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        answer(request.send().await.expect("request sent")).await
    }

    /// Authorizes with the right credentials and the current time; the token is cached.
    pub async fn authorize(&self) -> String {
        let answer = self.authorize_with(authorization_body(&lima_now())).await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
        let token = answer.data(true)["token"].as_str().unwrap().to_owned();
        *self.token.lock().unwrap() = Some(token.clone());
        token
    }

    /// The cached token, authorizing first if there is none.
    pub async fn token(&self) -> String {
        let cached = self.token.lock().unwrap().clone();
        match cached {
            Some(token) => token,
            None => self.authorize().await,
        }
    }

    /// A correctly authorized and signed API request.
    pub async fn api(&self, method: Method, target: &str, body: Option<&str>) -> Answer {
        let token = self.token().await;
        let signature = sign(target, body.unwrap_or(""));
        self.api_raw(
            method,
            target,
            body,
            Some(&format!("Bearer {token}")),
            Some(&signature),
        )
        .await
    }

    /// An API request with exactly these `Authorization` and `PE-Signature` headers.
    pub async fn api_raw(
        &self,
        method: Method,
        target: &str,
        body: Option<&str>,
        authorization: Option<&str>,
        signature: Option<&str>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{target}", self.base));
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        if let Some(signature) = signature {
            request = request.header("PE-Signature", signature);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_owned());
        }
        answer(request.send().await.expect("request sent")).await
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

    pub async fn seed(&self, body: Value) -> Answer {
        let answer = self
            .control(Method::POST, "/_sandbox/payments", Some(body))
            .await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
        answer
    }

    /// Seeds `81234567`: 500.00 PEN, paid an hour ago.
    pub async fn seed_default(&self) {
        let paid_at = lima(Utc::now() - chrono::TimeDelta::hours(1));
        self.seed(
            json!({"transaction_id": "81234567", "amount": "500.00", "currency": "PEN",
                         "paid_at": paid_at}),
        )
        .await;
    }

    pub async fn fault(&self, body: Value) {
        let answer = self
            .control(Method::POST, "/_sandbox/faults", Some(body))
            .await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
    }

    pub async fn set_status(&self, reference_id: &str, body: Value) -> Answer {
        self.control(
            Method::POST,
            &format!("/_sandbox/refunds/{reference_id}/status"),
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
                Some(json!({ "callback_url": url })),
            )
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let raw = response.bytes().await.expect("body read");
    let body = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()))
    };
    Answer {
        status,
        headers,
        raw,
        body,
    }
}

/// A create body against `81234567` in PEN.
pub fn create_body(refund_id: &str, amount: &str) -> String {
    json!({"transactionId": "81234567", "refundAmount": amount, "currency": "PEN",
           "transactionCode": "ORDER-991", "refundId": refund_id, "reason": "producto devuelto"})
    .to_string()
}

/// Checks that `raw` (a JSON text) names the refund object's keys in the spec's order.
pub fn assert_refund_key_order(raw: &str) {
    let positions: Vec<usize> = REFUND_KEYS
        .iter()
        .map(|key| {
            raw.find(&format!("\"{key}\":"))
                .unwrap_or_else(|| panic!("{key} missing in {raw}"))
        })
        .collect();
    assert!(positions.is_sorted(), "keys out of order: {raw}");
}

/// Checks a refund object's keys and formats.
pub fn assert_refund_shape(refund: &Value) {
    let object = refund.as_object().expect("refund object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = REFUND_KEYS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    let reference = object["referenceId"].as_str().unwrap();
    let digits = reference.strip_prefix("PE-RF-").expect("PE-RF- prefix");
    assert!(
        digits.len() >= 6 && digits.bytes().all(|b| b.is_ascii_digit()),
        "{reference}"
    );
    parse_lima(object["dateCreation"].as_str().unwrap());
    parse_lima(object["dateUpdate"].as_str().unwrap());
}

/// Checks a notification's signature as a merchant would: over the raw bytes.
pub fn assert_notification_signed(received: &Received) {
    assert_eq!(
        received.header("pe-signature"),
        hmac_hex(SECRET_KEY, &received.body),
        "notification signature"
    );
    assert_eq!(received.header("content-type"), "application/json");
}
