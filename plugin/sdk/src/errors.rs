//! Building `refund-error`s the same way in every plugin: the contract's rules for what may be
//! retried live here once, not in each provider.

use crate::http::HttpError;
use crate::{RefundError, Refusal, RefusalKind, Retryable};

/// Whether a request can change anything at the provider, which decides what a lost answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Creates or changes a refund: a lost answer leaves the outcome unknown.
    Write,
    /// Reads, or obtains credentials: repeating it changes no refund.
    Read,
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
            Effect::Read,
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
}
