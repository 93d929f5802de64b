//! The deadlines of one connection of `refundry serve`, by what it is doing: waiting for a
//! request (idle timeout), receiving a request's head (header timeout), or busy with a request
//! (none here: its body has its own deadline, see [`super::body_deadline`], and a handler runs
//! as long as the refund takes).
//!
//! hyper's own `header_read_timeout` starts when the connection begins waiting for a request,
//! so it would also cut keep-alive connections at the header timeout; tracking the phase here
//! gives each timeout its own meaning. The phase moves on the bytes read ([`Watched`]), the
//! request handed to the router ([`Watchdog::busy`]) and the end of the answer's body
//! ([`Watchdog::answered`]).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

use refundry_service::config::ConnectionLimits;

/// What a connection is doing, and since when.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request under way: none yet, or the last one answered.
    Idle(Instant),
    /// The first bytes of a request arrived then; its head is not complete.
    Head(Instant),
    /// A request is with the router.
    Busy,
}

/// Why a connection was closed by its watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Nothing happened on it for the idle timeout.
    Idle,
    /// A request's head did not arrive whole within the header timeout.
    Header,
}

impl Expired {
    /// For the log line.
    pub fn reason(self) -> &'static str {
        match self {
            Expired::Idle => "idle for server.idle_timeout_ms",
            Expired::Header => "request head not received within server.header_timeout_ms",
        }
    }
}

/// One connection's phase, shared by its I/O, its requests and the task that closes it.
#[derive(Debug)]
pub struct Watchdog {
    phase: Mutex<Phase>,
    changed: Notify,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Watchdog {
    /// A watchdog for a connection that has just been accepted (idle).
    pub fn new(limits: &ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(Phase::Idle(Instant::now())),
            changed: Notify::new(),
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
        })
    }

    fn set(&self, update: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        *phase = update(*phase);
        drop(phase);
        self.changed.notify_waiters();
    }

    /// Bytes arrived: an idle connection is now receiving a request head.
    fn read_some(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
            drop(phase);
            self.changed.notify_waiters();
        }
    }

    /// A request's head is complete and the request is with the router.
    pub fn busy(&self) {
        self.set(|_| Phase::Busy);
    }

    /// The answer's body has been handed to the connection: idle again (also while the client
    /// has yet to read the answer).
    pub fn answered(&self) {
        self.set(|_| Phase::Idle(Instant::now()));
    }

    /// Completes when the connection has outstayed its phase's timeout.
    pub async fn expired(&self) -> Expired {
        loop {
            // Made before the phase is read: a change after this point wakes it.
            let changed = self.changed.notified();
            let phase = *self.phase.lock().unwrap_or_else(|p| p.into_inner());
            let (deadline, why) = match phase {
                Phase::Idle(since) => (since + self.idle_timeout, Expired::Idle),
                Phase::Head(since) => (since + self.header_timeout, Expired::Header),
                Phase::Busy => {
                    changed.await;
                    continue;
                }
            };
            if Instant::now() >= deadline {
                return why;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = changed => {}
            }
        }
    }
}

/// A connection's I/O, telling its [`Watchdog`] when bytes arrive.
pub struct Watched<I> {
    io: I,
    watchdog: Arc<Watchdog>,
}

impl<I> Watched<I> {
    /// Wraps `io`.
    pub fn new(io: I, watchdog: Arc<Watchdog>) -> Self {
        Self { io, watchdog }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watchdog.read_some();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(400),
            ..ConnectionLimits::default()
        }
    }

    /// `dog.expired()`, and how long it took.
    async fn timed(dog: &Watchdog) -> (Expired, Duration) {
        let start = Instant::now();
        let why = dog.expired().await;
        (why, start.elapsed())
    }

    #[tokio::test]
    async fn each_phase_has_its_own_deadline() {
        let dog = Watchdog::new(&limits());
        let (why, took) = timed(&dog).await;
        assert_eq!(why, Expired::Idle);
        assert!(took >= Duration::from_millis(400), "{took:?}");

        // A request's first bytes: the header timeout, from then.
        dog.answered();
        dog.read_some();
        let (why, took) = timed(&dog).await;
        assert_eq!(why, Expired::Header);
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_millis(400), "{took:?}");

        // Busy: no deadline until answered, then idle from the answer.
        dog.busy();
        let waiting = tokio::time::timeout(Duration::from_millis(700), dog.expired()).await;
        assert!(waiting.is_err(), "a busy connection never expires");
        dog.answered();
        let (why, took) = timed(&dog).await;
        assert_eq!(why, Expired::Idle);
        assert!(took >= Duration::from_millis(390), "{took:?}");
    }

    #[tokio::test]
    async fn a_phase_change_moves_a_waiting_deadline() {
        let dog = Watchdog::new(&limits());
        let waiter = {
            let dog = dog.clone();
            tokio::spawn(async move { (dog.expired().await, Instant::now()) })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        let bytes_at = Instant::now();
        dog.read_some();
        let (why, at) = waiter.await.unwrap();
        // Cut at the header deadline (250 ms in), not the idle one (400 ms).
        assert_eq!(why, Expired::Header);
        assert!(at - bytes_at >= Duration::from_millis(100));
    }
}
