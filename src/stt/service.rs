//! The speech-to-text service: one thread for the life of the daemon, owning the model.
//!
//! Microphone audio arrives through a bounded channel that capture fills without ever
//! waiting (a full channel drops audio, which shows up here as a hole). The thread cuts
//! each microphone's audio into utterances, transcribes finals before partials, commits
//! finals in batches as signed `captions` records, and publishes partials and finals to
//! live listeners. When it cannot keep up, it leaves the oldest speech to be transcribed
//! later from the committed recording and says so in the chain (`captions_behind`); that
//! backlog is worked off whenever nothing live is waiting, during or after the session.

use super::audio;
use super::engine::{Recognizer, Transcript, Whisper};
use super::quality::{Capability, Rating, Withheld};
use super::schedule::{
    Backlog, BacklogItem, BacklogStep, Behind, BehindCause, Cursor, LiveSchedule, Mic, Work, samples_duration,
};
use super::stream::{Job, StreamConfig, TrackStream};
use crate::base::{Clocks, MediaTime};
use crate::capture::{AudioChunk, AudioTap};
use crate::config::{LoadedConfig, Role};
use crate::integrity::{CaptionItem, CaptionOrigin, Entry, ModelRef, RecordBody};
use crate::ledger::Ledger;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Settings of the service, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct SttSettings {
    pub model: PathBuf,
    pub model_sha256: Option<String>,
    /// The name to give `models/fetch` when the model is missing.
    pub model_name: String,
    pub threads: u32,
    pub slowdown: u32,
    pub stream: StreamConfig,
    pub queue: Duration,
    pub delayed_after: Duration,
    /// Microphones whose speakers use another language than the hearing's.
    pub mic_languages: BTreeMap<String, String>,
    /// The pinned model's measured quality per language (empty for a model not pinned).
    pub measured_quality: BTreeMap<String, f32>,
    /// Qualities a technician stated in the configuration.
    pub stated_quality: BTreeMap<String, Rating>,
    /// Below this a language gets no live captions.
    pub min_quality: f32,
}

impl SttSettings {
    fn language_of(&self, source: &str, session_language: &str) -> String {
        self.mic_languages.get(source).cloned().unwrap_or_else(|| session_language.to_string())
    }

    /// The configured model as the record names it: its pinned name (else its file name)
    /// and SHA-256.
    pub fn model_ref(&self) -> ModelRef {
        let file = self.model.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
        let pinned = super::models::spec_for_file(&self.model).map(|p| p.name);
        ModelRef { name: pinned.unwrap_or(file), sha256: self.model_sha256.clone().unwrap_or_default() }
    }

    /// What the configured model may caption.
    pub fn capability(&self) -> Capability {
        Capability::new(self.model_ref(), &self.measured_quality, self.stated_quality.clone(), self.min_quality)
    }
}

impl SttSettings {
    pub fn from_config(cfg: &LoadedConfig) -> SttSettings {
        let stt = &cfg.config.stt;
        // The pinned figures belong to the pinned file: not to another file of the same name.
        let pinned = super::models::spec_for_file(&cfg.stt_model)
            .filter(|p| stt.model_sha256.as_ref().is_none_or(|sha| sha.eq_ignore_ascii_case(&p.sha256)));
        SttSettings {
            model: cfg.stt_model.clone(),
            model_sha256: stt.model_sha256.clone().or_else(|| pinned.as_ref().map(|p| p.sha256.clone())),
            measured_quality: pinned.as_ref().map(|p| p.quality.clone()).unwrap_or_default(),
            // A figure measured on another model says nothing of this one.
            stated_quality: stt
                .quality
                .iter()
                .filter(|(_, q)| {
                    let sha = stt.model_sha256.as_ref().or(pinned.as_ref().map(|p| &p.sha256));
                    sha.is_some_and(|sha| sha.eq_ignore_ascii_case(&q.model_sha256))
                })
                .map(|(language, q)| {
                    let rating = Rating::Stated { score: q.score, set_by: q.set_by.clone(), set_at: q.set_at.clone() };
                    (language.clone(), rating)
                })
                .collect(),
            min_quality: stt.min_quality,
            model_name: pinned.map(|p| p.name).unwrap_or_else(|| "base-q8".into()),
            threads: stt.threads,
            slowdown: stt.slowdown,
            stream: StreamConfig {
                partial_every: Duration::from_millis(stt.partial_interval_ms.into()),
                max_utterance: Duration::from_secs(stt.max_utterance_seconds.into()),
                ..StreamConfig::default()
            },
            queue: Duration::from_secs(stt.queue_seconds.into()),
            delayed_after: Duration::from_secs(stt.delayed_after_seconds.into()),
            mic_languages: cfg
                .profile
                .voices()
                .iter()
                .filter_map(|v| Some((v.name.to_string(), v.language?.to_string())))
                .collect(),
        }
    }
}

/// Why the speech service could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SttError {
    /// No speech model; the reason names the command that fixes it.
    #[error("{0}")]
    Unavailable(String),
    #[error("the speech service did not answer")]
    NotAnswering,
}

/// Why a backlog interval could not be read from the recording.
#[derive(Debug, thiserror::Error)]
enum BacklogError {
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error(transparent)]
    Read(#[from] crate::capture::ReadError),
}

/// Whether a caption may still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptionKind {
    /// The newest words of an utterance still being spoken: shown, never recorded.
    Partial,
    /// Committed to the record.
    Final,
}

impl CaptionKind {
    /// The name of the server-sent event that carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptionKind::Partial => "partial",
            CaptionKind::Final => "final",
        }
    }
}

/// A caption as live listeners (panel, terminal) see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaptionEvent {
    pub kind: CaptionKind,
    pub session: Uuid,
    pub source: String,
    pub role: Option<Role>,
    pub language: String,
    pub media_start: MediaTime,
    pub media_end: MediaTime,
    pub text: String,
    pub confidence: f32,
    pub delayed: bool,
    pub origin: CaptionOrigin,
    /// Transcription time of the utterance this caption came from, and its length (ms).
    pub decode_ms: u32,
    pub audio_ms: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrackStatus {
    /// Speech waiting to be transcribed, in seconds.
    pub waiting_seconds: f64,
    pub last_caption: Option<String>,
    pub delayed: bool,
    /// Why this microphone has no live captions (the model is not good enough for its
    /// language), for the panel.
    pub no_live_captions: Option<String>,
    /// The language of that microphone (kk, ru, en), when it has no live captions.
    pub no_live_captions_language: Option<String>,
    /// Stretches whose transcription was refused as not speech, this run.
    pub not_transcribed: u64,
}

/// Whether captions can be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SttState {
    /// The model is being checked and loaded.
    Loading,
    Ready,
    /// No model: recording goes on, captions come later from the backlog.
    Unavailable,
}

impl SttState {
    pub fn as_str(self) -> &'static str {
        match self {
            SttState::Loading => "loading",
            SttState::Ready => "ready",
            SttState::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for SttState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SttStatus {
    pub state: SttState,
    /// Why captions are unavailable, with the command that fixes it.
    pub reason: Option<String>,
    pub model: String,
    pub tracks: BTreeMap<String, TrackStatus>,
    /// Intervals left to be transcribed from the recording.
    pub backlog: usize,
    pub finals: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MicInfo {
    pub source: String,
    pub role: Option<Role>,
}

#[derive(Debug, Clone)]
pub struct SessionSpec {
    pub id: Uuid,
    /// Media time at which this run's capture began.
    pub run_start: MediaTime,
    /// kk, ru, en or auto.
    pub language: String,
    pub mics: Vec<MicInfo>,
}

enum Control {
    Start(SessionSpec),
    /// Capture of the run has stopped: finish the live work within `deadline`.
    FinishRun {
        run_start: MediaTime,
        run_end: MediaTime,
        deadline: Duration,
        reply: SyncSender<()>,
    },
    /// Stretches a transcription request planned (off this thread), to queue.
    Transcribe {
        items: Vec<BacklogItem>,
        reply: SyncSender<Result<usize, SttError>>,
    },
}

/// What to transcribe from the recording.
#[derive(Debug, Clone, Default)]
pub struct TranscribeRequest {
    /// One session, or every session with stretches still without captions.
    pub session: Option<Uuid>,
    /// Only microphones in this language.
    pub language: Option<String>,
}

/// What a transcription request queued, and what it left and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TranscriptionQueued {
    /// Intervals not queued, each with the reason (e.g. the installed model is not good
    /// enough for the language, or it already refused that stretch).
    pub left: Vec<String>,
    /// Intervals queued for transcription.
    pub queued: usize,
    /// Sessions they belong to.
    pub sessions: usize,
}

/// Handle to the service; cheap to share.
pub struct Stt {
    ctl: Mutex<Option<Sender<Control>>>,
    /// For planning transcription requests on the caller's thread.
    ledger: Arc<Ledger>,
    settings: SttSettings,
    capability: Capability,
    audio: SyncSender<AudioChunk>,
    events: broadcast::Sender<CaptionEvent>,
    status: Arc<Mutex<SttStatus>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Stt {
    /// Starts the service; the whisper model loads on its thread. `mics` bounds the audio
    /// queue.
    pub fn start(
        settings: SttSettings,
        ledger: Arc<Ledger>,
        data_dir: PathBuf,
        clocks: Arc<dyn Clocks>,
        mics: usize,
    ) -> Stt {
        Stt::start_with(settings, ledger, data_dir, clocks, mics, Box::new(load_whisper))
    }

    /// Starts the service with another speech engine (tests: a scripted one, no model).
    pub fn start_with(
        settings: SttSettings,
        ledger: Arc<Ledger>,
        data_dir: PathBuf,
        clocks: Arc<dyn Clocks>,
        mics: usize,
        loader: LoadRecognizer,
    ) -> Stt {
        let (ctl_tx, ctl_rx) = std::sync::mpsc::channel();
        // About `queue` seconds of 10 ms chunks for every microphone.
        let capacity = (settings.queue.as_secs() as usize * 100 * mics.max(1)).max(1000);
        let (audio_tx, audio_rx) = std::sync::mpsc::sync_channel(capacity);
        let (events, _) = broadcast::channel(256);
        let status = Arc::new(Mutex::new(SttStatus {
            state: SttState::Loading,
            reason: None,
            model: settings.model.display().to_string(),
            tracks: BTreeMap::new(),
            backlog: 0,
            finals: 0,
            last_error: None,
        }));
        let capability = settings.capability();
        let handle = (ledger.clone(), settings.clone(), capability.clone());
        let worker = Worker {
            capability,
            settings,
            ledger,
            data_dir,
            clocks,
            events: events.clone(),
            status: status.clone(),
            loader,
            engine: None,
            live: None,
            backlog: Backlog::default(),
        };
        let thread = std::thread::Builder::new()
            .name("stt".into())
            .spawn(move || worker.run(ctl_rx, audio_rx))
            .expect("spawn stt thread");
        let (ledger, settings, capability) = handle;
        Stt {
            ctl: Mutex::new(Some(ctl_tx)),
            ledger,
            settings,
            capability,
            audio: audio_tx,
            events,
            status,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Where capture sends microphone audio. Never blocks: a full queue drops the chunk.
    pub fn tap(&self) -> AudioTap {
        let tx = self.audio.clone();
        Arc::new(move |chunk| {
            let _ = tx.try_send(chunk);
        })
    }

    fn send(&self, c: Control) {
        if let Some(tx) = self.ctl.lock().as_ref() {
            let _ = tx.send(c);
        }
    }

    /// A run of a session began (a new session, or one resumed after a restart).
    pub fn session_started(&self, spec: SessionSpec) {
        self.send(Control::Start(spec));
    }

    /// Capture of the current run stopped: finishes transcribing what was said (up to
    /// `deadline`), leaves the rest to the backlog, commits every caption. Blocks.
    pub fn finish_run(&self, run_start: MediaTime, run_end: MediaTime, deadline: Duration) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(Control::FinishRun { run_start, run_end, deadline, reply: tx });
        let _ = rx.recv_timeout(deadline + Duration::from_secs(30));
    }

    /// Queues what is still to be transcribed (of one session, or of all) that the
    /// installed model can do; says what it queued and what it left. The records are read
    /// and planned here, on the caller's thread: live transcription does not wait for it.
    pub fn transcribe(&self, request: TranscribeRequest) -> Result<TranscriptionQueued, SttError> {
        let unreadable = |e: crate::ledger::LedgerError| SttError::Unavailable(format!("cannot read the ledger: {e}"));
        let reader = self.ledger.reader().map_err(unreadable)?;
        let sessions = match request.session {
            Some(id) => vec![id],
            None => reader.sessions().map_err(unreadable)?.into_iter().map(|r| r.id).collect(),
        };
        let mut report = TranscriptionQueued::default();
        let mut items = Vec::new();
        for session in sessions {
            let records = reader.record_bodies(session).map_err(unreadable)?;
            let (planned, left) =
                plan_stretches(session, &records, &self.settings, &self.capability, request.language.as_deref());
            report.sessions += usize::from(!planned.is_empty());
            report.left.extend(left);
            items.extend(planned);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(Control::Transcribe { items, reply: tx });
        report.queued = rx.recv_timeout(Duration::from_secs(60)).map_err(|_| SttError::NotAnswering)??;
        Ok(report)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CaptionEvent> {
        self.events.subscribe()
    }

    pub fn status(&self) -> SttStatus {
        self.status.lock().clone()
    }

    /// Stops the thread (after the current job).
    pub fn shutdown(&self) {
        self.ctl.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

/// Loads the speech engine, or says why captions are unavailable (with the fix).
pub type LoadRecognizer = Box<dyn FnMut(&SttSettings) -> Result<Box<dyn Recognizer>, SttError> + Send>;

/// The daemon's engine: the pinned whisper model, its SHA-256 checked first.
fn load_whisper(s: &SttSettings) -> Result<Box<dyn Recognizer>, SttError> {
    let unavailable = |e: &dyn std::fmt::Display| SttError::Unavailable(e.to_string());
    match &s.model_sha256 {
        Some(sha) => super::models::check_file(&s.model, sha, &s.model_name).map_err(|e| unavailable(&e))?,
        None => {
            return Err(SttError::Unavailable(format!(
                "{} is not a pinned model: set stt.model_sha256 to its SHA-256 (sha256sum {})",
                s.model.display(),
                s.model.display()
            )));
        }
    }
    let whisper = Whisper::load(&s.model, s.threads, s.slowdown).map_err(|e| unavailable(&e))?;
    Ok(Box::new(whisper))
}

/// The live session: which one, and its schedule.
struct Live {
    spec: SessionSpec,
    schedule: LiveSchedule,
    /// Microphones without live captions this run, and why.
    withheld: BTreeMap<String, Withheld>,
}

/// The service's thread: the I/O shell around `LiveSchedule` (what to transcribe when) and
/// the backlog. It owns the engine, writes the ledger and publishes events and status.
struct Worker {
    settings: SttSettings,
    /// What the configured model may caption.
    capability: Capability,
    ledger: Arc<Ledger>,
    data_dir: PathBuf,
    clocks: Arc<dyn Clocks>,
    events: broadcast::Sender<CaptionEvent>,
    status: Arc<Mutex<SttStatus>>,
    loader: LoadRecognizer,
    engine: Option<Box<dyn Recognizer>>,
    live: Option<Live>,
    backlog: Backlog,
}

/// Niceness of the speech-to-text threads (capture runs at 0).
const STT_NICE: i32 = 10;

impl Worker {
    fn run(mut self, ctl: Receiver<Control>, audio: Receiver<AudioChunk>) {
        lower_priority();
        self.load_model();
        loop {
            match ctl.try_recv() {
                Ok(c) => {
                    self.control(c, &audio);
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {}
            }
            for chunk in audio.try_iter().take(2000) {
                self.on_audio(chunk);
            }
            if self.run_live() {
                continue;
            }
            self.commit_batches(false);
            if self.backlog_step() {
                continue;
            }
            match audio.recv_timeout(Duration::from_millis(100)) {
                Ok(chunk) => self.on_audio(chunk),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.commit_batches(true);
    }

    fn load_model(&mut self) {
        let loaded = (self.loader)(&self.settings);
        let mut st = self.status.lock();
        match loaded {
            Ok(engine) => {
                self.engine = Some(engine);
                st.state = SttState::Ready;
                st.reason = None;
                tracing::info!(model = %self.settings.model.display(), "speech model loaded");
            }
            Err(e) => {
                st.state = SttState::Unavailable;
                tracing::error!(reason = %e, "captions unavailable; recording continues without them");
                st.reason = Some(e.to_string());
            }
        }
    }

    fn control(&mut self, c: Control, audio: &Receiver<AudioChunk>) {
        match c {
            Control::Start(spec) => {
                // Whatever is left of an earlier run is already in the backlog.
                let session = spec.id;
                let mut withheld = BTreeMap::new();
                let mut mics = Vec::new();
                for m in &spec.mics {
                    let language = self.settings.language_of(&m.source, &spec.language);
                    match self.capability.allows(&language) {
                        Ok(()) => mics.push(Mic { source: m.source.clone(), role: m.role, language }),
                        Err(w) => {
                            withheld.insert(m.source.clone(), w);
                        }
                    }
                }
                self.state_withheld_of_interrupted_runs(session, spec.run_start);
                self.announce_withheld(session, spec.run_start, &withheld);
                let schedule = LiveSchedule::new(mics, &self.settings.stream, self.settings.queue);
                self.live = Some(Live { spec, schedule, withheld });
                self.queue_session(session);
            }
            Control::FinishRun { run_start, run_end, deadline, reply } => {
                for chunk in audio.try_iter() {
                    self.on_audio(chunk);
                }
                self.finish_run(run_start, run_end, self.clocks.monotonic() + deadline);
                // Status first: whoever waited reads what the run left behind.
                self.publish_status();
                let _ = reply.send(());
            }
            Control::Transcribe { items, reply } => {
                if self.engine.is_none() {
                    self.load_model();
                }
                let result = match &self.engine {
                    None => Err(SttError::Unavailable(self.status.lock().reason.clone().unwrap_or_default())),
                    Some(_) => Ok(self.queue(items)),
                };
                self.publish_status();
                let _ = reply.send(result);
            }
        }
        self.publish_status();
    }

    /// A run killed before its end (crash, power cut) never stated the interval of its
    /// microphones without live captions: state it now, up to what was recorded, so that a
    /// later model finds it.
    fn state_withheld_of_interrupted_runs(&mut self, session: Uuid, run_start: MediaTime) {
        let records = match self.ledger.reader().and_then(|r| r.record_bodies(session)) {
            Ok(records) => records,
            Err(e) => return self.note_error(format!("cannot read session {session}: {e}")),
        };
        for (source, start, end, reason, model) in unstated_withheld(&records, run_start) {
            let entry = Entry::CaptionsBehind {
                source,
                media_start: start,
                media_end: end,
                reason: format!("{reason}; another model can transcribe it later"),
                model: Some(model),
            };
            if let Err(e) = self.ledger.call(move |w| w.append(session, entry)) {
                self.note_error(format!("cannot record captions behind: {e}"));
            }
        }
    }

    /// One `captions_off` record per microphone without live captions, at the run's start,
    /// and the reason in status for the panel.
    fn announce_withheld(&self, session: Uuid, run_start: MediaTime, withheld: &BTreeMap<String, Withheld>) {
        let mut st = self.status.lock();
        for track in st.tracks.values_mut() {
            track.no_live_captions = None;
            track.no_live_captions_language = None;
            track.not_transcribed = 0;
        }
        for (source, w) in withheld {
            let track = st.tracks.entry(source.clone()).or_default();
            track.no_live_captions = Some(w.to_string());
            track.no_live_captions_language = Some(w.language.clone());
        }
        drop(st);
        for (source, w) in withheld {
            let entry = Entry::CaptionsOff {
                source: source.clone(),
                language: w.language.clone(),
                media: run_start,
                reason: w.to_string(),
                model: self.capability.model.clone(),
            };
            tracing::warn!(%source, language = %w.language, "no live captions for this microphone: {w}");
            if let Err(e) = self.ledger.call(move |wr| wr.append(session, entry)) {
                self.note_error(format!("cannot record that {source} has no live captions: {e}"));
            }
        }
    }

    fn on_audio(&mut self, chunk: AudioChunk) {
        let transcribing = self.engine.is_some();
        let Some(live) = self.live.as_mut() else { return };
        let behind = live.schedule.on_audio(&chunk.source, chunk.start, &chunk.samples, transcribing);
        for b in behind {
            self.record_behind(b);
        }
    }

    /// The record stating that a stretch of `source` has no captions, and why. A stretch
    /// this model cannot do names the model (another one may, later).
    fn behind_entry(&self, source: &str, start: MediaTime, end: MediaTime, cause: &BehindCause) -> Entry {
        let why = cause.describe();
        let (reason, model) = match cause.same_model_can_retry() {
            true => (format!("{why}; transcribed later from the recording"), None),
            false => (format!("{why}; another model can transcribe it later"), Some(self.capability.model.clone())),
        };
        Entry::CaptionsBehind { source: source.to_string(), media_start: start, media_end: end, reason, model }
    }

    /// States in the chain that a stretch of `source` has no captions; returns the record's
    /// index.
    fn state_behind(
        &self,
        session: Uuid,
        source: &str,
        start: MediaTime,
        end: MediaTime,
        cause: &BehindCause,
    ) -> Option<u64> {
        let entry = self.behind_entry(source, start, end, cause);
        match self.ledger.call(move |w| w.append(session, entry)) {
            Ok(c) => {
                tracing::warn!(%source, from = %start, to = %end, "captions behind: {}", cause.describe());
                Some(c.index)
            }
            Err(e) => {
                self.note_error(format!("cannot record captions behind: {e}"));
                None
            }
        }
    }

    /// Records that speech has no live captions, and queues it for the backlog when the
    /// same model can do it later.
    fn record_behind(&mut self, behind: Behind) {
        let Some(live) = self.live.as_ref() else { return };
        let session = live.spec.id;
        let Behind { source, start, end, cause } = behind;
        let stated = self.state_behind(session, &source, start, end, &cause);
        match stated {
            Some(index) if cause.same_model_can_retry() => {
                let track = live.schedule.track(&source);
                self.backlog.push(BacklogItem {
                    session,
                    role: track.and_then(|t| t.role),
                    language: track.map(|t| t.language.clone()).unwrap_or_default(),
                    source,
                    record: index,
                    start,
                    end,
                });
            }
            _ => {}
        }
    }

    /// Splits a transcript into what may be sealed and the stretches refused: output that
    /// is not speech (`filter`), or in a detected language the model is not good enough for.
    fn screen(&self, job: &Job, t: Transcript) -> (Transcript, Vec<(MediaTime, MediaTime, BehindCause)>) {
        let at = |d: Duration| job.media_at(d);
        let language_refused = self.capability.allows(&t.language).err();
        let mut kept = Vec::new();
        let mut refused: Vec<(MediaTime, MediaTime, BehindCause)> = Vec::new();
        let mut last_refused = false;
        for seg in t.segments {
            let cause = match (&language_refused, super::filter::judge(seg.facts(), &t.language)) {
                (Some(w), _) => Some(BehindCause::Withheld(w.clone())),
                (None, Err(r)) => Some(BehindCause::NotTranscribed(r)),
                (None, Ok(())) => None,
            };
            last_refused = match (cause, refused.last_mut()) {
                // Refused segments back to back are one stretch, under the first's reason.
                (Some(_), Some(last)) if last_refused => {
                    last.1 = at(seg.end);
                    true
                }
                (Some(cause), _) => {
                    refused.push((at(seg.start), at(seg.end), cause));
                    true
                }
                (None, _) => {
                    kept.push(seg);
                    false
                }
            };
        }
        (Transcript { segments: kept, ..t }, refused)
    }

    /// Runs the next live job (a final, else a partial); false when none waits.
    fn run_live(&mut self) -> bool {
        let Some(live) = self.live.as_mut() else { return false };
        match live.schedule.next_work() {
            Some(Work::Final { source, job }) => self.final_captions(&source, &job),
            Some(Work::Partial { source, job }) => self.partial_caption(&source, &job),
            None => return false,
        }
        true
    }

    fn final_captions(&mut self, source: &str, job: &Job) {
        let Some(live) = self.live.as_ref() else { return };
        let Some(track) = live.schedule.track(source) else { return };
        let (language, role, context) = (track.language.clone(), track.role, track.context_for(job));
        let Some(engine) = self.engine.as_mut() else { return };
        let transcript = match engine.transcribe(&job.samples, &language, context.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                // Never a silent hole: the stretch is stated, and the backlog tries again.
                self.note_error(e.to_string());
                let cause = BehindCause::EngineFailed { why: e.to_string(), retry: true };
                return self.record_behind(Behind {
                    source: source.to_string(),
                    start: job.start,
                    end: job.end(),
                    cause,
                });
            }
        };
        let (transcript, refused) = self.screen(job, transcript);
        if !refused.is_empty() {
            self.status.lock().tracks.entry(source.to_string()).or_default().not_transcribed += refused.len() as u64;
        }
        for (start, end, cause) in refused {
            self.record_behind(Behind { source: source.to_string(), start, end, cause });
        }
        let live = self.live.as_mut().expect("still live");
        let session = live.spec.id;
        let delayed = live.schedule.is_delayed(source, job, self.settings.delayed_after);
        let items = caption_items(job, &transcript, self.clocks.wall(), delayed);
        let text = if transcript.segments.is_empty() { String::new() } else { transcript.text() };
        let audio_ms = samples_duration(job.samples.len()).as_millis() as u32;
        let events: Vec<CaptionEvent> = items
            .iter()
            .map(|item| CaptionEvent {
                decode_ms: transcript.elapsed.as_millis() as u32,
                audio_ms,
                ..event(CaptionKind::Final, session, source, role, &transcript.language, item, CaptionOrigin::Live)
            })
            .collect();
        let now = self.clocks.monotonic();
        if let Some(earlier) = live.schedule.add_final(source, job, &transcript.language, &text, items, now) {
            self.commit_live(session, earlier);
        }
        let rtf = transcript.elapsed.as_secs_f64() / samples_duration(job.samples.len()).as_secs_f64();
        tracing::info!(%source, from = %job.start, rtf = format!("{rtf:.2}"), delayed, chars = text.chars().count(), "caption (its text is in the record, never in the log)");
        for e in events {
            let _ = self.events.send(e);
        }
        let mut st = self.status.lock();
        st.finals += transcript.segments.len() as u64;
        let ts = st.tracks.entry(source.to_string()).or_default();
        ts.delayed = delayed;
        if !text.is_empty() {
            ts.last_caption = Some(text);
        }
        drop(st);
        self.publish_status();
    }

    fn partial_caption(&mut self, source: &str, job: &Job) {
        let Some(live) = self.live.as_ref() else { return };
        let Some(track) = live.schedule.track(source) else { return };
        let (session, language, role, context) =
            (live.spec.id, track.language.clone(), track.role, track.context_for(job));
        let Some(engine) = self.engine.as_mut() else { return };
        let transcript = engine.transcribe(&job.samples, &language, context.as_deref());
        match transcript.map(|t| self.screen(job, t).0) {
            Ok(t) if !t.segments.is_empty() => {
                let item = CaptionItem {
                    media_start: job.start,
                    media_end: job.end(),
                    wall: self.clocks.wall(),
                    text: t.text(),
                    confidence: (t.segments.iter().map(|s| s.confidence).sum::<f32>() / t.segments.len() as f32
                        * 1000.0) as u16,
                    delayed: false,
                };
                let e = event(CaptionKind::Partial, session, source, role, &t.language, &item, CaptionOrigin::Live);
                let _ = self.events.send(e);
            }
            Ok(_) => {}
            Err(e) => self.note_error(e.to_string()),
        }
    }

    /// Commits a batch of live finals as one signed `captions` record.
    fn commit_live(&mut self, session: Uuid, batch: super::schedule::Batch) {
        let source = batch.source.clone();
        let entry = Entry::Captions {
            source: batch.source,
            role: batch.role,
            language: batch.language,
            origin: CaptionOrigin::Live,
            backlog_of: None,
            items: batch.items,
            model: Some(self.capability.model.clone()),
        };
        if let Err(e) = self.ledger.call(move |w| w.commit_captions(session, entry, Vec::new())) {
            self.note_error(format!("cannot commit captions of {source}: {e}"));
        }
    }

    fn commit_batches(&mut self, force: bool) {
        let Some(live) = self.live.as_mut() else { return };
        let session = live.spec.id;
        let due = live.schedule.due_batches(self.clocks.monotonic(), force);
        let batches: Vec<_> = due.iter().filter_map(|source| live.schedule.take_batch(source)).collect();
        for batch in batches {
            self.commit_live(session, batch);
        }
    }

    fn finish_run(&mut self, run_start: MediaTime, run_end: MediaTime, deadline: Duration) {
        let Some(live) = self.live.as_mut() else { return };
        // Microphones without live captions: their whole run, for another model.
        let withheld: Vec<(String, Withheld)> = std::mem::take(&mut live.withheld).into_iter().collect();
        for (source, w) in withheld {
            self.record_behind(Behind { source, start: run_start, end: run_end, cause: BehindCause::Withheld(w) });
        }
        let Some(live) = self.live.as_mut() else { return };
        if self.engine.is_none() {
            let why = self.status.lock().reason.clone().unwrap_or_else(|| "speech model unavailable".into());
            let sources: Vec<String> = live.schedule.sources().cloned().collect();
            for source in sources {
                let cause = BehindCause::NoModel(why.clone());
                self.record_behind(Behind { source, start: run_start, end: run_end, cause });
            }
            self.live = None;
            return;
        }
        live.schedule.flush();
        while self.clocks.monotonic() < deadline && self.run_live() {}
        // What could not be done in time is transcribed later.
        let left = self.live.as_mut().map(|l| l.schedule.drain_waiting()).unwrap_or_default();
        for behind in left {
            self.record_behind(behind);
        }
        self.commit_batches(true);
        self.live = None;
    }

    /// Queues the stretches of `session` still without captions that the installed model
    /// may do (at a run's start: what earlier runs left).
    fn queue_session(&mut self, session: Uuid) {
        match self.ledger.reader().and_then(|r| r.record_bodies(session)) {
            Ok(records) => {
                let (items, _) = plan_stretches(session, &records, &self.settings, &self.capability, None);
                self.queue(items);
            }
            Err(e) => self.note_error(format!("cannot read session {session}: {e}")),
        }
    }

    /// Adds to the backlog the items it does not hold yet; returns how many.
    fn queue(&mut self, items: Vec<BacklogItem>) -> usize {
        let mut n = 0;
        for item in items {
            if !self.backlog.contains(item.session, item.record) {
                self.backlog.push(item);
                n += 1;
            }
        }
        n
    }

    /// One step of backlog work: open an item (decode its audio) or transcribe one of its
    /// utterances, committing the item's captions when done. False when there was none.
    fn backlog_step(&mut self) -> bool {
        if self.engine.is_none() {
            return false;
        }
        match self.backlog.next_step() {
            BacklogStep::Idle => return false,
            BacklogStep::Open(item) => match self.open_backlog(&item) {
                Ok(Some(cursor)) => self.backlog.opened(cursor),
                Ok(None) => {
                    self.backlog.not_recorded_yet(item);
                    return false;
                }
                Err(e) => self.note_error(format!("cannot read the recording of {} for the backlog: {e}", item.source)),
            },
            BacklogStep::Transcribe { job, language } => self.transcribe_backlog(&job, &language),
            BacklogStep::Commit(done) => self.commit_backlog(done),
        }
        true
    }

    fn transcribe_backlog(&mut self, job: &Job, language: &str) {
        let Some(item) = self.backlog.open_item().cloned() else { return };
        let engine = self.engine.as_mut().expect("checked by backlog_step");
        match engine.transcribe(&job.samples, language, None) {
            Ok(t) => {
                let (t, refused) = self.screen(job, t);
                let items = caption_items(job, &t, self.clocks.wall(), true);
                for c in &items {
                    let origin = CaptionOrigin::Backlog;
                    let ev = event(CaptionKind::Final, item.session, &item.source, item.role, &t.language, c, origin);
                    let _ = self.events.send(ev);
                }
                self.backlog.transcribed(&t.language, items, refused);
            }
            Err(e) => {
                // The item is still committed (it resolves its promise): this stretch is
                // stated as not transcribed rather than silently missing.
                self.note_error(e.to_string());
                let cause = BehindCause::EngineFailed { why: e.to_string(), retry: false };
                self.backlog.transcribed(language, Vec::new(), vec![(job.start, job.end(), cause)]);
            }
        }
    }

    fn commit_backlog(&mut self, done: Cursor) {
        // What this model refused stays stated, for another model to try.
        let refused: Vec<Entry> = done
            .rejected
            .iter()
            .map(|(start, end, cause)| self.behind_entry(&done.item.source, *start, *end, cause))
            .collect();
        let entry = Entry::Captions {
            source: done.item.source.clone(),
            role: done.item.role,
            language: done.language,
            origin: CaptionOrigin::Backlog,
            backlog_of: Some(done.item.record),
            items: done.items,
            model: Some(self.capability.model.clone()),
        };
        let session = done.item.session;
        match self.ledger.call(move |w| w.commit_captions(session, entry, refused)) {
            Ok(_) => {
                tracing::info!(source = %done.item.source, from = %done.item.start, to = %done.item.end, "backlog transcribed")
            }
            Err(e) => self.note_error(format!("cannot commit backlog captions: {e}")),
        }
        self.publish_status();
    }

    /// The backlog item's audio, cut into utterances; None while it is not recorded yet.
    fn open_backlog(&self, item: &BacklogItem) -> Result<Option<Cursor>, BacklogError> {
        let reader = self.ledger.reader()?;
        let segments: Vec<_> = reader.segments(item.session)?.into_iter().filter(|s| s.source == item.source).collect();
        let recorded_to = MediaTime(segments.iter().map(|s| s.media_end_ns).max().unwrap_or(0));
        let still_recording =
            reader.session(item.session)?.is_some_and(|s| s.state == crate::ledger::SessionState::Recording);
        if !item.is_recorded(still_recording, recorded_to) {
            return Ok(None);
        }
        let spool = self.data_dir.join("spool").join(item.session.to_string());
        let mut stream = TrackStream::new(StreamConfig { partials: false, ..self.settings.stream.clone() });
        let mut jobs = VecDeque::new();
        for s in segments.iter().filter(|s| s.media_end_ns > item.start.0 && s.media_start_ns < item.end.0) {
            let runs = audio::decode_segment(&spool.join(&s.file))?;
            for (start, samples) in audio::cut(runs, item.start, item.end) {
                jobs.extend(stream.push(start, &samples));
            }
        }
        jobs.extend(stream.flush());
        Ok(Some(Cursor::new(item.clone(), jobs)))
    }

    fn note_error(&self, e: String) {
        tracing::error!(error = %e, "speech to text");
        self.status.lock().last_error = Some(e);
    }

    fn publish_status(&self) {
        let mut st = self.status.lock();
        st.backlog = self.backlog.len();
        if let Some(live) = &self.live {
            for (s, waiting) in live.schedule.waiting() {
                st.tracks.entry(s.clone()).or_default().waiting_seconds = waiting.as_secs_f64();
            }
        }
    }
}

/// The stretches of a session still without captions (unresolved `captions_behind`
/// records) that `capability`'s model may transcribe, as backlog items, and the others with
/// why: a language the model is not good enough for, or output this same model already
/// refused (it would only refuse it again). A stretch withheld for its language (it has a
/// `captions_off` at its start) was never tried: it is queued once the language is allowed.
fn plan_stretches(
    session: Uuid,
    records: &[RecordBody],
    settings: &SttSettings,
    capability: &Capability,
    only: Option<&str>,
) -> (Vec<BacklogItem>, Vec<String>) {
    let (language, roles) = records
        .iter()
        .find_map(|r| match &r.entry {
            Entry::SessionStart { language, sources, .. } => Some((language.clone(), sources.clone())),
            _ => None,
        })
        .unwrap_or_default();
    let withheld_from: std::collections::HashSet<(&str, MediaTime)> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::CaptionsOff { source, media, .. } => Some((source.as_str(), *media)),
            _ => None,
        })
        .collect();
    let short = &session.to_string()[..8];
    let (mut items, mut left) = (Vec::new(), Vec::new());
    for r in crate::integrity::unresolved_captions_behind(records) {
        let Entry::CaptionsBehind { source, media_start, media_end, model, .. } = &r.entry else { continue };
        let mic_language = settings.language_of(source, &language);
        if only.is_some_and(|l| l != mic_language) {
            continue;
        }
        let stretch = format!("session {short}, {source} {media_start}–{media_end}");
        if let Err(w) = capability.allows(&mic_language) {
            left.push(format!("{stretch}: {w}"));
            continue;
        }
        let refused_by_this_model = model.as_ref().is_some_and(|m| *m == capability.model)
            && !withheld_from.contains(&(source.as_str(), *media_start));
        if refused_by_this_model {
            left.push(format!("{stretch}: the installed model {} already refused it", capability.model.name));
            continue;
        }
        items.push(BacklogItem {
            session,
            source: source.clone(),
            role: roles.iter().find(|s| s.name == *source).and_then(|s| s.role),
            language: mic_language,
            record: r.index,
            start: *media_start,
            end: *media_end,
        });
    }
    (items, left)
}

/// The `captions_off` stretches of runs that began before `run_start` and whose interval
/// no `captions_behind` states (the run was killed): (source, from, to, reason, model),
/// `to` being the end of what the source recorded before `run_start`.
fn unstated_withheld(
    records: &[RecordBody],
    run_start: MediaTime,
) -> Vec<(String, MediaTime, MediaTime, String, ModelRef)> {
    let stated = |source: &str, from: MediaTime| {
        records.iter().any(|r| {
            matches!(&r.entry, Entry::CaptionsBehind { source: s, media_start, model: Some(_), .. }
                if s == source && *media_start == from)
        })
    };
    records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::CaptionsOff { source, media, reason, model, .. }
                if *media < run_start && !stated(source, *media) =>
            {
                // That run ended where the next began (or where this one begins).
                let run_end = records
                    .iter()
                    .filter_map(|r| match &r.entry {
                        Entry::RunStart { media: next, .. } if next > media => Some(*next),
                        _ => None,
                    })
                    .min()
                    .unwrap_or(run_start)
                    .min(run_start);
                let recorded_to = records
                    .iter()
                    .filter_map(|r| match &r.entry {
                        Entry::Segment { source: s, media_end, .. } if s == source && *media_end <= run_end => {
                            Some(*media_end)
                        }
                        _ => None,
                    })
                    .max()
                    .filter(|end| end > media)?;
                Some((source.clone(), *media, recorded_to, reason.clone(), model.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Capture comes first: on a busy box transcription waits, the recording never does.
/// Whisper's worker threads are created from this one and inherit its niceness.
fn lower_priority() {
    // SAFETY: setpriority on this thread's own id reads and writes no memory of ours.
    let niced = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, STT_NICE) };
    if niced != 0 {
        tracing::warn!("could not lower the priority of speech to text");
    }
}

/// One final caption per transcribed segment, placed in media time from the job's start.
fn caption_items(
    job: &Job,
    t: &super::engine::Transcript,
    wall: crate::base::WallTime,
    delayed: bool,
) -> Vec<CaptionItem> {
    t.segments
        .iter()
        .map(|seg| CaptionItem {
            media_start: job.media_at(seg.start),
            media_end: job.media_at(seg.end),
            wall,
            text: seg.text.clone(),
            confidence: (seg.confidence * 1000.0).round() as u16,
            delayed,
        })
        .collect()
}

fn event(
    kind: CaptionKind,
    session: Uuid,
    source: &str,
    role: Option<Role>,
    language: &str,
    c: &CaptionItem,
    origin: CaptionOrigin,
) -> CaptionEvent {
    CaptionEvent {
        kind,
        session,
        source: source.to_string(),
        role,
        language: language.to_string(),
        media_start: c.media_start,
        media_end: c.media_end,
        text: c.text.clone(),
        confidence: f32::from(c.confidence) / 1000.0,
        delayed: c.delayed,
        origin,
        decode_ms: 0,
        audio_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    //! The service's wiring on a real ledger, with a scripted engine instead of a model.
    use super::*;
    use crate::base::RealClocks;
    use crate::integrity::{DeviceKey, Hearing, Language};
    use crate::ledger::NewSession;
    use crate::stt::engine::{EngineError, Segment, Transcript};

    /// Says the same words for any audio, taking `takes` of real time to do it.
    struct Scripted {
        takes: Duration,
        says: &'static str,
    }

    impl Scripted {
        fn loader(takes: Duration, says: &'static str) -> LoadRecognizer {
            Box::new(move |_| Ok(Box::new(Scripted { takes, says })))
        }
    }

    /// Russian words, as the test session's language asks.
    const SPEECH: &str = "порядок в суде";

    impl Recognizer for Scripted {
        fn transcribe(&mut self, samples: &[f32], language: &str, _: Option<&str>) -> Result<Transcript, EngineError> {
            std::thread::sleep(self.takes);
            let end = samples_duration(samples.len());
            let text = self.says.into();
            let segments =
                vec![Segment { start: Duration::ZERO, end, text, confidence: 0.9, broken: false, truncated: false }];
            Ok(Transcript { segments, language: language.to_string(), elapsed: self.takes })
        }
    }

    /// A model measured at `ru_quality` for Russian, the test session's language.
    fn settings_with(queue: Duration, ru_quality: f32) -> SttSettings {
        SttSettings {
            model: PathBuf::from("scripted"),
            model_sha256: Some("5c".repeat(32)),
            model_name: "scripted".into(),
            threads: 1,
            slowdown: 1,
            stream: StreamConfig::default(),
            queue,
            delayed_after: Duration::from_secs(10),
            mic_languages: BTreeMap::new(),
            measured_quality: BTreeMap::from([("ru".to_string(), ru_quality)]),
            stated_quality: BTreeMap::new(),
            min_quality: 0.5,
        }
    }

    fn settings(queue: Duration) -> SttSettings {
        settings_with(queue, 0.9)
    }

    /// A ledger with one session recording the microphone `judge`.
    fn ledger(dir: &std::path::Path) -> (Arc<Ledger>, Uuid) {
        let key = Arc::new(DeviceKey::create(&dir.join("device.key")).unwrap());
        let ledger = Arc::new(Ledger::open(&dir.join("ledger.db"), key, Arc::new(RealClocks::new())).unwrap());
        let session = NewSession {
            court: "c".into(),
            room: "r".into(),
            case: "1".into(),
            title: "t".into(),
            language: Language::Ru,
            hearing: Hearing::Open,
            profile: "p".into(),
            segment_ns: 10_000_000_000,
            sources: vec![],
        };
        let (id, _) = ledger.call(|w| w.create_session(session)).unwrap();
        (ledger, id)
    }

    fn start(ledger: &Arc<Ledger>, dir: &std::path::Path, queue: Duration, loader: LoadRecognizer) -> Stt {
        Stt::start_with(settings(queue), ledger.clone(), dir.to_path_buf(), Arc::new(RealClocks::new()), 1, loader)
    }

    fn spec(id: Uuid) -> SessionSpec {
        let mics = vec![MicInfo { source: "judge".into(), role: None }];
        SessionSpec { id, run_start: MediaTime::ZERO, language: "ru".into(), mics }
    }

    /// `n` utterances of 3 s speech and 1.5 s silence, in 10 ms chunks; returns the end.
    fn speak(stt: &Stt, n: usize) -> MediaTime {
        let tap = stt.tap();
        let mut at = MediaTime::ZERO;
        for i in 0..n * 450 {
            let loud = i % 450 < 300;
            let samples: Vec<f32> =
                (0..160).map(|k| if loud { 0.3 * (((i * 160 + k) as f32) * 0.07).sin() } else { 0.0 }).collect();
            tap(AudioChunk { source: "judge".into(), start: at, samples });
            at = MediaTime(at.0 + 10_000_000);
        }
        at
    }

    fn entries(ledger: &Ledger, id: Uuid) -> Vec<Entry> {
        let rows = ledger.reader().unwrap().records(id).unwrap();
        rows.iter().map(|r| serde_json::from_slice::<RecordBody>(&r.body).unwrap().entry).collect()
    }

    fn wait_ready(stt: &Stt) {
        while stt.status().state == SttState::Loading {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn finals_are_committed_and_published_as_they_are_transcribed() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, id) = ledger(dir.path());
        let stt = start(&ledger, dir.path(), Duration::from_secs(60), Scripted::loader(Duration::ZERO, SPEECH));
        wait_ready(&stt);
        let mut events = stt.subscribe();
        stt.session_started(spec(id));
        let end = speak(&stt, 2);
        stt.finish_run(MediaTime::ZERO, end, Duration::from_secs(10));
        let finals: Vec<CaptionEvent> =
            std::iter::from_fn(|| events.try_recv().ok()).filter(|e| e.kind == CaptionKind::Final).collect();
        assert_eq!(finals.len(), 2, "one final per utterance");
        let captions: usize = entries(&ledger, id)
            .iter()
            .map(|e| match e {
                Entry::Captions { items, origin: CaptionOrigin::Live, .. } => items.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(captions, 2, "both are in the record");
        assert_eq!(stt.status().finals, 2);
        stt.shutdown();
    }

    #[test]
    fn a_slow_engine_leaves_speech_to_the_backlog_and_the_chain_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, id) = ledger(dir.path());
        let slow = Scripted::loader(Duration::from_millis(300), SPEECH);
        let stt = start(&ledger, dir.path(), Duration::from_secs(4), slow);
        wait_ready(&stt);
        stt.session_started(spec(id));
        let end = speak(&stt, 4);
        // No time to catch up at the stop: what is left waits for the backlog too.
        stt.finish_run(MediaTime::ZERO, end, Duration::ZERO);
        let reasons: Vec<String> = entries(&ledger, id)
            .into_iter()
            .filter_map(|e| match e {
                Entry::CaptionsBehind { reason, .. } => Some(reason),
                _ => None,
            })
            .collect();
        assert!(
            reasons.iter().any(|r| r.starts_with("transcription fell behind; transcribed later")),
            "over the queue budget, the oldest speech is shed: {reasons:?}"
        );
        // The backlog is worked off at once (an item of one utterance takes 300 ms): what is
        // not queued any more has been transcribed. Status first; resolved records only grow.
        let queued = stt.status().backlog;
        let resolved = entries(&ledger, id)
            .iter()
            .filter(|e| matches!(e, Entry::Captions { origin: CaptionOrigin::Backlog, .. }))
            .count();
        assert!(queued + resolved >= reasons.len(), "everything left behind is queued for the backlog");
        stt.shutdown();
    }

    #[test]
    fn without_a_model_the_whole_run_is_left_to_the_backlog_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, id) = ledger(dir.path());
        let missing: LoadRecognizer = Box::new(|_| Err(SttError::Unavailable("no model (run models/fetch)".into())));
        let stt = start(&ledger, dir.path(), Duration::from_secs(60), missing);
        wait_ready(&stt);
        assert_eq!(stt.status().state, SttState::Unavailable);
        stt.session_started(spec(id));
        let end = speak(&stt, 1);
        stt.finish_run(MediaTime::ZERO, end, Duration::from_secs(1));
        let behind: Vec<Entry> =
            entries(&ledger, id).into_iter().filter(|e| matches!(e, Entry::CaptionsBehind { .. })).collect();
        let [Entry::CaptionsBehind { source, media_start, media_end, reason, model: None }] = behind.as_slice() else {
            panic!("one record for the run: {behind:?}")
        };
        assert_eq!((source.as_str(), *media_start, *media_end), ("judge", MediaTime::ZERO, end));
        assert!(reason.contains("no captions while recording: no model (run models/fetch)"), "{reason}");
        stt.shutdown();
    }

    fn behind_reasons(ledger: &Ledger, id: Uuid) -> Vec<(String, Option<ModelRef>)> {
        entries(ledger, id)
            .into_iter()
            .filter_map(|e| match e {
                Entry::CaptionsBehind { reason, model, .. } => Some((reason, model)),
                _ => None,
            })
            .collect()
    }

    fn has_captions(ledger: &Ledger, id: Uuid) -> bool {
        entries(ledger, id).iter().any(|e| matches!(e, Entry::Captions { .. }))
    }

    #[test]
    fn a_language_the_model_is_not_good_enough_for_gets_no_live_captions_and_the_chain_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, id) = ledger(dir.path());
        let stt = Stt::start_with(
            settings_with(Duration::from_secs(60), 0.1),
            ledger.clone(),
            dir.path().to_path_buf(),
            Arc::new(RealClocks::new()),
            1,
            Scripted::loader(Duration::ZERO, SPEECH),
        );
        wait_ready(&stt);
        stt.session_started(spec(id));
        let end = speak(&stt, 2);
        stt.finish_run(MediaTime::ZERO, end, Duration::from_secs(10));
        let off = stt.status().tracks.get("judge").and_then(|t| t.no_live_captions.clone());
        let expected = "Russian: no live captions with the installed speech model scripted (quality 0.10, measured; the minimum is 0.50)";
        assert_eq!(off.as_deref(), Some(expected), "the panel says why");
        let all = entries(&ledger, id);
        let starts: Vec<&Entry> = all.iter().filter(|e| matches!(e, Entry::CaptionsOff { .. })).collect();
        assert!(
            matches!(starts.as_slice(), [Entry::CaptionsOff { source, reason, media: MediaTime::ZERO, .. }] if source == "judge" && reason == expected),
            "one record at the start says why: {starts:?}"
        );
        assert!(!has_captions(&ledger, id), "nothing was transcribed live");
        let behind = behind_reasons(&ledger, id);
        assert_eq!(behind.len(), 1, "the run's interval is stated for a later model: {behind:?}");
        assert!(behind[0].0.starts_with(expected) && behind[0].1.is_some(), "{behind:?}");
        assert_eq!(stt.status().backlog, 0, "the same model does not try it later");
        stt.shutdown();
    }

    #[test]
    fn output_that_is_not_speech_is_stated_not_sealed_and_left_for_another_model() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, id) = ledger(dir.path());
        let looping = Scripted::loader(Duration::ZERO, "да да да да да да");
        let stt = start(&ledger, dir.path(), Duration::from_secs(60), looping);
        wait_ready(&stt);
        stt.session_started(spec(id));
        let end = speak(&stt, 2);
        stt.finish_run(MediaTime::ZERO, end, Duration::from_secs(10));
        assert!(!has_captions(&ledger, id), "a loop is not a caption");
        let behind = behind_reasons(&ledger, id);
        assert_eq!(behind.len(), 2, "one stretch per utterance: {behind:?}");
        for (reason, model) in &behind {
            assert!(reason.starts_with("not transcribed: the model repeated 1 word(s) 6 times"), "{reason}");
            assert_eq!(model.as_ref().map(|m| m.name.as_str()), Some("scripted"));
        }
        assert_eq!(stt.status().tracks["judge"].not_transcribed, 2);
        // Asked again with the same model, nothing is queued, and the answer says why.
        let report = stt.transcribe(TranscribeRequest { session: Some(id), language: None }).unwrap();
        assert_eq!(report.queued, 0);
        assert_eq!(report.left.len(), 2);
        assert!(report.left[0].ends_with("the installed model scripted already refused it"), "{:?}", report.left);
        stt.shutdown();
    }

    #[test]
    fn a_killed_run_gets_its_stretch_without_live_captions_stated_at_the_next_start() {
        let model = ModelRef { name: "base-q8".into(), sha256: "ab".into() };
        let body = |entry: Entry| RecordBody {
            v: crate::integrity::FORMAT_VERSION,
            session: Uuid::nil(),
            index: 0,
            prev: String::new(),
            device: String::new(),
            wall: crate::base::WallTime::from_unix_nanos(0),
            entry,
        };
        let off = |at: u64| {
            body(Entry::CaptionsOff {
                source: "defence".into(),
                language: "kk".into(),
                media: MediaTime::from_millis(at),
                reason: "Kazakh: no live captions".into(),
                model: model.clone(),
            })
        };
        let segment = |from: u64, to: u64| {
            body(Entry::Segment {
                source: "defence".into(),
                seq: 0,
                file: String::new(),
                media_start: MediaTime::from_millis(from),
                media_end: MediaTime::from_millis(to),
                wall_start: crate::base::WallTime::from_unix_nanos(0),
                bytes: 0,
                sha256: String::new(),
                recovered: false,
                timing: None,
            })
        };
        // Run 1 ended normally (its stretch stated); run 2 was killed after 14 s.
        let stated = body(Entry::CaptionsBehind {
            source: "defence".into(),
            media_start: MediaTime::ZERO,
            media_end: MediaTime::from_millis(6_000),
            reason: "r".into(),
            model: Some(model.clone()),
        });
        let records =
            [off(0), segment(0, 6_000), stated, off(10_000), segment(10_000, 12_000), segment(12_000, 14_000)];
        let found = unstated_withheld(&records, MediaTime::from_millis(20_000));
        assert_eq!(
            found,
            [(
                "defence".to_string(),
                MediaTime::from_millis(10_000),
                MediaTime::from_millis(14_000),
                "Kazakh: no live captions".to_string(),
                model
            )]
        );
        // The run starting now is not "killed".
        assert!(unstated_withheld(&records, MediaTime::from_millis(10_000)).is_empty());
    }

    #[test]
    fn a_stretch_withheld_for_its_language_is_queued_once_allowed_one_refused_is_not() {
        let model = ModelRef { name: "scripted".into(), sha256: "5c".repeat(32) };
        let body = |index: u64, entry: Entry| RecordBody {
            v: crate::integrity::FORMAT_VERSION,
            session: Uuid::nil(),
            index,
            prev: String::new(),
            device: String::new(),
            wall: crate::base::WallTime::from_unix_nanos(0),
            entry,
        };
        let behind = |index, from: u64, to: u64| {
            body(
                index,
                Entry::CaptionsBehind {
                    source: "judge".into(),
                    media_start: MediaTime::from_millis(from),
                    media_end: MediaTime::from_millis(to),
                    reason: "r".into(),
                    model: Some(model.clone()),
                },
            )
        };
        let start = Entry::SessionStart {
            court: "c".into(),
            room: "r".into(),
            case: "1".into(),
            title: "t".into(),
            language: "ru".into(),
            hearing: Hearing::Open,
            profile: "p".into(),
            segment_ns: 1,
            sources: vec![],
        };
        let off = Entry::CaptionsOff {
            source: "judge".into(),
            language: "ru".into(),
            media: MediaTime::ZERO,
            reason: "r".into(),
            model: model.clone(),
        };
        // Run 1: Russian withheld (the model measured 0.1); later, in a run where it was
        // allowed, the model's output for 70-80 s was refused.
        let records = [body(0, start), body(1, off), behind(2, 0, 60_000), behind(3, 70_000, 80_000)];
        let allowed = settings(Duration::from_secs(60));
        let (items, left) = plan_stretches(Uuid::nil(), &records, &allowed, &allowed.capability(), None);
        assert_eq!(items.iter().map(|i| i.record).collect::<Vec<_>>(), [2], "the withheld stretch, never tried");
        assert_eq!(left.len(), 1);
        assert!(left[0].ends_with("the installed model scripted already refused it"), "{left:?}");
        let low = settings_with(Duration::from_secs(60), 0.1);
        let (items, left) = plan_stretches(Uuid::nil(), &records, &low, &low.capability(), Some("ru"));
        assert!(items.is_empty() && left.len() == 2 && left[0].contains("Russian: no live captions"), "{left:?}");
        let (items, left) = plan_stretches(Uuid::nil(), &records, &allowed, &allowed.capability(), Some("kk"));
        assert!(items.is_empty() && left.is_empty(), "another language is not asked for");
    }
}
