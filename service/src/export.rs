//! Refunds as CSV or JSON for finance reconciliation. One writer serves both
//! `GET /v1/refunds?format=csv` and `refundry export`, so the two files are the same.
//!
//! CSV columns: `id, provider, plugin_version, external_refund_id, original_transaction_id,
//! amount, currency, amount_major, status, provider_refund_id, provider_status, failure_code,
//! failure_message, reason, created_at, updated_at`. `amount` is in minor units, `amount_major`
//! the same amount as a decimal in major units (`1500.00` KES; empty for a currency whose
//! decimals the host does not know), times are RFC 3339 UTC with milliseconds, an absent value is
//! an empty cell. Every text cell (ids included) that starts with `=`, `+`, `-`, `@`, a tab or a
//! carriage return is written with a leading `'`, so a spreadsheet never runs it as a formula.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::money;
use refundry_ledger::{ListQuery, Page, RefundRecord};

/// Page size when none is asked for.
pub const DEFAULT_PAGE: usize = 50;
/// The largest page one list call returns.
pub const MAX_PAGE: usize = 500;

/// The CSV header row.
pub const CSV_COLUMNS: [&str; 16] = [
    "id",
    "provider",
    "plugin_version",
    "external_refund_id",
    "original_transaction_id",
    "amount",
    "currency",
    "amount_major",
    "status",
    "provider_refund_id",
    "provider_status",
    "failure_code",
    "failure_message",
    "reason",
    "created_at",
    "updated_at",
];

/// An export file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Format {
    /// CSV with a header row ([`CSV_COLUMNS`]).
    Csv,
    /// A JSON array of refund objects (as the API serializes them).
    Json,
}

impl Format {
    /// Parses `csv` or `json`.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    /// The media type of the file.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    /// The CSV writer failed.
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    /// A record could not be serialized.
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes refunds to `W` in a [`Format`], one at a time: a selection of any size is written
/// page by page, never held whole.
pub struct Writer<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    // Boxed: the CSV writer carries its buffer state inline (some 350 bytes).
    Csv(Box<csv::Writer<W>>),
    Json { out: W, count: usize },
}

impl<W: Write> Writer<W> {
    /// Starts the file (the CSV header row, or the JSON array's `[`).
    pub fn new(format: Format, out: W) -> Result<Self, ExportError> {
        let inner = match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(CSV_COLUMNS)?;
                Inner::Csv(Box::new(w))
            }
            Format::Json => {
                let mut out = out;
                out.write_all(b"[")?;
                Inner::Json { out, count: 0 }
            }
        };
        Ok(Self { inner })
    }

    /// Writes one refund.
    pub fn write(&mut self, refund: &RefundRecord) -> Result<(), ExportError> {
        match &mut self.inner {
            Inner::Csv(w) => w.write_record(csv_row(refund))?,
            Inner::Json { out, count } => {
                out.write_all(if *count == 0 { b"\n" } else { b",\n" })?;
                serde_json::to_writer(&mut *out, refund)?;
                *count += 1;
            }
        }
        Ok(())
    }

    /// Pushes everything written so far to `W` (a streamed export sends it on).
    pub fn flush(&mut self) -> Result<(), ExportError> {
        match &mut self.inner {
            Inner::Csv(w) => w.flush()?,
            Inner::Json { out, .. } => out.flush()?,
        }
        Ok(())
    }

    /// Ends the file and hands the writer back, flushed.
    pub fn finish(self) -> Result<W, ExportError> {
        let mut out = match self.inner {
            Inner::Csv(w) => w.into_inner().map_err(|e| e.into_error())?,
            Inner::Json { mut out, .. } => {
                out.write_all(b"\n]\n")?;
                out
            }
        };
        out.flush()?;
        Ok(out)
    }
}

/// An in-memory sink that an export writes into and a streamed response drains, page by page.
#[derive(Debug, Clone, Default)]
pub struct Chunks(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Chunks {
    /// Takes what was written since the last take.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        v.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One CSV row, in [`CSV_COLUMNS`] order. Every text cell goes through [`text_cell`]: ids and
/// codes come from the gateway or from a provider's answer as much as messages do.
pub fn csv_row(r: &RefundRecord) -> [String; 16] {
    let opt = |v: &Option<String>| v.as_deref().map(text_cell).unwrap_or_default();
    let amount_major = money::exponent(&r.currency)
        .map(|_| money::format_minor(r.amount, &r.currency))
        .unwrap_or_default();
    let failure = r.failure.as_ref();
    [
        text_cell(&r.id),
        text_cell(&r.provider),
        text_cell(&r.plugin_version),
        text_cell(&r.external_refund_id),
        text_cell(&r.original_transaction_id),
        // Numbers the host formats itself: a spreadsheet must read them as numbers.
        r.amount.to_string(),
        text_cell(&r.currency),
        amount_major,
        text_cell(r.status.as_str()),
        opt(&r.provider_refund_id),
        opt(&r.provider_status),
        failure.map(|f| text_cell(&f.code)).unwrap_or_default(),
        failure.map(|f| text_cell(&f.message)).unwrap_or_default(),
        opt(&r.reason),
        time(r.created_at),
        time(r.updated_at),
    ]
}

/// Text as a cell: a leading `=`, `+`, `-`, `@`, tab or carriage return would make a spreadsheet
/// evaluate the cell as a formula (OWASP "CSV injection"), so such a cell starts with `'`, which
/// spreadsheets show as text and do not display. Ids are no exception: a provider's refund id
/// or the gateway's external id is text someone else chose. An id that needs the `'` is one no
/// legitimate party issues, so reconciliation on ids is not affected in practice.
fn text_cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A whole selection, page by page: [`Pager::next_query`] is the query of the next page
/// (with its cursor and a [`MAX_PAGE`] limit), [`Pager::advance`] takes a page's cursor; it ends
/// after a page with no next cursor (or one that does not advance: a ledger bug must not hang an
/// export).
#[derive(Debug, Clone)]
pub struct Pager {
    query: ListQuery,
    done: bool,
}

impl Pager {
    /// Pages through `query`'s selection.
    pub fn new(mut query: ListQuery) -> Self {
        query.limit = MAX_PAGE;
        Self { query, done: false }
    }

    /// The query for the next page; `None` once the selection is done.
    pub fn next_query(&self) -> Option<ListQuery> {
        (!self.done).then(|| self.query.clone())
    }

    /// Moves past `page`.
    pub fn advance(&mut self, page: &Page) {
        match &page.next_cursor {
            Some(next) if self.query.cursor.as_ref() != Some(next) && !page.refunds.is_empty() => {
                self.query.cursor = Some(next.clone())
            }
            _ => self.done = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use refundry_ledger::Failure;
    use refundry_ledger::testing::record;

    #[test]
    fn csv_has_header_and_escaped_rows() {
        let mut w = Writer::new(Format::Csv, Vec::new()).unwrap();
        w.write(&record(1)).unwrap();
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), CSV_COLUMNS.join(","));
        assert_eq!(
            lines.next().unwrap(),
            "rf_0001,mfs-africa,0.1.0,ext-1,tx-1,150050,KES,1500.50,failed,,FAILED,\
             amount_exceeded,'=cmd|' /C calc'!A0,\"customer, said \"\"no\"\"\",\
             2026-11-25T10:00:00.500Z,2026-11-25T10:00:00.500Z"
        );
        assert_eq!(lines.next(), None);

        // It reads back as 16 columns.
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let row = r.records().next().unwrap().unwrap();
        assert_eq!(row.len(), 16);
        assert_eq!(&row[13], "customer, said \"no\"");
    }

    #[test]
    fn every_text_cell_is_formula_safe() {
        let mut r = record(1);
        r.id = "=HYPERLINK(\"http://x\")".into();
        r.provider = "+p".into();
        r.plugin_version = "-1".into();
        r.external_refund_id = "@SUM(A1)".into();
        r.original_transaction_id = "\t=1".into();
        r.currency = "=C".into();
        r.provider_refund_id = Some("=1+1".into());
        r.provider_status = Some("\r=2".into());
        r.reason = Some("-3".into());
        r.failure = Some(Failure {
            code: "=code".into(),
            message: "@msg".into(),
            provider_code: None,
        });
        let row = csv_row(&r);
        for (i, cell) in row.iter().enumerate() {
            let column = CSV_COLUMNS[i];
            match column {
                // Numbers, and times the host writes: never a leading formula character.
                "amount" | "amount_major" | "status" | "created_at" | "updated_at" => {
                    assert!(!cell.starts_with('\''), "{column}: {cell}")
                }
                _ => assert!(cell.starts_with('\''), "{column} not neutralised: {cell}"),
            }
        }
        assert_eq!(row[0], "'=HYPERLINK(\"http://x\")");
        // Plain ids are left as they are.
        let plain = csv_row(&record(2));
        assert_eq!(plain[0], "rf_0002");
        assert_eq!(plain[3], "ext-2");
    }

    #[test]
    fn amount_major_is_empty_for_unknown_currency() {
        let mut r = record(1);
        r.currency = "XYZ".into();
        assert_eq!(csv_row(&r)[7], "");
        r.currency = "UGX".into();
        r.amount = 5000;
        assert_eq!(csv_row(&r)[7], "5000");
    }

    #[test]
    fn json_is_an_array_of_refund_objects() {
        let empty = Writer::new(Format::Json, Vec::new()).unwrap();
        let text = String::from_utf8(empty.finish().unwrap()).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<RefundRecord>>(&text).unwrap(),
            []
        );

        let mut w = Writer::new(Format::Json, Vec::new()).unwrap();
        w.write(&record(1)).unwrap();
        w.write(&record(2)).unwrap();
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        let back: Vec<RefundRecord> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, vec![record(1), record(2)]);
    }

    #[test]
    fn the_pager_follows_cursors_to_the_end() {
        let all: Vec<RefundRecord> = (0..1203).map(record).collect();
        let mut seen = Vec::new();
        let mut calls = 0;
        let mut pager = Pager::new(ListQuery::default());
        while let Some(q) = pager.next_query() {
            calls += 1;
            let start = q
                .cursor
                .map(|c| all.iter().position(|r| r.id == c).unwrap() + 1)
                .unwrap_or(0);
            let refunds: Vec<_> = all.iter().skip(start).take(q.limit).cloned().collect();
            let next_cursor =
                (start + refunds.len() < all.len()).then(|| refunds.last().unwrap().id.clone());
            let page = Page {
                refunds,
                next_cursor,
            };
            pager.advance(&page);
            seen.extend(page.refunds);
        }
        assert_eq!(calls, 3);
        assert_eq!(seen, all);
    }

    #[test]
    fn a_cursor_that_does_not_advance_ends_the_walk() {
        let mut pager = Pager::new(ListQuery::default());
        let stuck = Page {
            refunds: vec![record(1)],
            next_cursor: Some("rf_same".into()),
        };
        pager.advance(&stuck);
        assert!(pager.next_query().is_some());
        pager.advance(&stuck);
        assert!(pager.next_query().is_none());
    }
}
