//! Shared harness for the end-to-end tests in `tests/tests/`: where the built plugin components
//! are, how to start a sandbox and a host on loopback, and how to drive the sandbox's controls.
//!
//! Every server binds `127.0.0.1:0`, so tests run in parallel without port clashes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use refundry_host::caps::{Clock, SystemClock};
use refundry_host::{Config, Money, RefundRequest, Refundry};
use refundry_sandbox::SandboxHandle;
use refundry_sandbox::mfs_africa;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The component `cargo xtask build-plugins` wrote for `id`. Panics with the command to run when
/// it is missing, since every test here needs the real component.
pub fn plugin_path(id: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("plugins").join(format!("{id}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-plugins` (or `cargo xtask test`) first",
        path.display()
    );
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

/// A running MFS Africa sandbox and its credentials.
pub struct MfsSandbox {
    /// The server.
    pub handle: SandboxHandle,
    /// Its credentials.
    pub creds: Credentials,
    client: reqwest::Client,
}

impl MfsSandbox {
    /// Starts a sandbox on a free loopback port, with fast webhook retries.
    pub async fn start(callback_url: Option<String>) -> Self {
        let creds = Credentials::random();
        let mut config = mfs_africa::Config::new(
            creds.api_key.clone(),
            creds.api_secret.clone(),
            creds.webhook_secret.clone(),
        );
        config.callback_url = callback_url;
        config.webhook_retry_base = Duration::from_millis(20);
        let handle = mfs_africa::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("sandbox starts");
        Self {
            handle,
            creds,
            client: reqwest::Client::new(),
        }
    }

    /// The sandbox's base URL.
    pub fn base_url(&self) -> String {
        self.handle.base_url()
    }

    /// POSTs a control request and returns the answer; panics unless it succeeds.
    pub async fn control(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/_sandbox/{path}", self.base_url());
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
    pub async fn inspect(&self, path: &str) -> Value {
        let url = format!("{}/_sandbox/{path}", self.base_url());
        self.client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
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

    /// A host configuration for this sandbox's MFS Africa provider, with these credentials.
    pub fn host_config(&self, creds: &Credentials, extra_toml: &str) -> Config {
        let toml = format!(
            r#"
[database]
path = ":memory:"
{extra_toml}
[providers.mfs-africa]
plugin = {plugin:?}
[providers.mfs-africa.settings]
base_url = "{base_url}"
api_key = "{api_key}"
[providers.mfs-africa.secrets]
api_secret = "{api_secret}"
webhook_secret = "{webhook_secret}"
"#,
            plugin = plugin_path("mfs-africa").display().to_string(),
            base_url = self.base_url(),
            api_key = creds.api_key,
            api_secret = creds.api_secret,
            webhook_secret = creds.webhook_secret,
        );
        Config::parse(&toml, "test.toml".as_ref(), "/".as_ref(), |_| None)
            .expect("test config parses")
    }

    /// A host talking to this sandbox with the right credentials and the system clock.
    pub async fn host(&self) -> Refundry {
        self.host_with(&self.creds, Arc::new(SystemClock), "").await
    }

    /// A host talking to this sandbox with the given credentials, clock and extra config.
    pub async fn host_with(
        &self,
        creds: &Credentials,
        clock: Arc<dyn Clock>,
        extra_toml: &str,
    ) -> Refundry {
        Refundry::start_with_clock(&self.host_config(creds, extra_toml), clock)
            .await
            .expect("host starts")
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
