//! The committer: one thread per capture run that takes closed fragments, seals them and
//! commits them (steps 1-3 of the commit point), writing a gap record first whenever a
//! source's timeline has a hole. Runs beside capture; capture never waits for it.

use super::continuity::Continuity;
use super::{Stats, clockwatch::ClockWatch};
use crate::base::{Clocks, MediaTime};
use crate::capture::{CaptureEvent, ClosedFragment, FailureKind};
use crate::integrity::{Entry, RunCause};
use crate::ledger::{Ledger, SegmentCommit};
use crate::segment;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use uuid::Uuid;

/// How long each segment's commit to the ledger took, waiting in its queue included: what a
/// flood of audited requests would delay if the record did not go first (`/metrics`:
/// `segment_seal_seconds`). Buckets from 0.5 ms, each 1.25 times the last, to about 3 s.
pub static SEAL_SECONDS: std::sync::LazyLock<prometheus_client::metrics::histogram::Histogram> =
    std::sync::LazyLock::new(|| {
        prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0005, 1.25, 40),
        )
    });

pub struct CommitContext {
    pub session: Uuid,
    pub run: u32,
    pub cause: RunCause,
    pub ledger: Arc<Ledger>,
    pub data_dir: PathBuf,
    pub clocks: Arc<dyn Clocks>,
    pub stats: Arc<Stats>,
}

pub struct Committer {
    thread: JoinHandle<Continuity>,
}

impl Committer {
    pub fn start(ctx: CommitContext, continuity: Continuity, events: Receiver<CaptureEvent>) -> Committer {
        let thread = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || run(ctx, continuity, events))
            .expect("spawn committer");
        Committer { thread }
    }

    /// Waits until every event is committed; call after capture stopped (its senders gone).
    pub fn finish(self) -> Continuity {
        self.thread.join().expect("committer thread panicked")
    }
}

fn run(ctx: CommitContext, mut continuity: Continuity, events: Receiver<CaptureEvent>) -> Continuity {
    let mut clock = ClockWatch::default();
    let mut devices = DeviceTroubles::default();
    // A device may report before capture says recording began (one that cannot start does
    // so at once): its event waits until the run's sources are known.
    let mut early = Vec::new();
    let mut started = false;
    for event in events {
        if let Some(delta_ms) = clock.observe(ctx.clocks.monotonic(), ctx.clocks.wall()) {
            let media = event_media(&event);
            tracing::warn!(delta_ms, "wall clock jumped; recording it in the chain");
            record(&ctx, Entry::ClockJump { media, delta_ms });
        }
        match event {
            CaptureEvent::Started { t0, sources, keyframe_sources } => {
                let why = (ctx.cause != RunCause::SessionStart).then(|| ctx.cause.describe());
                continuity.run_started(t0, &sources, why);
                if why.is_none() {
                    continuity.interrupted(&keyframe_sources, KEYFRAME_WAIT);
                }
                record(
                    &ctx,
                    Entry::RunStart {
                        run: ctx.run,
                        cause: ctx.cause,
                        media: t0,
                        boot_id: crate::base::boot_id(),
                        sources,
                    },
                );
                started = true;
                for event in early.drain(..) {
                    devices.handle(&ctx, &mut continuity, event);
                }
            }
            CaptureEvent::Fragment(f) => commit_fragment(&ctx, &mut continuity, f),
            event if !started => early.push(event),
            event => devices.handle(&ctx, &mut continuity, event),
        }
    }
    continuity
}

/// Why each troubled device's sources stopped, as status and the next gap record tell it.
/// A failure says "restarted automatically" only once the device records again.
#[derive(Default)]
struct DeviceTroubles {
    /// Per device, until it records again: its sources, what happened first (an auditor
    /// needs the cause, not the last of many tries), and how many tries failed since.
    failed: std::collections::HashMap<String, Trouble>,
}

struct Trouble {
    sources: Vec<String>,
    first: String,
    tries: u32,
    last_error: String,
}

impl Trouble {
    fn describe(&self) -> String {
        match self.tries {
            0 => self.first.clone(),
            1 => format!("{}; 1 try to restart failed ({})", self.first, self.last_error),
            n => format!("{}; {n} tries to restart failed (the last: {})", self.first, self.last_error),
        }
    }
}

impl DeviceTroubles {
    fn handle(&mut self, ctx: &CommitContext, continuity: &mut Continuity, event: CaptureEvent) {
        match event {
            CaptureEvent::DeviceFailed { device, sources, at, error, kind, had_run } => {
                let what = match (kind, had_run) {
                    (FailureKind::DiskFull, _) => {
                        format!("disk full: device {device} could not write at {at}: {error}")
                    }
                    (FailureKind::Device, true) => format!("device {device} failed at {at}: {error}"),
                    (FailureKind::Device, false) => format!("device {device} could not start at {at}: {error}"),
                };

                ctx.stats.note_error(&format!("{what}; retrying"));
                let trouble = match self.failed.remove(&device) {
                    Some(mut t) => {
                        t.tries += 1;
                        t.last_error = error;
                        t
                    }
                    None => Trouble { sources, first: what, tries: 0, last_error: error },
                };
                continuity.device_stopped(&trouble.sources, &trouble.describe());
                self.failed.insert(device, trouble);
            }
            CaptureEvent::DeviceRestarted { device, at, attempt } => {
                tracing::info!(%device, %at, attempt, "device recording again");
                if let Some(trouble) = self.failed.remove(&device) {
                    let again = format!("{}; restarted automatically, recording again from {at}", trouble.describe());
                    ctx.stats.note_error(&again);
                    continuity.device_stopped(&trouble.sources, &again);
                }
            }
            CaptureEvent::DeviceCannotStart { device, sources, reason, .. } => {
                let what = format!("device {device} cannot start: {reason}");
                ctx.stats.note_error(&format!("{what}; its sources are not recorded"));
                continuity.device_stopped(&sources, &what);
            }
            CaptureEvent::DevicePaused { device, sources, at, reason } => {
                let why = format!("device {device} paused at {at}: {reason}");
                ctx.stats.note_error(&why);
                continuity.interrupted(&sources, &why);
            }
            CaptureEvent::Started { .. } | CaptureEvent::Fragment(_) => {}
        }
    }
}

/// The media time an event happened at (where a clock jump noticed with it is placed).
fn event_media(event: &CaptureEvent) -> MediaTime {
    match event {
        CaptureEvent::Started { t0, .. } => *t0,
        CaptureEvent::Fragment(f) => f.media_end,
        CaptureEvent::DeviceFailed { at, .. }
        | CaptureEvent::DeviceCannotStart { at, .. }
        | CaptureEvent::DeviceRestarted { at, .. }
        | CaptureEvent::DevicePaused { at, .. } => *at,
    }
}

/// Why a passed-through picture begins after the session: it is recorded from its first
/// keyframe once connected (at most one GOP after the start, when it is already connected).
const KEYFRAME_WAIT: &str = "a network picture is recorded from its first keyframe once it is connected";

/// How long a commit refused for lack of space (SQLite's "database or disk is full") is
/// retried before its segment is left in the spool for recovery. The cameras pause on a
/// full disk, so room often comes back; a record that waits here keeps its place in the
/// order (the committer commits nothing else meanwhile).
const ROOM_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `job` on the ledger, again every half second while it is refused for lack of space.
fn call_with_room<T: Send + 'static>(
    ctx: &CommitContext,
    job: impl Fn(&mut crate::ledger::Writer) -> Result<T, crate::ledger::LedgerError> + Send + Sync + 'static,
) -> Result<T, crate::ledger::LedgerError> {
    let job = Arc::new(job);
    let since = ctx.clocks.monotonic();
    loop {
        let attempt = job.clone();
        match ctx.ledger.call(move |w| attempt(w)) {
            Err(e) if crate::ledger::is_disk_full(&e) && ctx.clocks.monotonic().saturating_sub(since) < ROOM_WAIT => {
                tracing::warn!(error = %e, "the ledger is refused for lack of space; trying again");
                ctx.clocks.sleep(std::time::Duration::from_millis(500));
            }
            result => return result,
        }
    }
}

fn record(ctx: &CommitContext, entry: Entry) {
    let session = ctx.session;
    let kind = entry.kind();
    if let Err(e) = call_with_room(ctx, move |w| w.append(session, entry.clone())) {
        ctx.stats.note_error(&format!("could not commit a {kind} record: {e}"));
        tracing::error!(error = %e, kind, "could not commit a record");
    }
}

fn commit_fragment(ctx: &CommitContext, continuity: &mut Continuity, f: ClosedFragment) {
    let ClosedFragment {
        source,
        seq,
        path,
        mut file,
        bytes,
        sha256,
        mut complete,
        durability,
        mut media_start,
        mut media_end,
        wall_start,
        timing,
    } = f;
    let written = sha256.map(|sha256| segment::Sealed { bytes, sha256 });
    let local_path = path.strip_prefix(&ctx.data_dir).unwrap_or(&path).display().to_string();
    // Why the rest of this segment is missing, when a sync of it failed.
    let mut lost = None;
    let sealed = match segment::seal(&mut file, &path, written, durability.settle()) {
        Ok(segment::Sealing::Whole(s)) => s,
        Ok(segment::Sealing::CutBack { kept, why }) => {
            let what = format!(
                "disk: a sync of {local_path} failed ({why}); the segment is kept only up to its last durable point, \
                 the rest of it may never have reached the disk"
            );
            tracing::error!(path = %path.display(), error = %why, kept = kept.bytes, "a segment's sync failed: cut back to what is durable");
            ctx.stats.note_error(&what);
            complete = false;
            lost = Some(what);
            kept
        }
        Err(e) => {
            // The file stays in the spool; startup recovery will seal it.
            ctx.stats.note_error(&format!("cannot seal {}: {e}", path.display()));
            tracing::error!(path = %path.display(), error = %e, "cannot seal segment; left in the spool for recovery");
            return;
        }
    };
    drop(file);
    if !complete {
        // The muxer was not finalized, or the file was cut back: what counts is what is in
        // the file.
        match segment::media_span(&path) {
            Ok(Some((a, b))) => {
                media_start = media_start.min(a);
                media_end = b;
            }
            // No frame survived the cut back: the file is committed as it is (its number is
            // never skipped) with an empty span, and the gap after it covers the interval.
            _ if lost.is_some() => media_end = media_start,
            Ok(None) => tracing::warn!(path = %path.display(), "cut-short segment holds no frame"),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot read cut-short segment"),
        }
    }
    if let Some(gap) = continuity.segment(&source, media_start, media_end) {
        tracing::warn!(source = %gap.source, from = %gap.start, to = %gap.end, reason = %gap.reason, "gap in the record");
        ctx.stats.gap();
        record(ctx, Entry::Gap { source: gap.source, media_start: gap.start, media_end: gap.end, reason: gap.reason });
    }
    if let Some(what) = &lost {
        // The hole between this segment's durable end and the next segment says why.
        continuity.interrupted(std::slice::from_ref(&source), what);
    }
    let commit = SegmentCommit {
        source: source.clone(),
        seq,
        media_start,
        media_end,
        wall_start,
        bytes: sealed.bytes,
        sha256: sealed.sha256,
        recovered: false,
        local_path,
        timing,
    };
    let session = ctx.session;
    let sealing = std::time::Instant::now();
    let committed = call_with_room(ctx, move |w| w.commit_segment(session, commit.clone()));
    SEAL_SECONDS.observe(sealing.elapsed().as_secs_f64());
    match committed {
        Ok(c) => {
            ctx.stats.segment(&source, sealed.bytes, media_end);
            tracing::debug!(%source, seq, index = c.index, bytes = sealed.bytes, "segment committed");
        }
        Err(e) => {
            ctx.stats.note_error(&format!("cannot commit {}: {e}", path.display()));
            tracing::error!(path = %path.display(), error = %e, "cannot commit segment; left in the spool for recovery");
        }
    }
}
