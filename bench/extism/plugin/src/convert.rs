//! The SDK's types to and from the JSON of `refundry-extism-wire`. Enums map with exhaustive
//! matches, so a new case in either is a compile error here.

use refundry_extism_wire as wire;
use refundry_sdk::{Level, Money, Refund, RefundRequest, RefundStatus, StorageError, http};

pub fn request(req: wire::RefundRequest) -> RefundRequest {
    RefundRequest {
        original_transaction_id: req.original_transaction_id,
        external_refund_id: req.external_refund_id,
        amount: Money {
            amount_minor: req.amount.amount_minor,
            currency: req.amount.currency,
        },
        reason: req.reason,
        order_id: req.order_id,
    }
}

pub fn refund(refund: Refund) -> wire::Refund {
    wire::Refund {
        provider_refund_id: refund.provider_refund_id,
        external_refund_id: refund.external_refund_id,
        original_transaction_id: refund.original_transaction_id,
        amount: wire::Money {
            amount_minor: refund.amount.amount_minor,
            currency: refund.amount.currency,
        },
        status: match refund.status {
            RefundStatus::Pending => wire::RefundStatus::Pending,
            RefundStatus::Processed => wire::RefundStatus::Processed,
            RefundStatus::Failed => wire::RefundStatus::Failed,
            RefundStatus::Reversed => wire::RefundStatus::Reversed,
        },
        provider_status: refund.provider_status,
        failure_reason: refund.failure_reason,
        created_at: refund.created_at,
        updated_at: refund.updated_at,
    }
}

/// A request whose body is not UTF-8 cannot be written as a JSON string: `invalid-request`,
/// nothing sent.
pub fn http_request(req: http::Request) -> Result<wire::HttpRequest, http::HttpError> {
    let body = match req.body {
        Some(body) => Some(String::from_utf8(body).map_err(|_| {
            http::HttpError::InvalidRequest("the request body is not UTF-8".into())
        })?),
        None => None,
    };
    Ok(wire::HttpRequest {
        method: match req.method {
            http::Method::Get => wire::Method::Get,
            http::Method::Post => wire::Method::Post,
            http::Method::Put => wire::Method::Put,
            http::Method::Patch => wire::Method::Patch,
            http::Method::Delete => wire::Method::Delete,
        },
        url: req.url,
        headers: req.headers,
        body,
    })
}

pub fn http_response(resp: wire::HttpResponse) -> http::Response {
    http::Response {
        status: resp.status,
        headers: resp.headers,
        body: resp.body.into_bytes(),
    }
}

pub fn http_error(e: wire::HttpError) -> http::HttpError {
    match e {
        wire::HttpError::Denied(why) => http::HttpError::Denied(why),
        wire::HttpError::InvalidRequest(why) => http::HttpError::InvalidRequest(why),
        wire::HttpError::ConnectFailed(why) => http::HttpError::ConnectFailed(why),
        wire::HttpError::Timeout => http::HttpError::Timeout,
        wire::HttpError::Transport(why) => http::HttpError::Transport(why),
        wire::HttpError::ResponseTooLarge(limit) => http::HttpError::ResponseTooLarge(limit),
    }
}

pub fn storage_error(e: wire::StorageError) -> StorageError {
    match e {
        wire::StorageError::TooLarge(limit) => StorageError::TooLarge(limit),
        wire::StorageError::Unavailable(why) => StorageError::Unavailable(why),
    }
}

pub fn level(level: Level) -> wire::Level {
    match level {
        Level::Trace => wire::Level::Trace,
        Level::Debug => wire::Level::Debug,
        Level::Info => wire::Level::Info,
        Level::Warn => wire::Level::Warn,
        Level::Error => wire::Level::Error,
    }
}
