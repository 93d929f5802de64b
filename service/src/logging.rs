//! JSON log lines with the fields of every enclosing span flattened onto the line, so that each
//! line of a refund's work carries `refund_id` and `provider` (and of a request, `method` and
//! `path`) as top-level keys a log pipeline can filter on. tracing-subscriber's own JSON format
//! nests span fields under `span`/`spans`, and only the innermost span's with `with_current_span`.
//!
//! Use with [`tracing_subscriber::fmt::format::JsonFields`] as the field formatter (so that span
//! fields are stored as JSON):
//! ```no_run
//! tracing_subscriber::fmt()
//!     .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
//!     .event_format(refundry_service::logging::FlatJson)
//!     .init();
//! ```

use std::fmt;

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// One JSON object per line: `timestamp`, `level`, `target`, `spans` (the span names, outermost
/// first, joined by `:`), then the fields of every enclosing span, outermost first, then the
/// event's own fields (`message` among them). An inner span's field, or the event's, wins over
/// an outer one of the same name.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Map::new();
        let mut names = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                names.push(span.name());
                let extensions = span.extensions();
                let Some(formatted) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                // Stored as a JSON object by `JsonFields`; anything else is skipped rather
                // than breaking the line.
                if let Ok(Value::Object(map)) = serde_json::from_str(formatted.as_str()) {
                    fields.extend(map);
                }
            }
        }
        event.record(&mut Visitor(&mut fields));

        let mut fixed: Vec<(&str, Value)> = vec![
            (
                "timestamp",
                Utc::now()
                    .to_rfc3339_opts(SecondsFormat::Micros, true)
                    .into(),
            ),
            ("level", meta.level().as_str().into()),
            ("target", meta.target().into()),
        ];
        if !names.is_empty() {
            fixed.push(("spans", names.join(":").into()));
        }
        // The fixed keys first, for people reading the raw lines; a field cannot replace them.
        let mut text = String::from("{");
        let rest = fields
            .iter()
            .filter(|(k, _)| !fixed.iter().any(|(f, _)| f == k))
            .map(|(k, v)| (k.as_str(), v));
        for (i, (key, value)) in fixed.iter().map(|(k, v)| (*k, v)).chain(rest).enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&Value::from(key).to_string());
            text.push(':');
            text.push_str(&value.to_string());
        }
        text.push('}');
        writeln!(writer, "{text}")
    }
}

/// Records an event's fields as JSON values.
struct Visitor<'a>(&'a mut Map<String, Value>);

impl Visit for Visitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::fmt::format::JsonFields;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn span_fields_are_flattened_onto_every_line() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!(
                "request",
                method = "POST",
                path = "/v1/refunds",
                status = tracing::field::Empty
            );
            let _r = request.enter();
            let refund = tracing::info_span!("refund", refund_id = "rf_1", provider = "mfs-africa");
            {
                let _f = refund.enter();
                let plugin = tracing::info_span!("plugin", operation = "create-refund");
                let _p = plugin.enter();
                tracing::info!(attempt = 2u64, ok = true, "sent \"it\"");
            }
            request.record("status", 201u64);
            tracing::warn!("request done");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0];
        assert_eq!(first["refund_id"], "rf_1");
        assert_eq!(first["provider"], "mfs-africa");
        assert_eq!(first["method"], "POST");
        assert_eq!(first["operation"], "create-refund");
        assert_eq!(first["attempt"], 2);
        assert_eq!(first["ok"], true);
        assert_eq!(first["message"], "sent \"it\"");
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["spans"], "request:refund:plugin");
        assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(first.get("status").is_none());
        let second = &lines[1];
        assert_eq!(second["status"], 201);
        assert_eq!(second["path"], "/v1/refunds");
        assert!(second.get("refund_id").is_none());
        assert!(text.lines().next().unwrap().starts_with("{\"timestamp\":"));
    }
}
