//! The runs of `cargo xtask bench-service`: refunds sent at `refundry serve` on loopback, with each
//! provider's plugin as a component (`wasm`) and, in the same run, the same plugin crate linked into
//! the host (`native`, the `native-plugins` feature). [`crate::bench_sqlite`] prints throughput,
//! p50/p99 latency, CPU and ledger writes per provider and mode, the ratio of wasm to native
//! throughput (the goal is at least 0.95), and the machine's limits; [`crate::bench_hosts`] the
//! same on PostgreSQL.
//!
//! One *run* is: a fresh sandbox for the provider (`refundry sandbox <id> --port 0`, random
//! credentials, no webhooks), one original payment seeded per refund (so no refund scans a long
//! list of earlier ones at the sandbox), a fresh `refundry serve` on a fresh database configured
//! with that one provider, `--warmup` unmeasured refunds, then `--requests` measured ones from
//! `--concurrency` clients, each `POST /v1/refunds` with its own `external_refund_id`; anything but
//! `201` is an error, and a figure with errors is reported as invalid. Every round runs both modes
//! for every provider, in the order wasm-native then native-wasm on alternate rounds, so drift on the
//! machine (other builds, thermal state) lands on both modes alike.
//!
//! Everything runs on the same machine: the load generator, the service and the sandbox share the
//! cores, as they share them in both modes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::build;
use crate::cpu;
use crate::demo::cli::random_hex;
use crate::process::{Guard, spawn_announcing};

/// Options of `cargo xtask bench-service`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Measured refunds per run (one `refundry serve` process).
    #[arg(long, default_value_t = 2000)]
    pub(crate) requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// Rounds; each runs every provider in both modes (an even number balances the order).
    #[arg(long, default_value_t = 4)]
    pub(crate) rounds: usize,
    /// Unmeasured refunds sent to each fresh service before measuring.
    #[arg(long, default_value_t = 200)]
    pub(crate) warmup: usize,
    /// Providers to measure (`mfs-africa`, `pagoefectivo`); all of them by default.
    #[arg(long = "provider")]
    pub(crate) providers: Vec<String>,
    /// Use the release `refundry` and the components already built (skip both builds).
    #[arg(long)]
    pub(crate) no_build: bool,
    /// The ledger's `[database] synchronous`: `full` (the default, every commit synced to disk)
    /// or `normal`.
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    pub(crate) synchronous: String,
    /// The ledger: `sqlite` (one host; wasm against native) or `postgres` (a private PostgreSQL
    /// cluster; `--hosts` hosts on it, next to one host on SQLite and the sandbox's own ceiling).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    pub(crate) database: String,
    /// With `--database postgres`: the numbers of hosts to measure, e.g. `1,2,3`.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub(crate) hosts: Vec<usize>,
}

/// How the service runs a provider's plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The component (`plugin = "<target/plugins/id.wasm>"`).
    Wasm,
    /// The plugin crate linked into the host (`plugin = "native:<id>"`).
    Native,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Wasm => "wasm",
            Mode::Native => "native",
        }
    }

    /// The modes of round `round`: wasm first on even rounds, native first on odd ones.
    pub(crate) fn order(round: usize) -> [Mode; 2] {
        if round.is_multiple_of(2) {
            [Mode::Wasm, Mode::Native]
        } else {
            [Mode::Native, Mode::Wasm]
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// What differs between providers: credentials, seeding, and the refund request.
pub(crate) struct Profile {
    pub(crate) id: &'static str,
    /// Environment shared by the sandbox and the service: (variable, value), random per run.
    pub(crate) env: fn() -> Vec<(&'static str, String)>,
    /// Config keys read from the environment: (key, variable, is secret).
    pub(crate) keys: &'static [(&'static str, &'static str, bool)],
    /// Control path that seeds an original payment, and the seed body for a transaction id.
    pub(crate) seed_path: &'static str,
    pub(crate) seed: fn(&str) -> Value,
    pub(crate) currency: &'static str,
    /// Whether the provider needs the merchant's order id.
    pub(crate) order_id: bool,
}

/// Every refund is 10.00; here, of an original payment of 10.00 (`bench-node` seeds larger ones).
pub(crate) const AMOUNT_MINOR: i64 = 1000;
pub(crate) const AMOUNT_TEXT: &str = "10.00";

pub(crate) const PROFILES: &[Profile] = &[
    Profile {
        id: "mfs-africa",
        env: || {
            vec![
                ("MFS_AFRICA_API_KEY", format!("bench-{}", random_hex(4))),
                ("MFS_AFRICA_API_SECRET", random_hex(32)),
                ("MFS_AFRICA_WEBHOOK_SECRET", random_hex(32)),
            ]
        },
        keys: &[
            ("api_key", "MFS_AFRICA_API_KEY", true),
            ("api_secret", "MFS_AFRICA_API_SECRET", true),
            ("webhook_secret", "MFS_AFRICA_WEBHOOK_SECRET", true),
        ],
        seed_path: "transactions",
        seed: |txn| json!({"transaction_id": txn, "amount": AMOUNT_TEXT, "currency": "KES", "settled": true}),
        currency: "KES",
        order_id: false,
    },
    Profile {
        id: "pagoefectivo",
        env: || {
            vec![
                (
                    "PAGOEFECTIVO_ID_SERVICE",
                    (1000 + rand::random::<u16>() % 9000).to_string(),
                ),
                ("PAGOEFECTIVO_ACCESS_KEY", format!("AK-{}", random_hex(4))),
                ("PAGOEFECTIVO_SECRET_KEY", random_hex(32)),
            ]
        },
        keys: &[
            ("id_service", "PAGOEFECTIVO_ID_SERVICE", false),
            ("access_key", "PAGOEFECTIVO_ACCESS_KEY", true),
            ("secret_key", "PAGOEFECTIVO_SECRET_KEY", true),
        ],
        seed_path: "payments",
        seed: |txn| json!({"transaction_id": txn, "amount": AMOUNT_TEXT, "currency": "PEN", "paid": true}),
        currency: "PEN",
        order_id: true,
    },
];

/// The release `refundry` (with the natively linked plugins) and the components: built, unless
/// `no_build` says to use those already there.
pub(crate) fn release_binary(no_build: bool) -> Result<PathBuf> {
    let bin = build::target_dir().join("release").join("refundry");
    if no_build {
        if !bin.is_file() {
            bail!("{} is missing: run without --no-build", bin.display());
        }
        return Ok(bin);
    }
    build::plugins(&[])?;
    eprintln!(
        "building refundry (release, --features native-plugins); the first time this takes about 5 minutes"
    );
    build::cargo(
        &[
            "build",
            "--release",
            "-p",
            "refundry-cli",
            "--features",
            "native-plugins",
            "--bin",
            "refundry",
        ],
        &[],
    )?;
    Ok(bin)
}

/// One measured run: one provider, one mode, its service process(es).
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) provider: &'static str,
    pub(crate) mode: Mode,
    /// Latency of every `201`, in completion order.
    pub(crate) latencies: Vec<Duration>,
    /// Requests that did not answer `201`.
    pub(crate) errors: usize,
    /// From the first request sent to the last answer read.
    pub(crate) elapsed: Duration,
    /// Where the CPU went meanwhile.
    pub(crate) cpu: cpu::Usage,
    /// The SQLite ledger's writes and commits meanwhile (from `GET /metrics`); `None` where the
    /// ledger does not count them (PostgreSQL, the sandbox alone).
    pub(crate) ledger: Option<WriteCounts>,
}

/// Writes committed to a SQLite ledger and the transactions that took them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct WriteCounts {
    pub(crate) writes: u64,
    pub(crate) commits: u64,
}

impl Run {
    /// Prints this run's line of the progress: round (from 0), `label`, throughput, p50, p99
    /// and errors.
    pub(crate) fn print_progress(&self, round: usize, label: &str) {
        let latencies = sorted(&self.latencies);
        println!(
            "  round {} {label} {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
            round + 1,
            self.throughput(),
            ms(percentile(&latencies, 50.0)),
            ms(percentile(&latencies, 99.0)),
            self.errors
        );
    }

    pub(crate) fn requests(&self) -> usize {
        self.latencies.len() + self.errors
    }

    pub(crate) fn throughput(&self) -> f64 {
        throughput(self.requests(), self.elapsed)
    }
}

/// Requests per second.
pub(crate) fn throughput(requests: usize, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        requests as f64 / elapsed.as_secs_f64()
    }
}

pub(crate) fn sorted(latencies: &[Duration]) -> Vec<Duration> {
    let mut v = latencies.to_vec();
    v.sort_unstable();
    v
}

/// The nearest-rank `p`th percentile (0 < p <= 100) of `sorted` (ascending): the smallest value
/// with at least p% of the values at or below it. `None` for no values.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub(crate) fn ms(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// Every run of one provider in one mode, taken together.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    pub(crate) runs: usize,
    pub(crate) requests: usize,
    pub(crate) errors: usize,
    /// All requests over all measured time.
    pub(crate) throughput: f64,
    /// The slowest and fastest run's throughput: how much the runs agree.
    pub(crate) throughput_min: f64,
    pub(crate) throughput_max: f64,
    /// Over the pooled latencies of every run.
    pub(crate) p50: Option<Duration>,
    pub(crate) p99: Option<Duration>,
}

pub(crate) fn summarize<'a>(runs: impl IntoIterator<Item = &'a Run>) -> Summary {
    let runs: Vec<&Run> = runs.into_iter().collect();
    let requests = runs.iter().map(|r| r.requests()).sum();
    let elapsed = runs.iter().map(|r| r.elapsed).sum();
    let each = runs.iter().map(|r| r.throughput());
    let latencies: Vec<Duration> = sorted(
        &runs
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect::<Vec<_>>(),
    );
    Summary {
        runs: runs.len(),
        requests,
        errors: runs.iter().map(|r| r.errors).sum(),
        throughput: throughput(requests, elapsed),
        throughput_min: each.clone().fold(f64::INFINITY, f64::min),
        throughput_max: each.fold(0.0, f64::max),
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
    }
}

/// The cells every table of the benches shares: runs, requests, errors, refunds/s, the per-run
/// range, p50 and p99 (ms).
pub(crate) fn summary_cells(s: &Summary) -> String {
    format!(
        "{} | {} | {} | {:.0} | {:.0}-{:.0} | {:.2} | {:.2}",
        s.runs,
        s.requests,
        s.errors,
        s.throughput,
        s.throughput_min,
        s.throughput_max,
        ms(s.p50),
        ms(s.p99)
    )
}

/// How busy the machine's cores were, averaged over `runs`.
pub(crate) fn busy(runs: &[&Run]) -> String {
    let busy = runs.iter().map(|r| r.cpu.busy).sum::<f64>() / runs.len().max(1) as f64;
    format!("{:.0}%", busy * 100.0)
}

/// CPU milliseconds per refund of each process kind in `kinds`, over `runs` (`a / b / c`).
pub(crate) fn cpu_per_refund(runs: &[&Run], requests: usize, kinds: &[&str]) -> String {
    kinds
        .iter()
        .map(|kind| {
            let total: Duration = runs.iter().filter_map(|r| r.cpu.by_kind.get(kind)).sum();
            format!("{:.2}", total.as_secs_f64() * 1e3 / requests.max(1) as f64)
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Starts `bin args` with `env`, stderr to `log`, and reads the URL it prints.
pub(crate) fn start(
    bin: &Path,
    args: &[&str],
    env: &[(&str, String)],
    log: &Path,
) -> Result<(Guard, String)> {
    let stderr =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = Command::new(bin);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(stderr);
    let what = format!("refundry {}", args.join(" "));
    spawn_announcing(&mut command, &what).with_context(|| tail(log))
}

/// The last lines of a log file, for an error message.
pub(crate) fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

pub(crate) fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Where a run's ledger is.
#[derive(Debug, Clone)]
pub(crate) enum Ledger {
    /// A fresh SQLite file in the run's folder, with this `synchronous`.
    Sqlite(String),
    /// This PostgreSQL database (fresh per run), shared by this many hosts.
    Postgres { url: String, hosts: usize },
}

/// The configuration of host `host` (from 0) of one run: its ledger, the bench token, one
/// provider. With PostgreSQL each host has a file of its own, for its own artifact cache.
pub(crate) fn write_config(
    dir: &Path,
    profile: &Profile,
    mode: Mode,
    base_url: &str,
    token: &str,
    ledger: &Ledger,
    host: usize,
) -> Result<PathBuf> {
    let id = profile.id;
    let plugin = match mode {
        Mode::Wasm => build::plugins_dir()
            .join(format!("{id}.wasm"))
            .display()
            .to_string(),
        Mode::Native => format!("native:{id}"),
    };
    let mut settings = format!("base_url = {}\n", toml_string(base_url));
    let mut secrets = String::new();
    for (key, var, secret) in profile.keys {
        let line = format!("{key} = \"env:{var}\"\n");
        if *secret {
            secrets.push_str(&line)
        } else {
            settings.push_str(&line)
        }
    }
    let (database, file) = match ledger {
        Ledger::Sqlite(synchronous) => (
            format!(
                "path = {}\nsynchronous = {}\n",
                toml_string(&dir.join("refundry.db").display().to_string()),
                toml_string(synchronous)
            ),
            "refundry.toml".to_owned(),
        ),
        Ledger::Postgres { url, .. } => (
            format!(
                "url = {}\n\n[plugins]\ncache = \"plugin-cache-{host}\"\n",
                toml_string(url)
            ),
            format!("refundry-{host}.toml"),
        ),
    };
    let toml = format!(
        "[database]\n{database}\n[server]\nlisten = \"127.0.0.1:0\"\n\n\
         [server.tokens.bench]\ntoken = {token}\nscopes = [\"refunds\", \"metrics\"]\n\n\
         [providers.{id}]\nplugin = {plugin}\n\n[providers.{id}.settings]\n{settings}\n\
         [providers.{id}.secrets]\n{secrets}",
        token = toml_string(token),
        plugin = toml_string(&plugin),
    );
    let path = dir.join(file);
    std::fs::write(&path, toml).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// One measured run; see the module documentation. With PostgreSQL, its hosts (processes of
/// `refundry serve`) share the ledger and the load, round-robin.
pub(crate) async fn run_once(
    bin: &Path,
    dir: &Path,
    profile: &Profile,
    mode: Mode,
    round: usize,
    args: &Args,
    ledger: &Ledger,
) -> Result<Run> {
    let (setup, hosts) = match ledger {
        Ledger::Sqlite(_) => ("sqlite".to_owned(), 1),
        Ledger::Postgres { hosts, .. } => (format!("postgres-{hosts}"), *hosts),
    };
    let dir = dir.join(format!("{}-{}-{}-{setup}", round + 1, profile.id, mode));
    std::fs::create_dir_all(&dir)?;
    let env = (profile.env)();
    // Ids unique per run: `b<round><w|n>-<i>`, within the providers' 64 characters of [A-Za-z0-9_-].
    let tag = format!("b{}{}", round + 1, &mode.name()[..1]);
    let total = args.warmup + args.requests;
    let txn = |i: usize| format!("{tag}-txn-{i:06}");
    let (_sandbox, base_url, client) =
        sandbox_with_payments(bin, &dir, profile, &env, &txn, total, args.concurrency).await?;

    let token = random_hex(24);
    let mut services = Vec::new();
    let mut bases = Vec::new();
    let mut urls = Vec::new();
    for host in 0..hosts.max(1) {
        let config = write_config(&dir, profile, mode, &base_url, &token, ledger, host)?;
        let config_arg = config.display().to_string();
        let (service, url) = start(
            bin,
            &["serve", "--config", &config_arg, "--listen", "127.0.0.1:0"],
            &env,
            &dir.join(format!("serve-{host}.log")),
        )?;
        services.push(service);
        urls.push(format!("{url}/v1/refunds"));
        bases.push(url);
    }
    let refunds: Vec<Value> = (0..total)
        .map(|i| {
            let mut body = json!({
                "provider": profile.id,
                "external_refund_id": format!("{tag}-r-{i:06}"),
                "original_transaction_id": txn(i),
                "amount": AMOUNT_MINOR,
                "currency": profile.currency,
            });
            if profile.order_id {
                body["order_id"] = json!(format!("{tag}-order-{i:06}"));
            }
            body
        })
        .collect();
    let auth = Some(format!("Bearer {token}"));
    let (warmup, measured) = refunds.split_at(args.warmup);
    let warm = send_all(&client, &urls, auth.as_deref(), warmup, args.concurrency).await;
    if warm.errors > 0 {
        bail!(
            "warm-up: {} of {} refunds did not answer 201, e.g. {}",
            warm.errors,
            warmup.len(),
            warm.examples.join("; ")
        );
    }
    let ledger_before = write_counts(&client, &bases, auth.as_deref()).await?;
    let before = cpu::Snapshot::take();
    let sent = send_all(&client, &urls, auth.as_deref(), measured, args.concurrency).await;
    let cpu = before.until(&cpu::Snapshot::take());
    let ledger_after = write_counts(&client, &bases, auth.as_deref()).await?;
    let ledger = ledger_before.zip(ledger_after).map(|(b, a)| WriteCounts {
        writes: a.writes.saturating_sub(b.writes),
        commits: a.commits.saturating_sub(b.commits),
    });
    if sent.errors > 0 {
        eprintln!(
            "  {} {mode}: {} error(s), e.g. {}",
            profile.id,
            sent.errors,
            sent.examples.join("; ")
        );
    }
    Ok(Run {
        provider: profile.id,
        mode,
        latencies: sent.latencies,
        errors: sent.errors,
        elapsed: sent.elapsed,
        cpu,
        ledger,
    })
}

/// The SQLite ledger's write counts, summed over the hosts' `GET /metrics`; `None` when a host
/// does not report them (a PostgreSQL ledger).
async fn write_counts(
    client: &reqwest::Client,
    bases: &[String],
    authorization: Option<&str>,
) -> Result<Option<WriteCounts>> {
    let mut sum = WriteCounts::default();
    for base in bases {
        let mut req = client.get(format!("{base}/metrics"));
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let text = req
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("GET {base}/metrics"))?
            .text()
            .await?;
        let (Some(writes), Some(commits)) = (
            sample(&text, "refundry_ledger_writes_total"),
            sample(&text, "refundry_ledger_commits_total"),
        ) else {
            return Ok(None);
        };
        sum.writes += writes;
        sum.commits += commits;
    }
    Ok(Some(sum))
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
pub(crate) fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// A fresh sandbox of `profile`'s provider (logging into `dir`), with one original payment
/// seeded per refund to come (ids `txn(0..total)`), and a client pooling `concurrency`
/// connections.
pub(crate) async fn sandbox_with_payments(
    bin: &Path,
    dir: &Path,
    profile: &Profile,
    env: &[(&str, String)],
    txn: &dyn Fn(usize) -> String,
    total: usize,
    concurrency: usize,
) -> Result<(Guard, String, reqwest::Client)> {
    let (sandbox, base_url) = start(
        bin,
        &["sandbox", profile.id, "--port", "0"],
        env,
        &dir.join("sandbox.log"),
    )?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(60))
        .build()?;
    let seeds: Vec<Value> = (0..total).map(|i| (profile.seed)(&txn(i))).collect();
    let seed_url = format!("{base_url}/_sandbox/{}", profile.seed_path);
    let seeded = send_all(&client, &[seed_url], None, &seeds, concurrency).await;
    if seeded.errors > 0 {
        bail!(
            "seeding {} original payments: {} failed, e.g. {}",
            total,
            seeded.errors,
            seeded.examples.join("; ")
        );
    }
    Ok((sandbox, base_url, client))
}

/// What [`send_all`] saw.
pub(crate) struct Sent {
    /// Latency of every `201`.
    pub(crate) latencies: Vec<Duration>,
    pub(crate) errors: usize,
    /// The first few errors, described.
    pub(crate) examples: Vec<String>,
    pub(crate) elapsed: Duration,
}

/// A request ready to send: its body and headers.
pub(crate) struct Prepared {
    pub(crate) body: Vec<u8>,
    pub(crate) headers: Vec<(&'static str, String)>,
}

/// POSTs every body in `bodies` from `concurrency` clients, request `i` to `urls[i % n]`
/// (round-robin, as a load balancer); `201` is success.
pub(crate) async fn send_all(
    client: &reqwest::Client,
    urls: &[String],
    authorization: Option<&str>,
    bodies: &[Value],
    concurrency: usize,
) -> Sent {
    // Serialized up front, so the clock measures the service and not the JSON encoder.
    let requests = bodies
        .iter()
        .map(|b| Prepared {
            body: serde_json::to_vec(b).expect("a JSON value serializes"),
            headers: authorization
                .map(|a| vec![("authorization", a.to_owned())])
                .unwrap_or_default(),
        })
        .collect();
    send_prepared(client, urls, requests, concurrency).await
}

/// [`send_all`] for requests prepared by the caller.
pub(crate) async fn send_prepared(
    client: &reqwest::Client,
    urls: &[String],
    requests: Vec<Prepared>,
    concurrency: usize,
) -> Sent {
    let bodies = Arc::new(requests);
    let urls: Arc<Vec<String>> = Arc::new(urls.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(bodies.len()) {
        let (client, urls, bodies, next) =
            (client.clone(), urls.clone(), bodies.clone(), next.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = bodies.get(i) else { break };
                let mut req = client
                    .post(&urls[i % urls.len()])
                    .header("content-type", "application/json")
                    .body(request.body.clone());
                for (name, value) in &request.headers {
                    req = req.header(*name, value);
                }
                let t0 = Instant::now();
                let outcome = match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        // Read the whole answer: the latency includes it, and the connection
                        // goes back to the pool.
                        let body = resp.bytes().await;
                        match (status, body) {
                            (201, Ok(_)) => Ok(()),
                            (s, Ok(b)) => Err(format!(
                                "{s} {}",
                                String::from_utf8_lossy(&b[..b.len().min(300)])
                            )),
                            (s, Err(e)) => Err(format!("{s}, body unreadable: {e}")),
                        }
                    }
                    Err(e) => Err(format!("no answer: {e}")),
                };
                match outcome {
                    Ok(()) => latencies.push(t0.elapsed()),
                    Err(e) => errors.push(e),
                }
            }
            (latencies, errors)
        });
    }
    let mut sent = Sent {
        latencies: Vec::with_capacity(bodies.len()),
        errors: 0,
        examples: Vec::new(),
        elapsed: Duration::ZERO,
    };
    while let Some(done) = workers.join_next().await {
        let (latencies, errors) = done.expect("a load worker does not panic");
        sent.latencies.extend(latencies);
        sent.errors += errors.len();
        let room = 3usize.saturating_sub(sent.examples.len());
        sent.examples.extend(errors.into_iter().take(room));
    }
    sent.elapsed = started.elapsed();
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&hundred, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&hundred, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(
            percentile(&hundred, 100.0),
            Some(Duration::from_millis(100))
        );
        // Ten values: the 99th percentile is the largest, the median the fifth.
        let ten = ms_list(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(percentile(&ten, 99.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&ten, 50.0), Some(Duration::from_millis(5)));
        assert_eq!(
            percentile(&ms_list(&[7]), 1.0),
            Some(Duration::from_millis(7))
        );
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_pools_latencies_and_time() {
        let run = |latencies: &[u64], errors, elapsed_ms| Run {
            cpu: Default::default(),
            ledger: None,
            provider: "p",
            mode: Mode::Wasm,
            latencies: ms_list(latencies),
            errors,
            elapsed: Duration::from_millis(elapsed_ms),
        };
        // 4 requests in 1 s, then 4 in 2 s (one an error): 8 in 3 s.
        let runs = [run(&[40, 10, 30, 20], 0, 1000), run(&[80, 60, 70], 1, 2000)];
        let s = summarize(&runs);
        assert_eq!((s.runs, s.requests, s.errors), (2, 8, 1));
        assert!((s.throughput - 8.0 / 3.0).abs() < 1e-9, "{}", s.throughput);
        assert_eq!((s.throughput_min, s.throughput_max), (2.0, 4.0));
        // Pooled and sorted: 10 20 30 40 60 70 80.
        assert_eq!(s.p50, Some(Duration::from_millis(40)));
        assert_eq!(s.p99, Some(Duration::from_millis(80)));
        assert_eq!(summarize(std::iter::empty()).p50, None);
        assert_eq!(throughput(10, Duration::ZERO), 0.0);
    }

    #[test]
    fn metrics_samples_are_read_by_their_whole_name() {
        let text = "# TYPE refundry_ledger_writes_total counter\n\
                    refundry_ledger_writes_total 40\n\
                    refundry_ledger_commits_total 12\n";
        assert_eq!(sample(text, "refundry_ledger_writes_total"), Some(40));
        assert_eq!(sample(text, "refundry_ledger_commits_total"), Some(12));
        assert_eq!(sample(text, "refundry_ledger"), None);
        assert_eq!(sample(text, "refundry_ledger_reads_total"), None);
    }

    #[test]
    fn rounds_alternate_the_order() {
        assert_eq!(Mode::order(0), [Mode::Wasm, Mode::Native]);
        assert_eq!(Mode::order(1), [Mode::Native, Mode::Wasm]);
    }

    #[test]
    fn config_names_the_plugin_per_mode() {
        let dir = std::env::temp_dir().join(format!("bench-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = &PROFILES[1];
        let native = write_config(
            &dir,
            p,
            Mode::Native,
            "http://127.0.0.1:9",
            "t".repeat(20).as_str(),
            &Ledger::Sqlite("full".into()),
            0,
        )
        .unwrap();
        let text = std::fs::read_to_string(native).unwrap();
        assert!(text.contains("plugin = \"native:pagoefectivo\""), "{text}");
        assert!(text.contains("synchronous = \"full\""), "{text}");
        assert!(
            text.contains("secret_key = \"env:PAGOEFECTIVO_SECRET_KEY\""),
            "{text}"
        );
        assert!(
            text.contains("id_service = \"env:PAGOEFECTIVO_ID_SERVICE\""),
            "{text}"
        );
        let wasm = write_config(
            &dir,
            p,
            Mode::Wasm,
            "http://127.0.0.1:9",
            "t".repeat(20).as_str(),
            &Ledger::Sqlite("full".into()),
            0,
        )
        .unwrap();
        let text = std::fs::read_to_string(wasm).unwrap();
        assert!(text.contains("pagoefectivo.wasm\""), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
