//! The seed corpora, from the sandboxes' real answers: both simulators start in process with the
//! credentials the fuzz targets configure, each plugin runs its operations natively against them
//! (a `FakeHost` whose HTTP calls go to the sandbox), and every operation's answers, in order,
//! become one seed of the provider's answer target; the webhooks the sandboxes send on status
//! moves become seeds of the webhook targets, signed by the target and as delivered. The REST
//! target's seeds are requests of the host's API, the webhook deliveries among them.
//!
//! Seeds go to `fuzz/corpus/<target>/seed-*`, written anew on every run (the fuzzer's own finds
//! beside them are kept).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use chrono::Utc;
use refundry_mfs_africa::MfsAfrica;
use refundry_pagoefectivo::PagoEfectivo;
use refundry_sandbox::{SandboxHandle, mfs_africa, pagoefectivo};
use refundry_sdk::http::{HttpError, Request, Response};
use refundry_sdk::testing::FakeHost;
use refundry_sdk::{Money, Provider, RefundLookup, RefundRequest, TimeRange};
use serde_json::{Value, json};
use tokio::runtime::{Handle, Runtime};

// The targets' half of it (reading inputs, the mode bits) is not used here, where seeds are
// only written.
#[allow(dead_code)]
#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;

use corpus::answer::{CREATE, GET_BY_EXTERNAL_ID, GET_BY_PROVIDER_ID, LIST};
use corpus::{rest, webhook};

/// A delivery the sandboxes made to the webhook receiver.
#[derive(Debug, Clone)]
struct Delivery {
    provider: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    received_ms: i64,
}

type Deliveries = Arc<Mutex<Vec<Delivery>>>;

/// The answers one operation got: (head, body) per HTTP call.
type Answers = Vec<(String, Vec<u8>)>;

/// A request of the REST API: method, target, headers, body.
type ApiRequest<'a> = (&'a str, String, Vec<(&'a str, String)>, String);

/// Seeds per target, written under `corpus_root/<target>/`.
#[derive(Default)]
struct Corpus {
    seeds: BTreeMap<&'static str, Vec<(String, Vec<u8>)>>,
}

impl Corpus {
    fn add(&mut self, target: &'static str, name: &str, bytes: Vec<u8>) {
        self.seeds
            .entry(target)
            .or_default()
            .push((name.to_owned(), bytes));
    }

    fn write(&self, corpus_root: &Path) -> Result<BTreeMap<String, usize>> {
        let mut counts = BTreeMap::new();
        for (target, seeds) in &self.seeds {
            let dir = corpus_root.join(target);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            // Last run's seeds go, so that the corpus holds this recording and the fuzzer's own
            // finds, never a seed the recording no longer makes.
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
                {
                    std::fs::remove_file(&path)?;
                }
            }
            for (i, (name, bytes)) in seeds.iter().enumerate() {
                let file = dir.join(format!("seed-{i:03}-{name}"));
                std::fs::write(&file, bytes)
                    .with_context(|| format!("writing {}", file.display()))?;
            }
            counts.insert((*target).to_owned(), seeds.len());
        }
        Ok(counts)
    }
}

/// Records the seeds of every target under `corpus_root`; answers how many each got.
pub fn write(corpus_root: &Path) -> Result<BTreeMap<String, usize>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("a tokio runtime for the sandboxes")?;
    let deliveries: Deliveries = Arc::default();
    let receiver = runtime.block_on(receive_webhooks(deliveries.clone()))?;
    let mfs = runtime
        .block_on(mfs_africa::start(
            mfs_africa::Config {
                callback_url: Some(format!("{receiver}/mfs-africa")),
                webhook_retry_base: Duration::from_millis(20),
                ..mfs_africa::Config::new(
                    corpus::mfs_africa::API_KEY,
                    corpus::mfs_africa::API_SECRET,
                    corpus::mfs_africa::WEBHOOK_SECRET,
                )
            },
            loopback(),
        ))
        .context("starting the MFS Africa sandbox")?;
    let pe = runtime
        .block_on(pagoefectivo::start(
            pagoefectivo::Config {
                notification_url: Some(format!("{receiver}/pagoefectivo")),
                webhook_retry_base: Duration::from_millis(20),
                ..pagoefectivo::Config::new(
                    corpus::pagoefectivo::ID_SERVICE,
                    corpus::pagoefectivo::ACCESS_KEY,
                    corpus::pagoefectivo::SECRET_KEY,
                )
            },
            loopback(),
        ))
        .context("starting the PagoEfectivo sandbox")?;

    let mut corpus = Corpus::default();
    let mfs_moves = mfs_africa_answers(&runtime, &mfs, &mut corpus)?;
    let pe_moves = pagoefectivo_answers(&runtime, &pe, &mut corpus)?;
    let deliveries = wait_for(&deliveries, mfs_moves + pe_moves)?;
    webhook_seeds(&deliveries, &mut corpus);
    rest_seeds(&deliveries, &mut corpus);
    runtime.block_on(async {
        mfs.shutdown().await;
        pe.shutdown().await;
    });
    corpus.write(corpus_root)
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Serves `POST /{provider}` on loopback, keeping every delivery; answers its base URL.
async fn receive_webhooks(deliveries: Deliveries) -> Result<String> {
    async fn keep(
        State(deliveries): State<Deliveries>,
        UrlPath(provider): UrlPath<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> &'static str {
        let headers = headers
            .iter()
            .map(|(k, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), value)
            })
            .collect();
        let delivery = Delivery {
            provider,
            headers,
            body: body.to_vec(),
            received_ms: now_ms(),
        };
        lock(&deliveries).push(delivery);
        "ok"
    }
    let app = axum::Router::new()
        .route("/{provider}", axum::routing::post(keep))
        .with_state(deliveries);
    let listener = tokio::net::TcpListener::bind(loopback()).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits (at most 10 s) until `count` deliveries came; answers them.
fn wait_for(deliveries: &Deliveries, count: usize) -> Result<Vec<Delivery>> {
    let started = Instant::now();
    loop {
        let got = lock(deliveries).clone();
        if got.len() >= count {
            return Ok(got);
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!(
                "{} of {count} webhooks arrived from the sandboxes",
                got.len()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A provider's sandbox and the configuration its plugin runs with: runs plugin operations
/// against it and records what each got.
struct Sandbox {
    base_url: String,
    config: Vec<(&'static str, String)>,
    client: reqwest::Client,
    handle: Handle,
}

impl Sandbox {
    fn new(runtime: &Runtime, handle: &SandboxHandle, config: &[(&'static str, &str)]) -> Self {
        let base_url = handle.base_url();
        let mut config: Vec<_> = config.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        config.push(("base_url", base_url.clone()));
        Self {
            base_url,
            config,
            client: reqwest::Client::new(),
            handle: runtime.handle().clone(),
        }
    }

    /// Runs `operation` on a fresh host (clock now, empty storage) whose HTTP calls go to the
    /// sandbox; answers the host's clock and what each call got, as the answer targets read it.
    fn record<T>(&self, operation: impl FnOnce(&FakeHost) -> T) -> (i64, T, Answers) {
        let answers: Arc<Mutex<Answers>> = Arc::default();
        let (client, handle, kept) = (self.client.clone(), self.handle.clone(), answers.clone());
        let mut host = FakeHost::new()
            .with_now_ms(now_ms())
            .with_responder(move |req| {
                let answer = handle.block_on(forward(&client, req));
                let head = match &answer {
                    Ok(response) => head(response),
                    Err(e) => format!("!transport {e:?}"),
                };
                let body = answer.as_ref().map(|r| r.body.clone()).unwrap_or_default();
                lock(&kept).push((head, body));
                answer
            });
        for (key, value) in &self.config {
            host.set_config(key, value);
        }
        let now = host_now(&host);
        let result = operation(&host);
        let answers = lock(&answers).clone();
        (now, result, answers)
    }

    /// A control call (`/_sandbox/...`); its answer's JSON.
    fn control(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value> {
        let url = format!("{}{path}", self.base_url);
        self.handle.block_on(async {
            let response = self
                .client
                .request(method, &url)
                .json(&body)
                .send()
                .await
                .with_context(|| format!("calling {url}"))?;
            let status = response.status();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("{url}: {status} {answer}");
            }
            Ok(answer)
        })
    }

    fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.control(reqwest::Method::POST, path, body)
    }

    fn fault(&self, spec: Value) -> Result<()> {
        self.post("/_sandbox/faults", spec).map(drop)
    }
}

fn host_now(host: &FakeHost) -> i64 {
    use refundry_sdk::Host as _;
    host.now_ms()
}

async fn forward(client: &reqwest::Client, req: &Request) -> Result<Response, HttpError> {
    let method = reqwest::Method::from_bytes(req.method.as_str().as_bytes())
        .map_err(|e| HttpError::InvalidRequest(e.to_string()))?;
    let mut builder = client.request(method, &req.url);
    for (name, value) in &req.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = &req.body {
        builder = builder.body(body.clone());
    }
    let response = builder
        .send()
        .await
        .map_err(|e| HttpError::Transport(e.to_string()))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_owned(), value)
        })
        .collect();
    let body = response
        .bytes()
        .await
        .map_err(|e| HttpError::Transport(e.to_string()))?
        .to_vec();
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// An answer's head as the answer targets read it: the status, then `name: value` lines.
fn head(response: &Response) -> String {
    let mut head = response.status.to_string();
    for (name, value) in &response.headers {
        head.push_str(&format!("\n{name}: {value}"));
    }
    head
}

fn create_params<'a>(
    external_id: &'a str,
    transaction: &'a str,
    amount: &'a str,
    currency: &'a str,
    order_id: &'a str,
) -> [&'a str; 6] {
    [
        external_id,
        transaction,
        amount,
        currency,
        "customer_return",
        order_id,
    ]
}

fn refund_request(params: &[&str; 6]) -> RefundRequest {
    let optional = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    RefundRequest {
        external_refund_id: params[0].to_owned(),
        original_transaction_id: params[1].to_owned(),
        amount: Money {
            amount_minor: params[2].parse().unwrap_or(0),
            currency: params[3].to_owned(),
        },
        reason: optional(params[4]),
        order_id: optional(params[5]),
    }
}

/// The operations of one provider, run against its sandbox and kept as seeds of `target`.
struct Operations<'s, P> {
    sandbox: &'s Sandbox,
    target: &'static str,
    provider: std::marker::PhantomData<P>,
}

impl<P: Provider> Operations<'_, P> {
    /// `create-refund`; the provider's refund id when it made one.
    fn create(&self, corpus: &mut Corpus, name: &str, params: [&str; 6]) -> Option<String> {
        let (now, result, answers) = self
            .sandbox
            .record(|host| P::create_refund(host, refund_request(&params)));
        corpus.add(self.target, name, seed(CREATE, now, &params, &answers));
        result.ok().map(|r| r.provider_refund_id)
    }

    fn get(&self, corpus: &mut Corpus, name: &str, lookup: RefundLookup) {
        let (op, id) = match &lookup {
            RefundLookup::ProviderRefundId(id) => (GET_BY_PROVIDER_ID, id.clone()),
            RefundLookup::ExternalRefundId(id) => (GET_BY_EXTERNAL_ID, id.clone()),
        };
        let (now, _, answers) = self
            .sandbox
            .record(|host| P::get_refund(host, lookup, None));
        corpus.add(self.target, name, seed(op, now, &[&id], &answers));
    }

    /// `list-refunds` over the last and next hour; the next page's cursor.
    fn list(&self, corpus: &mut Corpus, name: &str, cursor: Option<&str>) -> Option<String> {
        let now = now_ms();
        let range = TimeRange {
            from: now - 3_600_000,
            to: now + 3_600_000,
        };
        let (now, result, answers) = self
            .sandbox
            .record(|host| P::list_refunds(host, range, cursor.map(str::to_owned)));
        let (from, to) = (range.from.to_string(), range.to.to_string());
        let params = [from.as_str(), to.as_str(), cursor.unwrap_or("")];
        corpus.add(self.target, name, seed(LIST, now, &params, &answers));
        if cursor.is_none() {
            self.edges(corpus, now, &answers);
        }
        result.ok().and_then(|page| page.next_cursor)
    }

    /// Hand-made seeds beside the recorded ones: the list's real answer to ranges at the ends
    /// of what the contract's `s64` times hold, an empty range and one too long, and a create
    /// answer to the largest amount.
    fn edges(&self, corpus: &mut Corpus, now: i64, answers: &Answers) {
        let (max, min) = (i64::MAX.to_string(), i64::MIN.to_string());
        let below_max = (i64::MAX - 1_000).to_string();
        let above_min = (i64::MIN + 1_000).to_string();
        let day = 86_400_000;
        let (start, long_end) = (now.to_string(), (now + 32 * day).to_string());
        for (name, from, to) in [
            ("edge-list-max", below_max.as_str(), max.as_str()),
            ("edge-list-min", min.as_str(), above_min.as_str()),
            ("edge-list-empty", start.as_str(), start.as_str()),
            ("edge-list-too-long", start.as_str(), long_end.as_str()),
        ] {
            corpus.add(self.target, name, seed(LIST, now, &[from, to, ""], answers));
        }
        let params = ["r-edge", "txn_edge", max.as_str(), "KES", "", "ORDER-EDGE"];
        corpus.add(
            self.target,
            "edge-create-max",
            seed(CREATE, now, &params, answers),
        );
    }
}

fn seed(op: u8, now: i64, params: &[&str], answers: &Answers) -> Vec<u8> {
    let answers: Vec<(&str, &[u8])> = answers
        .iter()
        .map(|(h, b)| (h.as_str(), b.as_slice()))
        .collect();
    corpus::answer::encode(op, now, params, &answers)
}

/// MFS Africa: every answer of the spec (new, replay, each error, faults), lookups, a list, and
/// status moves; answers how many webhooks the moves send.
fn mfs_africa_answers(
    runtime: &Runtime,
    handle: &SandboxHandle,
    corpus: &mut Corpus,
) -> Result<usize> {
    use reqwest::Method;
    let sandbox = Sandbox::new(
        runtime,
        handle,
        &[
            ("api_key", corpus::mfs_africa::API_KEY),
            ("api_secret", corpus::mfs_africa::API_SECRET),
            ("webhook_secret", corpus::mfs_africa::WEBHOOK_SECRET),
        ],
    );
    let ops = Operations::<MfsAfrica> {
        sandbox: &sandbox,
        target: "mfs_africa_answer",
        provider: std::marker::PhantomData,
    };
    let old = (Utc::now() - chrono::Duration::days(200)).to_rfc3339();
    // An hour ago: a portal refund made this second must not predate its payment.
    let recent = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    for (id, amount, currency, extra) in [
        (
            "txn_fuzz_1",
            "5000.00",
            "KES",
            json!({"completed_at": recent}),
        ),
        (
            "txn_fuzz_ugx",
            "100000",
            "UGX",
            json!({"completed_at": recent}),
        ),
        (
            "txn_fuzz_unsettled",
            "100.00",
            "KES",
            json!({"settled": false}),
        ),
        (
            "txn_fuzz_old",
            "100.00",
            "KES",
            json!({"completed_at": old}),
        ),
    ] {
        let mut body = json!({"transaction_id": id, "amount": amount, "currency": currency});
        body.as_object_mut()
            .context("an object")?
            .extend(extra.as_object().cloned().unwrap_or_default());
        sandbox.post("/_sandbox/transactions", body)?;
    }
    let created = ops.create(
        corpus,
        "create-201",
        create_params("r-fuzz-1", "txn_fuzz_1", "150000", "KES", ""),
    );
    let first = created.context("the first refund was not created")?;
    ops.create(
        corpus,
        "create-replay-200",
        create_params("r-fuzz-1", "txn_fuzz_1", "150000", "KES", ""),
    );
    ops.create(
        corpus,
        "create-409",
        create_params("r-fuzz-1", "txn_fuzz_1", "160000", "KES", ""),
    );
    ops.create(
        corpus,
        "create-422-amount",
        create_params("r-fuzz-2", "txn_fuzz_1", "900000", "KES", ""),
    );
    ops.create(
        corpus,
        "create-422-currency",
        create_params("r-fuzz-3", "txn_fuzz_1", "1000", "UGX", ""),
    );
    ops.create(
        corpus,
        "create-404",
        create_params("r-fuzz-4", "txn_missing", "1000", "KES", ""),
    );
    ops.create(
        corpus,
        "create-422-unsettled",
        create_params("r-fuzz-5", "txn_fuzz_unsettled", "1000", "KES", ""),
    );
    ops.create(
        corpus,
        "create-422-window",
        create_params("r-fuzz-6", "txn_fuzz_old", "1000", "KES", ""),
    );
    let ugx = ops
        .create(
            corpus,
            "create-201-ugx",
            create_params("r-fuzz-7", "txn_fuzz_ugx", "5000", "UGX", ""),
        )
        .context("the UGX refund was not created")?;
    for (name, fault) in [
        (
            "create-429",
            json!({"kind": "status", "status": 429, "count": 1, "retry_after": 7}),
        ),
        (
            "create-500",
            json!({"kind": "status", "status": 500, "count": 1}),
        ),
        (
            "create-503",
            json!({"kind": "status", "status": 503, "count": 1}),
        ),
        (
            "create-unknown-code",
            json!({"kind": "error", "status": 418, "code": "teapot", "message": "odd", "count": 1}),
        ),
    ] {
        sandbox.fault(fault)?;
        ops.create(
            corpus,
            name,
            create_params("r-fuzz-8", "txn_fuzz_1", "2500", "KES", ""),
        );
    }
    ops.get(
        corpus,
        "get-200",
        RefundLookup::ProviderRefundId(first.clone()),
    );
    ops.get(
        corpus,
        "get-404",
        RefundLookup::ProviderRefundId("rfnd_missing".into()),
    );
    ops.get(
        corpus,
        "get-external-200",
        RefundLookup::ExternalRefundId("r-fuzz-1".into()),
    );
    ops.get(
        corpus,
        "get-external-empty",
        RefundLookup::ExternalRefundId("r-none".into()),
    );
    sandbox.fault(json!({"kind": "status", "status": 503, "count": 1, "retry_after": 2}))?;
    ops.get(
        corpus,
        "get-503",
        RefundLookup::ProviderRefundId(first.clone()),
    );

    let mut moves = 0;
    for (id, body) in [
        (&first, json!({"status": "processed"})),
        (&first, json!({"status": "reversed"})),
        (
            &ugx,
            json!({"status": "failed", "failure_reason": "wallet_closed"}),
        ),
    ] {
        sandbox.post(&format!("/_sandbox/refunds/{id}/status"), body)?;
        moves += 1;
    }
    ops.get(
        corpus,
        "get-reversed",
        RefundLookup::ProviderRefundId(first),
    );
    ops.get(
        corpus,
        "get-failed",
        RefundLookup::ExternalRefundId("r-fuzz-7".into()),
    );
    for n in 0..4 {
        let body = json!({"original_transaction_id": "txn_fuzz_1", "amount_minor": 100 + n, "currency": "KES", "reason": "portal"});
        sandbox.post("/_sandbox/portal-refunds", body)?;
    }
    ops.list(corpus, "list-200", None);
    let listed = sandbox.control(Method::GET, "/_sandbox/refunds", Value::Null)?;
    if let Some(second) = listed["data"][1]["refund_id"].as_str() {
        ops.list(corpus, "list-after", Some(second));
    }
    sandbox.fault(json!({"kind": "status", "status": 500, "count": 1}))?;
    ops.list(corpus, "list-500", None);
    Ok(moves)
}

/// PagoEfectivo: the authorization, every answer of the spec, a token rejected once and for
/// good, lookups, a list and status moves; answers how many notifications the moves send.
fn pagoefectivo_answers(
    runtime: &Runtime,
    handle: &SandboxHandle,
    corpus: &mut Corpus,
) -> Result<usize> {
    let id_service = corpus::pagoefectivo::ID_SERVICE.to_string();
    let sandbox = Sandbox::new(
        runtime,
        handle,
        &[
            ("id_service", &id_service),
            ("access_key", corpus::pagoefectivo::ACCESS_KEY),
            ("secret_key", corpus::pagoefectivo::SECRET_KEY),
        ],
    );
    let ops = Operations::<PagoEfectivo> {
        sandbox: &sandbox,
        target: "pagoefectivo_answer",
        provider: std::marker::PhantomData,
    };
    let old = (Utc::now() - chrono::Duration::days(200)).to_rfc3339();
    let recent = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    for (id, amount, currency, extra) in [
        ("81234567", "500.00", "PEN", json!({"paid_at": recent})),
        ("81230001", "90.00", "USD", json!({"paid_at": recent})),
        ("81230002", "10.00", "PEN", json!({"paid": false})),
        ("81230003", "10.00", "PEN", json!({"paid_at": old})),
    ] {
        let mut body = json!({"transaction_id": id, "amount": amount, "currency": currency});
        body.as_object_mut()
            .context("an object")?
            .extend(extra.as_object().cloned().unwrap_or_default());
        sandbox.post("/_sandbox/payments", body)?;
    }
    let first = ops
        .create(
            corpus,
            "create-201",
            create_params("pe-fuzz-1", "81234567", "16050", "PEN", "ORDER-1"),
        )
        .context("the first refund was not created")?;
    ops.create(
        corpus,
        "create-replay-200",
        create_params("pe-fuzz-1", "81234567", "16050", "PEN", "ORDER-1"),
    );
    ops.create(
        corpus,
        "create-409",
        create_params("pe-fuzz-1", "81234567", "17000", "PEN", "ORDER-1"),
    );
    ops.create(
        corpus,
        "create-422-amount",
        create_params("pe-fuzz-2", "81234567", "900000", "PEN", "ORDER-2"),
    );
    ops.create(
        corpus,
        "create-422-currency",
        create_params("pe-fuzz-3", "81234567", "1000", "USD", "ORDER-3"),
    );
    ops.create(
        corpus,
        "create-422-window",
        create_params("pe-fuzz-4", "81230003", "100", "PEN", "ORDER-4"),
    );
    ops.create(
        corpus,
        "create-422-unpaid",
        create_params("pe-fuzz-5", "81230002", "100", "PEN", "ORDER-5"),
    );
    ops.create(
        corpus,
        "create-404",
        create_params("pe-fuzz-6", "89999999", "100", "PEN", "ORDER-6"),
    );
    sandbox.post("/_sandbox/balance", json!({"sufficient": false}))?;
    ops.create(
        corpus,
        "create-422-balance",
        create_params("pe-fuzz-7", "81234567", "100", "PEN", "ORDER-7"),
    );
    sandbox.post("/_sandbox/balance", json!({"sufficient": true}))?;
    let usd = ops
        .create(
            corpus,
            "create-201-usd",
            create_params("pe-fuzz-8", "81230001", "1000", "USD", "ORDER-8"),
        )
        .context("the USD refund was not created")?;
    for (name, fault) in [
        (
            "create-500",
            json!({"kind": "status", "status": 500, "count": 1}),
        ),
        (
            "create-503",
            json!({"kind": "status", "status": 503, "count": 1, "retry_after": 3}),
        ),
        (
            "create-106-then-201",
            json!({"kind": "error", "status": 401, "code": "106", "count": 1}),
        ),
    ] {
        sandbox.fault(fault)?;
        ops.create(
            corpus,
            name,
            create_params("pe-fuzz-9", "81234567", "200", "PEN", "ORDER-9"),
        );
    }
    // Tokens that expire at once: the call is rejected, and again after authorizing anew.
    sandbox.post("/_sandbox/token-lifetime", json!({"seconds": 0}))?;
    ops.create(
        corpus,
        "create-106-twice",
        create_params("pe-fuzz-10", "81234567", "200", "PEN", "ORDER-10"),
    );
    sandbox.post("/_sandbox/token-lifetime", json!({"seconds": 7200}))?;

    ops.get(
        corpus,
        "get-200",
        RefundLookup::ProviderRefundId(first.clone()),
    );
    ops.get(
        corpus,
        "get-404",
        RefundLookup::ProviderRefundId("PE-RF-000000000".into()),
    );
    ops.get(
        corpus,
        "get-external-200",
        RefundLookup::ExternalRefundId("pe-fuzz-1".into()),
    );
    ops.get(
        corpus,
        "get-external-empty",
        RefundLookup::ExternalRefundId("pe-none".into()),
    );

    let mut moves = 0;
    for (id, body) in [
        (&first, json!({"status": "completed"})),
        (&first, json!({"status": "reverted"})),
        (
            &usd,
            json!({"status": "rejected", "status_reason": "cuenta cerrada"}),
        ),
    ] {
        sandbox.post(&format!("/_sandbox/refunds/{id}/status"), body)?;
        moves += 1;
    }
    ops.get(
        corpus,
        "get-reverted",
        RefundLookup::ProviderRefundId(first),
    );
    ops.get(
        corpus,
        "get-rejected",
        RefundLookup::ExternalRefundId("pe-fuzz-8".into()),
    );
    for n in 0..4 {
        let body = json!({"transaction_id": "81234567", "amount_minor": 100 + n, "currency": "PEN", "reason": "back office"});
        sandbox.post("/_sandbox/portal-refunds", body)?;
    }
    ops.list(corpus, "list-200", None);
    ops.list(corpus, "list-page-2", Some("2"));
    sandbox.fault(json!({"kind": "status", "status": 503, "count": 1}))?;
    ops.list(corpus, "list-503", None);
    Ok(moves)
}

/// Each delivery twice: signed by the target (the body, with the delivery's event id and time)
/// and raw (the delivery's own headers and signature).
fn webhook_seeds(deliveries: &[Delivery], corpus: &mut Corpus) {
    for (i, d) in deliveries.iter().enumerate() {
        let header = |name: &str| {
            d.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map_or("", |(_, v)| v.as_str())
        };
        let target = match d.provider.as_str() {
            "mfs-africa" => "mfs_africa_webhook",
            _ => "pagoefectivo_webhook",
        };
        let raw: String = d
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect();
        let event_id = header("x-mfs-event-id");
        let signed = webhook::encode(0, d.received_ms, "0", event_id, &d.body);
        corpus.add(target, &format!("signed-{i}"), signed);
        let raw = webhook::encode(webhook::RAW, d.received_ms, &raw, "", &d.body);
        corpus.add(target, &format!("raw-{i}"), raw);
    }
}

/// Requests of the host's API: each route with good and bad parameters and bodies, with and
/// without a token, and the sandboxes' webhook deliveries as the providers would post them.
fn rest_seeds(deliveries: &[Delivery], corpus: &mut Corpus) {
    let refunds = [("Authorization", format!("Bearer {}", rest::REFUNDS_TOKEN))];
    let admin = [("Authorization", format!("Bearer {}", rest::ADMIN_TOKEN))];
    let json = ("Content-Type", "application/json".to_owned());
    let create = |amount: i64| {
        json!({
            "provider": "mfs-africa", "external_refund_id": format!("ext-{amount}"),
            "original_transaction_id": "txn_fuzz_1", "amount": amount, "currency": "KES",
            "reason": "customer_return", "order_id": "ORDER-1",
            "original": {"amount": 500_000, "currency": "KES",
                "completed_at": "2026-11-25T10:00:00Z", "settled": true}
        })
        .to_string()
    };
    let mut requests: Vec<ApiRequest> = vec![
        ("GET", "/healthz".into(), vec![], String::new()),
        ("GET", "/metrics".into(), admin.to_vec(), String::new()),
        ("GET", "/v1/plugins".into(), admin.to_vec(), String::new()),
        ("GET", "/v1/refunds".into(), vec![], String::new()),
        ("GET", "/v1/nowhere".into(), refunds.to_vec(), String::new()),
        ("PUT", "/v1/refunds".into(), refunds.to_vec(), String::new()),
        (
            "GET",
            "/v1/refunds?provider=mfs-africa&status=pending&created_from=2026-11-01T00:00:00Z\
             &created_to=2026-12-01T00:00:00%2B03:00&limit=10&cursor=rf_0001&format=json"
                .into(),
            refunds.to_vec(),
            String::new(),
        ),
        ("GET", "/v1/refunds?format=csv".into(), refunds.to_vec(), String::new()),
        ("GET", "/v1/refunds?format=csv&limit=2".into(), refunds.to_vec(), String::new()),
        ("GET", "/v1/refunds?limit=501&sort=asc".into(), refunds.to_vec(), String::new()),
        ("GET", "/v1/refunds/rf_0001".into(), refunds.to_vec(), String::new()),
        ("GET", "/v1/refunds/rf_%30001".into(), refunds.to_vec(), String::new()),
        ("GET", "/v1/refunds/rf_0001/exchanges".into(), admin.to_vec(), String::new()),
        ("GET", "/v1/refunds/rf_0001/exchanges".into(), refunds.to_vec(), String::new()),
        ("GET", "/v1/events?refund_id=rf_0001&limit=5&cursor=42".into(), refunds.to_vec(), String::new()),
        ("GET", "/v1/reconciliations?provider=mfs-africa&limit=5&cursor=rec_1".into(), refunds.to_vec(), String::new()),
        ("GET", "/v1/reconciliations/rec_1".into(), refunds.to_vec(), String::new()),
        (
            "POST",
            "/v1/reconciliations".into(),
            vec![admin[0].clone(), json.clone()],
            json!({"provider": "mfs-africa", "from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}).to_string(),
        ),
        ("POST", "/v1/plugins/mfs-africa/versions".into(), admin.to_vec(), "\0asm\x0d\0\x01\0".into()),
        (
            "POST",
            "/v1/plugins/mfs-africa/activate".into(),
            vec![admin[0].clone(), json.clone()],
            json!({"version": "0.2.0"}).to_string(),
        ),
        ("DELETE", "/v1/plugins/mfs-africa/versions/0.1.0".into(), admin.to_vec(), String::new()),
        ("POST", "/v1/refunds".into(), vec![refunds[0].clone(), json.clone()], r#"{"provider": "mfs-africa", "amount": "12"}"#.into()),
        ("POST", "/v1/refunds".into(), vec![refunds[0].clone(), json.clone()], "{not json".into()),
    ];
    for amount in 150_000..150_005 {
        requests.push((
            "POST",
            "/v1/refunds".into(),
            vec![refunds[0].clone(), json.clone()],
            create(amount),
        ));
    }
    for (i, (method, target, headers, body)) in requests.iter().enumerate() {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        corpus.add(
            "rest_request",
            &format!("request-{i}"),
            rest::encode(method, target, &headers, body.as_bytes()),
        );
    }
    for (i, d) in deliveries.iter().enumerate() {
        let headers: Vec<(&str, &str)> = d
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let target = format!("/v1/webhooks/{}", d.provider);
        corpus.add(
            "rest_request",
            &format!("webhook-{i}"),
            rest::encode("POST", &target, &headers, &d.body),
        );
    }
}
