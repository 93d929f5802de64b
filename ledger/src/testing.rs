//! Sample rows for the tests of the crates that use the ledger.

use chrono::{DateTime, Utc};

use crate::{Failure, RefundRecord, Status};

/// A refund record numbered `n`: failed, with a reason that needs CSV quoting.
pub fn record(n: u32) -> RefundRecord {
    let at = DateTime::parse_from_rfc3339("2026-11-25T10:00:00.5Z")
        .unwrap()
        .with_timezone(&Utc);
    RefundRecord {
        id: format!("rf_{n:04}"),
        provider: "mfs-africa".into(),
        plugin_version: "0.1.0".into(),
        plugin_sha256: "ab".repeat(32),
        external_refund_id: format!("ext-{n}"),
        original_transaction_id: "tx-1".into(),
        amount: 150_050,
        currency: "KES".into(),
        reason: Some("customer, said \"no\"".into()),
        order_id: None,
        status: Status::Failed,
        provider_refund_id: None,
        provider_status: Some("FAILED".into()),
        failure: Some(Failure {
            code: "amount_exceeded".into(),
            message: "=cmd|' /C calc'!A0".into(),
            provider_code: Some("E12".into()),
        }),
        created_at: at,
        updated_at: at,
    }
}
