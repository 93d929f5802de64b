//! The outbound events outbox: one event per status a refund enters, written in the same
//! transaction as the move (so an event is never lost nor sent for a move that was rolled back),
//! one per finding of a reconciliation run, written with the run, and, per configured endpoint,
//! a delivery of each event with its attempts.
//!
//! Deliveries of one refund's events to one endpoint go in order: only the oldest pending one of
//! each (endpoint, refund) queue is ever due, so a later event waits until the earlier one is
//! delivered or abandoned. The queue's key is the `refund_id` column: a refund's id, or for a
//! finding about a refund the ledger does not hold, its reconciliation run's id.

pub mod model;

pub use model::*;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Ledger, RefundRecord, time};
use crate::db::DbError;

/// Writes the event for the status `refund` just entered, inside the caller's transaction.
pub(super) fn record(c: &Connection, refund: &RefundRecord) -> Result<(), rusqlite::Error> {
    let body = EventBody {
        id: new_event_id(),
        kind: format!("refund.{}", refund.status.as_str()),
        created_at: refund.updated_at,
        data: EventData::Refund(refund.clone()),
    };
    insert(c, &refund.id, &body)
}

/// Writes the event of one reconciliation finding, inside the transaction that records its run.
/// `key` orders its deliveries: the refund's id when the ledger holds the refund (so the finding
/// reaches an endpoint after the refund's status events written before it), else the run's id.
pub(super) fn record_discrepancy(
    c: &Connection,
    key: &str,
    created_at: DateTime<Utc>,
    data: DiscrepancyData,
) -> Result<(), rusqlite::Error> {
    let body = EventBody {
        id: new_event_id(),
        kind: DISCREPANCY_EVENT.to_owned(),
        created_at,
        data: EventData::Discrepancy(data),
    };
    insert(c, key, &body)
}

fn insert(c: &Connection, key: &str, body: &EventBody) -> Result<(), rusqlite::Error> {
    let json = serde_json::to_string(body).expect("an event serialises");
    c.prepare_cached(
        "INSERT INTO events (id, refund_id, type, created_at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        body.id,
        key,
        body.kind,
        body.created_at.timestamp_millis(),
        json
    ])?;
    Ok(())
}

impl Ledger {
    /// Gives each endpoint a pending delivery of every event written since it was last called
    /// for that endpoint (an endpoint seen for the first time starts with the events written
    /// from now on); returns how many deliveries it added.
    ///
    /// On PostgreSQL it only registers the endpoints not seen before and returns 0: there, each
    /// event's deliveries to every registered endpoint are written with the event, since several
    /// hosts write events at once and their sequence numbers are not committed in order (a
    /// cursor over them, as here, could pass an event still being written).
    pub async fn enqueue_deliveries(
        &self,
        endpoints: Vec<String>,
        now_ms: i64,
    ) -> Result<usize, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::outbox::enqueue_deliveries(pg, endpoints, now_ms).await;
        }
        self.db
            .run(move |c| {
                let tx = c.unchecked_transaction()?;
                let last: i64 =
                    tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
                let mut added = 0;
                for endpoint in &endpoints {
                    let after: Option<i64> = tx
                        .query_row(
                            "SELECT after_seq FROM event_endpoints WHERE endpoint = ?1",
                            [endpoint],
                            |r| r.get(0),
                        )
                        .optional()?;
                    match after {
                        None => {
                            tx.execute(
                                "INSERT INTO event_endpoints (endpoint, after_seq, added_at)
                                 VALUES (?1, ?2, ?3)",
                                params![endpoint, last, now_ms],
                            )?;
                        }
                        Some(after) if after < last => {
                            added += tx.execute(
                                "INSERT INTO event_deliveries (event_seq, endpoint, refund_id,
                                    state, attempts, next_attempt_at)
                                 SELECT seq, ?1, refund_id, 'pending', 0, ?4 FROM events
                                 WHERE seq > ?2 AND seq <= ?3",
                                params![endpoint, after, last, now_ms],
                            )?;
                            tx.execute(
                                "UPDATE event_endpoints SET after_seq = ?2 WHERE endpoint = ?1",
                                params![endpoint, last],
                            )?;
                        }
                        Some(_) => {}
                    }
                }
                tx.commit()?;
                Ok(added)
            })
            .await
    }

    /// Deliveries due at `now_ms`, most overdue first: for each (endpoint, refund), only its
    /// oldest pending event, so one refund's events reach an endpoint in order.
    ///
    /// On PostgreSQL, where any host delivers, the deliveries returned are claimed: not due
    /// again (to this host or another) until a lease from `now_ms` has passed, unless
    /// [`Ledger::record_attempt`] sets their next try first.
    pub async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::outbox::due_deliveries(pg, now_ms, limit).await;
        }
        self.db
            .run(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT d.event_seq, e.id, d.endpoint, d.refund_id, d.attempts, e.body,
                        e.created_at
                     FROM event_deliveries d JOIN events e ON e.seq = d.event_seq
                     WHERE d.state = 'pending' AND d.next_attempt_at <= ?1
                       AND NOT EXISTS (
                           SELECT 1 FROM event_deliveries p
                           WHERE p.state = 'pending' AND p.endpoint = d.endpoint
                             AND p.refund_id = d.refund_id AND p.event_seq < d.event_seq)
                     ORDER BY d.next_attempt_at, d.event_seq LIMIT ?2",
                )?;
                stmt.query_map(params![now_ms, limit as i64], |r| {
                    Ok(DueDelivery {
                        event_seq: r.get(0)?,
                        event_id: r.get(1)?,
                        endpoint: r.get(2)?,
                        refund_id: r.get(3)?,
                        attempts: r.get(4)?,
                        body: r.get(5)?,
                        created_at_ms: r.get(6)?,
                    })
                })?
                .collect()
            })
            .await
    }

    /// Records one try at a delivery and what follows it.
    pub async fn record_attempt(
        &self,
        event_seq: i64,
        endpoint: &str,
        attempt: Attempt,
    ) -> Result<(), DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::outbox::record_attempt(pg, event_seq, endpoint, attempt).await;
        }
        let endpoint = endpoint.to_owned();
        self.db
            .run(move |c| {
                let tx = c.unchecked_transaction()?;
                let number: i64 = tx.query_row(
                    "UPDATE event_deliveries SET attempts = attempts + 1
                     WHERE event_seq = ?1 AND endpoint = ?2 RETURNING attempts",
                    params![event_seq, endpoint],
                    |r| r.get(0),
                )?;
                tx.execute(
                    "INSERT INTO event_attempts (event_seq, endpoint, attempt, at, http_status,
                        error, latency_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        event_seq,
                        endpoint,
                        number,
                        attempt.at_ms,
                        attempt.http_status,
                        attempt.error,
                        attempt.latency_ms
                    ],
                )?;
                let (state, next, delivered) = match attempt.then {
                    Next::Delivered => (DeliveryState::Delivered, None, Some(attempt.at_ms)),
                    Next::RetryAt(at) => (DeliveryState::Pending, Some(at), None),
                    Next::Abandon => (DeliveryState::Abandoned, None, None),
                };
                tx.execute(
                    "UPDATE event_deliveries SET state = ?3,
                        next_attempt_at = COALESCE(?4, next_attempt_at), delivered_at = ?5
                     WHERE event_seq = ?1 AND endpoint = ?2",
                    params![event_seq, endpoint, state.as_str(), next, delivered],
                )?;
                tx.commit()
            })
            .await
    }

    /// A page of events with their deliveries and attempts, oldest first.
    pub async fn events(&self, query: EventQuery) -> Result<EventPage, DbError> {
        if let Some(pg) = self.db.pg() {
            return crate::postgres::outbox::events(pg, query).await;
        }
        self.db
            .run(move |c| {
                let limit = query.limit.max(1);
                let mut stmt = c.prepare_cached(
                    "SELECT seq, id, type, refund_id, created_at, body FROM events
                     WHERE (?1 IS NULL OR refund_id = ?1) AND (?2 IS NULL OR seq > ?2)
                     ORDER BY seq LIMIT ?3",
                )?;
                let mut events = stmt
                    .query_map(
                        params![query.refund_id, query.after_seq, (limit + 1) as i64],
                        |r| {
                            let body: String = r.get(5)?;
                            Ok(EventRecord {
                                seq: r.get(0)?,
                                id: r.get(1)?,
                                kind: r.get(2)?,
                                refund_id: r.get(3)?,
                                created_at: time(r.get(4)?),
                                body: serde_json::from_str(&body).map_err(|e| {
                                    rusqlite::Error::FromSqlConversionFailure(
                                        5,
                                        rusqlite::types::Type::Text,
                                        Box::new(e),
                                    )
                                })?,
                                deliveries: Vec::new(),
                            })
                        },
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
                let next_cursor = if events.len() > limit {
                    events.truncate(limit);
                    events.last().map(|e| e.seq.to_string())
                } else {
                    None
                };
                for event in &mut events {
                    event.deliveries = deliveries(c, event.seq)?;
                }
                Ok(EventPage {
                    events,
                    next_cursor,
                })
            })
            .await
    }
}

fn deliveries(c: &Connection, event_seq: i64) -> Result<Vec<DeliveryRecord>, rusqlite::Error> {
    let mut stmt = c.prepare_cached(
        "SELECT endpoint, state, next_attempt_at, delivered_at FROM event_deliveries
         WHERE event_seq = ?1 ORDER BY endpoint",
    )?;
    let mut out = stmt
        .query_map([event_seq], |r| {
            let state = DeliveryState::parse(&r.get::<_, String>(1)?);
            Ok(DeliveryRecord {
                endpoint: r.get(0)?,
                state,
                next_attempt_at: (state == DeliveryState::Pending)
                    .then(|| r.get::<_, i64>(2))
                    .transpose()?
                    .map(time),
                delivered_at: r.get::<_, Option<i64>>(3)?.map(time),
                attempts: Vec::new(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = c.prepare_cached(
        "SELECT attempt, at, http_status, error, latency_ms FROM event_attempts
         WHERE event_seq = ?1 AND endpoint = ?2 ORDER BY attempt",
    )?;
    for d in &mut out {
        d.attempts = stmt
            .query_map(params![event_seq, d.endpoint], |r| {
                Ok(AttemptRecord {
                    attempt: r.get(0)?,
                    at: time(r.get(1)?),
                    http_status: r.get(2)?,
                    error: r.get(3)?,
                    latency_ms: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    /// Writes the event of `refund_id` entering `status` at `at_ms` the way a move writes it
    /// (with its deliveries, on PostgreSQL), without the refund itself.
    pub(crate) async fn write_event(l: &Ledger, refund_id: &str, status: Status, at_ms: i64) {
        let mut refund = crate::testing::record(0);
        refund.id = refund_id.into();
        refund.status = status;
        refund.updated_at = time(at_ms);
        if let Some(pg) = l.db.pg() {
            let client = pg.client().await.unwrap();
            crate::postgres::outbox::record(&client, &refund)
                .await
                .unwrap();
        } else {
            l.db.run(move |c| record(c, &refund)).await.unwrap();
        }
    }

    fn attempt(at_ms: i64, then: Next) -> Attempt {
        let failed = then != Next::Delivered;
        Attempt {
            at_ms,
            http_status: Some(if failed { 503 } else { 204 }),
            error: failed.then(|| "the endpoint answered 503".into()),
            latency_ms: 12.25,
            then,
        }
    }

    fn all(limit: usize) -> EventQuery {
        EventQuery {
            limit,
            ..EventQuery::default()
        }
    }

    /// (event seq, endpoint, attempts so far) of what is due, in a fixed order (deliveries due at
    /// the same time and seq may come in any endpoint order).
    async fn due(l: &Ledger, now_ms: i64) -> Vec<(i64, String, i64)> {
        let mut due: Vec<_> = l
            .due_deliveries(now_ms, 50)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.event_seq, d.endpoint, d.attempts))
            .collect();
        due.sort();
        due
    }

    both_backends! {
        /// Each endpoint gets a refund's events one after the other: a later one waits while
        /// an earlier one is pending, and goes once it is delivered or abandoned.
        async fn deliveries_go_in_order_per_refund_and_endpoint(l) {
            let (a, b) = (String::from("http://a/"), String::from("http://b/"));
            let endpoints = vec![b.clone(), a.clone()];
            assert_eq!(l.enqueue_deliveries(endpoints.clone(), 0).await.unwrap(), 0);
            write_event(&l, "rf_1", Status::Unknown, 1_000).await;
            write_event(&l, "rf_2", Status::Unknown, 1_100).await;
            write_event(&l, "rf_1", Status::Pending, 1_200).await;
            // SQLite adds the deliveries here; PostgreSQL wrote them with the events.
            let added = if l.db.is_shared() { 0 } else { 6 };
            assert_eq!(l.enqueue_deliveries(endpoints.clone(), 2_000).await.unwrap(), added);
            assert_eq!(l.enqueue_deliveries(endpoints, 2_000).await.unwrap(), 0);

            let page = l.events(all(50)).await.unwrap();
            let seqs: Vec<i64> = page.events.iter().map(|e| e.seq).collect();
            let [e1, e2, e3] = seqs[..] else {
                panic!("three events, got {seqs:?}")
            };
            assert!(e1 < e2 && e2 < e3);

            // Only the head of each (endpoint, refund) queue is due, with its body.
            let heads = l.due_deliveries(2_000, 50).await.unwrap();
            let mut found: Vec<_> = heads
                .iter()
                .map(|d| (d.event_seq, d.endpoint.clone(), d.attempts))
                .collect();
            found.sort();
            assert_eq!(
                found,
                [(e1, a.clone(), 0), (e1, b.clone(), 0), (e2, a.clone(), 0), (e2, b.clone(), 0)]
            );
            let first = heads.iter().find(|d| d.event_seq == e1).unwrap();
            assert_eq!(first.event_id, page.events[0].id);
            assert_eq!(first.refund_id, "rf_1");
            assert_eq!(first.created_at_ms, 1_000);
            assert_eq!(
                serde_json::from_str::<EventBody>(&first.body).unwrap(),
                page.events[0].body
            );
            assert!(heads.windows(2).all(|w| w[0].event_seq <= w[1].event_seq), "oldest first");
            // A limit keeps the oldest.
            if !l.db.is_shared() {
                let one = l.due_deliveries(2_000, 1).await.unwrap();
                assert_eq!(one[0].event_seq, e1);
            }

            l.record_attempt(e1, &a, attempt(2_000, Next::RetryAt(5_000))).await.unwrap();
            l.record_attempt(e1, &b, attempt(2_000, Next::Delivered)).await.unwrap();
            l.record_attempt(e2, &a, attempt(2_000, Next::Abandon)).await.unwrap();
            l.record_attempt(e2, &b, attempt(2_000, Next::RetryAt(3_000))).await.unwrap();
            // rf_1's next event goes to b at once; to a it waits behind the retry.
            assert_eq!(due(&l, 2_999).await, [(e3, b.clone(), 0)]);
            l.record_attempt(e3, &b, attempt(2_999, Next::Delivered)).await.unwrap();
            assert_eq!(due(&l, 3_000).await, [(e2, b.clone(), 1)]);
            l.record_attempt(e2, &b, attempt(3_000, Next::Delivered)).await.unwrap();
            assert_eq!(due(&l, 4_999).await, []);

            let page = l.events(all(50)).await.unwrap();
            let first = &page.events[0].deliveries;
            assert_eq!(
                first.iter().map(|d| d.endpoint.as_str()).collect::<Vec<_>>(),
                [a.as_str(), b.as_str()],
                "by endpoint"
            );
            assert_eq!(first[0].state, DeliveryState::Pending);
            assert_eq!(first[0].next_attempt_at, Some(time(5_000)));
            assert_eq!(first[0].delivered_at, None);
            assert_eq!(
                first[0].attempts,
                [AttemptRecord {
                    attempt: 1,
                    at: time(2_000),
                    http_status: Some(503),
                    error: Some("the endpoint answered 503".into()),
                    latency_ms: 12.25,
                }]
            );
            assert_eq!(first[1].state, DeliveryState::Delivered);
            assert_eq!(first[1].next_attempt_at, None);
            assert_eq!(first[1].delivered_at, Some(time(2_000)));
            assert_eq!(first[1].attempts[0].http_status, Some(204));
            assert_eq!(first[1].attempts[0].error, None);
            let second = &page.events[1].deliveries;
            assert_eq!(second[0].state, DeliveryState::Abandoned);
            assert_eq!((second[0].next_attempt_at, second[0].delivered_at), (None, None));
            assert_eq!(second[1].state, DeliveryState::Delivered);
            assert_eq!(
                second[1].attempts.iter().map(|t| t.attempt).collect::<Vec<_>>(),
                [1, 2]
            );

            assert_eq!(due(&l, 5_000).await, [(e1, a.clone(), 1)]);
            l.record_attempt(e1, &a, attempt(5_000, Next::Delivered)).await.unwrap();
            assert_eq!(due(&l, 5_000).await, [(e3, a.clone(), 0)]);
            l.record_attempt(e3, &a, attempt(5_000, Next::Abandon)).await.unwrap();
            assert_eq!(due(&l, 1_000_000).await, []);
            let states: Vec<Vec<DeliveryState>> = l
                .events(all(50))
                .await
                .unwrap()
                .events
                .iter()
                .map(|e| e.deliveries.iter().map(|d| d.state).collect())
                .collect();
            use DeliveryState::*;
            assert_eq!(
                states,
                [vec![Delivered, Delivered], vec![Abandoned, Delivered], vec![Abandoned, Delivered]]
            );
            // An attempt at a delivery that does not exist is an error.
            let nowhere = attempt(5_000, Next::Delivered);
            assert!(l.record_attempt(e1, "http://c/", nowhere).await.is_err());
        }

        /// An endpoint seen for the first time is sent the events written from then on, not the
        /// history; with no endpoint, events are written without deliveries.
        async fn an_endpoint_gets_the_events_written_after_it_is_first_seen(l) {
            write_event(&l, "rf_0", Status::Unknown, 100).await;
            let a = String::from("http://a/");
            assert_eq!(l.enqueue_deliveries(vec![a.clone(), a.clone()], 100).await.unwrap(), 0);
            assert_eq!(l.enqueue_deliveries(Vec::new(), 100).await.unwrap(), 0);
            write_event(&l, "rf_1", Status::Unknown, 200).await;
            let added = if l.db.is_shared() { 0 } else { 1 };
            assert_eq!(l.enqueue_deliveries(vec![a.clone()], 200).await.unwrap(), added);
            let page = l.events(all(50)).await.unwrap();
            assert_eq!(page.events.len(), 2);
            assert_eq!(page.events[0].deliveries, []);
            assert_eq!(page.events[1].deliveries.len(), 1);
            assert_eq!(due(&l, 200).await, [(page.events[1].seq, a, 0)]);
        }

        /// Pages of events: oldest first, a cursor while more remain, one refund's only.
        async fn events_page_by_cursor_and_by_refund(l) {
            for (i, refund) in ["rf_1", "rf_2", "rf_1", "rf_3", "rf_1"].into_iter().enumerate() {
                write_event(&l, refund, Status::Unknown, 1_000 + i as i64).await;
            }
            let first = l.events(all(2)).await.unwrap();
            assert_eq!(first.events.len(), 2);
            let cursor = first.next_cursor.clone().expect("more to come");
            assert_eq!(cursor, first.events[1].seq.to_string());
            let rest = l
                .events(EventQuery {
                    after_seq: Some(cursor.parse().unwrap()),
                    limit: 3,
                    ..EventQuery::default()
                })
                .await
                .unwrap();
            assert_eq!(rest.events.len(), 3);
            assert_eq!(rest.next_cursor, None, "the last page");
            let refunds: Vec<_> = first
                .events
                .iter()
                .chain(&rest.events)
                .map(|e| (e.refund_id.as_str(), e.created_at.timestamp_millis()))
                .collect();
            assert_eq!(
                refunds,
                [
                    ("rf_1", 1_000),
                    ("rf_2", 1_001),
                    ("rf_1", 1_002),
                    ("rf_3", 1_003),
                    ("rf_1", 1_004)
                ]
            );
            let one = l
                .events(EventQuery {
                    refund_id: Some("rf_1".into()),
                    limit: 2,
                    ..EventQuery::default()
                })
                .await
                .unwrap();
            assert_eq!(one.events.len(), 2);
            assert!(one.events.iter().all(|e| e.refund_id == "rf_1"));
            let last = l
                .events(EventQuery {
                    refund_id: Some("rf_1".into()),
                    after_seq: one.next_cursor.map(|c| c.parse().unwrap()),
                    limit: 2,
                })
                .await
                .unwrap();
            assert_eq!(last.events.len(), 1);
            assert_eq!(last.next_cursor, None);
            let event = &last.events[0];
            assert_eq!(event.kind, "refund.unknown");
            assert_eq!(event.body.kind, event.kind);
            assert_eq!(event.body.id, event.id);
            assert_eq!(event.body.refund().unwrap().id, "rf_1");
            // A limit of 0 is read as 1.
            assert_eq!(l.events(all(0)).await.unwrap().events.len(), 1);
            let none = l
                .events(EventQuery {
                    refund_id: Some("rf_9".into()),
                    limit: 5,
                    ..EventQuery::default()
                })
                .await
                .unwrap();
            assert_eq!((none.events.len(), none.next_cursor), (0, None));
        }
    }
}
