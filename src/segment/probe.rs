use crate::base::MediaTime;
use gst::prelude::*;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// First and last media time in a Matroska segment file, by demuxing it (no decoding).
/// Works on files cut short by a crash: the demuxer stops at the damage and what came
/// before counts. `Ok(None)` means the file holds no frame at all.
pub fn media_span(path: &Path) -> Result<Option<(MediaTime, MediaTime)>, String> {
    let location = path.to_str().ok_or("path is not UTF-8")?;
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc").property("location", location).build().map_err(|e| e.to_string())?;
    let demux = gst::ElementFactory::make("matroskademux").build().map_err(|e| e.to_string())?;
    pipeline.add_many([&src, &demux]).map_err(|e| e.to_string())?;
    src.link(&demux).map_err(|e| e.to_string())?;

    let span: Arc<Mutex<Option<(u64, u64)>>> = Arc::default();
    let span2 = span.clone();
    let pipeline_weak = pipeline.downgrade();
    demux.connect_pad_added(move |_, pad| {
        let Some(pipeline) = pipeline_weak.upgrade() else { return };
        let Ok(sink) = gst::ElementFactory::make("fakesink").property("sync", false).property("async", false).build()
        else {
            return;
        };
        let _ = pipeline.add(&sink);
        let _ = sink.sync_state_with_parent();
        let span = span2.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buf) = info.buffer()
                && let Some(pts) = buf.pts().or(buf.dts())
            {
                let start = pts.nseconds();
                let end = start + buf.duration().map(|d| d.nseconds()).unwrap_or(0);
                let mut s = span.lock().unwrap();
                *s = Some(match *s {
                    None => (start, end),
                    Some((a, b)) => (a.min(start), b.max(end)),
                });
            }
            gst::PadProbeReturn::Ok
        });
        if let Some(sinkpad) = sink.static_pad("sink") {
            let _ = pad.link(&sinkpad);
        }
    });

    pipeline.set_state(gst::State::Playing).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bus = pipeline.bus().expect("pipelines have a bus");
    let outcome =
        bus.timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Eos, gst::MessageType::Error]);
    let _ = pipeline.set_state(gst::State::Null);
    if outcome.is_none() {
        return Err(format!("{}: timed out reading the file", path.display()));
    }
    // An error at the end of a truncated file is expected; what was read before it counts.
    Ok(span.lock().unwrap().map(|(a, b)| (MediaTime(a), MediaTime(b))))
}
