//! Export of a session as a self-contained folder: the signed chain, the media, the
//! manifest and the device public key, in the same layout as central storage, so that
//! `courtbox verify` checks it offline. One playable file per source is added for people
//! (`playable/`), derived from the media and not part of what is verified.

mod captions;
mod playable;

pub use captions::{srt, webvtt};
pub use playable::concat_segments;

use crate::integrity::{PublicKey, RecordBody, SignedDoc, layout};
use crate::ledger::{LedgerError, Reader};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0} exists and is not empty; export into a new folder")]
    NotEmpty(PathBuf),
    #[error("segment {file} is not in the local spool ({path}); export it from central storage")]
    MissingLocal { file: String, path: PathBuf },
    #[error("record #{0} in the ledger does not decode")]
    BadRecord(u64),
}

#[derive(Debug)]
pub struct ExportReport {
    pub records: usize,
    pub segments: usize,
    pub captions: usize,
    pub bytes: u64,
    pub closed: bool,
    pub playable: Vec<PathBuf>,
    pub playable_errors: Vec<String>,
    /// The key id that signed the session (as record #0 states it).
    pub signer: String,
    /// Whether `device.pub` with that key was written (false: the key is not on this box).
    pub shipped_key: bool,
}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T, ExportError> {
    r.map_err(|e| ExportError::Io(path.to_path_buf(), e))
}

const README: &str = "\
This folder is an export of one court session recorded by courtbox.

  chain/NNNNNNNN.rec   the signed record chain, in order: each file is one JSON record
                       (line 1, exactly as signed) and its Ed25519 signature (line 2)
  <source>/NNNNNN.mkv  the media segments, one folder per camera or microphone
  manifest.rec         the signed manifest sealing the chain when the session stopped
                       (manifest-N.rec: later revisions, sealing captions added afterwards)
  captions/            captions.json (checked against the chain), WebVTT and SRT per
                       microphone and merged with role labels
  checkpoints/         NNNNNNNN.note: signed checkpoints of the chain made while it was
                       recorded (also in central storage); NNNNNNNN.tsr: RFC 3161 tokens
  device.pub           the recording box's public key (PEM), for convenience: trust it only
                       if its fingerprint is the one the court registered
  playable/            one file per source for viewing; derived, not part of the record

Check everything with:  courtbox verify <this folder> --key <the box's registered public key>
   (or --fingerprint SHA256:..., or --trusted-keys <the court's list>), and add
   --against s3://bucket/prefix/<court>/<room> to compare with the store's checkpoints.
verify lists the files that are not part of the record (playable/, the caption files, this
README, anything added); --strict refuses a folder that has any. A folder named by a
session id must hold that session.
";

/// The public half of a replaced device key with this key id: `device.pub.replaced-*`, which
/// `provision --force` keeps, or a `device.key.replaced-*` private key that earlier versions
/// left beside the new one (readable only by its owner or root).
fn replaced_key(data_dir: &Path, key_id: &str) -> Option<PublicKey> {
    use crate::provision::{LEGACY_REPLACED_KEY_PREFIX, REPLACED_PUBLIC_PREFIX};
    std::fs::read_dir(data_dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(REPLACED_PUBLIC_PREFIX) {
                PublicKey::read(&e.path()).ok()
            } else if name.starts_with(LEGACY_REPLACED_KEY_PREFIX) {
                crate::integrity::DeviceKey::load(&e.path()).ok().map(|k| k.public())
            } else {
                None
            }
        })
        .find(|k| k.key_id() == key_id)
}

/// Where an export's files go: a folder (`courtbox export`), or a zip streamed to a client
/// (`GET /api/v1/sessions/{id}/export`), which copies nothing to disk.
pub trait ExportSink {
    /// A file made for the export (records, manifests, checkpoints, captions, key, README).
    fn put(&mut self, path: &str, bytes: &[u8]) -> std::io::Result<()>;
    /// A media segment, read from the spool as it is; returns its length.
    fn copy(&mut self, path: &str, from: &Path) -> std::io::Result<u64>;
}

/// The folder sink: files written under `dest`.
struct Folder<'a> {
    dest: &'a Path,
}

impl ExportSink for Folder<'_> {
    fn put(&mut self, path: &str, bytes: &[u8]) -> std::io::Result<()> {
        let to = self.dest.join(path);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(to, bytes)
    }
    fn copy(&mut self, path: &str, from: &Path) -> std::io::Result<u64> {
        let to = self.dest.join(path);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(from, to)
    }
}

/// Exports a session into the folder `dest` (new or empty), with one playable file per source.
pub fn export_session(
    reader: &Reader,
    data_dir: &Path,
    public: &PublicKey,
    id: &str,
    dest: &Path,
) -> Result<ExportReport, ExportError> {
    if dest.exists() && io(dest, std::fs::read_dir(dest))?.next().is_some() {
        return Err(ExportError::NotEmpty(dest.to_path_buf()));
    }
    io(dest, std::fs::create_dir_all(dest.join(layout::CHAIN_DIR)))?;
    let (mut report, by_source) = export_record(reader, data_dir, public, id, &mut Folder { dest })?;
    if !by_source.is_empty() {
        io(dest, std::fs::create_dir_all(dest.join("playable")))?;
    }
    for (source, files) in by_source {
        let files: Vec<PathBuf> = files.iter().map(|f| dest.join(f)).collect();
        let out = dest.join("playable").join(format!("{source}.mkv"));
        match concat_segments(&files, &out) {
            Ok(()) => report.playable.push(out),
            Err(e) => report.playable_errors.push(format!("{source}: {e}")),
        }
    }
    Ok(report)
}

/// Everything of a session that `verify` checks, and the caption files and README, into
/// `sink`; media straight from the spool. Returns the report (no playable files yet) and
/// each source's segment paths inside the export.
pub fn export_record(
    reader: &Reader,
    data_dir: &Path,
    public: &PublicKey,
    id: &str,
    sink: &mut dyn ExportSink,
) -> Result<(ExportReport, BTreeMap<String, Vec<String>>), ExportError> {
    let session = reader.find_session(id)?;
    let here = Path::new(id);
    let records = reader.records(session.id)?;
    for r in &records {
        let body: RecordBody = serde_json::from_slice(&r.body).map_err(|_| ExportError::BadRecord(r.idx))?;
        let doc = SignedDoc { body: r.body.clone(), signature: r.signature, key_id: body.device };
        let path = layout::record_file(r.idx);
        io(Path::new(&path), sink.put(&path, &doc.to_bytes()))?;
    }

    let spool = data_dir.join("spool").join(session.id.to_string());
    let mut bytes = 0;
    let mut by_source: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let segments = reader.segments(session.id)?;
    for s in &segments {
        let from = spool.join(&s.file);
        if !from.exists() {
            return Err(ExportError::MissingLocal { file: s.file.clone(), path: from });
        }
        bytes += io(&from, sink.copy(&s.file, &from))?;
        // A segment cut back to nothing readable (a failed sync) has an empty span: it is
        // part of the record, not of the playable file.
        if s.media_end_ns > s.media_start_ns {
            by_source.entry(s.source.clone()).or_default().push(s.file.clone());
        }
    }
    let manifests = reader.manifests(session.id)?;
    for (revision, body) in &manifests {
        let path = layout::manifest_file(*revision);
        io(Path::new(&path), sink.put(&path, body))?;
    }
    let checkpoints = reader.checkpoints(&crate::witness::Log::Session(session.id))?;
    for c in &checkpoints {
        use crate::witness::checkpoint::{NOTE, TOKEN, checkpoint_file};
        let path = checkpoint_file(c.seq, NOTE);
        io(Path::new(&path), sink.put(&path, &c.note))?;
        if let Some(token) = &c.token {
            let path = checkpoint_file(c.seq, TOKEN);
            io(Path::new(&path), sink.put(&path, token))?;
        }
    }
    let captions = reader.captions(session.id)?;
    if !captions.is_empty() {
        for (path, text) in io(here, captions::files(&captions))? {
            io(Path::new(&path), sink.put(&path, text.as_bytes()))?;
        }
    }
    // The key that signed this session: the box's own, or, for a session recorded before
    // `provision --force`, the replaced key kept beside it.
    let signer = records
        .first()
        .and_then(|r| serde_json::from_slice::<RecordBody>(&r.body).ok())
        .map(|b| b.device)
        .unwrap_or_else(|| public.key_id());
    let shipped = if signer == public.key_id() { Some(*public) } else { replaced_key(data_dir, &signer) };
    if let Some(key) = shipped {
        io(Path::new(layout::PUBLIC_KEY), sink.put(layout::PUBLIC_KEY, key.to_pem().as_bytes()))?;
    }
    io(Path::new("README.txt"), sink.put("README.txt", README.as_bytes()))?;
    let report = ExportReport {
        records: records.len(),
        segments: segments.len(),
        captions: captions.len(),
        bytes,
        closed: !manifests.is_empty(),
        playable: Vec::new(),
        playable_errors: Vec::new(),
        shipped_key: shipped.is_some(),
        signer,
    };
    Ok((report, by_source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_key_is_found_by_its_public_half_or_a_legacy_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let kept = crate::integrity::DeviceKey::create(&dir.path().join("scratch.key")).unwrap().public();
        std::fs::write(dir.path().join("device.pub.replaced-100"), kept.to_pem()).unwrap();
        let legacy = crate::integrity::DeviceKey::create(&dir.path().join("device.key.replaced-50")).unwrap().public();
        assert_eq!(replaced_key(dir.path(), &kept.key_id()), Some(kept));
        assert_eq!(replaced_key(dir.path(), &legacy.key_id()), Some(legacy));
        assert_eq!(replaced_key(dir.path(), "0000000000000000"), None);
    }
}
