//! Finding the provider fixtures: every `src/fixtures/<name>.rs` becomes a module of
//! [`crate::fixtures`], so that adding a provider is adding a file. Shared by `build.rs`, which
//! writes the module list into `OUT_DIR`, and the crate's unit tests.

/// A fixture file name that cannot be a module: `name.rs` must be a lowercase Rust identifier.
#[derive(Debug, PartialEq, Eq)]
pub struct BadFileName(pub String);

impl std::fmt::Display for BadFileName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "src/fixtures/{} is no fixture file name: name it after the provider id with `_` for \
             `-` (lowercase letters, digits and `_`, starting with a letter), ending in `.rs`",
            self.0
        )
    }
}

/// The module names of the fixture files among `file_names` (a folder's entries), sorted: every
/// `.rs` file, or the first name that cannot be a module. Other files are left alone.
pub fn modules<'a>(
    file_names: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, BadFileName> {
    let mut modules = Vec::new();
    for name in file_names {
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        let identifier = stem.starts_with(|c: char| c.is_ascii_lowercase())
            && stem
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !identifier || stem == "mod" {
            return Err(BadFileName(name.to_owned()));
        }
        modules.push(stem.to_owned());
    }
    modules.sort();
    Ok(modules)
}

/// The Rust source of the `fixtures` module: one `#[path]` module per fixture file of `dir` (an
/// absolute path), [`FILES`](crate::fixtures::FILES) and `all()`.
pub fn module_source(dir: &str, modules: &[String]) -> String {
    let mut out = String::new();
    for module in modules {
        let path = format!("{dir}/{module}.rs");
        out.push_str(&format!(
            "/// The fixture in `src/fixtures/{module}.rs`.\n#[path = {path:?}]\npub mod {module};\n"
        ));
    }
    let files: Vec<String> = modules.iter().map(|m| format!("{m:?}")).collect();
    out.push_str(&format!(
        "\n/// The fixture files' module names, in the order of [`all`].\n\
         pub const FILES: [&str; {}] = [{}];\n",
        modules.len(),
        files.join(", ")
    ));
    let calls: Vec<String> = modules.iter().map(|m| format!("{m}::fixture()")).collect();
    out.push_str(&format!(
        "\n/// Every provider fixture in `src/fixtures/`, by file name.\n\
         pub fn all() -> Vec<Box<dyn crate::fixture::Fixture>> {{\n    vec![{}]\n}}\n",
        calls.join(", ")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rust_file_is_a_module_in_name_order() {
        let found = modules(["pagoefectivo.rs", "README.md", "mfs_africa.rs", "acme2.rs"]);
        assert_eq!(
            found.unwrap(),
            ["acme2", "mfs_africa", "pagoefectivo"].map(String::from)
        );
        assert_eq!(modules([]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_file_that_cannot_be_a_module_is_refused() {
        for bad in [
            "mfs-africa.rs",
            "Acme.rs",
            "2pay.rs",
            "mod.rs",
            ".rs",
            "_x.rs",
        ] {
            assert_eq!(modules([bad]), Err(BadFileName(bad.to_owned())), "{bad}");
        }
    }

    #[test]
    fn the_source_declares_each_module_and_lists_it() {
        let source = module_source("/src/fixtures", &["acme".into(), "zeta_pay".into()]);
        assert!(source.contains("#[path = \"/src/fixtures/acme.rs\"]\npub mod acme;"));
        assert!(source.contains("pub const FILES: [&str; 2] = [\"acme\", \"zeta_pay\"];"));
        assert!(source.contains("vec![acme::fixture(), zeta_pay::fixture()]"));
        let empty = module_source("/src/fixtures", &[]);
        assert!(empty.contains("pub const FILES: [&str; 0] = [];"));
        assert!(empty.contains("vec![]"));
    }
}
