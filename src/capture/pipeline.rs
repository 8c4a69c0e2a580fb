//! One running instance of a device's pipeline: parsed from its plan, put on the run's
//! shared clock, its tracks attached to splitmuxsinks, gated until recording starts.

use super::health::Sampling;
use super::plan::{AnchorPlan, DevicePlan, out_element, stt_element};
use super::sim_audio::SimFeeder;
use super::splitter::SplitTarget;
use super::{DeviceShared, RunContext};
use crate::config::SourceKind;
use gst::prelude::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use thiserror::Error;

pub struct Instance {
    pub id: u64,
    pub pipeline: gst::Pipeline,
    targets: Vec<SplitTarget>,
    feeder: Option<SimFeeder>,
}

/// Why a device's pipeline could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// The description does not parse: the template or the installation is wrong, and no
    /// restart will change that.
    Unparsable(String),
    /// Anything else (an element refused its settings, a track is missing).
    Failed(String),
}

impl From<String> for BuildError {
    fn from(e: String) -> BuildError {
        BuildError::Failed(e)
    }
}

impl From<&str> for BuildError {
    fn from(e: &str) -> BuildError {
        BuildError::Failed(e.to_string())
    }
}

impl From<super::track::AttachError> for BuildError {
    fn from(e: super::track::AttachError) -> BuildError {
        BuildError::Failed(e.to_string())
    }
}

/// Why a built pipeline could not be set playing.
#[derive(Debug, Error)]
pub enum PlayError {
    /// The pipeline refused to start; the text is the first error on its bus, or the state
    /// change failure when the bus holds none.
    #[error("{0}")]
    Refused(String),
    #[error("the sim audio template has no appsrc named simfeed")]
    NoSimFeed,
}

pub fn build(plan: &DevicePlan, ctx: &RunContext, device: &Arc<DeviceShared>) -> Result<Instance, BuildError> {
    let pipeline = gst::parse::launch(&plan.description)
        .map_err(|e| BuildError::Unparsable(format!("the pipeline description does not parse: {e}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| BuildError::Unparsable("the pipeline description is a single element".into()))?;
    // One clock and one base time for every pipeline of the run: running times of all
    // sources are directly comparable.
    pipeline.use_clock(Some(&ctx.clock.clock));
    pipeline.set_base_time(ctx.clock.base);
    pipeline.set_start_time(gst::ClockTime::NONE);

    for (index, anchor) in plan.anchors.iter().enumerate() {
        gate_anchor(&pipeline, index, anchor, plan, ctx, device)?;
    }
    if let Some(network) = &plan.network {
        super::network::configure(&pipeline, network, device).map_err(BuildError::Failed)?;
    }

    let id = ctx.next_instance.fetch_add(1, Ordering::SeqCst);
    let mut targets = Vec::new();
    for t in &plan.tracks {
        let out = pipeline
            .by_name(&out_element(&t.source))
            .ok_or_else(|| format!("no element {}", out_element(&t.source)))?;
        let track = ctx.tracks.get(&t.source).ok_or_else(|| format!("no track {}", t.source))?;
        let splitmux = track.attach(&pipeline, &out, ctx.open_files.clone())?;
        if let (Some(tap), Some(appsink)) = (ctx.tap.clone(), pipeline.by_name(&stt_element(&t.source))) {
            connect_tap(appsink, t.source.clone(), tap)?;
        }
        if let Some(tap) = ctx.encoded_tap.clone() {
            let pad = out.static_pad("src").ok_or_else(|| format!("{} has no src pad", out.name()))?;
            connect_encoded_tap(&pad, t.source.as_str().into(), tap);
        }
        targets.push(SplitTarget {
            instance: id,
            splitmux,
            keyframe_pad: (t.kind == SourceKind::Video).then(|| out.static_pad("src")).flatten(),
        });
    }
    Ok(Instance { id, pipeline, targets, feeder: None })
}

/// Gates one stream of the device at its anchor: nothing before recording starts (and, for
/// passed-through video, nothing before the first keyframe from then on), media time
/// shifted to continue the session, and the health probe attached.
fn gate_anchor(
    pipeline: &gst::Pipeline,
    index: usize,
    anchor: &AnchorPlan,
    plan: &DevicePlan,
    ctx: &RunContext,
    device: &Arc<DeviceShared>,
) -> Result<(), BuildError> {
    let element = pipeline.by_name(&anchor.element).ok_or_else(|| format!("no anchor element {}", anchor.element))?;
    let gate = ctx.gate.clone();
    let shared = device.clone();
    let clock = ctx.clock.clone();
    let starts_on_keyframe = anchor.starts_on_keyframe;
    element.static_pad("sink").ok_or("anchor has no sink pad")?.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |pad, info| {
            let first = match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => Some(b.as_ref()),
                Some(gst::PadProbeData::BufferList(l)) => l.get(0),
                _ => None,
            };
            let Some(buffer) = first else { return gst::PadProbeReturn::Ok };
            let Some(pts) = buffer.pts() else { return gst::PadProbeReturn::Ok };
            let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            let oversized = starts_on_keyframe && buffer.size() > MAX_FRAME_BYTES;
            let stream = &shared.streams[index];
            let now = clock.raw_now();
            stream.last_data.store(now, Ordering::SeqCst);
            stream.arrived.store(true, Ordering::SeqCst);
            if starts_on_keyframe && keyframe {
                stream.last_keyframe.store(now, Ordering::SeqCst);
            }
            let rt = pad
                .sticky_event::<gst::event::Segment>(0)
                .and_then(|s| s.segment().downcast_ref::<gst::ClockTime>().and_then(|s| s.to_running_time(pts)))
                .unwrap_or(pts)
                .nseconds();
            let _ = shared.first_raw.compare_exchange(u64::MAX, rt, Ordering::SeqCst, Ordering::SeqCst);
            if oversized {
                stream.oversized.store(true, Ordering::SeqCst);
            }
            let waiting_for_keyframe = starts_on_keyframe && !stream.recorded.load(Ordering::SeqCst);
            match gate_decision(rt, gate.load(Ordering::SeqCst), waiting_for_keyframe, keyframe, oversized) {
                // The data is consumed here and the probe returns Handled: returning Drop
                // instead makes GStreamer 1.22 unref a NULL buffer behind an appsrc (a
                // CRITICAL per device).
                Gate::Drop => {
                    info.data.take();
                    gst::PadProbeReturn::Handled
                }
                Gate::Record => {
                    stream.recorded.store(true, Ordering::SeqCst);
                    gst::PadProbeReturn::Ok
                }
            }
        },
    );
    // Media time continues across runs of a session: shift everything after the anchor.
    let anchor_src = element.static_pad("src").ok_or("anchor has no src pad")?;
    anchor_src.set_offset(ctx.clock.offset.0 as i64);
    let tracks: Vec<_> = plan.tracks.iter().filter(|t| anchor.sources.contains(&t.source)).cloned().collect();
    if anchor.starts_on_keyframe
        && let Some(video) = tracks.first()
    {
        super::health::attach_stream_probe(&anchor_src, video.source.clone(), ctx.health.clone());
    }
    match &anchor.health_element {
        None => super::health::attach_probe(&anchor_src, tracks, Sampling::EVERY_FRAME, ctx.health.clone()),
        Some(name) => {
            let pad = pipeline
                .by_name(name)
                .and_then(|e| e.static_pad("src"))
                .ok_or_else(|| format!("no health element {name}"))?;
            super::health::attach_probe(&pad, tracks, Sampling::KEYFRAMES, ctx.health.clone());
        }
    }
    Ok(())
}

/// A compressed frame larger than this is not a camera's: it is dropped and the source is
/// reconnected (a hostile sender must not fill the box's memory through the muxer's queue).
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// What the gate does with a buffer at an anchor.
#[derive(Debug, PartialEq, Eq)]
enum Gate {
    Drop,
    Record,
}

/// Nothing before recording starts (`rt < gate`); a passed-through picture only from a
/// keyframe on (a segment that opens with a delta frame cannot be decoded); never a frame
/// too large to be a camera's.
fn gate_decision(rt: u64, gate: u64, waiting_for_keyframe: bool, keyframe: bool, oversized: bool) -> Gate {
    if rt < gate || (waiting_for_keyframe && !keyframe) || oversized { Gate::Drop } else { Gate::Record }
}

/// Hands each speech buffer of a microphone to the tap, stamped with its media time.
fn connect_tap(appsink: gst::Element, source: String, tap: super::AudioTap) -> Result<(), BuildError> {
    let appsink = appsink.downcast::<gst_app::AppSink>().map_err(|_| "the speech tap is not an appsink")?;
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (Some(buffer), Some(segment)) = (sample.buffer(), sample.segment()) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let start = segment
                    .downcast_ref::<gst::ClockTime>()
                    .and_then(|s| s.to_running_time(buffer.pts()?))
                    .map(|t| crate::base::MediaTime(t.nseconds()));
                let Some(start) = start else { return Ok(gst::FlowSuccess::Ok) };
                let Ok(map) = buffer.map_readable() else { return Ok(gst::FlowSuccess::Ok) };
                let samples = map.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                tap(super::AudioChunk { source: source.clone(), start, samples });
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(())
}

/// Hands each encoded buffer of a track to the tap, stamped with its media time. The
/// buffer is shared, not copied, and the recording path never waits on the tap.
fn connect_encoded_tap(pad: &gst::Pad, source: Arc<str>, tap: super::EncodedTap) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else { return gst::PadProbeReturn::Ok };
        let media = buffer.pts().and_then(|pts| {
            pad.sticky_event::<gst::event::Segment>(0)?.segment().downcast_ref::<gst::ClockTime>()?.to_running_time(pts)
        });
        if let (Some(media), Some(caps)) = (media, pad.current_caps()) {
            tap(super::EncodedBuffer {
                source: source.clone(),
                media: crate::base::MediaTime(media.nseconds()),
                buffer: buffer.clone(),
                caps,
            });
        }
        gst::PadProbeReturn::Ok
    });
}

pub fn play(
    mut instance: Instance,
    plan: &DevicePlan,
    ctx: &RunContext,
    device: &DeviceShared,
) -> Result<Instance, PlayError> {
    // Before the pipeline plays: its first buffers must not be counted as before it.
    let now = ctx.clock.raw_now();
    for stream in &device.streams {
        stream.reset(now);
    }
    if let Err(e) = instance.pipeline.set_state(gst::State::Playing) {
        let detail = first_error(&instance.pipeline).unwrap_or_else(|| e.to_string());
        let _ = instance.pipeline.set_state(gst::State::Null);
        return Err(PlayError::Refused(detail));
    }
    if let Some(sim) = &plan.sim_audio {
        let appsrc = instance
            .pipeline
            .by_name("simfeed")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or(PlayError::NoSimFeed)?;
        instance.feeder = Some(SimFeeder::start(appsrc, sim.clone(), ctx.clock.clock.clone(), ctx.clock.base));
    }
    ctx.splitter.register(std::mem::take(&mut instance.targets));
    *device.pipeline.lock() = Some(instance.pipeline.clone());
    Ok(instance)
}

pub fn teardown(instance: Instance, ctx: &RunContext, device: &DeviceShared) {
    device.pipeline.lock().take();
    ctx.splitter.unregister(instance.id);
    drop(instance.feeder);
    // Sinks still holding a file hand it over as incomplete (see SpoolSink::stop).
    let _ = instance.pipeline.set_state(gst::State::Null);
}

/// Running time, in ns, of a timestamp in a (time) segment.
pub fn running_time(segment: &gst::Segment, pts: Option<gst::ClockTime>) -> Option<u64> {
    let seg = segment.downcast_ref::<gst::ClockTime>()?;
    seg.to_running_time(pts?).map(|t| t.nseconds())
}

/// The first error message waiting on the bus, with the element that raised it.
pub fn first_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = msg.view() {
            return Some(describe_error(e));
        }
    }
    None
}

pub fn describe_error(e: &gst::message::Error) -> String {
    let src = e.src().map(|s| s.name().to_string()).unwrap_or_else(|| "pipeline".into());
    match e.debug() {
        Some(d) => format!("{src}: {} ({})", e.error(), d.lines().next().unwrap_or("")),
        None => format!("{src}: {}", e.error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_records_from_the_start_and_pictures_from_a_keyframe() {
        // Before the start: dropped, keyframe or not.
        assert_eq!(gate_decision(9, 10, false, true, false), Gate::Drop);
        assert_eq!(gate_decision(10, 10, false, false, false), Gate::Record);
        // A passed-through picture waits for its keyframe, then takes delta frames too.
        assert_eq!(gate_decision(11, 10, true, false, false), Gate::Drop);
        assert_eq!(gate_decision(12, 10, true, true, false), Gate::Record);
        assert_eq!(gate_decision(13, 10, false, false, false), Gate::Record);
        // A frame too large to be a camera's is never recorded.
        assert_eq!(gate_decision(14, 10, false, true, true), Gate::Drop);
    }
}
