//! The disk that the fault layer simulates, as plain data: what a reader sees now, what a
//! power cut would leave, and the faults waiting to happen. No FUSE here, so the loss models
//! are unit-tested directly (the tests at the end).
//!
//! Durability follows POSIX at its strictest, the rule a program may rely on and no more:
//! - a file's bytes (and its length) reach the disk only with `fsync`/`fdatasync` of that
//!   file;
//! - a directory's entries (create, unlink, rename, mkdir) only with `fsync` of that
//!   directory. A file created and synced, in a directory never synced, is lost; a rename
//!   across directories is durable in each directory when that directory is synced.
//!
//! A failed `fsync` behaves as Linux does since 4.13: the unsynced changes are dropped from
//! what will reach the disk, yet stay visible to readers (the page cache still has them),
//! and the next `fsync` succeeds. A program that retries the fsync and carries on has lost
//! data without knowing it: the PostgreSQL lesson of 2018.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::time::{Duration, SystemTime};

pub type Ino = u64;
pub const ROOT: Ino = 1;
pub const PAGE: u64 = 4096;

/// What survives a power cut of the data that was never synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossModel {
    /// Model A: every unsynced write and directory change is lost.
    AllUnsynced,
    /// Model B, the adversarial one: any subset of the unsynced writes survives, torn at
    /// 4 KiB pages and applied in any order; of each directory's unsynced changes, a
    /// prefix (a journal keeps metadata in order, not data). A rename within a directory
    /// is one change; across directories it is one in each.
    Adversarial,
}

/// A small seeded random source (xorshift), so that a failing cut can be replayed from the
/// seed the test prints.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    pub fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// Which `fsync` calls fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsyncFault {
    /// The fault applies to files whose path (from the volume's root) contains this.
    pub path_contains: String,
    /// Only the next matching fsync fails, or every one.
    pub once: bool,
    /// Only `fdatasync` fails (the daemon's periodic flush of open files), not `fsync`.
    pub datasync_only: bool,
}

/// Faults armed by the test. All off by default.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// After a power cut, until the volume is remounted: every operation fails with EIO.
    pub frozen: bool,
    pub fsync_eio: Option<FsyncFault>,
    /// Bytes by which files may still grow; then a write that grows a file fails with
    /// ENOSPC (one that does not fit is cut short first, as a real file system does).
    /// Overwrites in place need no new space.
    pub write_budget: Option<u64>,
    /// What `statfs` reports as free. By default plenty, whatever the budget: a disk that
    /// refuses a write in mid-segment had said it had room (reserved blocks, quotas).
    pub statfs_free: Option<u64>,
    /// Reads of files whose path contains this fail with EIO.
    pub read_eio: Option<String>,
    /// Every fsync (file or directory) takes this long before it returns.
    pub slow_fsync: Option<Duration>,
}

/// Counts of what happened, for the test's report.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub fsyncs: u64,
    pub fsync_failures: u64,
    pub enospc: u64,
    pub read_failures: u64,
    pub bytes_written: u64,
}

#[derive(Clone, Debug)]
enum Change {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug, Default)]
pub struct FileData {
    /// What a reader sees.
    now: Vec<u8>,
    /// What is on the disk.
    durable: Vec<u8>,
    /// Changes since the last sync, in order.
    unsynced: Vec<Change>,
}

/// A change of a directory's entries that reaches the disk whole or not at all: names
/// bound to an inode, or removed.
type DirChange = Vec<(OsString, Option<Ino>)>;

#[derive(Clone, Debug, Default)]
pub struct DirData {
    now: BTreeMap<OsString, Ino>,
    durable: BTreeMap<OsString, Ino>,
    /// Entry changes since the last sync, in order.
    unsynced: Vec<DirChange>,
}

#[derive(Clone, Debug)]
pub enum Body {
    File(FileData),
    Dir(DirData),
}

#[derive(Clone, Debug)]
pub struct Inode {
    pub body: Body,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    /// Where the inode was last linked, for paths in faults and reports.
    parent: Ino,
    name: OsString,
}

/// An errno, as the FUSE adapter answers it.
pub type Errno = i32;

/// What a power cut did, for the test's report.
#[derive(Clone, Debug, Default)]
pub struct CutReport {
    /// Unsynced bytes written before the cut, and how many of them survived.
    pub unsynced_bytes: u64,
    pub surviving_bytes: u64,
    /// Unsynced directory changes, and how many survived.
    pub unsynced_entries: u64,
    pub surviving_entries: u64,
}

#[derive(Clone, Debug)]
pub struct Disk {
    inodes: BTreeMap<Ino, Inode>,
    next_ino: Ino,
    pub faults: Faults,
    pub stats: Stats,
}

impl Default for Disk {
    fn default() -> Self {
        Self::new()
    }
}

impl Disk {
    pub fn new() -> Disk {
        let root = Inode {
            body: Body::Dir(DirData::default()),
            perm: 0o755,
            uid: 0,
            gid: 0,
            mtime: SystemTime::now(),
            parent: ROOT,
            name: OsString::new(),
        };
        Disk {
            inodes: BTreeMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            faults: Faults::default(),
            stats: Stats::default(),
        }
    }

    pub fn inode(&self, ino: Ino) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn dir(&self, ino: Ino) -> Result<&DirData, Errno> {
        match &self.inode(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut DirData, Errno> {
        match &mut self.inodes.get_mut(&ino).ok_or(libc::ENOENT)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Result<&mut FileData, Errno> {
        match &mut self.inodes.get_mut(&ino).ok_or(libc::ENOENT)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(libc::EISDIR),
        }
    }

    /// The inode's path from the volume's root, e.g. `spool/<session>/bench/000003.mkv`.
    pub fn path(&self, mut ino: Ino) -> String {
        let mut parts = Vec::new();
        while ino != ROOT {
            let Some(i) = self.inodes.get(&ino) else { break };
            parts.push(i.name.to_string_lossy().into_owned());
            ino = i.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    pub fn size(&self, ino: Ino) -> u64 {
        match self.inodes.get(&ino).map(|i| &i.body) {
            Some(Body::File(f)) => f.now.len() as u64,
            _ => 0,
        }
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Ino, Errno> {
        self.dir(parent)?.now.get(name).copied().ok_or(libc::ENOENT)
    }

    fn bind(&mut self, parent: Ino, name: &OsStr, target: Option<Ino>) -> Result<(), Errno> {
        self.change(parent, vec![(name.to_owned(), target)])
    }

    fn change(&mut self, parent: Ino, change: DirChange) -> Result<(), Errno> {
        let d = self.dir_mut(parent)?;
        for (name, target) in &change {
            match target {
                Some(t) => d.now.insert(name.clone(), *t),
                None => d.now.remove(name),
            };
        }
        d.unsynced.push(change);
        Ok(())
    }

    /// Creates a file or directory (`EEXIST` if the name is taken).
    pub fn make(&mut self, parent: Ino, name: &OsStr, dir: bool, perm: u16, uid: u32, gid: u32) -> Result<Ino, Errno> {
        if self.dir(parent)?.now.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let body = if dir { Body::Dir(DirData::default()) } else { Body::File(FileData::default()) };
        let inode = Inode { body, perm, uid, gid, mtime: SystemTime::now(), parent, name: name.to_owned() };
        self.inodes.insert(ino, inode);
        self.bind(parent, name, Some(ino))?;
        Ok(ino)
    }

    pub fn unlink(&mut self, parent: Ino, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (&self.inode(ino)?.body, dir) {
            (Body::Dir(_), false) => return Err(libc::EISDIR),
            (Body::File(_), true) => return Err(libc::ENOTDIR),
            (Body::Dir(d), true) if !d.now.is_empty() => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        // The inode itself stays: open descriptors may still use it, and the disk may still
        // name it until the directory is synced.
        self.bind(parent, name, None)
    }

    pub fn rename(
        &mut self,
        from: Ino,
        name: &OsStr,
        to: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), Errno> {
        let ino = self.lookup(from, name)?;
        if let Ok(existing) = self.lookup(to, new_name) {
            if no_replace {
                return Err(libc::EEXIST);
            }
            if let Body::Dir(d) = &self.inode(existing)?.body
                && !d.now.is_empty()
            {
                return Err(libc::ENOTEMPTY);
            }
        }
        self.dir(to)?;
        if from == to {
            self.change(from, vec![(name.to_owned(), None), (new_name.to_owned(), Some(ino))])?;
        } else {
            self.bind(from, name, None)?;
            self.bind(to, new_name, Some(ino))?;
        }
        let i = self.inodes.get_mut(&ino).expect("looked up");
        i.parent = to;
        i.name = new_name.to_owned();
        Ok(())
    }

    pub fn entries(&self, dir: Ino) -> Result<Vec<(OsString, Ino, bool)>, Errno> {
        let d = self.dir(dir)?;
        Ok(d.now.iter().map(|(n, i)| (n.clone(), *i, matches!(self.inodes[i].body, Body::Dir(_)))).collect())
    }

    pub fn read(&mut self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        if let Some(name) = &self.faults.read_eio
            && self.path(ino).contains(name.as_str())
        {
            self.stats.read_failures += 1;
            return Err(libc::EIO);
        }
        let f = self.file_mut(ino)?;
        let start = (offset as usize).min(f.now.len());
        let end = (start + size as usize).min(f.now.len());
        Ok(f.now[start..end].to_vec())
    }

    /// Writes what fits in the write budget; `ENOSPC` when nothing does.
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let mut n = data.len() as u64;
        let size = self.size(ino);
        if let Some(budget) = self.faults.write_budget.as_mut() {
            let growth = (offset + n).saturating_sub(size.max(offset));
            if growth > *budget {
                // What fits: the part in place plus the growth the budget allows.
                n = (size.saturating_sub(offset) + *budget).min(n);
                if n == 0 {
                    self.stats.enospc += 1;
                    return Err(libc::ENOSPC);
                }
            }
            *budget -= (offset + n).saturating_sub(size.max(offset));
        }
        let data = &data[..n as usize];
        let f = self.file_mut(ino)?;
        apply(&mut f.now, &Change::Write { offset, data: data.to_vec() });
        f.unsynced.push(Change::Write { offset, data: data.to_vec() });
        self.stats.bytes_written += n;
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.mtime = SystemTime::now();
        }
        Ok(n as u32)
    }

    pub fn set_len(&mut self, ino: Ino, len: u64) -> Result<(), Errno> {
        let f = self.file_mut(ino)?;
        apply(&mut f.now, &Change::SetLen(len));
        f.unsynced.push(Change::SetLen(len));
        Ok(())
    }

    pub fn set_attr(&mut self, ino: Ino, perm: Option<u16>, uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
        let i = self.inodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        if let Some(p) = perm {
            i.perm = p;
        }
        if let Some(u) = uid {
            i.uid = u;
        }
        if let Some(g) = gid {
            i.gid = g;
        }
        Ok(())
    }

    /// How many changes a sync starting now would cover (a slow fsync covers what was
    /// written before it began, not what arrives while it waits).
    pub fn sync_mark(&self, ino: Ino) -> Result<usize, Errno> {
        match &self.inode(ino)?.body {
            Body::File(f) => Ok(f.unsynced.len()),
            Body::Dir(d) => Ok(d.unsynced.len()),
        }
    }

    /// `fsync` (or `fdatasync`) of a file or directory, covering its first `mark` unsynced
    /// changes.
    pub fn sync(&mut self, ino: Ino, mark: usize, datasync: bool) -> Result<(), Errno> {
        self.stats.fsyncs += 1;
        let is_file = matches!(self.inode(ino)?.body, Body::File(_));
        let (fail, once) = match &self.faults.fsync_eio {
            Some(fault) => (
                is_file && (datasync || !fault.datasync_only) && self.path(ino).contains(&fault.path_contains),
                fault.once,
            ),
            None => (false, false),
        };
        if fail {
            self.stats.fsync_failures += 1;
            if once {
                self.faults.fsync_eio = None;
            }
        }
        match &mut self.inodes.get_mut(&ino).ok_or(libc::ENOENT)?.body {
            Body::File(f) => {
                let mark = mark.min(f.unsynced.len());
                let covered: Vec<Change> = f.unsynced.drain(..mark).collect();
                if fail {
                    // The writes never reach the disk, and nobody will try again.
                    return Err(libc::EIO);
                }
                for c in &covered {
                    apply(&mut f.durable, c);
                }
            }
            Body::Dir(d) => {
                let mark = mark.min(d.unsynced.len());
                for (name, target) in d.unsynced.drain(..mark).flatten() {
                    match target {
                        Some(t) => d.durable.insert(name, t),
                        None => d.durable.remove(&name),
                    };
                }
            }
        }
        Ok(())
    }

    /// Free bytes reported to `statfs`.
    pub fn free_bytes(&self) -> u64 {
        self.faults.statfs_free.unwrap_or(64 << 30)
    }

    /// The disk as it is after a power cut: what was synced, plus what the loss model lets
    /// survive of the rest. Inodes that no surviving directory entry reaches are gone.
    pub fn power_cut(&self, model: LossModel, rng: &mut Rng) -> (Disk, CutReport) {
        let mut report = CutReport::default();
        let mut inodes = BTreeMap::new();
        for (ino, inode) in &self.inodes {
            let mut inode = inode.clone();
            match &mut inode.body {
                Body::File(f) => {
                    let mut pieces: Vec<Change> = Vec::new();
                    for c in &f.unsynced {
                        if let Change::Write { data, .. } = c {
                            report.unsynced_bytes += data.len() as u64;
                        }
                        pieces.extend(torn(c));
                    }
                    let mut survivors: Vec<Change> = match model {
                        LossModel::AllUnsynced => Vec::new(),
                        LossModel::Adversarial => pieces.into_iter().filter(|_| rng.coin()).collect(),
                    };
                    shuffle(&mut survivors, rng);
                    for c in &survivors {
                        if let Change::Write { data, .. } = c {
                            report.surviving_bytes += data.len() as u64;
                        }
                        apply(&mut f.durable, c);
                    }
                    *f = FileData { now: f.durable.clone(), durable: f.durable.clone(), unsynced: Vec::new() };
                }
                Body::Dir(d) => {
                    report.unsynced_entries += d.unsynced.len() as u64;
                    let keep = match model {
                        LossModel::AllUnsynced => 0,
                        LossModel::Adversarial => rng.below(d.unsynced.len() as u64 + 1) as usize,
                    };
                    report.surviving_entries += keep as u64;
                    let mut durable = d.durable.clone();
                    for (name, target) in d.unsynced.iter().take(keep).flatten() {
                        match target {
                            Some(t) => durable.insert(name.clone(), *t),
                            None => durable.remove(name),
                        };
                    }
                    *d = DirData { now: durable.clone(), durable, unsynced: Vec::new() };
                }
            }
            inodes.insert(*ino, inode);
        }
        // Keep what the root reaches.
        let mut reached = std::collections::BTreeSet::from([ROOT]);
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            if let Some(Inode { body: Body::Dir(d), .. }) = inodes.get(&ino) {
                for child in d.now.values() {
                    if reached.insert(*child) {
                        todo.push(*child);
                    }
                }
            }
        }
        inodes.retain(|ino, _| reached.contains(ino));
        // Parents and names as the survivors link them.
        let links: Vec<(Ino, Ino, OsString)> = inodes
            .iter()
            .filter_map(|(p, i)| match &i.body {
                Body::Dir(d) => Some(d.now.iter().map(|(n, c)| (*c, *p, n.clone())).collect::<Vec<_>>()),
                Body::File(_) => None,
            })
            .flatten()
            .collect();
        for (child, parent, name) in links {
            if let Some(i) = inodes.get_mut(&child) {
                i.parent = parent;
                i.name = name;
            }
        }
        (Disk { inodes, next_ino: self.next_ino, faults: Faults::default(), stats: Stats::default() }, report)
    }
}

/// A change split at 4 KiB page boundaries of the file: the pieces a power cut can tear
/// it into.
fn torn(change: &Change) -> Vec<Change> {
    match change {
        Change::SetLen(_) => vec![change.clone()],
        Change::Write { offset, data } => {
            let mut out = Vec::new();
            let mut at = 0usize;
            while at < data.len() {
                let pos = offset + at as u64;
                let room = (PAGE - pos % PAGE) as usize;
                let n = room.min(data.len() - at);
                out.push(Change::Write { offset: pos, data: data[at..at + n].to_vec() });
                at += n;
            }
            out
        }
    }
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

fn apply(bytes: &mut Vec<u8>, change: &Change) {
    match change {
        Change::SetLen(n) => bytes.resize(*n as usize, 0),
        Change::Write { offset, data } => {
            let end = *offset as usize + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[*offset as usize..end].copy_from_slice(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    fn file(disk: &mut Disk, parent: Ino, n: &str) -> Ino {
        disk.make(parent, name(n), false, 0o640, 0, 0).unwrap()
    }

    fn sync(disk: &mut Disk, ino: Ino) -> Result<(), Errno> {
        let mark = disk.sync_mark(ino).unwrap();
        disk.sync(ino, mark, false)
    }

    fn contents(disk: &mut Disk, parent: Ino, n: &str) -> Option<Vec<u8>> {
        let ino = disk.lookup(parent, name(n)).ok()?;
        Some(disk.read(ino, 0, u32::MAX).unwrap())
    }

    #[test]
    fn model_a_keeps_exactly_what_was_synced() {
        let mut disk = Disk::new();
        let f = file(&mut disk, ROOT, "seg");
        disk.write(f, 0, b"synced ").unwrap();
        sync(&mut disk, f).unwrap();
        sync(&mut disk, ROOT).unwrap();
        disk.write(f, 7, b"lost").unwrap();
        assert_eq!(contents(&mut disk, ROOT, "seg").unwrap(), b"synced lost", "readers see everything");
        let (mut after, report) = disk.power_cut(LossModel::AllUnsynced, &mut Rng(7));
        assert_eq!(contents(&mut after, ROOT, "seg").unwrap(), b"synced ");
        assert_eq!((report.unsynced_bytes, report.surviving_bytes), (4, 0));
    }

    #[test]
    fn a_new_name_needs_its_directory_synced() {
        let mut disk = Disk::new();
        let dir = disk.make(ROOT, name("spool"), true, 0o750, 0, 0).unwrap();
        sync(&mut disk, ROOT).unwrap();
        let f = file(&mut disk, dir, "a.mkv");
        disk.write(f, 0, b"data").unwrap();
        sync(&mut disk, f).unwrap();
        let (mut after, _) = disk.power_cut(LossModel::AllUnsynced, &mut Rng(1));
        assert_eq!(contents(&mut after, dir, "a.mkv"), None, "the file's data was synced, its name was not");
        sync(&mut disk, dir).unwrap();
        let (mut after, _) = disk.power_cut(LossModel::AllUnsynced, &mut Rng(1));
        assert_eq!(contents(&mut after, dir, "a.mkv").unwrap(), b"data");
        // A directory never synced into its parent takes everything in it along.
        let lost = disk.make(ROOT, name("lost"), true, 0o750, 0, 0).unwrap();
        let g = file(&mut disk, lost, "b");
        sync(&mut disk, g).unwrap();
        sync(&mut disk, lost).unwrap();
        let (after, _) = disk.power_cut(LossModel::AllUnsynced, &mut Rng(1));
        assert_eq!(after.lookup(ROOT, name("lost")), Err(libc::ENOENT));
    }

    #[test]
    fn a_rename_is_durable_in_each_directory_once_that_directory_is_synced() {
        let mut disk = Disk::new();
        let a = disk.make(ROOT, name("a"), true, 0o750, 0, 0).unwrap();
        let b = disk.make(ROOT, name("b"), true, 0o750, 0, 0).unwrap();
        let f = file(&mut disk, a, "x");
        for ino in [f, a, b, ROOT] {
            sync(&mut disk, ino).unwrap();
        }
        disk.rename(a, name("x"), b, name("y"), false).unwrap();
        assert_eq!(disk.path(f), "b/y");
        sync(&mut disk, b).unwrap();
        let (after, _) = disk.power_cut(LossModel::AllUnsynced, &mut Rng(1));
        assert_eq!(after.lookup(a, name("x")), Ok(f), "the old name is still on disk");
        assert_eq!(after.lookup(b, name("y")), Ok(f));
        sync(&mut disk, a).unwrap();
        let (after, _) = disk.power_cut(LossModel::AllUnsynced, &mut Rng(1));
        assert_eq!(after.lookup(a, name("x")), Err(libc::ENOENT));
    }

    #[test]
    fn a_rename_within_a_directory_survives_whole_or_not_at_all() {
        for seed in 1..100u64 {
            let mut disk = Disk::new();
            let f = file(&mut disk, ROOT, "device.pub.tmp");
            sync(&mut disk, ROOT).unwrap();
            disk.rename(ROOT, name("device.pub.tmp"), ROOT, name("device.pub"), false).unwrap();
            let (after, _) = disk.power_cut(LossModel::Adversarial, &mut Rng(seed));
            let old = after.lookup(ROOT, name("device.pub.tmp")).ok();
            let new = after.lookup(ROOT, name("device.pub")).ok();
            assert!(matches!((old, new), (Some(i), None) | (None, Some(i)) if i == f), "seed {seed}: {old:?} {new:?}");
        }
    }

    #[test]
    fn a_failed_fsync_loses_the_data_and_the_next_fsync_lies() {
        let mut disk = Disk::new();
        let f = file(&mut disk, ROOT, "ledger.db-wal");
        sync(&mut disk, ROOT).unwrap();
        disk.write(f, 0, b"before ").unwrap();
        sync(&mut disk, f).unwrap();
        disk.faults.fsync_eio =
            Some(FsyncFault { path_contains: "ledger.db".into(), once: true, datasync_only: false });
        disk.write(f, 7, b"commit").unwrap();
        assert_eq!(sync(&mut disk, f), Err(libc::EIO));
        assert_eq!(sync(&mut disk, f), Ok(()), "the retry succeeds");
        assert_eq!(contents(&mut disk, ROOT, "ledger.db-wal").unwrap(), b"before commit", "and readers see the data");
        let (mut after, _) = disk.power_cut(LossModel::AllUnsynced, &mut Rng(1));
        assert_eq!(contents(&mut after, ROOT, "ledger.db-wal").unwrap(), b"before ", "but the disk never had it");
        assert_eq!(disk.stats.fsync_failures, 1);
    }

    #[test]
    fn model_b_keeps_a_torn_reordered_subset_of_pages() {
        let old: Vec<u8> = vec![b'o'; 5 * PAGE as usize];
        for seed in 1..200u64 {
            let mut disk = Disk::new();
            let f = file(&mut disk, ROOT, "seg");
            sync(&mut disk, ROOT).unwrap();
            disk.write(f, 0, &old).unwrap();
            sync(&mut disk, f).unwrap();
            // Two overlapping unsynced writes that do not start on a page boundary.
            disk.write(f, 100, &vec![b'1'; 3 * PAGE as usize]).unwrap();
            disk.write(f, 2 * PAGE + 50, &vec![b'2'; 4 * PAGE as usize]).unwrap();
            let (mut after, report) = disk.power_cut(LossModel::Adversarial, &mut Rng(seed));
            let got = contents(&mut after, ROOT, "seg").unwrap();
            assert!(report.surviving_bytes <= report.unsynced_bytes);
            // Every byte is the old byte, or the byte of a write that covered it (or the
            // zero of a file extended past a lost piece).
            for (i, b) in got.iter().enumerate() {
                let i = i as u64;
                let w1 = (100..100 + 3 * PAGE).contains(&i);
                let w2 = (2 * PAGE + 50..6 * PAGE + 50).contains(&i);
                let ok = (i < 5 * PAGE && *b == b'o')
                    || (w1 && *b == b'1')
                    || (w2 && *b == b'2')
                    || (i >= 5 * PAGE && *b == 0);
                assert!(ok, "seed {seed}: byte {i} is {b}");
            }
            // Pieces never cross a page boundary.
            for page in got.chunks(PAGE as usize) {
                let kinds: std::collections::BTreeSet<u8> = page.iter().copied().collect();
                assert!(kinds.len() <= 3, "seed {seed}: {kinds:?}");
            }
        }
    }

    #[test]
    fn the_write_budget_cuts_a_write_short_then_refuses() {
        let mut disk = Disk::new();
        let f = file(&mut disk, ROOT, "seg");
        disk.faults.write_budget = Some(10);
        assert_eq!(disk.write(f, 0, &[1; 6]), Ok(6));
        assert_eq!(disk.write(f, 6, &[2; 6]), Ok(4), "what fits is written");
        assert_eq!(disk.write(f, 10, &[3; 6]), Err(libc::ENOSPC));
        assert_eq!(disk.size(f), 10);
        assert_eq!(disk.write(f, 2, &[4; 8]), Ok(8), "an overwrite in place needs no new space");
        assert_eq!(disk.write(f, 8, &[5; 4]), Ok(2), "only what is in place fits");
        assert_eq!(disk.free_bytes(), 64 << 30, "the disk said it had room");
    }

    #[test]
    fn reads_of_a_named_file_fail() {
        let mut disk = Disk::new();
        let f = file(&mut disk, ROOT, "000001.mkv");
        let g = file(&mut disk, ROOT, "000002.mkv");
        disk.faults.read_eio = Some("000001".into());
        assert_eq!(disk.read(f, 0, 10), Err(libc::EIO));
        assert_eq!(disk.read(g, 0, 10), Ok(vec![]));
    }
}
