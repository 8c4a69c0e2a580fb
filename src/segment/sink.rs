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
use std::path::PathBuf;
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
}

pub type CloseHandler = Arc<dyn Fn(SpoolFile) + Send + Sync>;

/// Files being written, so that a [`Syncer`] can flush them periodically.
#[derive(Default)]
pub struct OpenFiles(Mutex<HashMap<PathBuf, File>>);

impl OpenFiles {
    fn add(&self, path: PathBuf, file: File) {
        self.0.lock().insert(path, file);
    }
    fn remove(&self, path: &PathBuf) {
        self.0.lock().remove(path);
    }
    /// `fdatasync` every open file. Clones of the descriptors are used so that writers are
    /// never blocked by a sync in progress.
    pub fn sync_all(&self) {
        let files: Vec<(PathBuf, File)> =
            self.0.lock().iter().filter_map(|(p, f)| f.try_clone().ok().map(|f| (p.clone(), f))).collect();
        for (path, file) in files {
            if let Err(e) = file.sync_data() {
                tracing::warn!(path = %path.display(), error = %e, "periodic sync of an open segment failed");
            }
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
                    h.open_files.remove(&path);
                    (h.on_close)(SpoolFile { path, file, bytes: size, sha256, complete });
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
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o640)
                .open(&path)
                .map_err(|e| {
                    gst::error_msg!(gst::ResourceError::OpenWrite, ["cannot create segment {}: {}", path.display(), e])
                })?;
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
                gst::element_imp_error!(self, gst::ResourceError::Write, ["writing {} failed: {}", path.display(), e]);
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
