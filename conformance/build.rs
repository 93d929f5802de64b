//! Finds the provider fixtures: each `src/fixtures/<name>.rs` becomes a module of the crate's
//! `fixtures` module, listed in its `all()`, so that adding a provider is adding a file.

#[path = "src/discover.rs"]
mod discover;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(&manifest_dir)
        .join("src")
        .join("fixtures");
    // A directory: cargo looks at every file in it, so a new fixture file reruns this script.
    println!("cargo:rerun-if-changed={}", dir.display());
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let names: Vec<String> = entries
        .map(|entry| {
            let entry = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
            entry.file_name().to_string_lossy().into_owned()
        })
        .collect();
    let modules =
        discover::modules(names.iter().map(String::as_str)).unwrap_or_else(|bad| panic!("{bad}"));
    let dir = dir.to_str().expect("the fixtures folder has a UTF-8 path");
    let source = discover::module_source(dir, &modules);
    let out = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("fixtures.rs");
    std::fs::write(&out, source).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
