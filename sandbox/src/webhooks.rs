//! Outbound webhook delivery with retries, shared by every provider simulator.
//!
//! A simulator builds each event's body once and hands it to [`Dispatcher::enqueue`]; delivery runs
//! in background tasks. Every attempt of one event sends the same body; the headers of each attempt
//! (timestamp, signature, content type) come from the provider's [`Signer`], called per attempt
//! with the attempt's time. Failed attempts (non-2xx, connection error, timeout) are retried up to
//! the configured number of attempts, waiting `retry_base * 2^(n-1)` before retry `n`.
//!
//! Events about one refund are delivered one after the other, in the order they were queued (a
//! retrying event holds back later events of the same refund, as a provider's per-merchant queue
//! would); events about different refunds do not wait for each other.
//!
//! Webhook faults from [`crate::faults`] apply here: dropped events are never attempted (and leave
//! no delivery record), duplicated events are queued twice, failed attempts are recorded with no
//! status and are not sent.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::task::AbortHandle;

use crate::faults::Faults;

/// Builds the HTTP headers of one delivery attempt (name, value): typically the signature, the
/// timestamp it covers, the event id and the content type. Called with the event and the time of
/// the attempt; must not log secrets.
pub type Signer = Arc<dyn Fn(&Event, DateTime<Utc>) -> Vec<(String, String)> + Send + Sync>;

/// One webhook event, ready to send.
#[derive(Debug, Clone)]
pub struct Event {
    /// The provider's event id (the same on every attempt and on duplicates).
    pub event_id: String,
    /// The refund the event is about: events of one refund are delivered in order.
    pub refund_id: String,
    /// The exact body bytes sent on every attempt.
    pub body: Bytes,
}

/// One delivery attempt, as listed by `GET /_sandbox/webhooks/deliveries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    /// The event's id.
    pub event_id: String,
    /// 1 for the first attempt of a delivery, then 2, 3, ... (a duplicated event starts at 1
    /// again).
    pub attempt: u32,
    /// The receiver's HTTP status, `None` when no answer came (connection error, timeout, or an
    /// attempt failed by fault injection).
    pub status: Option<u16>,
    /// Why the attempt failed; `None` when the receiver answered 2xx.
    pub error: Option<String>,
    /// The refund the event is about.
    pub refund_id: String,
    /// When the attempt was made (RFC 3339 UTC, milliseconds).
    pub at: String,
}

/// How a [`Dispatcher`] delivers.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Where events go; `None` = events are discarded until a URL is set.
    pub callback_url: Option<String>,
    /// Delay before retry `n` is `retry_base * 2^(n-1)`.
    pub retry_base: Duration,
    /// Attempts per event, including the first (at least 1).
    pub max_attempts: u32,
    /// How long one attempt may take before it counts as failed.
    pub attempt_timeout: Duration,
}

/// What [`Dispatcher::enqueue`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued for delivery once.
    Queued,
    /// Queued for delivery twice (duplicate fault).
    Duplicated,
    /// Discarded by a drop fault.
    Dropped,
    /// Discarded: no callback URL is configured.
    NoCallbackUrl,
    /// Discarded: the simulator is shutting down.
    Closed,
}

/// The webhook delivery queue of one simulator. Clones share the queue.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    signer: Signer,
    faults: Arc<Faults>,
    retry_base: Duration,
    max_attempts: u32,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    callback_url: Option<String>,
    /// Per refund: events waiting; a key is present exactly while a task delivers for it.
    queues: HashMap<String, VecDeque<Event>>,
    deliveries: Vec<DeliveryRecord>,
    tasks: Vec<AbortHandle>,
    closed: bool,
}

impl Dispatcher {
    /// A dispatcher that signs with `signer` and consults `faults` for webhook faults.
    pub fn new(
        config: DispatcherConfig,
        signer: Signer,
        faults: Arc<Faults>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(config.attempt_timeout)
            // A provider posts to the URL it was given; it does not follow redirects.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                signer,
                faults,
                retry_base: config.retry_base,
                max_attempts: config.max_attempts.max(1),
                state: Mutex::new(State {
                    callback_url: config.callback_url,
                    ..State::default()
                }),
            }),
        })
    }

    /// Sets (or with `None` clears) the callback URL. Applies to attempts made from now on,
    /// including retries of events already queued.
    pub fn set_callback_url(&self, url: Option<String>) {
        self.inner.lock().callback_url = url;
    }

    /// The callback URL in use.
    pub fn callback_url(&self) -> Option<String> {
        self.inner.lock().callback_url.clone()
    }

    /// Every delivery attempt so far, oldest first.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.inner.lock().deliveries.clone()
    }

    /// Queues `event` for delivery (must be called inside a tokio runtime).
    pub fn enqueue(&self, event: Event) -> Enqueued {
        let mut state = self.inner.lock();
        if state.closed {
            return Enqueued::Closed;
        }
        if state.callback_url.is_none() {
            return Enqueued::NoCallbackUrl;
        }
        if self.inner.faults.take_drop_webhook() {
            tracing::info!(event_id = %event.event_id, "webhook event dropped by fault injection");
            return Enqueued::Dropped;
        }
        let outcome = if self.inner.faults.take_duplicate_webhook() {
            Enqueued::Duplicated
        } else {
            Enqueued::Queued
        };
        let refund_id = event.refund_id.clone();
        let worker_running = state.queues.contains_key(&refund_id);
        let queue = state.queues.entry(refund_id.clone()).or_default();
        if outcome == Enqueued::Duplicated {
            queue.push_back(event.clone());
        }
        queue.push_back(event);
        if !worker_running {
            let task = tokio::spawn(Arc::clone(&self.inner).run_queue(refund_id));
            state.tasks.retain(|task| !task.is_finished());
            state.tasks.push(task.abort_handle());
        }
        outcome
    }

    /// Stops delivering: queued events are discarded and retries cancelled. Idempotent.
    pub fn shutdown(&self) {
        let mut state = self.inner.lock();
        state.closed = true;
        state.queues.clear();
        for task in state.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every statement, so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Delivers the events queued for `refund_id` one by one until its queue is empty.
    async fn run_queue(self: Arc<Self>, refund_id: String) {
        loop {
            let next = {
                let mut state = self.lock();
                let next = state
                    .queues
                    .get_mut(&refund_id)
                    .and_then(VecDeque::pop_front);
                if next.is_none() {
                    // Removing the key under the lock tells `enqueue` to start a new task.
                    state.queues.remove(&refund_id);
                }
                next
            };
            match next {
                Some(event) => self.deliver(&event).await,
                None => return,
            }
        }
    }

    /// All attempts for one event.
    async fn deliver(&self, event: &Event) {
        for attempt in 1..=self.max_attempts {
            if attempt > 1 {
                tokio::time::sleep(backoff(self.retry_base, attempt - 1)).await;
            }
            let Some(url) = self.lock().callback_url.clone() else {
                tracing::info!(event_id = %event.event_id, "no callback URL any more; delivery stopped");
                return;
            };
            let at = Utc::now();
            if self.faults.take_fail_webhook_attempt() {
                self.record(
                    event,
                    attempt,
                    at,
                    None,
                    Some("failed by fault injection (not sent)".to_owned()),
                );
                continue;
            }
            let mut request = self.client.post(&url).body(event.body.clone());
            for (name, value) in (self.signer)(event, at) {
                request = request.header(name, value);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    self.record(event, attempt, at, Some(response.status().as_u16()), None);
                    return;
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let error = format!("receiver answered HTTP {status}");
                    self.record(event, attempt, at, Some(status), Some(error));
                }
                Err(error) => {
                    let error = if error.is_timeout() {
                        format!("timed out: {error}")
                    } else {
                        format!("transport error: {error}")
                    };
                    self.record(event, attempt, at, None, Some(error));
                }
            }
        }
        tracing::warn!(
            event_id = %event.event_id,
            attempts = self.max_attempts,
            "webhook delivery gave up"
        );
    }

    fn record(
        &self,
        event: &Event,
        attempt: u32,
        at: DateTime<Utc>,
        status: Option<u16>,
        error: Option<String>,
    ) {
        tracing::debug!(event_id = %event.event_id, attempt, ?status, ?error, "webhook attempt");
        self.lock().deliveries.push(DeliveryRecord {
            event_id: event.event_id.clone(),
            attempt,
            status,
            error,
            refund_id: event.refund_id.clone(),
            at: crate::time::rfc3339_millis(at),
        });
    }
}

/// The wait before retry `retry` (1-based): `base * 2^(retry-1)`, saturating.
fn backoff(base: Duration, retry: u32) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1));
    base.saturating_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles() {
        let base = Duration::from_millis(20);
        assert_eq!(backoff(base, 1), Duration::from_millis(20));
        assert_eq!(backoff(base, 2), Duration::from_millis(40));
        assert_eq!(backoff(base, 4), Duration::from_millis(160));
        // Saturates instead of overflowing.
        assert_eq!(
            backoff(Duration::from_secs(1), 200),
            Duration::from_secs(u64::from(u32::MAX))
        );
    }
}
