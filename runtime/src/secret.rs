//! Secrets: values that must never reach a log line.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

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
///
/// Runs for every field name of every answer a provider sends, so it does not allocate.
pub fn names_a_credential(name: &str) -> bool {
    // The last word's letters and digits, ASCII lower-cased, as far as the longest credential
    // word; a longer word, or one with a letter outside ASCII, is none of them.
    const LONGEST: usize = "authorization".len();
    let mut last = [0u8; LONGEST];
    let mut len = 0;
    let mut too_long = false;
    let mut prev_lower = false;
    for c in name.chars() {
        if c == '_' || c == '-' || c == '.' || (c.is_uppercase() && prev_lower) {
            (len, too_long) = (0, false);
        }
        if c.is_alphanumeric() {
            match last.get_mut(len) {
                Some(slot) if c.is_ascii() && !too_long => {
                    *slot = c.to_ascii_lowercase() as u8;
                    len += 1;
                }
                _ => too_long = true,
            }
        }
        prev_lower = c.is_lowercase();
    }
    !too_long
        && matches!(
            &last[..len],
            b"token"
                | b"secret"
                | b"password"
                | b"key"
                | b"authorization"
                | b"credential"
                | b"credentials"
        )
}

/// Credentials a provider issues at run time (an auth token: no configured secret, but a secret
/// all the same) found in a JSON body: the string values of credential-named fields, at least
/// [`MIN_TOKEN`] long, wherever they are. Nothing for a body that is not JSON.
///
/// Every answer of every operation is scanned, so the body is walked as it is parsed, without
/// building it as a [`serde_json::Value`]: only the credentials found are allocated.
pub fn credentials_in(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut json = serde_json::Deserializer::from_slice(body);
    let walked = Walk::value(&mut out)
        .deserialize(&mut json)
        .and_then(|()| json.end());
    if walked.is_err() {
        out.clear();
    }
    out
}

/// One JSON value walked by [`credentials_in`]: a string is kept when it is the value of a
/// credential-named field (`of_credential`) and long enough; objects and arrays are walked.
struct Walk<'o> {
    found: &'o mut Vec<String>,
    of_credential: bool,
}

impl<'o> Walk<'o> {
    fn value(found: &'o mut Vec<String>) -> Self {
        Walk {
            found,
            of_credential: false,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, json: D) -> Result<(), D::Error> {
        json.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        if self.of_credential && s.len() >= MIN_TOKEN {
            self.found.push(s.to_owned());
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<(), A::Error> {
        while let Some(of_credential) = fields.next_key_seed(CredentialName)? {
            fields.next_value_seed(Walk {
                found: &mut *self.found,
                of_credential,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        while items
            .next_element_seed(Walk::value(&mut *self.found))?
            .is_some()
        {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A field name, read as whether it [`names_a_credential`] (escapes already decoded, so
/// `access_t\u006fken` is one), without keeping it.
struct CredentialName;

impl<'de> DeserializeSeed<'de> for CredentialName {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, json: D) -> Result<bool, D::Error> {
        json.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for CredentialName {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<bool, E> {
        Ok(names_a_credential(name))
    }
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

    /// What [`credentials_in`] finds, found the plain way: the body parsed into a value, then
    /// walked.
    fn parsed_then_walked(body: &[u8]) -> Vec<String> {
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(map) => {
                    for (k, v) in map {
                        match v {
                            serde_json::Value::String(s)
                                if names_a_credential(k) && s.len() >= MIN_TOKEN =>
                            {
                                out.push(s.clone())
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

    #[test]
    fn walking_the_body_as_it_is_parsed_finds_what_parsing_it_first_finds() {
        let t = "tok_0123456789abcdef";
        let deep = format!(
            "{}{{\"token\": \"{t}\"}}{}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let bodies = [
            format!(r#"{{"token": "{t}", "n": 1, "f": -2.5e3, "b": true, "z": null}}"#),
            format!(r#"{{"a": {{"b": [{{"client_secret": "{t}"}}, "{t}", 7]}}}}"#),
            // A credential-named field holding an object or an array: walked, its strings
            // kept only under credential names of their own.
            format!(r#"{{"token": {{"value": "{t}", "refresh_token": "{t}x"}}}}"#),
            format!(r#"{{"keys": ["{t}"], "key": ["{t}"]}}"#),
            // Escapes in the name and in the value.
            format!(r#"{{"access_t\u006fken": "{t}\n\u00e9"}}"#),
            // Numbers past 64 bits, and a string as the whole body.
            format!(r#"{{"big": 123456789012345678901234567890, "password": "{t}"}}"#),
            format!(r#""{t}""#),
            // Not JSON, or JSON with something after it: nothing, even after a credential.
            format!(r#"{{"token": "{t}", "#),
            format!(r#"{{"token": "{t}"}} trailing"#),
            format!(r#"{{"token": "{t}"}}  "#),
            // Deeper than the parser's limit.
            deep,
            String::new(),
        ];
        for body in &bodies {
            let mut walked = credentials_in(body.as_bytes());
            let mut parsed = parsed_then_walked(body.as_bytes());
            walked.sort();
            parsed.sort();
            assert_eq!(walked, parsed, "{body}");
        }
        assert_eq!(credentials_in(bodies[0].as_bytes()), [t]);
        assert_eq!(
            credentials_in(bodies[4].as_bytes()),
            [format!("{t}\n\u{e9}")]
        );
        assert!(credentials_in(bodies[7].as_bytes()).is_empty());
        // A repeated field: parsed into a value, the last one wins; walked, both are kept
        // (each is removed from the plugin's answer).
        let twice = format!(r#"{{"token": "{t}", "token": "{t}2"}}"#);
        assert_eq!(
            credentials_in(twice.as_bytes()),
            [t.to_owned(), format!("{t}2")]
        );
        assert_eq!(parsed_then_walked(twice.as_bytes()), [format!("{t}2")]);
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
