//! The HTTP capability's types (what a plugin sends and what comes back) and the small pieces
//! every provider's requests are made of: header lookup, `Retry-After`, path segments and the
//! request target a signature covers.

pub use crate::__private::wit::refundry::provider::http::{HttpError, Method, Request, Response};

use crate::WebhookError;

impl Method {
    /// The method's name as sent on the wire and used in signatures (`GET`, `POST`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// The value of the first header named `name`, compared case-insensitively (HTTP header
/// names are; webhooks arrive with names in any case, responses with lower-case names).
pub fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The value of a header the provider always sends (compared case-insensitively); its
/// absence is the webhook error `missing-header(name)`.
pub fn required_header<'h>(
    headers: &'h [(String, String)],
    name: &str,
) -> Result<&'h str, WebhookError> {
    header(headers, name).ok_or_else(|| WebhookError::MissingHeader(name.to_owned()))
}

/// How long the provider asks to wait before the next request, in milliseconds: its
/// `Retry-After` header in the delay-seconds form (RFC 9110 section 10.2.3), spaces around the
/// number allowed. `None` when there is no such header or it is not a whole number of seconds
/// (the HTTP-date form included: a plugin has no business comparing dates with a header's clock).
pub fn retry_after_ms(headers: &[(String, String)]) -> Option<u64> {
    header(headers, "retry-after")
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(|seconds| seconds.saturating_mul(1000))
}

/// `value` percent-encoded as one path segment: only RFC 3986 unreserved characters pass
/// (`A-Z a-z 0-9 - _ . ~`), every other byte is `%XX` in upper-case hex. An id the provider made
/// can then neither leave the path it is put in (`/`, `?`, `#`) nor change the request target a
/// signature covers.
pub fn path_segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The request target of `url` as it is sent: the URL without its scheme and authority, so
/// the path (a `base_url` path prefix included) and the query. `""` when `url` has no
/// `scheme://`, or nothing after its authority.
pub fn request_target(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
    &after_scheme[after_scheme.find('/').unwrap_or(after_scheme.len())..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn method_names() {
        assert_eq!(Method::Get.as_str(), "GET");
        assert_eq!(Method::Post.as_str(), "POST");
        assert_eq!(Method::Delete.as_str(), "DELETE");
    }

    #[test]
    fn header_lookup_ignores_case() {
        let headers = headers(&[
            ("retry-after", "7"),
            ("X-MFS-Event-Id", "evt_1"),
            ("x-mfs-event-id", "evt_2"),
        ]);
        assert_eq!(header(&headers, "Retry-After"), Some("7"));
        assert_eq!(header(&headers, "x-mfs-event-id"), Some("evt_1"));
        assert_eq!(header(&headers, "X-Missing"), None);
        assert_eq!(required_header(&headers, "X-MFS-EVENT-ID"), Ok("evt_1"));
        assert_eq!(
            required_header(&headers, "X-Signature"),
            Err(WebhookError::MissingHeader("X-Signature".into()))
        );
    }

    #[test]
    fn retry_after_takes_whole_seconds_only() {
        let after = |value: &str| retry_after_ms(&headers(&[("Retry-After", value)]));
        assert_eq!(after("7"), Some(7_000));
        assert_eq!(after(" 0 "), Some(0));
        assert_eq!(after("18446744073709551615"), Some(u64::MAX));
        for value in ["soon", "-1", "1.5", "", "Wed, 21 Oct 2026 07:28:00 GMT"] {
            assert_eq!(after(value), None, "{value:?}");
        }
        assert_eq!(retry_after_ms(&[]), None);
    }

    #[test]
    fn path_segments_keep_only_unreserved_characters() {
        assert_eq!(path_segment("rfnd_abc-1.2~"), "rfnd_abc-1.2~");
        assert_eq!(path_segment("a/b c?"), "a%2Fb%20c%3F");
        assert_eq!(path_segment("../x#y%"), "..%2Fx%23y%25");
        assert_eq!(path_segment("é"), "%C3%A9");
        assert_eq!(path_segment(""), "");
    }

    #[test]
    fn request_target_is_what_follows_the_authority() {
        assert_eq!(
            request_target("http://127.0.0.1:8080/v1/refunds?a=1"),
            "/v1/refunds?a=1"
        );
        assert_eq!(
            request_target("https://pe.example/api/v1/refunds/PE-1"),
            "/api/v1/refunds/PE-1"
        );
        assert_eq!(request_target("https://pe.example"), "");
        assert_eq!(request_target("pe.example/v1"), "");
    }
}
