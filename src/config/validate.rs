//! Checks of the configuration and the hardware profile after parsing. Pure: they touch no
//! file or device (`courtbox check` looks at the hardware), and they collect every problem,
//! named by its TOML key, instead of stopping at the first, so one load reports all to fix.

use super::{
    AudioDevice, AudioSourceKind, BroadcastConfig, Camera, CameraSource, Config, HwProfile, Microphone,
    NetworkProtocol, NetworkSource, OutputKind, StoreConfig,
};
use crate::base::is_valid_name;
use std::collections::HashSet;
use std::fmt;

/// One thing wrong with a configuration: the key (as a TOML path) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { key: key.into(), message: message.into() });
    }
    fn range(&mut self, key: String, value: u32, min: u32, max: u32) {
        if value < min || value > max {
            self.add(key, format!("must be between {min} and {max} (got {value})"));
        }
    }
    fn name(&mut self, key: String, value: &str) {
        if !is_valid_name(value) {
            self.add(
                key,
                format!("{value:?} is not a valid name: use 1-32 lowercase letters, digits, '-' or '_', starting with a letter or digit"),
            );
        }
    }
    /// Source and device names share one namespace: they become file names and object keys.
    fn unique(&mut self, seen: &mut HashSet<String>, key: String, name: &str) {
        if !seen.insert(name.to_string()) {
            self.add(
                key,
                format!("duplicate name {name:?}: every camera, audio device and microphone needs its own name"),
            );
        }
    }
    fn text(&mut self, key: String, value: &str) {
        if value.chars().any(|c| c == '"' || c == '\\' || c.is_control()) || value.len() > 64 {
            self.add(key, "must be at most 64 characters without quotes, backslashes or control characters");
        }
    }
}

/// Checks the box configuration. Pure: touches no file.
pub fn validate_config(config: &Config) -> Vec<Problem> {
    let mut p = Problems(Vec::new());
    p.name("court".into(), &config.court);
    p.name("room".into(), &config.room);
    if config.debug.fault_injection && !cfg!(feature = "fault-injection") {
        p.add(
            "debug.fault_injection",
            "this build has no fault injection (release packages leave it out; only a build with the \
             cargo feature `fault-injection` has it): remove the [debug] section",
        );
    }
    p.range("recording.segment_seconds".into(), config.recording.segment_seconds, 2, 600);
    p.range("recording.sync_interval_ms".into(), config.recording.sync_interval_ms, 100, 10_000);
    p.range("recording.start_timeout_ms".into(), config.recording.start_timeout_ms, 500, 60_000);
    let stt = &config.stt;
    p.range("stt.threads".into(), stt.threads, 1, 16);
    p.range("stt.partial_interval_ms".into(), stt.partial_interval_ms, 300, 10_000);
    p.range("stt.max_utterance_seconds".into(), stt.max_utterance_seconds, 3, 28);
    p.range("stt.queue_seconds".into(), stt.queue_seconds, 5, 600);
    p.range("stt.delayed_after_seconds".into(), stt.delayed_after_seconds, 2, 600);
    p.range("stt.slowdown".into(), stt.slowdown, 1, 100);
    if !(0.0..=1.0).contains(&stt.min_quality) {
        p.add("stt.min_quality", "must be between 0 and 1 (one minus the word error rate)");
    }
    for (language, q) in &stt.quality {
        let key = format!("stt.quality.{language}");
        if !["kk", "ru", "en"].contains(&language.as_str()) {
            p.add(key.clone(), "the language must be kk, ru or en");
        }
        if !(0.0..=1.0).contains(&q.score) {
            p.add(format!("{key}.score"), "must be between 0 and 1 (one minus the word error rate)");
        }
        if q.model_sha256.len() != 64 || !q.model_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            p.add(format!("{key}.model_sha256"), "must be the SHA-256 of the model it was measured on (64 hex digits)");
        }
        if q.set_by.trim().is_empty() {
            p.add(format!("{key}.set_by"), "must name who measured it");
        }
        let date = time::macros::format_description!("[year]-[month]-[day]");
        if time::Date::parse(&q.set_at, &date).is_err() {
            p.add(format!("{key}.set_at"), "must be the date it was measured, YYYY-MM-DD");
        }
    }
    if let Some(sha) = &stt.model_sha256
        && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        p.add("stt.model_sha256", "must be 64 hexadecimal digits (sha256sum of the model file)");
    }
    validate_store(&mut p, &config.store);
    let w = &config.witness;
    p.range("witness.checkpoint_seconds".into(), w.checkpoint_seconds, 1, 3600);
    p.range("witness.tsa_timeout_ms".into(), w.tsa_timeout_ms, 100, 120_000);
    p.range("witness.clock_tolerance_seconds".into(), w.clock_tolerance_seconds, 1, 3600);
    if let Some(url) = &w.tsa_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            p.add("witness.tsa_url", format!("{url:?} must be an http:// or https:// URL"));
        }
        if w.tsa_cert.is_none() || w.tsa_ca.is_none() {
            p.add(
                "witness.tsa_cert",
                "a TSA needs its certificate pinned: set witness.tsa_cert and witness.tsa_ca (PEM files)",
            );
        }
    }
    p.range("health.silent_alarm_seconds".into(), config.health.silent_alarm_seconds, 1, 3600);
    p.range("health.picture_alarm_seconds".into(), config.health.picture_alarm_seconds, 1, 3600);
    let disk = &config.disk;
    p.range("disk.check_interval_ms".into(), disk.check_interval_ms, 100, 60_000);
    if disk.critical_free_mib >= disk.warn_free_mib {
        p.add(
            "disk.critical_free_mib",
            format!("must be below disk.warn_free_mib ({} >= {})", disk.critical_free_mib, disk.warn_free_mib),
        );
    }
    let api = &config.api;
    match api.listen.parse::<std::net::SocketAddr>() {
        Err(_) => p.add("api.listen", format!("{:?} is not an address like 127.0.0.1:8089", api.listen)),
        // PINs, session cookies and tokens must not cross a network in clear.
        Ok(addr) if !addr.ip().is_loopback() && api.tls_cert.is_none() => p.add(
            "api.listen",
            format!(
                "{addr} is reachable beyond this box, and plain HTTP would carry PINs, cookies and tokens in clear: \
                 set api.tls_cert and api.tls_key, or listen on 127.0.0.1"
            ),
        ),
        Ok(_) => {}
    }
    if api.tls_cert.is_some() != api.tls_key.is_some() {
        p.add("api.tls_cert", "tls_cert and tls_key go together: set both for HTTPS, or neither");
    }
    p.range("api.session_idle_minutes".into(), api.session_idle_minutes, 1, 24 * 60);
    p.range("api.session_max_hours".into(), api.session_max_hours, 1, 72);
    p.range("api.lockout_failures".into(), api.lockout_failures, 1, 100);
    p.range("api.lockout_minutes".into(), api.lockout_minutes, 1, 24 * 60);
    p.range("api.sign_in_per_minute".into(), api.sign_in_per_minute, 1, 1000);
    validate_broadcast(&mut p, &config.broadcast);
    p.0
}

fn validate_broadcast(p: &mut Problems, b: &BroadcastConfig) {
    p.range("broadcast.delay_seconds".into(), b.delay_seconds, 0, 600);
    if b.rewind_seconds > b.delay_seconds {
        p.add(
            "broadcast.rewind_seconds",
            format!(
                "must be at most broadcast.delay_seconds ({} > {}): a mute cannot reach back into what is already out",
                b.rewind_seconds, b.delay_seconds
            ),
        );
    }
    if b.camera != "auto" {
        p.name("broadcast.camera".into(), &b.camera);
    }
    p.range("broadcast.hold_seconds".into(), b.hold_seconds, 1, 600);
    p.range("broadcast.width".into(), b.width, 160, 1920);
    p.range("broadcast.height".into(), b.height, 120, 1080);
    if !b.width.is_multiple_of(2) || !b.height.is_multiple_of(2) {
        p.add("broadcast.width", "width and height must be even for H.264 (4:2:0)");
    }
    p.range("broadcast.fps".into(), b.fps, 1, 60);
    p.range("broadcast.video_kbps".into(), b.video_kbps, 100, 20_000);
    p.range("broadcast.audio_kbps".into(), b.audio_kbps, 32, 320);
    p.range("broadcast.retry_initial_ms".into(), b.retry_initial_ms, 100, 60_000);
    p.range("broadcast.retry_max_ms".into(), b.retry_max_ms, b.retry_initial_ms.max(100), 3_600_000);
    let mut names = HashSet::new();
    for (i, o) in b.outputs.iter().enumerate() {
        let k = |field: &str| format!("broadcast.output[{i}].{field}");
        p.name(k("name"), &o.name);
        if !names.insert(o.name.as_str()) {
            p.add(k("name"), format!("duplicate output name {:?}", o.name));
        }
        let scheme = match o.kind {
            OutputKind::Rtmp => Some(["rtmp://", "rtmps://"].as_slice()),
            OutputKind::Srt => Some(["srt://"].as_slice()),
            OutputKind::Hls => None,
        };
        match (scheme, &o.url) {
            (Some(_), None) => p.add(k("url"), "missing: the server to send to"),
            (Some(schemes), Some(url)) => {
                if !schemes.iter().any(|s| url.starts_with(s)) || url.contains(['"', ' ', '!', '\\']) {
                    p.add(k("url"), format!("{url:?} is not a {} address", schemes.join(" or ")));
                } else if o.kind == OutputKind::Srt && url.contains("passphrase") {
                    p.add(k("url"), "holds a passphrase: put it in key_file (mode 600) instead");
                } else if !o.allow_insecure && !is_loopback_url(url) {
                    if url.starts_with("rtmp://") {
                        p.add(
                            k("url"),
                            "rtmp:// beyond this box sends the stream key in clear: use rtmps://, or set allow_insecure = true",
                        );
                    } else if o.kind == OutputKind::Srt && o.key_file.is_none() {
                        p.add(
                            k("key_file"),
                            "srt:// beyond this box without a passphrase is unencrypted: set key_file, or allow_insecure = true",
                        );
                    }
                }
            }
            (None, Some(_)) => p.add(k("url"), "an hls output writes to dir, not to a url"),
            (None, None) => {}
        }
        match (o.kind, &o.dir) {
            (OutputKind::Hls, None) => p.add(k("dir"), "missing: the folder for the playlist and segments"),
            (OutputKind::Hls, Some(_)) => {}
            (_, Some(_)) => p.add(k("dir"), "only an hls output has a dir"),
            (_, None) => {}
        }
        if o.kind == OutputKind::Hls && o.key_file.is_some() {
            p.add(k("key_file"), "a local hls output has no key");
        }
    }
}

/// Checks what the configuration says about the profile's sources.
pub fn validate_config_with_profile(config: &Config, profile: &HwProfile) -> Vec<Problem> {
    let mut p = Problems(Vec::new());
    let b = &config.broadcast;
    let pictures = profile.pictures();
    if b.camera != "auto" && !pictures.iter().any(|(name, _)| *name == b.camera) {
        p.add("broadcast.camera", format!("{:?} is not a camera of the profile {:?}", b.camera, profile.name));
    }
    if !b.outputs.is_empty() && pictures.is_empty() {
        p.add("broadcast.output", format!("the profile {:?} has no camera to broadcast", profile.name));
    }
    p.0
}

fn validate_store(p: &mut Problems, store: &StoreConfig) {
    p.range("store.concurrency".into(), store.concurrency, 1, 64);
    p.range("store.multipart_threshold_mib".into(), store.multipart_threshold_mib, 5, 4096);
    p.range("store.retry_initial_ms".into(), store.retry_initial_ms, 10, 60_000);
    p.range("store.retry_max_ms".into(), store.retry_max_ms, store.retry_initial_ms.max(10), 3_600_000);
    let s3 = match store.url.as_deref() {
        Some(url) if url.starts_with("s3://") => {
            let bucket = url["s3://".len()..].split('/').next().unwrap_or("");
            if bucket.is_empty() {
                p.add("store.url", format!("{url:?} names no bucket: write s3://bucket/prefix"));
            }
            true
        }
        Some(url) if url.contains("://") => {
            p.add("store.url", format!("{url:?}: only s3://bucket/prefix or a folder path are supported"));
            false
        }
        Some("") => {
            p.add("store.url", "is empty: leave it out for the default folder");
            false
        }
        _ => false,
    };
    if let Some(endpoint) = &store.endpoint {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            p.add("store.endpoint", format!("{endpoint:?} is not an http:// or https:// address"));
        } else if endpoint.starts_with("http://") && !is_loopback_url(endpoint) && !store.allow_insecure {
            p.add(
                "store.endpoint",
                format!(
                    "{endpoint:?} is plain HTTP beyond this box: the record would cross the network unencrypted; \
                     use https://, or set store.allow_insecure = true for a network you trust"
                ),
            );
        }
    }
    if !s3 && (store.endpoint.is_some() || store.credentials_file.is_some()) {
        p.add("store.url", "endpoint and credentials_file are set but url is not s3://bucket/prefix");
    }
}

/// Whether a URL's host is this box (localhost, 127.0.0.0/8, ::1): traffic to it never
/// leaves the machine.
pub fn is_loopback_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks a hardware profile. Pure: a device that is absent on this machine is not an error
/// here (`courtbox check` looks for it).
pub fn validate_profile(profile: &HwProfile) -> Vec<Problem> {
    let mut p = Problems(Vec::new());
    p.name("name".into(), &profile.name);
    p.range("video.bitrate_kbps".into(), profile.video.bitrate_kbps, 100, 50_000);
    p.range("video.keyframe_interval_ms".into(), profile.video.keyframe_interval_ms, 100, 10_000);
    p.range("audio.bitrate_kbps".into(), profile.audio.bitrate_kbps, 8, 512);

    if profile.cameras.is_empty() && profile.audio_devices.is_empty() && profile.network_sources.is_empty() {
        p.add("camera", "the profile has no camera, audio_device or network_source: nothing would be recorded");
    }

    let mut names = HashSet::new();
    for (i, cam) in profile.cameras.iter().enumerate() {
        validate_camera(&mut p, &mut names, &profile.cameras[..i], i, cam);
    }
    for (i, dev) in profile.audio_devices.iter().enumerate() {
        validate_audio_device(&mut p, &mut names, i, dev);
    }
    for (i, source) in profile.network_sources.iter().enumerate() {
        validate_network_source(&mut p, &mut names, profile, i, source);
    }
    p.0
}

/// Network source `i`. `profile` is there for the roles its picture shows, which no other
/// camera may show too.
fn validate_network_source(
    p: &mut Problems,
    names: &mut HashSet<String>,
    profile: &HwProfile,
    i: usize,
    source: &NetworkSource,
) {
    let k = |field: &str| format!("network_source[{i}].{field}");
    p.name(k("name"), &source.name);
    p.unique(names, k("name"), &source.name);
    p.range(k("stall_ms"), source.stall_ms, 500, 60_000);
    if let Some(problem) = network_url_problem(source.protocol, &source.url) {
        p.add(k("url"), problem);
    }
    let secret = match source.protocol {
        NetworkProtocol::Rtsp | NetworkProtocol::Rtmp => {
            if source.passphrase_file.is_some() {
                p.add(k("passphrase_file"), format!("{} has no passphrase; use credentials_file", source.protocol));
            }
            ("credentials_file", &source.credentials_file)
        }
        NetworkProtocol::Srt => {
            if source.credentials_file.is_some() {
                p.add(k("credentials_file"), "srt has no user name; use passphrase_file");
            }
            ("passphrase_file", &source.passphrase_file)
        }
    };
    if let (field, Some(path)) = secret
        && !path.is_absolute()
    {
        p.add(k(field), format!("{} must be an absolute path (the profile is shared between boxes)", path.display()));
    }
    if source.protocol == NetworkProtocol::Srt && source.passphrase_file.is_none() && !srt_stays_on_the_box(&source.url)
    {
        // Unencrypted, anyone on the network could read the link or, for a listener, dial
        // in first and be recorded as the remote participant.
        p.add(k("passphrase_file"), "missing: an SRT link beyond this box must be encrypted");
    }
    if source.protocol != NetworkProtocol::Rtsp && source.transport != super::RtspTransport::Tcp {
        p.add(k("transport"), "applies to rtsp only");
    }
    if let Some(onvif) = &source.onvif_url {
        if source.protocol != NetworkProtocol::Rtsp {
            p.add(k("onvif_url"), "applies to rtsp cameras only");
        }
        if source.video.as_ref().is_some_and(|v| v.recorded_codec() == super::NetworkVideoCodec::H265) {
            p.add(k("onvif_url"), "ONVIF Media sets the GOP of H.264 streams only; set this camera's GOP by hand");
        }
        if let Some(problem) = onvif_url_problem(onvif) {
            p.add(k("onvif_url"), problem);
        }
    }
    if let Some(path) = &source.onvif_credentials_file {
        if source.onvif_url.is_none() {
            p.add(k("onvif_credentials_file"), "without onvif_url it is not used");
        }
        if !path.is_absolute() {
            p.add(k("onvif_credentials_file"), format!("{} must be an absolute path", path.display()));
        }
    }
    if source.video.is_none() && source.audio.is_none() {
        p.add(
            k("video"),
            "a network source needs a [network_source.video] track, an [network_source.audio] track, or both",
        );
    }
    if let Some(video) = &source.video {
        p.name(k("video.name"), &video.name);
        p.unique(names, k("video.name"), &video.name);
        if let Some(label) = &video.label {
            p.text(k("video.label"), label);
        }
        if let Some(fps) = video.transcode_fps {
            p.range(k("video.transcode_fps"), fps, 1, 60);
            if source.protocol != NetworkProtocol::Rtsp {
                p.add(
                    k("video.transcode_fps"),
                    format!("applies to rtsp only ({} carries H.264 or H.265)", source.protocol),
                );
            }
        }
        for role in &video.roles {
            let shown_by = profile.cameras.iter().map(|c| (&c.name, &c.roles)).chain(
                profile.network_sources[..i].iter().filter_map(|n| n.video.as_ref()).map(|v| (&v.name, &v.roles)),
            );
            if let Some((other, _)) = shown_by.into_iter().find(|(_, roles)| roles.contains(role)) {
                p.add(k("video.roles"), format!("{role} is already shown by camera {other:?}"));
            }
        }
    }
    if let Some(audio) = &source.audio {
        p.name(k("audio.name"), &audio.name);
        p.unique(names, k("audio.name"), &audio.name);
        if let Some(label) = &audio.label {
            p.text(k("audio.label"), label);
        }
        if let Some(lang) = &audio.language
            && !crate::session::LANGUAGES.contains(&lang.as_str())
        {
            p.add(k("audio.language"), format!("{lang:?} is not one of kk, ru, en, auto"));
        }
    }
}

/// Whether an SRT URL listens (for its sender to dial in) rather than calls: `mode=listener`,
/// or no host to call.
pub fn srt_listens(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, query) = (rest.split(['/', '?']).next().unwrap_or(""), rest.split_once('?').map_or("", |(_, q)| q));
    query.split('&').any(|kv| kv == "mode=listener") || authority.starts_with(':') || authority.is_empty()
}

/// Whether an SRT link never leaves the box: it calls or listens on a loopback address.
fn srt_stays_on_the_box(url: &str) -> bool {
    // A listener without a host binds every interface; `localaddress` may name one.
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let local = query.split('&').find_map(|kv| kv.strip_prefix("localaddress="));
    match local {
        Some(address) => address.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        None => is_loopback_url(url),
    }
}

/// Query keys that carry secrets in the URLs of cameras and servers.
const SECRET_QUERY_KEYS: &[&str] =
    &["passphrase", "password", "passwd", "pwd", "pass", "token", "key", "secret", "auth"];

/// What is wrong with a network source's URL for its protocol, if anything. Secrets never
/// go in the URL (it is shown in status and logs): they have files of their own.
pub fn network_url_problem(protocol: NetworkProtocol, url: &str) -> Option<String> {
    let schemes = protocol.schemes();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some(format!("{url:?} is not a URL: it must start with {}://", schemes[0]));
    };
    if !schemes.contains(&scheme) {
        return Some(format!("an {protocol} source's URL starts with {}://, not {scheme}://", schemes.join(":// or ")));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\') {
        return Some("the URL contains a space, a quote or a backslash".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        let file = if protocol == NetworkProtocol::Srt { "passphrase_file" } else { "credentials_file" };
        return Some(format!("the URL holds credentials (user@ or user:password@); put them in {file}"));
    }
    let query = rest.split_once('?').map_or("", |(_, q)| q.split('#').next().unwrap_or(""));
    for pair in query.split('&') {
        let key = pair.split('=').next().unwrap_or("").to_ascii_lowercase();
        // `access_token`, `streamkey` and the like too.
        if SECRET_QUERY_KEYS.iter().any(|k| key.ends_with(k)) {
            let file = if protocol == NetworkProtocol::Srt { "passphrase_file" } else { "credentials_file" };
            return Some(format!("the URL holds a secret ({key}=); put it in {file}"));
        }
    }
    if authority.is_empty() || (protocol != NetworkProtocol::Srt && authority.starts_with(':')) {
        return Some(format!("{url:?} names no host"));
    }
    None
}

/// What is wrong with a camera's ONVIF device service URL, if anything.
fn onvif_url_problem(url: &str) -> Option<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some(format!("{url:?} is not a URL: it must start with http://"));
    };
    if scheme != "http" && scheme != "https" {
        return Some(format!("an ONVIF service is reached by http:// or https://, not {scheme}://"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\') {
        return Some("the URL contains a space, a quote or a backslash".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Some("the URL holds credentials (user@ or user:password@); put them in credentials_file".into());
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Some(format!("{url:?} names no host"));
    }
    None
}

/// Camera `i`; `before` are the cameras listed ahead of it (a role is shown by one camera).
fn validate_camera(p: &mut Problems, names: &mut HashSet<String>, before: &[Camera], i: usize, cam: &Camera) {
    let k = |field: &str| format!("camera[{i}].{field}");
    p.name(k("name"), &cam.name);
    p.unique(names, k("name"), &cam.name);
    if let Some(label) = &cam.label {
        p.text(k("label"), label);
    }
    p.range(k("width"), cam.width, 160, 3840);
    p.range(k("height"), cam.height, 120, 2160);
    if !cam.width.is_multiple_of(2) || !cam.height.is_multiple_of(2) {
        p.add(k("width"), "width and height must be even for H.264 (4:2:0)");
    }
    p.range(k("fps"), cam.fps, 1, 60);
    for role in &cam.roles {
        if let Some(other) = before.iter().find(|c| c.roles.contains(role)) {
            p.add(k("roles"), format!("{role} is already shown by camera {:?}", other.name));
        }
    }
    match cam.source {
        CameraSource::Sim => {
            if cam.device.is_some() {
                p.add(k("device"), "a sim camera has no device; remove the key or set source = \"v4l2\"");
            }
        }
        CameraSource::V4l2 => match &cam.device {
            None => {
                p.add(k("device"), "missing: a v4l2 camera needs device = \"/dev/videoN\" (see `courtbox devices`)")
            }
            Some(dev) if !dev.starts_with("/dev/") || dev.contains(['"', ' ', '!']) => {
                p.add(k("device"), format!("{dev:?} is not a device path under /dev/"))
            }
            Some(_) => {}
        },
    }
}

/// Audio device `i` and its microphones.
fn validate_audio_device(p: &mut Problems, names: &mut HashSet<String>, i: usize, dev: &AudioDevice) {
    let k = |field: &str| format!("audio_device[{i}].{field}");
    p.name(k("name"), &dev.name);
    p.unique(names, k("name"), &dev.name);
    if ![8000, 16000, 32000, 44100, 48000].contains(&dev.sample_rate) {
        p.add(
            k("sample_rate"),
            format!("{} Hz is not supported: use 8000, 16000, 32000, 44100 or 48000", dev.sample_rate),
        );
    }
    p.range(k("channels"), dev.channels, 1, 32);
    match (dev.source, &dev.device) {
        (AudioSourceKind::Sim, Some(_)) => p.add(k("device"), "a sim audio device has no device; remove the key"),
        (AudioSourceKind::Alsa, None) => {
            p.add(k("device"), "missing: an alsa device needs device = \"hw:CARD=...,DEV=0\" (see `courtbox devices`)")
        }
        (_, Some(d)) if d.is_empty() || d.contains(['"', ' ', '!', '\\']) => {
            p.add(k("device"), format!("{d:?} contains characters a device name cannot have"))
        }
        _ => {}
    }
    if dev.mics.is_empty() {
        p.add(k("mic"), "an audio device needs at least one [[audio_device.mic]]");
    }
    let mut channels = HashSet::new();
    for (j, mic) in dev.mics.iter().enumerate() {
        validate_mic(p, names, &mut channels, (i, j), dev, mic);
    }
}

/// Microphone `j` of audio device `i`; `channels` are those its device's earlier
/// microphones use.
fn validate_mic(
    p: &mut Problems,
    names: &mut HashSet<String>,
    channels: &mut HashSet<u32>,
    (i, j): (usize, usize),
    dev: &AudioDevice,
    mic: &Microphone,
) {
    let k = |field: &str| format!("audio_device[{i}].mic[{j}].{field}");
    p.name(k("name"), &mic.name);
    p.unique(names, k("name"), &mic.name);
    if let Some(label) = &mic.label {
        p.text(k("label"), label);
    }
    if let Some(lang) = &mic.language
        && !crate::session::LANGUAGES.contains(&lang.as_str())
    {
        p.add(k("language"), format!("{lang:?} is not one of kk, ru, en, auto"));
    }
    if mic.channel < 1 || mic.channel > dev.channels {
        p.add(
            k("channel"),
            format!("channel {} does not exist: the device has channels 1 to {}", mic.channel, dev.channels),
        );
    } else if !channels.insert(mic.channel) {
        p.add(k("channel"), format!("channel {} is already used by another microphone of this device", mic.channel));
    }
    if dev.source != AudioSourceKind::Sim && (mic.sim_audio.is_some() || mic.sim_tone_hz.is_some()) {
        p.add(k("sim_audio"), "sim_audio and sim_tone_hz apply only to sim devices");
    }
    if let Some(file) = &mic.sim_audio
        && (file.contains('/') || file.is_empty())
    {
        p.add(k("sim_audio"), format!("{file:?} must be a plain file name inside sim.audio_dir"));
    }
    if let Some(hz) = mic.sim_tone_hz {
        p.range(k("sim_tone_hz"), hz, 50, 8000);
    }
}
