//! The outbound events outbox's values: events, their bodies, deliveries and attempts.

use crate::RefundRecord;
use crate::findings::Finding;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An event as its receivers get it (the body of the POST, byte for byte as stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventBody {
    /// Event id (`evt_` + a time-ordered UUID): receivers deduplicate on it, since delivery is
    /// at least once.
    pub id: String,
    /// `refund.<status>`: the status the refund entered (`refund.unknown` when it was written and
    /// sent but the provider's answer is not known yet); or `reconciliation.discrepancy`: a
    /// reconciliation run found the provider and the ledger disagreeing.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the refund entered the status, or when the reconciliation run finished (RFC 3339
    /// UTC).
    pub created_at: DateTime<Utc>,
    /// What the event is about: a refund for `refund.*`, a finding for
    /// `reconciliation.discrepancy`.
    pub data: EventData,
}

impl EventBody {
    /// The refund of a `refund.*` event (`None` for a reconciliation finding).
    pub fn refund(&self) -> Option<&RefundRecord> {
        self.data.refund()
    }
}

/// What an event carries. Untagged, so a `refund.*` event's `data` is the refund object itself,
/// exactly as before reconciliation events existed; the event's `type` says which it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EventData {
    /// The refund as it was right after the change (the REST API's refund object).
    Refund(RefundRecord),
    /// A reconciliation run's finding.
    Discrepancy(DiscrepancyData),
}

impl EventData {
    /// The refund, for a `refund.*` event.
    pub fn refund(&self) -> Option<&RefundRecord> {
        match self {
            EventData::Refund(refund) => Some(refund),
            EventData::Discrepancy(_) => None,
        }
    }

    /// The finding, for a `reconciliation.discrepancy` event.
    pub fn discrepancy(&self) -> Option<&DiscrepancyData> {
        match self {
            EventData::Refund(_) => None,
            EventData::Discrepancy(discrepancy) => Some(discrepancy),
        }
    }
}

/// The `data` of a `reconciliation.discrepancy` event: one finding of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DiscrepancyData {
    /// The run that found it (`rec_` + a time-ordered UUID).
    pub reconciliation_id: String,
    /// Provider id.
    pub provider: String,
    /// What the run found.
    pub finding: Finding,
}

/// The event type of a reconciliation finding.
pub const DISCREPANCY_EVENT: &str = "reconciliation.discrepancy";

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not delivered yet; retried until it is, or until it is too old.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Given up on: still undelivered when the retry window (`[events] give_up_after_ms`) closed.
    Abandoned,
}

impl DeliveryState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Abandoned => "abandoned",
        }
    }

    pub(crate) fn parse(word: &str) -> Self {
        // Only this module writes the column.
        match word {
            "delivered" => DeliveryState::Delivered,
            "abandoned" => DeliveryState::Abandoned,
            _ => DeliveryState::Pending,
        }
    }
}

/// One try at delivering an event to an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptRecord {
    /// 1 for the first try.
    pub attempt: i64,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The endpoint's HTTP status, when it answered.
    pub http_status: Option<u16>,
    /// Why it failed (connection refused, timeout, non-2xx status), when it did.
    pub error: Option<String>,
    /// How long it took.
    pub latency_ms: f64,
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryRecord {
    /// The endpoint's URL (the configuration refuses URLs with credentials in them).
    pub endpoint: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// When the next try is due, while pending (a later event of the same refund also waits for
    /// this one).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the endpoint took it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Every try, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// An event with its deliveries (`GET /v1/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventRecord {
    /// Position in the outbox: events of one refund are delivered in this order.
    pub seq: i64,
    /// Event id.
    pub id: String,
    /// `refund.<status>` or `reconciliation.discrepancy`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The refund it is about; for a reconciliation finding about a refund the ledger does not
    /// hold, the run's id. Deliveries with the same value reach an endpoint in order.
    pub refund_id: String,
    /// When the refund entered the status, or the reconciliation run finished.
    pub created_at: DateTime<Utc>,
    /// The body sent to every endpoint.
    pub body: EventBody,
    /// One per endpoint configured when it was written (none when no endpoint is configured).
    pub deliveries: Vec<DeliveryRecord>,
}

/// A page of events, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// The events.
    pub events: Vec<EventRecord>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// A selection of events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only this refund's (with the reconciliation findings about it); a run's id selects its
    /// findings about refunds the ledger lacks.
    pub refund_id: Option<String>,
    /// Continue after this position (the previous page's `next_cursor`).
    pub after_seq: Option<i64>,
    /// At most this many (the caller bounds it).
    pub limit: usize,
}

/// A delivery that is due: the oldest pending event of its refund for its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    /// The event's position.
    pub event_seq: i64,
    /// The event id.
    pub event_id: String,
    /// Where to send it.
    pub endpoint: String,
    /// Its refund (a reconciliation run's id for a finding about a refund the ledger lacks):
    /// the queue it is delivered in order within.
    pub refund_id: String,
    /// Tries so far.
    pub attempts: i64,
    /// The exact body to send.
    pub body: String,
    /// When the event was written (ms): the retry window counts from here.
    pub created_at_ms: i64,
}

/// What became of one try, and what follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// When it was made (ms).
    pub at_ms: i64,
    /// The endpoint's status, when it answered.
    pub http_status: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// How long it took.
    pub latency_ms: f64,
    /// What to do next.
    pub then: Next,
}

/// After a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The endpoint took it.
    Delivered,
    /// Try again at this time (ms).
    RetryAt(i64),
    /// The retry window is over.
    Abandon,
}

pub(crate) fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}
