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
use super::engine::Engine;
use super::stream::{Job, JobKind, StreamConfig, TrackStream};
use crate::base::{Clocks, MediaTime};
use crate::capture::{AudioChunk, AudioTap};
use crate::config::{LoadedConfig, Role};
use crate::integrity::{CaptionItem, CaptionOrigin, Entry, RecordBody};
use crate::ledger::Ledger;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
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
}

impl SttSettings {
    fn language_of(&self, source: &str, session_language: &str) -> String {
        self.mic_languages.get(source).cloned().unwrap_or_else(|| session_language.to_string())
    }
}

impl SttSettings {
    pub fn from_config(cfg: &LoadedConfig) -> SttSettings {
        let stt = &cfg.config.stt;
        let pinned = super::models::spec_for_file(&cfg.stt_model);
        SttSettings {
            model: cfg.stt_model.clone(),
            model_sha256: stt.model_sha256.clone().or_else(|| pinned.as_ref().map(|p| p.sha256.clone())),
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
                .audio_devices
                .iter()
                .flat_map(|d| &d.mics)
                .filter_map(|m| Some((m.name.clone(), m.language.clone()?)))
                .collect(),
        }
    }
}

/// A caption as live listeners (panel, terminal) see it.
#[derive(Debug, Clone, Serialize)]
pub struct CaptionEvent {
    /// "partial" (may still change) or "final" (committed to the record).
    pub kind: &'static str,
    pub session: Uuid,
    pub source: String,
    pub role: Option<Role>,
    pub language: String,
    pub media_start: MediaTime,
    pub media_end: MediaTime,
    pub text: String,
    pub confidence: f32,
    pub delayed: bool,
    pub origin: &'static str,
    /// Transcription time of the utterance this caption came from, and its length (ms).
    pub decode_ms: u32,
    pub audio_ms: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TrackStatus {
    /// Speech waiting to be transcribed, in seconds.
    pub waiting_seconds: f64,
    pub last_caption: Option<String>,
    pub delayed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SttStatus {
    /// "loading", "ready", "unavailable".
    pub state: String,
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
    Transcribe {
        session: Uuid,
        reply: SyncSender<Result<usize, String>>,
    },
}

/// Handle to the service; cheap to share.
pub struct Stt {
    ctl: Mutex<Option<Sender<Control>>>,
    audio: SyncSender<AudioChunk>,
    events: broadcast::Sender<CaptionEvent>,
    status: Arc<Mutex<SttStatus>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Stt {
    /// Starts the service; the model loads on its thread. `mics` bounds the audio queue.
    pub fn start(
        settings: SttSettings,
        ledger: Arc<Ledger>,
        data_dir: PathBuf,
        clocks: Arc<dyn Clocks>,
        mics: usize,
    ) -> Stt {
        let (ctl_tx, ctl_rx) = std::sync::mpsc::channel();
        // About `queue` seconds of 10 ms chunks for every microphone.
        let capacity = (settings.queue.as_secs() as usize * 100 * mics.max(1)).max(1000);
        let (audio_tx, audio_rx) = std::sync::mpsc::sync_channel(capacity);
        let (events, _) = broadcast::channel(256);
        let status = Arc::new(Mutex::new(SttStatus {
            state: "loading".into(),
            reason: None,
            model: settings.model.display().to_string(),
            tracks: BTreeMap::new(),
            backlog: 0,
            finals: 0,
            last_error: None,
        }));
        let worker = Worker {
            settings,
            ledger,
            data_dir,
            clocks,
            events: events.clone(),
            status: status.clone(),
            engine: None,
            live: None,
            backlog: VecDeque::new(),
            cursor: None,
        };
        let thread = std::thread::Builder::new()
            .name("stt".into())
            .spawn(move || worker.run(ctl_rx, audio_rx))
            .expect("spawn stt thread");
        Stt { ctl: Mutex::new(Some(ctl_tx)), audio: audio_tx, events, status, thread: Mutex::new(Some(thread)) }
    }

    /// Where capture sends microphone audio. Never blocks: a full queue drops the chunk.
    pub fn tap(&self) -> AudioTap {
        let tx = self.audio.clone();
        Arc::new(move |chunk| {
            let _ = tx.try_send(chunk);
        })
    }

    fn send(&self, c: Control) {
        if let Some(tx) = self.ctl.lock().unwrap().as_ref() {
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

    /// Queues everything of `session` still to be transcribed; returns how many intervals.
    pub fn transcribe(&self, session: Uuid) -> Result<usize, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(Control::Transcribe { session, reply: tx });
        rx.recv_timeout(Duration::from_secs(60)).map_err(|_| "the speech service did not answer".to_string())?
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CaptionEvent> {
        self.events.subscribe()
    }

    pub fn status(&self) -> SttStatus {
        self.status.lock().unwrap().clone()
    }

    /// Stops the thread (after the current job).
    pub fn shutdown(&self) {
        self.ctl.lock().unwrap().take();
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }
}

struct LiveTrack {
    role: Option<Role>,
    /// Whisper language for this microphone.
    language: String,
    stream: TrackStream,
    finals: VecDeque<Job>,
    partial: Option<Job>,
    batch: Vec<CaptionItem>,
    batch_language: String,
    batch_opened: Option<Instant>,
    /// End of the newest audio received: the live edge.
    edge: MediaTime,
    expected: Option<MediaTime>,
    /// The last final text and where it ended: context for the next phrase.
    context: Option<(MediaTime, String)>,
}

/// A phrase that starts within this of the previous one continues its sentence.
const CONTEXT_GAP: Duration = Duration::from_secs(2);

impl LiveTrack {
    fn context_for(&self, job: &Job) -> Option<String> {
        let (end, text) = self.context.as_ref()?;
        (job.start.saturating_sub(*end) < CONTEXT_GAP).then(|| text.clone())
    }
}

struct Live {
    spec: SessionSpec,
    tracks: BTreeMap<String, LiveTrack>,
}

/// An interval to transcribe from the recording, and the `captions_behind` record it resolves.
#[derive(Debug, Clone)]
struct BacklogItem {
    session: Uuid,
    source: String,
    role: Option<Role>,
    language: String,
    record: u64,
    start: MediaTime,
    end: MediaTime,
}

/// A backlog item being worked off, one utterance per step.
struct Cursor {
    item: BacklogItem,
    jobs: VecDeque<Job>,
    items: Vec<CaptionItem>,
    language: String,
}

struct Worker {
    settings: SttSettings,
    ledger: Arc<Ledger>,
    data_dir: PathBuf,
    clocks: Arc<dyn Clocks>,
    events: broadcast::Sender<CaptionEvent>,
    status: Arc<Mutex<SttStatus>>,
    engine: Option<(Engine, whisper_rs::WhisperState)>,
    live: Option<Live>,
    backlog: VecDeque<BacklogItem>,
    cursor: Option<Cursor>,
}

/// Niceness of the speech-to-text threads (capture runs at 0).
const STT_NICE: i32 = 10;

/// Commit a batch of finals when it has this many captions or is this old.
const BATCH_MAX: usize = 8;
const BATCH_AGE: Duration = Duration::from_secs(10);

fn samples_duration(n: usize) -> Duration {
    Duration::from_nanos(n as u64 * 62_500)
}

impl Worker {
    fn run(mut self, ctl: Receiver<Control>, audio: Receiver<AudioChunk>) {
        // Capture comes first: on a busy box transcription waits, the recording never does.
        // Whisper's worker threads are created from this one and inherit its niceness.
        // SAFETY: setpriority on this thread's own id has no memory effects.
        let niced = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, STT_NICE) };
        if niced != 0 {
            tracing::warn!("could not lower the priority of speech to text");
        }
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
            if self.run_final() || self.run_partial() {
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
        let s = &self.settings;
        let checked = match &s.model_sha256 {
            Some(sha) => super::models::check_file(&s.model, sha, &s.model_name).map_err(|e| e.to_string()),
            None => Err(format!(
                "{} is not a pinned model: set stt.model_sha256 to its SHA-256 (sha256sum {})",
                s.model.display(),
                s.model.display()
            )),
        };
        let loaded = checked.and_then(|_| {
            let engine = Engine::load(&s.model, s.threads, s.slowdown).map_err(|e| e.to_string())?;
            let state = engine.new_state().map_err(|e| e.to_string())?;
            Ok((engine, state))
        });
        let mut st = self.status.lock().unwrap();
        match loaded {
            Ok(e) => {
                self.engine = Some(e);
                st.state = "ready".into();
                st.reason = None;
                tracing::info!(model = %s.model.display(), "speech model loaded");
            }
            Err(reason) => {
                st.state = "unavailable".into();
                tracing::error!(%reason, "captions unavailable; recording continues without them");
                st.reason = Some(reason);
            }
        }
    }

    fn control(&mut self, c: Control, audio: &Receiver<AudioChunk>) {
        match c {
            Control::Start(spec) => {
                // Whatever is left of an earlier run is already in the backlog.
                self.live = None;
                let session = spec.id;
                self.live = Some(Live {
                    tracks: spec
                        .mics
                        .iter()
                        .map(|m| {
                            let t = LiveTrack {
                                role: m.role,
                                language: self.settings.language_of(&m.source, &spec.language),
                                stream: TrackStream::new(self.settings.stream.clone()),
                                finals: VecDeque::new(),
                                partial: None,
                                batch: Vec::new(),
                                batch_language: String::new(),
                                batch_opened: None,
                                edge: MediaTime::ZERO,
                                expected: None,
                                context: None,
                            };
                            (m.source.clone(), t)
                        })
                        .collect(),
                    spec,
                });
                self.queue_pending(session);
            }
            Control::FinishRun { run_start, run_end, deadline, reply } => {
                for chunk in audio.try_iter() {
                    self.on_audio(chunk);
                }
                self.finish_run(run_start, run_end, Instant::now() + deadline);
                let _ = reply.send(());
            }
            Control::Transcribe { session, reply } => {
                if self.engine.is_none() {
                    self.load_model();
                }
                let result = match &self.engine {
                    None => Err(self.status.lock().unwrap().reason.clone().unwrap_or_default()),
                    Some(_) => Ok(self.queue_pending(session)),
                };
                let _ = reply.send(result);
            }
        }
        self.publish_status();
    }

    fn on_audio(&mut self, chunk: AudioChunk) {
        let has_engine = self.engine.is_some();
        let mut behind = Vec::new();
        let Some(live) = self.live.as_mut() else { return };
        let Some(track) = live.tracks.get_mut(&chunk.source) else { return };
        let end = MediaTime(chunk.start.0 + samples_duration(chunk.samples.len()).as_nanos() as u64);
        track.edge = track.edge.max(end);
        if !has_engine {
            return;
        }
        // A hole means the queue overflowed while transcription was busy: that speech is
        // transcribed later from the recording.
        if let Some(expected) = track.expected
            && chunk.start.0 > expected.0 + 40_000_000
        {
            behind.push((
                chunk.source.clone(),
                expected,
                chunk.start,
                "speech audio overflowed the transcription queue",
            ));
        }
        track.expected = Some(end);
        for job in track.stream.push(chunk.start, &chunk.samples) {
            match job.kind {
                JobKind::Final => track.finals.push_back(job),
                JobKind::Partial => track.partial = Some(job),
            }
        }
        // Shed the oldest waiting speech if more than the queue allows is waiting.
        let waiting: usize = track.finals.iter().map(|j| j.samples.len()).sum();
        if samples_duration(waiting) > self.settings.queue
            && let Some(old) = track.finals.pop_front()
        {
            behind.push((chunk.source.clone(), old.start, old.end(), "transcription fell behind"));
        }
        for (source, start, end, why) in behind {
            self.record_behind(&source, start, end, why);
        }
    }

    /// Records that `source` from `start` to `end` will be transcribed later, and queues it.
    fn record_behind(&mut self, source: &str, start: MediaTime, end: MediaTime, why: &str) {
        let Some(live) = self.live.as_ref() else { return };
        let session = live.spec.id;
        let reason = format!("{why}; transcribed later from the recording");
        let entry = Entry::CaptionsBehind { source: source.to_string(), media_start: start, media_end: end, reason };
        match self.ledger.call(move |w| w.append(session, entry)) {
            Ok(c) => {
                tracing::warn!(%source, from = %start, to = %end, "captions behind: {why}");
                let track = &live.tracks[source];
                self.backlog.push_back(BacklogItem {
                    session,
                    source: source.to_string(),
                    role: track.role,
                    language: track.language.clone(),
                    record: c.index,
                    start,
                    end,
                });
            }
            Err(e) => self.note_error(format!("cannot record captions behind: {e}")),
        }
    }

    /// Runs the oldest waiting final, if any.
    fn run_final(&mut self) -> bool {
        let Some(live) = self.live.as_mut() else { return false };
        let Some(source) = live
            .tracks
            .iter()
            .filter_map(|(s, t)| t.finals.front().map(|j| (j.start, s.clone())))
            .min()
            .map(|(_, s)| s)
        else {
            return false;
        };
        let track = live.tracks.get_mut(&source).expect("chosen from the map");
        let job = track.finals.pop_front().expect("has a front");
        if track.partial.as_ref().is_some_and(|p| p.utterance == job.utterance) {
            track.partial = None;
        }
        let language = track.language.clone();
        self.final_captions(&source, &job, &language);
        true
    }

    fn final_captions(&mut self, source: &str, job: &Job, language: &str) {
        let context = self.live.as_ref().and_then(|l| l.tracks[source].context_for(job));
        let Some((engine, state)) = self.engine.as_mut() else { return };
        let transcript = match engine.transcribe(state, &job.samples, language, context.as_deref()) {
            Ok(t) => t,
            Err(e) => return self.note_error(e.to_string()),
        };
        let Some(live) = self.live.as_mut() else { return };
        let session = live.spec.id;
        let track = live.tracks.get_mut(source).expect("known source");
        let delayed = track.edge.saturating_sub(job.end()) > self.settings.delayed_after;
        if !track.batch.is_empty() && track.batch_language != transcript.language {
            let _ = self.commit_track(source);
        }
        let live = self.live.as_mut().expect("still live");
        let track = live.tracks.get_mut(source).expect("known source");
        track.batch_language = transcript.language.clone();
        if !transcript.segments.is_empty() {
            // The last ~200 characters are plenty of context and keep the prompt short.
            let text = transcript.text();
            let tail = text.char_indices().rev().nth(200).map_or(0, |(i, _)| i);
            track.context = Some((job.end(), text[tail..].to_string()));
        }
        let mut events = Vec::new();
        for item in caption_items(job, &transcript, self.clocks.wall(), delayed) {
            let mut e = event("final", session, source, track.role, &transcript.language, &item, CaptionOrigin::Live);
            e.decode_ms = transcript.elapsed.as_millis() as u32;
            e.audio_ms = samples_duration(job.samples.len()).as_millis() as u32;
            events.push(e);
            track.batch_opened.get_or_insert_with(Instant::now);
            track.batch.push(item);
        }
        let rtf = transcript.elapsed.as_secs_f64() / samples_duration(job.samples.len()).as_secs_f64();
        tracing::info!(%source, from = %job.start, rtf = format!("{rtf:.2}"), delayed, chars = transcript.text().chars().count(), "caption (its text is in the record, never in the log)");
        for e in events {
            let _ = self.events.send(e);
        }
        let mut st = self.status.lock().unwrap();
        st.finals += transcript.segments.len() as u64;
        let ts = st.tracks.entry(source.to_string()).or_default();
        ts.delayed = delayed;
        if !transcript.segments.is_empty() {
            ts.last_caption = Some(transcript.text());
        }
        drop(st);
        self.publish_status();
    }

    /// Runs the newest partial of an utterance still being spoken, when nothing final waits.
    fn run_partial(&mut self) -> bool {
        let Some(live) = self.live.as_mut() else { return false };
        if live.tracks.values().any(|t| !t.finals.is_empty()) {
            return false;
        }
        let Some((source, job)) = live.tracks.iter_mut().find_map(|(s, t)| {
            let job = t.partial.take()?;
            (t.stream.current_utterance() == Some(job.utterance)).then(|| (s.clone(), job))
        }) else {
            return false;
        };
        let track = &live.tracks[&source];
        let (session, language, role) = (live.spec.id, track.language.clone(), track.role);
        let context = live.tracks[&source].context_for(&job);
        let Some((engine, state)) = self.engine.as_mut() else { return false };
        match engine.transcribe(state, &job.samples, &language, context.as_deref()) {
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
                let _ =
                    self.events.send(event("partial", session, &source, role, &t.language, &item, CaptionOrigin::Live));
            }
            Ok(_) => {}
            Err(e) => self.note_error(e.to_string()),
        }
        true
    }

    fn commit_track(&mut self, source: &str) -> Result<(), String> {
        let Some(live) = self.live.as_mut() else { return Ok(()) };
        let session = live.spec.id;
        let track = live.tracks.get_mut(source).expect("known source");
        if track.batch.is_empty() {
            return Ok(());
        }
        let entry = Entry::Captions {
            source: source.to_string(),
            role: track.role,
            language: track.batch_language.clone(),
            origin: CaptionOrigin::Live,
            backlog_of: None,
            items: std::mem::take(&mut track.batch),
        };
        track.batch_opened = None;
        self.ledger.call(move |w| w.commit_captions(session, entry)).map(|_| ()).map_err(|e| e.to_string())
    }

    fn commit_batches(&mut self, force: bool) {
        let due: Vec<String> = match self.live.as_ref() {
            None => return,
            Some(live) => live
                .tracks
                .iter()
                .filter(|(_, t)| {
                    !t.batch.is_empty()
                        && (force
                            || t.batch.len() >= BATCH_MAX
                            || t.batch_opened.is_some_and(|o| o.elapsed() >= BATCH_AGE))
                })
                .map(|(s, _)| s.clone())
                .collect(),
        };
        for source in due {
            if let Err(e) = self.commit_track(&source) {
                self.note_error(format!("cannot commit captions of {source}: {e}"));
            }
        }
    }

    fn finish_run(&mut self, run_start: MediaTime, run_end: MediaTime, deadline: Instant) {
        let Some(live) = self.live.as_mut() else { return };
        if self.engine.is_none() {
            let why = self.status.lock().unwrap().reason.clone().unwrap_or_else(|| "speech model unavailable".into());
            let sources: Vec<String> = live.tracks.keys().cloned().collect();
            for source in sources {
                self.record_behind(&source, run_start, run_end, &format!("no captions while recording: {why}"));
            }
            self.live = None;
            return;
        }
        for track in live.tracks.values_mut() {
            if let Some(job) = track.stream.flush() {
                track.finals.push_back(job);
            }
            track.partial = None;
        }
        while Instant::now() < deadline && self.run_final() {}
        // What could not be done in time is transcribed later.
        let left: Vec<(String, MediaTime, MediaTime)> = self
            .live
            .as_mut()
            .map(|l| {
                l.tracks
                    .iter_mut()
                    .flat_map(|(s, t)| t.finals.drain(..).map(|j| (s.clone(), j.start, j.end())).collect::<Vec<_>>())
                    .collect()
            })
            .unwrap_or_default();
        for (source, start, end) in left {
            self.record_behind(&source, start, end, "transcription still behind when recording stopped");
        }
        self.commit_batches(true);
        self.live = None;
    }

    /// Queues the intervals of `session` still to be transcribed (its `captions_behind`
    /// records not yet resolved); returns how many are queued.
    fn queue_pending(&mut self, session: Uuid) -> usize {
        let records: Vec<RecordBody> = match self.ledger.reader().and_then(|r| r.records(session)) {
            Ok(rows) => rows.iter().filter_map(|r| serde_json::from_slice(&r.body).ok()).collect(),
            Err(e) => {
                self.note_error(format!("cannot read session {session}: {e}"));
                return 0;
            }
        };
        let (language, roles) = records
            .iter()
            .find_map(|r| match &r.entry {
                Entry::SessionStart { language, sources, .. } => Some((language.clone(), sources.clone())),
                _ => None,
            })
            .unwrap_or_default();
        let resolved: HashSet<u64> = records
            .iter()
            .filter_map(|r| match &r.entry {
                Entry::Captions { backlog_of: Some(k), .. } => Some(*k),
                _ => None,
            })
            .collect();
        let queued: HashSet<(Uuid, u64)> = self.backlog.iter().map(|b| (b.session, b.record)).collect();
        let mut n = 0;
        for r in &records {
            if let Entry::CaptionsBehind { source, media_start, media_end, .. } = &r.entry
                && !resolved.contains(&r.index)
                && !queued.contains(&(session, r.index))
            {
                self.backlog.push_back(BacklogItem {
                    session,
                    source: source.clone(),
                    role: roles.iter().find(|s| s.name == *source).and_then(|s| s.role),
                    language: self.settings.language_of(source, &language),
                    record: r.index,
                    start: *media_start,
                    end: *media_end,
                });
                n += 1;
            }
        }
        n
    }

    /// One step of backlog work: open an item (decode its audio) or transcribe one of its
    /// utterances, committing the item's captions when done.
    fn backlog_step(&mut self) -> bool {
        if self.engine.is_none() {
            return false;
        }
        if self.cursor.is_none() {
            let Some(item) = self.backlog.pop_front() else { return false };
            match self.open_backlog(&item) {
                Ok(Some(c)) => self.cursor = Some(c),
                // Not recorded yet (the segment is still open): try again later.
                Ok(None) => {
                    self.backlog.push_back(item);
                    return false;
                }
                Err(e) => {
                    self.note_error(format!("cannot read the recording of {} for the backlog: {e}", item.source));
                    return true;
                }
            }
            return true;
        }
        let cursor = self.cursor.as_mut().expect("checked");
        if let Some(job) = cursor.jobs.pop_front() {
            let (engine, state) = self.engine.as_mut().expect("checked");
            match engine.transcribe(state, &job.samples, &cursor.item.language, None) {
                Ok(t) => {
                    cursor.language = t.language.clone();
                    for item in caption_items(&job, &t, self.clocks.wall(), true) {
                        let ev = event(
                            "final",
                            cursor.item.session,
                            &cursor.item.source,
                            cursor.item.role,
                            &t.language,
                            &item,
                            CaptionOrigin::Backlog,
                        );
                        let _ = self.events.send(ev);
                        cursor.items.push(item);
                    }
                }
                Err(e) => self.note_error(e.to_string()),
            }
            return true;
        }
        let done = self.cursor.take().expect("checked");
        let entry = Entry::Captions {
            source: done.item.source.clone(),
            role: done.item.role,
            language: done.language,
            origin: CaptionOrigin::Backlog,
            backlog_of: Some(done.item.record),
            items: done.items,
        };
        let session = done.item.session;
        match self.ledger.call(move |w| w.commit_captions(session, entry)) {
            Ok(_) => {
                tracing::info!(source = %done.item.source, from = %done.item.start, to = %done.item.end, "backlog transcribed")
            }
            Err(e) => self.note_error(format!("cannot commit backlog captions: {e}")),
        }
        self.publish_status();
        true
    }

    fn open_backlog(&self, item: &BacklogItem) -> Result<Option<Cursor>, String> {
        let reader = self.ledger.reader().map_err(|e| e.to_string())?;
        let segments: Vec<_> = reader
            .segments(item.session)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|s| s.source == item.source)
            .collect();
        let recorded_to = segments.iter().map(|s| s.media_end_ns).max().unwrap_or(0);
        let still_recording =
            reader.session(item.session).map_err(|e| e.to_string())?.is_some_and(|s| s.state == "recording");
        if still_recording && recorded_to < item.end.0 {
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
        Ok(Some(Cursor { item: item.clone(), jobs, items: Vec::new(), language: item.language.clone() }))
    }

    fn note_error(&self, e: String) {
        tracing::error!(error = %e, "speech to text");
        self.status.lock().unwrap().last_error = Some(e);
    }

    fn publish_status(&self) {
        let mut st = self.status.lock().unwrap();
        st.backlog = self.backlog.len() + usize::from(self.cursor.is_some());
        if let Some(live) = &self.live {
            for (s, t) in &live.tracks {
                let waiting: usize = t.finals.iter().map(|j| j.samples.len()).sum();
                st.tracks.entry(s.clone()).or_default().waiting_seconds = samples_duration(waiting).as_secs_f64();
            }
        }
    }
}

/// One final caption per transcribed segment, placed in media time from the job's start.
fn caption_items(
    job: &Job,
    t: &super::engine::Transcript,
    wall: crate::base::WallTime,
    delayed: bool,
) -> Vec<CaptionItem> {
    let at = |d: Duration| MediaTime(job.start.0 + d.as_nanos() as u64).min(job.end());
    t.segments
        .iter()
        .map(|seg| CaptionItem {
            media_start: at(seg.start),
            media_end: at(seg.end),
            wall,
            text: seg.text.clone(),
            confidence: (seg.confidence * 1000.0).round() as u16,
            delayed,
        })
        .collect()
}

fn event(
    kind: &'static str,
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
        origin: origin.as_str(),
        decode_ms: 0,
        audio_ms: 0,
    }
}
