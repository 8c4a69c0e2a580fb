//! `courtbox bench broadcast`: what the broadcast path adds over its configured delay, seen
//! by a viewer of each output, and what the broadcast costs in CPU.
//!
//! The box records `sim` and broadcasts it to an RTMP server (nginx-rtmp, which also cuts
//! HLS) and to an SRT listener (`srt-live-transmit`, relaying to UDP on loopback). Privacy
//! mutes with no rewind are pressed at known instants: each mute must reach a viewer exactly
//! `delay` later, so the slate's arrival minus (press + delay) is the added latency. Viewers
//! decode the programme in this process: RTMP played back from the server, the SRT relay,
//! and every HLS fragment as soon as the server's playlist lists it (what a player could
//! fetch at the earliest; players buffer more on top).

use super::{cores_over, flagged_stretches, scratch};
use crate::broadcast::OutputState;
use crate::config::BroadcastConfig;
use crate::session::Recorder;
use anyhow::{Context, Result, bail};
use gst::prelude::*;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Mean luma below which a frame is the slate (the `sim` cameras are far brighter).
const SLATE_LUMA: f64 = 40.0;
const STREAM_KEY: &str = "bench";

#[derive(clap::Args)]
pub struct Options {
    #[arg(long, default_value = "hw-profiles/sim.toml")]
    pub profile: PathBuf,
    #[arg(long, default_value = "var/sim-audio")]
    pub sim_audio: PathBuf,
    /// The RTMP application to publish to.
    #[arg(long, default_value = "rtmp://127.0.0.1:19350/live")]
    pub rtmp: String,
    /// The RTMP server's HLS folder (nginx-rtmp `hls_path`).
    #[arg(long)]
    pub hls_dir: PathBuf,
    /// Loopback port for the SRT listener (srt-live-transmit, started here).
    #[arg(long, default_value_t = 19360)]
    pub srt_port: u16,
    /// Loopback UDP port the SRT listener relays to, for the SRT viewer.
    #[arg(long, default_value_t = 19361)]
    pub relay_port: u16,
    #[arg(long, default_value_t = 10)]
    pub delay_seconds: u32,
    /// Privacy mutes pressed (each measured on every output).
    #[arg(long, default_value_t = 6)]
    pub mutes: usize,
    /// Seconds of CPU measurement without and with the broadcast.
    #[arg(long, default_value_t = 20)]
    pub cpu_seconds: u64,
}

/// Frames a viewer decoded: when each arrived, and whether it was the slate.
type Frames = Arc<Mutex<Vec<(Instant, bool)>>>;

struct Viewer {
    name: &'static str,
    frames: Frames,
    stop: Box<dyn FnOnce()>,
}

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(o: &Options) -> Result<()> {
    gst::init()?;
    let dir = scratch(None)?;
    let key_file = dir.join("stream.key");
    std::fs::write(&key_file, STREAM_KEY)?;
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let outputs = format!(
        "[broadcast]\ndelay_seconds = {}\nrewind_seconds = 0\n\
         [[broadcast.output]]\nname = \"rtmp\"\nkind = \"rtmp\"\nurl = \"{}\"\nkey_file = \"{}\"\n\
         [[broadcast.output]]\nname = \"srt\"\nkind = \"srt\"\nurl = \"srt://127.0.0.1:{}\"\n",
        o.delay_seconds,
        o.rtmp,
        key_file.display(),
        o.srt_port,
    );
    let super::BenchBox { cfg, clocks, ledger } = super::bench_box(&dir, &o.profile, &o.sim_audio, &outputs)?;
    let _relay = Relay(
        Command::new("srt-live-transmit")
            .arg("-q")
            .arg(format!("srt://127.0.0.1:{}?mode=listener", o.srt_port))
            .arg(format!("udp://127.0.0.1:{}", o.relay_port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("srt-live-transmit (srt-tools, installed by scripts/setup --tests)")?,
    );

    let recorder = Recorder::new(cfg.clone(), ledger.clone(), clocks, None);
    super::start_bench_hearing(&recorder)?;
    let result = measure(o, &recorder, &cfg.config.broadcast);
    let stop = recorder.stop();
    ledger.close();
    std::fs::remove_dir_all(&dir)?;
    let stop = stop?;
    println!("  the record: {} gaps", stop.gaps);
    result
}

fn measure(o: &Options, recorder: &Recorder, settings: &BroadcastConfig) -> Result<()> {
    let delay = Duration::from_secs(u64::from(o.delay_seconds));
    measure_cpu(o, recorder, settings, delay)?;
    let viewers = start_viewers(o)?;
    wait_for_pictures(&viewers)?;
    let presses = press_mutes(recorder, o.mutes)?;
    std::thread::sleep(delay + Duration::from_secs(6));
    recorder.stop_broadcast("bench")?;
    print_added_latency(viewers, &presses, delay, o.mutes);
    Ok(())
}

/// CPU of the recording alone, then with the broadcast started (and left running).
fn measure_cpu(o: &Options, recorder: &Recorder, settings: &BroadcastConfig, delay: Duration) -> Result<()> {
    let window = Duration::from_secs(o.cpu_seconds);
    std::thread::sleep(Duration::from_secs(5));
    let (recording, _) = cores_over(window);

    recorder.start_broadcast("bench")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !recorder.status().broadcast.outputs.iter().all(|out| out.state == OutputState::Live) {
        if Instant::now() > deadline {
            bail!("the outputs did not go live: {:?}", recorder.status().broadcast.outputs);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Until the delay has passed the programme shows the slate and decodes nothing.
    std::thread::sleep(delay + Duration::from_secs(3));
    let (broadcasting, _) = cores_over(window);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "broadcast of {} at {}x{}@{} ({} kbit/s video), delay {} s, to RTMP and SRT:",
        o.profile.display(),
        settings.width,
        settings.height,
        settings.fps,
        settings.video_kbps,
        o.delay_seconds,
    );
    println!(
        "  CPU: recording {recording:.2} cores, recording + broadcast {broadcasting:.2} cores: the broadcast costs {:.2} cores ({:.1} % of this machine's {cores})",
        broadcasting - recording,
        100.0 * (broadcasting - recording) / cores as f64
    );
    Ok(())
}

/// A viewer of each output: RTMP, SRT (through the relay) and HLS.
fn start_viewers(o: &Options) -> Result<Vec<Viewer>> {
    Ok(vec![
        live_viewer(
            "RTMP (played from nginx-rtmp)",
            &format!(
                "rtmp2src location={}/{STREAM_KEY} ! flvdemux name=d d.video ! queue ! h264parse ! avdec_h264 \
                 ! videoconvert ! video/x-raw,format=GRAY8 ! appsink name=frames sync=false d.audio ! queue ! fakesink sync=false",
                o.rtmp
            ),
        )?,
        live_viewer(
            "SRT (srt-live-transmit, 120 ms SRT latency)",
            &format!(
                "udpsrc address=127.0.0.1 port={} caps=video/mpegts,systemstream=true ! tsdemux ! h264parse \
                 ! avdec_h264 ! videoconvert ! video/x-raw,format=GRAY8 ! appsink name=frames sync=false",
                o.relay_port
            ),
        )?,
        hls_viewer(o.hls_dir.join(format!("{STREAM_KEY}.m3u8"))),
    ])
}

/// Waits until every viewer has decoded pictures (not the slate).
fn wait_for_pictures(viewers: &[Viewer]) -> Result<()> {
    let settle = Instant::now() + Duration::from_secs(20);
    while viewers.iter().any(|v| v.frames.lock().iter().filter(|f| !f.1).count() < 25) {
        if Instant::now() > settle {
            let seen: Vec<_> = viewers.iter().map(|v| (v.name, v.frames.lock().len())).collect();
            bail!("a viewer saw no pictures in 20 s: {seen:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Presses `mutes` privacy mutes of 2 s, 6 s apart and more by 0.45 s each time, so that they
/// fall at different places in a keyframe interval (an HLS fragment); with no rewind each is
/// due on air `delay` after its press. Returns when each was pressed and released.
fn press_mutes(recorder: &Recorder, mutes: usize) -> Result<Vec<(Instant, Instant)>> {
    let mut presses = Vec::new();
    for i in 0..mutes {
        let on = Instant::now();
        recorder.set_privacy_mute(true, "bench")?;
        std::thread::sleep(Duration::from_secs(2));
        let off = Instant::now();
        recorder.set_privacy_mute(false, "bench")?;
        presses.push((on, off));
        std::thread::sleep(Duration::from_secs(6) + Duration::from_millis(450) * i as u32);
    }
    Ok(presses)
}

/// Per viewer, how much later than `delay` after each press and release the slate started
/// and ended; the viewers are stopped.
fn print_added_latency(viewers: Vec<Viewer>, presses: &[(Instant, Instant)], delay: Duration, mutes: usize) {
    println!("  added latency over the delay, slate onset (mute) / end (unmute), p50 and worst of {mutes}:");
    for v in viewers {
        let frames = v.frames.lock().clone();
        (v.stop)();
        let since = presses[0].0;
        let blanks: Vec<(Instant, Instant)> =
            flagged_stretches(&frames).into_iter().filter(|(from, _)| *from > since).collect();
        if blanks.len() != presses.len() {
            println!(
                "    {:44} saw {} slate stretches for {} mutes: not measured",
                v.name,
                blanks.len(),
                presses.len()
            );
            continue;
        }
        let late = |seen: Instant, pressed: Instant| (seen - pressed).as_secs_f64() - delay.as_secs_f64();
        let mut onsets: Vec<f64> = blanks.iter().zip(presses).map(|(b, p)| late(b.0, p.0)).collect();
        let mut ends: Vec<f64> = blanks.iter().zip(presses).map(|(b, p)| late(b.1, p.1)).collect();
        onsets.sort_by(f64::total_cmp);
        ends.sort_by(f64::total_cmp);
        println!(
            "    {:44} onset {:.2} s / {:.2} s, end {:.2} s / {:.2} s",
            v.name,
            super::pct(&onsets, 0.5),
            onsets[onsets.len() - 1],
            super::pct(&ends, 0.5),
            ends[ends.len() - 1],
        );
    }
}

/// Whether a decoded GRAY8 frame is the slate: its mean luma is below the cameras'.
fn is_slate(sample: &gst::Sample) -> bool {
    let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) else { return false };
    let sum: u64 = map.iter().map(|&b| u64::from(b)).sum();
    (sum as f64 / map.len().max(1) as f64) < SLATE_LUMA
}

/// A viewer of a live stream: a pipeline ending in an appsink named `frames`.
fn live_viewer(name: &'static str, description: &str) -> Result<Viewer> {
    let (pipeline, sink) = frames_pipeline(description).with_context(|| format!("the {name} viewer"))?;
    let frames: Frames = Arc::default();
    let seen = frames.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                seen.lock().push((Instant::now(), is_slate(&sample)));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing).with_context(|| format!("the {name} viewer"))?;
    Ok(Viewer {
        name,
        frames,
        stop: Box::new(move || {
            let _ = pipeline.set_state(gst::State::Null);
        }),
    })
}

/// A viewer of HLS: every fragment is decoded as soon as the playlist lists it, and all its
/// frames count as arrived then.
fn hls_viewer(playlist: PathBuf) -> Viewer {
    let frames: Frames = Arc::default();
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (seen, go) = (frames.clone(), running.clone());
    let poller = std::thread::spawn(move || {
        let mut listed = std::collections::HashSet::new();
        while go.load(std::sync::atomic::Ordering::Relaxed) {
            let text = std::fs::read_to_string(&playlist).unwrap_or_default();
            for fragment in text.lines().filter(|l| l.ends_with(".ts")) {
                if listed.insert(fragment.to_string()) {
                    let arrived = Instant::now();
                    let path = playlist.with_file_name(fragment);
                    for slate in decode_fragment(&path).unwrap_or_default() {
                        seen.lock().push((arrived, slate));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    Viewer {
        name: "HLS (nginx-rtmp fragments, as listed)",
        frames,
        stop: Box::new(move || {
            running.store(false, std::sync::atomic::Ordering::Relaxed);
            let _ = poller.join();
        }),
    }
}

/// Whether each frame of a transport-stream fragment is the slate.
fn decode_fragment(path: &Path) -> Result<Vec<bool>> {
    let (pipeline, sink) = frames_pipeline(&format!(
        "filesrc location=\"{}\" ! tsdemux ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=GRAY8 \
         ! appsink name=frames sync=false",
        path.display()
    ))?;
    pipeline.set_state(gst::State::Playing)?;
    let mut out = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) {
        out.push(is_slate(&sample));
    }
    pipeline.set_state(gst::State::Null)?;
    Ok(out)
}

/// Parses a decoding pipeline whose frames end in an appsink named `frames`.
fn frames_pipeline(description: &str) -> Result<(gst::Pipeline, gst_app::AppSink)> {
    let pipeline = gst::parse::launch(description)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline: {description}"))?;
    let sink = pipeline
        .by_name("frames")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .context("the pipeline has no appsink named frames")?;
    Ok((pipeline, sink))
}
