//! One call to the provider through the host: the request sent, and the reply kept with what a
//! plugin needs to report on it (the provider's name for messages, what the call does for what a
//! failure means). Signing and the provider's error body stay in the plugin.

use std::fmt::Display;

use serde::de::DeserializeOwned;

use crate::errors::{Effect, ProviderError};
use crate::http::{self, Request, Response};
use crate::{Host, RefusalKind};

/// Sends `request` to `provider` (its name, for messages) through `host`; a failed send is
/// [`ProviderError::Http`], which `effect` makes retryable, an unknown outcome or a
/// configuration refusal.
pub fn send(
    host: &(impl Host + ?Sized),
    provider: &'static str,
    effect: Effect,
    request: Request,
) -> Result<ProviderReply, ProviderError> {
    let response = host
        .http_send(request)
        .map_err(|source| ProviderError::Http { source, effect })?;
    Ok(ProviderReply::new(provider, effect, response))
}

/// The provider's reply to one call, read with errors that name the provider and follow from
/// what the call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderReply {
    provider: &'static str,
    effect: Effect,
    response: Response,
}

impl ProviderReply {
    /// `response`, as `provider` (its name, for messages) gave it to a call that does `effect`.
    pub fn new(provider: &'static str, effect: Effect, response: Response) -> Self {
        Self {
            provider,
            effect,
            response,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.response.status
    }

    /// The response as the host received it.
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// The body parsed as JSON into `T`; a body that does not parse is
    /// [`ProviderError::BadAnswer`] quoting the parser.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.response.body).map_err(|e| self.bad(e))
    }

    /// [`ProviderError::BadAnswer`]: this reply is not what the spec says it is, for `reason`.
    pub fn bad(&self, reason: impl Display) -> ProviderError {
        ProviderError::BadAnswer {
            provider: self.provider,
            status: self.response.status,
            reason: reason.to_string(),
            effect: self.effect,
        }
    }

    /// This reply when its status is one of `success`, else the error `error_of` makes of it
    /// (the plugin's reading of its provider's error answers, ending in
    /// [`ProviderReply::error_answer`]).
    pub fn success(
        self,
        success: &[u16],
        error_of: impl FnOnce(&Self) -> ProviderError,
    ) -> Result<Self, ProviderError> {
        if success.contains(&self.response.status) {
            Ok(self)
        } else {
            Err(error_of(&self))
        }
    }

    /// The error this reply is, for a status the flow does not take as success: the provider's
    /// `code` and `message` (what its error body says; no code when the body is not one) with the
    /// refusal `kind` its error table gives (`None`: retryable) and its `Retry-After`. A status
    /// below 400 is no error answer but one outside the spec: [`ProviderError::BadAnswer`].
    pub fn error_answer(
        &self,
        kind: Option<RefusalKind>,
        code: Option<String>,
        message: String,
    ) -> ProviderError {
        if self.response.status < 400 {
            return self.bad("unexpected HTTP status");
        }
        ProviderError::ErrorAnswer {
            kind,
            status: self.response.status,
            code,
            message,
            retry_after_ms: http::retry_after_ms(&self.response.headers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HttpError, Method};
    use crate::testing::{FakeHost, response};

    fn get() -> Request {
        Request {
            method: Method::Get,
            url: "http://p/v1/refunds/r".into(),
            headers: vec![],
            body: None,
        }
    }

    #[test]
    fn a_failed_send_keeps_what_the_call_does() {
        let host = FakeHost::new().with_responder(|_| Err(HttpError::Timeout));
        match send(&host, "Acme", Effect::Write, get()) {
            Err(ProviderError::Http {
                source: HttpError::Timeout,
                effect: Effect::Write,
            }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(host.requests(), vec![get()]);
    }

    #[test]
    fn a_body_that_does_not_parse_is_a_bad_answer() {
        let host = FakeHost::new().with_responder(|_| Ok(response(200, &[], "[1, 2]")));
        let reply = send(&host, "Acme", Effect::Read, get()).unwrap();
        assert_eq!(reply.status(), 200);
        assert_eq!(reply.response().body, b"[1, 2]");
        assert_eq!(reply.json::<Vec<u8>>().unwrap(), [1, 2]);
        match reply.json::<String>() {
            Err(ProviderError::BadAnswer {
                provider: "Acme",
                status: 200,
                effect: Effect::Read,
                reason,
            }) => assert!(reason.contains("expected a string"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_error_answer_carries_kind_code_status_and_retry_after() {
        let reply = ProviderReply::new(
            "Acme",
            Effect::Write,
            response(429, &[("Retry-After", "7")], "{}"),
        );
        match reply.error_answer(None, Some("rate_limited".into()), "slow".into()) {
            ProviderError::ErrorAnswer {
                kind: None,
                status: 429,
                code: Some(code),
                message,
                retry_after_ms: Some(7_000),
            } => assert_eq!((code.as_str(), message.as_str()), ("rate_limited", "slow")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_the_success_statuses_pass() {
        let reply = |status| ProviderReply::new("Acme", Effect::Read, response(status, &[], "{}"));
        let error_of = |r: &ProviderReply| r.error_answer(None, None, "down".into());
        assert_eq!(
            reply(201).success(&[200, 201], error_of).unwrap().status(),
            201
        );
        match reply(503).success(&[200, 201], error_of) {
            Err(ProviderError::ErrorAnswer { status: 503, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unexpected_success_status_is_a_bad_answer() {
        let reply = ProviderReply::new("Acme", Effect::Write, response(202, &[], "{}"));
        let err = reply.error_answer(Some(RefusalKind::Other), None, "m".into());
        assert_eq!(
            err.to_string(),
            "unexpected answer from Acme (HTTP 202): unexpected HTTP status"
        );
    }
}
