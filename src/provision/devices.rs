//! What capture hardware this box has: cameras (with their formats, sizes and rates) and
//! audio inputs (with channels and rates), from GStreamer's device monitor, which asks
//! v4l2, ALSA and PulseAudio. Zero devices is a normal answer.

use crate::config::AudioSourceKind;
use gst::prelude::*;
use serde::Serialize;
use thiserror::Error;

/// Why the device monitor could not be asked.
#[derive(Debug, Error)]
pub enum DiscoverError {
    #[error("{0}")]
    Init(#[from] gst::glib::Error),
    #[error("the device monitor did not start: {0}")]
    Monitor(gst::glib::BoolError),
}

#[derive(Debug, Clone, Serialize)]
pub struct CameraInfo {
    pub name: String,
    /// `/dev/videoN`.
    pub device: Option<String>,
    /// e.g. `image/jpeg 1280x720 @ 30/1`.
    pub modes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AudioInputInfo {
    pub name: String,
    /// `alsa` or `pulse` (never `sim`): what the profile's `source` key takes.
    pub api: AudioSourceKind,
    /// What the profile's `device` key takes.
    pub device: Option<String>,
    pub channels: u32,
    pub sample_rate: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Inventory {
    pub cameras: Vec<CameraInfo>,
    pub audio_inputs: Vec<AudioInputInfo>,
}

fn string_property(device: &gst::Device, name: &str) -> Option<String> {
    device.properties().and_then(|p| p.get::<String>(name).ok())
}

/// A field of a caps structure as a number, taking the upper end of a range and the first
/// of a list; `prefer` when a range or list holds it.
fn int_field(s: &gst::StructureRef, field: &str, prefer: i32) -> Option<i32> {
    if let Ok(v) = s.get::<i32>(field) {
        return Some(v);
    }
    if let Ok(r) = s.get::<gst::IntRange<i32>>(field) {
        return Some(if (r.min()..=r.max()).contains(&prefer) { prefer } else { r.max() });
    }
    if let Ok(l) = s.get::<gst::List>(field) {
        let values: Vec<i32> = l.iter().filter_map(|v| v.get::<i32>().ok()).collect();
        return values.iter().find(|v| **v == prefer).or(values.first()).copied();
    }
    None
}

fn camera_modes(caps: &gst::Caps) -> Vec<String> {
    let mut modes = Vec::new();
    for s in caps.iter() {
        let format = match s.get::<&str>("format") {
            Ok(f) => format!("{} {f}", s.name()),
            Err(_) => s.name().to_string(),
        };
        let size = match (s.get::<i32>("width"), s.get::<i32>("height")) {
            (Ok(w), Ok(h)) => format!("{w}x{h}"),
            _ => "any size".into(),
        };
        let rate = s.value("framerate").map(|v| format!("{v:?}")).ok().and_then(|v| {
            s.get::<gst::Fraction>("framerate").map(|f| format!("{}/{}", f.numer(), f.denom())).ok().or(Some(v))
        });
        let mode = format!("{format} {size} @ {}", rate.unwrap_or_else(|| "any rate".into()));
        if !modes.contains(&mode) {
            modes.push(mode);
        }
    }
    modes
}

/// Asks the device monitor for every camera and audio input.
pub fn discover() -> Result<Inventory, DiscoverError> {
    gst::init()?;
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some("Video/Source"), None);
    monitor.add_filter(Some("Audio/Source"), None);
    monitor.start().map_err(DiscoverError::Monitor)?;
    let devices = monitor.devices();
    monitor.stop();
    let mut inventory = Inventory::default();
    for d in devices {
        let caps = d.caps().unwrap_or_else(gst::Caps::new_empty);
        let name = d.display_name().to_string();
        if d.has_classes("Video/Source") {
            inventory.cameras.push(CameraInfo {
                name,
                device: string_property(&d, "api.v4l2.path").or_else(|| string_property(&d, "device.path")),
                modes: camera_modes(&caps),
            });
        } else if d.has_classes("Audio/Source") {
            let element = d.create_element(None).ok();
            let factory = element.as_ref().and_then(|e| e.factory()).map(|f| f.name().to_string()).unwrap_or_default();
            let api = if factory.starts_with("pulse") { AudioSourceKind::Pulse } else { AudioSourceKind::Alsa };
            // What the element opens: PulseAudio's source name or ALSA's device string.
            let device = element.as_ref().and_then(|e| {
                if e.has_property("device") { e.property_value("device").get::<String>().ok() } else { None }
            });
            let raw = caps.iter().find(|s| s.name() == "audio/x-raw");
            let channels = raw.and_then(|s| int_field(s, "channels", 2)).unwrap_or(1).max(1) as u32;
            let sample_rate = raw.and_then(|s| int_field(s, "rate", 48_000)).unwrap_or(48_000) as u32;
            inventory.audio_inputs.push(AudioInputInfo { name, api, device, channels, sample_rate });
        }
    }
    Ok(inventory)
}

/// A hardware profile (TOML) for what was found: every camera at its largest mode, every
/// channel of every input a microphone whose role is left for the technician to set.
pub fn profile_snippet(inv: &Inventory) -> String {
    let mut out = String::from(
        "# Found by `courtbox devices`. Set each microphone's role (judge, prosecutor, defence,\n\
         # defendant, plaintiff, witness, expert, interpreter, secretary, lawyer, other) and check sizes.\n\
         name = \"this-room\"\ndescription = \"Devices found on this box\"\n",
    );
    for (i, c) in inv.cameras.iter().enumerate() {
        let (w, h, fps, format) = best_mode(&c.modes);
        out.push_str(&format!(
            "\n[[camera]]\n# {}\nname = \"cam{}\"\nsource = \"v4l2\"\ndevice = {}\ninput_format = \"{format}\"\nwidth = {w}\nheight = {h}\nfps = {fps}\n",
            c.name,
            i + 1,
            toml::Value::String(c.device.clone().unwrap_or_else(|| "/dev/video0".into()))
        ));
    }
    for (i, a) in inv.audio_inputs.iter().enumerate() {
        out.push_str(&format!("\n[[audio_device]]\n# {}\nname = \"audio{}\"\nsource = \"{}\"\n", a.name, i + 1, a.api));
        if let Some(d) = &a.device {
            out.push_str(&format!("device = {}\n", toml::Value::String(d.clone())));
        }
        out.push_str(&format!("sample_rate = {}\nchannels = {}\n", a.sample_rate, a.channels));
        for ch in 1..=a.channels {
            out.push_str(&format!(
                "\n[[audio_device.mic]]\nname = \"audio{}-ch{ch}\"\nrole = \"other\"\nchannel = {ch}\n",
                i + 1
            ));
        }
    }
    out
}

/// The largest size at 30 fps or less among modes like `image/jpeg 1280x720 @ 30/1`.
fn best_mode(modes: &[String]) -> (u32, u32, u32, &'static str) {
    let mut best = (1280, 720, 30, "mjpeg");
    let mut best_area = 0;
    for m in modes {
        let mut parts = m.split_whitespace();
        let kind = parts.next().unwrap_or("");
        let Some(size) = parts.find(|p| p.contains('x')) else { continue };
        let Some((w, h)) =
            size.split_once('x').and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        else {
            continue;
        };
        let fps = m
            .rsplit(" @ ")
            .next()
            .and_then(|r| r.split_once('/'))
            .and_then(|(n, d)| Some(n.parse::<u32>().ok()? / d.parse::<u32>().ok()?.max(1)));
        let fps = fps.unwrap_or(30).min(30);
        if w * h > best_area && w % 2 == 0 && h % 2 == 0 && fps > 0 {
            best_area = w * h;
            best = (w, h, fps, if kind == "image/jpeg" { "mjpeg" } else { "raw" });
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snippet_of_what_was_found_is_a_valid_profile() {
        let inv = Inventory {
            cameras: vec![CameraInfo {
                name: "HD Webcam".into(),
                device: Some("/dev/video0".into()),
                modes: vec!["video/x-raw YUY2 640x480 @ 30/1".into(), "image/jpeg 1920x1080 @ 30/1".into()],
            }],
            audio_inputs: vec![AudioInputInfo {
                name: "USB interface".into(),
                api: AudioSourceKind::Alsa,
                device: Some("hw:CARD=Interface,DEV=0".into()),
                channels: 4,
                sample_rate: 48_000,
            }],
        };
        let text = profile_snippet(&inv);
        let profile: crate::config::HwProfile = toml::from_str(&text).unwrap();
        assert!(crate::config::validate_profile(&profile).is_empty(), "{text}");
        assert_eq!((profile.cameras[0].width, profile.cameras[0].height), (1920, 1080));
        assert_eq!(profile.audio_devices[0].mics.len(), 4);
        let empty = profile_snippet(&Inventory::default());
        assert!(toml::from_str::<crate::config::HwProfile>(&empty).is_ok());
    }
}
