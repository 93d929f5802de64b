//! Webhook intake: a provider's delivery is verified and parsed by its plugin; each of its events
//! is kept in the inbox (deduplicated by event id) and applied to its refund under the
//! forward-only rule. An event for a refund Refundry does not know is kept in the inbox and
//! logged, not lost; a delivery of an event type the plugin does not handle is acknowledged and
//! kept too.

use super::create::report_of;
use super::service::RefundService;
use super::types::{AcceptedEvent, EventResult, WebhookAccepted, WebhookIntakeError};
use crate::exchange::Exchanges;
use crate::registry::PluginVersion;
use refundry_ledger::{InboxEvent, Inboxed};
use refundry_runtime::bindings::types::{WebhookEvent, WebhookOutcome, WebhookRequest};
use refundry_runtime::component::sha256_hex;

impl RefundService {
    /// Takes a webhook delivery `provider` sent: verified and parsed by its plugin, each event
    /// deduplicated by event id and applied to its refund.
    pub async fn webhook(
        &self,
        provider: &str,
        req: WebhookRequest,
    ) -> Result<WebhookAccepted, WebhookIntakeError> {
        let plugin = self
            .inner
            .providers
            .provider(provider)
            .map_err(|_| WebhookIntakeError::UnknownProvider(provider.to_owned()))?;
        // Recorded in memory; kept only when an event matches a refund (below).
        let exchanges = self.operation_exchanges(&plugin);
        let parsed = plugin
            .logic
            .parse_webhook(&req, exchanges.observer())
            .await?;
        let events = match parsed {
            Ok(WebhookOutcome::Events(events)) => events,
            Ok(WebhookOutcome::Ignored(reason)) => {
                let internal =
                    |e: refundry_ledger::db::DbError| WebhookIntakeError::Internal(e.to_string());
                let key = format!("ignored-{}", sha256_hex(&req.body));
                let kept = self
                    .inner
                    .ledger
                    .keep_ignored_webhook(provider, &key, &reason, req.body, self.now_ms())
                    .await
                    .map_err(internal)?;
                tracing::info!(
                    provider,
                    reason,
                    new = kept,
                    "webhook not handled: acknowledged and kept"
                );
                return Ok(WebhookAccepted::Ignored { reason });
            }
            Err(e) => {
                self.inner
                    .providers
                    .metrics()
                    .webhook_rejected(provider, &e);
                let error = WebhookIntakeError::Rejected(e);
                tracing::warn!(provider, error = %error, "webhook rejected");
                return Err(error);
            }
        };
        let mut accepted = Vec::with_capacity(events.len());
        for event in events {
            let result = self
                .take_event(provider, &plugin, &exchanges, &event, &req.body)
                .await?;
            accepted.push(AcceptedEvent {
                event_id: event.event_id,
                result,
            });
        }
        Ok(WebhookAccepted::Events(accepted))
    }

    /// Keeps one event of a delivery in the inbox and applies it to its refund.
    async fn take_event(
        &self,
        provider: &str,
        plugin: &PluginVersion,
        exchanges: &Exchanges,
        event: &WebhookEvent,
        body: &[u8],
    ) -> Result<EventResult, WebhookIntakeError> {
        let inboxed = self
            .inner
            .ledger
            .receive_webhook(InboxEvent {
                provider: provider.to_owned(),
                event_id: event.event_id.clone(),
                event_type: event.event_type.clone(),
                body: body.to_vec(),
                report: report_of(&event.refund),
                external_refund_id: event.refund.external_refund_id.clone(),
                now_ms: self.now_ms(),
                plugin_version: plugin.version().to_owned(),
            })
            .await
            .map_err(|e| WebhookIntakeError::Internal(e.to_string()))?;
        let event_id = event.event_id.as_str();
        Ok(match inboxed {
            Inboxed::Duplicate => {
                tracing::info!(provider, event_id, "duplicate webhook event ignored");
                EventResult::Duplicate
            }
            Inboxed::Unmatched => {
                tracing::warn!(
                    provider, event_id,
                    provider_refund_id = %event.refund.provider_refund_id,
                    "webhook for a refund this ledger does not know: kept in the inbox"
                );
                EventResult::Unmatched
            }
            Inboxed::Matched(applied) => {
                let applied = *applied;
                let refund = applied.refund;
                self.keep_recording(&refund.id, exchanges).await;
                tracing::info!(
                    refund_id = %refund.id, provider, event_id,
                    status = refund.status.as_str(), moved = applied.moved, "webhook applied"
                );
                if applied.moved {
                    EventResult::Applied {
                        refund_id: refund.id,
                        status: refund.status,
                    }
                } else {
                    EventResult::Recorded {
                        refund_id: refund.id,
                    }
                }
            }
        })
    }
}
