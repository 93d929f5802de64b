//! `cargo xtask layering`: the architecture the crate names promise, checked.
//!
//! - **Arrows one way**: runtime <- ledger <- service <- api <- cli. Each of these crates depends
//!   (normally) only on crates before it in that line.
//! - **The runtime a gateway embeds stays small**: its normal dependency tree has no database,
//!   web framework, command line, CSV, progress bar, OpenAPI or Prometheus crate.
//! - **No file circles**: inside every workspace crate, no two files import each other, directly
//!   or through others. A file imports another when it names an item of it by a `crate::`,
//!   `super::` or `self::` path (a `use`, a re-export, or a path in code); a `mod` declaration
//!   alone is no import, and test modules are not looked at.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::build::{cargo_json, cargo_text};

/// The layers, lowest first.
const LAYERS: &[&str] = &[
    "refundry-runtime",
    "refundry-ledger",
    "refundry-service",
    "refundry-api",
    "refundry-cli",
];

/// What the runtime must not pull in.
const NOT_IN_RUNTIME: &[&str] = &[
    "rusqlite",
    "axum",
    "clap",
    "utoipa",
    "indicatif",
    "csv",
    "prometheus-client",
    "tokio-postgres",
    "sqlx",
];

pub fn run() -> Result<()> {
    let metadata = cargo_json(&["metadata", "--format-version", "1", "--no-deps"])?;
    let packages = metadata["packages"].as_array().context("cargo metadata")?;
    let mut problems = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default();
        if let Some(level) = LAYERS.iter().position(|l| *l == name) {
            for dep in normal_dependencies(package) {
                match LAYERS.iter().position(|l| *l == dep) {
                    Some(d) if d >= level => {
                        problems.push(format!("{name} depends on {dep}, a layer above it"))
                    }
                    _ => {}
                }
            }
        }
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        let src = manifest
            .parent()
            .context("a manifest's folder")?
            .join("src");
        if src.is_dir() {
            for circle in circles(&src)? {
                problems.push(format!(
                    "{name}: files import each other: {}",
                    circle.join(" -> ")
                ));
            }
        }
    }
    let tree = cargo_text(&[
        "tree",
        "-p",
        "refundry-runtime",
        "-e",
        "normal",
        "--prefix",
        "none",
    ])?;
    let pulled: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| NOT_IN_RUNTIME.contains(c))
        .collect();
    if !pulled.is_empty() {
        problems.push(format!("refundry-runtime depends on {pulled:?}"));
    }
    if !problems.is_empty() {
        bail!("the layering is broken:\n  {}", problems.join("\n  "));
    }
    println!("layering: arrows one way, the runtime without service crates, no file circles");
    Ok(())
}

fn normal_dependencies(package: &Value) -> Vec<&str> {
    let deps = package["dependencies"].as_array().map(Vec::as_slice);
    deps.unwrap_or_default()
        .iter()
        .filter(|d| d["kind"].is_null())
        .filter_map(|d| d["name"].as_str())
        .collect()
}

/// Every circle of file imports under `src`, each as the files in it (relative to `src`).
pub fn circles(src: &Path) -> Result<Vec<Vec<String>>> {
    let modules = modules(src)?;
    let mut edges: BTreeMap<&Path, BTreeSet<&Path>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file)?;
        let targets = edges.entry(file.as_path()).or_default();
        for path in imported_paths(&text) {
            if let Some(target) = resolve(&modules, module, &path)
                && target != file.as_path()
            {
                targets.insert(target);
            }
        }
    }
    let name = |f: &Path| f.strip_prefix(src).unwrap_or(f).display().to_string();
    Ok(strongly_connected(&edges)
        .into_iter()
        .map(|c| c.into_iter().map(name).collect())
        .collect())
}

/// Module path -> file, for every `.rs` file under `src`.
fn modules(src: &Path) -> Result<BTreeMap<Vec<String>, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src)?.with_extension("");
            let mut module: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(module.as_slice(), [one] if one == "lib" || one == "main")
                || module.last().is_some_and(|m| m == "mod")
            {
                module.pop();
            }
            out.insert(module, path);
        }
    }
    Ok(out)
}

/// The `crate::`, `super::` and `self::` paths a file names outside its test module, use groups
/// expanded.
fn imported_paths(text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let code = code.split("#[cfg(test)]").next().unwrap_or("");
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let at_word_start = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
        rest = &rest[i + 4..];
        let Some(end) = rest.find(';') else { break };
        let tree: String = rest[..end].chars().filter(|c| !c.is_whitespace()).collect();
        if at_word_start
            && ["crate::", "super::", "self::"]
                .iter()
                .any(|p| tree.starts_with(p))
        {
            expand(&tree, &mut paths);
        }
    }
    // Paths in code (`crate::x::y(...)`, `super::z::T`).
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b':') {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(path.split("::").map(str::to_owned).collect());
        }
    }
    paths
}

/// Expands a use tree (`a::{b, c::{d, self}}`) into its paths.
fn expand(tree: &str, out: &mut Vec<Vec<String>>) {
    let Some(open) = tree.find('{') else {
        out.push(tree.split("::").map(str::to_owned).collect());
        return;
    };
    let prefix = &tree[..open];
    let body = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut part) = (0, String::new());
    for c in body.chars().chain([',']) {
        match c {
            ',' if depth == 0 => {
                match part.as_str() {
                    "" => {}
                    "self" => expand(prefix.trim_end_matches(':'), out),
                    p => expand(&format!("{prefix}{p}"), out),
                }
                part.clear();
                continue;
            }
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        part.push(c);
    }
}

/// The file a path from `module` leads to: the longest prefix that is a module.
fn resolve<'a>(
    modules: &'a BTreeMap<Vec<String>, PathBuf>,
    module: &[String],
    path: &[String],
) -> Option<&'a Path> {
    let (head, tail) = path.split_first()?;
    let mut base: Vec<String> = match head.as_str() {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => module[..module.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    let mut tail = tail;
    while tail.first().is_some_and(|s| s == "super") {
        base.pop();
        tail = &tail[1..];
    }
    base.extend(tail.iter().filter(|s| *s != "*").cloned());
    (0..=base.len())
        .rev()
        .find_map(|n| modules.get(&base[..n]).map(PathBuf::as_path))
}

/// Tarjan's strongly connected components with more than one file.
fn strongly_connected<'a>(edges: &BTreeMap<&'a Path, BTreeSet<&'a Path>>) -> Vec<Vec<&'a Path>> {
    struct Walk<'a, 'e> {
        edges: &'e BTreeMap<&'a Path, BTreeSet<&'a Path>>,
        index: BTreeMap<&'a Path, usize>,
        low: BTreeMap<&'a Path, usize>,
        stack: Vec<&'a Path>,
        found: Vec<Vec<&'a Path>>,
    }
    impl<'a> Walk<'a, '_> {
        fn visit(&mut self, v: &'a Path) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            for &w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let at = self.stack.iter().position(|&x| x == v).unwrap_or(0);
                let component: Vec<&Path> = self.stack.drain(at..).collect();
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for &v in edges.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crate's source folder holding `files`, removed when dropped.
    fn crate_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("xtask-layering-")
            .tempdir()
            .expect("a temporary folder");
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn two_files_naming_each_other_are_a_circle() {
        let src = crate_with(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::b::B;\npub struct A;\n"),
            ("b.rs", "pub struct B;\nfn f() { let _ = crate::a::A; }\n"),
        ]);
        assert_eq!(circles(src.path()).unwrap(), [["a.rs", "b.rs"]]);
    }

    #[test]
    fn a_parent_re_exporting_a_child_that_uses_it_is_a_circle() {
        let src = crate_with(&[
            ("lib.rs", "mod x;\n"),
            ("x/mod.rs", "mod y;\npub use self::y::Y;\npub struct X;\n"),
            ("x/y.rs", "use super::{X, z::{self}};\npub struct Y;\n"),
        ]);
        let found = circles(src.path()).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        let mut circle = found[0].clone();
        circle.sort();
        assert_eq!(circle, ["x/mod.rs", "x/y.rs"]);
    }

    #[test]
    fn one_way_imports_mod_declarations_and_tests_are_no_circle() {
        let src = crate_with(&[
            ("lib.rs", "mod a;\nmod b;\npub use a::A;\n"),
            ("a.rs", "use crate::b::B;\npub struct A(B);\n"),
            (
                "b.rs",
                "pub struct B;\n// crate::a::A in a comment\n#[cfg(test)]\nmod tests { use crate::a::A; }\n",
            ),
        ]);
        assert!(circles(src.path()).unwrap().is_empty());
    }
}
