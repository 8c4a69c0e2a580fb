//! One thread per device: runs its pipeline, and when the pipeline fails, reports it and
//! restarts it with exponential backoff. Other devices never notice. A device whose pipeline
//! cannot be built at all (an element not installed, a description that does not parse) is
//! a configuration or installation fault that no restart cures: it is reported once, as
//! `cannot start`, and not retried.

use super::elements;
use super::pipeline::{self, BuildError, describe_error};
use super::plan::DevicePlan;
use super::{CaptureEvent, DeviceShared, DeviceState, RunContext};
use crate::base::Backoff;
use gst::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

enum Outcome {
    Stopped,
    Paused(String),
    Failed(String),
}

pub fn run_device(plan: DevicePlan, ctx: Arc<RunContext>, device: Arc<DeviceShared>) {
    let missing = elements::missing_in(&plan.description);
    if !missing.is_empty() {
        return cannot_start(&plan, &ctx, &device, elements::describe_missing(&missing));
    }
    // Restart delays: 1 s, 2 s, 4 s ... up to 30 s; back to 1 s after a minute of health.
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    // Failed attempts since the device last recorded (or since the run began).
    let mut failures = 0u32;
    // Whether the pipeline ever ran in this run: only then is coming back a restart.
    let mut has_run = false;
    let mut restarts = 0u32;
    while !ctx.stopping() {
        if device.pause_reason().is_some() {
            device.update(|s| s.state = DeviceState::Paused);
            ctx.sleep_unless_stopping(Duration::from_millis(200));
            continue;
        }
        let started = Instant::now();
        let instance = match pipeline::build(&plan, &ctx, &device) {
            Ok(instance) => pipeline::play(instance, &plan, &ctx, &device),
            Err(BuildError::Unparsable(e)) => return cannot_start(&plan, &ctx, &device, e),
            Err(BuildError::Failed(e)) => Err(e),
        };
        let outcome = match instance {
            Ok(instance) => {
                if failures > 0 {
                    if has_run {
                        restarts += 1;
                    }
                    tracing::info!(device = %plan.name, attempt = failures + 1, "device recording again");
                    let _ = ctx.events.send(CaptureEvent::DeviceRestarted {
                        device: plan.name.clone(),
                        at: ctx.clock.now(),
                        attempt: failures + 1,
                    });
                }
                has_run = true;
                failures = 0;
                device.update(|s| {
                    s.state = DeviceState::Running;
                    s.restarts = restarts;
                });
                let outcome = watch(&instance.pipeline, &ctx, &device);
                pipeline::teardown(instance, &ctx, &device);
                outcome
            }
            Err(e) => Outcome::Failed(e),
        };
        match outcome {
            Outcome::Stopped => break,
            Outcome::Paused(reason) => {
                let at = ctx.clock.now();
                tracing::warn!(device = %plan.name, %reason, "device paused");
                let _ = ctx.events.send(CaptureEvent::DevicePaused {
                    device: plan.name.clone(),
                    sources: plan.tracks.iter().map(|t| t.source.clone()).collect(),
                    at,
                    reason,
                });
            }
            Outcome::Failed(error) => {
                let at = ctx.clock.now();
                tracing::error!(device = %plan.name, %error, "device failed; the others keep recording");
                let _ = ctx.events.send(CaptureEvent::DeviceFailed {
                    device: plan.name.clone(),
                    sources: plan.tracks.iter().map(|t| t.source.clone()).collect(),
                    at,
                    error: error.clone(),
                    had_run: has_run,
                });
                failures += 1;
                if started.elapsed() > Backoff::HEALTHY_AFTER {
                    backoff.reset();
                }
                device.update(|s| {
                    s.state = DeviceState::Restarting;
                    s.last_error = Some(error);
                });
                ctx.sleep_unless_stopping(backoff.next_delay());
            }
        }
    }
    device.update(|s| s.state = DeviceState::Stopped);
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
                gst::MessageView::Error(e) => return Outcome::Failed(describe_error(e)),
                gst::MessageView::Eos(_) => {
                    return Outcome::Failed("the source stopped delivering (end of stream)".into());
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
