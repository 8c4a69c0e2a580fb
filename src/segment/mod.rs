//! Segment files in the spool and the first half of the commit point.
//!
//! A segment file is created `O_EXCL` by [`SpoolSink`] (a GStreamer sink that splitmuxsink
//! drives, one file per fragment), appended to without user-space buffering (the muxer is
//! streamable, so nothing written is ever rewritten), and flushed to disk every
//! `sync_interval` by a [`Syncer`], so a crash or power cut loses at most the last second of
//! the open file. When the fragment closes, [`seal`] fsyncs the file and its directory and
//! takes its SHA-256 (computed while writing); the session then commits it to the ledger.
//! After a crash, [`find_orphans`] lists files that never reached the ledger, and
//! [`media_span`] reads their timestamps so they can be committed as `recovered`.

mod probe;
mod sink;

pub use probe::media_span;
pub use sink::{Durability, DurabilityTicket, OpenFiles, SpoolFile, SpoolSink, Syncer};

use crate::base::sync_dir;
use crate::integrity::digest_reader;
use std::collections::HashSet;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Size and SHA-256 of a segment file, read back after it is durably on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    pub bytes: u64,
    pub sha256: [u8; 32],
}

/// How a closed segment file was sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealing {
    /// Every byte written is on the disk.
    Whole(Sealed),
    /// A sync of the file failed, so only the file up to its last durable point can be
    /// trusted: it was cut back to that point (empty, when no sync had succeeded) and sealed
    /// as such. It is still committed, so that no segment number is ever skipped. `why` is
    /// the failure.
    CutBack { kept: Sealed, why: String },
}

/// Steps 1 and 2 of the commit point for a segment just closed: fsync the file, fsync its
/// directory, hash it. The caller commits the result (step 3). `written` is the size and
/// SHA-256 the writer computed while appending; `durability` is what the periodic syncs
/// achieved.
///
/// A failed sync, earlier or now, is never retried as if it had worked: after a failed
/// fsync the kernel may have dropped the data, and the next fsync reports success. The file
/// is cut back to its last durable point, and that is sealed ([`Sealing::CutBack`]).
pub fn seal(file: &mut File, path: &Path, written: Option<Sealed>, durability: Durability) -> std::io::Result<Sealing> {
    let failure = durability.failure.or_else(|| sync_file_and_dir(file, path).err().map(|e| e.to_string()));
    match failure {
        None => Ok(Sealing::Whole(hash_synced(file, written)?)),
        Some(why) => Ok(Sealing::CutBack { kept: cut_back(file, path, durability.durable_bytes)?, why }),
    }
}

fn sync_file_and_dir(file: &File, path: &Path) -> std::io::Result<()> {
    file.sync_all()?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// The hash of a synced file: the writer's, when the file on disk has exactly its size.
fn hash_synced(file: &mut File, written: Option<Sealed>) -> std::io::Result<Sealed> {
    if let Some(w) = written
        && file.metadata()?.len() == w.bytes
    {
        return Ok(w);
    }
    file.seek(SeekFrom::Start(0))?;
    let (bytes, sha256) = digest_reader(file)?;
    Ok(Sealed { bytes, sha256 })
}

/// Cuts a file whose sync failed back to the bytes a successful sync covered, makes that
/// durable and hashes it as it is now. The cut comes first: if the sync fails again, the
/// file left for recovery at the next start holds no byte beyond the durable point.
fn cut_back(file: &mut File, path: &Path, durable_bytes: u64) -> std::io::Result<Sealed> {
    file.set_len(durable_bytes)?;
    sync_file_and_dir(file, path)?;
    hash_synced(file, None)
}

/// Opens, reads back and seals an existing file (recovery after a crash). A sync that fails
/// here is an error: the file stays where it is.
pub fn seal_path(path: &Path) -> std::io::Result<Sealed> {
    let mut file = File::options().read(true).write(true).open(path)?;
    sync_file_and_dir(&file, path)?;
    hash_synced(&mut file, None)
}

/// A spool file that the ledger does not know: written before a crash, never committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub source: String,
    pub seq: u64,
    pub path: PathBuf,
}

/// Parses `{seq:06}.mkv`.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".mkv")?;
    (stem.len() == 6 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok())?
}

/// Spool files of a session folder (`{source}/{seq}.mkv`) missing from `committed`,
/// ordered by source and sequence.
pub fn find_orphans(session_dir: &Path, committed: &HashSet<(String, u64)>) -> std::io::Result<Vec<Orphan>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(session_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for source_dir in entries {
        let source_dir = source_dir?;
        if !source_dir.file_type()?.is_dir() {
            continue;
        }
        let source = source_dir.file_name().to_string_lossy().to_string();
        for f in std::fs::read_dir(source_dir.path())? {
            let f = f?;
            let name = f.file_name().to_string_lossy().to_string();
            if let Some(seq) = parse_segment_name(&name)
                && !committed.contains(&(source.clone(), seq))
            {
                out.push(Orphan { source: source.clone(), seq, path: f.path() });
            }
        }
    }
    out.sort_by(|a, b| (&a.source, a.seq).cmp(&(&b.source, b.seq)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert_eq!(parse_segment_name("000042.mkv"), Some(42));
        assert_eq!(parse_segment_name("42.mkv"), None);
        assert_eq!(parse_segment_name("000042.mkv.tmp"), None);
        assert_eq!(parse_segment_name("00004a.mkv"), None);
    }

    #[test]
    fn orphans_are_uncommitted_segment_files() {
        let dir = tempfile::tempdir().unwrap();
        for (src, seq) in [("cam", 0), ("cam", 1), ("cam", 2), ("mic", 0)] {
            std::fs::create_dir_all(dir.path().join(src)).unwrap();
            std::fs::write(dir.path().join(src).join(format!("{seq:06}.mkv")), b"x").unwrap();
        }
        std::fs::write(dir.path().join("cam").join("notes.txt"), b"x").unwrap();
        let committed: HashSet<_> = [("cam".to_string(), 0), ("cam".to_string(), 1)].into();
        let orphans = find_orphans(dir.path(), &committed).unwrap();
        let got: Vec<_> = orphans.iter().map(|o| (o.source.as_str(), o.seq)).collect();
        assert_eq!(got, vec![("cam", 2), ("mic", 0)]);
        assert!(find_orphans(&dir.path().join("absent"), &committed).unwrap().is_empty());
    }

    #[test]
    fn seal_reports_what_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000.mkv");
        std::fs::write(&path, b"segment bytes").unwrap();
        let sealed = seal_path(&path).unwrap();
        assert_eq!(sealed.bytes, 13);
        assert_eq!(sealed.sha256, crate::integrity::sha256(b"segment bytes"));
        // A hash computed while writing is trusted only if the size on disk matches.
        let mut f = File::options().read(true).write(true).open(&path).unwrap();
        let stale = Sealed { bytes: 12, sha256: [0; 32] };
        assert_eq!(seal(&mut f, &path, Some(stale), Durability::default()).unwrap(), Sealing::Whole(sealed));
        let good = Sealed { bytes: 13, sha256: [1; 32] };
        assert_eq!(seal(&mut f, &path, Some(good), Durability::default()).unwrap(), Sealing::Whole(good));
    }

    #[test]
    fn a_failed_sync_cuts_the_file_back_to_its_last_durable_point() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000.mkv");
        std::fs::write(&path, b"durable part, then bytes a failed sync may have lost").unwrap();
        let mut f = File::options().read(true).write(true).open(&path).unwrap();
        let failed = Durability { durable_bytes: 12, failure: Some("Input/output error (os error 5)".into()) };
        // The writer's hash of the whole file is not what is sealed: the sync that would
        // have made it durable failed.
        let whole = Sealed { bytes: 52, sha256: crate::integrity::sha256(&std::fs::read(&path).unwrap()) };
        let Sealing::CutBack { kept, why } = seal(&mut f, &path, Some(whole), failed).unwrap() else {
            panic!("a failed sync must not seal the whole file")
        };
        assert!(why.contains("os error 5"), "{why}");
        assert_eq!(std::fs::read(&path).unwrap(), b"durable part");
        assert_eq!(kept, Sealed { bytes: 12, sha256: crate::integrity::sha256(b"durable part") });

        // Nothing durable: the file stays, empty, so that its number is not skipped.
        let none = Durability { durable_bytes: 0, failure: Some("EIO".into()) };
        let empty = Sealed { bytes: 0, sha256: crate::integrity::sha256(b"") };
        assert_eq!(seal(&mut f, &path, None, none).unwrap(), Sealing::CutBack { kept: empty, why: "EIO".into() });
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }
}
