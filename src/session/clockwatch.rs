//! Detection of wall-clock jumps, which the committer states as `clock_jump` records. Jumps
//! are found by comparing the wall clock with the monotonic clock between observations.

use crate::base::WallTime;
use std::time::Duration;

/// Notices the wall clock moving differently from the monotonic clock (an NTP step, an RTC
/// reset) so the chain can state it. Wall time in records is only ever informative; media
/// time and chain order never depend on it.
#[derive(Debug, Default)]
pub struct ClockWatch {
    last: Option<(Duration, WallTime)>,
}

/// Smaller differences are NTP slewing and scheduling noise.
const THRESHOLD_MS: i64 = 2000;

impl ClockWatch {
    /// Returns the jump in milliseconds (positive: wall clock moved forward) if there was one.
    pub fn observe(&mut self, monotonic: Duration, wall: WallTime) -> Option<i64> {
        let jump = self.last.and_then(|(m, w)| {
            let wall_ms = (wall.since(w) / 1_000_000) as i64;
            let mono_ms = monotonic.saturating_sub(m).as_millis() as i64;
            let delta = wall_ms - mono_ms;
            (delta.abs() > THRESHOLD_MS).then_some(delta)
        });
        self.last = Some((monotonic, wall));
        jump
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::{Clocks, SimulatedClocks};

    #[test]
    fn detects_steps_but_not_normal_progress() {
        let clocks = SimulatedClocks::new(WallTime::from_unix_nanos(1_700_000_000_000_000_000));
        let mut w = ClockWatch::default();
        assert_eq!(w.observe(clocks.monotonic(), clocks.wall()), None);
        clocks.sleep(Duration::from_secs(3600));
        assert_eq!(w.observe(clocks.monotonic(), clocks.wall()), None);
        clocks.step_wall(-90 * 1_000_000_000);
        clocks.sleep(Duration::from_secs(10));
        assert_eq!(w.observe(clocks.monotonic(), clocks.wall()), Some(-90_000));
        clocks.sleep(Duration::from_secs(10));
        assert_eq!(w.observe(clocks.monotonic(), clocks.wall()), None);
    }
}
