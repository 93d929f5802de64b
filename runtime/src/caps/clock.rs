//! The `clock` capability: the plugin's only source of time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of UTC time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// The current UTC time, in milliseconds since 1970-01-01T00:00:00Z.
    fn now_ms(&self) -> i64;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that says what it is told: frozen for tests, movable with [`FixedClock::set_ms`].
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    /// A clock frozen at `ms`.
    pub fn new(ms: i64) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(ms)))
    }

    /// Moves the clock to `ms`.
    pub fn set_ms(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The system clock shifted by a fixed offset: a host whose clock is wrong by `offset_ms`.
#[derive(Debug, Clone, Copy)]
pub struct SkewedClock {
    /// Milliseconds added to the system time (negative for a clock that is behind).
    pub offset_ms: i64,
}

impl Clock for SkewedClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let c = FixedClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.set_ms(2_500);
        assert_eq!(c.now_ms(), 2_500);
    }

    #[test]
    fn skewed_clock_is_offset_from_system_time() {
        let skewed = SkewedClock { offset_ms: 301_000 }.now_ms();
        let diff = skewed - SystemClock.now_ms();
        assert!((300_000..=301_000).contains(&diff), "{diff}");
    }
}
