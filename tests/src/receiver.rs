//! A gateway's event endpoint for the tests: a real HTTP server on loopback that keeps every
//! event Refundry POSTs to it (headers and raw body), and can go down and come back on the same
//! port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::task::JoinHandle;

/// One POST the receiver took.
#[derive(Debug, Clone)]
pub struct Received {
    /// `Refundry-Signature`, when sent.
    pub signature: Option<String>,
    /// `Refundry-Event-Id`, when sent.
    pub event_id_header: Option<String>,
    /// The raw body.
    pub body: Vec<u8>,
    /// The body as JSON.
    pub json: Value,
}

/// The endpoint. Its URL stays the same across [`Receiver::stop`] and [`Receiver::start_again`].
pub struct Receiver {
    /// `http://127.0.0.1:PORT/events`.
    pub url: String,
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    server: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Starts listening on a free loopback port, one the kernel never gives an outbound
    /// connection (see [`outside_ephemeral_range`]).
    pub async fn start() -> Self {
        let listener = outside_ephemeral_range().await;
        let addr = listener.local_addr().unwrap();
        let mut r = Self {
            url: format!("http://{addr}/events"),
            addr,
            got: Arc::default(),
            server: None,
        };
        r.serve(listener);
        r
    }

    /// Stops listening: connections to its port are refused until [`Receiver::start_again`].
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens again on the same port.
    pub async fn start_again(&mut self) {
        assert!(self.server.is_none(), "the receiver is already up");
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .unwrap_or_else(|e| panic!("rebinding the receiver's port {}: {e}", self.addr));
        self.serve(listener);
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let got = self.got.clone();
        let app = Router::new().route(
            "/events",
            post(move |headers: HeaderMap, body: Bytes| {
                let got = got.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    got.lock().unwrap().push(Received {
                        signature: header("refundry-signature"),
                        event_id_header: header("refundry-event-id"),
                        body: body.to_vec(),
                        json,
                    });
                    StatusCode::NO_CONTENT
                }
            }),
        );
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A loopback listener on a free port below the kernel's ephemeral range, chosen at random.
///
/// A port from `bind(0)` is in that range, and while the receiver is down the kernel may hand
/// it to any outbound connection on the machine (tests run side by side): `start_again` then
/// failed with "address in use". A port below the range is only ever taken by an explicit bind.
/// Where the range starts too low to leave room, a port from `bind(0)` as before.
async fn outside_ephemeral_range() -> tokio::net::TcpListener {
    const LOWEST: u16 = 10_000;
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if first_ephemeral > LOWEST {
        for _ in 0..100 {
            let port = rand::random_range(LOWEST..first_ephemeral);
            match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(listener) => return listener,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => panic!("binding the receiver to 127.0.0.1:{port}: {e}"),
            }
        }
    }
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}
