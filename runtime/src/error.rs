//! The host's errors, one enum per layer.

use std::time::Duration;

/// A plugin failed to run an operation (as opposed to the provider refusing it).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The operation ran past its deadline and was stopped.
    #[error("plugin {provider} ran past its {deadline:?} deadline in {op}")]
    DeadlineExceeded {
        /// Provider id.
        provider: String,
        /// Operation name.
        op: &'static str,
        /// The deadline.
        deadline: Duration,
    },
    /// The plugin tried to grow its memory past the cap.
    #[error("plugin {provider} hit its memory cap of {limit} bytes in {op}")]
    MemoryLimit {
        /// Provider id.
        provider: String,
        /// Operation name.
        op: &'static str,
        /// The cap, in bytes.
        limit: usize,
    },
    /// The plugin trapped (a panic, an `unreachable`, a bad memory access).
    #[error("plugin {provider} trapped in {op}: {message}")]
    Trap {
        /// Provider id.
        provider: String,
        /// Operation name.
        op: &'static str,
        /// The trap and its wasm backtrace.
        message: String,
    },
    /// The plugin answered with an id or code longer than the host accepts (see
    /// [`crate::sanitize`]): not a provider's answer the host can keep.
    #[error("plugin {provider} answered {op} with {field} of {len} bytes, over the cap of {limit}")]
    OversizedAnswer {
        /// Provider id.
        provider: String,
        /// Operation name.
        op: &'static str,
        /// Which text of the answer.
        field: &'static str,
        /// Its length, in bytes.
        len: usize,
        /// The cap, in bytes.
        limit: usize,
    },
    /// No instance could be created (for example every pool slot is in use).
    #[error("plugin {provider} could not be instantiated for {op}: {message}")]
    Instantiate {
        /// Provider id.
        provider: String,
        /// Operation name.
        op: &'static str,
        /// Why.
        message: String,
    },
}

/// A component could not be loaded as a provider plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component imports something the contract it was built against does not grant.
    #[error(
        "component imports {import:?}, which is outside the refundry:provider@{contract} contract (allowed: {allowed})"
    )]
    ForbiddenImport {
        /// The import's name.
        import: String,
        /// The released contract version the component exports.
        contract: &'static str,
        /// The allowed imports.
        allowed: String,
    },
    /// The component's imports or exports do not match the contract's types.
    #[error("component does not fit the refund-plugin world: {0}")]
    Contract(String),
    /// `describe()` failed.
    #[error("describe() failed: {0}")]
    Describe(#[source] PluginError),
    /// The plugin says it is another provider than the one configured.
    #[error("plugin describes itself as provider {found:?}, but is configured for {expected:?}")]
    ProviderMismatch {
        /// The configured provider id.
        expected: String,
        /// The id the plugin gave.
        found: String,
    },
}
