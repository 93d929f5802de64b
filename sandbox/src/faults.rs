//! Fault injection queue, shared by every provider simulator.
//!
//! Two kinds of faults are kept apart:
//! - request faults ([`RequestFault`]) apply to the next API requests that passed authentication
//!   and the IP allowlist (never to `/_sandbox/` control requests). They are queued in order: a
//!   `status` fault for 2 requests followed by a `delay` fault for 1 request answers the next two
//!   requests with the status and delays the third. The request faults are:
//!   - `status` (by default 429, 500, 502 or 503): answered with that status and the provider's
//!     own error code for it, without processing the request;
//!   - `error` (any status 400..=599 with any code of the provider's shape, by default `[a-z_]+`,
//!     known to the provider or not): answered with exactly that status and code in the
//!     provider's error body, without processing the request, so that every row of a provider's
//!     error table (and codes a client has never seen) can be produced on demand;
//!   - `delay`: processed normally, then the answer is held back;
//!   - `status_after_processing`: processed normally (the refund exists, a replay is a replay),
//!     then answered with a `status` fault's status and error body instead of the real answer:
//!     a provider fault after acting, which a client must not take for a refund that never
//!     happened.
//! - webhook faults are counters: the next N events are dropped or duplicated, the next N delivery
//!   attempts fail without being sent.
//!
//! What a `status` or `error` fault looks like on the wire (error code, body) is the provider
//! module's business, and so is which statuses a `status` fault may ask for and what an error code
//! looks like: a simulator whose provider has no 429, or numeric codes, says so with a
//! [`FaultPolicy`] ([`Faults::with_policy`]); [`Faults::new`] uses [`FaultPolicy::DEFAULT`]. Both send `Retry-After` when `retry_after` is given, and always for 429
//! (default [`DEFAULT_RETRY_AFTER_SECS`]).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The statuses a `status` fault may inject under [`FaultPolicy::DEFAULT`].
pub const INJECTABLE_STATUSES: [u16; 4] = [429, 500, 502, 503];

/// The statuses an `error` fault may inject: any client or server error.
pub const ERROR_FAULT_STATUSES: std::ops::RangeInclusive<u16> = 400..=599;

/// The longest delay a `delay` fault may ask for: long enough for any client timeout, short enough
/// that a forgotten fault does not hang a test run.
pub const MAX_DELAY: Duration = Duration::from_secs(120);

/// Seconds given in `Retry-After` for a 429 `status` or `error` fault that does not say.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

/// A fault as asked for on `POST /_sandbox/faults` (tagged by `kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultSpec {
    /// The next `count` API requests are answered with `status` and the provider's error body.
    Status {
        /// One of the simulator's [`FaultPolicy::statuses`] (by default [`INJECTABLE_STATUSES`]).
        status: u16,
        /// How many requests; at least 1.
        #[serde(default = "one")]
        count: u32,
        /// Seconds for the `Retry-After` header: default 1 for 429; for 5xx the header is only
        /// sent when this is given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// The next `count` API requests are answered with `status` and an error body carrying `code`,
    /// whether or not the provider knows that code.
    Error {
        /// An HTTP status in [`ERROR_FAULT_STATUSES`].
        status: u16,
        /// The error code to send, of the simulator's [`FaultPolicy::codes`] shape (by default
        /// non-empty, lowercase ASCII letters and `_` only).
        code: String,
        /// The error body's message (default: the simulator's own words for an injected error):
        /// a provider that echoes what it was sent (an API key, say) can be played.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// How many requests; at least 1.
        #[serde(default = "one")]
        count: u32,
        /// Seconds for the `Retry-After` header: default 1 for 429; otherwise the header is only
        /// sent when this is given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// The next `count` API requests are processed normally, then answered with `status` and
    /// the provider's error body for it, as a `status` fault would be (the effect exists).
    StatusAfterProcessing {
        /// One of the simulator's [`FaultPolicy::statuses`].
        status: u16,
        /// How many requests; at least 1.
        #[serde(default = "one")]
        count: u32,
        /// Seconds for the `Retry-After` header, as for a `status` fault.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// The next `count` API requests are processed normally, then the answer is held for
    /// `delay_ms` milliseconds (a client with a shorter timeout sees a timeout while the effect
    /// of its request exists).
    Delay {
        /// Milliseconds to hold the answer, at most [`MAX_DELAY`].
        delay_ms: u64,
        /// How many requests; at least 1.
        #[serde(default = "one")]
        count: u32,
    },
    /// The next `count` webhook events are never delivered (not even attempted).
    DropWebhooks {
        /// How many events; at least 1.
        #[serde(default = "one")]
        count: u32,
    },
    /// The next `count` webhook events are delivered twice (same event id, same body).
    DuplicateWebhooks {
        /// How many events; at least 1.
        #[serde(default = "one")]
        count: u32,
    },
    /// The next `count` delivery attempts fail without being sent, so retries happen.
    FailWebhooks {
        /// How many attempts; at least 1.
        #[serde(default = "one")]
        count: u32,
    },
}

fn one() -> u32 {
    1
}

/// The shape an `error` fault's code must have: the shape of the provider's own codes, so that an
/// injected error is one the provider could have sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCodeFormat {
    /// Non-empty, lowercase ASCII letters and `_` only (`invalid_request`).
    SnakeCase,
    /// Exactly this many ASCII digits (`"136"` for 3).
    Digits(usize),
}

impl ErrorCodeFormat {
    /// Whether `code` has this shape.
    pub fn accepts(self, code: &str) -> bool {
        match self {
            ErrorCodeFormat::SnakeCase => {
                !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            }
            ErrorCodeFormat::Digits(len) => {
                code.len() == len && code.bytes().all(|b| b.is_ascii_digit())
            }
        }
    }
}

impl std::fmt::Display for ErrorCodeFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorCodeFormat::SnakeCase => f.write_str("non-empty and match [a-z_]+"),
            ErrorCodeFormat::Digits(len) => write!(f, "exactly {len} ASCII digits"),
        }
    }
}

/// What a simulator's provider can express, and so which `status` and `error` faults it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPolicy {
    /// The statuses a `status` fault may inject (each must have an error code in the provider's
    /// contract).
    pub statuses: &'static [u16],
    /// The shape of an `error` fault's code.
    pub codes: ErrorCodeFormat,
}

impl FaultPolicy {
    /// [`INJECTABLE_STATUSES`] and snake-case codes.
    pub const DEFAULT: FaultPolicy = FaultPolicy {
        statuses: &INJECTABLE_STATUSES,
        codes: ErrorCodeFormat::SnakeCase,
    };
}

impl Default for FaultPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a [`FaultSpec`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    /// `count` was 0.
    #[error("count must be at least 1")]
    ZeroCount,
    /// A status fault asked for a status that is not injectable.
    #[error(
        "status {status} cannot be injected by a status fault (allowed: {allowed:?}); an error fault can send any status with an explicit code"
    )]
    Status {
        /// The status asked for.
        status: u16,
        /// The statuses the simulator's policy allows.
        allowed: &'static [u16],
    },
    /// An error fault asked for a status outside [`ERROR_FAULT_STATUSES`].
    #[error("error fault status {status} is not an HTTP error status (allowed: 400..=599)")]
    ErrorStatus {
        /// The status asked for.
        status: u16,
    },
    /// An error fault asked for a code not of the provider's shape.
    #[error("error fault code {code:?} is invalid: it must be {expected}")]
    ErrorCode {
        /// The code asked for.
        code: String,
        /// The shape the simulator's policy asks for.
        expected: ErrorCodeFormat,
    },
    /// A delay fault asked for more than [`MAX_DELAY`].
    #[error("delay_ms {delay_ms} is above the maximum of {max_ms}")]
    DelayTooLong {
        /// The delay asked for, in milliseconds.
        delay_ms: u64,
        /// The maximum, in milliseconds.
        max_ms: u128,
    },
}

impl FaultSpec {
    /// Checks the spec's values under [`FaultPolicy::DEFAULT`].
    pub fn validate(&self) -> Result<(), FaultError> {
        self.validate_for(&FaultPolicy::DEFAULT)
    }

    /// Checks the spec's values under `policy`.
    pub fn validate_for(&self, policy: &FaultPolicy) -> Result<(), FaultError> {
        let count = match self {
            FaultSpec::Status { status, count, .. }
            | FaultSpec::StatusAfterProcessing { status, count, .. } => {
                if !policy.statuses.contains(status) {
                    return Err(FaultError::Status {
                        status: *status,
                        allowed: policy.statuses,
                    });
                }
                count
            }
            FaultSpec::Error {
                status,
                code,
                count,
                ..
            } => {
                if !ERROR_FAULT_STATUSES.contains(status) {
                    return Err(FaultError::ErrorStatus { status: *status });
                }
                if !policy.codes.accepts(code) {
                    return Err(FaultError::ErrorCode {
                        code: code.clone(),
                        expected: policy.codes,
                    });
                }
                count
            }
            FaultSpec::Delay { delay_ms, count } => {
                if u128::from(*delay_ms) > MAX_DELAY.as_millis() {
                    return Err(FaultError::DelayTooLong {
                        delay_ms: *delay_ms,
                        max_ms: MAX_DELAY.as_millis(),
                    });
                }
                count
            }
            FaultSpec::DropWebhooks { count }
            | FaultSpec::DuplicateWebhooks { count }
            | FaultSpec::FailWebhooks { count } => count,
        };
        if *count == 0 {
            return Err(FaultError::ZeroCount);
        }
        Ok(())
    }
}

/// What happens to one API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFault {
    /// Answer with this status and the provider's error body for it, without processing.
    Status {
        /// 429, 500, 502 or 503.
        status: u16,
        /// Seconds for `Retry-After`, when the header is to be sent.
        retry_after: Option<u64>,
    },
    /// Answer with this status and the provider's error body carrying this code, without
    /// processing.
    Error {
        /// An HTTP status in [`ERROR_FAULT_STATUSES`].
        status: u16,
        /// The error code, of the simulator's [`FaultPolicy::codes`] shape.
        code: String,
        /// The error body's message, when the fault gave one.
        message: Option<String>,
        /// Seconds for `Retry-After`, when the header is to be sent.
        retry_after: Option<u64>,
    },
    /// Process normally, then hold the answer this long.
    Delay(Duration),
    /// Process normally, then answer as [`RequestFault::Status`] does.
    StatusAfterProcessing {
        /// A status of the simulator's [`FaultPolicy::statuses`].
        status: u16,
        /// Seconds for `Retry-After`, when the header is to be sent.
        retry_after: Option<u64>,
    },
}

/// The fault queue of one simulator. Cheap to lock; never held across an `.await`.
#[derive(Debug, Default)]
pub struct Faults {
    policy: FaultPolicy,
    state: Mutex<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Request faults in the order they were queued, each with the requests it still applies to.
    requests: VecDeque<(RequestFault, u32)>,
    drop_webhooks: u32,
    duplicate_webhooks: u32,
    fail_webhooks: u32,
}

impl Faults {
    /// An empty queue accepting faults under [`FaultPolicy::DEFAULT`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty queue accepting faults under `policy`.
    pub fn with_policy(policy: FaultPolicy) -> Self {
        Self {
            policy,
            state: Mutex::default(),
        }
    }

    /// The policy faults are validated against.
    pub fn policy(&self) -> &FaultPolicy {
        &self.policy
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        // A panic while holding this lock cannot leave the counters inconsistent, so a poisoned
        // lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Validates (under this queue's policy) and queues a fault.
    pub fn push(&self, spec: &FaultSpec) -> Result<(), FaultError> {
        spec.validate_for(&self.policy)?;
        let mut state = self.lock();
        match *spec {
            FaultSpec::Status {
                status,
                count,
                retry_after,
            }
            | FaultSpec::StatusAfterProcessing {
                status,
                count,
                retry_after,
            } => {
                let retry_after = retry_after_for(status, retry_after);
                let fault = match spec {
                    FaultSpec::StatusAfterProcessing { .. } => {
                        RequestFault::StatusAfterProcessing {
                            status,
                            retry_after,
                        }
                    }
                    _ => RequestFault::Status {
                        status,
                        retry_after,
                    },
                };
                state.requests.push_back((fault, count));
            }
            FaultSpec::Error {
                status,
                ref code,
                ref message,
                count,
                retry_after,
            } => {
                let retry_after = retry_after_for(status, retry_after);
                state.requests.push_back((
                    RequestFault::Error {
                        status,
                        code: code.clone(),
                        message: message.clone(),
                        retry_after,
                    },
                    count,
                ));
            }
            FaultSpec::Delay { delay_ms, count } => {
                let fault = RequestFault::Delay(Duration::from_millis(delay_ms));
                state.requests.push_back((fault, count));
            }
            FaultSpec::DropWebhooks { count } => {
                state.drop_webhooks = state.drop_webhooks.saturating_add(count);
            }
            FaultSpec::DuplicateWebhooks { count } => {
                state.duplicate_webhooks = state.duplicate_webhooks.saturating_add(count);
            }
            FaultSpec::FailWebhooks { count } => {
                state.fail_webhooks = state.fail_webhooks.saturating_add(count);
            }
        }
        Ok(())
    }

    /// Removes every queued fault.
    pub fn clear(&self) {
        *self.lock() = FaultState::default();
    }

    /// The fault for the API request being handled now, if any (and counts it as used).
    pub fn next_request(&self) -> Option<RequestFault> {
        let mut state = self.lock();
        let (fault, remaining) = state.requests.front_mut()?;
        let fault = fault.clone();
        *remaining -= 1;
        if *remaining == 0 {
            state.requests.pop_front();
        }
        Some(fault)
    }

    /// Whether the webhook event being queued now is to be dropped (and counts it as used).
    pub fn take_drop_webhook(&self) -> bool {
        take(&mut self.lock().drop_webhooks)
    }

    /// Whether the webhook event being queued now is to be delivered twice (and counts it).
    pub fn take_duplicate_webhook(&self) -> bool {
        take(&mut self.lock().duplicate_webhooks)
    }

    /// Whether the delivery attempt being made now is to fail unsent (and counts it).
    pub fn take_fail_webhook_attempt(&self) -> bool {
        take(&mut self.lock().fail_webhooks)
    }
}

/// The `Retry-After` seconds of an injected error: always sent for 429 (default 1), otherwise only
/// when asked for.
fn retry_after_for(status: u16, given: Option<u64>) -> Option<u64> {
    match (status, given) {
        (429, None) => Some(DEFAULT_RETRY_AFTER_SECS),
        (_, given) => given,
    }
}

fn take(counter: &mut u32) -> bool {
    if *counter == 0 {
        return false;
    }
    *counter -= 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_faults_apply_in_order() {
        let faults = Faults::new();
        let spec: FaultSpec =
            serde_json::from_str(r#"{"kind": "status", "status": 503, "count": 2}"#).unwrap();
        faults.push(&spec).unwrap();
        faults
            .push(&FaultSpec::Delay {
                delay_ms: 5,
                count: 1,
            })
            .unwrap();
        let unavailable = RequestFault::Status {
            status: 503,
            retry_after: None,
        };
        assert_eq!(faults.next_request(), Some(unavailable.clone()));
        assert_eq!(faults.next_request(), Some(unavailable));
        assert_eq!(
            faults.next_request(),
            Some(RequestFault::Delay(Duration::from_millis(5)))
        );
        assert_eq!(faults.next_request(), None);
    }

    #[test]
    fn rate_limit_defaults_retry_after() {
        let faults = Faults::new();
        let spec: FaultSpec = serde_json::from_str(r#"{"kind": "status", "status": 429}"#).unwrap();
        faults.push(&spec).unwrap();
        assert_eq!(
            faults.next_request(),
            Some(RequestFault::Status {
                status: 429,
                retry_after: Some(1)
            })
        );
    }

    #[test]
    fn a_status_after_processing_is_queued_like_a_status() {
        let faults = Faults::new();
        let spec: FaultSpec = serde_json::from_str(
            r#"{"kind": "status_after_processing", "status": 500, "count": 2}"#,
        )
        .unwrap();
        faults.push(&spec).unwrap();
        let fault = RequestFault::StatusAfterProcessing {
            status: 500,
            retry_after: None,
        };
        assert_eq!(faults.next_request(), Some(fault.clone()));
        assert_eq!(faults.next_request(), Some(fault));
        assert_eq!(faults.next_request(), None);
        let not_injectable = FaultSpec::StatusAfterProcessing {
            status: 404,
            count: 1,
            retry_after: None,
        };
        assert!(matches!(
            faults.push(&not_injectable),
            Err(FaultError::Status { status: 404, .. })
        ));
    }

    #[test]
    fn invalid_specs_are_refused() {
        let faults = Faults::new();
        let bad_status = FaultSpec::Status {
            status: 404,
            count: 1,
            retry_after: None,
        };
        assert_eq!(
            faults.push(&bad_status),
            Err(FaultError::Status {
                status: 404,
                allowed: &INJECTABLE_STATUSES
            })
        );
        assert_eq!(
            faults.push(&FaultSpec::DropWebhooks { count: 0 }),
            Err(FaultError::ZeroCount)
        );
        assert!(serde_json::from_str::<FaultSpec>(r#"{"kind": "explode", "count": 1}"#).is_err());
    }

    #[test]
    fn an_error_fault_may_carry_its_message() {
        let faults = Faults::new();
        let spec: FaultSpec = serde_json::from_str(
            r#"{"kind": "error", "status": 401, "code": "invalid_api_key", "message": "key k1"}"#,
        )
        .unwrap();
        faults.push(&spec).unwrap();
        assert!(matches!(
            faults.next_request(),
            Some(RequestFault::Error { message: Some(m), .. }) if m == "key k1"
        ));
    }

    #[test]
    fn error_faults_carry_any_code() {
        let faults = Faults::new();
        for text in [
            r#"{"kind": "error", "status": 422, "code": "transaction_not_settled", "count": 2}"#,
            r#"{"kind": "error", "status": 429, "code": "rate_limited"}"#,
            r#"{"kind": "error", "status": 418, "code": "teapot", "retry_after": 7}"#,
        ] {
            let spec: FaultSpec = serde_json::from_str(text).unwrap();
            faults.push(&spec).unwrap();
        }
        faults
            .push(&FaultSpec::Status {
                status: 503,
                count: 1,
                retry_after: None,
            })
            .unwrap();
        let error = |status, code: &str, retry_after| {
            Some(RequestFault::Error {
                status,
                code: code.to_owned(),
                message: None,
                retry_after,
            })
        };
        assert_eq!(
            faults.next_request(),
            error(422, "transaction_not_settled", None)
        );
        assert_eq!(
            faults.next_request(),
            error(422, "transaction_not_settled", None)
        );
        assert_eq!(faults.next_request(), error(429, "rate_limited", Some(1)));
        assert_eq!(faults.next_request(), error(418, "teapot", Some(7)));
        assert_eq!(
            faults.next_request(),
            Some(RequestFault::Status {
                status: 503,
                retry_after: None
            })
        );
        assert_eq!(faults.next_request(), None);
    }

    #[test]
    fn invalid_error_faults_are_refused() {
        let faults = Faults::new();
        let error = |status, code: &str, count| FaultSpec::Error {
            status,
            code: code.to_owned(),
            message: None,
            count,
            retry_after: None,
        };
        for status in [200, 302, 399, 600] {
            assert_eq!(
                faults.push(&error(status, "invalid_request", 1)),
                Err(FaultError::ErrorStatus { status })
            );
        }
        for code in ["", "Invalid", "invalid-request", "code1", "é", "a b"] {
            assert_eq!(
                faults.push(&error(400, code, 1)),
                Err(FaultError::ErrorCode {
                    code: code.to_owned(),
                    expected: ErrorCodeFormat::SnakeCase
                })
            );
        }
        assert_eq!(
            faults.push(&error(400, "invalid_request", 0)),
            Err(FaultError::ZeroCount)
        );
        // The code is required.
        assert!(serde_json::from_str::<FaultSpec>(r#"{"kind": "error", "status": 400}"#).is_err());
        assert_eq!(faults.next_request(), None);
    }

    #[test]
    fn a_policy_narrows_statuses_and_shapes_codes() {
        let faults = Faults::with_policy(FaultPolicy {
            statuses: &[500, 503],
            codes: ErrorCodeFormat::Digits(3),
        });
        let status = |status| FaultSpec::Status {
            status,
            count: 1,
            retry_after: None,
        };
        let error = |code: &str| FaultSpec::Error {
            status: 422,
            code: code.to_owned(),
            message: None,
            count: 1,
            retry_after: None,
        };
        for refused in [429, 502] {
            let outcome = faults.push(&status(refused));
            assert_eq!(
                outcome,
                Err(FaultError::Status {
                    status: refused,
                    allowed: &[500, 503]
                })
            );
            assert!(outcome.unwrap_err().to_string().contains("[500, 503]"));
        }
        for code in ["", "13", "1366", "13a", "invalid_request", "１３６"] {
            assert_eq!(
                faults.push(&error(code)),
                Err(FaultError::ErrorCode {
                    code: code.to_owned(),
                    expected: ErrorCodeFormat::Digits(3)
                }),
                "{code:?}"
            );
        }
        faults.push(&status(503)).unwrap();
        faults.push(&error("136")).unwrap();
        assert!(matches!(
            faults.next_request(),
            Some(RequestFault::Status { status: 503, .. })
        ));
        assert!(matches!(
            faults.next_request(),
            Some(RequestFault::Error { status: 422, ref code, .. }) if code == "136"
        ));
        assert_eq!(faults.next_request(), None);
    }

    #[test]
    fn webhook_counters_and_clear() {
        let faults = Faults::new();
        faults.push(&FaultSpec::FailWebhooks { count: 1 }).unwrap();
        faults
            .push(&FaultSpec::DuplicateWebhooks { count: 2 })
            .unwrap();
        assert!(faults.take_fail_webhook_attempt());
        assert!(!faults.take_fail_webhook_attempt());
        assert!(faults.take_duplicate_webhook());
        faults.clear();
        assert!(!faults.take_duplicate_webhook());
        assert!(!faults.take_drop_webhook());
    }
}
