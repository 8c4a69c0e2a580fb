//! Sessions: the recorder service that starts, marks, stops and resumes hearings. It owns
//! the capture run of the current session and the committer that turns its segments into
//! records. All methods block (GStreamer, SQLite); async callers use `spawn_blocking`.

mod clockwatch;
mod commit;
pub use commit::SEAL_SECONDS;
mod continuity;
mod onair;
mod recovery;

pub use continuity::{Continuity, GapSpec};
pub use recovery::resume_offset;

use crate::base::{Clocks, MediaTime};
use crate::broadcast::{BlankReason, BroadcastStatus, Broadcaster};
pub use crate::capture::DiskFullHook;
use crate::capture::{CaptureError, CaptureRun, DeviceStatus, RunParams, Templates, plan_devices};
use crate::config::LoadedConfig;
use crate::integrity::{Entry, Hearing, Language, RecordKind, RunCause, UnknownLanguage};
use crate::ledger::{Ledger, LedgerError, NewSession, RunEnd};
use crate::stt::{MicInfo, SessionSpec, Stt};
use commit::{CommitContext, Committer};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use uuid::Uuid;

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("a session is already recording ({0}); stop it before starting another")]
    AlreadyRecording(Uuid),
    #[error("no session is recording")]
    NotRecording,
    #[error("the hearing is already in recess")]
    InRecess,
    #[error("the hearing is not in recess")]
    NotInRecess,
    /// The request contradicts the current state (e.g. opening an open hearing).
    #[error("{0}")]
    Conflict(String),
    /// Policy or configuration does not allow a broadcast; the chain states the refusal.
    #[error("broadcast refused: {0}")]
    BroadcastRefused(String),
    /// The broadcast could not start for a technical reason; the chain states it.
    #[error("the broadcast could not start: {0}")]
    BroadcastFailed(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Case number as the court writes it, e.g. "2-1234/2026".
    #[schema(max_length = 64)]
    pub case: String,
    #[schema(max_length = 200)]
    pub title: String,
    /// Language of the hearing: kk, ru, en, or auto.
    #[schema(pattern = "^(kk|ru|en|auto)$")]
    pub language: String,
    pub hearing: Hearing,
}

/// The codes of [`Language`], for checking text that is not parsed (a profile's microphones).
pub const LANGUAGES: [&str; 4] = ["kk", "ru", "en", "auto"];

/// A start request whose fields were checked: trimmed text, a known language.
#[derive(Debug, Clone)]
pub struct ValidStart {
    pub case: String,
    pub title: String,
    pub language: Language,
    pub hearing: Hearing,
}

fn check_text(field: &str, value: &str, max: usize) -> Result<String, SessionError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(SessionError::Invalid(format!("{field} is empty")));
    }
    if v.chars().count() > max {
        return Err(SessionError::Invalid(format!("{field} is longer than {max} characters")));
    }
    if v.chars().any(char::is_control) {
        return Err(SessionError::Invalid(format!("{field} contains control characters")));
    }
    Ok(v.to_string())
}

impl StartRequest {
    /// The language stays text on the wire, so that a bad code is answered like any other
    /// invalid field (400, naming the field) rather than as a JSON shape error.
    pub fn validate(&self) -> Result<ValidStart, SessionError> {
        let language: Language =
            self.language.parse().map_err(|e: UnknownLanguage| SessionError::Invalid(format!("language {e}")))?;
        Ok(ValidStart {
            case: check_text("case", &self.case, 64)?,
            title: check_text("title", &self.title, 200)?,
            language,
            hearing: self.hearing,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionInfo {
    #[schema(value_type = String, format = "uuid")]
    pub session: Uuid,
    pub run: u32,
    pub started_media: MediaTime,
    /// Devices that cannot start (an element not installed, a template that does not
    /// parse): the others record, these are gaps in the record with this reason.
    #[serde(default)]
    pub not_recording: Vec<NotRecording>,
}

/// A device that records nothing in this run, and why.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotRecording {
    pub device: String,
    pub sources: Vec<String>,
    pub reason: String,
}

/// The devices of a run that cannot start.
fn not_recording(capture: Option<&CaptureRun>) -> Vec<NotRecording> {
    capture
        .map(|c| c.devices())
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.state == crate::capture::DeviceState::CannotStart)
        .map(|d| NotRecording { device: d.name, sources: d.sources, reason: d.last_error.unwrap_or_default() })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StopInfo {
    #[schema(value_type = String, format = "uuid")]
    pub session: Uuid,
    pub stopped_media: MediaTime,
    pub records: u64,
    pub segments: u64,
    pub gaps: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MarkInfo {
    #[schema(value_type = String, format = "uuid")]
    pub session: Uuid,
    pub index: u64,
    pub media: MediaTime,
}

/// Live counters of the current run, for status and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<StatsInner>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatsInner {
    pub segments: u64,
    pub bytes: u64,
    pub gaps: u64,
    pub last_media: BTreeMap<String, MediaTime>,
    pub last_error: Option<String>,
}

impl Stats {
    fn segment(&self, source: &str, bytes: u64, end: MediaTime) {
        let mut s = self.inner.lock();
        s.segments += 1;
        s.bytes += bytes;
        s.last_media.insert(source.to_string(), end);
    }
    fn gap(&self) {
        self.inner.lock().gaps += 1;
    }
    fn note_error(&self, e: &str) {
        self.inner.lock().last_error = Some(e.to_string());
    }
    pub fn snapshot(&self) -> StatsInner {
        self.inner.lock().clone()
    }
}

/// Whether the session in progress records; serialized as `recording` or `recess`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionPhase {
    Recording,
    /// The hearing is paused and nothing is recorded.
    Recess,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionStatus {
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    pub state: SessionPhase,
    /// Media time at which the recess began.
    pub recess_since: Option<MediaTime>,
    /// The broadcast is muted for privacy (the record never is).
    pub privacy_muted: bool,
    pub case: String,
    pub title: String,
    pub language: String,
    pub hearing: String,
    pub started_wall: String,
    pub run: u32,
    pub run_started_media: MediaTime,
    pub media_now: MediaTime,
    pub devices: Vec<DeviceStatus>,
    /// Signal of every source: audio level, black or frozen picture.
    pub health: Vec<crate::capture::SourceHealth>,
    pub stats: StatsInner,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub recording: bool,
    pub session: Option<SessionStatus>,
    pub broadcast: BroadcastStatus,
}

struct Active {
    session: crate::ledger::SessionRow,
    run: u32,
    stats: Arc<Stats>,
    privacy_muted: bool,
    /// Open or closed to the public now (it may change during the session).
    hearing: Hearing,
    phase: Phase,
}

enum Phase {
    Recording {
        capture: CaptureRun,
        committer: Committer,
    },
    /// Capture stopped for a recess at `since`; `continuity` carries the accounting of every
    /// source to the next run (or to the stop).
    Recess {
        continuity: Continuity,
        since: MediaTime,
        /// When the recess began, in monotonic time (`Clocks::monotonic`).
        at: Duration,
    },
}

impl Active {
    /// Media time now, whether recording or in recess.
    fn now(&self, clocks: &dyn Clocks) -> MediaTime {
        match &self.phase {
            Phase::Recording { capture, .. } => capture.now(),
            Phase::Recess { since, at, .. } => {
                MediaTime(since.0 + clocks.monotonic().saturating_sub(*at).as_nanos() as u64)
            }
        }
    }

    fn capture(&self) -> Option<&CaptureRun> {
        match &self.phase {
            Phase::Recording { capture, .. } => Some(capture),
            Phase::Recess { .. } => None,
        }
    }
}

pub struct Recorder {
    cfg: Arc<LoadedConfig>,
    ledger: Arc<Ledger>,
    clocks: Arc<dyn Clocks>,
    templates: Templates,
    stt: Option<Arc<Stt>>,
    broadcaster: Arc<Broadcaster>,
    active: Mutex<Option<Active>>,
    /// Why cameras must not record now (disk nearly full), applied to every run.
    video_paused: Mutex<Option<String>>,
    /// Who hears that a segment could not be written for lack of space (the disk watch).
    disk_full: Mutex<Option<DiskFullHook>>,
}

/// How long stopping a session waits for captions of what was just said; what remains is
/// transcribed afterwards from the recording.
const CAPTIONS_AT_STOP: Duration = Duration::from_secs(30);
const CAPTIONS_AT_SHUTDOWN: Duration = Duration::from_secs(5);

impl Recorder {
    /// `stt`: the speech service, or none when captions are disabled.
    pub fn new(
        cfg: Arc<LoadedConfig>,
        ledger: Arc<Ledger>,
        clocks: Arc<dyn Clocks>,
        stt: Option<Arc<Stt>>,
    ) -> Recorder {
        let templates = Templates::new(cfg.pipelines_dir.clone());
        let broadcaster = Arc::new(Broadcaster::new(&cfg, clocks.clone()));
        Recorder {
            cfg,
            ledger,
            clocks,
            templates,
            stt,
            broadcaster,
            active: Mutex::new(None),
            video_paused: Mutex::new(None),
            disk_full: Mutex::new(None),
        }
    }

    fn plan(&self) -> Result<Vec<crate::capture::DevicePlan>, SessionError> {
        Ok(plan_devices(&self.cfg.profile, &self.templates, &self.cfg.sim_audio_dir, self.stt.is_some())?)
    }

    fn spool_dir(&self, session: Uuid) -> PathBuf {
        self.cfg.data_dir.join("spool").join(session.to_string())
    }

    /// Called once at daemon start: commits what a crash left in the spool and resumes the
    /// interrupted session, if any. Returns the resumed session.
    pub fn recover(&self) -> Result<Option<Uuid>, SessionError> {
        let reader = self.ledger.reader()?;
        let Some(interrupted) = recovery::find_interrupted(&reader)? else { return Ok(None) };
        let session = interrupted.session;
        tracing::warn!(session = %session.id, cause = ?interrupted.cause, "a session was interrupted; recovering its spool and resuming");
        let recovered = recovery::commit_orphans(&self.ledger, &self.cfg.data_dir, &session)?;
        let damaged = recovery::check_committed_files(&self.ledger, &self.cfg.data_dir, session.id)?;
        tracing::info!(
            committed = recovered.committed,
            quarantined = recovered.quarantined,
            failed = recovered.failed,
            damaged,
            "spool recovered"
        );
        let records = reader.record_bodies(session.id)?;
        let offset = recovery::resume_offset(&session, &records, self.clocks.wall());
        let continuity = Continuity::replay(&records);
        let privacy_muted = records
            .iter()
            .rev()
            .find_map(|r| match r.entry {
                Entry::PrivacyMute { muted, .. } => Some(muted),
                _ => None,
            })
            .unwrap_or(false);
        let hearing = onair::hearing_after(&session, &records);
        self.end_interrupted_broadcast(session.id, &records, offset)?;
        let mut active = self.active.lock();
        if interrupted.in_recess {
            tracing::info!(session = %session.id, "the session is in recess; it records again when resumed");
            *active = Some(Active {
                session: session.clone(),
                run: interrupted.last_run,
                stats: Arc::default(),
                privacy_muted,
                hearing,
                phase: Phase::Recess { continuity, since: offset, at: self.clocks.monotonic() },
            });
            return Ok(Some(session.id));
        }
        let next_seq = reader.last_seq(session.id)?.into_iter().map(|(k, v)| (k, v + 1)).collect();
        let mut resumed =
            self.start_run(session.clone(), interrupted.last_run + 1, interrupted.cause, offset, next_seq, continuity)?;
        resumed.privacy_muted = privacy_muted;
        resumed.hearing = hearing;
        *active = Some(resumed);
        Ok(Some(session.id))
    }

    fn start_run(
        &self,
        session: crate::ledger::SessionRow,
        run: u32,
        cause: RunCause,
        offset: MediaTime,
        next_seq: HashMap<String, u64>,
        continuity: Continuity,
    ) -> Result<Active, SessionError> {
        let plans = self.plan()?;
        let id = session.id;
        let boot = crate::base::boot_id();
        self.ledger.call(move |w| w.begin_run(id, run, &boot, offset))?;
        let stats = Arc::new(Stats::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let committer = Committer::start(
            CommitContext {
                session: id,
                run,
                cause,
                ledger: self.ledger.clone(),
                data_dir: self.cfg.data_dir.clone(),
                clocks: self.clocks.clone(),
                stats: stats.clone(),
            },
            continuity,
            rx,
        );
        let rec = &self.cfg.config.recording;
        let params = RunParams {
            session_dir: self.spool_dir(id),
            media_offset: offset,
            segment: Duration::from_nanos(session.segment_ns),
            next_seq,
            start_timeout: Duration::from_millis(rec.start_timeout_ms.into()),
            sync_interval: Duration::from_millis(rec.sync_interval_ms.into()),
            tap: self.stt.as_ref().map(|s| s.tap()),
            encoded_tap: self.broadcaster.configured().then(|| self.broadcaster.tap()),
            video_paused: self.video_paused.lock().clone(),
            on_disk_full: self.disk_full.lock().clone(),
            alarm_after: crate::capture::AlarmAfter {
                silent: Duration::from_secs(self.cfg.config.health.silent_alarm_seconds.into()),
                picture: Duration::from_secs(self.cfg.config.health.picture_alarm_seconds.into()),
            },
        };
        let capture = match CaptureRun::start(plans, params, self.clocks.clone(), tx) {
            Ok(c) => c,
            Err(e) => {
                committer.finish();
                return Err(e.into());
            }
        };
        tracing::info!(session = %id, run, t0 = %capture.t0(), ?cause, "recording");
        if let Some(stt) = &self.stt {
            stt.session_started(SessionSpec {
                id,
                run_start: capture.t0(),
                language: session.language.clone(),
                mics: self
                    .cfg
                    .profile
                    .sources()
                    .into_iter()
                    .filter(|s| s.kind == crate::config::SourceKind::Audio)
                    .map(|s| MicInfo { source: s.name, role: s.role })
                    .collect(),
            });
        }
        let hearing = onair::parse_hearing(&session.hearing);
        Ok(Active {
            session,
            run,
            stats,
            privacy_muted: false,
            hearing,
            phase: Phase::Recording { capture, committer },
        })
    }

    pub fn start(&self, req: &StartRequest) -> Result<SessionInfo, SessionError> {
        let req = req.validate()?;
        let mut active = self.active.lock();
        if let Some(a) = active.as_ref() {
            return Err(SessionError::AlreadyRecording(a.session.id));
        }
        // Fail on a bad template before anything is written.
        self.plan()?;
        let new = NewSession {
            court: self.cfg.config.court.clone(),
            room: self.cfg.config.room.clone(),
            case: req.case,
            title: req.title,
            language: req.language,
            hearing: req.hearing,
            profile: self.cfg.profile.name.clone(),
            segment_ns: self.cfg.segment_nanos(),
            sources: self.cfg.profile.sources(),
        };
        let (id, _) = self.ledger.call(move |w| w.create_session(new))?;
        let session = self.ledger.reader()?.session(id)?.ok_or(SessionError::NotRecording)?;
        match self.start_run(session, 1, RunCause::SessionStart, MediaTime::ZERO, HashMap::new(), Continuity::default())
        {
            Ok(a) => {
                let started_media = a.capture().map(|c| c.t0()).unwrap_or_default();
                let info =
                    SessionInfo { session: id, run: 1, started_media, not_recording: not_recording(a.capture()) };
                *active = Some(a);
                Ok(info)
            }
            Err(e) => {
                // Nothing was recorded; close the session so the box is not stuck.
                let _ = self.ledger.call(move |w| w.stop_session(id, None, MediaTime::ZERO, Vec::new()));
                Err(e)
            }
        }
    }

    /// A note on the record at this moment, by `by` (also during a recess).
    pub fn mark(&self, text: &str, by: &str) -> Result<MarkInfo, SessionError> {
        let text = check_text("mark text", text, 2000)?;
        let active = self.active.lock();
        let a = active.as_ref().ok_or(SessionError::NotRecording)?;
        let media = a.now(self.clocks.as_ref());
        let id = a.session.id;
        let by = Some(by.to_string());
        let c = self.ledger.call(move |w| w.append(id, Entry::Mark { media, text, by }))?;
        Ok(MarkInfo { session: id, index: c.index, media })
    }

    /// Pauses the hearing: every device finalizes its segment and capture stops until
    /// `resume`; the chain states the recess and who called it.
    pub fn recess(&self, by: &str) -> Result<MarkInfo, SessionError> {
        let mut guard = self.active.lock();
        let a = guard.take().ok_or(SessionError::NotRecording)?;
        let Phase::Recording { capture, committer } = a.phase else {
            *guard = Some(a);
            return Err(SessionError::InRecess);
        };
        // The broadcast shows the slate from here: no picture would come, nor should it.
        self.broadcaster.blank(BlankReason::Recess, capture.now());
        let (since, mut continuity) = self.end_capture(capture, committer, CAPTIONS_AT_STOP);
        let sources: Vec<String> = self.cfg.profile.sources().into_iter().map(|s| s.name).collect();
        continuity.interrupted(&sources, crate::integrity::RECESS_REASON);
        let (id, run, by) = (a.session.id, a.run, by.to_string());
        *guard = Some(Active { phase: Phase::Recess { continuity, since, at: self.clocks.monotonic() }, ..a });
        let c = self
            .ledger
            .call(move |w| w.end_run_stating(id, run, RunEnd::Recess, Entry::Recess { media: since, by }))?;
        tracing::info!(session = %id, "recess: recording paused");
        Ok(MarkInfo { session: id, index: c.index, media: since })
    }

    /// Ends a recess: the chain states it, then a new run records every source again.
    pub fn resume(&self, by: &str) -> Result<SessionInfo, SessionError> {
        let mut guard = self.active.lock();
        let a = guard.as_ref().ok_or(SessionError::NotRecording)?;
        if !matches!(a.phase, Phase::Recess { .. }) {
            return Err(SessionError::NotInRecess);
        }
        // Everything that can fail before capture starts leaves the session in recess.
        let id = a.session.id;
        let reader = self.ledger.reader()?;
        let records = reader.record_bodies(id)?;
        let offset = recovery::resume_offset(&a.session, &records, self.clocks.wall());
        let next_seq = reader.last_seq(id)?.into_iter().map(|(k, v)| (k, v + 1)).collect();
        // A resume that failed to start capture may have left its run row: count past it.
        let run = reader.runs(id)?.last().map_or(a.run, |r| r.run) + 1;
        let by = by.to_string();
        self.ledger.call(move |w| w.append(id, Entry::RecessEnd { media: offset, by }))?;

        let a = guard.take().expect("checked above");
        let Phase::Recess { continuity, .. } = a.phase else { unreachable!("checked above") };
        match self.start_run(a.session.clone(), run, RunCause::ResumeAfterRecess, offset, next_seq, continuity.clone())
        {
            Ok(mut resumed) => {
                resumed.privacy_muted = a.privacy_muted;
                resumed.hearing = a.hearing;
                self.broadcaster.unblank(BlankReason::Recess, offset);
                let info = SessionInfo {
                    session: id,
                    run: resumed.run,
                    started_media: offset,
                    not_recording: not_recording(resumed.capture()),
                };
                *guard = Some(resumed);
                tracing::info!(session = %id, "recess over: recording");
                Ok(info)
            }
            Err(e) => {
                // Still in recess: the session can be resumed again or stopped.
                *guard = Some(Active {
                    phase: Phase::Recess { continuity, since: offset, at: self.clocks.monotonic() },
                    ..a
                });
                Err(e)
            }
        }
    }

    /// Switches the broadcast's privacy mute; the record states it, and is never muted.
    ///
    /// A mute blanks the broadcast from `media − rewind` before anything is written, so
    /// that it takes effect as fast as possible; an unmute shows the broadcast again only
    /// once the chain states it.
    pub fn set_privacy_mute(&self, muted: bool, by: &str) -> Result<MarkInfo, SessionError> {
        let mut guard = self.active.lock();
        let a = guard.as_mut().ok_or(SessionError::NotRecording)?;
        let media = a.now(self.clocks.as_ref());
        let blanked_from =
            muted.then(|| MediaTime(media.0.saturating_sub(self.broadcaster.rewind().as_nanos() as u64)));
        if let Some(from) = blanked_from {
            self.broadcaster.blank(BlankReason::PrivacyMute, from);
        }
        let (id, by) = (a.session.id, by.to_string());
        let c = self.ledger.call(move |w| w.append(id, Entry::PrivacyMute { media, muted, by, blanked_from }))?;
        a.privacy_muted = muted;
        if !muted {
            self.broadcaster.unblank(BlankReason::PrivacyMute, media);
        }
        Ok(MarkInfo { session: id, index: c.index, media })
    }

    /// Ends the session: every device finalizes its segment, the tail of every source is
    /// accounted for, and the chain is sealed with a signed manifest.
    pub fn stop(&self) -> Result<StopInfo, SessionError> {
        let mut guard = self.active.lock();
        let a = guard.take().ok_or(SessionError::NotRecording)?;
        let id = a.session.id;
        let now = a.now(self.clocks.as_ref());
        self.end_broadcast(id, now, "the session was stopped");
        let (run, stop_media, mut continuity) = match a.phase {
            Phase::Recording { capture, committer } => {
                let (stop, continuity) = self.end_capture(capture, committer, CAPTIONS_AT_STOP);
                (Some(a.run), stop, continuity)
            }
            // The run already ended with the recess.
            Phase::Recess { continuity, .. } => (None, now, continuity),
        };
        let tails: Vec<Entry> = continuity
            .finish(stop_media)
            .into_iter()
            .map(|g| Entry::Gap { source: g.source, media_start: g.start, media_end: g.end, reason: g.reason })
            .collect();
        self.ledger.call(move |w| w.stop_session(id, run, stop_media, tails))?;
        let reader = self.ledger.reader()?;
        let records = reader.records(id)?;
        tracing::info!(session = %id, records = records.len(), "session stopped and sealed");
        Ok(StopInfo {
            session: id,
            stopped_media: stop_media,
            records: records.len() as u64,
            segments: reader.segments(id)?.len() as u64,
            gaps: records.iter().filter(|r| r.kind == RecordKind::Gap).count() as u64,
        })
    }

    /// Stops capture of the active run; every segment is committed and the captions of
    /// what was said are committed too (within `captions_within`) when this returns.
    fn end_capture(
        &self,
        capture: CaptureRun,
        committer: Committer,
        captions_within: Duration,
    ) -> (MediaTime, Continuity) {
        let t0 = capture.t0();
        let stop_media = capture.stop();
        let continuity = committer.finish();
        if let Some(stt) = &self.stt {
            stt.finish_run(t0, stop_media, captions_within);
        }
        (stop_media, continuity)
    }

    /// The daemon is going down (service stop, reboot): finalize the open segments and
    /// leave the session recording, so that it resumes on the next start.
    pub fn shutdown(&self) {
        if let Some(a) = self.active.lock().take() {
            let id = a.session.id;
            let run = a.run;
            self.end_broadcast(id, a.now(self.clocks.as_ref()), "the daemon is stopping");
            let Phase::Recording { capture, committer } = a.phase else {
                tracing::info!(session = %id, "daemon stopping during a recess; the session stays in recess");
                return;
            };
            self.end_capture(capture, committer, CAPTIONS_AT_SHUTDOWN);
            if let Err(e) = self.ledger.call(move |w| w.end_run(id, run, RunEnd::Shutdown)) {
                tracing::error!(error = %e, "could not record the shutdown");
            }
            tracing::info!(session = %id, "daemon stopping; the session will resume on the next start");
        }
    }

    pub fn status(&self) -> Status {
        let active = self.active.lock();
        let session = active.as_ref().map(|a| SessionStatus {
            id: a.session.id,
            state: if a.capture().is_some() { SessionPhase::Recording } else { SessionPhase::Recess },
            recess_since: match &a.phase {
                Phase::Recess { since, .. } => Some(*since),
                Phase::Recording { .. } => None,
            },
            privacy_muted: a.privacy_muted,
            case: a.session.case_number.clone(),
            title: a.session.title.clone(),
            language: a.session.language.clone(),
            hearing: a.hearing.as_str().to_string(),
            started_wall: a.session.started_wall.clone(),
            run: a.run,
            run_started_media: a.capture().map(|c| c.t0()).unwrap_or_default(),
            media_now: a.now(self.clocks.as_ref()),
            devices: a.capture().map(|c| c.devices()).unwrap_or_default(),
            health: a.capture().map(|c| c.health()).unwrap_or_default(),
            stats: a.stats.snapshot(),
        });
        Status { recording: session.is_some(), session, broadcast: self.broadcaster.status() }
    }

    /// Who to tell when a segment cannot be written for lack of space; runs started after
    /// this call tell it.
    pub fn on_disk_full(&self, hook: DiskFullHook) {
        *self.disk_full.lock() = Some(hook);
    }

    /// Pauses the cameras for `reason` (they finalize their segments; the interval becomes
    /// a gap record with this reason), or lets them record again. Applies to later sessions
    /// too, until lifted.
    pub fn set_video_paused(&self, reason: Option<String>) {
        *self.video_paused.lock() = reason.clone();
        if let Some(capture) = self.active.lock().as_ref().and_then(|a| a.capture()) {
            capture.set_video_paused(reason);
        }
    }

    /// The latest thumbnail of a camera of the recording session.
    pub fn thumbnail(&self, source: &str) -> Option<Vec<u8>> {
        self.active.lock().as_ref()?.capture()?.thumbnail(source)
    }

    #[cfg(feature = "fault-injection")]
    pub fn inject_failure(&self, device: &str) -> Result<(), SessionError> {
        let active = self.active.lock();
        let a = active.as_ref().ok_or(SessionError::NotRecording)?;
        if a.capture().is_some_and(|c| c.inject_failure(device)) {
            Ok(())
        } else {
            Err(SessionError::Invalid(format!("no running device named {device:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes_are_the_enum_codes() {
        let codes: Vec<&str> = Language::ALL.iter().map(|l| l.as_str()).collect();
        assert_eq!(codes, LANGUAGES);
    }

    #[test]
    fn a_bad_language_is_named_in_the_same_words() {
        let req = StartRequest { case: "1".into(), title: "t".into(), language: "xx".into(), hearing: Hearing::Open };
        let err = req.validate().unwrap_err().to_string();
        assert!(err.contains("language \"xx\" is not one of kk, ru, en, auto"), "{err}");
        let ok = StartRequest { language: "kk".into(), ..req };
        assert_eq!(ok.validate().unwrap().language, Language::Kk);
    }
}
