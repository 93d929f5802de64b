//! The conformance kit as a test: every provider fixture in `src/fixtures/` against every case,
//! each pair its own trial `<provider>::<case>`. A case a provider cannot run is an ignored trial
//! whose reason shows in the output (`ignored (not supported: ...)`), never a silent pass.
//!
//! Trials run in parallel (each has its own sandbox on a free port, its own service and
//! runtime) and take the usual filters: `cargo test -p refundry-conformance -- webhook_`.

use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Trial};
use refundry_conformance::{Decision, Fixture, cases, decide, fixtures, run};

fn main() {
    let args = Arguments::from_args();
    let cases = cases::all();
    let mut trials = Vec::new();
    for fixture in fixtures::all() {
        let fixture: Arc<dyn Fixture> = Arc::from(fixture);
        let supports = fixture.supports();
        for case in &cases {
            let name = format!("{}::{}", fixture.id(), case.name);
            let trial = match decide(&supports, case.needs) {
                Decision::Run => {
                    let (fixture, case) = (fixture.clone(), *case);
                    Trial::test(name, move || {
                        run(fixture.as_ref(), &case).map_err(|e| e.to_string().into())
                    })
                }
                Decision::Skip(reason) => {
                    Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason)))
                }
            };
            trials.push(trial);
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
