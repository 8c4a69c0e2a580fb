//! The `playable/` files of an export: each source's segments joined into one Matroska file
//! by remuxing, not re-encoding. They are derived for people to watch; `verify` ignores them
//! and checks the segments themselves.

use crate::capture::ReadError;
use gst::prelude::*;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a playable file could not be written.
#[derive(Debug, Error)]
pub enum PlayableError {
    #[error("output path is not UTF-8")]
    PathNotUtf8,
    #[error("segment without caps")]
    NoCaps,
    #[error("no media in the segments")]
    NoMedia,
    #[error(transparent)]
    Read(#[from] ReadError),
    /// An element is missing or refused to be linked or started.
    #[error("{0}")]
    Element(String),
    #[error("matroskamux refused a pad")]
    NoMuxerPad,
    #[error("writing {}: {flow:?}", path.display())]
    Push { path: PathBuf, flow: gst::FlowError },
    #[error("{0:?}")]
    EndOfStream(gst::FlowError),
    /// The muxer or file sink failed while writing.
    #[error("{0}")]
    Write(gst::glib::Error),
    #[error("timed out writing the playable file")]
    TimedOut,
}

/// The text of a GStreamer glue error, kept as the element reported it.
fn element(e: impl std::fmt::Display) -> PlayableError {
    PlayableError::Element(e.to_string())
}

/// Joins a source's segments into one Matroska file without re-encoding. Timestamps are
/// kept as recorded (session media time), so a player's clock matches the record's and an
/// interruption shows as a jump, not as silently joined footage.
pub fn concat_segments(files: &[PathBuf], out: &Path) -> Result<(), PlayableError> {
    let location = out.to_str().ok_or(PlayableError::PathNotUtf8)?;
    let mut writer: Option<(gst::Pipeline, gst_app::AppSrc)> = None;
    for file in files {
        for sample in read_samples(file)? {
            let Some(buffer) = sample.buffer_owned() else { continue };
            if writer.is_none() {
                let caps = sample.caps().ok_or(PlayableError::NoCaps)?.to_owned();
                writer = Some(start_writer(&caps, location)?);
            }
            let (_, appsrc) = writer.as_ref().expect("started");
            appsrc.push_buffer(buffer).map_err(|flow| PlayableError::Push { path: out.to_path_buf(), flow })?;
        }
    }
    let (pipeline, appsrc) = writer.ok_or(PlayableError::NoMedia)?;
    appsrc.end_of_stream().map_err(PlayableError::EndOfStream)?;
    let bus = pipeline.bus().expect("bus");
    let msg =
        bus.timed_pop_filtered(gst::ClockTime::from_seconds(120), &[gst::MessageType::Eos, gst::MessageType::Error]);
    let _ = pipeline.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => Ok(()),
        Some(gst::MessageView::Error(e)) => Err(PlayableError::Write(e.error())),
        _ => Err(PlayableError::TimedOut),
    }
}

/// `appsrc ! matroskamux ! filesink`, with a muxer pad of the stream's kind requested
/// explicitly (appsrc answers caps queries with ANY before negotiation).
fn start_writer(caps: &gst::Caps, location: &str) -> Result<(gst::Pipeline, gst_app::AppSrc), PlayableError> {
    let pipeline = gst::Pipeline::new();
    let appsrc = gst_app::AppSrc::builder().format(gst::Format::Time).caps(caps).block(true).build();
    let mux = gst::ElementFactory::make("matroskamux").property("writing-app", "courtbox").build().map_err(element)?;
    let sink = gst::ElementFactory::make("filesink").property("location", location).build().map_err(element)?;
    pipeline.add_many([appsrc.upcast_ref(), &mux, &sink]).map_err(element)?;
    let is_video = caps.structure(0).is_some_and(|s| s.name().starts_with("video/"));
    let mux_pad =
        mux.request_pad_simple(if is_video { "video_%u" } else { "audio_%u" }).ok_or(PlayableError::NoMuxerPad)?;
    appsrc.static_pad("src").expect("appsrc has a src pad").link(&mux_pad).map_err(|e| element(format!("{e:?}")))?;
    mux.link(&sink).map_err(element)?;
    pipeline.set_state(gst::State::Playing).map_err(element)?;
    Ok((pipeline, appsrc))
}

/// Every compressed sample of a one-stream Matroska file, in order (a segment cut short by
/// a crash yields what it holds).
fn read_samples(file: &Path) -> Result<Vec<gst::Sample>, ReadError> {
    let mut out = Vec::new();
    crate::capture::read_file("filesrc name=src ! matroskademux ! appsink name=out sync=false", file, true, |s| {
        out.push(s)
    })?;
    Ok(out)
}
