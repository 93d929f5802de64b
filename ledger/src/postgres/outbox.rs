//! The outbound events outbox on PostgreSQL.

use deadpool_postgres::GenericClient;

use crate::RefundRecord;
use crate::db::DbError;
use crate::outbox::{DISCREPANCY_EVENT, DiscrepancyData, EventBody, EventData, new_event_id};

/// Writes the event for the status `refund` just entered, inside the caller's transaction, with a
/// pending delivery of it to every endpoint known now.
pub(crate) async fn record(c: &impl GenericClient, refund: &RefundRecord) -> Result<(), DbError> {
    let body = EventBody {
        id: new_event_id(),
        kind: format!("refund.{}", refund.status.as_str()),
        created_at: refund.updated_at,
        data: EventData::Refund(refund.clone()),
    };
    insert(c, &refund.id, &body).await
}

/// Writes the event of one reconciliation finding, inside the transaction that records its run;
/// `key` orders its deliveries (as SQLite's `record_discrepancy`).
pub(crate) async fn record_discrepancy(
    c: &impl GenericClient,
    key: &str,
    created_at: chrono::DateTime<chrono::Utc>,
    data: DiscrepancyData,
) -> Result<(), DbError> {
    let body = EventBody {
        id: new_event_id(),
        kind: DISCREPANCY_EVENT.to_owned(),
        created_at,
        data: EventData::Discrepancy(data),
    };
    insert(c, key, &body).await
}

async fn insert(c: &impl GenericClient, key: &str, body: &EventBody) -> Result<(), DbError> {
    let json = serde_json::to_string(body).expect("an event serialises");
    let at = body.created_at.timestamp_millis();
    // The deliveries are written with the event (see the schema): due now, to every endpoint
    // that was known when the event was written.
    c.execute(
        "WITH event AS (
             INSERT INTO events (id, refund_id, type, created_at, body)
             VALUES ($1, $2, $3, $4, $5) RETURNING seq)
         INSERT INTO event_deliveries (event_seq, endpoint, refund_id, state, attempts,
             next_attempt_at)
         SELECT event.seq, e.endpoint, $2, 'pending', 0, $4 FROM event, event_endpoints e",
        &[&body.id, &key, &body.kind, &at, &json],
    )
    .await?;
    Ok(())
}
