//! What the create-refund benchmarks share: each provider's case (configuration, canned answers,
//! request), the faked network, and Refundry's six columns of a criterion group (fresh and warm
//! instance, with host and with guest crypto, an instance made and dropped, and native), each
//! checked once before measuring.
//!
//! Included as a module by `native/benches/create_refund.rs` and by the Extism comparison
//! (`bench/extism/bench/benches/versus_extism.rs`, a workspace of its own), so both measure the
//! same requests against the same answers; `native/tests/initial_memory.rs` runs the same
//! operations to check that they never grow the plugin's memory.

use std::future::Future;
use std::hint::black_box;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use refundry_ledger::db::Database;
use refundry_ledger::storage::SqliteStore;
use refundry_runtime::bindings::http::{HttpError, Request, Response};
use refundry_runtime::caps::{Capabilities, FixedClock, Transport};
use refundry_runtime::engine::Engine;
use refundry_runtime::limits::EngineLimits;
use refundry_runtime::plugin::WarmPlugin;
use refundry_runtime::{Money, Refund, RefundError, RefundRequest, RefundStatus};
use refundry_runtime::{Plugin, PluginComponent};
use refundry_sdk::Provider;
use refundry_sdk::testing::{FakeHost, response};
use refundry_service::Config;
use tokio::runtime::Runtime;
use tokio::sync::Mutex;

/// 2026-11-25T10:15:30Z (05:15:30 in Lima): one second before the canned refunds' creation.
pub const NOW_MS: i64 = 1_795_601_730_000;

/// Never contacted: the transport below answers instead.
pub const BASE_URL: &str = "http://127.0.0.1:1";
pub const CONTENT_TYPE: (&str, &str) = ("content-type", "application/json");

/// One provider's side of the benchmark: its configuration, canned answers and request.
pub struct Case {
    pub provider: &'static str,
    /// Settings and secrets, given to the host's config and to the native `FakeHost` alike.
    pub settings: &'static [(&'static str, &'static str)],
    pub secrets: &'static [(&'static str, &'static str)],
    /// Canned answers by request path: (path, status, body).
    pub answers: &'static [(&'static str, u16, &'static [u8])],
    pub currency: &'static str,
    pub order_id: Option<&'static str>,
}

pub const MFS_AFRICA: Case = Case {
    provider: "mfs-africa",
    settings: &[("api_key", "bench_api_key")],
    secrets: &[
        ("api_secret", "bench_api_secret"),
        ("webhook_secret", "bench_webhook_secret"),
    ],
    // The spec's refund object, status `pending`.
    answers: &[(
        "/v1/refunds",
        201,
        br#"{"refund_id": "rfnd_abc123", "external_refund_id": "order-991-r1", "original_transaction_id": "txn_8f2k1", "refund_amount": "1500.00", "currency": "KES", "reason": "customer_return", "status": "pending", "failure_reason": null, "created_at": "2026-11-25T10:15:31Z", "updated_at": "2026-11-25T10:15:31Z"}"#,
    )],
    currency: "KES",
    order_id: None,
};

pub const PAGOEFECTIVO: Case = Case {
    provider: "pagoefectivo",
    settings: &[("id_service", "1024"), ("access_key", "AK1")],
    secrets: &[("secret_key", "bench_secret_key")],
    // A two-hour token (authorized once, before measuring, then cached) and the spec's refund.
    answers: &[
        (
            "/v1/authorizations",
            201,
            br#"{"code": "100", "message": "Solicitud exitosa.", "data": {"token": "bench-token", "codeService": "S1", "tokenStart": "2026-11-25T05:15:30-05:00", "tokenExpires": "2026-11-25T07:15:30-05:00"}}"#,
        ),
        (
            "/v1/refunds",
            201,
            br#"{"code": "100", "message": "Solicitud exitosa.", "data": {"refundId": "order-991-r1", "referenceId": "PE-RF-000123", "transactionId": "txn_8f2k1", "transactionCode": "ORDER-991", "refundAmount": "1500.00", "currency": "PEN", "status": "pending", "statusReason": null, "dateCreation": "2026-11-25T05:15:31-05:00", "dateUpdate": "2026-11-25T05:15:31-05:00"}}"#,
        ),
    ],
    currency: "PEN",
    order_id: Some("ORDER-991"),
};

impl Case {
    /// The request every column sends.
    pub fn request(&self) -> RefundRequest {
        RefundRequest {
            original_transaction_id: "txn_8f2k1".into(),
            external_refund_id: "order-991-r1".into(),
            amount: Money {
                amount_minor: 150_000,
                currency: self.currency.into(),
            },
            reason: Some("customer_return".into()),
            order_id: self.order_id.map(str::to_owned),
        }
    }

    /// [`Case::request`] in the SDK's types, for the native column.
    pub fn sdk_request(&self) -> refundry_sdk::RefundRequest {
        let req = self.request();
        refundry_sdk::RefundRequest {
            original_transaction_id: req.original_transaction_id,
            external_refund_id: req.external_refund_id,
            amount: refundry_sdk::Money {
                amount_minor: req.amount.amount_minor,
                currency: req.amount.currency,
            },
            reason: req.reason,
            order_id: req.order_id,
        }
    }

    /// The canned (status, body) for a request to `path`; `None` when there is none.
    pub fn answer(&self, path: &str) -> Option<(u16, &'static [u8])> {
        self.answers
            .iter()
            .find(|(p, _, _)| *p == path)
            .map(|(_, status, body)| (*status, *body))
    }

    /// The host configuration: the provider's plugin (in `plugins`), settings and secrets.
    fn config(&self, plugins: &Path) -> Config {
        let table = |entries: &[(&str, &str)]| -> String {
            entries
                .iter()
                .map(|(k, v)| format!("{k} = \"{v}\"\n"))
                .collect()
        };
        let p = self.provider;
        let toml = format!(
            "[database]\npath = \":memory:\"\n[providers.{p}]\nplugin = \"{p}.wasm\"\n\
             [providers.{p}.settings]\nbase_url = \"{BASE_URL}\"\n{}[providers.{p}.secrets]\n{}",
            table(self.settings),
            table(self.secrets)
        );
        Config::parse(&toml, Path::new("create_refund.toml"), plugins, |_| None)
            .expect("the benchmark's config parses")
    }
}

/// The network, faked in-process: each path gets its canned answer, with no I/O.
struct CannedTransport(&'static Case);

impl Transport for CannedTransport {
    fn exchange<'a>(
        &'a self,
        _req: &'a Request,
        url: reqwest::Url,
        _max_body: usize,
    ) -> Pin<Box<dyn Future<Output = Result<Response, HttpError>> + Send + 'a>> {
        let answer = match self.0.answer(url.path()) {
            Some((status, body)) => Ok(Response {
                status,
                headers: vec![(CONTENT_TYPE.0.to_owned(), CONTENT_TYPE.1.to_owned())],
                body: body.to_vec(),
            }),
            None => Err(HttpError::ConnectFailed(format!(
                "no canned answer for {url}"
            ))),
        };
        Box::pin(std::future::ready(answer))
    }
}

/// Where `cargo xtask build-plugins` wrote the components: `$REFUNDRY_PLUGINS_DIR`, else
/// `target/plugins/` under `repository` (the root of this repository).
pub fn plugins_dir(repository: &Path) -> PathBuf {
    std::env::var_os("REFUNDRY_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository.join("target").join("plugins"))
}

/// The case's plugin (the component `file` in `plugins`) bound to its capabilities, with the
/// fake transport and a frozen clock.
pub async fn bind_plugin(case: &'static Case, plugins: &Path, file: &str) -> Plugin {
    let config = case.config(plugins);
    let provider = &config.providers[case.provider];
    let path = plugins.join(file);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask build-plugins` first",
        path.display()
    );
    let db = Database::open(config.database.as_deref()).expect("an in-memory database opens");
    // The capabilities `refundry serve` grants, on the canned transport and a frozen clock.
    let caps = Capabilities::builder(&provider.id, Arc::new(provider.clone()))
        .origin(provider.base_url.clone())
        .transport(Arc::new(CannedTransport(case)))
        .http_limits(config.http)
        .quotas(config.quotas)
        .clock(FixedClock::new(NOW_MS))
        .storage(Arc::new(SqliteStore::new(
            db,
            provider.id.clone(),
            config.quotas,
        )))
        .build();
    let engine = Engine::new(EngineLimits::default()).expect("the engine starts");
    let component = PluginComponent::from_file(&engine, &path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Plugin::bind(engine, Arc::new(component), caps, true)
        .await
        .expect("the plugin binds")
}

/// The SDK's in-process host with the same clock, configuration and canned answers.
fn native_host(case: &'static Case) -> FakeHost {
    let mut host = FakeHost::new()
        .with_now_ms(NOW_MS)
        .with_config("base_url", BASE_URL);
    for (k, v) in case.settings.iter().chain(case.secrets) {
        host = host.with_config(k, v);
    }
    host.with_responder(move |req| {
        let path = req.url.strip_prefix(BASE_URL).unwrap_or(&req.url);
        let path = path.split('?').next().unwrap_or(path);
        match case.answer(path) {
            Some((status, body)) => Ok(response(status, &[CONTENT_TYPE], body)),
            None => Err(refundry_sdk::http::HttpError::ConnectFailed(
                path.to_owned(),
            )),
        }
    })
    .without_recording()
}

/// Checks that a sandboxed call created the pending refund, so no column can measure an error.
pub fn created(column: &str, result: Result<Result<Refund, RefundError>, impl std::fmt::Debug>) {
    match result {
        Ok(Ok(refund)) => assert!(
            refund.status == RefundStatus::Pending && refund.amount.amount_minor == 150_000,
            "{column}: unexpected refund {refund:?}"
        ),
        other => panic!("{column}: create_refund did not succeed: {other:?}"),
    }
}

/// Refundry's columns of provider `P`, ready to measure:
///
/// - `fresh_instance`: [`Plugin::create_refund`], what the service does for every operation.
/// - `warm_instance`: one instance kept by [`Plugin::warm`] and called again and again.
/// - `instance_only`: [`Plugin::warm`] and the instance dropped, no call: the pool slot, the
///   store, the instantiation and the slot's reset, which every fresh operation pays.
/// - `fresh_instance_guest_crypto` and `warm_instance_guest_crypto`: the same two on the
///   component built with the SDK's `guest-crypto` feature (`<provider>-guest-crypto.wasm`).
/// - `native`: the same plugin crate compiled natively, called directly with the SDK's
///   [`FakeHost`].
pub struct RefundryColumns<P> {
    /// The provider's component, bound; the fresh column's plugin.
    pub plugin: Plugin,
    guest_crypto: Plugin,
    warm: Mutex<WarmPlugin>,
    warm_guest_crypto: Mutex<WarmPlugin>,
    /// The request every column sends.
    pub req: RefundRequest,
    host: FakeHost,
    native_req: refundry_sdk::RefundRequest,
    provider: PhantomData<fn() -> P>,
}

impl<P: Provider> RefundryColumns<P> {
    /// Binds `case`'s two components (from `plugins`) and the native provider `P`, then calls
    /// each column once: every column must take the success path (and a provider with a token
    /// has it cached from here on, in the host's storage and in the fake host's).
    pub fn new(rt: &Runtime, case: &'static Case, plugins: &Path) -> Self {
        let file = format!("{}.wasm", case.provider);
        let plugin = rt.block_on(bind_plugin(case, plugins, &file));
        let file = format!("{}-guest-crypto.wasm", case.provider);
        let guest_crypto = rt.block_on(bind_plugin(case, plugins, &file));
        let req = case.request();
        let host = native_host(case);
        let native_req = case.sdk_request();

        created("fresh_instance", rt.block_on(plugin.create_refund(&req)));
        let warm = Mutex::new(rt.block_on(plugin.warm()).expect("a warm instance"));
        created(
            "warm_instance",
            rt.block_on(async { warm.lock().await.create_refund(&req).await }),
        );
        created(
            "fresh_instance_guest_crypto",
            rt.block_on(guest_crypto.create_refund(&req)),
        );
        let warm_guest_crypto =
            Mutex::new(rt.block_on(guest_crypto.warm()).expect("a warm instance"));
        created(
            "warm_instance_guest_crypto",
            rt.block_on(async { warm_guest_crypto.lock().await.create_refund(&req).await }),
        );
        let refund = P::create_refund(&host, native_req.clone())
            .unwrap_or_else(|e| panic!("native: create_refund did not succeed: {e:?}"));
        assert_eq!(refund.status, refundry_sdk::RefundStatus::Pending, "native");

        Self {
            plugin,
            guest_crypto,
            warm,
            warm_guest_crypto,
            req,
            host,
            native_req,
            provider: PhantomData,
        }
    }

    /// Measures the six columns into `group`, in the order of the type's documentation.
    pub fn bench(&self, group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime) {
        let req = &self.req;
        group.bench_function("fresh_instance", |b| {
            b.to_async(rt).iter(|| self.plugin.create_refund(req));
        });
        group.bench_function("warm_instance", |b| warm_calls(b, rt, &self.warm, req));
        group.bench_function("instance_only", |b| {
            b.to_async(rt).iter(|| async {
                let instance = self.plugin.warm().await.expect("an instance");
                drop(black_box(instance));
            });
        });
        group.bench_function("fresh_instance_guest_crypto", |b| {
            b.to_async(rt).iter(|| self.guest_crypto.create_refund(req));
        });
        group.bench_function("warm_instance_guest_crypto", |b| {
            warm_calls(b, rt, &self.warm_guest_crypto, req)
        });
        group.bench_function("native", |b| {
            b.iter(|| P::create_refund(&self.host, black_box(self.native_req.clone())));
        });
    }
}

/// Calls a warm instance over and over. The instance is borrowed mutably for a whole batch, so
/// it is locked once per batch.
fn warm_calls(
    b: &mut criterion::Bencher<'_>,
    rt: &Runtime,
    warm: &Mutex<WarmPlugin>,
    req: &RefundRequest,
) {
    b.to_async(rt).iter_custom(|iters| async move {
        let mut warm = warm.lock().await;
        let start = Instant::now();
        for _ in 0..iters {
            let _ = black_box(warm.create_refund(req).await);
        }
        start.elapsed()
    });
}
