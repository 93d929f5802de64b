//! `cargo xtask`: the project's own commands.
//!
//! - `build-plugins`: installs the wasm target if missing, builds every plugin for
//!   `wasm32-unknown-unknown` and turns each into a component at `target/plugins/<id>.wasm`.
//! - `test`: `build-plugins`, the `refundry` binary, then every test in the workspace.
//! - `demo`: builds plugins and host, starts the sandboxes and walks real refunds through them,
//!   by the CLI and then through `refundry serve`.
//! - `bench`: `build-plugins`, then the criterion benchmarks.

mod build;
mod demo;
mod demo_service;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build every plugin into a component under target/plugins/.
    BuildPlugins,
    /// Build the plugins, then run every test in the workspace (extra args go to `cargo test`).
    Test {
        /// Arguments passed to `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build everything, start the sandbox, and walk real refunds through the host.
    Demo,
    /// Build the plugins, then run the benchmarks (extra args go to `cargo bench`).
    Bench {
        /// Arguments passed to `cargo bench`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::BuildPlugins => build::plugins().map(|_| ()),
        Command::Test { args } => {
            build::plugins()?;
            // The end-to-end tests start `refundry serve` as a child process: build it first.
            build::host_binary()?;
            build::cargo(&["test", "--workspace"], &args)
        }
        Command::Demo => demo::run(),
        Command::Bench { args } => {
            build::plugins()?;
            build::cargo(&["bench", "-p", "refundry-host"], &args)
        }
    }
}
