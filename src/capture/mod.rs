//! Capture: one GStreamer pipeline per device, all on one clock and base time, each
//! supervised and restarted on failure without disturbing the others. Tracks are cut into
//! aligned segments (see `splitter`) and every closed segment file is handed to the
//! session as a [`CaptureEvent::Fragment`]. Capture never waits for anyone: events go out on
//! an unbounded channel.

pub mod elements;
mod health;
mod network;
pub mod onvif;
mod pipeline;
mod plan;
mod reader;
mod sim_audio;
mod splitter;
mod supervisor;
mod template;
mod thumbnail;
mod track;

pub use health::{AlarmAfter, BLACK_LUMA, HealthBoard, SILENT_DBFS, SourceHealth, StreamHealth};
pub use network::NetworkFault;
pub use pipeline::{describe_error, first_error, running_time};
pub use plan::{DevicePlan, TrackPlan, plan_devices};
pub use reader::{ReadError, read_file};

/// Speech audio of one microphone for speech to text: 16 kHz mono, starting at `start`.
#[derive(Debug, Clone)]
pub struct AudioChunk {
    pub source: String,
    pub start: MediaTime,
    pub samples: Vec<f32>,
}

/// Receives every chunk of microphone audio. Called on GStreamer streaming threads: it must
/// return at once (capture never waits).
pub type AudioTap = Arc<dyn Fn(AudioChunk) + Send + Sync>;

/// One encoded buffer of a source, exactly as it goes into the recording, for the
/// broadcast. `buffer` shares its memory with the recorded one (no copy).
#[derive(Debug, Clone)]
pub struct EncodedBuffer {
    pub source: Arc<str>,
    /// Media time of the buffer's presentation timestamp.
    pub media: MediaTime,
    pub buffer: gst::Buffer,
    pub caps: gst::Caps,
}

/// Receives every encoded buffer of every source. Called on GStreamer streaming threads:
/// it must return at once (capture never waits).
pub type EncodedTap = Arc<dyn Fn(EncodedBuffer) + Send + Sync>;
pub use sim_audio::decode_to_pcm;
pub use template::Templates;

use crate::base::{Clocks, MediaTime, WallTime};
use crate::segment::{OpenFiles, Syncer};
use gst::prelude::*;
use parking_lot::Mutex;
use serde::Serialize;
use splitter::Splitter;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use track::Track;

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("pipeline template: {0}")]
    Template(String),
    #[error("spool {path}: {source}")]
    Spool { path: PathBuf, source: std::io::Error },
}

/// A segment file closed by its sink, not yet sealed.
#[derive(Debug)]
pub struct ClosedFragment {
    pub source: String,
    pub seq: u64,
    pub path: PathBuf,
    pub file: File,
    pub bytes: u64,
    /// SHA-256 computed while writing, if the file was written strictly in order.
    pub sha256: Option<[u8; 32]>,
    /// False when the pipeline failed while writing it: readable, but cut short.
    pub complete: bool,
    /// What the periodic syncs made durable of it (the sealer settles it).
    pub durability: crate::segment::DurabilityTicket,
    pub media_start: MediaTime,
    pub media_end: MediaTime,
    pub wall_start: WallTime,
    /// A network source's: how its timestamps were placed when the fragment closed.
    pub timing: Option<crate::integrity::SenderTiming>,
}

/// What stopped a device, as far as the recorder acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The device, its driver or its pipeline: restarted with back-off.
    Device,
    /// Its segment file could not be written for lack of space: the recorder answers it as
    /// it answers the critical disk watermark (cameras pause, audio records on).
    DiskFull,
}

#[derive(Debug)]
pub enum CaptureEvent {
    /// Recording starts at `t0` for these sources; sent before any fragment.
    Started {
        t0: MediaTime,
        sources: Vec<String>,
        /// Passed-through pictures: each begins at its camera's first keyframe after `t0`.
        keyframe_sources: Vec<String>,
    },
    Fragment(ClosedFragment),
    DeviceFailed {
        device: String,
        sources: Vec<String>,
        at: MediaTime,
        error: String,
        kind: FailureKind,
        /// Whether the device had recorded in this run before it failed.
        had_run: bool,
    },
    /// A device whose pipeline cannot be built (an element is not installed, the template
    /// does not parse): it records nothing in this run and is not retried.
    DeviceCannotStart {
        device: String,
        sources: Vec<String>,
        at: MediaTime,
        reason: String,
    },
    /// A device recording again after `attempt - 1` failed attempts.
    DeviceRestarted {
        device: String,
        at: MediaTime,
        attempt: u32,
    },
    /// A device was stopped on purpose (cameras when the disk is nearly full).
    DevicePaused {
        device: String,
        sources: Vec<String>,
        at: MediaTime,
        reason: String,
    },
}

/// The run's clock: GStreamer's monotonic system clock, one base time for every pipeline,
/// and the media-time offset that continues a resumed session's timeline.
pub struct RunClock {
    clock: gst::Clock,
    base: gst::ClockTime,
    offset: MediaTime,
}

impl RunClock {
    pub fn new(offset: MediaTime) -> RunClock {
        let clock = gst::SystemClock::obtain();
        let base = clock.time();
        RunClock { clock, base, offset }
    }
    fn raw_now(&self) -> u64 {
        self.clock.time().saturating_sub(self.base).nseconds()
    }
    /// Current session media time.
    pub fn now(&self) -> MediaTime {
        MediaTime(self.raw_now() + self.offset.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    Starting,
    Running,
    Restarting,
    /// A configuration or installation fault (see `DeviceCannotStart`): never retried.
    #[serde(rename = "cannot_start")]
    CannotStart,
    Paused,
    Stopped,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DeviceStatus {
    pub name: String,
    pub sources: Vec<String>,
    pub state: DeviceState,
    /// Times the device came back after failing while recording.
    pub restarts: u32,
    pub last_error: Option<String>,
}

pub struct DeviceShared {
    status: Mutex<DeviceStatus>,
    pipeline: Mutex<Option<gst::Pipeline>>,
    /// Running time of the first buffer the device delivered in this run.
    first_raw: AtomicU64,
    /// One per anchor of the plan, in its order: what the watchdog knows of each stream.
    streams: Vec<StreamWatch>,
    /// A network source: it is left out of the start wait and of the choice of the run's
    /// start (it connects when it connects, and its timestamps are the sender's).
    network: bool,
    /// The video streams a network source's sender described in the current connection.
    offered: Mutex<Vec<String>>,
    /// The jitter buffers of an RTSP source's current connection (their packet counters).
    jitterbuffers: Mutex<Vec<gst::glib::WeakRef<gst::Element>>>,
    has_video: bool,
    /// Why the device must not record now, if it must not.
    paused: Mutex<Option<String>>,
}

/// What the watchdog knows of one stream (anchor) of a device in its current pipeline.
/// Times are raw clock times (`RunClock::raw_now`).
#[derive(Debug, Default)]
pub struct StreamWatch {
    /// When data last reached the anchor, or the pipeline started.
    last_data: AtomicU64,
    /// Whether any data reached the anchor.
    arrived: std::sync::atomic::AtomicBool,
    /// Whether data passed the gate (is recorded).
    recorded: std::sync::atomic::AtomicBool,
    /// When the last keyframe arrived, or the pipeline started (passed-through pictures).
    last_keyframe: AtomicU64,
    /// A frame larger than any camera sends arrived (it was dropped).
    oversized: std::sync::atomic::AtomicBool,
}

impl StreamWatch {
    /// A new pipeline starts at `now`: nothing arrived yet.
    fn reset(&self, now: u64) {
        self.last_data.store(now, Ordering::SeqCst);
        self.last_keyframe.store(now, Ordering::SeqCst);
        self.arrived.store(false, Ordering::SeqCst);
        self.recorded.store(false, Ordering::SeqCst);
        self.oversized.store(false, Ordering::SeqCst);
    }
}

impl DeviceShared {
    /// Whether every stream of the current pipeline has been recorded from.
    fn recording_every_stream(&self) -> bool {
        self.streams.iter().all(|s| s.recorded.load(Ordering::SeqCst))
    }

    fn update(&self, f: impl FnOnce(&mut DeviceStatus)) {
        f(&mut self.status.lock());
    }
    fn pause_reason(&self) -> Option<String> {
        self.paused.lock().clone()
    }
}

/// State shared by the supervisors of one run.
pub struct RunContext {
    clock: Arc<RunClock>,
    /// Raw running time from which buffers are recorded; `u64::MAX` until recording starts.
    gate: Arc<AtomicU64>,
    tracks: HashMap<String, Arc<Track>>,
    splitter: Splitter,
    open_files: Arc<OpenFiles>,
    events: Sender<CaptureEvent>,
    /// Cancelled when the run stops: every device thread winds down.
    stop: CancellationToken,
    clocks: Arc<dyn Clocks>,
    next_instance: AtomicU64,
    tap: Option<AudioTap>,
    encoded_tap: Option<EncodedTap>,
    health: Arc<HealthBoard>,
    on_disk_full: Option<DiskFullHook>,
}

/// Called with what failed when a device could not write its segment for lack of space.
/// It must not block: it runs on the device's thread.
pub type DiskFullHook = Arc<dyn Fn(String) + Send + Sync>;

impl RunContext {
    fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
    /// Waits `d` unless the run stops, or `device`'s pause state changes (a camera waiting
    /// to restart is paused at once when the disk is critical, not after its back-off).
    fn sleep_unless_stopping(&self, device: &DeviceShared, d: Duration) {
        let paused = device.pause_reason().is_some();
        self.clocks.sleep_while(d, &|| !self.stopping() && device.pause_reason().is_some() == paused);
    }
}

/// How far ahead of the start decision recording begins (see `CaptureRun::start`).
const START_MARGIN: Duration = Duration::from_millis(100);

pub struct RunParams {
    /// The session's spool folder; each source writes `{source}/{seq}.mkv` in it.
    pub session_dir: PathBuf,
    /// Media time at this run's running time 0.
    pub media_offset: MediaTime,
    pub segment: Duration,
    /// First segment number per source (continuing a resumed session).
    pub next_seq: HashMap<String, u64>,
    pub start_timeout: Duration,
    pub sync_interval: Duration,
    /// Where microphone audio goes for speech to text (the plans must have taps).
    pub tap: Option<AudioTap>,
    /// Where every encoded buffer goes for the broadcast.
    pub encoded_tap: Option<EncodedTap>,
    /// Cameras start paused, for this reason (the disk is nearly full).
    pub video_paused: Option<String>,
    /// Told at once, from the device's thread, when a segment cannot be written for lack
    /// of space (the disk watch pauses the cameras, as at the critical watermark).
    pub on_disk_full: Option<DiskFullHook>,
    /// When a signal problem becomes an alarm.
    pub alarm_after: AlarmAfter,
}

/// A run of capture: every device of the profile, recording until `stop`.
pub struct CaptureRun {
    ctx: Arc<RunContext>,
    devices: Vec<Arc<DeviceShared>>,
    threads: Vec<JoinHandle<()>>,
    _syncer: Syncer,
    t0: MediaTime,
    stopped: bool,
}

impl CaptureRun {
    /// Starts every device and waits (up to `start_timeout`) for all of them to deliver
    /// data, then opens the gate at one common instant so that all sources begin together.
    pub fn start(
        plans: Vec<DevicePlan>,
        params: RunParams,
        clocks: Arc<dyn Clocks>,
        events: Sender<CaptureEvent>,
    ) -> Result<CaptureRun, CaptureError> {
        let clock = Arc::new(RunClock::new(params.media_offset));
        let mut tracks = HashMap::new();
        for t in plans.iter().flat_map(|p| &p.tracks) {
            let next_seq = params.next_seq.get(&t.source).copied().unwrap_or(0);
            let track = Track::new(
                t.source.clone(),
                t.kind,
                params.session_dir.clone(),
                next_seq,
                events.clone(),
                clocks.clone(),
            );
            let dir = track.dir();
            std::fs::create_dir_all(&dir).map_err(|source| CaptureError::Spool { path: dir.clone(), source })?;
            tracks.insert(t.source.clone(), Arc::new(track));
        }
        // Each new folder's name is durable only once its parent is synced: the session's
        // folder in spool/, spool/ in the data folder (a power cut must not take the spool).
        let spool = params.session_dir.parent();
        for dir in [Some(params.session_dir.as_path()), spool, spool.and_then(Path::parent)].into_iter().flatten() {
            crate::base::sync_dir(dir).map_err(|source| CaptureError::Spool { path: dir.to_path_buf(), source })?;
        }
        let open_files = Arc::new(OpenFiles::default());
        let ctx = Arc::new(RunContext {
            clock: clock.clone(),
            gate: Arc::new(AtomicU64::new(u64::MAX)),
            tracks,
            splitter: Splitter::start(clock.clone(), params.segment.as_nanos() as u64, clocks.clone()),
            open_files: open_files.clone(),
            events: events.clone(),
            stop: CancellationToken::new(),
            clocks: clocks.clone(),
            next_instance: AtomicU64::new(0),
            tap: params.tap.clone(),
            encoded_tap: params.encoded_tap.clone(),
            health: Arc::new(HealthBoard::new(params.alarm_after, clocks.clone())),
            on_disk_full: params.on_disk_full.clone(),
        });
        let syncer = Syncer::start(open_files, params.sync_interval, clocks.clone());

        let mut devices = Vec::new();
        let mut threads = Vec::new();
        let sources: Vec<String> = plans.iter().flat_map(|p| p.tracks.iter().map(|t| t.source.clone())).collect();
        let keyframe_sources: Vec<String> = plans
            .iter()
            .flat_map(|p| p.anchors.iter().filter(|a| a.starts_on_keyframe).flat_map(|a| a.sources.clone()))
            .collect();
        for plan in plans {
            let shared = Arc::new(DeviceShared {
                status: Mutex::new(DeviceStatus {
                    name: plan.name.clone(),
                    sources: plan.tracks.iter().map(|t| t.source.clone()).collect(),
                    state: DeviceState::Starting,
                    restarts: 0,
                    last_error: None,
                }),
                pipeline: Mutex::new(None),
                first_raw: AtomicU64::new(u64::MAX),
                streams: plan.anchors.iter().map(|_| StreamWatch::default()).collect(),
                network: plan.network.is_some(),
                offered: Mutex::new(Vec::new()),
                jitterbuffers: Mutex::new(Vec::new()),
                has_video: plan.tracks.iter().any(|t| t.kind == crate::config::SourceKind::Video),
                paused: Mutex::new(None),
            });
            if shared.has_video {
                *shared.paused.lock() = params.video_paused.clone();
            }
            let (c, d) = (ctx.clone(), shared.clone());
            let name = format!("device-{}", plan.name);
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || supervisor::run_device(plan, c, d))
                    .expect("spawn device thread"),
            );
            devices.push(shared);
        }

        let deadline = clocks.monotonic() + params.start_timeout;
        while clocks.monotonic() < deadline {
            let waiting = devices.iter().filter(|d| !d.network).any(|d| {
                d.first_raw.load(Ordering::SeqCst) == u64::MAX && d.status.lock().state == DeviceState::Starting
            });
            if !waiting {
                break;
            }
            clocks.sleep(Duration::from_millis(10));
        }
        // Recording starts at one instant for all: after every local device has delivered, and a
        // little in the future, so that the gate is open before any buffer stamped at or
        // after it arrives (a live buffer arrives after its timestamp). Each source then
        // begins with its first buffer at or after t0: within one frame of the others.
        let first = devices
            .iter()
            .filter(|d| !d.network)
            .map(|d| d.first_raw.load(Ordering::SeqCst))
            .filter(|t| *t != u64::MAX)
            .max();
        let t0_raw = first.unwrap_or(0).max(clock.raw_now()) + START_MARGIN.as_nanos() as u64;
        let t0 = MediaTime(t0_raw + clock.offset.0);
        let _ = events.send(CaptureEvent::Started { t0, sources, keyframe_sources });
        ctx.gate.store(t0_raw, Ordering::SeqCst);
        Ok(CaptureRun { ctx, devices, threads, _syncer: syncer, t0, stopped: false })
    }

    pub fn t0(&self) -> MediaTime {
        self.t0
    }

    pub fn now(&self) -> MediaTime {
        self.ctx.clock.now()
    }

    /// Signal health of every source that has delivered data.
    pub fn health(&self) -> Vec<SourceHealth> {
        self.ctx.health.snapshot()
    }

    /// The latest thumbnail of a camera, encoded as a JPEG by the calling thread.
    pub fn thumbnail(&self, source: &str) -> Option<Vec<u8>> {
        self.ctx.health.thumbnail(source)
    }

    pub fn devices(&self) -> Vec<DeviceStatus> {
        self.devices.iter().map(|d| d.status.lock().clone()).collect()
    }

    /// Pauses every camera (each finalizes its open segment first) with `reason`, or lets
    /// them record again (`None`). Microphones are never paused.
    pub fn set_video_paused(&self, reason: Option<String>) {
        for d in self.devices.iter().filter(|d| d.has_video) {
            *d.paused.lock() = reason.clone();
        }
    }

    /// Makes a device's pipeline fail as a broken device would (tests and drills only).
    #[cfg(feature = "fault-injection")]
    pub fn inject_failure(&self, device: &str) -> bool {
        for d in &self.devices {
            if d.status.lock().name == device
                && let Some(p) = d.pipeline.lock().as_ref()
            {
                use gst::prelude::*;
                let msg =
                    gst::message::Error::builder(gst::CoreError::Failed, "fault injected for a test").src(p).build();
                return p.post_message(msg).is_ok();
            }
        }
        false
    }

    /// Stops every device: each finalizes its open segment (EOS) before its thread ends.
    /// Returns the media time at which the stop was requested.
    pub fn stop(mut self) -> MediaTime {
        self.shutdown()
    }

    fn shutdown(&mut self) -> MediaTime {
        let at = self.ctx.clock.now();
        if !self.stopped {
            self.stopped = true;
            self.ctx.stop.cancel();
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
            self.ctx.splitter.stop();
        }
        at
    }
}

impl Drop for CaptureRun {
    fn drop(&mut self) {
        self.shutdown();
    }
}
