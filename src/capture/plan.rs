//! Turns a hardware profile into device plans: one GStreamer launch description per
//! device, and the tracks (segment streams) it feeds.

use super::CaptureError;
use super::sim_audio::{Programme, SimAudio, SpeechSchedule};
use super::template::Templates;
use crate::config::{
    AudioDevice, AudioEncoder, AudioSourceKind, Camera, CameraSource, HwProfile, InputFormat, NetworkProtocol,
    NetworkSource, NetworkVideoCodec, RtspTransport, SourceKind, VideoEncoder,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct TrackPlan {
    pub source: String,
    pub kind: SourceKind,
    /// Audio: the device's input channel (from 1) this microphone is on.
    pub channel: Option<u32>,
}

/// One device: a pipeline of its own, so that its failure touches no other device.
#[derive(Debug, Clone)]
pub struct DevicePlan {
    pub name: String,
    pub description: String,
    pub tracks: Vec<TrackPlan>,
    pub sim_audio: Option<SimAudio>,
    /// Where recording is gated and media time is shifted: one per stream of the device.
    pub anchors: Vec<AnchorPlan>,
    /// What a network source needs that the description must not hold.
    pub network: Option<NetworkPlan>,
}

/// An identity element in the description through which one stream of the device passes
/// before it is split into tracks.
#[derive(Debug, Clone)]
pub struct AnchorPlan {
    pub element: String,
    /// The tracks this stream feeds (the health probe measures them).
    pub sources: Vec<String>,
    /// Compressed video passed through as the source sent it: recording may only begin on
    /// a keyframe (a segment that starts with a delta frame cannot be decoded).
    pub starts_on_keyframe: bool,
    /// Where the health probe sees this stream's raw data, if not at the anchor (a
    /// passed-through picture is seen decoded, keyframes only). `None`: at the anchor.
    pub health_element: Option<String>,
}

impl AnchorPlan {
    fn raw(element: &str, tracks: &[TrackPlan]) -> AnchorPlan {
        AnchorPlan {
            element: element.to_string(),
            sources: tracks.iter().map(|t| t.source.clone()).collect(),
            starts_on_keyframe: false,
            health_element: None,
        }
    }
}

/// Settings of a network source's receiving element (`NETWORK_SOURCE`), set on it after
/// the description is parsed: the URL has characters the launch syntax would need escaped,
/// and secrets are read from their files at every connection and never enter a string that
/// could be logged.
#[derive(Debug, Clone)]
pub struct NetworkPlan {
    pub protocol: NetworkProtocol,
    pub url: String,
    pub secret_file: Option<PathBuf>,
    pub transport: RtspTransport,
    /// No data for this long is an outage.
    pub stall: Duration,
    /// What the source is expected to send, for the message when it sends something else.
    pub video_codec: Option<NetworkVideoCodec>,
    /// An SRT listener: it waits for its sender to dial in, however long that takes.
    pub waits_for_sender: bool,
}

/// Elements every device description contains, looked up by name after parsing.
pub const ANCHOR: &str = "anchor";
/// A network source's receiving element (rtspsrc, srtsrc, rtmp2src).
pub const NETWORK_SOURCE: &str = "netsrc";
/// A network source's demultiplexer (tsdemux, flvdemux), whose streams appear at run time.
pub const NETWORK_DEMUX: &str = "netdemux";
pub fn out_element(source: &str) -> String {
    format!("out_{source}")
}

/// The speech tap of a microphone: 16 kHz mono float samples into this appsink.
pub fn stt_element(source: &str) -> String {
    format!("stt_{source}")
}

/// `stt_taps`: give every microphone a tap for speech to text.
pub fn plan_devices(
    profile: &HwProfile,
    templates: &Templates,
    sim_audio_dir: &Path,
    stt_taps: bool,
) -> Result<Vec<DevicePlan>, CaptureError> {
    let mut plans = Vec::new();
    for cam in &profile.cameras {
        plans.push(plan_camera(cam, profile, templates)?);
    }
    let schedule = SpeechSchedule::for_profile(profile, sim_audio_dir);
    for dev in &profile.audio_devices {
        plans.push(plan_audio(dev, profile, templates, &schedule, stt_taps)?);
    }
    for source in &profile.network_sources {
        plans.push(plan_network(source, profile, templates, stt_taps)?);
    }
    Ok(plans)
}

fn video_encoder(profile: &HwProfile, fps: u32, templates: &Templates) -> Result<String, CaptureError> {
    let v = &profile.video;
    let name = match v.encoder {
        VideoEncoder::X264 => "encode-x264",
        VideoEncoder::Openh264 => "encode-openh264",
    };
    let frames = (u64::from(fps) * u64::from(v.keyframe_interval_ms) / 1000).max(1);
    templates.render(
        name,
        &[
            ("bitrate_kbps", v.bitrate_kbps.to_string()),
            ("bitrate_bps", (u64::from(v.bitrate_kbps) * 1000).to_string()),
            ("keyframe_frames", frames.to_string()),
        ],
    )
}

fn audio_encoder(profile: &HwProfile, templates: &Templates) -> Result<String, CaptureError> {
    let name = match profile.audio.encoder {
        AudioEncoder::Opus => "encode-opus",
        AudioEncoder::Aac => "encode-aac",
    };
    templates.render(name, &[("bitrate_bps", (u64::from(profile.audio.bitrate_kbps) * 1000).to_string())])
}

/// The queue in front of an encoder may drop old raw frames rather than block the source:
/// capture never waits. Two seconds absorb a scheduling hiccup on a loaded box.
const RAW_QUEUE: &str = "max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000";

fn plan_camera(cam: &Camera, profile: &HwProfile, templates: &Templates) -> Result<DevicePlan, CaptureError> {
    let (template, mut vars) = match cam.source {
        CameraSource::Sim => (
            "camera-sim",
            vec![
                ("label", cam.label.clone().unwrap_or_else(|| cam.name.clone())),
                ("font_size", (cam.height / 24).max(8).to_string()),
                (
                    "pattern",
                    if cam.sim_pattern == Some(crate::config::SimPattern::Black) { "black" } else { "smpte" }
                        .to_string(),
                ),
            ],
        ),
        CameraSource::V4l2 => (
            match cam.input_format.unwrap_or(InputFormat::Mjpeg) {
                InputFormat::Raw => "camera-v4l2-raw",
                InputFormat::Mjpeg => "camera-v4l2-mjpeg",
            },
            vec![("device", cam.device.clone().unwrap_or_default())],
        ),
    };
    vars.extend([("width", cam.width.to_string()), ("height", cam.height.to_string()), ("fps", cam.fps.to_string())]);
    let source = templates.render(template, &vars)?;
    let encoder = video_encoder(profile, cam.fps, templates)?;
    let tracks = vec![TrackPlan { source: cam.name.clone(), kind: SourceKind::Video, channel: None }];
    Ok(DevicePlan {
        name: cam.name.clone(),
        description: format!(
            "{source} ! identity name={ANCHOR} silent=true ! queue name=rawq_{n} leaky=downstream {RAW_QUEUE} ! {encoder} ! identity name={out} silent=true",
            n = cam.name,
            out = out_element(&cam.name)
        ),
        anchors: vec![AnchorPlan::raw(ANCHOR, &tracks)],
        tracks,
        sim_audio: None,
        network: None,
    })
}

fn plan_audio(
    dev: &AudioDevice,
    profile: &HwProfile,
    templates: &Templates,
    schedule: &SpeechSchedule,
    stt_taps: bool,
) -> Result<DevicePlan, CaptureError> {
    let base = [("rate", dev.sample_rate.to_string()), ("channels", dev.channels.to_string())];
    let source = match dev.source {
        AudioSourceKind::Sim => templates.render("audio-sim", &base)?,
        AudioSourceKind::Alsa => {
            let mut vars = base.to_vec();
            vars.push(("device", dev.device.clone().unwrap_or_default()));
            templates.render("audio-alsa", &vars)?
        }
        AudioSourceKind::Pulse => {
            let mut vars = base.to_vec();
            vars.push(("device_property", dev.device.as_ref().map(|d| format!("device={d}")).unwrap_or_default()));
            templates.render("audio-pulse", &vars)?
        }
    };
    let encoder = audio_encoder(profile, templates)?;
    let mut desc = format!("{source} ! identity name={ANCHOR} silent=true");
    let mic_branch = |name: &str| mic_branch(name, &encoder, stt_taps);
    if dev.channels == 1 {
        desc.push_str(&format!(" ! {}", mic_branch(&dev.mics[0].name)));
    } else {
        // deinterleave's pads appear at run time; parse-launch links them when they do.
        // Channels without a microphone go to a fakesink so they are never "not linked".
        desc.push_str(" ! audioconvert ! deinterleave name=split");
        for ch in 1..=dev.channels {
            let branch = match dev.mics.iter().find(|m| m.channel == ch) {
                Some(mic) => mic_branch(&mic.name),
                None => "fakesink sync=false async=false".to_string(),
            };
            desc.push_str(&format!(" split.src_{} ! {branch}", ch - 1));
        }
    }
    let sim_audio = (dev.source == AudioSourceKind::Sim).then(|| SimAudio {
        rate: dev.sample_rate,
        channels: dev.channels,
        programmes: (1..=dev.channels)
            .map(|ch| match dev.mics.iter().find(|m| m.channel == ch) {
                Some(mic) if mic.sim_disconnected => Programme::Silence,
                Some(mic) => schedule.programme(mic, dev.sample_rate),
                None => Programme::Silence,
            })
            .collect(),
    });
    let tracks: Vec<TrackPlan> = dev
        .mics
        .iter()
        .map(|m| TrackPlan { source: m.name.clone(), kind: SourceKind::Audio, channel: Some(m.channel) })
        .collect();
    Ok(DevicePlan {
        name: dev.name.clone(),
        description: desc,
        anchors: vec![AnchorPlan::raw(ANCHOR, &tracks)],
        tracks,
        sim_audio,
        network: None,
    })
}

/// One microphone's branch from raw audio: the recording's encoder and, with `stt_taps`,
/// the speech tap.
fn mic_branch(name: &str, encoder: &str, stt_taps: bool) -> String {
    let record = format!(
        "queue name=q_{name} leaky=downstream {RAW_QUEUE} ! {encoder} ! identity name={} silent=true",
        out_element(name)
    );
    if !stt_taps {
        return record;
    }
    // The speech tap leaks and drops rather than ever holding back the recording.
    format!(
        "tee name=t_{name} ! {record} t_{name}. ! queue name=sttq_{name} leaky=downstream {RAW_QUEUE} \
         ! audioconvert ! audioresample ! audio/x-raw,format=F32LE,rate=16000,channels=1 \
         ! appsink name={} sync=false max-buffers=200 drop=true",
        stt_element(name)
    )
}

/// The anchor of a network source's sound (its picture uses `ANCHOR`).
pub const AUDIO_ANCHOR: &str = "anchor_audio";

/// The element whose output the health probe sees for a passed-through picture.
pub fn health_element(source: &str) -> String {
    format!("health_{source}")
}

/// A network source: its receiving element, then its picture passed through (depayloaded
/// and parsed, never re-encoded) and its sound decoded and encoded like a microphone's.
///
/// The passed-through picture also feeds a health branch that decodes keyframes only, at a
/// fraction of the cost of decoding every frame: enough for black, frozen and a thumbnail.
/// Its queue leaks, so a slow decoder never holds back the recording.
fn plan_network(
    source: &NetworkSource,
    profile: &HwProfile,
    templates: &Templates,
    stt_taps: bool,
) -> Result<DevicePlan, CaptureError> {
    // The receiving element's (or demultiplexer's) pads appear per stream once the sender
    // has described them; the launch syntax links each to the branch whose caps it fits.
    let (receive, from) = match source.protocol {
        NetworkProtocol::Rtsp => (format!("rtspsrc name={NETWORK_SOURCE} latency=200"), NETWORK_SOURCE),
        // SRT's latency is how long it may wait for a lost packet to be sent again: 125 ms
        // by default, too short for a loaded box or a long link (frames then arrive torn).
        NetworkProtocol::Srt => {
            (format!("srtsrc name={NETWORK_SOURCE} latency=500 ! queue ! tsdemux name={NETWORK_DEMUX}"), NETWORK_DEMUX)
        }
        NetworkProtocol::Rtmp => {
            (format!("rtmp2src name={NETWORK_SOURCE} ! queue ! flvdemux name={NETWORK_DEMUX}"), NETWORK_DEMUX)
        }
    };
    let mut desc = receive;
    let mut tracks = Vec::new();
    let mut anchors = Vec::new();
    if let Some(video) = source.video.as_ref().filter(|v| v.transcode_fps.is_none()) {
        // Length-prefixed access units (avc/hvc1), as Matroska stores them, with the
        // parameter sets repeated at every keyframe (config-interval=-1): each segment
        // file opens with what a decoder needs.
        let (caps_name, stream_format, depay, parse, decode) = match video.codec {
            NetworkVideoCodec::H264 => ("video/x-h264", "avc", "rtph264depay", "h264parse", "avdec_h264"),
            NetworkVideoCodec::H265 => ("video/x-h265", "hvc1", "rtph265depay", "h265parse", "avdec_h265"),
        };
        // Each stream of the source links by its kind: RTP video (RTSP) or the codec's own
        // caps (out of a demultiplexer). A stream of another codec then fails in the
        // depayloader or finds nothing to link to: `supervisor` names what was sent.
        let (filter, depay) = match source.protocol {
            NetworkProtocol::Rtsp => ("application/x-rtp,media=video".to_string(), format!("{depay} ! ")),
            NetworkProtocol::Srt | NetworkProtocol::Rtmp => (caps_name.to_string(), String::new()),
        };
        let n = &video.name;
        desc.push_str(&format!(
            " {from}. ! {filter} ! queue name=netvq_{n} ! {depay}{parse} config-interval=-1 \
             ! {caps_name},stream-format={stream_format},alignment=au ! identity name={ANCHOR} silent=true \
             ! tee name=vt_{n} ! queue name=recq_{n} {RAW_QUEUE} ! identity name={out} silent=true \
             vt_{n}. ! identity drop-buffer-flags=delta-unit \
             ! queue name=healthq_{n} leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 \
             ! {decode} max-threads=1 ! videoconvert ! videoscale add-borders=true \
             ! video/x-raw,format=I420,width=320,height=180 ! identity name={health} silent=true \
             ! fakesink sync=false async=false",
            out = out_element(n),
            health = health_element(n),
        ));
        tracks.push(TrackPlan { source: n.clone(), kind: SourceKind::Video, channel: None });
        anchors.push(AnchorPlan {
            element: ANCHOR.to_string(),
            sources: vec![n.clone()],
            starts_on_keyframe: true,
            health_element: Some(health_element(n)),
        });
    }
    if let Some((video, fps)) = source.video.as_ref().and_then(|v| Some((v, v.transcode_fps?))) {
        // Re-encoded: from the decoder on, the picture is a local camera's (a raw anchor,
        // segments cut at the shared boundaries, the profile's encoder and GOP).
        let n = &video.name;
        let encoder = video_encoder(profile, fps, templates)?;
        let rtp = "application/x-rtp,media=video";
        desc.push_str(&format!(
            " {from}. ! {rtp} ! queue name=netvq_{n} ! decodebin ! videoconvert ! videorate \
             ! video/x-raw,format=I420,framerate={fps}/1 ! identity name={ANCHOR} silent=true \
             ! queue name=rawq_{n} leaky=downstream {RAW_QUEUE} ! {encoder} ! identity name={out} silent=true",
            out = out_element(n),
        ));
        let track = TrackPlan { source: n.clone(), kind: SourceKind::Video, channel: None };
        anchors.push(AnchorPlan::raw(ANCHOR, std::slice::from_ref(&track)));
        tracks.push(track);
    }
    if let Some(audio) = &source.audio {
        let n = &audio.name;
        // Decoded to the box's sample rate, mono: one speaker, one track, as for a room
        // microphone. RTSP: any codec decodebin knows; SRT and RTMP: MPEG audio (AAC, what
        // gateways send, or MP3) only, so far.
        let filter = match source.protocol {
            NetworkProtocol::Rtsp => "application/x-rtp,media=audio",
            NetworkProtocol::Srt | NetworkProtocol::Rtmp => "audio/mpeg",
        };
        let encoder = audio_encoder(profile, templates)?;
        desc.push_str(&format!(
            " {from}. ! {filter} ! queue name=netaq_{n} ! decodebin ! audioconvert ! audioresample \
             ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! identity name={AUDIO_ANCHOR} silent=true ! {}",
            mic_branch(n, &encoder, stt_taps)
        ));
        let track = TrackPlan { source: n.clone(), kind: SourceKind::Audio, channel: Some(1) };
        anchors.push(AnchorPlan::raw(AUDIO_ANCHOR, std::slice::from_ref(&track)));
        tracks.push(track);
    }
    Ok(DevicePlan {
        name: source.name.clone(),
        description: desc,
        tracks,
        sim_audio: None,
        anchors,
        network: Some(NetworkPlan {
            protocol: source.protocol,
            url: source.url.clone(),
            secret_file: source.credentials_file.clone().or_else(|| source.passphrase_file.clone()),
            transport: source.transport,
            stall: Duration::from_millis(u64::from(source.stall_ms)),
            // A re-encoded picture may come in any codec the box decodes.
            video_codec: source.video.as_ref().filter(|v| v.transcode_fps.is_none()).map(|v| v.codec),
            waits_for_sender: source.protocol == NetworkProtocol::Srt && crate::config::srt_listens(&source.url),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst::prelude::*;

    #[test]
    fn network_sources_plan_pipelines_that_parse_and_hold_no_secret() {
        gst::init().unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("hw-profiles/ip-room.toml");
        let profile = crate::config::load_profile(&path).unwrap();
        let plans = plan_devices(&profile, &Templates::default(), Path::new("/nonexistent"), true).unwrap();
        let remote = plans.iter().find(|p| p.name == "remote").unwrap();
        assert_eq!(remote.anchors.iter().map(|a| a.starts_on_keyframe).collect::<Vec<_>>(), [true, false]);
        assert_eq!(remote.network.as_ref().unwrap().protocol, NetworkProtocol::Srt);
        // The MJPEG camera is re-encoded: a raw anchor, any codec accepted.
        let gallery = plans.iter().find(|p| p.name == "cam-gallery").unwrap();
        assert_eq!(gallery.anchors.iter().map(|a| a.starts_on_keyframe).collect::<Vec<_>>(), [false]);
        assert_eq!(gallery.network.as_ref().unwrap().video_codec, None);
        assert!(gallery.description.contains("x264enc") && gallery.description.contains("framerate=15/1"));
        for plan in plans.iter().filter(|p| p.network.is_some()) {
            assert!(!plan.description.contains("://"), "{}: the URL is set as a property", plan.name);
            assert!(!plan.description.contains("secrets"), "{}", plan.name);
            let pipeline = gst::parse::launch(&plan.description).unwrap_or_else(|e| panic!("{}: {e}", plan.name));
            let pipeline = pipeline.downcast::<gst::Pipeline>().unwrap();
            for anchor in &plan.anchors {
                assert!(pipeline.by_name(&anchor.element).is_some(), "{}: {}", plan.name, anchor.element);
            }
            for track in &plan.tracks {
                assert!(pipeline.by_name(&out_element(&track.source)).is_some(), "{}", track.source);
            }
        }
    }
}
