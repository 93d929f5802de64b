//! Building: the wasm target, the plugin components, the host binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The wasm target plugins build for: no WASI, so every import is the contract's.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Each plugin crate and the provider id its component is named after.
pub const PLUGINS: &[(&str, &str)] = &[
    ("refundry-mfs-africa", "mfs-africa"),
    ("refundry-pagoefectivo", "pagoefectivo"),
    ("refundry-hostile", "hostile"),
];

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_owned()
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Where the components go.
pub fn plugins_dir() -> PathBuf {
    target_dir().join("plugins")
}

/// Runs cargo in the workspace root with `args` then `extra`.
pub fn cargo(args: &[&str], extra: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .args(extra)
        .current_dir(root())
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Installs the wasm target with rustup when it is missing.
fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (the wasm target is installed with it)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    eprintln!("installing the {WASM_TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .context("running rustup target add")?;
    if !status.success() {
        bail!("rustup target add {WASM_TARGET} failed ({status})");
    }
    Ok(())
}

/// Builds every plugin and writes its component to `target/plugins/<id>.wasm`; returns the paths.
pub fn plugins() -> Result<Vec<PathBuf>> {
    ensure_wasm_target()?;
    let mut args = vec![
        "build",
        "--quiet",
        "--target",
        WASM_TARGET,
        "--profile",
        "plugin",
    ];
    for (krate, _) in PLUGINS {
        args.extend(["-p", krate]);
    }
    cargo(&args, &[])?;
    let out_dir = plugins_dir();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut written = Vec::new();
    for (krate, id) in PLUGINS {
        let module_path = target_dir()
            .join(WASM_TARGET)
            .join("plugin")
            .join(format!("{}.wasm", krate.replace('-', "_")));
        let module = std::fs::read(&module_path)
            .with_context(|| format!("reading {}", module_path.display()))?;
        // wit-bindgen embeds the world in a custom section; the encoder lifts the core module
        // into a component whose imports and exports are exactly that world's.
        let component = wit_component::ComponentEncoder::default()
            .module(&module)
            .with_context(|| format!("reading the component type embedded in {krate}"))?
            .validate(true)
            .encode()
            .with_context(|| format!("encoding {krate} as a component"))?;
        let path = out_dir.join(format!("{id}.wasm"));
        std::fs::write(&path, &component).with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "plugin {id}: {} ({} bytes)",
            path.display(),
            component.len()
        );
        written.push(path);
    }
    Ok(written)
}

/// Builds the `refundry` binary (debug) and returns its path.
pub fn host_binary() -> Result<PathBuf> {
    cargo(
        &[
            "build",
            "--quiet",
            "-p",
            "refundry-host",
            "--bin",
            "refundry",
        ],
        &[],
    )?;
    Ok(target_dir().join("debug").join("refundry"))
}
