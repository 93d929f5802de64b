//! `cargo xtask api-check`: Schemathesis against `refundry serve`, to prove that the OpenAPI
//! document says exactly what the API does.
//!
//! Installs a pinned Schemathesis into a virtual environment under `target/api-check/` (once),
//! starts both providers' sandboxes and `refundry serve` on loopback ports chosen at run time
//! (a fresh database, one random token with every scope), seeds the payment the document's
//! examples refund, and runs every phase (examples, coverage, fuzzing, stateful) with every
//! check. Schemathesis's summary is printed as it comes; any failure or error fails the command.
//!
//! The configuration (`xtask/api-check/schemathesis.toml`) bounds the number of examples so a
//! run takes a few minutes; its hooks (`xtask/api-check/hooks.py`) send real components as
//! plugin uploads.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::build;
use crate::demo::cli::{Story, mfs_africa, pagoefectivo, random_hex, start_sandbox};
use crate::demo::service::start_service;
use crate::process::Guard;

/// The Schemathesis release the check runs with: pinned, so that a new release's new checks
/// show up as a deliberate upgrade rather than as a sudden failure.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// The payment the document's example refund request refunds (`original_transaction_id`),
/// seeded at both sandboxes so that the examples phase sees a refund taken (201).
const EXAMPLE_TRANSACTION: &str = "91000042";

pub fn run() -> Result<()> {
    build::plugins(&[])?;
    let refundry = build::host_binary()?;
    let dir = build::target_dir().join("api-check");
    let st = install(&dir)?;

    let run_dir = dir.join("run");
    // A fresh ledger each run: the examples' idempotency key is then unused.
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;

    let runtime = tokio::runtime::Runtime::new()?;
    let token = random_hex(24);
    let stories = [mfs_africa(), pagoefectivo()];
    let mut env: Vec<(&str, String)> = vec![("REFUNDRY_API_CHECK_TOKEN", token.clone())];
    let mut sandboxes: Vec<(Guard, String)> = Vec::new();
    for story in &stories {
        env.extend(story.env.iter().cloned());
        // Webhooks from the sandbox are not part of this check: its callback goes nowhere.
        sandboxes.push(start_sandbox(
            &refundry,
            story.provider,
            &story.env,
            "http://127.0.0.1:9/",
        )?);
    }
    let client = reqwest::Client::new();
    for (story, (_, base_url)) in stories.iter().zip(&sandboxes) {
        runtime.block_on(story.seed_payment_as(&client, base_url, EXAMPLE_TRANSACTION))?;
    }
    let config = write_config(&run_dir, &stories, &sandboxes)?;
    // The failures worth reading are in schemathesis's report; the service says only what went
    // wrong on its side.
    let (_service, url) = start_service(&refundry, &config, &env, "error")?;
    println!("api-check: refundry serve at {url}, schemathesis against {url}/openapi.json");

    let here = build::root().join("xtask").join("api-check");
    let status = Command::new(&st)
        .arg("--config-file")
        .arg(here.join("schemathesis.toml"))
        .args(["run", &format!("{url}/openapi.json")])
        .env("SCHEMATHESIS_HOOKS", here.join("hooks.py"))
        .env("REFUNDRY_API_CHECK_PLUGINS", build::plugins_dir())
        .env("REFUNDRY_API_CHECK_TOKEN", &token)
        .current_dir(&run_dir)
        .status()
        .with_context(|| format!("running {}", st.display()))?;
    if !status.success() {
        bail!("schemathesis found failures or errors ({status}); its summary is above");
    }
    println!("api-check: the API does what its OpenAPI document says");
    Ok(())
}

/// Makes sure `dir/venv` has the pinned Schemathesis; returns its `st` command. A fresh machine
/// may lack Debian's `python3-venv` (then `python3 -m venv` fails for want of `ensurepip`): it is
/// installed with apt-get when the check runs as root, else the error says what to install.
fn install(dir: &Path) -> Result<PathBuf> {
    let venv = dir.join("venv");
    let st = venv.join("bin").join("st");
    let marker = venv.join(format!("installed-{SCHEMATHESIS}"));
    if marker.exists() && st.exists() {
        return Ok(st);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if !make_venv(&venv)? {
        eprintln!("api-check: python3 -m venv failed; installing python3-venv with apt-get");
        let _ = std::fs::remove_dir_all(&venv);
        // A fresh machine's package lists may be empty or old: read them first.
        succeed(Command::new("apt-get").arg("update")).context("apt-get update")?;
        succeed(Command::new("apt-get").args(["install", "-y", "python3-venv"])).context(
            "python3 -m venv needs Debian's python3-venv (apt-get install python3-venv)",
        )?;
        if !make_venv(&venv)? {
            bail!("python3 -m venv {} failed", venv.display());
        }
    }
    eprintln!(
        "api-check: installing {SCHEMATHESIS} into {}",
        venv.display()
    );
    succeed(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        SCHEMATHESIS,
    ]))?;
    std::fs::write(&marker, "")?;
    Ok(st)
}

/// `python3 -m venv <venv>`; whether it worked.
fn make_venv(venv: &Path) -> Result<bool> {
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .stdout(Stdio::null())
        .status()
        .context("running python3 (api-check needs Python 3 with pip)")?;
    Ok(status.success() && venv.join("bin").join("pip").exists())
}

fn succeed(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// The service's configuration: a database in `dir`, both providers against their sandboxes,
/// and one token with every scope, read from `REFUNDRY_API_CHECK_TOKEN`.
fn write_config(dir: &Path, stories: &[Story], sandboxes: &[(Guard, String)]) -> Result<PathBuf> {
    let mut toml = String::from(
        "[database]\npath = \"service.db\"\n\n\
         [server.tokens.api-check]\ntoken = \"env:REFUNDRY_API_CHECK_TOKEN\"\n\
         scopes = [\"refunds\", \"admin\", \"metrics\"]\n\n",
    );
    for (story, (_, base_url)) in stories.iter().zip(sandboxes) {
        toml.push_str(&story.provider_toml(base_url));
    }
    let path = dir.join("service.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}
