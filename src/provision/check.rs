//! `courtbox check`, the technician's preflight before a hearing: configuration, real
//! signal from every source, disk, clock, central store, speech model. One verdict a line.

use crate::capture::elements::{self, Need};
use crate::capture::{CaptureRun, RunParams, SourceHealth, Templates, plan_devices};
use crate::config::{LoadedConfig, SourceKind};
use crate::upload::{Finding, Level};
use std::time::Duration;
use thiserror::Error;

/// Why the test recording of `check` could not start.
#[derive(Debug, Error)]
enum TestRecordingError {
    #[error("{0}")]
    Init(#[from] gst::glib::Error),
    #[error("{0}")]
    Capture(#[from] crate::capture::CaptureError),
}

/// Runs every check. `signal_for`: how long sources are recorded to judge their signal.
pub fn preflight(cfg: &LoadedConfig, signal_for: Duration) -> Vec<Finding> {
    let mut lines = vec![Finding::new(
        "configuration",
        Level::Ok,
        format!(
            "{} valid: court {}, room {}, profile {} with {} sources",
            cfg.path.display(),
            cfg.config.court,
            cfg.config.room,
            cfg.profile.name,
            cfg.profile.sources().len()
        ),
    )];
    lines.extend(gstreamer_elements(Some(cfg)));
    lines.extend(signal(cfg, signal_for));
    lines.push(disk(cfg));
    lines.push(clock());
    lines.push(timestamp_authority(cfg));
    lines.extend(crate::upload::check_store(cfg));
    lines.extend(super::network::check_network(cfg));
    lines.push(model(cfg));
    lines.extend(caption_languages(cfg));
    lines
}

/// The TSA of `[witness]`: its pinned certificate readable, a token it issues now verifying
/// against the pin, and the box clock within the tolerance of the TSA's.
fn timestamp_authority(cfg: &LoadedConfig) -> Finding {
    const ITEM: &str = "timestamp authority";
    let w = &cfg.config.witness;
    let (Some(url), Some((cert, ca))) = (&w.tsa_url, cfg.tsa_paths()) else {
        return Finding::new(
            ITEM,
            Level::Warn,
            "none configured ([witness] tsa_url): nothing outside the box attests when the record was made".into(),
        );
    };
    let pin = match crate::witness::tsa::TsaPin::load(&cert, &ca) {
        Ok(p) => p,
        Err(e) => return Finding::new(ITEM, Level::Fail, format!("the pinned certificate: {e}")),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return Finding::new(ITEM, Level::Fail, format!("cannot start a runtime: {e}")),
    };
    let probe = format!("courtbox check {}", crate::base::WallTime::now());
    let asked = crate::base::WallTime::now();
    let timeout = Duration::from_millis(w.tsa_timeout_ms.into());
    let token = match runtime.block_on(crate::witness::tsa::request_token(url, probe.as_bytes(), timeout)) {
        Ok(t) => t,
        Err(e) => return Finding::new(ITEM, Level::Fail, format!("{url}: {e}")),
    };
    let answered = crate::base::WallTime::now();
    match crate::witness::tsa::verify_token(&token, probe.as_bytes(), &pin) {
        Err(e) => Finding::new(ITEM, Level::Fail, format!("{url} answered with a token the pin refuses: {e}")),
        Ok(tsa_time) => {
            // The TSA's time must fall between asking and answering, give or take the tolerance.
            let tolerance = i128::from(w.clock_tolerance_seconds) * 1_000_000_000;
            let ahead = asked.since(tsa_time);
            let behind = tsa_time.since(answered);
            if ahead > tolerance || behind > tolerance {
                let off = ahead.max(behind) as f64 / 1e9;
                let dir = if ahead > tolerance { "ahead of" } else { "behind" };
                Finding::new(
                    ITEM,
                    Level::Fail,
                    format!(
                        "the box clock is {off:.1} s {dir} TSA {} (tolerance {} s): fix NTP",
                        pin.name(),
                        w.clock_tolerance_seconds
                    ),
                )
            } else {
                Finding::new(
                    ITEM,
                    Level::Ok,
                    format!(
                        "{} answers in {} ms; box clock agrees with it",
                        pin.name(),
                        answered.since(asked) / 1_000_000
                    ),
                )
            }
        }
    }
}

/// Every GStreamer element courtbox uses, present or not; each missing one names the
/// Debian package that provides it. With a configuration, a missing element fails only if
/// this box needs it (its devices, the recording core, a configured broadcast) and warns
/// otherwise; without one (`check --elements`, as `scripts/setup` runs it) any missing
/// element fails.
pub fn gstreamer_elements(cfg: Option<&LoadedConfig>) -> Vec<Finding> {
    const ITEM: &str = "gstreamer elements";
    if let Err(e) = gst::init() {
        return vec![Finding::new(ITEM, Level::Fail, format!("GStreamer does not initialise: {e}"))];
    }
    // Elements this box's own device pipelines name (also those of overriding templates).
    let mut planned: Vec<String> = Vec::new();
    if let Some(cfg) = cfg {
        let templates = Templates::new(cfg.pipelines_dir.clone());
        match plan_devices(&cfg.profile, &templates, &cfg.sim_audio_dir, cfg.config.stt.enabled) {
            Ok(plans) => {
                planned = plans.iter().flat_map(|p| elements::factories_in(&p.description)).collect();
                planned.sort_unstable();
                planned.dedup();
            }
            Err(e) => {
                return vec![Finding::new(ITEM, Level::Fail, format!("the device pipelines cannot be made: {e}"))];
            }
        }
    }
    let broadcast = cfg.is_some_and(|c| !c.config.broadcast.outputs.is_empty());
    let needed = |name: &str, need: Need| {
        cfg.is_none()
            || need == Need::Recording
            || (need == Need::Broadcast && broadcast)
            || planned.iter().any(|p| p == name)
    };
    let mut lines = Vec::new();
    for (element, missing) in elements::missing_of_all() {
        let level = if needed(element.name, element.need) { Level::Fail } else { Level::Warn };
        lines.push(Finding::new(element.name, level, format!("{missing}; needed by {}", element.need.describe())));
    }
    // A template the technician supplied may name an element courtbox does not know.
    let unknown: Vec<_> = planned
        .iter()
        .filter(|p| elements::package_of(p).is_none())
        .filter(|p| gst::ElementFactory::find(p).is_none())
        .map(|p| elements::Missing { element: p.clone(), package: None })
        .collect();
    for missing in unknown {
        lines.push(Finding::new(&missing.element, Level::Fail, format!("{missing}; named by a pipeline template")));
    }
    if lines.is_empty() {
        let version = gst::version_string();
        lines.push(Finding::new(
            ITEM,
            Level::Ok,
            format!("all {} elements courtbox uses are installed ({version})", elements::ELEMENTS.len()),
        ));
    }
    lines
}

fn signal(cfg: &LoadedConfig, window: Duration) -> Vec<Finding> {
    let daemon = crate::control::Client::from_config(cfg).and_then(|client| client.status());
    // A recording session has the devices: judge them from its live health instead.
    if let Ok(status) = &daemon
        && status.recording
    {
        let health: Vec<SourceHealth> = status.session.as_ref().map(|s| s.health.clone()).unwrap_or_default();
        let mut lines = judge(cfg, &health, "from the recording session in progress");
        for source in cfg.profile.network_sources.iter().filter(|s| s.onvif_url.is_some()) {
            lines.push(Finding::new(
                &format!("gop {}", source.name),
                Level::Ok,
                "not asked through ONVIF during a recording (a camera may restart its stream when its encoder changes)"
                    .to_string(),
            ));
        }
        return lines;
    }
    // A camera's encoder is changed only when no hearing can be recording: the daemon says it
    // is idle, or no daemon runs (its socket is not there; one that is there but refuses this
    // user is a daemon that cannot be asked). Asked again just before each change. Before the
    // test recording, so that it measures the GOP asked for.
    let asked: Vec<(Finding, bool)> = if daemon_idle(cfg) {
        let idle = || daemon_idle(cfg);
        cfg.profile.network_sources.iter().filter_map(|source| ask_for_short_gop(source, &idle)).collect()
    } else {
        let why = match &daemon {
            Err(e) => format!("ONVIF not asked: cannot tell whether a hearing is recording ({e})"),
            Ok(_) => "ONVIF not asked: a hearing started recording".to_string(),
        };
        let with_onvif = cfg.profile.network_sources.iter().filter(|s| s.onvif_url.is_some());
        with_onvif.map(|s| (Finding::new(&format!("gop {}", s.name), Level::Warn, why.clone()), false)).collect()
    };
    if asked.iter().any(|(_, changed)| *changed) {
        // Many cameras restart their encoder after a change: let it come back before measuring.
        std::thread::sleep(AFTER_A_GOP_CHANGE);
    }
    let mut gops: Vec<Finding> = asked.into_iter().map(|(finding, _)| finding).collect();
    match record_briefly(cfg, window) {
        Ok((health, errors)) => {
            let mut lines = judge(cfg, &health, &format!("in a {} s test recording", window.as_secs()));
            for (line, error) in lines.iter_mut().zip(&errors) {
                if line.level == Level::Fail
                    && let Some(e) = error
                {
                    line.message.push_str(&format!("; device error: {e}"));
                }
            }
            gops.append(&mut lines);
            gops
        }
        Err(e) => {
            gops.push(Finding::new("sources", Level::Fail, format!("cannot start the sources: {e}")));
            gops
        }
    }
}

/// True when no hearing can be recording: the daemon answers that it is not, or no daemon
/// runs (no socket at all).
fn daemon_idle(cfg: &LoadedConfig) -> bool {
    match crate::control::Client::from_config(cfg).and_then(|client| client.status()) {
        Ok(status) => !status.recording,
        Err(crate::control::ClientError::NotRunning { .. }) => !cfg.socket_path().exists(),
        Err(_) => false,
    }
}

/// How long `check` waits after a camera's GOP was changed before it measures the stream.
const AFTER_A_GOP_CHANGE: Duration = Duration::from_secs(3);

/// For an RTSP camera with an `onvif_url`: asks it for one keyframe a second; true with the
/// finding when the camera's encoder was changed. A camera that refuses records all the same,
/// cut at its own keyframes: a warning, not a failure.
fn ask_for_short_gop(source: &crate::config::NetworkSource, may_change: &dyn Fn() -> bool) -> Option<(Finding, bool)> {
    use crate::capture::onvif::{self, GopChange};
    let device_url = source.onvif_url.as_deref()?;
    let item = format!("gop {}", source.name);
    let (key, file) = match (&source.onvif_credentials_file, &source.credentials_file) {
        (Some(file), _) => ("onvif_credentials_file", Some(file)),
        (None, file) => ("credentials_file", file.as_ref()),
    };
    let not_asked =
        |why: String| Some((Finding::new(&item, Level::Warn, format!("ONVIF not asked: {key}: {why}")), false));
    let secret = match file.map(|f| crate::base::read_secret_file(f)).transpose() {
        Ok(secret) => secret.map(|s| s.trim_end_matches(['\n', '\r']).to_string()),
        Err(e) => return not_asked(e.to_string()),
    };
    let login = match secret.as_deref().map(|s| s.split_once(':')) {
        None => None,
        Some(Some(login)) => Some(login),
        Some(None) => return not_asked("must hold user:password".into()),
    };
    let camera = onvif::Camera { device_url, login, rtsp_url: &source.url, may_change };
    let seconds = |frames: u32, fps: u32| f64::from(frames) / f64::from(fps.max(1));
    Some(match onvif::ask_for_short_gop(&camera, onvif::SHORT_GOP) {
        Ok(GopChange::AlreadyShort { frames, fps }) => {
            let text = format!(
                "ONVIF: a keyframe every {frames} frames at {fps} fps ({:.1} s), as asked",
                seconds(frames, fps)
            );
            (Finding::new(&item, Level::Ok, text), false)
        }
        Ok(GopChange::Shortened { from, to, fps }) => {
            let text = format!(
                "ONVIF: the camera now sends a keyframe every {to} frames ({:.1} s), was every {from} ({:.1} s)",
                seconds(to, fps),
                seconds(from, fps)
            );
            (Finding::new(&item, Level::Ok, text), true)
        }
        Err(e) => {
            let whose = match e {
                onvif::OnvifError::NotAuthorized(_) | onvif::OnvifError::HttpDigestOnly => {
                    format!(" (the login of {key})")
                }
                _ => String::new(),
            };
            let text = format!(
                "ONVIF: {e}{whose}; segments are cut at the camera's own keyframes (set its GOP to 1 s by hand)"
            );
            (Finding::new(&item, Level::Warn, text), false)
        }
    })
}

/// Records every device for `window` into a scratch spool (deleted after) and returns the
/// signal health of each source, and per source the last device error if any.
fn record_briefly(
    cfg: &LoadedConfig,
    window: Duration,
) -> Result<(Vec<SourceHealth>, Vec<Option<String>>), TestRecordingError> {
    let templates = Templates::new(cfg.pipelines_dir.clone());
    let start_timeout = Duration::from_millis(cfg.config.recording.start_timeout_ms.into());
    let scratch = cfg.data_dir.join(format!("preflight-{}", std::process::id()));
    test_recording(&cfg.profile, &templates, &cfg.sim_audio_dir, &scratch, start_timeout, window)
}

/// A test recording of `profile`'s devices for `window` into `scratch` (deleted after): the
/// signal health of each source, and per source the last device error if any.
fn test_recording(
    profile: &crate::config::HwProfile,
    templates: &Templates,
    sim_audio_dir: &std::path::Path,
    scratch: &std::path::Path,
    start_timeout: Duration,
    window: Duration,
) -> Result<(Vec<SourceHealth>, Vec<Option<String>>), TestRecordingError> {
    gst::init()?;
    let plans = plan_devices(profile, templates, sim_audio_dir, false)?;
    let (tx, rx) = std::sync::mpsc::channel();
    // Nothing of a test recording is kept: its events and files are dropped.
    let drain = std::thread::spawn(move || rx.into_iter().for_each(drop));
    let params = RunParams {
        session_dir: scratch.to_path_buf(),
        media_offset: crate::base::MediaTime::ZERO,
        segment: Duration::from_secs(3600),
        next_seq: Default::default(),
        start_timeout,
        sync_interval: Duration::from_secs(1),
        tap: None,
        encoded_tap: None,
        video_paused: None,
        on_disk_full: None,
        alarm_after: Default::default(),
    };
    let run = CaptureRun::start(plans, params, std::sync::Arc::new(crate::base::RealClocks::new()), tx)?;
    std::thread::sleep(window);
    let health = run.health();
    let devices = run.devices();
    run.stop();
    let _ = drain.join();
    let _ = std::fs::remove_dir_all(scratch);
    let errors = profile
        .sources()
        .iter()
        .map(|s| devices.iter().find(|d| d.sources.contains(&s.name)).and_then(|d| d.last_error.clone()))
        .collect();
    Ok((health, errors))
}

/// What `courtbox devices --probe URL` found at a network source's URL.
#[derive(Debug)]
pub enum Probed {
    /// The picture arrived: what it is (codec, size, rate, GOP, bitrate) and how it looks.
    Received(String),
    /// Nothing usable arrived; why.
    Failed(String),
}

/// Connects to a network source for `window` as a recording would (same pipeline, same
/// secret rules) and says what it sends. `secret_file`: `user:password` (RTSP, RTMP) or
/// the SRT passphrase. Nothing is kept.
pub fn probe_network(
    url: &str,
    secret_file: Option<&std::path::Path>,
    window: Duration,
    codec: crate::config::NetworkVideoCodec,
) -> Result<Probed, String> {
    use crate::config::{NetworkProtocol, NetworkSource, NetworkVideo};
    let protocol =
        NetworkProtocol::of_url(url).ok_or_else(|| format!("{url:?}: not an rtsp://, srt:// or rtmp:// URL"))?;
    if let Some(problem) = crate::config::network_url_problem(protocol, url) {
        return Err(problem);
    }
    let secret = secret_file.map(|p| p.to_path_buf());
    let source = NetworkSource {
        name: "probe".into(),
        protocol,
        url: url.to_string(),
        credentials_file: if protocol == NetworkProtocol::Srt { None } else { secret.clone() },
        passphrase_file: if protocol == NetworkProtocol::Srt { secret } else { None },
        transport: Default::default(),
        onvif_url: None,
        onvif_credentials_file: None,
        stall_ms: 3000,
        video: Some(NetworkVideo {
            name: "picture".into(),
            label: None,
            codec,
            transcode_fps: None,
            roles: Vec::new(),
        }),
        audio: None,
    };
    let profile = crate::config::HwProfile {
        name: "probe".into(),
        description: String::new(),
        video: Default::default(),
        audio: Default::default(),
        cameras: Vec::new(),
        audio_devices: Vec::new(),
        network_sources: vec![source],
    };
    // A folder of our own (created, not found: another user cannot prepare it), 0700.
    let scratch = std::env::temp_dir().join(format!("courtbox-probe-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    }
    let (health, errors) =
        test_recording(&profile, &Templates::default(), &scratch, &scratch, Duration::from_secs(10), window)
            .map_err(|e| e.to_string())?;
    // A picture counts once something arrived: a source that failed after connecting (a
    // wrong codec) has a stream entry and no buffers, and its error is the answer.
    let picture = health.iter().find(|h| h.source == "picture" && h.stream.is_some() && h.buffers > 0);
    Ok(match (picture, errors.into_iter().flatten().next()) {
        (Some(h), _) => Probed::Received(format!(
            "{}{}",
            h.mean_luma
                .map(|l| format!("picture with mean luma {l:.0}"))
                .unwrap_or_else(|| "no decoded keyframe yet".into()),
            h.stream.as_ref().map(describe_received).unwrap_or_default()
        )),
        (None, Some(error)) => Probed::Failed(error),
        (None, None) => Probed::Failed(format!("nothing received in {} s", window.as_secs())),
    })
}

/// One line per source of the profile, in its order.
fn judge(cfg: &LoadedConfig, health: &[SourceHealth], how: &str) -> Vec<Finding> {
    cfg.profile
        .sources()
        .iter()
        .map(|s| {
            let item = format!("signal {}", s.name);
            let Some(h) = health.iter().find(|h| h.source == s.name && h.buffers > 0) else {
                return Finding::new(&item, Level::Fail, format!("no data {how}: device missing, busy or failing"));
            };
            match s.kind {
                SourceKind::Video if h.black => Finding::new(
                    &item,
                    Level::Fail,
                    format!(
                        "picture is black (mean luma {:.0}) {how}: lens covered, camera off or wrong input?",
                        h.mean_luma.unwrap_or(0.0)
                    ),
                ),
                SourceKind::Video if h.frozen => {
                    Finding::new(&item, Level::Fail, format!("picture is frozen {how}: camera hung or a still image?"))
                }
                SourceKind::Video => Finding::new(
                    &item,
                    Level::Ok,
                    format!(
                        "moving picture, mean luma {:.0} ({how}){}",
                        h.mean_luma.unwrap_or(0.0),
                        h.stream.as_ref().map(describe_received).unwrap_or_default()
                    ),
                ),
                SourceKind::Audio if h.silent || h.level_dbfs.is_none() => Finding::new(
                    &item,
                    Level::Fail,
                    format!(
                        "no signal (level {:.0} dBFS) {how}: microphone unplugged, switched off or muted?",
                        h.level_dbfs.unwrap_or(-150.0)
                    ),
                ),
                SourceKind::Audio => {
                    Finding::new(&item, Level::Ok, format!("level {:.0} dBFS ({how})", h.level_dbfs.unwrap_or(-150.0)))
                }
            }
        })
        .collect()
}

/// What a network source sends, for its signal line: `; received H.264 High 1920x1080
/// 25 fps, a keyframe every 1.0 s, 2,980 kbit/s`.
fn describe_received(stream: &crate::capture::StreamHealth) -> String {
    let mut text = format!("; received {}", stream.format);
    if let Some(gop) = stream.keyframe_interval_ms {
        text.push_str(&format!(", a keyframe every {:.1} s", gop as f64 / 1000.0));
    }
    if let Some(kbps) = stream.bitrate_kbps {
        text.push_str(&format!(", {kbps:.0} kbit/s"));
    }
    text
}

fn disk(cfg: &LoadedConfig) -> Finding {
    const ITEM: &str = "disk";
    let (free, _) = match crate::upload::free_space(&cfg.data_dir) {
        Ok(f) => f,
        Err(e) => return Finding::new(ITEM, Level::Fail, format!("{}: {e}", cfg.data_dir.display())),
    };
    let p = &cfg.profile;
    let kbps: u64 = p
        .sources()
        .iter()
        .map(|s| u64::from(if s.kind == SourceKind::Video { p.video.bitrate_kbps } else { p.audio.bitrate_kbps }))
        .sum();
    let hours = free as f64 * 8.0 / (kbps.max(1) as f64 * 1000.0) / 3600.0;
    let text = format!(
        "{:.1} GiB free in {}: about {hours:.0} hours of recording at {kbps} kbit/s",
        free as f64 / f64::from(1u32 << 30),
        cfg.data_dir.display()
    );
    let d = &cfg.config.disk;
    if free < d.critical_free_mib << 20 {
        Finding::new(ITEM, Level::Fail, format!("{text}; below disk.critical_free_mib: cameras would pause"))
    } else if free < d.warn_free_mib << 20 {
        Finding::new(ITEM, Level::Warn, format!("{text}; below disk.warn_free_mib"))
    } else {
        Finding::new(ITEM, Level::Ok, text)
    }
}

/// The kernel's NTP state: synchronised or not, and the estimated error.
fn clock() -> Finding {
    const ITEM: &str = "clock";
    // nix 0.31 wraps no adjtimex (nor clock_adjtime), so this stays a libc call.
    // SAFETY: timex is a plain C struct of integers, for which all-zero bytes are valid.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a live, exclusively borrowed timex for the whole call; with modes = 0
    // the kernel only reads its clock state into it and changes nothing.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return Finding::new(
            ITEM,
            Level::Warn,
            format!("cannot read the clock state: {}", std::io::Error::last_os_error()),
        );
    }
    let unsynchronised = state == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0;
    if unsynchronised {
        Finding::new(
            ITEM,
            Level::Warn,
            "not synchronised by NTP: wall times in the record may be off (media time is not affected); \
             check timedatectl and the network"
                .into(),
        )
    } else {
        Finding::new(ITEM, Level::Ok, format!("synchronised by NTP (estimated error {} ms)", tx.esterror / 1000))
    }
}

fn model(cfg: &LoadedConfig) -> Finding {
    const ITEM: &str = "speech model";
    if !cfg.config.stt.enabled {
        return Finding::new(ITEM, Level::Ok, "captions disabled (stt.enabled = false)".into());
    }
    let s = crate::stt::SttSettings::from_config(cfg);
    let Some(sha) = &s.model_sha256 else {
        return Finding::new(
            ITEM,
            Level::Fail,
            format!(
                "{} is not a pinned model: set stt.model_sha256 (sha256sum {})",
                s.model.display(),
                s.model.display()
            ),
        );
    };
    match crate::stt::models::check_file(&s.model, sha, &s.model_name) {
        Ok(()) => Finding::new(ITEM, Level::Ok, format!("{} present, SHA-256 verified", s.model.display())),
        Err(e) => Finding::new(ITEM, Level::Fail, format!("{e}; recording works, captions would not")),
    }
}

/// For each court language, whether the installed model may caption it live: a warning
/// where it may not (the audio is recorded; another model can transcribe it later).
fn caption_languages(cfg: &LoadedConfig) -> Vec<Finding> {
    if !cfg.config.stt.enabled {
        return Vec::new();
    }
    let capability = crate::stt::SttSettings::from_config(cfg).capability();
    ["kk", "ru", "en"]
        .into_iter()
        .map(|language| {
            let item = format!("captions {language}");
            match capability.allows(language) {
                Ok(()) => Finding::new(
                    &item,
                    Level::Ok,
                    format!("live captions with {} ({})", capability.model.name, capability.rating(language)),
                ),
                Err(withheld) => Finding::new(
                    &item,
                    Level::Warn,
                    format!("{withheld}; the audio is recorded, and a better model can transcribe it later"),
                ),
            }
        })
        .collect()
}
