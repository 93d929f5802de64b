//! The README's "Using the host" walk, and then its "Embedding the runtime in a gateway" example,
//! run as written: a newcomer's first commands must work.
//!
//! The blocks are taken from README.md itself and run by bash in a fresh folder laid out like the
//! repository (`examples/refundry.toml`, `target/plugins/`, `target/debug/refundry`). The walk's
//! `cargo` lines (building the plugins and the binary) are what `cargo xtask test` did before the
//! tests ran, so they are left out, and the example's `cargo run -p embed-gateway --` is the
//! binary `cargo xtask test` built; every other line runs verbatim, the example's provider file
//! is written from the README's own TOML block. "Loading the plugins from JavaScript" follows on
//! the same sandbox: its `cargo xtask node-gateway` line is what `cargo xtask test` did too, its
//! `node` line runs as written, and its JavaScript block runs as the file it says it is. The environment has none of
//! the service's own variables (`REFUNDRY_GATEWAY_TOKEN`, ...): one-shot commands must not need
//! them. The sandboxes listen on the README's fixed ports 8701 and 8702.

use std::path::{Path, PathBuf};
use std::process::Command;

use refundry_tests::service::refundry_binary;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_owned()
}

/// The first `lang` block of the README section `heading`, as the reader sees it.
fn block(readme: &str, heading: &str, lang: &str) -> String {
    let section = readme
        .split_once(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("README has a {heading:?} section"))
        .1;
    let section = section.split("\n## ").next().unwrap_or(section);
    let block = section
        .split_once(&format!("```{lang}\n"))
        .unwrap_or_else(|| panic!("the {heading:?} section has a {lang} block"))
        .1;
    block
        .split_once("\n```")
        .expect("the block is closed")
        .0
        .to_owned()
}

#[test]
fn the_readme_walk_runs_as_written() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = block(&readme, "Using the host", "sh");
    let (build, walk): (Vec<&str>, Vec<&str>) =
        block.lines().partition(|l| l.starts_with("cargo "));
    assert!(
        build.iter().all(|l| !l.trim_end().ends_with('\\')),
        "a cargo line continues: {build:?}"
    );
    assert!(
        walk.iter().any(|l| l.contains("refund create")),
        "the walk makes a refund:\n{block}"
    );

    // A fresh folder laid out like the repository.
    let dir = std::env::temp_dir().join(format!("refundry-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("examples")).unwrap();
    std::fs::create_dir_all(dir.join("target")).unwrap();
    std::fs::copy(
        root.join("examples/refundry.toml"),
        dir.join("examples/refundry.toml"),
    )
    .unwrap();
    let plugins = refundry_tests::plugin_path("mfs-africa")
        .parent()
        .unwrap()
        .to_owned();
    let binary = refundry_binary();
    std::os::unix::fs::symlink(plugins, dir.join("target/plugins")).unwrap();
    std::os::unix::fs::symlink(binary.parent().unwrap(), dir.join("target/debug")).unwrap();
    std::os::unix::fs::symlink(
        root.join("examples/node-gateway"),
        dir.join("examples/node-gateway"),
    )
    .unwrap();

    // The embedding example, on the walk's sandbox, with the walk's variables.
    const EMBED: &str = "Embedding the runtime in a gateway";
    let provider_file = self::block(&readme, EMBED, "toml");
    let embed = self::block(&readme, EMBED, "sh");
    assert!(embed.starts_with("cargo run -p embed-gateway -- --provider-config mfs-africa.toml "));
    let embed = embed.replacen("cargo run -p embed-gateway --", "embed-gateway", 1);

    // The JavaScript gateway, on the same sandbox and provider file.
    const JS: &str = "Loading the plugins from JavaScript";
    let node_block = self::block(&readme, JS, "sh");
    let (node_build, node): (Vec<&str>, Vec<&str>) =
        node_block.lines().partition(|l| l.starts_with("cargo "));
    assert_eq!(
        node_build
            .iter()
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>(),
        ["cargo xtask node-gateway"],
        "the JavaScript section's build step is what `cargo xtask test` ran"
    );
    let script_js = self::block(&readme, JS, "js");
    let js_file = script_js
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("// "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the JavaScript block names its file on its first line");
    let script = format!(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{}\n\
         cat > mfs-africa.toml <<'TOML'\n{provider_file}\nTOML\n{embed}\n{}\n\
         cat > {js_file} <<'JS'\n{script_js}\nJS\nnode {js_file}\n",
        walk.join("\n"),
        node.join("\n"),
    );
    let mut command = Command::new("timeout");
    command.arg("300").arg("bash").arg("-c").arg(&script);
    command.current_dir(&dir);
    for (var, _) in std::env::vars() {
        if var.starts_with("REFUNDRY_")
            || var.starts_with("MFS_AFRICA_")
            || var.starts_with("PAGOEFECTIVO_")
        {
            command.env_remove(var);
        }
    }
    let out = command.output().expect("bash runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the README walk failed ({}):\n--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // The refund was made and then found, and the plugin was inspected.
    assert!(stdout.contains("order-1-r1"), "{stdout}");
    // Reconciliation saw it at the provider only.
    assert!(
        stdout.contains("missing_in_ledger") && stdout.contains("exit 1"),
        "{stdout}"
    );
    // The embedding gateway made the second one, answering in JSON.
    assert!(
        stdout.contains("\"external_refund_id\": \"order-1-r2\""),
        "{stdout}"
    );
    // The JavaScript gateway made the third, answering in the same JSON, and the README's
    // script the fourth.
    assert!(
        stdout.contains("\"external_refund_id\": \"order-1-r3\""),
        "{stdout}"
    );
    assert!(stdout.contains("order-1-r4 pending"), "{stdout}");
    assert!(stdout.contains("mfs-africa"), "{stdout}");
    // The one secret the walk set never shows.
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"));
    std::fs::remove_dir_all(&dir).unwrap();
}
