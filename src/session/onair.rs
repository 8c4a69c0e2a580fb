//! The broadcast's policy, owned by the session because the chain must state every step:
//! only an open hearing goes out; closing the hearing cuts the broadcast at once; every
//! start, stop and refusal is a signed record naming who asked.

use super::{Active, MarkInfo, Phase, Recorder, SessionError};
use crate::base::MediaTime;
use crate::broadcast::{BlankReason, BroadcastError};
use crate::integrity::{Entry, Hearing, RecordBody};
use crate::ledger::SessionRow;
use uuid::Uuid;

/// The hearing as the sessions table stores it; anything unreadable counts as closed, so
/// that a doubt never puts a hearing on air.
pub(super) fn parse_hearing(text: &str) -> Hearing {
    text.parse().unwrap_or(Hearing::Closed)
}

/// Open or closed after the records so far: the last change, or what the session began as.
pub(super) fn hearing_after(session: &SessionRow, records: &[RecordBody]) -> Hearing {
    records
        .iter()
        .rev()
        .find_map(|r| match r.entry {
            Entry::HearingAccess { hearing, .. } => Some(hearing),
            _ => None,
        })
        .unwrap_or_else(|| parse_hearing(&session.hearing))
}

const CLOSED_REFUSAL: &str = "the hearing is closed: a closed hearing is never broadcast";
/// Who the chain names when courtbox itself ends a broadcast.
const COURTBOX: &str = "courtbox";

impl Recorder {
    /// Starts the delayed broadcast of the current hearing, if policy allows it.
    pub fn start_broadcast(&self, by: &str) -> Result<MarkInfo, SessionError> {
        let guard = self.active.lock();
        let a = guard.as_ref().ok_or(SessionError::NotRecording)?;
        if self.broadcaster.is_running() {
            return Err(SessionError::Conflict("the broadcast is already running".into()));
        }
        let media = a.now(self.clocks.as_ref());
        if a.hearing == Hearing::Closed {
            return Err(self.refuse(a, media, by, SessionError::BroadcastRefused(CLOSED_REFUSAL.into())));
        }
        let mut blanked = Vec::new();
        if matches!(a.phase, Phase::Recess { .. }) {
            blanked.push(BlankReason::Recess);
        }
        if a.privacy_muted {
            blanked.push(BlankReason::PrivacyMute);
        }
        if let Err(e) = self.broadcaster.start(media, &blanked) {
            let refusal = match e {
                BroadcastError::Pipeline(_) => SessionError::BroadcastFailed(e.to_string()),
                _ => SessionError::BroadcastRefused(e.to_string()),
            };
            return Err(self.refuse(a, media, by, refusal));
        }
        let entry = Entry::BroadcastStart {
            media,
            by: by.to_string(),
            outputs: self.broadcaster.describe_outputs(),
            delay_ms: self.broadcaster.delay().as_millis() as u64,
            rewind_ms: self.broadcaster.rewind().as_millis() as u64,
        };
        let id = a.session.id;
        match self.ledger.call(move |w| w.append(id, entry)) {
            Ok(c) => Ok(MarkInfo { session: id, index: c.index, media }),
            Err(e) => {
                // Nothing goes out that the chain does not state.
                self.broadcaster.stop();
                Err(e.into())
            }
        }
    }

    /// States a refusal in the chain and returns it as the error.
    fn refuse(&self, a: &Active, media: MediaTime, by: &str, refusal: SessionError) -> SessionError {
        let reason = match &refusal {
            SessionError::BroadcastRefused(r) | SessionError::BroadcastFailed(r) => r.clone(),
            other => other.to_string(),
        };
        tracing::warn!(%reason, %by, "broadcast refused");
        let (id, by) = (a.session.id, by.to_string());
        match self.ledger.call(move |w| w.append(id, Entry::BroadcastRefused { media, by, reason })) {
            Ok(_) => refusal,
            Err(e) => e.into(),
        }
    }

    pub fn stop_broadcast(&self, by: &str) -> Result<MarkInfo, SessionError> {
        let guard = self.active.lock();
        let a = guard.as_ref().ok_or(SessionError::NotRecording)?;
        if !self.broadcaster.stop() {
            return Err(SessionError::Conflict("no broadcast is running".into()));
        }
        let (id, media, by) = (a.session.id, a.now(self.clocks.as_ref()), by.to_string());
        let reason = "stopped".to_string();
        let c = self.ledger.call(move |w| w.append(id, Entry::BroadcastStop { media, by, reason }))?;
        Ok(MarkInfo { session: id, index: c.index, media })
    }

    /// Declares the hearing open or closed to the public. Closing it cuts the broadcast
    /// before anything is written.
    pub fn set_hearing(&self, hearing: Hearing, by: &str) -> Result<MarkInfo, SessionError> {
        let mut guard = self.active.lock();
        let a = guard.as_mut().ok_or(SessionError::NotRecording)?;
        if a.hearing == hearing {
            return Err(SessionError::Conflict(format!("the hearing is already {}", hearing.as_str())));
        }
        let cut = hearing == Hearing::Closed && self.broadcaster.stop();
        let (id, media, by) = (a.session.id, a.now(self.clocks.as_ref()), by.to_string());
        a.hearing = hearing;
        let who = by.clone();
        let c = self.ledger.call(move |w| w.append(id, Entry::HearingAccess { media, hearing, by: who }))?;
        if cut {
            let reason = "the hearing was closed".to_string();
            self.ledger.call(move |w| w.append(id, Entry::BroadcastStop { media, by, reason }))?;
        }
        tracing::info!(session = %id, hearing = hearing.as_str(), broadcast_cut = cut, "hearing access changed");
        Ok(MarkInfo { session: id, index: c.index, media })
    }

    /// Ends a running broadcast because the session or the daemon ends.
    pub(super) fn end_broadcast(&self, id: Uuid, media: MediaTime, reason: &str) {
        if self.broadcaster.stop() {
            let (by, reason) = (COURTBOX.to_string(), reason.to_string());
            if let Err(e) = self.ledger.call(move |w| w.append(id, Entry::BroadcastStop { media, by, reason })) {
                tracing::error!(error = %e, "could not record the end of the broadcast");
            }
        }
    }

    /// A broadcast the chain shows as running when the daemon died did end then: say so.
    /// It does not start again by itself.
    pub(super) fn end_interrupted_broadcast(
        &self,
        id: Uuid,
        records: &[RecordBody],
        media: MediaTime,
    ) -> Result<(), SessionError> {
        let last = records.iter().rev().find_map(|r| match r.entry {
            Entry::BroadcastStart { .. } => Some(true),
            Entry::BroadcastStop { .. } => Some(false),
            _ => None,
        });
        if last == Some(true) {
            let by = COURTBOX.to_string();
            let reason = "the daemon was interrupted; a broadcast does not restart by itself".to_string();
            self.ledger.call(move |w| w.append(id, Entry::BroadcastStop { media, by, reason }))?;
        }
        Ok(())
    }
}
