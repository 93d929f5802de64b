//! A recording's values: who made it, a new one, one read back.

/// Which plugin version an operation ran on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedBy {
    /// Provider id.
    pub provider: String,
    /// Plugin version (`describe()`).
    pub plugin_version: String,
    /// SHA-256 of the component.
    pub plugin_sha256: String,
}

/// One recording to write.
#[derive(Debug, Clone)]
pub struct NewRecording {
    /// The refund it was made for.
    pub refund_id: String,
    /// The operation's name in the contract.
    pub operation: &'static str,
    /// Which plugin version ran it.
    pub by: RecordedBy,
    /// Whether it was cut at the per-operation cap.
    pub truncated: bool,
    /// The recording, as JSON text.
    pub json: String,
    /// When it is written (ms since the epoch).
    pub now_ms: i64,
}

/// The exchanges of one plugin operation, logged with its recording
/// ([`super::RecordingTable::log_operation`]).
#[derive(Debug, Clone)]
pub struct OperationLog {
    /// The refund they were made for, if any.
    pub refund_id: Option<String>,
    /// The provider.
    pub provider: String,
    /// The operation's name in the contract.
    pub operation: String,
    /// The redacted exchanges, in the order they were made.
    pub exchanges: Vec<crate::exchange::Exchange>,
}

/// A recording as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingRow {
    /// Its place among the refund's operations, from 1.
    pub seq: i64,
    /// Which plugin version ran it.
    pub by: RecordedBy,
    /// When it was written (ms since the epoch).
    pub recorded_at: i64,
    /// Its size in the table, in bytes.
    pub size: i64,
    /// The recording, as JSON text.
    pub json: String,
}
