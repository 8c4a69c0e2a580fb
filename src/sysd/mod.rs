//! systemd integration: READY and STATUS notifications, and a watchdog that is fed only
//! while the recording path makes progress, so that systemd restarts a hung daemon.

use crate::base::Clocks;
use crate::ledger::Ledger;
use crate::session::Recorder;
use std::sync::Arc;
use std::time::Duration;

/// Tells systemd (when it started us with `Type=notify`) that the daemon is ready.
pub fn ready(status: &str) {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(status)]) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// Tells systemd what the daemon is doing now (`systemctl status` shows it).
pub fn status(status: &str) {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Status(status)]) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// Whether recording is making progress: during a session, some segment must have been
/// committed within two segment lengths plus a margin (slow starts, device restarts).
pub fn recording_progresses(recording: bool, since_last_commit: Duration, segment: Duration) -> bool {
    !recording || since_last_commit <= segment * 2 + Duration::from_secs(15)
}

/// Starts the watchdog thread if systemd asked for one (`WatchdogSec`).
pub fn start_watchdog(recorder: Arc<Recorder>, ledger: Arc<Ledger>, segment: Duration, clocks: Arc<dyn Clocks>) {
    let Some(interval) = sd_notify::watchdog_enabled() else { return };
    let every = interval / 3;
    tracing::info!(interval_ms = interval.as_millis() as u64, "systemd watchdog enabled");
    let spawned = std::thread::Builder::new().name("watchdog".into()).spawn(move || {
        // The segment count last seen, and when (monotonic).
        let mut last = (0u64, clocks.monotonic());
        let mut stalled = false;
        loop {
            // Blocks if the ledger writer hangs: then no more pings, and systemd steps in.
            if let Err(e) = ledger.call(|_| Ok(())) {
                tracing::error!(error = %e, "ledger not answering; withholding the watchdog");
                clocks.sleep(every);
                continue;
            }
            let status = recorder.status();
            let (recording, segments) = status.session.as_ref().map_or((false, 0), |s| (true, s.stats.segments));
            if !recording || segments != last.0 {
                last = (segments, clocks.monotonic());
            }
            let since_last_commit = clocks.monotonic().saturating_sub(last.1);
            if recording_progresses(recording, since_last_commit, segment) {
                stalled = false;
                let line = match &status.session {
                    Some(s) => format!("recording session {}: {} segments committed", s.id, s.stats.segments),
                    None => "idle: no session recording".to_string(),
                };
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog, sd_notify::NotifyState::Status(&line)]);
            } else if !stalled {
                stalled = true;
                tracing::error!(
                    seconds = since_last_commit.as_secs(),
                    "no segment committed while recording; withholding the watchdog so that systemd restarts courtbox"
                );
            }
            clocks.sleep(every);
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the watchdog thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_only_required_while_recording() {
        let seg = Duration::from_secs(10);
        assert!(recording_progresses(false, Duration::from_secs(3600), seg));
        assert!(recording_progresses(true, Duration::from_secs(30), seg));
        assert!(!recording_progresses(true, Duration::from_secs(36), seg));
    }
}
