//! Batch refunds from a CSV file (`refundry batch`): every row is read and checked before any is
//! sent, bad rows are reported by line and never sent, good ones are sent with bounded
//! concurrency to a [`Submit`] (the running service over its REST API, or a [`RefundService`]
//! in this process), and every data line gets one result, in input order.
//!
//! Resuming is re-running the same file: the service's idempotency (provider +
//! `external_refund_id`) answers a row refunded before with the refund it made, which this module
//! reports as [`RowOutcome::Existing`].
//!
//! The file: a header row naming the columns (any order; surrounding spaces trimmed, here and in
//! every field), then one refund per line:
//!
//! | column | required | what |
//! |---|---|---|
//! | `provider` | yes | provider id, as configured |
//! | `external_refund_id` | yes | your id for the refund: with `provider`, the idempotency key |
//! | `original_transaction_id` | yes | the provider's id of the payment |
//! | `amount` | yes | major units with exactly the currency's decimals (`1500.00` KES, `5000` UGX), as `refundry refund create --amount` takes it |
//! | `currency` | yes | ISO 4217 code, upper case |
//! | `reason` | yes (may be empty) | shown to the provider |
//! | `original_amount` | no | the payment's amount, same format and currency as `amount` |
//! | `original_completed_at` | no | when the payment completed, RFC 3339 (`2026-11-20T10:00:00Z`); given with `original_amount` or not at all |
//! | `order_id` | no | your order id (PagoEfectivo needs it) |

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::{Read, Write};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::money::{self, MoneyError};
use crate::providers::Providers;
use crate::refunds::{CreateError, NewRefund, OriginalPayment, RefundService};
use refundry_ledger::{Outcome, RefundRecord, Status};

/// The columns every file has.
pub const REQUIRED_COLUMNS: [&str; 6] = [
    "provider",
    "external_refund_id",
    "original_transaction_id",
    "amount",
    "currency",
    "reason",
];

/// The columns a file may have.
pub const OPTIONAL_COLUMNS: [&str; 3] = ["original_amount", "original_completed_at", "order_id"];

/// The results file's columns, in order.
pub const RESULT_COLUMNS: [&str; 7] = [
    "line",
    "provider",
    "external_refund_id",
    "outcome",
    "refund_id",
    "status",
    "error",
];

/// Why a file cannot be run at all (as opposed to a bad row, which is reported and skipped).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// No header row.
    #[error("the file is empty: it needs a header row naming the columns ({})", REQUIRED_COLUMNS.join(", "))]
    Empty,
    /// A required column is not in the header.
    #[error("line 1: the header has no column {0:?} (required: {req})", req = REQUIRED_COLUMNS.join(", "))]
    MissingColumn(String),
    /// The header names a column this format does not have.
    #[error(
        "line 1: unknown column {0:?} (the columns are {req}, and optionally {opt})",
        req = REQUIRED_COLUMNS.join(", "),
        opt = OPTIONAL_COLUMNS.join(", ")
    )]
    UnknownColumn(String),
    /// The header names a column twice.
    #[error("line 1: the header names column {0:?} twice")]
    DuplicateColumn(String),
    /// The CSV could not be read or written.
    #[error("{0}")]
    Csv(#[from] csv::Error),
    /// The file could not be read, or the results written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The providers rows may name and, when known, the currencies each refunds.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    providers: BTreeMap<String, Option<Vec<String>>>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider; `currencies` is `None` when they are not known here (the service checks
    /// them).
    pub fn add(&mut self, provider: impl Into<String>, currencies: Option<Vec<String>>) {
        self.providers.insert(provider.into(), currencies);
    }

    /// Every provider of a host, with the currencies its active plugin refunds.
    pub fn of_host(host: &Providers) -> Self {
        let mut catalog = Self::new();
        for (id, plugin) in host.providers() {
            catalog.add(id, Some(plugin.logic.info().currencies.clone()));
        }
        catalog
    }

    /// Why `provider` cannot be used, if it cannot.
    fn provider_problem(&self, provider: &str) -> Option<String> {
        (!self.providers.contains_key(provider)).then(|| {
            format!(
                "unknown provider {provider:?} (configured: {})",
                self.providers
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// Why `provider` cannot refund `currency`, when its currencies are known here.
    fn currency_problem(&self, provider: &str, currency: &str) -> Option<String> {
        match self.providers.get(provider) {
            Some(Some(currencies)) if !currencies.iter().any(|c| c == currency) => Some(format!(
                "{provider} does not refund {currency} (it refunds {})",
                currencies.join(", ")
            )),
            _ => None,
        }
    }
}

/// One data line of the file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The physical line it starts on (the header is line 1).
    pub line: u64,
    /// The `provider` field as written (trimmed), for the results.
    pub provider: String,
    /// The `external_refund_id` field as written (trimmed), for the results.
    pub external_refund_id: String,
    /// What the checks made of it.
    pub check: Check,
}

/// What the checks made of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// To be sent.
    Valid(NewRefund),
    /// Not to be sent, for these reasons.
    Invalid(Vec<String>),
    /// The same refund, with the same values, as the row on line `of_line`: sent once, there.
    Duplicate {
        /// The first line with this refund.
        of_line: u64,
    },
}

/// Column positions of a file's header.
struct Columns {
    count: usize,
    index: HashMap<&'static str, usize>,
}

impl Columns {
    fn parse(header: &csv::ByteRecord) -> Result<Self, BatchError> {
        let mut index = HashMap::new();
        for (i, raw) in header.iter().enumerate() {
            let name = String::from_utf8_lossy(raw);
            let known = REQUIRED_COLUMNS
                .iter()
                .chain(OPTIONAL_COLUMNS.iter())
                .find(|c| **c == name)
                .ok_or_else(|| BatchError::UnknownColumn(name.to_string()))?;
            if index.insert(*known, i).is_some() {
                return Err(BatchError::DuplicateColumn(name.to_string()));
            }
        }
        if let Some(missing) = REQUIRED_COLUMNS.iter().find(|c| !index.contains_key(*c)) {
            return Err(BatchError::MissingColumn((*missing).to_owned()));
        }
        Ok(Self {
            count: header.len(),
            index,
        })
    }

    /// The field of `column`, `""` when the file has no such column.
    fn get<'r>(&self, record: &'r csv::ByteRecord, column: &str) -> Result<&'r str, String> {
        match self.index.get(column) {
            None => Ok(""),
            Some(&i) => std::str::from_utf8(record.get(i).unwrap_or_default())
                .map_err(|_| format!("{column} is not valid UTF-8")),
        }
    }
}

/// Reads and checks a whole file. A bad row becomes [`Check::Invalid`]; only a file that cannot
/// be read as a batch at all (no header, a missing or unknown column, I/O) is an error.
pub fn read(mut input: impl Read, catalog: &Catalog) -> Result<Vec<Row>, BatchError> {
    // Held whole: the reader's position of a record that follows blank lines is the first blank
    // line's, so the physical line is found from the bytes (see `start_line`).
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(&bytes[..]);
    let mut record = csv::ByteRecord::new();
    if !reader.read_byte_record(&mut record)? {
        return Err(BatchError::Empty);
    }
    let columns = Columns::parse(&record)?;
    let mut rows = Vec::new();
    while reader.read_byte_record(&mut record)? {
        let line = record
            .position()
            .map_or(0, |p| start_line(&bytes, p.byte(), p.line()));
        // As written, for the results (even when the row is bad).
        let field = |name: &str| {
            let i = columns.index.get(name);
            let raw = i.and_then(|&i| record.get(i)).unwrap_or_default();
            String::from_utf8_lossy(raw).into_owned()
        };
        let (provider, external_refund_id) = (field("provider"), field("external_refund_id"));
        let check = if record.len() != columns.count {
            Check::Invalid(vec![format!(
                "has {} field{}, the header has {}",
                record.len(),
                if record.len() == 1 { "" } else { "s" },
                columns.count
            )])
        } else {
            match check_row(&columns, &record, catalog) {
                Ok(req) => Check::Valid(req),
                Err(problems) => Check::Invalid(problems),
            }
        };
        rows.push(Row {
            line,
            provider,
            external_refund_id,
            check,
        });
    }
    mark_duplicates(&mut rows);
    Ok(rows)
}

/// The physical line of the record the reader placed at `byte` on `line`: blank lines
/// before it (which the reader skips) are counted.
fn start_line(bytes: &[u8], byte: u64, mut line: u64) -> u64 {
    let rest = bytes.get(byte as usize..).unwrap_or_default();
    for &b in rest.iter().take_while(|b| matches!(b, b'\n' | b'\r')) {
        if b == b'\n' {
            line += 1;
        }
    }
    line
}

/// The request a row asks for, or every problem found with it.
fn check_row(
    columns: &Columns,
    record: &csv::ByteRecord,
    catalog: &Catalog,
) -> Result<NewRefund, Vec<String>> {
    let mut problems = Vec::new();
    let mut text = |name: &str| {
        columns.get(record, name).unwrap_or_else(|e| {
            problems.push(e);
            ""
        })
    };
    let provider = text("provider");
    let external_refund_id = text("external_refund_id");
    let original_transaction_id = text("original_transaction_id");
    let amount = text("amount");
    let currency = text("currency");
    let reason = text("reason");
    let original_amount = text("original_amount");
    let original_completed_at = text("original_completed_at");
    let order_id = text("order_id");

    for (name, value) in [
        ("provider", provider),
        ("external_refund_id", external_refund_id),
        ("original_transaction_id", original_transaction_id),
        ("amount", amount),
        ("currency", currency),
    ] {
        if value.is_empty() {
            problems.push(format!("{name} is empty"));
        }
    }
    if !provider.is_empty()
        && let Some(p) = catalog.provider_problem(provider)
    {
        problems.push(p);
    }
    let known_currency = money::exponent(currency).is_some();
    if !currency.is_empty() && !known_currency {
        let upper = currency.to_ascii_uppercase();
        let hint = match money::exponent(&upper) {
            Some(_) => format!("codes are upper case: {upper}"),
            None => "expected an ISO 4217 code such as KES, UGX, PEN".to_owned(),
        };
        problems.push(format!(
            "currency {currency:?} is not a currency Refundry knows ({hint})"
        ));
    }
    if known_currency && let Some(p) = catalog.currency_problem(provider, currency) {
        problems.push(p);
    }
    // Only called with a currency Refundry knows.
    let decimal = |field: &str, value: &str| -> Result<i64, String> {
        money::parse_decimal(value, currency).map_err(|e| match e {
            MoneyError::BadAmount { digits, .. } => format!(
                "{field} {value:?} is not a positive decimal with exactly {digits} decimal{} for \
                 {currency} (e.g. {})",
                if digits == 1 { "" } else { "s" },
                money::format_minor(150_000, currency)
            ),
            other => format!("{field}: {other}"),
        })
    };
    let amount_minor = match (amount.is_empty(), known_currency) {
        (false, true) => decimal("amount", amount).map_err(|e| problems.push(e)).ok(),
        _ => None,
    };
    let original = match (original_amount.is_empty(), original_completed_at.is_empty()) {
        (true, true) => None,
        (false, true) => {
            problems.push("original_amount is given without original_completed_at".into());
            None
        }
        (true, false) => {
            problems.push("original_completed_at is given without original_amount".into());
            None
        }
        (false, false) => {
            let paid = if known_currency {
                decimal("original_amount", original_amount)
                    .map_err(|e| problems.push(e))
                    .ok()
            } else {
                None
            };
            let completed_at = DateTime::parse_from_rfc3339(original_completed_at)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    problems.push(format!(
                        "original_completed_at {original_completed_at:?} is not an RFC 3339 time \
                         such as 2026-11-20T10:00:00Z ({e})"
                    ))
                })
                .ok();
            if let (Some(paid), Some(refund)) = (paid, amount_minor)
                && refund > paid
            {
                problems.push(format!(
                    "amount {amount} is more than original_amount {original_amount}"
                ));
            }
            paid.zip(completed_at)
                .map(|(amount, completed_at)| OriginalPayment {
                    amount,
                    currency: currency.to_owned(),
                    completed_at,
                    settled: None,
                })
        }
    };
    let optional = |value: &str| (!value.is_empty()).then(|| value.to_owned());
    let req = NewRefund {
        provider: provider.to_owned(),
        external_refund_id: external_refund_id.to_owned(),
        original_transaction_id: original_transaction_id.to_owned(),
        amount: amount_minor.unwrap_or_default(),
        currency: currency.to_owned(),
        reason: optional(reason),
        order_id: optional(order_id),
        original,
    };
    if problems.is_empty() {
        // The service's own rules (id lengths, control characters, reason length), the same
        // code it runs on every request.
        if let Err(e) = req.check() {
            problems.push(e.to_string());
        }
    }
    if problems.is_empty() {
        Ok(req)
    } else {
        Err(problems)
    }
}

/// Rows with the same key (provider + external refund id): identical valid ones after the first
/// become [`Check::Duplicate`]; when they differ in anything, every one of them is invalid, since
/// which one was meant cannot be told.
fn mark_duplicates(rows: &mut [Row]) {
    let mut by_key: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        if !row.external_refund_id.is_empty() {
            let key = (row.provider.clone(), row.external_refund_id.clone());
            by_key.entry(key).or_default().push(i);
        }
    }
    for indices in by_key.values().filter(|v| v.len() > 1) {
        let first = &rows[indices[0]];
        let same = indices
            .iter()
            .all(|&i| match (&rows[i].check, &first.check) {
                (Check::Valid(a), Check::Valid(b)) => a == b,
                _ => false,
            });
        if same {
            let of_line = first.line;
            for &i in &indices[1..] {
                rows[i].check = Check::Duplicate { of_line };
            }
            continue;
        }
        let lines: Vec<String> = indices.iter().map(|&i| rows[i].line.to_string()).collect();
        for &i in indices {
            let message = format!(
                "external_refund_id {:?} of {} is on lines {} with different values",
                rows[i].external_refund_id,
                rows[i].provider,
                lines.join(", ")
            );
            match &mut rows[i].check {
                Check::Invalid(problems) => problems.push(message),
                other => *other = Check::Invalid(vec![message]),
            }
        }
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowAnswer {
    /// The service has a refund for the request (new, or under a key used before).
    Refund {
        /// The refund as recorded.
        refund: Box<RefundRecord>,
        /// The first answer's outcome.
        outcome: Outcome,
        /// Whether the key was used before (a replay of the first answer).
        replayed: bool,
    },
    /// Refused before any refund was recorded (bad field, unknown provider, key reused with
    /// other parameters).
    Rejected(RowError),
    /// No usable answer: the refund may or may not exist (re-running the row is safe).
    Error(RowError),
    /// The service refused the caller (token): no later row is sent.
    Stop(RowError),
}

/// What goes wrong with a row: a snake-case code and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// `invalid_row`, the API's error code, or the refund's failure code.
    pub code: String,
    /// For people.
    pub message: String,
}

impl RowError {
    /// An error with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// Where rows are sent: the service over HTTP, or one in this process.
pub trait Submit: Send + Sync + 'static {
    /// Sends one refund request.
    fn submit(&self, req: NewRefund) -> impl Future<Output = RowAnswer> + Send;
}

/// The row error of a request that reached no provider (HTTP 503): nothing final was recorded.
pub fn not_sent_error(code: &str, message: &str) -> RowError {
    RowError::new(
        code,
        format!("{message} (nothing reached the provider: run the row again)"),
    )
}

impl Submit for RefundService {
    async fn submit(&self, req: NewRefund) -> RowAnswer {
        match self.create(req).await {
            Ok(created) if created.not_sent.is_some() => {
                let failure = created.not_sent.map(|n| n.failure).unwrap_or_default();
                RowAnswer::Error(not_sent_error(&failure.code, &failure.message))
            }
            Ok(created) => RowAnswer::Refund {
                refund: Box::new(created.refund),
                outcome: created.outcome,
                replayed: created.replayed,
            },
            Err(e) => {
                let code = match &e {
                    CreateError::UnknownProvider(_) => "unknown_provider",
                    CreateError::Invalid { .. } => "invalid_request",
                    CreateError::IdempotencyConflict { .. } => "idempotency_conflict",
                    CreateError::Internal(_) => {
                        return RowAnswer::Error(RowError::new("internal", e.to_string()));
                    }
                };
                RowAnswer::Rejected(RowError::new(code, e.to_string()))
            }
        }
    }
}

/// What became of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowOutcome {
    /// The provider took the refund now (HTTP 201).
    Created,
    /// The key was used before with the same values (an earlier run): no new refund; the row
    /// shows the refund's current status.
    Existing,
    /// Sent, the provider's answer was lost (HTTP 202): the janitor finds out; run again later.
    Unknown,
    /// Recorded as failed: refused by a pre-check or the provider (422); or, in a ledger written
    /// by an earlier version, the provider unavailable (503) or the plugin failed (500).
    Failed,
    /// Refused by the service before any refund was recorded: a bad field (400), an unknown
    /// provider (404), the key used before with other values (409), the token (401, 403).
    Rejected,
    /// The row did not pass the checks: not sent.
    Invalid,
    /// The same refund as an earlier line: not sent again.
    Duplicate,
    /// No usable answer (connection lost, timeout, unexpected answer), or nothing reached the
    /// provider (503, nothing final recorded): run again.
    Error,
    /// Not sent: the run stopped first (the service refused the token).
    NotSent,
}

impl RowOutcome {
    /// Every outcome, in the order summaries list them.
    pub const ALL: [RowOutcome; 9] = [
        RowOutcome::Created,
        RowOutcome::Existing,
        RowOutcome::Duplicate,
        RowOutcome::Unknown,
        RowOutcome::Failed,
        RowOutcome::Rejected,
        RowOutcome::Invalid,
        RowOutcome::Error,
        RowOutcome::NotSent,
    ];

    /// The word in the results file.
    pub fn as_str(self) -> &'static str {
        match self {
            RowOutcome::Created => "created",
            RowOutcome::Existing => "existing",
            RowOutcome::Unknown => "unknown",
            RowOutcome::Failed => "failed",
            RowOutcome::Rejected => "rejected",
            RowOutcome::Invalid => "invalid",
            RowOutcome::Duplicate => "duplicate",
            RowOutcome::Error => "error",
            RowOutcome::NotSent => "not_sent",
        }
    }
}

/// One line of the results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowResult {
    /// The input line.
    pub line: u64,
    /// Provider, as written.
    pub provider: String,
    /// External refund id, as written.
    pub external_refund_id: String,
    /// What became of it.
    pub outcome: RowOutcome,
    /// Refundry's refund id, when there is a refund.
    pub refund_id: Option<String>,
    /// The refund's status, when there is a refund.
    pub status: Option<Status>,
    /// What went wrong (or, for a duplicate, which line it repeats).
    pub error: Option<RowError>,
}

impl RowResult {
    /// Whether the row is done as asked: it has a refund the provider took (created now or in an
    /// earlier run), which has not failed and is not of unknown outcome.
    pub fn is_good(&self) -> bool {
        matches!(
            self.outcome,
            RowOutcome::Created | RowOutcome::Existing | RowOutcome::Duplicate
        ) && matches!(
            self.status,
            Some(Status::Pending | Status::Processed | Status::Reversed)
        )
    }

    fn of(row: &Row, outcome: RowOutcome) -> Self {
        Self {
            line: row.line,
            provider: row.provider.clone(),
            external_refund_id: row.external_refund_id.clone(),
            outcome,
            refund_id: None,
            status: None,
            error: None,
        }
    }

    fn answered(row: &Row, answer: RowAnswer) -> Self {
        let mut result = Self::of(row, RowOutcome::Error);
        match answer {
            RowAnswer::Refund {
                refund,
                outcome,
                replayed,
            } => {
                result.outcome = match (replayed, outcome) {
                    (true, _) => RowOutcome::Existing,
                    (false, Outcome::Created) => RowOutcome::Created,
                    (false, Outcome::Unknown) => RowOutcome::Unknown,
                    (false, Outcome::Refused | Outcome::Unavailable | Outcome::PluginFailed) => {
                        RowOutcome::Failed
                    }
                };
                result.error = match &refund.failure {
                    Some(f) => Some(RowError::new(&f.code, f.message.clone())),
                    None if result.outcome == RowOutcome::Failed => Some(RowError::new(
                        outcome.as_str(),
                        format!("refund {}", outcome.as_str().replace('_', " ")),
                    )),
                    None => None,
                };
                result.status = Some(refund.status);
                result.refund_id = Some(refund.id);
            }
            // A refused token: refused before anything was recorded, like a bad field.
            RowAnswer::Rejected(e) | RowAnswer::Stop(e) => {
                result.outcome = RowOutcome::Rejected;
                result.error = Some(e);
            }
            RowAnswer::Error(e) => result.error = Some(e),
        }
        result
    }
}

/// Every row's result, in input order, and why the run stopped early, if it did.
#[derive(Debug, Clone)]
pub struct Report {
    /// One per data line, in input order.
    pub results: Vec<RowResult>,
    /// Set when the service refused the caller and later rows were not sent.
    pub stopped: Option<RowError>,
}

impl Report {
    /// How many rows had each outcome (outcomes with none left out), in [`RowOutcome::ALL`]'s order.
    pub fn counts(&self) -> Vec<(RowOutcome, usize)> {
        counts(&self.results)
    }

    /// Rows that are not done as asked ([`RowResult::is_good`]).
    pub fn not_good(&self) -> usize {
        self.results.iter().filter(|r| !r.is_good()).count()
    }
}

/// How many of `results` had each outcome (outcomes with none left out).
pub fn counts<'a>(results: impl IntoIterator<Item = &'a RowResult>) -> Vec<(RowOutcome, usize)> {
    let mut by: BTreeMap<RowOutcome, usize> = BTreeMap::new();
    for r in results {
        *by.entry(r.outcome).or_default() += 1;
    }
    RowOutcome::ALL
        .into_iter()
        .filter_map(|o| by.get(&o).map(|n| (o, *n)))
        .collect()
}

/// Sends every valid row, at most `concurrency` at a time, and calls `on_result` with each
/// result as it is known (invalid rows first, before anything is sent). A [`RowAnswer::Stop`]
/// stops the run: rows not started by then are [`RowOutcome::NotSent`].
pub async fn send<S: Submit>(
    rows: &[Row],
    submit: Arc<S>,
    concurrency: usize,
    mut on_result: impl FnMut(&RowResult),
) -> Report {
    let concurrency = concurrency.max(1);
    let mut results: Vec<Option<RowResult>> = vec![None; rows.len()];
    for (i, row) in rows.iter().enumerate() {
        if let Check::Invalid(problems) = &row.check {
            let mut r = RowResult::of(row, RowOutcome::Invalid);
            r.error = Some(RowError::new("invalid_row", problems.join("; ")));
            on_result(&r);
            results[i] = Some(r);
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    let mut running: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut stopped: Option<RowError> = None;
    let mut record = |i: usize, answer: RowAnswer, stopped: &mut Option<RowError>| {
        if let RowAnswer::Stop(e) = &answer {
            stopped.get_or_insert_with(|| e.clone());
        }
        let r = RowResult::answered(&rows[i], answer);
        on_result(&r);
        results[i] = Some(r);
    };
    for (i, row) in rows.iter().enumerate() {
        let Check::Valid(req) = &row.check else {
            continue;
        };
        while tasks.len() >= concurrency {
            if let Some((j, answer)) = join_next(&mut tasks, &mut running).await {
                record(j, answer, &mut stopped);
            }
        }
        if stopped.is_some() {
            break;
        }
        let submit = submit.clone();
        let req = req.clone();
        let handle = tasks.spawn(async move { submit.submit(req).await });
        running.insert(handle.id(), i);
    }
    while let Some((j, answer)) = join_next(&mut tasks, &mut running).await {
        record(j, answer, &mut stopped);
    }
    // Rows never started (the run stopped), then duplicates, which take their first line's refund.
    let line_index: HashMap<u64, usize> =
        rows.iter().enumerate().map(|(i, r)| (r.line, i)).collect();
    for (i, row) in rows.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        let r = match &row.check {
            Check::Duplicate { of_line } => {
                let first = line_index.get(of_line).and_then(|&f| results[f].as_ref());
                let mut r = RowResult::of(row, RowOutcome::Duplicate);
                if let Some(first) = first {
                    if first.outcome == RowOutcome::NotSent {
                        r.outcome = RowOutcome::NotSent;
                    }
                    r.refund_id = first.refund_id.clone();
                    r.status = first.status;
                }
                r.error = Some(RowError::new(
                    "duplicate",
                    format!("the same refund as line {of_line}, sent once there"),
                ));
                r
            }
            _ => {
                let mut r = RowResult::of(row, RowOutcome::NotSent);
                let why = stopped.as_ref().map_or("the run stopped".to_owned(), |e| {
                    format!("the run stopped: {}: {}", e.code, e.message)
                });
                r.error = Some(RowError::new("not_sent", why));
                r
            }
        };
        on_result(&r);
        results[i] = Some(r);
    }
    Report {
        results: results
            .into_iter()
            .map(|r| r.expect("every row has a result"))
            .collect(),
        stopped,
    }
}

/// The next request to finish: its row's index and answer.
async fn join_next(
    tasks: &mut tokio::task::JoinSet<RowAnswer>,
    running: &mut HashMap<tokio::task::Id, usize>,
) -> Option<(usize, RowAnswer)> {
    let joined = tasks.join_next_with_id().await?;
    Some(match joined {
        Ok((id, answer)) => (running.remove(&id).expect("a task we started"), answer),
        Err(e) => (
            running.remove(&e.id()).expect("a task we started"),
            RowAnswer::Error(RowError::new(
                "internal",
                format!("the request task failed: {e}"),
            )),
        ),
    })
}

/// Writes the results file: a header ([`RESULT_COLUMNS`]) and one line per result; `error` is
/// `code: message`.
pub fn write_results(results: &[RowResult], out: impl Write) -> Result<(), BatchError> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(RESULT_COLUMNS)?;
    for r in results {
        let error = r
            .error
            .as_ref()
            .map(|e| format!("{}: {}", e.code, e.message))
            .unwrap_or_default();
        writer.write_record([
            r.line.to_string().as_str(),
            &r.provider,
            &r.external_refund_id,
            r.outcome.as_str(),
            r.refund_id.as_deref().unwrap_or(""),
            r.status.map_or("", Status::as_str),
            &error,
        ])?;
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const HEADER: &str =
        "provider,external_refund_id,original_transaction_id,amount,currency,reason";

    fn catalog() -> Catalog {
        let mut c = Catalog::new();
        c.add("mfs-africa", Some(vec!["KES".into(), "UGX".into()]));
        c.add("pagoefectivo", None);
        c
    }

    fn rows(text: &str) -> Vec<Row> {
        read(text.as_bytes(), &catalog()).expect("the file reads")
    }

    fn problems(row: &Row) -> String {
        match &row.check {
            Check::Invalid(p) => p.join("; "),
            other => panic!("line {} is not invalid: {other:?}", row.line),
        }
    }

    fn valid(row: &Row) -> &NewRefund {
        match &row.check {
            Check::Valid(req) => req,
            other => panic!("line {} is not valid: {other:?}", row.line),
        }
    }

    #[test]
    fn a_good_row_becomes_the_request_in_minor_units() {
        let text = "provider,external_refund_id,original_transaction_id,amount,currency,reason,\
                    original_amount,original_completed_at,order_id\n\
                    mfs-africa, r-1 ,txn-1,1500.00,KES,damaged,5000.00,2026-11-20T13:00:00+03:00,\n\
                    pagoefectivo,r-2,txn-2,12.50,PEN,,,,ORDER-2\n\
                    mfs-africa,r-3,txn-3,5000,UGX,,,,\n";
        let r = rows(text);
        assert_eq!(r.len(), 3);
        assert_eq!(
            valid(&r[0]),
            &NewRefund {
                provider: "mfs-africa".into(),
                external_refund_id: "r-1".into(),
                original_transaction_id: "txn-1".into(),
                amount: 150_000,
                currency: "KES".into(),
                reason: Some("damaged".into()),
                order_id: None,
                original: Some(OriginalPayment {
                    amount: 500_000,
                    currency: "KES".into(),
                    completed_at: "2026-11-20T10:00:00Z".parse().unwrap(),
                    settled: None,
                }),
            }
        );
        let pe = valid(&r[1]);
        assert_eq!((pe.amount, pe.reason.as_deref()), (1_250, None));
        assert_eq!(pe.order_id.as_deref(), Some("ORDER-2"));
        assert_eq!(pe.original, None);
        assert_eq!(valid(&r[2]).amount, 5_000);
        assert_eq!(r.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 3, 4]);
    }

    #[test]
    fn line_numbers_are_physical_lines() {
        // A BOM, a blank line and a quoted field over two lines.
        let text = format!(
            "\u{feff}{HEADER}\nmfs-africa,a,t,1.00,KES,x\n\nmfs-africa,b,t,1.00,KES,\"two\nlines\"\n\
             mfs-africa,c,t,1.00,KES,x\n"
        );
        let r = rows(&text);
        assert_eq!(r.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 4, 6]);
        assert_eq!(valid(&r[1]).reason.as_deref(), Some("two\nlines"));
        assert!(r.iter().all(|r| matches!(r.check, Check::Valid(_))));
    }

    #[test]
    fn every_kind_of_bad_row_is_named_with_its_reason() {
        let long = "x".repeat(129);
        let cases = [
            ("mfs-africa,a,t,1.00,KES", "has 5 fields, the header has 6"),
            (
                "mfs-africa,a,t,1.00,KES,x,extra",
                "has 7 fields, the header has 6",
            ),
            (",a,t,1.00,KES,x", "provider is empty"),
            ("mfs-africa,,t,1.00,KES,x", "external_refund_id is empty"),
            (
                "mfs-africa,a,,1.00,KES,x",
                "original_transaction_id is empty",
            ),
            ("mfs-africa,a,t,,KES,x", "amount is empty"),
            ("mfs-africa,a,t,1.00,,x", "currency is empty"),
            (
                "mfs-africa,a,t,15.5,KES,x",
                "amount \"15.5\" is not a positive decimal with exactly 2 decimals for KES",
            ),
            ("mfs-africa,a,t,1500,KES,x", "exactly 2 decimals"),
            ("mfs-africa,a,t,-1.00,KES,x", "exactly 2 decimals"),
            ("mfs-africa,a,t,0.00,KES,x", "exactly 2 decimals"),
            ("mfs-africa,a,t,\"1,000.00\",KES,x", "exactly 2 decimals"),
            ("mfs-africa,a,t,5000.00,UGX,x", "exactly 0 decimals for UGX"),
            (
                "mfs-africa,a,t,1.00,kes,x",
                "currency \"kes\" is not a currency Refundry knows (codes are upper case: KES)",
            ),
            (
                "mfs-africa,a,t,1.00,XYZ,x",
                "currency \"XYZ\" is not a currency Refundry knows (expected an ISO 4217 code",
            ),
            (
                "stripe,a,t,1.00,KES,x",
                "unknown provider \"stripe\" (configured: mfs-africa, pagoefectivo)",
            ),
            (
                "mfs-africa,a,t,1.00,PEN,x",
                "mfs-africa does not refund PEN (it refunds KES, UGX)",
            ),
            (
                &format!("mfs-africa,{long},t,1.00,KES,x"),
                "external_refund_id: must be at most 128 characters",
            ),
            ("mfs-africa,a,t,1.00,KES,\"tab\there\"", ""),
        ];
        let text: String = std::iter::once(HEADER.to_owned())
            // Each its own key, so that no two rows are duplicates of each other.
            .chain(
                cases
                    .iter()
                    .enumerate()
                    .map(|(i, (line, _))| line.replacen(",a,", &format!(",a{i},"), 1)),
            )
            .collect::<Vec<_>>()
            .join("\n");
        let r = rows(&text);
        assert_eq!(r.len(), cases.len());
        for (row, (line, want)) in r.iter().zip(cases) {
            if want.is_empty() {
                // Control characters are refused in ids only; a reason may hold a tab.
                valid(row);
                continue;
            }
            let got = problems(row);
            assert!(got.contains(want), "{line}: {got:?} lacks {want:?}");
        }
        // Line numbers follow the file.
        assert_eq!(r[0].line, 2);
        assert_eq!(r.last().unwrap().line, cases.len() as u64 + 1);
        // Several problems of one row are all reported.
        let r = rows(&format!("{HEADER}\nstripe,a,t,1.0,kes,x\n"));
        let got = problems(&r[0]);
        assert!(
            got.contains("unknown provider") && got.contains("\"kes\""),
            "{got}"
        );
    }

    #[test]
    fn the_original_payment_is_checked() {
        let header = format!("{HEADER},original_amount,original_completed_at");
        let cases = [
            (
                "50.00,",
                "original_amount is given without original_completed_at",
            ),
            (
                ",2026-11-20T10:00:00Z",
                "original_completed_at is given without original_amount",
            ),
            (
                "50.00,yesterday",
                "original_completed_at \"yesterday\" is not an RFC 3339 time",
            ),
            ("50.00,2026-11-20", "is not an RFC 3339 time"),
            (
                "50,2026-11-20T10:00:00Z",
                "original_amount \"50\" is not a positive decimal",
            ),
            (
                "0.50,2026-11-20T10:00:00Z",
                "amount 1.00 is more than original_amount 0.50",
            ),
        ];
        let text: String = std::iter::once(header)
            .chain(
                cases
                    .iter()
                    .enumerate()
                    .map(|(i, (o, _))| format!("mfs-africa,a{i},t,1.00,KES,x,{o}")),
            )
            .collect::<Vec<_>>()
            .join("\n");
        for (row, (original, want)) in rows(&text).iter().zip(cases) {
            let got = problems(row);
            assert!(got.contains(want), "{original}: {got:?} lacks {want:?}");
        }
    }

    #[test]
    fn a_key_twice_is_a_duplicate_when_identical_and_invalid_when_not() {
        let text = format!(
            "{HEADER}\n\
             mfs-africa,same,t,1.00,KES,x\n\
             mfs-africa,differs,t,1.00,KES,x\n\
             mfs-africa,same,t,1.00,KES,x\n\
             mfs-africa,differs,t,2.00,KES,x\n\
             pagoefectivo,same,t,1.00,PEN,x\n\
             mfs-africa,differs,t,3.00,kes,x\n"
        );
        let r = rows(&text);
        valid(&r[0]);
        assert_eq!(r[2].check, Check::Duplicate { of_line: 2 });
        // Another provider's key is another key.
        valid(&r[4]);
        for i in [1, 3, 5] {
            let got = problems(&r[i]);
            assert!(
                got.contains("external_refund_id \"differs\" of mfs-africa is on lines 3, 5, 7 with different values"),
                "line {}: {got}",
                r[i].line
            );
        }
        assert!(problems(&r[5]).contains("\"kes\""), "its own problem stays");
    }

    #[test]
    fn a_file_that_is_no_batch_is_an_error() {
        let err = |text: &str| read(text.as_bytes(), &catalog()).unwrap_err().to_string();
        assert!(err("").contains("the file is empty"));
        assert!(
            err("provider,external_refund_id,original_transaction_id,amount,currency\n")
                .contains("no column \"reason\"")
        );
        assert!(
            err(&format!("{HEADER},orginal_amount\n"))
                .contains("unknown column \"orginal_amount\"")
        );
        assert!(err(&format!("{HEADER},reason\n")).contains("names column \"reason\" twice"));
        // A header alone is an empty batch, not an error.
        assert!(rows(HEADER).is_empty());
    }

    #[test]
    fn a_field_that_is_not_utf8_is_a_bad_row() {
        let mut text = format!("{HEADER}\nmfs-africa,a,t,1.00,KES,").into_bytes();
        text.extend([0xff, 0xfe, b'\n']);
        let r = read(&text[..], &catalog()).unwrap();
        assert!(problems(&r[0]).contains("reason is not valid UTF-8"));
    }

    /// A service double: refunds every key once, replays it afterwards, refuses amounts of
    /// 9.99, stops at `stop_at`, and notes how many requests were in flight at most.
    #[derive(Default)]
    struct Fake {
        made: Mutex<HashMap<String, RefundRecord>>,
        sent: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        stop_at: Option<String>,
    }

    impl Submit for Fake {
        async fn submit(&self, req: NewRefund) -> RowAnswer {
            self.sent.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if self.stop_at.as_deref() == Some(req.external_refund_id.as_str()) {
                return RowAnswer::Stop(RowError::new("unauthorized", "bad token"));
            }
            let mut made = self.made.lock().unwrap();
            if let Some(refund) = made.get(&req.external_refund_id) {
                return RowAnswer::Refund {
                    refund: Box::new(refund.clone()),
                    outcome: Outcome::Created,
                    replayed: true,
                };
            }
            let refused = req.amount == 999;
            let refund = RefundRecord {
                id: format!("rf_{}", req.external_refund_id),
                provider: req.provider,
                plugin_version: "0.1.0".into(),
                plugin_sha256: "x".into(),
                external_refund_id: req.external_refund_id.clone(),
                original_transaction_id: req.original_transaction_id,
                amount: req.amount,
                currency: req.currency,
                reason: req.reason,
                order_id: req.order_id,
                status: if refused {
                    Status::Failed
                } else {
                    Status::Pending
                },
                provider_refund_id: None,
                provider_status: None,
                failure: refused.then(|| refundry_ledger::Failure {
                    code: "amount_exceeded".into(),
                    message: "too much".into(),
                    provider_code: None,
                }),
                created_at: Utc::now(),
                updated_at: Utc::now(),
            };
            made.insert(req.external_refund_id, refund.clone());
            RowAnswer::Refund {
                refund: Box::new(refund),
                outcome: if refused {
                    Outcome::Refused
                } else {
                    Outcome::Created
                },
                replayed: false,
            }
        }
    }

    fn file(n: usize) -> String {
        let mut text = HEADER.to_owned();
        for i in 0..n {
            text.push_str(&format!("\nmfs-africa,r-{i},t,1.00,KES,x"));
        }
        text
    }

    #[tokio::test]
    async fn sends_each_good_row_once_within_the_concurrency_in_input_order() {
        let mut text = file(40);
        text.push_str(
            "\nmfs-africa,bad,t,1.0,KES,x\nmfs-africa,r-3,t,1.00,KES,x\nmfs-africa,no,t,9.99,KES,x",
        );
        let r = rows(&text);
        let fake = Arc::new(Fake::default());
        let mut seen = Vec::new();
        let report = send(&r, fake.clone(), 4, |res| seen.push(res.line)).await;
        assert_eq!(
            fake.sent.load(Ordering::SeqCst),
            41,
            "40 good rows + the refused one"
        );
        assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 4);
        assert_eq!(seen.len(), 43, "every row reported once");
        assert_eq!(
            seen[0], 42,
            "the invalid row first, before anything is sent"
        );
        let lines: Vec<u64> = report.results.iter().map(|r| r.line).collect();
        assert_eq!(lines, (2..=44).collect::<Vec<_>>());
        let by_line = |line: u64| &report.results[line as usize - 2];
        assert_eq!(by_line(2).outcome, RowOutcome::Created);
        assert_eq!(by_line(2).refund_id.as_deref(), Some("rf_r-0"));
        assert_eq!(by_line(42).outcome, RowOutcome::Invalid);
        assert_eq!(by_line(42).error.as_ref().unwrap().code, "invalid_row");
        let dup = by_line(43);
        assert_eq!(
            (dup.outcome, dup.refund_id.as_deref(), dup.status),
            (RowOutcome::Duplicate, Some("rf_r-3"), Some(Status::Pending))
        );
        assert!(dup.is_good());
        let refused = by_line(44);
        assert_eq!(
            (refused.outcome, refused.status),
            (RowOutcome::Failed, Some(Status::Failed))
        );
        assert_eq!(refused.error.as_ref().unwrap().code, "amount_exceeded");
        assert_eq!(report.not_good(), 2);
        assert_eq!(
            report.counts(),
            [
                (RowOutcome::Created, 40),
                (RowOutcome::Duplicate, 1),
                (RowOutcome::Failed, 1),
                (RowOutcome::Invalid, 1)
            ]
        );

        // Again: nothing new, every row that was sent is an existing refund.
        let again = send(&r, fake.clone(), 4, |_| {}).await;
        assert_eq!(fake.made.lock().unwrap().len(), 41);
        assert!(
            again
                .results
                .iter()
                .filter(|r| r.line <= 41)
                .all(|r| r.outcome == RowOutcome::Existing && r.is_good())
        );
        let refused = &again.results[42];
        assert_eq!(
            (refused.outcome, refused.is_good()),
            (RowOutcome::Existing, false)
        );
    }

    #[tokio::test]
    async fn a_refused_token_stops_the_run() {
        let r = rows(&file(30));
        let fake = Arc::new(Fake {
            stop_at: Some("r-0".into()),
            ..Fake::default()
        });
        let report = send(&r, fake.clone(), 2, |_| {}).await;
        assert_eq!(report.stopped.as_ref().unwrap().code, "unauthorized");
        let sent = fake.sent.load(Ordering::SeqCst);
        assert!(
            sent <= 3,
            "at most what was in flight when the answer came: {sent}"
        );
        let not_sent = report
            .results
            .iter()
            .filter(|r| r.outcome == RowOutcome::NotSent)
            .count();
        assert_eq!(not_sent, 30 - sent);
        assert!(
            report.results[29]
                .error
                .as_ref()
                .unwrap()
                .message
                .contains("bad token")
        );
    }

    #[test]
    fn results_are_one_csv_line_per_row() {
        let results = [
            RowResult {
                line: 2,
                provider: "mfs-africa".into(),
                external_refund_id: "a".into(),
                outcome: RowOutcome::Created,
                refund_id: Some("rf_1".into()),
                status: Some(Status::Pending),
                error: None,
            },
            RowResult {
                line: 3,
                provider: "mfs-africa".into(),
                external_refund_id: "b,c".into(),
                outcome: RowOutcome::Invalid,
                refund_id: None,
                status: None,
                error: Some(RowError::new("invalid_row", "amount is empty")),
            },
        ];
        let mut out = Vec::new();
        write_results(&results, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "line,provider,external_refund_id,outcome,refund_id,status,error\n\
             2,mfs-africa,a,created,rf_1,pending,\n\
             3,mfs-africa,\"b,c\",invalid,,,invalid_row: amount is empty\n"
        );
    }
}
