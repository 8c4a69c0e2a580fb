//! Network sources with real servers on loopback: an IP camera served by GStreamer's own
//! RTSP server (`tests/rtsp/rtsp-camera`), recorded as the camera sends it (its own H.264,
//! not re-encoded), through an outage of the camera and a kill -9 of the daemon; and every
//! way a network source can be wrong (credentials, address, path, codec) named in status
//! and in the gap, while the other sources record.

use crate::common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An RTSP camera: `tests/rtsp/rtsp-camera`, on loopback or at the far end of a
/// [`FarNetwork`], restartable on its port.
pub struct RtspCamera {
    child: Option<Child>,
    address: String,
    port: u16,
    args: Vec<String>,
    /// `ip netns exec NAME`, for a camera beyond a link the test controls.
    namespace: Option<String>,
    log: PathBuf,
}

impl RtspCamera {
    pub fn start(dir: &Path, args: &[&str]) -> RtspCamera {
        Self::start_in(dir, None, "127.0.0.1", args)
    }

    fn start_in(dir: &Path, namespace: Option<&str>, address: &str, args: &[&str]) -> RtspCamera {
        let mut camera = RtspCamera {
            child: None,
            address: address.to_string(),
            port: free_port(),
            args: args.iter().map(|a| a.to_string()).collect(),
            namespace: namespace.map(str::to_string),
            log: dir.join(format!("rtsp-camera-{}.log", args.join("_").replace(['/', ':'], "-"))),
        };
        camera.resume();
        camera
    }

    /// The camera's stream, without credentials (they go in a file).
    pub fn url(&self) -> String {
        format!("rtsp://{}:{}/stream", self.address, self.port)
    }

    /// Killed, as a camera that loses power; returns once its port is closed.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let address: std::net::IpAddr = self.address.parse().unwrap();
        let port = self.port;
        wait_for("the camera's port to close", Duration::from_secs(10), || {
            std::net::TcpStream::connect_timeout(&(address, port).into(), Duration::from_secs(1)).is_err()
        });
    }

    /// Starts (again) on the same port; returns once it listens.
    fn resume(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        // Debian's python3 (the one with the gi module), not whatever python3 is first on PATH.
        let mut command = match &self.namespace {
            Some(name) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", name, "/usr/bin/python3"]);
                c
            }
            None => Command::new("/usr/bin/python3"),
        };
        let mut child = command
            .arg(repo().join("tests/rtsp/rtsp-camera"))
            .args(["--port", &self.port.to_string(), "--address", &self.address])
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("/usr/bin/python3 runs tests/rtsp/rtsp-camera (scripts/setup --tests installs python3-gi)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "rtsp-camera did not start; see {}", self.log.display());
        self.child = Some(child);
    }
}

impl Drop for RtspCamera {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A network namespace joined to this one by a veth pair: the far end of a link that the
/// test can cut or make lossy with nftables, as a switch or a WAN would. Removed on drop.
struct FarNetwork {
    name: String,
    /// This side's address on the link, and the far side's.
    far_address: String,
}

/// Runs a command that must succeed (ip, nft).
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl FarNetwork {
    /// `n` (1-250) tells apart the links of tests that might overlap.
    fn create(n: u8) -> FarNetwork {
        let name = format!("cbfar{n}-{}", std::process::id());
        let (near_if, far_if) = (format!("cbn{n}"), format!("cbf{n}"));
        let (near, far) = (format!("10.231.{n}.1"), format!("10.231.{n}.2"));
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &near_if]).output();
        run("ip", &["netns", "add", &name]);
        run("ip", &["link", "add", &near_if, "type", "veth", "peer", "name", &far_if, "netns", &name]);
        run("ip", &["addr", "add", &format!("{near}/30"), "dev", &near_if]);
        run("ip", &["link", "set", &near_if, "up"]);
        run("ip", &["-n", &name, "addr", "add", &format!("{far}/30"), "dev", &far_if]);
        run("ip", &["-n", &name, "link", "set", &far_if, "up"]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        FarNetwork { name, far_address: far }
    }

    fn nft(&self, script: &str) {
        run("ip", &["netns", "exec", &self.name, "nft", script]);
    }

    /// Every packet in or out of the far end is dropped, silently (no reset, no ICMP).
    fn cut(&self) {
        self.nft(
            "add table inet fault; add chain inet fault in { type filter hook input priority 0; policy drop; };              add chain inet fault out { type filter hook output priority 0; policy drop; }",
        );
    }

    /// This share of the packets the far end sends is dropped at random.
    fn lose(&self, percent: u32) {
        self.nft(&format!(
            "add table inet fault; add chain inet fault out {{ type filter hook output priority 0; policy accept; }};              add rule inet fault out numgen random mod 100 < {percent} drop"
        ));
    }

    fn heal(&self) {
        self.nft("delete table inet fault");
    }
}

impl Drop for FarNetwork {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A box whose profile has one sim microphone (`judge`) and the given network sources
/// (TOML `[[network_source]]` tables).
fn network_box(name: &str, network_sources: &str) -> TestBox {
    TestBox::new(name, network_profile(name, network_sources).to_str().unwrap(), 2)
}

/// A profile of one sim microphone (the judge) and the given sources.
fn network_profile(name: &str, network_sources: &str) -> PathBuf {
    let profile = repo().join("target/test-output").join(format!("{name}-profile")).join("net.toml");
    std::fs::create_dir_all(profile.parent().unwrap()).unwrap();
    std::fs::write(
        &profile,
        format!(
            "name = \"net\"\n[video]\nencoder = \"x264\"\nbitrate_kbps = 300\nkeyframe_interval_ms = 1000\n\
             [[audio_device]]\nname = \"desk\"\nsource = \"sim\"\nchannels = 1\n\
             [[audio_device.mic]]\nname = \"judge\"\nrole = \"judge\"\nchannel = 1\nsim_audio = \"judge.wav\"\n\
             {network_sources}"
        ),
    )
    .unwrap();
    profile
}

/// The first H.264 sequence parameter set in an Annex B byte stream.
fn first_sps(annex_b: &[u8]) -> Option<Vec<u8>> {
    let starts: Vec<usize> =
        annex_b.windows(3).enumerate().filter(|(_, w)| *w == [0, 0, 1]).map(|(i, _)| i + 3).collect();
    for (k, &start) in starts.iter().enumerate() {
        if annex_b.get(start).is_some_and(|b| b & 0x1f == 7) {
            let end = starts.get(k + 1).map_or(annex_b.len(), |next| next - 3);
            let mut nal = annex_b[start..end].to_vec();
            while nal.last() == Some(&0) {
                nal.pop();
            }
            return Some(nal);
        }
    }
    None
}

/// The H.264 elementary stream of `input` (a file or an RTSP URL), as Annex B.
fn annex_b(input: &str, frames: u32) -> Vec<u8> {
    let transport: &[&str] = if input.starts_with("rtsp://") { &["-rtsp_transport", "tcp"] } else { &[] };
    let out = Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(transport)
        .args(["-i", input, "-frames:v", &frames.to_string(), "-an", "-c:v", "copy"])
        .args(["-bsf:v", "h264_mp4toannexb", "-f", "h264", "-"])
        .output()
        .unwrap();
    out.stdout
}

/// ffprobe's `profile,level,width,height` of the first video stream.
fn video_fingerprint(input: &str) -> String {
    let transport: &[&str] = if input.starts_with("rtsp://") { &["-rtsp_transport", "tcp"] } else { &[] };
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(transport)
        .args(["-select_streams", "v:0"])
        .args(["-show_entries", "stream=codec_name,profile,level,width,height", "-of", "csv=p=0", input])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The key-frame flags of a file's video packets, in order (`K` for a keyframe).
fn keyframe_flags(file: &Path) -> Vec<bool> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.starts_with('K')).collect()
}

fn device<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["session"]["devices"].as_array()?.iter().find(|d| d["name"] == name)
}

/// An RTSP camera with credentials: the record holds the camera's own H.264 (its SPS, its
/// profile and level, every segment opening on a keyframe), the camera's outage is one gap
/// of the camera's track with a network cause while the microphone records on, it
/// reconnects by itself, it resumes after a kill -9 of the daemon like the local sources,
/// and the export plays and verifies.
#[test]
fn an_rtsp_camera_is_recorded_as_it_sends_through_an_outage_and_a_crash() {
    let dir = output_dir("an_rtsp_camera-servers");
    let mut camera = RtspCamera::start(&dir, &["--credentials", "clerk:s3cret-pw"]);
    let credentials = secret_file(&dir, "camera.credentials", "clerk:s3cret-pw\n").display().to_string();
    let tb = network_box(
        "an_rtsp_camera",
        &format!(
            "[[network_source]]\nname = \"ipcam\"\nprotocol = \"rtsp\"\nurl = \"{}\"\ncredentials_file = \"{credentials}\"\n\
             stall_ms = 2000\n[network_source.video]\nname = \"court\"\nroles = [\"judge\"]\n",
            camera.url()
        ),
    );
    // The technician's probe of the camera's URL says what it sends, or why nothing came.
    let probed = tb.cli(&["devices", "--probe", &camera.url(), "--secret-file", &credentials, "--seconds", "3"]);
    let text = String::from_utf8_lossy(&probed.stdout);
    assert!(probed.status.success(), "{text}{}", String::from_utf8_lossy(&probed.stderr));
    assert!(text.contains("received H.264 High 640x360") && text.contains("a keyframe every 1.0 s"), "{text}");
    let missing = format!("rtsp://127.0.0.1:{}/elsewhere", camera.port);
    let probed = tb.cli(&["devices", "--probe", &missing, "--secret-file", &credentials, "--seconds", "3"]);
    let text = String::from_utf8_lossy(&probed.stdout);
    assert!(!probed.status.success() && text.contains("RTSP 404"), "{text}");

    let mut daemon = tb.start();
    let session = tb.start_session();
    wait_for("the camera to be recorded", Duration::from_secs(20), || {
        let s = tb.status();
        s["session"]["health"].as_array().is_some_and(|h| {
            h.iter()
                .any(|h| h["source"] == "court" && h["buffers"].as_u64().unwrap_or(0) > 2 && h["mean_luma"].is_number())
        })
    });
    std::thread::sleep(Duration::from_secs(4));

    // The camera loses power for a while: one gap, with a network cause; it comes back.
    camera.stop();
    let lost = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let during = tb.status();
    let ipcam = device(&during, "ipcam").unwrap();
    assert_ne!(ipcam["state"], "running", "{ipcam}");
    assert!(ipcam["last_error"].as_str().unwrap_or("").starts_with("network: "), "{ipcam}");
    camera.resume();
    wait_for("the camera to be recorded again", Duration::from_secs(15), || {
        device(&tb.status(), "ipcam").is_some_and(|d| d["state"] == "running" && d["restarts"] == 1)
    });
    let reconnected = lost.elapsed();
    eprintln!("camera down 6.0 s; recording again {:.1} s after it went down", reconnected.as_secs_f64());
    std::thread::sleep(Duration::from_secs(5));

    // The daemon dies: the camera resumes with the rest.
    daemon.kill9();
    daemon = tb.start();
    wait_for("the camera to be recorded after the restart", Duration::from_secs(30), || {
        let s = tb.status();
        s["session"]["id"] == session.to_string()
            && s["session"]["run"] == 2
            && s["session"]["health"]
                .as_array()
                .is_some_and(|h| h.iter().any(|h| h["source"] == "court" && h["buffers"].as_u64().unwrap_or(0) > 0))
    });
    std::thread::sleep(Duration::from_secs(5));
    tb.stop_session();
    daemon.terminate();

    let records = tb.records(session);
    let gaps = gaps(&records);
    let outage: Vec<_> = gaps.iter().filter(|g| g.0 == "court" && g.3.contains("network: ")).collect();
    assert_eq!(outage.len(), 1, "one gap for the camera's outage: {gaps:?}");
    let seconds = (outage[0].2 - outage[0].1) as f64 / 1e9;
    eprintln!("the outage's gap: {seconds:.2} s ({})", outage[0].3);
    assert!(seconds >= 5.0 && seconds <= reconnected.as_secs_f64() + 1.5, "gap of {seconds:.2} s");
    assert!(
        gaps.iter().all(|g| g.0 == "court" || g.3.contains("crashed or was killed")),
        "the microphone has no gap but the crash's: {gaps:?}"
    );
    assert!(!gaps.iter().any(|g| g.0 == "judge" && g.3.contains("network")), "{gaps:?}");

    // The record is the camera's own stream: its SPS, profile, level and size.
    let court: Vec<_> = segments(&records).into_iter().filter(|s| s.0 == "court").collect();
    assert!(court.len() >= 8, "{} segments of the camera", court.len());
    let export = tb.root.join("export");
    tb.export(session, &export);
    let authenticated = format!("rtsp://clerk:s3cret-pw@127.0.0.1:{}/stream", camera.port);
    let sent = first_sps(&annex_b(&authenticated, 30)).expect("the camera's SPS");
    for (_, seq, ..) in &court {
        let file = export.join(format!("court/{seq:06}.mkv"));
        let flags = keyframe_flags(&file);
        assert!(flags.first() == Some(&true), "{}: opens with a delta frame ({} packets)", file.display(), flags.len());
        let recorded = first_sps(&annex_b(file.to_str().unwrap(), 1)).expect("a recorded SPS");
        assert_eq!(recorded, sent, "{}: the SPS is not the camera's (re-encoded?)", file.display());
    }
    let playable = export.join("playable/court.mkv");
    assert_eq!(video_fingerprint(playable.to_str().unwrap()), video_fingerprint(&authenticated));
    assert!(video_fingerprint(&authenticated).starts_with("h264,High,"), "{}", video_fingerprint(&authenticated));
    let (duration, errors) = probe(&playable);
    assert!(duration.unwrap_or(0.0) > 15.0, "{duration:?}");
    // Known and open (issue 19): frames that arrive in a burst right after a connection can
    // share a millisecond timestamp, which ffmpeg's null muxer reports. That is a timing
    // flaw of the playable file, not a decoding error; it is printed, not hidden.
    let (timing, decoding): (Vec<&str>, Vec<&str>) =
        errors.lines().partition(|l| l.contains("non monotonically increasing dts"));
    if !timing.is_empty() {
        eprintln!("playable court.mkv: {} repeated timestamps: {}", timing.len(), timing.join(" | "));
    }
    assert!(decoding.is_empty(), "the playable file decodes without errors: {errors}");
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
    // The credentials appear in no log.
    for entry in std::fs::read_dir(&tb.root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            assert!(
                !std::fs::read_to_string(&path).unwrap().contains("s3cret-pw"),
                "{} holds the password",
                path.display()
            );
        }
    }
}

/// The technician's `check` asks each RTSP camera with an `onvif_url` for one keyframe a
/// second (ONVIF Media: GetProfiles, GetStreamUri, Get/SetVideoEncoderConfiguration with a
/// password digest), then measures the stream: a camera sending a keyframe every 4 s, whose
/// clock is an hour off, now sends one a second. A second check (the daemon idle) changes
/// nothing, and one during a hearing asks nothing. A camera that
/// accepts the change and ignores it, one that refuses the login and one whose ONVIF service
/// does not answer are warned about by name; what the camera sends is measured all the same.
#[test]
fn check_asks_an_onvif_camera_for_one_keyframe_a_second() {
    let dir = output_dir("check_asks_an_onvif_camera-servers");
    let ports = [free_port(), free_port(), free_port()];
    // Cameras sending a keyframe every 100 frames (4 s at 25 fps).
    let start = |port: u16, extra: &[&str]| {
        let port = port.to_string();
        let mut args = vec!["--credentials", "clerk:Zq7-onvif-secret", "--gop", "100", "--onvif-port", &port];
        args.extend(extra);
        RtspCamera::start(&dir, &args)
    };
    let bench = start(ports[0], &["--onvif-clock-offset", "3600"]);
    let gallery = start(ports[1], &["--onvif-ignore-set"]);
    let hall = start(ports[2], &[]);
    let right = secret_file(&dir, "right.credentials", "clerk:Zq7-onvif-secret").display().to_string();
    let wrong = secret_file(&dir, "wrong.credentials", "clerk:Zq7-wrong").display().to_string();
    let source = |name: &str, camera: &RtspCamera, port: u16, credentials: &str| {
        format!(
            "[[network_source]]\nname = \"{name}\"\nprotocol = \"rtsp\"\nurl = \"{}\"\ncredentials_file = \"{credentials}\"\n\
             onvif_url = \"http://127.0.0.1:{port}/onvif/device_service\"\n[network_source.video]\nname = \"{name}-picture\"\n",
            camera.url(),
        )
    };
    let tb = network_box(
        "check_asks_an_onvif_camera",
        &[
            source("bench", &bench, ports[0], &right),
            source("gallery", &gallery, ports[1], &right),
            source("hall", &hall, ports[2], &wrong),
            // The bench camera's stream again, with an ONVIF address where nothing answers.
            source("deaf", &bench, free_port(), &right),
        ]
        .concat(),
    );
    let line = |text: &str, item: &str| text.lines().find(|l| l.contains(item)).unwrap_or_default().to_string();
    let check = tb.cli(&["check", "--seconds", "6"]);
    let text = String::from_utf8_lossy(&check.stdout).to_string();
    println!("{text}");
    assert!(
        line(&text, "gop bench").contains("now sends a keyframe every 25 frames (1.0 s), was every 100 (4.0 s)"),
        "{text}"
    );
    assert!(line(&text, "signal bench-picture").contains("a keyframe every 1.0 s"), "measured after asking: {text}");
    assert!(line(&text, "gop gallery").contains("accepted a GOP of 25 frames but still reports 100"), "{text}");
    assert!(line(&text, "gop gallery").contains("WARN"), "{text}");
    let hall_line = line(&text, "gop hall");
    assert!(hall_line.contains("refused the user name or password") && hall_line.contains("NotAuthorized"), "{text}");
    assert!(hall_line.contains("the login of credentials_file"), "{text}");
    assert!(line(&text, "gop deaf").contains("cannot reach") && line(&text, "gop deaf").contains("refused"), "{text}");
    assert!(!text.contains("Zq7"), "a password in the output: {text}");

    // Asked again with the daemon running idle: nothing to change.
    let daemon = tb.start();
    let again = tb.cli(&["check", "--seconds", "3"]);
    let text = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(line(&text, "gop bench").contains("a keyframe every 25 frames at 25 fps (1.0 s), as asked"), "{text}");
    // During a hearing no camera is touched: a change could restart its stream.
    tb.start_session();
    let during = tb.cli(&["check", "--seconds", "2"]);
    let text = String::from_utf8_lossy(&during.stdout).to_string();
    assert!(line(&text, "gop bench").contains("not asked through ONVIF during a recording"), "{text}");
    tb.stop_session();
    daemon.terminate();
}

/// Every way a network source can be wrong, at once, beside a microphone that records:
/// wrong credentials, nothing listening, no stream at the path, a codec the profile does
/// not expect. Each is named in status and in its track's gap; the microphone has no gap.
#[test]
fn a_network_source_that_cannot_be_received_says_why_and_the_others_record() {
    let dir = output_dir("a_network_source_that_cannot-servers");
    let camera = RtspCamera::start(&dir, &["--credentials", "clerk:right"]);
    let jpeg = RtspCamera::start(&dir, &["--codec", "jpeg"]);
    let wrong = secret_file(&dir, "wrong.credentials", "clerk:wrong").display().to_string();
    let nobody = free_port();
    let source = |name: &str, url: &str, credentials: Option<&str>| {
        let credentials = credentials.map(|c| format!("credentials_file = \"{c}\"\n")).unwrap_or_default();
        format!(
            "[[network_source]]\nname = \"{name}\"\nprotocol = \"rtsp\"\nurl = \"{url}\"\n{credentials}stall_ms = 2000\n\
             [network_source.video]\nname = \"{name}-picture\"\n"
        )
    };
    let tb = network_box(
        "a_network_source_that_cannot",
        &[
            source("badpw", &camera.url(), Some(&wrong)),
            source("nobody", &format!("rtsp://127.0.0.1:{nobody}/stream"), None),
            source("nopath", &format!("rtsp://127.0.0.1:{}/no-such-stream", camera.port), None),
            source("mjpeg", &jpeg.url(), None),
        ]
        .concat(),
    );
    let expected = [
        ("badpw", "RTSP 401"),
        ("nobody", "network: could not connect"),
        ("nopath", "RTSP 404"),
        ("mjpeg", "wrong codec: the source sends JPEG but the profile expects H.264"),
    ];
    // The technician's check before the hearing names each problem.
    let check = tb.cli(&["check", "--seconds", "3"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{text}");
    for (name, why) in expected {
        let line = text.lines().find(|l| l.contains(&format!("signal {name}-picture")));
        assert!(line.is_some_and(|l| l.contains(why)), "{name}: {line:?} should say {why:?}\n{text}");
    }
    assert!(text.lines().any(|l| l.contains("signal judge") && !l.contains("FAIL")), "{text}");

    let daemon = tb.start();
    let session = tb.start_session();
    wait_for("every bad source to say why", Duration::from_secs(30), || {
        let s = tb.status();
        expected.iter().all(|(name, why)| {
            device(&s, name).is_some_and(|d| d["last_error"].as_str().unwrap_or("").starts_with(why))
        })
    });
    std::thread::sleep(Duration::from_secs(7));
    tb.stop_session();
    daemon.terminate();

    let records = tb.records(session);
    let gaps = gaps(&records);
    for (name, why) in expected {
        let track = format!("{name}-picture");
        let mine: Vec<_> = gaps.iter().filter(|g| g.0 == track).collect();
        assert!(!mine.is_empty() && mine.iter().all(|g| g.3.contains(why)), "{track}: {mine:?}");
    }
    assert!(!gaps.iter().any(|g| g.0 == "judge"), "the microphone records on: {gaps:?}");
    let judge = segments(&records).into_iter().filter(|s| s.0 == "judge").count();
    assert!(judge >= 3, "{judge} segments of the microphone");
}

/// A remote participant's sender: `gst-launch-1.0` sending H.264 and AAC in MPEG-TS by SRT,
/// listening for the box (as a videoconference gateway's SRT output does), encrypted with
/// `passphrase`. Killed on drop.
struct SrtSender {
    child: Child,
    port: u16,
}

impl SrtSender {
    /// A sender that listens for the box to call it.
    fn start(passphrase: &str) -> SrtSender {
        let port = free_port();
        Self::spawn(port, "listener", passphrase)
    }

    /// A sender that calls a box listening on `port` (a participant dialling in).
    fn call(port: u16, passphrase: &str) -> SrtSender {
        Self::spawn(port, "caller", passphrase)
    }

    fn spawn(port: u16, mode: &str, passphrase: &str) -> SrtSender {
        let pipeline = format!(
            "videotestsrc is-live=true pattern=ball background-color=0xff3060a0 ! video/x-raw,width=640,height=360,framerate=25/1 \
             ! clockoverlay ! x264enc tune=zerolatency speed-preset=superfast bitrate=600 key-int-max=25 \
             ! video/x-h264,profile=high ! h264parse ! queue ! mux. \
             audiotestsrc is-live=true wave=sine freq=440 volume=0.3 ! audio/x-raw,rate=48000,channels=1 \
             ! avenc_aac ! aacparse ! queue ! mux. \
             mpegtsmux name=mux alignment=7 ! srtsink uri=srt://127.0.0.1:{port}?mode={mode} \
             passphrase={passphrase} wait-for-connection=false"
        );
        let child = courtbox::bench::gst_launch(&pipeline).expect("gst-launch-1.0 (gstreamer1.0-tools)");
        SrtSender { child, port }
    }

    fn url(&self) -> String {
        format!("srt://127.0.0.1:{}?mode=caller", self.port)
    }
}

impl Drop for SrtSender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A remote participant by SRT: the box calls the sender with its passphrase and records the
/// picture (passed through) and the voice (its own track, with its role) until the session
/// stops; a second sender whose passphrase the box does not know is refused, records nothing,
/// and its status and gap say why; a third participant dials in to a box that listens, 5 s
/// into the session, and is recorded from then on (the listener waits as long as it takes).
/// The export plays and verifies.
#[test]
fn a_remote_participant_by_srt_is_recorded_and_a_wrong_passphrase_is_refused() {
    let dir = output_dir("a_remote_participant_by_srt-servers");
    let sender = SrtSender::start("correct-horse-battery");
    let stranger = SrtSender::start("another-passphrase-42");
    let right = secret_file(&dir, "remote.passphrase", "correct-horse-battery\n").display().to_string();
    let dialin = free_port();
    let tb = network_box(
        "a_remote_participant_by_srt",
        &format!(
            "[[network_source]]\nname = \"remote\"\nprotocol = \"srt\"\nurl = \"{}\"\npassphrase_file = \"{right}\"\n\
             stall_ms = 2000\n[network_source.video]\nname = \"remote-picture\"\n\
             [network_source.audio]\nname = \"remote-witness\"\nrole = \"witness\"\n\
             [[network_source]]\nname = \"stranger\"\nprotocol = \"srt\"\nurl = \"{}\"\npassphrase_file = \"{right}\"\n\
             stall_ms = 2000\n[network_source.video]\nname = \"stranger-picture\"\n\
             [[network_source]]\nname = \"dialin\"\nprotocol = \"srt\"\nurl = \"srt://127.0.0.1:{dialin}?mode=listener\"\n\
             passphrase_file = \"{right}\"\nstall_ms = 2000\n[network_source.video]\nname = \"dialin-picture\"\n",
            sender.url(),
            stranger.url()
        ),
    );
    let daemon = tb.start();
    let session = tb.start_session();
    std::thread::sleep(Duration::from_secs(5));
    let waiting = device(&tb.status(), "dialin").cloned().unwrap();
    assert_ne!(waiting["state"], "running", "{waiting}");
    let _participant = SrtSender::call(dialin, "correct-horse-battery");
    wait_for("the remote participant to be recorded", Duration::from_secs(20), || {
        let s = tb.status();
        s["session"]["health"].as_array().is_some_and(|h| {
            h.iter().any(|h| h["source"] == "remote-witness" && h["level_dbfs"].as_f64().is_some_and(|l| l > -40.0))
        })
    });
    std::thread::sleep(Duration::from_secs(10));
    let status = tb.status();
    let refused = device(&status, "stranger").unwrap();
    assert_ne!(refused["state"], "running", "{refused}");
    let why = refused["last_error"].as_str().unwrap_or("");
    assert!(why.starts_with("srt: the sender refused the passphrase"), "{refused}");
    tb.stop_session();
    daemon.terminate();

    let records = tb.records(session);
    let gaps = gaps(&records);
    let segs = segments(&records);
    for track in ["remote-picture", "remote-witness"] {
        let n = segs.iter().filter(|s| s.0 == track).count();
        assert!(n >= 5, "{track}: {n} segments");
    }
    let dialled = segs.iter().filter(|s| s.0 == "dialin-picture").count();
    assert!(dialled >= 3, "the participant who dialled in: {dialled} segments");
    let before = gaps.iter().filter(|g| g.0 == "dialin-picture").collect::<Vec<_>>();
    assert!(
        before.len() == 1 && before[0].3.contains("once it is connected") && before[0].2 - before[0].1 >= 4_000_000_000,
        "the wait for the participant is one stated gap: {before:?}"
    );
    assert!(!segs.iter().any(|s| s.0 == "stranger-picture"), "nothing is recorded from a refused sender");
    assert!(gaps.iter().any(|g| g.0 == "stranger-picture" && g.3.contains("passphrase")), "{gaps:?}");
    assert!(!gaps.iter().any(|g| g.0 == "judge"), "{gaps:?}");

    let export = tb.root.join("export");
    tb.export(session, &export);
    // The record keeps what arrived: a packet SRT could not recover in time is a torn frame
    // in the picture, not a hole in the record. On a loaded test machine that happens now
    // and then, so a few decoder complaints are allowed, and printed.
    for track in ["remote-picture", "remote-witness"] {
        let (duration, errors) = probe(&export.join(format!("playable/{track}.mkv")));
        assert!(duration.unwrap_or(0.0) > 8.0, "{track}: {duration:?}");
        if !errors.is_empty() {
            eprintln!("{track}: the decoder says: {errors}");
        }
        assert!(errors.lines().count() <= 10, "{track}: {errors}");
    }
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
}

/// A link that drops for 10 s, then loses 5 % of its packets for 30 s, between the box and
/// two cameras beyond it (one over RTSP/TCP, one over RTSP/UDP), made with a network
/// namespace and nftables. The drop is exactly one gap per camera, about as long as the
/// drop plus the time to notice and reconnect, with a network cause; the loss costs no gap,
/// and the UDP camera's health reports it; the microphone never notices.
#[test]
fn a_link_that_drops_or_loses_packets_is_stated_and_the_others_never_notice() {
    let dir = output_dir("a_link_that_drops-servers");
    let far = FarNetwork::create(1);
    let camera = RtspCamera::start_in(&dir, Some(&far.name), &far.far_address, &[]);
    let source = |name: &str, transport: &str| {
        format!(
            "[[network_source]]\nname = \"{name}\"\nprotocol = \"rtsp\"\nurl = \"{}\"\ntransport = \"{transport}\"\n\
             stall_ms = 2000\n[network_source.video]\nname = \"{name}-picture\"\n",
            camera.url()
        )
    };
    let tb = network_box("a_link_that_drops", &[source("tcpcam", "tcp"), source("udpcam", "udp")].concat());
    let daemon = tb.start();
    let session = tb.start_session();
    wait_for("both cameras to be recorded", Duration::from_secs(20), || {
        let s = tb.status();
        ["tcpcam", "udpcam"].iter().all(|d| device(&s, d).is_some_and(|d| d["state"] == "running"))
            && s["session"]["health"]
                .as_array()
                .is_some_and(|h| h.iter().filter(|h| h["stream"].is_object()).count() == 2)
    });
    std::thread::sleep(Duration::from_secs(4));

    far.cut();
    std::thread::sleep(Duration::from_secs(10));
    far.heal();
    wait_for("both cameras to reconnect", Duration::from_secs(20), || {
        let s = tb.status();
        ["tcpcam", "udpcam"]
            .iter()
            .all(|d| device(&s, d).is_some_and(|d| d["state"] == "running" && d["restarts"] == 1))
    });
    std::thread::sleep(Duration::from_secs(4));

    far.lose(5);
    let (mut worst_loss, mut worst_metric): (f64, f64) = (0.0, 0.0);
    let lossy = Instant::now();
    while lossy.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_secs(1));
        let s = tb.status();
        let udp = s["session"]["health"].as_array().unwrap().iter().find(|h| h["source"] == "udpcam-picture").cloned();
        if let Some(loss) = udp.and_then(|h| h["stream"]["loss_percent"].as_f64()) {
            worst_loss = worst_loss.max(loss);
        }
        // The same figure for Prometheus.
        let metrics = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", tb.port)).unwrap().text().unwrap();
        let line = "courtbox_network_loss_percent{source=\"udpcam-picture\"} ";
        if let Some(value) = metrics.lines().find_map(|l| l.strip_prefix(line)) {
            worst_metric = worst_metric.max(value.parse().unwrap());
        }
    }
    far.heal();
    std::thread::sleep(Duration::from_secs(3));
    tb.stop_session();
    daemon.terminate();

    eprintln!("5 % loss on the link: the UDP camera's health reported up to {worst_loss:.1} % lost");
    assert!(worst_loss >= 1.0, "health reports the packet loss (worst {worst_loss:.1} %)");
    assert!(worst_metric >= 1.0, "/metrics reports the packet loss (worst {worst_metric:.1} %)");
    let records = tb.records(session);
    let gaps = gaps(&records);
    for track in ["tcpcam-picture", "udpcam-picture"] {
        // Besides the wait for the first keyframe at the start, one gap: the drop's.
        let mine: Vec<_> = gaps.iter().filter(|g| g.0 == track && !g.3.contains("first keyframe")).collect();
        assert_eq!(mine.len(), 1, "{track}: one gap, for the drop: {gaps:?}");
        let seconds = (mine[0].2 - mine[0].1) as f64 / 1e9;
        eprintln!("{track}: the 10 s drop is a gap of {seconds:.2} s ({})", mine[0].3);
        assert!(mine[0].3.contains("network: "), "{}", mine[0].3);
        // The 10 s ± 1 s: what the segmenter held when the data stopped is written,
        // and the box dials the camera every 250 ms until the link is back; on top of the
        // drop's 10 s come that quarter second at most, the RTSP handshake and the first
        // keyframe.
        assert!((9.0..=11.0).contains(&seconds), "{track}: a gap of {seconds:.2} s for a 10 s drop");
        let segments = segments(&records).into_iter().filter(|s| s.0 == track).count();
        assert!(segments >= 15, "{track}: {segments} segments");
    }
    assert!(!gaps.iter().any(|g| g.0 == "judge"), "the microphone never notices: {gaps:?}");
    let export = tb.root.join("export");
    tb.export(session, &export);
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
}

/// A clapperboard across the network: the test camera flashes, over RTSP, on every even
/// second of the monotonic clock, and a sim microphone beeps on the same seconds. The camera
/// sends each frame 300 ms after its capture, as a real camera's encoder delays it; its RTCP
/// sender reports say when each frame was captured. Arrival time would put the flashes
/// 300 ms late; the box must take the delay out once the first report has come, easing it in
/// without ever stepping back. From 10 s after the camera's first flash on (its first report
/// within about 5 s, then 150 frames of easing at 2 ms each), every flash must be within
/// 100 ms of its beep, and the playable file's timestamps must only go forward. The chain
/// states each camera segment's timing: by the sender's clock, the delay taken out.
#[test]
fn a_network_camera_lines_up_with_the_room_microphones() {
    gst::init().unwrap();
    let dir = output_dir("network_alignment-servers");
    let camera = RtspCamera::start(&dir, &["--flash", "--gop", "25", "--delay-ms", "300"]);
    let profile = repo().join("target/test-output/network_alignment-profile.toml");
    std::fs::write(&profile, courtbox::bench::alignment::clapper_profile(&camera.url())).unwrap();
    let tb = TestBox::new("network_alignment", profile.to_str().unwrap(), 2);
    let _daemon = tb.start();
    let session = tb.start_session();
    wait_for("the camera to be recorded", Duration::from_secs(30), || {
        tb.status()["session"]["health"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["source"] == "court" && h["buffers"].as_u64().unwrap_or(0) > 2))
    });
    std::thread::sleep(Duration::from_secs(24));
    tb.stop_session();
    let export = tb.root.join("export");
    tb.export(session, &export);

    use courtbox::bench::alignment::{Alignment, beep_onsets, flash_onsets};
    let playable = export.join("playable/court.mkv");
    let flashes = flash_onsets(&playable).unwrap();
    let beeps = beep_onsets(&export.join("playable/clapper.mkv")).unwrap();
    let alignment = Alignment::pair(&flashes, &beeps);
    eprintln!("{} flashes, {} beeps; {}", flashes.len(), beeps.len(), alignment.describe());
    eprintln!(
        "each (session s, offset ms): {:?}",
        alignment.pairs.iter().map(|p| (p.0.round(), (p.1 * 1e3).round())).collect::<Vec<_>>()
    );
    let first = alignment.pairs.first().map_or(0.0, |p| p.0);
    let settled: Vec<_> = alignment.pairs.iter().filter(|p| p.0 >= first + 10.0).collect();
    assert!(settled.len() >= 5, "flashes {flashes:?} beeps {beeps:?}");
    assert!(settled.iter().all(|p| p.1.abs() <= 0.100), "offsets beyond 100 ms once settled: {:?}", alignment.pairs);
    // The correction never steps back: every packet after the one before.
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(&playable)
        .output()
        .unwrap();
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.parse().ok()).collect();
    assert!(times.len() > 500, "{} packets", times.len());
    let back: Vec<_> = times.windows(2).filter(|w| w[1] <= w[0]).collect();
    assert!(back.is_empty(), "timestamps that do not go forward: {back:?}");
    // The chain states, per segment, how the camera's time was placed: by its clock, its
    // 300 ms delay taken out; the microphone's segments say nothing (the box's own clock).
    use courtbox::integrity::{Entry, TimingBasis};
    let timings: Vec<_> = tb
        .records(session)
        .into_iter()
        .filter_map(|r| match r.entry {
            Entry::Segment { source, timing, .. } => Some((source, timing)),
            _ => None,
        })
        .collect();
    assert!(timings.iter().filter(|t| t.0 == "clapper").all(|t| t.1.is_none()), "{timings:?}");
    let camera: Vec<_> = timings.iter().filter(|t| t.0 == "court").filter_map(|t| t.1).collect();
    eprintln!("the camera's segments' timing: {camera:?}");
    let last = camera.last().expect("camera segments with their timing");
    assert_eq!(last.basis, TimingBasis::SenderClock, "{camera:?}");
    assert!((-360..=-240).contains(&last.correction_ms), "a 300 ms delay taken out: {camera:?}");
}

/// A videoconference gateway as the box sees it: nginx with the RTMP module, to which a
/// participant's call is published (by ffmpeg: a test picture and a voice saying a known
/// sentence every 14 s), for the box to pull.
struct RtmpGateway {
    nginx: Child,
    publisher: Child,
    port: u16,
}

impl RtmpGateway {
    fn start(dir: &Path) -> RtmpGateway {
        let port = free_port();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "{}rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; record off; }} }} }}\n",
                nginx_rtmp_head(dir)
            ),
        )
        .unwrap();
        let nginx = start_nginx(dir, port);
        // The sentence, then 3 s of quiet, over and over: a witness answering questions.
        let speech = dir.join("witness.wav");
        let padded = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(repo().join("var/test-speech/jfk.wav"))
            .args(["-af", "apad=pad_dur=3", "-ar", "48000", "-ac", "1"])
            .arg(&speech)
            .status()
            .unwrap();
        assert!(padded.success());
        let publisher = Command::new("ffmpeg")
            .args(["-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(&speech)
            .args(["-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
            .args(["-c:v", "libx264", "-preset", "superfast", "-tune", "zerolatency", "-g", "25", "-b:v", "600k"])
            .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv"])
            .arg(format!("rtmp://127.0.0.1:{port}/live/hearing"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("logs/publisher.log")).unwrap())
            .spawn()
            .expect("ffmpeg is installed by scripts/setup --tests");
        RtmpGateway { nginx, publisher, port }
    }

    fn url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live/hearing", self.port)
    }
}

impl Drop for RtmpGateway {
    fn drop(&mut self) {
        for child in [&mut self.publisher, &mut self.nginx] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A remote witness whose call the videoconference gateway publishes by RTMP is a source
/// like the room's own: the box pulls the call, records the picture (passed through) and the
/// voice (its own track, with the witness's role), captions the voice, shows the picture's
/// thumbnail and the voice's level to the panel, the broadcast director puts the witness on
/// air when the witness speaks (the judge's bench camera when the judge does), and the
/// export plays and verifies.
#[test]
fn a_remote_witness_by_rtmp_is_recorded_captioned_shown_and_put_on_air() {
    let dir = output_dir("a_remote_witness-servers");
    let gateway = RtmpGateway::start(&dir);
    let name = "a_remote_witness";
    let profile = network_profile(
        name,
        &format!(
            "[[camera]]\nname = \"bench\"\nsource = \"sim\"\nroles = [\"judge\"]\nwidth = 640\nheight = 360\nfps = 15\n\
             [[network_source]]\nname = \"call\"\nprotocol = \"rtmp\"\nurl = \"{}\"\n\
             [network_source.video]\nname = \"witness-picture\"\nlabel = \"Remote witness\"\n\
             [network_source.audio]\nname = \"witness\"\nrole = \"witness\"\nlabel = \"Remote witness\"\nlanguage = \"en\"\n",
            gateway.url()
        ),
    );
    let tb = TestBox::with_captions(
        name,
        profile.to_str().unwrap(),
        &format!(
            "[broadcast]\ndelay_seconds = 2\nrewind_seconds = 1\nwidth = 640\nheight = 360\nvideo_kbps = 600\n\
             [[broadcast.output]]\nname = \"local\"\nkind = \"hls\"\ndir = \"{}\"\n",
            output_dir("a_remote_witness-hls").display()
        ),
    );
    let daemon = tb.start();
    let session = tb.start_session();
    tb.cli_ok(&["session", "broadcast", "start"]);

    // The panel: the witness's level moves and the picture has a thumbnail.
    let mut loudest = f64::NEG_INFINITY;
    let mut on_air = std::collections::BTreeSet::new();
    let until = Instant::now() + Duration::from_secs(40);
    while Instant::now() < until {
        let s = tb.status();
        if let Some(h) = s["session"]["health"].as_array().unwrap().iter().find(|h| h["source"] == "witness") {
            loudest = loudest.max(h["level_dbfs"].as_f64().unwrap_or(f64::NEG_INFINITY));
        }
        if let Some(camera) = s["broadcast"]["camera"].as_str() {
            on_air.insert(camera.to_string());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let thumbnail = tb.local_client().get("http://courtbox/api/v1/thumbnails/witness-picture").send().unwrap();
    assert_eq!(thumbnail.status().as_u16(), 200);
    let jpeg = thumbnail.bytes().unwrap();
    assert!(jpeg.starts_with(&[0xff, 0xd8]) && jpeg.len() > 1000, "a JPEG thumbnail ({} bytes)", jpeg.len());
    eprintln!("the remote witness's loudest level: {loudest:.1} dBFS; on air: {on_air:?}");
    assert!(loudest > -30.0, "the witness's voice has a level on the panel: {loudest:.1} dBFS");
    assert!(on_air.contains("witness-picture"), "the director put the witness on air: {on_air:?}");
    assert!(on_air.contains("bench"), "and the judge's camera when the judge spoke: {on_air:?}");
    tb.stop_session();
    daemon.terminate();

    let records = tb.records(session);
    let gaps = gaps(&records);
    assert!(!gaps.iter().any(|g| g.3.starts_with("network:")), "no link failed: {gaps:?}");
    // RTMP carries no sender clock: every segment of the call says it was placed by arrival.
    for r in &records {
        if let courtbox::integrity::Entry::Segment { source, timing, .. } = &r.entry
            && source.starts_with("witness")
        {
            assert_eq!(timing.map(|t| t.basis), Some(courtbox::integrity::TimingBasis::Arrival), "{source}");
        }
    }
    let heard: String = records
        .iter()
        .filter_map(|r| match &r.entry {
            courtbox::integrity::Entry::Captions { source, items, .. } if source == "witness" => {
                Some(items.iter().map(|i| i.text.clone()).collect::<Vec<_>>().join(" "))
            }
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    // Words only: the model's punctuation varies from run to run.
    let words = heard.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
    assert!(words.contains("what you can do for your country"), "the witness's captions: {heard:?}");
    let export = tb.root.join("export");
    tb.export(session, &export);
    for playable in ["witness-picture", "witness"] {
        let (duration, errors) = probe(&export.join(format!("playable/{playable}.mkv")));
        assert!(duration.unwrap_or(0.0) > 30.0, "{playable}: {duration:?}");
        assert!(!errors.lines().any(|l| !l.contains("non monotonically increasing dts")), "{playable}: {errors}");
    }
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
}

/// The two other kinds of camera: one that sends H.265, recorded as it sends it (the
/// camera's own profile, level and size, every segment opening on a keyframe), and one that
/// sends Motion JPEG, which the record should not keep, re-encoded by the box to H.264 at
/// the frame rate the profile asks for. Both play and verify.
#[test]
fn an_h265_camera_is_kept_as_sent_and_a_jpeg_camera_is_re_encoded() {
    let dir = output_dir("h265_and_jpeg-servers");
    let hevc = RtspCamera::start(&dir, &["--codec", "h265", "--gop", "25"]);
    let jpeg = RtspCamera::start(&dir, &["--codec", "jpeg"]);
    let profile = network_profile(
        "h265_and_jpeg",
        &format!(
            "[[network_source]]\nname = \"cam-h265\"\nprotocol = \"rtsp\"\nurl = \"{}\"\n\
             [network_source.video]\nname = \"hevc\"\ncodec = \"h265\"\n\
             [[network_source]]\nname = \"cam-jpeg\"\nprotocol = \"rtsp\"\nurl = \"{}\"\n\
             [network_source.video]\nname = \"mjpeg\"\ntranscode_fps = 15\n",
            hevc.url(),
            jpeg.url()
        ),
    );
    let broadcast = format!(
        "[broadcast]\ndelay_seconds = 2\nrewind_seconds = 1\ncamera = \"hevc\"\nwidth = 640\nheight = 360\nvideo_kbps = 600\n\
         [[broadcast.output]]\nname = \"local\"\nkind = \"hls\"\ndir = \"{}\"\n",
        output_dir("h265_and_jpeg-hls").display()
    );
    let tb = TestBox::with_extra("h265_and_jpeg", profile.to_str().unwrap(), 2, &broadcast);
    // The technician's probe: an H.265 camera probed as H.264 is named for what it sends.
    let probe_as = |codec: &str| {
        let out = tb.cli(&["devices", "--probe", &hevc.url(), "--codec", codec, "--seconds", "3"]);
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (ok, text) = probe_as("h265");
    assert!(ok && text.contains("received H.265"), "{text}");
    let (ok, text) = probe_as("h264");
    assert!(!ok && text.contains("wrong codec: the source sends H265"), "{text}");
    let daemon = tb.start();
    let session = tb.start_session();
    tb.cli_ok(&["session", "broadcast", "start"]);
    std::thread::sleep(Duration::from_secs(16));
    let status = tb.status();
    for camera in ["cam-h265", "cam-jpeg"] {
        assert_eq!(device(&status, camera).unwrap()["state"], "running", "{status}");
    }
    // The broadcast shows the H.265 camera (decoded frame by frame, being on air) and decodes
    // only the keyframes of the other.
    let broadcast = &status["broadcast"];
    let pictures = broadcast["pictures"].as_array().unwrap();
    let frames = |name: &str, key: &str| {
        pictures.iter().find(|p| p["camera"] == name).and_then(|p| p[key].as_u64()).unwrap_or(0)
    };
    assert!(broadcast["live"] == true && broadcast["last_error"].is_null(), "{broadcast}");
    assert!(frames("hevc", "frames_decoded") > 100, "{broadcast}");
    assert!(frames("mjpeg", "frames_skipped") > frames("mjpeg", "frames_decoded"), "{broadcast}");
    tb.stop_session();
    daemon.terminate();

    let records = tb.records(session);
    let gaps = gaps(&records);
    assert!(!gaps.iter().any(|g| g.3.starts_with("network:") || g.3.starts_with("wrong codec")), "{gaps:?}");
    let export = tb.root.join("export");
    tb.export(session, &export);
    let sent = video_fingerprint(&hevc.url());
    assert!(sent.starts_with("hevc,Main,"), "the camera sends {sent}");
    let hevc_segments: Vec<_> = segments(&records).into_iter().filter(|s| s.0 == "hevc").collect();
    assert!(hevc_segments.len() >= 5, "{} segments", hevc_segments.len());
    for (_, seq, ..) in &hevc_segments {
        let file = export.join(format!("hevc/{seq:06}.mkv"));
        assert_eq!(video_fingerprint(file.to_str().unwrap()), sent, "{}: not the camera's H.265", file.display());
        assert!(keyframe_flags(&file).first() == Some(&true), "{}: opens with a delta frame", file.display());
    }
    let reencoded = video_fingerprint(export.join("playable/mjpeg.mkv").to_str().unwrap());
    assert!(
        reencoded.starts_with("h264,") && reencoded.contains(",640,360,"),
        "the JPEG camera recorded as {reencoded}"
    );
    let frames = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets"])
        .args(["-of", "csv=p=0"])
        .arg(export.join("playable/mjpeg.mkv"))
        .output()
        .unwrap();
    let frames: f64 = String::from_utf8_lossy(&frames.stdout).trim().parse().unwrap();
    let (duration, errors) = probe(&export.join("playable/mjpeg.mkv"));
    let rate = frames / duration.unwrap();
    eprintln!("the JPEG camera (25 fps) re-encoded at {rate:.1} fps over {:.1} s", duration.unwrap());
    assert!((13.0..=17.0).contains(&rate), "{rate:.1} fps for transcode_fps = 15");
    assert!(errors.is_empty(), "{errors}");
    for playable in ["hevc", "mjpeg"] {
        let (duration, _) = probe(&export.join(format!("playable/{playable}.mkv")));
        assert!(duration.unwrap_or(0.0) > 10.0, "{playable}: {duration:?}");
    }
    let (code, text) = verify(&export, Some(&tb.public_key()));
    assert_eq!(code, 0, "{text}");
}
