//! `refundry reconcile --provider P --from T1 --to T2`: the refunds the provider holds (its own
//! list) against the ledger, over the refunds created in `[T1, T2)`, in this process on the
//! configured ledger or through a running service (`--url`). Status differences that move a
//! refund forward are applied; everything else is reported.
//!
//! Exit codes: 0 when everything matches, 1 when anything differs, 2 when it could not run
//! (provider unreachable, plugin on contract 0.1, bad range, bad configuration).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, Utc};
use clap::Args;
use reqwest::{Method, Url};

use super::client::ServiceClient;
use refundry_ledger::{Finding, FindingSide, ReconciliationRecord, RunOutcome, Trigger};
use refundry_service::config::{Config, Needs};
use refundry_service::refunds::RefundService;

/// `refundry reconcile`.
#[derive(Args)]
pub struct ReconcileArgs {
    /// The provider, as configured.
    #[arg(long)]
    provider: String,
    /// The start of the range: refunds created at or after it. RFC 3339 (`2026-11-01T00:00:00Z`)
    /// or a UTC date (`2026-11-01`, its midnight).
    #[arg(long, value_parser = parse_instant)]
    from: DateTime<Utc>,
    /// The end of the range: refunds created before it (same forms as `--from`).
    #[arg(long, value_parser = parse_instant)]
    to: DateTime<Utc>,
    /// Print the findings as CSV (one row per finding, with a header row) instead of a table.
    #[arg(long)]
    csv: bool,
    /// A running `refundry serve` (e.g. http://127.0.0.1:8700). Without it, the run is made in
    /// this process on the configured ledger.
    #[arg(long, env = "REFUNDRY_URL")]
    url: Option<Url>,
    /// A bearer token with scope `admin`, for `--url`.
    #[arg(long, env = "REFUNDRY_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// An instant in UTC: RFC 3339, or a date at its UTC midnight.
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            format!("expected RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01): {text:?}")
        })
}

/// Runs one reconciliation; see the module's exit code rule.
pub async fn run(config_path: &Path, json: bool, args: ReconcileArgs) -> Result<ExitCode> {
    if json && args.csv {
        bail!("--json and --csv cannot be used together");
    }
    if args.from >= args.to {
        bail!("--from ({}) must be before --to ({})", args.from, args.to);
    }
    let (from_ms, to_ms) = (args.from.timestamp_millis(), args.to.timestamp_millis());
    let run = match &args.url {
        Some(url) => remote(url, args.token.as_deref(), &args.provider, &args).await?,
        None => {
            let config = Config::load_for(config_path, Needs::OneShot)?;
            let service = RefundService::start_with(&config, crate::start::options()).await?;
            service
                .reconcile(&args.provider, from_ms, to_ms, Trigger::Cli)
                .await?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else if args.csv {
        print_csv(&run)?;
    } else {
        print_table(&run);
    }
    Ok(match run.outcome {
        RunOutcome::Matched => ExitCode::SUCCESS,
        RunOutcome::Discrepancies => ExitCode::from(1),
        RunOutcome::Error => ExitCode::from(2),
    })
}

/// `POST /v1/reconciliations` on a running service.
async fn remote(
    url: &Url,
    token: Option<&str>,
    provider: &str,
    args: &ReconcileArgs,
) -> Result<ReconciliationRecord> {
    let client = ServiceClient::new(url.clone(), token, "admin")?;
    let body = serde_json::json!({
        "provider": provider,
        "from": args.from.to_rfc3339(),
        "to": args.to.to_rfc3339(),
    });
    let answer = client
        .send(
            Method::POST,
            "v1/reconciliations",
            Some(serde_json::to_vec(&body)?),
            Some("application/json"),
            true,
        )
        .await?;
    if answer.status.is_success() {
        return answer.json();
    }
    let error = answer.error()?;
    bail!(
        "{} answered {} ({}): {}",
        answer.url,
        answer.status,
        error.error.code,
        error.error.message
    )
}

fn side(s: &Option<FindingSide>) -> String {
    s.as_ref().map_or("-".to_owned(), |s| {
        format!("{} {} {}", s.status, s.amount_minor, s.currency)
    })
}

fn print_table(run: &ReconciliationRecord) {
    println!(
        "reconciliation {} of {} over [{}, {}): {} ({} at the provider, {} in the ledger)",
        run.id,
        run.provider,
        run.from.to_rfc3339(),
        run.to.to_rfc3339(),
        run.outcome.as_str(),
        run.provider_refunds,
        run.ledger_refunds
    );
    if run.findings.is_empty() {
        return;
    }
    let header = [
        "KIND",
        "REFUND",
        "EXTERNAL ID",
        "PROVIDER ID",
        "LEDGER",
        "PROVIDER",
        "APPLIED",
    ];
    let rows: Vec<[String; 7]> = run
        .findings
        .iter()
        .map(|f| {
            [
                f.kind.as_str().to_owned(),
                f.refund_id.clone().unwrap_or_else(|| "-".into()),
                f.external_refund_id.clone().unwrap_or_else(|| "-".into()),
                f.provider_refund_id.clone().unwrap_or_else(|| "-".into()),
                side(&f.ledger),
                side(&f.provider),
                if f.applied { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn print_csv(run: &ReconciliationRecord) -> Result<()> {
    let mut out = csv::Writer::from_writer(std::io::stdout().lock());
    out.write_record([
        "reconciliation_id",
        "provider",
        "kind",
        "refund_id",
        "external_refund_id",
        "provider_refund_id",
        "ledger_status",
        "ledger_amount_minor",
        "ledger_currency",
        "provider_status",
        "provider_amount_minor",
        "provider_currency",
        "applied",
        "detail",
    ])?;
    for f in &run.findings {
        out.write_record(csv_row(run, f))?;
    }
    out.flush().context("writing CSV to stdout")?;
    Ok(())
}

fn csv_row(run: &ReconciliationRecord, f: &Finding) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let cells = |s: &Option<FindingSide>| match s {
        Some(s) => [
            s.status.clone(),
            s.amount_minor.to_string(),
            s.currency.clone(),
        ],
        None => Default::default(),
    };
    let mut row = vec![
        run.id.clone(),
        run.provider.clone(),
        f.kind.as_str().to_owned(),
        opt(&f.refund_id),
        opt(&f.external_refund_id),
        opt(&f.provider_refund_id),
    ];
    row.extend(cells(&f.ledger));
    row.extend(cells(&f.provider));
    row.push(f.applied.to_string());
    row.push(f.detail.clone());
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_rfc3339_or_a_utc_date() {
        let t = parse_instant("2026-11-01T05:00:00-05:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-01T10:00:00+00:00");
        let d = parse_instant("2026-11-01").unwrap();
        assert_eq!(d.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        for bad in ["yesterday", "2026-13-01", "2026-11-01 10:00", ""] {
            assert!(parse_instant(bad).is_err(), "{bad}");
        }
    }
}
