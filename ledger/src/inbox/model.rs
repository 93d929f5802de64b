//! The webhook inbox's values: an event as received, and what keeping it did.

use crate::{Applied, Failure, Report, Source, Stamp, Status};

/// What the webhook inbox did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inboxed {
    /// Seen before: nothing done.
    Duplicate,
    /// No refund matches: kept in the inbox.
    Unmatched,
    /// Applied (or recorded) to this refund.
    Matched(Box<Applied>),
}

/// A webhook event to keep, as its plugin parsed it.
#[derive(Debug, Clone)]
pub struct InboxEvent {
    /// Provider id.
    pub provider: String,
    /// The provider's event id (the dedupe key, with `provider`).
    pub event_id: String,
    /// The provider's event type.
    pub event_type: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// What it says of the refund.
    pub report: Report,
    /// The gateway's refund id, if the event carries it.
    pub external_refund_id: Option<String>,
    /// When it arrived (ms).
    pub now_ms: i64,
    /// The plugin version that verified and parsed it.
    pub plugin_version: String,
}

impl InboxEvent {
    /// The history stamp of its report.
    pub(crate) fn stamp(&self) -> Stamp {
        let detail = format!("event {} ({})", self.event_id, self.event_type);
        Stamp::new(Source::Webhook, detail, self.now_ms).by(&self.plugin_version)
    }
}

impl Inboxed {
    /// The inbox's `result` for the event and the refund it was applied to.
    pub(crate) fn kept_as(&self) -> (&'static str, Option<String>) {
        match self {
            Inboxed::Matched(a) => (applied_word(a.moved), Some(a.refund.id.clone())),
            _ => ("unmatched", None),
        }
    }
}

/// The inbox's `result` for an event applied to its refund: `applied` when it moved it.
pub(crate) fn applied_word(moved: bool) -> &'static str {
    if moved { "applied" } else { "recorded" }
}

/// The report and stamp of an event held unmatched until its refund was known, from what the
/// inbox kept of it.
pub(crate) fn held_report(
    provider_refund_id: &str,
    event_id: &str,
    event_type: &str,
    status: &str,
    now_ms: i64,
) -> (Report, Stamp) {
    let status = Status::parse(status).unwrap_or(Status::Unknown);
    let report = Report {
        status,
        provider_refund_id: Some(provider_refund_id.to_owned()),
        provider_status: None,
        failure: (status == Status::Failed).then(|| Failure {
            code: "provider_failed".into(),
            message: format!("the provider failed the refund (webhook event {event_id})"),
            provider_code: None,
        }),
    };
    let detail = format!("event {event_id} ({event_type}), held until its refund was known");
    (report, Stamp::new(Source::Webhook, detail, now_ms))
}
