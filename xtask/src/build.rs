//! Building: the wasm target, the plugin components, the host binary, and the JavaScript gateway
//! (`examples/node-gateway`: its npm packages, the components transpiled for Node.js).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

/// The wasm target plugins build for: no WASI, so every import is the contract's.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// One component that `plugins()` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plugin {
    /// The plugin crate.
    pub krate: String,
    /// The crate's cargo features this component is built with; empty for its default build.
    pub features: Vec<String>,
    /// The component's file name without `.wasm`: the provider id, plus a suffix for a feature
    /// build.
    pub name: String,
}

/// Every component `plugins()` writes, each to `target/plugins/<name>.wasm`: what the workspace's
/// crates declare under `[package.metadata.refundry.components]` (`name = [features]`), found
/// with `cargo metadata`, so that a new plugin crate is built by being a workspace member.
pub fn discover() -> Result<Vec<Plugin>> {
    components_of(&cargo_json(&[
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
    ])?)
}

/// The components declared in `cargo metadata` output, sorted by name.
fn components_of(metadata: &serde_json::Value) -> Result<Vec<Plugin>> {
    let mut plugins = Vec::new();
    let packages = metadata["packages"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for package in packages {
        let krate = package["name"].as_str().unwrap_or_default();
        let Some(components) = package["metadata"]["refundry"]["components"].as_object() else {
            continue;
        };
        for (name, features) in components {
            let features = features
                .as_array()
                .and_then(|list| {
                    list.iter()
                        .map(|f| f.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                })
                .with_context(|| {
                    format!("{krate}: components.{name} must be a list of feature names")
                })?;
            plugins.push(Plugin {
                krate: krate.to_owned(),
                features,
                name: name.clone(),
            });
        }
    }
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = plugins.windows(2).find(|w| w[0].name == w[1].name) {
        bail!(
            "two plugin crates declare the component `{}` ({} and {})",
            pair[0].name,
            pair[0].krate,
            pair[1].krate
        );
    }
    Ok(plugins)
}

/// The workspace root: the parent of xtask's manifest folder, as `cargo run` gives it when it
/// starts xtask (else as it was at compile time). Read at run time because one target folder may
/// hold an xtask binary built from another copy of the workspace (the scaffold test builds one):
/// cargo does not link the binary again for a copy whose build is fresh.
pub fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
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

/// Where the components go: `$REFUNDRY_PLUGINS_DIR`, else `target/plugins/`. The tests read
/// them from the same place.
pub fn plugins_dir() -> PathBuf {
    std::env::var_os("REFUNDRY_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("plugins"))
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

/// What `cargo args`, run in the workspace root, prints on stdout; its stderr in the error when
/// it fails.
pub fn cargo_text(args: &[&str]) -> Result<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(args)
        .current_dir(root())
        .output()
        .with_context(|| format!("running {cargo}"))?;
    if !out.status.success() {
        bail!(
            "cargo {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// [`cargo_text`] read as JSON (`cargo metadata`).
pub fn cargo_json(args: &[&str]) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&cargo_text(args)?)?)
}

/// Where Debian's PostgreSQL 15 server programs are (the private test clusters run them).
const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Installs Debian's `postgresql` package when its server programs are missing (the tests, the
/// demo and the PostgreSQL bench start private clusters with them). As root only; otherwise the
/// error says what to install.
pub fn ensure_postgres() -> Result<()> {
    if Path::new(POSTGRES_BIN).join("initdb").exists() {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        bail!("PostgreSQL 15's server is missing ({POSTGRES_BIN}): apt-get install postgresql");
    }
    eprintln!("installing Debian's postgresql package (the tests start private clusters)");
    for args in [&["update"][..], &["install", "-y", "postgresql"][..]] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
    }
    if !Path::new(POSTGRES_BIN).join("initdb").exists() {
        bail!("apt-get installed postgresql, but {POSTGRES_BIN}/initdb is still missing");
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

/// Builds every component [`discover`] finds (or those named in `only`) and writes its component to `target/plugins/<name>.wasm`;
/// returns the paths.
///
/// Entries with the same feature share one cargo run. A cdylib's file name carries no hash of its
/// features, so two builds of one crate write the same core module: each run's modules are turned
/// into components before the next run can overwrite them.
pub fn plugins(only: &[String]) -> Result<Vec<PathBuf>> {
    ensure_wasm_target()?;
    let mut plugins = discover()?;
    if let Some(unknown) = only.iter().find(|n| !plugins.iter().any(|p| &p.name == *n)) {
        let known: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "no plugin declares the component `{unknown}` (known: {})",
            known.join(", ")
        );
    }
    if !only.is_empty() {
        plugins.retain(|p| only.contains(&p.name));
    }
    let out_dir = plugins_dir();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut feature_sets: Vec<&[String]> = Vec::new();
    for plugin in &plugins {
        if !feature_sets.contains(&plugin.features.as_slice()) {
            feature_sets.push(&plugin.features);
        }
    }
    let mut written = Vec::new();
    for features in feature_sets {
        let group: Vec<&Plugin> = plugins.iter().filter(|p| p.features == features).collect();
        build_modules(&group, features)?;
        for plugin in group {
            written.push(write_component(plugin, &out_dir)?);
        }
    }
    Ok(written)
}

/// One cargo run building the core modules of `group`, all with `features` (or none).
fn build_modules(group: &[&Plugin], features: &[String]) -> Result<()> {
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
        args.extend(["-p".to_owned(), plugin.krate.clone()]);
    }
    if !features.is_empty() {
        // `crate/feature`, so that each feature is the named crate's whatever else is built.
        let list: Vec<String> = group
            .iter()
            .flat_map(|p| features.iter().map(move |f| format!("{}/{f}", p.krate)))
            .collect();
        args.extend(["--features".to_owned(), list.join(",")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cargo(&args, &[])
}

/// Turns `plugin`'s freshly built core module into a component at `<out_dir>/<name>.wasm`.
fn write_component(plugin: &Plugin, out_dir: &Path) -> Result<PathBuf> {
    let Plugin { krate, name, .. } = plugin;
    let (krate, name) = (krate.as_str(), name.as_str());
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

/// The JavaScript gateway's package.
pub fn node_gateway_dir() -> PathBuf {
    root().join("examples").join("node-gateway")
}

/// Readies the JavaScript gateway: its npm packages (`npm ci`, when `node_modules` is missing or
/// older than `package-lock.json`), then every component under [`plugins_dir`] transpiled for
/// Node.js (`npm run transpile`). Needs Node.js 20 or later (`node` and `npm`) on `PATH`.
pub fn node_gateway() -> Result<()> {
    ensure_node()?;
    let dir = node_gateway_dir();
    let lock = dir.join("package-lock.json");
    let locked = modified(&lock).with_context(|| format!("{} is missing", lock.display()))?;
    // npm writes its own copy of the lock into node_modules on every install: older than the
    // package's lock, it is from before the lock changed.
    let installed = modified(&dir.join("node_modules").join(".package-lock.json"));
    if installed.is_none_or(|installed| installed < locked) {
        eprintln!("installing the node gateway's npm packages (npm ci)");
        npm(&["ci", "--no-audit", "--no-fund"], &[])?;
    }
    // Absolute: npm runs the script in the package's folder.
    let plugins = std::path::absolute(plugins_dir())?;
    npm(
        &[
            OsStr::new("run"),
            OsStr::new("--silent"),
            OsStr::new("transpile"),
            OsStr::new("--"),
            plugins.as_os_str(),
        ],
        &[],
    )
}

/// The JavaScript gateway's tests (`npm test`), which start `refundry` (the binary at
/// `refundry`) for its sandboxes and load the components under [`plugins_dir`].
pub fn node_tests(refundry: &Path) -> Result<()> {
    ensure_node()?;
    let refundry = std::path::absolute(refundry)?;
    let plugins = std::path::absolute(plugins_dir())?;
    npm(
        &["test"],
        &[
            ("REFUNDRY_BIN", refundry.as_os_str()),
            ("REFUNDRY_PLUGINS_DIR", plugins.as_os_str()),
        ],
    )
}

/// What the JavaScript gateway needs that cargo does not bring.
const NODE_NEEDED: &str =
    "the node gateway (examples/node-gateway) needs Node.js 20 or later, with npm, on PATH";

/// Fails, saying what to install, unless `node` (version 20 or later) and `npm` run.
fn ensure_node() -> Result<()> {
    let version = match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => bail!("`node --version` did not run: {NODE_NEEDED}"),
    };
    if node_major(&version).is_none_or(|major| major < 20) {
        bail!("`node --version` says {version:?}: {NODE_NEEDED}");
    }
    match Command::new("npm").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!("`npm --version` did not run: {NODE_NEEDED}"),
    }
}

/// The major version in `node --version`'s answer (`v20.11.1` is 20).
fn node_major(version: &str) -> Option<u32> {
    version.strip_prefix('v')?.split('.').next()?.parse().ok()
}

/// When `path` was last written; `None` when it is not there.
fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Runs `npm args` in the JavaScript gateway's folder, with `env` added to the environment.
fn npm<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &OsStr)]) -> Result<()> {
    let dir = node_gateway_dir();
    let status = Command::new("npm")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(&dir)
        .status()
        .with_context(|| format!("running npm in {}", dir.display()))?;
    if !status.success() {
        let args: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
        bail!(
            "npm {} in {} failed ({status})",
            args.join(" "),
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn components_are_read_from_package_metadata() {
        let metadata = json!({"packages": [
            {"name": "refundry-sdk", "metadata": null},
            {"name": "refundry-acme", "metadata": {"refundry": {"components": {
                "acme": [], "acme-next": ["next"]
            }}}},
            {"name": "refundry-hostile", "metadata": {"refundry": {"components": {
                "hostile": []
            }}}}
        ]});
        let names: Vec<(String, Vec<String>)> = components_of(&metadata)
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.features))
            .collect();
        assert_eq!(
            names,
            vec![
                ("acme".to_owned(), vec![]),
                ("acme-next".to_owned(), vec!["next".to_owned()]),
                ("hostile".to_owned(), vec![]),
            ]
        );
    }

    #[test]
    fn a_bad_declaration_or_a_clash_is_named() {
        let bad = json!({"packages": [{"name": "refundry-acme", "metadata": {"refundry": {
            "components": {"acme": "next"}
        }}}]});
        let err = components_of(&bad).unwrap_err().to_string();
        assert!(err.contains("refundry-acme: components.acme"), "{err}");
        let clash = json!({"packages": [
            {"name": "a", "metadata": {"refundry": {"components": {"x": []}}}},
            {"name": "b", "metadata": {"refundry": {"components": {"x": []}}}}
        ]});
        let err = components_of(&clash).unwrap_err().to_string();
        assert!(err.contains("`x` (a and b)"), "{err}");
    }

    #[test]
    fn node_major_version() {
        assert_eq!(node_major("v20.20.2"), Some(20));
        assert_eq!(node_major("v18.0.0"), Some(18));
        assert_eq!(node_major("20.1.0"), None);
        assert_eq!(node_major(""), None);
    }
}
