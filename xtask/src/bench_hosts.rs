//! `cargo xtask bench-service --database postgres --hosts 1,2,3`: how `refundry serve` scales out
//! on one PostgreSQL ledger. In one run, per round:
//!
//! - the sandbox's own ceiling: the load generator straight at the provider sandbox, with the
//!   same refunds signed as the spec says (no host in between);
//! - one host on SQLite (the embedded default), as `bench-service` measures it;
//! - 1, 2, 3... hosts on a private PostgreSQL cluster (`initdb` in a temporary folder, PostgreSQL's
//!   default durability: every commit flushed), a fresh database per run, the load sent to the
//!   hosts round-robin as a load balancer would.
//!
//! The plugin is the MFS Africa component (`wasm`). Everything shares this machine's cores: the
//! load generator, the hosts, PostgreSQL and the sandbox; the table says what limits what.

use std::path::Path;

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::bench_service::{
    AMOUNT_MINOR, AMOUNT_TEXT, Args, Ledger, Mode, PROFILES, Prepared, Profile, Run, busy,
    cpu_per_refund, release_binary, run_once, sandbox_with_payments, send_prepared, summarize,
    summary_cells,
};
use crate::build;
use crate::cpu;

/// What one row of the table measured.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Setup {
    /// The load generator straight at the sandbox.
    Sandbox,
    /// One host on SQLite.
    Sqlite,
    /// This many hosts on PostgreSQL.
    Postgres(usize),
}

impl Setup {
    fn label(&self) -> String {
        match self {
            Setup::Sandbox => "sandbox alone (ceiling)".into(),
            Setup::Sqlite => "1 host, SQLite".into(),
            Setup::Postgres(1) => "1 host, PostgreSQL".into(),
            Setup::Postgres(n) => format!("{n} hosts, PostgreSQL"),
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.requests == 0 || args.concurrency == 0 || args.rounds == 0 {
        bail!("--requests, --concurrency and --rounds must be at least 1");
    }
    if args.hosts.is_empty() || args.hosts.iter().any(|&h| h == 0 || h > 16) {
        bail!("--hosts takes numbers of hosts from 1 to 16, e.g. --hosts 1,2,3");
    }
    if args.providers.iter().any(|p| p != "mfs-africa") {
        bail!(
            "--database postgres measures MFS Africa only (its sandbox ceiling is measured with \
             requests signed here)"
        );
    }
    let profile = &PROFILES[0];
    build::ensure_postgres()?;
    let bin = release_binary(args.no_build)?;
    let dir = std::env::temp_dir().join(format!("refundry-bench-hosts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cluster = refundry_pg_cluster::PgCluster::start(true)
        .context("starting a private PostgreSQL cluster")?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "bench-service --database postgres: {} measured refunds per run after {} warm-up, \
         concurrency {}, {} round(s), hosts {:?}, {cores} core(s), PostgreSQL on port {} with \
         its default durability (fsync on), SQLite with synchronous = {}",
        args.requests,
        args.warmup,
        args.concurrency,
        args.rounds,
        args.hosts,
        cluster.port(),
        args.synchronous
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut setups = vec![Setup::Sandbox, Setup::Sqlite];
    setups.extend(args.hosts.iter().map(|&h| Setup::Postgres(h)));
    let mut runs: Vec<(Setup, Run)> = Vec::new();
    for round in 0..args.rounds {
        // Alternate the order, so that drift on the machine lands on every setup alike.
        let mut order = setups.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for setup in order {
            let run = match &setup {
                Setup::Sandbox => runtime.block_on(ceiling(&bin, &dir, profile, round, &args)),
                Setup::Sqlite => {
                    let ledger = Ledger::Sqlite(args.synchronous.clone());
                    runtime.block_on(run_once(
                        &bin,
                        &dir,
                        profile,
                        Mode::Wasm,
                        round,
                        &args,
                        &ledger,
                    ))
                }
                Setup::Postgres(hosts) => {
                    let url = cluster
                        .create_database(&format!("bench_r{}_h{hosts}", round + 1))
                        .context("creating the run's database")?;
                    let ledger = Ledger::Postgres { url, hosts: *hosts };
                    runtime.block_on(run_once(
                        &bin,
                        &dir,
                        profile,
                        Mode::Wasm,
                        round,
                        &args,
                        &ledger,
                    ))
                }
            }
            .with_context(|| {
                format!(
                    "round {} {} (logs under {})",
                    round + 1,
                    setup.label(),
                    dir.display()
                )
            })?;
            run.print_progress(round, &format!("{:<26}", setup.label()));
            runs.push((setup, run));
        }
    }
    let errors = report(&setups, &runs);
    if errors > 0 {
        bail!(
            "{errors} request(s) did not answer 201: the figures above are not valid (logs under {})",
            dir.display()
        );
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Prints the table: per setup, throughput, latency, and throughput against one PostgreSQL host
/// and against the sandbox's ceiling. Returns the number of errors.
fn report(setups: &[Setup], runs: &[(Setup, Run)]) -> usize {
    let summary =
        |setup: &Setup| summarize(runs.iter().filter(|(s, _)| s == setup).map(|(_, r)| r));
    let one = summary(&Setup::Postgres(1)).throughput;
    let ceiling = summary(&Setup::Sandbox).throughput;
    println!(
        "\n| setup | runs | requests | errors | refunds/s | per run | p50 ms | p99 ms | vs 1 PostgreSQL host | of the sandbox's ceiling | cores busy | CPU ms per refund: hosts / PostgreSQL / sandbox / load generator |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut errors = 0;
    for setup in setups {
        let s = summary(setup);
        errors += s.errors;
        let versus = match setup {
            Setup::Sandbox => "-".to_owned(),
            _ if one > 0.0 => format!("{:.2}x", s.throughput / one),
            _ => "-".to_owned(),
        };
        let share = match setup {
            Setup::Sandbox => "-".to_owned(),
            _ if ceiling > 0.0 => format!("{:.0}%", 100.0 * s.throughput / ceiling),
            _ => "-".to_owned(),
        };
        let of_setup: Vec<&Run> = runs
            .iter()
            .filter(|(s, _)| s == setup)
            .map(|(_, r)| r)
            .collect();
        let split = cpu_per_refund(
            &of_setup,
            s.requests,
            &["refundry serve", "postgres", "sandbox", "load generator"],
        );
        println!(
            "| {} | {} | {versus} | {share} | {} | {split} |",
            setup.label(),
            summary_cells(&s),
            busy(&of_setup),
        );
    }
    errors
}

/// The sandbox's own ceiling: the same refunds (one seeded payment each), signed here as the
/// spec says, sent straight at the sandbox at the same concurrency.
pub(crate) async fn ceiling(
    bin: &Path,
    dir: &Path,
    profile: &Profile,
    round: usize,
    args: &Args,
) -> Result<Run> {
    let dir = dir.join(format!("{}-{}-sandbox", round + 1, profile.id));
    std::fs::create_dir_all(&dir)?;
    let env = (profile.env)();
    let var = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .with_context(|| format!("{name} is not in the profile's environment"))
    };
    let (api_key, api_secret) = (var("MFS_AFRICA_API_KEY")?, var("MFS_AFRICA_API_SECRET")?);
    let tag = format!("s{}", round + 1);
    let total = args.warmup + args.requests;
    let txn = |i: usize| format!("{tag}-txn-{i:06}");
    let (_sandbox, base_url, client) =
        sandbox_with_payments(bin, &dir, profile, &env, &txn, total, args.concurrency).await?;
    // Signed up front with one timestamp (the sandbox accepts 300 s either way), so the clock
    // measures the sandbox and not the signing.
    let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let requests: Vec<Prepared> = (0..total)
        .map(|i| {
            let body = json!({
                "original_transaction_id": txn(i),
                "refund_amount": AMOUNT_TEXT,
                "currency": profile.currency,
                "external_refund_id": format!("{tag}-r-{i:06}"),
            });
            debug_assert_eq!(AMOUNT_MINOR, 1000);
            signed(&body, &api_key, &api_secret, &timestamp)
        })
        .collect();
    let urls = [format!("{base_url}/v1/refunds")];
    let mut requests = requests;
    let measured = requests.split_off(args.warmup);
    let warm = send_prepared(&client, &urls, requests, args.concurrency).await;
    if warm.errors > 0 {
        bail!(
            "warm-up: {} failed, e.g. {}",
            warm.errors,
            warm.examples.join("; ")
        );
    }
    let before = cpu::Snapshot::take();
    let sent = send_prepared(&client, &urls, measured, args.concurrency).await;
    let cpu = before.until(&cpu::Snapshot::take());
    Ok(Run {
        provider: profile.id,
        mode: Mode::Wasm,
        latencies: sent.latencies,
        errors: sent.errors,
        elapsed: sent.elapsed,
        cpu,
        ledger: None,
    })
}

/// A create-refund request to MFS Africa, signed: `X-Signature` is the lowercase hex
/// HMAC-SHA256 of `METHOD\nPATH\nTIMESTAMP\nhex(SHA-256(body))` (the spec's request signing).
fn signed(body: &Value, api_key: &str, api_secret: &str, timestamp: &str) -> Prepared {
    let body = serde_json::to_vec(body).expect("a JSON value serializes");
    let digest = hex::encode(Sha256::digest(&body));
    let to_sign = format!("POST\n/v1/refunds\n{timestamp}\n{digest}");
    let mut mac = Hmac::<Sha256>::new_from_slice(api_secret.as_bytes()).expect("any key length");
    mac.update(to_sign.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    Prepared {
        body,
        headers: vec![
            ("x-api-key", api_key.to_owned()),
            ("x-timestamp", timestamp.to_owned()),
            ("x-signature", signature),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_signed_as_the_spec_says() {
        // Computed apart, with Python's hmac and hashlib:
        // HMAC-SHA256("secret", "POST\n/v1/refunds\n2026-11-25T10:15:30Z\n" + hex(SHA-256("{}"))).
        let p = signed(&json!({}), "key-1", "secret", "2026-11-25T10:15:30Z");
        assert_eq!(p.body, b"{}");
        assert_eq!(
            p.headers,
            vec![
                ("x-api-key", "key-1".to_owned()),
                ("x-timestamp", "2026-11-25T10:15:30Z".to_owned()),
                (
                    "x-signature",
                    "d0361ea9cc65dcd2f86e62d4c92334368b01ae37ed6b096a0cbee986e13e7a72".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn setups_name_their_hosts() {
        assert_eq!(Setup::Postgres(1).label(), "1 host, PostgreSQL");
        assert_eq!(Setup::Postgres(3).label(), "3 hosts, PostgreSQL");
        assert_eq!(Setup::Sqlite.label(), "1 host, SQLite");
    }
}
