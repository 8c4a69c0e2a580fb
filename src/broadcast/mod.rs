//! Broadcast: the optional delayed live programme of an open hearing. Policy (who may
//! start it, closed hearings, what the chain says) is the session's; this module makes the
//! programme and keeps it out of harm's way:
//!
//! ```text
//! capture tap ──(bounded, never waits)──▶ delay queue ──(at media + delay)──▶ programme
//!   (encoded buffers of every source)                       decode, camera on air or slate,
//!                                                           mix or silence, H.264 + AAC
//!                                                                 │
//!                                        ┌────────────────────────┼──────────────────┐
//!                                      RTMP push               SRT caller        local HLS
//! ```
//!
//! Everything is decided in media time: a privacy mute pressed at T blanks what was
//! recorded from T − rewind, which the delayed programme has not shown yet.

mod blanking;
mod decode_choice;
mod director;
mod output;
mod program;

pub use blanking::BlankReason;
pub use output::{OutputState, OutputStatus};

use crate::base::{Clocks, ExponentialRetry, MediaTime, ServiceThread, Supervision};
use crate::capture::{EncodedBuffer, EncodedTap};
use crate::config::{BroadcastConfig, LoadedConfig, NetworkVideoCodec, OutputKind};
use blanking::Blanking;
use director::Director;
use output::{Output, OutputTarget};
use parking_lot::Mutex;
use program::{DecodeCounts, Program, ProgramCamera, ProgramSpec};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Error)]
pub enum BroadcastError {
    #[error("no broadcast output is configured: add a [[broadcast.output]] to {0}")]
    NotConfigured(PathBuf),
    #[error("the broadcast is already running")]
    AlreadyRunning,
    #[error("broadcast output {output}: key file {path}: {message}")]
    Secret { output: String, path: PathBuf, message: String },
    #[error("the broadcast programme could not start: {0}")]
    Pipeline(#[from] ProgramStartError),
}

/// Why the programme pipeline could not be started.
#[derive(Debug, Error)]
pub enum ProgramStartError {
    #[error(transparent)]
    Build(#[from] program::ProgramError),
    /// GStreamer's own words for why it would not play.
    #[error("{0}")]
    Play(String),
    #[error("the programme did not start playing")]
    NotPlaying,
}

/// Encoded buffers waiting for the delay queue; a full intake drops (capture never waits).
const INTAKE: usize = 4096;
/// Buffers go into the programme this long before they are due, for the decoders.
const LEAD: Duration = Duration::from_millis(300);
/// Blanked stretches that ended this long before what is being shown are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(10);

/// Maps media time to the clock: what was recorded at `zero` (live at clock time
/// `zero_clock`, when the broadcast started) is shown `delay` later.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeline {
    zero: MediaTime,
    zero_clock: u64,
    delay: u64,
}

impl Timeline {
    /// Clock time at which media time `m` is shown; none for what came before the start.
    fn shown_at(&self, m: MediaTime) -> Option<u64> {
        m.0.checked_sub(self.zero.0).map(|d| self.zero_clock + self.delay + d)
    }
    /// Media time shown at clock time `c`; none while the delay has not yet passed.
    fn shown(&self, c: u64) -> Option<MediaTime> {
        c.checked_sub(self.zero_clock + self.delay).map(|d| MediaTime(self.zero.0 + d))
    }
}

/// What the programme's threads share with the session's calls.
pub(crate) struct Shared {
    timeline: Timeline,
    /// Base time of the programme pipeline (its running time 0 on the clock).
    base: AtomicU64,
    blanking: Mutex<Blanking>,
    director: Mutex<Director>,
    /// Per camera, in the order of the programme's cameras.
    decoding: Vec<DecodeCounts>,
}

impl Shared {
    /// Media time the programme shows at its running time `r`.
    fn media_at(&self, r: u64) -> Option<MediaTime> {
        self.timeline.shown(r + self.base.load(Ordering::SeqCst))
    }

    /// Media time of a camera picture shown at running time `r`, or none for the slate
    /// (blanked, or nothing recorded yet to show).
    fn visible(&self, r: u64) -> Option<MediaTime> {
        self.media_at(r).filter(|m| !self.blanking.lock().contains(*m))
    }

    /// The camera the director puts on air at media time `m`; none while blanked.
    fn wanted(&self, m: MediaTime) -> Option<usize> {
        (!self.blanking.lock().contains(m)).then(|| self.director.lock().camera_at(m))
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct BroadcastStatus {
    /// False when the box has no broadcast output configured.
    pub configured: bool,
    pub live: bool,
    /// Media time at which the current broadcast started.
    pub since_media: Option<MediaTime>,
    pub delay_seconds: u32,
    pub rewind_seconds: u32,
    /// The privacy mute blanks the broadcast (never the record).
    pub muted: bool,
    /// The camera the director chose last (a cut lands on that camera's next keyframe).
    pub camera: Option<String>,
    /// What the programme decodes of each camera: all of the one on air, keyframes of the rest
    /// (absent from the status of a daemon older than this field).
    #[serde(default)]
    pub pictures: Vec<PictureDecoding>,
    pub outputs: Vec<OutputStatus>,
    /// The programme's last failure, if it had to be rebuilt.
    pub last_error: Option<String>,
}

/// Frames of one camera's recorded picture since the broadcast started.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PictureDecoding {
    pub camera: String,
    /// Decoded for the programme.
    pub frames_decoded: u64,
    /// Not decoded: delta frames of a camera off air.
    pub frames_skipped: u64,
}

struct Running {
    shared: Arc<Shared>,
    outputs: Vec<Arc<Output>>,
    /// The delay's thread ("broadcast-delay").
    releaser: ServiceThread,
    last_error: Arc<Mutex<Option<String>>>,
}

pub struct Broadcaster {
    cfg: BroadcastConfig,
    config_path: PathBuf,
    base_dir: PathBuf,
    cameras: Vec<ProgramCamera>,
    mics: Vec<String>,
    /// Camera index of each microphone's role.
    mic_camera: Vec<Option<usize>>,
    intake: Arc<Mutex<Option<SyncSender<EncodedBuffer>>>>,
    running: Mutex<Option<Running>>,
    clocks: Arc<dyn Clocks>,
}

impl Broadcaster {
    pub fn new(cfg: &LoadedConfig, clocks: Arc<dyn Clocks>) -> Broadcaster {
        let profile = &cfg.profile;
        let pictures = profile.pictures();
        // A network camera may keep its H.265; local ones are encoded to H.264.
        let codec = |name: &str| {
            let network = profile.network_sources.iter().filter_map(|n| n.video.as_ref());
            network.filter(|v| v.name == name).map(|v| v.recorded_codec()).next().unwrap_or(NetworkVideoCodec::H264)
        };
        let cameras =
            pictures.iter().map(|(name, _)| ProgramCamera { name: name.to_string(), codec: codec(name) }).collect();
        let voices = profile.voices();
        // A remote participant is shown in their own picture; a room microphone by the
        // camera that shows its role.
        let mic_camera = voices
            .iter()
            .map(|m| match m.picture {
                Some(own) => pictures.iter().position(|(name, _)| *name == own),
                None => pictures.iter().position(|(_, roles)| roles.contains(&m.role)),
            })
            .collect();
        Broadcaster {
            cfg: cfg.config.broadcast.clone(),
            config_path: cfg.path.clone(),
            base_dir: cfg.base_dir.clone(),
            mics: voices.iter().map(|m| m.name.to_string()).collect(),
            cameras,
            mic_camera,
            intake: Arc::default(),
            running: Mutex::new(None),
            clocks,
        }
    }

    pub fn configured(&self) -> bool {
        !self.cfg.outputs.is_empty()
    }

    pub fn delay(&self) -> Duration {
        Duration::from_secs(self.cfg.delay_seconds.into())
    }

    pub fn rewind(&self) -> Duration {
        Duration::from_secs(self.cfg.rewind_seconds.into())
    }

    /// The outputs as the chain names them: `name (kind url)`, never a secret.
    pub fn describe_outputs(&self) -> Vec<String> {
        let kind = |k: OutputKind| match k {
            OutputKind::Rtmp => "rtmp",
            OutputKind::Srt => "srt",
            OutputKind::Hls => "hls",
        };
        self.cfg
            .outputs
            .iter()
            .map(|o| match (&o.url, &o.dir) {
                (Some(url), _) => format!("{} ({} {url})", o.name, kind(o.kind)),
                (None, Some(dir)) => format!("{} ({} {})", o.name, kind(o.kind), dir.display()),
                (None, None) => format!("{} ({})", o.name, kind(o.kind)),
            })
            .collect()
    }

    /// For capture: every encoded buffer, taken only while a broadcast runs.
    pub fn tap(&self) -> EncodedTap {
        let intake = self.intake.clone();
        Arc::new(move |buffer| {
            if let Some(tx) = intake.lock().as_ref()
                && let Err(TrySendError::Full(_)) = tx.try_send(buffer)
            {
                tracing::debug!("broadcast intake full; a buffer is not broadcast");
            }
        })
    }

    pub fn is_running(&self) -> bool {
        self.running.lock().is_some()
    }

    fn targets(&self) -> Result<Vec<OutputTarget>, BroadcastError> {
        self.cfg
            .outputs
            .iter()
            .map(|o| {
                let secret = match &o.key_file {
                    Some(p) => {
                        let path = crate::base::resolve(&self.base_dir, p);
                        let text = crate::base::read_secret_file(&path).map_err(|e| {
                            let message = e.to_string();
                            BroadcastError::Secret { output: o.name.clone(), path: path.clone(), message }
                        })?;
                        Some(text.trim().to_string())
                    }
                    None => None,
                };
                Ok(OutputTarget {
                    name: o.name.clone(),
                    kind: o.kind,
                    url: o.url.clone(),
                    secret,
                    dir: o.dir.as_ref().map(|d| crate::base::resolve(&self.base_dir, d)),
                })
            })
            .collect()
    }

    /// Starts the programme: what is recorded from `now` on goes out `delay` later; until
    /// then, and while blanked, the slate. `blanked`: muted or in recess from the start.
    pub fn start(&self, now: MediaTime, blanked: &[BlankReason]) -> Result<(), BroadcastError> {
        let mut running = self.running.lock();
        if running.is_some() {
            return Err(BroadcastError::AlreadyRunning);
        }
        if !self.configured() {
            return Err(BroadcastError::NotConfigured(self.config_path.clone()));
        }
        let targets = self.targets()?;
        let fixed = self.cameras.iter().position(|c| c.name == self.cfg.camera);
        let mut blanking = Blanking::default();
        for reason in blanked {
            blanking.begin(*reason, now);
        }
        use gst::prelude::*;
        let clock = gst::SystemClock::obtain();
        let shared = Arc::new(Shared {
            timeline: Timeline {
                zero: now,
                zero_clock: clock.time().nseconds(),
                delay: self.delay().as_nanos() as u64,
            },
            base: AtomicU64::new(0),
            blanking: Mutex::new(blanking),
            director: Mutex::new(Director::new(
                fixed.unwrap_or(0),
                fixed.is_some(),
                Duration::from_secs(self.cfg.hold_seconds.into()),
                self.mic_camera.clone(),
            )),
            decoding: self.cameras.iter().map(|_| DecodeCounts::default()).collect(),
        });
        let spec = ProgramSpec {
            width: self.cfg.width,
            height: self.cfg.height,
            fps: self.cfg.fps,
            video_kbps: self.cfg.video_kbps,
            audio_kbps: self.cfg.audio_kbps,
            cameras: self.cameras.clone(),
            mics: self.mics.clone(),
        };
        let retry = ExponentialRetry::new(
            Duration::from_millis(self.cfg.retry_initial_ms.into()),
            Duration::from_millis(self.cfg.retry_max_ms.into()),
        )
        .with_jitter();
        let outputs: Vec<Arc<Output>> =
            targets.into_iter().map(|t| Output::start(t, retry.clone(), self.clocks.clone())).collect();
        let program = match start_program(&spec, &shared, &outputs) {
            Ok(p) => p,
            Err(e) => {
                outputs.iter().for_each(|o| o.stop());
                return Err(BroadcastError::Pipeline(e));
            }
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(INTAKE);
        *self.intake.lock() = Some(tx);
        let last_error = Arc::new(Mutex::new(None));
        let releaser = {
            let release = Release {
                rx,
                program,
                spec,
                shared: shared.clone(),
                outputs: outputs.clone(),
                clock,
                last_error: last_error.clone(),
                failed: None,
                rebuilds: Supervision::new(ExponentialRetry::new(Duration::from_millis(500), Duration::from_secs(30))),
                clocks: self.clocks.clone(),
            };
            ServiceThread::spawn("broadcast-delay", move |stop| release.run(&stop))
        };
        tracing::info!(delay_s = self.cfg.delay_seconds, outputs = outputs.len(), "broadcast started");
        *running = Some(Running { shared, outputs, releaser, last_error });
        Ok(())
    }

    /// Ends the broadcast at once: connections are closed, what is still in the delay is
    /// never sent. False if none was running.
    pub fn stop(&self) -> bool {
        let Some(r) = self.running.lock().take() else { return false };
        self.intake.lock().take();
        // Outputs first: the cut must reach the servers before anything else is torn down.
        r.outputs.iter().for_each(|o| o.stop());
        r.releaser.stop();
        tracing::info!("broadcast stopped");
        true
    }

    /// Blanks the broadcast from `from` (a privacy mute reaching back, or a recess).
    pub fn blank(&self, reason: BlankReason, from: MediaTime) {
        if let Some(r) = self.running.lock().as_ref() {
            r.shared.blanking.lock().begin(reason, from);
        }
    }

    pub fn unblank(&self, reason: BlankReason, at: MediaTime) {
        if let Some(r) = self.running.lock().as_ref() {
            r.shared.blanking.lock().end(reason, at);
        }
    }

    pub fn status(&self) -> BroadcastStatus {
        let running = self.running.lock();
        let r = running.as_ref();
        BroadcastStatus {
            configured: self.configured(),
            live: r.is_some(),
            since_media: r.map(|r| r.shared.timeline.zero),
            delay_seconds: self.cfg.delay_seconds,
            rewind_seconds: self.cfg.rewind_seconds,
            muted: r.is_some_and(|r| r.shared.blanking.lock().is_muted()),
            camera: r.and_then(|r| self.cameras.get(r.shared.director.lock().latest()).map(|c| c.name.clone())),
            pictures: r
                .map(|r| {
                    let counts = self.cameras.iter().zip(&r.shared.decoding);
                    counts
                        .map(|(c, n)| PictureDecoding {
                            camera: c.name.clone(),
                            frames_decoded: n.decoded.load(Ordering::Relaxed),
                            frames_skipped: n.skipped.load(Ordering::Relaxed),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            outputs: r.map(|r| r.outputs.iter().map(|o| o.status()).collect()).unwrap_or_default(),
            last_error: r.and_then(|r| r.last_error.lock().clone()),
        }
    }
}

/// Builds the programme pipeline, connects its encoders to the outputs and plays it.
fn start_program(
    spec: &ProgramSpec,
    shared: &Arc<Shared>,
    outputs: &[Arc<Output>],
) -> Result<Program, ProgramStartError> {
    use gst::prelude::*;
    let program = Program::build(spec, shared)?;
    program.pipeline.use_clock(Some(&gst::SystemClock::obtain()));
    let to_outputs = |push: fn(&Output, &gst::Sample, u64)| {
        let (outputs, shared) = (outputs.to_vec(), shared.clone());
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                // Before the base is known (the mixer's first silence) nothing is placed.
                // The segment matters: x264enc shifts its timestamps by 1000 h in it.
                let base = shared.base.load(Ordering::SeqCst);
                let running = sample.segment().and_then(|s| crate::capture::running_time(s, sample.buffer()?.pts()));
                if let Some(running) = running.filter(|_| base > 0) {
                    outputs.iter().for_each(|o| push(o, &sample, base + running));
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build()
    };
    program.video_out.set_callbacks(to_outputs(Output::push_video));
    program.audio_out.set_callbacks(to_outputs(Output::push_audio));
    shared.base.store(0, Ordering::SeqCst);
    // No sink waits for a preroll (they are all async=false: a sink blocked in preroll
    // until the cameras' first delayed frames would hold back the slate and the sound),
    // so the pipeline plays, and picks its base time, at once.
    if let Err(e) = program.pipeline.set_state(gst::State::Playing) {
        let detail = crate::capture::first_error(&program.pipeline).unwrap_or_else(|| e.to_string());
        let _ = program.pipeline.set_state(gst::State::Null);
        return Err(ProgramStartError::Play(detail));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let base = loop {
        match program.pipeline.base_time().map(|b| b.nseconds()) {
            Some(b) if b > 0 => break b,
            _ if std::time::Instant::now() > deadline => {
                let _ = program.pipeline.set_state(gst::State::Null);
                return Err(ProgramStartError::NotPlaying);
            }
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    // With no sink prerolling, nothing completes an asynchronous state change, which is
    // when a pipeline asks its elements for their latency: ask now, so that the sound mixer
    // knows it is live and mixes on time instead of waiting for every microphone.
    if let Err(e) = program.pipeline.recalculate_latency() {
        tracing::warn!(error = %e, "the programme's latency is unknown");
    }
    shared.base.store(base, Ordering::SeqCst);
    Ok(program)
}

/// The delay: holds every tapped buffer until its time to be shown comes, then feeds it to
/// the programme. Rebuilds the programme if it fails.
struct Release {
    rx: Receiver<EncodedBuffer>,
    program: Program,
    spec: ProgramSpec,
    shared: Arc<Shared>,
    outputs: Vec<Arc<Output>>,
    clock: gst::Clock,
    last_error: Arc<Mutex<Option<String>>>,
    /// The programme failed and could not be rebuilt yet.
    failed: Option<String>,
    /// When to rebuild a programme that keeps failing.
    rebuilds: Supervision<ExponentialRetry>,
    clocks: Arc<dyn Clocks>,
}

impl Release {
    fn run(mut self, stop: &CancellationToken) {
        use gst::prelude::*;
        let mut queue: VecDeque<EncodedBuffer> = VecDeque::new();
        self.rebuilds.attempt(self.clocks.monotonic());
        self.rebuilds.running(self.clocks.monotonic());
        while !stop.is_cancelled() {
            let clock_now = self.clock.time().nseconds();
            if let Some(shown) = self.shared.timeline.shown(clock_now.saturating_sub(FORGET_AFTER.as_nanos() as u64)) {
                self.shared.blanking.lock().forget_before(shown);
            }
            let now = clock_now + LEAD.as_nanos() as u64;
            let mut wait = Duration::from_millis(100);
            let base = self.shared.base.load(Ordering::SeqCst);
            let running = clock_now.saturating_sub(base);
            self.program.emit_frames(&self.shared, running);
            wait = wait.min(Duration::from_nanos(self.program.next_frame_at().saturating_sub(running)));
            while let Some(front) = queue.front() {
                match self.shared.timeline.shown_at(front.media) {
                    Some(due) if due > now => {
                        wait = wait.min(Duration::from_nanos(due - now));
                        break;
                    }
                    Some(due) => {
                        let b = queue.pop_front().expect("front exists");
                        if let Some(running) = due.checked_sub(base) {
                            self.program.push(&self.shared, &b.source, &b.buffer, &b.caps, b.media, running);
                        }
                    }
                    // Recorded before the broadcast started: never shown.
                    None => {
                        queue.pop_front();
                    }
                }
            }
            match self.rx.recv_timeout(wait) {
                Ok(b) => queue.push_back(b),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if queue.is_empty() {
                        self.clocks.sleep_unless_cancelled(wait, stop);
                    }
                }
            }
            while let Ok(b) = self.rx.try_recv() {
                queue.push_back(b);
            }
            let error = self.failed.take().or_else(|| {
                let message = self.program.pipeline.bus()?.pop_filtered(&[gst::MessageType::Error])?;
                match message.view() {
                    gst::MessageView::Error(e) => Some(crate::capture::describe_error(e)),
                    _ => None,
                }
            });
            if let Some(error) = error {
                self.rebuild(error, stop);
            }
        }
        let _ = self.program.pipeline.set_state(gst::State::Null);
    }

    fn rebuild(&mut self, error: String, stop: &CancellationToken) {
        use gst::prelude::*;
        let _ = self.program.pipeline.set_state(gst::State::Null);
        let pause = self.rebuilds.failed(self.clocks.monotonic());
        tracing::warn!(%error, retry_in = ?pause, "broadcast programme failed; rebuilding it");
        *self.last_error.lock() = Some(error);
        if !self.clocks.sleep_unless_cancelled(pause, stop) {
            return;
        }
        self.rebuilds.attempt(self.clocks.monotonic());
        match start_program(&self.spec, &self.shared, &self.outputs) {
            Ok(p) => {
                self.program = p;
                self.rebuilds.running(self.clocks.monotonic());
            }
            Err(e) => {
                tracing::error!(error = %e, "broadcast programme could not be rebuilt; trying again");
                *self.last_error.lock() = Some(e.to_string());
                self.failed = Some(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_shows_what_was_recorded_a_delay_later() {
        let t = Timeline { zero: MediaTime(100_000), zero_clock: 5_000_000, delay: 30_000 };
        assert_eq!(t.shown_at(MediaTime(100_000)), Some(5_030_000));
        assert_eq!(t.shown_at(MediaTime(100_500)), Some(5_030_500));
        assert_eq!(t.shown_at(MediaTime(99_999)), None, "recorded before the start");
        assert_eq!(t.shown(5_030_500), Some(MediaTime(100_500)));
        assert_eq!(t.shown(5_029_999), None, "the delay has not passed yet");
    }
}
