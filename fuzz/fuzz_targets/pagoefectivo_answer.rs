//! PagoEfectivo's plugin reading the provider's answers: the authorization, then create, get
//! (both lookups) and list, each HTTP call answered from the input (layout: `corpus::answer`).
//! The host's storage starts empty, so every operation authorizes first.
//!
//! Besides "no panic" and what `Case::run` checks of every provider (an `Ok` only from a success
//! status, refunds whose status is the spec's mapping, listed refunds inside the range): at most
//! four HTTP calls (authorize, call, and once more after a `106`), the authorization hash and
//! every signature as the spec says, each call carrying the token the last authorization
//! answered, never a final refusal of a 5xx, a next page numbered after the first, and no
//! secret in any answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refundry_fuzz::answers::{Answered, BASE_URL, Case, Operation};
use refundry_fuzz::corpus::pagoefectivo::{ACCESS_KEY, ID_SERVICE, SECRET_KEY};
use refundry_fuzz::{check, header, one_refund_path, signing};
use refundry_pagoefectivo::PagoEfectivo;
use refundry_sdk::http::{Method, Request};
use refundry_sdk::{RefundError, RefundPage, RefundStatus, Refusal};

/// Spec "The refund object": the status words and their Refundry status.
const STATUSES: [(&str, RefundStatus); 4] = [
    ("pending", RefundStatus::Pending),
    ("completed", RefundStatus::Processed),
    ("rejected", RefundStatus::Failed),
    ("reverted", RefundStatus::Reversed),
];

const AUTHORIZATIONS: &str = "/v1/authorizations";

fuzz_target!(|data: &[u8]| {
    let case = Case::read(data);
    let id_service = ID_SERVICE.to_string();
    let host = case.host(&[
        ("base_url", BASE_URL),
        ("id_service", &id_service),
        ("access_key", ACCESS_KEY),
        ("secret_key", SECRET_KEY),
    ]);
    let ran = case.run::<PagoEfectivo>(&host, &STATUSES);
    let answer = format!("{:?}", ran.result);
    check::no_secret(&answer, &[SECRET_KEY], data);
    match &ran.result {
        // Spec, "Every other call": a 5xx is a provider fault, to be retried with the same
        // refundId.
        Err(RefundError::Refused(Refusal {
            http_status: Some(status),
            ..
        })) => assert!(!(500..=599).contains(status), "a 5xx refused: {answer}"),
        // The cursor is the number of a page after the one asked for: the host never goes back.
        Ok(Answered::Page(RefundPage {
            next_cursor: Some(next),
            ..
        })) => {
            let asked = match &case.operation {
                Operation::List(_, Some(cursor)) => cursor.parse::<u32>().expect("a page asked"),
                _ => 1,
            };
            assert!(
                next.parse::<u32>().is_ok_and(|p| p > asked),
                "cursor {next:?} after page {asked}"
            );
        }
        _ => {}
    }
    let requests = ran.requests;
    assert!(requests.len() <= 4, "{} calls", requests.len());
    let mut token = None;
    for (i, request) in requests.iter().enumerate() {
        if request.url == format!("{BASE_URL}{AUTHORIZATIONS}") {
            authorization_as_the_spec_says(request);
            token = answered_token(&case, i);
        } else {
            let token = token
                .as_deref()
                .expect("a call before any token was answered");
            signed_as_the_spec_says(request, token);
        }
    }
});

/// Spec "Authorization": the configured credentials and the hash of them with the date sent.
fn authorization_as_the_spec_says(request: &Request) {
    assert_eq!(request.method, Method::Post);
    let body: serde_json::Value =
        serde_json::from_slice(request.body.as_deref().expect("a body")).expect("JSON");
    assert_eq!(body["accessKey"], ACCESS_KEY);
    assert_eq!(body["idService"], ID_SERVICE);
    let date = body["dateRequest"].as_str().expect("dateRequest");
    let hash = signing::pe_auth_hash(ID_SERVICE, ACCESS_KEY, SECRET_KEY, date);
    assert_eq!(body["hashString"], hash.as_str());
}

/// The token the answer to call `index` (an authorization) gave, if it gave one.
fn answered_token(case: &Case, index: usize) -> Option<String> {
    let Some(Ok(response)) = case.answers.get(index) else {
        return None;
    };
    // Lossy: the plugin skips the fields it does not read without checking their UTF-8.
    let body = String::from_utf8_lossy(&response.body);
    let body: serde_json::Value = serde_json::from_str(&body).ok()?;
    body["data"]["token"].as_str().map(str::to_owned)
}

/// Spec "Every other call": the bearer token and `PE-Signature` over the body's canonical string,
/// or over the request target for a call without a body; the target stays under `/v1/refunds`.
fn signed_as_the_spec_says(request: &Request, token: &str) {
    let target = request
        .url
        .strip_prefix(BASE_URL)
        .expect("a request to the configured base URL");
    one_refund_path(target.split_once('?').map_or(target, |(path, _)| path));
    let bearer = format!("Bearer {token}");
    assert_eq!(
        header(&request.headers, "Authorization"),
        Some(bearer.as_str())
    );
    let canonical = match &request.body {
        Some(body) => signing::pe_canonical(body).expect("a JSON object body"),
        None => target.to_owned(),
    };
    let expected = signing::hmac_hex(SECRET_KEY.as_bytes(), canonical.as_bytes());
    assert_eq!(
        header(&request.headers, "PE-Signature"),
        Some(expected.as_str())
    );
}
