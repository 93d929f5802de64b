//! The plugin's size budget. What stays in a plugin is its provider: wire types, signing, its
//! error table, status mapping and webhook checks; what every provider needs besides belongs in
//! the SDK, where the next provider finds it.

/// The most code lines `src/` may have: no blank lines, comments or unit tests
/// (`refundry_sdk::testing::code_lines`).
const BUDGET: usize = 600;

#[test]
fn src_stays_within_its_budget() {
    refundry_sdk::testing::assert_src_within_budget(env!("CARGO_MANIFEST_DIR"), BUDGET);
}
