//! What the fuzz targets share: reading their inputs ([`corpus`]), a host that answers a plugin's
//! HTTP calls from the input ([`answers`]), signatures computed independently of the plugins
//! ([`signing`]), the checks every refund a plugin returns must pass ([`check`]), and the REST
//! API's service double ([`rest`]).
//!
//! A target asserts what holds by design, never more: where a plugin takes the provider's word
//! (an amount or a currency in a create's answer), the target does too.

pub mod answers;
pub mod check;
pub mod corpus;
pub mod rest;
pub mod signing;

/// Parses a decimal field, `0` when it is none.
pub fn number(text: &str) -> i64 {
    text.trim().parse().unwrap_or(0)
}

/// Header lines (`name: value`) as name-value pairs; a line without a colon is a name with an
/// empty value.
pub fn header_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once(':') {
            Some((name, value)) => (name.to_owned(), value.trim_start().to_owned()),
            None => (line.to_owned(), String::new()),
        })
        .collect()
}

/// The first header named `name` (case-insensitive), as HTTP names are.
pub fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A request path of a refund API: `/v1/refunds`, or `/v1/refunds/` and one segment that an
/// HTTP client sends as it is (not empty, no `/`, and not `.` or `..`, which URL parsers
/// resolve, in any case and percent-encoded, into another path).
pub fn one_refund_path(route: &str) {
    let Some(rest) = route.strip_prefix("/v1/refunds") else {
        panic!("a request to {route}, not under /v1/refunds");
    };
    if rest.is_empty() {
        return;
    }
    let segment = rest
        .strip_prefix('/')
        .unwrap_or_else(|| panic!("a request to {route}"));
    let dots = segment.to_ascii_lowercase().replace("%2e", ".");
    assert!(
        !segment.is_empty() && !segment.contains('/') && dots != "." && dots != "..",
        "a refund id left its path segment: {route}"
    );
}
