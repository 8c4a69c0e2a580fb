//! Aligned segment boundaries across separate pipelines. Shortly before each boundary
//! T = k·segment (media time), every splitmuxsink is told to split at T and every video
//! encoder to make a keyframe at T, so segment k of every source covers the same interval.
//! (`max-size-time` alone would count from each sink's first buffer and drift apart.)

use super::RunClock;
use crate::base::{Clocks, ServiceThread};
use gst::prelude::*;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct SplitTarget {
    pub instance: u64,
    pub splitmux: gst::Element,
    /// Upstream of this pad is the video encoder; `None` for audio.
    pub keyframe_pad: Option<gst::Pad>,
}

/// How long before a boundary the split is announced; far less than a segment, far more
/// than the time a frame takes to reach the encoder.
const LEAD: Duration = Duration::from_millis(500);

struct Shared {
    clock: Arc<RunClock>,
    segment_ns: u64,
    targets: Mutex<Vec<SplitTarget>>,
    /// The boundary most recently announced.
    announced: Mutex<Option<u64>>,
    clocks: Arc<dyn Clocks>,
}

pub struct Splitter {
    shared: Arc<Shared>,
    thread: ServiceThread,
}

fn announce(target: &SplitTarget, boundary: u64) {
    target.splitmux.emit_by_name::<()>("split-at-running-time", &[&boundary]);
    if let Some(pad) = &target.keyframe_pad {
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .running_time(gst::ClockTime::from_nseconds(boundary))
            .all_headers(true)
            .build();
        pad.send_event(event);
    }
}

impl Splitter {
    pub fn start(clock: Arc<RunClock>, segment_ns: u64, clocks: Arc<dyn Clocks>) -> Splitter {
        let shared = Arc::new(Shared {
            clock,
            segment_ns,
            targets: Mutex::new(Vec::new()),
            announced: Mutex::new(None),
            clocks,
        });
        let s = shared.clone();
        let thread = ServiceThread::spawn("splitter", move |stop| run(s, stop));
        Splitter { shared, thread }
    }

    /// Adds a (re)started pipeline's sinks. A boundary already announced but not yet
    /// reached is announced to them too.
    pub fn register(&self, targets: Vec<SplitTarget>) {
        let pending = *self.shared.announced.lock();
        let now = self.shared.clock.now().0;
        for t in &targets {
            if let Some(b) = pending.filter(|b| *b > now) {
                announce(t, b);
            }
        }
        self.shared.targets.lock().extend(targets);
    }

    pub fn unregister(&self, instance: u64) {
        self.shared.targets.lock().retain(|t| t.instance != instance);
    }

    pub fn stop(&self) {
        self.thread.stop();
    }
}

/// What the splitter does next, at media time `now` (ns), the boundary `last` having been
/// announced last.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Nothing to do for this long.
    Wait(Duration),
    /// Announce this boundary now.
    Announce(u64),
}

fn next(now: u64, last: u64, segment_ns: u64) -> Next {
    let boundary = ((now / segment_ns) + 1) * segment_ns;
    if boundary <= last {
        // Already announced; sleep until it has passed.
        return Next::Wait(Duration::from_nanos(last - now) + Duration::from_millis(5));
    }
    let announce_at = boundary.saturating_sub(LEAD.as_nanos() as u64);
    if now < announce_at { Next::Wait(Duration::from_nanos(announce_at - now)) } else { Next::Announce(boundary) }
}

fn run(s: Arc<Shared>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let last = s.announced.lock().unwrap_or(0);
        match next(s.clock.now().0, last, s.segment_ns) {
            Next::Wait(d) => {
                s.clocks.sleep_unless_cancelled(d, &stop);
            }
            Next::Announce(boundary) => {
                *s.announced.lock() = Some(boundary);
                for t in s.targets.lock().iter() {
                    announce(t, boundary);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEGMENT: u64 = 10_000_000_000;

    #[test]
    fn each_boundary_is_announced_once_half_a_second_ahead() {
        assert_eq!(next(0, 0, SEGMENT), Next::Wait(Duration::from_millis(9_500)));
        assert_eq!(next(9_500_000_000, 0, SEGMENT), Next::Announce(SEGMENT));
        assert_eq!(next(9_600_000_000, SEGMENT, SEGMENT), Next::Wait(Duration::from_millis(405)), "already told");
        assert_eq!(next(10_000_000_001, SEGMENT, SEGMENT), Next::Wait(Duration::from_nanos(9_499_999_999)));
        assert_eq!(next(19_700_000_000, SEGMENT, SEGMENT), Next::Announce(2 * SEGMENT), "late: at once");
    }
}
