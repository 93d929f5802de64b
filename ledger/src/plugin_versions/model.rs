//! The registry's rows as the ledger keeps them.

/// A version as the ledger keeps it.
pub struct StoredVersion {
    /// The plugin's version (from its `describe()`).
    pub version: String,
    /// SHA-256 of the component.
    pub sha256: String,
    /// The component.
    pub component: Vec<u8>,
    /// When it was first loaded (ms).
    pub loaded_at: i64,
}

/// What the ledger holds for one provider.
pub struct StoredProvider {
    /// Its versions, oldest first.
    pub versions: Vec<StoredVersion>,
    /// The active version.
    pub active: Option<String>,
    /// SHA-256 of the configured component a start last applied.
    pub configured: Option<String>,
}

/// What the ledger holds for one provider, without the components: enough to tell whether a
/// host's registry is behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSummary {
    /// (version, SHA-256) of each stored version, by version.
    pub versions: Vec<(String, String)>,
    /// The active version.
    pub active: Option<String>,
}
