//! The `log` capability: a plugin's log lines, with secrets redacted, long texts cut, and at most
//! [`PluginQuotas::log_max_lines`] lines per operation (past that, one line says how many were
//! dropped, when the operation ends), handed to the host's [`LogSink`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::bindings::log::Level;
use crate::limits::PluginQuotas;
use crate::secret::Redactor;

/// One finished log line of a plugin: redacted and cut, ready to write.
#[derive(Debug, Clone, Copy)]
pub struct LogLine<'a> {
    /// The provider whose plugin wrote it.
    pub provider: &'a str,
    /// The operation it was written in.
    pub op: &'static str,
    /// Its level.
    pub level: Level,
    /// The message and its fields (` key=value`), without secrets.
    pub text: &'a str,
}

/// Where a plugin's log lines go. A gateway implements it over its own logging;
/// [`TracingLog`] writes them through `tracing`.
pub trait LogSink: Send + Sync + 'static {
    /// Writes one line.
    fn write(&self, line: &LogLine<'_>);
}

/// Writes plugin log lines as `tracing` events of target `refundry::plugin`, with the provider
/// and the operation as fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingLog;

impl LogSink for TracingLog {
    fn write(&self, line: &LogLine<'_>) {
        let LogLine {
            provider, op, text, ..
        } = *line;
        match line.level {
            Level::Trace => tracing::trace!(target: "refundry::plugin", provider, op, "{text}"),
            Level::Debug => tracing::debug!(target: "refundry::plugin", provider, op, "{text}"),
            Level::Info => tracing::info!(target: "refundry::plugin", provider, op, "{text}"),
            Level::Warn => tracing::warn!(target: "refundry::plugin", provider, op, "{text}"),
            Level::Error => tracing::error!(target: "refundry::plugin", provider, op, "{text}"),
        }
    }
}

/// A provider's log: its sink, its secrets, its cap.
#[derive(Clone)]
pub(crate) struct Log {
    provider: Arc<str>,
    redactor: Redactor,
    max_lines: u32,
    sink: Arc<dyn LogSink>,
}

/// Longest plugin log message kept, in bytes: a plugin must not flood the host's logs.
const MAX_MESSAGE: usize = 4096;

impl Log {
    /// The log of one provider, `quotas.log_max_lines` lines per operation.
    pub(crate) fn new(
        provider: Arc<str>,
        redactor: Redactor,
        quotas: PluginQuotas,
        sink: Arc<dyn LogSink>,
    ) -> Self {
        Self {
            provider,
            redactor,
            max_lines: quotas.log_max_lines,
            sink,
        }
    }

    /// The log of one operation: it counts the lines against the cap.
    pub(crate) fn operation(&self, op: &'static str) -> OperationLog {
        OperationLog {
            log: self.clone(),
            op,
            lines: AtomicU32::new(0),
        }
    }

    fn write(&self, op: &'static str, level: Level, text: &str) {
        self.sink.write(&LogLine {
            provider: &self.provider,
            op,
            level,
            text,
        });
    }

    /// Logs one line from the plugin, redacted.
    fn line(&self, op: &'static str, level: Level, message: &str, fields: &[(String, String)]) {
        let mut line = truncate(message).to_owned();
        for (k, v) in fields {
            line.push_str(&format!(" {}={}", truncate(k), truncate(v)));
        }
        self.write(op, level, &self.redactor.redact(&line));
    }
}

/// The log lines of one plugin operation; see [`Log::operation`]. When it is dropped (the
/// operation is over) and lines were dropped, it says how many.
pub(crate) struct OperationLog {
    log: Log,
    op: &'static str,
    /// Lines the plugin asked to write, kept or not.
    lines: AtomicU32,
}

impl OperationLog {
    /// Logs one line from the plugin, redacted, unless the operation's cap is reached.
    pub(crate) fn log(&self, level: Level, message: &str, fields: &[(String, String)]) {
        let n = self.lines.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if n <= self.log.max_lines {
            self.log.line(self.op, level, message, fields);
        }
    }

    /// How many lines were dropped so far.
    pub(crate) fn dropped(&self) -> u32 {
        self.lines
            .load(Ordering::Relaxed)
            .saturating_sub(self.log.max_lines)
    }
}

impl Drop for OperationLog {
    fn drop(&mut self) {
        let dropped = self.dropped();
        if dropped > 0 {
            let max = self.log.max_lines;
            let notice =
                format!("{dropped} more plugin log lines dropped: at most {max} per operation");
            self.log.write(self.op, Level::Warn, &notice);
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
        let cap = Log::new(
            "p".into(),
            Redactor::default(),
            quotas,
            Arc::new(TracingLog),
        );
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
