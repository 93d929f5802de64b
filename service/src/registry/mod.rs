//! The plugin registry: per provider, the loaded versions of its plugin and the active one.
//!
//! - A version is its `describe()` version plus the component's SHA-256. Loading one validates
//!   it (contract imports, `describe()` answers, provider id, no other component already loaded
//!   under that version), compiles it through the [`ArtifactCache`], and keeps its bytes in the
//!   ledger, so a restart loads the same versions and the same active one.
//! - Activation is one pointer swap under a write lock: an operation takes the active version
//!   (an `Arc`) when it starts and finishes on it; the next one takes the new version. Rollback is
//!   activating an earlier version.
//! - A refund is served by the version that created it while that is loaded
//!   ([`Registry::for_refund`]), else by the active one.
//!
//! Changes to one provider (load, activate, remove) are serialised, ledger first, then memory.
//! On a PostgreSQL ledger shared by several hosts, the ledger announces each change and every
//! host follows it ([`follow`]).

pub mod cache;
pub mod follow;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::view::ProviderInfoView;
pub use cache::{ArtifactCache, ArtifactKey, LoadedFrom};
use refundry_ledger::db::{Database, DbError};
use refundry_ledger::plugin_versions::{self as store, StoredVersion};
use refundry_runtime::caps::{Capabilities, Clock};
use refundry_runtime::component::{PluginComponent, sha256_hex};
use refundry_runtime::engine::Engine;
use refundry_runtime::error::LoadError;
use refundry_runtime::plugin::Plugin;
use refundry_runtime::{ContractVersion, RefundLogic};

/// The ledger's artifact key, made (32 random bytes) the first time it is asked for.
pub async fn artifact_key(db: &Database) -> Result<ArtifactKey, DbError> {
    let bytes = store::artifact_key(db, *ArtifactKey::random().bytes()).await?;
    Ok(ArtifactKey::from_bytes(&bytes).expect("the ledger keeps 32 bytes"))
}

/// Why a registry change was refused. Each refusal changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such provider is configured (HTTP 404).
    #[error("no provider {0:?} is configured")]
    UnknownProvider(String),
    /// The component is not a plugin of this contract, or not of this provider (HTTP 422).
    #[error("plugin refused: {0}")]
    Rejected(#[from] LoadError),
    /// Another component is already loaded under this version (HTTP 409).
    #[error(
        "{provider} version {version} is already loaded with sha256 {loaded}; this component \
         (sha256 {offered}) must carry another version"
    )]
    VersionConflict {
        /// Provider id.
        provider: String,
        /// The version both claim.
        version: String,
        /// Hash of the loaded one.
        loaded: String,
        /// Hash of the one offered.
        offered: String,
    },
    /// No such version is loaded (HTTP 404).
    #[error("{provider} has no version {version} loaded")]
    UnknownVersion {
        /// Provider id.
        provider: String,
        /// The version asked for.
        version: String,
    },
    /// The active version cannot be removed (HTTP 409).
    #[error("{provider} version {version} is active: activate another version first")]
    Active {
        /// Provider id.
        provider: String,
        /// The active version.
        version: String,
    },
    /// The provider runs a plugin linked into the host, which has no versions to swap (HTTP 409).
    #[error("{0} runs a plugin linked into the host (native:); it has no component versions")]
    Native(String),
    /// The ledger failed (HTTP 500).
    #[error(transparent)]
    Database(#[from] DbError),
}

/// One loaded version of a provider's plugin.
pub struct PluginVersion {
    /// What runs it: the sandboxed component (or, in a benchmark build, the plugin linked
    /// natively).
    pub logic: Arc<dyn RefundLogic>,
    /// How its code was obtained.
    pub loaded_from: LoadedFrom,
    /// When it was first loaded (ms), as the ledger recorded it.
    pub loaded_at: i64,
    /// How long this process took to compile (or read) and bind it.
    pub load_time: Duration,
}

impl PluginVersion {
    /// The version `describe()` gave.
    pub fn version(&self) -> &str {
        &self.logic.info().version
    }

    /// SHA-256 of the component (`native` for a linked-in plugin).
    pub fn sha256(&self) -> &str {
        self.logic.sha256()
    }

    fn log_loaded(&self, provider: &str, active: bool) {
        tracing::info!(
            provider, version = %self.version(), sha256 = %self.sha256(),
            loaded_from = ?self.loaded_from, load_ms = self.load_time.as_secs_f64() * 1e3,
            active, "plugin version loaded"
        );
    }

    /// A serializable view, `active` or not.
    pub fn view(&self, provider: &str, active: bool) -> VersionView {
        let info = self.logic.info();
        VersionView {
            provider: provider.to_owned(),
            version: info.version.clone(),
            sha256: self.sha256().to_owned(),
            size: self.logic.component().map_or(0, |c| c.size),
            // Logic linked natively is built with the SDK, on the newest contract.
            contract: self
                .logic
                .component()
                .map_or(ContractVersion::NEWEST, |c| c.contract())
                .as_str()
                .to_owned(),
            active,
            loaded_at: DateTime::from_timestamp_millis(self.loaded_at).unwrap_or_default(),
            loaded_from: self.loaded_from,
            load_ms: self.load_time.as_secs_f64() * 1e3,
            describe: ProviderInfoView::from(info),
        }
    }
}

/// A loaded version, as the admin API and CLI show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    /// Provider id.
    pub provider: String,
    /// The plugin's version.
    pub version: String,
    /// SHA-256 of the component (`native` for a plugin linked into the host).
    pub sha256: String,
    /// Size of the component, in bytes.
    pub size: usize,
    /// The released `refundry:provider` contract the component is built against (`0.1.0`,
    /// `0.2.0`); an older one runs through the runtime's adapter.
    #[schema(example = "0.2.0")]
    pub contract: String,
    /// Whether new refunds go to this version.
    pub active: bool,
    /// When it was first loaded.
    pub loaded_at: DateTime<Utc>,
    /// How this process got its compiled code.
    pub loaded_from: LoadedFrom,
    /// How long that took, in milliseconds.
    pub load_ms: f64,
    /// What the plugin says of itself.
    pub describe: ProviderInfoView,
}

/// A provider's versions (oldest first) and its active one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderVersions {
    /// Provider id.
    pub provider: String,
    /// The active version.
    pub active: String,
    /// Every loaded version.
    pub versions: Vec<VersionView>,
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Loaded {
    /// The version, as loaded.
    #[serde(flatten)]
    pub version: VersionView,
    /// False when this very component was already loaded (nothing changed).
    pub new: bool,
}

/// What an activation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Activated {
    /// Provider id.
    pub provider: String,
    /// The version now active.
    pub active: String,
    /// The version active before.
    pub previous: String,
}

/// Which version serves an operation on an existing refund.
pub struct Serving {
    /// The version.
    pub version: Arc<PluginVersion>,
    /// Whether it is the one that created the refund (else that one is gone: the active one).
    pub pinned: bool,
}

/// A component's compiled code, not yet bound to a provider.
struct Compiled {
    component: wasmtime::component::Component,
    from: LoadedFrom,
    /// SHA-256 of the component bytes (computed once, by whoever read them).
    sha256: String,
    /// Size of the component bytes.
    size: usize,
    /// When its loading started, for [`PluginVersion::load_time`].
    started: Instant,
}

struct Slot {
    caps: Arc<Capabilities>,
    native: bool,
    state: RwLock<SlotState>,
    /// Serialises this provider's changes, so the ledger and memory agree on their order.
    changes: tokio::sync::Mutex<()>,
}

struct SlotState {
    /// By version string.
    versions: BTreeMap<String, Arc<PluginVersion>>,
    active: Arc<PluginVersion>,
}

/// Every configured provider's loaded versions and active one. Cheap to share (`Arc`).
pub struct Registry {
    engine: Engine,
    db: Database,
    cache: ArtifactCache,
    clock: Arc<dyn Clock>,
    slots: BTreeMap<String, Slot>,
}

/// One provider to start the registry with.
pub struct ProviderStart {
    /// Provider id.
    pub id: String,
    /// Its capabilities.
    pub caps: Arc<Capabilities>,
    /// The configured plugin: a component's bytes, or a backend linked into the host.
    pub plugin: Configured,
}

/// The plugin a provider's configuration names.
pub enum Configured {
    /// Component bytes (from `plugin = "file.wasm"`).
    Component(Vec<u8>),
    /// A plugin linked into the host (`plugin = "native:<id>"`).
    Native(Arc<dyn RefundLogic>),
}

impl Registry {
    /// Loads every provider's stored versions, and its configured plugin when that changed
    /// since a start last applied it (a deploy): then it is stored if new and made active.
    /// Otherwise the versions and the active one are those the ledger holds, whatever admins
    /// loaded, activated or removed since (the configured version included).
    pub async fn start(
        engine: Engine,
        db: Database,
        cache: ArtifactCache,
        clock: Arc<dyn Clock>,
        providers: Vec<ProviderStart>,
    ) -> Result<Self, (String, RegistryError)> {
        let mut registry = Self {
            engine,
            db,
            cache,
            clock,
            slots: BTreeMap::new(),
        };
        for p in providers {
            let id = p.id.clone();
            let slot = registry.start_slot(p).await.map_err(|e| (id.clone(), e))?;
            registry.slots.insert(id, slot);
        }
        Ok(registry)
    }

    async fn start_slot(&self, p: ProviderStart) -> Result<Slot, RegistryError> {
        let bytes = match p.plugin {
            Configured::Native(logic) => {
                let version = Arc::new(PluginVersion {
                    logic,
                    loaded_from: LoadedFrom::Native,
                    loaded_at: self.clock.now_ms(),
                    load_time: Duration::ZERO,
                });
                return Ok(Slot::new(p.caps, true, version));
            }
            Configured::Component(bytes) => bytes,
        };
        let stored = store::stored(&self.db, &p.id).await?;
        let mut versions = BTreeMap::new();
        for s in stored.versions {
            let sha = sha256_hex(&s.component);
            let compiled = self.compile_bytes(s.component, &sha).await?;
            let v = self.bind(&p.caps, compiled, s.loaded_at).await?;
            versions.insert(v.version().to_owned(), Arc::new(v));
        }
        let sha = sha256_hex(&bytes);
        // The configured file changed since a start last applied it: a deploy, which it means
        // to be active. Otherwise the versions and the active one are what the admins left.
        let deployed = stored.configured.as_deref() != Some(sha.as_str());
        let kept = stored.active.and_then(|a| versions.get(&a).cloned());
        let active = match kept {
            Some(active) if !deployed => active,
            _ => {
                let configured = versions.values().find(|v| v.sha256() == sha).cloned();
                let v = match configured {
                    Some(v) => v,
                    None => {
                        let compiled = self.compile_bytes(bytes.clone(), &sha).await?;
                        let now = self.clock.now_ms();
                        let v = Arc::new(self.bind(&p.caps, compiled, now).await?);
                        check_conflict(&p.id, &versions, &v)?;
                        self.store(&p.id, &v, bytes).await?;
                        versions.insert(v.version().to_owned(), v.clone());
                        v
                    }
                };
                let now = self.clock.now_ms();
                store::activate(&self.db, &p.id, v.version(), Some(&sha), now).await?;
                v
            }
        };
        for v in versions.values() {
            v.log_loaded(&p.id, Arc::ptr_eq(v, &active));
        }
        let slot = Slot::new(p.caps, false, active);
        slot.write().versions = versions;
        Ok(slot)
    }

    /// The provider ids, in order.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.slots.keys().map(String::as_str)
    }

    /// The version new operations of `provider` go to.
    pub fn active(&self, provider: &str) -> Option<Arc<PluginVersion>> {
        Some(self.slots.get(provider)?.read().active.clone())
    }

    /// The version that serves a refund created by `version` (with this hash): that one while
    /// it is loaded, else the active one.
    pub fn for_refund(&self, provider: &str, version: &str, sha256: &str) -> Option<Serving> {
        let state = self.slots.get(provider)?.read();
        Some(match state.versions.get(version) {
            Some(v) if v.sha256() == sha256 => Serving {
                version: v.clone(),
                pinned: true,
            },
            _ => Serving {
                version: state.active.clone(),
                pinned: false,
            },
        })
    }

    /// Every provider's versions.
    pub fn list(&self) -> Vec<ProviderVersions> {
        self.slots
            .iter()
            .map(|(id, slot)| {
                let state = slot.read();
                let mut versions: Vec<_> = state.versions.values().collect();
                // Oldest first: version strings do not sort by age ("0.10.0" < "0.9.0").
                versions.sort_by_key(|v| (v.loaded_at, v.version().to_owned()));
                ProviderVersions {
                    provider: id.clone(),
                    active: state.active.version().to_owned(),
                    versions: versions
                        .into_iter()
                        .map(|v| v.view(id, Arc::ptr_eq(v, &state.active)))
                        .collect(),
                }
            })
            .collect()
    }

    /// Loads a component as a new version of `provider` (or of the provider it describes
    /// itself as, when `None`). Not activated. Loading a component already loaded changes
    /// nothing.
    pub async fn load(
        &self,
        provider: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<Loaded, RegistryError> {
        let sha = sha256_hex(&bytes);
        let loaded = self.add(provider, bytes, &sha).await;
        // A refused component leaves no artifact behind: uploads cannot grow the cache folder.
        if loaded.is_err() && !self.is_loaded(&sha) {
            self.cache.forget(&self.engine, &sha);
        }
        loaded
    }

    async fn add(
        &self,
        provider: Option<&str>,
        bytes: Vec<u8>,
        sha: &str,
    ) -> Result<Loaded, RegistryError> {
        // A component loaded without a provider is compiled to ask it which one it is: that
        // compilation is the one bound below.
        let (provider, compiled) = match provider {
            Some(p) => (p.to_owned(), None),
            None => match self.provider_of(sha) {
                Some(p) => (p, None),
                None => {
                    let (id, compiled) = self.identify(bytes.clone(), sha).await?;
                    (id, Some(compiled))
                }
            },
        };
        let slot = self.slot(&provider)?;
        if slot.native {
            return Err(RegistryError::Native(provider));
        }
        let already = |slot: &Slot| {
            let state = slot.read();
            let v = state.versions.values().find(|v| v.sha256() == sha)?;
            Some(Loaded {
                version: v.view(&provider, Arc::ptr_eq(v, &state.active)),
                new: false,
            })
        };
        if let Some(loaded) = already(slot) {
            return Ok(loaded);
        }
        // Compiled before taking the provider's change lock: an activation does not wait for a
        // compilation (about 100 ms per component here).
        let compiled = match compiled {
            Some(c) => c,
            None => self.compile_bytes(bytes.clone(), sha).await?,
        };
        let now = self.clock.now_ms();
        let v = Arc::new(self.bind(&slot.caps, compiled, now).await?);
        let _change = slot.changes.lock().await;
        // The same component may have been loaded meanwhile.
        if let Some(loaded) = already(slot) {
            return Ok(loaded);
        }
        check_conflict(&provider, &slot.read().versions, &v)?;
        self.store(&provider, &v, bytes).await?;
        slot.write()
            .versions
            .insert(v.version().to_owned(), v.clone());
        v.log_loaded(&provider, false);
        Ok(Loaded {
            version: v.view(&provider, false),
            new: true,
        })
    }

    /// Makes a loaded version the active one: the next operation uses it; operations already
    /// running finish on the version they started with.
    pub async fn activate(
        &self,
        provider: &str,
        version: &str,
    ) -> Result<Activated, RegistryError> {
        let slot = self.slot(provider)?;
        if self.db.is_shared() && !slot.read().versions.contains_key(version) {
            // Loaded through another host, not yet heard of here.
            self.refresh(provider).await?;
        }
        let _change = slot.changes.lock().await;
        let next = slot
            .read()
            .versions
            .get(version)
            .cloned()
            .ok_or_else(|| unknown_version(provider, version))?;
        store::activate(&self.db, provider, version, None, self.clock.now_ms()).await?;
        let previous = std::mem::replace(&mut slot.write().active, next);
        tracing::info!(
            provider, version, previous = %previous.version(), "plugin version activated"
        );
        Ok(Activated {
            provider: provider.to_owned(),
            active: version.to_owned(),
            previous: previous.version().to_owned(),
        })
    }

    /// Unloads a version that is not active. Refunds it created go to the active version.
    pub async fn remove(&self, provider: &str, version: &str) -> Result<(), RegistryError> {
        let slot = self.slot(provider)?;
        if self.db.is_shared() {
            // Another host may have loaded it, or made it active.
            self.refresh(provider).await?;
        }
        let _change = slot.changes.lock().await;
        {
            let state = slot.read();
            if !state.versions.contains_key(version) {
                return Err(unknown_version(provider, version));
            }
            if state.active.version() == version {
                return Err(RegistryError::Active {
                    provider: provider.to_owned(),
                    version: version.to_owned(),
                });
            }
        }
        store::remove(&self.db, provider, version).await?;
        let removed = slot.write().versions.remove(version);
        if let Some(v) = removed {
            self.cache.forget(&self.engine, v.sha256());
        }
        tracing::info!(provider, version, "plugin version removed");
        Ok(())
    }

    /// The provider that has the component with this hash loaded, if one has.
    fn provider_of(&self, sha256: &str) -> Option<String> {
        self.slots.iter().find_map(|(id, slot)| {
            let state = slot.read();
            let found = state.versions.values().any(|v| v.sha256() == sha256);
            found.then(|| id.clone())
        })
    }

    fn is_loaded(&self, sha256: &str) -> bool {
        self.provider_of(sha256).is_some()
    }

    fn slot(&self, provider: &str) -> Result<&Slot, RegistryError> {
        self.slots
            .get(provider)
            .ok_or_else(|| RegistryError::UnknownProvider(provider.to_owned()))
    }

    /// The provider a component says it is, from a `describe()` with no capabilities; and the
    /// component, compiled.
    async fn identify(
        &self,
        bytes: Vec<u8>,
        sha: &str,
    ) -> Result<(String, Compiled), RegistryError> {
        let compiled = self.compile_bytes(bytes, sha).await?;
        let component = PluginComponent::link(
            &self.engine,
            &compiled.component,
            compiled.sha256.clone(),
            compiled.size,
        )?;
        let plugin = Plugin::inspect(self.engine.clone(), Arc::new(component)).await?;
        Ok((plugin.info().id.clone(), compiled))
    }

    /// Compiles component bytes whose SHA-256 is `sha` through the cache, off the async threads.
    async fn compile_bytes(&self, bytes: Vec<u8>, sha: &str) -> Result<Compiled, LoadError> {
        let started = Instant::now();
        let (engine, cache, sha256) = (self.engine.clone(), self.cache.clone(), sha.to_owned());
        let size = bytes.len();
        let compiled = tokio::task::spawn_blocking(move || {
            let (component, from) = cache.compile(&engine, &bytes, &sha256)?;
            Ok::<_, LoadError>(Compiled {
                component,
                from,
                sha256,
                size,
                started,
            })
        });
        compiled
            .await
            .map_err(|e| LoadError::Contract(format!("compilation task failed: {e}")))?
    }

    /// A version from its compiled component: linked, and bound to the provider's capabilities
    /// (its `describe()` must answer and name the provider they are granted to).
    async fn bind(
        &self,
        caps: &Arc<Capabilities>,
        compiled: Compiled,
        loaded_at: i64,
    ) -> Result<PluginVersion, RegistryError> {
        let component = PluginComponent::link(
            &self.engine,
            &compiled.component,
            compiled.sha256,
            compiled.size,
        )?;
        let plugin =
            Plugin::bind(self.engine.clone(), Arc::new(component), caps.clone(), true).await?;
        Ok(PluginVersion {
            logic: Arc::new(plugin),
            loaded_from: compiled.from,
            loaded_at,
            load_time: compiled.started.elapsed(),
        })
    }

    async fn store(
        &self,
        provider: &str,
        v: &PluginVersion,
        component: Vec<u8>,
    ) -> Result<(), RegistryError> {
        let row = StoredVersion {
            version: v.version().to_owned(),
            sha256: v.sha256().to_owned(),
            component,
            loaded_at: v.loaded_at,
        };
        Ok(store::insert(&self.db, provider, &row).await?)
    }
}

impl Slot {
    fn new(caps: Arc<Capabilities>, native: bool, active: Arc<PluginVersion>) -> Self {
        let versions = BTreeMap::from([(active.version().to_owned(), active.clone())]);
        Self {
            caps,
            native,
            state: RwLock::new(SlotState { versions, active }),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, SlotState> {
        // Every write is a single assignment or map insert/remove: a panic cannot leave the
        // state half-changed, so a poisoned lock is still consistent.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, SlotState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn check_conflict(
    provider: &str,
    versions: &BTreeMap<String, Arc<PluginVersion>>,
    v: &PluginVersion,
) -> Result<(), RegistryError> {
    match versions.get(v.version()) {
        Some(loaded) if loaded.sha256() != v.sha256() => Err(RegistryError::VersionConflict {
            provider: provider.to_owned(),
            version: v.version().to_owned(),
            loaded: loaded.sha256().to_owned(),
            offered: v.sha256().to_owned(),
        }),
        _ => Ok(()),
    }
}

fn unknown_version(provider: &str, version: &str) -> RegistryError {
    RegistryError::UnknownVersion {
        provider: provider.to_owned(),
        version: version.to_owned(),
    }
}
