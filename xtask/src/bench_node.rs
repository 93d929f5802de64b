//! `cargo xtask bench-node`: the create-refund call timed in the two gateways that embed a
//! plugin, the Rust one (`embed-gateway`, the component in wasmtime) and the JavaScript one
//! (`examples/node-gateway`, the component transpiled by jco and run by Node.js), with the same
//! component, against the same sandbox, through the same `bench` command of each. Prints, per
//! provider, the median over rounds of each gateway's p50, mean and p99, and node/rust.
//!
//! Per provider: one sandbox (`refundry sandbox <id> --port 0`, random credentials, no webhooks)
//! and one provider file naming the component by its absolute path, the credentials read from
//! the environment (`env:NAME`), as the sandbox got them. Each round runs the Rust gateway's
//! `bench` and then the Node gateway's, each on an original payment of its own, seeded just
//! before with room for its warm-up and its `--count` refunds: the sandboxes check only the
//! refundable balance of a payment (no count of refunds per payment), and a payment per run keeps
//! every run's refunds as few as the others'.
//!
//! Each `bench` loads the plugin once, makes one untimed warm-up refund, then times `--count`
//! refunds one after the other (a fresh plugin instance, the provider's round trip, the answer);
//! see the gateways' documentation. The gateway, the sandbox and this command share the machine.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench_service::{self, AMOUNT_MINOR, PROFILES, Profile, toml_string};
use crate::build;
use crate::demo::cli::control;

/// Options of `cargo xtask bench-node`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Timed refunds per `bench` run (after one warm-up refund).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// Rounds; each runs both gateways once per provider. The table gives the median over rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Only these gateways (`rust`, `node`); both by default.
    #[arg(long = "gateway", value_enum)]
    gateways: Vec<Gateway>,
}

/// One of the two gateways that embed a plugin.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Gateway {
    /// `embed-gateway`: the runtime, wasmtime.
    Rust,
    /// `examples/node-gateway/cli.mjs`: the component transpiled by jco, in Node.js.
    Node,
}

impl Gateway {
    const BOTH: [Gateway; 2] = [Gateway::Rust, Gateway::Node];

    fn name(self) -> &'static str {
        match self {
            Gateway::Rust => "rust",
            Gateway::Node => "node",
        }
    }

    /// The command line that starts this gateway, before its own arguments: the two are called
    /// alike from there on.
    fn program(self, embed_gateway: &Path) -> Vec<String> {
        match self {
            Gateway::Rust => vec![embed_gateway.display().to_string()],
            Gateway::Node => vec![
                "node".to_owned(),
                build::node_gateway_dir()
                    .join("cli.mjs")
                    .display()
                    .to_string(),
            ],
        }
    }
}

/// One `bench` run: the refunds it makes.
struct Bench<'a> {
    config: &'a Path,
    original_transaction_id: &'a str,
    currency: &'a str,
    count: u32,
    external_refund_id_prefix: &'a str,
    order_id: Option<&'a str>,
}

impl Bench<'_> {
    /// The gateway's arguments for this run (after its program).
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--provider-config",
            &self.config.display().to_string(),
            "bench",
            "--original-transaction-id",
            self.original_transaction_id,
            "--amount-minor",
            &AMOUNT_MINOR.to_string(),
            "--currency",
            self.currency,
            "--count",
            &self.count.to_string(),
            "--external-refund-id-prefix",
            self.external_refund_id_prefix,
        ]
        .map(str::to_owned)
        .into();
        if let Some(order_id) = self.order_id {
            args.extend(["--order-id".to_owned(), order_id.to_owned()]);
        }
        args
    }
}

/// What one `bench` run printed, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Timings {
    mean: f64,
    p50: f64,
    p99: f64,
}

impl Timings {
    /// Reads a gateway's `bench` answer; it must have timed `count` refunds.
    fn parse(answer: &Value, count: u32) -> Result<Timings> {
        let field = |name: &str| {
            answer[name]
                .as_f64()
                .with_context(|| format!("no number {name} in {answer}"))
        };
        if answer["count"] != json!(count) {
            bail!(
                "timed {} refunds instead of {count}: {answer}",
                answer["count"]
            );
        }
        Ok(Timings {
            mean: field("mean_us")?,
            p50: field("p50_us")?,
            p99: field("p99_us")?,
        })
    }
}

pub fn run(args: Args) -> Result<()> {
    let gateways: Vec<Gateway> = Gateway::BOTH
        .into_iter()
        .filter(|g| args.gateways.is_empty() || args.gateways.contains(g))
        .collect();
    let refundry = bench_service::release_binary(false)?;
    if gateways.contains(&Gateway::Node) {
        build::node_gateway()?;
    }
    build::cargo(
        &["build", "--release", "--quiet", "-p", "embed-gateway"],
        &[],
    )?;
    let embed_gateway = build::target_dir().join("release").join("embed-gateway");
    let plugins = std::path::absolute(build::plugins_dir())?;
    let dir = std::env::temp_dir().join(format!("refundry-bench-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!(
        "bench-node: {} timed refunds per run after one warm-up, {} round(s), {} core(s)",
        args.count,
        args.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    let mut tables = String::new();
    for profile in PROFILES {
        let env = (profile.env)();
        let (_sandbox, base_url) = bench_service::start(
            &refundry,
            &["sandbox", profile.id, "--port", "0"],
            &env,
            &dir.join(format!("{}-sandbox.log", profile.id)),
        )?;
        let plugin = plugins.join(format!("{}.wasm", profile.id));
        let config = provider_file(&dir, profile, &plugin, &base_url)?;
        let mut results: Vec<(Gateway, Vec<Timings>)> =
            gateways.iter().map(|&g| (g, Vec::new())).collect();
        let mut commands = Vec::new();
        for round in 1..=args.rounds {
            for (gateway, timings) in &mut results {
                let tag = format!("bn{round}{}", &gateway.name()[..1]);
                let txn = format!("{tag}-txn");
                // Room for the warm-up and every timed refund, and no more.
                let payment = (i64::from(args.count) + 1) * AMOUNT_MINOR;
                runtime
                    .block_on(seed_payment(&client, &base_url, profile, &txn, payment))
                    .with_context(|| format!("seeding {txn} at the {} sandbox", profile.id))?;
                let order_id = format!("{tag}-order");
                let bench = Bench {
                    config: &config,
                    original_transaction_id: &txn,
                    currency: profile.currency,
                    count: args.count,
                    external_refund_id_prefix: &tag,
                    order_id: profile.order_id.then_some(order_id.as_str()),
                };
                let mut argv = gateway.program(&embed_gateway);
                argv.extend(bench.args());
                let t = run_bench(&argv, &env, args.count).with_context(|| {
                    format!(
                        "round {round}, {}, {} gateway (the sandbox's log is under {})",
                        profile.id,
                        gateway.name(),
                        dir.display()
                    )
                })?;
                println!(
                    "  round {round} {:<12} {:<4}  p50 {:>8.0} µs  mean {:>8.0} µs  p99 {:>8.0} µs",
                    profile.id,
                    gateway.name(),
                    t.p50,
                    t.mean,
                    t.p99
                );
                timings.push(t);
                if round == args.rounds {
                    commands.push(argv.join(" "));
                }
            }
        }
        tables.push_str(&table(profile.id, args.count, &results));
        tables.push_str("\nThe last round's commands (credentials in the environment):\n\n");
        for command in commands {
            let _ = writeln!(tables, "    {command}");
        }
        tables.push('\n');
    }
    print!("\n{tables}");
    let mut invocation = format!(
        "cargo xtask bench-node --count {} --rounds {}",
        args.count, args.rounds
    );
    if gateways.len() == 1 {
        let _ = write!(invocation, " --gateway {}", gateways[0].name());
    }
    println!("Measured with: `{invocation}`");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Seeds the original payment `txn` of `amount_minor` at the sandbox, paid or settled.
async fn seed_payment(
    client: &reqwest::Client,
    base_url: &str,
    profile: &Profile,
    txn: &str,
    amount_minor: i64,
) -> Result<()> {
    let mut body = (profile.seed)(txn);
    body["amount"] = json!(major_units(amount_minor));
    let url = format!("{base_url}/_sandbox/{}", profile.seed_path);
    control(client, url, body).await.map(|_| ())
}

/// Runs one `bench` (`argv`: program and arguments) with `env` added; its timings, or what went
/// wrong with its exit code, stdout and stderr.
fn run_bench(argv: &[String], env: &[(&str, String)], count: u32) -> Result<Timings> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(build::root())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .with_context(|| format!("starting {}", argv[0]))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr: Vec<&str> = stderr.lines().collect();
        bail!(
            "`{}` failed ({}):\n{}\n{}",
            argv.join(" "),
            out.status,
            stdout.trim(),
            stderr[stderr.len().saturating_sub(20)..].join("\n")
        );
    }
    let answer: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("`{}` printed no JSON: {stdout}", argv.join(" ")))?;
    Timings::parse(&answer, count)
}

/// The provider file both gateways read: the component by its absolute path, the sandbox's URL,
/// and every credential as `env:NAME` (the secrets under `[secrets]`).
fn provider_file(dir: &Path, profile: &Profile, plugin: &Path, base_url: &str) -> Result<PathBuf> {
    let mut settings = format!("base_url = {}\n", toml_string(base_url));
    let mut secrets = String::new();
    for (key, var, secret) in profile.keys {
        let line = format!("{key} = \"env:{var}\"\n");
        if *secret { &mut secrets } else { &mut settings }.push_str(&line);
    }
    let text = format!(
        "plugin = {}\n\n[settings]\n{settings}\n[secrets]\n{secrets}",
        toml_string(&plugin.display().to_string())
    );
    let path = dir.join(format!("{}.toml", profile.id));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `minor` as the sandboxes write an amount of a currency with two minor digits (KES, PEN).
fn major_units(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// The median: the middle value, or the mean of the two middle ones.
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n.is_multiple_of(2) {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    } else {
        v[n / 2]
    }
}

/// One provider's markdown table: per gateway the median over rounds of its p50, mean and p99,
/// and for Node both ratios to Rust.
fn table(provider: &str, count: u32, results: &[(Gateway, Vec<Timings>)]) -> String {
    let medians = |runs: &[Timings]| {
        let of = |f: fn(&Timings) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        Timings {
            mean: of(|t| t.mean),
            p50: of(|t| t.p50),
            p99: of(|t| t.p99),
        }
    };
    let rounds = results.first().map_or(0, |(_, runs)| runs.len());
    let mut out = format!(
        "### {provider}: {count} refunds per run, median of {rounds} round(s)\n\n\
         | gateway | p50 µs | mean µs | p99 µs | node/rust |\n\
         |---|---:|---:|---:|---|\n"
    );
    let rust = results
        .iter()
        .find(|(g, _)| *g == Gateway::Rust)
        .map(|(_, runs)| medians(runs));
    for (gateway, runs) in results {
        let m = medians(runs);
        let ratio = match (gateway, rust) {
            (Gateway::Node, Some(rust)) => format!(
                "p50 {:.2}×, mean {:.2}×",
                m.p50 / rust.p50,
                m.mean / rust.mean
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.0} | {ratio} |",
            gateway.name(),
            m.p50,
            m.mean,
            m.p99
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings(p50: f64, mean: f64, p99: f64) -> Timings {
        Timings { mean, p50, p99 }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn the_table_gives_medians_and_node_over_rust() {
        let results = [
            (
                Gateway::Rust,
                vec![
                    timings(100.0, 110.0, 300.0),
                    timings(90.0, 100.0, 200.0),
                    timings(500.0, 600.0, 900.0),
                ],
            ),
            (
                Gateway::Node,
                vec![
                    timings(150.0, 200.0, 400.0),
                    timings(200.0, 220.0, 500.0),
                    timings(250.0, 210.0, 450.0),
                ],
            ),
        ];
        let text = table("mfs-africa", 300, &results);
        assert!(
            text.starts_with("### mfs-africa: 300 refunds per run, median of 3 round(s)"),
            "{text}"
        );
        assert!(text.contains("| rust | 100 | 110 | 300 |  |\n"), "{text}");
        assert!(
            text.contains("| node | 200 | 210 | 450 | p50 2.00×, mean 1.91× |\n"),
            "{text}"
        );
        // One gateway alone: no ratio.
        let text = table("pagoefectivo", 5, &results[1..]);
        assert!(text.contains("| node | 200 | 210 | 450 |  |\n"), "{text}");
    }

    #[test]
    fn both_gateways_take_the_same_arguments() {
        let config = Path::new("/tmp/pagoefectivo.toml");
        let bench = Bench {
            config,
            original_transaction_id: "bn1r-txn",
            currency: "PEN",
            count: 300,
            external_refund_id_prefix: "bn1r",
            order_id: Some("bn1r-order"),
        };
        let args = bench.args().join(" ");
        assert_eq!(
            args,
            "--provider-config /tmp/pagoefectivo.toml bench --original-transaction-id bn1r-txn \
             --amount-minor 1000 --currency PEN --count 300 --external-refund-id-prefix bn1r \
             --order-id bn1r-order"
        );
        let rust = Gateway::Rust.program(Path::new("/t/release/embed-gateway"));
        assert_eq!(rust, ["/t/release/embed-gateway"]);
        let node = Gateway::Node.program(Path::new("/t/release/embed-gateway"));
        assert_eq!(node[0], "node");
        assert!(
            node[1].ends_with("examples/node-gateway/cli.mjs"),
            "{node:?}"
        );
    }

    #[test]
    fn an_answer_must_be_the_timings_of_every_refund() {
        let answer = json!({"count": 5, "mean_us": 2.5, "p50_us": 2.0, "p99_us": 4.0,
                            "min_us": 1.0, "max_us": 4.0});
        assert_eq!(Timings::parse(&answer, 5).unwrap(), timings(2.0, 2.5, 4.0));
        assert!(Timings::parse(&answer, 6).is_err());
        assert!(Timings::parse(&json!({"count": 5}), 5).is_err());
    }

    #[test]
    fn the_provider_file_reads_credentials_from_the_environment() {
        let dir = std::env::temp_dir().join(format!("bench-node-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plugin = Path::new("/abs/plugins/pagoefectivo.wasm");
        let path = provider_file(&dir, &PROFILES[1], plugin, "http://127.0.0.1:9").unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let (settings, secrets) = text.split_once("[secrets]").unwrap();
        assert!(
            settings.starts_with("plugin = \"/abs/plugins/pagoefectivo.wasm\"\n"),
            "{text}"
        );
        assert!(
            settings.contains("base_url = \"http://127.0.0.1:9\"\n"),
            "{text}"
        );
        assert!(
            settings.contains("id_service = \"env:PAGOEFECTIVO_ID_SERVICE\"\n"),
            "{text}"
        );
        assert!(
            secrets.contains("secret_key = \"env:PAGOEFECTIVO_SECRET_KEY\"\n"),
            "{text}"
        );
        assert_eq!(major_units(301_000), "3010.00");
        assert_eq!(major_units(5), "0.05");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
