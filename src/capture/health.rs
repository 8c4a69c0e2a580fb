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

/// Measures what passes `pad` (a device's raw output, after the recording gate).
pub fn attach_probe(pad: &gst::Pad, plan: &super::DevicePlan, board: std::sync::Arc<HealthBoard>) {
    use gst::prelude::*;
    use gst_video::prelude::VideoFrameExt;
    let video = plan.tracks.iter().find(|t| t.kind == crate::config::SourceKind::Video).map(|t| t.source.clone());
    // Interleaved channel index (from 0) → microphone.
    let mics: Vec<(usize, String)> =
        plan.tracks.iter().filter_map(|t| t.channel.map(|c| (c as usize - 1, t.source.clone()))).collect();
    let frames = std::sync::atomic::AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else { return gst::PadProbeReturn::Ok };
        let Some(caps) = pad.current_caps() else { return gst::PadProbeReturn::Ok };
        if let Some(source) = &video {
            if let (Some(pts), Some(fps)) =
                (buffer.pts(), caps.structure(0).and_then(|s| s.get::<gst::Fraction>("framerate").ok()))
                && fps.numer() > 0
            {
                let frame_ns = 1_000_000_000u64 * fps.denom() as u64 / fps.numer() as u64;
                board.video_timestamp(source, pts.nseconds(), frame_ns);
            }
            // A few samples a second are plenty to see black or frozen pictures; a
            // thumbnail every 64 frames (about 2 s) is plenty for the panel.
            let n = frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if !n.is_multiple_of(8) {
                return gst::PadProbeReturn::Ok;
            }
            if let Ok(vinfo) = gst_video::VideoInfo::from_caps(&caps)
                && let Ok(frame) = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &vinfo)
                && let Ok(plane) = frame.plane_data(0)
            {
                let stride = frame.plane_stride()[0] as usize;
                board.video_frame(source, plane, vinfo.width() as usize, vinfo.height() as usize, stride);
                if n.is_multiple_of(64)
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
