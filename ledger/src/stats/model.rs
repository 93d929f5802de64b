//! The operations views' values: counts by status, refunds waiting, refunds stuck.

use crate::{RefundRecord, Status};
use serde::Serialize;

/// How many refunds of one provider and plugin version are in one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    /// Provider id.
    pub provider: String,
    /// Version of the plugin that created the refunds.
    pub plugin_version: String,
    /// Their current status.
    pub status: Status,
    /// How many.
    pub count: u64,
}

/// One provider's refunds that are not final yet (`pending` or `unknown`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// Provider id.
    pub provider: String,
    /// How many refunds of this provider are not final.
    pub count: u64,
    /// When the oldest of them was created (ms since the Unix epoch).
    pub oldest_created_ms: i64,
}

/// The ledger as `GET /metrics` reports it, read in one go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Refunds by provider, plugin version and status (only combinations that exist).
    pub by_status: Vec<StatusCount>,
    /// Per provider with refunds not final, how many and the oldest (providers with none are
    /// not listed).
    pub waiting: Vec<Waiting>,
    /// On SQLite, the writes this process committed and the transactions they took.
    pub writes: Option<crate::db::WriteCounts>,
}

/// A refund not final after longer than asked, with its age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StuckRefund {
    /// The refund.
    #[serde(flatten)]
    pub refund: RefundRecord,
    /// Milliseconds since it was created, at the time of the query.
    pub age_ms: i64,
}

/// What [`Ledger::stuck`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stuck {
    /// The oldest ones first, at most the limit asked for.
    pub refunds: Vec<StuckRefund>,
    /// How many refunds match in all (can be more than `refunds.len()`).
    pub total: u64,
}
