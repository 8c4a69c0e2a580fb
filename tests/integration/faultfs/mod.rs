//! A fault-injecting FUSE file system for the tests. The daemon's data folder is mounted
//! through it, so a test can cut the power (keeping only what was synced, under loss model
//! A or B), fail `fsync`, run out of space in mid-write, fail the reads of a named file, or
//! make every `fsync` slow. The disk itself is [`model::Disk`] (plain data, unit-tested);
//! this file answers the kernel's FUSE requests from it and owns the mount.
//!
//! A power cut is two steps, because the daemon must die at the instant the disk stops:
//! [`FaultVolume::freeze`] (every request fails with EIO from then on, so nothing the dying
//! daemon does reaches the disk), the test's `kill -9`, then [`FaultVolume::restore_after_cut`]
//! (unmount, which also drops the kernel's page cache; keep what the loss model lets
//! survive; mount that).

pub mod model;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, MountOption,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use model::{Body, CutReport, Disk, Faults, Ino, LossModel, Rng, Stats};
use parking_lot::{Mutex, MutexGuard};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long the kernel may cache names and attributes. Every change goes through this
/// mount, so the kernel's copy stays right; a power cut remounts, which drops it.
const TTL: Duration = Duration::from_secs(1);

/// The data folder, mounted through the fault layer. Unmounted when dropped.
pub struct FaultVolume {
    mountpoint: PathBuf,
    disk: Arc<Mutex<Disk>>,
    session: Option<fuser::BackgroundSession>,
}

impl FaultVolume {
    /// Mounts an empty simulated disk on `dir` (root and `/dev/fuse` needed).
    pub fn mount(dir: &Path) -> FaultVolume {
        // A mount left by a test that was killed.
        let _ = std::process::Command::new("umount").arg("-l").arg(dir).output();
        std::fs::create_dir_all(dir).unwrap();
        let disk = Arc::new(Mutex::new(Disk::new()));
        let session = Some(spawn(dir, &disk));
        FaultVolume { mountpoint: dir.to_path_buf(), disk, session }
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock()
    }

    /// Arms or clears faults.
    pub fn faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.disk().faults)
    }

    pub fn stats(&self) -> Stats {
        self.disk().stats.clone()
    }

    /// The first half of a power cut: from now on every request fails with EIO.
    pub fn freeze(&self) {
        self.disk().faults.frozen = true;
    }

    /// The second half: unmount, keep what `model` lets survive, mount that.
    pub fn restore_after_cut(&mut self, model: LossModel, rng: &mut Rng) -> CutReport {
        self.unmount();
        let (after, report) = self.disk().power_cut(model, rng);
        *self.disk() = after;
        self.session = Some(spawn(&self.mountpoint, &self.disk));
        report
    }

    /// Unmounts, waiting for the kernel to let go. The daemon is dead, so nothing should
    /// hold the mount; if something does, the test fails rather than let a straggler write
    /// to the disk that comes back after the cut.
    fn unmount(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        let Some(session) = self.session.take() else { return };
        let path = std::ffi::CString::new(self.mountpoint.as_os_str().as_bytes()).unwrap();
        for attempt in 0.. {
            // SAFETY: a valid NUL-terminated path.
            if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if attempt == 50 {
                // Detach, so that later tests are not stuck on it, then fail.
                // SAFETY: as above.
                unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
                panic!("the fault layer at {} stays busy after the daemon died: {e}", self.mountpoint.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The kernel closed the session: its threads end.
        let _ = session.join();
    }
}

impl Drop for FaultVolume {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn spawn(dir: &Path, disk: &Arc<Mutex<Disk>>) -> fuser::BackgroundSession {
    let mut config = fuser::Config::default();
    config.mount_options = vec![MountOption::FSName("courtbox-faultfs".into())];
    // A slow fsync sleeps in its request: other requests (the cameras' writes) go on in
    // the other threads, as they would on a real disk.
    config.n_threads = Some(8);
    fuser::spawn_mount(Fuse { disk: disk.clone() }, dir, &config)
        .unwrap_or_else(|e| panic!("mounting the fault layer on {}: {e} (needs root and /dev/fuse)", dir.display()))
}

struct Fuse {
    disk: Arc<Mutex<Disk>>,
}

impl Fuse {
    /// Runs `op` on the disk, unless the power is off.
    fn run<T>(&self, op: impl FnOnce(&mut Disk) -> Result<T, model::Errno>) -> Result<T, Errno> {
        let mut disk = self.disk.lock();
        if disk.faults.frozen {
            return Err(Errno::EIO);
        }
        op(&mut disk).map_err(Errno::from_i32)
    }

    /// `fsync` of a file or directory: a slow disk sleeps outside the lock, and the sync
    /// covers what was written before it began.
    fn sync(&self, ino: Ino, datasync: bool) -> Result<(), Errno> {
        let (mark, delay) = self.run(|d| Ok((d.sync_mark(ino)?, d.faults.slow_fsync)))?;
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        self.run(|d| d.sync(ino, mark, datasync))
    }
}

fn attr(disk: &Disk, ino: Ino) -> Result<FileAttr, model::Errno> {
    let i = disk.inode(ino)?;
    let (kind, size, nlink) = match &i.body {
        Body::File(_) => (FileType::RegularFile, disk.size(ino), 1),
        Body::Dir(_) => (FileType::Directory, 0, 2),
    };
    Ok(FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: i.mtime,
        mtime: i.mtime,
        ctime: i.mtime,
        crtime: SystemTime::UNIX_EPOCH,
        kind,
        perm: i.perm,
        nlink,
        uid: i.uid,
        gid: i.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    })
}

fn made(
    disk: &mut Disk,
    parent: INodeNo,
    name: &OsStr,
    dir: bool,
    mode: u32,
    umask: u32,
    req: &Request,
) -> Result<FileAttr, model::Errno> {
    let perm = (mode & !umask & 0o7777) as u16;
    let ino = disk.make(parent.0, name, dir, perm, req.uid(), req.gid())?;
    attr(disk, ino)
}

impl Filesystem for Fuse {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.run(|d| attr(d, d.lookup(parent.0, name)?)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.run(|d| attr(d, ino.0)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = self.run(|d| {
            if let Some(len) = size {
                d.set_len(ino.0, len)?;
            }
            d.set_attr(ino.0, mode.map(|m| (m & 0o7777) as u16), uid, gid)?;
            attr(d, ino.0)
        });
        match result {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            // Sockets, pipes and devices have no place in the data folder of these tests.
            return reply.error(Errno::EPERM);
        }
        match self.run(|d| made(d, parent, name, false, mode, umask, req)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        match self.run(|d| made(d, parent, name, true, mode, umask, req)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.run(|d| d.unlink(parent.0, name, false)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.run(|d| d.unlink(parent.0, name, true)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        match self.run(|d| d.rename(parent.0, name, newparent.0, newname, no_replace)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.run(|d| d.inode(ino.0).map(|_| ())) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.run(|d| d.read(ino.0, offset, size)) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.run(|d| d.write(ino.0, offset, data)) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // close() is not a sync: nothing becomes durable here.
        match self.run(|_| Ok(())) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        match self.sync(ino.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        match self.sync(ino.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let entries = match self.run(|d| d.entries(ino.0)) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        let listing = [(".".into(), ino.0, true), ("..".into(), ino.0, true)].into_iter().chain(entries);
        for (i, (name, child, dir)) in listing.enumerate().skip(offset as usize) {
            let kind = if dir { FileType::Directory } else { FileType::RegularFile };
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.run(|d| Ok(d.free_bytes() / 4096)) {
            Ok(free) => reply.statfs(1 << 28, free, free, 1 << 20, 1 << 20, 4096, 255, 4096),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.run(|d| made(d, parent, name, false, mode, umask, req)) {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EOPNOTSUPP);
    }
}
