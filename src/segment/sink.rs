//! `courtboxspoolsink`: the file sink splitmuxsink writes each fragment through.
//!
//! Unlike `filesink` it refuses to overwrite (`O_EXCL`), writes each buffer straight to the
//! kernel (nothing lingers in a user-space buffer when the process dies), hashes the bytes
//! as it writes them, and on EOS hands the open file and its SHA-256 to the sealer instead
//! of closing it. The muxer upstream is streamable, so files are append-only; should a
//! seek happen anyway, the running hash is dropped and the sealer reads the file back.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A fragment file handed over by the sink. `complete` is false when the pipeline stopped
/// without EOS (an error): the file is readable but its muxer was not finalized.
#[derive(Debug)]
pub struct SpoolFile {
    pub path: PathBuf,
    pub file: File,
    pub bytes: u64,
    /// SHA-256 of the bytes written, when they were written strictly in order.
    pub sha256: Option<[u8; 32]>,
    pub complete: bool,
    /// How much of the file the periodic syncs made durable, and whether one failed.
    pub durability: DurabilityTicket,
}

pub type CloseHandler = Arc<dyn Fn(SpoolFile) + Send + Sync>;

/// What the periodic syncs of one segment file achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durability {
    /// Bytes from the start of the file that a successful sync covered (the file's name
    /// included: its directory was synced too).
    pub durable_bytes: u64,
    /// The first sync that failed. After it, what was written beyond `durable_bytes` may
    /// never reach the disk, and a later sync that succeeds does not prove otherwise (Linux
    /// reports a writeback error once, then forgets it).
    pub failure: Option<String>,
}

struct Open {
    file: File,
    durability: Durability,
    /// The directory entry is durable (synced once after the first data sync).
    named: bool,
    /// The sink handed the file over: no new sync starts, the sealer takes the result.
    closed: bool,
    /// A sync of it is running (the sealer waits for its result).
    syncing: bool,
}

/// Files being written, so that a [`Syncer`] can flush them periodically, and what each
/// sync achieved, until the sealer takes it ([`DurabilityTicket::settle`]).
#[derive(Default)]
pub struct OpenFiles {
    files: Mutex<HashMap<PathBuf, Open>>,
    settled: parking_lot::Condvar,
}

impl OpenFiles {
    fn add(&self, path: PathBuf, file: File) {
        let open = Open { file, durability: Durability::default(), named: false, closed: false, syncing: false };
        self.files.lock().insert(path, open);
    }

    /// The sink is done with the file; never blocks (it runs on the streaming thread).
    fn close(self: &Arc<Self>, path: &Path) -> DurabilityTicket {
        if let Some(o) = self.files.lock().get_mut(path) {
            o.closed = true;
        }
        DurabilityTicket { files: Some(self.clone()), path: path.to_path_buf() }
    }

    /// `fdatasync` every open file (and, once, its directory), noting how far each is
    /// durable. Clones of the descriptors are used so that writers are never blocked by a
    /// sync in progress.
    pub fn sync_all(&self) {
        let files: Vec<(PathBuf, File, bool)> = {
            let mut open = self.files.lock();
            open.iter_mut()
                .filter(|(_, o)| !o.closed && !o.syncing && o.durability.failure.is_none())
                .filter_map(|(p, o)| {
                    let clone = o.file.try_clone().ok()?;
                    o.syncing = true;
                    Some((p.clone(), clone, o.named))
                })
                .collect()
        };
        for (path, file, named) in files {
            // Whatever was written before the sync began is what it covers.
            let result = file.metadata().map(|m| m.len()).and_then(|len| {
                file.sync_data()?;
                if !named && let Some(dir) = path.parent() {
                    crate::base::sync_dir(dir)?;
                }
                Ok(len)
            });
            let mut open = self.files.lock();
            if let Some(o) = open.get_mut(&path) {
                o.syncing = false;
                match result {
                    Ok(len) => {
                        o.durability.durable_bytes = len;
                        o.named = true;
                    }
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "a sync of an open segment failed: what it held after its last durable point is treated as lost");
                        o.durability.failure = Some(e.to_string());
                    }
                }
            }
            self.settled.notify_all();
        }
    }
}

/// The sealer's claim on what the periodic syncs of one closed file achieved.
#[derive(Debug)]
pub struct DurabilityTicket {
    files: Option<Arc<OpenFiles>>,
    path: PathBuf,
}

impl std::fmt::Debug for OpenFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenFiles").field("files", &self.files.lock().len()).finish()
    }
}

impl DurabilityTicket {
    /// A file no syncer watched (tests, recovery): nothing is known to have failed.
    pub fn unwatched(path: &Path) -> DurabilityTicket {
        DurabilityTicket { files: None, path: path.to_path_buf() }
    }

    /// Waits for a sync of the file still running, then takes its result. Called by the
    /// sealer, never on the streaming thread.
    pub fn settle(mut self) -> Durability {
        let Some(files) = self.files.take() else { return Durability::default() };
        let mut open = files.files.lock();
        while open.get(&self.path).is_some_and(|o| o.syncing) {
            files.settled.wait(&mut open);
        }
        open.remove(&self.path).map(|o| o.durability).unwrap_or_default()
    }
}

impl Drop for DurabilityTicket {
    /// A file given up without sealing (an empty fragment, removed) leaves the list.
    fn drop(&mut self) {
        if let Some(files) = self.files.take() {
            files.files.lock().remove(&self.path);
        }
    }
}

/// Background thread flushing open segment files every `interval`; stops when dropped.
pub struct Syncer {
    _thread: crate::base::ServiceThread,
}

impl Syncer {
    pub fn start(files: Arc<OpenFiles>, interval: Duration, clocks: Arc<dyn crate::base::Clocks>) -> Syncer {
        let thread = crate::base::ServiceThread::spawn("spool-sync", move |stop| {
            // One last sync after the stop: what was written is on disk.
            loop {
                let go_on = clocks.sleep_unless_cancelled(interval, &stop);
                files.sync_all();
                if !go_on {
                    break;
                }
            }
        });
        Syncer { _thread: thread }
    }
}

glib::wrapper! {
    pub struct SpoolSink(ObjectSubclass<imp::SpoolSink>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

impl SpoolSink {
    pub fn new(on_close: CloseHandler, open_files: Arc<OpenFiles>) -> SpoolSink {
        let sink: SpoolSink = glib::Object::builder().build();
        *sink.imp().hooks.lock() = Some(imp::Hooks { on_close, open_files });
        sink
    }
}

mod imp {
    use super::*;
    use gst_base::prelude::*;
    use gst_base::subclass::prelude::*;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::LazyLock;

    static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
        gst::DebugCategory::new("courtboxspoolsink", gst::DebugColorFlags::empty(), Some("courtbox spool sink"))
    });

    pub struct Hooks {
        pub on_close: CloseHandler,
        pub open_files: Arc<OpenFiles>,
    }

    enum State {
        Stopped,
        Started { file: File, path: PathBuf, size: u64, hash: Option<Box<ring::digest::Context>> },
    }

    pub struct SpoolSink {
        location: Mutex<Option<PathBuf>>,
        state: Mutex<State>,
        pub(super) hooks: Mutex<Option<Hooks>>,
    }

    impl Default for SpoolSink {
        fn default() -> Self {
            SpoolSink { location: Mutex::new(None), state: Mutex::new(State::Stopped), hooks: Mutex::new(None) }
        }
    }

    impl SpoolSink {
        /// Gives the open file away (to the sealer), whether or not the muxer finished it.
        fn hand_over(&self, complete: bool) {
            let taken = std::mem::replace(&mut *self.state.lock(), State::Stopped);
            if let State::Started { file, path, size, hash } = taken {
                let sha256 = hash.map(|h| h.finish().as_ref().try_into().expect("32 bytes"));
                let hooks = self.hooks.lock();
                if let Some(h) = hooks.as_ref() {
                    let durability = h.open_files.close(&path);
                    (h.on_close)(SpoolFile { path, file, bytes: size, sha256, complete, durability });
                }
            }
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SpoolSink {
        const NAME: &'static str = "CourtboxSpoolSink";
        type Type = super::SpoolSink;
        type ParentType = gst_base::BaseSink;
    }

    impl ObjectImpl for SpoolSink {
        fn constructed(&self) {
            self.parent_constructed();
            self.obj().set_sync(false);
        }

        fn properties() -> &'static [glib::ParamSpec] {
            static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
                vec![glib::ParamSpecString::builder("location").nick("Location").blurb("File to create").build()]
            });
            PROPS.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            if pspec.name() == "location" {
                let loc: Option<String> = value.get().expect("type checked upstream");
                *self.location.lock() = loc.map(PathBuf::from);
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            match pspec.name() {
                "location" => self.location.lock().as_ref().map(|p| p.display().to_string()).to_value(),
                _ => unreachable!("only location is registered"),
            }
        }
    }

    impl GstObjectImpl for SpoolSink {}

    impl ElementImpl for SpoolSink {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "courtbox spool sink",
                    "Sink/File",
                    "Creates a new segment file (never overwriting), writes unbuffered, hands it over at EOS",
                    "courtbox",
                )
            });
            Some(&*META)
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                vec![
                    gst::PadTemplate::new(
                        "sink",
                        gst::PadDirection::Sink,
                        gst::PadPresence::Always,
                        &gst::Caps::new_any(),
                    )
                    .expect("valid template"),
                ]
            });
            TEMPLATES.as_ref()
        }
    }

    impl BaseSinkImpl for SpoolSink {
        fn start(&self) -> Result<(), gst::ErrorMessage> {
            let path = self
                .location
                .lock()
                .clone()
                .ok_or_else(|| gst::error_msg!(gst::ResourceError::Settings, ["no location set"]))?;
            let file =
                std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o640).open(&path).map_err(
                    |e| {
                        let code = match e.kind() {
                            std::io::ErrorKind::StorageFull => gst::ResourceError::NoSpaceLeft,
                            _ => gst::ResourceError::OpenWrite,
                        };
                        gst::error_msg!(code, ["cannot create segment {}: {}", path.display(), e])
                    },
                )?;
            if let Some(h) = self.hooks.lock().as_ref()
                && let Ok(clone) = file.try_clone()
            {
                h.open_files.add(path.clone(), clone);
            }
            gst::debug!(CAT, imp = self, "created {}", path.display());
            let hash = Some(Box::new(ring::digest::Context::new(&ring::digest::SHA256)));
            *self.state.lock() = State::Started { file, path, size: 0, hash };
            Ok(())
        }

        fn stop(&self) -> Result<(), gst::ErrorMessage> {
            // Still open here means no EOS came: the pipeline is being torn down after an
            // error. The partial file is still part of the record.
            self.hand_over(false);
            Ok(())
        }

        fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
            let mut state = self.state.lock();
            let State::Started { file, path, size, hash } = &mut *state else {
                gst::element_imp_error!(self, gst::CoreError::Failed, ["not started"]);
                return Err(gst::FlowError::Error);
            };
            let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
            if let Err(e) = file.write_all(&map) {
                // A full disk is told apart (by its error code, not its text): the recorder
                // answers it as it answers the critical watermark.
                let code = match e.kind() {
                    std::io::ErrorKind::StorageFull => gst::ResourceError::NoSpaceLeft,
                    _ => gst::ResourceError::Write,
                };
                gst::element_imp_error!(self, code, ["writing {} failed: {}", path.display(), e]);
                return Err(gst::FlowError::Error);
            }
            let pos = file.stream_position().unwrap_or(*size);
            if pos > *size {
                if let Some(h) = hash.as_mut() {
                    // Only the newly appended part; a rewrite already dropped the hash.
                    let appended = (pos - *size) as usize;
                    h.update(&map[map.len().saturating_sub(appended)..]);
                }
                *size = pos;
            }
            Ok(gst::FlowSuccess::Ok)
        }

        fn event(&self, event: gst::Event) -> bool {
            match event.view() {
                // matroskamux seeks back to finalize sizes, duration and cues.
                gst::EventView::Segment(e) => {
                    if let Some(seg) = e.segment().downcast_ref::<gst::format::Bytes>() {
                        let start = seg.start().map(|b| *b).unwrap_or(0);
                        if let State::Started { file, path, size, hash } = &mut *self.state.lock() {
                            if start != *size {
                                // Bytes will be rewritten: the running hash no longer matches.
                                *hash = None;
                            }
                            if let Err(err) = file.seek(SeekFrom::Start(start)) {
                                gst::element_imp_error!(
                                    self,
                                    gst::ResourceError::Seek,
                                    ["seek in {} failed: {}", path.display(), err]
                                );
                                return false;
                            }
                        }
                    }
                }
                gst::EventView::Eos(_) => self.hand_over(true),
                _ => {}
            }
            self.parent_event(event)
        }

        fn query(&self, query: &mut gst::QueryRef) -> bool {
            match query.view_mut() {
                gst::QueryViewMut::Seeking(q) if q.format() == gst::Format::Bytes => {
                    q.set(true, gst::format::Bytes::ZERO, gst::format::Bytes::NONE);
                    true
                }
                _ => BaseSinkImplExt::parent_query(self, query),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `audiotestsrc ! opusenc ! matroskamux ! SpoolSink` to EOS and returns what the
    /// sink handed over.
    fn write_through_sink(streamable: bool, path: &std::path::Path) -> SpoolFile {
        gst::init().unwrap();
        let pipeline = gst::parse::launch(&format!(
            "audiotestsrc num-buffers=100 ! opusenc ! matroskamux name=mux streamable={streamable}"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let handed: Arc<Mutex<Option<SpoolFile>>> = Arc::default();
        let h = handed.clone();
        let sink = SpoolSink::new(Arc::new(move |f| *h.lock() = Some(f)), Arc::new(OpenFiles::default()));
        sink.set_property("location", path.to_str().unwrap());
        pipeline.add(&sink).unwrap();
        pipeline.by_name("mux").unwrap().link(&sink).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let msg =
            bus.timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Eos, gst::MessageType::Error]);
        assert!(matches!(msg.unwrap().view(), gst::MessageView::Eos(_)));
        pipeline.set_state(gst::State::Null).unwrap();
        handed.lock().take().expect("the sink hands the file over at EOS")
    }

    #[test]
    fn append_only_output_is_hashed_while_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000.mkv");
        let f = write_through_sink(true, &path);
        let on_disk = std::fs::read(&path).unwrap();
        assert!(f.complete);
        assert_eq!(f.bytes, on_disk.len() as u64);
        assert_eq!(f.sha256, Some(crate::integrity::sha256(&on_disk)));
        // O_EXCL: the same name is never opened twice.
        let again = std::panic::catch_unwind(|| write_through_sink(true, &path));
        assert!(again.is_err(), "an existing segment file must not be overwritten");
        assert_eq!(std::fs::read(&path).unwrap(), on_disk);
    }

    #[test]
    fn rewritten_output_drops_the_running_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000.mkv");
        let f = write_through_sink(false, &path);
        assert!(f.complete);
        assert_eq!(f.sha256, None, "matroskamux seeks back to finalize; the sealer must read the file back");
        assert_eq!(f.bytes, std::fs::metadata(&path).unwrap().len());
    }
}
