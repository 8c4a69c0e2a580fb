//! The uploader: a thread of its own running a small async runtime that drains the ledger's
//! upload queue into the store, a few objects at a time, forever.
//!
//! Failure policy: when the store fails (unreachable, refusing, erroring), everything pauses
//! for a back-off delay (exponential, with jitter), then one object probes the store; full
//! concurrency returns with the first success. A job whose local copy is damaged waits on
//! its own, longer back-off and raises an alarm; the others go on. A job whose name holds
//! other bytes is a conflict: alarmed, never retried, never overwritten.

use super::deliver::{Delivered, Failure, deliver};
use super::store::Store;
use crate::base::{Backoff, Clocks, WallTime};
use crate::ledger::{Ledger, UploadJob};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, Clone)]
pub struct UploaderSettings {
    pub data_dir: PathBuf,
    pub concurrency: usize,
    pub multipart_threshold: u64,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// What the uploader is doing, for status and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UploaderState {
    /// `sending`, `idle` (nothing to send) or `waiting` (backing off after a failure).
    pub state: &'static str,
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
    stop: watch::Sender<bool>,
    thread: Mutex<Option<JoinHandle<()>>>,
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
        let state = Arc::new(Mutex::new(UploaderState { state: "idle", ..Default::default() }));
        let (stop, stop_rx) = watch::channel(false);
        let ctx = Ctx { store, ledger, clocks, settings, state: state.clone() };
        let thread = std::thread::Builder::new()
            .name("upload".into())
            .spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("upload runtime");
                runtime.block_on(run(ctx, stop_rx));
            })
            .expect("spawn upload thread");
        Uploader { state, stop, thread: Mutex::new(Some(thread)) }
    }

    pub fn state(&self) -> UploaderState {
        self.state.lock().unwrap().clone()
    }

    /// Stops at once; objects in flight are abandoned and resolved on the next start (the
    /// same bytes found under their name count as delivered).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        self.shutdown();
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

async fn run(ctx: Ctx, mut stop: watch::Receiver<bool>) {
    let ctx = Arc::new(ctx);
    let mut tasks: JoinSet<(UploadJob, Result<Delivered, Failure>)> = JoinSet::new();
    let mut busy: Vec<i64> = Vec::new();
    let mut store_backoff = Backoff::new(ctx.settings.retry_initial, ctx.settings.retry_max).with_jitter();
    // Set after a store failure: nothing is sent before it, then one probe at a time.
    let mut resume_at: Option<Instant> = None;
    let mut local_waits: HashMap<i64, (Instant, Backoff)> = HashMap::new();
    // One read-only connection for the life of the uploader, lent to the blocking pool for
    // each look at the queue.
    let mut reader = match crate::ledger::Reader::open(ctx.ledger.path()) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the upload queue; nothing will be uploaded");
            return;
        }
    };
    tracing::info!(store = %ctx.store.url, "uploader started");
    loop {
        if *stop.borrow() {
            break;
        }
        let now = Instant::now();
        let waiting = resume_at.is_some_and(|t| t > now);
        let capacity = if resume_at.is_some() { 1 } else { ctx.settings.concurrency };
        let mut queue_empty = false;
        if !waiting && tasks.len() < capacity {
            let mut skip = busy.clone();
            skip.extend(local_waits.iter().filter(|(_, (at, _))| *at > now).map(|(id, _)| *id));
            let want = capacity - tasks.len();
            let lent = reader.take().expect("the reader is back after each look");
            let looked = tokio::task::spawn_blocking(move || {
                let jobs = lent.pending_uploads(want, &skip);
                (lent, jobs)
            })
            .await;
            let jobs = match looked {
                Ok((lent, jobs)) => {
                    reader = Some(lent);
                    Ok(jobs)
                }
                Err(e) => {
                    // Only a panic gets here; open a fresh connection for the next look.
                    reader = crate::ledger::Reader::open(ctx.ledger.path()).ok();
                    Err(e)
                }
            };
            if reader.is_none() {
                tracing::error!("cannot reopen the upload queue; the uploader stops");
                return;
            }
            match jobs {
                Ok(Ok(jobs)) => {
                    queue_empty = jobs.is_empty() && tasks.is_empty();
                    for job in jobs {
                        busy.push(job.id);
                        let c = ctx.clone();
                        tasks.spawn(async move {
                            let r = deliver(&c.store, &job, &c.settings.data_dir, c.settings.multipart_threshold).await;
                            (job, r)
                        });
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "cannot read the upload queue"),
                Err(e) => tracing::error!(error = %e, "upload queue reader panicked"),
            }
        }
        {
            let mut s = ctx.state.lock().unwrap();
            s.in_flight = tasks.len();
            s.state = if waiting {
                "waiting"
            } else if tasks.is_empty() && queue_empty {
                "idle"
            } else {
                "sending"
            };
        }
        let sleep = resume_at.filter(|t| *t > now).map(|t| t - now).unwrap_or(POLL);
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((job, result)) = done else { continue };
                busy.retain(|id| *id != job.id);
                match result {
                    Ok(how) => {
                        if local_waits.remove(&job.id).is_some() {
                            let key = job.object_key.clone();
                            let _ = ledger_call(&ctx.ledger, move |l| l.call(move |w| w.clear_alarm("local_damage", &key))).await;
                        }
                        if resume_at.take().is_some() {
                            tracing::info!(store = %ctx.store.url, "store reachable again; draining the backlog");
                        }
                        store_backoff.reset();
                        acknowledge(&ctx, &job, how).await;
                    }
                    Err(Failure::Retry(error)) => {
                        let delay = store_backoff.next_delay();
                        resume_at = Some(Instant::now() + delay);
                        failed(&ctx, &job, &error, Some(delay)).await;
                    }
                    Err(Failure::Local(error)) => {
                        let (_, backoff) = local_waits
                            .entry(job.id)
                            .or_insert_with(|| (now, Backoff::new(LOCAL_RETRY.0, LOCAL_RETRY.1)));
                        let delay = backoff.next_delay();
                        local_waits.get_mut(&job.id).expect("just inserted").0 = Instant::now() + delay;
                        failed(&ctx, &job, &error, None).await;
                        let (key, message) = (job.object_key.clone(), error.clone());
                        if let Ok(true) = ledger_call(&ctx.ledger, move |l| l.call(move |w| w.raise_alarm("local_damage", &key, &message))).await {
                            tracing::error!(object = %job.object_key, %error, "ALARM: a sealed file cannot be uploaded as it was sealed");
                        }
                    }
                    Err(Failure::Conflict(error)) => {
                        tracing::error!(object = %job.object_key, %error, "ALARM: the store holds different bytes under this name; not overwritten");
                        let (id, key, message) = (job.id, job.object_key.clone(), error.clone());
                        if let Err(e) = ledger_call(&ctx.ledger, move |l| l.call(move |w| w.upload_conflict(id, &key, &message))).await {
                            tracing::error!(error = %e, "could not record the conflict");
                        }
                    }
                }
            }
            _ = tokio::time::sleep(sleep) => {}
            _ = stop.changed() => {}
        }
    }
    tasks.abort_all();
    tracing::info!("uploader stopped");
}

async fn acknowledge(ctx: &Ctx, job: &UploadJob, how: Delivered) {
    let id = job.id;
    match ledger_call(&ctx.ledger, move |l| l.call(move |w| w.upload_done(id))).await {
        Ok(()) => {
            tracing::debug!(object = %job.object_key, bytes = job.bytes, ?how, "uploaded");
            let mut s = ctx.state.lock().unwrap();
            s.sent_objects += 1;
            s.sent_bytes += job.bytes;
            s.last_success = Some(ctx.clocks.wall().to_rfc3339());
            s.error = None;
            s.error_since = None;
        }
        // The object is stored; the next attempt finds the same bytes and acknowledges.
        Err(e) => tracing::error!(object = %job.object_key, error = %e, "uploaded but could not record it"),
    }
}

async fn failed(ctx: &Ctx, job: &UploadJob, error: &str, pause: Option<Duration>) {
    let wall: WallTime = ctx.clocks.wall();
    let new_error = {
        let mut s = ctx.state.lock().unwrap();
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
