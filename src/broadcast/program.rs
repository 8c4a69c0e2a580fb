//! The programme pipeline: the delayed encoded buffers of every source come in through
//! appsrcs and are decoded (a camera off air at its keyframes only: `decode_choice`); one frame per
//! period goes to the encoder: the camera on air at that frame's time, or the slate while
//! blanked. The microphones are mixed (or silenced,
//! while blanked), and one H.264 + AAC programme comes out of two appsinks for the outputs. Nothing here is connected to the recording's
//! pipelines: they only ever see a tap that never waits.

use super::Shared;
use super::decode_choice::{Decode, DecodeChoice};
use crate::base::MediaTime;
use crate::config::NetworkVideoCodec;
use gst::prelude::*;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;

/// Why the programme (or its slate) could not be built. Each is a fault of the installation
/// or of this code, not of a source.
#[derive(Debug, Error)]
pub enum ProgramError {
    #[error("the {what} pipeline does not parse: {source}")]
    Unparsable { what: &'static str, source: gst::glib::Error },
    #[error("the {0} pipeline is a single element")]
    SingleElement(&'static str),
    #[error("no element {0} in the broadcast pipeline")]
    MissingElement(String),
    #[error("{0} is not an appsink")]
    NotAnAppSink(String),
    #[error("{0} is not an appsrc")]
    NotAnAppSrc(&'static str),
    #[error("identity has no src pad")]
    NoSrcPad,
    #[error("no textoverlay")]
    NoTextOverlay,
    #[error("the slate pipeline has no appsink")]
    NoSlateSink,
    #[error("the slate could not be drawn: {0}")]
    SlateRefused(gst::StateChangeError),
    #[error("the slate could not be drawn")]
    SlateEmpty,
}

/// What the programme is made of.
#[derive(Debug, Clone)]
pub struct ProgramSpec {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub video_kbps: u32,
    pub audio_kbps: u32,
    pub cameras: Vec<ProgramCamera>,
    pub mics: Vec<String>,
}

/// A camera the programme can show, and how its recorded picture is coded.
#[derive(Debug, Clone)]
pub struct ProgramCamera {
    pub name: String,
    pub codec: NetworkVideoCodec,
}

/// Frames of one camera that went to its decoder, and those kept from it (`decode_choice`); they
/// outlive a programme that is rebuilt.
#[derive(Debug, Default)]
pub struct DecodeCounts {
    pub decoded: AtomicU64,
    pub skipped: AtomicU64,
}

/// Shown while the broadcast is blanked and before the first delayed picture arrives.
const SLATE_TEXT: &str = "Трансляция уақытша тоқтатылды\nТрансляция приостановлена\nBroadcast paused";
const SAMPLE_RATE: u64 = 48_000;

/// Decoded frames of one camera waiting for their time on air.
type Frames = Arc<Mutex<VecDeque<gst::Buffer>>>;

/// Where a source's delayed buffers go.
enum Input {
    Camera { index: usize, appsrc: gst_app::AppSrc },
    Microphone(gst_app::AppSrc),
}

pub struct Program {
    pub pipeline: gst::Pipeline,
    inputs: HashMap<String, Input>,
    cameras: Vec<Frames>,
    choice: DecodeChoice,
    slate: gst::Buffer,
    picture: gst_app::AppSrc,
    /// The next programme frame to send to the encoder.
    next_frame: u64,
    frame_ns: u64,
    pub video_out: gst_app::AppSink,
    pub audio_out: gst_app::AppSink,
}

fn camera_input(name: &str) -> String {
    format!("cam_{name}")
}
fn mic_input(name: &str) -> String {
    format!("mic_{name}")
}

/// Decoded frames kept per camera (at 30 fps, two seconds).
const FRAMES_KEPT: usize = 60;
/// A camera whose newest frame is older than this is not shown (the slate is).
const STALE_FRAME: u64 = 1_000_000_000;

fn describe(spec: &ProgramSpec) -> String {
    let (w, h, fps) = (spec.width, spec.height, spec.fps);
    let raw = format!("video/x-raw,format=I420,width={w},height={h},framerate={fps}/1,pixel-aspect-ratio=1/1");
    // Cameras keep their own frame rate: the programme takes the frame on air at its own.
    let scaled = format!("video/x-raw,format=I420,width={w},height={h},pixel-aspect-ratio=1/1");
    let audio = format!("audio/x-raw,format=F32LE,layout=interleaved,rate={SAMPLE_RATE},channels=2");
    let queue = "queue max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000";
    // The mixer counts every pad (no ignore-inactive-pads): in GStreamer 1.22 a mixer whose
    // pads are all still inactive at its first timeout (the silence not started yet, the
    // microphones not due before the delay has passed) ends its stream, and the broadcast
    // would go out without sound. Being live, it fills a pad that is late at each timeout.
    let mut d = format!(
        "appsrc name=picture format=time is-live=true do-timestamp=false caps={raw} ! queue \
         ! x264enc speed-preset=ultrafast tune=zerolatency bitrate={vk} key-int-max={gop} \
         ! video/x-h264,profile=constrained-baseline ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=video_out sync=false async=false \
         audiomixer name=amix latency=100000000 ! {audio} ! identity name=blank_audio silent=true \
         ! audioconvert ! avenc_aac bitrate={ab} ! aacparse ! appsink name=audio_out sync=false async=false \
         audiotestsrc is-live=true wave=silence ! {audio} ! queue ! amix. ",
        vk = spec.video_kbps,
        gop = 2 * fps,
        ab = u64::from(spec.audio_kbps) * 1000,
    );
    let appsrc = "format=time is-live=true do-timestamp=false min-latency=0 max-latency=2000000000";
    for (i, cam) in spec.cameras.iter().enumerate() {
        // The caps are replaced by the recorded stream's own at its first buffer.
        let (caps, parse, decode) = match cam.codec {
            NetworkVideoCodec::H264 => {
                ("video/x-h264,stream-format=byte-stream,alignment=au", "h264parse", "avdec_h264")
            }
            NetworkVideoCodec::H265 => ("video/x-h265", "h265parse", "avdec_h265"),
        };
        d.push_str(&format!(
            "appsrc name={src} {appsrc} caps={caps} ! {parse} \
             ! {decode} max-threads=2 ! videoconvert ! videoscale add-borders=true ! {scaled} \
             ! appsink name=frames_{i} sync=false async=false ",
            src = camera_input(&cam.name),
        ));
    }
    for (i, mic) in spec.mics.iter().enumerate() {
        d.push_str(&format!(
            "appsrc name={src} {appsrc} caps=audio/x-opus,channel-mapping-family=0 ! opusdec plc=true ! audioconvert \
             ! audioresample ! audio/x-raw,format=F32LE,rate={SAMPLE_RATE},channels=1 ! identity name=level_{i} silent=true \
             ! audioconvert ! {audio} ! {queue} ! amix. ",
            src = mic_input(mic),
        ));
    }
    d
}

/// The slate as one raw frame: black with the notice in three languages.
fn render_slate(spec: &ProgramSpec) -> Result<gst::Buffer, ProgramError> {
    let (w, h) = (spec.width, spec.height);
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 pattern=black ! video/x-raw,format=I420,width={w},height={h} \
         ! textoverlay name=text valignment=center halignment=center line-alignment=center font-desc=\"Sans {font}\" \
         ! appsink name=slate",
        font = (h / 24).max(8),
    ))
    .map_err(|source| ProgramError::Unparsable { what: "slate", source })?
    .downcast::<gst::Pipeline>()
    .map_err(|_| ProgramError::SingleElement("slate"))?;
    pipeline.by_name("text").ok_or(ProgramError::NoTextOverlay)?.set_property("text", SLATE_TEXT);
    let sink = pipeline
        .by_name("slate")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or(ProgramError::NoSlateSink)?;
    pipeline.set_state(gst::State::Paused).map_err(ProgramError::SlateRefused)?;
    let sample = sink.pull_preroll();
    let _ = pipeline.set_state(gst::State::Null);
    sample.ok().and_then(|s| s.buffer_owned()).ok_or(ProgramError::SlateEmpty)
}

impl Program {
    pub fn build(spec: &ProgramSpec, shared: &Arc<Shared>) -> Result<Program, ProgramError> {
        assert_eq!(spec.cameras.len(), shared.decoding.len(), "one count per camera");
        let pipeline = gst::parse::launch(&describe(spec))
            .map_err(|source| ProgramError::Unparsable { what: "broadcast", source })?
            .downcast::<gst::Pipeline>()
            .map_err(|_| ProgramError::SingleElement("broadcast"))?;
        let by_name = |n: &str| pipeline.by_name(n).ok_or_else(|| ProgramError::MissingElement(n.to_string()));
        let appsink =
            |n: &str| by_name(n)?.downcast::<gst_app::AppSink>().map_err(|_| ProgramError::NotAnAppSink(n.to_string()));

        let mut cameras = Vec::new();
        for i in 0..spec.cameras.len() {
            let frames: Frames = Arc::default();
            let keep = frames.clone();
            let s = shared.clone();
            appsink(&format!("frames_{i}"))?.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        s.decoding[i].decoded.fetch_add(1, Ordering::Relaxed);
                        if let Some(buffer) = sample.buffer_owned() {
                            let mut frames = keep.lock();
                            if frames.len() >= FRAMES_KEPT {
                                frames.pop_front();
                            }
                            frames.push_back(buffer);
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
            cameras.push(frames);
        }

        let s = shared.clone();
        by_name("blank_audio")?.static_pad("src").ok_or(ProgramError::NoSrcPad)?.add_probe(
            gst::PadProbeType::BUFFER,
            move |_, info| {
                if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
                    silence_blanked(buffer, &s);
                }
                gst::PadProbeReturn::Ok
            },
        );
        for i in 0..spec.mics.len() {
            let s = shared.clone();
            by_name(&format!("level_{i}"))?.static_pad("src").ok_or(ProgramError::NoSrcPad)?.add_probe(
                gst::PadProbeType::BUFFER,
                move |_, info| {
                    if let Some(gst::PadProbeData::Buffer(buffer)) = &info.data
                        && let Some(media) = buffer.pts().and_then(|p| s.media_at(p.nseconds()))
                        && let Ok(map) = buffer.map_readable()
                    {
                        s.director.lock().observe(i, media, rms_dbfs(map.as_slice()));
                    }
                    gst::PadProbeReturn::Ok
                },
            );
        }

        let appsrc =
            |n: &str| by_name(n)?.downcast::<gst_app::AppSrc>().map_err(|_| ProgramError::NotAnAppSrc("input"));
        let mut inputs = HashMap::new();
        for (index, camera) in spec.cameras.iter().enumerate() {
            inputs.insert(camera.name.clone(), Input::Camera { index, appsrc: appsrc(&camera_input(&camera.name))? });
        }
        for mic in &spec.mics {
            inputs.insert(mic.clone(), Input::Microphone(appsrc(&mic_input(mic))?));
        }
        let picture = by_name("picture")?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| ProgramError::NotAnAppSrc("the picture input"))?;
        Ok(Program {
            video_out: appsink("video_out")?,
            audio_out: appsink("audio_out")?,
            slate: render_slate(spec)?,
            pipeline,
            inputs,
            choice: DecodeChoice::new(cameras.len(), shared.director.lock().latest()),
            cameras,
            picture,
            next_frame: 0,
            frame_ns: 1_000_000_000 / u64::from(spec.fps),
        })
    }

    /// Running time of the next programme frame.
    pub fn next_frame_at(&self) -> u64 {
        self.next_frame * self.frame_ns
    }

    /// Sends the encoder every programme frame due by running time `now`: the newest
    /// decoded frame of the camera on air at that frame's time, or the slate.
    pub fn emit_frames(&mut self, shared: &Shared, now: u64) {
        // After a stall, skip ahead rather than send a burst of old frames.
        if now.saturating_sub(self.next_frame_at()) > STALE_FRAME {
            self.next_frame = now / self.frame_ns;
        }
        while self.next_frame_at() <= now {
            let t = self.next_frame_at();
            let shown = shared.visible(t).map(|m| self.choice.camera_at(m));
            let frame = shown.and_then(|camera| newest_at(&self.cameras[camera], t));
            let mut buffer = frame.unwrap_or_else(|| self.slate.clone()).copy();
            {
                let b = buffer.make_mut();
                b.set_pts(gst::ClockTime::from_nseconds(t));
                b.set_dts(gst::ClockTime::NONE);
                b.set_duration(gst::ClockTime::from_nseconds(self.frame_ns));
            }
            let _ = self.picture.push_buffer(buffer);
            self.next_frame += 1;
        }
    }

    /// Feeds one delayed buffer of `source`, recorded at `media`, to be shown at `running`
    /// time; a camera's frame only if it is to be decoded.
    pub fn push(
        &mut self,
        shared: &Shared,
        source: &str,
        buffer: &gst::Buffer,
        caps: &gst::Caps,
        media: MediaTime,
        running: u64,
    ) {
        match self.inputs.get(source) {
            Some(Input::Camera { index, appsrc }) => {
                let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
                match self.choice.decide(*index, media, keyframe, shared.wanted(media)) {
                    Decode::Frame => push_at(appsrc, buffer, caps, running),
                    Decode::Skip => {
                        shared.decoding[*index].skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Some(Input::Microphone(appsrc)) => push_at(appsrc, buffer, caps, running),
            None => {}
        }
    }
}

/// Pushes a (shallow) copy of `buffer` stamped at `running`, setting the appsrc's caps when
/// they change. Never blocks: an appsrc queue that is full keeps growing or drops by its
/// own settings, never the caller.
pub(super) fn push_at(appsrc: &gst_app::AppSrc, buffer: &gst::BufferRef, caps: &gst::CapsRef, running: u64) {
    if appsrc.caps().as_deref() != Some(caps) {
        appsrc.set_caps(Some(&caps.to_owned()));
    }
    let mut buffer = buffer.copy();
    {
        let b = buffer.make_mut();
        b.set_pts(gst::ClockTime::from_nseconds(running));
        b.set_dts(gst::ClockTime::from_nseconds(running));
    }
    let _ = appsrc.push_buffer(buffer);
}

/// The newest frame of a camera shown at or before `t` (none if it is stale), dropping
/// the frames older than it.
fn newest_at(frames: &Frames, t: u64) -> Option<gst::Buffer> {
    let mut frames = frames.lock();
    while frames.len() > 1 && frames[1].pts().is_some_and(|p| p.nseconds() <= t) {
        frames.pop_front();
    }
    let front = frames.front()?;
    let pts = front.pts()?.nseconds();
    (pts <= t && t - pts < STALE_FRAME).then(|| front.clone())
}

/// Zeroes every sample of the mixed programme sound that was recorded in a blanked stretch.
fn silence_blanked(buffer: &mut gst::Buffer, shared: &Shared) {
    let Some(pts) = buffer.pts() else { return };
    let frame_bytes = 2 * 4;
    let frames = buffer.size() / frame_bytes;
    let Some(start) = shared.media_at(pts.nseconds()) else {
        buffer.make_mut().map_writable().map(|mut m| m.as_mut_slice().fill(0)).ok();
        return;
    };
    let end = MediaTime(start.0 + frames as u64 * 1_000_000_000 / SAMPLE_RATE);
    let parts = shared.blanking.lock().within(start, end);
    if parts.is_empty() {
        return;
    }
    let Ok(mut map) = buffer.make_mut().map_writable() else { return };
    let data = map.as_mut_slice();
    let frame_at = |t: MediaTime| ((t.0 - start.0) * SAMPLE_RATE).div_ceil(1_000_000_000) as usize;
    for (s, e) in parts {
        let (a, b) = (frame_at(s).min(frames), frame_at(e).min(frames));
        data[a * frame_bytes..b * frame_bytes].fill(0);
    }
}

/// RMS level of 32-bit float samples in dBFS (−100 for digital silence).
pub fn rms_dbfs(bytes: &[u8]) -> f32 {
    let samples = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let (sum, n) = samples.fold((0f64, 0usize), |(s, n), x| (s + f64::from(x) * f64::from(x), n + 1));
    if n == 0 || sum == 0.0 { -100.0 } else { (10.0 * (sum / n as f64).log10()).max(-100.0) as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_in_dbfs() {
        let full: Vec<u8> = [1.0f32, -1.0].iter().cycle().take(100).flat_map(|x| x.to_le_bytes()).collect();
        assert!((rms_dbfs(&full) - 0.0).abs() < 0.01);
        let tenth: Vec<u8> = [0.1f32, -0.1].iter().cycle().take(100).flat_map(|x| x.to_le_bytes()).collect();
        assert!((rms_dbfs(&tenth) + 20.0).abs() < 0.01);
        assert_eq!(rms_dbfs(&[0u8; 64]), -100.0);
    }
}
