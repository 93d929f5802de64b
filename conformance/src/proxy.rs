//! A proxy between the host and a sandbox that can lose an answer: it forwards a request, waits
//! until the provider has answered (so the provider acted on it), and then closes the host's
//! connection instead of passing the answer on. Nothing in any sandbox has to know about it, so
//! the "lost answer" case needs no fixture support.
//!
//! Which request loses its answer is told by a marker: the next request whose body contains it
//! (the case's external refund id, which every create request carries and an authorization or
//! a lookup does not). Every other request and answer passes unchanged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The largest request body the proxy forwards: far above any refund request.
const MAX_BODY: usize = 1 << 20;

/// Headers that belong to one connection, not to the request or answer they travel with
/// (RFC 9110, section 7.6.1), and the ones the client recomputes.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "host",
    "content-length",
];

/// A running proxy. Dropping it stops accepting connections.
pub struct LostAnswerProxy {
    url: String,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    /// The marker of the request whose answer is lost next.
    armed: Mutex<Option<Vec<u8>>>,
    lost: AtomicUsize,
}

impl Shared {
    /// Whether the answer to a request with `body` is to be lost (and disarms if so).
    fn take(&self, body: &[u8]) -> bool {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        let hit = armed.as_deref().is_some_and(|marker| {
            !marker.is_empty() && body.windows(marker.len()).any(|w| w == marker)
        });
        if hit {
            *armed = None;
            self.lost.fetch_add(1, Ordering::SeqCst);
        }
        hit
    }
}

impl LostAnswerProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (a base URL, no trailing
    /// slash).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            armed: Mutex::new(None),
            lost: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept(listener, shared.clone()));
        Ok(Self {
            url,
            shared,
            accept,
        })
    }

    /// The proxy's base URL, for the host's `base_url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Loses the answer to the next request whose body contains `marker`.
    pub fn lose_next_answer_to(&self, marker: &str) {
        let mut armed = self.shared.armed.lock().unwrap_or_else(|p| p.into_inner());
        *armed = Some(marker.as_bytes().to_vec());
    }

    /// How many answers were lost so far.
    pub fn answers_lost(&self) -> usize {
        self.shared.lost.load(Ordering::SeqCst)
    }
}

impl Drop for LostAnswerProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve_connection(stream, shared.clone()));
    }
}

/// Serves one connection until it closes, or until a lost answer closes it.
async fn serve_connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let (close_tx, mut close_rx) = mpsc::channel::<()>(1);
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        let close = close_tx.clone();
        async move { forward(&shared, req, close).await }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        // An error only means the host went away; the request's fate is the host's to tell.
        _ = connection => {}
        // Dropping the connection closes the socket with the answer unsent.
        _ = close_rx.recv() => {}
    }
}

/// Forwards one request and answers as the provider did, or loses the answer.
async fn forward(
    shared: &Shared,
    req: Request<Incoming>,
    close: mpsc::Sender<()>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_BODY).await {
        Ok(body) => body,
        Err(e) => return Ok(bad_gateway(format!("proxy: request body: {e}"))),
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut headers = parts.headers;
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let sent = shared
        .client
        .request(parts.method, format!("{}{target}", shared.upstream))
        .headers(headers)
        .body(body.clone())
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(e) => return Ok(bad_gateway(format!("proxy: {e}"))),
    };
    let status = answer.status();
    let mut answer_headers = answer.headers().clone();
    let answer_body: Bytes = match answer.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => return Ok(bad_gateway(format!("proxy: answer body: {e}"))),
    };
    if shared.take(&body) {
        // The provider has answered, so it acted: now the host never hears of it.
        let _ = close.send(()).await;
        std::future::pending::<()>().await;
    }
    for name in HOP_BY_HOP {
        answer_headers.remove(name);
    }
    let mut response = Response::new(Body::from(answer_body));
    *response.status_mut() = status;
    *response.headers_mut() = answer_headers;
    Ok(response)
}

fn bad_gateway(message: String) -> Response<Body> {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_marked_body_loses_its_answer_and_only_once() {
        let shared = Shared {
            upstream: "http://127.0.0.1:9".into(),
            client: reqwest::Client::new(),
            armed: Mutex::new(None),
            lost: AtomicUsize::new(0),
        };
        assert!(!shared.take(br#"{"refundId": "lost-1"}"#));
        *shared.armed.lock().unwrap() = Some(b"lost-1".to_vec());
        assert!(!shared.take(br#"{"accessKey": "k"}"#));
        assert!(!shared.take(b""));
        assert!(shared.take(br#"{"refundId": "lost-1"}"#));
        assert!(!shared.take(br#"{"refundId": "lost-1"}"#));
        assert_eq!(shared.lost.load(Ordering::SeqCst), 1);
    }
}
