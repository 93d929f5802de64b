//! `cargo xtask bench-service` (the SQLite ledger): the rounds of wasm against native per
//! provider ([`crate::bench_service`] runs each), and in the same run the limits of this
//! machine: the SQLite commit rate with the ledger's settings, and the MFS Africa sandbox's own
//! ceiling ([`crate::bench_hosts::ceiling`]).

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::bench_hosts::ceiling;
use crate::bench_service::{
    Args, Ledger, Mode, PROFILES, Profile, Run, WriteCounts, busy, cpu_per_refund, ms,
    release_binary, run_once, summarize, summary_cells,
};

pub fn run(args: Args) -> Result<()> {
    if args.requests == 0 || args.concurrency == 0 || args.rounds == 0 {
        bail!("--requests, --concurrency and --rounds must be at least 1");
    }
    let profiles: Vec<&Profile> = if args.providers.is_empty() {
        PROFILES.iter().collect()
    } else {
        args.providers
            .iter()
            .map(|p| {
                PROFILES.iter().find(|x| x.id == p).with_context(|| {
                    format!("unknown provider {p:?} (known: mfs-africa, pagoefectivo)")
                })
            })
            .collect::<Result<_>>()?
    };
    let bin = release_binary(args.no_build)?;
    let dir = std::env::temp_dir().join(format!("refundry-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!(
        "bench-service: {} measured refunds per run after {} warm-up, concurrency {}, {} round(s), synchronous = {}, {} core(s)",
        args.requests,
        args.warmup,
        args.concurrency,
        args.rounds,
        args.synchronous,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // One thread for the load generator: it needs far less than the service, and leaves the
    // other core(s) to the service and the sandbox.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ledger = Ledger::Sqlite(args.synchronous.clone());
    // The limits, measured in this run: the commit rate first, on an idle machine.
    let commit_rate = crate::commit_rate::measure(&dir, &args.synchronous, Duration::from_secs(3))
        .context("measuring the SQLite commit rate")?;
    println!(
        "  SQLite commit rate (WAL, synchronous = {}, one row per commit): {commit_rate:.0} commits/s",
        args.synchronous
    );
    // The sandbox's own ceiling is measured for MFS Africa (its requests are signed here).
    let ceiling_of = profiles.iter().find(|p| p.id == "mfs-africa").copied();
    let mut runs: Vec<Run> = Vec::new();
    let mut ceilings: Vec<Run> = Vec::new();
    for round in 0..args.rounds {
        let measure_ceiling = |ceilings: &mut Vec<Run>| -> Result<()> {
            if let Some(profile) = ceiling_of {
                let run = runtime
                    .block_on(ceiling(&bin, &dir, profile, round, &args))
                    .with_context(|| format!("round {} sandbox ceiling", round + 1))?;
                run.print_progress(round, &format!("{:<12} {:<6}", profile.id, "alone"));
                ceilings.push(run);
            }
            Ok(())
        };
        if round.is_multiple_of(2) {
            measure_ceiling(&mut ceilings)?;
        }
        for profile in &profiles {
            for mode in Mode::order(round) {
                let run = runtime
                    .block_on(run_once(&bin, &dir, profile, mode, round, &args, &ledger))
                    .with_context(|| {
                        format!(
                            "round {} {} {mode} (logs under {})",
                            round + 1,
                            profile.id,
                            dir.display()
                        )
                    })?;
                run.print_progress(round, &format!("{:<12} {mode:<6}", profile.id));
                runs.push(run);
            }
        }
        if !round.is_multiple_of(2) {
            measure_ceiling(&mut ceilings)?;
        }
    }
    let errors = report(&profiles, &runs);
    limits(&args, &profiles, commit_rate, &runs, &ceilings);
    let errors = errors + ceilings.iter().map(|r| r.errors).sum::<usize>();
    if errors > 0 {
        bail!(
            "{errors} request(s) did not answer 201: the figures above are not valid (logs under {})",
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Prints the table and the wasm/native ratios; returns the number of errors.
fn report(profiles: &[&Profile], runs: &[Run]) -> usize {
    println!(
        "\n| provider | mode | runs | requests | errors | refunds/s | per run | p50 ms | p99 ms | cores busy | CPU ms per refund: serve / sandbox / load generator | ledger writes / commits per refund |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut errors = 0;
    let mut ratios = Vec::new();
    for profile in profiles {
        let mut by_mode = Vec::new();
        for mode in [Mode::Wasm, Mode::Native] {
            let of = runs_of(runs, profile.id, mode);
            let s = summarize(of.iter().copied());
            println!(
                "| {} | {mode} | {} | {} | {} | {} |",
                profile.id,
                summary_cells(&s),
                busy(&of),
                cpu_per_refund(
                    &of,
                    s.requests,
                    &["refundry serve", "sandbox", "load generator"]
                ),
                ledger_per_refund(&of, s.requests),
            );
            errors += s.errors;
            by_mode.push(s);
        }
        ratios.push((profile.id, by_mode[0].throughput / by_mode[1].throughput));
    }
    println!();
    for (id, ratio) in ratios {
        println!(
            "{id}: wasm/native throughput {ratio:.3} ({} the goal of {RATIO_GOAL})",
            if ratio >= RATIO_GOAL {
                "meets"
            } else {
                "below"
            }
        );
    }
    errors
}

/// The share of native throughput the wasm plugins must reach.
const RATIO_GOAL: f64 = 0.95;

/// The ledger's writes and commits per refund over `runs` (`-` where not counted).
fn ledger_per_refund(runs: &[&Run], requests: usize) -> String {
    let counts: Option<Vec<WriteCounts>> = runs.iter().map(|r| r.ledger).collect();
    match counts {
        Some(c) if !c.is_empty() => {
            let per = |n: u64| n as f64 / requests.max(1) as f64;
            let (writes, commits) = c
                .iter()
                .fold((0, 0), |(w, k), x| (w + x.writes, k + x.commits));
            format!("{:.2} / {:.2}", per(writes), per(commits))
        }
        _ => "-".into(),
    }
}

/// The runs of `provider` in `mode`.
fn runs_of<'a>(runs: &'a [Run], provider: &str, mode: Mode) -> Vec<&'a Run> {
    runs.iter()
        .filter(|r| r.provider == provider && r.mode == mode)
        .collect()
}

/// The most refunds per second `cores` cores could make if every refund cost `cpu / requests`
/// of CPU (the service's, the sandbox's and the load generator's together) and nothing else
/// ran: an upper bound, as the cores are never all busy. `None` with nothing to divide.
fn cpu_ceiling(cores: usize, cpu: Duration, requests: usize) -> Option<f64> {
    if cores == 0 || requests == 0 || cpu.is_zero() {
        return None;
    }
    Some(cores as f64 * requests as f64 / cpu.as_secs_f64())
}

/// Prints what this machine allows, measured in the same run: the SQLite commit rate (and what
/// committing each write alone would cap the service at), the CPU (what the cores allow at the
/// CPU each refund cost), and the sandbox's own ceiling.
fn limits(args: &Args, profiles: &[&Profile], commit_rate: f64, runs: &[Run], ceilings: &[Run]) {
    println!("\nLimits of this machine, measured in this run:");
    let counted: Vec<WriteCounts> = runs.iter().filter_map(|r| r.ledger).collect();
    let requests: usize = runs
        .iter()
        .filter(|r| r.ledger.is_some())
        .map(Run::requests)
        .sum();
    let writes: u64 = counted.iter().map(|c| c.writes).sum();
    let commits: u64 = counted.iter().map(|c| c.commits).sum();
    println!(
        "- SQLite: {commit_rate:.0} commits/s with the ledger's settings (WAL, synchronous = {})",
        args.synchronous
    );
    if requests > 0 && writes > 0 {
        let per_refund = writes as f64 / requests as f64;
        println!(
            "  the service wrote {per_refund:.2} times per refund, in {:.2} commits (group commit: {:.1} writes per commit); \
             one commit per write would cap it at {:.0} refunds/s",
            commits as f64 / requests as f64,
            writes as f64 / commits.max(1) as f64,
            commit_rate / per_refund
        );
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    for (provider, mode) in profiles
        .iter()
        .flat_map(|p| [Mode::Wasm, Mode::Native].map(|m| (p.id, m)))
    {
        let of = runs_of(runs, provider, mode);
        let s = summarize(of.iter().copied());
        let cpu: Duration = of.iter().flat_map(|r| r.cpu.by_kind.values()).sum();
        if let Some(most) = cpu_ceiling(cores, cpu, s.requests) {
            println!(
                "- the CPU, {provider} {mode}: the service, the sandbox and the load generator took {:.2} ms of CPU \
                 per refund in all; at that cost {cores} core(s) allow at most {most:.0} refunds/s, and the runs made \
                 {:.0} ({:.0}% of it)",
                cpu.as_secs_f64() * 1e3 / s.requests as f64,
                s.throughput,
                100.0 * s.throughput / most
            );
        }
    }
    if !ceilings.is_empty() {
        let s = summarize(ceilings);
        let service = summarize(runs_of(runs, "mfs-africa", Mode::Wasm));
        let of: Vec<&Run> = ceilings.iter().collect();
        println!(
            "- the MFS Africa sandbox alone (the load generator straight at it, same refunds, same concurrency): \
             {:.0} refunds/s, p50 {:.2} ms, p99 {:.2} ms, cores busy {}, CPU ms per refund: sandbox / load generator {}",
            s.throughput,
            ms(s.p50),
            ms(s.p99),
            busy(&of),
            cpu_per_refund(&of, s.requests, &["sandbox", "load generator"]),
        );
        if s.throughput > 0.0 && service.requests > 0 {
            println!(
                "  refundry serve (wasm) in front of it reached {:.0}% of that",
                100.0 * service.throughput / s.throughput
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_ceiling_is_the_cores_over_the_cpu_per_refund() {
        // 0.5 ms of CPU per refund on 2 cores: 4,000 refunds/s at most.
        let ceiling = cpu_ceiling(2, Duration::from_millis(1_000), 2_000).unwrap();
        assert!((ceiling - 4_000.0).abs() < 1e-6, "{ceiling}");
        let one_core = cpu_ceiling(1, Duration::from_millis(1_000), 2_000).unwrap();
        assert!((one_core - 2_000.0).abs() < 1e-6, "{one_core}");
    }

    #[test]
    fn no_cpu_ceiling_without_cores_refunds_or_cpu() {
        assert_eq!(cpu_ceiling(0, Duration::from_secs(1), 10), None);
        assert_eq!(cpu_ceiling(2, Duration::from_secs(1), 0), None);
        assert_eq!(cpu_ceiling(2, Duration::ZERO, 10), None);
    }
}
