//! A reconciliation run's values: how it was started, how it ended, its pages.

pub use crate::findings::Finding;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The service's schedule.
    Schedule,
    /// `refundry reconcile` on the command line.
    Cli,
    /// A request to the REST API.
    Api,
}

impl Trigger {
    /// Every trigger.
    pub const ALL: [Trigger; 3] = [Trigger::Schedule, Trigger::Cli, Trigger::Api];

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Cli => "cli",
            Trigger::Api => "api",
        }
    }

    /// Parses the stored word.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == word)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// The provider and the ledger agree.
    Matched,
    /// At least one finding.
    Discrepancies,
    /// The run could not finish (its `error` says why); its findings, if any, are partial.
    Error,
}

impl RunOutcome {
    /// Every outcome.
    pub const ALL: [RunOutcome; 3] = [
        RunOutcome::Matched,
        RunOutcome::Discrepancies,
        RunOutcome::Error,
    ];

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Matched => "matched",
            RunOutcome::Discrepancies => "discrepancies",
            RunOutcome::Error => "error",
        }
    }

    /// Parses the stored word.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == word)
    }
}

/// A finished run about to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReconciliation {
    /// Provider id.
    pub provider: String,
    /// Refunds created at or after this time (ms) were compared...
    pub from_ms: i64,
    /// ...and before this one (ms).
    pub to_ms: i64,
    /// What started it.
    pub trigger: Trigger,
    /// When it started (ms).
    pub started_at_ms: i64,
    /// When it finished (ms); also the time of its events.
    pub finished_at_ms: i64,
    /// How many refunds in the range the provider listed.
    pub provider_refunds: i64,
    /// How many refunds in the range the ledger holds.
    pub ledger_refunds: i64,
    /// Why it could not finish, when it could not.
    pub error: Option<String>,
    /// What it found, in the order to keep.
    pub findings: Vec<Finding>,
}

impl NewReconciliation {
    /// `error` when the run failed, else `discrepancies` when it found any, else `matched`.
    pub fn outcome(&self) -> RunOutcome {
        if self.error.is_some() {
            RunOutcome::Error
        } else if !self.findings.is_empty() {
            RunOutcome::Discrepancies
        } else {
            RunOutcome::Matched
        }
    }
}

/// A recorded run (`GET /v1/reconciliations`, `GET /v1/reconciliations/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReconciliationRecord {
    /// Run id (`rec_` + a time-ordered UUID, given when the run is recorded).
    pub id: String,
    /// Provider id.
    pub provider: String,
    /// Start of the creation range compared (inclusive).
    pub from: DateTime<Utc>,
    /// End of the creation range compared (exclusive).
    pub to: DateTime<Utc>,
    /// What started it.
    pub trigger: Trigger,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Why it could not finish, when it could not.
    pub error: Option<String>,
    /// How many refunds in the range the provider listed.
    pub provider_refunds: i64,
    /// How many refunds in the range the ledger held.
    pub ledger_refunds: i64,
    /// How many findings of each kind (every kind, zero included).
    pub finding_counts: BTreeMap<String, i64>,
    /// The findings in the order recorded; empty in a list (read one run for them).
    pub findings: Vec<Finding>,
}

/// One page of runs, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReconciliationPage {
    /// The runs, without their findings.
    pub reconciliations: Vec<ReconciliationRecord>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// A selection of runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconciliationQuery {
    /// Only this provider's.
    pub provider: Option<String>,
    /// Continue after this run id (the previous page's `next_cursor`).
    pub cursor: Option<String>,
    /// At most this many (the caller bounds it).
    pub limit: usize,
}
