//! Bearer-token authentication with scopes.
//!
//! Tokens come from `[server.tokens]`. Only their SHA-256 digests are kept here, and a presented
//! token is compared with every configured digest in constant time: no early exit on the first
//! differing byte, and no dependence on the token's length (the digests all have 32 bytes).
//! A token is never logged; the token's configured name is (as `caller` on the request span).

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use refundry_service::config::{ApiToken, Scope};

/// The configured tokens, as digests.
pub struct Tokens {
    tokens: Vec<Known>,
}

struct Known {
    name: String,
    digest: [u8; 32],
    scopes: Vec<Scope>,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Tokens {
    /// The tokens of `[server.tokens]`.
    pub fn new(tokens: &[ApiToken]) -> Self {
        Self {
            tokens: tokens
                .iter()
                .map(|t| Known {
                    name: t.name.clone(),
                    digest: digest(t.token.expose().as_bytes()),
                    scopes: t.scopes.clone(),
                })
                .collect(),
        }
    }

    /// Checks an `Authorization` header value for `scope`: the caller's token name, 401 when the
    /// header is missing or the token unknown, 403 when the token lacks the scope.
    pub fn check(&self, authorization: Option<&[u8]>, scope: Scope) -> Result<&str, ApiError> {
        let Some(value) = authorization else {
            return Err(ApiError::unauthorized(
                "an Authorization: Bearer <token> header is required",
            ));
        };
        // RFC 7235: the scheme is case-insensitive.
        let token = match value.split_at_checked(7) {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case(b"bearer ") => token.trim_ascii(),
            _ => {
                return Err(ApiError::unauthorized(
                    "the Authorization header must be `Bearer <token>`",
                ));
            }
        };
        let presented = digest(token);
        let mut found = None;
        // Every configured token is compared, whichever matches.
        for known in &self.tokens {
            if bool::from(known.digest.ct_eq(&presented)) {
                found = Some(known);
            }
        }
        let Some(known) = found else {
            return Err(ApiError::unauthorized("unknown bearer token"));
        };
        if !known.scopes.contains(&scope) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token {:?} lacks the scope {:?}",
                    known.name,
                    scope_word(scope)
                ),
            ));
        }
        Ok(&known.name)
    }
}

/// The scope's word in `refundry.toml`.
pub fn scope_word(scope: Scope) -> &'static str {
    match scope {
        Scope::Refunds => "refunds",
        Scope::Admin => "admin",
        Scope::Metrics => "metrics",
    }
}

/// A scope an endpoint requires, as a type (an extractor's parameter).
pub trait RequiredScope: Send + Sync + 'static {
    /// The scope.
    const SCOPE: Scope;
}

/// Scope `refunds`: create, read and export refunds.
pub struct RefundsScope;

impl RequiredScope for RefundsScope {
    const SCOPE: Scope = Scope::Refunds;
}

/// Scope `admin`: the provider HTTP exchange log.
pub struct AdminScope;

impl RequiredScope for AdminScope {
    const SCOPE: Scope = Scope::Admin;
}

/// Extractor: the request carries a token with scope `S`. Put it first among a handler's
/// arguments, so that a request without a valid token is refused before its body is read.
pub struct Authorized<S: RequiredScope>(PhantomData<S>);

impl<St, S> FromRequestParts<St> for Authorized<S>
where
    St: super::HasTokens + Send + Sync,
    S: RequiredScope,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let name = state.tokens().check(header, S::SCOPE)?;
        tracing::Span::current().record("caller", name);
        Ok(Authorized(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use refundry_runtime::secret::Secret;

    fn tokens() -> Tokens {
        Tokens::new(&[
            ApiToken {
                name: "gateway".into(),
                token: Secret::new("gateway-token-0123456789"),
                scopes: vec![Scope::Refunds],
            },
            ApiToken {
                name: "ops".into(),
                token: Secret::new("ops-token-0123456789abc"),
                scopes: vec![Scope::Refunds, Scope::Admin],
            },
        ])
    }

    #[test]
    fn valid_tokens_and_scopes() {
        let t = tokens();
        let gw = Some(&b"Bearer gateway-token-0123456789"[..]);
        assert_eq!(t.check(gw, Scope::Refunds).unwrap(), "gateway");
        let ops = Some(&b"bearer   ops-token-0123456789abc "[..]);
        assert_eq!(t.check(ops, Scope::Admin).unwrap(), "ops");
    }

    #[test]
    fn missing_or_wrong_token_is_401_wrong_scope_403() {
        let t = tokens();
        for header in [
            None,
            Some(&b""[..]),
            Some(&b"Bearer"[..]),
            Some(&b"Bearer "[..]),
            Some(&b"Basic Z2F0ZXdheS10b2tlbi0wMTIzNDU2Nzg5"[..]),
            Some(&b"Bearer gateway-token-012345678"[..]),
            Some(&b"Bearer gateway-token-0123456789x"[..]),
            Some(&b"gateway-token-0123456789"[..]),
        ] {
            let e = t.check(header, Scope::Refunds).unwrap_err();
            assert_eq!(e.status, StatusCode::UNAUTHORIZED, "{header:?}");
            assert_eq!(e.detail.code, "unauthorized");
        }
        let e = t
            .check(Some(b"Bearer gateway-token-0123456789"), Scope::Admin)
            .unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.detail.code, "forbidden");
        assert!(!e.detail.message.contains("gateway-token"));
    }
}
