//! Inputs that `cargo xtask fuzz` found making the plugin misbehave, kept as tests so that plain
//! `cargo test` holds the fixes. Each names its fuzz target and the input as that target read it.

use refundry_mfs_africa::MfsAfrica;
use refundry_sdk::testing::{FakeHost, response};
use refundry_sdk::{Provider, RefundError, RefundLookup, Refusal, RefusalKind, TimeRange};

fn host() -> FakeHost {
    FakeHost::new()
        .with_now_ms(0)
        .with_config("base_url", "https://provider.example")
        .with_config("api_key", "k")
        .with_config("api_secret", "s")
        .with_responder(|_| Ok(response(200, &[], b"{}".to_vec())))
}

/// `mfs_africa_answer`, input `01 00 01 01 00 0b 01 00 2e 20 0a 61` (get by provider id `.`):
/// `/v1/refunds/.` was sent and signed, but a URL parser (the host's) resolves it to
/// `/v1/refunds/`, the list, and `..` to `/v1/`. Such an id is refused before any call.
#[test]
fn a_dot_segment_id_is_refused_before_any_call() {
    for id in [".", ".."] {
        let host = host();
        let result = MfsAfrica::get_refund(&host, RefundLookup::ProviderRefundId(id.into()), None);
        assert!(
            matches!(
                result,
                Err(RefundError::Refused(Refusal {
                    kind: RefusalKind::InvalidRequest,
                    ..
                }))
            ),
            "{id}: {result:?}"
        );
        assert!(host.requests().is_empty(), "{id}");
    }
    // Dots inside an id stay in its segment, as unreserved characters.
    let host = host();
    let _ = MfsAfrica::get_refund(&host, RefundLookup::ProviderRefundId("...".into()), None);
    assert_eq!(
        host.requests()[0].url,
        "https://provider.example/v1/refunds/..."
    );
}

/// `mfs_africa_answer`, a hand-made edge seed: list from `i64::MAX - 1000` to `i64::MAX` ms (and the
/// same at `i64::MIN`). The range in whole seconds was turned back into ms for the request and
/// overflowed (a panic with overflow checks, a wrapped time without). Refused before any call.
#[test]
fn a_list_range_at_the_ends_of_i64_is_refused_before_any_call() {
    for (from, to) in [(i64::MAX - 1_000, i64::MAX), (i64::MIN, i64::MIN + 1_000)] {
        let host = host();
        let result = MfsAfrica::list_refunds(&host, TimeRange { from, to }, None);
        assert!(
            matches!(
                result,
                Err(RefundError::Refused(Refusal {
                    kind: RefusalKind::InvalidRequest,
                    ..
                }))
            ),
            "[{from}, {to}): {result:?}"
        );
        assert!(host.requests().is_empty());
    }
}
