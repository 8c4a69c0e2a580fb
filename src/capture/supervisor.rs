//! One thread per device: runs its pipeline, and when the pipeline fails, reports it and
//! restarts it with exponential backoff. Other devices never notice. A device whose pipeline
//! cannot be built at all (an element not installed, a description that does not parse) is
//! a configuration or installation fault that no restart cures: it is reported once, as
//! `cannot start`, and not retried. When to restart is decided by `base::Supervision`;
//! this file is its I/O shell.

use super::elements;
use super::pipeline::{self, BuildError, describe_error};
use super::plan::DevicePlan;
use super::{CaptureEvent, DeviceShared, DeviceState, FailureKind, NetworkFault, RunContext};
use crate::base::{ExponentialRetry, Supervision};
use gst::prelude::*;
use std::sync::Arc;
use std::time::Duration;

enum Outcome {
    Stopped,
    Paused(String),
    Failed(String, FailureKind, Retry),
}

/// When a failed device is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// As the restart policy says.
    Soon,
    /// Not before `LASTING_RETRY`: a network source's fault that retrying soon will not cure
    /// (see `NetworkFault::is_lasting`).
    Later,
}

/// How long a lasting fault of a network source waits before the next try.
const LASTING_RETRY: Duration = Duration::from_secs(30);

/// Restart delays: 1 s, 2 s, 4 s ... up to 30 s; back to 1 s after a minute of recording.
/// A minute rather than the default half: a device fault (a USB camera that resets every
/// 45 s) should back off, and each restart costs the record a gap.
fn restart_policy() -> ExponentialRetry {
    ExponentialRetry::new(Duration::from_secs(1), Duration::from_secs(30)).healthy_after(Duration::from_secs(60))
}

/// Reconnect delays of a network source: 0.5 s, then every second. A link that is down
/// costs little to retry (each try ends after the source's stall time), and every second of
/// waiting after the link is back is a second missing from the record.
fn reconnect_policy() -> ExponentialRetry {
    ExponentialRetry::new(Duration::from_millis(500), Duration::from_secs(1)).healthy_after(Duration::from_secs(30))
}

pub fn run_device(plan: DevicePlan, ctx: Arc<RunContext>, device: Arc<DeviceShared>) {
    let missing = elements::missing_in(&plan.description);
    if !missing.is_empty() {
        return cannot_start(&plan, &ctx, &device, elements::describe_missing(&missing));
    }
    let policy = if plan.network.is_some() { reconnect_policy() } else { restart_policy() };
    let mut supervision = Supervision::new(policy);
    while !ctx.stopping() {
        if device.pause_reason().is_some() {
            device.update(|s| s.state = DeviceState::Paused);
            ctx.sleep_unless_stopping(&device, Duration::from_millis(200));
            continue;
        }
        supervision.attempt(ctx.clocks.monotonic());
        let instance = match pipeline::build(&plan, &ctx, &device) {
            Ok(instance) => pipeline::play(instance, &plan, &ctx, &device).map_err(|e| e.to_string()),
            Err(BuildError::Unparsable(e)) => return cannot_start(&plan, &ctx, &device, e),
            Err(BuildError::Failed(e)) => Err(e),
        };
        let outcome = match instance {
            Ok(instance) => {
                let outcome = watch(&instance.pipeline, &plan, &ctx, &device, &mut || {
                    recording(&plan, &ctx, &device, &mut supervision)
                });
                pipeline::teardown(instance, &ctx, &device);
                outcome
            }
            Err(e) => Outcome::Failed(e, FailureKind::Device, Retry::Soon),
        };
        match outcome {
            Outcome::Stopped => break,
            Outcome::Paused(reason) => paused(&plan, &ctx, reason),
            Outcome::Failed(error, kind, retry) => {
                failed(&plan, &ctx, &device, supervision.has_run(), error, kind);
                let delay = supervision.failed(ctx.clocks.monotonic());
                let delay = if retry == Retry::Later { delay.max(LASTING_RETRY) } else { delay };
                // A pause (disk critical) ends the wait: the device then shows as paused.
                ctx.sleep_unless_stopping(&device, delay);
            }
        }
    }
    device.update(|s| s.state = DeviceState::Stopped);
}

/// The pipeline plays: the device records, and after failures that is news.
fn recording(
    plan: &DevicePlan,
    ctx: &RunContext,
    device: &DeviceShared,
    supervision: &mut Supervision<ExponentialRetry>,
) {
    if let Some(recovered) = supervision.running(ctx.clocks.monotonic()) {
        tracing::info!(device = %plan.name, attempt = recovered.attempt, "device recording again");
        let _ = ctx.events.send(CaptureEvent::DeviceRestarted {
            device: plan.name.clone(),
            at: ctx.clock.now(),
            attempt: recovered.attempt,
        });
    }
    let restarts = supervision.restarts();
    device.update(|s| {
        s.state = DeviceState::Running;
        s.restarts = restarts;
    });
}

fn paused(plan: &DevicePlan, ctx: &RunContext, reason: String) {
    let at = ctx.clock.now();
    tracing::warn!(device = %plan.name, %reason, "device paused");
    let _ = ctx.events.send(CaptureEvent::DevicePaused {
        device: plan.name.clone(),
        sources: plan.tracks.iter().map(|t| t.source.clone()).collect(),
        at,
        reason,
    });
}

fn failed(plan: &DevicePlan, ctx: &RunContext, device: &DeviceShared, had_run: bool, error: String, kind: FailureKind) {
    let at = ctx.clock.now();
    // A source that stays away (a camera switched off all day) fails the same way at every
    // try without recording anything: said once, not every second.
    if !device.recording_every_stream() && device.status.lock().last_error.as_deref() == Some(error.as_str()) {
        tracing::debug!(device = %plan.name, %error, "device failed again the same way");
    } else {
        tracing::error!(device = %plan.name, %error, "device failed; the others keep recording");
    }
    let _ = ctx.events.send(CaptureEvent::DeviceFailed {
        device: plan.name.clone(),
        sources: plan.tracks.iter().map(|t| t.source.clone()).collect(),
        at,
        error: error.clone(),
        kind,
        had_run,
    });
    if kind == FailureKind::DiskFull
        && let Some(hook) = &ctx.on_disk_full
    {
        hook(format!("disk full: device {} could not write at {at}: {error}", plan.name));
    }
    device.update(|s| {
        s.state = DeviceState::Restarting;
        s.last_error = Some(error);
    });
}

/// The device cannot be started by any restart: say so once and record nothing from it.
fn cannot_start(plan: &DevicePlan, ctx: &RunContext, device: &DeviceShared, reason: String) {
    tracing::error!(device = %plan.name, %reason, "device cannot start; the others record");
    device.update(|s| {
        s.state = DeviceState::CannotStart;
        s.last_error = Some(reason.clone());
    });
    let _ = ctx.events.send(CaptureEvent::DeviceCannotStart {
        device: plan.name.clone(),
        sources: plan.tracks.iter().map(|t| t.source.clone()).collect(),
        at: ctx.clock.now(),
        reason,
    });
}

/// At most one pipeline warning a device in this long reaches the log at warning level.
const WARNING_EVERY: Duration = Duration::from_secs(10);

/// What a network source's error (or refusal warning) means for it.
fn network_failure(
    network: &super::plan::NetworkPlan,
    device: &DeviceShared,
    error: &gst::glib::Error,
    described: String,
) -> Outcome {
    let offered = device.offered.lock().clone();
    let fault = super::network::classify(network, error, described, &offered);
    let retry = if fault.is_lasting() { Retry::Later } else { Retry::Soon };
    Outcome::Failed(fault.to_string(), FailureKind::Device, retry)
}

/// The watchdog's view of a network source's streams now, and its verdict.
fn network_watchdog(
    plan: &DevicePlan,
    network: &super::plan::NetworkPlan,
    ctx: &RunContext,
    device: &DeviceShared,
) -> Option<NetworkFault> {
    use std::sync::atomic::Ordering::SeqCst;
    let now = ctx.clock.raw_now();
    let since = |t: u64| Duration::from_nanos(now.saturating_sub(t));
    let streams: Vec<super::network::StreamState> = plan
        .anchors
        .iter()
        .zip(&device.streams)
        .map(|(anchor, s)| super::network::StreamState {
            // By its track's kind: a re-encoded picture has a raw anchor, yet it is a picture.
            what: if plan
                .tracks
                .iter()
                .any(|t| anchor.sources.contains(&t.source) && t.kind == crate::config::SourceKind::Video)
            {
                super::network::Stream::Picture
            } else {
                super::network::Stream::Sound
            },
            silent: since(s.last_data.load(SeqCst)),
            arrived: s.arrived.load(SeqCst),
            since_keyframe: anchor.starts_on_keyframe.then(|| since(s.last_keyframe.load(SeqCst))),
            oversized: s.oversized.load(SeqCst),
        })
        .collect();
    super::network::watchdog(&streams, network.stall, network.waits_for_sender)
}

/// How long a stopping pipeline may take to drain its last segment.
const DRAIN_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(10);

/// Runs until the pipeline fails or the device must stop. `recording` is called once, when
/// the device records: at once for a local device (its pipeline plays), at its first data
/// for a network source (whose pipeline plays before it has connected).
fn watch(
    pipeline: &gst::Pipeline,
    plan: &DevicePlan,
    ctx: &RunContext,
    device: &DeviceShared,
    recording: &mut dyn FnMut(),
) -> Outcome {
    let bus = pipeline.bus().expect("pipelines have a bus");
    let mut announced = false;
    let mut warned_at: Option<std::time::Duration> = None;
    loop {
        // A network source records once every stream has passed the gate.
        if !announced && (plan.network.is_none() || device.recording_every_stream()) {
            recording();
            announced = true;
        }
        if let Some(network) = &plan.network {
            if let Some(fault) = network_watchdog(plan, network, ctx, device) {
                // Whatever the pipeline still holds is finalized as incomplete at teardown.
                return Outcome::Failed(fault.to_string(), FailureKind::Device, Retry::Soon);
            }
            if let (Some(counters), Some(track)) = (super::network::rtp_statistics(device), plan.tracks.first()) {
                ctx.health.rtp_counters(&track.source, counters);
            }
            for track in plan.tracks.iter().filter_map(|t| ctx.tracks.get(&t.source)) {
                track.set_timing(super::network::sender_timing(device, track.kind));
            }
        }
        let paused = device.pause_reason();
        if ctx.stopping() || paused.is_some() {
            // EOS makes every splitmuxsink finalize its open fragment.
            pipeline.send_event(gst::event::Eos::new());
            match bus.timed_pop_filtered(DRAIN_TIMEOUT, &[gst::MessageType::Eos, gst::MessageType::Error]) {
                Some(m) => {
                    if let gst::MessageView::Error(e) = m.view() {
                        tracing::warn!(error = %describe_error(e), "error while draining at stop");
                    }
                }
                None => {
                    tracing::warn!(pipeline = %pipeline.name(), "pipeline did not drain within 10 s; its last segment is closed as incomplete")
                }
            }
            return paused.map_or(Outcome::Stopped, Outcome::Paused);
        }
        let types = [gst::MessageType::Error, gst::MessageType::Eos, gst::MessageType::Warning];
        if let Some(msg) = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(100), &types) {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    // The spool sink posts NoSpaceLeft for ENOSPC (by the error's code).
                    if let Some(gst::ResourceError::NoSpaceLeft) = e.error().kind::<gst::ResourceError>() {
                        return Outcome::Failed(describe_error(e), FailureKind::DiskFull, Retry::Soon);
                    }
                    return match &plan.network {
                        Some(network) => {
                            tracing::debug!(device = %plan.name, detail = %describe_error(e), "network source error");
                            network_failure(network, device, &e.error(), describe_error(e))
                        }
                        None => Outcome::Failed(describe_error(e), FailureKind::Device, Retry::Soon),
                    };
                }
                gst::MessageView::Eos(_) => {
                    let error = match plan.network {
                        Some(_) => NetworkFault::Ended.to_string(),
                        None => "the source stopped delivering (end of stream)".into(),
                    };
                    return Outcome::Failed(error, FailureKind::Device, Retry::Soon);
                }
                gst::MessageView::Warning(w) => {
                    if let Some(network) = &plan.network
                        && super::network::is_refusal(&w.error())
                    {
                        return network_failure(network, device, &w.error(), w.error().to_string());
                    }
                    // A sender can make an element warn at every packet: at most one line
                    // in 10 s reaches the log.
                    let now = ctx.clocks.monotonic();
                    let src = w.src().map(|s| s.name().to_string()).unwrap_or_default();
                    if warned_at.is_none_or(|t| now.saturating_sub(t) >= WARNING_EVERY) {
                        warned_at = Some(now);
                        tracing::warn!(%src, warning = %w.error(), "pipeline warning");
                    } else {
                        tracing::debug!(%src, warning = %w.error(), "pipeline warning");
                    }
                }
                _ => {}
            }
        }
    }
}
