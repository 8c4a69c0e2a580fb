//! `courtbox bench`: performance figures printed as numbers, never asserted in tests
//! (timings flake on a shared machine; the closing notes report them).

pub mod alignment;
mod broadcast;
mod network;
mod quality;
mod witness;

use crate::base::{Clocks, MediaTime, RealClocks, WallTime};
use crate::integrity::{DeviceKey, Hearing};
use crate::ledger::{Ledger, NewSession, SegmentCommit};
use crate::session::{Recorder, StartRequest};
use crate::stt::{Stt, SttSettings};
use anyhow::{Context, Result};
use clap::Subcommand;
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::BTreeMap;
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
    /// Live captions: a speech file fed at real-time pace through the speech service.
    Stt {
        #[arg(long, default_value = "var/test-speech/jfk.wav")]
        file: PathBuf,
        /// What is said in the file (for the word error rate).
        #[arg(
            long,
            default_value = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
        )]
        reference: String,
        #[arg(long, default_value = "models/ggml-base-q8_0.bin")]
        model: PathBuf,
        #[arg(long, default_value = "en")]
        language: String,
        /// Microphones speaking the file at the same time (staggered).
        #[arg(long, default_value_t = 1)]
        mics: usize,
        /// Times the file is played on each microphone.
        #[arg(long, default_value_t = 5)]
        passes: usize,
        #[arg(long, default_value_t = 2)]
        threads: u32,
        /// Print what was transcribed for every utterance.
        #[arg(long)]
        verbose: bool,
    },
    /// Network sources: CPU of an RTSP camera recorded as sent versus re-encoded, of the sim
    /// room with two RTSP cameras and an SRT participant, and the time to reconnect.
    Network(network::Options),
    /// A network camera against the room's microphones: a clapperboard (the test camera's
    /// flashes, a sim microphone's beeps, on one clock) recorded for minutes, and the offset
    /// and drift measured in the export.
    Alignment(alignment::Options),
    /// Caption quality per language of a speech model on the project's test speech (the
    /// figures models/models.toml pins), and what the caption filter refuses.
    Quality(quality::Options),
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
    /// Live broadcast of a profile: latency a viewer sees over the configured delay (RTMP,
    /// HLS, SRT) and the CPU the broadcast adds. Needs an RTMP server with HLS; see
    /// scripts/bench-broadcast, which starts nginx-rtmp and runs this.
    Broadcast(broadcast::Options),
    /// Draining an upload backlog: minutes of a profile's recording, sent to a store.
    Upload {
        /// A folder or s3://bucket/prefix. For S3, credentials come from AWS_ACCESS_KEY_ID
        /// and AWS_SECRET_ACCESS_KEY.
        #[arg(long)]
        store: String,
        #[arg(long)]
        endpoint: Option<String>,
        /// Create the bucket (with Object Lock) first.
        #[arg(long)]
        create_bucket: bool,
        #[arg(long, default_value = "hw-profiles/sim.toml")]
        profile: PathBuf,
        /// Minutes of recording in the backlog.
        #[arg(long, default_value_t = 5)]
        minutes: u64,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// The witness: checkpoint cost (sign + commit + upload), TSA round trip, bytes per hour,
    /// and the insider window.
    Witness {
        #[arg(long, default_value_t = 500)]
        checkpoints: usize,
        /// A folder or s3://bucket/prefix (default: a folder in the scratch box). For S3,
        /// credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        endpoint: Option<String>,
        /// Create the bucket (with Object Lock) first.
        #[arg(long)]
        create_bucket: bool,
        /// A TSA to time (e.g. tests/tsa/tsa-server on loopback).
        #[arg(long)]
        tsa_url: Option<String>,
        #[arg(long, default_value_t = 60)]
        checkpoint_seconds: u64,
    },
}

pub fn run(what: BenchCommand, _config: &Path) -> Result<()> {
    match what {
        BenchCommand::Seal { segments, bytes, dir } => seal(segments, bytes, dir),
        BenchCommand::Record { profile, sim_audio, seconds, captions } => {
            record(&profile, &sim_audio, seconds, captions)
        }
        BenchCommand::Stt { file, reference, model, language, mics, passes, threads, verbose } => stt(&SttRun {
            file: &file,
            reference: &reference,
            model: &model,
            language: &language,
            mics,
            passes,
            threads,
            verbose,
        }),
        BenchCommand::Broadcast(options) => broadcast::run(&options),
        BenchCommand::Quality(options) => quality::run(&options),
        BenchCommand::Network(options) => network::run(&options),
        BenchCommand::Alignment(options) => alignment::run(&options),
        BenchCommand::Upload { store, endpoint, create_bucket, profile, minutes, concurrency } => {
            upload(&store, endpoint, create_bucket, &profile, minutes, concurrency)
        }
        BenchCommand::Witness { checkpoints, store, endpoint, create_bucket, tsa_url, checkpoint_seconds } => {
            witness::run(&witness::Options {
                checkpoints,
                store: store.as_deref(),
                endpoint,
                create_bucket,
                tsa_url: tsa_url.as_deref(),
                checkpoint_seconds,
            })
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

/// A store for a benchmark, in a fresh folder of `url` (credentials from the AWS_*
/// environment), creating the bucket with Object Lock first if asked.
fn bench_store(url: &str, endpoint: Option<String>, create_bucket: bool) -> Result<crate::upload::Store> {
    let s3 = crate::upload::S3Settings::from_env(endpoint);
    if create_bucket {
        let (bucket, _) = crate::upload::parse_s3_url(url).context("--create-bucket needs an s3:// store")?;
        crate::upload::s3admin::create_locked_bucket(&s3, &bucket, "COMPLIANCE", 1)?;
    }
    Ok(crate::upload::Store::open(url, &s3, &format!("bench-{}", uuid::Uuid::new_v4()))?)
}

/// A recording session to commit benchmark records into.
fn bench_session(ledger: &Ledger) -> Result<uuid::Uuid> {
    let (session, _) = ledger.call(|w| {
        w.create_session(NewSession {
            court: "bench".into(),
            room: "bench".into(),
            case: "bench".into(),
            title: "bench".into(),
            language: crate::integrity::Language::En,
            hearing: Hearing::Open,
            profile: "bench".into(),
            segment_ns: 10_000_000_000,
            sources: vec![],
        })
    })?;
    Ok(session)
}

fn seal(segments: usize, bytes: usize, dir: Option<PathBuf>) -> Result<()> {
    let dir = scratch(dir)?;
    let clocks: Arc<dyn Clocks> = Arc::new(RealClocks::new());
    let key = Arc::new(DeviceKey::create(&dir.join("device.key"))?);
    let ledger = Ledger::open(&dir.join("ledger.db"), key, clocks)?;
    let session = bench_session(&ledger)?;
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
        let written = Some(crate::segment::Sealed { bytes: bytes as u64, sha256 });
        let crate::segment::Sealing::Whole(sealed) =
            crate::segment::seal(&mut f, &path, written, crate::segment::Durability::default())?
        else {
            anyhow::bail!("a sync of {} failed", path.display());
        };
        let t1 = Instant::now();
        let c = SegmentCommit {
            timing: None,
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

fn upload(
    url: &str,
    endpoint: Option<String>,
    create_bucket: bool,
    profile: &Path,
    minutes: u64,
    concurrency: usize,
) -> Result<()> {
    use crate::upload::{Uploader, UploaderSettings};
    let profile = crate::config::load_profile(profile)?;
    let kbps = |s: &crate::config::SourceSpec| match s.kind {
        crate::config::SourceKind::Video => profile.video.bitrate_kbps,
        crate::config::SourceKind::Audio => profile.audio.bitrate_kbps,
    };
    let sources: Vec<(String, u32)> = profile.sources().iter().map(|s| (s.name.clone(), kbps(s))).collect();
    let ingest_kbps: u32 = sources.iter().map(|(_, kbps)| kbps).sum();

    let dir = scratch(None)?;
    let clocks: Arc<dyn Clocks> = Arc::new(RealClocks::new());
    let key = Arc::new(DeviceKey::create(&dir.join("device.key"))?);
    let ledger = Arc::new(Ledger::open(&dir.join("ledger.db"), key, clocks.clone())?);
    let session = bench_session(&ledger)?;
    write_backlog(&ledger, session, &dir.join("spool"), &sources, minutes)?;
    let backlog = ledger.reader()?.upload_backlog()?;

    let store = bench_store(url, endpoint, create_bucket)?;
    println!(
        "upload drain: {} min of {} ({} sources, {ingest_kbps} kbit/s) = {} objects, {:.1} MiB, to {}",
        minutes,
        profile.name,
        sources.len(),
        backlog.objects,
        backlog.bytes as f64 / (1 << 20) as f64,
        store.url
    );
    let (t0, cpu0) = (Instant::now(), cpu_time());
    let uploader = Uploader::start(
        store,
        ledger.clone(),
        clocks,
        UploaderSettings {
            data_dir: dir.clone(),
            concurrency,
            multipart_threshold: 16 << 20,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
        },
    );
    let reader = ledger.reader()?;
    while reader.upload_backlog()?.objects > 0 {
        std::thread::sleep(Duration::from_millis(20));
        if t0.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("not drained after 10 minutes: {:?}", uploader.state());
        }
    }
    let (elapsed, cpu) = (t0.elapsed().as_secs_f64(), (cpu_time() - cpu0).as_secs_f64());
    uploader.shutdown();
    let state = uploader.state();
    println!("  drained in {elapsed:.2} s with {concurrency} in flight ({} failed attempts)", state.failed_attempts);
    print_drain_rates(backlog.bytes, backlog.objects, ingest_kbps, elapsed, cpu);
    ledger.close();
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// `minutes` of recording of every (source, kbit/s), as random bytes committed to the
/// ledger in 10 s segments: an upload backlog.
fn write_backlog(
    ledger: &Ledger,
    session: uuid::Uuid,
    spool: &Path,
    sources: &[(String, u32)],
    minutes: u64,
) -> Result<()> {
    std::fs::create_dir_all(spool)?;
    let rng = SystemRandom::new();
    for seq in 0..minutes * 6 {
        for (name, kbps) in sources {
            let mut data = vec![0u8; *kbps as usize * 1000 / 8 * 10];
            rng.fill(&mut data).map_err(|_| anyhow::anyhow!("RNG"))?;
            let path = spool.join(format!("{name}-{seq:06}.mkv"));
            std::fs::write(&path, &data)?;
            let c = SegmentCommit {
                timing: None,
                source: name.clone(),
                seq,
                media_start: MediaTime(seq * 10_000_000_000),
                media_end: MediaTime((seq + 1) * 10_000_000_000),
                wall_start: WallTime::from_unix_nanos(0),
                bytes: data.len() as u64,
                sha256: crate::integrity::sha256(&data),
                recovered: false,
                local_path: path.display().to_string(),
            };
            ledger.call(move |w| w.commit_segment(session, c))?;
        }
    }
    Ok(())
}

/// Throughput of a drain against the recording's ingest rate, and the CPU it took.
fn print_drain_rates(bytes: u64, objects: u64, ingest_kbps: u32, elapsed: f64, cpu: f64) {
    let rate_kbps = bytes as f64 * 8.0 / 1000.0 / elapsed;
    println!(
        "  {:.1} MiB/s, {:.0} objects/s = {:.1}x the recording's ingest rate (goal >= 3x)",
        bytes as f64 / (1 << 20) as f64 / elapsed,
        objects as f64 / elapsed,
        rate_kbps / f64::from(ingest_kbps)
    );
    println!(
        "  CPU: {:.2} cores while draining, {:.2} CPU s per GiB; at the ingest rate: {:.1} % of one core",
        cpu / elapsed,
        cpu / (bytes as f64 / (1u64 << 30) as f64),
        100.0 * cpu / elapsed * f64::from(ingest_kbps) / rate_kbps
    );
}

/// User + system CPU time of this process so far (all its threads). The process CPU-time
/// clock counts what getrusage's user and system times add up to, and needs no unsafe code
/// (nix's `resource` feature, which wraps getrusage, is not enabled).
fn cpu_time() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    // The process CPU-time clock exists on every Linux; a benchmark figure of zero would
    // show if it ever failed.
    clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID).map(Duration::from).unwrap_or_default()
}

fn record(profile: &Path, sim_audio: &Path, seconds: u64, captions: bool) -> Result<()> {
    gst::init()?;
    let dir = scratch(None)?;
    let model = std::fs::canonicalize("models/ggml-base-q8_0.bin").unwrap_or_default();
    let BenchBox { cfg, clocks, ledger } =
        bench_box(&dir, profile, sim_audio, &format!("[stt]\nmodel = \"{}\"\n", model.display()))?;
    let stt = captions.then(|| {
        let mics = cfg.profile.voices().len();
        Arc::new(Stt::start(SttSettings::from_config(&cfg), ledger.clone(), cfg.data_dir.clone(), clocks.clone(), mics))
    });
    let recorder = Recorder::new(cfg.clone(), ledger.clone(), clocks, stt.clone());
    start_bench_hearing(&recorder)?;
    std::thread::sleep(Duration::from_secs(5));
    let (used, wall) = cores_over(Duration::from_secs(seconds));
    let status = recorder.status();
    let stop = recorder.stop()?;
    if let Some(stt) = &stt {
        let s = stt.status();
        println!("  captions: model {} ({}), {} finals, backlog {}", s.model, s.state, s.finals, s.backlog);
        stt.shutdown();
    }
    ledger.close();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
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

/// CPU used by this process over `window` (in cores), and the time it really took.
fn cores_over(window: Duration) -> (f64, Duration) {
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    std::thread::sleep(window);
    let wall = wall0.elapsed();
    ((cpu_time() - cpu0).as_secs_f64() / wall.as_secs_f64(), wall)
}

struct BenchBox {
    cfg: Arc<crate::config::LoadedConfig>,
    clocks: Arc<dyn Clocks>,
    ledger: Arc<Ledger>,
}

/// A scratch box in `dir` recording `profile` with the synthetic speech of `sim_audio`:
/// its configuration (with `extra` appended) written and loaded, its ledger opened.
fn bench_box(dir: &Path, profile: &Path, sim_audio: &Path, extra: &str) -> Result<BenchBox> {
    let config = dir.join("courtbox.toml");
    let profile = std::fs::canonicalize(profile).with_context(|| profile.display().to_string())?;
    std::fs::write(
        &config,
        format!(
            "court = \"bench\"\nroom = \"bench\"\ndata_dir = \"data\"\nhw_profile = \"{}\"\nprofile_dirs = [\"{}\"]\n\
             [sim]\naudio_dir = \"{}\"\n{extra}",
            profile.display(),
            profile.parent().unwrap_or(Path::new("/")).display(),
            std::fs::canonicalize(sim_audio).unwrap_or(sim_audio.to_path_buf()).display(),
        ),
    )?;
    let cfg = Arc::new(crate::config::load(&config)?);
    let clocks: Arc<dyn Clocks> = Arc::new(RealClocks::new());
    let key = Arc::new(DeviceKey::create(&cfg.key_path())?);
    let ledger = Arc::new(Ledger::open(&cfg.ledger_path(), key, clocks.clone())?);
    Ok(BenchBox { cfg, clocks, ledger })
}

/// Runs a pipeline description in a quiet `gst-launch-1.0` process of its own: a sender for a
/// bench or a test (an SRT participant), whose CPU is not the box's. Words are split on white
/// space, so the description holds no quoted values.
pub fn gst_launch(pipeline: &str) -> std::io::Result<std::process::Child> {
    use std::process::{Command, Stdio};
    Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Stretches where a flag holds in a sequence of (time, flag), e.g. slate frames: (first
/// flagged item's time, first unflagged time after it). One still open at the end is left
/// out. The broadcast benchmark and its test read mutes off a decoded stream with it.
pub fn flagged_stretches<T: Copy>(items: &[(T, bool)]) -> Vec<(T, T)> {
    let mut out = Vec::new();
    let mut from = None;
    for &(at, flagged) in items {
        match (flagged, from) {
            (true, None) => from = Some(at),
            (false, Some(f)) => {
                out.push((f, at));
                from = None;
            }
            _ => {}
        }
    }
    out
}

/// Starts recording the bench's open hearing.
fn start_bench_hearing(recorder: &Recorder) -> Result<()> {
    let hearing =
        StartRequest { case: "bench".into(), title: "bench".into(), language: "en".into(), hearing: Hearing::Open };
    recorder.start(&hearing)?;
    Ok(())
}

/// Peak resident memory of this process (VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() { f64::NAN } else { sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] }
}

/// `bench stt`: what to feed the speech service, and how.
struct SttRun<'a> {
    file: &'a Path,
    /// What is said in the file (for the word error rate).
    reference: &'a str,
    model: &'a Path,
    language: &'a str,
    mics: usize,
    passes: usize,
    threads: u32,
    verbose: bool,
}

fn stt(run: &SttRun) -> Result<()> {
    use crate::stt::{MicInfo, SessionSpec, Stt};
    gst::init()?;
    let speech = load_speech(run.file)?;
    let dir = scratch(None)?;
    let clocks: Arc<dyn Clocks> = Arc::new(RealClocks::new());
    let key = Arc::new(DeviceKey::create(&dir.join("device.key"))?);
    let ledger = Arc::new(Ledger::open(&dir.join("ledger.db"), key, clocks.clone())?);
    let names: Vec<String> = (0..run.mics).map(|i| format!("mic{i}")).collect();
    let session = bench_session(&ledger)?;
    let stt = Stt::start(bench_stt_settings(run.model, run.threads), ledger.clone(), dir.clone(), clocks, run.mics);
    let mut events = stt.subscribe();
    wait_until_ready(&stt)?;
    stt.session_started(SessionSpec {
        id: session,
        run_start: crate::base::MediaTime::ZERO,
        language: run.language.into(),
        mics: names.iter().map(|n| MicInfo { source: n.clone(), role: None }).collect(),
    });

    let schedule = Schedule { period: speech.secs + 2.0, passes: run.passes, mics: run.mics };
    let tap = stt.tap();
    let started = Instant::now();
    let feeder = spawn_feeder(tap, names, speech.pcm, schedule, started);
    let deadline = started + Duration::from_secs_f64(schedule.total() + 60.0);
    let heard = collect_finals(&mut events, &feeder, schedule, deadline);
    let _ = feeder.join();
    stt.shutdown();

    let figures = score_finals(&heard, run, schedule, speech.speech_end, started);
    print_stt_figures(run, speech.secs, &figures);
    let refused = refused_stretches(&ledger, session)?;
    println!(
        "  refused as not speech (caption filter): {refused} stretch(es), against {} final(s) kept",
        heard.finals.values().map(|(texts, _)| texts.len()).sum::<usize>()
    );
    ledger.close();
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The stretches the caption filter refused in a session ("not transcribed" records).
fn refused_stretches(ledger: &Ledger, session: uuid::Uuid) -> Result<usize> {
    let rows = ledger.reader()?.records(session)?;
    Ok(rows
        .iter()
        .filter_map(|r| serde_json::from_slice::<crate::integrity::RecordBody>(&r.body).ok())
        .filter(|r| {
            matches!(&r.entry, crate::integrity::Entry::CaptionsBehind { reason, .. } if reason.starts_with("not transcribed"))
        })
        .count())
}

/// A speech file as 16 kHz samples.
struct Speech {
    pcm: Vec<f32>,
    /// Its length in seconds.
    secs: f64,
    /// Where the speech ends in the file (last 20 ms frame above -40 dBFS), in seconds.
    speech_end: f64,
}

fn load_speech(file: &Path) -> Result<Speech> {
    let pcm: Vec<f32> = crate::capture::decode_to_pcm(file, 16_000)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
        .iter()
        .map(|s| f32::from(*s) / 32768.0)
        .collect();
    let secs = pcm.len() as f64 / 16_000.0;
    let speech_end = pcm
        .chunks(320)
        .enumerate()
        .filter(|(_, f)| f.iter().map(|x| x * x).sum::<f32>() / f.len() as f32 > 1e-4)
        .map(|(i, _)| (i + 1) as f64 * 0.02)
        .next_back()
        .unwrap_or(secs);
    Ok(Speech { pcm, secs, speech_end })
}

/// The speech service as the benchmark runs it: the given model and threads, at full speed.
fn bench_stt_settings(model: &Path, threads: u32) -> SttSettings {
    SttSettings {
        model: model.to_path_buf(),
        // Any ggml whisper file: the benchmark takes its hash as it is.
        model_sha256: crate::stt::models::sha256_file(model).ok(),
        model_name: "base-q8".into(),
        measured_quality: BTreeMap::new(),
        stated_quality: BTreeMap::new(),
        // Every language is transcribed: the benchmark measures speed, not trust.
        min_quality: 0.0,
        threads,
        slowdown: 1,
        stream: crate::stt::stream::StreamConfig::default(),
        queue: Duration::from_secs(60),
        delayed_after: Duration::from_secs(10),
        mic_languages: BTreeMap::new(),
    }
}

/// Waits for the speech model to load; an error says why it did not.
fn wait_until_ready(stt: &Stt) -> Result<()> {
    while stt.status().state == crate::stt::SttState::Loading {
        std::thread::sleep(Duration::from_millis(50));
    }
    if stt.status().state != crate::stt::SttState::Ready {
        anyhow::bail!("speech model: {}", stt.status().reason.unwrap_or_default());
    }
    Ok(())
}

/// When each microphone speaks: the file `passes` times with 2 s of silence between (one
/// `period` each), the microphones staggered evenly over one pass.
#[derive(Clone, Copy)]
struct Schedule {
    period: f64,
    passes: usize,
    mics: usize,
}

impl Schedule {
    /// Seconds to feed: long enough for the last microphone's last pass (staggered by up to
    /// one period).
    fn total(self) -> f64 {
        self.period * (self.passes as f64 + 1.0) + 4.0
    }

    /// Seconds after the start at which microphone `mic` begins its first pass.
    fn stagger(self, mic: usize) -> f64 {
        mic as f64 * self.period / self.mics as f64
    }

    /// The sample a microphone plays `at` seconds after its own start (silence outside its
    /// passes).
    fn sample(self, pcm: &[f32], at: f64) -> f32 {
        if at < 0.0 || at >= self.period * self.passes as f64 {
            return 0.0;
        }
        let pos = ((at % self.period) * 16_000.0) as usize;
        pcm.get(pos).copied().unwrap_or(0.0)
    }
}

/// Feeds every microphone its schedule in chunks of 10 ms, at real-time pace from `started`.
fn spawn_feeder(
    tap: crate::capture::AudioTap,
    names: Vec<String>,
    pcm: Vec<f32>,
    schedule: Schedule,
    started: Instant,
) -> std::thread::JoinHandle<()> {
    use crate::capture::AudioChunk;
    std::thread::spawn(move || {
        let step = 160usize;
        let mut n = 0usize;
        while (n as f64) / 16_000.0 < schedule.total() {
            let t = n as f64 / 16_000.0;
            for (i, name) in names.iter().enumerate() {
                let local = t - schedule.stagger(i);
                let samples: Vec<f32> = (0..step).map(|k| schedule.sample(&pcm, local + k as f64 / 16_000.0)).collect();
                tap(AudioChunk { source: name.clone(), start: MediaTime((t * 1e9) as u64), samples });
            }
            n += step;
            let due = Duration::from_secs_f64(n as f64 / 16_000.0);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    })
}

/// The finals the service sent: per (mic, pass), their texts and the arrival of the last;
/// and each one's real-time factor.
struct Heard {
    finals: BTreeMap<(usize, usize), (Vec<String>, Instant)>,
    rtfs: Vec<f64>,
}

/// Collects finals until the feed is over and captions have stopped coming (or `deadline`).
fn collect_finals(
    events: &mut tokio::sync::broadcast::Receiver<crate::stt::CaptionEvent>,
    feeder: &std::thread::JoinHandle<()>,
    schedule: Schedule,
    deadline: Instant,
) -> Heard {
    let mut heard = Heard { finals: BTreeMap::new(), rtfs: Vec::new() };
    let mut last_event = Instant::now();
    while Instant::now() < deadline {
        match events.try_recv() {
            Ok(e) if e.kind == crate::stt::CaptionKind::Final => {
                last_event = Instant::now();
                let mic: usize = e.source.trim_start_matches("mic").parse().unwrap_or(0);
                // By its midpoint: an utterance starts a little early (the VAD's preroll).
                let mid = (e.media_start.as_secs_f64() + e.media_end.as_secs_f64()) / 2.0;
                let local = mid - schedule.stagger(mic);
                let pass = (local / schedule.period).floor().max(0.0) as usize;
                if e.audio_ms > 0 {
                    heard.rtfs.push(f64::from(e.decode_ms) / f64::from(e.audio_ms));
                }
                let entry = heard.finals.entry((mic, pass)).or_insert_with(|| (Vec::new(), Instant::now()));
                entry.0.push(e.text.clone());
                entry.1 = Instant::now();
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break,
        }
        if feeder.is_finished() && last_event.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    heard
}

/// The figures of a run, each sorted.
struct SttFigures {
    wers: Vec<f64>,
    rtfs: Vec<f64>,
    latencies: Vec<f64>,
}

/// Word error rate of each (mic, pass) against the reference, and the delay from the end of
/// its speech to its last final.
fn score_finals(heard: &Heard, run: &SttRun, schedule: Schedule, speech_end: f64, started: Instant) -> SttFigures {
    let mut wers = Vec::new();
    let mut latencies = Vec::new();
    for ((mic, pass), (texts, at)) in &heard.finals {
        if *pass >= run.passes {
            continue;
        }
        let w = crate::stt::text::wer(run.reference, &texts.join(" "));
        if run.verbose {
            println!("  mic {mic} pass {pass}: WER {:>5.1} %  {}", w * 100.0, texts.join(" | "));
        }
        wers.push(w);
        let spoken = Duration::from_secs_f64(schedule.stagger(*mic) + *pass as f64 * schedule.period + speech_end);
        latencies.push(at.duration_since(started).saturating_sub(spoken).as_secs_f64());
    }
    let mut rtfs = heard.rtfs.clone();
    wers.sort_by(f64::total_cmp);
    rtfs.sort_by(f64::total_cmp);
    latencies.sort_by(f64::total_cmp);
    SttFigures { wers, rtfs, latencies }
}

fn print_stt_figures(run: &SttRun, secs: f64, figures: &SttFigures) {
    let SttFigures { wers, rtfs, latencies } = figures;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "speech to text: {} ({:.1} s) fed at real-time pace, {} passes on {} microphone(s), model {}, {} threads",
        run.file.display(),
        secs,
        run.passes,
        run.mics,
        run.model.display(),
        run.threads
    );
    println!(
        "  WER against the reference: mean {:.1} %, worst {:.1} % ({} utterances)",
        mean(wers) * 100.0,
        pct(wers, 1.0) * 100.0,
        wers.len()
    );
    println!("  real-time factor (inference / audio): p50 {:.2}, p95 {:.2}", pct(rtfs, 0.5), pct(rtfs, 0.95));
    // Live captions share the box with capture and run at lower priority: a model needs
    // headroom, not just an RTF under 1, to keep up with several microphones.
    let load = pct(rtfs, 0.95) * run.mics as f64;
    let verdict = match load {
        _ if rtfs.is_empty() => "nothing was transcribed, so nothing to judge",
        l if l < 0.5 => "keeps up, with room to spare",
        l if l < 1.0 => "keeps up, barely: expect delayed captions when people talk over each other",
        _ => "does not keep up: captions will fall behind and be transcribed after the session",
    };
    println!("  on this box, with {} microphone(s) speaking at once: {verdict}", run.mics);
    println!(
        "  latency end of speech -> final caption: p50 {:.2} s, p95 {:.2} s",
        pct(latencies, 0.5),
        pct(latencies, 0.95)
    );
    println!("  peak RSS: {:.0} MB", peak_rss_mb());
}

#[cfg(test)]
mod tests {
    use super::flagged_stretches;

    #[test]
    fn stretches_of_flagged_items_end_at_the_next_unflagged_one() {
        let items = [(0, false), (1, true), (2, true), (3, false), (4, true), (5, false), (6, true)];
        assert_eq!(flagged_stretches(&items), vec![(1, 3), (4, 5)], "the one still open at the end is left out");
        assert_eq!(flagged_stretches::<u8>(&[]), vec![]);
    }
}
