//! How a case fails: [`KitError`], the `ensure!` macro, and the shapes of answer the cases
//! expect.

use refundry_runtime::{Refund, RefundError, Refusal, RefusalKind, Retryable};
use refundry_service::OperationError;

use crate::fixture::FixtureError;

/// Why a case failed.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// The fixture could not do what the case asked.
    #[error("fixture: {0}")]
    Fixture(#[from] FixtureError),
    /// The host could not start, or failed where a case needs it to work.
    #[error("host: {0}")]
    Host(String),
    /// What the case checks does not hold.
    #[error("{0}")]
    Check(String),
}

/// Fails the case with a [`KitError::Check`] built like `format!` unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err($crate::check::KitError::Check(format!($($message)+)));
        }
    };
}
pub(crate) use ensure;

/// A host failure, for `map_err`.
pub fn host(error: impl std::fmt::Display) -> KitError {
    KitError::Host(error.to_string())
}

/// The refund, or a failure saying what came instead.
pub fn refund(what: &str, result: Result<Refund, OperationError>) -> Result<Refund, KitError> {
    result.map_err(|e| KitError::Check(format!("{what}: expected a refund, got {e:?}")))
}

/// The final refusal of `kind`, or a failure saying what came instead.
pub fn refusal(
    what: &str,
    result: Result<Refund, OperationError>,
    kind: RefusalKind,
) -> Result<Refusal, KitError> {
    match result {
        Err(OperationError::Refund(RefundError::Refused(refusal))) if refusal.kind == kind => {
            Ok(refusal)
        }
        other => Err(KitError::Check(format!(
            "{what}: expected a refusal of kind {kind:?}, got {other:?}"
        ))),
    }
}

/// The retryable failure, or a failure saying what came instead.
pub fn retryable(
    what: &str,
    result: Result<Refund, OperationError>,
) -> Result<Retryable, KitError> {
    match result {
        Err(OperationError::Refund(RefundError::Retryable(retryable))) => Ok(retryable),
        other => Err(KitError::Check(format!(
            "{what}: expected a retryable failure, got {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(kind: RefusalKind) -> Result<Refund, OperationError> {
        Err(OperationError::Refund(RefundError::Refused(Refusal {
            kind,
            provider_code: Some("amount_exceeded".into()),
            message: "too much".into(),
            http_status: Some(422),
        })))
    }

    #[test]
    fn a_refusal_of_the_expected_kind_is_taken_and_any_other_answer_is_a_failure() {
        let taken = refusal(
            "over",
            refused(RefusalKind::AmountExceeded),
            RefusalKind::AmountExceeded,
        );
        assert_eq!(
            taken.unwrap().provider_code.as_deref(),
            Some("amount_exceeded")
        );
        let other = refusal(
            "over",
            refused(RefusalKind::Other),
            RefusalKind::AmountExceeded,
        );
        let message = other.unwrap_err().to_string();
        assert!(
            message.starts_with("over: expected a refusal of kind RefusalKind::AmountExceeded"),
            "{message}"
        );
        let retry = retryable("over", refused(RefusalKind::Other));
        assert!(matches!(retry, Err(KitError::Check(_))));
    }

    #[test]
    fn ensure_fails_with_the_formatted_message() {
        fn check(n: usize) -> Result<(), KitError> {
            ensure!(n == 1, "{n} refunds at the provider, expected 1");
            Ok(())
        }
        assert!(check(1).is_ok());
        assert_eq!(
            check(2).unwrap_err().to_string(),
            "2 refunds at the provider, expected 1"
        );
    }
}
