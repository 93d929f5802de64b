//! The body timeout (`[server] body_timeout_ms`): a request's whole body must arrive within it,
//! counted from the end of its head. A body still arriving then fails the read, and the request
//! is answered 408 `request_timeout` (closing the connection: the rest of the body may still be
//! on its way).
//!
//! The deadline is on the whole body, not between its chunks: a client trickling a byte at a
//! time would otherwise hold the request for ever. A handler that never reads the body is not
//! held to it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

use super::error::ApiError;

/// The body timeout of a request, put in its extensions by the server (a request without it,
/// as in the router's own tests, has no deadline).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Middleware: bounds the body's arrival by the request's [`BodyTimeout`], and turns a body
/// that did not arrive in time into a 408 (whatever the handler made of the failed read).
pub async fn bound_body(req: Request, next: Next) -> Response {
    let Some(BodyTimeout(timeout)) = req.extensions().get::<BodyTimeout>().copied() else {
        return next.run(req).await;
    };
    let expired = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| {
        Body::new(DeadlineBody {
            body,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            expired: expired.clone(),
        })
    });
    let response = next.run(req).await;
    if expired.load(Ordering::SeqCst) {
        return ApiError::for_status(
            StatusCode::REQUEST_TIMEOUT,
            Some(format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            )),
        )
        .into_response();
    }
    response
}

/// The error a late body gives its reader.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

struct DeadlineBody {
    body: Body,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.expired.store(true, Ordering::SeqCst);
                Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::post;
    use tower::ServiceExt;

    async fn echo(body: Bytes) -> Bytes {
        body
    }

    fn app() -> Router {
        Router::new()
            .route("/", post(echo))
            .layer(axum::middleware::from_fn(bound_body))
    }

    fn request(body: Body, timeout: Option<Duration>) -> Request {
        let mut req = Request::builder()
            .method("POST")
            .uri("/")
            .body(body)
            .unwrap();
        if let Some(t) = timeout {
            req.extensions_mut().insert(BodyTimeout(t));
        }
        req
    }

    /// A body that sends `first` and then nothing more, for ever.
    fn stalled(first: &'static [u8]) -> Body {
        let chunks =
            futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(first))])
                .chain(futures_util::stream::pending());
        Body::from_stream(chunks)
    }

    use futures_util::StreamExt;

    #[tokio::test]
    async fn a_body_late_past_the_deadline_is_408() {
        let started = tokio::time::Instant::now();
        let response = app()
            .oneshot(request(
                stalled(b"{\"half"),
                Some(Duration::from_millis(300)),
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(response.headers()["connection"], "close");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "request_timeout");
    }

    #[tokio::test]
    async fn a_body_in_time_or_without_a_deadline_is_read() {
        for timeout in [Some(Duration::from_millis(300)), None] {
            let response = app()
                .oneshot(request(Body::from("whole"), timeout))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            assert_eq!(&body[..], b"whole");
        }
    }
}
