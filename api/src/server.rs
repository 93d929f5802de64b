//! The listener of `refundry serve`: accepts connections up to `[server] max_connections`,
//! optionally over TLS, serves each with HTTP/1.1 under a [`Watchdog`] (header and idle
//! timeouts) and the body timeout, and shuts down gracefully.
//!
//! At the connection cap the loop stops accepting until a connection closes, rather than
//! accepting and closing at once: the open sockets (and file descriptors) never exceed the cap,
//! and a client that arrives meanwhile waits in the kernel's listen backlog and is served as
//! soon as a slot frees (a stalled client is gone within its timeout), instead of being
//! refused and left to retry.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::Service;
use tracing::Instrument;

use super::body_deadline::BodyTimeout;
use super::watchdog::{Watchdog, Watched};
use refundry_service::config::ConnectionLimits;

/// How long the loop waits after an accept error that is not one connection's (e.g. EMFILE:
/// out of file descriptors) before it tries again, so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Where and how the API is served: the bound listener, the connection limits, and TLS.
pub struct Endpoint {
    listener: TcpListener,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
}

impl Endpoint {
    /// Plain HTTP on `listener` under `limits`.
    pub fn new(listener: TcpListener, limits: ConnectionLimits) -> Self {
        Self {
            listener,
            limits,
            tls: None,
        }
    }

    /// HTTPS instead, with `acceptor` (see [`super::tls::acceptor`]).
    pub fn with_tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// Serves `app` until `shutdown` completes; then accepts no more connections, lets each
    /// finish the request it is busy with, and returns once every connection has closed.
    pub async fn serve(
        self,
        app: Router,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let Endpoint {
            listener,
            limits,
            tls,
        } = self;
        let cap = Arc::new(Semaphore::new(limits.max_connections));
        let (stop, stopping) = watch::channel(());
        let mut shutdown = std::pin::pin!(shutdown);
        let mut at_cap = false;
        loop {
            let permit = match cap.clone().try_acquire_owned() {
                Ok(permit) => {
                    at_cap = false;
                    permit
                }
                Err(_) => {
                    // Said once per spell at the cap, not for every slot that frees during it.
                    if !at_cap {
                        tracing::warn!(
                            max_connections = limits.max_connections,
                            "connection cap reached: accepting no more until one closes"
                        );
                        at_cap = true;
                    }
                    tokio::select! {
                        permit = cap.clone().acquire_owned() => {
                            permit.expect("the semaphore is never closed")
                        }
                        () = &mut shutdown => break,
                    }
                }
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let connection = Connection {
                        app: app.clone(),
                        limits,
                        tls: tls.clone(),
                        stopping: stopping.clone(),
                        _admitted: permit,
                    };
                    let span = tracing::debug_span!("connection", %peer);
                    tokio::spawn(connection.run(stream).instrument(span));
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::error!(error = %e, "accepting a connection failed; retrying shortly");
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        () = &mut shutdown => break,
                    }
                }
            }
        }
        // No more connections: those in the backlog are refused when the listener closes.
        drop(listener);
        let _ = stop.send(());
        // Every connection holds a permit until it closes: all permits back means all closed.
        let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
        let _ = cap.acquire_many(all).await;
        Ok(())
    }
}

/// An error of one connection that was accepted and lost at once (the listener is fine).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// One accepted connection and what it needs.
struct Connection {
    app: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    stopping: watch::Receiver<()>,
    /// Its place under the connection cap, given back when the connection is dropped.
    _admitted: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        // Answers go out as soon as they are written, not held for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        match self.tls.clone() {
            None => self.serve(stream).await,
            Some(acceptor) => {
                // The handshake is held to the header timeout: a client that opens a TLS
                // connection and stalls in the handshake is as slow as one stalling in a head.
                let handshake =
                    tokio::time::timeout(self.limits.header_timeout, acceptor.accept(stream)).await;
                match handshake {
                    Ok(Ok(tls)) => self.serve(tls).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            }
        }
    }

    async fn serve<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let watchdog = Watchdog::new(&self.limits);
        let io = TokioIo::new(Watched::new(io, watchdog.clone()));
        let service = RequestService {
            app: self.app.clone(),
            watchdog: watchdog.clone(),
            body_timeout: self.limits.body_timeout,
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The watchdog keeps the header timeout (see its module); hyper's would also cut idle
        // keep-alive connections.
        builder.header_read_timeout(None);
        let connection = builder.serve_connection(
            io,
            hyper::service::service_fn(move |req| service.clone().call(req)),
        );
        let mut connection = std::pin::pin!(connection);
        let mut draining = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.stopping.changed(), if !draining => {
                    // Finish the request under way (if any), then close.
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
                why = watchdog.expired() => {
                    // Dropping the connection closes its socket.
                    tracing::debug!(reason = why.reason(), "closing a connection");
                    return;
                }
            }
        }
    }
}

/// What hyper calls for each request of a connection: the router, with the connection's
/// watchdog told when the request starts and when its answer is done.
#[derive(Clone)]
struct RequestService {
    app: Router,
    watchdog: Arc<Watchdog>,
    body_timeout: Duration,
}

impl RequestService {
    async fn call(
        mut self,
        req: hyper::Request<Incoming>,
    ) -> Result<axum::response::Response, std::convert::Infallible> {
        self.watchdog.busy();
        let mut req: Request = req.map(Body::new);
        req.extensions_mut().insert(BodyTimeout(self.body_timeout));
        let response = self.app.call(req).await?;
        let watchdog = self.watchdog;
        Ok(response.map(|body| Body::new(WatchedBody { body, watchdog })))
    }
}

/// An answer's body, which tells the watchdog the connection is idle again once it is done
/// (dropped: sent to the connection in full, or abandoned with it).
struct WatchedBody {
    body: Body,
    watchdog: Arc<Watchdog>,
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.watchdog.answered();
    }
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
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
    use std::net::SocketAddr;
    use std::time::Instant;

    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    use super::*;
    use crate::body_deadline::bound_body;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    fn app() -> Router {
        Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/echo", post(|body: Bytes| async move { body }))
            .layer(axum::middleware::from_fn(bound_body))
    }

    struct Running {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl Running {
        async fn start(limits: ConnectionLimits, tls: Option<TlsAcceptor>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut endpoint = Endpoint::new(listener, limits);
            if let Some(tls) = tls {
                endpoint = endpoint.with_tls(tls);
            }
            let (stop, stopped) = oneshot::channel();
            let task = tokio::spawn(endpoint.serve(app(), async move {
                let _ = stopped.await;
            }));
            Self {
                addr,
                stop: Some(stop),
                task,
            }
        }

        async fn stop(mut self) {
            self.stop.take().unwrap().send(()).unwrap();
            let stopped = tokio::time::timeout(Duration::from_secs(10), self.task).await;
            stopped.expect("stops").unwrap().unwrap();
        }
    }

    fn limits(header_ms: u64, body_ms: u64, idle_ms: u64, max: usize) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_millis(header_ms),
            body_timeout: Duration::from_millis(body_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            max_connections: max,
        }
    }

    /// Reads until the server closes the connection (at most 10 s); what it sent.
    async fn until_closed(socket: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer));
        match read.await.expect("the server closes the connection") {
            Ok(_) => {}
            // A reset after an unread request is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("reading: {e}"),
        }
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Sends one request and reads one (small, `Content-Length`) answer.
    async fn exchange(socket: &mut TcpStream, request: &[u8]) -> String {
        socket.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "closed before the answer was whole");
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer);
            if text.ends_with("\r\n\r\nok") || text.contains("\r\n\r\n") && text.contains("408") {
                return text.into_owned();
            }
        }
    }

    #[tokio::test]
    async fn a_half_sent_head_is_cut_at_the_header_timeout_an_idle_one_at_the_idle_timeout() {
        let server = Running::start(limits(300, 5_000, 1_500, 64), None).await;
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        assert!(exchange(&mut idle, GET).await.starts_with("HTTP/1.1 200"));
        let idle_since = Instant::now();

        let started = Instant::now();
        let mut half = TcpStream::connect(server.addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let answer = until_closed(&mut half).await;
        let took = started.elapsed();
        assert!(answer.is_empty(), "{answer}");
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_millis(1_500), "{took:?}");

        // The keep-alive connection outlived the header timeout: it still answers.
        assert!(idle_since.elapsed() >= Duration::from_millis(300));
        assert!(exchange(&mut idle, GET).await.starts_with("HTTP/1.1 200"));
        let idle_since = Instant::now();
        until_closed(&mut idle).await;
        let took = idle_since.elapsed();
        assert!(took >= Duration::from_millis(1_500), "{took:?}");

        server.stop().await;
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_is_408_and_closes() {
        let server = Running::start(limits(5_000, 300, 5_000, 64), None).await;
        let mut slow = TcpStream::connect(server.addr).await.unwrap();
        let started = Instant::now();
        slow.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            .await
            .unwrap();
        let answer = until_closed(&mut slow).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
        assert!(started.elapsed() >= Duration::from_millis(300));

        // A body that arrives whole in time is read.
        let mut quick = TcpStream::connect(server.addr).await.unwrap();
        let answer = exchange(
            &mut quick,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        server.stop().await;
    }

    #[tokio::test]
    async fn at_the_cap_a_new_connection_waits_for_a_slot() {
        let server = Running::start(limits(5_000, 5_000, 5_000, 2), None).await;
        let mut first = TcpStream::connect(server.addr).await.unwrap();
        let mut second = TcpStream::connect(server.addr).await.unwrap();
        // Both accepted and served: the cap is full.
        assert!(exchange(&mut first, GET).await.starts_with("HTTP/1.1 200"));
        assert!(exchange(&mut second, GET).await.starts_with("HTTP/1.1 200"));

        let waiting = tokio::spawn(async move {
            let mut third = TcpStream::connect(server.addr).await.unwrap();
            let answer = exchange(&mut third, GET).await;
            (answer, server)
        });
        // Not accepted while both slots are held (well under the 5 s idle timeout).
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "a third connection was served");
        drop(first);
        let (answer, server) = tokio::time::timeout(Duration::from_secs(4), waiting)
            .await
            .expect("served once a slot freed")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(second);
        server.stop().await;
    }

    #[tokio::test]
    async fn shutdown_finishes_the_request_under_way() {
        let server = Running::start(limits(5_000, 5_000, 5_000, 8), None).await;
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        // A request whose body is still coming when the shutdown starts.
        socket
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\no")
            .await
            .unwrap();
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        assert!(exchange(&mut idle, GET).await.starts_with("HTTP/1.1 200"));
        let stopping = tokio::spawn(server.stop());
        // The idle connection is closed at once; the busy one is answered, then closed.
        until_closed(&mut idle).await;
        socket.write_all(b"k").await.unwrap();
        let answer = until_closed(&mut socket).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
        stopping.await.unwrap();
    }
}
