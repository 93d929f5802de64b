//! The `log` capability: plugin log lines through `tracing`, with secrets redacted, and at most
//! [`PluginQuotas::log_max_lines`] lines per operation (past that, one line says how many were
//! dropped, when the operation ends).

use std::sync::atomic::{AtomicU32, Ordering};

use crate::bindings::log::Level;
use crate::config::PluginQuotas;
use crate::secret::Redactor;

/// Writes a plugin's log lines, tagged with its provider and operation.
#[derive(Clone)]
pub struct LogCap {
    provider: String,
    redactor: Redactor,
    max_lines: u32,
}

/// Longest plugin log message kept, in bytes: a plugin must not flood the host's logs.
const MAX_MESSAGE: usize = 4096;

impl LogCap {
    /// The log capability of one provider, `quotas.log_max_lines` lines per operation.
    pub fn new(provider: String, redactor: Redactor, quotas: PluginQuotas) -> Self {
        Self {
            provider,
            redactor,
            max_lines: quotas.log_max_lines,
        }
    }

    /// The log of one operation: it counts the lines against the cap.
    pub fn operation(&self, op: &'static str) -> OperationLog {
        OperationLog {
            cap: self.clone(),
            op,
            lines: AtomicU32::new(0),
        }
    }

    /// Logs one line from the plugin, redacted.
    fn log(&self, op: &str, level: Level, message: &str, fields: &[(String, String)]) {
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

/// The log lines of one plugin operation; see [`LogCap::operation`]. When it is dropped (the
/// operation is over) and lines were dropped, it says how many.
pub struct OperationLog {
    cap: LogCap,
    op: &'static str,
    /// Lines the plugin asked to write, kept or not.
    lines: AtomicU32,
}

impl OperationLog {
    /// Logs one line from the plugin, redacted, unless the operation's cap is reached.
    pub fn log(&self, level: Level, message: &str, fields: &[(String, String)]) {
        let n = self.lines.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if n <= self.cap.max_lines {
            self.cap.log(self.op, level, message, fields);
        }
    }

    /// How many lines were dropped so far.
    pub fn dropped(&self) -> u32 {
        self.lines
            .load(Ordering::Relaxed)
            .saturating_sub(self.cap.max_lines)
    }
}

impl Drop for OperationLog {
    fn drop(&mut self) {
        let dropped = self.dropped();
        if dropped > 0 {
            let (provider, op, max) = (self.cap.provider.as_str(), self.op, self.cap.max_lines);
            tracing::warn!(
                target: "refundry::plugin", provider, op,
                "{dropped} more plugin log lines dropped: at most {max} per operation"
            );
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

    #[test]
    fn lines_past_the_cap_are_counted_not_written() {
        let quotas = PluginQuotas {
            log_max_lines: 3,
            ..PluginQuotas::default()
        };
        let cap = LogCap::new("p".into(), Redactor::default(), quotas);
        let written = capture(|| {
            let op = cap.operation("create-refund");
            for i in 0..10 {
                op.log(Level::Info, &format!("line {i}"), &[]);
            }
            assert_eq!(op.dropped(), 7);
            // The operation ends: the notice.
            drop(op);
            // Each operation has its own count.
            let next = cap.operation("get-refund");
            next.log(Level::Info, "one more", &[]);
            assert_eq!(next.dropped(), 0);
        });
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(
            lines.len(),
            5,
            "3 lines, the drop notice, 1 line: {written}"
        );
        assert!(lines[..3].iter().all(|l| l.contains("line ")), "{written}");
        assert!(
            lines[3].contains("7 more plugin log lines dropped: at most 3 per operation"),
            "{written}"
        );
        assert!(lines[4].contains("one more"), "{written}");
    }

    /// What `f` logs, as text.
    fn capture(f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buf.lock().unwrap().clone()).unwrap()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
