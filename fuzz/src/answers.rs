//! The answer targets' input read into one plugin operation and the provider's answers to its
//! HTTP calls, and a [`FakeHost`] that gives those answers in order (layout: [`corpus::answer`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use refundry_sdk::http::{HttpError, Request, Response};
use refundry_sdk::testing::FakeHost;
use refundry_sdk::{
    Money, Provider, Refund, RefundError, RefundLookup, RefundPage, RefundRequest, RefundStatus,
    TimeRange,
};

use crate::corpus::{Fields, answer};
use crate::{check, header_lines, number};

/// The base URL the targets configure; the answers do not depend on it.
pub const BASE_URL: &str = "https://provider.example";

/// One plugin operation with its arguments.
#[derive(Debug, Clone)]
pub enum Operation {
    /// `create-refund`.
    Create(RefundRequest),
    /// `get-refund`.
    Get(RefundLookup),
    /// `list-refunds`.
    List(TimeRange, Option<String>),
}

/// An answer target's input, read.
#[derive(Debug, Clone)]
pub struct Case {
    /// The host clock (ms since the epoch).
    pub now_ms: i64,
    /// What the plugin is asked.
    pub operation: Operation,
    /// The answer to each HTTP call, in order.
    pub answers: Vec<Result<Response, HttpError>>,
}

/// An empty field is `None`.
fn optional(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

impl Case {
    /// Reads an input of the layout [`corpus::answer`].
    pub fn read(data: &[u8]) -> Self {
        let mut fields = Fields::new(data);
        let op = fields.field().first().copied().unwrap_or(0) % answer::OPERATIONS;
        let now_ms = number(&fields.text());
        let mut params: [String; answer::PARAMS] = Default::default();
        for param in &mut params {
            *param = fields.text();
        }
        let [p0, p1, p2, p3, p4, p5] = params;
        let operation = match op {
            answer::CREATE => Operation::Create(RefundRequest {
                external_refund_id: p0,
                original_transaction_id: p1,
                amount: Money {
                    amount_minor: number(&p2),
                    currency: p3,
                },
                reason: optional(p4),
                order_id: optional(p5),
            }),
            answer::GET_BY_PROVIDER_ID => Operation::Get(RefundLookup::ProviderRefundId(p0)),
            answer::GET_BY_EXTERNAL_ID => Operation::Get(RefundLookup::ExternalRefundId(p0)),
            _ => Operation::List(
                TimeRange {
                    from: number(&p0),
                    to: number(&p1),
                },
                optional(p2),
            ),
        };
        let mut answers = Vec::new();
        while !fields.is_empty() {
            let head = fields.field();
            let body = fields.field();
            answers.push(read_answer(head, body));
        }
        Case {
            now_ms,
            operation,
            answers,
        }
    }

    /// A host at the case's clock with `config`, answering each call with the next answer.
    pub fn host(&self, config: &[(&str, &str)]) -> FakeHost {
        let queue = Arc::new(Mutex::new(VecDeque::from(self.answers.clone())));
        let mut host = FakeHost::new()
            .with_now_ms(self.now_ms)
            .with_responder(move |_| {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                next.unwrap_or_else(|| {
                    Err(HttpError::ConnectFailed(
                        "the input has no more answers".into(),
                    ))
                })
            });
        for (key, value) in config {
            host.set_config(key, value);
        }
        host
    }

    /// The status of the answer to the last of `calls` calls (`None` when there was none).
    pub fn last_status(&self, calls: usize) -> Option<u16> {
        self.status(calls.checked_sub(1)?)
    }

    /// The status of the answer to call `index` (0-based), `None` for a failed or missing call.
    pub fn status(&self, index: usize) -> Option<u16> {
        match self.answers.get(index) {
            Some(Ok(response)) => Some(response.status),
            _ => None,
        }
    }
}

/// What an operation answered.
#[derive(Debug)]
pub enum Answered {
    /// A refund (create, get).
    Refund(Refund),
    /// A page (list).
    Page(RefundPage),
}

/// An operation run: what it answered and the HTTP calls it made.
#[derive(Debug)]
pub struct Ran {
    /// The answer.
    pub result: Result<Answered, RefundError>,
    /// The calls, in order.
    pub requests: Vec<Request>,
}

impl Case {
    /// Runs the case's operation with provider `P` on `host` (made by [`Case::host`]), then
    /// checks what holds of every provider: an `Ok` comes from a success status of the last call
    /// (200 or 201 for a create, 200 for a read), its refunds carry the spec's status for their
    /// provider status (`statuses`) and a list's lie in the range asked for.
    pub fn run<P: Provider>(&self, host: &FakeHost, statuses: &[(&str, RefundStatus)]) -> Ran {
        let (result, success): (_, &[u16]) = match self.operation.clone() {
            Operation::Create(req) => (
                P::create_refund(host, req).map(Answered::Refund),
                &[200, 201],
            ),
            Operation::Get(lookup) => (
                P::get_refund(host, lookup, None).map(Answered::Refund),
                &[200],
            ),
            Operation::List(range, cursor) => (
                P::list_refunds(host, range, cursor).map(Answered::Page),
                &[200],
            ),
        };
        let requests = host.take_requests();
        if let Ok(answered) = &result {
            let status = self.last_status(requests.len());
            assert!(
                status.is_some_and(|s| success.contains(&s)),
                "Ok after a call answered {status:?}"
            );
            match (answered, &self.operation) {
                (Answered::Refund(refund), _) => check::refund(refund, statuses),
                (Answered::Page(page), Operation::List(range, _)) => {
                    for refund in &page.refunds {
                        check::refund(refund, statuses);
                        check::inside(range, refund);
                    }
                }
                (Answered::Page(_), _) => unreachable!("only a list answers a page"),
            }
        }
        Ran { result, requests }
    }
}

/// One answer: a head (`201\nname: value` or `!kind message`) and a body.
fn read_answer(head: &[u8], body: &[u8]) -> Result<Response, HttpError> {
    let head = String::from_utf8_lossy(head);
    if let Some(error) = head.strip_prefix('!') {
        let (kind, message) = error.split_once(' ').unwrap_or((error, ""));
        let message = message.to_owned();
        return Err(match kind {
            "denied" => HttpError::Denied(message),
            "invalid-request" => HttpError::InvalidRequest(message),
            "timeout" => HttpError::Timeout,
            "transport" => HttpError::Transport(message),
            "response-too-large" => HttpError::ResponseTooLarge(body.len() as u64),
            _ => HttpError::ConnectFailed(message),
        });
    }
    let (status, headers) = head.split_once('\n').unwrap_or((&head, ""));
    Ok(Response {
        status: status.trim().parse().unwrap_or(0),
        headers: header_lines(headers),
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_reads_back() {
        let bytes = answer::encode(
            answer::LIST,
            1_000,
            &["5", "9", "rfnd_1"],
            &[("200\nretry-after: 3", &b"{}"[..]), ("!timeout", &b""[..])],
        );
        let case = Case::read(&bytes);
        assert_eq!(case.now_ms, 1_000);
        match &case.operation {
            Operation::List(range, cursor) => {
                assert_eq!((range.from, range.to), (5, 9));
                assert_eq!(cursor.as_deref(), Some("rfnd_1"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(case.status(0), Some(200));
        let Ok(first) = &case.answers[0] else {
            panic!()
        };
        assert_eq!(first.headers, [("retry-after".to_owned(), "3".to_owned())]);
        assert!(matches!(case.answers[1], Err(HttpError::Timeout)));
    }
}
