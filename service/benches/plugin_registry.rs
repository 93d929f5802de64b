//! What changing a provider's plugin version costs: activating a new version, loading a
//! version from the precompiled artifact cache instead of compiling it, and starting the host with
//! its versions cached. A benchmark, not a test: but every column checks, outside its timing, that
//! it took the path it is named after, so no column can measure a shortcut or an error.
//!
//! - `plugin_registry/activation`, against the MFS Africa sandbox running in-process on loopback:
//!   - `load_activate_first_refund`: [`Registry::load`] of MFS Africa 0.3.0
//!     (`mfs-africa-next.wasm`, whose artifact is already in the cache), [`Registry::activate`]
//!     of it, and the first `create_refund` through the host. Between iterations, untimed, the
//!     first version is activated again and 0.3.0 removed (removing deletes its artifact, which
//!     is put back: the upload of a version whose artifact is cached is what is measured), so
//!     that every timed iteration really loads. Checked each time: the load was new and came from the cache, the activation swapped
//!     the first version for 0.3.0, the refund was created; and at the end, the sandbox's record
//!     of the `X-Plugin-Version` header says 0.3.0 sent every one of these refunds.
//!   - `refund_on_active_version`: the same `create_refund` with 0.3.0 already active, the
//!     baseline: the difference is what activation adds to the first request.
//! - `plugin_registry/load/<provider>`: [`ArtifactCache::compile`] of the provider's component
//!   with its artifact in the cache (`from_cache`: read, digest checked, deserialized) and with an
//!   empty cache folder, a fresh one per iteration (`compiled`: wasmtime compiles the component
//!   and the artifact is written). A registry load adds linking, a `describe()` and a ledger write
//!   to either path.
//! - `plugin_registry/cold_start`: [`Providers::start`] with both providers (MFS Africa and
//!   PagoEfectivo, one version each) and a database file that already holds their versions, with
//!   their artifacts cached (`cached`) and with an empty cache folder, a fresh one per iteration
//!   (`compiled`, the baseline). This is the host's start inside a process (engine, database,
//!   registry); starting the process itself and parsing the configuration are not included.
//!
//! Each refund is made against a transaction of its own, seeded just before it (untimed), so the
//! sandbox's work per refund does not grow with the number of refunds. Everything runs on one
//! current-thread tokio runtime, the sandbox included; compilation and SQLite run on its blocking
//! pool, as in the service. The files (databases, caches) live in a folder under the system's
//! temporary folder, removed at the end; they stay in the OS page cache, so "cold" means a new
//! host's work, not a cold disk.
//!
//! Needs the plugin components (`cargo xtask build-plugins`: `mfs-africa`, `mfs-africa-next` and
//! `pagoefectivo`), then `cargo bench -p refundry-service --bench plugin_registry`.
//!
//! [`Registry::load`]: refundry_service::registry::Registry::load
//! [`Registry::activate`]: refundry_service::registry::Registry::activate

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use refundry_runtime::Money;
use refundry_runtime::Refund;
use refundry_runtime::RefundRequest;
use refundry_runtime::RefundStatus;
use refundry_runtime::component::sha256_hex;
use refundry_runtime::engine::Engine;
use refundry_runtime::limits::EngineLimits;
use refundry_sandbox::{SandboxHandle, mfs_africa};
use refundry_service::Config;
use refundry_service::OperationError;
use refundry_service::Providers;
use refundry_service::registry::{ArtifactCache, ArtifactKey, LoadedFrom, RegistryError};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

const MFS: &str = "mfs-africa";
const PAGOEFECTIVO: &str = "pagoefectivo";
/// The component of MFS Africa's second version (`describe()` says 0.3.0; it also sends
/// `X-Plugin-Version: 0.3.0`, which the sandbox records).
const MFS_NEXT: &str = "mfs-africa-next";

/// The MFS Africa sandbox's credentials, given to the host as well.
const API_KEY: &str = "bench-api-key";
const API_SECRET: &str = "bench-api-secret";
const WEBHOOK_SECRET: &str = "bench-webhook-secret";

/// Where the cold-start host's providers would be: never contacted (start-up makes no request).
const UNUSED_BASE_URL: &str = "http://127.0.0.1:1";

/// Prefixes of the external refund ids, by the column that made the refund.
const PROBE: &str = "probe";
const ACTIVATION: &str = "activation";
const BASELINE: &str = "baseline";

/// Numbers the refunds, transactions and fresh cache folders of this run.
static SEQ: AtomicU64 = AtomicU64::new(0);

fn next_seq() -> u64 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// The component `cargo xtask build-plugins` wrote for `name`.
fn plugin_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("plugins").join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask build-plugins` first",
        path.display()
    );
    path
}

fn read_plugin(name: &str) -> Vec<u8> {
    let path = plugin_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A path as a TOML string.
fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// A host configuration: this database and artifact folder, then the providers' tables.
fn host_config(db: &Path, cache: &Path, providers: &str) -> Config {
    let toml = format!(
        "[database]\npath = {}\n[plugins]\ncache = {}\n{providers}",
        toml_path(db),
        toml_path(cache)
    );
    Config::parse(
        &toml,
        Path::new("plugin_registry.toml"),
        Path::new("/"),
        |_| None,
    )
    .expect("the benchmark's config parses")
}

fn mfs_toml(plugin: &str, base_url: &str) -> String {
    format!(
        "[providers.mfs-africa]\nplugin = {}\n[providers.mfs-africa.settings]\n\
         base_url = \"{base_url}\"\napi_key = \"{API_KEY}\"\n[providers.mfs-africa.secrets]\n\
         api_secret = \"{API_SECRET}\"\nwebhook_secret = \"{WEBHOOK_SECRET}\"\n",
        toml_path(&plugin_path(plugin))
    )
}

fn pagoefectivo_toml(base_url: &str) -> String {
    format!(
        "[providers.pagoefectivo]\nplugin = {}\n[providers.pagoefectivo.settings]\n\
         base_url = \"{base_url}\"\nid_service = \"1024\"\naccess_key = \"AK1\"\n\
         [providers.pagoefectivo.secrets]\nsecret_key = \"bench-secret-key\"\n",
        toml_path(&plugin_path(PAGOEFECTIVO))
    )
}

/// The run's folder under the system's temporary folder; removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("refundry-bench-registry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the scratch folder is created");
        Self(dir)
    }

    /// A folder name not used yet in this run (not created: the cache creates it on writing).
    fn fresh(&self, what: &str) -> PathBuf {
        self.0.join(format!("{what}-{}", next_seq()))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Checks that a refund was created, so that no column measures an error.
fn created(column: &str, result: Result<Refund, OperationError>) {
    match result {
        Ok(refund) => assert!(
            refund.status == RefundStatus::Pending && refund.amount.amount_minor == 1_500,
            "{column}: unexpected refund {refund:?}"
        ),
        Err(e) => panic!("{column}: create_refund did not succeed: {e}"),
    }
}

/// The activation columns' world: the MFS Africa sandbox, and a host (file database, artifact
/// folder) whose MFS Africa provider starts on its first version and can load 0.3.0.
struct Activation {
    sandbox: SandboxHandle,
    control: reqwest::Client,
    host: Providers,
    /// `mfs-africa-next.wasm`, as uploaded.
    next: Vec<u8>,
    /// The first version (`mfs-africa.wasm`'s `describe()`).
    base_version: String,
    /// The second one (`mfs-africa-next.wasm`'s).
    next_version: String,
    /// The second version's artifact file in the cache, and its bytes.
    next_artifact: (PathBuf, Vec<u8>),
    /// Timed activations made (warm-up included), to compare with the sandbox's refunds.
    activations: AtomicU64,
    /// The registry's own `load_ms` of each timed load (artifact read, link, `describe()`), to
    /// tell how much of an activation that part is.
    load_ms: std::sync::Mutex<Vec<f64>>,
}

impl Activation {
    async fn start(scratch: &Scratch) -> Self {
        let sandbox = mfs_africa::start(
            mfs_africa::Config::new(API_KEY, API_SECRET, WEBHOOK_SECRET),
            "127.0.0.1:0".parse().expect("a socket address"),
        )
        .await
        .expect("the MFS Africa sandbox starts");
        let config = host_config(
            &scratch.0.join("activation.db"),
            &scratch.0.join("activation-cache"),
            &mfs_toml(MFS, &sandbox.base_url()),
        );
        let host = Providers::start(&config).await.expect("the host starts");
        let registry = host.registry();
        let base_version = registry
            .active(MFS)
            .expect("MFS Africa is configured")
            .version()
            .to_owned();
        // The first load of 0.3.0 compiles it and writes its artifact: from here on, a load of
        // it is a load from the cache.
        let next = read_plugin(MFS_NEXT);
        let loaded = registry
            .load(Some(MFS), next.clone())
            .await
            .expect("mfs-africa-next.wasm loads as a version of mfs-africa");
        assert_eq!(loaded.version.loaded_from, LoadedFrom::Compiled);
        let next_version = loaded.version.version;
        let artifact_path = ArtifactCache::new(
            Some(scratch.0.join("activation-cache")),
            ArtifactKey::random(),
        )
        .path(host.engine(), &loaded.version.sha256)
        .expect("the cache has a folder");
        let artifact = std::fs::read(&artifact_path).expect("the first load wrote the artifact");
        assert_ne!(
            base_version, next_version,
            "mfs-africa-next.wasm must be another version"
        );
        let fixture = Self {
            sandbox,
            control: reqwest::Client::new(),
            host,
            next,
            base_version,
            next_version,
            next_artifact: (artifact_path, artifact),
            activations: AtomicU64::new(0),
            load_ms: std::sync::Mutex::default(),
        };
        fixture.reset().await;
        // One refund on the first version: the sandbox must record no version header for it,
        // or its record could not tell the versions apart.
        let req = fixture.request(PROBE).await;
        created(PROBE, fixture.host.create_refund(MFS, &req).await);
        fixture
    }

    /// A refund request against a transaction of its own, seeded now.
    async fn request(&self, prefix: &str) -> RefundRequest {
        let n = next_seq();
        let transaction = format!("txn-{prefix}-{n}");
        let url = format!("{}/_sandbox/transactions", self.sandbox.base_url());
        let answer = self
            .control
            .post(url)
            // The host's reqwest has no `json` feature: the body is serialized here.
            .header("content-type", "application/json")
            .body(
                json!({"transaction_id": transaction, "amount": "100.00", "currency": "KES"})
                    .to_string(),
            )
            .send()
            .await
            .expect("the sandbox answers");
        assert!(answer.status().is_success(), "seeding: {}", answer.status());
        RefundRequest {
            original_transaction_id: transaction,
            external_refund_id: format!("{prefix}-{n}"),
            amount: Money {
                amount_minor: 1_500,
                currency: "KES".into(),
            },
            reason: Some("customer_return".into()),
            order_id: None,
        }
    }

    /// The first version active and 0.3.0 not loaded, so that the next load of it is real.
    async fn reset(&self) {
        let registry = self.host.registry();
        let active = registry.active(MFS).expect("MFS Africa is configured");
        if active.version() != self.base_version {
            registry
                .activate(MFS, &self.base_version)
                .await
                .expect("the first version activates");
        }
        match registry.remove(MFS, &self.next_version).await {
            Ok(()) | Err(RegistryError::UnknownVersion { .. }) => {}
            Err(e) => panic!("removing {}: {e}", self.next_version),
        }
        // Removing a version deletes its artifact; the upload measured is of a cached one.
        let (path, artifact) = &self.next_artifact;
        std::fs::write(path, artifact).expect("the artifact is put back");
    }

    /// One timed activation: upload of 0.3.0 (artifact cached) to its first refund served.
    async fn activate_and_refund(&self) -> Duration {
        self.reset().await;
        let req = self.request(ACTIVATION).await;
        let bytes = self.next.clone();
        let registry = self.host.registry();

        let start = Instant::now();
        let loaded = registry.load(Some(MFS), bytes).await;
        let activated = registry.activate(MFS, &self.next_version).await;
        let refund = self.host.create_refund(MFS, &req).await;
        let elapsed = start.elapsed();

        self.activations.fetch_add(1, Ordering::Relaxed);
        if let Ok(loaded) = &loaded {
            self.load_ms
                .lock()
                .expect("not poisoned")
                .push(loaded.version.load_ms);
        }
        let loaded = loaded.expect("0.3.0 loads");
        assert!(
            loaded.new
                && loaded.version.loaded_from == LoadedFrom::Cache
                && loaded.version.version == self.next_version,
            "the timed load must be a new load from the cache: {loaded:?}"
        );
        let activated = activated.expect("0.3.0 activates");
        assert_eq!(
            (activated.previous.as_str(), activated.active.as_str()),
            (self.base_version.as_str(), self.next_version.as_str())
        );
        created(ACTIVATION, refund);
        elapsed
    }

    /// One timed refund on the version already active.
    async fn refund(&self) -> Duration {
        let req = self.request(BASELINE).await;
        let start = Instant::now();
        let refund = self.host.create_refund(MFS, &req).await;
        let elapsed = start.elapsed();
        created(BASELINE, refund);
        elapsed
    }

    /// 0.3.0 loaded and active, for the baseline.
    async fn activate_next(&self) {
        let registry = self.host.registry();
        registry
            .load(Some(MFS), self.next.clone())
            .await
            .expect("0.3.0 loads");
        registry
            .activate(MFS, &self.next_version)
            .await
            .expect("0.3.0 activates");
    }

    /// The sandbox's word on who sent each refund: the probe no version header, every refund of
    /// the activation and baseline columns 0.3.0's. Prints the counts.
    async fn check_sandbox(&self) {
        let url = format!("{}/_sandbox/refunds", self.sandbox.base_url());
        let body = self
            .control
            .get(url)
            .send()
            .await
            .expect("the sandbox answers")
            .bytes()
            .await
            .expect("the sandbox's refund list");
        let refunds: Value =
            serde_json::from_slice(&body).expect("the sandbox's refund list is JSON");
        let refunds = refunds["data"].as_array().expect("a refund list");
        let mut counts = [(PROBE, 0u64), (ACTIVATION, 0), (BASELINE, 0)];
        for refund in refunds {
            let id = refund["external_refund_id"].as_str().unwrap_or_default();
            let sent_by = &refund["created_by_plugin_version"];
            let (prefix, count) = counts
                .iter_mut()
                .find(|(prefix, _)| id.starts_with(&format!("{prefix}-")))
                .unwrap_or_else(|| panic!("a refund the benchmark did not make: {refund}"));
            let expected = match *prefix {
                PROBE => Value::Null,
                _ => Value::String(self.next_version.clone()),
            };
            assert_eq!(
                *sent_by, expected,
                "refund {id}: the sandbox saw it created by plugin version {sent_by}"
            );
            *count += 1;
        }
        let activations = self.activations.load(Ordering::Relaxed);
        assert_eq!(counts[1].1, activations, "one refund per timed activation");
        println!(
            "activation: the sandbox recorded X-Plugin-Version {} on all {} refunds made right \
             after an activation and all {} baseline refunds, and none on the probe made before",
            self.next_version, counts[1].1, counts[2].1
        );
        let mut load_ms = self.load_ms.lock().expect("not poisoned").clone();
        // `cargo test --benches` runs each benchmark once, without the loads measured here.
        if load_ms.is_empty() {
            return;
        }
        load_ms.sort_by(f64::total_cmp);
        println!(
            "activation: of which the registry's load_ms (artifact read, link, describe()): \
             median {:.3} ms over {} loads",
            load_ms[load_ms.len() / 2],
            load_ms.len()
        );
    }
}

fn bench_activation(c: &mut Criterion, rt: &Runtime, scratch: &Scratch) {
    let fixture = rt.block_on(Activation::start(scratch));
    let mut group = c.benchmark_group("plugin_registry/activation");
    group.bench_function("load_activate_first_refund", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let fixture = &fixture;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += fixture.activate_and_refund().await;
                }
                total
            }
        });
    });
    rt.block_on(fixture.activate_next());
    group.bench_function("refund_on_active_version", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let fixture = &fixture;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += fixture.refund().await;
                }
                total
            }
        });
    });
    group.finish();
    rt.block_on(async {
        fixture.check_sandbox().await;
        fixture.sandbox.shutdown().await;
    });
}

/// One timed [`ArtifactCache::compile`], checked to have taken the `expected` path.
fn time_compile(
    engine: &Engine,
    cache: &ArtifactCache,
    bytes: &[u8],
    sha: &str,
    expected: LoadedFrom,
) -> Duration {
    let start = Instant::now();
    let result = cache.compile(engine, bytes, sha);
    let elapsed = start.elapsed();
    let (component, from) = result.expect("the component compiles");
    assert_eq!(from, expected);
    drop(component);
    elapsed
}

fn bench_load(c: &mut Criterion, scratch: &Scratch) {
    let engine = Engine::new(EngineLimits::default()).expect("the engine starts");
    for provider in [MFS, PAGOEFECTIVO] {
        let bytes = read_plugin(provider);
        let sha = sha256_hex(&bytes);
        let warm = ArtifactCache::new(Some(scratch.fresh("load-cache")), ArtifactKey::random());
        // Fills the cache: from here on, `warm` has the artifact.
        time_compile(&engine, &warm, &bytes, &sha, LoadedFrom::Compiled);

        let mut group = c.benchmark_group(format!("plugin_registry/load/{provider}"));
        // Hundreds of milliseconds per compilation: the same number of iterations per sample.
        group.sampling_mode(SamplingMode::Flat);
        group.bench_function("from_cache", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| time_compile(&engine, &warm, &bytes, &sha, LoadedFrom::Cache))
                    .sum()
            });
        });
        group.bench_function("compiled", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let dir = scratch.fresh("load-cold");
                        let cold = ArtifactCache::new(Some(dir.clone()), ArtifactKey::random());
                        let elapsed =
                            time_compile(&engine, &cold, &bytes, &sha, LoadedFrom::Compiled);
                        std::fs::remove_dir_all(&dir).expect("the artifact was written");
                        elapsed
                    })
                    .sum()
            });
        });
        group.finish();
    }
}

/// One timed [`Providers::start`], checked to have loaded each provider's one version the
/// `expected` way.
async fn time_start(config: &Config, expected: LoadedFrom) -> Duration {
    let start = Instant::now();
    let host = Providers::start(config).await;
    let elapsed = start.elapsed();
    let host = host.expect("the host starts");
    let loaded: Vec<_> = host
        .registry()
        .list()
        .into_iter()
        .flat_map(|p| p.versions)
        .map(|v| (v.provider, v.loaded_from))
        .collect();
    assert_eq!(
        loaded,
        [
            (MFS.to_owned(), expected),
            (PAGOEFECTIVO.to_owned(), expected)
        ]
    );
    elapsed
}

fn bench_cold_start(c: &mut Criterion, rt: &Runtime, scratch: &Scratch) {
    let db = scratch.0.join("cold-start.db");
    let providers = mfs_toml(MFS, UNUSED_BASE_URL) + &pagoefectivo_toml(UNUSED_BASE_URL);
    let warm = host_config(&db, &scratch.0.join("cold-start-cache"), &providers);
    // The first start stores both versions in the database and fills the cache.
    rt.block_on(time_start(&warm, LoadedFrom::Compiled));

    let mut group = c.benchmark_group("plugin_registry/cold_start");
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("cached", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let warm = &warm;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += time_start(warm, LoadedFrom::Cache).await;
                }
                total
            }
        });
    });
    group.bench_function("compiled", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (db, providers) = (&db, &providers);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let cache = scratch.fresh("cold-start-empty");
                    let config = host_config(db, &cache, providers);
                    total += time_start(&config, LoadedFrom::Compiled).await;
                    std::fs::remove_dir_all(&cache).expect("the artifacts were written");
                }
                total
            }
        });
    });
    group.finish();
}

fn plugin_registry(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let scratch = Scratch::new();
    bench_activation(c, &rt, &scratch);
    bench_load(c, &scratch);
    bench_cold_start(c, &rt, &scratch);
}

criterion_group! {
    name = benches;
    // The compiling columns take hundreds of milliseconds per iteration: 20 samples keep the
    // whole run to a few minutes on two cores.
    config = Criterion::default().sample_size(20);
    targets = plugin_registry
}
criterion_main!(benches);
