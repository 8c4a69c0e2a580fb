//! Reading a recorded file back through a GStreamer pipeline, sample by sample: the one read
//! loop shared by segment probing, export, transcription of committed audio and the simulated
//! microphones, each saying whether a file cut short by a crash is acceptable.

use gst::prelude::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a recorded file could not be read back.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("{}: file not found", .0.display())]
    NotFound(PathBuf),
    #[error("path is not UTF-8")]
    PathNotUtf8,
    /// The launch line is wrong: a programming error, not a property of the file.
    #[error("{0}")]
    Launch(#[from] gst::glib::Error),
    #[error("not a pipeline")]
    NotAPipeline,
    #[error("no element named {0}")]
    MissingElement(&'static str),
    #[error("out is not an appsink")]
    NotAnAppSink,
    #[error("{}: {source}", path.display())]
    Start { path: PathBuf, source: gst::StateChangeError },
    /// The demuxer or decoder failed (and damage was not tolerated).
    #[error("{}: {source}", path.display())]
    Stream { path: PathBuf, source: gst::glib::Error },
    #[error("{}: timed out reading", .0.display())]
    TimedOut(PathBuf),
}

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
) -> Result<(), ReadError> {
    if !path.exists() {
        return Err(ReadError::NotFound(path.to_path_buf()));
    }
    let location = path.to_str().ok_or(ReadError::PathNotUtf8)?;
    let pipeline = gst::parse::launch(desc)?.downcast::<gst::Pipeline>().map_err(|_| ReadError::NotAPipeline)?;
    pipeline.by_name("src").ok_or(ReadError::MissingElement("src"))?.set_property("location", location);
    let sink = pipeline
        .by_name("out")
        .ok_or(ReadError::MissingElement("out"))?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| ReadError::NotAnAppSink)?;
    pipeline.set_state(gst::State::Playing).map_err(|source| ReadError::Start { path: path.to_path_buf(), source })?;
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
            break if tolerate_damage {
                Ok(())
            } else {
                Err(ReadError::Stream { path: path.to_path_buf(), source: e.error() })
            };
        }
        if Instant::now() > deadline {
            break Err(ReadError::TimedOut(path.to_path_buf()));
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}
