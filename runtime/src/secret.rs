//! Secrets: values that must never reach a log line.

use std::fmt;
use std::sync::Arc;

/// A secret value from the configuration. It has no `Display`, and its `Debug` prints
/// `[redacted]`, so formatting it into a log line cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself, for the one place that needs it (handing it to the plugin).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What replaces a secret in redacted text.
pub const REDACTED: &str = "[redacted]";

/// Removes every configured secret value from text before it is logged.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<Vec<String>>,
}

impl Redactor {
    /// A redactor for these secrets. Empty values are ignored (they would match everywhere).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut values: Vec<String> = secrets
            .into_iter()
            .map(|s| s.expose().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        // Longest first, so a secret that contains another is removed whole.
        values.sort_by_key(|s| std::cmp::Reverse(s.len()));
        values.dedup();
        Self {
            secrets: Arc::new(values),
        }
    }

    /// `text` with every secret value replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in self.secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }
}

/// The shortest run-time credential looked for: shorter values (a `key: "1"`) are no credential,
/// and replacing them everywhere would garble the text they are removed from.
pub const MIN_TOKEN: usize = 16;

/// Whether a field or header name says its value is a credential: its last word is `token`,
/// `secret`, `password`, `key`, `authorization` or `credential(s)` (`access_token`, `authToken`,
/// `X-Api-Key`), not merely contains one (`tokenExpires` is a date the plugin reads).
pub fn names_a_credential(name: &str) -> bool {
    let mut last = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c == '_' || c == '-' || c == '.' || (c.is_uppercase() && prev_lower) {
            last.clear();
        }
        if c.is_alphanumeric() {
            last.push(c.to_ascii_lowercase());
        }
        prev_lower = c.is_lowercase();
    }
    matches!(
        last.as_str(),
        "token" | "secret" | "password" | "key" | "authorization" | "credential" | "credentials"
    )
}

/// Credentials a provider issues at run time (an auth token: no configured secret, but a secret
/// all the same) found in a JSON body: the string values of credential-named fields, at least
/// [`MIN_TOKEN`] long. Nothing for a body that is not JSON.
pub fn credentials_in(body: &[u8]) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match v {
                        serde_json::Value::String(s)
                            if names_a_credential(k) && s.len() >= MIN_TOKEN =>
                        {
                            out.push(s.clone());
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        walk(&v, &mut out);
    }
    out
}

/// The values of credential-named headers, at least [`MIN_TOKEN`] long.
pub fn credential_headers(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(name, value)| names_a_credential(name) && value.len() >= MIN_TOKEN)
        .map(|(_, value)| value.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_named_by_its_last_word() {
        for name in [
            "token",
            "access_token",
            "authToken",
            "X-Api-Key",
            "client.secret",
            "Authorization",
            "PASSWORD",
            "db_credentials",
            "api-Credential",
        ] {
            assert!(names_a_credential(name), "{name}");
        }
        for name in [
            "tokenExpires",
            "keyId",
            "monkey",
            "secretary",
            "token_type",
            "",
            "_",
            "Ключ",
            "x-tokén",
        ] {
            assert!(!names_a_credential(name), "{name}");
        }
    }

    #[test]
    fn credentials_are_found_by_field_name_wherever_they_are() {
        let token = "tok_0123456789abcdef";
        for body in [
            format!(r#"{{"access_token": "{token}"}}"#),
            format!(r#"{{"data": [{{"authToken": "{token}"}}]}}"#),
            format!(r#"{{"access_t\u006fken": "{token}"}}"#),
            format!(r#"{{"API_KEY": "{token}"}}"#),
        ] {
            assert_eq!(credentials_in(body.as_bytes()), [token], "{body}");
        }
        for body in [
            r#"{"refund_id": "rfnd_abc123456789abcdef", "status": "pending"}"#,
            r#"{"message": "the token expired, ask for another one"}"#,
            r#"{"token": "short"}"#,
            "not json",
        ] {
            assert!(credentials_in(body.as_bytes()).is_empty(), "{body}");
        }
    }

    #[test]
    fn debug_does_not_print_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
    }

    #[test]
    fn redacts_every_occurrence_longest_first() {
        let a = Secret::new("abc");
        let b = Secret::new("abcdef");
        let r = Redactor::new([&a, &b]);
        assert_eq!(r.redact("x abcdef y abc z"), "x [redacted] y [redacted] z");
    }

    #[test]
    fn empty_secret_is_ignored() {
        let r = Redactor::new([&Secret::new("")]);
        assert_eq!(r.redact("text"), "text");
    }
}
