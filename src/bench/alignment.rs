//! `courtbox bench alignment`: how a network camera lines up with the room's microphones.
//! A clapperboard on the box's monotonic clock: the test camera (`tests/rtsp/rtsp-camera
//! --flash`) turns its picture white on every even second, and a sim microphone beeps on the
//! same seconds (`Programme::Tone`). The export's playable files are read back, each flash
//! is paired with its beep, and the offset (picture minus sound) and its drift over the run
//! are printed. The integration test `a_network_camera_lines_up_with_the_room_microphones`
//! uses the same reading of the files.

use super::network::TestCamera;
use super::{bench_box, scratch, start_bench_hearing};
use crate::integrity::PublicKey;
use crate::session::Recorder;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Options {
    /// How long to record.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    #[arg(long, default_value = "var/sim-audio")]
    sim_audio: std::path::PathBuf,
}

/// When the picture of a playable file turns white after a dark frame, in session seconds.
pub fn flash_onsets(file: &Path) -> Result<Vec<f64>, crate::capture::ReadError> {
    let desc = "filesrc name=src ! matroskademux ! decodebin ! videoconvert ! videoscale \
                ! video/x-raw,format=GRAY8,width=16,height=16 ! appsink name=out sync=false";
    let mut onsets = Vec::new();
    let mut lit = true; // an onset needs a dark frame before it
    crate::capture::read_file(desc, file, false, |sample| {
        let Some(buffer) = sample.buffer() else { return };
        let (Ok(map), Some(pts)) = (buffer.map_readable(), buffer.pts()) else { return };
        let mean = map.iter().map(|&y| u32::from(y)).sum::<u32>() / map.len().max(1) as u32;
        if mean > 128 && !lit {
            onsets.push(pts.nseconds() as f64 / 1e9);
        }
        lit = mean > 128;
    })?;
    Ok(onsets)
}

/// When the sound of a playable file starts after at least half a second of quiet, in
/// session seconds, to the sample.
pub fn beep_onsets(file: &Path) -> Result<Vec<f64>, crate::capture::ReadError> {
    const RATE: f64 = 48_000.0;
    let desc = "filesrc name=src ! matroskademux ! decodebin ! audioconvert ! audioresample \
                ! audio/x-raw,format=S16LE,channels=1,rate=48000 ! appsink name=out sync=false";
    let mut onsets = Vec::new();
    let mut quiet_since: Option<f64> = None;
    crate::capture::read_file(desc, file, false, |sample| {
        let Some(buffer) = sample.buffer() else { return };
        let (Ok(map), Some(pts)) = (buffer.map_readable(), buffer.pts()) else { return };
        let start = pts.nseconds() as f64 / 1e9;
        for (i, pair) in map.chunks_exact(2).enumerate() {
            let at = start + i as f64 / RATE;
            // The beep is at a quarter of full scale; the room's noise far below 2000.
            if i16::from_le_bytes([pair[0], pair[1]]).unsigned_abs() > 2000 {
                if quiet_since.is_some_and(|q| at - q > 0.5) {
                    onsets.push(at);
                }
                quiet_since = None;
            } else {
                quiet_since.get_or_insert(at);
            }
        }
    })?;
    Ok(onsets)
}

/// Flashes against beeps: each flash with the nearest beep (none further than 1 s away).
#[derive(Debug, Clone)]
pub struct Alignment {
    /// (session seconds of the beep, picture minus sound in seconds), in order.
    pub pairs: Vec<(f64, f64)>,
}

impl Alignment {
    pub fn pair(flashes: &[f64], beeps: &[f64]) -> Alignment {
        let pairs = flashes
            .iter()
            .filter_map(|&f| {
                let b = beeps.iter().copied().min_by(|x, y| (x - f).abs().total_cmp(&(y - f).abs()))?;
                ((f - b).abs() < 1.0).then_some((b, f - b))
            })
            .collect();
        Alignment { pairs }
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.pairs.iter().map(|p| p.1).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    pub fn median(&self) -> Option<f64> {
        let v = self.sorted();
        v.get(v.len() / 2).copied()
    }

    pub fn range(&self) -> Option<(f64, f64)> {
        let v = self.sorted();
        Some((*v.first()?, *v.last()?))
    }

    /// The least-squares slope of the offset over session time: seconds per second.
    pub fn drift(&self) -> Option<f64> {
        let n = self.pairs.len() as f64;
        if self.pairs.len() < 2 {
            return None;
        }
        let mean_t = self.pairs.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_o = self.pairs.iter().map(|p| p.1).sum::<f64>() / n;
        let spread = self.pairs.iter().map(|p| (p.0 - mean_t).powi(2)).sum::<f64>();
        (spread > 0.0).then(|| self.pairs.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_o)).sum::<f64>() / spread)
    }

    /// One line: how many, median, range and drift, in milliseconds.
    pub fn describe(&self) -> String {
        match (self.median(), self.range(), self.drift()) {
            (Some(m), Some((lo, hi)), Some(d)) => format!(
                "picture minus sound over {} flashes: median {:+.1} ms, from {:+.1} to {:+.1} ms; drift {:+.2} ms per minute",
                self.pairs.len(),
                m * 1e3,
                lo * 1e3,
                hi * 1e3,
                d * 60e3
            ),
            _ => format!("{} flashes paired with a beep: too few to measure", self.pairs.len()),
        }
    }
}

/// A profile of a clapper microphone (a 1000 Hz tone) and the flashing camera at `url`.
pub fn clapper_profile(url: &str) -> String {
    format!(
        "name = \"alignment\"\n[video]\nencoder = \"x264\"\nbitrate_kbps = 300\nkeyframe_interval_ms = 1000\n\
         [[audio_device]]\nname = \"bell\"\nsource = \"sim\"\nchannels = 1\n\
         [[audio_device.mic]]\nname = \"clapper\"\nrole = \"other\"\nchannel = 1\nsim_tone_hz = 1000\n\
         [[network_source]]\nname = \"ipcam\"\nprotocol = \"rtsp\"\nurl = \"{url}\"\n\
         [network_source.video]\nname = \"court\"\n"
    )
}

pub fn run(options: &Options) -> Result<()> {
    gst::init()?;
    let dir = scratch(None)?;
    let camera = TestCamera::start(&["--flash", "--gop", "25"])?;
    let profile = dir.join("alignment.toml");
    std::fs::write(&profile, clapper_profile(&camera.url()))?;
    let b = bench_box(&dir, &profile, &options.sim_audio, "[stt]\nenabled = false\n")?;
    let recorder = Recorder::new(b.cfg.clone(), b.ledger.clone(), b.clocks.clone(), None);
    start_bench_hearing(&recorder)?;
    let session = recorder.status().session.context("no session")?.id;
    println!("recording the clapperboard for {} minutes", options.minutes);
    std::thread::sleep(Duration::from_secs(options.minutes * 60));
    recorder.stop()?;
    drop(camera);
    let export = dir.join("export");
    let public: PublicKey = crate::integrity::DeviceKey::load(&b.cfg.key_path())?.public();
    let report =
        crate::export::export_session(&b.ledger.reader()?, &b.cfg.data_dir, &public, &session.to_string(), &export)?;
    if !report.playable_errors.is_empty() {
        bail!("no playable files: {:?}", report.playable_errors);
    }
    b.ledger.close();
    let flashes = flash_onsets(&export.join("playable/court.mkv"))?;
    let beeps = beep_onsets(&export.join("playable/clapper.mkv"))?;
    let alignment = Alignment::pair(&flashes, &beeps);
    println!("{} flashes, {} beeps; {}", flashes.len(), beeps.len(), alignment.describe());
    if let (Some(first), Some(last)) = (alignment.pairs.first(), alignment.pairs.last()) {
        println!(
            "  offset at the start {:+.1} ms, at the end {:+.1} ms ({:.1} minutes apart)",
            first.1 * 1e3,
            last.1 * 1e3,
            (last.0 - first.0) / 60.0
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
