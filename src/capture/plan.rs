//! Turns a hardware profile into device plans: one GStreamer launch description per
//! device, and the tracks (segment streams) it feeds.

use super::CaptureError;
use super::sim_audio::{Programme, SimAudio, SpeechSchedule};
use super::template::Templates;
use crate::config::{
    AudioDevice, AudioEncoder, AudioSourceKind, Camera, CameraSource, HwProfile, InputFormat, SourceKind, VideoEncoder,
};
use std::path::Path;

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
}

/// Elements every device description contains, looked up by name after parsing.
pub const ANCHOR: &str = "anchor";
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
    Ok(DevicePlan {
        name: cam.name.clone(),
        description: format!(
            "{source} ! identity name={ANCHOR} silent=true ! queue name=rawq_{n} leaky=downstream {RAW_QUEUE} ! {encoder} ! identity name={out} silent=true",
            n = cam.name,
            out = out_element(&cam.name)
        ),
        tracks: vec![TrackPlan { source: cam.name.clone(), kind: SourceKind::Video, channel: None }],
        sim_audio: None,
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
    let mic_branch = |name: &str| {
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
    };
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
    Ok(DevicePlan {
        name: dev.name.clone(),
        description: desc,
        tracks: dev
            .mics
            .iter()
            .map(|m| TrackPlan { source: m.name.clone(), kind: SourceKind::Audio, channel: Some(m.channel) })
            .collect(),
        sim_audio,
    })
}
