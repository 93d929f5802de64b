//! The wasmtime engine every plugin runs in: pooling allocator, epoch-based time slicing, the
//! contract's linker, and the import check that refuses components reaching outside the contract.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use wasmtime::component::{Component, Linker};
use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::caps::PluginState;
use crate::contract::{self, ContractVersion, Prepared};
use crate::error::LoadError;
use crate::limits::EngineLimits;
use crate::limits::MemoryCap;

/// How often the epoch advances. A running plugin yields to the async runtime at each tick, so a
/// plugin that computes forever cannot hold a runtime thread and is dropped at its deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Linear memory pages an instance keeps mapped between uses of a pool slot: resetting them is
/// cheaper than unmapping and faulting them in again (a plugin operation touches about this much).
const KEEP_RESIDENT: usize = 256 * 1024;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the wasmtime engine: {0}")]
pub struct EngineError(String);

/// The shared wasmtime engine and linker. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: wasmtime::Engine,
    linker: Arc<Linker<PluginState>>,
    limits: EngineLimits,
    /// See [`Engine::artifact_key`]; fixed for the engine's life.
    artifact_key: Arc<str>,
}

impl Engine {
    /// Starts an engine with these limits, and the thread that advances its epoch.
    pub fn new(limits: EngineLimits) -> Result<Self, EngineError> {
        let n = limits.max_instances;
        let mut pool = PoolingAllocationConfig::new();
        // A wit-component plugin is one core module plus small adapter modules (a few core
        // instances and tables per component instance), and one linear memory.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(4))
            .total_memories(n)
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size(limits.memory_limit)
            .linear_memory_keep_resident(KEEP_RESIDENT.min(limits.memory_limit))
            .table_keep_resident(4096)
            // The fiber stack an async call runs on is reused the same way.
            .async_stack_keep_resident(KEEP_RESIDENT)
            // Reset only the pages an instance dirtied (Linux 6.7+; ignored elsewhere).
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let inner = wasmtime::Engine::new(&config).map_err(|e| EngineError(format!("{e:#}")))?;
        let mut linker = Linker::new(&inner);
        contract::add_to_linker(&mut linker).map_err(|e| EngineError(format!("{e:#}")))?;
        spawn_epoch_ticker(&inner)?;
        Ok(Self {
            artifact_key: compatibility_digest(&inner).into(),
            inner,
            linker: Arc::new(linker),
            limits,
        })
    }

    /// The limits every operation runs under.
    pub fn limits(&self) -> EngineLimits {
        self.limits
    }

    /// The underlying wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner
    }

    /// Compiles a component after checking that it imports only the contract it was built
    /// against, and links it.
    pub(crate) fn prepare(&self, bytes: &[u8]) -> Result<Prepared, LoadError> {
        let component = Component::new(&self.inner, bytes)
            .map_err(|e| LoadError::NotAComponent(format!("{e:#}")))?;
        self.link(&component)
    }

    /// Finds which released contract a compiled component was built against, checks that it
    /// imports only that contract, and links it.
    pub(crate) fn link(&self, component: &Component) -> Result<Prepared, LoadError> {
        let version = ContractVersion::of(&self.inner, component)?;
        version.check_imports(&imports(&self.inner, component))?;
        Prepared::link(&self.linker, component, version)
    }

    /// What a precompiled artifact must have been made for to run in this engine: a digest of
    /// wasmtime's compatibility hash (its version and every setting that shapes compiled code).
    pub fn artifact_key(&self) -> &str {
        &self.artifact_key
    }

    /// A store for one operation: memory cap, and a yield to the runtime at every epoch tick.
    pub(crate) fn store(&self, state: PluginState) -> Store<PluginState> {
        let mut store = Store::new(&self.inner, state);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_async_yield_and_update(1);
        store
    }

    /// A memory cap at this engine's limit.
    pub(crate) fn memory_cap(&self) -> MemoryCap {
        MemoryCap::new(self.limits.memory_limit)
    }
}

/// 16 hex digits of SHA-256 over wasmtime's precompile compatibility hash.
fn compatibility_digest(engine: &wasmtime::Engine) -> String {
    /// Feeds what is hashed into SHA-256, which (unlike `DefaultHasher`) is the same in every
    /// build, so the key can name a file.
    struct Sha(Sha256);
    impl std::hash::Hasher for Sha {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the digest is read")
        }
    }
    let mut sha = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut sha);
    hex::encode(&sha.0.finalize()[..8])
}

/// The names a component imports.
pub fn imports(engine: &wasmtime::Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

fn spawn_epoch_ticker(engine: &wasmtime::Engine) -> Result<(), EngineError> {
    // The thread holds only a weak reference, so it ends once the engine is dropped.
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("refundry-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(|_| ())
        .map_err(|e| EngineError(format!("epoch thread: {e}")))
}
