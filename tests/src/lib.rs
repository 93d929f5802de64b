//! Shared harness for the end-to-end tests in `tests/tests/`: where the built plugin components
//! are, how to start a sandbox and a host on loopback, and how to drive the sandbox's controls.
//!
//! Every server binds `127.0.0.1:0`, so tests run in parallel without port clashes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use refundry_runtime::Money;
use refundry_runtime::RefundRequest;
use refundry_runtime::caps::{Clock, SystemClock};
use refundry_sandbox::SandboxHandle;
use refundry_sandbox::{mfs_africa, pagoefectivo};
use refundry_service::Config;
use refundry_service::Providers;
use refundry_service::StartOptions;
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub mod receiver;
pub mod service;
pub mod tls;

/// Where `cargo xtask build-plugins` writes the components: `$REFUNDRY_PLUGINS_DIR`, else
/// `plugins/` in the cargo target folder.
pub fn plugins_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("REFUNDRY_PLUGINS_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("plugins")
}

/// The component `cargo xtask build-plugins` wrote for `id`. Panics with the command to run when
/// it is missing, since every test here needs the real component.
pub fn plugin_path(id: &str) -> PathBuf {
    let path = plugins_dir().join(format!("{id}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-plugins` (or `cargo xtask test`) first",
        path.display()
    );
    path
}

/// A component built against the released contract `version` before the contract moved on, kept
/// as it was (`tests/fixtures/contract-v<version>/<id>.wasm`): what a host must keep loading.
pub fn released_contract_component(version: &str, id: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format!("contract-v{version}"))
        .join(format!("{id}.wasm"));
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// Credentials shared by one sandbox and the hosts that talk to it; random per test.
#[derive(Clone)]
pub struct Credentials {
    /// `api_key`.
    pub api_key: String,
    /// `api_secret`.
    pub api_secret: String,
    /// `webhook_secret`.
    pub webhook_secret: String,
}

impl Credentials {
    /// Fresh random credentials.
    pub fn random() -> Self {
        let r = || format!("{:032x}", rand_u128());
        Self {
            api_key: format!("key-{}", r()),
            api_secret: r(),
            webhook_secret: r(),
        }
    }
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    // Two independently seeded SipHashers: random enough for test credentials, no extra crate.
    let a = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(a);
    (u128::from(a) << 64) | u128::from(h.finish())
}

/// The `/_sandbox/` control endpoints of a running simulator.
pub struct Control {
    base_url: String,
    client: reqwest::Client,
}

impl Control {
    /// Controls for the simulator at `base_url`.
    pub fn new(base_url: String) -> Self {
        Self {
            base_url,
            client: reqwest::Client::new(),
        }
    }

    /// POSTs a control request and returns the answer; panics unless it succeeds.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/_sandbox/{path}", self.base_url);
        let resp = self.client.post(&url).json(&body).send().await.unwrap();
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "control {path} answered {status}: {value}"
        );
        value
    }

    /// GETs a control resource.
    pub async fn get(&self, path: &str) -> Value {
        let url = format!("{}/_sandbox/{path}", self.base_url);
        self.client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A running MFS Africa sandbox and its credentials.
pub struct MfsSandbox {
    /// The server.
    pub handle: SandboxHandle,
    /// Its credentials.
    pub creds: Credentials,
    control: Control,
}

impl MfsSandbox {
    /// Starts a sandbox on a free loopback port, with fast webhook retries.
    pub async fn start(callback_url: Option<String>) -> Self {
        Self::start_with(callback_url, None).await
    }

    /// [`MfsSandbox::start`], with the sandbox refusing every API request that lacks the header
    /// `require_header` (400 `invalid_request`, nothing changed) when it is `Some`.
    pub async fn start_with(callback_url: Option<String>, require_header: Option<&str>) -> Self {
        let creds = Credentials::random();
        let mut config = mfs_africa::Config::new(
            creds.api_key.clone(),
            creds.api_secret.clone(),
            creds.webhook_secret.clone(),
        );
        config.callback_url = callback_url;
        config.webhook_retry_base = Duration::from_millis(20);
        config.require_header = require_header.map(str::to_owned);
        let handle = mfs_africa::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("sandbox starts");
        let control = Control::new(handle.base_url());
        Self {
            handle,
            creds,
            control,
        }
    }

    /// The sandbox's base URL.
    pub fn base_url(&self) -> String {
        self.handle.base_url()
    }

    /// POSTs a control request and returns the answer; panics unless it succeeds.
    pub async fn control(&self, path: &str, body: Value) -> Value {
        self.control.post(path, body).await
    }

    /// GETs a control resource.
    pub async fn inspect(&self, path: &str) -> Value {
        self.control.get(path).await
    }

    /// The `X-Plugin-Version` header the sandbox saw on the request that created refund
    /// `refund_id` (its provider id); `None` when that request had none. Panics when the sandbox
    /// has no such refund.
    pub async fn created_by_plugin_version(&self, refund_id: &str) -> Option<String> {
        let refunds = self.inspect("refunds").await;
        let refund = refunds["data"]
            .as_array()
            .and_then(|data| data.iter().find(|r| r["refund_id"] == refund_id))
            .unwrap_or_else(|| panic!("the sandbox has no refund {refund_id}: {refunds}"));
        match &refund["created_by_plugin_version"] {
            Value::Null => None,
            Value::String(version) => Some(version.clone()),
            other => panic!("created_by_plugin_version is not a string or null: {other}"),
        }
    }

    /// Seeds an original transaction.
    pub async fn seed(&self, id: &str, amount: &str, currency: &str, days_ago: i64, settled: bool) {
        let completed = (chrono::Utc::now() - chrono::Duration::days(days_ago))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.control(
            "transactions",
            json!({"transaction_id": id, "amount": amount, "currency": currency,
                   "completed_at": completed, "settled": settled}),
        )
        .await;
    }

    /// The `[providers.mfs-africa]` tables of a host configuration: the built plugin, with these
    /// credentials, reaching the provider at `base_url` (this sandbox's, or a proxy's).
    pub fn provider_toml(creds: &Credentials, base_url: &str) -> String {
        Self::provider_toml_for("mfs-africa", creds, base_url)
    }

    /// [`MfsSandbox::provider_toml`] with the component `plugin` (a [`plugin_path`] id, e.g.
    /// `mfs-africa-next`) as the `mfs-africa` provider.
    pub fn provider_toml_for(plugin: &str, creds: &Credentials, base_url: &str) -> String {
        format!(
            r#"
[providers.mfs-africa]
plugin = {plugin:?}
[providers.mfs-africa.settings]
base_url = "{base_url}"
api_key = "{api_key}"
[providers.mfs-africa.secrets]
api_secret = "{api_secret}"
webhook_secret = "{webhook_secret}"
"#,
            plugin = plugin_path(plugin).display().to_string(),
            api_key = creds.api_key,
            api_secret = creds.api_secret,
            webhook_secret = creds.webhook_secret,
        )
    }

    /// A host configuration for this sandbox's MFS Africa provider, with these credentials.
    pub fn host_config(&self, creds: &Credentials, extra_toml: &str) -> Config {
        self.host_config_for("mfs-africa", creds, extra_toml)
    }

    /// [`MfsSandbox::host_config`] with the component `plugin` as the provider.
    fn host_config_for(&self, plugin: &str, creds: &Credentials, extra_toml: &str) -> Config {
        let toml = format!(
            "[database]\npath = \":memory:\"\n{extra_toml}\n{}",
            Self::provider_toml_for(plugin, creds, &self.base_url())
        );
        Config::parse(&toml, "test.toml".as_ref(), "/".as_ref(), |_| None)
            .expect("test config parses")
    }

    /// A host talking to this sandbox with the right credentials and the system clock.
    pub async fn host(&self) -> Providers {
        self.host_with_plugin("mfs-africa").await
    }

    /// [`MfsSandbox::host`] running the component `plugin` (a [`plugin_path`] id, e.g.
    /// `mfs-africa-next`) as the `mfs-africa` provider.
    pub async fn host_with_plugin(&self, plugin: &str) -> Providers {
        let config = self.host_config_for(plugin, &self.creds, "");
        Providers::start_with(&config, StartOptions::with_clock(Arc::new(SystemClock)))
            .await
            .expect("host starts")
    }

    /// A host talking to this sandbox with the given credentials, clock and extra config.
    pub async fn host_with(
        &self,
        creds: &Credentials,
        clock: Arc<dyn Clock>,
        extra_toml: &str,
    ) -> Providers {
        Providers::start_with(
            &self.host_config(creds, extra_toml),
            StartOptions::with_clock(clock),
        )
        .await
        .expect("host starts")
    }
}

/// PagoEfectivo credentials: service id, access key, secret key.
#[derive(Clone)]
pub struct PeCredentials {
    /// `id_service`.
    pub id_service: u64,
    /// `access_key`.
    pub access_key: String,
    /// `secret_key`.
    pub secret_key: String,
}

/// A running PagoEfectivo sandbox and its credentials.
pub struct PeSandbox {
    /// The server.
    pub handle: SandboxHandle,
    /// Its credentials.
    pub creds: PeCredentials,
    /// Its control endpoints.
    pub control: Control,
}

impl PeSandbox {
    /// Starts a sandbox on a free loopback port, with fast notification retries.
    pub async fn start(notification_url: Option<String>) -> Self {
        let c = Credentials::random();
        let creds = PeCredentials {
            id_service: 1024 + (rand_u128() % 1000) as u64,
            access_key: c.api_key,
            secret_key: c.api_secret,
        };
        let mut config = pagoefectivo::Config::new(
            creds.id_service,
            creds.access_key.clone(),
            creds.secret_key.clone(),
        );
        config.notification_url = notification_url;
        config.webhook_retry_base = Duration::from_millis(20);
        let handle = pagoefectivo::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("sandbox starts");
        let control = Control::new(handle.base_url());
        Self {
            handle,
            creds,
            control,
        }
    }

    /// Seeds an original payment `days_ago` days back.
    pub async fn seed(&self, id: &str, amount: &str, currency: &str, days_ago: i64, paid: bool) {
        let paid_at = (chrono::Utc::now() - chrono::Duration::days(days_ago))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.control
            .post(
                "payments",
                json!({"transaction_id": id, "amount": amount, "currency": currency,
                       "paid_at": paid_at, "paid": paid}),
            )
            .await;
    }

    /// How many authorizations the sandbox has answered.
    pub async fn authorizations(&self) -> u64 {
        self.control.get("stats").await["authorizations"]
            .as_u64()
            .unwrap()
    }

    /// The `[providers.pagoefectivo]` tables of a host configuration for this sandbox, with these
    /// credentials. The access key is a secret (redacted from logs), as in
    /// `examples/refundry.toml`; the plugin reads settings and secrets alike.
    pub fn provider_toml(&self, creds: &PeCredentials) -> String {
        format!(
            r#"
[providers.pagoefectivo]
plugin = {plugin:?}
[providers.pagoefectivo.settings]
base_url = "{base_url}"
id_service = "{id_service}"
[providers.pagoefectivo.secrets]
access_key = "{access_key}"
secret_key = "{secret_key}"
"#,
            plugin = plugin_path("pagoefectivo").display().to_string(),
            base_url = self.handle.base_url(),
            id_service = creds.id_service,
            access_key = creds.access_key,
            secret_key = creds.secret_key,
        )
    }

    /// A host configuration for this sandbox's PagoEfectivo provider.
    pub fn host_config(&self, creds: &PeCredentials, extra_toml: &str) -> Config {
        let toml = format!("{extra_toml}\n{}", self.provider_toml(creds));
        Config::parse(&toml, "test.toml".as_ref(), "/".as_ref(), |_| None)
            .expect("test config parses")
    }

    /// A host with these credentials and clock; `extra_toml` may set `[database] path`
    /// (default: in memory).
    pub async fn host_with(
        &self,
        creds: &PeCredentials,
        clock: Arc<dyn Clock>,
        extra_toml: &str,
    ) -> Providers {
        let extra = if extra_toml.contains("[database]") {
            extra_toml.to_owned()
        } else {
            format!("[database]\npath = \":memory:\"\n{extra_toml}")
        };
        Providers::start_with(
            &self.host_config(creds, &extra),
            StartOptions::with_clock(clock),
        )
        .await
        .expect("host starts")
    }

    /// A host with the right credentials and the system clock.
    pub async fn host(&self) -> Providers {
        self.host_with(&self.creds, Arc::new(SystemClock), "").await
    }
}

/// A host configuration for the hostile test plugin as provider `hostile`: a 500 ms deadline, an
/// 8 MiB memory cap, an in-memory database, `extra_settings` (TOML lines) among its settings and
/// `secret` as its `api_secret`.
pub fn hostile_config(extra_settings: &str, secret: &str) -> Config {
    let toml = format!(
        r#"
[engine]
deadline_ms = 500
memory_limit_bytes = 8388608
[database]
path = ":memory:"
[providers.hostile]
plugin = {plugin:?}
[providers.hostile.settings]
base_url = "http://127.0.0.1:9"
{extra_settings}
[providers.hostile.secrets]
api_secret = "{secret}"
"#,
        plugin = plugin_path("hostile").display().to_string()
    );
    Config::parse(&toml, "test.toml".as_ref(), "/".as_ref(), |_| None)
        .expect("the hostile test config parses")
}

/// A refund request in PEN with an order id, as PagoEfectivo wants.
pub fn pen_refund(txn: &str, external_id: &str, amount_minor: i64) -> RefundRequest {
    RefundRequest {
        original_transaction_id: txn.into(),
        external_refund_id: external_id.into(),
        amount: Money {
            amount_minor,
            currency: "PEN".into(),
        },
        reason: Some("producto devuelto".into()),
        order_id: Some(format!("ORDER-{external_id}")),
    }
}

/// A refund request in KES.
pub fn kes_refund(txn: &str, external_id: &str, amount_minor: i64) -> RefundRequest {
    RefundRequest {
        original_transaction_id: txn.into(),
        external_refund_id: external_id.into(),
        amount: Money {
            amount_minor,
            currency: "KES".into(),
        },
        reason: Some("customer_return".into()),
        order_id: None,
    }
}

/// A captured webhook: headers as received and the raw body.
pub type Webhook = (Vec<(String, String)>, Vec<u8>);

/// A loopback webhook receiver. It answers each delivery with the next status from `script`
/// (200 once the script is used up) and captures every delivery.
pub async fn webhook_receiver(script: Vec<u16>) -> (String, mpsc::UnboundedReceiver<Webhook>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Arc::new(std::sync::Mutex::new(script.into_iter()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                let script = script.clone();
                async move {
                    let headers = headers
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.to_string(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect();
                    let _ = tx.send((headers, body.to_vec()));
                    let status = script.lock().unwrap().next().unwrap_or(200);
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// The next captured webhook, or a panic after `secs` seconds.
pub async fn next_webhook(rx: &mut mpsc::UnboundedReceiver<Webhook>, secs: u64) -> Webhook {
    tokio::time::timeout(Duration::from_secs(secs), rx.recv())
        .await
        .expect("a webhook arrives in time")
        .expect("receiver open")
}

/// A small `join_all` (no `futures` dependency): polls every future until all are done.
pub async fn join_all<Fut: std::future::Future>(futures: Vec<Fut>) -> Vec<Fut::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<Fut::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, fut) in futures.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => outputs[i] = Some(out),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}
