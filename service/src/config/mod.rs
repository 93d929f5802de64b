//! `refundry.toml`: engine limits, HTTP limits, the database, and each provider's plugin and settings.
//!
//! ```toml
//! [engine]
//! deadline_ms = 5000             # per plugin operation, wall time
//! memory_limit_bytes = 16777216  # per plugin instance
//! storage_max_keys = 1000        # per provider's storage, 1 to 1000000
//! storage_max_bytes = 1048576    # per provider's storage, keys and values; 1024 to 1073741824
//! log_max_lines = 200            # per plugin operation, 1 to 100000; then one line says how
//!                                # many were dropped
//!
//! [http]
//! timeout_ms = 10000
//! max_response_bytes = 1048576
//!
//! [database]
//! path = "refundry.db"           # the ledger; relative to this file; ":memory:" for none
//! synchronous = "full"           # every commit synced to disk; "normal" is faster, but the
//!                                # last commits may be lost on a power failure (not on a crash)
//! # or, for several hosts on one ledger, PostgreSQL instead of `path` (see the README):
//! # url = "postgres://refundry@db.internal:5432/refundry"   # or "env:REFUNDRY_DATABASE_URL"
//! # pool_size = 16               # connections per host (1 to 1000)
//! # lease_ms = 30000             # how long a host's claim on shared work (a janitor check, an
//! #                              # event delivery, a scheduled reconciliation) lasts before
//! #                              # another host takes it over (1000 to 3600000)
//!
//! [server]                       # `refundry serve`
//! listen = "127.0.0.1:8700"
//! header_timeout_ms = 10000      # a request's head, from its first byte; a TLS handshake
//!                                # (100 to 600000)
//! body_timeout_ms = 30000        # a request's body, from its head; else 408 (100 to 3600000)
//! idle_timeout_ms = 60000        # a connection with no request under way (100 to 3600000)
//! max_connections = 1024         # open at once; at the cap no more are accepted until one
//!                                # closes (1 to 1000000)
//! [server.tls]                   # HTTPS instead of HTTP (optional); PEM files, relative to
//! cert = "tls/cert.pem"          # this file: the certificate chain, the server's own first,
//! key = "tls/key.pem"            # and its private key (PKCS#8, PKCS#1 or SEC1)
//! [server.tokens.gateway]        # bearer tokens (>= 16 characters) and their scopes
//! token = "env:REFUNDRY_GATEWAY_TOKEN"
//! scopes = ["refunds"]           # "refunds", "admin" and/or "metrics"
//! [server.tokens.prometheus]     # `GET /metrics` only: give Prometheus a token of its own
//! token = "env:REFUNDRY_METRICS_TOKEN"
//! scopes = ["metrics"]
//!
//! [retry]                        # retryable failures while creating a refund
//! attempts = 3
//! backoff_ms = [250, 1000]       # waits between attempts; the last repeats
//! max_wait_ms = 5000             # cap, also on a provider's retry-after
//!
//! [janitor]                      # drives pending and unknown refunds to a final status
//! interval_ms = 1000
//! backoff_ms = [60000, 300000, 1800000, 7200000, 21600000]
//! concurrency = 16
//! reversal_window_days = 30      # processed refunds are checked this long for a reversal
//!                                # (0 to 3650; 0: not after they are processed)
//!
//! [plugins]                      # provider plugin versions (see `refundry plugin --help`)
//! cache = "plugin-cache"         # precompiled artifacts; default: beside the SQLite file
//!                                # (PostgreSQL: beside this file); one per host or shared
//! watch = "plugins"              # load .wasm files put in this folder (optional)
//! watch_interval_ms = 1000
//!
//! [events]                       # the gateway's systems, told of every refund status change
//! url = "https://erp.example/refundry-events"   # or a list of URLs
//! secret = "env:REFUNDRY_EVENTS_SECRET"          # HMAC key of Refundry-Signature (>= 16 chars)
//! interval_ms = 500              # how often the outbox is looked at
//! backoff_ms = [5000, 30000, 120000, 600000, 1800000, 3600000]   # waits between tries
//! give_up_after_ms = 86400000    # an event still undelivered 24 h after it was written is dropped
//! timeout_ms = 10000             # one delivery, connect to answer
//! concurrency = 16
//!
//! [recording]                    # every plugin operation of a refund, for `refundry replay`
//! enabled = true
//! max_operation_bytes = 262144   # about; an operation past it is kept truncated (not replayable);
//!                                # 1024 to 67108864
//! max_total_bytes = 268435456    # all recordings, at least max_operation_bytes; past it the
//!                                # oldest are deleted
//!
//! [reconcile]                    # every provider's own list of refunds against the ledger
//! interval = "1d"                # between two runs of a provider: seconds, or "90s", "15m",
//!                                # "6h", "1d" (1 s to 366 d)
//! window_days = 7                # each run covers the refunds created in the last 7 days (1-366)
//!
//! [providers.mfs-africa]
//! plugin = "../target/plugins/mfs-africa.wasm"   # relative to this file ("native:<id>" links
//!                                                # the plugin crate in: benchmark builds only)
//! [providers.mfs-africa.settings]
//! base_url = "http://127.0.0.1:8080"
//! [providers.mfs-africa.secrets]
//! api_secret = "env:MFS_AFRICA_API_SECRET"       # read from the environment at start-up
//! ```
//! Settings and secrets are both visible to the plugin through `config.get`; secrets are also
//! redacted from every log line and kept out of recordings (a secret stands there as
//! `[secret:<key>]`). A value `env:NAME` in either table is read from the environment,
//! and a missing variable is a start-up error naming it.
//!
//! The service's own secrets (`[server.tokens.*] token`, `[events] secret`) are read by
//! `refundry serve` alone ([`Needs::Service`]): the one-shot commands (`refund`, `plugin`,
//! `export`, `replay`, `batch` in process) load the same file with [`Needs::OneShot`], so their
//! variables need not be set for them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use refundry_ledger::db::{Database, DbError};
use refundry_runtime::limits::{EngineLimits, HttpLimits, PluginQuotas};
use refundry_runtime::secret::Secret;

mod error;
pub mod reconcile;
pub mod recording;

pub use self::error::ConfigError;
use self::error::limit;
pub use self::reconcile::ReconcileSchedule;
pub use self::recording::RecordingConfig;

/// One provider: which plugin runs it and what it is configured with.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Provider id (the table name under `[providers]`); must match the plugin's `describe().id`.
    pub id: String,
    /// Path of the plugin component.
    pub plugin: PathBuf,
    /// `plugin = "native:<name>"`: the plugin crate linked into the host instead of a component
    /// (only in a build with the `native-plugins` feature; the benchmark baseline).
    pub native: Option<String>,
    /// The provider's `base_url`, which bounds where the plugin may send HTTP.
    pub base_url: reqwest::Url,
    /// Plain settings, visible to the plugin.
    pub settings: BTreeMap<String, String>,
    /// Secrets, visible to the plugin and redacted from logs.
    pub secrets: BTreeMap<String, Secret>,
}

impl ProviderConfig {
    /// The value the plugin gets for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.settings
            .get(key)
            .map(String::as_str)
            .or_else(|| self.secrets.get(key).map(Secret::expose))
    }
}

/// The whole host configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Plugin limits.
    pub engine: EngineLimits,
    /// Outbound HTTP limits.
    pub http: HttpLimits,
    /// Each provider's storage quota and log lines per operation.
    pub quotas: PluginQuotas,
    /// SQLite database file (`None` for an in-memory database).
    pub database: Option<PathBuf>,
    /// How commits to it are made durable (`[database] synchronous`, default `full`).
    pub synchronous: refundry_ledger::db::Synchronous,
    /// PostgreSQL instead of the SQLite file (`[database] url`): several hosts on one ledger.
    pub postgres: Option<PostgresConfig>,
    /// Providers by id.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// The REST service.
    pub server: ServerConfig,
    /// Retries of retryable provider failures while creating a refund.
    pub retry: RetryPolicy,
    /// The background task that drives pending and unknown refunds to a final status.
    pub janitor: JanitorConfig,
    /// Plugin versions: the artifact cache, the watched folder.
    pub plugins: PluginsConfig,
    /// Outbound events to the gateway's endpoints.
    pub events: EventsConfig,
    /// Recording of plugin operations, for `refundry replay`.
    pub recording: RecordingConfig,
    /// `[reconcile]`: scheduled reconciliation with every provider's own list.
    pub reconcile: ReconcileSchedule,
}

/// `[events]`: where the outbox delivers an event for every status a refund enters, signed with
/// `secret`, and how it retries.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// The endpoints (none: events are still written to the ledger, and listed by
    /// `GET /v1/events`, but not sent anywhere).
    pub endpoints: Vec<reqwest::Url>,
    /// The key of `Refundry-Signature` (required with any endpoint).
    pub secret: Option<Secret>,
    /// How often the outbox looks for due deliveries (default 500 ms).
    pub interval: Duration,
    /// Wait before the 2nd, 3rd, ... try of a delivery; the last value repeats (default 5 s,
    /// 30 s, 2 min, 10 min, 30 min, 1 h).
    pub backoff: Vec<Duration>,
    /// A delivery still failing this long after its event was written is abandoned (default
    /// 24 h); the refund's next event is then delivered.
    pub give_up_after: Duration,
    /// Time allowed for one try (default 10 s).
    pub timeout: Duration,
    /// The most deliveries in flight at once (default 16).
    pub concurrency: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            secret: None,
            interval: Duration::from_millis(500),
            backoff: [5, 30, 120, 600, 1800, 3600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            give_up_after: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            concurrency: 16,
        }
    }
}

/// `[plugins]`: where compiled plugin versions are cached, and an optional folder to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginsConfig {
    /// Precompiled artifacts (default `plugin-cache` beside the SQLite file, or beside the
    /// configuration file with PostgreSQL; none for an in-memory database).
    pub cache: Option<PathBuf>,
    /// A folder whose new `.wasm` files `refundry serve` loads as versions.
    pub watch: Option<PathBuf>,
    /// How often the folder is looked at (default 1 s).
    pub watch_interval: Duration,
}

/// `[server]`: where `refundry serve` listens and who may call it.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address (default `127.0.0.1:8700`).
    pub listen: std::net::SocketAddr,
    /// Bearer tokens, by name.
    pub tokens: Vec<ApiToken>,
    /// How long a client may take, and how many may be connected at once.
    pub connections: ConnectionLimits,
    /// `[server.tls]`: serve HTTPS with these files (none: plain HTTP).
    pub tls: Option<TlsFiles>,
}

/// What one client may hold of `refundry serve`: a slow or silent client is disconnected after
/// these timeouts, so that a few hundred of them cannot use up its sockets and file descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the first byte of a request to the end of its head (request line and headers), and
    /// for a TLS handshake (default 10 s).
    pub header_timeout: Duration,
    /// From the end of a request's head to the end of its body (default 30 s). A body still
    /// arriving then is answered 408 and its connection closed. It must also cover the largest
    /// upload: a plugin component (up to 32 MiB) over the slowest admin link.
    pub body_timeout: Duration,
    /// How long a connection may stay open with no request under way: before its first request,
    /// between requests, and while an answer waits for the client to read it (default 60 s).
    pub idle_timeout: Duration,
    /// The most connections open at once (default 1024). At the cap no more are accepted until
    /// one closes; new ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// `[server.tls]`: the PEM files `refundry serve` answers HTTPS with (read at start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// The private key of the server's certificate.
    pub key: PathBuf,
}

/// What a bearer token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Create, read and export refunds.
    Refunds,
    /// Administer the service (plugins).
    Admin,
    /// Read `GET /metrics` (what Prometheus scrapes with), and nothing else.
    Metrics,
}

/// One bearer token of the REST API (`[server.tokens.<name>]`).
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// Its name (the table key), for logs.
    pub name: String,
    /// The token itself (redacted from logs).
    pub token: Secret,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

/// `[retry]`: how a retryable failure of `create-refund` is retried (same key, same request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 3).
    pub attempts: u32,
    /// Wait before the 2nd, 3rd, ... attempt; the last value repeats (default 250 ms, 1 s). A
    /// provider's `retry-after` is honoured when longer, up to [`RetryPolicy::max_wait`].
    pub backoff: Vec<Duration>,
    /// The longest wait between attempts (default 5 s).
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: vec![Duration::from_millis(250), Duration::from_secs(1)],
            max_wait: Duration::from_secs(5),
        }
    }
}

/// `[janitor]`: how often non-final refunds are checked with the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JanitorConfig {
    /// How often it looks for refunds whose check is due (default 1 s).
    pub interval: Duration,
    /// Wait before the 1st, 2nd, ... check of a refund; the last value repeats (default 1 min,
    /// 5 min, 30 min, 2 h, 6 h).
    pub backoff: Vec<Duration>,
    /// The most refunds checked at once (default 16).
    pub concurrency: usize,
    /// How long after a refund was processed it is still checked, on the back-off above, for a
    /// reversal (MFS Africa `reversed`, PagoEfectivo `reverted`) whose webhook may be lost
    /// (default 30 days).
    pub reversal_window: Duration,
}

impl Default for JanitorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            backoff: [60, 300, 1800, 7200, 21600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            concurrency: 16,
            reversal_window: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    engine: RawEngine,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    janitor: RawJanitor,
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    recording: self::recording::RawRecording,
    #[serde(default)]
    reconcile: self::reconcile::RawReconcile,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    url: Option<OneOrMany>,
    secret: Option<String>,
    interval_ms: Option<u64>,
    backoff_ms: Option<Vec<u64>>,
    give_up_after_ms: Option<u64>,
    timeout_ms: Option<u64>,
    concurrency: Option<u64>,
}

/// A value given as one string or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    cache: Option<String>,
    watch: Option<String>,
    watch_interval_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    #[serde(default)]
    tokens: BTreeMap<String, RawToken>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_connections: Option<u64>,
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    token: String,
    scopes: Vec<Scope>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    attempts: Option<u64>,
    backoff_ms: Option<Vec<u64>>,
    max_wait_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJanitor {
    interval_ms: Option<u64>,
    backoff_ms: Option<Vec<u64>>,
    concurrency: Option<u64>,
    reversal_window_days: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    deadline_ms: Option<u64>,
    memory_limit_bytes: Option<u64>,
    max_instances: Option<u64>,
    storage_max_keys: Option<u64>,
    storage_max_bytes: Option<u64>,
    log_max_lines: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    timeout_ms: Option<u64>,
    max_response_bytes: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    path: Option<String>,
    #[serde(default)]
    synchronous: refundry_ledger::db::Synchronous,
    url: Option<String>,
    pool_size: Option<u64>,
    lease_ms: Option<u64>,
}

/// The PostgreSQL ledger (`[database] url`).
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user[:password]@host:port/db`: a secret, since it may hold a password.
    pub url: Secret,
    /// Connections in this host's pool.
    pub pool_size: usize,
    /// How long a claim on shared work lasts.
    pub lease: Duration,
}

impl Config {
    /// Opens the configured ledger database: the PostgreSQL one when `[database] url` is set,
    /// else the SQLite file (or an in-memory database); migrated.
    pub async fn open_database(&self) -> Result<Database, DbError> {
        match &self.postgres {
            Some(pg) => {
                let options = refundry_ledger::postgres::PgOptions {
                    pool_size: pg.pool_size,
                    lease: pg.lease,
                    ..Default::default()
                };
                Database::connect(pg.url.expose(), options).await
            }
            None => Database::open_with(self.database.as_deref(), self.synchronous),
        }
    }
}

fn postgres(
    raw: &mut RawDatabase,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<PostgresConfig>, ConfigError> {
    let Some(url) = raw.url.take() else {
        for (key, set) in [
            ("pool_size", raw.pool_size.is_some()),
            ("lease_ms", raw.lease_ms.is_some()),
        ] {
            if set {
                return Err(ConfigError::BadDatabase(format!(
                    "`{key}` applies to a PostgreSQL ledger: set `url` too"
                )));
            }
        }
        return Ok(None);
    };
    if raw.path.is_some() {
        return Err(ConfigError::BadDatabase(
            "set either `path` (SQLite, one host) or `url` (PostgreSQL), not both".into(),
        ));
    }
    let url = env_value("database.url", url, env)?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError::BadDatabase(format!(
            "`url` must be a postgres:// URL, not {:?}",
            refundry_ledger::postgres::redact_url(&url)
        )));
    }
    if let Err(e) = url.parse::<refundry_ledger::postgres::ConnectConfig>() {
        return Err(ConfigError::BadDatabase(format!(
            "`url` {} is unusable: {e}",
            refundry_ledger::postgres::redact_url(&url)
        )));
    }
    Ok(Some(PostgresConfig {
        url: Secret::new(url),
        pool_size: limit("database.pool_size", raw.pool_size, 16, 1..=1000)? as usize,
        lease: Duration::from_millis(limit(
            "database.lease_ms",
            raw.lease_ms,
            30_000,
            1000..=3_600_000,
        )?),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    plugin: PathBuf,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
}

/// Which parts of a configuration a command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// `refundry serve`: everything, the service's own secrets included (the `[server]` tokens,
    /// the `[events]` secret).
    Service,
    /// A one-shot command: everything but the service's own secrets, which are left unread
    /// (no tokens, no events secret), so their `env:` variables need not be set.
    OneShot,
}

impl Config {
    /// Reads and resolves a config file for the service ([`Needs::Service`]); relative paths in
    /// it are relative to its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_for(path, Needs::Service)
    }

    /// Reads and resolves a config file, with what `needs` says.
    pub fn load_for(path: &Path, needs: Needs) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse_for(&text, path, dir, |var| std::env::var(var).ok(), needs)
    }

    /// Parses config text for the service ([`Needs::Service`]). `origin` names it in errors,
    /// relative paths are resolved against `dir`, and `env` looks up `env:NAME` values.
    pub fn parse(
        text: &str,
        origin: &Path,
        dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::parse_for(text, origin, dir, env, Needs::Service)
    }

    /// Like [`Config::parse`], with what `needs` says.
    pub fn parse_for(
        text: &str,
        origin: &Path,
        dir: &Path,
        env: impl Fn(&str) -> Option<String>,
        needs: Needs,
    ) -> Result<Self, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        let defaults = EngineLimits::default();
        let engine = EngineLimits {
            deadline: Duration::from_millis(limit(
                "engine.deadline_ms",
                raw.engine.deadline_ms,
                defaults.deadline.as_millis() as u64,
                1..=600_000,
            )?),
            memory_limit: limit(
                "engine.memory_limit_bytes",
                raw.engine.memory_limit_bytes,
                defaults.memory_limit as u64,
                // At least one 64 KiB wasm page; at most 1 GiB, as a plugin has no business with more.
                65_536..=1 << 30,
            )? as usize,
            max_instances: limit(
                "engine.max_instances",
                raw.engine.max_instances,
                u64::from(defaults.max_instances),
                1..=10_000,
            )? as u32,
        };
        let quota_defaults = PluginQuotas::default();
        let quotas = PluginQuotas {
            storage_max_keys: limit(
                "engine.storage_max_keys",
                raw.engine.storage_max_keys,
                quota_defaults.storage_max_keys,
                1..=1_000_000,
            )?,
            storage_max_bytes: limit(
                "engine.storage_max_bytes",
                raw.engine.storage_max_bytes,
                quota_defaults.storage_max_bytes,
                1024..=1 << 30,
            )?,
            log_max_lines: limit(
                "engine.log_max_lines",
                raw.engine.log_max_lines,
                u64::from(quota_defaults.log_max_lines),
                1..=100_000,
            )? as u32,
        };
        let http_defaults = HttpLimits::default();
        let http = HttpLimits {
            timeout: Duration::from_millis(limit(
                "http.timeout_ms",
                raw.http.timeout_ms,
                http_defaults.timeout.as_millis() as u64,
                1..=600_000,
            )?),
            max_response_bytes: limit(
                "http.max_response_bytes",
                raw.http.max_response_bytes,
                http_defaults.max_response_bytes as u64,
                1..=1 << 30,
            )? as usize,
        };
        let postgres = postgres(&mut raw.database, &env)?;
        let database = match raw.database.path.as_deref() {
            _ if postgres.is_some() => None,
            Some(":memory:") => None,
            Some(p) => Some(dir.join(p)),
            None => Some(dir.join("refundry.db")),
        };
        // The artifact cache is each host's own: beside the SQLite file, or (PostgreSQL) beside
        // this file.
        let cache_home = match &postgres {
            Some(_) => Some(dir.to_owned()),
            None => database
                .as_deref()
                .map(|db| db.parent().unwrap_or(dir).to_owned()),
        };
        let plugins = plugins(raw.plugins, cache_home.as_deref(), dir)?;
        let mut providers = BTreeMap::new();
        for (id, p) in raw.providers {
            let settings = resolve(&id, "settings", p.settings, &env)?;
            let secrets = resolve(&id, "secrets", p.secrets, &env)?
                .into_iter()
                .map(|(k, v)| (k, Secret::new(v)))
                .collect();
            let base_url = parse_base_url(&id, settings.get("base_url"))?;
            let native = p
                .plugin
                .to_str()
                .and_then(|s| s.strip_prefix("native:"))
                .map(str::to_owned);
            providers.insert(
                id.clone(),
                ProviderConfig {
                    plugin: dir.join(&p.plugin),
                    native,
                    id,
                    base_url,
                    settings,
                    secrets,
                },
            );
        }
        Ok(Self {
            engine,
            http,
            quotas,
            database,
            synchronous: raw.database.synchronous,
            postgres,
            providers,
            server: server(raw.server, dir, &env, needs)?,
            retry: retry(raw.retry)?,
            janitor: janitor(raw.janitor)?,
            plugins,
            events: events(raw.events, &env, needs)?,
            recording: raw.recording.resolve()?,
            reconcile: raw.reconcile.resolve()?,
        })
    }
}

fn events(
    raw: RawEvents,
    env: &impl Fn(&str) -> Option<String>,
    needs: Needs,
) -> Result<EventsConfig, ConfigError> {
    let d = EventsConfig::default();
    let urls = match raw.url {
        None => Vec::new(),
        Some(OneOrMany::One(u)) => vec![u],
        Some(OneOrMany::Many(us)) => us,
    };
    let bad = |key, reason: String| ConfigError::BadEvents { key, reason };
    let mut endpoints: Vec<reqwest::Url> = Vec::new();
    for u in urls {
        let url = reqwest::Url::parse(&u).map_err(|e| bad("url", format!("{u:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("url", format!("{u:?} is not an http(s) URL")));
        }
        // The URL names its deliveries in the ledger and in `GET /v1/events`: no credentials
        // in it (receivers authenticate Refundry by the signature).
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "url",
                format!(
                    "{}: credentials in the URL are not allowed (receivers check Refundry-Signature)",
                    url.host_str().unwrap_or_default()
                ),
            ));
        }
        if endpoints.contains(&url) {
            return Err(bad("url", format!("{u:?} is listed twice")));
        }
        endpoints.push(url);
    }
    // Only the service delivers events: a one-shot command leaves the secret unread.
    let secret = match needs {
        Needs::Service => raw
            .secret
            .map(|v| env_value("events.secret", v, env))
            .transpose()?,
        Needs::OneShot => None,
    };
    match &secret {
        None if !endpoints.is_empty() && needs == Needs::Service => {
            return Err(bad(
                "secret",
                "required with a url: receivers verify Refundry-Signature with it".into(),
            ));
        }
        Some(s) if s.len() < 16 => {
            return Err(bad("secret", "must be at least 16 characters".into()));
        }
        _ => {}
    }
    Ok(EventsConfig {
        endpoints,
        secret: secret.map(Secret::new),
        interval: Duration::from_millis(limit(
            "events.interval_ms",
            raw.interval_ms,
            d.interval.as_millis() as u64,
            1..=3_600_000,
        )?),
        backoff: durations("events.backoff_ms", raw.backoff_ms, d.backoff)?,
        give_up_after: Duration::from_millis(limit(
            "events.give_up_after_ms",
            raw.give_up_after_ms,
            d.give_up_after.as_millis() as u64,
            1..=30 * 24 * 3_600_000,
        )?),
        timeout: Duration::from_millis(limit(
            "events.timeout_ms",
            raw.timeout_ms,
            d.timeout.as_millis() as u64,
            1..=600_000,
        )?),
        concurrency: limit(
            "events.concurrency",
            raw.concurrency,
            d.concurrency as u64,
            1..=1024,
        )? as usize,
    })
}

/// A value as given, or read from the environment when it is `env:NAME`; `key` names it in the
/// error.
fn env_value(
    key: &str,
    value: String,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    match value.strip_prefix("env:") {
        Some(var) => env(var).ok_or_else(|| ConfigError::MissingEnv {
            key: key.to_owned(),
            var: var.to_owned(),
        }),
        None => Ok(value),
    }
}

fn server(
    raw: RawServer,
    dir: &Path,
    env: &impl Fn(&str) -> Option<String>,
    needs: Needs,
) -> Result<ServerConfig, ConfigError> {
    let listen = match raw.listen {
        None => std::net::SocketAddr::from(([127, 0, 0, 1], 8700)),
        Some(s) => s.parse().map_err(|e| ConfigError::BadServer {
            key: "listen".into(),
            reason: format!("{s:?} is not an address:port ({e})"),
        })?,
    };
    let mut tokens = Vec::new();
    // The tokens are the service's: a one-shot command neither reads nor needs them.
    let raw_tokens = match needs {
        Needs::Service => raw.tokens,
        Needs::OneShot => BTreeMap::new(),
    };
    for (name, t) in raw_tokens {
        let value = env_value(&format!("server.tokens.{name}.token"), t.token, env)?;
        if value.len() < 16 {
            return Err(ConfigError::BadServer {
                key: format!("tokens.{name}.token"),
                reason: "a token must be at least 16 characters".into(),
            });
        }
        if t.scopes.is_empty() {
            return Err(ConfigError::BadServer {
                key: format!("tokens.{name}.scopes"),
                reason: "give at least one scope (\"refunds\", \"admin\", \"metrics\")".into(),
            });
        }
        tokens.push(ApiToken {
            name,
            token: Secret::new(value),
            scopes: t.scopes,
        });
    }
    let d = ConnectionLimits::default();
    let millis = |key, value, default: Duration, range| {
        limit(key, value, default.as_millis() as u64, range).map(Duration::from_millis)
    };
    let connections = ConnectionLimits {
        header_timeout: millis(
            "server.header_timeout_ms",
            raw.header_timeout_ms,
            d.header_timeout,
            100..=600_000,
        )?,
        body_timeout: millis(
            "server.body_timeout_ms",
            raw.body_timeout_ms,
            d.body_timeout,
            100..=3_600_000,
        )?,
        idle_timeout: millis(
            "server.idle_timeout_ms",
            raw.idle_timeout_ms,
            d.idle_timeout,
            100..=3_600_000,
        )?,
        max_connections: limit(
            "server.max_connections",
            raw.max_connections,
            d.max_connections as u64,
            1..=1_000_000,
        )? as usize,
    };
    let tls = raw.tls.map(|t| TlsFiles {
        cert: dir.join(t.cert),
        key: dir.join(t.key),
    });
    Ok(ServerConfig {
        listen,
        tokens,
        connections,
        tls,
    })
}

fn plugins(
    raw: RawPlugins,
    cache_home: Option<&Path>,
    dir: &Path,
) -> Result<PluginsConfig, ConfigError> {
    Ok(PluginsConfig {
        cache: match raw.cache {
            Some(c) => Some(dir.join(c)),
            None => cache_home.map(|home| home.join("plugin-cache")),
        },
        watch: raw.watch.map(|w| dir.join(w)),
        watch_interval: Duration::from_millis(limit(
            "plugins.watch_interval_ms",
            raw.watch_interval_ms,
            1000,
            10..=3_600_000,
        )?),
    })
}

fn durations(
    key: &'static str,
    values: Option<Vec<u64>>,
    default: Vec<Duration>,
) -> Result<Vec<Duration>, ConfigError> {
    let Some(values) = values else {
        return Ok(default);
    };
    if values.is_empty() || values.iter().any(|&v| v > 7 * 24 * 3_600_000) {
        return Err(ConfigError::BadLimit {
            key,
            value: values.len() as u64,
            reason: "give at least one wait, each at most 7 days",
        });
    }
    Ok(values.into_iter().map(Duration::from_millis).collect())
}

fn retry(raw: RawRetry) -> Result<RetryPolicy, ConfigError> {
    let d = RetryPolicy::default();
    Ok(RetryPolicy {
        attempts: limit(
            "retry.attempts",
            raw.attempts,
            u64::from(d.attempts),
            1..=10,
        )? as u32,
        backoff: durations("retry.backoff_ms", raw.backoff_ms, d.backoff)?,
        max_wait: Duration::from_millis(limit(
            "retry.max_wait_ms",
            raw.max_wait_ms,
            d.max_wait.as_millis() as u64,
            0..=60_000,
        )?),
    })
}

fn janitor(raw: RawJanitor) -> Result<JanitorConfig, ConfigError> {
    let d = JanitorConfig::default();
    Ok(JanitorConfig {
        interval: Duration::from_millis(limit(
            "janitor.interval_ms",
            raw.interval_ms,
            d.interval.as_millis() as u64,
            1..=3_600_000,
        )?),
        backoff: durations("janitor.backoff_ms", raw.backoff_ms, d.backoff)?,
        concurrency: limit(
            "janitor.concurrency",
            raw.concurrency,
            d.concurrency as u64,
            1..=1024,
        )? as usize,
        reversal_window: Duration::from_secs(
            limit(
                "janitor.reversal_window_days",
                raw.reversal_window_days,
                d.reversal_window.as_secs() / 86_400,
                0..=3650,
            )? * 86_400,
        ),
    })
}

fn resolve(
    provider: &str,
    table: &'static str,
    values: BTreeMap<String, String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    values
        .into_iter()
        .map(|(key, value)| {
            let value = env_value(&format!("providers.{provider}.{table}.{key}"), value, env)?;
            Ok((key, value))
        })
        .collect()
}

fn parse_base_url(provider: &str, value: Option<&String>) -> Result<reqwest::Url, ConfigError> {
    let Some(value) = value else {
        return Err(ConfigError::MissingBaseUrl {
            provider: provider.to_owned(),
        });
    };
    let bad = |reason: &str| ConfigError::BadBaseUrl {
        provider: provider.to_owned(),
        value: value.clone(),
        reason: reason.to_owned(),
    };
    let url = reqwest::Url::parse(value).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none() {
        return Err(bad("it has no host"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[engine]
deadline_ms = 250

[providers.mfs-africa]
plugin = "plugins/mfs-africa.wasm"
[providers.mfs-africa.settings]
base_url = "http://127.0.0.1:9000"
api_key = "key-1"
[providers.mfs-africa.secrets]
api_secret = "env:TEST_SECRET"
"#;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(
            text,
            Path::new("test.toml"),
            Path::new("/etc/refundry"),
            |var| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()),
        )
    }

    #[test]
    fn resolves_env_paths_and_defaults() {
        let c = parse(SAMPLE, &[("TEST_SECRET", "s3cr3t")]).unwrap();
        assert_eq!(c.engine.deadline, Duration::from_millis(250));
        assert_eq!(c.engine.memory_limit, 16 << 20);
        assert_eq!(c.http.timeout, Duration::from_secs(10));
        assert_eq!(c.database, Some(PathBuf::from("/etc/refundry/refundry.db")));
        let p = &c.providers["mfs-africa"];
        assert_eq!(
            p.plugin,
            PathBuf::from("/etc/refundry/plugins/mfs-africa.wasm")
        );
        assert_eq!(p.get("api_key"), Some("key-1"));
        assert_eq!(p.get("api_secret"), Some("s3cr3t"));
        assert_eq!(p.get("nope"), None);
        assert_eq!(p.base_url.port(), Some(9000));
    }

    #[test]
    fn a_database_url_selects_postgresql_and_its_password_never_shows() {
        let text = "[database]\nurl = \"env:DB_URL\"\npool_size = 4\nlease_ms = 5000\n";
        let c = parse(
            text,
            &[("DB_URL", "postgres://app:hunter22@db:5432/refundry")],
        )
        .unwrap();
        let pg = c.postgres.as_ref().expect("PostgreSQL selected");
        assert_eq!(pg.url.expose(), "postgres://app:hunter22@db:5432/refundry");
        assert_eq!((pg.pool_size, pg.lease), (4, Duration::from_secs(5)));
        assert_eq!(c.database, None, "no SQLite file");
        assert_eq!(
            c.plugins.cache,
            Some(PathBuf::from("/etc/refundry/plugin-cache")),
            "each host's cache sits beside its configuration"
        );
        assert!(!format!("{c:?}").contains("hunter22"));
        let defaults = parse("[database]\nurl = \"postgres://app@db/r\"\n", &[]).unwrap();
        let pg = defaults.postgres.unwrap();
        assert_eq!((pg.pool_size, pg.lease), (16, Duration::from_secs(30)));
        assert!(
            parse("", &[]).unwrap().postgres.is_none(),
            "SQLite by default"
        );
    }

    #[test]
    fn a_wrong_database_section_is_refused_by_name() {
        let err = |text: &str| parse(text, &[]).unwrap_err().to_string();
        let both = err("[database]\npath = \"x.db\"\nurl = \"postgres://a@b/c\"\n");
        assert!(both.contains("not both"), "{both}");
        let scheme = err("[database]\nurl = \"mysql://app:pw@db/c\"\n");
        assert!(scheme.contains("postgres://"), "{scheme}");
        assert!(
            !scheme.contains(":pw@"),
            "the password is not echoed: {scheme}"
        );
        let lone = err("[database]\npool_size = 4\n");
        assert!(
            lone.contains("`pool_size`") && lone.contains("url"),
            "{lone}"
        );
        let small = err("[database]\nurl = \"postgres://a@b/c\"\nlease_ms = 10\n");
        assert!(small.contains("lease_ms"), "{small}");
        let missing = err("[database]\nurl = \"env:NOPE\"\n");
        assert!(missing.contains("NOPE"), "{missing}");
    }

    #[test]
    fn plugins_cache_sits_beside_the_database_unless_set() {
        let c = parse("", &[]).unwrap();
        assert_eq!(
            c.plugins.cache,
            Some(PathBuf::from("/etc/refundry/plugin-cache"))
        );
        assert_eq!(c.plugins.watch, None);
        assert_eq!(c.plugins.watch_interval, Duration::from_secs(1));
        let c = parse("[database]\npath = \":memory:\"\n", &[]).unwrap();
        assert_eq!(c.plugins.cache, None, "no database file, no default cache");
        let text = "[plugins]\ncache = \"cache\"\nwatch = \"drop\"\nwatch_interval_ms = 50\n";
        let c = parse(text, &[]).unwrap();
        assert_eq!(c.plugins.cache, Some(PathBuf::from("/etc/refundry/cache")));
        assert_eq!(c.plugins.watch, Some(PathBuf::from("/etc/refundry/drop")));
        assert_eq!(c.plugins.watch_interval, Duration::from_millis(50));
        assert!(matches!(
            parse("[plugins]\nwatch_interval_ms = 0\n", &[]),
            Err(ConfigError::BadLimit {
                key: "plugins.watch_interval_ms",
                ..
            })
        ));
    }

    #[test]
    fn the_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/refundry.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let c = Config::parse(&text, &path, path.parent().unwrap(), |_| {
            Some("an-environment-value-0123456789".into())
        })
        .unwrap();
        assert!(c.plugins.cache.unwrap().ends_with("plugin-cache"));
        assert!(!c.providers.is_empty());
    }

    #[test]
    fn missing_env_names_the_variable() {
        let err = parse(SAMPLE, &[]).unwrap_err();
        assert!(matches!(&err, ConfigError::MissingEnv { var, .. } if var == "TEST_SECRET"));
        assert!(err.to_string().contains("TEST_SECRET"));
    }

    #[test]
    fn base_url_is_required_and_checked() {
        let no_url = "[providers.p]\nplugin = \"p.wasm\"\n";
        assert!(matches!(
            parse(no_url, &[]),
            Err(ConfigError::MissingBaseUrl { .. })
        ));
        let bad =
            "[providers.p]\nplugin = \"p.wasm\"\n[providers.p.settings]\nbase_url = \"ftp://x\"\n";
        assert!(matches!(
            parse(bad, &[]),
            Err(ConfigError::BadBaseUrl { .. })
        ));
    }

    #[test]
    fn one_shot_commands_need_none_of_the_services_secrets() {
        let text = r#"
[server.tokens.gateway]
token = "env:GATEWAY_TOKEN"
scopes = ["refunds"]
[events]
url = "http://127.0.0.1:9/events"
secret = "env:EVENTS_SECRET"
[providers.p]
plugin = "p.wasm"
[providers.p.settings]
base_url = "http://127.0.0.1:8080"
[providers.p.secrets]
api_key = "env:P_KEY"
"#;
        let one_shot = |env: &[(&str, &str)]| {
            Config::parse_for(
                text,
                Path::new("test.toml"),
                Path::new("/etc/refundry"),
                |var| {
                    env.iter()
                        .find(|(k, _)| *k == var)
                        .map(|(_, v)| v.to_string())
                },
                Needs::OneShot,
            )
        };
        let c = one_shot(&[("P_KEY", "k")]).unwrap();
        assert!(c.server.tokens.is_empty());
        assert!(c.events.secret.is_none());
        assert_eq!(c.providers["p"].get("api_key"), Some("k"));
        // A provider's own secret is still required.
        assert!(matches!(
            one_shot(&[]),
            Err(ConfigError::MissingEnv { var, .. }) if var == "P_KEY"
        ));
        // The service reads them all.
        assert!(matches!(
            parse(text, &[("P_KEY", "k")]),
            Err(ConfigError::MissingEnv { var, .. }) if var == "GATEWAY_TOKEN"
        ));
        let service = parse(
            text,
            &[
                ("P_KEY", "k"),
                ("GATEWAY_TOKEN", "0123456789abcdef-gw"),
                ("EVENTS_SECRET", "0123456789abcdef-ev"),
            ],
        )
        .unwrap();
        assert_eq!(service.server.tokens.len(), 1);
        assert!(service.events.secret.is_some());
    }

    #[test]
    fn the_ledger_syncs_in_full_unless_told_normal() {
        use refundry_ledger::db::Synchronous;
        assert_eq!(parse("", &[]).unwrap().synchronous, Synchronous::Full);
        let normal = parse("[database]\nsynchronous = \"normal\"\n", &[]).unwrap();
        assert_eq!(normal.synchronous, Synchronous::Normal);
        assert!(matches!(
            parse("[database]\nsynchronous = \"off\"\n", &[]),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn server_tokens_retry_and_janitor_are_read_and_checked() {
        let text = r#"
[server]
listen = "127.0.0.1:0"
[server.tokens.gateway]
token = "env:GATEWAY_TOKEN"
scopes = ["refunds"]
[retry]
attempts = 2
backoff_ms = [5]
[janitor]
interval_ms = 10
backoff_ms = [20, 40]
reversal_window_days = 2
"#;
        let c = parse(text, &[("GATEWAY_TOKEN", "0123456789abcdef-gw")]).unwrap();
        assert_eq!(c.server.listen.port(), 0);
        assert_eq!(c.server.tokens.len(), 1);
        assert_eq!(c.server.tokens[0].name, "gateway");
        assert_eq!(c.server.tokens[0].token.expose(), "0123456789abcdef-gw");
        assert_eq!(c.server.tokens[0].scopes, [Scope::Refunds]);
        assert_eq!((c.retry.attempts, c.retry.backoff.len()), (2, 1));
        assert_eq!(
            c.janitor.backoff,
            [Duration::from_millis(20), Duration::from_millis(40)]
        );
        assert_eq!(c.janitor.reversal_window, Duration::from_secs(2 * 86_400));
        assert!(matches!(
            parse("[janitor]\nreversal_window_days = 3651\n", &[]),
            Err(ConfigError::BadLimit {
                key: "janitor.reversal_window_days",
                ..
            })
        ));

        let defaults = parse("", &[]).unwrap();
        assert_eq!(defaults.server.listen.port(), 8700);
        assert_eq!(defaults.retry, RetryPolicy::default());
        assert_eq!(defaults.janitor, JanitorConfig::default());

        let missing = parse(text, &[]).unwrap_err();
        assert!(
            matches!(&missing, ConfigError::MissingEnv { key, .. } if key == "server.tokens.gateway.token")
        );
        let short = parse(text, &[("GATEWAY_TOKEN", "short")]).unwrap_err();
        assert!(
            short.to_string().contains("at least 16 characters"),
            "{short}"
        );
        let no_scope = "[server.tokens.x]\ntoken = \"0123456789abcdef-x\"\nscopes = []\n";
        assert!(matches!(
            parse(no_scope, &[]),
            Err(ConfigError::BadServer { .. })
        ));
        let bad_scope = "[server.tokens.x]\ntoken = \"0123456789abcdef-x\"\nscopes = [\"root\"]\n";
        assert!(matches!(
            parse(bad_scope, &[]),
            Err(ConfigError::Parse { .. })
        ));
        let bad_listen = "[server]\nlisten = \"localhost\"\n";
        assert!(matches!(
            parse(bad_listen, &[]),
            Err(ConfigError::BadServer { .. })
        ));
        assert!(matches!(
            parse("[retry]\nattempts = 0\n", &[]),
            Err(ConfigError::BadLimit {
                key: "retry.attempts",
                ..
            })
        ));
        assert!(matches!(
            parse("[janitor]\nbackoff_ms = []\n", &[]),
            Err(ConfigError::BadLimit {
                key: "janitor.backoff_ms",
                ..
            })
        ));
    }

    #[test]
    fn server_connection_limits_and_tls_are_read_and_checked() {
        let defaults = parse("", &[]).unwrap().server;
        assert_eq!(defaults.connections, ConnectionLimits::default());
        assert_eq!(defaults.connections.header_timeout, Duration::from_secs(10));
        assert_eq!(defaults.connections.max_connections, 1024);
        assert_eq!(defaults.tls, None);

        let text = r#"
[server]
header_timeout_ms = 500
body_timeout_ms = 700
idle_timeout_ms = 900
max_connections = 16
[server.tls]
cert = "tls/cert.pem"
key = "/abs/key.pem"
"#;
        let s = parse(text, &[]).unwrap().server;
        assert_eq!(
            s.connections,
            ConnectionLimits {
                header_timeout: Duration::from_millis(500),
                body_timeout: Duration::from_millis(700),
                idle_timeout: Duration::from_millis(900),
                max_connections: 16,
            }
        );
        assert_eq!(
            s.tls,
            Some(TlsFiles {
                cert: PathBuf::from("/etc/refundry/tls/cert.pem"),
                key: PathBuf::from("/abs/key.pem"),
            })
        );

        for (line, key) in [
            ("header_timeout_ms = 0", "server.header_timeout_ms"),
            ("header_timeout_ms = 600001", "server.header_timeout_ms"),
            ("body_timeout_ms = 99", "server.body_timeout_ms"),
            ("idle_timeout_ms = 3600001", "server.idle_timeout_ms"),
            ("max_connections = 0", "server.max_connections"),
        ] {
            match parse(&format!("[server]\n{line}\n"), &[]) {
                Err(ConfigError::BadLimit { key: k, .. }) => assert_eq!(k, key, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
        for tls in [
            "[server.tls]\ncert = \"c.pem\"\n",
            "[server.tls]\nkey = \"k.pem\"\n",
            "[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nca = \"x\"\n",
        ] {
            assert!(
                matches!(parse(tls, &[]), Err(ConfigError::Parse { .. })),
                "{tls}"
            );
        }
    }

    #[test]
    fn events_are_read_and_checked() {
        let c = parse("", &[]).unwrap();
        assert!(c.events.endpoints.is_empty() && c.events.secret.is_none());
        assert_eq!(c.events.give_up_after, Duration::from_secs(24 * 3600));
        let c = parse(
            "[events]\nurl = \"http://127.0.0.1:9/e\"\nsecret = \"env:EV\"\nbackoff_ms = [10, 20]\n",
            &[("EV", "0123456789abcdef")],
        )
        .unwrap();
        assert_eq!(c.events.endpoints.len(), 1);
        assert_eq!(
            c.events.secret.as_ref().unwrap().expose(),
            "0123456789abcdef"
        );
        assert_eq!(
            c.events.backoff,
            [Duration::from_millis(10), Duration::from_millis(20)]
        );
        let c = parse(
            "[events]\nurl = [\"http://a.test/e\", \"https://b.test/e\"]\nsecret = \"0123456789abcdef\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.events.endpoints.len(), 2);
        for (text, key) in [
            ("url = \"http://a.test/\"", "secret"),
            ("url = \"http://a.test/\"\nsecret = \"short\"", "secret"),
            (
                "url = \"ftp://a.test/\"\nsecret = \"0123456789abcdef\"",
                "url",
            ),
            ("url = \"not a url\"\nsecret = \"0123456789abcdef\"", "url"),
            (
                "url = \"http://u:p@a.test/\"\nsecret = \"0123456789abcdef\"",
                "url",
            ),
            (
                "url = [\"http://a.test/\", \"http://a.test/\"]\nsecret = \"0123456789abcdef\"",
                "url",
            ),
        ] {
            match parse(&format!("[events]\n{text}\n"), &[]) {
                Err(ConfigError::BadEvents { key: k, reason }) => {
                    assert_eq!(k, key, "{text}");
                    assert!(!reason.contains("u:p"), "{reason}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            parse("[events]\nsecret = \"env:NOPE\"\n", &[]),
            Err(ConfigError::MissingEnv { .. })
        ));
    }

    #[test]
    fn unknown_keys_and_bad_limits_are_refused() {
        assert!(matches!(
            parse("[engine]\nfoo = 1\n", &[]),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            parse("[engine]\ndeadline_ms = 0\n", &[]),
            Err(ConfigError::BadLimit {
                key: "engine.deadline_ms",
                ..
            })
        ));
    }

    #[test]
    fn plugin_quotas_have_defaults_and_ranges() {
        assert_eq!(parse("", &[]).unwrap().quotas, PluginQuotas::default());
        let c = parse(
            "[engine]\nstorage_max_keys = 10\nstorage_max_bytes = 4096\nlog_max_lines = 5\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.quotas,
            PluginQuotas {
                storage_max_keys: 10,
                storage_max_bytes: 4096,
                log_max_lines: 5,
            }
        );
        for (text, key) in [
            ("storage_max_keys = 0", "engine.storage_max_keys"),
            ("storage_max_bytes = 1023", "engine.storage_max_bytes"),
            ("log_max_lines = 0", "engine.log_max_lines"),
        ] {
            let e = parse(&format!("[engine]\n{text}\n"), &[]).unwrap_err();
            assert!(
                matches!(e, ConfigError::BadLimit { key: k, .. } if k == key),
                "{text}: {e}"
            );
        }
    }
}
