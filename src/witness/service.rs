//! The witness service: the periodic checkpoints of the recording session and of the audit
//! chain, and the stamper that gets an RFC 3161 token for every checkpoint from the configured
//! TSA. While the TSA cannot be reached, checkpoints wait in the ledger (they are already signed,
//! stored and uploaded) and are stamped when it answers again; the delay shows in the token's
//! time and `verify` states it. Recording never waits for any of this.
//!
//! Decisions (what is due when) are `Schedule`, a pure state machine on monotonic time,
//! unit-tested on simulated time; the thread only carries them out.

use super::tsa::{TsaError, TsaPin, request_token, verify_token};
use crate::base::{Clocks, ExponentialRetry, RetryPolicy, ServiceThread};
use crate::ledger::Ledger;
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::Arc;
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
    /// Why a configured TSA cannot be used (its pin does not load), shown in status.
    pub tsa_problem: Option<String>,
}

/// The TSA as the box last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TsaState {
    #[default]
    NotConfigured,
    /// Configured, but its pinned certificate cannot be read: nothing is stamped until the
    /// configuration is fixed and the daemon restarted.
    Misconfigured {
        error: String,
    },
    /// Configured; no token asked for yet.
    NotYetAsked,
    Answering,
    /// Checkpoints wait for it; they are stamped when it answers again.
    Unreachable {
        since: String,
        error: String,
    },
    /// It answers, but with tokens the pinned certificate refuses (a new TSA certificate, a
    /// wrong URL): a technician must update the pin. Checkpoints wait meanwhile.
    Refusing {
        since: String,
        error: String,
    },
}

impl TsaState {
    fn after(error: &TsaError, since: String) -> TsaState {
        match error {
            TsaError::Unreachable(_) => TsaState::Unreachable { since, error: error.to_string() },
            _ => TsaState::Refusing { since, error: error.to_string() },
        }
    }
    fn failing(&self) -> bool {
        matches!(self, TsaState::Unreachable { .. } | TsaState::Refusing { .. })
    }
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct WitnessStatus {
    pub tsa: TsaState,
    /// Checkpoints stamped since the daemon started.
    pub stamped: u64,
    /// Seconds between signing and stamping of the last stamped checkpoint.
    pub last_stamp_delay_s: Option<f64>,
    /// Checkpoints waiting for a timestamp (only counted when a TSA is configured).
    pub unstamped: u64,
    pub last_checkpoint_wall: Option<String>,
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
    /// Between attempts to reach a TSA that does not answer: 1 s doubling to 30 s, reset by
    /// an answer.
    retry: ExponentialRetry,
}

/// How often the ledger is looked at for checkpoints to stamp when all is well.
const STAMP_POLL: Duration = Duration::from_millis(500);

impl Schedule {
    pub fn new(now: Duration, every: Duration, stamping: bool) -> Schedule {
        Schedule {
            every,
            next_checkpoint: now + every,
            next_stamp: stamping.then_some(now),
            retry: ExponentialRetry::new(Duration::from_secs(1), Duration::from_secs(30)).reset_on_success(),
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
        self.retry.succeeded();
        self.next_stamp = Some(now + STAMP_POLL);
    }

    /// The TSA did not answer: try again after a growing delay (1 s doubling to 30 s).
    pub fn stamp_failed(&mut self, now: Duration) -> Duration {
        let delay = self.retry.delay_after_failure(Duration::ZERO);
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
    status: Arc<Mutex<WitnessStatus>>,
    thread: ServiceThread,
}

impl Witness {
    pub fn start(settings: WitnessSettings, ledger: Arc<Ledger>, clocks: Arc<dyn Clocks>) -> Witness {
        let status = Arc::new(Mutex::new(WitnessStatus {
            tsa: match (&settings.tsa, &settings.tsa_problem) {
                (Some(_), _) => TsaState::NotYetAsked,
                (None, Some(e)) => TsaState::Misconfigured { error: e.clone() },
                (None, None) => TsaState::NotConfigured,
            },
            ..Default::default()
        }));
        let shared = status.clone();
        let thread = ServiceThread::spawn("witness", move |token| run(settings, ledger, clocks, token, shared));
        Witness { status, thread }
    }

    pub fn status(&self) -> WitnessStatus {
        self.status.lock().clone()
    }

    /// The status with the ledger's counts (blocking: reads the ledger).
    pub fn status_with(&self, ledger: &Ledger) -> Result<WitnessStatus, crate::ledger::LedgerError> {
        let mut s = self.status();
        let (unstamped, last) = ledger.reader()?.checkpoint_summary()?;
        s.unstamped = if s.tsa == TsaState::NotConfigured { 0 } else { unstamped };
        s.last_checkpoint_wall = last;
        Ok(s)
    }

    pub fn shutdown(&self) {
        self.thread.stop();
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
                        tracing::warn!(error = %e, "periodic checkpoint of the session failed; the next one covers it");
                    }
                    if let Err(e) = ledger.call(|w| w.checkpoint_audit()) {
                        tracing::warn!(error = %e, "periodic checkpoint of the audit chain failed; the next one covers it");
                    }
                }
                Action::Stamp => {
                    let Some(tsa) = &settings.tsa else { continue };
                    match stamp_pending(&runtime, tsa, &ledger, &status, &stop) {
                        Ok(()) => schedule.stamped(clocks.monotonic()),
                        Err(StampError::Tsa(e)) => {
                            let delay = schedule.stamp_failed(clocks.monotonic());
                            let mut s = status.lock();
                            let next = TsaState::after(&e, clocks.wall().to_rfc3339());
                            if std::mem::discriminant(&s.tsa) != std::mem::discriminant(&next) {
                                tracing::warn!(error = %e, retry_s = delay.as_secs_f64(), "the TSA gives no usable token; checkpoints wait and are stamped later");
                                s.tsa = next;
                            }
                        }
                        Err(StampError::Ledger(e)) => {
                            schedule.stamp_failed(clocks.monotonic());
                            tracing::warn!(error = %e, "cannot read or store timestamps in the ledger; will retry");
                        }
                        Err(StampError::Stopping) => break,
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

/// Why stamping stopped.
enum StampError {
    Tsa(TsaError),
    Ledger(crate::ledger::LedgerError),
    Stopping,
}

/// Stamps every checkpoint that has no token yet, oldest first. Stops at the first failure;
/// a token that does not verify against the pinned TSA is never stored. A shutdown cuts a
/// request short (the checkpoint is stamped after the restart).
fn stamp_pending(
    runtime: &tokio::runtime::Runtime,
    tsa: &TsaSettings,
    ledger: &Ledger,
    status: &Mutex<WitnessStatus>,
    stop: &CancellationToken,
) -> Result<(), StampError> {
    let pending = ledger.reader().and_then(|r| r.unstamped_checkpoints(32)).map_err(StampError::Ledger)?;
    for cp in pending {
        let token = runtime.block_on(async {
            tokio::select! {
                _ = stop.cancelled() => Err(StampError::Stopping),
                t = request_token(&tsa.url, &cp.note, tsa.timeout) => t.map_err(StampError::Tsa),
            }
        })?;
        let attested = verify_token(&token, &cp.note, &tsa.pin).map_err(StampError::Tsa)?;
        let (log, seq) = (cp.log.clone(), cp.seq);
        ledger.call(move |w| w.add_timestamp(&log, seq, &token)).map_err(StampError::Ledger)?;
        let delay = crate::base::WallTime::parse(&cp.created_wall).ok().map(|w| attested.since(w) as f64 / 1e9);
        let mut s = status.lock();
        if s.tsa.failing() {
            tracing::info!(
                delay_s = delay.unwrap_or(0.0),
                "the TSA answers again; waiting checkpoints are being stamped"
            );
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
