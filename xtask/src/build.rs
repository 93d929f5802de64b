//! Building: the wasm target, the plugin components, the host binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The wasm target plugins build for: no WASI, so every import is the contract's.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// One component that `plugins()` writes.
pub struct Plugin {
    /// The plugin crate.
    pub krate: &'static str,
    /// The crate's cargo feature this component is built with; `None` for its default build.
    pub feature: Option<&'static str>,
    /// The component's file name without `.wasm`: the provider id, plus a suffix for a feature
    /// build.
    pub name: &'static str,
}

/// Every component `plugins()` writes, each to `target/plugins/<name>.wasm`.
pub const PLUGINS: &[Plugin] = &[
    Plugin {
        krate: "refundry-mfs-africa",
        feature: None,
        name: "mfs-africa",
    },
    // The plugin's second version, for hot-swapping between two real versions.
    Plugin {
        krate: "refundry-mfs-africa",
        feature: Some("next"),
        name: "mfs-africa-next",
    },
    Plugin {
        krate: "refundry-pagoefectivo",
        feature: None,
        name: "pagoefectivo",
    },
    // Both providers with digests computed in the guest: the criterion bench's baseline for
    // what the host's `crypto` import saves.
    Plugin {
        krate: "refundry-mfs-africa",
        feature: Some("guest-crypto"),
        name: "mfs-africa-guest-crypto",
    },
    Plugin {
        krate: "refundry-pagoefectivo",
        feature: Some("guest-crypto"),
        name: "pagoefectivo-guest-crypto",
    },
    Plugin {
        krate: "refundry-hostile",
        feature: None,
        name: "hostile",
    },
    // A provider without status queries, with a reversal window of its own.
    Plugin {
        krate: "refundry-hostile",
        feature: Some("callback-only"),
        name: "hostile-callback-only",
    },
    // A component whose describe() traps, which the registry must refuse to load.
    Plugin {
        krate: "refundry-hostile",
        feature: Some("trap-describe"),
        name: "hostile-trap-describe",
    },
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

/// Builds every entry of [`PLUGINS`] and writes its component to `target/plugins/<name>.wasm`;
/// returns the paths.
///
/// Entries with the same feature share one cargo run. A cdylib's file name carries no hash of its
/// features, so two builds of one crate write the same core module: each run's modules are turned
/// into components before the next run can overwrite them.
pub fn plugins() -> Result<Vec<PathBuf>> {
    ensure_wasm_target()?;
    let out_dir = plugins_dir();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut features: Vec<Option<&str>> = Vec::new();
    for plugin in PLUGINS {
        if !features.contains(&plugin.feature) {
            features.push(plugin.feature);
        }
    }
    let mut written = Vec::new();
    for feature in features {
        let group: Vec<&Plugin> = PLUGINS.iter().filter(|p| p.feature == feature).collect();
        build_modules(&group, feature)?;
        for plugin in group {
            written.push(write_component(plugin, &out_dir)?);
        }
    }
    Ok(written)
}

/// One cargo run building the core modules of `group`, all with `feature` (or none).
fn build_modules(group: &[&Plugin], feature: Option<&str>) -> Result<()> {
    let mut args: Vec<String> = [
        "build",
        "--quiet",
        "--target",
        WASM_TARGET,
        "--profile",
        "plugin",
    ]
    .map(String::from)
    .into();
    for plugin in group {
        args.extend(["-p".to_owned(), plugin.krate.to_owned()]);
    }
    if let Some(feature) = feature {
        // `crate/feature`, so that the feature is the named crate's whatever else is built.
        let list: Vec<String> = group
            .iter()
            .map(|p| format!("{}/{feature}", p.krate))
            .collect();
        args.extend(["--features".to_owned(), list.join(",")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cargo(&args, &[])
}

/// Turns `plugin`'s freshly built core module into a component at `<out_dir>/<name>.wasm`.
fn write_component(plugin: &Plugin, out_dir: &Path) -> Result<PathBuf> {
    let Plugin { krate, name, .. } = plugin;
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
    let path = out_dir.join(format!("{name}.wasm"));
    std::fs::write(&path, &component).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "plugin {name}: {} ({} bytes)",
        path.display(),
        component.len()
    );
    Ok(path)
}

/// Builds the `refundry` binary and the embedding example (debug); returns the former's path.
pub fn host_binary() -> Result<PathBuf> {
    cargo(
        &[
            "build",
            "--quiet",
            "-p",
            "refundry-cli",
            // The embedding example, whose command line the tests run too.
            "-p",
            "embed-gateway",
            "--bins",
        ],
        &[],
    )?;
    Ok(target_dir().join("debug").join("refundry"))
}
