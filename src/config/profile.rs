//! The hardware profile (`hw-profiles/*.toml`): cameras, audio devices and their microphones,
//! and how each kind is encoded; and `SourceSpec`, a source as the record names it. Only the
//! strict deserialization (unknown keys are errors) lives here; the checks are in `validate`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A hardware profile: the sources of one kind of box and how they are encoded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HwProfile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub video: VideoEncoding,
    #[serde(default)]
    pub audio: AudioEncoding,
    #[serde(default, rename = "camera")]
    pub cameras: Vec<Camera>,
    #[serde(default, rename = "audio_device")]
    pub audio_devices: Vec<AudioDevice>,
    /// IP cameras and the remote participants of online hearings.
    #[serde(default, rename = "network_source")]
    pub network_sources: Vec<NetworkSource>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoEncoder {
    /// x264, `ultrafast` + `zerolatency`: the cheapest software H.264 here.
    X264,
    /// Cisco's OpenH264.
    Openh264,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioEncoder {
    Opus,
    Aac,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoEncoding {
    pub encoder: VideoEncoder,
    pub bitrate_kbps: u32,
    /// Maximum distance between keyframes. Short GOPs bound what a crash can lose, because
    /// the segmenter holds one GOP in memory before writing it.
    pub keyframe_interval_ms: u32,
}

impl Default for VideoEncoding {
    fn default() -> Self {
        VideoEncoding { encoder: VideoEncoder::X264, bitrate_kbps: 1500, keyframe_interval_ms: 1000 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioEncoding {
    pub encoder: AudioEncoder,
    pub bitrate_kbps: u32,
}

impl Default for AudioEncoding {
    fn default() -> Self {
        AudioEncoding { encoder: AudioEncoder::Opus, bitrate_kbps: 32 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraSource {
    /// Synthetic moving picture with the source name and a running clock burnt in.
    Sim,
    /// A V4L2 (UVC) camera.
    V4l2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    Raw,
    Mjpeg,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    pub name: String,
    pub source: CameraSource,
    /// Text shown to people (panel, burnt into sim pictures).
    #[serde(default)]
    pub label: Option<String>,
    /// `/dev/videoN` or a `/dev/v4l/by-id/...` path, for `v4l2`.
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub input_format: Option<InputFormat>,
    /// `sim` only: `bars` (default) or `black`, a covered lens (for drills and tests).
    #[serde(default)]
    pub sim_pattern: Option<SimPattern>,
    /// Who this camera shows: the broadcast's automatic switching cuts to it when a
    /// microphone of one of these roles speaks.
    #[serde(default)]
    pub roles: Vec<Role>,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SimPattern {
    Bars,
    Black,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioSourceKind {
    /// Synthetic: plays speech files (or tones) at real-time pace.
    Sim,
    Alsa,
    Pulse,
}

impl AudioSourceKind {
    /// The profile's `source` value.
    pub fn as_str(self) -> &'static str {
        match self {
            AudioSourceKind::Sim => "sim",
            AudioSourceKind::Alsa => "alsa",
            AudioSourceKind::Pulse => "pulse",
        }
    }
}

impl std::fmt::Display for AudioSourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One capture device; each of its input channels is a microphone with its own track.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioDevice {
    pub name: String,
    pub source: AudioSourceKind,
    /// ALSA device (`hw:CARD=...,DEV=0`) or PulseAudio source name.
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
    pub channels: u32,
    #[serde(rename = "mic")]
    pub mics: Vec<Microphone>,
}

fn default_sample_rate() -> u32 {
    48_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Microphone {
    pub name: String,
    pub role: Role,
    /// Input channel on the device, counted from 1 as printed on the hardware.
    pub channel: u32,
    #[serde(default)]
    pub label: Option<String>,
    /// Language this microphone's speaker uses (kk, ru, en, auto) when it differs from the
    /// hearing's; captions of this track are transcribed in it.
    #[serde(default)]
    pub language: Option<String>,
    /// `sim` only: speech file in the config's `sim.audio_dir`, played in a loop.
    #[serde(default)]
    pub sim_audio: Option<String>,
    /// `sim` only: tone played when there is no speech file.
    #[serde(default)]
    pub sim_tone_hz: Option<u32>,
    /// `sim` only: behave as an unplugged input (digital silence, not even room noise).
    #[serde(default)]
    pub sim_disconnected: bool,
}

/// How a network source reaches the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkProtocol {
    /// An IP camera: the box pulls `rtsp://` (RTP over TCP or UDP).
    Rtsp,
    /// A remote participant's MPEG-TS over SRT: the box listens (`srt://:PORT`) or calls
    /// (`srt://HOST:PORT`), encrypted with a passphrase.
    Srt,
    /// A remote participant that a videoconference gateway publishes to an RTMP server:
    /// the box pulls `rtmp://`.
    Rtmp,
}

impl NetworkProtocol {
    /// The schemes of this protocol's URLs.
    pub fn schemes(self) -> &'static [&'static str] {
        match self {
            NetworkProtocol::Rtsp => &["rtsp", "rtsps"],
            NetworkProtocol::Srt => &["srt"],
            NetworkProtocol::Rtmp => &["rtmp", "rtmps"],
        }
    }

    /// The protocol of a URL, by its scheme.
    pub fn of_url(url: &str) -> Option<NetworkProtocol> {
        let scheme = url.split_once("://")?.0;
        [NetworkProtocol::Rtsp, NetworkProtocol::Srt, NetworkProtocol::Rtmp]
            .into_iter()
            .find(|p| p.schemes().contains(&scheme))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkProtocol::Rtsp => "rtsp",
            NetworkProtocol::Srt => "srt",
            NetworkProtocol::Rtmp => "rtmp",
        }
    }
}

impl fmt::Display for NetworkProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// RTSP's media transport. TCP (interleaved) crosses firewalls and loses nothing to a
/// congested link but stalls instead; UDP loses packets instead of stalling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    #[default]
    Tcp,
    Udp,
}

/// The compressed video a network source sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NetworkVideoCodec {
    #[default]
    H264,
    H265,
}

impl NetworkVideoCodec {
    /// How people write it (`check`, errors).
    pub fn label(self) -> &'static str {
        match self {
            NetworkVideoCodec::H264 => "H.264",
            NetworkVideoCodec::H265 => "H.265",
        }
    }
}

/// A source that reaches the box over the network: one pipeline (device) of its own, whose
/// picture and sound are separate tracks of the record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSource {
    /// The device's name (status, logs); its tracks have their own names.
    pub name: String,
    pub protocol: NetworkProtocol,
    /// Without any secret in it: no `user:password@`, no `passphrase=`.
    pub url: String,
    /// rtsp and rtmp: an absolute path to a file (mode 0600) holding `user:password`.
    /// Read at every connection; never logged.
    #[serde(default)]
    pub credentials_file: Option<std::path::PathBuf>,
    /// srt: an absolute path to a file (mode 0600) holding the passphrase (10-79 characters).
    #[serde(default)]
    pub passphrase_file: Option<std::path::PathBuf>,
    /// rtsp only.
    #[serde(default)]
    pub transport: RtspTransport,
    /// rtsp only: the camera's ONVIF device service (`http://HOST/onvif/device_service`),
    /// through which `courtbox check` asks the camera for one keyframe a second.
    #[serde(default)]
    pub onvif_url: Option<String>,
    /// The ONVIF login (`user:password`, mode 0600), if it is not the stream's: changing the
    /// encoder needs an operator's account, while the stream needs only a viewer's.
    /// Default: credentials_file.
    #[serde(default)]
    pub onvif_credentials_file: Option<std::path::PathBuf>,
    /// No data for this long is an outage: the source reconnects and its gap says so.
    #[serde(default = "default_stall_ms")]
    pub stall_ms: u32,
    #[serde(default)]
    pub video: Option<NetworkVideo>,
    #[serde(default)]
    pub audio: Option<NetworkAudio>,
}

fn default_stall_ms() -> u32 {
    3000
}

/// The picture of a network source: recorded as the source sends it (no re-encoding).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkVideo {
    /// The track's name.
    pub name: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub codec: NetworkVideoCodec,
    /// Re-encode the picture with the box's `[video]` encoder at this frame rate, for a
    /// camera whose codec the record should not keep (MJPEG, MPEG-4): any video the box can
    /// decode is then accepted and `codec` is not used. RTSP only. Unset (the default): the
    /// camera's H.264 or H.265 is recorded as it is sent.
    #[serde(default)]
    pub transcode_fps: Option<u32>,
    /// Roles this camera shows (the broadcast's automatic switching), as for a camera.
    #[serde(default)]
    pub roles: Vec<Role>,
}

impl NetworkVideo {
    /// What the record keeps of this picture: H.264 when the box re-encodes it.
    pub fn recorded_codec(&self) -> NetworkVideoCodec {
        if self.transcode_fps.is_some() { NetworkVideoCodec::H264 } else { self.codec }
    }
}

/// The sound of a network source: a microphone track of its own, with a role, so that it
/// gets its own captions. Decoded and encoded like a local microphone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAudio {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
}

/// Who speaks into a microphone. A fixed list so that captions and the panel can label
/// tracks in every interface language, and so that typos are caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = SpeakerRole)]
pub enum Role {
    Judge,
    Prosecutor,
    Defence,
    Defendant,
    Plaintiff,
    Witness,
    Expert,
    Interpreter,
    Secretary,
    Lawyer,
    Other,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Judge => "judge",
            Role::Prosecutor => "prosecutor",
            Role::Defence => "defence",
            Role::Defendant => "defendant",
            Role::Plaintiff => "plaintiff",
            Role::Witness => "witness",
            Role::Expert => "expert",
            Role::Interpreter => "interpreter",
            Role::Secretary => "secretary",
            Role::Lawyer => "lawyer",
            Role::Other => "other",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Video,
    Audio,
}

/// A source as the record sees it: one camera or one microphone, one segment stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub name: String,
    pub kind: SourceKind,
    /// The device (pipeline) the source belongs to; a failure takes down the whole device.
    pub device: String,
    pub role: Option<Role>,
}

/// A microphone track, local or remote, as captions and the broadcast see it.
#[derive(Debug, Clone, Copy)]
pub struct Voice<'a> {
    pub name: &'a str,
    pub role: Role,
    pub language: Option<&'a str>,
    /// A remote participant's own picture: what the broadcast shows while they speak.
    pub picture: Option<&'a str>,
}

impl HwProfile {
    /// Every picture track with the roles it shows: cameras, then network sources' pictures.
    pub fn pictures(&self) -> Vec<(&str, &[Role])> {
        let cams = self.cameras.iter().map(|c| (c.name.as_str(), c.roles.as_slice()));
        let network = self.network_sources.iter().filter_map(|n| n.video.as_ref());
        cams.chain(network.map(|v| (v.name.as_str(), v.roles.as_slice()))).collect()
    }

    /// Every microphone track: the room's, then the remote participants'.
    pub fn voices(&self) -> Vec<Voice<'_>> {
        let local = self.audio_devices.iter().flat_map(|d| &d.mics).map(|m| Voice {
            name: &m.name,
            role: m.role,
            language: m.language.as_deref(),
            picture: None,
        });
        let remote =
            self.network_sources.iter().filter_map(|n| Some((n.audio.as_ref()?, n.video.as_ref()))).map(|(a, v)| {
                Voice {
                    name: &a.name,
                    role: a.role,
                    language: a.language.as_deref(),
                    picture: v.map(|v| v.name.as_str()),
                }
            });
        local.chain(remote).collect()
    }

    /// Every source in profile order: cameras, microphones, then the tracks of network
    /// sources (picture before sound).
    pub fn sources(&self) -> Vec<SourceSpec> {
        let cams = self.cameras.iter().map(|c| SourceSpec {
            name: c.name.clone(),
            kind: SourceKind::Video,
            device: c.name.clone(),
            role: None,
        });
        let mics = self.audio_devices.iter().flat_map(|d| {
            d.mics.iter().map(move |m| SourceSpec {
                name: m.name.clone(),
                kind: SourceKind::Audio,
                device: d.name.clone(),
                role: Some(m.role),
            })
        });
        let network = self.network_sources.iter().flat_map(|n| {
            let video = n.video.iter().map(move |v| SourceSpec {
                name: v.name.clone(),
                kind: SourceKind::Video,
                device: n.name.clone(),
                role: None,
            });
            let audio = n.audio.iter().map(move |a| SourceSpec {
                name: a.name.clone(),
                kind: SourceKind::Audio,
                device: n.name.clone(),
                role: Some(a.role),
            });
            video.chain(audio)
        });
        cams.chain(mics).chain(network).collect()
    }
}
