//! One track (a camera or a microphone): its splitmuxsink, the fragment it is writing, and
//! the hand-over of closed fragments to the sealer. A track outlives pipeline restarts, so
//! segment numbers keep counting.

use super::{CaptureEvent, ClosedFragment, running_time};
use crate::base::{Clocks, MediaTime, WallTime};
use crate::config::SourceKind;
use crate::integrity::{SenderTiming, layout};
use crate::segment::{OpenFiles, SpoolFile, SpoolSink};
use gst::prelude::*;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use thiserror::Error;

/// Why a track could not be attached to a pipeline.
#[derive(Debug, Error)]
pub enum AttachError {
    /// An element could not be made (a plugin is missing) or refused its settings.
    #[error("{element}: {source}")]
    Element { element: &'static str, source: gst::glib::BoolError },
    #[error("{0}")]
    Add(gst::glib::BoolError),
    #[error("splitmuxsink refused a pad")]
    NoSinkPad,
    #[error("no src pad")]
    NoSrcPad,
    #[error("linking {source_name}: {link:?}")]
    Link { source_name: String, link: gst::PadLinkError },
}

struct OpenFragment {
    seq: u64,
    path: PathBuf,
    media_start: MediaTime,
    wall_start: WallTime,
}

struct TrackState {
    next_seq: u64,
    open: Option<OpenFragment>,
    /// End (running time of last buffer + duration) of what reached the muxer.
    last_end: Option<MediaTime>,
}

pub struct Track {
    pub source: String,
    pub kind: SourceKind,
    session_dir: PathBuf,
    state: Mutex<TrackState>,
    events: Sender<CaptureEvent>,
    clocks: Arc<dyn Clocks>,
    /// A network source's: how its timestamps are placed now (the supervisor keeps it up to
    /// date); each closed fragment is stamped with it.
    timing: Mutex<Option<SenderTiming>>,
}

impl Track {
    pub fn new(
        source: String,
        kind: SourceKind,
        session_dir: PathBuf,
        next_seq: u64,
        events: Sender<CaptureEvent>,
        clocks: Arc<dyn Clocks>,
    ) -> Track {
        Track {
            source,
            kind,
            session_dir,
            state: Mutex::new(TrackState { next_seq, open: None, last_end: None }),
            events,
            clocks,
            timing: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.session_dir.join(&self.source)
    }

    /// Connects `out` (the end of this track's encoder chain) to a new splitmuxsink writing
    /// through a [`SpoolSink`]. Returns the splitmuxsink.
    pub fn attach(
        self: &Arc<Self>,
        pipeline: &gst::Pipeline,
        out: &gst::Element,
        open_files: Arc<OpenFiles>,
    ) -> Result<gst::Element, AttachError> {
        // Streamable: the muxer never seeks back, so a segment file is append-only; every
        // byte the periodic sync flushed stays as written, and the sink's running hash holds.
        let muxer = gst::ElementFactory::make("matroskamux")
            .property("writing-app", "courtbox")
            .property("streamable", true)
            .build()
            .map_err(|source| AttachError::Element { element: "matroskamux", source })?;
        let track = self.clone();
        muxer.connect_pad_added(move |_, pad| {
            let track = track.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                if let Some(buf) = info.buffer()
                    && let Some(seg) = pad.sticky_event::<gst::event::Segment>(0)
                    && let Some(start) = running_time(seg.segment(), buf.pts().or(buf.dts()))
                {
                    let end = start + buf.duration().map(|d| d.nseconds()).unwrap_or(0);
                    let mut st = track.state.lock();
                    st.last_end = Some(MediaTime(st.last_end.map_or(end, |e| e.0.max(end))));
                }
                gst::PadProbeReturn::Ok
            });
        });

        let track = self.clone();
        let sink = SpoolSink::new(Arc::new(move |f| track.fragment_closed(f)), open_files);
        let splitmux = gst::ElementFactory::make("splitmuxsink")
            .name(format!("rec_{}", self.source))
            .property("max-size-time", 0u64)
            .property("max-size-bytes", 0u64)
            .property("muxer", &muxer)
            .property("sink", &sink)
            .build()
            .map_err(|source| AttachError::Element { element: "splitmuxsink", source })?;
        let track = self.clone();
        splitmux.connect("format-location-full", false, move |args| {
            let sample = args[2].get::<gst::Sample>().ok();
            let start = sample.as_ref().and_then(|s| {
                let buf = s.buffer()?;
                running_time(s.segment()?, buf.pts().or(buf.dts()))
            });
            Some(track.fragment_opened(start).display().to_string().to_value())
        });
        pipeline.add(&splitmux).map_err(AttachError::Add)?;
        let pad_template = match self.kind {
            SourceKind::Video => "video",
            SourceKind::Audio => "audio_%u",
        };
        let sinkpad = splitmux.request_pad_simple(pad_template).ok_or(AttachError::NoSinkPad)?;
        out.static_pad("src")
            .ok_or(AttachError::NoSrcPad)?
            .link(&sinkpad)
            .map_err(|link| AttachError::Link { source_name: self.source.clone(), link })?;
        Ok(splitmux)
    }

    /// How a network source's timestamps are placed from now on.
    pub fn set_timing(&self, timing: SenderTiming) {
        *self.timing.lock() = Some(timing);
    }

    fn fragment_opened(&self, start: Option<u64>) -> PathBuf {
        let mut st = self.state.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        let path = self.session_dir.join(layout::segment_file(&self.source, seq));
        let media_start = start.map(MediaTime).or(st.last_end).unwrap_or_default();
        st.open = Some(OpenFragment { seq, path: path.clone(), media_start, wall_start: self.clocks.wall() });
        path
    }

    fn fragment_closed(&self, f: SpoolFile) {
        let mut st = self.state.lock();
        let Some(open) = st.open.take().filter(|o| o.path == f.path) else {
            tracing::error!(source = %self.source, path = %f.path.display(), "closed a file that was not the open fragment; startup recovery will seal it");
            return;
        };
        if f.bytes == 0 {
            // Nothing was written: drop the empty file and reuse its number, so that segment
            // numbers stay without holes.
            let _ = std::fs::remove_file(&f.path);
            st.next_seq = open.seq;
            return;
        }
        let media_end = st.last_end.filter(|e| *e >= open.media_start).unwrap_or(open.media_start);
        let _ = self.events.send(CaptureEvent::Fragment(ClosedFragment {
            source: self.source.clone(),
            seq: open.seq,
            path: f.path,
            file: f.file,
            bytes: f.bytes,
            sha256: f.sha256,
            complete: f.complete,
            durability: f.durability,
            media_start: open.media_start,
            media_end,
            wall_start: open.wall_start,
            timing: *self.timing.lock(),
        }));
    }
}
