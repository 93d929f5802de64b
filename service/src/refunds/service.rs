//! [`RefundService`]: the providers, the ledger and the rules, and what it is asked about refunds
//! that need no provider (lookups, lists, events, metrics) and how it keeps a plugin operation's
//! exchanges and recording.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use refundry_ledger::{ExchangeRecord, Ledger, ListQuery, Page, RefundDetail, RefundRecord};
use refundry_runtime::caps::Clock;

use super::keys::KeyLocks;
use super::types::ServiceError;
use crate::config::{Config, JanitorConfig, RetryPolicy};
use crate::exchange::Exchanges;
use crate::providers::{Providers, StartError, StartOptions};
use crate::registry::PluginVersion;
use crate::replay::{RecordedBy, Recordings, SecretMasks};

/// The refund service: the providers, the ledger, and the rules. Cheap to clone. What
/// `refundry serve` runs, and what a gateway embeds to have the whole orchestrator in process.
#[derive(Clone)]
pub struct RefundService {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) providers: Providers,
    pub(crate) ledger: Ledger,
    pub(crate) retry: RetryPolicy,
    pub(crate) janitor: JanitorConfig,
    pub(crate) keys: KeyLocks,
    /// Refunds whose create request is being served in this process: the janitor leaves them be.
    pub(crate) in_flight: Mutex<HashSet<String>>,
    /// Where the plugin operations run for refunds are recorded (see [`crate::replay`]).
    pub(crate) recordings: Recordings,
    /// Each provider's secrets as its recordings mark them.
    pub(crate) masks: HashMap<String, Arc<SecretMasks>>,
}

impl RefundService {
    /// Starts the providers (engine, ledger, plugins) from `config`, with the system clock.
    /// The janitor is not started: call [`RefundService::spawn_janitor`].
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        Self::start_with(config, StartOptions::default()).await
    }

    /// Like [`RefundService::start`], with another clock.
    pub async fn start_with_clock(
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        Self::start_with(config, StartOptions::with_clock(clock)).await
    }

    /// Like [`RefundService::start`], with these options.
    pub async fn start_with(config: &Config, options: StartOptions) -> Result<Self, StartError> {
        let providers = Providers::start_with(config, options).await?;
        let ledger = Ledger::new(providers.database().clone());
        // Refunds written but never answered were in flight when an earlier process stopped:
        // nothing is in flight yet in this one, so the janitor may look at them at once.
        let orphans = ledger
            .recover_unanswered(providers.clock().now_ms())
            .await
            .map_err(StartError::Database)?;
        if orphans > 0 {
            tracing::warn!(
                orphans,
                "refunds left unanswered by an earlier run: the janitor will resolve them"
            );
        }
        let recordings = Recordings::new(providers.database().clone(), config.recording);
        let masks = config
            .providers
            .iter()
            .map(|(id, p)| (id.clone(), Arc::new(SecretMasks::new(&p.secrets))))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                providers,
                ledger,
                retry: config.retry.clone(),
                janitor: config.janitor.clone(),
                keys: KeyLocks::default(),
                in_flight: Mutex::new(HashSet::new()),
                recordings,
                masks,
            }),
        })
    }

    /// The providers and their plugin versions.
    pub fn providers(&self) -> &Providers {
        &self.inner.providers
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.providers.clock().now_ms()
    }

    /// When the janitor should look at a refund after `checks` earlier checks.
    pub(crate) fn next_check(&self, now_ms: i64, checks: i64) -> i64 {
        let backoff = &self.inner.janitor.backoff;
        let i = (checks.max(0) as usize).min(backoff.len() - 1);
        now_ms + backoff[i].as_millis() as i64
    }

    pub(crate) fn is_in_flight(&self, id: &str) -> bool {
        let set = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        set.contains(id)
    }

    /// The plugin version that serves operations on an existing refund: the one that created it
    /// while it is loaded, else the active one.
    pub(crate) fn plugin_for(&self, refund: &RefundRecord) -> Option<Arc<PluginVersion>> {
        let registry = self.inner.providers.registry();
        let serving = registry.for_refund(
            &refund.provider,
            &refund.plugin_version,
            &refund.plugin_sha256,
        )?;
        if !serving.pinned {
            tracing::info!(
                created_by = %refund.plugin_version, serving = %serving.version.version(),
                "the plugin version that created this refund is not loaded: using the active one"
            );
        }
        Some(serving.version)
    }

    /// One refund with its history; `None` when there is no such id.
    pub async fn get(&self, id: &str) -> Result<Option<RefundDetail>, ServiceError> {
        self.inner
            .ledger
            .get(id)
            .await
            .map_err(|e| ServiceError(e.to_string()))
    }

    /// The provider HTTP exchanges made for a refund, oldest first (redacted).
    pub async fn exchanges(&self, refund_id: &str) -> Result<Vec<ExchangeRecord>, ServiceError> {
        self.inner
            .ledger
            .exchanges(refund_id)
            .await
            .map_err(|e| ServiceError(e.to_string()))
    }

    /// A page of refunds.
    pub async fn list(&self, query: ListQuery) -> Result<Page, ServiceError> {
        self.inner
            .ledger
            .list(query)
            .await
            .map_err(|e| ServiceError(e.to_string()))
    }

    /// A page of outbound events with their deliveries and attempts.
    pub async fn events(
        &self,
        query: refundry_ledger::EventQuery,
    ) -> Result<refundry_ledger::EventPage, ServiceError> {
        self.inner
            .ledger
            .events(query)
            .await
            .map_err(|e| ServiceError(e.to_string()))
    }

    /// Every metric, as `GET /metrics` answers it: this process's counts and the ledger's
    /// numbers read now.
    pub async fn metrics_text(&self) -> Result<String, ServiceError> {
        let stats = self
            .ledger()
            .stats()
            .await
            .map_err(|e| ServiceError(e.to_string()))?;
        let providers = self.providers();
        let active: Vec<(String, String)> = providers
            .providers()
            .map(|(id, version)| (id.to_owned(), version.version().to_owned()))
            .collect();
        Ok(providers.metrics().render(&stats, &active, self.now_ms()))
    }

    /// Where one plugin operation for a refund collects its exchanges and, when recording is
    /// on and the plugin is a component, its recording.
    pub(crate) fn operation_exchanges(&self, plugin: &PluginVersion) -> Exchanges {
        let caps = plugin.logic.capabilities();
        let redactor = caps.redactor().clone();
        if plugin.logic.component().is_none() {
            // A plugin linked into the host cannot be replayed: it is not recorded.
            return Exchanges::new(redactor);
        }
        let by = RecordedBy {
            provider: plugin.logic.info().id.clone(),
            plugin_version: plugin.version().to_owned(),
            plugin_sha256: plugin.sha256().to_owned(),
        };
        let masks = self
            .inner
            .masks
            .get(caps.provider())
            .cloned()
            .unwrap_or_default();
        match self.inner.recordings.recorder(by, masks) {
            Some(recorder) => Exchanges::recording(redactor, recorder),
            None => Exchanges::new(redactor),
        }
    }

    /// Writes the recording `exchanges` carries (if any) as the next operation of `refund_id`.
    /// A failure is logged, not returned: a lost recording must not fail a refund.
    pub(crate) async fn keep_recording(&self, refund_id: &str, exchanges: &Exchanges) {
        let Some(new) = self.recording_of(refund_id, exchanges) else {
            return;
        };
        if let Err(e) = self.inner.recordings.insert(new).await {
            tracing::warn!(refund_id, error = %e, "could not keep the operation's recording");
        }
    }

    /// The recording `exchanges` collected for `refund_id`, ready to write (`None` when there is
    /// none, or when it cannot be serialized, which is logged).
    pub(crate) fn recording_of(
        &self,
        refund_id: &str,
        exchanges: &Exchanges,
    ) -> Option<refundry_ledger::recordings::NewRecording> {
        let recorder = exchanges.recorder()?;
        match self
            .inner
            .recordings
            .prepare(refund_id, recorder, self.now_ms())
        {
            Ok(new) => new,
            Err(e) => {
                tracing::warn!(refund_id, error = %e, "could not keep the operation's recording");
                None
            }
        }
    }
}
