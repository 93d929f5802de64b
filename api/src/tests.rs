//! The router against a service double: auth, error shapes, limits, and how each service answer
//! becomes an HTTP answer. (The service itself is tested end to end in `tests/`.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use refundry_ledger::testing::record;
use refundry_ledger::{Failure, Outcome, RefundRecord, Status};
use refundry_runtime::bindings::types::{WebhookError, WebhookRequest};
use refundry_runtime::error::LoadError;
use refundry_runtime::secret::Secret;
use refundry_service::config::{ConnectionLimits, Scope};
use refundry_service::refunds::{AcceptedEvent, EventResult};

const REFUNDS_TOKEN: &str = "refunds-token-0123456789";
const ADMIN_TOKEN: &str = "admin-token-0123456789";
const BOTH_TOKEN: &str = "both-token-0123456789";

type CreateAnswer = dyn Fn(NewRefund) -> Result<Created, CreateError> + Send + Sync;
type WebhookAnswer = dyn Fn(&str, &[(String, String)], &[u8]) -> Result<WebhookAccepted, WebhookIntakeError>
    + Send
    + Sync;

/// A service double: canned answers, a fixed set of refunds, and a count of calls.
#[derive(Clone)]
struct Fake {
    create: Arc<CreateAnswer>,
    webhook: Arc<WebhookAnswer>,
    refunds: Arc<Vec<RefundRecord>>,
    calls: Arc<AtomicUsize>,
    list_queries: Arc<Mutex<Vec<ListQuery>>>,
    webhook_requests: Arc<Mutex<Option<WebhookRequest>>>,
}

/// A delivery of one event, `evt_1`, with this result.
fn one(result: EventResult) -> WebhookAccepted {
    WebhookAccepted::Events(vec![AcceptedEvent {
        event_id: "evt_1".into(),
        result,
    }])
}

impl Default for Fake {
    fn default() -> Self {
        Self {
            create: Arc::new(|req| {
                let mut refund = record(1);
                refund.amount = req.amount;
                refund.status = Status::Pending;
                refund.failure = None;
                Ok(Created {
                    refund,
                    outcome: Outcome::Created,
                    replayed: false,
                    not_sent: None,
                })
            }),
            webhook: Arc::new(|_, _, _| Ok(one(EventResult::Duplicate))),
            refunds: Arc::new((0..7).map(record).collect()),
            calls: Arc::default(),
            list_queries: Arc::default(),
            webhook_requests: Arc::default(),
        }
    }
}

impl RefundApi for Fake {
    async fn create(&self, req: NewRefund) -> Result<Created, CreateError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        (self.create)(req)
    }

    async fn get(&self, id: &str) -> Result<Option<RefundDetail>, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .refunds
            .iter()
            .find(|r| r.id == id)
            .map(|r| RefundDetail {
                refund: r.clone(),
                history: vec![],
            }))
    }

    async fn exchanges(&self, _refund_id: &str) -> Result<Vec<ExchangeRecord>, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(vec![])
    }

    async fn events(&self, query: EventQuery) -> Result<EventPage, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert!(query.limit >= 1);
        Ok(EventPage {
            events: vec![],
            next_cursor: None,
        })
    }

    async fn list(&self, query: ListQuery) -> Result<Page, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.list_queries.lock().unwrap().push(query.clone());
        let start = query
            .cursor
            .map(|c| self.refunds.iter().position(|r| r.id == c).unwrap() + 1)
            .unwrap_or(0);
        // Pages of at most 3, whatever the limit, so that a CSV export has pages to walk.
        let refunds: Vec<_> = self
            .refunds
            .iter()
            .skip(start)
            .take(query.limit.min(3))
            .cloned()
            .collect();
        let next_cursor = (start + refunds.len() < self.refunds.len())
            .then(|| refunds.last().unwrap().id.clone());
        Ok(Page {
            refunds,
            next_cursor,
        })
    }

    async fn webhook(
        &self,
        provider: &str,
        req: WebhookRequest,
    ) -> Result<WebhookAccepted, WebhookIntakeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self.webhook_requests.lock().unwrap() = Some(req.clone());
        (self.webhook)(provider, &req.headers, &req.body)
    }

    fn providers(&self) -> Vec<ProviderHealth> {
        vec![ProviderHealth {
            id: "mfs-africa".into(),
            version: "0.1.0".into(),
            sha256: "ab".repeat(32),
        }]
    }

    fn plugins(&self) -> Vec<ProviderVersions> {
        vec![]
    }

    async fn load_plugin(
        &self,
        provider: &str,
        component: Vec<u8>,
    ) -> Result<Loaded, RegistryError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if provider != "mfs-africa" {
            return Err(RegistryError::UnknownProvider(provider.into()));
        }
        Err(RegistryError::Rejected(LoadError::NotAComponent(format!(
            "{} bytes of junk",
            component.len()
        ))))
    }

    async fn activate_plugin(
        &self,
        provider: &str,
        version: &str,
    ) -> Result<Activated, RegistryError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(RegistryError::UnknownVersion {
            provider: provider.into(),
            version: version.into(),
        })
    }

    async fn remove_plugin(&self, provider: &str, version: &str) -> Result<(), RegistryError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(RegistryError::Active {
            provider: provider.into(),
            version: version.into(),
        })
    }
}

fn tokens() -> Vec<ApiToken> {
    let token = |name: &str, value: &str, scopes: Vec<Scope>| ApiToken {
        name: name.into(),
        token: Secret::new(value),
        scopes,
    };
    vec![
        token("gateway", REFUNDS_TOKEN, vec![Scope::Refunds]),
        token("ops", ADMIN_TOKEN, vec![Scope::Admin]),
        token("both", BOTH_TOKEN, vec![Scope::Refunds, Scope::Admin]),
    ]
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts the API's error shape and returns `error`.
    fn error(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{status}"
        );
        let body = self.json();
        let error = body["error"].clone();
        assert_eq!(error["code"], code, "{body}");
        assert!(error["message"].is_string(), "{body}");
        for key in ["provider_code", "field"] {
            assert!(error.get(key).is_some(), "{key} missing from {body}");
        }
        error
    }
}

async fn call(fake: &Fake, req: Request<Body>) -> Answer {
    let response = router(fake.clone(), &tokens()).oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn request(method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

fn new_refund() -> Value {
    json!({
        "provider": "mfs-africa", "external_refund_id": "ext-1",
        "original_transaction_id": "tx-1", "amount": 1500, "currency": "KES"
    })
}

#[tokio::test]
async fn tokens_and_scopes() {
    let fake = Fake::default();
    let a = call(
        &fake,
        request("POST", "/v1/refunds", None, Some(new_refund())),
    )
    .await;
    a.error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(a.header("www-authenticate").unwrap().starts_with("Bearer"));

    let a = call(
        &fake,
        request("GET", "/v1/refunds", Some("not-a-token-at-all"), None),
    )
    .await;
    a.error(StatusCode::UNAUTHORIZED, "unauthorized");

    let a = call(
        &fake,
        request("GET", "/v1/refunds", Some(ADMIN_TOKEN), None),
    )
    .await;
    a.error(StatusCode::FORBIDDEN, "forbidden");
    let a = call(
        &fake,
        request(
            "GET",
            "/v1/refunds/rf_0001/exchanges",
            Some(REFUNDS_TOKEN),
            None,
        ),
    )
    .await;
    a.error(StatusCode::FORBIDDEN, "forbidden");
    // Nothing reached the service.
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0);

    let a = call(
        &fake,
        request(
            "GET",
            "/v1/refunds/rf_0001/exchanges",
            Some(ADMIN_TOKEN),
            None,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!([]));
    let a = call(
        &fake,
        request(
            "GET",
            "/v1/refunds/rf_9999/exchanges",
            Some(BOTH_TOKEN),
            None,
        ),
    )
    .await;
    a.error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn events_need_the_refunds_scope_and_a_good_query() {
    let fake = Fake::default();
    let get = |token, path| request("GET", path, token, None);
    call(&fake, get(None, "/v1/events"))
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    call(&fake, get(Some(ADMIN_TOKEN), "/v1/events"))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    call(&fake, get(Some(REFUNDS_TOKEN), "/v1/events?limit=0"))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_request");
    // A cursor is the digits `next_cursor` gave, as the document's pattern says: a sign, which
    // a bare integer parse would take, is refused.
    for cursor in ["-1", "%2B1", "x"] {
        let uri = format!("/v1/events?cursor={cursor}");
        let e = call(&fake, request("GET", &uri, Some(REFUNDS_TOKEN), None))
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(e["field"], "cursor", "{cursor}");
    }
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
    let a = call(&fake, get(Some(REFUNDS_TOKEN), "/v1/events?cursor=42")).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = call(
        &fake,
        get(Some(REFUNDS_TOKEN), "/v1/events?refund_id=rf_0001"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({"events": [], "next_cursor": null}));
}

#[tokio::test]
async fn bodies_over_64_kib_are_413_everywhere() {
    let fake = Fake::default();
    let big = "x".repeat(BODY_LIMIT + 1);
    let mut refund = new_refund();
    refund["reason"] = json!(big);
    let a = call(
        &fake,
        request("POST", "/v1/refunds", Some(REFUNDS_TOKEN), Some(refund)),
    )
    .await;
    a.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let req = Request::post("/v1/webhooks/mfs-africa")
        .body(Body::from(big.clone()))
        .unwrap();
    call(&fake, req)
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    assert_eq!(fake.calls.load(Ordering::SeqCst), 0);

    // Exactly the limit is fine.
    let req = Request::post("/v1/webhooks/mfs-africa")
        .body(Body::from("y".repeat(BODY_LIMIT)))
        .unwrap();
    assert_eq!(call(&fake, req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_json_names_the_field() {
    let fake = Fake::default();
    let mut body = new_refund();
    body.as_object_mut().unwrap().remove("amount");
    let a = call(
        &fake,
        request("POST", "/v1/refunds", Some(REFUNDS_TOKEN), Some(body)),
    )
    .await;
    let e = a.error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(e["message"], "missing field `amount`");
    assert_eq!(e["field"], "amount");

    let mut body = new_refund();
    body["amount"] = json!("15.00");
    let a = call(
        &fake,
        request("POST", "/v1/refunds", Some(REFUNDS_TOKEN), Some(body)),
    )
    .await;
    let e = a.error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(e["field"], "amount");

    let req = Request::post("/v1/refunds")
        .header(header::AUTHORIZATION, format!("Bearer {REFUNDS_TOKEN}"))
        .body(Body::from("{\"provider\": "))
        .unwrap();
    call(&fake, req)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_request");

    assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unknown_routes_and_methods_have_the_error_shape() {
    let fake = Fake::default();
    call(
        &fake,
        request("GET", "/v1/nothing", Some(REFUNDS_TOKEN), None),
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");
    let a = call(
        &fake,
        request("DELETE", "/v1/refunds", Some(REFUNDS_TOKEN), None),
    )
    .await;
    a.error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert!(a.header("allow").unwrap().contains("POST"));
    call(&fake, request("GET", "/v1/webhooks/mfs-africa", None, None))
        .await
        .error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

fn failed(outcome: Outcome, code: &str) -> Created {
    let mut refund = record(2);
    refund.status = Status::Failed;
    refund.failure = Some(Failure {
        code: code.into(),
        message: "no".into(),
        provider_code: Some("E1".into()),
    });
    Created {
        refund,
        outcome,
        replayed: false,
        not_sent: None,
    }
}

#[tokio::test]
async fn create_answers_by_outcome() {
    let post = |fake: Fake| async move {
        call(
            &fake,
            request(
                "POST",
                "/v1/refunds",
                Some(REFUNDS_TOKEN),
                Some(new_refund()),
            ),
        )
        .await
    };

    let a = post(Fake::default()).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json()["id"], "rf_0001");
    assert_eq!(a.json()["amount"], 1500);
    assert_eq!(a.json()["status"], "pending");
    assert_eq!(a.header("location"), Some("/v1/refunds/rf_0001"));
    assert_eq!(a.header("idempotent-replayed"), None);

    for (outcome, status) in [
        (Outcome::Refused, StatusCode::UNPROCESSABLE_ENTITY),
        (Outcome::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
        (Outcome::PluginFailed, StatusCode::INTERNAL_SERVER_ERROR),
    ] {
        let fake = Fake {
            create: Arc::new(move |_| {
                let mut c = failed(outcome, "amount_exceeded");
                c.replayed = true;
                Ok(c)
            }),
            ..Fake::default()
        };
        let a = post(fake).await;
        let e = a.error(status, "amount_exceeded");
        assert_eq!(e["provider_code"], "E1");
        assert_eq!(e["field"], Value::Null);
        assert_eq!(a.json()["refund"]["id"], "rf_0002");
        assert_eq!(a.json()["refund"]["status"], "failed");
        assert_eq!(a.header("idempotent-replayed"), Some("true"));
    }

    let fake = Fake {
        create: Arc::new(|_| {
            let mut c = failed(Outcome::Unknown, "x");
            c.refund.status = Status::Unknown;
            c.refund.failure = None;
            Ok(c)
        }),
        ..Fake::default()
    };
    let a = post(fake).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.json()["status"], "unknown");
    assert_eq!(a.header("retry-after"), None);

    // Nothing reached the provider: 503, the reason apart from the refund (which stays
    // `unknown`, nothing final recorded), and when to send it again, in whole seconds.
    let fake = Fake {
        create: Arc::new(|_| {
            let mut c = failed(Outcome::Unavailable, "x");
            c.refund.status = Status::Unknown;
            c.refund.failure = None;
            c.not_sent = Some(refundry_service::refunds::NotSent {
                failure: Failure {
                    code: "plugin_error".into(),
                    message: "instance pool full".into(),
                    provider_code: None,
                },
                retry_after: std::time::Duration::from_millis(1_500),
            });
            Ok(c)
        }),
        ..Fake::default()
    };
    let a = post(fake).await;
    let e = a.error(StatusCode::SERVICE_UNAVAILABLE, "plugin_error");
    assert_eq!(e["message"], "instance pool full");
    assert_eq!(a.json()["refund"]["status"], "unknown");
    assert_eq!(a.header("retry-after"), Some("2"));

    type Case = (
        fn() -> CreateError,
        StatusCode,
        &'static str,
        Option<&'static str>,
    );
    let errors: [Case; 4] = [
        (
            || CreateError::UnknownProvider("nope".into()),
            StatusCode::NOT_FOUND,
            "unknown_provider",
            Some("provider"),
        ),
        (
            || CreateError::Invalid {
                field: "currency".into(),
                message: "not ISO 4217".into(),
            },
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("currency"),
        ),
        (
            || CreateError::IdempotencyConflict {
                refund_id: "rf_1".into(),
            },
            StatusCode::CONFLICT,
            "idempotency_conflict",
            Some("external_refund_id"),
        ),
        (
            || CreateError::Internal("disk I/O error in /var/lib/x".into()),
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
        ),
    ];
    for (make, status, code, field) in errors {
        let fake = Fake {
            create: Arc::new(move |_| Err(make())),
            ..Fake::default()
        };
        let a = post(fake).await;
        let e = a.error(status, code);
        assert_eq!(e["field"].as_str(), field);
        assert!(!e["message"].as_str().unwrap().contains("/var/lib"));
    }
}

#[tokio::test]
async fn get_and_list() {
    let fake = Fake::default();
    let a = call(
        &fake,
        request("GET", "/v1/refunds/rf_0003", Some(REFUNDS_TOKEN), None),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["id"], "rf_0003");
    assert_eq!(a.json()["history"], json!([]));
    call(
        &fake,
        request("GET", "/v1/refunds/rf_9", Some(REFUNDS_TOKEN), None),
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");

    let a = call(
        &fake,
        request(
            "GET",
            "/v1/refunds?provider=mfs-africa&status=failed&limit=2",
            Some(REFUNDS_TOKEN),
            None,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let page = a.json();
    assert_eq!(page["refunds"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_cursor"], "rf_0001");
    let q = fake.list_queries.lock().unwrap().pop().unwrap();
    assert_eq!(q.provider.as_deref(), Some("mfs-africa"));
    assert_eq!(q.status, Some(Status::Failed));
    assert_eq!(q.limit, 2);

    let e = call(
        &fake,
        request("GET", "/v1/refunds?status=done", Some(REFUNDS_TOKEN), None),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(e["field"], "status");
}

#[tokio::test]
async fn csv_export_walks_every_page_unless_limited() {
    let fake = Fake::default();
    let a = call(
        &fake,
        request("GET", "/v1/refunds?format=csv", Some(REFUNDS_TOKEN), None),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = String::from_utf8(a.body.clone()).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        refundry_service::export::CSV_COLUMNS
    );
    let ids: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
    assert_eq!(
        ids,
        (0..7).map(|n| format!("rf_{n:04}")).collect::<Vec<_>>()
    );
    // Three pages of three, the fake's most.
    assert_eq!(fake.list_queries.lock().unwrap().len(), 3);

    let a = call(
        &fake,
        request(
            "GET",
            "/v1/refunds?format=csv&limit=2",
            Some(REFUNDS_TOKEN),
            None,
        ),
    )
    .await;
    let text = String::from_utf8(a.body).unwrap();
    assert_eq!(text.lines().count(), 3);
}

#[tokio::test]
async fn webhooks_need_no_token_and_map_rejections() {
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let fake = Fake {
        webhook: Arc::new(move |provider, headers, body| {
            *seen2.lock().unwrap() = Some((provider.to_owned(), headers.to_vec(), body.to_vec()));
            match body {
                b"applied" => Ok(one(EventResult::Applied {
                    refund_id: "rf_1".into(),
                    status: Status::Processed,
                })),
                b"recorded" => Ok(one(EventResult::Recorded {
                    refund_id: "rf_1".into(),
                })),
                b"unmatched" => Ok(one(EventResult::Unmatched)),
                b"batch" => Ok(WebhookAccepted::Events(vec![
                    AcceptedEvent {
                        event_id: "evt_1".into(),
                        result: EventResult::Applied {
                            refund_id: "rf_1".into(),
                            status: Status::Processed,
                        },
                    },
                    AcceptedEvent {
                        event_id: "evt_2".into(),
                        result: EventResult::Duplicate,
                    },
                ])),
                b"ignored" => Ok(WebhookAccepted::Ignored {
                    reason: "event type `refund.created` is not handled".into(),
                }),
                b"malformed" => Err(WebhookIntakeError::Rejected(WebhookError::Malformed(
                    "no event id".into(),
                ))),
                b"forged" => Err(WebhookIntakeError::Rejected(WebhookError::InvalidSignature)),
                b"stale" => Err(WebhookIntakeError::Rejected(WebhookError::StaleTimestamp(
                    900,
                ))),
                b"unsigned" => Err(WebhookIntakeError::Rejected(WebhookError::MissingHeader(
                    "X-Signature".into(),
                ))),
                b"nobody" => Err(WebhookIntakeError::UnknownProvider(provider.into())),
                _ => Err(WebhookIntakeError::Internal("db".into())),
            }
        }),
        ..Fake::default()
    };
    let post = |body: &'static str| {
        Request::post("/v1/webhooks/mfs-africa")
            .header("X-Signature", "t=1,v1=abc")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };

    let a = call(&fake, post("applied")).await;
    assert_eq!(a.status, StatusCode::OK);
    let event = |status: &str, refund_id: Option<&str>| json!({"event_id": "evt_1", "status": status, "refund_id": refund_id});
    assert_eq!(
        a.json(),
        json!({"status": "applied", "refund_id": "rf_1", "events": [event("applied", Some("rf_1"))]})
    );
    let (provider, headers, body) = seen.lock().unwrap().take().unwrap();
    assert_eq!(provider, "mfs-africa");
    assert!(headers.contains(&("x-signature".into(), "t=1,v1=abc".into())));
    assert_eq!(body, b"applied");

    let a = call(&fake, post("recorded")).await;
    assert_eq!(
        a.json(),
        json!({"status": "recorded", "refund_id": "rf_1", "events": [event("recorded", Some("rf_1"))]})
    );
    let a = call(&fake, post("unmatched")).await;
    assert_eq!(
        a.json(),
        json!({"status": "unmatched", "refund_id": null, "events": [event("unmatched", None)]})
    );
    let a = call(&fake, post("batch")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json(),
        json!({"status": "accepted", "refund_id": null, "events": [
            event("applied", Some("rf_1")),
            {"event_id": "evt_2", "status": "duplicate", "refund_id": null},
        ]})
    );
    // A genuine delivery the plugin does not handle is a 200, so the provider stops retrying.
    let a = call(&fake, post("ignored")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json(),
        json!({"status": "ignored", "refund_id": null, "events": [],
               "reason": "event type `refund.created` is not handled"})
    );
    let a = call(&fake, post("dup")).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);

    for (body, status, code) in [
        ("malformed", StatusCode::BAD_REQUEST, "malformed_webhook"),
        ("forged", StatusCode::UNAUTHORIZED, "invalid_signature"),
        ("stale", StatusCode::UNAUTHORIZED, "stale_timestamp"),
        ("unsigned", StatusCode::UNAUTHORIZED, "missing_header"),
        ("nobody", StatusCode::NOT_FOUND, "unknown_provider"),
    ] {
        let a = call(&fake, post(body)).await;
        a.error(status, code);
        // Not a bearer route: no challenge.
        assert_eq!(a.header("www-authenticate"), None);
    }
}

#[tokio::test]
async fn webhooks_reach_the_plugin_with_their_method_path_and_query() {
    let fake = Fake::default();
    let req = Request::post("/v1/webhooks/pagoefectivo?attempt=2&x=a%20b")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(call(&fake, req).await.status, StatusCode::OK);
    let seen = fake.webhook_requests.lock().unwrap().take().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/webhooks/pagoefectivo");
    assert_eq!(seen.query.as_deref(), Some("attempt=2&x=a%20b"));
    assert_eq!(seen.body, b"{}");

    let req = Request::post("/v1/webhooks/pagoefectivo")
        .body(Body::from("{}"))
        .unwrap();
    call(&fake, req).await;
    let seen = fake.webhook_requests.lock().unwrap().take().unwrap();
    assert_eq!(seen.query, None);
}

#[tokio::test]
async fn health_and_openapi_need_no_token() {
    let fake = Fake::default();
    let a = call(&fake, request("GET", "/healthz", None, None)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json(),
        json!({"status": "ok", "providers": [
            {"id": "mfs-africa", "version": "0.1.0", "sha256": "ab".repeat(32)}
        ]})
    );
    let a = call(&fake, request("GET", "/openapi.json", None, None)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.json()["paths"]["/v1/refunds"].is_object());
}

#[tokio::test]
async fn serve_answers_on_a_socket_and_shuts_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let endpoint = server::Endpoint::new(listener, ConnectionLimits::default());
    let server = tokio::spawn(serve(Fake::default(), &tokens(), endpoint, async move {
        let _ = stopped.await;
    }));
    let response = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // A chunked body (no Content-Length) over the limit is cut off while it is read.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "POST /v1/webhooks/mfs-africa HTTP/1.1\r\nHost: x\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("400\r\n{}\r\n", "z".repeat(0x400));
    for _ in 0..(BODY_LIMIT / 0x400 + 1) {
        if socket.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

fn upload(uri: &str, token: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut b = Request::builder().method("POST").uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.header(header::CONTENT_TYPE, "application/wasm")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn plugin_routes_need_the_admin_scope() {
    let fake = Fake::default();
    let uri = "/v1/plugins/mfs-africa/versions";
    call(&fake, upload(uri, None, vec![1]))
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    // Refused before the body is read: the connection is closed, and the answer says so.
    let a = call(&fake, upload(uri, Some(REFUNDS_TOKEN), vec![1; 1 << 20])).await;
    a.error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(a.header("connection"), Some("close"));
    let routes = [
        ("GET", "/v1/plugins", None),
        (
            "POST",
            "/v1/plugins/mfs-africa/activate",
            Some(json!({"version": "0.2.0"})),
        ),
        ("DELETE", "/v1/plugins/mfs-africa/versions/0.1.0", None),
    ];
    for (method, uri, body) in routes {
        let a = call(&fake, request(method, uri, Some(REFUNDS_TOKEN), body)).await;
        a.error(StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0);

    let a = call(
        &fake,
        request("GET", "/v1/plugins", Some(ADMIN_TOKEN), None),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({"providers": []}));
}

#[tokio::test]
async fn plugin_refusals_have_their_codes() {
    let fake = Fake::default();
    let a = call(
        &fake,
        upload(
            "/v1/plugins/mfs-africa/versions",
            Some(ADMIN_TOKEN),
            vec![7; 100],
        ),
    )
    .await;
    let e = a.error(StatusCode::UNPROCESSABLE_ENTITY, "not_a_component");
    assert!(e["message"].as_str().unwrap().contains("100 bytes"), "{e}");
    assert_eq!(
        a.header("connection"),
        None,
        "a read body keeps the connection"
    );
    let activate = "/v1/plugins/mfs-africa/activate";
    let refusals = [
        (
            upload("/v1/plugins/nope/versions", Some(ADMIN_TOKEN), vec![7]),
            StatusCode::NOT_FOUND,
            "unknown_provider",
        ),
        (
            upload("/v1/plugins/mfs-africa/versions", Some(ADMIN_TOKEN), vec![]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            request(
                "POST",
                activate,
                Some(ADMIN_TOKEN),
                Some(json!({"version": "9"})),
            ),
            StatusCode::NOT_FOUND,
            "unknown_version",
        ),
        (
            request("POST", activate, Some(ADMIN_TOKEN), Some(json!({"v": "9"}))),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            request(
                "DELETE",
                "/v1/plugins/mfs-africa/versions/0.1.0",
                Some(ADMIN_TOKEN),
                None,
            ),
            StatusCode::CONFLICT,
            "version_active",
        ),
    ];
    for (req, status, code) in refusals {
        call(&fake, req).await.error(status, code);
    }
}

#[tokio::test]
async fn plugin_uploads_may_be_large_but_not_unbounded() {
    let fake = Fake::default();
    let uri = "/v1/plugins/mfs-africa/versions";
    // Far over the 64 KiB of every other route, under the component limit: it reaches the service.
    let a = call(&fake, upload(uri, Some(ADMIN_TOKEN), vec![0; 1 << 20])).await;
    a.error(StatusCode::UNPROCESSABLE_ENTITY, "not_a_component");
    let over = vec![0; plugins::PLUGIN_BODY_LIMIT + 1];
    let a = call(&fake, upload(uri, Some(ADMIN_TOKEN), over)).await;
    a.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(a.header("connection"), Some("close"));
    // Other routes keep their limit.
    let big = json!({"version": "x".repeat(70 * 1024)});
    let a = call(
        &fake,
        request(
            "POST",
            "/v1/plugins/mfs-africa/activate",
            Some(ADMIN_TOKEN),
            Some(big),
        ),
    )
    .await;
    a.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

/// The document, parsed.
fn document() -> Value {
    serde_json::from_str(openapi::document()).unwrap()
}

/// Every string value under `key` anywhere in `v`, with its JSON pointer.
fn strings_under(v: &Value, key: &str, at: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match child {
                    Value::String(s) if k == key => out.push((here, s.clone())),
                    _ => strings_under(child, key, here, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                strings_under(child, key, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_ref_in_the_document_resolves() {
    let doc = document();
    let mut refs = Vec::new();
    strings_under(&doc, "$ref", String::new(), &mut refs);
    assert!(refs.len() > 20, "{refs:?}");
    for (at, target) in refs {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: {target} is not local"));
        assert!(
            doc.pointer(pointer).is_some(),
            "{at}: {target} does not resolve"
        );
    }
    // The list's `format` parameter was such a reference.
    assert!(doc["components"]["schemas"]["Format"]["enum"].is_array());
}

/// The operations of the document by `operationId`: (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((path.clone(), method.clone(), op.clone()));
        }
    }
    out
}

#[test]
fn links_lead_from_a_refund_and_a_loaded_version_to_their_operations() {
    let doc = document();
    let ops = operations(&doc);
    let by_id = |id: &str| {
        ops.iter()
            .find(|(_, _, op)| op["operationId"] == id)
            .unwrap_or_else(|| panic!("no operation {id}"))
            .2
            .clone()
    };
    // Every link names an operation that exists and only parameters that operation has.
    let mut links = 0;
    for (path, method, op) in &ops {
        for (status, response) in op["responses"].as_object().unwrap() {
            let Some(map) = response["links"].as_object() else {
                continue;
            };
            for (name, link) in map {
                links += 1;
                let target = by_id(link["operationId"].as_str().unwrap());
                let names: Vec<&str> = target["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().map(|p| p["name"].as_str().unwrap()).collect())
                    .unwrap_or_default();
                for param in link["parameters"].as_object().into_iter().flatten() {
                    assert!(
                        names.contains(&param.0.as_str()),
                        "{method} {path} {status} link {name}: no parameter {}",
                        param.0
                    );
                }
            }
        }
    }
    assert!(links >= 8, "{links} links");
    let created = &by_id("create_refund")["responses"]["201"]["links"];
    for (name, op, param, value) in [
        ("GetRefund", "get_refund", "id", "$response.body#/id"),
        (
            "GetRefundExchanges",
            "get_refund_exchanges",
            "id",
            "$response.body#/id",
        ),
        (
            "ListRefundEvents",
            "list_events",
            "refund_id",
            "$response.body#/id",
        ),
    ] {
        assert_eq!(created[name]["operationId"], op, "{name}");
        assert_eq!(created[name]["parameters"][param], value, "{name}");
    }
    let loaded = &by_id("load_plugin_version")["responses"]["201"]["links"]["RemoveVersion"];
    assert_eq!(loaded["operationId"], "remove_plugin_version");
    assert_eq!(loaded["parameters"]["provider"], "$request.path.provider");
    assert_eq!(loaded["parameters"]["version"], "$response.body#/version");
}

#[test]
fn the_document_states_every_answer_of_each_route() {
    let doc = document();
    let statuses = |path: &str, method: &str| -> Vec<String> {
        let mut s: Vec<String> = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path}"))
            .keys()
            .cloned()
            .collect();
        s.sort();
        s
    };
    for (path, method, want) in [
        (
            "/v1/refunds",
            "post",
            &[
                "201", "202", "400", "401", "403", "404", "409", "413", "422", "500", "503",
            ][..],
        ),
        ("/v1/refunds", "get", &["200", "400", "401", "403", "500"]),
        (
            "/v1/refunds/{id}",
            "get",
            &["200", "401", "403", "404", "500"],
        ),
        (
            "/v1/refunds/{id}/exchanges",
            "get",
            &["200", "401", "403", "404", "500"],
        ),
        ("/v1/events", "get", &["200", "400", "401", "403", "500"]),
        (
            "/v1/webhooks/{provider}",
            "post",
            &["200", "400", "401", "404", "413", "500"],
        ),
        ("/v1/plugins", "get", &["200", "401", "403"]),
        (
            "/v1/plugins/{provider}/versions",
            "post",
            &[
                "200", "201", "400", "401", "403", "404", "409", "413", "422", "500",
            ],
        ),
        (
            "/v1/plugins/{provider}/activate",
            "post",
            &["200", "400", "401", "403", "404", "413", "500"],
        ),
        (
            "/v1/plugins/{provider}/versions/{version}",
            "delete",
            &["204", "401", "403", "404", "409", "500"],
        ),
        ("/metrics", "get", &["200", "401", "403", "500"]),
    ] {
        assert_eq!(statuses(path, method), want, "{method} {path}");
    }
    let create = &doc["paths"]["/v1/refunds"]["post"]["responses"];
    // A refund the provider could not be asked about says when to ask again.
    assert_eq!(
        create["503"]["headers"]["Retry-After"]["schema"]["type"],
        "integer"
    );
    let body_of = |status: &str| {
        create[status]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(body_of("503"), "#/components/schemas/RefundFailureBody");
    assert_eq!(body_of("422"), "#/components/schemas/RefundFailureBody");
    // 500 is only the service's own failure.
    assert_eq!(body_of("500"), "#/components/schemas/ErrorBody");
    // The component upload is raw bytes, not a JSON array of numbers.
    let upload = &doc["paths"]["/v1/plugins/{provider}/versions"]["post"]["requestBody"];
    let schema = &upload["content"]["application/wasm"]["schema"];
    assert_eq!(schema["type"], "string", "{upload}");
    assert_eq!(schema["format"], "binary", "{upload}");
}

#[test]
fn the_refund_request_schema_states_the_checks() {
    let doc = document();
    let schema = &doc["components"]["schemas"]["NewRefund"];
    assert_eq!(schema["additionalProperties"], false, "{schema}");
    let props = &schema["properties"];
    for id in ["external_refund_id", "original_transaction_id", "order_id"] {
        assert_eq!(props[id]["minLength"], 1, "{id}");
        assert_eq!(props[id]["maxLength"], 128, "{id}");
        // One rule for every id: the one checked against `check` below.
        assert_eq!(
            props[id]["pattern"], props["external_refund_id"]["pattern"],
            "{id}"
        );
    }
    assert_eq!(props["reason"]["maxLength"], 500);
    let original = &doc["components"]["schemas"]["OriginalPayment"];
    assert_eq!(original["additionalProperties"], false, "{original}");
    let codes: Vec<Value> = refundry_service::money::CURRENCIES
        .iter()
        .map(|(c, _)| json!(c))
        .collect();
    for amount in [&props["amount"], &original["properties"]["amount"]] {
        assert_eq!(amount["minimum"], 1, "{amount}");
        assert_eq!(amount["maximum"], 1_000_000_000_000_000_i64, "{amount}");
    }
    for currency in [&props["currency"], &original["properties"]["currency"]] {
        assert_eq!(currency["enum"], json!(codes), "{currency}");
    }
    // The events cursor is the digits `next_cursor` gives.
    let events = &doc["paths"]["/v1/events"]["get"]["parameters"];
    let cursor = events
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cursor")
        .unwrap();
    assert_eq!(cursor["schema"]["pattern"], "^[0-9]{0,18}$");
}

/// What the document says of an id field's value: within the length bounds (in characters, as
/// JSON Schema counts them) and matching the pattern.
fn document_takes_id(doc: &Value, value: &str) -> bool {
    let id = &doc["components"]["schemas"]["NewRefund"]["properties"]["external_refund_id"];
    let pattern = regex::Regex::new(id["pattern"].as_str().unwrap()).unwrap();
    let chars = value.chars().count() as u64;
    chars >= id["minLength"].as_u64().unwrap()
        && chars <= id["maxLength"].as_u64().unwrap()
        && pattern.is_match(value)
}

#[test]
fn the_id_rules_in_the_document_are_the_checks_rules() {
    let doc = document();
    let request = |id: &str| NewRefund {
        provider: "mfs-africa".into(),
        external_refund_id: id.into(),
        original_transaction_id: "tx-1".into(),
        amount: 100,
        currency: "KES".into(),
        reason: None,
        order_id: None,
        original: None,
    };
    let long_ascii = "a".repeat(128);
    // 128 characters of two bytes each: counted as 128, as the document counts them.
    let long_wide = "é".repeat(128);
    let too_long = "é".repeat(129);
    for value in [
        "rf-1",
        "a",
        " a ",
        "ÄÖ 123",
        "\u{3000}x",
        long_ascii.as_str(),
        long_wide.as_str(),
        too_long.as_str(),
        "",
        " ",
        "\t\u{a0}\u{2003}\u{3000}",
        "\u{85}",
        "a\nb",
        "a\u{0}b",
        "a\u{7f}",
        "a\u{9f}",
    ] {
        let checked = request(value).check();
        assert_eq!(
            checked.is_ok(),
            document_takes_id(&doc, value),
            "{value:?}: check says {checked:?}"
        );
    }
    // `reason` is counted in characters too, as the document's `maxLength` is.
    let max = doc["components"]["schemas"]["NewRefund"]["properties"]["reason"]["maxLength"]
        .as_u64()
        .unwrap() as usize;
    let with_reason = |n: usize| NewRefund {
        reason: Some("é".repeat(n)),
        ..request("rf-1")
    };
    assert!(with_reason(max).check().is_ok());
    assert!(with_reason(max + 1).check().is_err());
}
