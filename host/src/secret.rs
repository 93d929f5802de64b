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

#[cfg(test)]
mod tests {
    use super::*;

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
