//! The outbound events outbox on PostgreSQL.
//!
//! Unlike SQLite's, an event's deliveries are written with it ([`insert`]): several hosts write
//! events at once, and their sequence numbers are not committed in order, so a cursor over them
//! could pass an event still being written. Any host delivers: [`due_deliveries`] claims the
//! deliveries it returns (`FOR UPDATE SKIP LOCKED`, their due time moved a lease ahead), so no
//! two hosts send the same event at once, and a dead host's claims come back when the lease ends.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use tokio_postgres::types::{FromSql, Type};

use super::Pg;
use crate::error::DbError;
use crate::outbox::model::{
    Attempt, AttemptRecord, DISCREPANCY_EVENT, DeliveryRecord, DeliveryState, DiscrepancyData,
    DueDelivery, EventBody, EventData, EventPage, EventQuery, EventRecord, Next, new_event_id,
};
use crate::{RefundRecord, time};

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
         SELECT event.seq, e.endpoint, $2, 'pending', 0, $4 FROM event, event_endpoints e
         WHERE NOT e.retired",
        &[&body.id, &key, &body.kind, &at, &json],
    )
    .await?;
    Ok(())
}

/// Registers the endpoints not seen before. Their deliveries are written with each event from
/// now on ([`insert`]), so there is nothing to add here: returns 0. `after_seq` (the last event
/// written when the endpoint was first seen) is kept for information only.
pub(crate) async fn enqueue_deliveries(
    pg: &Pg,
    endpoints: Vec<String>,
    now_ms: i64,
) -> Result<usize, DbError> {
    if endpoints.is_empty() {
        return Ok(0);
    }
    let client = pg.client().await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO event_endpoints (endpoint, after_seq, added_at)
             SELECT DISTINCT endpoint, (SELECT COALESCE(MAX(seq), 0) FROM events), $2::BIGINT
             FROM UNNEST($1::TEXT[]) AS endpoint
             ON CONFLICT (endpoint) DO NOTHING",
        )
        .await?;
    client.execute(&stmt, &[&endpoints, &now_ms]).await?;
    // The configured endpoints are the current ones: one dropped from the configuration gets
    // no delivery of the events written from now on (one added back gets them again).
    let retire = client
        .prepare_cached(
            "UPDATE event_endpoints SET retired = NOT (endpoint = ANY($1::TEXT[]))
             WHERE retired = (endpoint = ANY($1::TEXT[]))",
        )
        .await?;
    client.execute(&retire, &[&endpoints]).await?;
    Ok(0)
}

/// Claims the deliveries due at `now_ms`, most overdue first, only the oldest pending event of
/// each (endpoint, refund): locked rows (another host's claim under way) are skipped, and the
/// claimed ones are due again a lease from now, unless [`record_attempt`] says otherwise first.
pub(crate) async fn due_deliveries(
    pg: &Pg,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<DueDelivery>, DbError> {
    let client = pg.client().await?;
    // One statement, so the claim (lock and move) is one transaction. The NOT EXISTS reads the
    // statement's snapshot; a head another host has claimed, delivered or retried since is
    // rechecked when its row is locked (or skipped while it is locked), and a later event of the
    // same queue never passes a head that is still pending.
    let stmt = client
        .prepare_cached(
            "WITH due AS (
                 SELECT d.event_seq, d.endpoint, d.next_attempt_at
                 FROM event_deliveries d
                 WHERE d.state = 'pending' AND d.next_attempt_at <= $1
                   AND NOT EXISTS (
                       SELECT 1 FROM event_deliveries p
                       WHERE p.state = 'pending' AND p.endpoint = d.endpoint
                         AND p.refund_id = d.refund_id AND p.event_seq < d.event_seq)
                 ORDER BY d.next_attempt_at, d.event_seq
                 LIMIT $2
                 FOR UPDATE OF d SKIP LOCKED)
             UPDATE event_deliveries u SET next_attempt_at = $3
             FROM due JOIN events e ON e.seq = due.event_seq
             WHERE u.event_seq = due.event_seq AND u.endpoint = due.endpoint
             RETURNING u.event_seq, e.id, u.endpoint, u.refund_id, u.attempts, e.body,
                 e.created_at, due.next_attempt_at",
        )
        .await?;
    let until = now_ms.saturating_add(pg.lease_ms());
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client.query(&stmt, &[&now_ms, &limit, &until]).await?;
    let mut due: Vec<(i64, DueDelivery)> = rows
        .iter()
        .map(|r| {
            (
                r.get(7),
                DueDelivery {
                    event_seq: r.get(0),
                    event_id: r.get(1),
                    endpoint: r.get(2),
                    refund_id: r.get(3),
                    attempts: r.get(4),
                    body: r.get(5),
                    created_at_ms: r.get(6),
                },
            )
        })
        .collect();
    // RETURNING keeps no order: SQLite's, by the due time before the claim.
    due.sort_by_key(|(due_at, d)| (*due_at, d.event_seq));
    Ok(due.into_iter().map(|(_, d)| d).collect())
}

/// Records one try at a delivery and what follows it, in one transaction.
pub(crate) async fn record_attempt(
    pg: &Pg,
    event_seq: i64,
    endpoint: &str,
    attempt: Attempt,
) -> Result<(), DbError> {
    let (state, next, delivered) = match attempt.then {
        Next::Delivered => (DeliveryState::Delivered, None, Some(attempt.at_ms)),
        Next::RetryAt(at) => (DeliveryState::Pending, Some(at), None),
        Next::Abandon => (DeliveryState::Abandoned, None, None),
    };
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    // The row lock taken here orders two hosts' attempts at one delivery (a claim whose lease
    // ran out): each gets its own number.
    let number: i64 = tx
        .query_one(
            &tx.prepare_cached(
                "UPDATE event_deliveries SET attempts = attempts + 1, state = $3,
                     next_attempt_at = COALESCE($4, next_attempt_at), delivered_at = $5
                 WHERE event_seq = $1 AND endpoint = $2 RETURNING attempts",
            )
            .await?,
            &[&event_seq, &endpoint, &state.as_str(), &next, &delivered],
        )
        .await?
        .get(0);
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO event_attempts (event_seq, endpoint, attempt, at, http_status, error,
                 latency_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?,
        &[
            &event_seq,
            &endpoint,
            &number,
            &attempt.at_ms,
            &attempt.http_status.map(i64::from),
            &attempt.error,
            &attempt.latency_ms,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A page of events with their deliveries and attempts, oldest first, read from one snapshot.
pub(crate) async fn events(pg: &Pg, query: EventQuery) -> Result<EventPage, DbError> {
    let limit = query.limit.max(1);
    let mut client = pg.client().await?;
    let tx = Pg::snapshot(&mut client).await?;
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT seq, id, type, refund_id, created_at, body FROM events
                 WHERE ($1::TEXT IS NULL OR refund_id = $1) AND ($2::BIGINT IS NULL OR seq > $2)
                 ORDER BY seq LIMIT $3",
            )
            .await?,
            &[
                &query.refund_id,
                &query.after_seq,
                &i64::try_from(limit + 1).unwrap_or(i64::MAX),
            ],
        )
        .await?;
    let mut events = rows
        .iter()
        .map(|r| {
            Ok(EventRecord {
                seq: r.get(0),
                id: r.get(1),
                kind: r.get(2),
                refund_id: r.get(3),
                created_at: time(r.get(4)),
                body: r.try_get::<_, JsonText<EventBody>>(5)?.0,
                deliveries: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let next_cursor = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    if events.is_empty() {
        tx.commit().await?;
        return Ok(EventPage {
            events,
            next_cursor,
        });
    }
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let mut attempts: HashMap<(i64, String), Vec<AttemptRecord>> = HashMap::new();
    for r in tx
        .query(
            &tx.prepare_cached(
                "SELECT event_seq, endpoint, attempt, at, http_status, error, latency_ms
                 FROM event_attempts WHERE event_seq = ANY($1::BIGINT[])
                 ORDER BY event_seq, endpoint, attempt",
            )
            .await?,
            &[&seqs],
        )
        .await?
    {
        attempts
            .entry((r.get(0), r.get(1)))
            .or_default()
            .push(AttemptRecord {
                attempt: r.get(2),
                at: time(r.get(3)),
                http_status: r
                    .get::<_, Option<i64>>(4)
                    .and_then(|s| u16::try_from(s).ok()),
                error: r.get(5),
                latency_ms: r.get(6),
            });
    }
    let mut deliveries: HashMap<i64, Vec<DeliveryRecord>> = HashMap::new();
    // Byte order of the endpoints, as SQLite's, whatever the database's collation.
    for r in tx
        .query(
            &tx.prepare_cached(
                "SELECT event_seq, endpoint, state, next_attempt_at, delivered_at
                 FROM event_deliveries WHERE event_seq = ANY($1::BIGINT[])
                 ORDER BY event_seq, endpoint COLLATE \"C\"",
            )
            .await?,
            &[&seqs],
        )
        .await?
    {
        let (event_seq, endpoint): (i64, String) = (r.get(0), r.get(1));
        let state = DeliveryState::parse(r.get(2));
        deliveries
            .entry(event_seq)
            .or_default()
            .push(DeliveryRecord {
                attempts: attempts
                    .remove(&(event_seq, endpoint.clone()))
                    .unwrap_or_default(),
                endpoint,
                state,
                next_attempt_at: (state == DeliveryState::Pending).then(|| time(r.get(3))),
                delivered_at: r.get::<_, Option<i64>>(4).map(time),
            });
    }
    tx.commit().await?;
    for event in &mut events {
        event.deliveries = deliveries.remove(&event.seq).unwrap_or_default();
    }
    Ok(EventPage {
        events,
        next_cursor,
    })
}

/// A JSON document kept in a TEXT column: a body that does not parse is a conversion error, as
/// SQLite's `FromSqlConversionFailure`.
struct JsonText<T>(T);

impl<'a, T: serde::de::DeserializeOwned> FromSql<'a> for JsonText<T> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(JsonText(serde_json::from_slice(raw)?))
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use crate::outbox::model::{Attempt, DueDelivery, Next};
    use crate::{Ledger, Status};

    /// Two hosts (two ledgers with pools of their own) on one new database.
    async fn two_hosts(label: &str) -> (Ledger, Ledger) {
        let (a, b) = crate::testing::pg_hosts(label).await;
        (Ledger::new(a), Ledger::new(b))
    }

    /// Writes `count` refunds' events (`per_refund` each, in order) in one transaction.
    async fn write_events(l: &Ledger, count: usize, per_refund: usize) {
        let pg = l.db.pg().unwrap();
        let mut client = pg.client().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let statuses = [Status::Unknown, Status::Pending, Status::Processed];
        for status in &statuses[..per_refund] {
            for n in 0..count {
                let mut refund = crate::testing::record(n as u32);
                refund.status = *status;
                // Due from the start (an event is due when written).
                refund.updated_at = crate::time(0);
                super::record(&tx, &refund).await.unwrap();
            }
        }
        tx.commit().await.unwrap();
    }

    fn lease(l: &Ledger) -> i64 {
        l.db.pg().unwrap().lease_ms()
    }

    fn delivered(at_ms: i64) -> Attempt {
        Attempt {
            at_ms,
            http_status: Some(200),
            error: None,
            latency_ms: 1.0,
            then: Next::Delivered,
        }
    }

    /// Claims until nothing is due at `now_ms`, a few at a time.
    async fn claim_all(l: Ledger, now_ms: i64) -> Vec<DueDelivery> {
        let mut claimed = Vec::new();
        loop {
            let due = l.due_deliveries(now_ms, 7).await.unwrap();
            if due.is_empty() {
                return claimed;
            }
            claimed.extend(due);
        }
    }

    /// An endpoint dropped from the configuration gets no delivery of the events written after
    /// that (its pending ones stay); put back, it gets them again.
    #[tokio::test]
    async fn an_endpoint_dropped_from_the_configuration_gets_no_new_events() {
        let (a, _) = two_hosts("retired").await;
        let (x, y) = ("http://x/".to_owned(), "http://y/".to_owned());
        a.enqueue_deliveries(vec![x.clone(), y.clone()], 0)
            .await
            .unwrap();
        write_events(&a, 1, 1).await;
        a.enqueue_deliveries(vec![x.clone()], 0).await.unwrap();
        write_events(&a, 1, 2).await;
        a.enqueue_deliveries(vec![x.clone(), y.clone()], 0)
            .await
            .unwrap();
        write_events(&a, 1, 3).await;
        let page = a
            .events(crate::EventQuery {
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap();
        let endpoints: Vec<Vec<&str>> = page
            .events
            .iter()
            .map(|e| e.deliveries.iter().map(|d| d.endpoint.as_str()).collect())
            .collect();
        // Events 1; 2, 3; 4, 5, 6 (write_events writes one per status).
        assert_eq!(
            endpoints,
            [
                vec!["http://x/", "http://y/"],
                vec!["http://x/"],
                vec!["http://x/"],
                vec!["http://x/", "http://y/"],
                vec!["http://x/", "http://y/"],
                vec!["http://x/", "http://y/"],
            ]
        );
    }

    /// Two hosts claiming at once share the due deliveries out: none is claimed twice, every
    /// queue's head is claimed, and no later event with it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_hosts_claiming_at_once_never_get_the_same_delivery() {
        let (a, b) = two_hosts("claims").await;
        let endpoints = vec!["http://a/".to_owned(), "http://b/".to_owned()];
        a.enqueue_deliveries(endpoints.clone(), 0).await.unwrap();
        b.enqueue_deliveries(endpoints, 0).await.unwrap();
        write_events(&a, 150, 2).await;
        let client = a.db.pg().unwrap().client().await.unwrap();
        let first_events: HashSet<i64> = client
            .query("SELECT MIN(seq) FROM events GROUP BY refund_id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(first_events.len(), 150);

        let now = 10_000;
        for round in 0..2 {
            let (x, y) = tokio::join!(
                tokio::spawn(claim_all(a.clone(), now)),
                tokio::spawn(claim_all(b.clone(), now))
            );
            let (x, y) = (x.unwrap(), y.unwrap());
            let mut seen = HashSet::new();
            for d in x.iter().chain(&y) {
                assert!(
                    seen.insert((d.event_seq, d.endpoint.clone())),
                    "claimed twice: {d:?}"
                );
                assert_eq!(first_events.contains(&d.event_seq), round == 0, "{d:?}");
            }
            assert_eq!(seen.len(), 300, "each refund's head, to each endpoint");
            // Each host delivers what it claimed; the second round claims the later events.
            for (host, claimed) in [(&a, x), (&b, y)] {
                for d in claimed {
                    host.record_attempt(d.event_seq, &d.endpoint, delivered(now))
                        .await
                        .unwrap();
                }
            }
        }
        assert!(
            a.due_deliveries(now + lease(&a), 1_000)
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// A refund's later event is not claimable while its first one is pending: claimed (by
    /// this host or another, committed or not), or waiting for its retry.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_later_event_waits_while_the_first_is_pending() {
        let (a, b) = two_hosts("order").await;
        a.enqueue_deliveries(vec!["http://a/".into()], 0)
            .await
            .unwrap();
        write_events(&a, 1, 2).await;
        let now = 1_000;

        // Another host's claim under way (its row locked, not committed): skipped at once,
        // and the event behind it is not due.
        let pg = a.db.pg().unwrap();
        let mut client = pg.client().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let head: i64 = tx
            .query_one(
                "SELECT event_seq FROM event_deliveries ORDER BY event_seq LIMIT 1
                 FOR UPDATE",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let due = tokio::time::timeout(Duration::from_secs(10), b.due_deliveries(now, 10))
            .await
            .expect("a locked delivery is skipped, not waited for")
            .unwrap();
        assert!(due.is_empty(), "{due:?}");
        tx.rollback().await.unwrap();

        let due = a.due_deliveries(now, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].event_seq, due[0].attempts), (head, 0));
        // Claimed: neither host gets it or the next one until the lease ends.
        assert!(b.due_deliveries(now, 10).await.unwrap().is_empty());
        assert!(a.due_deliveries(now, 10).await.unwrap().is_empty());
        let retry_at = now + 500;
        b.record_attempt(
            head,
            "http://a/",
            Attempt {
                at_ms: now,
                http_status: None,
                error: Some("connection refused".into()),
                latency_ms: 3.0,
                then: Next::RetryAt(retry_at),
            },
        )
        .await
        .unwrap();
        // Waiting for its retry: still the only one of its refund that may go.
        assert!(b.due_deliveries(retry_at - 1, 10).await.unwrap().is_empty());
        let due = b.due_deliveries(retry_at, 10).await.unwrap();
        assert_eq!(
            due.iter()
                .map(|d| (d.event_seq, d.attempts))
                .collect::<Vec<_>>(),
            [(head, 1)]
        );
        b.record_attempt(head, "http://a/", delivered(retry_at))
            .await
            .unwrap();
        let due = a.due_deliveries(retry_at, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert!(
            due[0].event_seq > head,
            "the next event, once the first is delivered"
        );
    }

    /// A claim not followed by an attempt (its host died) ends with its lease: the delivery is
    /// due again, to any host, with its attempts as they were.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_expires_after_the_lease() {
        let (a, b) = two_hosts("lease").await;
        a.enqueue_deliveries(vec!["http://a/".into(), "http://b/".into()], 0)
            .await
            .unwrap();
        write_events(&a, 2, 1).await;
        let now = 5_000;
        let sorted = |mut due: Vec<DueDelivery>| {
            due.sort_by(|x, y| (x.event_seq, &x.endpoint).cmp(&(y.event_seq, &y.endpoint)));
            due
        };
        let claimed = sorted(a.due_deliveries(now, 10).await.unwrap());
        assert_eq!(claimed.len(), 4);
        let until = now + lease(&a);
        assert!(b.due_deliveries(until - 1, 10).await.unwrap().is_empty());
        let again = sorted(b.due_deliveries(until, 10).await.unwrap());
        assert_eq!(again, claimed, "the same deliveries, attempts 0");
        // The events list shows a claimed delivery as due when its claim ends.
        let page = a
            .events(crate::EventQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let next = page.events[0].deliveries[0].next_attempt_at.unwrap();
        assert_eq!(next.timestamp_millis(), until + lease(&a));
    }

    /// Registering an endpoint again, or from another host, changes nothing; its
    /// `after_seq` records the last event written when it was first seen.
    #[tokio::test]
    async fn endpoints_are_registered_once() {
        let (a, b) = two_hosts("endpoints").await;
        write_events(&a, 3, 1).await;
        a.enqueue_deliveries(vec!["http://a/".into()], 100)
            .await
            .unwrap();
        write_events(&a, 1, 1).await;
        b.enqueue_deliveries(vec!["http://a/".into(), "http://b/".into()], 200)
            .await
            .unwrap();
        let client = a.db.pg().unwrap().client().await.unwrap();
        let rows: Vec<(String, i64, i64)> = client
            .query(
                "SELECT endpoint, after_seq, added_at FROM event_endpoints ORDER BY endpoint",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let max: i64 = client
            .query_one("SELECT MAX(seq) FROM events", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            rows,
            [
                ("http://a/".into(), max - 1, 100),
                ("http://b/".into(), max, 200)
            ]
        );
    }
}
