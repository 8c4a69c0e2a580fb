//! Startup recovery: find a session that was recording when the daemon died, seal and
//! commit the spool files it left behind (as `recovered`, with gap records for any hole
//! between them), and say why it stopped.

use super::continuity::Continuity;
use crate::base::{MediaTime, WallTime};
use crate::integrity::{Entry, RecordBody, RunCause};
use crate::ledger::{Ledger, LedgerError, Reader, RunEnd, SegmentCommit, SessionRow};
use crate::segment;
use std::collections::HashSet;
use std::path::Path;
use uuid::Uuid;

pub struct Interrupted {
    pub session: SessionRow,
    pub cause: RunCause,
    pub last_run: u32,
    /// The session was in recess: nothing to resume until someone resumes the hearing.
    pub in_recess: bool,
}

pub fn find_interrupted(reader: &Reader) -> Result<Option<Interrupted>, LedgerError> {
    let Some(session) = reader.recording_session()? else { return Ok(None) };
    let runs = reader.runs(session.id)?;
    let last = runs.last();
    let cause = match last {
        Some(r) if r.end_reason == Some(RunEnd::Shutdown) => RunCause::ResumeAfterShutdown,
        Some(r) if r.boot_id != crate::base::boot_id() => RunCause::ResumeAfterPowerLoss,
        _ => RunCause::ResumeAfterCrash,
    };
    let in_recess = last.is_some_and(|r| r.end_reason == Some(RunEnd::Recess));
    Ok(Some(Interrupted { last_run: last.map_or(0, |r| r.run), session, cause, in_recess }))
}

#[derive(Debug, Default)]
pub struct Recovered {
    pub committed: usize,
    pub quarantined: usize,
    /// Files that could not be sealed (I/O errors); left where they are.
    pub failed: usize,
}

/// Commits every uncommitted spool file of the session, in order.
pub fn commit_orphans(ledger: &Ledger, data_dir: &Path, session: &SessionRow) -> Result<Recovered, LedgerError> {
    let reader = ledger.reader()?;
    let committed: HashSet<(String, u64)> =
        reader.segments(session.id)?.into_iter().map(|s| (s.source, s.seq)).collect();
    let mut continuity = Continuity::replay(&reader.record_bodies(session.id)?);
    let session_dir = data_dir.join("spool").join(session.id.to_string());
    let orphans = segment::find_orphans(&session_dir, &committed)
        .map_err(|e| LedgerError::Invalid(format!("cannot scan the spool {}: {e}", session_dir.display())))?;
    let mut out = Recovered::default();
    for orphan in orphans {
        let size = std::fs::metadata(&orphan.path).map(|m| m.len()).unwrap_or(0);
        let span = segment::media_span(&orphan.path);
        let (start, end) = match span {
            Ok(Some(span)) => span,
            other => {
                if size == 0 {
                    // Created just before the crash, nothing written: nothing to keep.
                    let _ = std::fs::remove_file(&orphan.path);
                    continue;
                }
                match quarantine(data_dir, session, &orphan) {
                    Ok(target) => {
                        tracing::error!(path = %orphan.path.display(), ?other, moved_to = %target.display(), "unreadable spool file kept in quarantine; its interval will show as a gap");
                        out.quarantined += 1;
                    }
                    Err(e) => {
                        tracing::error!(path = %orphan.path.display(), ?other, error = %e, "unreadable spool file could not be moved to quarantine; left in place");
                        out.failed += 1;
                    }
                }
                continue;
            }
        };
        // One bad file must not keep the box from recording: it stays in the spool,
        // untouched, and its interval shows as a gap.
        let sealed = match segment::seal_path(&orphan.path) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(path = %orphan.path.display(), error = %e, "cannot seal a spool file left by the crash; leaving it in place");
                out.failed += 1;
                continue;
            }
        };
        if let Some(gap) = continuity.segment(&orphan.source, start, end) {
            let entry =
                Entry::Gap { source: gap.source, media_start: gap.start, media_end: gap.end, reason: gap.reason };
            let id = session.id;
            ledger.call(move |w| w.append(id, entry))?;
        }
        let commit = SegmentCommit {
            source: orphan.source.clone(),
            seq: orphan.seq,
            media_start: start,
            media_end: end,
            wall_start: file_wall_start(&orphan.path, start, end),
            bytes: sealed.bytes,
            sha256: sealed.sha256,
            recovered: true,
            local_path: orphan.path.strip_prefix(data_dir).unwrap_or(&orphan.path).display().to_string(),
            // How its timestamps were placed died with the daemon.
            timing: None,
        };
        let id = session.id;
        ledger.call(move |w| w.commit_segment(id, commit))?;
        tracing::info!(source = %orphan.source, seq = orphan.seq, %start, %end, "recovered a segment left by the crash");
        out.committed += 1;
    }
    Ok(out)
}

/// Moves an unreadable spool file to `quarantine/{session}/{source}/`, never over another
/// file, and makes the move durable (the new name before the old one goes).
fn quarantine(data_dir: &Path, session: &SessionRow, orphan: &segment::Orphan) -> std::io::Result<std::path::PathBuf> {
    let top = data_dir.join("quarantine");
    let dest = top.join(session.id.to_string()).join(&orphan.source);
    std::fs::create_dir_all(&dest)?;
    let name = orphan.path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let target = (0..)
        .map(|n| if n == 0 { dest.join(&name) } else { dest.join(format!("{name}.{n}")) })
        .find(|t| !t.exists())
        .expect("some free name");
    std::fs::rename(&orphan.path, &target)?;
    for dir in [dest.as_path(), dest.parent().unwrap_or(top.as_path()), top.as_path(), data_dir] {
        crate::base::sync_dir(dir)?;
    }
    if let Some(from) = orphan.path.parent() {
        crate::base::sync_dir(from)?;
    }
    Ok(target)
}

/// Committed segments of the session whose file is missing or shorter than sealed, each
/// reported (log and `local_damage` alarm). The commit order (file and directory synced
/// before the commit) means this must never happen, even after a power cut; the check is
/// there to say so loudly if it ever does. Returns how many.
pub fn check_committed_files(ledger: &Ledger, data_dir: &Path, session: Uuid) -> Result<usize, LedgerError> {
    let reader = ledger.reader()?;
    let session_dir = data_dir.join("spool").join(session.to_string());
    let mut damaged = 0;
    for (file, sealed) in reader.spooled_segments(session)? {
        let found = match std::fs::metadata(session_dir.join(&file)) {
            Ok(m) if m.len() >= sealed => continue,
            Ok(m) => format!("has {} of the {sealed} bytes sealed", m.len()),
            Err(e) => format!("cannot be read ({e})"),
        };
        let message = format!("a committed segment {found}: spool/{session}/{file}");
        tracing::error!(%message, "ALARM: committed data is damaged");
        let key = format!("{session}/{file}");
        ledger.call(move |w| w.raise_alarm(crate::ledger::AlarmKind::LocalDamage, &key, &message))?;
        damaged += 1;
    }
    Ok(damaged)
}

/// Best estimate of when a recovered file began: its last write minus its length.
fn file_wall_start(path: &Path, start: MediaTime, end: MediaTime) -> WallTime {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).unwrap_or(std::time::SystemTime::now());
    let nanos = modified.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as i128;
    WallTime::from_unix_nanos(nanos - end.saturating_sub(start).as_nanos() as i128)
}

/// Where a resumed run's media time starts: after everything already in the chain, and no
/// earlier than the wall-clock time elapsed since the session started.
pub fn resume_offset(session: &SessionRow, records: &[RecordBody], now: WallTime) -> MediaTime {
    let last = records
        .iter()
        .map(|r| match &r.entry {
            Entry::Segment { media_end, .. } | Entry::Gap { media_end, .. } => *media_end,
            Entry::RunStart { media, .. }
            | Entry::Mark { media, .. }
            | Entry::ClockJump { media, .. }
            | Entry::Recess { media, .. }
            | Entry::RecessEnd { media, .. }
            | Entry::PrivacyMute { media, .. }
            | Entry::HearingAccess { media, .. }
            | Entry::BroadcastStart { media, .. }
            | Entry::BroadcastStop { media, .. }
            | Entry::BroadcastRefused { media, .. } => *media,
            _ => MediaTime::ZERO,
        })
        .max()
        .unwrap_or_default();
    let elapsed = WallTime::parse(&session.started_wall).map(|s| now.since(s).max(0) as u64).unwrap_or(0);
    MediaTime(last.0.max(elapsed))
}
