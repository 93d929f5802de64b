//! `refundry new-provider NAME`: scaffolds a provider in a Refundry workspace.
//!
//! It only creates files, and appends the provider's entry to `examples/refundry.toml`: the
//! plugin crate (`plugin/NAME/`: lib, wire, sign, tests), its simulator
//! (`sandbox/src/providers/<module>/`), a spec stub (`specs/NAME.md`) and its conformance
//! fixture (`conformance/src/fixtures/<module>.rs`). Everything that lists providers finds the new
//! one by itself: the workspace members are a glob over `plugin/`, xtask builds the components a
//! plugin declares in its `Cargo.toml`, the sandbox and the conformance kit read their folders at
//! build time. Nothing is written unless every file can be: an existing file or provider entry
//! stops the command before the first write, and a failed write removes what was written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

/// The files of a new provider, with `{{id}}`, `{{module}}`, `{{crate}}`, `{{crate_ident}}`,
/// `{{Type}}`, `{{display}}`, `{{ENV}}` and `{{port}}` to fill in.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "plugin/{{id}}/Cargo.toml",
        include_str!("../../templates/new-provider/plugin-Cargo.toml.tmpl"),
    ),
    (
        "plugin/{{id}}/src/lib.rs",
        include_str!("../../templates/new-provider/plugin-lib.rs.tmpl"),
    ),
    (
        "plugin/{{id}}/src/wire.rs",
        include_str!("../../templates/new-provider/plugin-wire.rs.tmpl"),
    ),
    (
        "plugin/{{id}}/src/sign.rs",
        include_str!("../../templates/new-provider/plugin-sign.rs.tmpl"),
    ),
    (
        "plugin/{{id}}/tests/plugin.rs",
        include_str!("../../templates/new-provider/plugin-tests.rs.tmpl"),
    ),
    (
        "sandbox/src/providers/{{module}}/mod.rs",
        include_str!("../../templates/new-provider/sandbox-mod.rs.tmpl"),
    ),
    (
        "sandbox/src/providers/{{module}}/cli.rs",
        include_str!("../../templates/new-provider/sandbox-cli.rs.tmpl"),
    ),
    (
        "specs/{{id}}.md",
        include_str!("../../templates/new-provider/spec.md.tmpl"),
    ),
    (
        "conformance/src/fixtures/{{module}}.rs",
        include_str!("../../templates/new-provider/fixture.rs.tmpl"),
    ),
];

/// The provider's entry, appended to `examples/refundry.toml`.
const CONFIG_ENTRY: &str = include_str!("../../templates/new-provider/config.toml.tmpl");

/// The example host configuration the entry goes into.
const EXAMPLE_CONFIG: &str = "examples/refundry.toml";

/// The loopback port of the first scaffolded simulator when the example names none.
const FIRST_PORT: u16 = 8701;

/// Arguments of `refundry new-provider`.
#[derive(Args)]
pub struct NewProviderArgs {
    /// The provider id: lower-case letters and digits in words joined by single hyphens, starting
    /// with a letter, at most 40 characters (`acme-pay`).
    name: String,
    /// The Refundry workspace to scaffold into [default: the current folder or the nearest one
    /// above it that holds the workspace].
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// The provider's name for people [default: from NAME, `Acme Pay`].
    #[arg(long)]
    display_name: Option<String>,
}

/// Why nothing was scaffolded.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// NAME is no usable provider id.
    #[error(
        "`{0}` is not a provider id: use lower-case letters and digits in words joined by single \
         hyphens, starting with a letter, at most 40 characters (e.g. `acme-pay`)"
    )]
    InvalidName(String),
    /// NAME is taken by a crate of the workspace that is not a provider.
    #[error("`{0}` is reserved: plugin/{0} is part of Refundry itself")]
    Reserved(String),
    /// No Refundry workspace at or above the folder.
    #[error(
        "{0} is not inside a Refundry workspace (no Cargo.toml with [workspace] beside \
         plugin/sdk): run the command there or pass --workspace"
    )]
    NoWorkspace(PathBuf),
    /// A file the scaffold would write exists.
    #[error("{0} exists: the provider is already (partly) there; nothing was written")]
    Exists(PathBuf),
    /// The example configuration has an entry for the provider already.
    #[error("{0} already configures [providers.{1}]; nothing was written")]
    AlreadyConfigured(PathBuf, String),
    /// Reading or writing failed (what was written is removed again).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// The names one provider id is spelled as.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    /// `acme-pay`: the provider id, plugin folder and component name.
    id: String,
    /// `acme_pay`: the simulator's and fixture's module.
    module: String,
    /// `refundry-acme-pay`: the plugin crate.
    krate: String,
    /// `AcmePay`: the provider type.
    ty: String,
    /// `Acme Pay`.
    display: String,
    /// `ACME_PAY`: the prefix of its environment variables.
    env: String,
}

impl Names {
    fn new(id: &str, display: Option<&str>) -> Result<Self, ScaffoldError> {
        let valid = id.len() <= 40
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id.split('-').all(|word| {
                !word.is_empty()
                    && word
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if !valid {
            return Err(ScaffoldError::InvalidName(id.to_owned()));
        }
        if matches!(id, "sdk" | "hostile") {
            return Err(ScaffoldError::Reserved(id.to_owned()));
        }
        let words: Vec<String> = id
            .split('-')
            .map(|w| {
                let mut chars = w.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        Ok(Self {
            id: id.to_owned(),
            module: id.replace('-', "_"),
            krate: format!("refundry-{id}"),
            ty: words.concat(),
            display: display.map_or_else(|| words.join(" "), str::to_owned),
            env: id.replace('-', "_").to_ascii_uppercase(),
        })
    }

    /// `template` with every placeholder filled in.
    fn fill(&self, template: &str, port: u16) -> String {
        template
            .replace("{{id}}", &self.id)
            .replace("{{module}}", &self.module)
            .replace("{{crate_ident}}", &self.krate.replace('-', "_"))
            .replace("{{crate}}", &self.krate)
            .replace("{{Type}}", &self.ty)
            .replace("{{display}}", &self.display)
            .replace("{{ENV}}", &self.env)
            .replace("{{port}}", &port.to_string())
    }
}

/// The workspace at or above `start`: the first folder with a `Cargo.toml` declaring
/// `[workspace]` and a `plugin/sdk` beside it.
fn find_workspace(start: &Path) -> Result<PathBuf, ScaffoldError> {
    start
        .ancestors()
        .find(|dir| {
            dir.join("plugin/sdk/Cargo.toml").is_file()
                && std::fs::read_to_string(dir.join("Cargo.toml"))
                    .is_ok_and(|manifest| manifest.lines().any(|l| l.trim() == "[workspace]"))
        })
        .map(Path::to_owned)
        .ok_or_else(|| ScaffoldError::NoWorkspace(start.to_owned()))
}

/// The port after the highest `http://127.0.0.1:PORT` in the example configuration, so that
/// every simulator of the example gets its own.
fn next_port(config: &str) -> u16 {
    config
        .split("http://127.0.0.1:")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u16>().ok()
        })
        .max()
        .map_or(FIRST_PORT, |port| port.saturating_add(1))
}

/// What the command did: the files it created and the entry it appended.
#[derive(Debug)]
pub struct Scaffolded {
    /// The files created, relative to the workspace.
    pub files: Vec<PathBuf>,
    /// The example configuration the entry was appended to.
    pub config: PathBuf,
    /// The simulator's port in that entry.
    pub port: u16,
}

/// Scaffolds provider `id` in `workspace`.
pub fn scaffold(
    workspace: &Path,
    id: &str,
    display: Option<&str>,
) -> Result<Scaffolded, ScaffoldError> {
    let names = Names::new(id, display)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ScaffoldError::Io { path, source }
    };
    let config_path = workspace.join(EXAMPLE_CONFIG);
    let config = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let header = format!("[providers.{}]", names.id);
    if config.lines().any(|l| l.trim() == header) {
        return Err(ScaffoldError::AlreadyConfigured(config_path, names.id));
    }
    let port = next_port(&config);
    let files: Vec<(PathBuf, String)> = TEMPLATES
        .iter()
        .map(|(path, template)| {
            (
                PathBuf::from(names.fill(path, port)),
                names.fill(template, port),
            )
        })
        .collect();
    for (path, _) in &files {
        let full = workspace.join(path);
        if full.exists() {
            return Err(ScaffoldError::Exists(full));
        }
    }
    let mut written: Vec<PathBuf> = Vec::new();
    let result = files.iter().try_for_each(|(path, content)| {
        let full = workspace.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        create_new(&full, content).map_err(io(&full))?;
        written.push(full);
        Ok(())
    });
    let result = result.and_then(|()| {
        let mut appended = config.clone();
        if !appended.ends_with('\n') {
            appended.push('\n');
        }
        appended.push_str(&names.fill(CONFIG_ENTRY, port));
        std::fs::write(&config_path, appended).map_err(io(&config_path))
    });
    if let Err(e) = result {
        // Nothing half-made is left behind: the files this run created go again (their
        // folders stay, empty folders being harmless), and the configuration is as it was.
        for path in written.iter().rev() {
            let _ = std::fs::remove_file(path);
        }
        let _ = std::fs::write(&config_path, &config);
        return Err(e);
    }
    Ok(Scaffolded {
        files: files.into_iter().map(|(path, _)| path).collect(),
        config: PathBuf::from(EXAMPLE_CONFIG),
        port,
    })
}

/// Writes `content` to a file that must not exist yet.
fn create_new(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?
        .write_all(content.as_bytes())
}

/// Runs `refundry new-provider`: exit 0 when scaffolded, 2 when nothing was written.
pub fn run(args: NewProviderArgs) -> anyhow::Result<ExitCode> {
    let start = match args.workspace {
        Some(dir) => dir,
        None => std::env::current_dir()?,
    };
    let workspace = match find_workspace(&start) {
        Ok(workspace) => workspace,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    match scaffold(&workspace, &args.name, args.display_name.as_deref()) {
        Ok(done) => {
            println!(
                "scaffolded provider {} in {}",
                args.name,
                workspace.display()
            );
            for file in &done.files {
                println!("  created   {}", file.display());
            }
            println!(
                "  appended  [providers.{}] to {} (simulator on port {})",
                args.name,
                done.config.display(),
                done.port
            );
            println!();
            println!("next: write specs/{}.md, then", args.name);
            println!("  cargo xtask build-plugins");
            println!(
                "  cargo test -p refundry-conformance -- {}::   (every case skipped: not yet implemented)",
                args.name
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_id_in_all_its_spellings() {
        let names = Names::new("acme-pay2", None).unwrap();
        assert_eq!(names.module, "acme_pay2");
        assert_eq!(names.krate, "refundry-acme-pay2");
        assert_eq!(names.ty, "AcmePay2");
        assert_eq!(names.display, "Acme Pay2");
        assert_eq!(names.env, "ACME_PAY2");
        let named = Names::new("acme", Some("ACME Payments")).unwrap();
        assert_eq!(named.display, "ACME Payments");
    }

    #[test]
    fn ids_that_cannot_name_a_crate_a_module_and_a_component_are_refused() {
        for bad in [
            "",
            "Acme",
            "acme_pay",
            "-acme",
            "acme-",
            "acme--pay",
            "1acme",
            "acme pay",
            "acmé",
        ] {
            assert!(
                matches!(Names::new(bad, None), Err(ScaffoldError::InvalidName(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Names::new(&"a".repeat(41), None),
            Err(ScaffoldError::InvalidName(_))
        ));
        assert!(matches!(
            Names::new("sdk", None),
            Err(ScaffoldError::Reserved(_))
        ));
    }

    #[test]
    fn the_next_port_follows_the_highest_in_the_example() {
        let config = "base_url = \"http://127.0.0.1:8701\"\nbase_url = \"http://127.0.0.1:8702\"\n";
        assert_eq!(next_port(config), 8703);
        assert_eq!(next_port("[server]\n"), FIRST_PORT);
    }

    #[test]
    fn every_placeholder_is_filled() {
        let names = Names::new("acme-pay", None).unwrap();
        for (path, template) in TEMPLATES {
            let filled = names.fill(template, 8703);
            assert!(!filled.contains("{{"), "{path} keeps a placeholder");
        }
        assert!(!names.fill(CONFIG_ENTRY, 8703).contains("{{"));
    }

    /// A workspace with just what the scaffold looks at.
    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("plugin/sdk")).unwrap();
        std::fs::create_dir_all(dir.path().join("examples")).unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\n").unwrap();
        std::fs::write(dir.path().join("plugin/sdk/Cargo.toml"), "").unwrap();
        std::fs::write(
            dir.path().join(EXAMPLE_CONFIG),
            "[providers.x.settings]\nbase_url = \"http://127.0.0.1:8702\"",
        )
        .unwrap();
        dir
    }

    #[test]
    fn scaffolding_creates_the_files_and_appends_the_entry_once() {
        let dir = workspace();
        let nested = dir.path().join("plugin/sdk");
        assert_eq!(find_workspace(&nested).unwrap(), dir.path());
        let done = scaffold(dir.path(), "acme-pay", None).unwrap();
        assert_eq!(done.port, 8703);
        for file in &done.files {
            assert!(dir.path().join(file).is_file(), "{}", file.display());
        }
        let config = std::fs::read_to_string(dir.path().join(EXAMPLE_CONFIG)).unwrap();
        assert!(config.contains("\n[providers.acme-pay]\n"), "{config}");
        assert!(config.contains("base_url = \"http://127.0.0.1:8703\""));
        // A second run writes nothing.
        match scaffold(dir.path(), "acme-pay", None) {
            Err(ScaffoldError::AlreadyConfigured(..)) => {}
            other => panic!("expected already configured, got {other:?}"),
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join(EXAMPLE_CONFIG)).unwrap(),
            config
        );
    }

    #[test]
    fn an_existing_file_stops_it_before_anything_is_written() {
        let dir = workspace();
        std::fs::create_dir_all(dir.path().join("specs")).unwrap();
        std::fs::write(dir.path().join("specs/acme.md"), "mine").unwrap();
        match scaffold(dir.path(), "acme", None) {
            Err(ScaffoldError::Exists(path)) => assert!(path.ends_with("specs/acme.md")),
            other => panic!("expected exists, got {other:?}"),
        }
        assert!(!dir.path().join("plugin/acme").exists());
        let config = std::fs::read_to_string(dir.path().join(EXAMPLE_CONFIG)).unwrap();
        assert!(!config.contains("acme"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("specs/acme.md")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn outside_a_workspace_it_says_where_to_run_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            find_workspace(dir.path()),
            Err(ScaffoldError::NoWorkspace(_))
        ));
    }
}
