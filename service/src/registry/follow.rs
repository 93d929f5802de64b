//! Several hosts on one PostgreSQL ledger share one registry: the versions and the active one
//! live in the database, and a change made through any host is announced (`NOTIFY` on
//! [`REGISTRY_CHANNEL`], sent by the ledger when the change commits). Each host follows the
//! announcements and brings its own slots in line ([`Registry::refresh`]), compiling new versions
//! through its own artifact cache. A periodic look at every provider (versions and hashes only,
//! no components) is the fallback for an announcement lost with a dropped connection.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use refundry_ledger::plugin_versions as store;
use refundry_ledger::postgres::REGISTRY_CHANNEL;
use refundry_runtime::component::sha256_hex;
use tokio::task::JoinHandle;

use super::{Registry, RegistryError};

/// What [`Registry::refresh`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Versions loaded from the ledger.
    pub added: Vec<String>,
    /// Versions dropped because the ledger no longer has them.
    pub removed: Vec<String>,
    /// The version made active, when that changed.
    pub activated: Option<String>,
}

impl Registry {
    /// Brings `provider`'s versions and active one in line with the ledger, which another host
    /// may have changed: loads the versions stored since, drops those removed, and follows the
    /// activation. Refunds stay pinned to the version that created them while it is loaded.
    pub async fn refresh(&self, provider: &str) -> Result<Refreshed, RegistryError> {
        let slot = self.slot(provider)?;
        if slot.native {
            return Ok(Refreshed::default());
        }
        let _change = slot.changes.lock().await;
        let stored = store::stored(&self.db, provider).await?;
        let mut added = Vec::new();
        for s in stored.versions.iter() {
            let known = slot
                .read()
                .versions
                .get(&s.version)
                .is_some_and(|v| v.sha256() == s.sha256);
            if known {
                continue;
            }
            let sha = sha256_hex(&s.component);
            let compiled = self.compile_bytes(s.component.clone(), &sha).await?;
            added.push(Arc::new(
                self.bind(&slot.caps, compiled, s.loaded_at).await?,
            ));
        }
        let in_ledger: BTreeSet<&str> =
            stored.versions.iter().map(|s| s.version.as_str()).collect();
        let mut out = Refreshed::default();
        let mut state = slot.write();
        for v in added {
            v.log_loaded(provider, false);
            out.added.push(v.version().to_owned());
            state.versions.insert(v.version().to_owned(), v);
        }
        if let Some(active) = stored.active.and_then(|a| state.versions.get(&a).cloned())
            && !Arc::ptr_eq(&active, &state.active)
        {
            tracing::info!(
                provider,
                version = active.version(),
                previous = state.active.version(),
                "plugin version activated on another host"
            );
            out.activated = Some(active.version().to_owned());
            state.active = active;
        }
        let gone: Vec<String> = state
            .versions
            .keys()
            .filter(|v| !in_ledger.contains(v.as_str()) && *v != state.active.version())
            .cloned()
            .collect();
        for version in gone {
            if let Some(v) = state.versions.remove(&version) {
                self.cache.forget(&self.engine, v.sha256());
            }
            tracing::info!(provider, version, "plugin version removed on another host");
            out.removed.push(version);
        }
        Ok(out)
    }

    /// Whether the ledger holds other versions of `provider`, or another active one, than this
    /// host has: read without the components, so it is cheap to ask often.
    pub async fn is_behind(&self, provider: &str) -> Result<bool, RegistryError> {
        let slot = self.slot(provider)?;
        if slot.native {
            return Ok(false);
        }
        let stored = store::summary(&self.db, provider).await?;
        let state = slot.read();
        let here: Vec<(String, String)> = state
            .versions
            .iter()
            .map(|(version, v)| (version.clone(), v.sha256().to_owned()))
            .collect();
        let mut there = stored.versions;
        there.sort();
        Ok(here != there || stored.active.as_deref() != Some(state.active.version()))
    }

    /// [`Registry::refresh`] for each provider this host is behind on (after listening again,
    /// and at each periodic look).
    async fn catch_up(&self) {
        let providers: Vec<String> = self.providers().map(str::to_owned).collect();
        for provider in providers {
            match self.is_behind(&provider).await {
                Ok(true) => self.refresh_logged(&provider).await,
                Ok(false) => {}
                Err(e) => tracing::error!(provider, error = %e, "plugin versions not compared"),
            }
        }
    }

    async fn refresh_logged(&self, provider: &str) {
        if let Err(e) = self.refresh(provider).await {
            tracing::error!(provider, error = %e, "plugin versions could not be refreshed");
        }
    }
}

/// On a shared (PostgreSQL) ledger, follows the other hosts' plugin version changes until the
/// handle is aborted: at each announcement, and every `fallback` (a lost connection loses
/// announcements). `None` on SQLite, where this process is the only host.
pub fn spawn(registry: Arc<Registry>, fallback: Duration) -> Option<JoinHandle<()>> {
    if !registry.db.is_shared() {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            let listening = registry.db.listen(REGISTRY_CHANNEL).await;
            // Whatever changed while this host was not listening.
            registry.catch_up().await;
            let mut heard = match listening {
                Ok(Some(heard)) => heard,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for plugin version changes");
                    tokio::time::sleep(fallback).await;
                    continue;
                }
            };
            let mut tick = tokio::time::interval(fallback);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    provider = heard.recv() => match provider {
                        Some(provider) => registry.refresh_logged(&provider).await,
                        None => break,
                    },
                    _ = tick.tick() => registry.catch_up().await,
                }
            }
            tracing::warn!("plugin version announcements lost: listening again");
        }
    }))
}
