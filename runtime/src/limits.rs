//! What a plugin may use: the engine's limits on every operation, the HTTP limits, the quotas of
//! its storage and log, and the memory cap enforced through wasmtime's `ResourceLimiter`.

use std::time::Duration;

/// Limits applied to every plugin operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimits {
    /// Wall-time budget of one operation (instantiate + call), including time spent in host calls.
    pub deadline: Duration,
    /// The most linear memory one plugin instance may have, in bytes.
    pub memory_limit: usize,
    /// How many plugin instances may exist at once (the pooling allocator's slots).
    pub max_instances: u32,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(5),
            memory_limit: 16 << 20,
            max_instances: 256,
        }
    }
}

/// What one provider's plugin may keep and say (`[engine]` keys): a plugin must not fill the
/// ledger's disk or flood the host's logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginQuotas {
    /// The most keys a provider's storage may hold.
    pub storage_max_keys: u64,
    /// The most bytes (keys and values) a provider's storage may hold.
    pub storage_max_bytes: u64,
    /// The most log lines one plugin operation may write.
    pub log_max_lines: u32,
}

impl Default for PluginQuotas {
    fn default() -> Self {
        Self {
            // A token cache and a little state need a handful of keys and a few KiB.
            storage_max_keys: 1_000,
            storage_max_bytes: 1 << 20,
            log_max_lines: 200,
        }
    }
}

/// Limits applied to the plugins' outbound HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time allowed for one request, from connect to the last body byte.
    pub timeout: Duration,
    /// Largest response body accepted, in bytes.
    pub max_response_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_response_bytes: 1 << 20,
        }
    }
}

/// The memory cap of one plugin instance. Growing linear memory past it traps the guest with
/// [`MemoryLimitExceeded`], which the host reports as a typed error.
pub struct MemoryCap {
    limit: usize,
    /// The largest linear memory size granted so far, in bytes (initial size included).
    peak: usize,
}

impl MemoryCap {
    /// A cap of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit, peak: 0 }
    }

    /// The largest linear memory the instance has had, in bytes.
    pub fn peak(&self) -> usize {
        self.peak
    }
}

/// The trap payload when a plugin tries to grow its memory past the cap.
#[derive(Debug, thiserror::Error)]
#[error("linear memory would grow to {desired} bytes, above the cap of {limit} bytes")]
pub struct MemoryLimitExceeded {
    /// The cap, in bytes.
    pub limit: usize,
    /// The size the plugin asked for, in bytes.
    pub desired: usize,
}

/// Tables hold function references; a plugin needs a few hundred at most.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            // An error (rather than `Ok(false)`) traps at the `memory.grow` itself, so the host
            // can tell a capped plugin from one that failed for another reason.
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.limit,
                desired,
            }));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
