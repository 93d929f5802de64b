//! Webhook intake: a provider's event is verified and parsed by its plugin, kept in the inbox
//! (deduplicated by event id), and applied to its refund under the forward-only rule. An event
//! for a refund Refundry does not know is kept in the inbox and logged, not lost.

use super::create::report_of;
use super::service::RefundService;
use super::types::{WebhookAccepted, WebhookIntakeError};
use refundry_ledger::{InboxEvent, Inboxed};

impl RefundService {
    /// Takes a webhook `provider` sent: verified and parsed by its plugin, deduplicated by event
    /// id, and applied to its refund.
    pub async fn webhook(
        &self,
        provider: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<WebhookAccepted, WebhookIntakeError> {
        let plugin = self
            .inner
            .providers
            .provider(provider)
            .map_err(|_| WebhookIntakeError::UnknownProvider(provider.to_owned()))?;
        // Recorded in memory; kept only when the event matches a refund (below).
        let exchanges = self.operation_exchanges(&plugin);
        let parsed = plugin
            .logic
            .parse_webhook(&headers, &body, exchanges.observer())
            .await?;
        let event = match parsed {
            Ok(event) => event,
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
        let inboxed = self
            .inner
            .ledger
            .receive_webhook(InboxEvent {
                provider: provider.to_owned(),
                event_id: event.event_id.clone(),
                event_type: event.event_type.clone(),
                body,
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
                WebhookAccepted::Duplicate
            }
            Inboxed::Unmatched => {
                tracing::warn!(
                    provider, event_id,
                    provider_refund_id = %event.refund.provider_refund_id,
                    "webhook for a refund this ledger does not know: kept in the inbox"
                );
                WebhookAccepted::Unmatched
            }
            Inboxed::Matched(applied) => {
                let applied = *applied;
                let refund = applied.refund;
                self.keep_recording(&refund.id, &exchanges).await;
                tracing::info!(
                    refund_id = %refund.id, provider, event_id,
                    status = refund.status.as_str(), moved = applied.moved, "webhook applied"
                );
                if applied.moved {
                    WebhookAccepted::Applied {
                        refund_id: refund.id,
                        status: refund.status,
                    }
                } else {
                    WebhookAccepted::Recorded {
                        refund_id: refund.id,
                    }
                }
            }
        })
    }
}
