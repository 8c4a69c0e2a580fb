//! ONVIF (Profile S, Media service ver10): asking an IP camera for a short GOP. A passed-through
//! picture can only be cut at the camera's keyframes, so the camera's keyframe interval is the
//! record's tolerance at every segment boundary and what a crash can cost; many cameras ship
//! with 2-4 s. `courtbox check` asks each RTSP camera that has an `onvif_url` for one keyframe
//! a second (GovLength = frame rate) before it measures what the camera sends.
//!
//! The exchange, all SOAP 1.2 over HTTP POST (ONVIF Core and Media specifications):
//! 1. `GetSystemDateAndTime` (no login): the camera's clock, so that the password digest's
//!    `Created` is within the camera's window however far its clock has drifted;
//! 2. `GetCapabilities` (Media): the media service's address (only its path is used: a camera
//!    behind NAT reports its own LAN address);
//! 3. `GetProfiles`, then `GetStreamUri` of each H.264 profile: the profile whose stream is the
//!    configured RTSP URL (same path and query);
//! 4. `GetVideoEncoderConfiguration` and its `Options` (the GovLength the camera accepts);
//! 5. `SetVideoEncoderConfiguration` with every field as read and only GovLength changed, then
//!    `GetVideoEncoderConfiguration` again: cameras are known to accept a Set and ignore it.
//!
//! Authentication is the WS-Security UsernameToken with a password digest, which every
//! Profile S camera accepts; a camera that insists on HTTP Digest (a 401) is reported as such.
//! The camera's RTSP sessions opened before the change may keep the old GOP: `check` measures
//! the stream after asking. The daemon never changes a camera: many cameras restart their
//! stream when the encoder changes, which would cut a hearing's recording.

use base64::Engine;
use serde::Deserialize;
use std::time::Duration;
use thiserror::Error;

/// The GOP asked for: one keyframe a second.
pub const SHORT_GOP: Duration = Duration::from_secs(1);
/// Each request's limit: a camera that does not answer in this time is reported, not awaited.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// The whole exchange's limit, however many profiles the camera lists.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);
/// Profiles asked for their stream (a camera has two to four).
const MAX_PROFILES: usize = 16;
/// An answer larger than this is not a camera's (a hostile or broken device); read no further.
const MAX_ANSWER: u64 = 256 << 10;
/// Elements nested deeper than this are not ONVIF (whose answers nest about 10 deep): the
/// deserializer recurses per level, so a hostile answer could otherwise exhaust the stack.
const MAX_DEPTH: usize = 64;
/// Camera text (fault reasons, stream paths) is cut to this many characters in a message.
const MAX_QUOTED: usize = 200;

const DEVICE_NS: &str = "http://www.onvif.org/ver10/device/wsdl";
const MEDIA_NS: &str = "http://www.onvif.org/ver10/media/wsdl";

/// Why the camera's GOP could not be set. Decided by kind: `check` words each for the
/// technician.
#[derive(Debug, Error)]
pub enum OnvifError {
    #[error("onvif_url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the camera took more than {} s to answer every call", EXCHANGE_TIMEOUT.as_secs())]
    TooSlow,
    #[error("the camera refused the user name or password ({0})")]
    NotAuthorized(String),
    #[error(
        "the camera refused the login and asks for HTTP Digest authentication, which courtbox does not speak: \
         check the login, or allow WS-UsernameToken on the camera"
    )]
    HttpDigestOnly,
    #[error("not changed: a hearing started recording meanwhile (a camera may restart its stream when changed)")]
    NotNow,
    #[error("the camera refused {action}: {fault}")]
    Fault { action: &'static str, fault: String },
    #[error("the camera's answer to {action} is not ONVIF: {detail}")]
    Malformed { action: &'static str, detail: String },
    #[error("no H.264 profile of the camera streams {path} (its profiles stream: {offered})")]
    NoProfile { path: String, offered: String },
    #[error("the camera accepted a GOP of {asked} frames but still reports {kept}")]
    Ignored { asked: u32, kept: u32 },
}

/// What the camera's GOP is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GopChange {
    /// Already at most the GOP asked for: nothing was changed.
    AlreadyShort {
        frames: u32,
        fps: u32,
    },
    Shortened {
        from: u32,
        to: u32,
        fps: u32,
    },
}

/// One camera's ONVIF device service, and what `check` knows of it.
pub struct Camera<'a> {
    /// `http://HOST[:PORT]/onvif/device_service`.
    pub device_url: &'a str,
    /// From the source's credentials file; none for a camera without a login.
    pub login: Option<(&'a str, &'a str)>,
    /// The source's RTSP URL (without credentials): which profile to change.
    pub rtsp_url: &'a str,
    /// Asked just before the camera is changed: false stops it (a hearing started recording).
    pub may_change: &'a dyn Fn() -> bool,
}

/// Asks the camera for a keyframe every `gop` (clamped to what it accepts). Blocking, for
/// `check` (never call it on an async runtime); at most [`EXCHANGE_TIMEOUT`].
pub fn ask_for_short_gop(camera: &Camera, gop: Duration) -> Result<GopChange, OnvifError> {
    let bad_url = |reason: String| OnvifError::BadUrl { url: camera.device_url.into(), reason };
    let device = reqwest::Url::parse(camera.device_url).map_err(|e| bad_url(e.to_string()))?;
    let mut session = Session::new(device, camera.login).map_err(|e| bad_url(e.to_string()))?;
    session.learn_clock()?;
    let media = session.media_service()?;
    let (profile, encoder) = session.profile_streaming(&media, camera.rtsp_url)?;
    let current = session.encoder(&media, &encoder)?;
    let (Some(rate), Some(h264)) = (&current.rate_control, &current.h264) else {
        return Err(OnvifError::Malformed {
            action: "GetVideoEncoderConfiguration",
            detail: "an H.264 configuration without RateControl or H264".into(),
        });
    };
    let fps = rate.frame_rate_limit / rate.encoding_interval.max(1);
    if fps < 2 {
        // 0 is "unlimited" on some cameras: a GovLength from it (or from 1 fps) would make
        // every frame a keyframe, and the camera would keep it.
        return Err(OnvifError::Malformed {
            action: "GetVideoEncoderConfiguration",
            detail: format!("a frame rate of {fps}: set the camera's frame rate and GOP by hand"),
        });
    }
    let range = session.gov_length_range(&media, &encoder, &profile);
    let target = gov_length_for(fps, gop, range);
    // A GovLength of 0 is a camera that does not say: it is set, not taken as short.
    if h264.gov_length != 0 && h264.gov_length <= target {
        return Ok(GopChange::AlreadyShort { frames: h264.gov_length, fps });
    }
    if !(camera.may_change)() {
        return Err(OnvifError::NotNow);
    }
    let from = h264.gov_length;
    let mut wanted = current.clone();
    wanted.h264.as_mut().expect("checked above").gov_length = target;
    session.call(&media, MEDIA_NS, "SetVideoEncoderConfiguration", &set_request(&wanted))?;
    let kept = session.encoder(&media, &encoder)?.h264.map_or(0, |h| h.gov_length);
    if kept != target {
        return Err(OnvifError::Ignored { asked: target, kept });
    }
    Ok(GopChange::Shortened { from, to: target, fps })
}

/// GovLength for one keyframe every `gop` at `fps`, within what the camera accepts; never
/// under 2 (every frame a keyframe). A range the camera leaves unset (0..0, 1..1) is ignored.
pub fn gov_length_for(fps: u32, gop: Duration, accepted: Option<(u32, u32)>) -> u32 {
    let frames = ((u64::from(fps) * gop.as_millis() as u64) / 1000).max(2) as u32;
    match accepted {
        Some((min, max)) if min <= max && max >= 2 => frames.clamp(min.max(2), max),
        _ => frames,
    }
}

/// The camera's HTTP endpoint and the offset of its clock.
struct Session<'a> {
    http: reqwest::blocking::Client,
    device: reqwest::Url,
    login: Option<(&'a str, &'a str)>,
    /// The camera's clock minus ours.
    clock_offset: time::Duration,
    /// When the whole exchange must be over.
    deadline: std::time::Instant,
}

impl<'a> Session<'a> {
    fn new(device: reqwest::Url, login: Option<(&'a str, &'a str)>) -> Result<Session<'a>, reqwest::Error> {
        crate::base::install_tls_provider();
        let http = reqwest::blocking::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let deadline = std::time::Instant::now() + EXCHANGE_TIMEOUT;
        Ok(Session { http, device, login, clock_offset: time::Duration::ZERO, deadline })
    }

    /// The camera's clock offset (asked without a login, as ONVIF allows); a camera that does
    /// not tell, or tells a date outside 1970-2100, is taken to be on time. Only a camera that
    /// cannot be reached at all is an error (every later call would wait too).
    fn learn_clock(&mut self) -> Result<(), OnvifError> {
        let device = self.device.clone();
        let answer = self.call_as(None, &device, DEVICE_NS, "GetSystemDateAndTime", "<tds:GetSystemDateAndTime/>");
        let utc = match answer {
            Err(e @ (OnvifError::Unreachable { .. } | OnvifError::TooSlow)) => return Err(e),
            Err(_) => None,
            Ok(body) => body.date.and_then(|d| d.system.utc),
        };
        let camera_now = utc.and_then(|u| u.to_offset_date_time()).filter(|t| (1970..=2100).contains(&t.year()));
        if let Some(camera_now) = camera_now {
            self.clock_offset = camera_now - time::OffsetDateTime::now_utc();
        }
        Ok(())
    }

    fn media_service(&self) -> Result<reqwest::Url, OnvifError> {
        let body = "<tds:GetCapabilities><tds:Category>Media</tds:Category></tds:GetCapabilities>";
        let answer = self.call(&self.device, DEVICE_NS, "GetCapabilities", body)?;
        let xaddr =
            answer.capabilities.and_then(|c| c.capabilities.media).map(|m| m.xaddr).ok_or_else(|| {
                OnvifError::Malformed { action: "GetCapabilities", detail: "no Media service".into() }
            })?;
        let reported = reqwest::Url::parse(xaddr.trim())
            .map_err(|e| OnvifError::Malformed { action: "GetCapabilities", detail: format!("Media XAddr: {e}") })?;
        let mut media = self.device.clone();
        media.set_path(reported.path());
        media.set_query(reported.query());
        Ok(media)
    }

    /// (profile token, video encoder configuration token) of the H.264 profile whose stream
    /// is `rtsp_url`.
    fn profile_streaming(&self, media: &reqwest::Url, rtsp_url: &str) -> Result<(String, String), OnvifError> {
        let wanted = path_and_query(rtsp_url);
        let answer = self.call(media, MEDIA_NS, "GetProfiles", "<trt:GetProfiles/>")?;
        let profiles = answer.profiles.map(|p| p.profiles).unwrap_or_default();
        let mut offered = Vec::new();
        for profile in profiles.into_iter().take(MAX_PROFILES) {
            let Some(encoder) = profile.video_encoder.filter(|v| v.encoding == "H264") else { continue };
            let body = format!(
                "<trt:GetStreamUri><trt:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream><tt:Transport>\
                 <tt:Protocol>RTSP</tt:Protocol></tt:Transport></trt:StreamSetup><trt:ProfileToken>{}</trt:ProfileToken>\
                 </trt:GetStreamUri>",
                escape(&profile.token)
            );
            let uri = self.call(media, MEDIA_NS, "GetStreamUri", &body)?.stream_uri.map(|s| s.media_uri.uri);
            let path = uri.as_deref().map(path_and_query).unwrap_or_default();
            if path == wanted {
                return Ok((profile.token, encoder.token));
            }
            offered.push(path);
        }
        Err(OnvifError::NoProfile { path: wanted, offered: quoted(&offered.join(", ")) })
    }

    fn encoder(&self, media: &reqwest::Url, token: &str) -> Result<VideoEncoderConfiguration, OnvifError> {
        let body = format!(
            "<trt:GetVideoEncoderConfiguration><trt:ConfigurationToken>{}</trt:ConfigurationToken>\
             </trt:GetVideoEncoderConfiguration>",
            escape(token)
        );
        let answer = self.call(media, MEDIA_NS, "GetVideoEncoderConfiguration", &body)?;
        answer.encoder.map(|e| e.configuration).ok_or_else(|| OnvifError::Malformed {
            action: "GetVideoEncoderConfiguration",
            detail: "no Configuration".into(),
        })
    }

    /// The GovLength range the camera accepts, if it says.
    fn gov_length_range(&self, media: &reqwest::Url, encoder: &str, profile: &str) -> Option<(u32, u32)> {
        let body = format!(
            "<trt:GetVideoEncoderConfigurationOptions><trt:ConfigurationToken>{}</trt:ConfigurationToken>\
             <trt:ProfileToken>{}</trt:ProfileToken></trt:GetVideoEncoderConfigurationOptions>",
            escape(encoder),
            escape(profile)
        );
        let answer = self.call(media, MEDIA_NS, "GetVideoEncoderConfigurationOptions", &body).ok()?;
        let range = answer.options?.options.h264?.gov_length_range?;
        Some((range.min, range.max))
    }

    /// One SOAP call with the camera's login; a fault or an error status is an error.
    fn call(&self, url: &reqwest::Url, ns: &str, action: &'static str, body: &str) -> Result<Body, OnvifError> {
        self.call_as(self.login, url, ns, action, body)
    }

    fn call_as(
        &self,
        login: Option<(&str, &str)>,
        url: &reqwest::Url,
        ns: &str,
        action: &'static str,
        body: &str,
    ) -> Result<Body, OnvifError> {
        let left = self.deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(OnvifError::TooSlow);
        }
        let security = login.map(|(user, password)| {
            let now = time::OffsetDateTime::now_utc();
            let created = now.checked_add(self.clock_offset).unwrap_or(now);
            let created = created.replace_nanosecond(0).unwrap_or(created);
            let created = created.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            username_token(user, password, &rand_nonce(), &created)
        });
        let envelope = envelope(security.as_deref().unwrap_or(""), body);
        let unreachable = |e: reqwest::Error| OnvifError::Unreachable { url: quoted(url.as_str()), reason: why(&e) };
        let mut response = self
            .http
            .post(url.clone())
            .timeout(left.min(REQUEST_TIMEOUT))
            .header("Content-Type", format!("application/soap+xml; charset=utf-8; action=\"{ns}/{action}\""))
            .body(envelope)
            .send()
            .map_err(unreachable)?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let digest =
                response.headers().get_all("www-authenticate").iter().any(|h| h.as_bytes().starts_with(b"Digest"));
            return Err(if digest { OnvifError::HttpDigestOnly } else { OnvifError::NotAuthorized("HTTP 401".into()) });
        }
        let too_long = || OnvifError::Malformed { action, detail: format!("an answer over {} KiB", MAX_ANSWER >> 10) };
        if response.content_length().is_some_and(|n| n > MAX_ANSWER) {
            return Err(too_long());
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut response, MAX_ANSWER + 1), &mut bytes)
            .map_err(|e| OnvifError::Unreachable { url: quoted(url.as_str()), reason: e.to_string() })?;
        if bytes.len() as u64 > MAX_ANSWER {
            return Err(too_long());
        }
        let text = String::from_utf8_lossy(&bytes);
        let parsed = match nesting_depth(&text) {
            Some(depth) if depth <= MAX_DEPTH => quick_xml::de::from_str::<Envelope>(&text).map_err(|e| e.to_string()),
            Some(depth) => Err(format!("elements nested {depth} deep")),
            None => Err("not well-formed XML".to_string()),
        };
        match parsed {
            Ok(Envelope { body: Body { fault: Some(fault), .. } }) => Err(fault.into_error(action)),
            Ok(Envelope { body }) if status.is_success() => Ok(body),
            Ok(_) => Err(OnvifError::Fault { action, fault: format!("HTTP {status}") }),
            Err(detail) if status.is_success() => Err(OnvifError::Malformed { action, detail: quoted(&detail) }),
            Err(_) => Err(OnvifError::Fault { action, fault: format!("HTTP {status}") }),
        }
    }
}

/// How deep the elements of `xml` nest, read without recursion; none if it is not well formed.
fn nesting_depth(xml: &str) -> Option<usize> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut depth, mut deepest) = (0usize, 0usize);
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(_) => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            quick_xml::events::Event::End(_) => depth = depth.checked_sub(1)?,
            quick_xml::events::Event::Eof => return Some(deepest),
            _ => {}
        }
    }
}

/// Text of the camera's, fit to quote in a line of `check`: control characters (a line break,
/// a terminal escape) become spaces, and it is cut to [`MAX_QUOTED`] characters.
fn quoted(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_QUOTED).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > MAX_QUOTED {
        out.push('…');
    }
    out
}

/// What went wrong with a request, in the words of its innermost cause ("Connection refused")
/// rather than reqwest's "error sending request".
fn why(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!(
            "no answer in time ({} s a call, {} s in all)",
            REQUEST_TIMEOUT.as_secs(),
            EXCHANGE_TIMEOUT.as_secs()
        );
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

fn rand_nonce() -> [u8; 16] {
    use ring::rand::SecureRandom;
    let mut nonce = [0u8; 16];
    // The system's random source failing is not something to go on without.
    ring::rand::SystemRandom::new().fill(&mut nonce).expect("the system random source");
    nonce
}

/// Path and query of a URL, what identifies a camera's stream whatever address it is reached
/// by (`/Streaming/Channels/101?transportmode=unicast`).
fn path_and_query(url: &str) -> String {
    match reqwest::Url::parse(url.trim()) {
        Ok(u) => match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        },
        Err(_) => url.to_string(),
    }
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

fn envelope(security: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:tds=\"{DEVICE_NS}\" \
         xmlns:trt=\"{MEDIA_NS}\" xmlns:tt=\"http://www.onvif.org/ver10/schema\">\
         <s:Header>{security}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
}

/// WS-Security UsernameToken with PasswordDigest = Base64(SHA-1(nonce + created + password)).
fn username_token(user: &str, password: &str, nonce: &[u8], created: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "<wsse:Security s:mustUnderstand=\"true\" \
         xmlns:wsse=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd\" \
         xmlns:wsu=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd\">\
         <wsse:UsernameToken><wsse:Username>{}</wsse:Username>\
         <wsse:Password Type=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest\">{}</wsse:Password>\
         <wsse:Nonce EncodingType=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary\">{}</wsse:Nonce>\
         <wsu:Created>{}</wsu:Created></wsse:UsernameToken></wsse:Security>",
        escape(user),
        password_digest(nonce, created, password),
        b64.encode(nonce),
        escape(created)
    )
}

fn password_digest(nonce: &[u8], created: &str, password: &str) -> String {
    let mut sha1 = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    sha1.update(nonce);
    sha1.update(created.as_bytes());
    sha1.update(password.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha1.finish())
}

/// The Set: every field of the configuration as the camera gave it, in the schema's order
/// (`tt:VideoEncoderConfiguration`); vendor extensions are not carried back.
fn set_request(c: &VideoEncoderConfiguration) -> String {
    let mut x = format!("<trt:SetVideoEncoderConfiguration><trt:Configuration token=\"{}\"", escape(&c.token));
    if let Some(g) = c.guaranteed_frame_rate {
        x.push_str(&format!(" GuaranteedFrameRate=\"{g}\""));
    }
    x.push_str(&format!(
        "><tt:Name>{}</tt:Name><tt:UseCount>{}</tt:UseCount><tt:Encoding>{}</tt:Encoding>\
         <tt:Resolution><tt:Width>{}</tt:Width><tt:Height>{}</tt:Height></tt:Resolution><tt:Quality>{}</tt:Quality>",
        escape(&c.name),
        c.use_count,
        escape(&c.encoding),
        c.resolution.width,
        c.resolution.height,
        c.quality
    ));
    if let Some(r) = &c.rate_control {
        x.push_str(&format!(
            "<tt:RateControl><tt:FrameRateLimit>{}</tt:FrameRateLimit><tt:EncodingInterval>{}</tt:EncodingInterval>\
             <tt:BitrateLimit>{}</tt:BitrateLimit></tt:RateControl>",
            r.frame_rate_limit, r.encoding_interval, r.bitrate_limit
        ));
    }
    if let Some(h) = &c.h264 {
        x.push_str(&format!(
            "<tt:H264><tt:GovLength>{}</tt:GovLength><tt:H264Profile>{}</tt:H264Profile></tt:H264>",
            h.gov_length,
            escape(&h.profile)
        ));
    }
    // Multicast and SessionTimeout are mandatory; a camera that left them out of its Get gets
    // the schema's neutral values.
    let m = c.multicast.clone().unwrap_or_default();
    let address = match (&m.address.ipv4, &m.address.ipv6) {
        (_, Some(v6)) if m.address.kind == "IPv6" => format!("<tt:IPv6Address>{}</tt:IPv6Address>", escape(v6)),
        (Some(v4), _) => format!("<tt:IPv4Address>{}</tt:IPv4Address>", escape(v4)),
        _ => "<tt:IPv4Address>0.0.0.0</tt:IPv4Address>".to_string(),
    };
    let kind = if m.address.kind.is_empty() { "IPv4" } else { m.address.kind.as_str() };
    x.push_str(&format!(
        "<tt:Multicast><tt:Address><tt:Type>{}</tt:Type>{address}</tt:Address><tt:Port>{}</tt:Port><tt:TTL>{}</tt:TTL>\
         <tt:AutoStart>{}</tt:AutoStart></tt:Multicast><tt:SessionTimeout>{}</tt:SessionTimeout>",
        escape(kind),
        m.port,
        m.ttl,
        m.auto_start,
        escape(c.session_timeout.as_deref().unwrap_or("PT60S"))
    ));
    x.push_str(
        "</trt:Configuration><trt:ForcePersistence>true</trt:ForcePersistence></trt:SetVideoEncoderConfiguration>",
    );
    x
}

// The answers, matched by local name (quick-xml's deserializer drops namespace prefixes, which
// differ from camera to camera); every field not named here is ignored.

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "Body")]
    body: Body,
}

#[derive(Debug, Default, Deserialize)]
struct Body {
    #[serde(rename = "Fault")]
    fault: Option<Fault>,
    #[serde(rename = "GetSystemDateAndTimeResponse")]
    date: Option<DateAnswer>,
    #[serde(rename = "GetCapabilitiesResponse")]
    capabilities: Option<CapabilitiesAnswer>,
    #[serde(rename = "GetProfilesResponse")]
    profiles: Option<ProfilesAnswer>,
    #[serde(rename = "GetStreamUriResponse")]
    stream_uri: Option<StreamUriAnswer>,
    #[serde(rename = "GetVideoEncoderConfigurationResponse")]
    encoder: Option<EncoderAnswer>,
    #[serde(rename = "GetVideoEncoderConfigurationOptionsResponse")]
    options: Option<OptionsAnswer>,
}

#[derive(Debug, Deserialize)]
struct DateAnswer {
    #[serde(rename = "SystemDateAndTime")]
    system: SystemDateAndTime,
}

#[derive(Debug, Deserialize)]
struct SystemDateAndTime {
    #[serde(rename = "UTCDateTime")]
    utc: Option<DateTime>,
}

#[derive(Debug, Deserialize)]
struct DateTime {
    #[serde(rename = "Date")]
    date: Date,
    #[serde(rename = "Time")]
    time: Time,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Date {
    year: i32,
    month: u8,
    day: u8,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Time {
    hour: u8,
    minute: u8,
    second: u8,
}

impl DateTime {
    fn to_offset_date_time(&self) -> Option<time::OffsetDateTime> {
        let month = time::Month::try_from(self.date.month).ok()?;
        let date = time::Date::from_calendar_date(self.date.year, month, self.date.day).ok()?;
        let t = time::Time::from_hms(self.time.hour, self.time.minute, self.time.second).ok()?;
        Some(time::PrimitiveDateTime::new(date, t).assume_utc())
    }
}

#[derive(Debug, Deserialize)]
struct CapabilitiesAnswer {
    #[serde(rename = "Capabilities")]
    capabilities: Capabilities,
}

#[derive(Debug, Deserialize)]
struct Capabilities {
    #[serde(rename = "Media")]
    media: Option<Service>,
}

#[derive(Debug, Deserialize)]
struct Service {
    #[serde(rename = "XAddr")]
    xaddr: String,
}

#[derive(Debug, Deserialize)]
struct ProfilesAnswer {
    #[serde(rename = "Profiles", default)]
    profiles: Vec<Profile>,
}

#[derive(Debug, Deserialize)]
struct Profile {
    #[serde(rename = "@token")]
    token: String,
    #[serde(rename = "VideoEncoderConfiguration")]
    video_encoder: Option<EncoderRef>,
}

#[derive(Debug, Deserialize)]
struct EncoderRef {
    #[serde(rename = "@token")]
    token: String,
    #[serde(rename = "Encoding")]
    encoding: String,
}

#[derive(Debug, Deserialize)]
struct StreamUriAnswer {
    #[serde(rename = "MediaUri")]
    media_uri: MediaUri,
}

#[derive(Debug, Deserialize)]
struct MediaUri {
    #[serde(rename = "Uri")]
    uri: String,
}

#[derive(Debug, Deserialize)]
struct EncoderAnswer {
    #[serde(rename = "Configuration")]
    configuration: VideoEncoderConfiguration,
}

/// `tt:VideoEncoderConfiguration`: what the Set sends back.
#[derive(Debug, Clone, Deserialize)]
struct VideoEncoderConfiguration {
    #[serde(rename = "@token")]
    token: String,
    #[serde(rename = "@GuaranteedFrameRate")]
    guaranteed_frame_rate: Option<bool>,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "UseCount")]
    use_count: u32,
    #[serde(rename = "Encoding")]
    encoding: String,
    #[serde(rename = "Resolution")]
    resolution: Resolution,
    #[serde(rename = "Quality")]
    quality: f32,
    #[serde(rename = "RateControl")]
    rate_control: Option<RateControl>,
    #[serde(rename = "H264")]
    h264: Option<H264>,
    #[serde(rename = "Multicast")]
    multicast: Option<Multicast>,
    #[serde(rename = "SessionTimeout")]
    session_timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Resolution {
    width: u32,
    height: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RateControl {
    frame_rate_limit: u32,
    encoding_interval: u32,
    bitrate_limit: u32,
}

#[derive(Debug, Clone, Deserialize)]
struct H264 {
    #[serde(rename = "GovLength")]
    gov_length: u32,
    #[serde(rename = "H264Profile")]
    profile: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Multicast {
    #[serde(rename = "Address", default)]
    address: Address,
    #[serde(rename = "Port", default)]
    port: u16,
    #[serde(rename = "TTL", default)]
    ttl: u32,
    #[serde(rename = "AutoStart", default)]
    auto_start: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Address {
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(rename = "IPv4Address")]
    ipv4: Option<String>,
    #[serde(rename = "IPv6Address")]
    ipv6: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OptionsAnswer {
    #[serde(rename = "Options")]
    options: EncoderOptions,
}

#[derive(Debug, Deserialize)]
struct EncoderOptions {
    #[serde(rename = "H264")]
    h264: Option<H264Options>,
}

#[derive(Debug, Deserialize)]
struct H264Options {
    #[serde(rename = "GovLengthRange")]
    gov_length_range: Option<Range>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Range {
    min: u32,
    max: u32,
}

/// A SOAP 1.2 fault: its code, its subcodes (ONVIF's `ter:…`, two levels deep in every fault
/// the specification lists; deeper ones are not read), and its reason.
#[derive(Debug, Deserialize)]
struct Fault {
    #[serde(rename = "Code")]
    code: Code,
    #[serde(rename = "Reason")]
    reason: Option<Reason>,
}

#[derive(Debug, Deserialize)]
struct Code {
    #[serde(rename = "Value")]
    value: String,
    #[serde(rename = "Subcode")]
    subcode: Option<Subcode>,
}

#[derive(Debug, Deserialize)]
struct Subcode {
    #[serde(rename = "Value")]
    value: String,
    #[serde(rename = "Subcode")]
    subcode: Option<InnerSubcode>,
}

#[derive(Debug, Deserialize)]
struct InnerSubcode {
    #[serde(rename = "Value")]
    value: String,
}

#[derive(Debug, Deserialize)]
struct Reason {
    #[serde(rename = "Text", default)]
    text: Vec<ReasonText>,
}

#[derive(Debug, Deserialize)]
struct ReasonText {
    #[serde(rename = "$text", default)]
    text: String,
}

impl Fault {
    /// The code and its subcodes, outermost first, prefixes dropped.
    fn codes(&self) -> Vec<&str> {
        let sub = self.code.subcode.as_ref();
        let inner = sub.and_then(|s| s.subcode.as_ref());
        let values = [Some(&self.code.value), sub.map(|s| &s.value), inner.map(|i| &i.value)];
        values.into_iter().flatten().map(|v| v.trim().rsplit(':').next().unwrap_or_default()).collect()
    }

    /// `Sender/InvalidArgVal/ConfigModify: Config modify`.
    fn describe(&self) -> String {
        let codes = self.codes();
        let reason = self.reason.as_ref().and_then(|r| r.text.first()).map(|t| t.text.trim()).unwrap_or_default();
        let described = if reason.is_empty() { codes.join("/") } else { format!("{}: {reason}", codes.join("/")) };
        quoted(&described)
    }

    fn into_error(self, action: &'static str) -> OnvifError {
        let described = self.describe();
        if self.codes().last() == Some(&"NotAuthorized") {
            OnvifError::NotAuthorized(described)
        } else {
            OnvifError::Fault { action, fault: described }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_digest_matches_the_onvif_programmers_guide() {
        let nonce = base64::engine::general_purpose::STANDARD.decode("LKqI6G/AikKCQrN0zqZFlg==").unwrap();
        assert_eq!(password_digest(&nonce, "2010-09-16T07:50:45Z", "userpassword"), "tuOSpGlFlIXsozq4HFNeeGeFLEI=");
    }

    #[test]
    fn one_keyframe_a_second_within_what_the_camera_accepts() {
        assert_eq!(gov_length_for(25, SHORT_GOP, None), 25);
        assert_eq!(gov_length_for(30, SHORT_GOP, Some((1, 300))), 30);
        assert_eq!(gov_length_for(30, SHORT_GOP, Some((50, 300))), 50, "the camera's minimum");
        assert_eq!(gov_length_for(25, SHORT_GOP, Some((0, 0))), 25, "a range left unset");
        assert_eq!(gov_length_for(25, SHORT_GOP, Some((1, 1))), 25);
        assert_eq!(gov_length_for(25, SHORT_GOP, Some((0, 10))), 10, "the camera's maximum");
        assert_eq!(gov_length_for(1, SHORT_GOP, None), 2, "never every frame a keyframe");
    }

    #[test]
    fn a_hostile_answer_is_refused_before_it_is_parsed_and_its_text_is_defused() {
        let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
        assert_eq!(nesting_depth(&deep), Some(10_000));
        assert_eq!(nesting_depth("<a><b/></a>"), Some(1));
        assert_eq!(nesting_depth("<a></b>"), None);
        let reason = format!("fine\nOK    signal bench-picture\u{1b}[2J{}", "x".repeat(500));
        let shown = quoted(&reason);
        assert!(!shown.chars().any(char::is_control) && shown.chars().count() == MAX_QUOTED + 1, "{shown}");
    }

    #[test]
    fn faults_name_their_innermost_code_and_a_refused_login_is_its_own_kind() {
        let answer = r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:ter="http://www.onvif.org/ver10/error">
 <env:Body><env:Fault>
  <env:Code><env:Value>env:Sender</env:Value>
   <env:Subcode><env:Value>ter:InvalidArgVal</env:Value>
    <env:Subcode><env:Value>ter:ConfigModify</env:Value></env:Subcode></env:Subcode></env:Code>
  <env:Reason><env:Text xml:lang="en">Config modify</env:Text></env:Reason>
 </env:Fault></env:Body></env:Envelope>"#;
        let fault = quick_xml::de::from_str::<Envelope>(answer).unwrap().body.fault.unwrap();
        assert_eq!(fault.describe(), "Sender/InvalidArgVal/ConfigModify: Config modify");
        let refused = answer
            .replace("ter:InvalidArgVal", "ter:NotAuthorized")
            .replace("<env:Subcode><env:Value>ter:ConfigModify</env:Value></env:Subcode>", "");
        let fault = quick_xml::de::from_str::<Envelope>(&refused).unwrap().body.fault.unwrap();
        assert!(matches!(fault.into_error("GetProfiles"), OnvifError::NotAuthorized(_)));
    }

    #[test]
    fn a_configuration_is_read_whatever_its_prefixes_and_sent_back_in_schema_order() {
        let answer = r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" xmlns:trt="http://www.onvif.org/ver10/media/wsdl" xmlns:x="http://www.onvif.org/ver10/schema"><SOAP-ENV:Body>
<trt:GetVideoEncoderConfigurationResponse><trt:Configuration token="enc&amp;1" GuaranteedFrameRate="false">
<x:Name>Main &lt;1&gt;</x:Name><x:UseCount>2</x:UseCount><x:Encoding>H264</x:Encoding>
<x:Resolution><x:Width>1920</x:Width><x:Height>1080</x:Height></x:Resolution><x:Quality>4.5</x:Quality>
<x:RateControl><x:FrameRateLimit>25</x:FrameRateLimit><x:EncodingInterval>1</x:EncodingInterval><x:BitrateLimit>4096</x:BitrateLimit></x:RateControl>
<x:H264><x:GovLength>100</x:GovLength><x:H264Profile>Main</x:H264Profile></x:H264>
<x:Multicast><x:Address><x:Type>IPv4</x:Type><x:IPv4Address>239.0.0.1</x:IPv4Address></x:Address><x:Port>5000</x:Port><x:TTL>5</x:TTL><x:AutoStart>false</x:AutoStart></x:Multicast>
<x:SessionTimeout>PT30S</x:SessionTimeout><x:Extension><vendor/></x:Extension></trt:Configuration></trt:GetVideoEncoderConfigurationResponse>
</SOAP-ENV:Body></SOAP-ENV:Envelope>"#;
        let mut c = quick_xml::de::from_str::<Envelope>(answer).unwrap().body.encoder.unwrap().configuration;
        assert_eq!((c.token.as_str(), c.name.as_str()), ("enc&1", "Main <1>"));
        assert_eq!(c.h264.as_ref().unwrap().gov_length, 100);
        c.h264.as_mut().unwrap().gov_length = 25;
        let set = set_request(&c);
        let order = [
            "token=\"enc&amp;1\" GuaranteedFrameRate=\"false\"",
            "<tt:Name>Main &lt;1&gt;</tt:Name>",
            "<tt:UseCount>2",
            "<tt:Encoding>H264",
            "<tt:Width>1920",
            "<tt:Quality>4.5",
            "<tt:FrameRateLimit>25",
            "<tt:GovLength>25</tt:GovLength><tt:H264Profile>Main",
            "<tt:IPv4Address>239.0.0.1",
            "<tt:Port>5000</tt:Port><tt:TTL>5</tt:TTL><tt:AutoStart>false",
            "<tt:SessionTimeout>PT30S",
            "</trt:Configuration><trt:ForcePersistence>true",
        ];
        let at: Vec<usize> =
            order.iter().map(|part| set.find(part).unwrap_or_else(|| panic!("{part} in {set}"))).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "schema order: {set}");
    }

    #[test]
    fn streams_are_matched_by_path_and_query_whatever_the_address() {
        assert_eq!(path_and_query("rtsp://10.0.0.2:554/Streaming/Channels/101?t=u"), "/Streaming/Channels/101?t=u");
        assert_eq!(path_and_query("rtsp://192.168.1.64/Streaming/Channels/101?t=u"), "/Streaming/Channels/101?t=u");
        assert_ne!(path_and_query("rtsp://10.0.0.2/cam1"), path_and_query("rtsp://10.0.0.2/cam2"));
    }
}
