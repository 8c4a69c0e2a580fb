//! Local retention and disk pressure. A spool file goes only after the store acknowledged
//! its exact bytes, and then when its retention has passed or the disk needs the space
//! (oldest acknowledged first). Un-uploaded files are never deleted. When free space stays
//! low anyway, an alarm is raised; below the critical mark cameras pause so that audio,
//! which needs far less, records as long as any space remains.

use crate::base::{Clocks, ServiceThread, WallTime};
use crate::ledger::{AlarmKind, Evictable, Ledger, LedgerError, Reader};
use parking_lot::Mutex;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct DiskSettings {
    pub data_dir: PathBuf,
    pub keep_uploaded: Duration,
    pub warn_free: u64,
    pub critical_free: u64,
    pub interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskLevel {
    Ok,
    Low,
    Critical,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DiskState {
    pub level: DiskLevel,
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub evicted_files: u64,
    pub evicted_bytes: u64,
    pub video_paused: bool,
}

/// Called with a reason to pause cameras, `None` to let them record again.
pub type PauseVideo = Arc<dyn Fn(Option<String>) + Send + Sync>;

/// Free and total bytes of the file system holding `path`, as an unprivileged writer sees it.
pub fn free_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let block = s.fragment_size() as u64;
    Ok((s.blocks_available() as u64 * block, s.blocks() as u64 * block))
}

/// Which level a free-space reading means. Leaving a level needs a margin above its mark
/// (hysteresis) so that cameras do not flap on and off around the threshold.
pub fn level_for(free: u64, previous: DiskLevel, warn: u64, critical: u64) -> DiskLevel {
    let margin = (warn - critical) / 4;
    let critical_exit = critical + margin;
    let low_exit = warn + margin;
    match previous {
        DiskLevel::Critical if free < critical_exit => DiskLevel::Critical,
        DiskLevel::Low | DiskLevel::Critical if free < low_exit && free >= critical => DiskLevel::Low,
        _ if free < critical => DiskLevel::Critical,
        _ if free < warn => DiskLevel::Low,
        _ => DiskLevel::Ok,
    }
}

/// Which acknowledged files to delete now: those past retention, then, while free space is
/// below `want_free`, the oldest acknowledged others. Pure.
pub fn choose_evictions(
    candidates: &[Evictable],
    now: WallTime,
    keep: Duration,
    free: u64,
    want_free: u64,
) -> Vec<usize> {
    let mut chosen = Vec::new();
    let mut free = free;
    for (i, c) in candidates.iter().enumerate() {
        let expired = WallTime::parse(&c.done_wall).is_ok_and(|done| now.since(done) >= keep.as_nanos() as i128);
        if expired || free < want_free {
            chosen.push(i);
            free += c.bytes;
        }
    }
    chosen
}

/// After a write failed for lack of space, the cameras stay paused for this many checks of
/// the disk, however much space it reports: a disk that said it had room and then refused
/// a write (reserved blocks, quotas, fragmentation) is not believed at once.
const FULL_HOLD_CHECKS: u32 = 10;

/// A `disk_failure` alarm (`ledger::failure`) is cleared after this long without another.
const DISK_FAILURE_CLEARS_AFTER: Duration = Duration::from_secs(3600);

pub struct DiskWatch {
    state: Arc<Mutex<DiskState>>,
    /// Checks left during which a full disk keeps the cameras paused.
    full_hold: Arc<std::sync::atomic::AtomicU32>,
    ledger: Arc<Ledger>,
    clocks: Arc<dyn Clocks>,
    pause_video: PauseVideo,
    thread: ServiceThread,
}

impl DiskWatch {
    pub fn start(
        settings: DiskSettings,
        ledger: Arc<Ledger>,
        clocks: Arc<dyn Clocks>,
        pause_video: PauseVideo,
    ) -> DiskWatch {
        let (free, total) = free_space(&settings.data_dir).unwrap_or((u64::MAX, u64::MAX));
        let state = Arc::new(Mutex::new(DiskState {
            level: DiskLevel::Ok,
            free_bytes: free,
            total_bytes: total,
            evicted_files: 0,
            evicted_bytes: 0,
            video_paused: false,
        }));
        let s = state.clone();
        let full_hold = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (hold, watch_ledger, watch_clocks, pause) =
            (full_hold.clone(), ledger.clone(), clocks.clone(), pause_video.clone());
        let thread = ServiceThread::spawn("disk-watch", move |st| {
            finish_interrupted_evictions(&ledger, &settings.data_dir);
            let mut reader = None;
            let started = clocks.monotonic();
            let mut disk_failure_cleared = false;
            loop {
                if !disk_failure_cleared && clocks.monotonic().saturating_sub(started) >= DISK_FAILURE_CLEARS_AFTER {
                    disk_failure_cleared = ledger.call(|w| w.clear_alarm(AlarmKind::DiskFailure, "")).is_ok();
                }
                // One connection for the life of the thread (reopened after an error).
                if reader.is_none() {
                    reader = Reader::open(ledger.path())
                        .map_err(|e| tracing::error!(error = %e, "disk check cannot read the ledger"))
                        .ok();
                }
                let result = match &reader {
                    Some(r) => tick(&settings, &ledger, r, clocks.as_ref(), &s, &hold, &pause_video),
                    None => Ok(()),
                };
                if let Err(e) = result {
                    reader = None;
                    tracing::error!(error = %e, "disk check failed");
                }
                if !clocks.sleep_unless_cancelled(settings.interval, &st) {
                    break;
                }
            }
        });
        DiskWatch { state, full_hold, ledger: watch_ledger, clocks: watch_clocks, pause_video: pause, thread }
    }

    pub fn state(&self) -> DiskState {
        self.state.lock().clone()
    }

    /// A segment could not be written for lack of space (`why` says which): the disk is
    /// critical now, whatever it last reported. The cameras pause at once and the alarm is
    /// raised; they record again once the disk has had room for [`FULL_HOLD_CHECKS`] checks.
    pub fn disk_full(&self, why: String) {
        self.full_hold.store(FULL_HOLD_CHECKS, std::sync::atomic::Ordering::SeqCst);
        let mut s = self.state.lock();
        if s.level == DiskLevel::Critical {
            return;
        }
        s.level = DiskLevel::Critical;
        s.video_paused = true;
        drop(s);
        let message = format!("{why}; cameras paused so that audio keeps recording while there is room");
        tracing::error!("ALARM: {message}");
        // On a thread of its own: the caller is the committer, and pausing goes through the
        // recorder, which may be waiting for the committer to finish (a session stopping).
        let (pause, ledger, clocks) = (self.pause_video.clone(), self.ledger.clone(), self.clocks.clone());
        let spawned = std::thread::Builder::new().name("disk-full".into()).spawn(move || {
            pause(Some(message.clone()));
            // The ledger may itself be short of room until the cameras stop writing.
            for _ in 0..120 {
                let text = message.clone();
                match ledger.call(move |w| w.raise_alarm(AlarmKind::DiskCritical, "", &text)) {
                    Err(e) if crate::ledger::is_disk_full(&e) => clocks.sleep(Duration::from_millis(500)),
                    Err(e) => return tracing::error!(error = %e, "cannot record the disk-full alarm"),
                    Ok(_) => return,
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the thread that pauses the cameras");
        }
    }

    pub fn shutdown(&self) {
        self.thread.stop();
    }
}

/// A crash between marking a file evicted and deleting it leaves the file behind.
fn finish_interrupted_evictions(ledger: &Ledger, data_dir: &Path) {
    let Ok(paths) = ledger.reader().and_then(|r| r.evicted_paths()) else { return };
    for p in paths {
        let _ = std::fs::remove_file(data_dir.join(p));
    }
}

fn tick(
    settings: &DiskSettings,
    ledger: &Ledger,
    reader: &Reader,
    clocks: &dyn Clocks,
    state: &Mutex<DiskState>,
    full_hold: &std::sync::atomic::AtomicU32,
    pause_video: &PauseVideo,
) -> Result<(), LedgerError> {
    let dir = &settings.data_dir;
    let (mut free, total) = free_space(dir).map_err(|e| LedgerError::Invalid(format!("{}: {e}", dir.display())))?;
    let candidates = reader.evictable_segments(10_000)?;
    // Under pressure, make room up to a little above the warning mark.
    let want_free = settings.warn_free + (settings.warn_free - settings.critical_free) / 2;
    let chosen = choose_evictions(&candidates, clocks.wall(), settings.keep_uploaded, free, want_free);
    let (mut files, mut bytes) = (0u64, 0u64);
    for i in chosen {
        let c = &candidates[i];
        let (session, source, seq) = (c.session, c.source.clone(), c.seq);
        if !ledger.call(move |w| w.mark_evicted(session, &source, seq))? {
            continue;
        }
        match std::fs::remove_file(dir.join(&c.local_path)) {
            Ok(()) => {
                files += 1;
                bytes += c.bytes;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(file = %c.local_path, error = %e, "could not delete an uploaded segment"),
        }
    }
    if files > 0 {
        free = free_space(dir).map(|(f, _)| f).unwrap_or(free);
        tracing::info!(files, bytes, free, "deleted local copies of uploaded segments");
    }

    let mut s = state.lock();
    s.free_bytes = free;
    s.total_bytes = total;
    s.evicted_files += files;
    s.evicted_bytes += bytes;
    let mut level = level_for(free, s.level, settings.warn_free, settings.critical_free);
    // After a write refused for lack of space, stay critical for a while whatever the disk says.
    let held = full_hold
        .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| n.checked_sub(1));
    if held.is_ok() && s.level == DiskLevel::Critical {
        level = DiskLevel::Critical;
    }
    if level == s.level {
        return Ok(());
    }
    let previous = std::mem::replace(&mut s.level, level);
    let mib = |b: u64| b / (1 << 20);
    let low_msg = format!(
        "{} MiB free on {} (warning below {} MiB): the store is not taking segments fast enough or the disk is too small",
        mib(free),
        dir.display(),
        mib(settings.warn_free)
    );
    let critical_msg = format!(
        "disk space critical: {} MiB free on {} (below {} MiB); cameras paused so that audio keeps recording",
        mib(free),
        dir.display(),
        mib(settings.critical_free)
    );
    match level {
        DiskLevel::Critical => {
            tracing::error!(free, "ALARM: {critical_msg}");
            s.video_paused = true;
            drop(s);
            pause_video(Some(critical_msg.clone()));
            ledger.call(move |w| w.raise_alarm(AlarmKind::DiskCritical, "", &critical_msg))?;
        }
        DiskLevel::Low => {
            if previous == DiskLevel::Critical {
                tracing::warn!(free, "disk space above the critical mark again; cameras resume");
                s.video_paused = false;
                drop(s);
                pause_video(None);
                ledger.call(|w| w.clear_alarm(AlarmKind::DiskCritical, ""))?;
            } else {
                tracing::warn!(free, "ALARM: {low_msg}");
                drop(s);
            }
            ledger.call(move |w| w.raise_alarm(AlarmKind::DiskLow, "", &low_msg))?;
        }
        DiskLevel::Ok => {
            tracing::info!(free, "disk space normal again");
            let resume = std::mem::replace(&mut s.video_paused, false);
            drop(s);
            if resume {
                pause_video(None);
            }
            ledger.call(|w| {
                w.clear_alarm(AlarmKind::DiskCritical, "")?;
                w.clear_alarm(AlarmKind::DiskLow, "")
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    const MIB: u64 = 1 << 20;

    #[test]
    fn levels_have_hysteresis() {
        let (warn, crit) = (100 * MIB, 20 * MIB);
        assert_eq!(level_for(150 * MIB, DiskLevel::Ok, warn, crit), DiskLevel::Ok);
        assert_eq!(level_for(90 * MIB, DiskLevel::Ok, warn, crit), DiskLevel::Low);
        assert_eq!(level_for(10 * MIB, DiskLevel::Ok, warn, crit), DiskLevel::Critical);
        // Leaving critical needs critical + (warn - critical) / 4 = 40 MiB.
        assert_eq!(level_for(30 * MIB, DiskLevel::Critical, warn, crit), DiskLevel::Critical);
        assert_eq!(level_for(45 * MIB, DiskLevel::Critical, warn, crit), DiskLevel::Low);
        // Leaving low needs 120 MiB.
        assert_eq!(level_for(110 * MIB, DiskLevel::Low, warn, crit), DiskLevel::Low);
        assert_eq!(level_for(125 * MIB, DiskLevel::Low, warn, crit), DiskLevel::Ok);
        assert_eq!(level_for(125 * MIB, DiskLevel::Critical, warn, crit), DiskLevel::Ok);
        assert_eq!(level_for(10 * MIB, DiskLevel::Low, warn, crit), DiskLevel::Critical);
    }

    fn uploaded(seq: u64, done: &str, bytes: u64) -> Evictable {
        Evictable {
            session: Uuid::nil(),
            source: "cam1".into(),
            seq,
            local_path: format!("spool/x/cam1/{seq:06}.mkv"),
            bytes,
            done_wall: done.into(),
        }
    }

    #[test]
    fn eviction_takes_expired_files_then_the_oldest_while_space_is_short() {
        let now = WallTime::parse("2026-11-23T12:00:00Z").unwrap();
        let day = Duration::from_secs(86_400);
        let c = vec![
            uploaded(0, "2026-11-20T12:00:00Z", 10),
            uploaded(1, "2026-11-23T11:00:00Z", 10),
            uploaded(2, "2026-11-23T11:30:00Z", 10),
        ];
        // Plenty of space: only what is past retention.
        assert_eq!(choose_evictions(&c, now, day, 1000, 500), vec![0]);
        // Short of space: oldest acknowledged first, until enough is free.
        assert_eq!(choose_evictions(&c, now, day, 475, 500), vec![0, 1, 2]);
        assert_eq!(choose_evictions(&c, now, day, 485, 500), vec![0, 1]);
        // Nothing acknowledged, nothing to take, whatever the pressure.
        assert!(choose_evictions(&[], now, day, 0, 500).is_empty());
    }
}
