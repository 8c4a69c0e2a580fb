//! Network sources (RTSP cameras, SRT and RTMP remote participants): the settings their
//! receiving element gets after the description is parsed (URL, transport, secrets read from
//! their files), what each stream the sender offers turned out to be, and why a link failed,
//! in words for the gap record and status. Why a link failed is decided by the kind of the
//! GStreamer error and by what the sender offered, never by an error's text.

use super::DeviceShared;
use super::plan::{NETWORK_DEMUX, NETWORK_SOURCE, NetworkPlan};
use crate::config::{NetworkProtocol, NetworkVideoCodec, RtspTransport, SourceKind};
use crate::integrity::{SenderTiming, TimingBasis};
use gst::prelude::*;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why a network source stopped delivering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkFault {
    /// Nothing of `what` arrived for this long (a dropped link, a sender that stopped
    /// talking); `ever`: whether anything had arrived on this connection.
    NoData { what: Stream, for_: Duration, ever: bool },
    /// A picture without a keyframe for this long: nothing of it can be recorded, and the
    /// muxer would hold every frame in memory meanwhile.
    NoKeyframe { for_: Duration },
    /// A frame larger than any camera sends ([`super::pipeline::MAX_FRAME_BYTES`]).
    Oversized,
    /// The server or camera could not be reached or refused the connection.
    Unreachable { protocol: NetworkProtocol },
    /// The connection was lost while receiving.
    Lost,
    /// The camera or server refused the credentials (RTSP 401).
    Unauthorized { protocol: NetworkProtocol },
    /// Nothing is served at that URL (RTSP 404, no such stream).
    NotFound { protocol: NetworkProtocol },
    /// The sender sends a codec the profile does not expect.
    WrongCodec { expected: NetworkVideoCodec, offered: Vec<String> },
    /// The sender ended the stream.
    Ended,
    /// The secret file could not be read (its message names the file, never the secret).
    Secret(String),
    /// Anything else GStreamer reported, as it reported it.
    Other(String),
}

impl NetworkFault {
    /// A fault that retrying soon will not cure: wrong credentials or passphrase, a wrong
    /// path or codec, an unreadable secret. Retried every 30 s rather than every second, so
    /// that a camera that locks an account after failed logins is not locked by the box.
    pub fn is_lasting(&self) -> bool {
        matches!(
            self,
            NetworkFault::Unauthorized { .. }
                | NetworkFault::NotFound { .. }
                | NetworkFault::WrongCodec { .. }
                | NetworkFault::Secret(_)
        )
    }
}

impl fmt::Display for NetworkFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkFault::NoData { what, for_, ever: true } => {
                write!(f, "network: no {what} for {:.1} s", for_.as_secs_f64())
            }
            NetworkFault::NoData { for_, ever: false, .. } => {
                write!(f, "network: nothing received within {:.1} s of connecting", for_.as_secs_f64())
            }
            NetworkFault::NoKeyframe { for_ } => write!(
                f,
                "network: no keyframe for {:.0} s (set the camera's keyframe interval, GOP, to 1 s)",
                for_.as_secs_f64()
            ),
            NetworkFault::Oversized => {
                f.write_str("network: a frame larger than 16 MiB arrived; not a camera's picture")
            }
            NetworkFault::Unreachable { protocol: NetworkProtocol::Srt } => f.write_str(
                "network: could not connect to the srt sender (refused, unreachable, or a wrong passphrase)",
            ),
            NetworkFault::Unreachable { protocol } => {
                write!(f, "network: could not connect to the {protocol} server (refused or unreachable)")
            }
            NetworkFault::Lost => f.write_str("network: the connection was lost"),
            NetworkFault::Unauthorized { protocol: NetworkProtocol::Rtsp } => {
                f.write_str("RTSP 401: the camera refused the user name or password of credentials_file")
            }
            NetworkFault::Unauthorized { protocol: NetworkProtocol::Srt } => {
                f.write_str("srt: the sender refused the passphrase (check passphrase_file)")
            }
            NetworkFault::Unauthorized { protocol } => {
                write!(f, "{protocol}: the server refused the credentials")
            }
            NetworkFault::NotFound { protocol: NetworkProtocol::Rtsp } => {
                f.write_str("RTSP 404: the camera serves no stream at that URL")
            }
            NetworkFault::NotFound { protocol } => write!(f, "{protocol}: the server has no stream at that URL"),
            NetworkFault::WrongCodec { expected, offered } => write!(
                f,
                "wrong codec: the source sends {} but the profile expects {} (set video.codec, or \
                 devices --probe --codec; change the camera's encoder setting; or have the box re-encode \
                 it with video.transcode_fps)",
                if offered.is_empty() { "no video".to_string() } else { offered.join(", ") },
                expected.label()
            ),
            NetworkFault::Ended => f.write_str("network: the stream ended (the sender closed it)"),
            NetworkFault::Secret(message) => write!(f, "secret file: {message}"),
            NetworkFault::Other(message) => write!(f, "network: {message}"),
        }
    }
}

/// Whether a stream the sender offers, as recorded by [`configure`], carries `codec`.
fn offers(offered: &[String], codec: NetworkVideoCodec) -> bool {
    let names: &[&str] = match codec {
        NetworkVideoCodec::H264 => &["H264", "video/x-h264"],
        NetworkVideoCodec::H265 => &["H265", "video/x-h265"],
    };
    offered.iter().any(|o| names.iter().any(|n| o.eq_ignore_ascii_case(n)))
}

/// What an error of a network source's pipeline means. `offered` are the video streams the
/// sender described (RTP encoding names or caps names).
/// `described`: the error as `describe_error` words it, for what no kind explains.
pub fn classify(plan: &NetworkPlan, error: &gst::glib::Error, described: String, offered: &[String]) -> NetworkFault {
    if let Some(expected) = plan.video_codec
        && !offered.is_empty()
        && !offers(offered, expected)
    {
        return NetworkFault::WrongCodec { expected, offered: offered.to_vec() };
    }
    let protocol = plan.protocol;
    if let Some(kind) = error.kind::<gst::ResourceError>() {
        return match kind {
            gst::ResourceError::NotAuthorized => NetworkFault::Unauthorized { protocol },
            gst::ResourceError::NotFound => NetworkFault::NotFound { protocol },
            gst::ResourceError::OpenRead | gst::ResourceError::OpenReadWrite | gst::ResourceError::OpenWrite => {
                NetworkFault::Unreachable { protocol }
            }
            gst::ResourceError::Read | gst::ResourceError::Write => NetworkFault::Lost,
            _ => NetworkFault::Other(described),
        };
    }
    if let Some(expected) = plan.video_codec
        && !offers(offered, expected)
        && let Some(gst::StreamError::CodecNotFound | gst::StreamError::WrongType | gst::StreamError::Format) =
            error.kind::<gst::StreamError>()
    {
        return NetworkFault::WrongCodec { expected, offered: offered.to_vec() };
    }
    NetworkFault::Other(described)
}

/// Whether a warning of a network source's pipeline is in fact a refusal that no waiting
/// cures: srtsrc reports a wrong passphrase as a warning and retries for ever.
pub fn is_refusal(warning: &gst::glib::Error) -> bool {
    warning.kind::<gst::ResourceError>() == Some(gst::ResourceError::NotAuthorized)
}

/// The kind of one stream of a network source, for what its silence is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Picture,
    Sound,
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Picture => "picture",
            Stream::Sound => "sound",
        })
    }
}

/// One stream of a network source as the watchdog sees it, at one instant.
#[derive(Debug, Clone, Copy)]
pub struct StreamState {
    pub what: Stream,
    /// Since data last arrived (or the connection began).
    pub silent: Duration,
    pub arrived: bool,
    /// Pictures: since the last keyframe (or the connection began).
    pub since_keyframe: Option<Duration>,
    pub oversized: bool,
}

/// A picture may go this long without a keyframe (a camera set up as recommended sends one
/// a second; 10 s is the longest GOP any camera ships with by default).
pub const KEYFRAME_LIMIT: Duration = Duration::from_secs(10);

/// Whether a network source must be reconnected, and why. `stall`: its `stall_ms`.
/// `waits_for_sender`: an SRT listener, which waits as long as it takes for its sender to
/// dial in; once connected, it is held to the same rules as the others.
pub fn watchdog(streams: &[StreamState], stall: Duration, waits_for_sender: bool) -> Option<NetworkFault> {
    let connected = streams.iter().any(|s| s.arrived);
    for s in streams {
        if s.oversized {
            return Some(NetworkFault::Oversized);
        }
        if s.silent >= stall && (connected || !waits_for_sender) {
            // Named by the threshold, not the instant it was noticed: the same outage reads
            // the same at every try.
            return Some(NetworkFault::NoData { what: s.what, for_: stall, ever: connected });
        }
        if s.arrived
            && let Some(since) = s.since_keyframe
            && since >= KEYFRAME_LIMIT
        {
            return Some(NetworkFault::NoKeyframe { for_: KEYFRAME_LIMIT });
        }
    }
    None
}

/// Reads a secret file for a source; the error names the file and never its content. Only
/// the line end is removed: spaces may belong to a passphrase.
fn read_secret(path: &Path) -> Result<String, NetworkFault> {
    crate::base::read_secret_file(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| NetworkFault::Secret(format!("{}: {e}", path.display())))
}

/// Host and TCP port a network source dials (RTSP's control connection, RTMP), for the
/// supervisor to see when a lost link is back; none for SRT (UDP, and a listener dials nobody).
pub fn dial_target(plan: &NetworkPlan) -> Option<(String, u16)> {
    let default_port = match plan.protocol {
        NetworkProtocol::Rtsp => 554,
        NetworkProtocol::Rtmp => 1935,
        NetworkProtocol::Srt => return None,
    };
    let url = reqwest::Url::parse(&plan.url).ok()?;
    let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port().unwrap_or(match url.scheme() {
        "rtsps" => 322,
        "rtmps" => 443,
        _ => default_port,
    });
    Some((host, port))
}

/// `user:password`, as a credentials file holds them.
fn user_and_password<'a>(secret: &'a str, path: &Path) -> Result<(&'a str, &'a str), String> {
    secret.split_once(':').ok_or_else(|| format!("secret file: {}: must hold user:password", path.display()))
}

/// SRT accepts passphrases of 10 to 79 characters; anything else is refused at connection
/// with a message that does not say why.
fn check_passphrase(passphrase: &str, path: &Path) -> Result<(), String> {
    let n = passphrase.chars().count();
    if (10..=79).contains(&n) {
        Ok(())
    } else {
        Err(format!("secret file: {}: an SRT passphrase has 10 to 79 characters, this one {n}", path.display()))
    }
}

/// The most an RTSP camera's sender reports may move its picture from its arrival time.
pub const TIMING_CORRECTION_LIMIT: Duration = Duration::from_secs(1);
/// How fast that correction is eased in, per frame.
pub const TIMING_CORRECTION_STEP: Duration = Duration::from_millis(2);

/// Gives the receiving element its URL, transport and secret, and notes the streams the
/// sender offers as they appear.
pub fn configure(pipeline: &gst::Pipeline, plan: &NetworkPlan, device: &Arc<DeviceShared>) -> Result<(), String> {
    let source = pipeline.by_name(NETWORK_SOURCE).ok_or("no network source element")?;
    let secret = plan.secret_file.as_deref().map(read_secret).transpose().map_err(|e| e.to_string())?;
    match plan.protocol {
        NetworkProtocol::Rtsp => {
            source.set_property("location", &plan.url);
            source.set_property_from_str(
                "protocols",
                match plan.transport {
                    RtspTransport::Tcp => "tcp",
                    RtspTransport::Udp => "udp",
                },
            );
            // Give up on a connection attempt or a silent link after the stall time (µs),
            // so that the supervisor reconnects rather than the element waiting 20 s.
            let micros = plan.stall.as_micros() as u64;
            source.set_property("tcp-timeout", micros);
            source.set_property("timeout", micros);
            // The camera's clock, not the arrival: once its first RTCP sender report maps its
            // RTP time to NTP, each frame is placed at its capture instant on the box's clock,
            // so the camera's encoder delay (50-300 ms on real cameras) is taken out. Until
            // then, and for a camera without sender reports, arrival time. The correction is
            // eased in by at most 2 ms per frame, never a jump back in the record; rtpbin does
            // not apply one beyond 1 s (that camera's clock is wrong, not its encoder) or one
            // that would place frames later than they arrived, and keeps the last it applied.
            source.set_property("ntp-sync", true);
            source.set_property("max-ts-offset", TIMING_CORRECTION_LIMIT.as_nanos() as i64);
            source.set_property("max-ts-offset-adjustment", TIMING_CORRECTION_STEP.as_nanos() as u64);
            if let (Some(secret), Some(path)) = (secret, &plan.secret_file) {
                let (user, password) = user_and_password(&secret, path)?;
                source.set_property("user-id", user);
                source.set_property("user-pw", password);
            }
        }
        NetworkProtocol::Srt => {
            source.set_property("uri", &plan.url);
            if let (Some(secret), Some(path)) = (secret, &plan.secret_file) {
                check_passphrase(&secret, path)?;
                source.set_property("passphrase", secret);
            }
        }
        NetworkProtocol::Rtmp => {
            source.set_property("location", &plan.url);
            if let (Some(secret), Some(path)) = (secret, &plan.secret_file) {
                let (user, password) = user_and_password(&secret, path)?;
                source.set_property("username", user);
                source.set_property("password", password);
            }
        }
    }
    device.offered.lock().clear();
    device.jitterbuffers.lock().clear();
    if plan.protocol == NetworkProtocol::Rtsp {
        // Each RTP stream gets a jitter buffer inside rtspsrc's rtpbin; their counters are
        // the link's packet loss and jitter (see `rtp_statistics`).
        let shared = device.clone();
        source.connect("new-manager", false, move |args| {
            let rtpbin = args.get(1)?.get::<gst::Element>().ok()?;
            let shared = shared.clone();
            rtpbin.connect("new-jitterbuffer", false, move |args| {
                if let Some(jitterbuffer) = args.get(1).and_then(|a| a.get::<gst::Element>().ok()) {
                    // A sender that keeps changing its SSRC makes a buffer each time: keep
                    // the live ones, and never more than a few.
                    let mut buffers = shared.jitterbuffers.lock();
                    buffers.retain(|w| w.upgrade().is_some());
                    if buffers.len() < MAX_JITTERBUFFERS {
                        buffers.push(jitterbuffer.downgrade());
                    }
                }
                None
            });
            None
        });
    }
    // The streams the sender describes, whether or not they link: what a wrong codec says.
    let announcer = pipeline.by_name(NETWORK_DEMUX).unwrap_or(source);
    let shared = device.clone();
    announcer.connect_pad_added(move |_, pad| {
        let Some(caps) = pad.current_caps().or_else(|| Some(pad.query_caps(None))) else { return };
        let Some(s) = caps.structure(0) else { return };
        let offered = match s.get::<&str>("media") {
            Ok("video") => s.get::<&str>("encoding-name").ok().map(str::to_string),
            Ok(_) => None,
            Err(_) => s.name().starts_with("video/").then(|| s.name().to_string()),
        };
        if let Some(offered) = offered {
            shared.offered.lock().push(offered);
        }
    });
    Ok(())
}

/// A source has a jitter buffer per RTP stream: picture and sound, and a few spare.
const MAX_JITTERBUFFERS: usize = 8;

/// The RTP counters of a network source's jitter buffers, summed over its streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpCounters {
    /// Packets passed on.
    pub pushed: u64,
    /// Packets that never arrived (or arrived too late to be used).
    pub lost: u64,
    /// Mean interarrival jitter, ns (the largest of the streams').
    pub jitter_ns: u64,
}

/// Reads the counters of a source's jitter buffers; `None` when it has none (TCP-less
/// protocols, or before the first packet).
pub fn rtp_statistics(device: &DeviceShared) -> Option<RtpCounters> {
    let buffers: Vec<gst::Element> = device.jitterbuffers.lock().iter().filter_map(|w| w.upgrade()).collect();
    if buffers.is_empty() {
        return None;
    }
    let mut total = RtpCounters::default();
    for jitterbuffer in buffers {
        let stats = jitterbuffer.property::<gst::Structure>("stats");
        total.pushed += stats.get::<u64>("num-pushed").unwrap_or(0);
        total.lost += stats.get::<u64>("num-lost").unwrap_or(0);
        total.jitter_ns = total.jitter_ns.max(stats.get::<u64>("avg-jitter").unwrap_or(0));
    }
    Some(total)
}

/// How one of the source's tracks (its picture, or its sound) is placed now. RTSP: rtpbin
/// sets each jitter buffer's `ts-offset` once it accepts a correction from the sender's
/// reports (0 until then, and for a sender without reports), and the buffer eases towards it;
/// the property is the offset applied. Each track reads the buffer of its own media (a
/// camera's sound may have far less encoder delay than its picture), the newest one when the
/// sender changed its SSRC. SRT and RTMP: arrival, always.
pub fn sender_timing(device: &DeviceShared, kind: SourceKind) -> SenderTiming {
    let media = match kind {
        SourceKind::Video => "video",
        SourceKind::Audio => "audio",
    };
    let buffers: Vec<gst::Element> = device.jitterbuffers.lock().iter().filter_map(|w| w.upgrade()).collect();
    let of_media = |b: &&gst::Element| {
        b.static_pad("sink")
            .and_then(|p| p.current_caps())
            .and_then(|c| c.structure(0).and_then(|s| s.get::<String>("media").ok()))
            .is_some_and(|m| m == media)
    };
    match buffers.iter().rev().find(of_media).map(|b| b.property::<i64>("ts-offset")) {
        Some(offset) if offset != 0 => {
            SenderTiming { basis: TimingBasis::SenderClock, correction_ms: offset / 1_000_000 }
        }
        _ => SenderTiming { basis: TimingBasis::Arrival, correction_ms: 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(what: Stream, silent_ms: u64, arrived: bool) -> StreamState {
        StreamState {
            what,
            silent: Duration::from_millis(silent_ms),
            arrived,
            since_keyframe: (what == Stream::Picture).then(|| Duration::from_millis(silent_ms)),
            oversized: false,
        }
    }

    #[test]
    fn the_dialled_host_and_port_of_each_protocol() {
        let plan = |protocol, url: &str| NetworkPlan {
            protocol,
            url: url.into(),
            secret_file: None,
            transport: RtspTransport::Tcp,
            stall: Duration::from_secs(3),
            video_codec: None,
            waits_for_sender: false,
        };
        let target = |protocol, url| dial_target(&plan(protocol, url));
        assert_eq!(target(NetworkProtocol::Rtsp, "rtsp://10.0.0.2/s"), Some(("10.0.0.2".into(), 554)));
        assert_eq!(target(NetworkProtocol::Rtsp, "rtsp://cam.court:8554/s"), Some(("cam.court".into(), 8554)));
        assert_eq!(target(NetworkProtocol::Rtsp, "rtsps://[fd00::2]/s"), Some(("fd00::2".into(), 322)));
        assert_eq!(target(NetworkProtocol::Rtmp, "rtmp://gw/live/x"), Some(("gw".into(), 1935)));
        assert_eq!(target(NetworkProtocol::Srt, "srt://10.0.0.2:9000"), None);
    }

    #[test]
    fn the_watchdog_names_the_silent_stream_and_spares_a_waiting_listener() {
        let stall = Duration::from_secs(3);
        let picture = stream(Stream::Picture, 500, true);
        assert!(watchdog(&[picture, stream(Stream::Sound, 2_999, true)], stall, false).is_none());
        // The sound stops while the picture flows: the source is failing.
        let fault = watchdog(&[picture, stream(Stream::Sound, 3_000, true)], stall, false).unwrap();
        assert_eq!(fault.to_string(), "network: no sound for 3.0 s");
        // Nothing at all since connecting: a caller gives up, a listener waits on.
        let silent = [stream(Stream::Picture, 5_000, false)];
        let fault = watchdog(&silent, stall, false).unwrap();
        assert_eq!(fault.to_string(), "network: nothing received within 3.0 s of connecting");
        assert!(watchdog(&silent, stall, true).is_none());
        // Data, but never a keyframe.
        let mut deltas = stream(Stream::Picture, 40, true);
        deltas.since_keyframe = Some(KEYFRAME_LIMIT);
        assert!(watchdog(&[deltas], stall, false).unwrap().to_string().starts_with("network: no keyframe for 10 s"));
        let mut huge = picture;
        huge.oversized = true;
        assert_eq!(watchdog(&[huge], stall, true), Some(NetworkFault::Oversized));
    }

    #[test]
    fn secrets_are_read_as_written_and_checked() {
        let path = Path::new("/etc/courtbox/x");
        assert_eq!(user_and_password("clerk:pa:ss", path), Ok(("clerk", "pa:ss")));
        assert!(user_and_password("no-colon", path).unwrap_err().contains("must hold user:password"));
        assert!(check_passphrase(" ten chars ", path).is_ok());
        assert!(check_passphrase("short", path).unwrap_err().contains("10 to 79 characters, this one 5"));
    }

    #[test]
    fn a_wrong_codec_names_what_was_offered() {
        let expected = NetworkVideoCodec::H264;
        assert!(offers(&["H264".into()], expected));
        assert!(offers(&["video/x-h264".into()], expected));
        assert!(!offers(&["JPEG".into()], expected));
        let fault = NetworkFault::WrongCodec { expected, offered: vec!["JPEG".into()] };
        assert!(fault.to_string().starts_with("wrong codec: the source sends JPEG but the profile expects H.264"));
    }

    #[test]
    fn errors_are_classified_by_their_kind() {
        gst::init().unwrap();
        let plan = NetworkPlan {
            protocol: NetworkProtocol::Rtsp,
            url: "rtsp://127.0.0.1/x".into(),
            secret_file: None,
            transport: RtspTransport::Tcp,
            stall: Duration::from_secs(3),
            video_codec: Some(NetworkVideoCodec::H264),
            waits_for_sender: false,
        };
        let error = |e: gst::ResourceError| {
            classify(&plan, &gst::glib::Error::new(e, "whatever the element says"), String::new(), &["H264".into()])
        };
        assert_eq!(error(gst::ResourceError::NotAuthorized), NetworkFault::Unauthorized { protocol: plan.protocol });
        assert!(error(gst::ResourceError::NotAuthorized).to_string().starts_with("RTSP 401"));
        assert!(error(gst::ResourceError::NotFound).to_string().starts_with("RTSP 404"));
        assert_eq!(error(gst::ResourceError::OpenReadWrite), NetworkFault::Unreachable { protocol: plan.protocol });
        assert_eq!(error(gst::ResourceError::Read), NetworkFault::Lost);
        let read = gst::glib::Error::new(gst::ResourceError::Read, "x");
        assert!(matches!(classify(&plan, &read, String::new(), &["JPEG".into()]), NetworkFault::WrongCodec { .. }));
        assert!(is_refusal(&gst::glib::Error::new(gst::ResourceError::NotAuthorized, "x")));
        assert!(!is_refusal(&read));
    }
}
