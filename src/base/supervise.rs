//! Supervision shared by every service that keeps something going against failures: a
//! capture device's pipeline, a broadcast output's connection, the uploader's store. The
//! decisions (how long to wait after a failure, when a comeback counts as a restart, when
//! a long healthy run forgives earlier failures) live here, as a pure state machine on
//! monotonic time, so they are unit-tested on simulated clocks; each service keeps only
//! its I/O shell (building pipelines, sending objects) around it.

use super::Backoff;
use std::time::Duration;

/// An attempt that ran this long before failing was healthy: its failure starts the delays
/// over. The default; a service whose faults recur more slowly says so with
/// `ExponentialRetry::healthy_after`.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// How the delay before the next attempt is chosen (Vector's `RetryLogic` plays this
/// part there): the supervision decides *when* a policy is consulted, the policy decides
/// *how long*.
pub trait RetryPolicy: Send + 'static {
    /// The delay before the next attempt, after an attempt that failed having run `ran_for`.
    fn delay_after_failure(&mut self, ran_for: Duration) -> Duration;
    /// An attempt succeeded: the next failure starts from the shortest delay.
    fn succeeded(&mut self);
}

/// Doubling delays up to a cap, optionally jittered; an attempt that ran `HEALTHY_AFTER`
/// before failing starts over from the initial delay.
#[derive(Debug, Clone)]
pub struct ExponentialRetry {
    backoff: Backoff,
    healthy_after: Duration,
    reset_on_success: bool,
}

impl ExponentialRetry {
    pub fn new(initial: Duration, max: Duration) -> ExponentialRetry {
        ExponentialRetry::from_backoff(Backoff::new(initial, max))
    }

    /// Any success starts the delays over, and only a success does. Right for the
    /// uploader, where one delivered object proves the store is back, and where an attempt
    /// that failed after a long time (a store that accepts connections and never answers)
    /// proves nothing; wrong for a pipeline or a connection, which can start and fail again
    /// within a second: there only a healthy run forgives.
    pub fn reset_on_success(mut self) -> ExponentialRetry {
        self.reset_on_success = true;
        self.healthy_after = Duration::MAX;
        self
    }

    /// An attempt that ran `d` before failing was healthy (default `HEALTHY_AFTER`).
    pub fn healthy_after(mut self, d: Duration) -> ExponentialRetry {
        self.healthy_after = d;
        self
    }

    /// Jittered delays, for retriers that would otherwise knock in step (many upload
    /// workers, many boxes behind one store).
    pub fn with_jitter(mut self) -> ExponentialRetry {
        self.backoff = self.backoff.with_jitter();
        self
    }

    fn from_backoff(backoff: Backoff) -> ExponentialRetry {
        ExponentialRetry { backoff, healthy_after: HEALTHY_AFTER, reset_on_success: false }
    }
}

impl RetryPolicy for ExponentialRetry {
    fn delay_after_failure(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.healthy_after {
            self.backoff.reset();
        }
        self.backoff.next_delay()
    }

    fn succeeded(&mut self) {
        if self.reset_on_success {
            self.backoff.reset();
        }
    }
}

/// Where a supervised thing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Never attempted yet.
    Idle,
    /// An attempt is under way (a pipeline starting, a connection being made, one object
    /// probing a store that failed).
    Starting,
    /// The attempt works.
    Running,
    /// Waiting after a failure; no attempt before `until` (monotonic time).
    BackingOff { until: Duration },
    /// Shut down; nothing more is attempted.
    Stopped,
}

/// The thing came back after failing: the attempt that worked, counting from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub attempt: u32,
    /// Whether it had worked before in this supervision, so that coming back is a restart
    /// (a thing that never started is not restarted by starting late).
    pub restart: bool,
}

/// The state machine of one supervised thing. Time is monotonic, from `Clocks`.
#[derive(Debug, Clone)]
pub struct Supervision<P> {
    policy: P,
    phase: Phase,
    attempt_began: Duration,
    attempts: u32,
    failures_in_a_row: u32,
    restarts: u32,
    has_run: bool,
}

impl<P: RetryPolicy> Supervision<P> {
    pub fn new(policy: P) -> Supervision<P> {
        Supervision {
            policy,
            phase: Phase::Idle,
            attempt_began: Duration::ZERO,
            attempts: 0,
            failures_in_a_row: 0,
            restarts: 0,
            has_run: false,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether an attempt may be made at `now` (not stopped, not backing off).
    pub fn may_attempt(&self, now: Duration) -> bool {
        match self.phase {
            Phase::BackingOff { until } => now >= until,
            Phase::Stopped => false,
            Phase::Idle | Phase::Starting | Phase::Running => true,
        }
    }

    /// How long until an attempt may be made (zero when it may now).
    pub fn wait_at(&self, now: Duration) -> Duration {
        match self.phase {
            Phase::BackingOff { until } => until.saturating_sub(now),
            _ => Duration::ZERO,
        }
    }

    /// Whether the last failure has not yet been followed by a success: the uploader sends
    /// one object at a time then, to probe the store rather than flood it.
    pub fn probing(&self) -> bool {
        self.failures_in_a_row > 0
    }

    /// An attempt begins at `now`.
    pub fn attempt(&mut self, now: Duration) {
        self.phase = Phase::Starting;
        self.attempt_began = now;
        self.attempts += 1;
    }

    /// The attempt works. Returns how it came back when earlier attempts had failed.
    pub fn running(&mut self, now: Duration) -> Option<Recovered> {
        if self.phase == Phase::Idle {
            // Running without an attempt on record (a service that starts up healthy).
            self.attempt_began = now;
        }
        self.phase = Phase::Running;
        // A success is only news to the policy after a failure.
        if self.failures_in_a_row > 0 {
            self.policy.succeeded();
        }
        let recovered = (self.failures_in_a_row > 0)
            .then(|| Recovered { attempt: self.failures_in_a_row + 1, restart: self.has_run });
        if recovered.is_some_and(|r| r.restart) {
            self.restarts += 1;
        }
        self.has_run = true;
        self.failures_in_a_row = 0;
        recovered
    }

    /// The attempt failed at `now`: returns the delay before the next one, which the phase
    /// now waits out.
    pub fn failed(&mut self, now: Duration) -> Duration {
        let ran_for = now.saturating_sub(self.attempt_began);
        let delay = self.policy.delay_after_failure(ran_for);
        self.failures_in_a_row += 1;
        self.phase = Phase::BackingOff { until: now + delay };
        delay
    }

    pub fn stop(&mut self) {
        self.phase = Phase::Stopped;
    }

    /// Attempts made, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Times it worked again after having worked and failed.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Failed attempts since it last worked (or since the beginning).
    pub fn failures_in_a_row(&self) -> u32 {
        self.failures_in_a_row
    }

    pub fn has_run(&self) -> bool {
        self.has_run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn device() -> Supervision<ExponentialRetry> {
        Supervision::new(ExponentialRetry::new(secs(1), secs(30)))
    }

    #[test]
    fn a_flapping_device_backs_off_doubling_up_to_the_cap() {
        let mut s = device();
        let mut now = Duration::ZERO;
        let mut delays = Vec::new();
        for _ in 0..7 {
            assert!(s.may_attempt(now));
            s.attempt(now);
            now += Duration::from_millis(200);
            let delay = s.failed(now);
            assert!(!s.may_attempt(now), "no attempt while backing off");
            assert_eq!(s.wait_at(now), delay);
            delays.push(delay.as_secs());
            now += delay;
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(s.restarts(), 0, "a device that never ran was never restarted");
        assert!(!s.has_run());
    }

    #[test]
    fn a_comeback_after_running_is_a_restart_and_a_late_first_start_is_not() {
        let mut s = device();
        s.attempt(secs(0));
        s.failed(secs(0));
        s.attempt(secs(1));
        assert_eq!(s.running(secs(1)), Some(Recovered { attempt: 2, restart: false }));
        assert_eq!(s.restarts(), 0);
        s.failed(secs(5));
        s.attempt(secs(6));
        s.failed(secs(6));
        s.attempt(secs(8));
        assert_eq!(s.running(secs(8)), Some(Recovered { attempt: 3, restart: true }));
        assert_eq!(s.restarts(), 1);
        assert_eq!(s.running(secs(9)), None, "staying up is not news");
    }

    #[test]
    fn a_device_that_starts_and_fails_at_once_keeps_backing_off() {
        let mut s = device();
        let mut now = Duration::ZERO;
        let mut delays = Vec::new();
        for _ in 0..5 {
            s.attempt(now);
            s.running(now);
            now += Duration::from_millis(300);
            let delay = s.failed(now);
            delays.push(delay.as_secs());
            now += delay;
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16], "starting is not health; only a healthy run forgives");
    }

    #[test]
    fn a_healthy_run_forgives_earlier_failures() {
        let mut s = device();
        let mut now = Duration::ZERO;
        for _ in 0..4 {
            s.attempt(now);
            now += s.failed(now);
        }
        // The fifth attempt runs for longer than HEALTHY_AFTER, then fails.
        s.attempt(now);
        s.running(now);
        now += HEALTHY_AFTER + secs(1);
        assert_eq!(s.failed(now), secs(1), "back to the shortest delay after a healthy run");
        s.attempt(now + secs(1));
        now += secs(2);
        assert_eq!(s.failed(now), secs(2), "a short run keeps doubling");
    }

    #[test]
    fn a_store_outage_backs_off_then_probes_then_drains() {
        // The uploader's use: failures pause everything, the first attempt after the pause
        // is a lone probe, and the first success restores full concurrency.
        let mut store = Supervision::new(ExponentialRetry::new(Duration::from_millis(500), secs(8)).reset_on_success());
        let mut now = Duration::ZERO;
        store.attempt(now);
        store.running(now);
        assert!(!store.probing());
        // The store goes away for 40 s: every probe fails until it is back.
        let outage_ends = secs(40);
        let mut probes = 0;
        now = secs(1);
        store.failed(now);
        loop {
            now += store.wait_at(now);
            assert!(store.may_attempt(now));
            assert!(store.probing(), "after a failure, one object at a time");
            store.attempt(now);
            probes += 1;
            if now >= outage_ends {
                break;
            }
            store.failed(now);
        }
        assert_eq!(store.running(now), Some(Recovered { attempt: probes + 1, restart: true }));
        assert!(!store.probing(), "full concurrency with the first success");
        assert!(now < outage_ends + secs(8), "resumes within one capped delay of the store's return: {now:?}");
        assert!(probes <= 10, "backed off rather than hammering: {probes} probes");
        // The next failure starts again from the shortest delay.
        assert_eq!(store.failed(now + secs(1)), Duration::from_millis(500));
    }

    #[test]
    fn a_store_resets_only_on_success_however_long_a_failed_attempt_ran() {
        // A store that accepts connections and never answers: each probe times out after
        // two minutes. That is no healthy run: the pause keeps doubling.
        let mut store = Supervision::new(ExponentialRetry::new(secs(1), secs(60)).reset_on_success());
        let mut now = Duration::ZERO;
        let mut delays = Vec::new();
        for _ in 0..4 {
            store.attempt(now);
            now += secs(120);
            let delay = store.failed(now);
            delays.push(delay.as_secs());
            now += delay;
        }
        assert_eq!(delays, vec![1, 2, 4, 8]);
    }

    #[test]
    fn jittered_delays_stay_within_half_and_the_nominal() {
        let mut p = ExponentialRetry::new(secs(2), secs(8)).with_jitter();
        for nominal in [2, 4, 8, 8] {
            let d = p.delay_after_failure(Duration::ZERO);
            assert!(d >= secs(nominal) / 2 && d <= secs(nominal), "{d:?} for {nominal} s");
        }
    }

    #[test]
    fn a_stopped_supervision_attempts_nothing() {
        let mut s = device();
        s.stop();
        assert!(!s.may_attempt(secs(100)));
        assert_eq!(s.phase(), Phase::Stopped);
    }
}
