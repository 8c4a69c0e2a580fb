//! `courtbox bench network`: what network sources cost and how fast they come back. CPU of
//! this process (the box) recording one RTSP camera as it sends versus re-encoding it, of
//! the sim room plus two RTSP cameras and an SRT participant with captions, and the time
//! from a camera's return to its recording again. The senders run in other processes, so
//! their encoders are not counted; on a 2-core machine they still compete for the cores.

use super::{bench_box, cores_over, scratch, start_bench_hearing};
use crate::capture::DeviceState;
use crate::session::Recorder;
use crate::stt::{Stt, SttSettings};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Options {
    /// The RTSP camera to record. Default: the test camera of a checkout
    /// (`tests/rtsp/rtsp-camera`, run from the current folder: run the bench from a checkout
    /// you trust) on loopback, sending 1920x1080 at 30 fps; only then are the reconnection
    /// and the whole-room figures measured.
    #[arg(long)]
    camera_url: Option<String>,
    /// `user:password` file of `--camera-url`.
    #[arg(long)]
    credentials_file: Option<PathBuf>,
    /// Measured seconds of each run (after 5 s of warm-up).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value = "hw-profiles/sim.toml")]
    room_profile: PathBuf,
    #[arg(long, default_value = "var/sim-audio")]
    sim_audio: PathBuf,
}

/// The test camera, restartable on its port.
pub(super) struct TestCamera {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
}

const TEST_CAMERA: &str = "tests/rtsp/rtsp-camera";

impl TestCamera {
    pub(super) fn start(args: &[&str]) -> Result<TestCamera> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut camera = TestCamera { child: None, port, args: args.iter().map(|a| a.to_string()).collect() };
        camera.resume()?;
        Ok(camera)
    }

    fn resume(&mut self) -> Result<()> {
        let mut child = Command::new("/usr/bin/python3")
            .arg(TEST_CAMERA)
            .args(["--port", &self.port.to_string()])
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the test camera (python3-gi and gir1.2-gst-rtsp-server-1.0: scripts/setup --tests)")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("camera stdout")?).read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("the test camera did not start");
        }
        self.child = Some(child);
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(super) fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/stream", self.port)
    }
}

impl Drop for TestCamera {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A remote participant sending picture and voice by SRT, listening for the box to call.
struct SrtParticipant(Child, u16);

impl SrtParticipant {
    fn start() -> Result<SrtParticipant> {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
        let pipeline = format!(
            "videotestsrc is-live=true ! video/x-raw,width=1280,height=720,framerate=25/1 \
             ! x264enc tune=zerolatency speed-preset=superfast bitrate=1500 key-int-max=50 ! h264parse ! queue ! mux. \
             audiotestsrc is-live=true wave=sine freq=440 volume=0.3 ! audio/x-raw,rate=48000,channels=1 \
             ! avenc_aac ! aacparse ! queue ! mux. \
             mpegtsmux name=mux alignment=7 ! srtsink uri=srt://127.0.0.1:{port}?mode=listener wait-for-connection=false"
        );
        let child = super::gst_launch(&pipeline).context("gst-launch-1.0 (gstreamer1.0-tools)")?;
        Ok(SrtParticipant(child, port))
    }
}

impl Drop for SrtParticipant {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TOML string: what the user typed stays one value, whatever quotes it holds.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn rtsp_source(name: &str, url: &str, credentials: Option<&Path>, transcode_fps: Option<u32>) -> String {
    let mut s = format!("[[network_source]]\nname = \"{name}\"\nprotocol = \"rtsp\"\nurl = {}\n", toml_string(url));
    if let Some(c) = credentials {
        s.push_str(&format!("credentials_file = {}\n", toml_string(&c.display().to_string())));
    }
    s.push_str(&format!("[network_source.video]\nname = \"{name}-picture\"\n"));
    if let Some(fps) = transcode_fps {
        s.push_str(&format!("transcode_fps = {fps}\n"));
    }
    s
}

/// One camera alone: a profile with no other source.
fn camera_profile(dir: &Path, file: &str, source: &str) -> Result<PathBuf> {
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            "name = \"bench-network\"\n[video]\nencoder = \"x264\"\nbitrate_kbps = 4000\nkeyframe_interval_ms = 1000\n{source}"
        ),
    )?;
    Ok(path)
}

struct Measured {
    cores: f64,
    gaps: u64,
    segments: u64,
}

/// Records `profile` for the warm-up and `seconds`, with `during` run meanwhile (from a
/// thread of its own), and returns the cores this process used over the measured part.
fn measure(
    options: &Options,
    dir: &Path,
    profile: &Path,
    captions: bool,
    during: impl FnOnce(&Recorder) + Send,
) -> Result<Measured> {
    let run = dir.join(profile.file_stem().unwrap_or_default());
    std::fs::create_dir_all(&run)?;
    let model = std::fs::canonicalize("models/ggml-base-q8_0.bin").unwrap_or_default();
    let stt_section =
        if captions { format!("[stt]\nmodel = \"{}\"\n", model.display()) } else { "[stt]\nenabled = false\n".into() };
    let b = bench_box(&run, profile, &options.sim_audio, &stt_section)?;
    let stt = captions.then(|| {
        let mics = b.cfg.profile.voices().len();
        Arc::new(Stt::start(
            SttSettings::from_config(&b.cfg),
            b.ledger.clone(),
            b.cfg.data_dir.clone(),
            b.clocks.clone(),
            mics,
        ))
    });
    let recorder = Recorder::new(b.cfg.clone(), b.ledger.clone(), b.clocks.clone(), stt.clone());
    start_bench_hearing(&recorder)?;
    std::thread::sleep(Duration::from_secs(5));
    let (cores, _) = std::thread::scope(|scope| {
        scope.spawn(|| during(&recorder));
        cores_over(Duration::from_secs(options.seconds))
    });
    let segments = recorder.status().session.map(|s| s.stats.segments).unwrap_or(0);
    let stop = recorder.stop()?;
    if let Some(stt) = &stt {
        stt.shutdown();
    }
    b.ledger.close();
    Ok(Measured { cores, gaps: stop.gaps, segments })
}

/// How long after the camera came back its device is running again.
fn time_to_reconnect(recorder: &Recorder, camera: &mut TestCamera, device: &str) -> Result<Duration> {
    let running = |recorder: &Recorder| {
        recorder
            .status()
            .session
            .and_then(|s| s.devices.into_iter().find(|d| d.name == device))
            .map(|d| (d.state, d.restarts))
    };
    let before = running(recorder).map_or(0, |r| r.1);
    camera.stop();
    std::thread::sleep(Duration::from_secs(4));
    camera.resume()?;
    let back = Instant::now();
    while back.elapsed() < Duration::from_secs(30) {
        if let Some((DeviceState::Running, restarts)) = running(recorder)
            && restarts > before
        {
            return Ok(back.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("the camera was not recorded again within 30 s of its return")
}

pub fn run(options: &Options) -> Result<()> {
    gst::init()?;
    let dir = scratch(None)?;
    let mut own_camera = match &options.camera_url {
        Some(_) => None,
        None => Some(TestCamera::start(&[
            "--size",
            "1920x1080",
            "--fps",
            "30",
            "--bitrate",
            "6000",
            "--gop",
            "30",
            "--shared",
        ])?),
    };
    let url = options.camera_url.clone().or_else(|| own_camera.as_ref().map(TestCamera::url)).unwrap_or_default();
    let credentials = options.credentials_file.as_deref();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let percent = |c: f64| 100.0 * c;
    println!("network sources, {} s per run, this machine has {cores} cores:", options.seconds);

    let passthrough = camera_profile(&dir, "passthrough.toml", &rtsp_source("cam", &url, credentials, None))?;
    let mut reconnect = None;
    let m = measure(options, &dir, &passthrough, false, |recorder| {
        if let Some(camera) = own_camera.as_mut() {
            // After the measured window: the camera goes away for 4 s and comes back.
            std::thread::sleep(Duration::from_secs(options.seconds + 1));
            reconnect = Some(time_to_reconnect(recorder, camera, "cam"));
        }
    })?;
    println!(
        "  one RTSP camera recorded as sent: {:.1} % of one core ({} segments, {} gaps)",
        percent(m.cores),
        m.segments,
        m.gaps
    );
    match reconnect {
        Some(Ok(t)) => {
            println!("  camera back after 4 s away: recording again {:.2} s after it returned", t.as_secs_f64())
        }
        Some(Err(e)) => println!("  camera back after 4 s away: {e}"),
        None => {}
    }

    let transcode = camera_profile(&dir, "transcode.toml", &rtsp_source("cam", &url, credentials, Some(30)))?;
    let m = measure(options, &dir, &transcode, false, |_| {})?;
    println!(
        "  the same camera re-encoded (transcode_fps = 30, x264 at the profile's 4000 kbit/s): {:.1} % of one core ({} gaps)",
        percent(m.cores),
        m.gaps
    );

    if own_camera.is_some() {
        let participant = SrtParticipant::start()?;
        let room = std::fs::read_to_string(&options.room_profile)
            .with_context(|| options.room_profile.display().to_string())?;
        let profile = dir.join("room.toml");
        std::fs::write(
            &profile,
            format!(
                "{room}\n{}{}[[network_source]]\nname = \"remote\"\nprotocol = \"srt\"\n\
                 url = \"srt://127.0.0.1:{}?mode=caller\"\n[network_source.video]\nname = \"remote-picture\"\n\
                 [network_source.audio]\nname = \"remote-voice\"\nrole = \"witness\"\n",
                rtsp_source("cam1", &url, None, None),
                rtsp_source("cam2", &url, None, None),
                participant.1
            ),
        )?;
        // The room profile's speech files are named relative to its sim folder.
        let m = measure(options, &dir, &profile, true, |_| {})?;
        println!(
            "  {} plus 2 RTSP cameras (1080p30, as sent) and 1 SRT participant (720p25 + voice), with captions: \
             {:.2} cores = {:.0} % of this machine ({} gaps)",
            options.room_profile.display(),
            m.cores,
            100.0 * m.cores / cores as f64,
            m.gaps
        );
    }
    own_camera.take();
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
