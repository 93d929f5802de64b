//! Building `refund-error`s the same way in every plugin: the contract's rules for what may be
//! retried live here once, not in each provider.
//!
//! A plugin's flows return [`ProviderError`]; where an operation answers the host, `?` turns it
//! into the contract's [`RefundError`]. What stays in the plugin is its provider's error table:
//! which refusal kind each of the provider's error answers is ([`ProviderError::ErrorAnswer`]).

use crate::http::HttpError;
use crate::list::{CursorError, RangeError};
use crate::settings::SettingsError;
use crate::time::TimeError;
use crate::{RefundError, Refusal, RefusalKind, Retryable};

/// What a call to the provider does, which decides what a lost or unreadable answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Creates or changes a refund: a lost or unreadable answer leaves the outcome unknown.
    Write,
    /// Reads refunds: repeating it changes nothing, so a lost answer is retried; an answer that
    /// cannot be read is an unknown outcome (the provider said something the plugin cannot
    /// vouch for).
    Read,
    /// Obtains credentials (a token): it changes no refund and asks about none, so a lost
    /// answer and one that cannot be read are both retried.
    Authorize,
}

/// A final refusal decided by the plugin (no provider code, no HTTP status).
pub fn refused(kind: RefusalKind, message: impl Into<String>) -> RefundError {
    RefundError::Refused(Refusal {
        kind,
        provider_code: None,
        message: message.into(),
        http_status: None,
    })
}

/// A failure after which the same request may be sent again (no provider answer to quote).
pub fn retryable(message: impl Into<String>) -> RefundError {
    RefundError::Retryable(Retryable {
        provider_code: None,
        message: message.into(),
        http_status: None,
        retry_after_ms: None,
    })
}

/// What a failed `http.send` means for the operation, by the contract's rules:
/// nothing sent (connect failure) is retryable; a lost answer to a write is an unknown outcome
/// and to a read retryable; a request the host refused is a configuration problem no retry fixes.
pub fn from_http(error: &HttpError, effect: Effect, message: impl Into<String>) -> RefundError {
    let message = message.into();
    match (error, effect) {
        (HttpError::ConnectFailed(_), _) => retryable(message),
        (
            HttpError::Timeout | HttpError::Transport(_) | HttpError::ResponseTooLarge(_),
            Effect::Write,
        ) => RefundError::UnknownOutcome(message),
        (
            HttpError::Timeout | HttpError::Transport(_) | HttpError::ResponseTooLarge(_),
            Effect::Read | Effect::Authorize,
        ) => retryable(message),
        (HttpError::Denied(_) | HttpError::InvalidRequest(_), _) => {
            refused(RefusalKind::Configuration, message)
        }
    }
}

/// The provider answered with an error: a final refusal of `kind`, or retryable when `kind` is
/// `None` (a provider fault or rate limit), keeping the provider's code, message and HTTP status.
pub fn from_answer(
    kind: Option<RefusalKind>,
    provider_code: Option<String>,
    message: String,
    http_status: u16,
    retry_after_ms: Option<u64>,
) -> RefundError {
    match kind {
        Some(kind) => RefundError::Refused(Refusal {
            kind,
            provider_code,
            message,
            http_status: Some(http_status),
        }),
        None => RefundError::Retryable(Retryable {
            provider_code,
            message,
            http_status: Some(http_status),
            retry_after_ms,
        }),
    }
}

/// Everything that can stop a plugin's operation, mapped once into [`RefundError`] (by
/// `From`, so that `?` converts it).
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// A setting is missing or unusable: a final refusal of kind `configuration`.
    #[error(transparent)]
    Config(#[from] SettingsError),
    /// The host clock cannot be written the way the provider wants it (a signed timestamp, a
    /// dated request): a final refusal of kind `authentication`, because the provider would
    /// refuse that time like a clock it rejected.
    #[error("host clock unusable for {field}: {source}")]
    Clock {
        /// Where the time goes (`X-Timestamp`, `dateRequest`).
        field: &'static str,
        /// Why it cannot be written.
        source: TimeError,
    },
    /// The request breaks a rule checked before any call: a final refusal of kind
    /// `invalid-request`.
    #[error("{reason}")]
    InvalidRequest {
        /// Which rule, in words.
        reason: String,
    },
    /// The currency is not one the provider refunds in: a final refusal of kind
    /// `currency-mismatch`.
    #[error("currency `{currency}` is not supported by {provider} ({} only)", .supported.join(", "))]
    UnsupportedCurrency {
        /// The provider's name.
        provider: &'static str,
        /// The currency asked for.
        currency: String,
        /// The currencies the provider takes.
        supported: &'static [&'static str],
    },
    /// `http.send` failed: retryable, an unknown outcome or a configuration refusal by what the
    /// call does ([`from_http`]).
    #[error("http: {source}")]
    Http {
        /// What the host said.
        source: HttpError,
        /// What the call does.
        effect: Effect,
    },
    /// The provider answered with an error: a final refusal of `kind`, or retryable when `kind`
    /// is `None` ([`from_answer`]). `kind` comes from the plugin's error table.
    #[error("{message}")]
    ErrorAnswer {
        /// The refusal kind the provider's error table gives, `None` for "not now".
        kind: Option<RefusalKind>,
        /// The HTTP status.
        status: u16,
        /// The provider's error code, `None` when the answer had no error body of its own.
        code: Option<String>,
        /// The provider's message.
        message: String,
        /// The provider's `Retry-After`, in milliseconds.
        retry_after_ms: Option<u64>,
    },
    /// An answer the plugin cannot read (a status or body outside the spec): an unknown outcome,
    /// or retryable for an authorization, which asked nothing about a refund.
    #[error("unexpected answer from {provider} (HTTP {status}): {reason}")]
    BadAnswer {
        /// The provider's name.
        provider: &'static str,
        /// The HTTP status.
        status: u16,
        /// What is wrong with the answer.
        reason: String,
        /// What the call does.
        effect: Effect,
    },
    /// A lookup by the merchant's refund id found no refund: a final refusal of kind
    /// `not-found`.
    #[error("no refund with {field} `{id}`")]
    NotFound {
        /// The provider's name for the merchant's id (`external_refund_id`, `refundId`).
        field: &'static str,
        /// The id looked up.
        id: String,
    },
}

impl ProviderError {
    /// [`ProviderError::InvalidRequest`] for `reason`.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidRequest {
            reason: reason.into(),
        }
    }

    /// What makes [`ProviderError::Clock`] of the host time meant for `field`:
    /// `time::format_rfc3339_utc(host.now_ms()).map_err(ProviderError::clock("X-Timestamp"))`.
    pub fn clock(field: &'static str) -> impl FnOnce(TimeError) -> Self {
        move |source| Self::Clock { field, source }
    }
}

/// A range that cannot be listed is the request's fault.
impl From<RangeError> for ProviderError {
    fn from(err: RangeError) -> Self {
        Self::invalid(err.to_string())
    }
}

/// So is a cursor the listing never gave out.
impl From<CursorError> for ProviderError {
    fn from(err: CursorError) -> Self {
        Self::invalid(err.to_string())
    }
}

/// Also where an operation answers the host, so that `list-refunds` can use `?` on it.
impl From<RangeError> for RefundError {
    fn from(err: RangeError) -> Self {
        ProviderError::from(err).into()
    }
}

/// Also where an operation answers the host, so that `list-refunds` can use `?` on it.
impl From<CursorError> for RefundError {
    fn from(err: CursorError) -> Self {
        ProviderError::from(err).into()
    }
}

impl From<ProviderError> for RefundError {
    fn from(err: ProviderError) -> Self {
        let message = err.to_string();
        match err {
            ProviderError::Config(_) => refused(RefusalKind::Configuration, message),
            ProviderError::Clock { .. } => refused(RefusalKind::Authentication, message),
            ProviderError::InvalidRequest { .. } => refused(RefusalKind::InvalidRequest, message),
            ProviderError::UnsupportedCurrency { .. } => {
                refused(RefusalKind::CurrencyMismatch, message)
            }
            ProviderError::NotFound { .. } => refused(RefusalKind::NotFound, message),
            ProviderError::Http { source, effect } => from_http(&source, effect, message),
            ProviderError::ErrorAnswer {
                kind,
                status,
                code,
                message,
                retry_after_ms,
            } => from_answer(kind, code, message, status, retry_after_ms),
            ProviderError::BadAnswer {
                effect: Effect::Authorize,
                ..
            } => retryable(message),
            ProviderError::BadAnswer {
                effect: Effect::Write | Effect::Read,
                ..
            } => RefundError::UnknownOutcome(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_answers_depend_on_the_effect() {
        for e in [
            HttpError::Timeout,
            HttpError::Transport("reset".into()),
            HttpError::ResponseTooLarge(1),
        ] {
            assert!(matches!(
                from_http(&e, Effect::Write, "m"),
                RefundError::UnknownOutcome(_)
            ));
            assert!(matches!(
                from_http(&e, Effect::Read, "m"),
                RefundError::Retryable(_)
            ));
        }
    }

    #[test]
    fn nothing_sent_is_retryable_and_denied_is_final() {
        let connect = HttpError::ConnectFailed("refused".into());
        assert!(matches!(
            from_http(&connect, Effect::Write, "m"),
            RefundError::Retryable(_)
        ));
        let denied = from_http(&HttpError::Denied("other host".into()), Effect::Read, "m");
        assert!(matches!(
            denied,
            RefundError::Refused(Refusal {
                kind: RefusalKind::Configuration,
                ..
            })
        ));
    }

    #[test]
    fn answers_keep_the_providers_code_and_status() {
        let refused = from_answer(
            Some(RefusalKind::AmountExceeded),
            Some("132".into()),
            "m".into(),
            422,
            None,
        );
        assert!(matches!(
            refused,
            RefundError::Refused(Refusal { kind: RefusalKind::AmountExceeded, http_status: Some(422), ref provider_code, .. })
                if provider_code.as_deref() == Some("132")
        ));
        let retry = from_answer(
            None,
            Some("rate_limited".into()),
            "m".into(),
            429,
            Some(7_000),
        );
        assert!(matches!(
            retry,
            RefundError::Retryable(Retryable {
                retry_after_ms: Some(7_000),
                http_status: Some(429),
                ..
            })
        ));
    }

    #[test]
    fn authorizing_is_retried_like_a_read() {
        for e in [HttpError::Timeout, HttpError::ConnectFailed("x".into())] {
            assert!(matches!(
                from_http(&e, Effect::Authorize, "m"),
                RefundError::Retryable(_)
            ));
        }
        assert!(matches!(
            from_http(&HttpError::Denied("x".into()), Effect::Authorize, "m"),
            RefundError::Refused(Refusal {
                kind: RefusalKind::Configuration,
                ..
            })
        ));
    }

    fn refusal_kind(err: ProviderError) -> Option<RefusalKind> {
        match RefundError::from(err) {
            RefundError::Refused(Refusal {
                kind,
                provider_code: None,
                http_status: None,
                ..
            }) => Some(kind),
            _ => None,
        }
    }

    #[test]
    fn what_the_plugin_decides_is_a_final_refusal_of_its_kind() {
        let config = SettingsError::Missing {
            provider: "acme",
            key: "api_key".into(),
        };
        let clock = ProviderError::clock("X-Timestamp")(TimeError::OutOfRange { ms: i64::MAX });
        let currency = ProviderError::UnsupportedCurrency {
            provider: "Acme",
            currency: "EUR".into(),
            supported: &["PEN", "USD"],
        };
        let not_found = ProviderError::NotFound {
            field: "refundId",
            id: "r-1".into(),
        };
        for (err, kind) in [
            (config.into(), RefusalKind::Configuration),
            (clock, RefusalKind::Authentication),
            (ProviderError::invalid("bad"), RefusalKind::InvalidRequest),
            (
                RangeError::TooLong { max_days: 31 }.into(),
                RefusalKind::InvalidRequest,
            ),
            (CursorError::Empty.into(), RefusalKind::InvalidRequest),
            (currency, RefusalKind::CurrencyMismatch),
            (not_found, RefusalKind::NotFound),
        ] {
            assert_eq!(refusal_kind(err), Some(kind));
        }
        let range = RefundError::from(RangeError::Empty { from: 5, to: 5 });
        let cursor = RefundError::from(CursorError::Empty);
        for err in [range, cursor] {
            assert!(matches!(
                err,
                RefundError::Refused(Refusal {
                    kind: RefusalKind::InvalidRequest,
                    ..
                })
            ));
        }
    }

    #[test]
    fn messages_say_what_and_whose() {
        let currency = ProviderError::UnsupportedCurrency {
            provider: "Acme",
            currency: "EUR".into(),
            supported: &["PEN", "USD"],
        };
        assert_eq!(
            currency.to_string(),
            "currency `EUR` is not supported by Acme (PEN, USD only)"
        );
        let config = ProviderError::from(SettingsError::Missing {
            provider: "acme",
            key: "api_key".into(),
        });
        assert_eq!(
            config.to_string(),
            "acme is not configured: config key `api_key` is not set"
        );
        let not_found = ProviderError::NotFound {
            field: "refundId",
            id: "r-1".into(),
        };
        assert_eq!(not_found.to_string(), "no refund with refundId `r-1`");
        let clock = ProviderError::clock("dateRequest")(TimeError::OutOfRange { ms: i64::MAX });
        assert_eq!(
            clock.to_string(),
            format!(
                "host clock unusable for dateRequest: timestamp {} ms is out of range",
                i64::MAX
            )
        );
    }

    #[test]
    fn an_unreadable_answer_is_unknown_unless_it_was_an_authorization() {
        let bad = |effect| ProviderError::BadAnswer {
            provider: "Acme",
            status: 201,
            reason: "not json".into(),
            effect,
        };
        assert_eq!(
            RefundError::from(bad(Effect::Write)),
            RefundError::UnknownOutcome("unexpected answer from Acme (HTTP 201): not json".into())
        );
        assert!(matches!(
            RefundError::from(bad(Effect::Read)),
            RefundError::UnknownOutcome(_)
        ));
        assert!(matches!(
            RefundError::from(bad(Effect::Authorize)),
            RefundError::Retryable(Retryable {
                http_status: None,
                ..
            })
        ));
    }

    #[test]
    fn error_answers_and_http_failures_follow_the_contract_rules() {
        let answer = ProviderError::ErrorAnswer {
            kind: None,
            status: 429,
            code: Some("rate_limited".into()),
            message: "slow down".into(),
            retry_after_ms: Some(7_000),
        };
        assert_eq!(
            RefundError::from(answer),
            RefundError::Retryable(Retryable {
                provider_code: Some("rate_limited".into()),
                message: "slow down".into(),
                http_status: Some(429),
                retry_after_ms: Some(7_000),
            })
        );
        let http = ProviderError::Http {
            source: HttpError::Timeout,
            effect: Effect::Write,
        };
        assert!(matches!(
            RefundError::from(http),
            RefundError::UnknownOutcome(m) if m.starts_with("http: ")
        ));
    }
}
