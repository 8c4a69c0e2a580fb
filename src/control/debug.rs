//! Fault injection for tests and drills: `POST /api/v1/debug/…`. Compiled only with the cargo
//! feature `fault-injection` (the test suite enables it; release packages do not), and even
//! then answered only when the configuration sets `[debug] fault_injection = true`. A box
//! built for a courtroom has no code that can fail a device or hang the ledger on request.

use super::api::{ApiError, ApiState, blocking};
use super::openapi::Refusal;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes, for the technicians' part of the router.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(fail_device)).routes(routes!(stall_ledger))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FailDevice {
    device: String,
}

fn require_fault_injection(s: &ApiState) -> Result<(), ApiError> {
    if s.cfg.config.debug.fault_injection {
        Ok(())
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, "fault injection is disabled (debug.fault_injection = false)".into()))
    }
}

/// Hangs the ledger writer for good, as a deadlock would (tests of the watchdog only).
#[utoipa::path(post, path = "/api/v1/debug/stall-ledger", summary = "Hang the ledger writer (watchdog tests; technicians; only in builds with fault injection and with debug.fault_injection)", security(("technicianToken" = [])),
    responses((status = 200, description = "Stalled", body = LedgerStalled), Refusal))]
async fn stall_ledger(State(s): State<ApiState>) -> Result<Response, ApiError> {
    require_fault_injection(&s)?;
    let ledger = s.ledger.clone();
    std::thread::spawn(move || {
        let _ = ledger.call(|_| -> Result<(), crate::ledger::LedgerError> {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        });
    });
    tracing::error!("ledger writer stalled on purpose (fault injection)");
    Ok(Json(LedgerStalled { stalled: true }).into_response())
}

/// `POST /api/v1/debug/stall-ledger`'s answer.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct LedgerStalled {
    pub stalled: bool,
}

#[utoipa::path(post, path = "/api/v1/debug/fail-device", summary = "Make a device's pipeline fail (tests; technicians; only in builds with fault injection and with debug.fault_injection)", security(("technicianToken" = [])), request_body = FailDevice,
    responses((status = 200, description = "Injected", body = FaultInjected), Refusal))]
async fn fail_device(State(s): State<ApiState>, Json(req): Json<FailDevice>) -> Result<Response, ApiError> {
    require_fault_injection(&s)?;
    let r = s.recorder.clone();
    blocking(move || r.inject_failure(&req.device)).await?;
    Ok(Json(FaultInjected { injected: true }).into_response())
}

/// `POST /api/v1/debug/fail-device`'s answer.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct FaultInjected {
    pub injected: bool,
}
