//! `refundry batch FILE.csv`: refunds from a CSV file, through a running service (`--url`,
//! `--token`) or in this process on the configured ledger; the rows, their checks and the
//! sending are [`refundry_service::batch`]'s. This wires them to the command line: the remote
//! client, a progress bar, the results file and the exit code.
//!
//! Exit code: 0 when every data line was valid and has a refund the provider took, now or in an
//! earlier run (outcome `created`, `existing` or `duplicate`, status pending, processed or
//! reversed); 1 when any line has another outcome or status; 2 when the run could not start or
//! was stopped (unreadable file, bad header, configuration, the service unreachable or refusing
//! the token).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use refundry_api::health::Health;
use refundry_api::refunds::{REPLAYED_HEADER, RefundFailureBody};
use refundry_ledger::{Outcome, RefundRecord};
use refundry_service::batch::{
    self, Catalog, Check, Report, RowAnswer, RowError, RowOutcome, RowResult, Submit,
};
use refundry_service::refunds::{NewRefund, RefundService};
use refundry_service::{Config, Needs};
use reqwest::{Method, StatusCode, Url};

use super::client::ServiceClient;

/// At most this many requests in flight (`--concurrency`).
const MAX_CONCURRENCY: usize = 256;

/// Invalid rows printed before sending; the rest are in the results file.
const SHOWN_INVALID: usize = 20;

/// `refundry batch`.
#[derive(Args)]
pub struct BatchArgs {
    /// The CSV file: a header row, then one refund per line (columns: provider,
    /// external_refund_id, original_transaction_id, amount, currency, reason, and optionally
    /// original_amount, original_completed_at, order_id; amounts in major units, `1500.00` KES).
    file: PathBuf,
    /// Where to write the results, one line per input line (default: `<input stem>.results.csv`
    /// beside the input).
    #[arg(long)]
    results: Option<PathBuf>,
    /// Requests in flight at once (1 to 256).
    #[arg(long, default_value_t = 8, value_parser = parse_concurrency)]
    concurrency: usize,
    /// A running `refundry serve` (e.g. http://127.0.0.1:8700). Without it, the refunds are made
    /// in this process on the configured ledger (with no service running on it).
    #[arg(long, env = "REFUNDRY_URL")]
    url: Option<Url>,
    /// A bearer token with scope `refunds`, for `--url`.
    #[arg(long, env = "REFUNDRY_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

fn parse_concurrency(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_CONCURRENCY).contains(n))
        .ok_or_else(|| format!("expected an integer from 1 to {MAX_CONCURRENCY}"))
}

/// Runs a batch; see the module's exit code rule.
pub async fn run(config_path: &Path, json: bool, args: BatchArgs) -> Result<ExitCode> {
    let results_path = match &args.results {
        Some(p) => p.clone(),
        None => default_results_path(&args.file),
    };
    if same_file(&results_path, &args.file) {
        bail!(
            "the results file {} is the input file; name another with --results",
            results_path.display()
        );
    }
    let input = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let report = match &args.url {
        Some(url) => {
            let client = ServiceClient::new(url.clone(), args.token.as_deref(), "refunds")?;
            let catalog = remote_catalog(&client).await?;
            let rows = read_rows(&args.file, input, &catalog)?;
            send(&rows, Arc::new(Remote { client }), args.concurrency, json).await
        }
        None => {
            let config = Config::load_for(config_path, Needs::OneShot)?;
            if config.database.is_none() {
                eprintln!(
                    "warning: {} keeps its ledger in memory: a second run cannot tell what this \
                     one refunded (the provider may still refuse a repeated external id)",
                    config_path.display()
                );
            }
            let service = RefundService::start_with(&config, crate::start::options()).await?;
            let catalog = Catalog::of_host(service.providers());
            let rows = read_rows(&args.file, input, &catalog)?;
            send(&rows, Arc::new(service), args.concurrency, json).await
        }
    };
    write_results(&results_path, &report)?;
    Ok(summarise(json, &args.file, &results_path, &report))
}

fn default_results_path(input: &Path) -> PathBuf {
    let stem = input.file_stem().unwrap_or_default().to_string_lossy();
    input.with_file_name(format!("{stem}.results.csv"))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn read_rows(path: &Path, input: std::fs::File, catalog: &Catalog) -> Result<Vec<batch::Row>> {
    let rows = batch::read(std::io::BufReader::new(input), catalog)
        .with_context(|| format!("{}", path.display()))?;
    let invalid: Vec<_> = rows
        .iter()
        .filter_map(|r| match &r.check {
            Check::Invalid(problems) => Some((r.line, problems)),
            _ => None,
        })
        .collect();
    for (line, problems) in invalid.iter().take(SHOWN_INVALID) {
        eprintln!("line {line}: invalid, not sent: {}", problems.join("; "));
    }
    if invalid.len() > SHOWN_INVALID {
        eprintln!(
            "... and {} more invalid lines (every one is in the results file)",
            invalid.len() - SHOWN_INVALID
        );
    }
    Ok(rows)
}

/// The providers the service has (`GET /healthz`, no token needed); also tells early that the
/// service is there.
async fn remote_catalog(client: &ServiceClient) -> Result<Catalog> {
    let answer = client
        .send(Method::GET, "healthz", None, None, false)
        .await
        .context("the service does not answer")?;
    if !answer.status.is_success() {
        bail!("{} answered {}", answer.url, answer.status);
    }
    let health: Health = answer.json()?;
    let mut catalog = Catalog::new();
    for p in health.providers {
        // Which currencies each refunds is the service's to check (a 400, outcome `rejected`).
        catalog.add(p.id, None);
    }
    Ok(catalog)
}

/// Sends with a progress bar on stderr (hidden when stderr is no terminal, or with `--json`).
async fn send<S: Submit>(
    rows: &[batch::Row],
    submit: Arc<S>,
    concurrency: usize,
    json: bool,
) -> Report {
    let to_send = rows
        .iter()
        .filter(|r| matches!(r.check, Check::Valid(_)))
        .count();
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(to_send as u64), ProgressDrawTarget::stderr())
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} sent  {msg}  [{elapsed}]")
            .expect("a valid template"),
    );
    let mut seen: BTreeMap<RowOutcome, usize> = BTreeMap::new();
    let report = batch::send(rows, submit, concurrency, |r: &RowResult| {
        if !matches!(
            r.outcome,
            RowOutcome::Invalid | RowOutcome::Duplicate | RowOutcome::NotSent
        ) {
            bar.inc(1);
        }
        *seen.entry(r.outcome).or_default() += 1;
        let counts: Vec<_> = RowOutcome::ALL
            .into_iter()
            .filter_map(|o| seen.get(&o).map(|n| (o, *n)))
            .collect();
        bar.set_message(counts_text(&counts));
    })
    .await;
    bar.finish_and_clear();
    report
}

fn counts_text(counts: &[(RowOutcome, usize)]) -> String {
    counts
        .iter()
        .map(|(o, n)| format!("{n} {}", o.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes beside the target and renames at the end, so a results file is always whole.
fn write_results(path: &Path, report: &Report) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    let partial = path.with_file_name(name);
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    batch::write_results(&report.results, std::io::BufWriter::new(file))
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// The one-line summary (or a JSON object), and the exit code.
fn summarise(json: bool, input: &Path, results: &Path, report: &Report) -> ExitCode {
    let total = report.results.len();
    let not_good = report.not_good();
    let code: u8 = match (&report.stopped, not_good) {
        (Some(_), _) => 2,
        (None, 0) => 0,
        (None, _) => 1,
    };
    if json {
        let counts: serde_json::Map<String, serde_json::Value> = report
            .counts()
            .into_iter()
            .map(|(o, n)| (o.as_str().to_owned(), n.into()))
            .collect();
        let out = serde_json::json!({
            "file": input.display().to_string(),
            "rows": total,
            "counts": counts,
            "not_done": not_good,
            "stopped": report.stopped,
            "results": results.display().to_string(),
            "exit_code": code,
        });
        println!("{out}");
        return ExitCode::from(code);
    }
    let verdict = match (&report.stopped, not_good) {
        (Some(e), _) => format!("stopped ({}: {}), exit 2", e.code, e.message),
        (None, 0) => "all done, exit 0".to_owned(),
        (None, n) => format!(
            "{n} line{} not refunded as asked, exit 1",
            if n == 1 { "" } else { "s" }
        ),
    };
    println!(
        "{}: {total} line{}: {}; results in {}; {verdict}",
        input.display(),
        if total == 1 { "" } else { "s" },
        if total == 0 {
            "nothing to do".to_owned()
        } else {
            counts_text(&report.counts())
        },
        results.display()
    );
    ExitCode::from(code)
}

/// `POST /v1/refunds` on a running service.
struct Remote {
    client: ServiceClient,
}

impl Submit for Remote {
    async fn submit(&self, req: NewRefund) -> RowAnswer {
        let body = match serde_json::to_vec(&req) {
            Ok(b) => b,
            Err(e) => return RowAnswer::Error(RowError::new("internal", e.to_string())),
        };
        let sent = self
            .client
            .send(
                Method::POST,
                "v1/refunds",
                Some(body),
                Some("application/json"),
                true,
            )
            .await;
        match sent {
            Ok(answer) => read_answer(&answer),
            // The request may have reached the service: re-running the row finds out.
            Err(e) => RowAnswer::Error(RowError::new("no_answer", format!("{e:#}"))),
        }
    }
}

/// What a `POST /v1/refunds` answer says (see the API's route table).
fn read_answer(answer: &super::client::HttpAnswer) -> RowAnswer {
    let replayed = answer
        .headers
        .get(REPLAYED_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let with_refund = |outcome: Outcome, refund: RefundRecord| RowAnswer::Refund {
        refund: Box::new(refund),
        outcome,
        replayed,
    };
    let unexpected =
        |e: anyhow::Error| RowAnswer::Error(RowError::new("unexpected_answer", format!("{e:#}")));
    let status = answer.status;
    match status {
        StatusCode::CREATED | StatusCode::ACCEPTED => {
            let outcome = if status == StatusCode::CREATED {
                Outcome::Created
            } else {
                Outcome::Unknown
            };
            match answer.json::<RefundRecord>() {
                Ok(refund) => with_refund(outcome, refund),
                Err(e) => unexpected(e),
            }
        }
        StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::INTERNAL_SERVER_ERROR => {
            let outcome = match status {
                StatusCode::UNPROCESSABLE_ENTITY => Outcome::Refused,
                StatusCode::SERVICE_UNAVAILABLE => Outcome::Unavailable,
                _ => Outcome::PluginFailed,
            };
            if let Ok(failed) = serde_json::from_slice::<RefundFailureBody>(&answer.body) {
                // A 503 whose refund is not failed reached no provider: nothing final was
                // recorded, and running the row again sends it.
                if status == StatusCode::SERVICE_UNAVAILABLE
                    && failed.refund.status != refundry_ledger::Status::Failed
                {
                    return RowAnswer::Error(refundry_service::batch::not_sent_error(
                        &failed.error.code,
                        &failed.error.message,
                    ));
                }
                return with_refund(outcome, failed.refund);
            }
            // A 500 of the service itself carries no refund.
            match answer.error() {
                Ok(e) => RowAnswer::Error(RowError::new(&e.error.code, e.error.message)),
                Err(e) => unexpected(e),
            }
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => match answer.error() {
            Ok(e) => RowAnswer::Stop(RowError::new(&e.error.code, e.error.message)),
            Err(e) => RowAnswer::Stop(RowError::new("unexpected_answer", format!("{e:#}"))),
        },
        s if s.is_client_error() => match answer.error() {
            Ok(e) => RowAnswer::Rejected(RowError::new(&e.error.code, e.error.message)),
            Err(e) => unexpected(e),
        },
        _ => unexpected(anyhow::anyhow!(
            "{} answered {}: {}",
            answer.url,
            status,
            String::from_utf8_lossy(&answer.body)
        )),
    }
}
