//! One output of the programme (RTMP push, SRT caller, local HLS): a pipeline of its own fed
//! from the programme's encoders, and a thread that keeps it connected. A server that goes
//! away is retried with back-off; meanwhile the programme (and the recording) go on and
//! the output's packets are simply not sent.

use crate::base::Backoff;
use crate::config::OutputKind;
use gst::prelude::*;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where an output sends the programme, with its secret (read when the broadcast starts).
#[derive(Clone)]
pub struct OutputTarget {
    pub name: String,
    pub kind: OutputKind,
    pub url: Option<String>,
    /// rtmp: the stream key; srt: the passphrase. Never logged or shown.
    pub secret: Option<String>,
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputState {
    Connecting,
    Live,
    Retrying,
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputStatus {
    pub name: String,
    pub kind: OutputKind,
    pub state: OutputState,
    /// Connections tried since the broadcast started.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When the current state began (RFC 3339).
    pub since: String,
    pub sent_bytes: u64,
}

/// The appsrcs of a connected output, and whether it has started on a keyframe yet.
struct Feed {
    video: gst_app::AppSrc,
    audio: gst_app::AppSrc,
    /// Set at the first keyframe: programme time plus this is the output's running time.
    offset: Option<i64>,
    pipeline: gst::Pipeline,
}

impl Feed {
    /// Places the stream on the output pipeline's running time from its first keyframe on,
    /// once the (live) pipeline has its base time.
    fn start(&mut self, pts: u64) -> bool {
        let Some(base) = self.pipeline.base_time() else { return false };
        let Some(clock) = self.pipeline.clock() else { return false };
        let running = clock.time().saturating_sub(base).nseconds();
        self.offset = Some(running as i64 - pts as i64);
        true
    }

    fn push(&self, appsrc: &gst_app::AppSrc, sample: &gst::Sample) {
        let (Some(buffer), Some(caps), Some(offset)) = (sample.buffer(), sample.caps(), self.offset) else { return };
        let Some(running) = programme_time(sample).and_then(|p| u64::try_from(p as i64 + offset).ok()) else { return };
        super::program::push_at(appsrc, &buffer.to_owned(), &caps.to_owned(), running);
    }
}

pub struct Output {
    target: OutputTarget,
    status: Mutex<OutputStatus>,
    feed: Mutex<Option<Feed>>,
    sent: AtomicU64,
    stopping: AtomicBool,
    wake: (Mutex<()>, Condvar),
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// An output that kept running this long is healthy: its next failure retries quickly.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// Connected and sending for this long without an error counts as live.
const LIVE_AFTER: Duration = Duration::from_millis(500);

impl Output {
    /// Starts connecting at once.
    pub fn start(target: OutputTarget, backoff: Backoff) -> Arc<Output> {
        let output = Arc::new(Output {
            status: Mutex::new(OutputStatus {
                name: target.name.clone(),
                kind: target.kind,
                state: OutputState::Connecting,
                attempts: 0,
                last_error: None,
                since: crate::base::WallTime::now().to_rfc3339(),
                sent_bytes: 0,
            }),
            target,
            feed: Mutex::new(None),
            sent: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            thread: Mutex::new(None),
        });
        let o = output.clone();
        let handle = std::thread::Builder::new()
            .name(format!("broadcast-{}", output.target.name))
            .spawn(move || o.supervise(backoff))
            .expect("spawn output thread");
        *output.thread.lock().unwrap() = Some(handle);
        output
    }

    pub fn status(&self) -> OutputStatus {
        let mut s = self.status.lock().unwrap().clone();
        s.sent_bytes = self.sent.load(Ordering::Relaxed);
        s
    }

    fn set_state(&self, state: OutputState, error: Option<String>) {
        let mut s = self.status.lock().unwrap();
        if s.state != state {
            s.since = crate::base::WallTime::now().to_rfc3339();
        }
        s.state = state;
        if error.is_some() {
            s.last_error = error;
        }
    }

    /// Ends the output now: the connection is closed, nothing more is sent.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.feed.lock().unwrap().take();
        self.wake.1.notify_all();
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }

    /// A programme video packet (H.264 byte-stream access unit). Never blocks.
    pub fn push_video(&self, sample: &gst::Sample) {
        let mut guard = self.feed.lock().unwrap();
        let Some(feed) = guard.as_mut() else { return };
        let Some(buffer) = sample.buffer() else { return };
        if feed.offset.is_none() {
            // A viewer's decoder needs a keyframe (with its parameter sets) first.
            let Some(pts) = programme_time(sample).filter(|_| !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT))
            else {
                return;
            };
            if !feed.start(pts) {
                return;
            }
        }
        self.sent.fetch_add(buffer.size() as u64, Ordering::Relaxed);
        feed.push(&feed.video, sample);
    }

    /// A programme audio packet (AAC). Dropped until the video has started.
    pub fn push_audio(&self, sample: &gst::Sample) {
        let mut guard = self.feed.lock().unwrap();
        let Some(feed) = guard.as_mut().filter(|f| f.offset.is_some()) else { return };
        if let Some(b) = sample.buffer() {
            self.sent.fetch_add(b.size() as u64, Ordering::Relaxed);
        }
        feed.push(&feed.audio, sample);
    }

    fn sleep_unless_stopping(&self, d: Duration) {
        let guard = self.wake.0.lock().unwrap();
        if !self.stopping.load(Ordering::SeqCst) {
            let _ = self.wake.1.wait_timeout(guard, d);
        }
    }

    fn supervise(self: Arc<Self>, mut backoff: Backoff) {
        while !self.stopping.load(Ordering::SeqCst) {
            self.status.lock().unwrap().attempts += 1;
            self.set_state(OutputState::Connecting, None);
            let began = Instant::now();
            let result = self.run_once();
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            let error = self.redact(result.err().unwrap_or_else(|| "the output ended".into()));
            tracing::warn!(output = %self.target.name, error = %error, "broadcast output failed; retrying");
            self.set_state(OutputState::Retrying, Some(error));
            if began.elapsed() >= HEALTHY_AFTER {
                backoff.reset();
            }
            self.sleep_unless_stopping(backoff.next_delay());
        }
        self.set_state(OutputState::Stopped, None);
    }

    /// Connects and sends until the pipeline fails or the output is stopped.
    fn run_once(&self) -> Result<(), String> {
        let pipeline = gst::parse::launch(&describe(self.target.kind))
            .map_err(|e| format!("output pipeline does not parse: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "output pipeline is a single element")?;
        let result = self.configure(&pipeline).and_then(|_| self.send(&pipeline));
        self.feed.lock().unwrap().take();
        let _ = pipeline.set_state(gst::State::Null);
        result
    }

    fn configure(&self, pipeline: &gst::Pipeline) -> Result<(), String> {
        let sink = pipeline.by_name("sink").ok_or("output has no sink")?;
        let t = &self.target;
        let url = t.url.clone().unwrap_or_default();
        match t.kind {
            OutputKind::Rtmp => {
                let location = match &t.secret {
                    Some(key) => format!("{}/{}", url.trim_end_matches('/'), key),
                    None => url,
                };
                sink.set_property("location", location);
            }
            OutputKind::Srt => {
                let sep = if url.contains('?') { '&' } else { '?' };
                let uri = if url.contains("mode=") { url } else { format!("{url}{sep}mode=caller") };
                sink.set_property_from_str("uri", &uri);
                if let Some(p) = &t.secret {
                    sink.set_property("passphrase", p);
                }
            }
            OutputKind::Hls => {
                let dir = t.dir.clone().ok_or("hls output without dir")?;
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                sink.set_property("location", dir.join("segment%05d.ts").to_string_lossy().to_string());
                sink.set_property("playlist-location", dir.join("index.m3u8").to_string_lossy().to_string());
            }
        }
        Ok(())
    }

    fn send(&self, pipeline: &gst::Pipeline) -> Result<(), String> {
        let appsrc = |n: &str| {
            pipeline
                .by_name(n)
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
                .ok_or_else(|| format!("output has no appsrc {n}"))
        };
        let (video, audio) = (appsrc("video")?, appsrc("audio")?);
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            return Err(crate::capture::first_error(pipeline).unwrap_or_else(|| e.to_string()));
        }
        *self.feed.lock().unwrap() = Some(Feed { video, audio, offset: None, pipeline: pipeline.clone() });
        let bus = pipeline.bus().ok_or("output pipeline has no bus")?;
        let began = Instant::now();
        let sent_before = self.sent.load(Ordering::Relaxed);
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
            let msg = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(100),
                &[gst::MessageType::Error, gst::MessageType::Eos],
            );
            match msg.as_ref().map(|m| m.view()) {
                Some(gst::MessageView::Error(e)) => return Err(crate::capture::describe_error(e)),
                Some(gst::MessageView::Eos(_)) => return Err("the server ended the stream".into()),
                _ => {}
            }
            let live = self.status.lock().unwrap().state == OutputState::Live;
            if !live && began.elapsed() >= LIVE_AFTER && self.sent.load(Ordering::Relaxed) > sent_before {
                tracing::info!(output = %self.target.name, "broadcast output live");
                self.set_state(OutputState::Live, None);
            }
        }
    }

    /// Errors from GStreamer may quote the location, which holds the stream key.
    fn redact(&self, text: String) -> String {
        match &self.target.secret {
            Some(s) if !s.is_empty() => text.replace(s.as_str(), "<secret>"),
            _ => text,
        }
    }
}

/// Running time of a programme packet (x264enc shifts timestamps by 1000 h in its segment).
fn programme_time(sample: &gst::Sample) -> Option<u64> {
    let pts = sample.buffer()?.pts()?;
    let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    Some(segment.to_running_time(pts)?.nseconds())
}

fn describe(kind: OutputKind) -> String {
    // Live: nothing waits for a preroll that only data can bring. The programme is already
    // paced by the clock, so the sinks send at once.
    let appsrc = "format=time is-live=true do-timestamp=false max-bytes=8000000 block=false";
    let (mux, sink, audio_pad) = match kind {
        OutputKind::Rtmp => ("flvmux name=mux streamable=true ! rtmp2sink name=sink sync=false", "mux.", "mux."),
        OutputKind::Srt => {
            ("mpegtsmux name=mux alignment=7 ! srtsink name=sink sync=false wait-for-connection=false", "mux.", "mux.")
        }
        OutputKind::Hls => {
            ("hlssink2 name=sink target-duration=2 max-files=30 playlist-length=15", "sink.video", "sink.audio")
        }
    };
    format!(
        "{mux} appsrc name=video {appsrc} ! h264parse ! queue ! {sink} appsrc name=audio {appsrc} ! aacparse ! queue ! {audio_pad}"
    )
}
