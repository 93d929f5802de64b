//! `refundry refund list --stuck AGE`: refunds not final (pending or unknown) for longer than AGE,
//! oldest first, with their age, read from the ledger (offline: no provider is called). The same
//! view as the `refundry_oldest_nonfinal_refund_age_seconds` metric and its alert.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use refundry_ledger::{Ledger, Stuck};

use super::table::{REFUND_HEADER, refund_cells};

/// Parses `--stuck`'s age: a number and a unit (`30m`, `2h`, `1d`, `1h30m`, `1.5h`, `90s`).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("expected an age such as 30m, 2h or 1d (a number and a unit: s, m, h, d, w): {e}")
    })
}

/// An age as its two largest units: `1d 4h`, `2h 13m`, `5m 3s`, `12s`.
pub fn format_age(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let parts: Vec<String> = units
        .iter()
        .scan(secs, |left, &(size, unit)| {
            let n = *left / size;
            *left %= size;
            Some((n, unit))
        })
        .skip_while(|&(n, _)| n == 0)
        .take(2)
        .filter(|&(n, _)| n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

/// Lists the refunds of `provider` (every provider's for `None`) not final for longer than `age`,
/// at most `limit`, as a table or JSON.
pub async fn run(
    ledger: &Ledger,
    json: bool,
    age: Duration,
    provider: Option<String>,
    limit: usize,
) -> Result<ExitCode> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    let stuck = ledger
        .stuck(provider, now_ms.saturating_sub(age_ms), now_ms, limit)
        .await?;
    let older_than = humantime::format_duration(age).to_string();
    if json {
        let out = serde_json::json!({
            "older_than": older_than,
            "older_than_seconds": age.as_secs(),
            "total": stuck.total,
            "refunds": stuck.refunds,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&stuck, &older_than);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(stuck: &Stuck, older_than: &str) {
    if stuck.refunds.is_empty() {
        println!("no refund has been pending or unknown for more than {older_than}");
        return;
    }
    let [id, provider, status, amount, external, created] = REFUND_HEADER;
    let header = [id, provider, status, amount, external, created, "AGE"];
    let rows: Vec<[String; 7]> = stuck
        .refunds
        .iter()
        .map(|s| {
            let [id, provider, status, amount, external, created] = refund_cells(&s.refund);
            let age = format_age(s.age_ms);
            [id, provider, status, amount, external, created, age]
        })
        .collect();
    super::table::print(header, &rows, &[3, 6]);
    let shown = stuck.refunds.len() as u64;
    let noun = if stuck.total == 1 {
        "refund"
    } else {
        "refunds"
    };
    if shown < stuck.total {
        println!(
            "{} {noun} pending or unknown for more than {older_than}; the {shown} oldest shown \
             (--limit for more)",
            stuck.total
        );
    } else {
        println!(
            "{} {noun} pending or unknown for more than {older_than}",
            stuck.total
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_their_unit() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(parse_age("2h").unwrap(), h(2));
        assert_eq!(parse_age("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_age("1d").unwrap(), h(24));
        assert_eq!(parse_age(" 1h30m ").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_age("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_age("1w").unwrap(), h(24 * 7));
        assert_eq!(parse_age("1.5h").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn bad_ages_are_refused_with_the_expected_form() {
        for bad in ["", "2", "2x", "h", "-1h", "two hours", "1h-"] {
            let e = parse_age(bad).unwrap_err();
            assert!(e.contains("such as 30m, 2h or 1d"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn ages_show_their_two_largest_units() {
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(-5), "0s");
        assert_eq!(format_age(12_400), "12s");
        assert_eq!(format_age(303_000), "5m 3s");
        assert_eq!(format_age((2 * 3600 + 13 * 60 + 59) * 1000), "2h 13m");
        assert_eq!(format_age(2 * 3600 * 1000), "2h");
        assert_eq!(format_age((86_400 + 4 * 3600 + 5) * 1000), "1d 4h");
        assert_eq!(format_age((86_400 + 5) * 1000), "1d");
    }
}
