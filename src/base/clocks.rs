//! The `Clocks` trait and its two implementations: the system's clocks, and simulated ones
//! for tests. Everything that reads wall or monotonic time takes it from here, so a test can
//! run hours of recording in milliseconds and step the wall clock as NTP would.

use super::WallTime;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where code takes time from, so that tests can simulate hours in milliseconds.
/// Media time is not here: it comes from the GStreamer pipeline clock.
pub trait Clocks: Send + Sync + 'static {
    /// UTC wall time; may jump when NTP steps the clock.
    fn wall(&self) -> WallTime;
    /// Monotonic time since an arbitrary origin; never jumps.
    fn monotonic(&self) -> Duration;
    /// Waits `d` of monotonic time.
    fn sleep(&self, d: Duration);
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
        let mut s = self.state.lock().unwrap();
        s.0 = WallTime::from_unix_nanos(s.0.unix_nanos() + d.as_nanos() as i128);
        s.1 += d;
    }
    /// Steps only the wall clock, as an NTP correction or RTC reset would.
    pub fn step_wall(&self, delta_nanos: i128) {
        let mut s = self.state.lock().unwrap();
        s.0 = WallTime::from_unix_nanos(s.0.unix_nanos() + delta_nanos);
    }
}

impl Clocks for SimulatedClocks {
    fn wall(&self) -> WallTime {
        self.state.lock().unwrap().0
    }
    fn monotonic(&self) -> Duration {
        self.state.lock().unwrap().1
    }
    fn sleep(&self, d: Duration) {
        self.advance(d)
    }
}
