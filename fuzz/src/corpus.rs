//! What the seed corpora and the fuzz targets agree on: the byte format of every input, what
//! each field of a target's input means, and the credentials the targets configure (the seeds
//! are recorded from sandboxes started with the same ones, so that their signatures verify).
//! `cargo xtask fuzz` writes the seeds with this file, the targets read their inputs with it.
//!
//! The format: a sequence of fields, each a little-endian `u16` length followed by that many
//! bytes. Any byte string is an input: a field whose length runs past the end takes what is
//! left, a lone last byte is a field of that byte, and a field past the end is empty. So the
//! fuzzer's mutations never make an input unreadable, only different.
//!
//! This file has no dependencies: xtask includes it with `#[path]`.

/// The longest field: what its `u16` length can say.
pub const MAX_FIELD: usize = u16::MAX as usize;

/// Appends `field` (at most [`MAX_FIELD`] bytes; longer ones are cut there).
pub fn push(out: &mut Vec<u8>, field: &[u8]) {
    let field = &field[..field.len().min(MAX_FIELD)];
    out.extend_from_slice(&(field.len() as u16).to_le_bytes());
    out.extend_from_slice(field);
}

/// `fields` in the format, one after the other.
pub fn encode<F: AsRef<[u8]>>(fields: &[F]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields {
        push(&mut out, field.as_ref());
    }
    out
}

/// Reads an input field by field.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The fields of `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    /// The next field; empty once the input is used up.
    pub fn field(&mut self) -> &'a [u8] {
        self.next().unwrap_or_default()
    }

    /// The next field as text (invalid UTF-8 replaced), for fields that are names or numbers.
    pub fn text(&mut self) -> String {
        String::from_utf8_lossy(self.field()).into_owned()
    }

    /// Whether every field has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self.rest {
            [] => None,
            [_] => Some(std::mem::take(&mut self.rest)),
            [lo, hi, rest @ ..] => {
                let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
                let (field, rest) = rest.split_at(len);
                self.rest = rest;
                Some(field)
            }
        }
    }
}

/// The answer targets (`<provider>_answer`): one plugin operation whose HTTP calls the input
/// answers. Fields:
/// 0. the operation: its first byte modulo [`answer::OPERATIONS`];
/// 1. the host clock, ms since the epoch (decimal);
/// 2. to 7. the operation's [`answer::PARAMS`] parameters (decimal numbers or text; an unused
///    one is empty);
/// 8. and on, two fields per HTTP call, in the order the plugin makes them: the head, then the
///    body. The head is the status line and header lines (`201\nretry-after: 1`), or `!kind
///    message` for a call that failed ([`answer::HTTP_ERRORS`]). A call past the last answer
///    fails to connect.
pub mod answer {
    /// `create-refund`: external refund id, original transaction id, amount in minor units,
    /// currency, reason (empty: none), order id (empty: none).
    pub const CREATE: u8 = 0;
    /// `get-refund` by the provider's refund id: the id.
    pub const GET_BY_PROVIDER_ID: u8 = 1;
    /// `get-refund` by the merchant's (external) refund id: the id.
    pub const GET_BY_EXTERNAL_ID: u8 = 2;
    /// `list-refunds`: from (ms), to (ms), cursor (empty: the first page).
    pub const LIST: u8 = 3;
    /// How many operations there are.
    pub const OPERATIONS: u8 = 4;
    /// How many parameter fields every operation has (the longest list; unused ones empty), so
    /// that a mutated operation byte keeps the answers where they were.
    pub const PARAMS: usize = 6;
    /// The kinds of a failed call's head (`!timeout`), as the contract's `http-error` cases.
    pub const HTTP_ERRORS: [&str; 6] = [
        "denied",
        "invalid-request",
        "connect-failed",
        "timeout",
        "transport",
        "response-too-large",
    ];

    /// An input: the operation, the clock, the parameters (missing ones empty) and the answers
    /// as (head, body).
    pub fn encode(op: u8, now_ms: i64, params: &[&str], answers: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        super::push(&mut out, &[op]);
        super::push(&mut out, now_ms.to_string().as_bytes());
        for i in 0..PARAMS {
            super::push(&mut out, params.get(i).unwrap_or(&"").as_bytes());
        }
        for (head, body) in answers {
            super::push(&mut out, head.as_bytes());
            super::push(&mut out, body);
        }
        out
    }
}

/// The webhook targets (`<provider>_webhook`): one delivery to `parse-webhook`. Fields:
/// 0. the mode: its first byte's bits, [`webhook::RAW`], [`webhook::LOWERCASE`],
///    [`webhook::NO_SECRET`];
/// 1. the host clock, ms since the epoch (decimal);
/// 2. signed mode: the signed timestamp's distance from the clock in seconds (decimal, for a
///    provider that signs a time); raw mode: the header lines (`name: value`);
/// 3. signed mode: the event id header (for a provider that sends one);
/// 4. the body.
pub mod webhook {
    /// Headers as given in field 2; otherwise the target signs the body with the configured
    /// secret, as the provider would.
    pub const RAW: u8 = 1;
    /// Signed mode: header names in lower case (they are case-insensitive).
    pub const LOWERCASE: u8 = 2;
    /// No webhook secret configured: nothing may verify.
    pub const NO_SECRET: u8 = 4;

    /// An input: the mode, the clock, fields 2 and 3, the body.
    pub fn encode(mode: u8, now_ms: i64, second: &str, third: &str, body: &[u8]) -> Vec<u8> {
        let now = now_ms.to_string();
        super::encode(&[
            &[mode][..],
            now.as_bytes(),
            second.as_bytes(),
            third.as_bytes(),
            body,
        ])
    }
}

/// The REST target (`rest_request`): one request to the API's router. Fields: the method, the
/// request target (path and query), the header lines (`name: value`), the body.
pub mod rest {
    /// A bearer token with scope `refunds`.
    pub const REFUNDS_TOKEN: &str = "fuzz-refunds-token-0123456789";
    /// A bearer token with scopes `admin` and `metrics`.
    pub const ADMIN_TOKEN: &str = "fuzz-admin-token-0123456789";

    /// An input: method, request target, header lines, body.
    pub fn encode(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let headers: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\n"))
            .collect();
        super::encode(&[
            method.as_bytes(),
            target.as_bytes(),
            headers.as_bytes(),
            body,
        ])
    }
}

/// The MFS Africa credentials (the spec's configuration keys).
pub mod mfs_africa {
    /// `api_key`.
    pub const API_KEY: &str = "fuzz_api_key";
    /// `api_secret`.
    pub const API_SECRET: &str = "fuzz_api_secret_6b1f0c";
    /// `webhook_secret`.
    pub const WEBHOOK_SECRET: &str = "fuzz_webhook_secret_93d2a7";
}

/// The PagoEfectivo credentials (the spec's configuration keys).
pub mod pagoefectivo {
    /// `id_service`.
    pub const ID_SERVICE: u64 = 1024;
    /// `access_key`.
    pub const ACCESS_KEY: &str = "fuzz_access_key";
    /// `secret_key`.
    pub const SECRET_KEY: &str = "fuzz_secret_key_4e8a51";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let fields: [&[u8]; 4] = [b"\x02", b"", b"201\nretry-after: 1", &[0xff; 300]];
        let bytes = encode(&fields);
        assert_eq!(Fields::new(&bytes).collect::<Vec<_>>(), fields);
    }

    #[test]
    fn any_bytes_are_an_input() {
        assert_eq!(Fields::new(b"").next(), None);
        assert_eq!(Fields::new(b"x").collect::<Vec<_>>(), [b"x"]);
        // A length past the end takes what is left.
        assert_eq!(Fields::new(b"\x09\x00abc").collect::<Vec<_>>(), [b"abc"]);
        let mut f = Fields::new(b"\x01\x00a");
        assert_eq!(f.field(), b"a");
        assert!(f.is_empty());
        assert_eq!(f.field(), b"");
        assert_eq!(f.text(), "");
    }

    #[test]
    fn long_fields_are_cut_at_the_limit() {
        let long = vec![b'a'; MAX_FIELD + 10];
        let bytes = encode(&[&long[..], b"next"]);
        let mut f = Fields::new(&bytes);
        assert_eq!(f.field().len(), MAX_FIELD);
        assert_eq!(f.field(), b"next");
    }
}
