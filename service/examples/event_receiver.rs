//! A gateway's endpoint for Refundry's outbound events: verifies `Refundry-Signature` over the
//! raw body, drops duplicates (delivery is at least once), and prints each refund status change.
//!
//! ```sh
//! export REFUNDRY_EVENTS_SECRET=$(openssl rand -hex 32)   # the same value as [events] secret
//! cargo run -p refundry-service --example event_receiver -- 127.0.0.1:8790
//! # refundry.toml: [events] url = "http://127.0.0.1:8790/refundry-events"
//! #                         secret = "env:REFUNDRY_EVENTS_SECRET"
//! ```
//!
//! Answer 2xx only once the event is safely handled: any other answer (or none within
//! `[events] timeout_ms`) makes Refundry try again later, and holds back that refund's later
//! events until this one is taken.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use refundry_ledger::{EventBody, EventData};
use refundry_service::outbound_events::signature::{self, DEFAULT_TOLERANCE_SECS};

#[derive(Clone)]
struct Receiver {
    secret: Arc<Vec<u8>>,
    /// Event ids already handled. A real receiver keeps them in its database, in the same
    /// transaction as the effect of the event.
    seen: Arc<Mutex<HashSet<String>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    // 1. The signature, over the raw bytes, before anything else looks at the body.
    let header = headers.get(signature::HEADER).and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = signature::verify(&r.secret, header, &body, now, DEFAULT_TOLERANCE_SECS) {
        eprintln!("refused: {e}");
        return StatusCode::UNAUTHORIZED;
    }
    // 2. Only then parse.
    let event: EventBody = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("refused: not an event ({e})");
            return StatusCode::BAD_REQUEST;
        }
    };
    // 3. At least once: the same event may come again.
    if !r.seen.lock().unwrap().insert(event.id.clone()) {
        return StatusCode::OK;
    }
    match &event.data {
        EventData::Refund(refund) => println!(
            "{} {:<17} {} {} {} {} (external id {})",
            event.created_at.to_rfc3339(),
            event.kind,
            refund.id,
            refund.provider,
            refund.amount,
            refund.currency,
            refund.external_refund_id
        ),
        EventData::Discrepancy(d) => println!(
            "{} {} {} {} ({}): {}",
            event.created_at.to_rfc3339(),
            event.kind,
            d.provider,
            d.finding.kind.as_str(),
            d.reconciliation_id,
            d.finding.detail
        ),
    }
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8790".to_owned());
    let secret = std::env::var("REFUNDRY_EVENTS_SECRET")
        .context("set REFUNDRY_EVENTS_SECRET to the [events] secret of refundry.toml")?;
    let state = Receiver {
        secret: Arc::new(secret.into_bytes()),
        seen: Arc::default(),
    };
    let app = Router::new()
        .route("/refundry-events", post(receive))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    eprintln!("receiving Refundry events on http://{addr}/refundry-events");
    axum::serve(listener, app).await?;
    Ok(())
}
