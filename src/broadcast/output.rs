//! One output of the programme (RTMP push, SRT caller, local HLS): a pipeline of its own fed
//! from the programme's encoders, and a thread that keeps it connected. A server that goes
//! away is retried with back-off; meanwhile the programme (and the recording) go on and
//! the output's packets are simply not sent.

use crate::base::{Clocks, ExponentialRetry, Supervision};
use crate::config::OutputKind;
use gst::prelude::*;
use parking_lot::Mutex;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// Why a connection of an output ended. The text goes into status, after the secret is
/// taken out of it.
#[derive(Debug, Error)]
pub enum OutputError {
    #[error("output pipeline does not parse: {0}")]
    Unparsable(gst::glib::Error),
    #[error("output pipeline is a single element")]
    SingleElement,
    #[error("output has no sink")]
    NoSink,
    #[error("output has no appsrc {0}")]
    NoAppSrc(&'static str),
    #[error("output pipeline has no bus")]
    NoBus,
    #[error("hls output without dir")]
    NoHlsDir,
    #[error("{}: {source}", path.display())]
    HlsDir { path: PathBuf, source: std::io::Error },
    /// GStreamer's own words for the failure.
    #[error("{0}")]
    Pipeline(String),
    #[error("the server ended the stream")]
    ServerEnded,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputState {
    Connecting,
    Live,
    Retrying,
    Stopped,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
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

/// The appsrcs of a connected output, and where its stream starts.
struct Feed {
    video: gst_app::AppSrc,
    audio: gst_app::AppSrc,
    /// The clock time of the keyframe this connection started on: every packet is stamped
    /// relative to it, so each connection's stream starts at zero.
    start: Option<u64>,
}

impl Feed {
    fn push(&self, appsrc: &gst_app::AppSrc, sample: &gst::Sample, at: u64) {
        let (Some(buffer), Some(caps), Some(start)) = (sample.buffer(), sample.caps(), self.start) else { return };
        // Audio from before the first keyframe has nothing to go with: dropped.
        let Some(at) = at.checked_sub(start) else { return };
        super::program::push_at(appsrc, buffer, caps, at);
    }
}

pub struct Output {
    target: OutputTarget,
    status: Mutex<OutputStatus>,
    feed: Mutex<Option<Feed>>,
    /// Bytes that reached the sink (for HLS: the muxer's input), over every connection.
    sent: Arc<AtomicU64>,
    /// Cancelled when the broadcast stops.
    stop: CancellationToken,
    clocks: Arc<dyn Clocks>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Connected and sending for this long without an error counts as live.
const LIVE_AFTER: Duration = Duration::from_millis(500);

impl Output {
    /// Starts connecting at once; reconnects after failures as `retry` says.
    pub fn start(target: OutputTarget, retry: ExponentialRetry, clocks: Arc<dyn Clocks>) -> Arc<Output> {
        let output = Arc::new(Output {
            status: Mutex::new(OutputStatus {
                name: target.name.clone(),
                kind: target.kind,
                state: OutputState::Connecting,
                attempts: 0,
                last_error: None,
                since: clocks.wall().to_rfc3339(),
                sent_bytes: 0,
            }),
            target,
            feed: Mutex::new(None),
            sent: Arc::new(AtomicU64::new(0)),
            stop: CancellationToken::new(),
            clocks,
            thread: Mutex::new(None),
        });
        let o = output.clone();
        let handle = std::thread::Builder::new()
            .name(format!("broadcast-{}", output.target.name))
            .spawn(move || o.supervise(Supervision::new(retry)))
            .expect("spawn output thread");
        *output.thread.lock() = Some(handle);
        output
    }

    pub fn status(&self) -> OutputStatus {
        let mut s = self.status.lock().clone();
        s.sent_bytes = self.sent.load(Ordering::Relaxed);
        s
    }

    fn set_state(&self, state: OutputState, error: Option<String>) {
        let mut s = self.status.lock();
        if s.state != state {
            s.since = self.clocks.wall().to_rfc3339();
        }
        s.state = state;
        if error.is_some() {
            s.last_error = error;
        }
    }

    /// Ends the output now: the connection is closed, nothing more is sent.
    pub fn stop(&self) {
        self.stop.cancel();
        self.feed.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }

    /// A programme video packet (H.264 byte-stream access unit) shown at clock time `at`
    /// (which, unlike the programme's running time, goes on across programme rebuilds).
    /// Never blocks.
    pub fn push_video(&self, sample: &gst::Sample, at: u64) {
        let mut guard = self.feed.lock();
        let Some(feed) = guard.as_mut() else { return };
        if feed.start.is_none() {
            // A viewer's decoder needs a keyframe (with its parameter sets) first.
            let keyframe = sample.buffer().is_some_and(|b| !b.flags().contains(gst::BufferFlags::DELTA_UNIT));
            feed.start = keyframe.then_some(at);
        }
        feed.push(&feed.video, sample, at);
    }

    /// A programme audio packet (AAC). Dropped until the video has started.
    pub fn push_audio(&self, sample: &gst::Sample, at: u64) {
        let guard = self.feed.lock();
        if let Some(feed) = guard.as_ref() {
            feed.push(&feed.audio, sample, at);
        }
    }

    fn supervise(self: Arc<Self>, mut supervision: Supervision<ExponentialRetry>) {
        while !self.stop.is_cancelled() {
            supervision.attempt(self.clocks.monotonic());
            self.status.lock().attempts = supervision.attempts();
            self.set_state(OutputState::Connecting, None);
            let result = self.run_once(&mut supervision);
            if self.stop.is_cancelled() {
                break;
            }
            let error = self.redact(result.err().map_or_else(|| "the output ended".into(), |e| e.to_string()));
            tracing::warn!(output = %self.target.name, error = %error, "broadcast output failed; retrying");
            self.set_state(OutputState::Retrying, Some(error));
            let delay = supervision.failed(self.clocks.monotonic());
            self.clocks.sleep_unless_cancelled(delay, &self.stop);
        }
        supervision.stop();
        self.set_state(OutputState::Stopped, None);
    }

    /// Connects and sends until the pipeline fails or the output is stopped.
    fn run_once(&self, supervision: &mut Supervision<ExponentialRetry>) -> Result<(), OutputError> {
        let pipeline = gst::parse::launch(&describe(self.target.kind))
            .map_err(OutputError::Unparsable)?
            .downcast::<gst::Pipeline>()
            .map_err(|_| OutputError::SingleElement)?;
        let result = self.configure(&pipeline).and_then(|_| self.send(&pipeline, supervision));
        self.feed.lock().take();
        let _ = pipeline.set_state(gst::State::Null);
        result
    }

    fn configure(&self, pipeline: &gst::Pipeline) -> Result<(), OutputError> {
        let sink = pipeline.by_name("sink").ok_or(OutputError::NoSink)?;
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
                let dir = t.dir.clone().ok_or(OutputError::NoHlsDir)?;
                std::fs::create_dir_all(&dir).map_err(|source| OutputError::HlsDir { path: dir.clone(), source })?;
                sink.set_property("location", dir.join("segment%05d.ts").to_string_lossy().to_string());
                sink.set_property("playlist-location", dir.join("index.m3u8").to_string_lossy().to_string());
            }
        }
        Ok(())
    }

    fn send(
        &self,
        pipeline: &gst::Pipeline,
        supervision: &mut Supervision<ExponentialRetry>,
    ) -> Result<(), OutputError> {
        let appsrc = |n: &'static str| {
            pipeline.by_name(n).and_then(|e| e.downcast::<gst_app::AppSrc>().ok()).ok_or(OutputError::NoAppSrc(n))
        };
        let (video, audio) = (appsrc("video")?, appsrc("audio")?);
        self.count_sent_bytes(pipeline)?;
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            return Err(OutputError::Pipeline(crate::capture::first_error(pipeline).unwrap_or_else(|| e.to_string())));
        }
        *self.feed.lock() = Some(Feed { video, audio, start: None });
        let bus = pipeline.bus().ok_or(OutputError::NoBus)?;
        let began = self.clocks.monotonic();
        let sent_before = self.sent.load(Ordering::Relaxed);
        loop {
            if self.stop.is_cancelled() {
                return Ok(());
            }
            let msg = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(100),
                &[gst::MessageType::Error, gst::MessageType::Eos],
            );
            match msg.as_ref().map(|m| m.view()) {
                Some(gst::MessageView::Error(e)) => {
                    return Err(OutputError::Pipeline(crate::capture::describe_error(e)));
                }
                Some(gst::MessageView::Eos(_)) => return Err(OutputError::ServerEnded),
                _ => {}
            }
            let live = self.status.lock().state == OutputState::Live;
            let connected_for = self.clocks.monotonic().saturating_sub(began);
            if !live && connected_for >= LIVE_AFTER && self.sent.load(Ordering::Relaxed) > sent_before {
                tracing::info!(output = %self.target.name, "broadcast output live");
                supervision.running(self.clocks.monotonic());
                self.set_state(OutputState::Live, None);
            }
        }
    }

    /// Counts the bytes that reach the sink, that is what the muxer actually put out: an
    /// output is live only once something leaves it, not when packets are queued for it.
    fn count_sent_bytes(&self, pipeline: &gst::Pipeline) -> Result<(), OutputError> {
        let sink = pipeline.by_name("sink").ok_or(OutputError::NoSink)?;
        for pad in sink.sink_pads() {
            let sent = self.sent.clone();
            // mpegtsmux with an alignment sends lists of packets.
            pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, info| {
                let bytes = match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => b.size(),
                    Some(gst::PadProbeData::BufferList(l)) => l.calculate_size(),
                    _ => 0,
                };
                sent.fetch_add(bytes as u64, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        }
        Ok(())
    }

    /// Errors from GStreamer may quote the location, which holds the stream key.
    fn redact(&self, text: String) -> String {
        match &self.target.secret {
            Some(s) if !s.is_empty() => text.replace(s.as_str(), "<secret>"),
            _ => text,
        }
    }
}

fn describe(kind: OutputKind) -> String {
    // Not live: the programme is already paced by the clock, so the muxers need no clock
    // of their own. They put out whatever both streams have, the sinks send it at once,
    // and a connection that starts late cannot misplace its stream in time.
    // A server that accepts but stalls: the oldest packets go once 8 MB wait (the picture
    // recovers at the next keyframe) rather than memory and delay growing without end.
    let appsrc = "format=time is-live=false do-timestamp=false max-bytes=8000000 block=false leaky-type=downstream";
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
