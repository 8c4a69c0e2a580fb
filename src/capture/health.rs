//! Signal health of every source, measured on the raw data as it is recorded: the audio
//! level of each microphone, and whether a camera's picture is black or frozen. Cheap: a
//! camera is sampled at a few hundred pixels a few times a second.

use crate::base::Clocks;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Below this RMS level a microphone input carries no signal at all (unplugged, muted at
/// the interface): a live microphone in a quiet room reads well above it.
pub const SILENT_DBFS: f64 = -75.0;
/// Mean luma (0-255) below which a picture is black (video black is 16).
pub const BLACK_LUMA: f64 = 24.0;
/// A picture unchanged this long is frozen.
pub const FROZEN_AFTER: Duration = Duration::from_secs(2);
/// Audio level is measured over windows this long.
const LEVEL_WINDOW: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SourceHealth {
    pub source: String,
    /// Video frames or audio buffers seen.
    pub buffers: u64,
    /// Audio: RMS level of the last window, dBFS (-inf reported as -150).
    pub level_dbfs: Option<f64>,
    /// Video: mean luma of the last sampled frame.
    pub mean_luma: Option<f64>,
    pub black: bool,
    pub frozen: bool,
    pub silent: bool,
    /// Seconds the current problem (black, frozen, silent) has lasted.
    pub problem_seconds: Option<u64>,
    /// When the current problem began (RFC 3339).
    pub problem_since: Option<String>,
    /// Set once the problem has lasted past its alarm threshold.
    pub alarm: Option<String>,
    /// Video frames missing between timestamps (the source or the system dropped them).
    pub dropped_frames: u64,
    /// A picture recorded as its network source sends it: what it sends and how steadily.
    pub stream: Option<StreamHealth>,
}

/// A passed-through picture as it arrives from the network.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct StreamHealth {
    /// What the stream's parameters say, e.g. `H.264 High 1920x1080 25 fps`.
    pub format: String,
    /// Received over the last window of about two seconds.
    pub bitrate_kbps: Option<f64>,
    /// Between the last two keyframes (the GOP), in media time.
    pub keyframe_interval_ms: Option<u64>,
    /// Since the last frame arrived, when this was read.
    pub last_frame_age_ms: u64,
    /// RTP packets that never arrived, this connection (RTSP; over TCP there are none).
    pub packets_lost: Option<u64>,
    /// Share of packets lost over the last window of about two seconds, percent.
    pub loss_percent: Option<f64>,
    /// Mean interarrival jitter, ms.
    pub jitter_ms: Option<f64>,
}

/// Packet loss at which a network picture is in trouble: artefacts in every GOP.
const LOSSY_PERCENT: f64 = 5.0;
/// Received bytes are counted over windows this long.
const BITRATE_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct StreamState {
    /// RTP counters at the start of the current loss window, and when it started.
    loss_window: Option<(super::network::RtpCounters, Duration)>,
    last_keyframe_pts: Option<u64>,
    last_frame_at: Option<Duration>,
    window_start: Option<Duration>,
    window_bytes: u64,
}

/// How long a problem lasts before it is an alarm: a microphone may rightly be quiet for a
/// while, a black or frozen picture is wrong almost at once.
#[derive(Debug, Clone, Copy)]
pub struct AlarmAfter {
    pub silent: Duration,
    pub picture: Duration,
}

impl Default for AlarmAfter {
    fn default() -> Self {
        AlarmAfter { silent: Duration::from_secs(120), picture: Duration::from_secs(10) }
    }
}

#[derive(Debug, Default)]
struct State {
    health: SourceHealth,
    /// Monotonic times (`Clocks::monotonic`).
    problem_since: Option<Duration>,
    last_pts: Option<u64>,
    last_signature: Option<u64>,
    unchanged_since: Option<Duration>,
    sum_squares: f64,
    samples: u64,
    window_start: Option<Duration>,
    stream: StreamState,
}

/// The health of every source of a run, written by pad probes, read by status and check.
/// Its time comes from `Clocks`, so thresholds are tested on simulated time.
pub struct HealthBoard {
    sources: Mutex<HashMap<String, State>>,
    alarm_after: AlarmAfter,
    clocks: Arc<dyn Clocks>,
    /// The latest scaled-down frame of every camera.
    thumbnails: Mutex<HashMap<String, Arc<super::thumbnail::Small>>>,
}

impl HealthBoard {
    pub fn new(alarm_after: AlarmAfter, clocks: Arc<dyn Clocks>) -> HealthBoard {
        HealthBoard { sources: Mutex::default(), alarm_after, clocks, thumbnails: Mutex::default() }
    }

    /// The latest thumbnail of a camera as a JPEG, encoded now (by the caller's thread).
    pub fn thumbnail(&self, source: &str) -> Option<Vec<u8>> {
        let small = self.thumbnails.lock().get(source).cloned()?;
        super::thumbnail::encode(&small)
    }

    fn set_thumbnail(&self, source: &str, small: super::thumbnail::Small) {
        self.thumbnails.lock().insert(source.to_string(), Arc::new(small));
    }

    pub fn snapshot(&self) -> Vec<SourceHealth> {
        let sources = self.sources.lock();
        let now = self.clocks.monotonic();
        let mut out: Vec<SourceHealth> = sources
            .values()
            .map(|s| {
                let mut h = s.health.clone();
                h.problem_seconds = s.problem_since.map(|t| now.saturating_sub(t).as_secs());
                if let (Some(stream), Some(at)) = (h.stream.as_mut(), s.stream.last_frame_at) {
                    stream.last_frame_age_ms = now.saturating_sub(at).as_millis() as u64;
                }
                h
            })
            .collect();
        out.sort_by(|a, b| a.source.cmp(&b.source));
        out
    }

    fn with(&self, source: &str, f: impl FnOnce(&mut State, Duration)) {
        let now = self.clocks.monotonic();
        let mut sources = self.sources.lock();
        let state = sources.entry(source.to_string()).or_insert_with(|| State {
            health: SourceHealth { source: source.to_string(), ..Default::default() },
            ..Default::default()
        });
        f(state, now);
        let h = &mut state.health;
        let problem = if h.black {
            Some(("picture is black", self.alarm_after.picture))
        } else if h.frozen {
            Some(("picture is frozen", self.alarm_after.picture))
        } else if h.silent {
            Some(("no signal from the microphone", self.alarm_after.silent))
        } else if h.stream.as_ref().and_then(|s| s.loss_percent).is_some_and(|p| p >= LOSSY_PERCENT) {
            Some(("the network link loses more than 5 % of packets", self.alarm_after.picture))
        } else {
            None
        };
        match (problem, state.problem_since) {
            (Some(_), None) => {
                state.problem_since = Some(now);
                h.problem_since = Some(self.clocks.wall().to_rfc3339());
            }
            (Some((what, after)), Some(since)) if h.alarm.is_none() && now.saturating_sub(since) >= after => {
                let message = format!("{what} since {}", h.problem_since.as_deref().unwrap_or("?"));
                tracing::warn!(source = %source, "ALARM: {message}");
                h.alarm = Some(message);
            }
            (None, Some(since)) => {
                if h.alarm.take().is_some() {
                    tracing::info!(source = %source, after_s = now.saturating_sub(since).as_secs(), "signal is back; alarm cleared");
                }
                state.problem_since = None;
                h.problem_since = None;
            }
            _ => {}
        }
    }

    /// A video frame's timestamp: a jump of more than one and a half frame durations means
    /// frames went missing.
    pub fn video_timestamp(&self, source: &str, pts: u64, frame_ns: u64) {
        self.with(source, |s, _| {
            if let Some(last) = s.last_pts
                && frame_ns > 0
                && pts > last + frame_ns * 3 / 2
            {
                s.health.dropped_frames += (pts - last + frame_ns / 2) / frame_ns - 1;
            }
            s.last_pts = Some(pts);
        });
    }

    /// A compressed frame of a passed-through picture: its size, whether it is a keyframe,
    /// its timestamp (ns) and what the stream's caps describe.
    pub fn stream_frame(&self, source: &str, bytes: usize, keyframe: bool, pts: Option<u64>, format: &str) {
        self.with(source, |s, now| {
            let health = s.health.stream.get_or_insert_with(StreamHealth::default);
            if health.format != format {
                health.format = format.to_string();
            }
            let st = &mut s.stream;
            st.last_frame_at = Some(now);
            if keyframe && let Some(pts) = pts {
                if let Some(last) = st.last_keyframe_pts.filter(|last| pts > *last) {
                    health.keyframe_interval_ms = Some((pts - last) / 1_000_000);
                }
                st.last_keyframe_pts = Some(pts);
            }
            st.window_bytes += bytes as u64;
            let start = *st.window_start.get_or_insert(now);
            let elapsed = now.saturating_sub(start);
            if elapsed >= BITRATE_WINDOW {
                health.bitrate_kbps = Some(st.window_bytes as f64 * 8.0 / 1000.0 / elapsed.as_secs_f64());
                st.window_bytes = 0;
                st.window_start = Some(now);
            }
        });
    }

    /// The RTP counters of a network source's connection (read about every 100 ms): loss
    /// over windows of `BITRATE_WINDOW`, and jitter. Counters that go back mean a new
    /// connection, which starts a new window.
    pub fn rtp_counters(&self, source: &str, counters: super::network::RtpCounters) {
        self.with(source, |s, now| {
            let health = s.health.stream.get_or_insert_with(StreamHealth::default);
            health.packets_lost = Some(counters.lost);
            health.jitter_ms = Some(counters.jitter_ns as f64 / 1e6);
            match s.stream.loss_window {
                Some((start, _)) if counters.lost < start.lost || counters.pushed < start.pushed => {
                    s.stream.loss_window = Some((counters, now));
                }
                Some((start, since)) if now.saturating_sub(since) >= BITRATE_WINDOW => {
                    let lost = counters.lost - start.lost;
                    let total = lost + (counters.pushed - start.pushed);
                    if total > 0 {
                        health.loss_percent = Some(lost as f64 * 100.0 / total as f64);
                    }
                    s.stream.loss_window = Some((counters, now));
                }
                Some(_) => {}
                None => s.stream.loss_window = Some((counters, now)),
            }
        });
    }

    /// A video frame (I420/NV12: the first plane is luma).
    pub fn video_frame(&self, source: &str, luma: &[u8], width: usize, height: usize, stride: usize) {
        let Some((mean, signature)) = luma_stats(luma, width, height, stride) else { return };
        self.with(source, |s, now| {
            s.health.buffers += 1;
            s.health.mean_luma = Some(mean);
            s.health.black = mean < BLACK_LUMA;
            if s.last_signature == Some(signature) {
                let since = *s.unchanged_since.get_or_insert(now);
                s.health.frozen = now.saturating_sub(since) >= FROZEN_AFTER;
            } else {
                s.unchanged_since = None;
                s.health.frozen = false;
            }
            s.last_signature = Some(signature);
        });
    }

    /// Audio samples of one microphone, as floats in [-1, 1].
    pub fn audio(&self, source: &str, samples: impl Iterator<Item = f64>) {
        self.with(source, |s, now| {
            s.health.buffers += 1;
            for v in samples {
                s.sum_squares += v * v;
                s.samples += 1;
            }
            let start = *s.window_start.get_or_insert(now);
            if now.saturating_sub(start) >= LEVEL_WINDOW && s.samples > 0 {
                let level = dbfs(s.sum_squares / s.samples as f64);
                s.health.level_dbfs = Some(level);
                s.health.silent = level < SILENT_DBFS;
                s.sum_squares = 0.0;
                s.samples = 0;
                s.window_start = Some(now);
            }
        });
    }
}

/// How often the health probe looks at a picture.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    /// One frame in this many is measured (black, frozen).
    pub measure_every: u64,
    /// One frame in this many becomes the thumbnail.
    pub thumbnail_every: u64,
    /// Whether every frame passes, so that a jump in timestamps means frames were lost.
    pub counts_drops: bool,
}

impl Sampling {
    /// Every raw frame passes the probe: a few samples a second are plenty to see black or
    /// frozen pictures, and a thumbnail every 64 frames (about 2 s) is plenty for the panel.
    pub const EVERY_FRAME: Sampling = Sampling { measure_every: 8, thumbnail_every: 64, counts_drops: true };
    /// Only decoded keyframes pass (about one a second): each is measured, and every
    /// second one is the thumbnail.
    pub const KEYFRAMES: Sampling = Sampling { measure_every: 1, thumbnail_every: 2, counts_drops: false };
}

/// Measures what passes `pad` (raw data of `tracks`, after the recording gate).
pub fn attach_probe(
    pad: &gst::Pad,
    tracks: Vec<super::TrackPlan>,
    sampling: Sampling,
    board: std::sync::Arc<HealthBoard>,
) {
    use gst::prelude::*;
    use gst_video::prelude::VideoFrameExt;
    let video = tracks.iter().find(|t| t.kind == crate::config::SourceKind::Video).map(|t| t.source.clone());
    // Interleaved channel index (from 0) → microphone.
    let mics: Vec<(usize, String)> =
        tracks.iter().filter_map(|t| t.channel.map(|c| (c as usize - 1, t.source.clone()))).collect();
    let frames = std::sync::atomic::AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else { return gst::PadProbeReturn::Ok };
        let Some(caps) = pad.current_caps() else { return gst::PadProbeReturn::Ok };
        if let Some(source) = &video {
            if sampling.counts_drops
                && let (Some(pts), Some(fps)) =
                    (buffer.pts(), caps.structure(0).and_then(|s| s.get::<gst::Fraction>("framerate").ok()))
                && fps.numer() > 0
            {
                let frame_ns = 1_000_000_000u64 * fps.denom() as u64 / fps.numer() as u64;
                board.video_timestamp(source, pts.nseconds(), frame_ns);
            }
            // A few samples a second are plenty to see black or frozen pictures; a
            // thumbnail every 64 frames (about 2 s) is plenty for the panel.
            let n = frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if !n.is_multiple_of(sampling.measure_every) {
                return gst::PadProbeReturn::Ok;
            }
            if let Ok(vinfo) = gst_video::VideoInfo::from_caps(&caps)
                && let Ok(frame) = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &vinfo)
                && let Ok(plane) = frame.plane_data(0)
            {
                let stride = frame.plane_stride()[0] as usize;
                board.video_frame(source, plane, vinfo.width() as usize, vinfo.height() as usize, stride);
                if n.is_multiple_of(sampling.thumbnail_every)
                    && vinfo.format() == gst_video::VideoFormat::I420
                    && let (Ok(u), Ok(v)) = (frame.plane_data(1), frame.plane_data(2))
                {
                    let strides = frame.plane_stride();
                    let i420 = super::thumbnail::I420 {
                        width: vinfo.width() as usize,
                        height: vinfo.height() as usize,
                        planes: [plane, u, v],
                        strides: [strides[0] as usize, strides[1] as usize, strides[2] as usize],
                    };
                    if let Some(small) = super::thumbnail::downscale(&i420) {
                        board.set_thumbnail(source, small);
                    }
                }
            }
        } else if let Some(s) = caps.structure(0)
            && let (Ok(format), Ok(channels)) = (s.get::<&str>("format"), s.get::<i32>("channels"))
            && let Ok(map) = buffer.map_readable()
        {
            let channels = channels.max(1) as usize;
            let (width, decode): (usize, fn(&[u8]) -> f64) = match format {
                "S16LE" => (2, |b| f64::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0),
                "S32LE" => (4, |b| f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])) / 2_147_483_648.0),
                "F32LE" => (4, |b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
                _ => return gst::PadProbeReturn::Ok,
            };
            let frame_bytes = width * channels;
            for (channel, source) in &mics {
                let samples = map.chunks_exact(frame_bytes).map(|f| decode(&f[channel * width..(channel + 1) * width]));
                board.audio(source, samples);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// Measures a passed-through picture as it is recorded (after the gate): bitrate, GOP, the
/// age of the last frame, and the format its caps describe.
pub fn attach_stream_probe(pad: &gst::Pad, source: String, board: std::sync::Arc<HealthBoard>) {
    use gst::prelude::*;
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else { return gst::PadProbeReturn::Ok };
        let format = pad.current_caps().map(|caps| describe_stream(&caps)).unwrap_or_default();
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        board.stream_frame(&source, buffer.size(), keyframe, buffer.pts().map(|p| p.nseconds()), &format);
        gst::PadProbeReturn::Ok
    });
}

/// `H.264 High 1920x1080 25 fps` from parsed H.264/H.265 caps; what is unknown is left out.
pub fn describe_stream(caps: &gst::CapsRef) -> String {
    let Some(s) = caps.structure(0) else { return String::new() };
    let codec = match s.name().as_str() {
        "video/x-h264" => "H.264",
        "video/x-h265" => "H.265",
        other => other,
    };
    let mut parts = vec![codec.to_string()];
    if let Ok(profile) = s.get::<&str>("profile") {
        // Caps say `constrained-baseline`; people (and ffprobe) say `Constrained Baseline`.
        let words = profile.split('-').map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
        });
        parts.push(words.collect::<Vec<_>>().join(" "));
    }
    if let (Ok(w), Ok(h)) = (s.get::<i32>("width"), s.get::<i32>("height")) {
        parts.push(format!("{w}x{h}"));
    }
    if let Ok(fps) = s.get::<gst::Fraction>("framerate")
        && fps.numer() > 0
        && fps.denom() > 0
    {
        let rate = format!("{:.2}", f64::from(fps.numer()) / f64::from(fps.denom()));
        parts.push(format!("{} fps", rate.trim_end_matches('0').trim_end_matches('.')));
    }
    parts.join(" ")
}

/// Mean square → dBFS, floored at -150.
pub fn dbfs(mean_square: f64) -> f64 {
    if mean_square <= 0.0 { -150.0 } else { (10.0 * mean_square.log10()).max(-150.0) }
}

/// Mean luma and a signature of a 16×16 grid of luma samples (same signature = same picture).
pub fn luma_stats(luma: &[u8], width: usize, height: usize, stride: usize) -> Option<(f64, u64)> {
    if width == 0 || height == 0 || luma.len() < stride * (height - 1) + width {
        return None;
    }
    let mut sum = 0u64;
    let mut signature = 0xcbf2_9ce4_8422_2325u64;
    for gy in 0..16 {
        for gx in 0..16 {
            let y = (gy * 2 + 1) * height / 32;
            let x = (gx * 2 + 1) * width / 32;
            let v = luma[y * stride + x];
            sum += u64::from(v);
            signature = (signature ^ u64::from(v)).wrapping_mul(0x100_0000_01b3);
        }
    }
    Some((sum as f64 / 256.0, signature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::{SimulatedClocks, WallTime};

    fn board(alarm_after: AlarmAfter) -> (HealthBoard, Arc<SimulatedClocks>) {
        let clocks = Arc::new(SimulatedClocks::new(WallTime::from_unix_nanos(1_700_000_000_000_000_000)));
        (HealthBoard::new(alarm_after, clocks.clone()), clocks)
    }

    #[test]
    fn black_and_frozen_pictures() {
        let (board, _) = board(AlarmAfter::default());
        let black = vec![16u8; 64 * 48];
        board.video_frame("cam", &black, 64, 48, 64);
        let h = &board.snapshot()[0];
        assert!(h.black && !h.frozen);
        let mut moving = vec![128u8; 64 * 48];
        for frame in 0..3u8 {
            moving[(frame as usize) * 64 * 8 + 8] = frame.wrapping_mul(50);
            board.video_frame("cam", &moving, 64, 48, 64);
        }
        let h = &board.snapshot()[0];
        assert!(!h.black && !h.frozen && h.problem_seconds.is_none(), "{h:?}");
        assert_eq!(luma_stats(&[0; 10], 64, 48, 64), None);
    }

    #[test]
    fn a_stream_is_described_as_people_say_it() {
        gst::init().unwrap();
        let caps = gst::Caps::builder("video/x-h264")
            .field("profile", "constrained-baseline")
            .field("width", 1920)
            .field("height", 1080)
            .field("framerate", gst::Fraction::new(30000, 1001))
            .build();
        assert_eq!(describe_stream(&caps), "H.264 Constrained Baseline 1920x1080 29.97 fps");
        let caps = gst::Caps::builder("video/x-h265").field("framerate", gst::Fraction::new(0, 1)).build();
        assert_eq!(describe_stream(&caps), "H.265");
    }

    #[test]
    fn a_passed_through_stream_reports_its_bitrate_gop_and_last_frame_age() {
        let (board, clocks) = board(AlarmAfter::default());
        let frame = Duration::from_millis(40);
        // 3 s of 25 fps, a keyframe every 25 frames, 5,000 bytes a frame (1,000 kbit/s).
        for n in 0..75u64 {
            let pts = n * frame.as_nanos() as u64;
            board.stream_frame("ipcam", 5_000, n % 25 == 0, Some(pts), "H.264 High 640x360 25 fps");
            clocks.advance(frame);
        }
        clocks.advance(Duration::from_millis(500));
        let h = &board.snapshot()[0];
        let stream = h.stream.as_ref().unwrap();
        assert_eq!(stream.format, "H.264 High 640x360 25 fps");
        assert_eq!(stream.keyframe_interval_ms, Some(1_000));
        let kbps = stream.bitrate_kbps.unwrap();
        assert!((kbps - 1_000.0).abs() < 30.0, "{kbps}");
        assert_eq!(stream.last_frame_age_ms, 540);

        // RTP counters: 5 lost of 100 over a window is 5 %; a new connection restarts.
        let counters = |pushed, lost| crate::capture::network::RtpCounters { pushed, lost, jitter_ns: 3_000_000 };
        board.rtp_counters("ipcam", counters(1_000, 10));
        clocks.advance(BITRATE_WINDOW);
        board.rtp_counters("ipcam", counters(1_095, 15));
        let stream = board.snapshot()[0].stream.clone().unwrap();
        assert_eq!((stream.packets_lost, stream.loss_percent, stream.jitter_ms), (Some(15), Some(5.0), Some(3.0)));
        board.rtp_counters("ipcam", counters(10, 0));
        clocks.advance(BITRATE_WINDOW);
        board.rtp_counters("ipcam", counters(110, 0));
        assert_eq!(board.snapshot()[0].stream.as_ref().unwrap().loss_percent, Some(0.0));
    }

    #[test]
    fn problems_become_alarms_after_their_threshold_and_clear() {
        let (board, _) = board(AlarmAfter { silent: Duration::from_millis(300), picture: Duration::ZERO });
        let black = vec![16u8; 64 * 48];
        board.video_frame("cam", &black, 64, 48, 64);
        board.video_frame("cam", &black, 64, 48, 64);
        let h = &board.snapshot()[0];
        assert!(h.alarm.as_deref().is_some_and(|a| a.starts_with("picture is black since ")), "{h:?}");
        board.video_frame("cam", &vec![128u8; 64 * 48], 64, 48, 64);
        let h = &board.snapshot()[0];
        assert!(h.alarm.is_none() && h.problem_since.is_none(), "{h:?}");
        // 30 fps: a 5-frame jump is 4 frames dropped.
        board.video_timestamp("cam", 0, 33_333_333);
        board.video_timestamp("cam", 33_333_333, 33_333_333);
        board.video_timestamp("cam", 200_000_000, 33_333_333);
        assert_eq!(board.snapshot()[0].dropped_frames, 4);
    }

    #[test]
    fn silent_and_live_microphones() {
        assert_eq!(dbfs(0.0), -150.0);
        assert!((dbfs(0.5) - -3.01).abs() < 0.01);
        let (board, clocks) = board(AlarmAfter::default());
        board.audio("mic", std::iter::repeat_n(0.0, 100));
        clocks.advance(LEVEL_WINDOW);
        board.audio("mic", std::iter::repeat_n(0.0, 100));
        assert!(board.snapshot()[0].silent);
        clocks.advance(LEVEL_WINDOW);
        board.audio("mic", (0..1000).map(|i| if i % 2 == 0 { 0.01 } else { -0.01 }));
        let h = &board.snapshot()[0];
        assert!(!h.silent && (h.level_dbfs.unwrap() - -40.0).abs() < 0.5, "{h:?}");
    }

    #[test]
    fn a_frozen_picture_and_a_silent_microphone_alarm_only_after_their_thresholds() {
        let (board, clocks) = board(AlarmAfter::default());
        let still = vec![128u8; 64 * 48];
        let frame = Duration::from_millis(33);
        let mut t = Duration::ZERO;
        while t < FROZEN_AFTER + AlarmAfter::default().picture - frame {
            board.video_frame("cam", &still, 64, 48, 64);
            clocks.advance(frame);
            t += frame;
        }
        assert!(board.snapshot()[0].frozen, "frozen after {FROZEN_AFTER:?} of the same picture");
        assert!(board.snapshot()[0].alarm.is_none(), "not yet an alarm");
        clocks.advance(Duration::from_millis(100));
        board.video_frame("cam", &still, 64, 48, 64);
        let h = &board.snapshot()[0];
        assert!(h.alarm.as_deref().is_some_and(|a| a.starts_with("picture is frozen since ")), "{h:?}");
        assert_eq!(h.problem_seconds, Some(10));

        // A microphone may rightly be quiet for a while: two minutes before an alarm.
        let mut quiet = Duration::ZERO;
        while quiet < Duration::from_secs(119) {
            board.audio("mic", std::iter::repeat_n(0.0, 100));
            clocks.advance(LEVEL_WINDOW);
            quiet += LEVEL_WINDOW;
        }
        let mic = |b: &HealthBoard| b.snapshot().into_iter().find(|h| h.source == "mic").unwrap();
        assert!(mic(&board).silent && mic(&board).alarm.is_none(), "{:?}", mic(&board));
        clocks.advance(Duration::from_secs(2));
        board.audio("mic", std::iter::repeat_n(0.0, 100));
        assert!(mic(&board).alarm.is_some(), "silent for over two minutes");
        clocks.advance(LEVEL_WINDOW);
        board.audio("mic", (0..1000).map(|i| if i % 2 == 0 { 0.01 } else { -0.01 }));
        assert!(mic(&board).alarm.is_none(), "cleared when the signal is back");
    }
}
