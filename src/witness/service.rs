//! The witness service: the periodic checkpoint of the recording session, and the stamper
//! that gets an RFC 3161 token for every checkpoint from the configured TSA. While the TSA
//! cannot be reached, checkpoints wait in the ledger (they are already signed, stored and
//! uploaded) and are stamped when it answers again; the delay shows in the token's time and
//! `verify` states it. Recording never waits for any of this.
//!
//! Decisions (what is due when) are `Schedule`, a pure state machine on monotonic time,
//! unit-tested on simulated time; the thread only carries them out.

use super::tsa::{TsaError, TsaPin, request_token, verify_token};
use crate::base::{Backoff, Clocks};
use crate::ledger::Ledger;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct TsaSettings {
    pub url: String,
    pub pin: TsaPin,
    pub timeout: Duration,
}

pub struct WitnessSettings {
    pub checkpoint_every: Duration,
    pub tsa: Option<TsaSettings>,
}

/// The TSA as the box last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TsaState {
    #[default]
    NotConfigured,
    Answering,
    /// Checkpoints wait for it; they are stamped when it answers again.
    Unreachable {
        since: String,
        error: String,
    },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct WitnessStatus {
    pub tsa: TsaState,
    pub stamped: u64,
    /// Seconds between signing and stamping of the last stamped checkpoint.
    pub last_stamp_delay_s: Option<f64>,
}

/// What the service does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Checkpoint,
    Stamp,
}

/// When the next periodic checkpoint and the next stamping attempt are due.
#[derive(Debug, Clone)]
pub struct Schedule {
    every: Duration,
    next_checkpoint: Duration,
    next_stamp: Option<Duration>,
    backoff: Backoff,
}

/// How often the ledger is looked at for checkpoints to stamp when all is well.
const STAMP_POLL: Duration = Duration::from_millis(500);

impl Schedule {
    pub fn new(now: Duration, every: Duration, stamping: bool) -> Schedule {
        Schedule {
            every,
            next_checkpoint: now + every,
            next_stamp: stamping.then_some(now),
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
        }
    }

    /// What is due at `now`.
    pub fn due(&mut self, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        if now >= self.next_checkpoint {
            actions.push(Action::Checkpoint);
            // From now, not from when it was due: a stalled box does not burst.
            self.next_checkpoint = now + self.every;
        }
        if self.next_stamp.is_some_and(|t| now >= t) {
            actions.push(Action::Stamp);
        }
        actions
    }

    /// The stamper reached the TSA (or had nothing to do): poll again shortly.
    pub fn stamped(&mut self, now: Duration) {
        self.backoff.reset();
        self.next_stamp = Some(now + STAMP_POLL);
    }

    /// The TSA did not answer: try again after a growing delay (1 s doubling to 30 s).
    pub fn stamp_failed(&mut self, now: Duration) -> Duration {
        let delay = self.backoff.next_delay();
        self.next_stamp = Some(now + delay);
        delay
    }

    /// How long to sleep before something may be due.
    pub fn idle(&self, now: Duration) -> Duration {
        let next = self.next_stamp.map_or(self.next_checkpoint, |s| s.min(self.next_checkpoint));
        next.saturating_sub(now).min(Duration::from_millis(500))
    }
}

pub struct Witness {
    stop: CancellationToken,
    status: Arc<Mutex<WitnessStatus>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Witness {
    pub fn start(settings: WitnessSettings, ledger: Arc<Ledger>, clocks: Arc<dyn Clocks>) -> Witness {
        let stop = CancellationToken::new();
        let status = Arc::new(Mutex::new(WitnessStatus {
            tsa: if settings.tsa.is_some() { TsaState::Answering } else { TsaState::NotConfigured },
            ..Default::default()
        }));
        let (token, shared) = (stop.clone(), status.clone());
        let thread = std::thread::Builder::new()
            .name("witness".into())
            .spawn(move || run(settings, ledger, clocks, token, shared))
            .expect("spawn witness thread");
        Witness { stop, status, thread: Mutex::new(Some(thread)) }
    }

    pub fn status(&self) -> WitnessStatus {
        self.status.lock().expect("witness status").clone()
    }

    pub fn shutdown(&self) {
        self.stop.cancel();
        if let Some(t) = self.thread.lock().expect("witness thread").take() {
            let _ = t.join();
        }
    }
}

fn run(
    settings: WitnessSettings,
    ledger: Arc<Ledger>,
    clocks: Arc<dyn Clocks>,
    stop: CancellationToken,
    status: Arc<Mutex<WitnessStatus>>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("witness runtime");
    let mut schedule = Schedule::new(clocks.monotonic(), settings.checkpoint_every, settings.tsa.is_some());
    while !stop.is_cancelled() {
        for action in schedule.due(clocks.monotonic()) {
            match action {
                Action::Checkpoint => {
                    if let Err(e) = ledger.call(|w| w.checkpoint_recording()) {
                        tracing::warn!(error = %e, "periodic checkpoint failed; the next one covers it");
                    }
                }
                Action::Stamp => {
                    let Some(tsa) = &settings.tsa else { continue };
                    match stamp_pending(&runtime, tsa, &ledger, &status) {
                        Ok(()) => schedule.stamped(clocks.monotonic()),
                        Err(e) => {
                            let delay = schedule.stamp_failed(clocks.monotonic());
                            let mut s = status.lock().expect("witness status");
                            if !matches!(s.tsa, TsaState::Unreachable { .. }) {
                                tracing::warn!(error = %e, retry_s = delay.as_secs_f64(), "the TSA does not answer; checkpoints wait and are stamped later");
                                s.tsa =
                                    TsaState::Unreachable { since: clocks.wall().to_rfc3339(), error: e.to_string() };
                            }
                        }
                    }
                }
            }
        }
        let idle = schedule.idle(clocks.monotonic()).max(Duration::from_millis(20));
        runtime.block_on(async {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(idle) => {}
            }
        });
    }
}

/// Stamps every checkpoint that has no token yet, oldest first. Stops at the first failure
/// to reach the TSA; a token that does not verify against the pinned TSA is never stored.
fn stamp_pending(
    runtime: &tokio::runtime::Runtime,
    tsa: &TsaSettings,
    ledger: &Ledger,
    status: &Mutex<WitnessStatus>,
) -> Result<(), TsaError> {
    let pending = ledger
        .reader()
        .and_then(|r| r.unstamped_checkpoints(32))
        .map_err(|e| TsaError::Invalid(format!("ledger: {e}")))?;
    for cp in pending {
        let token = runtime.block_on(request_token(&tsa.url, &cp.note, tsa.timeout))?;
        let attested = verify_token(&token, &cp.note, &tsa.pin)?;
        let (log, seq) = (cp.log.clone(), cp.seq);
        ledger
            .call(move |w| w.add_timestamp(&log, seq, &token))
            .map_err(|e| TsaError::Invalid(format!("ledger: {e}")))?;
        let delay = crate::base::WallTime::parse(&cp.created_wall).ok().map(|w| attested.since(w) as f64 / 1e9);
        let mut s = status.lock().expect("witness status");
        if let TsaState::Unreachable { since, .. } = &s.tsa {
            tracing::info!(since = %since, delay_s = delay.unwrap_or(0.0), "the TSA answers again; waiting checkpoints are being stamped");
        }
        s.tsa = TsaState::Answering;
        s.stamped += 1;
        s.last_stamp_delay_s = delay;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_checkpoint_is_due_every_period_and_a_stall_does_not_burst() {
        let mut s = Schedule::new(Duration::ZERO, 60 * S, false);
        assert!(s.due(59 * S).is_empty());
        assert_eq!(s.due(60 * S), vec![Action::Checkpoint]);
        assert!(s.due(61 * S).is_empty());
        // The box stalled for ten minutes: one checkpoint, then the period again.
        assert_eq!(s.due(720 * S), vec![Action::Checkpoint]);
        assert!(s.due(779 * S).is_empty());
        assert_eq!(s.due(780 * S), vec![Action::Checkpoint]);
    }

    #[test]
    fn an_unreachable_tsa_is_retried_with_growing_delays_then_polled_again() {
        let mut s = Schedule::new(Duration::ZERO, 60 * S, true);
        assert_eq!(s.due(Duration::ZERO), vec![Action::Stamp]);
        let delays: Vec<Duration> = (0..7).map(|_| s.stamp_failed(Duration::ZERO)).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30].map(|d| d * S));
        assert!(s.due(29 * S).is_empty());
        assert_eq!(s.due(30 * S), vec![Action::Stamp]);
        s.stamped(30 * S);
        assert_eq!(s.due(30 * S + STAMP_POLL), vec![Action::Stamp]);
        assert_eq!(s.stamp_failed(31 * S), S, "a success starts the back-off over");
    }
}
