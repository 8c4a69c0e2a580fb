//! `courtbox bench`: performance figures printed as numbers, never asserted in tests
//! (timings flake on a shared machine; the closing notes report them).

use crate::base::{Clocks, MediaTime, RealClocks, WallTime};
use crate::integrity::{DeviceKey, Hearing};
use crate::ledger::{Ledger, NewSession, SegmentCommit};
use crate::session::{Recorder, StartRequest};
use crate::stt::{Stt, SttSettings};
use anyhow::{Context, Result};
use clap::Subcommand;
use ring::rand::{SecureRandom, SystemRandom};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Cost of sealing one segment: final fsync of file and folder, sign, commit (and, apart,
    /// the SHA-256 computed while the segment is written).
    Seal {
        /// How many segments to seal.
        #[arg(long, default_value_t = 200)]
        segments: usize,
        /// Size of each segment (default: 10 s of 720p at 2 Mbit/s).
        #[arg(long, default_value_t = 2_500_000)]
        bytes: usize,
        /// Where to write (default: a folder under the system temp dir). Use the data disk.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// CPU used by the whole daemon while recording a hardware profile.
    Record {
        #[arg(long, default_value = "hw-profiles/sim.toml")]
        profile: PathBuf,
        #[arg(long, default_value = "var/sim-audio")]
        sim_audio: PathBuf,
        /// Measured seconds (after 5 s of warm-up).
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Also run live captions (the model from models/, as configured by default).
        #[arg(long)]
        captions: bool,
    },
}

pub fn run(what: BenchCommand, _config: &Path) -> Result<()> {
    match what {
        BenchCommand::Seal { segments, bytes, dir } => seal(segments, bytes, dir),
        BenchCommand::Record { profile, sim_audio, seconds, captions } => {
            record(&profile, &sim_audio, seconds, captions)
        }
    }
}

fn scratch(dir: Option<PathBuf>) -> Result<PathBuf> {
    let base = dir.unwrap_or_else(std::env::temp_dir);
    let d = base.join(format!("courtbox-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| d.display().to_string())?;
    Ok(d)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  {name:<22} p50 {:>7.3} ms   p99 {:>7.3} ms   max {:>7.3} ms",
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.99)),
        ms(*v.last().unwrap())
    );
}

fn seal(segments: usize, bytes: usize, dir: Option<PathBuf>) -> Result<()> {
    let dir = scratch(dir)?;
    let clocks: Arc<dyn Clocks> = Arc::new(RealClocks::new());
    let key = Arc::new(DeviceKey::create(&dir.join("device.key"))?);
    let ledger = Ledger::open(&dir.join("ledger.db"), key, clocks)?;
    let (session, _) = ledger.call(|w| {
        w.create_session(NewSession {
            court: "bench".into(),
            room: "bench".into(),
            case: "bench".into(),
            title: "bench".into(),
            language: "en".into(),
            hearing: Hearing::Open,
            profile: "bench".into(),
            segment_ns: 10_000_000_000,
            sources: vec![],
        })
    })?;
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool)?;
    let mut data = vec![0u8; bytes];
    SystemRandom::new().fill(&mut data).map_err(|_| anyhow::anyhow!("RNG"))?;

    let (mut hash, mut sync, mut commit, mut total) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for seq in 0..segments as u64 {
        // As in recording: the sink hashes while appending, and the periodic syncer has
        // flushed all but the last second when the segment closes.
        let path = spool.join(format!("{seq:06}.mkv"));
        let mut f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        let cut = bytes * 9 / 10;
        let h0 = Instant::now();
        let sha256: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &data).as_ref().try_into()?;
        hash.push(h0.elapsed());
        f.write_all(&data[..cut])?;
        f.sync_data()?;
        f.write_all(&data[cut..])?;

        let t0 = Instant::now();
        let sealed = crate::segment::seal(&mut f, &path, Some(crate::segment::Sealed { bytes: bytes as u64, sha256 }))?;
        let t1 = Instant::now();
        let c = SegmentCommit {
            source: "cam".into(),
            seq,
            media_start: MediaTime(seq * 10_000_000_000),
            media_end: MediaTime((seq + 1) * 10_000_000_000),
            wall_start: WallTime::from_unix_nanos(0),
            bytes: sealed.bytes,
            sha256: sealed.sha256,
            recovered: false,
            local_path: path.display().to_string(),
        };
        ledger.call(move |w| w.commit_segment(session, c))?;
        let t2 = Instant::now();
        sync.push(t1 - t0);
        commit.push(t2 - t1);
        total.push(t2 - t0);
    }
    println!("seal cost per segment ({segments} segments of {bytes} bytes, in {}):", dir.display());
    println!(" off the seal path (spread over the segment while it is written):");
    report("SHA-256 of the segment", hash);
    println!(" on the seal path, after the segment closes:");
    report("fsync file + folder", sync);
    report("sign + commit (SQLite)", commit);
    report("seal total", total);
    ledger.close();
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn record(profile: &Path, sim_audio: &Path, seconds: u64, captions: bool) -> Result<()> {
    gst::init()?;
    let dir = scratch(None)?;
    let config = dir.join("courtbox.toml");
    std::fs::write(
        &config,
        format!(
            "court = \"bench\"\nroom = \"bench\"\ndata_dir = \"data\"\nhw_profile = \"{}\"\n[sim]\naudio_dir = \"{}\"\n[stt]\nmodel = \"{}\"\n",
            std::fs::canonicalize(profile).with_context(|| profile.display().to_string())?.display(),
            std::fs::canonicalize(sim_audio).unwrap_or(sim_audio.to_path_buf()).display(),
            std::fs::canonicalize("models/ggml-base-q8_0.bin").unwrap_or_default().display()
        ),
    )?;
    let cfg = Arc::new(crate::config::load(&config)?);
    let clocks: Arc<dyn Clocks> = Arc::new(RealClocks::new());
    let key = Arc::new(DeviceKey::create(&cfg.key_path())?);
    let ledger = Arc::new(Ledger::open(&cfg.ledger_path(), key, clocks.clone())?);
    let stt = captions.then(|| {
        let mics = cfg.profile.audio_devices.iter().map(|d| d.mics.len()).sum();
        Arc::new(Stt::start(SttSettings::from_config(&cfg), ledger.clone(), cfg.data_dir.clone(), clocks.clone(), mics))
    });
    let recorder = Recorder::new(cfg.clone(), ledger.clone(), clocks, stt.clone());
    recorder.start(&StartRequest {
        case: "bench".into(),
        title: "bench".into(),
        language: "en".into(),
        hearing: Hearing::Open,
    })?;
    std::thread::sleep(Duration::from_secs(5));
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
    let status = recorder.status();
    let stop = recorder.stop()?;
    if let Some(stt) = &stt {
        let s = stt.status();
        println!("  captions: model {} ({}), {} finals, backlog {}", s.model, s.state, s.finals, s.backlog);
        stt.shutdown();
    }
    ledger.close();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let used = cpu.as_secs_f64() / wall.as_secs_f64();
    println!(
        "recording profile {} ({} sources) for {:.1} s:",
        cfg.profile.name,
        cfg.profile.sources().len(),
        wall.as_secs_f64()
    );
    println!("  CPU: {used:.2} cores = {:.1} % of this machine's {cores} cores", 100.0 * used / cores as f64);
    if let Some(s) = status.session {
        println!("  {} segments committed, {} bytes, {} gaps", s.stats.segments, s.stats.bytes, stop.gaps);
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
