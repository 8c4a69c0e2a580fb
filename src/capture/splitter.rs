//! Aligned segment boundaries across separate pipelines. Shortly before each boundary
//! T = k·segment (media time), every splitmuxsink is told to split at T and every video
//! encoder to make a keyframe at T, so segment k of every source covers the same interval.
//! (`max-size-time` alone would count from each sink's first buffer and drift apart.)

use super::RunClock;
use gst::prelude::*;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
    stop: Mutex<bool>,
    wake: Condvar,
}

pub struct Splitter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
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
    pub fn start(clock: Arc<RunClock>, segment_ns: u64) -> Splitter {
        let shared = Arc::new(Shared {
            clock,
            segment_ns,
            targets: Mutex::new(Vec::new()),
            announced: Mutex::new(None),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new().name("splitter".into()).spawn(move || run(s)).expect("spawn splitter");
        Splitter { shared, thread: Mutex::new(Some(thread)) }
    }

    /// Adds a (re)started pipeline's sinks. A boundary already announced but not yet
    /// reached is announced to them too.
    pub fn register(&self, targets: Vec<SplitTarget>) {
        let pending = *self.shared.announced.lock().unwrap();
        let now = self.shared.clock.now().0;
        for t in &targets {
            if let Some(b) = pending.filter(|b| *b > now) {
                announce(t, b);
            }
        }
        self.shared.targets.lock().unwrap().extend(targets);
    }

    pub fn unregister(&self, instance: u64) {
        self.shared.targets.lock().unwrap().retain(|t| t.instance != instance);
    }

    pub fn stop(&self) {
        *self.shared.stop.lock().unwrap() = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Splitter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(s: Arc<Shared>) {
    let mut stop = s.stop.lock().unwrap();
    while !*stop {
        let now = s.clock.now().0;
        let last = s.announced.lock().unwrap().unwrap_or(0);
        let boundary = ((now / s.segment_ns) + 1) * s.segment_ns;
        if boundary <= last {
            // Already announced; sleep until it has passed.
            let wait = Duration::from_nanos(last - now) + Duration::from_millis(5);
            stop = s.wake.wait_timeout(stop, wait).unwrap().0;
            continue;
        }
        let announce_at = boundary.saturating_sub(LEAD.as_nanos() as u64);
        if now < announce_at {
            stop = s.wake.wait_timeout(stop, Duration::from_nanos(announce_at - now)).unwrap().0;
            continue;
        }
        *s.announced.lock().unwrap() = Some(boundary);
        for t in s.targets.lock().unwrap().iter() {
            announce(t, boundary);
        }
    }
}
