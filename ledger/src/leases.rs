//! Scheduled work that one host at a time does (a provider's scheduled reconciliation). On
//! SQLite this process is the only host, so a claim always succeeds; on PostgreSQL it is a row
//! of `leases` that one host holds until its lease ends.

use crate::Ledger;
use crate::db::DbError;

impl Ledger {
    /// Whether other hosts may share this ledger (PostgreSQL): then a refund not in flight in
    /// this process may be in flight in another.
    pub fn is_shared(&self) -> bool {
        self.db.is_shared()
    }

    /// Claims the scheduled work `name` at `now_ms`: true when this host is to do it now (no
    /// other host holds it, and it is due). Give it back with [`Ledger::release`].
    pub async fn claim(&self, name: &str, now_ms: i64) -> Result<bool, DbError> {
        match self.db.pg() {
            Some(pg) => pg.claim_lease(name, now_ms).await,
            None => Ok(true),
        }
    }

    /// Gives back the scheduled work `name`, next due at `next_due_ms` (on any host).
    pub async fn release(&self, name: &str, next_due_ms: i64) -> Result<(), DbError> {
        match self.db.pg() {
            Some(pg) => pg.finish_lease(name, next_due_ms).await,
            None => Ok(()),
        }
    }
}
