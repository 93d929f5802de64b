//! A cache in host storage for providers that authenticate with short-lived tokens, so that an
//! operation authorizes only when no usable token is cached. Host storage is shared by every host
//! of a deployment: one authorization serves them all until the token is due for refresh.
//!
//! The rules:
//! - A token is bound to a digest of the credentials it was issued for (the scope): a token
//!   cached under other credentials (another account, another `base_url`) is never sent.
//! - It is dropped before it expires by a margin of a tenth of its lifetime, at most 60 s: room
//!   for clock skew and latency, while a sandbox token of a few seconds is still reused.
//! - Storage is a cache, never a dependency: a read that fails (logged at warn) or finds
//!   something unreadable only costs an authorization, and a write that fails is logged at warn
//!   and the token still used for this operation.
//! - Log lines name the failure, never the token.

use serde::{Deserialize, Serialize};

use crate::settings::Secret;
use crate::{Host, Level, crypto};

/// The most a token is dropped before its expiry (clock skew, request latency)...
const MAX_REFRESH_MARGIN_MS: i64 = 60_000;
/// ...and at most this fraction of its issued lifetime.
const REFRESH_MARGIN_DIVISOR: i64 = 10;

/// The token as stored (Refundry's own format, not a provider's). Its field names and JSON form
/// are what earlier plugin versions stored: a new version reads their tokens and they its.
#[derive(Serialize, Deserialize)]
struct CachedToken {
    /// The token itself.
    token: String,
    /// Host time (UTC ms) from which the token is no longer used: expiry minus the margin.
    refresh_at_ms: i64,
    /// Lowercase hex SHA-256 of the credentials the token belongs to.
    scope: String,
}

/// When a token issued at `issued_ms` (UTC ms) that expires at `expires_ms` stops being used:
/// its expiry minus a tenth of its lifetime, at most 60 s before.
pub fn refresh_at_ms(issued_ms: i64, expires_ms: i64) -> i64 {
    let lifetime_ms = expires_ms.saturating_sub(issued_ms).max(0);
    expires_ms.saturating_sub(MAX_REFRESH_MARGIN_MS.min(lifetime_ms / REFRESH_MARGIN_DIVISOR))
}

/// One provider's cached token: where it is stored and which credentials it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCache {
    provider: &'static str,
    key: &'static str,
    scope: String,
}

impl TokenCache {
    /// The cache of `provider` (its id, for log lines) under storage `key`, for tokens issued to
    /// `credentials`: the values that decide whose token it is (`base_url`, account id, access
    /// key), in a fixed order. Only their digest is stored; still, pass no secret that the
    /// others do not already determine.
    pub fn new(provider: &'static str, key: &'static str, credentials: &[&str]) -> Self {
        Self {
            provider,
            key,
            scope: crypto::sha256_hex(credentials.join("\n").as_bytes()),
        }
    }

    /// The cached token, when there is one for these credentials that is not yet due for
    /// refresh at the host's time.
    pub fn cached(&self, host: &(impl Host + ?Sized)) -> Option<Secret> {
        let bytes = match host.storage_get(self.key) {
            Ok(bytes) => bytes?,
            Err(e) => {
                self.warn(host, "token cache unreadable", &format!("{e:?}"));
                return None;
            }
        };
        let cached: CachedToken = serde_json::from_slice(&bytes).ok()?;
        (cached.scope == self.scope && host.now_ms() < cached.refresh_at_ms)
            .then(|| Secret::new(cached.token))
    }

    /// Caches `token`, issued at `issued_ms` and expiring at `expires_ms` (UTC ms, as the
    /// provider says; a provider that does not say when it issued a token: the host's time of
    /// asking), and gives it back for the call that asked for it.
    pub fn store(
        &self,
        host: &(impl Host + ?Sized),
        token: String,
        issued_ms: i64,
        expires_ms: i64,
    ) -> Secret {
        let cached = CachedToken {
            token,
            refresh_at_ms: refresh_at_ms(issued_ms, expires_ms),
            scope: self.scope.clone(),
        };
        // Cannot fail (strings and an integer); an empty value would only read as "no token".
        let value = serde_json::to_vec(&cached).unwrap_or_default();
        if let Err(e) = host.storage_set(self.key, &value) {
            self.warn(host, "token not cached", &format!("{e:?}"));
        }
        Secret::new(cached.token)
    }

    /// Forgets the cached token (the provider rejected it), so that a failed new authorization
    /// does not leave it to be tried again. A store that fails to forget is not worth a log
    /// line: the provider will reject the token again.
    pub fn forget(&self, host: &(impl Host + ?Sized)) {
        let _ = host.storage_delete(self.key);
    }

    fn warn(&self, host: &(impl Host + ?Sized), what: &str, error: &str) {
        let message = format!("{}: {what}", self.provider);
        host.log(Level::Warn, &message, &[("error", error)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    const NOW: i64 = 1_795_601_730_000;
    const HOUR: i64 = 3_600_000;

    fn cache() -> TokenCache {
        TokenCache::new("acme", "auth-token", &["http://p", "1024", "AK1"])
    }

    #[test]
    fn the_margin_is_a_tenth_of_the_lifetime_and_at_most_a_minute() {
        assert_eq!(refresh_at_ms(NOW, NOW + 2 * HOUR), NOW + 2 * HOUR - 60_000);
        assert_eq!(refresh_at_ms(NOW, NOW + 10_000), NOW + 9_000);
        assert_eq!(refresh_at_ms(NOW, NOW + 600_000), NOW + 540_000);
        // Issued "after" it expires (clocks apart): no margin, and no overflow at the ends.
        assert_eq!(refresh_at_ms(NOW, NOW - 5), NOW - 5);
        assert_eq!(refresh_at_ms(i64::MIN, i64::MAX), i64::MAX - 60_000);
    }

    #[test]
    fn a_stored_token_is_used_until_it_is_due_for_refresh() {
        let host = FakeHost::new().with_now_ms(NOW);
        let cache = cache();
        assert!(cache.cached(&host).is_none());
        let token = cache.store(&host, "tok-1".into(), NOW, NOW + 2 * HOUR);
        assert_eq!(token.expose(), "tok-1");
        let stored: serde_json::Value =
            serde_json::from_slice(&host.stored("auth-token").unwrap()).unwrap();
        assert_eq!(stored["token"], "tok-1");
        assert_eq!(stored["refresh_at_ms"], NOW + 2 * HOUR - 60_000);
        host.set_now_ms(NOW + 2 * HOUR - 60_001);
        assert_eq!(cache.cached(&host).unwrap().expose(), "tok-1");
        host.set_now_ms(NOW + 2 * HOUR - 60_000);
        assert!(cache.cached(&host).is_none());
        assert!(host.logs().is_empty());
    }

    #[test]
    fn the_scope_is_the_digest_of_the_credentials() {
        // python3 -c 'import hashlib; print(hashlib.sha256(b"http://p\n1024\nAK1").hexdigest())'
        let host = FakeHost::new().with_now_ms(NOW);
        cache().store(&host, "tok-1".into(), NOW, NOW + HOUR);
        let stored: serde_json::Value =
            serde_json::from_slice(&host.stored("auth-token").unwrap()).unwrap();
        assert_eq!(
            stored["scope"],
            "9031d0c2f7fc79a62369c7a6704e2c8a6f03290ba66662ef30cd8f236db0f808"
        );
    }

    #[test]
    fn a_token_of_other_credentials_or_unreadable_is_not_used() {
        let host = FakeHost::new().with_now_ms(NOW);
        cache().store(&host, "tok-1".into(), NOW, NOW + HOUR);
        let other = TokenCache::new("acme", "auth-token", &["http://p", "1024", "AK2"]);
        assert!(other.cached(&host).is_none());
        // The separator keeps the values apart: ("http://p1", "024") is not ("http://p", "1024").
        let shifted = TokenCache::new("acme", "auth-token", &["http://p1", "024", "AK1"]);
        assert!(shifted.cached(&host).is_none());
        host.storage_set("auth-token", b"not json").unwrap();
        assert!(cache().cached(&host).is_none());
        assert!(host.logs().is_empty());
    }

    #[test]
    fn forget_removes_the_token() {
        let host = FakeHost::new().with_now_ms(NOW);
        cache().store(&host, "tok-1".into(), NOW, NOW + HOUR);
        cache().forget(&host);
        assert_eq!(host.stored("auth-token"), None);
        assert!(cache().cached(&host).is_none());
    }

    #[test]
    fn a_failing_store_costs_authorizations_and_is_logged_without_the_token() {
        let host = FakeHost::new().with_now_ms(NOW).with_storage_down();
        assert!(cache().cached(&host).is_none());
        let token = cache().store(&host, "tok-1".into(), NOW, NOW + HOUR);
        assert_eq!(token.expose(), "tok-1");
        cache().forget(&host);
        let logs = host.logs();
        let lines: Vec<(Level, &str)> =
            logs.iter().map(|l| (l.level, l.message.as_str())).collect();
        assert_eq!(
            lines,
            [
                (Level::Warn, "acme: token cache unreadable"),
                (Level::Warn, "acme: token not cached"),
            ]
        );
        assert_eq!(
            logs[0].fields,
            [(
                "error".to_owned(),
                "StorageError::Unavailable(\"FakeHost storage is down\")".to_owned()
            )]
        );
        assert!(logs.iter().all(|l| !format!("{l:?}").contains("tok-1")));
    }
}
