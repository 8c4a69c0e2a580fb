//! The `Clocks` trait and its two implementations: the system's clocks, and simulated ones
//! for tests. Everything that reads wall or monotonic time takes it from here, so a test can
//! run hours of recording in milliseconds and step the wall clock as NTP would.

use super::WallTime;
use parking_lot::Mutex;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often a blocking wait looks at its shutdown token: the most a blocking thread
/// (a capture supervisor, a broadcast output) lags behind a shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

/// Where code takes time from, so that tests can simulate hours in milliseconds.
/// Media time is not here: it comes from the GStreamer pipeline clock.
pub trait Clocks: Send + Sync + 'static {
    /// UTC wall time; may jump when NTP steps the clock.
    fn wall(&self) -> WallTime;
    /// Monotonic time since an arbitrary origin; never jumps.
    fn monotonic(&self) -> Duration;
    /// Waits `d` of monotonic time.
    fn sleep(&self, d: Duration);

    /// Waits `d` of monotonic time unless `shutdown` is cancelled first; returns whether
    /// the whole time passed. For threads that cannot await the token.
    fn sleep_unless_cancelled(&self, d: Duration, shutdown: &CancellationToken) -> bool {
        self.sleep_while(d, &|| !shutdown.is_cancelled())
    }

    /// Waits `d` of monotonic time while `keep_sleeping` holds; returns whether the whole
    /// time passed. It looks every `SHUTDOWN_POLL`, which bounds how late a blocking thread
    /// notices a shutdown or a change it waits on.
    fn sleep_while(&self, d: Duration, keep_sleeping: &dyn Fn() -> bool) -> bool {
        let end = self.monotonic() + d;
        loop {
            if !keep_sleeping() {
                return false;
            }
            let now = self.monotonic();
            if now >= end {
                return true;
            }
            self.sleep((end - now).min(SHUTDOWN_POLL));
        }
    }
}

pub struct RealClocks {
    origin: Instant,
}

impl RealClocks {
    pub fn new() -> Self {
        RealClocks { origin: Instant::now() }
    }
}

impl Default for RealClocks {
    fn default() -> Self {
        Self::new()
    }
}

impl Clocks for RealClocks {
    fn wall(&self) -> WallTime {
        WallTime::now()
    }
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// Clocks for tests: time moves only when `sleep` or `advance` is called, and the wall clock
/// can be stepped independently to simulate NTP corrections.
pub struct SimulatedClocks {
    state: Mutex<(WallTime, Duration)>,
}

impl SimulatedClocks {
    pub fn new(start: WallTime) -> Self {
        SimulatedClocks { state: Mutex::new((start, Duration::ZERO)) }
    }
    pub fn advance(&self, d: Duration) {
        let mut s = self.state.lock();
        s.0 = WallTime::from_unix_nanos(s.0.unix_nanos() + d.as_nanos() as i128);
        s.1 += d;
    }
    /// Steps only the wall clock, as an NTP correction or RTC reset would.
    pub fn step_wall(&self, delta_nanos: i128) {
        let mut s = self.state.lock();
        s.0 = WallTime::from_unix_nanos(s.0.unix_nanos() + delta_nanos);
    }
}

impl Clocks for SimulatedClocks {
    fn wall(&self) -> WallTime {
        self.state.lock().0
    }
    fn monotonic(&self) -> Duration {
        self.state.lock().1
    }
    fn sleep(&self, d: Duration) {
        self.advance(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_sleep_ends_at_once_and_says_so() {
        let clocks = SimulatedClocks::new(WallTime::from_unix_nanos(0));
        let shutdown = CancellationToken::new();
        assert!(clocks.sleep_unless_cancelled(Duration::from_secs(5), &shutdown));
        assert_eq!(clocks.monotonic(), Duration::from_secs(5));
        shutdown.cancel();
        assert!(!clocks.sleep_unless_cancelled(Duration::from_secs(5), &shutdown));
        assert_eq!(clocks.monotonic(), Duration::from_secs(5), "no time passes once shut down");
    }

    #[test]
    fn a_real_sleep_wakes_soon_after_a_cancel_from_another_thread() {
        let clocks = RealClocks::new();
        let shutdown = CancellationToken::new();
        let canceller = shutdown.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            canceller.cancel();
        });
        let started = Instant::now();
        assert!(!clocks.sleep_unless_cancelled(Duration::from_secs(30), &shutdown));
        assert!(started.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
    }
}
