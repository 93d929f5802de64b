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
    // Where the last word starts: after the last separator, or at an upper-case letter that
    // follows a lower-case one (`authToken`). Found without allocating: this runs for every
    // header and JSON field name of every answer.
    let mut start = 0;
    let mut prev_lower = false;
    for (i, c) in name.char_indices() {
        if c == '_' || c == '-' || c == '.' {
            start = i + c.len_utf8();
        } else if c.is_uppercase() && prev_lower {
            start = i;
        }
        prev_lower = c.is_lowercase();
    }
    let last = || {
        name[start..]
            .chars()
            .filter(|c| c.is_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
    };
    CREDENTIAL_WORDS.iter().any(|word| last().eq(word.chars()))
}

/// The last words that make a name a credential's.
const CREDENTIAL_WORDS: [&str; 7] = [
    "token",
    "secret",
    "password",
    "key",
    "authorization",
    "credential",
    "credentials",
];

/// Whether `body` may hold a credential-named JSON field: it has one of the credential words
/// (ASCII case aside) or a `\u` escape (which could spell one). Most answers have neither, and
/// need not be parsed to know they carry no credential.
fn may_name_a_credential(body: &[u8]) -> bool {
    // One pass: only a byte that can start a word (or an escape) is looked at further.
    body.iter().enumerate().any(|(i, b)| {
        let rest = &body[i..];
        match b.to_ascii_lowercase() {
            b'\\' => rest.get(1) == Some(&b'u'),
            b't' | b's' | b'p' | b'k' | b'a' | b'c' => CREDENTIAL_WORDS[..6].iter().any(|word| {
                rest.get(..word.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(word.as_bytes()))
            }),
            _ => false,
        }
    })
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
    if !may_name_a_credential(body) {
        return out;
    }
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
    fn an_answer_without_credential_words_is_not_parsed_for_credentials_and_escapes_are() {
        let token = "tok_0123456789abcdef";
        // Found: plain, nested, and with the key spelled through an escape.
        for body in [
            format!(r#"{{"access_token": "{token}"}}"#),
            format!(r#"{{"data": [{{"authToken": "{token}"}}]}}"#),
            format!(r#"{{"access_t\u006fken": "{token}"}}"#),
            format!(r#"{{"API_KEY": "{token}"}}"#),
        ] {
            assert!(may_name_a_credential(body.as_bytes()), "{body}");
            assert_eq!(credentials_in(body.as_bytes()), [token], "{body}");
        }
        // The spec's refund answer: no credential word, no escape.
        let refund =
            br#"{"refund_id": "rfnd_abc123", "status": "pending", "refund_amount": "1500.00"}"#;
        assert!(!may_name_a_credential(refund));
        assert!(credentials_in(refund).is_empty());
        // A word alone is not a credential field.
        let word = br#"{"message": "the token expired, ask for another one"}"#;
        assert!(may_name_a_credential(word));
        assert!(credentials_in(word).is_empty());
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
