//! `cargo xtask bench-extism`: Refundry's components against the same providers built as an
//! Extism plugin, in one criterion run (`bench/extism/`: what it measures is in its README).
//!
//! Builds the four components the bench loads (as `build-plugins` does, the wasm target installed
//! first when missing), then the Extism plugin for `wasm32-unknown-unknown` with the components'
//! `plugin` profile, then runs `cargo bench` in the Extism workspace, the arguments going to
//! criterion: `cargo xtask bench-extism -- --warm-up-time 2 --measurement-time 5`.
//!
//! `bench/extism` is a cargo workspace of its own, so that Extism and its wasmtime never enter the
//! product's or the tests' build. It builds in its own target folder (`bench/extism/target`), also
//! when `CARGO_TARGET_DIR` is set: sharing the main workspace's folder would hold its lock for the
//! whole run. The bench finds the components through `REFUNDRY_PLUGINS_DIR`, set to where they
//! were written.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::build;

/// The components the bench loads: each provider's, with host and with guest crypto.
const COMPONENTS: [&str; 4] = [
    "mfs-africa",
    "mfs-africa-guest-crypto",
    "pagoefectivo",
    "pagoefectivo-guest-crypto",
];

/// Builds the components and the Extism plugin, then runs the bench with `args` for criterion.
pub fn run(args: &[String]) -> Result<()> {
    build::plugins(&COMPONENTS.map(String::from))?;
    let manifest = build::root()
        .join("bench")
        .join("extism")
        .join("Cargo.toml");
    let manifest = manifest
        .to_str()
        .context("the repository's path is not UTF-8")?;
    // The workspace's wasm flags without its 256 KiB initial memory, which only the SDK's
    // allocator (off in this core module) puts to use: the Extism plugin stays as measured.
    let flags = [("RUSTFLAGS", "-C link-arg=-zstack-size=65536")];
    extism_cargo(
        &[
            "build",
            "--quiet",
            "--manifest-path",
            manifest,
            "--package",
            "refundry-extism-plugin",
            "--target",
            build::WASM_TARGET,
            "--profile",
            "plugin",
        ],
        &flags,
    )?;
    // Criterion's arguments go after cargo's `--`, whether or not the caller's `--` reached here.
    let criterion = args.strip_prefix(&["--".to_owned()]).unwrap_or(args);
    let mut bench = vec![
        "bench",
        "--manifest-path",
        manifest,
        "--bench",
        "versus_extism",
    ];
    if !criterion.is_empty() {
        bench.push("--");
        bench.extend(criterion.iter().map(String::as_str));
    }
    extism_cargo(&bench, &[])
}

/// Runs cargo in the repository's root on the Extism workspace: its own target folder, and the
/// components' folder in `REFUNDRY_PLUGINS_DIR`, and `envs`.
fn extism_cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let plugins = std::path::absolute(build::plugins_dir())?;
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(build::root())
        .env_remove("CARGO_TARGET_DIR")
        .env("REFUNDRY_PLUGINS_DIR", &plugins)
        .envs(envs.iter().copied())
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
