//! MFS Africa's plugin reading the provider's answers: create, get (both lookups) and list, each
//! HTTP call answered from the input (layout: `corpus::answer`).
//!
//! Besides "no panic" and what `Case::run` checks of every provider (an `Ok` only from a success
//! status, refunds whose status is the spec's mapping, listed refunds inside the range): at most
//! one HTTP call per operation (the plugin never retries; the host does), every call signed as
//! the spec says and kept under `/v1/refunds`, and no secret in any answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refundry_fuzz::answers::{BASE_URL, Case};
use refundry_fuzz::corpus::mfs_africa::{API_KEY, API_SECRET, WEBHOOK_SECRET};
use refundry_fuzz::{check, header, one_refund_path, signing};
use refundry_mfs_africa::MfsAfrica;
use refundry_sdk::RefundStatus;
use refundry_sdk::http::Request;

/// Spec "The refund object": the status words and their Refundry status.
const STATUSES: [(&str, RefundStatus); 4] = [
    ("pending", RefundStatus::Pending),
    ("processed", RefundStatus::Processed),
    ("failed", RefundStatus::Failed),
    ("reversed", RefundStatus::Reversed),
];

fuzz_target!(|data: &[u8]| {
    let case = Case::read(data);
    let host = case.host(&[
        ("base_url", BASE_URL),
        ("api_key", API_KEY),
        ("api_secret", API_SECRET),
        ("webhook_secret", WEBHOOK_SECRET),
    ]);
    let ran = case.run::<MfsAfrica>(&host, &STATUSES);
    check::no_secret(
        &format!("{:?}", ran.result),
        &[API_SECRET, WEBHOOK_SECRET],
        data,
    );
    assert!(ran.requests.len() <= 1, "{} calls", ran.requests.len());
    for request in &ran.requests {
        signed_as_the_spec_says(request);
    }
});

/// Spec "Request signing": the key, a timestamp, and the signature of METHOD, PATH (the request
/// target as sent), TIMESTAMP and the body's digest; the target stays under `/v1/refunds`.
fn signed_as_the_spec_says(request: &Request) {
    let path = request
        .url
        .strip_prefix(BASE_URL)
        .expect("a request to the configured base URL");
    let (route, _query) = path.split_once('?').unwrap_or((path, ""));
    one_refund_path(route);
    assert_eq!(header(&request.headers, "X-Api-Key"), Some(API_KEY));
    let timestamp = header(&request.headers, "X-Timestamp").expect("X-Timestamp");
    let body = request.body.as_deref().unwrap_or_default();
    let expected = signing::mfs_request(API_SECRET, request.method.as_str(), path, timestamp, body);
    assert_eq!(
        header(&request.headers, "X-Signature"),
        Some(expected.as_str())
    );
}
