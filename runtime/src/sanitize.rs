//! What a plugin answers, made safe to keep and to show, once, where the host takes the answer
//! ([`crate::logic`]), so that no output path (the API's answers, the ledger, the CSV
//! export, outbound events, the command line) can forget it:
//!
//! - **Secrets out.** A provider's error message may echo what it was sent: every configured
//!   secret value of the provider (its [`Redactor`]) and every credential the provider issued at
//!   run time (a token in an HTTP answer of the operation, or kept in the plugin's storage) is
//!   replaced by [`REDACTED`] in every text of the answer.
//! - **Caps.** An id (or code) longer than [`MAX_ID`] bytes makes the answer a plugin error: no
//!   provider issues one, and cutting it would store an id that names nothing. A message longer
//!   than [`MAX_MESSAGE`] bytes is cut at a character boundary and ends with [`TRUNCATED`]: the
//!   start of a provider's explanation is worth keeping, a megabyte of it is not.
//!
//! Redaction comes first, so a cut can never leave part of a secret behind.

use crate::bindings::types::{
    ProviderInfo, Refund, RefundError, RefundPage, WebhookError, WebhookEvent, WebhookOutcome,
};
use crate::error::PluginError;
use crate::secret::{MIN_TOKEN, REDACTED, Redactor};

/// The longest id or code a plugin may answer with, in bytes.
pub const MAX_ID: usize = 128;
/// The longest list cursor a plugin may answer with, in bytes: opaque to the host, so never cut,
/// but a cursor longer than this is no provider's.
pub const MAX_CURSOR: usize = 1024;
/// The longest message kept from a plugin's answer, in bytes ([`TRUNCATED`] included).
pub const MAX_MESSAGE: usize = 2048;
/// What ends a message that was cut.
pub const TRUNCATED: &str = "…[truncated]";

/// An id or code of an answer over [`MAX_ID`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {len} bytes, over the cap of {MAX_ID}")]
pub struct Oversized {
    /// Which text (`provider_refund_id`, `event_id`, ...).
    pub field: &'static str,
    /// Its length, in bytes.
    pub len: usize,
}

/// Removes one provider's secrets from its plugin's answers and holds them to the caps.
pub struct Sanitizer {
    redactor: Redactor,
    /// Credentials the provider issued, longest first (one that contains another goes whole).
    issued: Vec<String>,
}

impl Sanitizer {
    /// A sanitizer removing what `redactor` removes and the `issued` credentials (those shorter
    /// than [`MIN_TOKEN`] are no credential, and are ignored).
    pub fn new(redactor: Redactor, issued: impl IntoIterator<Item = String>) -> Self {
        let mut issued: Vec<String> = issued
            .into_iter()
            .filter(|t| t.len() >= MIN_TOKEN)
            .collect();
        issued.sort_by_key(|t| std::cmp::Reverse(t.len()));
        issued.dedup();
        Self { redactor, issued }
    }

    /// `text` without secrets.
    pub fn redact(&self, text: &str) -> String {
        let mut out = self.redactor.redact(text);
        for token in &self.issued {
            if out.contains(token.as_str()) {
                out = out.replace(token.as_str(), REDACTED);
            }
        }
        out
    }

    /// An id or code: without secrets, and at most [`MAX_ID`] bytes.
    fn id(&self, field: &'static str, text: &str) -> Result<String, Oversized> {
        self.capped(field, text, MAX_ID)
    }

    /// A text without secrets, and at most `cap` bytes.
    fn capped(&self, field: &'static str, text: &str, cap: usize) -> Result<String, Oversized> {
        let text = self.redact(text);
        if text.len() > cap {
            return Err(Oversized {
                field,
                len: text.len(),
            });
        }
        Ok(text)
    }

    fn optional_id(
        &self,
        field: &'static str,
        text: &Option<String>,
    ) -> Result<Option<String>, Oversized> {
        text.as_deref().map(|t| self.id(field, t)).transpose()
    }

    /// A message: without secrets, cut to [`MAX_MESSAGE`] bytes.
    fn message(&self, text: &str) -> String {
        truncate(self.redact(text))
    }

    /// A refund a plugin answered with.
    pub fn refund(&self, r: &Refund) -> Result<Refund, Oversized> {
        Ok(Refund {
            provider_refund_id: self.id("provider_refund_id", &r.provider_refund_id)?,
            external_refund_id: self.optional_id("external_refund_id", &r.external_refund_id)?,
            original_transaction_id: self
                .id("original_transaction_id", &r.original_transaction_id)?,
            amount: crate::bindings::types::Money {
                amount_minor: r.amount.amount_minor,
                currency: self.id("currency", &r.amount.currency)?,
            },
            status: r.status,
            provider_status: self.id("provider_status", &r.provider_status)?,
            failure_reason: r.failure_reason.as_deref().map(|m| self.message(m)),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    /// A refund error a plugin answered with.
    pub fn refund_error(&self, e: &RefundError) -> Result<RefundError, Oversized> {
        Ok(match e {
            RefundError::Refused(r) => RefundError::Refused(crate::bindings::types::Refusal {
                kind: r.kind,
                provider_code: self.optional_id("provider_code", &r.provider_code)?,
                message: self.message(&r.message),
                http_status: r.http_status,
            }),
            RefundError::Retryable(r) => {
                RefundError::Retryable(crate::bindings::types::Retryable {
                    provider_code: self.optional_id("provider_code", &r.provider_code)?,
                    message: self.message(&r.message),
                    http_status: r.http_status,
                    retry_after_ms: r.retry_after_ms,
                })
            }
            RefundError::UnknownOutcome(m) => RefundError::UnknownOutcome(self.message(m)),
        })
    }

    /// A `create-refund` or `get-refund` answer.
    pub fn refund_answer(
        &self,
        answer: &Result<Refund, RefundError>,
    ) -> Result<Result<Refund, RefundError>, Oversized> {
        Ok(match answer {
            Ok(r) => Ok(self.refund(r)?),
            Err(e) => Err(self.refund_error(e)?),
        })
    }

    /// A `list-refunds` answer.
    pub fn page_answer(
        &self,
        answer: &Result<RefundPage, RefundError>,
    ) -> Result<Result<RefundPage, RefundError>, Oversized> {
        Ok(match answer {
            Ok(p) => Ok(RefundPage {
                refunds: p
                    .refunds
                    .iter()
                    .map(|r| self.refund(r))
                    .collect::<Result<_, _>>()?,
                next_cursor: p
                    .next_cursor
                    .as_deref()
                    .map(|c| self.capped("next_cursor", c, MAX_CURSOR))
                    .transpose()?,
            }),
            Err(e) => Err(self.refund_error(e)?),
        })
    }

    /// A webhook event.
    fn webhook_event(&self, e: &WebhookEvent) -> Result<WebhookEvent, Oversized> {
        Ok(WebhookEvent {
            event_id: self.id("event_id", &e.event_id)?,
            event_type: self.id("event_type", &e.event_type)?,
            occurred_at: e.occurred_at,
            refund: self.refund(&e.refund)?,
        })
    }

    /// A `parse-webhook` answer.
    pub fn webhook_answer(
        &self,
        answer: &Result<WebhookOutcome, WebhookError>,
    ) -> Result<Result<WebhookOutcome, WebhookError>, Oversized> {
        Ok(match answer {
            Ok(WebhookOutcome::Events(events)) => Ok(WebhookOutcome::Events(
                events
                    .iter()
                    .map(|e| self.webhook_event(e))
                    .collect::<Result<_, _>>()?,
            )),
            Ok(WebhookOutcome::Ignored(reason)) => {
                Ok(WebhookOutcome::Ignored(self.message(reason)))
            }
            Err(e) => Err(match e {
                WebhookError::MissingHeader(h) => {
                    WebhookError::MissingHeader(self.id("missing_header", h)?)
                }
                WebhookError::InvalidSignature => WebhookError::InvalidSignature,
                WebhookError::StaleTimestamp(s) => WebhookError::StaleTimestamp(*s),
                WebhookError::Malformed(m) => WebhookError::Malformed(self.message(m)),
            }),
        })
    }

    /// A plugin's `describe()`: its id, version and currency codes within the id cap, its display
    /// name without secrets and cut like a message (it is shown by `GET /v1/plugins`, `/healthz`
    /// and `refundry plugin inspect`).
    pub fn provider_info(&self, i: &ProviderInfo) -> Result<ProviderInfo, Oversized> {
        Ok(ProviderInfo {
            id: self.id("id", &i.id)?,
            version: self.id("version", &i.version)?,
            display_name: self.message(&i.display_name),
            currencies: i
                .currencies
                .iter()
                .map(|c| self.id("currency", c))
                .collect::<Result<_, _>>()?,
            partial_refunds: i.partial_refunds,
            multiple_refunds: i.multiple_refunds,
            refund_window_days: i.refund_window_days,
            status_queries: i.status_queries,
            reversal_window_days: i.reversal_window_days,
            max_list_range_days: i.max_list_range_days,
        })
    }

    /// A plugin failure: its message (a panic's text is the plugin's own words) without
    /// secrets, cut to [`MAX_MESSAGE`].
    pub fn plugin_error(&self, e: PluginError) -> PluginError {
        match e {
            PluginError::Trap {
                provider,
                op,
                message,
            } => PluginError::Trap {
                provider,
                op,
                message: self.message(&message),
            },
            PluginError::Instantiate {
                provider,
                op,
                message,
            } => PluginError::Instantiate {
                provider,
                op,
                message: self.message(&message),
            },
            e @ (PluginError::DeadlineExceeded { .. }
            | PluginError::MemoryLimit { .. }
            | PluginError::OversizedAnswer { .. }) => e,
        }
    }
}

/// `text` cut to at most [`MAX_MESSAGE`] bytes, at a character boundary, ending with
/// [`TRUNCATED`] when it was cut.
pub fn truncate(mut text: String) -> String {
    if text.len() <= MAX_MESSAGE {
        return text;
    }
    let mut end = MAX_MESSAGE - TRUNCATED.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(TRUNCATED);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::{Money, RefundStatus, Refusal, RefusalKind, Retryable};
    use crate::secret::Secret;

    const KEY: &str = "sk_live_0123456789abcdef";
    const TOKEN: &str = "tok-issued-0123456789abcdef";

    fn sanitizer() -> Sanitizer {
        Sanitizer::new(
            Redactor::new([&Secret::new(KEY)]),
            [TOKEN.to_owned(), "short".to_owned()],
        )
    }

    fn refund() -> Refund {
        Refund {
            provider_refund_id: format!("rf-{TOKEN}"),
            external_refund_id: Some(format!("ext {KEY}")),
            original_transaction_id: "txn_1".into(),
            amount: Money {
                amount_minor: 100,
                currency: "KES".into(),
            },
            status: RefundStatus::Failed,
            provider_status: "FAILED".into(),
            failure_reason: Some(format!("bad key {KEY}, token {TOKEN}")),
            created_at: None,
            updated_at: Some(1),
        }
    }

    /// Every text of a value, through its `Debug` form.
    fn leaks(v: &impl std::fmt::Debug) -> bool {
        let text = format!("{v:?}");
        text.contains(KEY) || text.contains(TOKEN)
    }

    #[test]
    fn secrets_and_issued_tokens_leave_every_text_of_a_refund() {
        let s = sanitizer();
        assert!(leaks(&refund()));
        let clean = s.refund(&refund()).unwrap();
        assert!(!leaks(&clean), "{clean:?}");
        assert_eq!(clean.provider_refund_id, "rf-[redacted]");
        assert_eq!(
            clean.failure_reason.as_deref(),
            Some("bad key [redacted], token [redacted]")
        );
        // What carries no secret is left as it is; a short "token" is no credential.
        assert_eq!(s.redact("short txn_1"), "short txn_1");
        assert_eq!(clean.amount, refund().amount);
    }

    #[test]
    fn secrets_leave_every_text_of_a_refund_error() {
        let s = sanitizer();
        for e in [
            RefundError::Refused(Refusal {
                kind: RefusalKind::Authentication,
                provider_code: Some(format!("E-{KEY}")),
                message: format!("invalid api key {KEY}"),
                http_status: Some(401),
            }),
            RefundError::Retryable(Retryable {
                provider_code: None,
                message: format!("{TOKEN} expired"),
                http_status: Some(503),
                retry_after_ms: Some(5),
            }),
            RefundError::UnknownOutcome(format!("echo {KEY}")),
        ] {
            assert!(leaks(&e));
            let clean = s.refund_answer(&Err(e)).unwrap();
            assert!(!leaks(&clean), "{clean:?}");
            assert!(format!("{clean:?}").contains(REDACTED));
        }
    }

    #[test]
    fn secrets_leave_every_text_of_a_webhook_answer() {
        let s = sanitizer();
        let event = WebhookEvent {
            event_id: format!("ev-{KEY}"),
            event_type: "refund.failed".into(),
            occurred_at: None,
            refund: refund(),
        };
        let clean = s
            .webhook_answer(&Ok(WebhookOutcome::Events(vec![event])))
            .unwrap();
        assert!(!leaks(&clean), "{clean:?}");
        let clean = s
            .webhook_answer(&Ok(WebhookOutcome::Ignored(format!(
                "event type refund.{KEY}"
            ))))
            .unwrap();
        assert!(!leaks(&clean), "{clean:?}");
        for e in [
            WebhookError::MissingHeader(format!("X-{KEY}")),
            WebhookError::Malformed(format!("body had {TOKEN}")),
        ] {
            let clean = s.webhook_answer(&Err(e)).unwrap();
            assert!(!leaks(&clean), "{clean:?}");
        }
        let trap = s.plugin_error(PluginError::Trap {
            provider: "p".into(),
            op: "create-refund",
            message: format!("panicked: {KEY}"),
        });
        assert!(!leaks(&trap), "{trap:?}");
    }

    #[test]
    fn a_listed_page_keeps_no_secret_and_no_cursor_over_its_cap() {
        let s = sanitizer();
        let page = RefundPage {
            refunds: vec![refund(), refund()],
            next_cursor: Some("c".repeat(MAX_CURSOR)),
        };
        let clean = s.page_answer(&Ok(page.clone())).unwrap().unwrap();
        assert!(!leaks(&clean), "{clean:?}");
        assert_eq!(clean.refunds.len(), 2);
        // A cursor is opaque: kept whole up to its cap, never cut.
        assert_eq!(clean.next_cursor, page.next_cursor);
        let long = RefundPage {
            next_cursor: Some("c".repeat(MAX_CURSOR + 1)),
            ..page
        };
        assert_eq!(
            s.page_answer(&Ok(long)).unwrap_err(),
            Oversized {
                field: "next_cursor",
                len: MAX_CURSOR + 1
            }
        );
    }

    #[test]
    fn an_id_over_128_bytes_makes_the_answer_an_error() {
        let s = sanitizer();
        let mut r = refund();
        r.provider_refund_id = "x".repeat(MAX_ID);
        assert!(s.refund(&r).is_ok(), "128 bytes is allowed");
        r.provider_refund_id = "x".repeat(MAX_ID + 1);
        assert_eq!(
            s.refund(&r).unwrap_err(),
            Oversized {
                field: "provider_refund_id",
                len: MAX_ID + 1
            }
        );
        let refused = RefundError::Refused(Refusal {
            kind: RefusalKind::Other,
            provider_code: Some("c".repeat(200)),
            message: "m".into(),
            http_status: None,
        });
        assert_eq!(s.refund_error(&refused).unwrap_err().field, "provider_code");
        let event = WebhookEvent {
            event_id: "e".repeat(MAX_ID + 1),
            event_type: "t".into(),
            occurred_at: None,
            refund: refund(),
        };
        // One oversized event makes the whole delivery an error, wherever it is in the batch.
        let fine = WebhookEvent {
            event_id: "e".into(),
            ..event.clone()
        };
        assert_eq!(
            s.webhook_answer(&Ok(WebhookOutcome::Events(vec![fine, event])))
                .unwrap_err()
                .field,
            "event_id"
        );
    }

    #[test]
    fn a_description_keeps_no_secret_and_no_oversized_id() {
        let info = ProviderInfo {
            id: "p".into(),
            version: "0.1.0".into(),
            display_name: format!("P (key {KEY})"),
            currencies: vec!["KES".into()],
            partial_refunds: true,
            multiple_refunds: true,
            refund_window_days: Some(30),
            status_queries: true,
            reversal_window_days: Some(90),
            max_list_range_days: Some(31),
        };
        let clean = sanitizer().provider_info(&info).unwrap();
        assert_eq!(clean.display_name, format!("P (key {REDACTED})"));
        assert_eq!(
            (clean.id, clean.version),
            (info.id.clone(), info.version.clone())
        );
        let long = ProviderInfo {
            version: "9".repeat(MAX_ID + 1),
            ..info
        };
        assert_eq!(
            sanitizer().provider_info(&long),
            Err(Oversized {
                field: "version",
                len: MAX_ID + 1
            })
        );
    }

    #[test]
    fn a_long_message_is_cut_at_a_char_boundary_with_a_marker() {
        let s = sanitizer();
        let mut r = refund();
        r.failure_reason = Some("é".repeat(MAX_MESSAGE));
        let cut = s.refund(&r).unwrap().failure_reason.unwrap();
        assert!(cut.len() <= MAX_MESSAGE, "{}", cut.len());
        assert!(cut.ends_with(TRUNCATED));
        assert!(cut.trim_end_matches(TRUNCATED).chars().all(|c| c == 'é'));
        // A message that fits is left whole.
        let fits = "m".repeat(MAX_MESSAGE);
        assert_eq!(truncate(fits.clone()), fits);
        // A secret across the cut is redacted before it, never half kept.
        let mut r = refund();
        let pad = "p".repeat(MAX_MESSAGE - TRUNCATED.len() - 5);
        r.failure_reason = Some(format!("{pad}{KEY}{KEY}"));
        let cut = s.refund(&r).unwrap().failure_reason.unwrap();
        assert!(!cut.contains(&KEY[..5]), "{}", &cut[cut.len() - 40..]);
    }
}
