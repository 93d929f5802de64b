//! Refundry's conformance kit: every provider plugin, run through the real runtime and refund
//! service against its provider's sandbox, checked for the same behaviours (see [`cases::all`]).
//!
//! A provider plugs in with one file, `src/fixtures/<id with _ for ->.rs`, exporting
//! `pub fn fixture() -> Box<dyn Fixture>`: its [`Fixture`] (id, [`Supports`], sandbox start)
//! and its [`ProviderSandbox`] (the sandbox's controls). The build script finds the file by
//! itself ([`fixtures::all`]); there is no list to edit. A case that needs a feature the
//! provider lacks, or whose fixture does not drive it yet, is a named skip with its reason
//! ([`decide`]).
//!
//! `tests/kit.rs` runs every (provider, case) as its own trial, `<provider>::<case>`.

#![deny(missing_docs)]

pub mod cases;
mod check;
pub mod fixture;
pub mod harness;
pub mod proxy;
pub mod supports;
pub mod toolkit;

/// The provider fixtures, one module per file of `src/fixtures/` (found by the build script).
pub mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

pub use cases::Case;
pub use check::KitError;
pub use fixture::{
    Currencies, Fault, Fixture, FixtureError, Payment, PortalRefund, ProviderConfig,
    ProviderSandbox, RefundsOf, SandboxOptions, Signing,
};
pub use harness::{Harness, Setup, Webhook};
pub use supports::{Decision, Feature, Support, Supports, decide};

/// Runs `case` for `fixture` on a runtime of its own: starts the sandbox and the service as the
/// case's setup says, then checks.
pub fn run(fixture: &dyn Fixture, case: &Case) -> Result<(), KitError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(check::host)?;
    runtime.block_on(async {
        let harness = Harness::start(fixture, case.setup).await?;
        (case.run)(&harness).await
    })
}

#[cfg(test)]
mod discover;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_file_is_named_for_its_provider() {
        let fixtures = fixtures::all();
        assert_eq!(fixtures.len(), fixtures::FILES.len());
        for (file, fixture) in fixtures::FILES.iter().zip(&fixtures) {
            assert_eq!(*file, fixture.id().replace('-', "_"));
        }
    }

    #[test]
    fn a_fixture_declaring_nothing_yet_skips_every_case_as_not_yet_implemented() {
        // What `refundry new-provider` scaffolds: an id and nothing implemented.
        struct Scaffold;
        impl Fixture for Scaffold {
            fn id(&self) -> &'static str {
                "acme-pay"
            }
            fn supports(&self) -> Supports {
                Supports::not_yet_implemented()
            }
        }
        let supports = Scaffold.supports();
        for case in cases::all() {
            match decide(&supports, case.needs) {
                Decision::Skip(reason) => {
                    assert!(
                        reason.starts_with("not yet implemented: basics"),
                        "{reason}"
                    )
                }
                Decision::Run => panic!("{} would run for a scaffold", case.name),
            }
        }
        let started = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(Scaffold.start(SandboxOptions::default()));
        assert!(matches!(
            started,
            Err(FixtureError::NotImplemented("start"))
        ));
    }
}
