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
pub use sink::{OpenFiles, SpoolFile, SpoolSink, Syncer};

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

/// Steps 1 and 2 of the commit point: fsync the file, fsync its directory, hash it. The
/// caller commits the result (step 3). `written` is the size and SHA-256 the writer computed
/// while appending; it is used when the file on disk has exactly that size, otherwise the
/// file is read back and hashed.
pub fn seal(file: &mut File, path: &Path, written: Option<Sealed>) -> std::io::Result<Sealed> {
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    if let Some(w) = written
        && file.metadata()?.len() == w.bytes
    {
        return Ok(w);
    }
    file.seek(SeekFrom::Start(0))?;
    let (bytes, sha256) = digest_reader(file)?;
    Ok(Sealed { bytes, sha256 })
}

/// Opens, reads back and seals an existing file (recovery after a crash).
pub fn seal_path(path: &Path) -> std::io::Result<Sealed> {
    let mut file = File::options().read(true).write(true).open(path)?;
    seal(&mut file, path, None)
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
        assert_eq!(seal(&mut f, &path, Some(stale)).unwrap(), sealed);
        let good = Sealed { bytes: 13, sha256: [1; 32] };
        assert_eq!(seal(&mut f, &path, Some(good)).unwrap(), good);
    }
}
