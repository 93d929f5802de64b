//! Per-instance resource limits: the memory cap, enforced through wasmtime's `ResourceLimiter`.

/// The memory cap of one plugin instance. Growing linear memory past it traps the guest with
/// [`MemoryLimitExceeded`], which the host reports as a typed error.
pub(crate) struct MemoryCap {
    limit: usize,
    /// The largest linear memory size granted so far, in bytes (initial size included).
    peak: usize,
}

impl MemoryCap {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, peak: 0 }
    }

    /// The largest linear memory the instance has had, in bytes.
    pub(crate) fn peak(&self) -> usize {
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
