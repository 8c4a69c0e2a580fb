//! One thread per device: runs its pipeline, and when the pipeline fails, reports it and
//! restarts it with exponential backoff. Other devices never notice. A device whose pipeline
//! cannot be built at all (an element not installed, a description that does not parse) is
//! a configuration or installation fault that no restart cures: it is reported once, as
//! `cannot start`, and not retried. When to restart is decided by `base::Supervision`;
//! this file is its I/O shell. A network source whose link failed drains what it received
//! before its pipeline is torn down, and after a failed try dials its server until it
//! answers before a new pipeline is built (`wait_for_the_link`).

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
                if retry == Retry::Soon {
                    wait_for_the_link(&plan, &ctx, &device, &mut supervision);
                }
            }
        }
    }
    device.update(|s| s.state = DeviceState::Stopped);
}

/// While a dialled network source's server does not answer, a new connection this often: a
/// pipeline's own try (rtspsrc) lasts the stall time, and the kernel resends its lost SYN only
/// after 1 s, so a link that came back in between was seen up to 2 s late, plus the back-off.
const DIAL_EVERY: Duration = Duration::from_millis(250);

/// For an RTSP or RTMP source whose last try failed with a fault that retrying soon may cure
/// (not a refused login, a wrong path or codec): waits until its server accepts a TCP
/// connection (opened and closed at once), so that the pipeline is built the moment the link is
/// back. Each stall time without an answer is one failed try, as a pipeline's try would have
/// been (status, the gap's count of tries); the dialling paces them, so no back-off follows.
fn wait_for_the_link(
    plan: &DevicePlan,
    ctx: &RunContext,
    device: &DeviceShared,
    supervision: &mut Supervision<ExponentialRetry>,
) {
    let Some(network) = &plan.network else { return };
    let Some((host, port)) = super::network::dial_target(network) else { return };
    let waiting = || !ctx.stopping() && device.pause_reason().is_none();
    while waiting() {
        let window_end = ctx.clocks.monotonic() + network.stall;
        // The name is resolved once a window, not at every dial (a camera is usually an
        // address, then nothing is asked of DNS). A resolver that does not answer holds this
        // thread, as it would hold rtspsrc's own try; unresolved, the window is a failed try.
        let addresses: Vec<std::net::SocketAddr> =
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).map(|a| a.collect()).unwrap_or_default();
        while waiting() && ctx.clocks.monotonic() < window_end {
            let began = ctx.clocks.monotonic();
            let dial =
                |a: &std::net::SocketAddr| waiting() && std::net::TcpStream::connect_timeout(a, DIAL_EVERY).is_ok();
            if addresses.iter().any(dial) {
                return;
            }
            // Refused at once (the camera restarting): no faster than the period.
            ctx.sleep_unless_stopping(device, DIAL_EVERY.saturating_sub(ctx.clocks.monotonic() - began));
        }
        if waiting() {
            supervision.attempt(ctx.clocks.monotonic());
            let unreachable = super::network::NetworkFault::Unreachable { protocol: network.protocol };
            failed(plan, ctx, device, supervision.has_run(), unreachable.to_string(), FailureKind::Device);
            supervision.failed(ctx.clocks.monotonic());
        }
    }
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
/// How long a network source whose data stopped may take to write what it holds: every
/// second here is a second later to reconnect.
const FAULT_DRAIN_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(1);

/// Sends EOS and waits up to `timeout` for every splitmuxsink to finalize its open fragment;
/// what did not drain in time is closed as incomplete at teardown. The EOS is sent from
/// GStreamer's own thread, so the wait is bounded here; a streaming thread that is stuck can
/// still hold up the teardown that follows (the element's state lock), as it could before.
/// `quiet`: a drain that does not finish is logged at debug only (a source that keeps
/// failing would log it at every try).
fn drain(pipeline: &gst::Pipeline, bus: &gst::Bus, timeout: gst::ClockTime, quiet: bool) {
    pipeline.call_async(|p| {
        p.send_event(gst::event::Eos::new());
    });
    match bus.timed_pop_filtered(timeout, &[gst::MessageType::Eos, gst::MessageType::Error]) {
        Some(m) => {
            if let gst::MessageView::Error(e) = m.view() {
                tracing::warn!(error = %describe_error(e), "error while draining");
            }
        }
        None if quiet => {
            tracing::debug!(pipeline = %pipeline.name(), "pipeline did not drain; its last segment is closed as incomplete")
        }
        None => {
            tracing::warn!(pipeline = %pipeline.name(), seconds = timeout.seconds(), "pipeline did not drain; its last segment is closed as incomplete")
        }
    }
}

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
                // The open GOP that the segmenter holds until the next keyframe (which will
                // not come) is written, so the gap starts where the data stopped. Nothing to
                // write if nothing arrived on this connection.
                if device.streams.iter().any(|s| s.arrived.load(std::sync::atomic::Ordering::SeqCst)) {
                    drain(pipeline, &bus, FAULT_DRAIN_TIMEOUT, true);
                }
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
            drain(pipeline, &bus, DRAIN_TIMEOUT, false);
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
