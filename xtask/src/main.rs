//! `cargo xtask`: the project's own commands.
//!
//! - `build-plugins`: installs the wasm target if missing, builds every plugin for
//!   `wasm32-unknown-unknown` and turns each into a component at `target/plugins/<id>.wasm`
//!   (plus `<id>-<feature>.wasm` for a feature build, e.g. `mfs-africa-next.wasm`), finding the
//!   plugins by the components their `Cargo.toml` declares; `build-plugins NAME...` builds only
//!   those.
//! - `test`: `build-plugins`, `node-gateway`, the `refundry` binary and the embedding example,
//!   then every test in the workspace (Debian's `postgresql` is installed first when missing:
//!   tests start private clusters), then the JavaScript gateway's tests (`npm test`), then
//!   `layering` and `api-check`.
//! - `node-gateway`: `build-plugins`, then readies the JavaScript gateway
//!   (`examples/node-gateway`, Node.js 20): `npm ci` when its packages are missing or stale, and
//!   every component transpiled for Node.js.
//! - `layering`: crate arrows point one way (runtime <- ledger <- service <- api <- cli), the
//!   runtime pulls in no service crate, and no two files of a crate import each other.
//! - `api-check`: Schemathesis (pinned, in a venv under `target/api-check/`) against
//!   `refundry serve` with both providers on sandboxes: every phase, every check; fails on any
//!   failure or error, i.e. wherever the API does other than its OpenAPI document says.
//! - `demo`: builds plugins and host, starts the sandboxes and walks real refunds through them,
//!   by the CLI and then through `refundry serve`.
//! - `bench`: `build-plugins`, then the criterion benchmarks.
//! - `bench-extism`: the components, the same providers built as an Extism plugin
//!   (`bench/extism/`, a workspace of its own), then one criterion run of both side by side.
//! - `bench-service`: load on `refundry serve` with each plugin as wasm and linked natively;
//!   with `--database postgres --hosts 1,2,3`, 1, 2 and 3 hosts on one PostgreSQL next to one host
//!   on SQLite and the sandbox's own ceiling.
//! - `bench-node`: `build-plugins`, `node-gateway` and release builds, then the create-refund call
//!   timed by the `bench` command of the Rust gateway (`embed-gateway`) and of the JavaScript one
//!   (`examples/node-gateway`), against one sandbox per provider (`--count`, `--rounds`,
//!   `--gateway`); a markdown table per provider of p50, mean, p99 and node/rust.
//! - `fuzz`: the cargo-fuzz targets (nightly), each for a while, from seeds the sandboxes answer.

mod api_check;
mod bench_extism;
mod bench_hosts;
mod bench_node;
mod bench_service;
mod bench_sqlite;
mod build;
mod commit_rate;
mod cpu;
mod demo;
mod fuzz;
mod layering;
mod process;

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
    /// Build every plugin into a component under target/plugins/ (or $REFUNDRY_PLUGINS_DIR).
    BuildPlugins {
        /// Only these components (`mfs-africa`, `mfs-africa-next`, ...); all when none is given.
        names: Vec<String>,
    },
    /// Build the plugins, then run every test in the workspace (extra args go to `cargo test`).
    Test {
        /// Arguments passed to `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the plugins, then ready the JavaScript gateway: its npm packages and the components
    /// transpiled for Node.js (needs Node.js 20).
    NodeGateway,
    /// Build everything, start the sandbox, and walk real refunds through the host.
    Demo,
    /// Check the architecture: crate arrows one way, a lean runtime, no file circles.
    Layering,
    /// Run Schemathesis (every phase, every check) against `refundry serve` and its OpenAPI
    /// document.
    ApiCheck,
    /// Build the plugins, then run the benchmarks (extra args go to `cargo bench`).
    Bench {
        /// Arguments passed to `cargo bench`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the components and the same providers as an Extism plugin, then time both in one
    /// criterion run (`bench/extism/`; extra args go to criterion).
    BenchExtism {
        /// Arguments passed to criterion.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Send refunds at `refundry serve` (release, sandbox on loopback) with each plugin as wasm
    /// and compiled natively into the host; print throughput, p50/p99 and wasm/native.
    BenchService(bench_service::Args),
    /// Time refunds in the Rust and the JavaScript gateway (release builds, the same component,
    /// one sandbox per provider); print p50, mean, p99 and node/rust per provider.
    BenchNode(bench_node::Args),
    /// Fuzz each plugin's webhook and answer parsing and the REST request parsing (cargo-fuzz,
    /// nightly), seeded from the sandboxes; report executions and crashes per target.
    Fuzz(fuzz::Args),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::BuildPlugins { names } => build::plugins(&names).map(|_| ()),
        Command::Test { args } => {
            build::ensure_postgres()?;
            build::plugins(&[])?;
            build::node_gateway()?;
            // The end-to-end tests start `refundry serve` as a child process: build it first.
            let refundry = build::host_binary()?;
            build::cargo(&["test", "--workspace"], &args)?;
            build::node_tests(&refundry)?;
            layering::run()?;
            api_check::run()
        }
        Command::NodeGateway => {
            build::plugins(&[])?;
            build::node_gateway()
        }
        Command::Demo => demo::run(),
        Command::Layering => layering::run(),
        Command::ApiCheck => api_check::run(),
        Command::Bench { args } => {
            build::plugins(&[])?;
            // The plugin operations against their natively linked baseline, and the registry.
            let benches = ["bench", "-p", "refundry-native", "-p", "refundry-service"];
            build::cargo(&benches, &args)
        }
        Command::BenchExtism { args } => bench_extism::run(&args),
        Command::BenchService(args) if args.database == "postgres" => bench_hosts::run(args),
        Command::BenchService(args) => bench_sqlite::run(args),
        Command::BenchNode(args) => bench_node::run(args),
        Command::Fuzz(args) => fuzz::run(args),
    }
}
