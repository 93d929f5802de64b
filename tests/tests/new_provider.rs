//! `refundry new-provider`: a provider scaffolded in a temporary copy of this workspace builds,
//! loads in the host and runs the conformance kit with every case skipped as not yet
//! implemented; nothing but new files and the example configuration's new entry is touched.
//!
//! The copy and everything it builds live in `target/scaffold-test/` (its workspace, its own
//! cargo target folder, its components): never in this build's target folder. Cargo names the
//! artifacts of a workspace crate by its path relative to the workspace root, so a copy building
//! into the same folder would overwrite this build's artifacts (the sandbox's and the kit's
//! generated module lists among them) while the other tests use them. The copy's target folder
//! is kept between runs, so only its first build compiles the dependencies.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use refundry_tests::service::refundry_binary;

/// This workspace's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is one level below the root")
        .to_owned()
}

/// Where the copy, its target folder and its components live: `target/scaffold-test/`, beside
/// this build's own profile folders.
fn scaffold_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .expect("the test executable lives in target/<profile>/deps")
        .join("scaffold-test")
}

/// Copies the workspace's files (tracked, and untracked but not ignored: what a `git clone` of
/// the working tree would hold) into `to`.
fn copy_workspace(to: &Path) {
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root())
        .output()
        .expect("git ls-files");
    assert!(listed.status.success(), "git ls-files failed");
    for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).expect("UTF-8 file names");
        let from = root().join(name);
        if !from.is_file() {
            continue; // deleted in the working tree, not yet committed
        }
        let dest = to.join(name);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&from, &dest).unwrap_or_else(|e| panic!("copying {name}: {e}"));
    }
}

/// Runs `cargo args` in the copy, with the copy's own target folder and folder of components.
/// Without debug info or incremental state: the copy's build is only compiled, run once and
/// thrown away, and its size counts.
fn cargo(copy: &Path, target: &Path, plugins: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .args(args)
        .current_dir(copy)
        .env("CARGO_TARGET_DIR", target)
        .env("REFUNDRY_PLUGINS_DIR", plugins)
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .env("CARGO_INCREMENTAL", "0")
        .output()
        .expect("running cargo")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_scaffolded_provider_builds_loads_and_runs_the_kit_with_every_case_skipped() {
    let dir = scaffold_dir();
    let (copy, target, plugins) = (
        dir.join("workspace"),
        dir.join("target"),
        dir.join("plugins"),
    );
    for stale in [&copy, &plugins] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).unwrap();
        }
    }
    copy_workspace(&copy);
    let before = std::fs::read_to_string(copy.join("examples/refundry.toml")).unwrap();

    let out = Command::new(refundry_binary())
        .args(["new-provider", "acme-pay", "--workspace"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(
        printed.contains("created   plugin/acme-pay/src/lib.rs"),
        "{printed}"
    );

    // Only new files, and the example configuration's new entry appended.
    let after = std::fs::read_to_string(copy.join("examples/refundry.toml")).unwrap();
    let appended = after.strip_prefix(&before).expect("the entry is appended");
    assert!(appended.contains("[providers.acme-pay]"), "{appended}");
    let changed = Command::new("git")
        .args(["diff", "--no-index", "--name-status"])
        .arg(root().join("Cargo.toml"))
        .arg(copy.join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        changed.status.success(),
        "the workspace manifest changed: {}",
        text(&changed.stdout)
    );

    // Found by itself: the workspace, the plugin build and the simulator registry.
    let out = cargo(
        &copy,
        &target,
        &plugins,
        &["xtask", "build-plugins", "acme-pay"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let component = plugins.join("acme-pay.wasm");
    assert!(component.is_file(), "{}", text(&out.stderr));

    // Loads in the host: compiled, its imports checked against the contract, described.
    let out = Command::new(refundry_binary())
        .args(["plugin", "inspect", "--json"])
        .arg(&component)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["describe"]["id"], "acme-pay", "{inspected}");

    // Its own unit tests, and the kit: every case of the new provider skipped, none failed.
    let out = cargo(
        &copy,
        &target,
        &plugins,
        &["test", "-p", "refundry-acme-pay"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cargo(
        &copy,
        &target,
        &plugins,
        &["test", "-p", "refundry-conformance", "--", "acme-pay::"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let skipped = stdout
        .lines()
        .filter(|l| l.starts_with("test acme-pay::") && l.contains("ignored"))
        .count();
    assert!(skipped > 10, "{stdout}");
    assert!(
        stdout.contains(" 0 passed; 0 failed;"),
        "a scaffold passes nothing: {stdout}"
    );
    assert!(stdout.contains("not yet implemented"), "{stdout}");
    // The copy goes once it passed; its target folder stays for the next run.
    std::fs::remove_dir_all(&copy).unwrap();
}
