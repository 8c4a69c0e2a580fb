//! The uploader: a thread of its own running a small async runtime that drains the ledger's
//! upload queue into the store, a few objects at a time, forever.
//!
//! Failure policy: when the store fails (unreachable, refusing, erroring), everything pauses
//! for a back-off delay (exponential, with jitter), then one object probes the store; full
//! concurrency returns with the first success. A job whose local copy is damaged waits on
//! its own, longer back-off and raises an alarm; the others go on. A job whose name holds
//! other bytes is a conflict: alarmed, never retried, never overwritten.
//!
//! Those decisions are `UploadSchedule`, a pure state machine on monotonic time (the
//! store's health is a `base::Supervision`), unit-tested on simulated clocks; `run` is its
//! I/O shell: it reads the queue, sends, and records what happened in the ledger.

use super::deliver::{Delivered, Failure, deliver};
use super::store::Store;
use crate::base::{Backoff, Clocks, ExponentialRetry, ServiceThread, Supervision, WallTime};
use crate::ledger::{Ledger, UploadJob};
use futures::FutureExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct UploaderSettings {
    pub data_dir: PathBuf,
    pub concurrency: usize,
    pub multipart_threshold: u64,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// What the uploader is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UploaderPhase {
    /// Nothing to send.
    #[default]
    Idle,
    Sending,
    /// Backing off after a store failure.
    Waiting,
}

/// What the uploader is doing, for status and metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploaderState {
    pub state: UploaderPhase,
    /// Why the store is failing now; cleared by the next success.
    pub error: Option<String>,
    pub error_since: Option<String>,
    pub last_success: Option<String>,
    pub in_flight: usize,
    /// Counters since the daemon started.
    pub sent_objects: u64,
    pub sent_bytes: u64,
    pub failed_attempts: u64,
}

pub struct Uploader {
    state: Arc<Mutex<UploaderState>>,
    thread: ServiceThread,
}

/// How often the queue is looked at when there is nothing to do.
const POLL: Duration = Duration::from_millis(500);
/// A job whose local copy cannot be sent is looked at again after this, doubling.
const LOCAL_RETRY: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(3600));

struct Ctx {
    store: Store,
    ledger: Arc<Ledger>,
    clocks: Arc<dyn Clocks>,
    settings: UploaderSettings,
    state: Arc<Mutex<UploaderState>>,
}

impl Uploader {
    pub fn start(store: Store, ledger: Arc<Ledger>, clocks: Arc<dyn Clocks>, settings: UploaderSettings) -> Uploader {
        let state = Arc::new(Mutex::new(UploaderState::default()));
        let ctx = Ctx { store, ledger, clocks, settings, state: state.clone() };
        let thread = ServiceThread::spawn("upload", move |stop| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("upload runtime");
            runtime.block_on(run(ctx, stop));
        });
        Uploader { state, thread }
    }

    pub fn state(&self) -> UploaderState {
        self.state.lock().clone()
    }

    /// Stops at once; objects in flight are abandoned and resolved on the next start (the
    /// same bytes found under their name count as delivered).
    pub fn shutdown(&self) {
        self.thread.stop();
    }
}

/// Runs ledger work off the async runtime.
async fn ledger_call<T: Send + 'static>(
    ledger: &Arc<Ledger>,
    f: impl FnOnce(&Ledger) -> Result<T, crate::ledger::LedgerError> + Send + 'static,
) -> Result<T, crate::ledger::LedgerError> {
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || f(&ledger)).await.unwrap_or(Err(crate::ledger::LedgerError::Stopped))
}

/// The uploader's decisions: how many objects may be in flight, which jobs wait, what
/// the uploader is doing. Pure: time is monotonic time passed in.
pub struct UploadSchedule {
    store: Supervision<ExponentialRetry>,
    concurrency: usize,
    in_flight: HashSet<i64>,
    /// Jobs whose local copy could not be sent: when each may be tried again.
    local_waits: HashMap<i64, (Duration, Backoff)>,
    /// The last look found nothing to send and nothing was in flight.
    queue_empty: bool,
}

/// What to do about a job that came back from the store.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered: acknowledge it; `cleared_local_damage` if it had been failing locally,
    /// `store_back` if it ended a store outage.
    Delivered { how: Delivered, cleared_local_damage: bool, store_back: bool },
    /// The store failed: everything pauses for `pause`.
    StoreFailed { error: String, pause: Duration },
    /// The local copy is damaged: this job waits `wait` on its own.
    LocalDamage { error: String, wait: Duration },
    /// Other bytes under the name: never retried.
    Conflict { error: String },
}

impl UploadSchedule {
    pub fn new(concurrency: usize, retry_initial: Duration, retry_max: Duration) -> UploadSchedule {
        let retry = ExponentialRetry::new(retry_initial, retry_max).with_jitter().reset_on_success();
        UploadSchedule {
            store: Supervision::new(retry),
            concurrency: concurrency.max(1),
            in_flight: HashSet::new(),
            local_waits: HashMap::new(),
            queue_empty: false,
        }
    }

    /// How many more jobs may be sent now: none while backing off after a store failure,
    /// one (a probe) until the store answers again, else up to the concurrency.
    pub fn capacity(&self, now: Duration) -> usize {
        if !self.store.may_attempt(now) {
            return 0;
        }
        let limit = if self.store.probing() { 1 } else { self.concurrency };
        limit.saturating_sub(self.in_flight.len())
    }

    /// Jobs not to take from the queue now: those in flight and those waiting locally.
    pub fn skip(&self, now: Duration) -> Vec<i64> {
        let waiting = self.local_waits.iter().filter(|(_, (until, _))| *until > now).map(|(id, _)| *id);
        self.in_flight.iter().copied().chain(waiting).collect()
    }

    /// The queue was looked at and `jobs` were taken to be sent.
    pub fn sending(&mut self, jobs: &[i64], now: Duration) {
        if !jobs.is_empty() && self.store.phase() != crate::base::Phase::Running {
            self.store.attempt(now);
        }
        self.in_flight.extend(jobs);
        self.queue_empty = jobs.is_empty() && self.in_flight.is_empty();
    }

    /// A job came back from the store with `result`.
    pub fn returned(&mut self, job: i64, result: Result<Delivered, Failure>, now: Duration) -> Verdict {
        self.in_flight.remove(&job);
        match result {
            Ok(how) => {
                let cleared_local_damage = self.local_waits.remove(&job).is_some();
                let store_back = self.store.running(now).is_some();
                Verdict::Delivered { how, cleared_local_damage, store_back }
            }
            Err(Failure::Retry(error)) => Verdict::StoreFailed { error, pause: self.store.failed(now) },
            Err(Failure::Local(error)) => {
                let (until, backoff) =
                    self.local_waits.entry(job).or_insert_with(|| (now, Backoff::new(LOCAL_RETRY.0, LOCAL_RETRY.1)));
                let wait = backoff.next_delay();
                *until = now + wait;
                Verdict::LocalDamage { error, wait }
            }
            Err(Failure::Conflict(error)) => Verdict::Conflict { error },
        }
    }

    /// A delivery the ledger could not record (it is full or failing): nothing more is sent
    /// until the store's back-off has passed. The job stays pending; sent again, it finds
    /// its bytes in the store and is acknowledged then.
    pub fn unrecorded(&mut self, now: Duration) -> Duration {
        self.store.failed(now)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn phase(&self, now: Duration) -> UploaderPhase {
        if !self.store.may_attempt(now) {
            UploaderPhase::Waiting
        } else if self.in_flight.is_empty() && self.queue_empty {
            UploaderPhase::Idle
        } else {
            UploaderPhase::Sending
        }
    }

    /// How long the shell may sleep before something is due (a back-off ending), at most
    /// `POLL`, so that new jobs in the queue are seen.
    pub fn wait(&self, now: Duration) -> Duration {
        match self.store.wait_at(now) {
            Duration::ZERO => POLL,
            wait => wait,
        }
    }
}

/// Reads the queue on the blocking pool through the uploader's one read-only connection.
struct QueueReader {
    reader: Option<crate::ledger::Reader>,
    path: PathBuf,
}

impl QueueReader {
    fn open(path: PathBuf) -> Result<QueueReader, crate::ledger::LedgerError> {
        Ok(QueueReader { reader: Some(crate::ledger::Reader::open(&path)?), path })
    }

    /// Up to `want` pending jobs other than `skip`; None when the queue cannot be read at all.
    async fn pending(&mut self, want: usize, skip: Vec<i64>) -> Option<Vec<UploadJob>> {
        let lent = self.reader.take()?;
        let looked = tokio::task::spawn_blocking(move || {
            let jobs = lent.pending_uploads(want, &skip);
            (lent, jobs)
        })
        .await;
        match looked {
            Ok((lent, Ok(jobs))) => {
                self.reader = Some(lent);
                Some(jobs)
            }
            Ok((lent, Err(e))) => {
                self.reader = Some(lent);
                tracing::error!(error = %e, "cannot read the upload queue");
                Some(Vec::new())
            }
            Err(e) => {
                // Only a panic gets here; open a fresh connection for the next look.
                tracing::error!(error = %e, "upload queue reader panicked");
                self.reader = crate::ledger::Reader::open(&self.path).ok();
                self.reader.as_ref().map(|_| Vec::new())
            }
        }
    }
}

/// A job and what the store said to it.
type Sent = (UploadJob, Result<Delivered, Failure>);

async fn run(ctx: Ctx, stop: CancellationToken) {
    let ctx = Arc::new(ctx);
    let mut tasks: JoinSet<Sent> = JoinSet::new();
    let mut schedule =
        UploadSchedule::new(ctx.settings.concurrency, ctx.settings.retry_initial, ctx.settings.retry_max);
    let mut queue = match QueueReader::open(ctx.ledger.path().to_path_buf()) {
        Ok(q) => q,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the upload queue; nothing will be uploaded");
            return;
        }
    };
    tracing::info!(store = %ctx.store.url, "uploader started");
    while !stop.is_cancelled() {
        let now = ctx.clocks.monotonic();
        let want = schedule.capacity(now);
        if want > 0 {
            let Some(jobs) = queue.pending(want, schedule.skip(now)).await else {
                tracing::error!("cannot reopen the upload queue; the uploader stops");
                return;
            };
            schedule.sending(&jobs.iter().map(|j| j.id).collect::<Vec<_>>(), now);
            for job in jobs {
                let c = ctx.clone();
                tasks.spawn(async move {
                    // A panic in one delivery must not leave its job "in flight" for ever
                    // (that slot, or the lone probe's, would never free): it is a failure.
                    let delivery = deliver(&c.store, &job, &c.settings.data_dir, c.settings.multipart_threshold);
                    let r = std::panic::AssertUnwindSafe(delivery)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Err(Failure::Retry("the upload task failed unexpectedly".into())));
                    (job, r)
                });
            }
        }
        {
            let mut s = ctx.state.lock();
            s.in_flight = schedule.in_flight();
            s.state = schedule.phase(now);
        }
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((job, result)) = done else { continue };
                let verdict = schedule.returned(job.id, result, ctx.clocks.monotonic());
                if !act_on(&ctx, &job, verdict).await {
                    // The ledger could not take the result (full or failing): back off as
                    // after a store failure, rather than send the same objects again at once.
                    let pause = schedule.unrecorded(ctx.clocks.monotonic());
                    tracing::warn!(pause_ms = pause.as_millis() as u64, "the ledger cannot record uploads; pausing");
                }
            }
            _ = tokio::time::sleep(schedule.wait(now)) => {}
            _ = stop.cancelled() => {}
        }
    }
    tasks.abort_all();
    tracing::info!("uploader stopped");
}

/// Records in the ledger (and the log) what `UploadSchedule` decided about a returned job.
/// False when a delivery could not be acknowledged in the ledger.
async fn act_on(ctx: &Ctx, job: &UploadJob, verdict: Verdict) -> bool {
    match verdict {
        Verdict::Delivered { how, cleared_local_damage, store_back } => {
            if cleared_local_damage {
                let key = job.object_key.clone();
                let _ = ledger_call(&ctx.ledger, move |l| {
                    l.call(move |w| w.clear_alarm(crate::ledger::AlarmKind::LocalDamage, &key))
                })
                .await;
            }
            if store_back {
                tracing::info!(store = %ctx.store.url, "store reachable again; draining the backlog");
            }
            return acknowledge(ctx, job, how).await;
        }
        Verdict::StoreFailed { error, pause } => failed(ctx, job, &error, Some(pause)).await,
        Verdict::LocalDamage { error, .. } => {
            failed(ctx, job, &error, None).await;
            let (key, message) = (job.object_key.clone(), error.clone());
            if let Ok(true) = ledger_call(&ctx.ledger, move |l| {
                l.call(move |w| w.raise_alarm(crate::ledger::AlarmKind::LocalDamage, &key, &message))
            })
            .await
            {
                tracing::error!(object = %job.object_key, %error, "ALARM: a sealed file cannot be uploaded as it was sealed");
            }
        }
        Verdict::Conflict { error } => {
            tracing::error!(object = %job.object_key, %error, "ALARM: the store holds different bytes under this name; not overwritten");
            let (id, key, message) = (job.id, job.object_key.clone(), error.clone());
            if let Err(e) =
                ledger_call(&ctx.ledger, move |l| l.call(move |w| w.upload_conflict(id, &key, &message))).await
            {
                tracing::error!(error = %e, "could not record the conflict");
            }
        }
    }
    true
}

async fn acknowledge(ctx: &Ctx, job: &UploadJob, how: Delivered) -> bool {
    let id = job.id;
    match ledger_call(&ctx.ledger, move |l| l.call(move |w| w.upload_done(id))).await {
        Ok(()) => {
            tracing::debug!(object = %job.object_key, bytes = job.bytes, ?how, "uploaded");
            let mut s = ctx.state.lock();
            s.sent_objects += 1;
            s.sent_bytes += job.bytes;
            s.last_success = Some(ctx.clocks.wall().to_rfc3339());
            s.error = None;
            s.error_since = None;
            true
        }
        // The object is stored; the next attempt finds the same bytes and acknowledges.
        Err(e) => {
            tracing::error!(object = %job.object_key, error = %e, "uploaded but could not record it");
            false
        }
    }
}

async fn failed(ctx: &Ctx, job: &UploadJob, error: &str, pause: Option<Duration>) {
    let wall: WallTime = ctx.clocks.wall();
    let new_error = {
        let mut s = ctx.state.lock();
        s.failed_attempts += 1;
        let new = s.error.as_deref() != Some(error);
        if new {
            s.error = Some(error.to_string());
            s.error_since = Some(wall.to_rfc3339());
        }
        new
    };
    // The same error over and over is logged once, then at debug level.
    if new_error {
        tracing::warn!(object = %job.object_key, attempts = job.attempts + 1, retry_in_ms = pause.map(|d| d.as_millis() as u64), %error, "upload failed; will retry");
    } else {
        tracing::debug!(object = %job.object_key, %error, "upload failed again");
    }
    let (id, message) = (job.id, error.to_string());
    if let Err(e) = ledger_call(&ctx.ledger, move |l| l.call(move |w| w.upload_failed(id, &message))).await {
        tracing::error!(error = %e, "could not record an upload failure");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn unreachable() -> Result<Delivered, Failure> {
        Err(Failure::Retry("connection refused".into()))
    }

    fn damaged() -> Result<Delivered, Failure> {
        Err(Failure::Local("size changed".into()))
    }

    fn sent() -> Result<Delivered, Failure> {
        Ok(Delivered::Stored)
    }

    #[test]
    fn an_outage_backs_off_then_one_probe_then_full_concurrency_drains() {
        let mut s = UploadSchedule::new(4, ms(500), Duration::from_secs(8));
        let mut now = Duration::ZERO;
        assert_eq!(s.capacity(now), 4);
        s.sending(&[1, 2, 3, 4], now);
        assert_eq!(s.capacity(now), 0, "all four in flight");
        assert_eq!(s.phase(now), UploaderPhase::Sending);
        // The store goes away for 40 s.
        now += ms(100);
        let outage_ends = Duration::from_secs(40);
        let Verdict::StoreFailed { pause, .. } = s.returned(1, unreachable(), now) else { panic!("a store failure") };
        assert!(pause >= ms(250) && pause <= ms(500), "first pause: {pause:?}");
        for id in [2, 3, 4] {
            s.returned(id, unreachable(), now);
        }
        assert_eq!(s.phase(now), UploaderPhase::Waiting);
        assert_eq!(s.capacity(now), 0, "nothing is sent while backing off");
        let mut probes = 0;
        let mut next_id = 10;
        loop {
            now += s.wait(now);
            if s.capacity(now) == 0 {
                continue;
            }
            assert_eq!(s.capacity(now), 1, "after a failure, one object probes the store");
            s.sending(&[next_id], now);
            probes += 1;
            now += ms(20);
            if now >= outage_ends {
                let v = s.returned(next_id, sent(), now);
                assert!(matches!(v, Verdict::Delivered { cleared_local_damage: false, store_back: true, .. }), "{v:?}");
                break;
            }
            s.returned(next_id, unreachable(), now);
            next_id += 1;
        }
        assert!(probes <= 12, "backed off, not hammered: {probes} probes in 40 s");
        assert!(now < outage_ends + Duration::from_secs(8), "back within one capped pause: {now:?}");
        assert_eq!(s.capacity(now), 4, "the first success restores full concurrency to drain the backlog");
        assert_eq!(s.phase(now), UploaderPhase::Sending);
        s.sending(&[], now);
        assert_eq!(s.phase(now), UploaderPhase::Idle, "drained");
    }

    #[test]
    fn a_damaged_local_copy_waits_on_its_own_and_the_others_go_on() {
        let mut s = UploadSchedule::new(2, ms(500), Duration::from_secs(8));
        let now = Duration::from_secs(1);
        s.sending(&[7, 8], now);
        let v = s.returned(7, damaged(), now);
        assert!(matches!(v, Verdict::LocalDamage { wait, .. } if wait == Duration::from_secs(30)), "{v:?}");
        assert_eq!(s.capacity(now), 1, "the store is fine: the other slot is free");
        assert!(s.skip(now).contains(&7) && s.skip(now).contains(&8));
        let later = now + Duration::from_secs(31);
        s.returned(8, sent(), later);
        assert!(!s.skip(later).contains(&7), "tried again after its wait");
        s.sending(&[7], later);
        let v = s.returned(7, damaged(), later);
        assert!(matches!(v, Verdict::LocalDamage { wait, .. } if wait == Duration::from_secs(60)), "doubles: {v:?}");
        let much_later = later + Duration::from_secs(61);
        s.sending(&[7], much_later);
        let v = s.returned(7, sent(), much_later);
        assert!(matches!(v, Verdict::Delivered { cleared_local_damage: true, store_back: false, .. }), "{v:?}");
    }

    #[test]
    fn a_conflict_is_final_and_does_not_pause_the_store() {
        let mut s = UploadSchedule::new(2, ms(500), Duration::from_secs(8));
        s.sending(&[5], Duration::ZERO);
        let v = s.returned(5, Err(Failure::Conflict("other bytes".into())), Duration::ZERO);
        assert!(matches!(v, Verdict::Conflict { .. }));
        assert_eq!(s.capacity(Duration::ZERO), 2);
    }
}
