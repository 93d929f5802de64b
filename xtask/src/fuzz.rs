//! `cargo xtask fuzz [--seconds N] [--target T]`: the cargo-fuzz targets in `fuzz/`, one after
//! the other, each for N seconds from seed corpora recorded from the sandboxes (see `seeds`).
//!
//! The targets run with libFuzzer on a nightly toolchain (installed with rustup when missing,
//! and cargo-fuzz with cargo), built `--sanitizer none` in release with debug assertions and
//! overflow checks (cargo-fuzz's default build): the code under test is safe Rust, so the
//! crashes worth finding are panics, failed assertions and overflows, not memory errors, and
//! without AddressSanitizer a target runs several times faster. The report, a table of
//! executions and crashes per target, is printed and written to `target/fuzz/report.md`, next to
//! each target's libFuzzer log; the command fails when a target crashed (its input is then in
//! `fuzz/artifacts/<target>/`).

mod seeds;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::build;

/// The fuzz targets, in the order they run.
pub const TARGETS: [&str; 5] = [
    "mfs_africa_webhook",
    "mfs_africa_answer",
    "pagoefectivo_webhook",
    "pagoefectivo_answer",
    "rest_request",
];

/// Seconds per target when `--seconds` is not given: enough for every target to pass 10
/// million executions on the project's 2-core machine (the slowest, `rest_request`, ran at
/// about 20,000 a second in the README's run).
pub const DEFAULT_SECONDS: u64 = 600;

#[derive(clap::Args)]
pub struct Args {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = DEFAULT_SECONDS)]
    seconds: u64,
    /// Only this target (default: every one).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    target: Option<String>,
}

/// What one libFuzzer run did, read from its output.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Run {
    /// Inputs executed (`stat::number_of_executed_units`, else the `Done N runs` line).
    pub executions: Option<u64>,
    /// Seconds it ran, as libFuzzer counted them (`Done N runs in S second(s)`).
    pub seconds: Option<u64>,
    /// The inputs it wrote for crashes, timeouts, leaks or running out of memory.
    pub crashes: Vec<String>,
}

/// Reads a libFuzzer log (its stderr).
pub fn parse_log(log: &str) -> Run {
    let mut run = Run::default();
    let number = |s: &str| s.trim().parse::<u64>().ok();
    for line in log.lines() {
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            run.executions = number(n).or(run.executions);
        } else if let Some(rest) = line.strip_prefix("Done ") {
            // `Done 1012009 runs in 21 second(s)`
            let mut words = rest.split_whitespace();
            let runs = words.next().and_then(number);
            let seconds = words.nth(2).and_then(number);
            run.executions = run.executions.or(runs);
            run.seconds = seconds.or(run.seconds);
        } else if let Some(at) = line.find("Test unit written to ") {
            let path = line[at + "Test unit written to ".len()..].trim();
            let name = Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let crash = ["crash-", "oom-", "timeout-", "leak-"]
                .iter()
                .any(|p| name.starts_with(p));
            if crash {
                run.crashes.push(path.to_owned());
            }
        }
    }
    run
}

/// One row of the report.
struct Row {
    target: String,
    seconds: u64,
    run: Run,
}

pub fn run(args: Args) -> Result<()> {
    ensure_nightly()?;
    ensure_cargo_fuzz()?;
    let fuzz_dir = build::root().join("fuzz");
    let out_dir = build::target_dir().join("fuzz");
    std::fs::create_dir_all(&out_dir)?;

    eprintln!("fuzz: recording seed corpora from the sandboxes");
    let counts = seeds::write(&fuzz_dir.join("corpus"))?;
    for (target, n) in &counts {
        eprintln!("fuzz: {n} seeds for {target}");
    }
    eprintln!("fuzz: building the targets (nightly, release with debug assertions, no sanitizer)");
    let status = cargo_fuzz(&fuzz_dir)
        .args(["build", "--sanitizer", "none"])
        .status()
        .context("running cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }

    let targets: Vec<&str> = match &args.target {
        Some(t) => vec![t.as_str()],
        None => TARGETS.to_vec(),
    };
    let mut rows = Vec::new();
    for target in targets {
        eprintln!("fuzz: {target} for {} s", args.seconds);
        let log_path = out_dir.join(format!("{target}.log"));
        let started = Instant::now();
        run_target(&fuzz_dir, target, args.seconds, &log_path)?;
        let log = std::fs::read_to_string(&log_path)
            .with_context(|| format!("reading {}", log_path.display()))?;
        let run = parse_log(&log);
        if run.executions.is_none() {
            bail!(
                "{target}: libFuzzer reported no executions; see {}",
                log_path.display()
            );
        }
        let seconds = run.seconds.unwrap_or(started.elapsed().as_secs());
        rows.push(Row {
            target: target.to_owned(),
            seconds,
            run,
        });
    }

    let report = report(&rows);
    println!("{report}");
    let report_path = out_dir.join("report.md");
    std::fs::write(&report_path, &report)?;
    eprintln!("fuzz: report in {}", report_path.display());
    let crashed: Vec<&Row> = rows.iter().filter(|r| !r.run.crashes.is_empty()).collect();
    if !crashed.is_empty() {
        for row in &crashed {
            for crash in &row.run.crashes {
                eprintln!("fuzz: {} crashed on {crash}", row.target);
            }
        }
        bail!("{} target(s) crashed", crashed.len());
    }
    Ok(())
}

/// `cargo +nightly fuzz` in `fuzz/`, building into `fuzz/target` whatever target directory the
/// main workspace uses (the fuzz build is instrumented: nothing there is shared).
fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut command = Command::new("cargo");
    command
        .args(["+nightly", "fuzz"])
        .current_dir(fuzz_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTUP_TOOLCHAIN");
    command
}

/// Runs one target for `seconds` from its corpus, libFuzzer's output to `log_path`.
fn run_target(fuzz_dir: &Path, target: &str, seconds: u64, log_path: &PathBuf) -> Result<()> {
    let log = std::fs::File::create(log_path)?;
    let corpus = fuzz_dir.join("corpus").join(target);
    let status = cargo_fuzz(fuzz_dir)
        .args(["run", "--sanitizer", "none", target])
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        // An input that takes a minute is a hang, and reported as one.
        .arg("-timeout=60")
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .with_context(|| format!("running cargo fuzz run {target}"))?;
    // A crash makes the run fail too; the log says which, and the caller reads it.
    if !status.success() {
        eprintln!("fuzz: {target} exited with {status}");
    }
    Ok(())
}

/// The table of a run, as Markdown.
fn report(rows: &[Row]) -> String {
    let mut out = String::from(
        "| target | seconds | executions | exec/s | crashes |\n|---|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let executions = row.run.executions.unwrap_or(0);
        let per_second = executions.checked_div(row.seconds).unwrap_or(executions);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            row.target,
            row.seconds,
            thousands(executions),
            thousands(per_second),
            row.run.crashes.len()
        ));
    }
    out
}

/// `12345678` as `12,345,678`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Installs a nightly toolchain with rustup when none is there (cargo-fuzz needs nightly).
fn ensure_nightly() -> Result<()> {
    let list = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("running rustup (the nightly toolchain is installed with it)")?;
    if String::from_utf8_lossy(&list.stdout)
        .lines()
        .any(|l| l.starts_with("nightly"))
    {
        return Ok(());
    }
    eprintln!("fuzz: installing the nightly toolchain with rustup");
    let status = Command::new("rustup")
        .args(["toolchain", "install", "nightly", "--profile", "minimal"])
        .status()
        .context("running rustup toolchain install")?;
    if !status.success() {
        bail!("rustup toolchain install nightly failed ({status})");
    }
    Ok(())
}

/// Installs cargo-fuzz with cargo when `cargo +nightly fuzz` is not there.
fn ensure_cargo_fuzz() -> Result<()> {
    let found = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Ok(());
    }
    eprintln!("fuzz: installing cargo-fuzz");
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_run() {
        let log = "\
INFO: Seed: 3506827625
#2\tINITED cov: 676 ft: 871 corp: 113/1127b exec/s: 0 rss: 99Mb
#1012009\tDONE   cov: 1204 ft: 3100 corp: 400/20Kb lim: 4096 exec/s: 48190 rss: 170Mb
Done 1012009 runs in 21 second(s)
stat::number_of_executed_units: 1012009
stat::average_exec_per_sec:     48190
stat::new_units_added:          139
";
        assert_eq!(
            parse_log(log),
            Run {
                executions: Some(1_012_009),
                seconds: Some(21),
                crashes: vec![],
            }
        );
    }

    #[test]
    fn a_crashed_run() {
        let log = "\
thread '<unnamed>' (31143) panicked at src/lib.rs:54:5:
a refund id left its path segment: /v1/refunds/.
==31143== ERROR: libFuzzer: deadly signal
MS: 2 CrossOver-CopyPart-; base unit: 2fdc12d914d66c37a0efdfbe5cd15e1f38eddf71
artifact_prefix='/w/fuzz/artifacts/mfs_africa_answer/'; Test unit written to /w/fuzz/artifacts/mfs_africa_answer/crash-1a2df994
Base64: AQABAQALAQAuIAph
stat::number_of_executed_units: 10410
stat::average_exec_per_sec:     0
";
        let run = parse_log(log);
        assert_eq!(run.executions, Some(10_410));
        assert_eq!(run.seconds, None);
        assert_eq!(
            run.crashes,
            ["/w/fuzz/artifacts/mfs_africa_answer/crash-1a2df994"]
        );
    }

    #[test]
    fn slow_units_are_no_crashes_and_nothing_is_nothing() {
        let log = "Test unit written to ./slow-unit-5f2a\nDone 7 runs in 0 second(s)\n";
        let run = parse_log(log);
        assert_eq!(run.executions, Some(7));
        assert_eq!(run.seconds, Some(0));
        assert!(run.crashes.is_empty());
        assert_eq!(parse_log(""), Run::default());
    }

    #[test]
    fn the_report_table() {
        let rows = [Row {
            target: "rest_request".into(),
            seconds: 600,
            run: Run {
                executions: Some(12_345_678),
                seconds: Some(600),
                crashes: vec![],
            },
        }];
        assert_eq!(
            report(&rows),
            "| target | seconds | executions | exec/s | crashes |\n|---|---:|---:|---:|---:|\n\
             | rest_request | 600 | 12,345,678 | 20,576 | 0 |\n"
        );
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
    }
}
