//! One thread per device: runs its pipeline, and when the pipeline fails, reports it and
//! restarts it with exponential backoff. Other devices never notice.

use super::pipeline::{self, describe_error};
use super::plan::DevicePlan;
use super::{CaptureEvent, DeviceShared, DeviceState, RunContext};
use gst::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Restart delays: 1 s, 2 s, 4 s ... up to 30 s; back to 1 s after a minute of health.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const HEALTHY_AFTER: Duration = Duration::from_secs(60);

    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, next: initial }
    }
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

enum Outcome {
    Stopped,
    Failed(String),
}

pub fn run_device(plan: DevicePlan, ctx: Arc<RunContext>, device: Arc<DeviceShared>) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let mut attempt = 0u32;
    while !ctx.stopping() {
        attempt += 1;
        let started = Instant::now();
        let outcome = match pipeline::build(&plan, &ctx, &device).and_then(|i| pipeline::play(i, &plan, &ctx, &device))
        {
            Ok(instance) => {
                device.update(|s| {
                    s.state = DeviceState::Running;
                    s.restarts = attempt - 1;
                });
                if attempt > 1 {
                    tracing::info!(device = %plan.name, attempt, "device restarted");
                    let _ = ctx.events.send(CaptureEvent::DeviceRestarted {
                        device: plan.name.clone(),
                        at: ctx.clock.now(),
                        attempt,
                    });
                }
                let outcome = watch(&instance.pipeline, &ctx);
                pipeline::teardown(instance, &ctx, &device);
                outcome
            }
            Err(e) => Outcome::Failed(e),
        };
        match outcome {
            Outcome::Stopped => break,
            Outcome::Failed(error) => {
                let at = ctx.clock.now();
                tracing::error!(device = %plan.name, %error, "device failed; the others keep recording");
                let _ = ctx.events.send(CaptureEvent::DeviceFailed {
                    device: plan.name.clone(),
                    sources: plan.tracks.iter().map(|t| t.source.clone()).collect(),
                    at,
                    error: error.clone(),
                });
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

/// How long a stopping pipeline may take to drain its last segment.
const DRAIN_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(10);

fn watch(pipeline: &gst::Pipeline, ctx: &RunContext) -> Outcome {
    let bus = pipeline.bus().expect("pipelines have a bus");
    loop {
        if ctx.stopping() {
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
            return Outcome::Stopped;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}
