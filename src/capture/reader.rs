//! Reading a recorded file back through a GStreamer pipeline, sample by sample: the one read
//! loop shared by segment probing, export, transcription of committed audio and the simulated
//! microphones, each saying whether a file cut short by a crash is acceptable.

use gst::prelude::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Reads a file through `desc`, a launch line that starts with `filesrc name=src` and ends
/// in `appsink name=out`, handing every sample to `each` in order.
///
/// A recording cut short by a crash makes the demuxer fail at the damage: with
/// `tolerate_damage` what came before counts and the error is ignored; otherwise it is
/// returned.
pub fn read_file(
    desc: &str,
    path: &Path,
    tolerate_damage: bool,
    mut each: impl FnMut(gst::Sample),
) -> Result<(), String> {
    if !path.exists() {
        return Err(format!("{}: file not found", path.display()));
    }
    let location = path.to_str().ok_or("path is not UTF-8")?;
    let pipeline = gst::parse::launch(desc)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    pipeline.by_name("src").ok_or("no element named src")?.set_property("location", location);
    let sink = pipeline
        .by_name("out")
        .ok_or("no element named out")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "out is not an appsink")?;
    pipeline.set_state(gst::State::Playing).map_err(|e| format!("{}: {e}", path.display()))?;
    let bus = pipeline.bus().expect("pipelines have a bus");
    let deadline = Instant::now() + Duration::from_secs(120);
    let result = loop {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            each(sample);
            continue;
        }
        if sink.is_eos() {
            break Ok(());
        }
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(e) = msg.view()
        {
            break if tolerate_damage { Ok(()) } else { Err(format!("{}: {}", path.display(), e.error())) };
        }
        if Instant::now() > deadline {
            break Err(format!("{}: timed out reading", path.display()));
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}
