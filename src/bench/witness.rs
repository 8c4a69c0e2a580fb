//! `courtbox bench witness`: what the witness costs. Per checkpoint: signing and committing
//! it (with its upload job), and uploading it to a store; the TSA's round trip; the bytes of
//! checkpoints and tokens per recorded hour; and from these the window in which an insider
//! holding the device key could still rewrite records that no checkpoint in the store covers.

use super::{BenchBox, bench_box, bench_session, bench_store, percentile, scratch};
use crate::base::MediaTime;
use crate::ledger::{Payload, SegmentCommit, UploadJob};
use crate::witness::Log;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Options<'a> {
    pub checkpoints: usize,
    /// A folder or s3://bucket/prefix (credentials from the AWS_* environment).
    pub store: Option<&'a str>,
    pub endpoint: Option<String>,
    pub create_bucket: bool,
    pub tsa_url: Option<&'a str>,
    pub checkpoint_seconds: u64,
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub fn run(o: &Options) -> Result<()> {
    let dir = scratch(None)?;
    let b = bench_box(&dir, Path::new("hw-profiles/sim.toml"), Path::new("var/sim-audio"), "")?;
    let store = match o.store {
        Some(url) => bench_store(url, o.endpoint.clone(), o.create_bucket)?,
        None => crate::upload::open_store(&b.cfg)?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let times = time_checkpoints(o.checkpoints, &b, &store, &runtime)?;
    let n = o.checkpoints;
    println!("witness bench: {n} checkpoints, store {}", store.url);
    for (what, v) in
        [("sign + commit", &times.commit), ("upload", &times.upload), ("sign + commit + upload", &times.total)]
    {
        println!(
            "  {what:<24} p50 {}  p99 {}  max {}",
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.99)),
            ms(*v.last().unwrap_or(&Duration::ZERO))
        );
    }
    let note = times.note_bytes as f64 / n.max(1) as f64;
    let token = match o.tsa_url {
        Some(url) => time_tsa(url, &runtime)?,
        None => 0.0,
    };
    print_hourly_cost(o.checkpoint_seconds, note, token, &times.upload);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// How long each checkpoint took to sign and commit, and to upload (each sorted), and the
/// bytes of all their notes.
struct CheckpointTimes {
    commit: Vec<Duration>,
    upload: Vec<Duration>,
    total: Vec<Duration>,
    note_bytes: usize,
}

/// Makes `checkpoints` checkpoints of a bench session, one segment record apart, and uploads
/// each to the store.
fn time_checkpoints(
    checkpoints: usize,
    b: &BenchBox,
    store: &crate::upload::Store,
    runtime: &tokio::runtime::Runtime,
) -> Result<CheckpointTimes> {
    let session = bench_session(&b.ledger)?;
    let (mut commit, mut upload, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut note_bytes = 0usize;
    for i in 0..checkpoints {
        // One segment record between checkpoints, as recording adds them (the file itself
        // plays no part here).
        let segment = SegmentCommit {
            timing: None,
            source: "bench".into(),
            seq: i as u64,
            media_start: MediaTime(i as u64 * 10_000_000_000),
            media_end: MediaTime((i as u64 + 1) * 10_000_000_000),
            wall_start: crate::base::WallTime::from_unix_nanos(0),
            bytes: 1,
            sha256: [0; 32],
            recovered: false,
            local_path: "bench".into(),
        };
        b.ledger.call(move |w| w.commit_segment(session, segment))?;
        let t0 = Instant::now();
        let seq = b.ledger.call(|w| w.checkpoint_recording())?.context("no checkpoint was made")?;
        let t1 = Instant::now();
        let row = b.ledger.reader()?.checkpoints(&Log::Session(session))?.pop().context("checkpoint stored")?;
        note_bytes += row.note.len();
        let job = UploadJob {
            id: 0,
            session: Some(session),
            object_key: Log::Session(session).object(seq, crate::witness::checkpoint::NOTE, ""),
            kind: "checkpoint".into(),
            sha256: crate::integrity::sha256(&row.note),
            bytes: row.note.len() as u64,
            payload: Payload::Content(row.note),
            attempts: 0,
        };
        let t2 = Instant::now();
        runtime
            .block_on(crate::upload::deliver(store, &job, &b.cfg.data_dir, u64::MAX))
            .map_err(|e| anyhow::anyhow!("upload: {e:?}"))?;
        let t3 = Instant::now();
        commit.push(t1 - t0);
        upload.push(t3 - t2);
        total.push((t1 - t0) + (t3 - t2));
    }
    for v in [&mut commit, &mut upload, &mut total] {
        v.sort();
    }
    Ok(CheckpointTimes { commit, upload, total, note_bytes })
}

/// The TSA's round trip over 20 requests (printed); returns the mean bytes of a token.
fn time_tsa(url: &str, runtime: &tokio::runtime::Runtime) -> Result<f64> {
    let mut rtt = Vec::new();
    let mut sizes = 0usize;
    for i in 0..20 {
        let t = Instant::now();
        let tok = runtime.block_on(crate::witness::tsa::request_token(
            url,
            format!("bench {i}").as_bytes(),
            Duration::from_secs(10),
        ))?;
        rtt.push(t.elapsed());
        sizes += tok.len();
    }
    rtt.sort();
    let token = sizes as f64 / 20.0;
    println!(
        "  TSA round trip ({url})   p50 {}  p99 {}  ({token:.0} bytes per token)",
        ms(percentile(&rtt, 0.5)),
        ms(percentile(&rtt, 0.99))
    );
    Ok(token)
}

/// Bytes of checkpoints and tokens per recorded hour, and the insider window.
fn print_hourly_cost(checkpoint_seconds: u64, note: f64, token: f64, upload: &[Duration]) {
    // Per hour: one periodic checkpoint per period while the chain grows, plus one per
    // session event; a busy hearing has a few dozen events an hour (marks, recesses, gaps).
    let periodic = 3600 / checkpoint_seconds.max(1);
    for events in [0u64, 60] {
        let count = periodic + events;
        println!(
            "  per recorded hour, {events:>2} events: {count} checkpoints, {:.0} KiB of notes + {:.0} KiB of tokens",
            count as f64 * note / 1024.0,
            count as f64 * token / 1024.0
        );
    }
    println!(
        "  insider window: records newer than the last checkpoint in the store: at most {} s (checkpoint_seconds) \
         + {} (upload p99) while the store is reachable; while it is not, everything since the last upload",
        checkpoint_seconds,
        ms(percentile(upload, 0.99))
    );
}
