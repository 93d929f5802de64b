//! [`Refundry`]: the engine, the database and every configured provider's plugin, wired together.
//! This is what a gateway embeds, and what the `refundry` binary drives.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::backend::Backend;
use crate::bindings::types::{
    ProviderInfo, Refund, RefundError, RefundLookup, RefundRequest, WebhookError, WebhookEvent,
};
use crate::caps::http::{ReqwestTransport, Transport};
use crate::caps::{Clock, ConfigCap, HttpCap, LogCap, ProviderCaps, StorageCap, SystemClock};
use crate::config::{Config, HttpLimits, PluginQuotas, ProviderConfig};
use crate::db::{Database, DbError};
use crate::engine::{Engine, EngineError};
use crate::error::{LoadError, PluginError};
use crate::exchange::Exchanges;
use crate::plugin::{Plugin, PluginComponent};
use crate::registry::{
    ArtifactCache, Configured, PluginVersion, ProviderStart, Registry, RegistryError,
};
use crate::secret::Redactor;

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

/// The Refundry host: providers, their plugins, and the capabilities granted to them.
pub struct Refundry {
    engine: Engine,
    db: Database,
    registry: Arc<Registry>,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Refundry {
    /// Starts the engine, opens the database and loads every configured provider, with the system clock.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like [`Refundry::start`], with another clock (tests freeze or skew it).
    pub async fn start_with_clock(
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let engine = Engine::new(config.engine)?;
        let db = Database::open_with(config.database.as_deref(), config.synchronous)?;
        let transport: Arc<dyn Transport> = Arc::new(ReqwestTransport::new());
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let mut providers = Vec::new();
        for (id, provider) in &config.providers {
            let fail = |source: LoadError| StartError::Plugin {
                provider: id.clone(),
                source: source.into(),
            };
            let caps = provider_caps(
                provider,
                config.http,
                config.quotas,
                transport.clone(),
                db.clone(),
                clock.clone(),
            );
            caps.metrics.attach(metrics.clone(), id);
            let plugin = match &provider.native {
                Some(name) => {
                    Configured::Native(native_backend(id, name, caps.clone()).map_err(fail)?)
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
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
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
            .backend
            .create_refund(req, &Exchanges::new())
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
            .backend
            .get_refund(lookup, &Exchanges::new())
            .await?
            .map_err(OperationError::Refund)
    }

    /// Verifies and parses a webhook `provider` sent.
    pub async fn parse_webhook(
        &self,
        provider: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<WebhookEvent, OperationError> {
        self.provider(provider)?
            .backend
            .parse_webhook(headers, body, &Exchanges::new())
            .await?
            .map_err(OperationError::Webhook)
    }
}

#[cfg(feature = "native-plugins")]
fn native_backend(
    expected: &str,
    name: &str,
    caps: Arc<ProviderCaps>,
) -> Result<Backend, LoadError> {
    let native = crate::native::NativeProvider::load(name, caps)?;
    // The same check `Plugin::bind` makes of a component: it must be the provider it serves.
    if native.info().id != expected {
        return Err(LoadError::ProviderMismatch {
            expected: expected.to_owned(),
            found: native.info().id.clone(),
        });
    }
    Ok(Backend::Native(native))
}

#[cfg(not(feature = "native-plugins"))]
fn native_backend(
    _expected: &str,
    name: &str,
    _caps: Arc<ProviderCaps>,
) -> Result<Backend, LoadError> {
    Err(LoadError::Contract(format!(
        "plugin = \"native:{name}\" needs a refundry built with the native-plugins feature"
    )))
}

/// The capabilities granted to one provider's plugin.
pub fn provider_caps(
    provider: &ProviderConfig,
    limits: HttpLimits,
    quotas: PluginQuotas,
    transport: Arc<dyn Transport>,
    db: Database,
    clock: Arc<dyn Clock>,
) -> Arc<ProviderCaps> {
    let redactor = Redactor::new(provider.secrets.values());
    let provider = Arc::new(provider.clone());
    Arc::new(ProviderCaps {
        http: HttpCap::new(
            transport,
            Some(provider.base_url.clone()),
            limits,
            redactor.clone(),
            provider.id.clone(),
        ),
        clock,
        storage: StorageCap::new(db, provider.id.clone(), quotas),
        log: LogCap::new(provider.id.clone(), redactor.clone(), quotas),
        redactor,
        config: ConfigCap::new(provider),
        metrics: Default::default(),
    })
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
    let caps = inspection_caps(path)?;
    // Inspection has no configured provider id to check against: take the one it gives.
    let plugin = Plugin::bind(engine.clone(), component.clone(), caps, None).await?;
    Ok((plugin.info().clone(), component))
}

/// Capabilities for a plugin that is only asked to `describe()` itself: no network, no
/// configuration, throw-away storage.
pub(crate) fn inspection_caps(path: &std::path::Path) -> Result<Arc<ProviderCaps>, LoadError> {
    let db = Database::open(None).map_err(|e| LoadError::Contract(e.to_string()))?;
    Ok(Arc::new(ProviderCaps {
        http: HttpCap::new(
            Arc::new(ReqwestTransport::new()),
            None,
            HttpLimits::default(),
            Redactor::default(),
            "inspect".into(),
        ),
        clock: Arc::new(SystemClock),
        storage: StorageCap::new(db, "inspect".into(), PluginQuotas::default()),
        config: ConfigCap::new(Arc::new(ProviderConfig {
            id: "inspect".into(),
            plugin: path.to_owned(),
            native: None,
            base_url: reqwest::Url::parse("http://invalid.invalid").expect("a valid literal URL"),
            settings: BTreeMap::new(),
            secrets: BTreeMap::new(),
        })),
        log: LogCap::new(
            "inspect".into(),
            Redactor::default(),
            PluginQuotas::default(),
        ),
        redactor: Redactor::default(),
        metrics: Default::default(),
    }))
}

/// A one-line description of a refund error.
pub fn describe_refund_error(e: &RefundError) -> String {
    match e {
        RefundError::Refused(r) => format!(
            "refused ({}{}): {}",
            crate::view::refusal_word(r.kind),
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
