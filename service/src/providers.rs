//! [`Providers`]: the engine, the database and every configured provider's plugin versions,
//! wired together from the configuration. The [`crate::RefundService`] runs refunds on it; the
//! one-shot commands of the `refundry` binary call it directly.

use std::sync::Arc;

use refundry_runtime::{Plugin, PluginComponent};

use refundry_ledger::db::{Database, DbError};
use refundry_ledger::storage::SqliteStore;
use refundry_runtime::RefundLogic;
use refundry_runtime::bindings::types::{
    ProviderInfo, Refund, RefundError, RefundLookup, RefundRequest, WebhookError, WebhookOutcome,
    WebhookRequest,
};
use refundry_runtime::caps::{Capabilities, Clock, ReqwestTransport, SystemClock, Transport};
use refundry_runtime::engine::{Engine, EngineError};
use refundry_runtime::error::{LoadError, PluginError};

use crate::config::{Config, ProviderConfig};
use crate::metrics::{Metrics, MetricsObserver};
use crate::registry::{
    ArtifactCache, Configured, PluginVersion, ProviderStart, Registry, RegistryError,
};

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The engine failed to start.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The database could not be opened.
    #[error(transparent)]
    Database(#[from] DbError),
    /// A provider's plugin could not be loaded.
    #[error("provider {provider}: {source}")]
    Plugin {
        /// Provider id.
        provider: String,
        /// Why.
        #[source]
        source: RegistryError,
    },
}

/// Why an operation did not produce its result.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// No provider with that id is configured.
    #[error("no provider {0:?} is configured")]
    UnknownProvider(String),
    /// The plugin failed (trap, deadline, memory cap).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The provider (or the plugin on its behalf) refused or failed the refund operation.
    #[error("{}", describe_refund_error(.0))]
    Refund(RefundError),
    /// The webhook was not accepted.
    #[error("webhook rejected: {}", describe_webhook_error(.0))]
    Webhook(WebhookError),
}

/// Links a plugin crate into the host for `plugin = "native:<name>"` (the benchmark baseline):
/// the logic of `name`, run with these capabilities. Given by a build that links plugins
/// natively (the `refundry` binary's `native-plugins` feature); without one such a provider
/// cannot start.
pub type NativeLinker =
    fn(name: &str, caps: Arc<Capabilities>) -> Result<Arc<dyn RefundLogic>, LoadError>;

/// How the providers start, besides their configuration.
#[derive(Clone)]
pub struct StartOptions {
    /// The clock every plugin reads (tests freeze or skew it).
    pub clock: Arc<dyn Clock>,
    /// Links `native:` plugins; `None` refuses them.
    pub native: Option<NativeLinker>,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            native: None,
        }
    }
}

impl StartOptions {
    /// The default options with another clock.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            ..Self::default()
        }
    }
}

/// Every configured provider's plugin versions, the engine they run in, and the database.
pub struct Providers {
    engine: Engine,
    db: Database,
    registry: Arc<Registry>,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl Providers {
    /// Starts the engine, opens the database and loads every configured provider, with the
    /// system clock.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        Self::start_with(config, StartOptions::default()).await
    }

    /// Like [`Providers::start`], with these options.
    pub async fn start_with(config: &Config, options: StartOptions) -> Result<Self, StartError> {
        let StartOptions { clock, native } = options;
        let engine = Engine::new(config.engine)?;
        let db = config.open_database().await?;
        let transport: Arc<dyn Transport> = Arc::new(ReqwestTransport::new());
        let metrics = Arc::new(Metrics::new());
        let mut providers = Vec::new();
        for (id, provider) in &config.providers {
            let fail = |source: LoadError| StartError::Plugin {
                provider: id.clone(),
                source: source.into(),
            };
            metrics.add_provider(id);
            let caps = Capabilities::builder(id, Arc::new(provider.clone()))
                .origin(provider.base_url.clone())
                .transport(transport.clone())
                .http_limits(config.http)
                .quotas(config.quotas)
                .clock(clock.clone())
                .storage(Arc::new(SqliteStore::new(
                    db.clone(),
                    id.clone(),
                    config.quotas,
                )))
                .observer(Arc::new(MetricsObserver::new(metrics.clone())))
                .build();
            let plugin = match &provider.native {
                Some(name) => {
                    Configured::Native(link_native(native, id, name, caps.clone()).map_err(fail)?)
                }
                None => Configured::Component(read_plugin(&provider.plugin).map_err(fail)?),
            };
            providers.push(ProviderStart {
                id: id.clone(),
                caps,
                plugin,
            });
        }
        let key = crate::registry::artifact_key(&db).await?;
        let cache = ArtifactCache::new(config.plugins.cache.clone(), key);
        let registry = Registry::start(engine.clone(), db.clone(), cache, clock.clone(), providers)
            .await
            .map_err(|(provider, source)| StartError::Plugin { provider, source })?;
        Ok(Self {
            engine,
            db,
            registry: Arc::new(registry),
            transport,
            clock,
            metrics,
        })
    }

    /// What this host counts for `GET /metrics` (see [`crate::metrics`]).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The engine plugins run in.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The host database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The host clock every plugin reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The transport every plugin's HTTP goes through.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Every provider's plugin versions.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The active version of `provider`'s plugin: what a new operation runs on.
    pub fn provider(&self, provider: &str) -> Result<Arc<PluginVersion>, OperationError> {
        self.registry
            .active(provider)
            .ok_or_else(|| OperationError::UnknownProvider(provider.to_owned()))
    }

    /// Each configured provider's active plugin version.
    pub fn providers(&self) -> impl Iterator<Item = (&str, Arc<PluginVersion>)> {
        self.registry
            .providers()
            .filter_map(|id| Some((id, self.registry.active(id)?)))
    }

    /// Asks `provider` to refund.
    pub async fn create_refund(
        &self,
        provider: &str,
        req: &RefundRequest,
    ) -> Result<Refund, OperationError> {
        self.provider(provider)?
            .logic
            .create_refund(req, None)
            .await?
            .map_err(OperationError::Refund)
    }

    /// Looks a refund up at `provider`.
    pub async fn get_refund(
        &self,
        provider: &str,
        lookup: &RefundLookup,
    ) -> Result<Refund, OperationError> {
        self.provider(provider)?
            .logic
            .get_refund(lookup, None, None)
            .await?
            .map_err(OperationError::Refund)
    }

    /// Verifies and parses a webhook `provider` sent: `headers` as received, the raw `body`,
    /// as a `POST` to the provider's webhook path.
    pub async fn parse_webhook(
        &self,
        provider: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<WebhookOutcome, OperationError> {
        let req = WebhookRequest {
            method: "POST".into(),
            path: format!("/v1/webhooks/{provider}"),
            query: None,
            headers: headers.to_vec(),
            body: body.to_vec(),
        };
        self.provider(provider)?
            .logic
            .parse_webhook(&req, None)
            .await?
            .map_err(OperationError::Webhook)
    }
}

/// The `native:` logic `name` for provider `expected`, checked to be that provider (as
/// `Plugin::bind` checks a component).
fn link_native(
    linker: Option<NativeLinker>,
    expected: &str,
    name: &str,
    caps: Arc<Capabilities>,
) -> Result<Arc<dyn RefundLogic>, LoadError> {
    let Some(linker) = linker else {
        return Err(LoadError::Contract(format!(
            "plugin = \"native:{name}\" needs a refundry built with the native-plugins feature"
        )));
    };
    let logic = linker(name, caps)?;
    if logic.info().id != expected {
        return Err(LoadError::ProviderMismatch {
            expected: expected.to_owned(),
            found: logic.info().id.clone(),
        });
    }
    Ok(logic)
}

/// A provider's settings and secrets are what its plugin's `config.get` answers.
impl refundry_runtime::ConfigSource for ProviderConfig {
    fn get(&self, key: &str) -> Option<String> {
        ProviderConfig::get(self, key).map(str::to_owned)
    }

    fn secrets(&self) -> Vec<(String, refundry_runtime::Secret)> {
        self.secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Reads a configured component file.
fn read_plugin(path: &std::path::Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Loads a component for inspection: compiled, import-checked, and `describe()`d with no network,
/// no configuration and throw-away storage.
pub async fn inspect(
    engine: &Engine,
    path: &std::path::Path,
) -> Result<(ProviderInfo, Arc<PluginComponent>), LoadError> {
    let component = Arc::new(PluginComponent::from_file(engine, path)?);
    let plugin = Plugin::inspect(engine.clone(), component.clone()).await?;
    Ok((plugin.info().clone(), component))
}

/// A one-line description of a refund error.
pub fn describe_refund_error(e: &RefundError) -> String {
    match e {
        RefundError::Refused(r) => format!(
            "refused ({}{}): {}",
            r.kind.as_str(),
            r.provider_code
                .as_deref()
                .map(|c| format!(", provider code {c}"))
                .unwrap_or_default(),
            r.message
        ),
        RefundError::Retryable(r) => format!(
            "retryable{}: {}{}",
            r.provider_code
                .as_deref()
                .map(|c| format!(" (provider code {c})"))
                .unwrap_or_default(),
            r.message,
            r.retry_after_ms
                .map(|ms| format!(" (retry after {ms} ms)"))
                .unwrap_or_default()
        ),
        RefundError::UnknownOutcome(m) => format!("outcome unknown: {m}"),
    }
}

/// A one-line description of a webhook error.
pub fn describe_webhook_error(e: &WebhookError) -> String {
    match e {
        WebhookError::MissingHeader(h) => format!("missing header {h}"),
        WebhookError::InvalidSignature => "invalid signature".into(),
        WebhookError::StaleTimestamp(s) => format!("timestamp {s} s away from the host clock"),
        WebhookError::Malformed(m) => format!("malformed: {m}"),
    }
}
