//! The `log` capability: plugin log lines through `tracing`, with secrets redacted.

use crate::bindings::log::Level;
use crate::secret::Redactor;

/// Writes a plugin's log lines, tagged with its provider and operation.
#[derive(Clone)]
pub struct LogCap {
    provider: String,
    redactor: Redactor,
}

/// Longest plugin log message kept, in bytes: a plugin must not flood the host's logs.
const MAX_MESSAGE: usize = 4096;

impl LogCap {
    /// The log capability of one provider.
    pub fn new(provider: String, redactor: Redactor) -> Self {
        Self { provider, redactor }
    }

    /// Logs one line from the plugin, redacted.
    pub fn log(&self, op: &str, level: Level, message: &str, fields: &[(String, String)]) {
        let mut line = truncate(message).to_owned();
        for (k, v) in fields {
            line.push_str(&format!(" {}={}", truncate(k), truncate(v)));
        }
        let line = self.redactor.redact(&line);
        let provider = self.provider.as_str();
        match level {
            Level::Trace => tracing::trace!(target: "refundry::plugin", provider, op, "{line}"),
            Level::Debug => tracing::debug!(target: "refundry::plugin", provider, op, "{line}"),
            Level::Info => tracing::info!(target: "refundry::plugin", provider, op, "{line}"),
            Level::Warn => tracing::warn!(target: "refundry::plugin", provider, op, "{line}"),
            Level::Error => tracing::error!(target: "refundry::plugin", provider, op, "{line}"),
        }
    }
}

fn truncate(s: &str) -> &str {
    if s.len() <= MAX_MESSAGE {
        return s;
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_a_char_boundary() {
        let s = "é".repeat(MAX_MESSAGE);
        let t = truncate(&s);
        assert!(t.len() <= MAX_MESSAGE);
        assert!(t.chars().all(|c| c == 'é'));
    }
}
