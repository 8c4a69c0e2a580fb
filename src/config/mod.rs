//! Box configuration and hardware profiles: strict TOML (unknown keys are errors), loaded
//! from files, checked by a pure `validate()` whose messages name the file, key and fault.

mod locate;
mod profile;
mod validate;

pub use locate::{LOCAL_PROFILE_DIR, SYSTEM_PROFILE_DIRS, locate_profile, profile_dirs};

pub use profile::{
    AudioDevice, AudioEncoder, AudioEncoding, AudioSourceKind, Camera, CameraSource, HwProfile, InputFormat,
    Microphone, NetworkAudio, NetworkProtocol, NetworkSource, NetworkVideo, NetworkVideoCodec, Role, RtspTransport,
    SimPattern, SourceKind, SourceSpec, VideoEncoder, VideoEncoding, Voice,
};
pub use validate::{
    Problem, network_url_problem, srt_listens, validate_config, validate_config_with_profile, validate_profile,
};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{}", format_problems(path, problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
    /// `hw_profile` names a file outside every profile folder; it was not opened.
    #[error(
        "{}: hw_profile: {given:?} is not a .toml file inside a profile folder; profiles come only from {}",
        config.display(),
        list_dirs(allowed)
    )]
    ProfileOutside { config: PathBuf, given: PathBuf, allowed: Vec<PathBuf> },
    /// A configuration sent over the API lists a profile folder the running one does not:
    /// only someone on the box may widen where profiles come from.
    #[error(
        "{}: profile_dirs: {dir:?} is not a profile folder of the running configuration ({}); \
         a folder is added by editing the file on the box",
        config.display(),
        list_dirs(allowed)
    )]
    ProfileDirsWidened { config: PathBuf, dir: PathBuf, allowed: Vec<PathBuf> },
}

impl ConfigError {
    /// Whether the configuration asked for something it may not (a file outside the profile
    /// folders), rather than being malformed.
    pub fn is_refusal(&self) -> bool {
        matches!(self, ConfigError::ProfileOutside { .. } | ConfigError::ProfileDirsWidened { .. })
    }
}

fn list_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn format_problems(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("{}: {}", path.display(), p)).collect();
    lines.join("\n")
}

/// The box configuration file (`courtbox.toml`). Relative paths are resolved against the
/// directory holding the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Court identifier, used as the first part of every object key in central storage.
    pub court: String,
    /// Courtroom identifier within the court.
    pub room: String,
    /// Where the ledger, the spool and the device key live.
    pub data_dir: PathBuf,
    /// The hardware profile: a `.toml` file inside a profile folder (`hw-profiles/` beside
    /// this file, `/usr/share/courtbox/hw-profiles`, `/etc/courtbox/hw-profiles`, or one of
    /// `profile_dirs`).
    pub hw_profile: PathBuf,
    /// More folders profiles may come from (relative to this file). `PUT /api/v1/config`
    /// cannot add one: only an edit on the box can.
    #[serde(default)]
    pub profile_dirs: Vec<PathBuf>,
    /// Directory with pipeline templates overriding the built-in ones.
    #[serde(default)]
    pub pipelines_dir: Option<PathBuf>,
    #[serde(default)]
    pub recording: RecordingConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub sim: SimConfig,
    #[serde(default)]
    pub stt: SttConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub disk: DiskConfig,
    /// Checkpoints and external timestamps (see witness).
    #[serde(default)]
    pub witness: WitnessConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub broadcast: BroadcastConfig,
    #[serde(default)]
    pub debug: DebugConfig,
}

/// The delayed live broadcast of open hearings (nothing goes out unless a secretary or
/// technician starts it, and never for a closed hearing).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BroadcastConfig {
    /// How far behind real time the broadcast runs.
    pub delay_seconds: u32,
    /// A privacy mute pressed at T blanks the broadcast from T - rewind (at most the delay),
    /// so that what was said just before the button was pressed never goes out.
    pub rewind_seconds: u32,
    /// `auto` (the camera showing the role of whoever speaks) or a camera's name.
    pub camera: String,
    /// With `auto`, a camera stays on air at least this long before the next cut.
    pub hold_seconds: u32,
    /// The program picture: every camera is scaled to this.
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub video_kbps: u32,
    pub audio_kbps: u32,
    /// First delay after an output failed; it doubles up to `retry_max_ms`.
    pub retry_initial_ms: u32,
    pub retry_max_ms: u32,
    #[serde(rename = "output")]
    pub outputs: Vec<BroadcastOutput>,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        BroadcastConfig {
            delay_seconds: 30,
            rewind_seconds: 10,
            camera: "auto".into(),
            hold_seconds: 4,
            width: 1280,
            height: 720,
            fps: 25,
            video_kbps: 2500,
            audio_kbps: 128,
            retry_initial_ms: 1000,
            retry_max_ms: 30_000,
            outputs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// RTMP push (`rtmp://host/app`); the stream key comes from `key_file`.
    Rtmp,
    /// SRT caller (`srt://host:port`); `key_file` holds the passphrase, if any.
    Srt,
    /// HLS written to a local folder (`dir`), for a web server on the box.
    Hls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastOutput {
    pub name: String,
    pub kind: OutputKind,
    /// rtmp and srt: the server, without any secret in it.
    #[serde(default)]
    pub url: Option<String>,
    /// A file (mode 0600, relative to this file) holding the stream key (rtmp) or the
    /// passphrase (srt). Read when a broadcast starts; never logged.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// hls: the folder for the playlist and segments (relative to this file).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Allows an unencrypted output beyond this box: `rtmp://` (the stream key travels in
    /// clear) or `srt://` without a passphrase. Loopback needs no permission.
    #[serde(default)]
    pub allow_insecure: bool,
}

/// When a source's signal problem during a session becomes an alarm (status, log).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// A microphone with no signal at all for this long (people may be quiet a while).
    pub silent_alarm_seconds: u32,
    /// A black or frozen picture for this long.
    pub picture_alarm_seconds: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig { silent_alarm_seconds: 120, picture_alarm_seconds: 10 }
    }
}

/// Central storage: where every committed object is uploaded (store and forward).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub enabled: bool,
    /// A folder (relative to this file) or `s3://bucket/prefix`. Objects go under
    /// `{prefix}/{court}/{room}/`. Default: the folder `central` in `data_dir`.
    pub url: Option<String>,
    /// S3 endpoint, e.g. `https://s3.example.kz`; AWS when absent.
    pub endpoint: Option<String>,
    pub region: String,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
    pub path_style: bool,
    /// TOML file (mode 0600) with `access_key_id` and `secret_access_key`; relative to this
    /// file. Without it the standard AWS_* environment variables are used.
    pub credentials_file: Option<PathBuf>,
    /// Objects uploaded at the same time.
    pub concurrency: u32,
    /// Allows a plain `http://` endpoint beyond this box (the record's bytes would cross
    /// the network unencrypted). Loopback needs no permission.
    pub allow_insecure: bool,
    /// Objects this large or larger are sent in parts and read back after completion.
    pub multipart_threshold_mib: u32,
    /// First delay after a failed attempt; it doubles (with jitter) up to `retry_max_ms`.
    pub retry_initial_ms: u32,
    pub retry_max_ms: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            enabled: true,
            url: None,
            endpoint: None,
            region: "us-east-1".into(),
            path_style: true,
            credentials_file: None,
            allow_insecure: false,
            concurrency: 4,
            multipart_threshold_mib: 16,
            retry_initial_ms: 500,
            retry_max_ms: 60_000,
        }
    }
}

/// Local disk policy for the spool (see docs/DESIGN.md, "Back-pressure: who yields").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    /// Uploaded segments stay on the box this long (for local playback and export).
    pub keep_uploaded_hours: u32,
    /// Below this much free space uploaded segments are deleted early, oldest first, and
    /// if that is not enough an alarm is raised.
    pub warn_free_mib: u64,
    /// Below this, cameras pause (a gap record says why) so that audio can go on.
    pub critical_free_mib: u64,
    /// How often free space is checked.
    pub check_interval_ms: u32,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig { keep_uploaded_hours: 72, warn_free_mib: 4096, critical_free_mib: 1024, check_interval_ms: 2000 }
    }
}

/// The record witnessed beyond the box: signed checkpoints, uploaded ahead of the media, and
/// (with `tsa_url`) RFC 3161 timestamps from an outside authority.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WitnessConfig {
    /// While a session records, a checkpoint at least this often (and at every event).
    pub checkpoint_seconds: u32,
    /// The Time-Stamp Authority (http or https); none: checkpoints are not stamped.
    pub tsa_url: Option<String>,
    /// The TSA's own certificate (PEM), pinned: tokens signed by anything else are refused.
    pub tsa_cert: Option<PathBuf>,
    /// Its CA chain (PEM, root last).
    pub tsa_ca: Option<PathBuf>,
    /// How long one timestamp request may take.
    pub tsa_timeout_ms: u32,
    /// A box clock further than this from the TSA's is flagged (by `check` and `verify`).
    pub clock_tolerance_seconds: u32,
}

impl Default for WitnessConfig {
    fn default() -> Self {
        WitnessConfig {
            checkpoint_seconds: 60,
            tsa_url: None,
            tsa_cert: None,
            tsa_ca: None,
            tsa_timeout_ms: 10_000,
            clock_tolerance_seconds: 5,
        }
    }
}

/// Speech to text. A missing or wrong model never stops recording: captions are then
/// produced later (`courtbox captions transcribe`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SttConfig {
    pub enabled: bool,
    /// The ggml model file (made by `models/fetch`); relative to this file.
    pub model: PathBuf,
    /// Required for a model not pinned in models/models.toml.
    pub model_sha256: Option<String>,
    /// Threads whisper may use.
    pub threads: u32,
    /// How often a partial caption is produced while someone speaks.
    pub partial_interval_ms: u32,
    /// Longer speech without a pause is cut into several captions.
    pub max_utterance_seconds: u32,
    /// Audio waiting for transcription, per microphone, before the oldest is left to be
    /// transcribed later from the recording.
    pub queue_seconds: u32,
    /// A caption produced this long after its speech is marked delayed.
    pub delayed_after_seconds: u32,
    /// Tests only: transcription takes this many times longer.
    pub slowdown: u32,
    /// A microphone whose language the model does worse than this (1 − word error rate)
    /// gets no live captions: the record says "not transcribed" rather than guess.
    pub min_quality: f32,
    /// The quality of the installed model per language, as a technician measured it, for a
    /// model whose figures the box does not pin (or to correct them). Keyed by language.
    pub quality: std::collections::BTreeMap<String, StatedQuality>,
}

/// A technician's figure for a model's quality in one language, with who and when.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatedQuality {
    /// The SHA-256 of the model it was measured on: after a model swap it no longer applies.
    pub model_sha256: String,
    /// 0 to 1: one minus the word error rate the technician measured.
    pub score: f32,
    pub set_by: String,
    /// The date it was measured, YYYY-MM-DD.
    pub set_at: String,
}

impl Default for SttConfig {
    fn default() -> Self {
        SttConfig {
            enabled: true,
            model: "models/ggml-base-q8_0.bin".into(),
            model_sha256: None,
            threads: 2,
            partial_interval_ms: 1500,
            max_utterance_seconds: 12,
            queue_seconds: 60,
            delayed_after_seconds: 10,
            slowdown: 1,
            min_quality: 0.5,
            quality: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Length of a segment; boundaries are aligned across all sources.
    pub segment_seconds: u32,
    /// How often the open segment of every source is flushed to disk (bounds power-loss).
    pub sync_interval_ms: u32,
    /// How long session start waits for every source to deliver its first buffer.
    pub start_timeout_ms: u32,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig { segment_seconds: 10, sync_interval_ms: 1000, start_timeout_ms: 5000 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address of the control API and front panel. Loopback by default: the panel's
    /// touchscreen is on the box; expose it further only with TLS.
    pub listen: String,
    /// Unix socket for `courtbox` commands run on the box (root or the service user act as
    /// technician, known by the kernel's peer credentials); relative to `data_dir`.
    pub socket: PathBuf,
    /// PEM certificate chain and private key: when both are set the API speaks only HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A panel session ends after this long without an action (status updates do not count).
    pub session_idle_minutes: u32,
    /// ... and this long after sign-in in any case.
    pub session_max_hours: u32,
    /// Consecutive wrong PINs or tokens that lock an account ...
    pub lockout_failures: u32,
    /// ... for this long.
    pub lockout_minutes: u32,
    /// Sign-in attempts one client may make per minute.
    pub sign_in_per_minute: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8089".into(),
            socket: "control.sock".into(),
            tls_cert: None,
            tls_key: None,
            session_idle_minutes: 30,
            session_max_hours: 12,
            lockout_failures: 5,
            lockout_minutes: 5,
            sign_in_per_minute: 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Directory with the speech files the `sim` microphones play (made by `scripts/setup`).
    pub audio_dir: PathBuf,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig { audio_dir: "var/sim-audio".into() }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    /// Enables `POST /api/v1/debug/fail-device` and `stall-ledger`, used by tests to make a
    /// pipeline error or hang the ledger. Only builds with the cargo feature `fault-injection`
    /// accept it; validation refuses it elsewhere.
    pub fault_injection: bool,
}

/// A configuration read from disk, validated, with its hardware profile and every relative
/// path resolved.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub path: PathBuf,
    /// The folder holding the file: relative paths in it are relative to this.
    pub base_dir: PathBuf,
    pub config: Config,
    pub profile_path: PathBuf,
    pub profile: HwProfile,
    /// The folders `hw_profile` may come from (absolute).
    pub profile_dirs: Vec<PathBuf>,
    pub data_dir: PathBuf,
    pub sim_audio_dir: PathBuf,
    pub pipelines_dir: Option<PathBuf>,
    pub stt_model: PathBuf,
}

impl LoadedConfig {
    pub fn ledger_path(&self) -> PathBuf {
        self.data_dir.join("ledger.db")
    }
    /// The device's private key (PKCS#8, 0600). Never printed, logged or uploaded.
    pub fn key_path(&self) -> PathBuf {
        self.data_dir.join("device.key")
    }
    pub fn public_key_path(&self) -> PathBuf {
        self.data_dir.join("device.pub")
    }
    pub fn socket_path(&self) -> PathBuf {
        crate::base::resolve(&self.data_dir, &self.config.api.socket)
    }

    /// The certificate and key of the API, when TLS is configured (relative to the config).
    pub fn tls_paths(&self) -> Option<(PathBuf, PathBuf)> {
        let api = &self.config.api;
        Some((
            crate::base::resolve(&self.base_dir, api.tls_cert.as_ref()?),
            crate::base::resolve(&self.base_dir, api.tls_key.as_ref()?),
        ))
    }
    /// The pinned TSA certificate and its CA chain (relative to the config), when set.
    pub fn tsa_paths(&self) -> Option<(PathBuf, PathBuf)> {
        let w = &self.config.witness;
        Some((
            crate::base::resolve(&self.base_dir, w.tsa_cert.as_ref()?),
            crate::base::resolve(&self.base_dir, w.tsa_ca.as_ref()?),
        ))
    }
    pub fn segment_nanos(&self) -> u64 {
        u64::from(self.config.recording.segment_seconds) * 1_000_000_000
    }
}

/// Whose file is being read, which decides what a parse error may show of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// The file's author reads the error (the configuration given to a command or sent over
    /// the API): the parser's message with the offending line.
    Author,
    /// Any other file (the profile a configuration names): line, column and the parser's
    /// words, never the file's content.
    Other,
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path, reader: Reader) -> Result<T, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: match reader {
            Reader::Author => e.to_string().trim_end().replace('\n', "\n    "),
            Reader::Other => crate::base::Withheld::new(&text, &e).to_string(),
        },
    })
}

/// Reads and validates a hardware profile on its own (used by tests and `courtbox check`).
/// A parse error gives the position, never the content.
pub fn load_profile(path: &Path) -> Result<HwProfile, ConfigError> {
    let profile: HwProfile = read_toml(path, Reader::Other)?;
    let problems = validate_profile(&profile);
    if problems.is_empty() { Ok(profile) } else { Err(ConfigError::Invalid { path: path.to_path_buf(), problems }) }
}

/// Which profile folders a configuration being loaded may use.
#[derive(Debug, Clone, Copy)]
pub enum ProfileFolders<'a> {
    /// Those it lists itself (a file on the box: whoever wrote it could read any file anyway).
    Own,
    /// Those of the running configuration: one sent over the API may not add a folder.
    Running(&'a [PathBuf]),
}

/// Reads `courtbox.toml` and the hardware profile it names; every problem found is reported.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    load_with(path, ProfileFolders::Own)
}

/// As `load`, with the profile folders `folders` allows.
pub fn load_with(path: &Path, folders: ProfileFolders) -> Result<LoadedConfig, ConfigError> {
    let config: Config = read_toml(path, Reader::Author)?;
    let problems = validate_config(&config);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid { path: path.to_path_buf(), problems });
    }
    let base = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
    let dirs = profile_dirs(&base, &config.profile_dirs);
    if let ProfileFolders::Running(allowed) = folders
        && let Some(dir) = dirs.iter().find(|d| !allowed.contains(d))
    {
        return Err(ConfigError::ProfileDirsWidened {
            config: path.to_path_buf(),
            dir: dir.clone(),
            allowed: allowed.to_vec(),
        });
    }
    let profile_path = locate_profile(path, &config.hw_profile, &dirs)?;
    let profile = load_profile(&profile_path)?;
    let problems = validate_config_with_profile(&config, &profile);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid { path: path.to_path_buf(), problems });
    }
    Ok(LoadedConfig {
        data_dir: crate::base::resolve(&base, &config.data_dir),
        sim_audio_dir: crate::base::resolve(&base, &config.sim.audio_dir),
        pipelines_dir: config.pipelines_dir.as_ref().map(|p| crate::base::resolve(&base, p)),
        stt_model: crate::base::resolve(&base, &config.stt.model),
        path: path.to_path_buf(),
        base_dir: base,
        profile_path,
        profile,
        profile_dirs: dirs,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
    }

    #[test]
    fn every_shipped_profile_is_valid() {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(repo("hw-profiles")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let p = load_profile(&path).unwrap_or_else(|e| panic!("{e}"));
                names.push(p.name.clone());
            }
        }
        names.sort();
        assert_eq!(names, ["ip-room", "sim", "usb-room"]);
    }

    #[test]
    fn sim_has_two_cameras_and_four_microphones_with_roles() {
        let p = load_profile(&repo("hw-profiles/sim.toml")).unwrap();
        let sources = p.sources();
        let cams = sources.iter().filter(|s| s.kind == SourceKind::Video).count();
        let roles: Vec<_> = sources.iter().filter_map(|s| s.role).collect();
        assert_eq!(cams, 2);
        assert_eq!(roles, [Role::Judge, Role::Prosecutor, Role::Defence, Role::Witness]);
    }

    #[test]
    fn the_real_hardware_profile_maps_interface_channels_to_roles() {
        let p = load_profile(&repo("hw-profiles/usb-room.toml")).unwrap();
        assert!(p.cameras.iter().all(|c| c.source == CameraSource::V4l2 && c.device.is_some()));
        let dev = &p.audio_devices[0];
        assert_eq!((dev.source, dev.channels), (AudioSourceKind::Alsa, 4));
        let channels: Vec<u32> = dev.mics.iter().map(|m| m.channel).collect();
        assert_eq!(channels, [1, 2, 3, 4]);
    }

    #[test]
    fn network_sources_are_devices_with_a_picture_and_a_voice() {
        let p = load_profile(&repo("hw-profiles/ip-room.toml")).unwrap();
        let remote: Vec<_> = p.sources().into_iter().filter(|s| s.device == "remote").collect();
        assert_eq!(remote.len(), 2);
        assert_eq!((remote[0].kind, remote[0].role), (SourceKind::Video, None));
        assert_eq!((remote[1].kind, remote[1].role), (SourceKind::Audio, Some(Role::Witness)));
        let pictures: Vec<&str> = p.pictures().iter().map(|(name, _)| *name).collect();
        assert_eq!(pictures, ["bench", "hall", "gallery", "remote-picture"]);
        assert_eq!(p.voices().last().unwrap().name, "remote-witness");
    }

    #[test]
    fn network_source_problems_name_the_key() {
        let base = "name = \"x\"\n[[network_source]]\nname = \"cam\"\nprotocol = \"rtsp\"\n\
                    url = \"rtsp://10.0.0.2/s\"\ncredentials_file = \"/etc/courtbox/cam\"\n\
                    [network_source.video]\nname = \"court\"\n";
        assert!(profile(base).is_ok(), "{:?}", profile(base).err());
        let cases = [
            (
                base.replace("rtsp://10.0.0.2/s", "rtsp://admin:pw@10.0.0.2/s"),
                "network_source[0].url: the URL holds credentials",
            ),
            (
                base.replace("rtsp://10.0.0.2/s", "http://10.0.0.2/s"),
                "network_source[0].url: an rtsp source's URL starts with rtsp:// or rtsps://",
            ),
            (
                base.replace("/etc/courtbox/cam", "cam.txt"),
                "network_source[0].credentials_file: cam.txt must be an absolute path",
            ),
            (
                base.replace("[network_source.video]\nname = \"court\"\n", ""),
                "network_source[0].video: a network source needs",
            ),
            (
                base.replace("name = \"court\"", "name = \"cam\""),
                "network_source[0].video.name: duplicate name \"cam\"",
            ),
            (
                base.replace("protocol = \"rtsp\"", "protocol = \"srt\"")
                    .replace("rtsp://10.0.0.2/s", "srt://10.0.0.2:9000")
                    .replace("credentials_file = \"/etc/courtbox/cam\"\n", ""),
                "network_source[0].passphrase_file: missing: an SRT link beyond this box must be encrypted",
            ),
            (
                base.replace("rtsp://10.0.0.2/s", "rtsp://10.0.0.2/s?passphrase=x"),
                "the URL holds a secret (passphrase=)",
            ),
            (base.replace("rtsp://10.0.0.2/s", "rtsp://10.0.0.2/s?user=a&pwd=x"), "the URL holds a secret (pwd=)"),
            (
                base.replace("rtsp://10.0.0.2/s", "rtsp://10.0.0.2/s?access_token=x"),
                "the URL holds a secret (access_token=)",
            ),
            // A listener binds every interface: whoever dials in first would be recorded.
            (
                base.replace("protocol = \"rtsp\"", "protocol = \"srt\"")
                    .replace("rtsp://10.0.0.2/s", "srt://:9000?mode=listener")
                    .replace("credentials_file = \"/etc/courtbox/cam\"\n", ""),
                "network_source[0].passphrase_file: missing",
            ),
            (
                base.replace("protocol = \"rtsp\"", "protocol = \"srt\"")
                    .replace("rtsp://10.0.0.2/s", "srt://127.0.0.1:9000?mode=listener&localaddress=0.0.0.0")
                    .replace("credentials_file = \"/etc/courtbox/cam\"\n", ""),
                "network_source[0].passphrase_file: missing",
            ),
            (
                base.replace("[network_source.video]", "stall_ms = 10\n[network_source.video]"),
                "network_source[0].stall_ms: must be between 500 and 60000",
            ),
            (
                base.replace("name = \"court\"", "name = \"court\"\ntranscode_fps = 0"),
                "network_source[0].video.transcode_fps: must be between 1 and 60",
            ),
            // SRT and RTMP carry H.264 or H.265, which is recorded as sent.
            (
                base.replace("protocol = \"rtsp\"", "protocol = \"rtmp\"")
                    .replace("rtsp://10.0.0.2/s", "rtmp://10.0.0.2/live/x")
                    .replace("name = \"court\"", "name = \"court\"\ntranscode_fps = 25"),
                "network_source[0].video.transcode_fps: applies to rtsp only",
            ),
            (
                base.replace(
                    "[network_source.video]",
                    "onvif_url = \"http://admin:pw@10.0.0.2/onvif/device_service\"\n[network_source.video]",
                ),
                "network_source[0].onvif_url: the URL holds credentials",
            ),
            (
                base.replace(
                    "[network_source.video]",
                    "onvif_url = \"rtsp://10.0.0.2/onvif/device_service\"\n[network_source.video]",
                ),
                "network_source[0].onvif_url: an ONVIF service is reached by http:// or https://",
            ),
        ];
        for (text, expected) in cases {
            let err = profile(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err}");
        }
        let loopback_listener = base
            .replace("protocol = \"rtsp\"", "protocol = \"srt\"")
            .replace("rtsp://10.0.0.2/s", "srt://127.0.0.1:9000?mode=listener")
            .replace("credentials_file = \"/etc/courtbox/cam\"\n", "");
        assert!(profile(&loopback_listener).is_ok(), "a link that stays on the box needs no passphrase");
        let onvif = base.replace(
            "[network_source.video]",
            "onvif_url = \"http://10.0.0.2/onvif/device_service\"\nonvif_credentials_file = \"/etc/courtbox/cam-admin\"\n\
             [network_source.video]",
        );
        assert!(profile(&onvif).is_ok(), "{:?}", profile(&onvif).err());
        let h265 = onvif.replace("name = \"court\"", "name = \"court\"\ncodec = \"h265\"");
        let err = profile(&h265).unwrap_err().to_string();
        assert!(err.contains("onvif_url: ONVIF Media sets the GOP of H.264 streams only"), "{err}");
        let stray = base
            .replace("[network_source.video]", "onvif_credentials_file = \"/etc/courtbox/a\"\n[network_source.video]");
        let err = profile(&stray).unwrap_err().to_string();
        assert!(err.contains("onvif_credentials_file: without onvif_url"), "{err}");
        assert!(srt_listens("srt://:9000") && srt_listens("srt://127.0.0.1:9000?mode=listener"));
        assert!(!srt_listens("srt://10.0.0.2:9000") && !srt_listens("srt://10.0.0.2:9000?mode=caller"));
    }

    /// Parses and checks a profile the way loading does, under the name `profile.toml`.
    fn profile(text: &str) -> Result<HwProfile, ConfigError> {
        let path = PathBuf::from("profile.toml");
        let p: HwProfile =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.clone(), message: e.to_string() })?;
        let problems = validate_profile(&p);
        if problems.is_empty() { Ok(p) } else { Err(ConfigError::Invalid { path, problems }) }
    }

    #[test]
    fn profile_problems_name_the_key() {
        let base = "name = \"x\"\n[[camera]]\nname = \"cam\"\nsource = \"sim\"\nwidth = 640\nheight = 480\nfps = 30\n";
        assert!(profile(base).is_ok());
        let cases = [
            (base.replace("fps = 30", "fps = 0"), "camera[0].fps: must be between 1 and 60 (got 0)"),
            (base.replace("width = 640", "width = 641"), "camera[0].width: width and height must be even"),
            (base.replace("source = \"sim\"", "source = \"v4l2\""), "camera[0].device: missing"),
            (base.replace("name = \"cam\"", "name = \"Cam 1\""), "camera[0].name: \"Cam 1\" is not a valid name"),
            (base.replace("source = \"sim\"", "source = \"usb\""), "unknown variant `usb`"),
            (base.replace("fps = 30", "fps = 30\nzoom = 2"), "unknown field `zoom`"),
            (
                format!(
                    "{base}[[audio_device]]\nname = \"cam\"\nsource = \"sim\"\nchannels = 2\n[[audio_device.mic]]\nname = \"judge\"\nrole = \"judge\"\nchannel = 3\n"
                ),
                "audio_device[0].name: duplicate name \"cam\"",
            ),
            (
                format!(
                    "{base}[[audio_device]]\nname = \"desk\"\nsource = \"sim\"\nchannels = 2\n[[audio_device.mic]]\nname = \"judge\"\nrole = \"judge\"\nchannel = 3\n"
                ),
                "audio_device[0].mic[0].channel: channel 3 does not exist: the device has channels 1 to 2",
            ),
            (
                format!(
                    "{base}[[audio_device]]\nname = \"desk\"\nsource = \"sim\"\nchannels = 1\n[[audio_device.mic]]\nname = \"j\"\nrole = \"judgee\"\nchannel = 1\n"
                ),
                "unknown variant `judgee`",
            ),
            ("name = \"empty\"\n".to_string(), "nothing would be recorded"),
        ];
        for (text, expected) in cases {
            let err = profile(&text).expect_err(expected).to_string();
            assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
        }
    }

    #[test]
    fn load_reports_every_problem_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("courtbox.toml");
        std::fs::write(&path, "court = \"Bad Court\"\nroom = \"r\"\ndata_dir = \"d\"\nhw_profile = \"p.toml\"\n[api]\nlisten = \"nowhere\"\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("courtbox.toml: court: \"Bad Court\" is not a valid name"), "{err}");
        assert!(err.contains("courtbox.toml: api.listen: \"nowhere\" is not an address"), "{err}");
        std::fs::write(&path, "court = \"c\"\nroom = \"r\"\ndata_dir = \"d\"\nhw_profile = \"hw-profiles/p.toml\"\n")
            .unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("p.toml: cannot read"), "a missing profile is named: {err}");
    }

    /// A profile outside the profile folders is refused by kind, naming the key and the
    /// folders; one inside that does not parse is named by file, line and column, and not
    /// one character of it is quoted.
    #[test]
    fn profiles_come_only_from_profile_folders_and_their_errors_quote_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("courtbox.toml");
        let config = |profile: &str, extra: &str| {
            std::fs::write(
                &path,
                format!("court = \"c\"\nroom = \"r\"\ndata_dir = \"d\"\nhw_profile = \"{profile}\"\n{extra}"),
            )
            .unwrap();
        };
        std::fs::write(dir.path().join("secret.toml"), "name = \"SECRET-MARKER\"\n").unwrap();
        for outside in ["/etc/shadow", "secret.toml", "hw-profiles/../secret.toml"] {
            config(outside, "");
            let e = load(&path).unwrap_err();
            assert!(e.is_refusal(), "{outside}: {e}");
            let text = e.to_string();
            assert!(text.contains("courtbox.toml: hw_profile: ") && text.contains("hw-profiles"), "{text}");
        }

        let profiles = dir.path().join("hw-profiles");
        std::fs::create_dir(&profiles).unwrap();
        std::fs::write(
            profiles.join("bad.toml"),
            "name = \"x\"\n[[camera]]\nname = \"SECRET-MARKER\"\nfps = \"SECRET-MARKER\"\n",
        )
        .unwrap();
        config("hw-profiles/bad.toml", "");
        let e = load(&path).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }) && !e.is_refusal(), "{e}");
        let text = e.to_string();
        assert!(text.contains("bad.toml: line 4, column 7: invalid type") && !text.contains("SECRET"), "{text}");

        // A folder listed by the file itself counts when the file is the box's own, and not
        // when the configuration comes over the API.
        config("../elsewhere/p.toml", "profile_dirs = [\"../elsewhere\"]\n");
        let running = profile_dirs(dir.path(), &[]);
        let e = load_with(&path, ProfileFolders::Running(&running)).unwrap_err();
        assert!(matches!(e, ConfigError::ProfileDirsWidened { .. }), "{e}");
        assert!(e.to_string().contains("courtbox.toml: profile_dirs: "), "{e}");
        assert!(matches!(load(&path).unwrap_err(), ConfigError::Read { .. }), "its own folder is searched");
    }

    #[test]
    fn store_and_disk_problems_name_the_key() {
        let base = "court = \"c\"\nroom = \"r\"\ndata_dir = \"d\"\nhw_profile = \"p.toml\"\n";
        let problems = |extra: &str| -> String {
            let c: Config = toml::from_str(&format!("{base}{extra}")).unwrap();
            validate_config(&c).iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")
        };
        assert_eq!(problems("[store]\nurl = \"s3://records/kz\"\nendpoint = \"http://127.0.0.1:8333\"\n"), "");
        assert!(problems("[store]\nurl = \"s3:///kz\"\n").contains("store.url: \"s3:///kz\" names no bucket"));
        assert!(problems("[store]\nurl = \"ftp://x\"\n").contains("store.url: \"ftp://x\": only s3://"));
        assert!(problems("[store]\nendpoint = \"http://x\"\n").contains("store.url: endpoint and credentials_file"));
        assert!(problems("[store]\nurl = \"s3://b\"\nendpoint = \"x:9000\"\n").contains("store.endpoint"));
        assert!(problems("[store]\nconcurrency = 0\n").contains("store.concurrency: must be between 1 and 64"));
        assert!(
            problems("[disk]\nwarn_free_mib = 100\ncritical_free_mib = 100\n")
                .contains("disk.critical_free_mib: must be below disk.warn_free_mib")
        );
    }

    #[test]
    fn a_stated_model_quality_names_who_and_when_and_stays_in_range() {
        let base = "court = \"c\"\nroom = \"r\"\ndata_dir = \"d\"\nhw_profile = \"p.toml\"\n";
        let problems = |extra: &str| -> String {
            let c: Config = toml::from_str(&format!("{base}{extra}")).unwrap();
            validate_config(&c).iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")
        };
        let sha = "ab".repeat(32);
        let good = format!(
            "[stt.quality.kk]\nmodel_sha256 = \"{sha}\"\nscore = 0.8\nset_by = \"A. Technician\"\nset_at = \"2026-12-01\"\n"
        );
        assert_eq!(problems(&good), "");
        assert!(problems("[stt]\nmin_quality = 1.5\n").contains("stt.min_quality: must be between 0 and 1"));
        let bad = "[stt.quality.de]\nmodel_sha256 = \"x\"\nscore = 2.0\nset_by = \" \"\nset_at = \"yesterday\"\n";
        let found = problems(bad);
        for key in
            ["stt.quality.de: the language", "stt.quality.de.score", "stt.quality.de.set_by", "stt.quality.de.set_at"]
        {
            assert!(found.contains(key), "{key} not named in: {found}");
        }
    }

    #[test]
    fn nothing_secret_leaves_the_box_in_clear_unless_allowed() {
        let base = "court = \"c\"\nroom = \"r\"\ndata_dir = \"d\"\nhw_profile = \"p.toml\"\n";
        let problems = |extra: &str| -> String {
            let c: Config = toml::from_str(&format!("{base}{extra}")).unwrap();
            validate_config(&c).iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")
        };
        for local in ["127.0.0.1:8089", "[::1]:8089"] {
            assert_eq!(problems(&format!("[api]\nlisten = \"{local}\"\n")), "", "{local}");
        }
        let open = problems("[api]\nlisten = \"0.0.0.0:8089\"\n");
        assert!(
            open.contains("api.listen: 0.0.0.0:8089 is reachable beyond this box") && open.contains("tls_cert"),
            "{open}"
        );
        let tls = "[api]\nlisten = \"0.0.0.0:8443\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n";
        assert_eq!(problems(tls), "");

        let s3 = |endpoint: &str, allow: bool| {
            problems(&format!("[store]\nurl = \"s3://b/p\"\nendpoint = \"{endpoint}\"\nallow_insecure = {allow}\n"))
        };
        assert_eq!(s3("http://127.0.0.1:8333", false), "");
        assert_eq!(s3("http://localhost:8333", false), "");
        assert_eq!(s3("https://s3.court.kz", false), "");
        assert!(
            s3("http://s3.court.kz", false)
                .contains("store.endpoint: \"http://s3.court.kz\" is plain HTTP beyond this box")
        );
        assert_eq!(s3("http://s3.court.kz", true), "", "a technician may allow it");

        let output = |url: &str, extra: &str| {
            problems(&format!(
                "[[broadcast.output]]\nname = \"o\"\nkind = \"{}\"\nurl = \"{url}\"\n{extra}",
                &url[..url.find(':').unwrap()].trim_end_matches('s')
            ))
        };
        assert_eq!(output("rtmp://127.0.0.1/live", ""), "");
        assert!(output("rtmp://live.example.kz/app", "").contains("sends the stream key in clear"));
        assert_eq!(output("rtmps://live.example.kz/app", ""), "");
        assert_eq!(output("rtmp://live.example.kz/app", "allow_insecure = true\n"), "");
        assert!(output("srt://live.example.kz:9000", "").contains("without a passphrase is unencrypted"));
        assert_eq!(output("srt://live.example.kz:9000", "key_file = \"k\"\n"), "");
    }

    #[test]
    fn loopback_urls() {
        use super::validate::is_loopback_url;
        for yes in ["http://127.0.0.1:9000/x", "http://localhost", "srt://[::1]:9000", "rtmp://u:p@127.0.0.2/app"] {
            assert!(is_loopback_url(yes), "{yes}");
        }
        for no in ["http://10.0.0.1", "http://localhost.evil.kz", "http://127.0.0.1.nip.io", "nonsense"] {
            assert!(!is_loopback_url(no), "{no}");
        }
    }
}
