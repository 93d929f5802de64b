//! The side-by-side comparison of a recording with its replays: what the plugin sent (HTTP
//! requests), wrote (storage), logged, asked for (clock, config, storage reads) and returned,
//! step by step, and the first point where a replay differs from the original.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::player::Replayed;
use super::record::{RecordedCall, Recording};

/// One column of the comparison: the original recording, or one replay of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    /// `original`, `replay` (the recorded version), or the `--plugin` file's name.
    pub label: String,
    /// The plugin version(s) it ran, as `describe()` gave them.
    pub version: String,
    /// The first point where it differs from the original (`None`: identical, or the original).
    pub first_difference: Option<Difference>,
}

/// Where a replay first differs from the original.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// The operation (`create-refund`, ...).
    pub operation: String,
    /// Its sequence number among the refund's operations.
    pub seq: i64,
    /// The import call's step, from 1; `None` for the operation's result.
    pub step: Option<usize>,
    /// The import (`http request`, `storage set`, ...), or `result`.
    pub call: String,
    /// The field (`header X-Plugin-Version`, `body`, `ok.status`, ...).
    pub field: String,
    /// The original's value (`None`: absent).
    pub original: Option<String>,
    /// The replay's value (`None`: absent).
    pub replay: Option<String>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| match v {
            Some(v) => clip(v, 300),
            None => "absent".to_owned(),
        };
        match self.step {
            Some(step) => write!(f, "{} step {step} {}", self.operation, self.call)?,
            None => write!(f, "{} result", self.operation)?,
        }
        write!(
            f,
            " {}: {} vs {}",
            self.field,
            show(&self.original),
            show(&self.replay)
        )
    }
}

/// One line of the comparison: a field of one step (or of the result) in every column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The step, from 1; `None` for the result.
    pub step: Option<usize>,
    /// The import (`http request`, ...), or `result`.
    pub call: String,
    /// The field.
    pub field: String,
    /// Its value in each column, in column order (`None`: absent).
    pub values: Vec<Option<String>>,
    /// Whether any column differs from the original.
    pub differs: bool,
}

/// One recorded operation, compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperationReport {
    /// Its sequence number among the refund's operations.
    pub seq: i64,
    /// The operation.
    pub operation: String,
    /// The plugin version that ran it.
    pub plugin_version: String,
    /// When it was recorded (RFC 3339).
    pub recorded_at: String,
    /// The comparison.
    pub rows: Vec<Row>,
    /// Why a replay was stopped before it returned, per replay column (`None`: it was not).
    pub stopped: Vec<Option<String>>,
}

/// A refund's recordings against their replays.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The refund.
    pub refund_id: String,
    /// Its provider.
    pub provider: String,
    /// The columns: the original first, then each replay.
    pub columns: Vec<Column>,
    /// Each recorded operation, in order.
    pub operations: Vec<OperationReport>,
    /// Set when the refund's first operations are no longer recorded (pruned by the size cap).
    pub earlier_pruned: bool,
}

impl Report {
    /// Whether every replay did exactly what the original did.
    pub fn identical(&self) -> bool {
        self.columns.iter().all(|c| c.first_difference.is_none())
    }
}

/// A call's fields as the comparison shows them, the import first.
fn fields(call: &RecordedCall) -> Vec<(String, String)> {
    let mut out = vec![("import".to_owned(), call.label().to_owned())];
    match call {
        RecordedCall::HttpSend {
            method,
            url,
            headers,
            body,
        } => {
            out.push(("method".into(), method.clone()));
            out.push(("url".into(), url.clone()));
            // One row per header name (case as first sent); repeated headers are joined.
            let mut joined: Vec<(String, String)> = Vec::new();
            for (name, value) in headers {
                match joined
                    .iter_mut()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                {
                    Some((_, v)) => {
                        v.push_str(", ");
                        v.push_str(value);
                    }
                    None => joined.push((name.clone(), value.clone())),
                }
            }
            out.extend(joined.into_iter().map(|(n, v)| (format!("header {n}"), v)));
            if let Some(body) = body {
                out.push(("body".into(), body.display()));
            }
        }
        RecordedCall::ClockNow => {}
        RecordedCall::StorageGet { key }
        | RecordedCall::StorageDelete { key }
        | RecordedCall::ConfigGet { key } => {
            out.push(("key".into(), key.clone()));
        }
        RecordedCall::StorageSet { key, value } => {
            out.push(("key".into(), key.clone()));
            out.push(("value".into(), value.display()));
        }
        RecordedCall::Log {
            level,
            message,
            fields,
        } => {
            out.push(("level".into(), level.clone()));
            out.push(("message".into(), message.clone()));
            out.extend(
                fields
                    .iter()
                    .map(|(k, v)| (format!("field {k}"), v.clone())),
            );
        }
    }
    out
}

/// A JSON output as `path: value` pairs (`ok.status: pending`).
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(map) => map.iter().for_each(|(k, v)| flatten(&join(k), v, out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| flatten(&join(&i.to_string()), v, out)),
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// Rows for one group of fields, one list per column, fields in order of first appearance.
fn rows_of(step: Option<usize>, call: &str, columns: &[Option<Vec<(String, String)>>]) -> Vec<Row> {
    let mut names: Vec<&str> = Vec::new();
    for fields in columns.iter().flatten() {
        for (name, _) in fields {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            let values: Vec<Option<String>> = columns
                .iter()
                .map(|c| {
                    c.as_ref()
                        .and_then(|f| f.iter().find(|(n, _)| n == name))
                        .map(|(_, v)| v.clone())
                })
                .collect();
            Row {
                step,
                call: call.to_owned(),
                field: name.to_owned(),
                differs: values.iter().any(|v| v != &values[0]),
                values,
            }
        })
        .collect()
}

/// Compares one recorded operation with its replays (in column order after the original).
pub fn compare(recording: &Recording, replays: &[&Replayed]) -> (Vec<Row>, Vec<Option<String>>) {
    let steps = replays
        .iter()
        .map(|r| r.calls.len())
        .chain([recording.steps.len()])
        .max()
        .unwrap_or(0);
    let mut rows = Vec::new();
    for i in 0..steps {
        let original = recording.steps.get(i).map(|s| &s.call);
        let calls: Vec<Option<&RecordedCall>> = std::iter::once(original)
            .chain(replays.iter().map(|r| r.calls.get(i)))
            .collect();
        let label = calls.iter().flatten().next().map_or("", |c| c.label());
        let columns: Vec<Option<Vec<(String, String)>>> =
            calls.iter().map(|c| c.map(fields)).collect();
        rows.extend(rows_of(Some(i + 1), label, &columns));
    }
    let outputs: Vec<Option<Vec<(String, String)>>> = std::iter::once(&recording.output)
        .chain(replays.iter().map(|r| &r.output))
        .map(|v| {
            (!v.is_null()).then(|| {
                let mut out = Vec::new();
                flatten("", v, &mut out);
                out
            })
        })
        .collect();
    rows.extend(rows_of(None, "result", &outputs));
    let stopped = replays.iter().map(|r| r.stopped.clone()).collect();
    (rows, stopped)
}

/// The first row where column `column` differs from the original, as a [`Difference`].
pub fn first_difference(operations: &[OperationReport], column: usize) -> Option<Difference> {
    operations.iter().find_map(|op| {
        op.rows
            .iter()
            .find(|r| r.values[column] != r.values[0])
            .map(|r| Difference {
                operation: op.operation.clone(),
                seq: op.seq,
                step: r.step,
                call: r.call.clone(),
                field: r.field.clone(),
                original: r.values[0].clone(),
                replay: r.values[column].clone(),
            })
    })
}

/// `v` cut to at most `n` characters, with an ellipsis when cut; line breaks shown as `\n`.
fn clip(v: &str, n: usize) -> String {
    let one_line = v.replace('\n', "\\n").replace('\r', "\\r");
    if one_line.chars().count() <= n {
        one_line
    } else {
        let mut s: String = one_line.chars().take(n.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

impl Report {
    /// The report as readable text: one table per operation (rows that differ marked `!`),
    /// then a verdict per replay.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let w = |out: &mut String, line: String| {
            out.push_str(line.trim_end());
            out.push('\n');
        };
        w(
            &mut out,
            format!(
                "refund {} ({}): {} recorded operation{}",
                self.refund_id,
                self.provider,
                self.operations.len(),
                if self.operations.len() == 1 { "" } else { "s" }
            ),
        );
        if self.earlier_pruned {
            w(
                &mut out,
                "(its earlier operations were pruned by [recording] max_total_bytes)".into(),
            );
        }
        let width = self.columns.iter().map(|c| c.label.chars().count()).max();
        for c in &self.columns {
            let label = format!("{:<w$}", c.label, w = width.unwrap_or(0));
            w(&mut out, format!("  {label}  plugin {}", c.version));
        }
        for op in &self.operations {
            out.push('\n');
            w(
                &mut out,
                format!(
                    "operation {}: {} (plugin {}, recorded {})",
                    op.seq, op.operation, op.plugin_version, op.recorded_at
                ),
            );
            let mut header = vec![
                String::new(),
                "STEP".to_owned(),
                "CALL".to_owned(),
                "FIELD".to_owned(),
            ];
            header.extend(self.columns.iter().map(|c| c.label.to_uppercase()));
            let mut table = vec![header];
            for r in &op.rows {
                let mut line = vec![
                    if r.differs { "!" } else { "" }.to_owned(),
                    r.step.map_or("-".to_owned(), |s| s.to_string()),
                    r.call.clone(),
                    clip(&r.field, 32),
                ];
                line.extend(
                    r.values
                        .iter()
                        .map(|v| v.as_deref().map_or("absent".to_owned(), |v| clip(v, 40))),
                );
                table.push(line);
            }
            let widths: Vec<usize> = (0..table[0].len())
                .map(|i| {
                    table
                        .iter()
                        .map(|l| l[i].chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for line in &table {
                let text: Vec<String> = line
                    .iter()
                    .zip(&widths)
                    .map(|(cell, w)| format!("{cell:<w$}"))
                    .collect();
                w(&mut out, text.join("  "));
            }
            for (column, why) in self.columns[1..].iter().zip(&op.stopped) {
                if let Some(why) = why {
                    w(&mut out, format!("  {} stopped: {why}", column.label));
                }
            }
        }
        out.push('\n');
        for c in &self.columns[1..] {
            match &c.first_difference {
                None => w(&mut out, format!("{} ({}): identical", c.label, c.version)),
                Some(d) => w(
                    &mut out,
                    format!("{} ({}): differs at {d}", c.label, c.version),
                ),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::record::{Input, RecordedAnswer, Step};
    use serde_json::json;

    fn http(headers: &[(&str, &str)]) -> RecordedCall {
        RecordedCall::HttpSend {
            method: "POST".into(),
            url: "http://p/v1/refunds".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: None,
        }
    }

    fn recording() -> Recording {
        Recording {
            input: Input::GetRefund {
                provider_refund_id: Some("r".into()),
                external_refund_id: None,
                original_transaction_id: None,
            },
            steps: vec![
                Step {
                    call: RecordedCall::ClockNow,
                    answer: RecordedAnswer::Clock(5),
                },
                Step {
                    call: http(&[("X-Api-Key", "k")]),
                    answer: RecordedAnswer::Logged,
                },
            ],
            output: json!({"ok": {"status": "pending"}}),
            truncated: false,
        }
    }

    fn report(rec: &Recording, replays: &[&Replayed]) -> Vec<OperationReport> {
        let (rows, stopped) = compare(rec, replays);
        vec![OperationReport {
            seq: 1,
            operation: "create-refund".into(),
            plugin_version: "0.1.0".into(),
            recorded_at: "t".into(),
            rows,
            stopped,
        }]
    }

    #[test]
    fn an_identical_replay_has_no_difference() {
        let rec = recording();
        let same = Replayed {
            calls: rec.steps.iter().map(|s| s.call.clone()).collect(),
            output: rec.output.clone(),
            stopped: None,
        };
        let ops = report(&rec, &[&same]);
        assert_eq!(first_difference(&ops, 1), None);
        assert!(ops[0].rows.iter().all(|r| !r.differs));
        assert!(ops[0].rows.iter().any(|r| r.field == "ok.status"));
    }

    #[test]
    fn an_added_header_is_the_first_difference() {
        let rec = recording();
        let next = Replayed {
            calls: vec![
                RecordedCall::ClockNow,
                http(&[("X-Api-Key", "k"), ("X-Plugin-Version", "0.2.0")]),
            ],
            output: rec.output.clone(),
            stopped: None,
        };
        let d = first_difference(&report(&rec, &[&next]), 1).unwrap();
        assert_eq!(
            d.to_string(),
            "create-refund step 2 http request header X-Plugin-Version: absent vs 0.2.0"
        );
    }

    #[test]
    fn another_import_or_a_changed_result_is_reported() {
        let rec = recording();
        let other = Replayed {
            calls: vec![
                RecordedCall::ClockNow,
                RecordedCall::ConfigGet { key: "k".into() },
            ],
            output: Value::Null,
            stopped: Some("stopped".into()),
        };
        let d = first_difference(&report(&rec, &[&other]), 1).unwrap();
        assert_eq!(
            d.to_string(),
            "create-refund step 2 http request import: http request vs config get"
        );
        let shorter = Replayed {
            calls: vec![RecordedCall::ClockNow],
            output: json!({"ok": {"status": "failed"}}),
            stopped: None,
        };
        let d = first_difference(&report(&rec, &[&shorter]), 1).unwrap();
        assert_eq!(d.step, Some(2));
        assert_eq!(d.replay, None);
        let changed = Replayed {
            calls: rec.steps.iter().map(|s| s.call.clone()).collect(),
            output: json!({"ok": {"status": "failed"}}),
            stopped: None,
        };
        let d = first_difference(&report(&rec, &[&changed]), 1).unwrap();
        assert_eq!(
            d.to_string(),
            "create-refund result ok.status: pending vs failed"
        );
    }
}
