//! `cargo xtask demo`: real refunds through the real plugin in the real host, against the sandbox:
//! first each provider through the CLI ([`cli`]), then both through `refundry serve`
//! ([`service`]), then two hosts of `refundry serve` on one PostgreSQL ledger ([`hosts`]).
//!
//! Everything runs as separate processes on loopback ports chosen at run time: the sandbox
//! (`refundry sandbox mfs-africa --port 0`), and the host for each step (`refundry refund ...`).
//! The credentials are random for each run and reach both through the environment, as they would
//! in production. Every step states what it expects; the demo exits non-zero if any step differs.

pub(crate) mod cli;
mod hosts;
pub(crate) mod service;

use anyhow::{Result, bail};

use crate::build;

pub fn run() -> Result<()> {
    build::plugins(&[])?;
    let refundry = build::host_binary()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut failed = 0;
    let stories = [cli::mfs_africa(), cli::pagoefectivo()];
    for story in &stories {
        failed += runtime.block_on(cli::walk(&refundry, story))?;
    }
    failed += runtime.block_on(service::walk(&refundry, &stories))?;
    failed += runtime.block_on(hosts::walk(&refundry, &stories[0]))?;
    if failed > 0 {
        bail!("{failed} demo step(s) did not behave as expected");
    }
    println!("\nEvery step behaved as expected for every provider.");
    Ok(())
}
