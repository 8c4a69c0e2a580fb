//! One thread per device: runs its pipeline, and when the pipeline fails, reports it and
//! restarts it with exponential backoff. Other devices never notice. A device whose pipeline
//! cannot be built at all (an element not installed, a description that does not parse) is
//! a configuration or installation fault that no restart cures: it is reported once, as
//! `cannot start`, and not retried. When to restart is decided by `base::Supervision`;
//! this file is its I/O shell.

use super::elements;
use super::pipeline::{self, BuildError, describe_error};
use super::plan::DevicePlan;
use super::{CaptureEvent, DeviceShared, DeviceState, FailureKind, RunContext};
use crate::base::{ExponentialRetry, Supervision};
use gst::prelude::*;
use std::sync::Arc;
use std::time::Duration;

enum Outcome {
    Stopped,
    Paused(String),
    Failed(String, FailureKind),
}

/// Restart delays: 1 s, 2 s, 4 s ... up to 30 s; back to 1 s after a minute of recording.
/// A minute rather than the default half: a device fault (a USB camera that resets every
/// 45 s) should back off, and each restart costs the record a gap.
fn restart_policy() -> ExponentialRetry {
    ExponentialRetry::new(Duration::from_secs(1), Duration::from_secs(30)).healthy_after(Duration::from_secs(60))
}

pub fn run_device(plan: DevicePlan, ctx: Arc<RunContext>, device: Arc<DeviceShared>) {
    let missing = elements::missing_in(&plan.description);
    if !missing.is_empty() {
        return cannot_start(&plan, &ctx, &device, elements::describe_missing(&missing));
    }
    let mut supervision = Supervision::new(restart_policy());
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
                recording(&plan, &ctx, &device, &mut supervision);
                let outcome = watch(&instance.pipeline, &ctx, &device);
                pipeline::teardown(instance, &ctx, &device);
                outcome
            }
            Err(e) => Outcome::Failed(e, FailureKind::Device),
        };
        match outcome {
            Outcome::Stopped => break,
            Outcome::Paused(reason) => paused(&plan, &ctx, reason),
            Outcome::Failed(error, kind) => {
                failed(&plan, &ctx, &device, supervision.has_run(), error.clone(), kind);
                let delay = supervision.failed(ctx.clocks.monotonic());
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
    tracing::error!(device = %plan.name, %error, "device failed; the others keep recording");
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

/// How long a stopping pipeline may take to drain its last segment.
const DRAIN_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(10);

fn watch(pipeline: &gst::Pipeline, ctx: &RunContext, device: &DeviceShared) -> Outcome {
    let bus = pipeline.bus().expect("pipelines have a bus");
    loop {
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
                    let kind = match e.error().kind::<gst::ResourceError>() {
                        Some(gst::ResourceError::NoSpaceLeft) => FailureKind::DiskFull,
                        _ => FailureKind::Device,
                    };
                    return Outcome::Failed(describe_error(e), kind);
                }
                gst::MessageView::Eos(_) => {
                    return Outcome::Failed(
                        "the source stopped delivering (end of stream)".into(),
                        FailureKind::Device,
                    );
                }
                gst::MessageView::Warning(w) => {
                    let src = w.src().map(|s| s.name().to_string()).unwrap_or_default();
                    tracing::warn!(%src, warning = %w.error(), "pipeline warning");
                }
                _ => {}
            }
        }
    }
}
