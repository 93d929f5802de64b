//! Outbound events: the gateway's own systems (ERP, ticketing, customer service) are told of every
//! status a refund enters.
//!
//! The ledger writes an event in the transaction that moves a refund (see
//! [`refundry_ledger`]'s outbox), so nothing is lost to a crash. The [`Outbox`] task gives each
//! configured endpoint a delivery of every new event, POSTs it signed with
//! [`signature::HEADER`], and retries a failed delivery with backoff for up to
//! `[events] give_up_after_ms` (24 h by default). Delivery is at least once (a receiver that
//! took an event but whose answer was lost gets it again: deduplicate on the event id) and, per
//! refund and endpoint, in order: a refund's later event waits for its earlier one.
//!
//! A receiver verifies the signature with [`signature::verify`]; `host/examples/event_receiver.rs`
//! is a complete one.

pub mod signature;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::config::EventsConfig;
use refundry_ledger::db::DbError;
use refundry_ledger::{Attempt, DueDelivery, Ledger, Next};
use refundry_runtime::caps::Clock;
use refundry_runtime::caps::http::error_chain;
use refundry_runtime::secret::Secret;

/// The header naming the event, so a receiver can deduplicate before parsing the body.
pub const EVENT_ID_HEADER: &str = "Refundry-Event-Id";

/// Delivers the ledger's events to the configured endpoints.
pub struct Outbox {
    ledger: Ledger,
    endpoints: Vec<String>,
    secret: Secret,
    config: EventsConfig,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
}

impl Outbox {
    /// The outbox for `config`'s endpoints; `None` when none is configured (events are still
    /// written to the ledger).
    pub fn new(ledger: Ledger, config: &EventsConfig, clock: Arc<dyn Clock>) -> Option<Self> {
        let secret = config.secret.clone()?;
        if config.endpoints.is_empty() {
            return None;
        }
        let client = reqwest::Client::builder()
            // A receiver's redirect is not followed: the signed body goes where it was
            // configured to go, or nowhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .build()
            .expect("a reqwest client with default TLS settings builds");
        Some(Self {
            ledger,
            endpoints: config.endpoints.iter().map(|u| u.to_string()).collect(),
            secret,
            config: config.clone(),
            client,
            clock,
        })
    }

    /// Registers the endpoints: one seen for the first time is sent the events written from now
    /// on (not the whole history). Call it before taking requests, so that none of their events
    /// is missed.
    pub async fn register(&self) -> Result<(), DbError> {
        self.ledger
            .enqueue_deliveries(self.endpoints.clone(), self.clock.now_ms())
            .await
            .map(drop)
    }

    /// Runs [`Outbox::pass`] every `[events] interval_ms` until the handle is aborted.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.config.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.pass().await {
                    tracing::error!(error = %e, "event delivery pass failed");
                }
            }
        })
    }

    /// Queues new events for every endpoint, then tries every delivery that is due (at most
    /// `concurrency` at once); returns how many it tried.
    pub async fn pass(&self) -> Result<usize, DbError> {
        let now = self.clock.now_ms();
        self.ledger
            .enqueue_deliveries(self.endpoints.clone(), now)
            .await?;
        let due = self
            .ledger
            .due_deliveries(now, self.config.concurrency * 4)
            .await?;
        let tried = due.len();
        let results: Vec<Result<(), DbError>> = futures_util::stream::iter(due)
            .map(|d| async move {
                let attempt = self.attempt(&d).await;
                self.ledger
                    .record_attempt(d.event_seq, &d.endpoint, attempt)
                    .await
            })
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;
        results.into_iter().collect::<Result<(), _>>()?;
        Ok(tried)
    }

    /// One try at a delivery, and what follows it.
    async fn attempt(&self, d: &DueDelivery) -> Attempt {
        let at_ms = self.clock.now_ms();
        let header = signature::sign(
            self.secret.expose().as_bytes(),
            at_ms.div_euclid(1000),
            d.body.as_bytes(),
        );
        let started = Instant::now();
        let answer = self
            .client
            .post(&d.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signature::HEADER, header)
            .header(EVENT_ID_HEADER, &d.event_id)
            .body(d.body.clone())
            .send()
            .await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (http_status, error) = match answer {
            Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
            Ok(r) => (
                Some(r.status().as_u16()),
                Some(format!("the endpoint answered {}", r.status())),
            ),
            Err(e) => (None, Some(error_chain(&e.without_url()))),
        };
        let then = match &error {
            None => Next::Delivered,
            Some(error) => {
                let next = self.next_try(d, at_ms);
                match next {
                    Next::RetryAt(at) => tracing::warn!(
                        event_id = %d.event_id,
                        refund_id = %d.refund_id,
                        endpoint = %d.endpoint,
                        attempt = d.attempts + 1,
                        error = %error,
                        retry_in_ms = at - at_ms,
                        "event delivery failed; will retry"
                    ),
                    _ => tracing::error!(
                        event_id = %d.event_id,
                        refund_id = %d.refund_id,
                        endpoint = %d.endpoint,
                        attempts = d.attempts + 1,
                        error = %error,
                        "event delivery abandoned: still failing when its retry window closed"
                    ),
                }
                next
            }
        };
        Attempt {
            at_ms,
            http_status,
            error,
            latency_ms,
            then,
        }
    }

    /// After a failed try at `now_ms`: the next one, never past the retry window, or none.
    fn next_try(&self, d: &DueDelivery, now_ms: i64) -> Next {
        let deadline = d.created_at_ms + millis(self.config.give_up_after);
        if now_ms >= deadline {
            return Next::Abandon;
        }
        let step = (d.attempts as usize).min(self.config.backoff.len() - 1);
        Next::RetryAt((now_ms + millis(self.config.backoff[step])).min(deadline))
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
