//! Who is asking: the request's principal from the control socket's peer credentials, a
//! technician token, or a panel cookie (with its CSRF token on every change); the role
//! checks; and the audit entry of every change and every refusal.

use super::api::{ApiError, ApiState, blocking};
use super::openapi::{ErrorBody, Refusal};
use crate::auth::{Auth, AuthError, Credential, Principal, Role, Via};
use axum::Json;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use nix::unistd::{Uid, User, geteuid};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use utoipa::ToSchema;

pub const SESSION_COOKIE: &str = "courtbox_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The Unix user on the other end of the control socket, as the kernel reports it.
#[derive(Debug, Clone, Copy)]
pub struct LocalPeer {
    pub uid: Option<u32>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::UnixListener>> for LocalPeer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        LocalPeer { uid: stream.io().peer_cred().ok().map(|c| c.uid()) }
    }
}

/// Who a refused or accepted request is written down as, when there is no principal.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub who: String,
    pub role: String,
    /// Whether `who` names someone (a person, a local user), or nobody at all (no credential,
    /// a wrong token): the audit writes refusals of nobody only as counts.
    pub names_someone: bool,
}

/// The account name of `uid`, from the system's user database (NSS, not only /etc/passwd).
fn user_name(uid: u32) -> String {
    User::from_uid(Uid::from_raw(uid)).ok().flatten().map(|u| u.name).unwrap_or_else(|| format!("uid {uid}"))
}

fn refused(status: StatusCode, message: impl Into<String>, claimed: Claimed) -> Response {
    let mut response = ApiError(status, message.into()).into_response();
    response.extensions_mut().insert(claimed);
    response
}

/// Who a wrong or revoked technician token is written down as: it names nobody.
const TOKEN_HOLDER: &str = "token holder";

fn anonymous() -> Claimed {
    Claimed { who: "anonymous".into(), role: "none".into(), names_someone: false }
}

/// The panel session id the request's cookies carry, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    CookieJar::from_headers(headers).get(SESSION_COOKIE).map(|c| c.value().to_string())
}

/// The panel session cookie: HttpOnly and SameSite=Strict always, `Secure` over HTTPS; an
/// empty value with `max_age` zero tells the browser to drop it.
fn session_cookie_header(value: String, max_age_seconds: u64, secure: bool) -> Cookie<'static> {
    let max_age = time::Duration::seconds(i64::try_from(max_age_seconds).unwrap_or(i64::MAX));
    let mut cookie = Cookie::build((SESSION_COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(max_age)
        .build();
    if secure {
        cookie.set_secure(true);
    }
    cookie
}

/// Reads are not actions: they are neither audited when they succeed nor need a CSRF token.
fn changes_something(method: &Method) -> bool {
    method != Method::GET && method != Method::HEAD
}

/// Establishes the principal of every request behind it, or refuses with 401/403/429.
pub async fn authenticate(State(s): State<ApiState>, mut request: Request, next: Next) -> Response {
    let changes = changes_something(request.method());
    let (principal, credential) = if let Some(ConnectInfo(peer)) =
        request.extensions().get::<ConnectInfo<LocalPeer>>().copied()
    {
        // The socket file is 0600; root and the service's own user are the box's technicians.
        match peer.uid {
            Some(uid) if uid == 0 || uid == geteuid().as_raw() => (
                Principal { name: user_name(uid), role: Role::Technician, via: Via::LocalSocket { uid } },
                Credential::LocalSocket,
            ),
            uid => {
                let who = uid.map_or("unknown local user".into(), |u| format!("{} (local)", user_name(u)));
                return refused(
                    StatusCode::FORBIDDEN,
                    "only root or the courtbox service user may use the control socket",
                    Claimed { who, role: "none".into(), names_someone: true },
                );
            }
        }
    } else if let Some(token) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        let token = token.trim().to_string();
        let digest = crate::integrity::sha256(token.as_bytes());
        let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let auth = s.auth.clone();
        match tokio::task::spawn_blocking(move || auth.technician(&token, client)).await {
            Ok(Ok(p)) => (p, Credential::Token(digest)),
            Ok(Err(e)) => {
                let status =
                    if e.retry_after().is_some() { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::UNAUTHORIZED };
                return refused(
                    status,
                    e.to_string(),
                    Claimed { who: TOKEN_HOLDER.into(), role: "none".into(), names_someone: false },
                );
            }
            Err(e) => return ApiError::internal(e).into_response(),
        }
    } else if let Some(id) = session_cookie(request.headers()) {
        let Some(session) = s.auth.panel_session(&id, changes) else {
            return refused(
                StatusCode::UNAUTHORIZED,
                "signed out (the panel session ended); sign in again",
                anonymous(),
            );
        };
        let claimed = Claimed {
            who: session.principal.describe(),
            role: session.principal.role.as_str().into(),
            names_someone: true,
        };
        if changes {
            let presented = request.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !crate::base::constant_time_eq(presented.as_bytes(), session.csrf.as_bytes()) {
                return refused(StatusCode::FORBIDDEN, "missing or wrong CSRF token; reload the panel", claimed);
            }
        }
        (session.principal, Credential::Panel(id))
    } else {
        return refused(
            StatusCode::UNAUTHORIZED,
            "sign in first (panel PIN, or Authorization: Bearer <technician token>)",
            anonymous(),
        );
    };
    request.extensions_mut().insert(principal.clone());
    request.extensions_mut().insert(credential);
    let mut response = next.run(request).await;
    response.extensions_mut().insert(principal);
    response
}

/// Resolves once `credential` no longer admits its holder (removed, renewed, signed out,
/// or the panel session expired): long-lived answers end there. Checked at once on every
/// revocation, and every few seconds for sessions that expire by time.
pub async fn revoked(auth: std::sync::Arc<Auth>, credential: Credential) {
    let mut revocations = auth.revocations();
    // Revoked between the request's check and now: no revocation would wake us for it.
    if !auth.is_current(&credential) {
        return;
    }
    loop {
        tokio::select! {
            changed = revocations.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
        if !auth.is_current(&credential) {
            return;
        }
    }
}

/// Lets only technicians through (configuration, people, diagnostics).
pub async fn technicians_only(request: Request, next: Next) -> Response {
    match request.extensions().get::<Principal>() {
        Some(p) if p.role == Role::Technician => next.run(request).await,
        Some(p) => {
            let claimed = Claimed { who: p.describe(), role: p.role.as_str().into(), names_someone: true };
            refused(StatusCode::FORBIDDEN, format!("{} may not do this: technicians only", p.role.as_str()), claimed)
        }
        None => refused(StatusCode::UNAUTHORIZED, "sign in first", anonymous()),
    }
}

/// Refusals that name someone written to the audit chain one by one per minute and network
/// client; the rest are counted and written as one summary entry a minute (`RefusalCounter`).
pub const AUDITED_REFUSALS_PER_CLIENT_MINUTE: u32 = 10;
/// And per minute from all network clients together (many addresses are cheap in IPv6).
pub const AUDITED_REFUSALS_PER_MINUTE: u32 = 100;
/// How much of a request's path an audit entry keeps.
const AUDITED_PATH_CHARS: usize = 200;

/// Refusals the audit chain does not get one by one: those of nobody at all (no credential,
/// a wrong token, an ended session), and those of a network client past its
/// `AUDITED_REFUSALS_PER_CLIENT_MINUTE`. Named refusals on the box itself (its screen, its
/// socket) are always written.
/// Anyone can send them by the thousand; written each, they would grow the ledger without
/// bound. Pure, over given monotonic times.
#[derive(Debug, Default)]
pub struct RefusalCounter {
    /// Per client: the start of its current minute, and refusals written in it.
    written: HashMap<IpAddr, (Duration, u32)>,
    /// The same for all network clients together.
    written_in_all: (Duration, u32),
    /// Not written since the last summary: per status code, and per client.
    unwritten: BTreeMap<u16, u64>,
    clients: HashMap<IpAddr, u64>,
}

impl RefusalCounter {
    /// Whether this refusal is written one by one; if not, it is counted for the summary.
    pub fn write_one(&mut self, client: Option<IpAddr>, anonymous: bool, status: u16, now: Duration) -> bool {
        // The box's own socket is the box's users: always written.
        let Some(ip) = client.map(crate::auth::canonical_client) else { return true };
        // Someone named, on the box itself (its screen): always written too.
        let on_the_box = crate::auth::Scope::of(client) == crate::auth::Scope::Local;
        if !anonymous && on_the_box {
            return true;
        }
        if !anonymous {
            let (all_start, all) = &mut self.written_in_all;
            if now.saturating_sub(*all_start) >= Duration::from_secs(60) {
                (*all_start, *all) = (now, 0);
            }
            let (start, n) = self.written.entry(ip).or_insert((now, 0));
            if now.saturating_sub(*start) >= Duration::from_secs(60) {
                (*start, *n) = (now, 0);
            }
            if *n < AUDITED_REFUSALS_PER_CLIENT_MINUTE && *all < AUDITED_REFUSALS_PER_MINUTE {
                *n += 1;
                *all += 1;
                return true;
            }
        }
        *self.unwritten.entry(status).or_default() += 1;
        *self.clients.entry(ip).or_default() += 1;
        false
    }

    /// What was not written since the last summary, as one audit action and its most
    /// frequent status; `None` if nothing. Starts counting again.
    pub fn take_summary(&mut self, now: Duration) -> Option<(String, u16)> {
        self.written.retain(|_, (start, _)| now.saturating_sub(*start) < Duration::from_secs(60));
        let total: u64 = self.unwritten.values().sum();
        if total == 0 {
            return None;
        }
        let by_status = self.unwritten.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join(", ");
        let status = self.unwritten.iter().max_by_key(|(_, n)| **n).map_or(401, |(s, _)| *s);
        let (top, top_n) = self.clients.iter().max_by_key(|(_, n)| **n).map(|(ip, n)| (*ip, *n)).expect("counted");
        let action = format!(
            "refused requests not written one by one: {total} ({by_status}) from {} client(s), most from {top} ({top_n})",
            self.clients.len()
        );
        self.unwritten.clear();
        self.clients.clear();
        Some((action, status))
    }
}

/// How often the summary of unwritten refusals is written (and once more at shutdown).
const REFUSAL_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Writes the summary of refusals not written one by one, each minute and at shutdown.
pub async fn write_refusal_summaries(state: ApiState, shutdown: tokio_util::sync::CancellationToken) {
    let started = std::time::Instant::now();
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            () = tokio::time::sleep(REFUSAL_SUMMARY_EVERY) => false,
        };
        let summary = state.refusals.lock().take_summary(started.elapsed());
        if let Some((action, status)) = summary {
            let ledger = state.ledger.clone();
            let write = tokio::task::spawn_blocking(move || {
                ledger.call_audit(move |w| w.audit("unauthenticated clients", "none", &action, status))
            });
            match write.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "could not write the summary of refused requests"),
                Err(e) => tracing::error!(error = %e, "audit writer failed"),
            }
        }
        if stopping {
            return;
        }
    }
}

/// Writes every request that changes something, and refused ones, to the audit chain before
/// the answer goes out (reads that succeed are not actions). Refusals of nobody in
/// particular, and a client's beyond its share, are counted and summarised instead. Audit
/// entries wait behind the record's own writes (`Ledger::call_audit`).
pub async fn audit(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    // The path as sent, cut short: an unknown client chooses it.
    let path: String = request.uri().path().chars().take(AUDITED_PATH_CHARS).collect();
    let action = format!("{} {path}", request.method());
    let mutating = changes_something(request.method());
    let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let response = next.run(request).await;
    let status = response.status();
    let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS);
    // Whoever is not signed in and was not answered with success (a refusal, but also a 400,
    // 404 or 405 that anyone can provoke) is held to the same bounds as a refusal.
    let (claimed, principal) = (response.extensions().get::<Claimed>(), response.extensions().get::<Principal>());
    let unauthenticated_failure = principal.is_none() && !status.is_success();
    if mutating || refused || unauthenticated_failure {
        let (actor, role, anonymous) = match (claimed, principal) {
            (Some(c), _) => (c.who.clone(), c.role.clone(), !c.names_someone),
            (None, Some(p)) => (p.describe(), p.role.as_str().to_string(), false),
            (None, None) => ("anonymous".to_string(), "none".to_string(), true),
        };
        let code = status.as_u16();
        if refused || unauthenticated_failure {
            let now = state.started.elapsed();
            if !state.refusals.lock().write_one(client, anonymous, code, now) {
                return response;
            }
        }
        let ledger = state.ledger.clone();
        let write =
            tokio::task::spawn_blocking(move || ledger.call_audit(move |w| w.audit(&actor, &role, &action, code)));
        // The ledger answers in milliseconds; if it does not, the answer still goes out and
        // the entry is written when it can be.
        match tokio::time::timeout(std::time::Duration::from_secs(2), write).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "could not write the audit entry"),
            Ok(Err(e)) => tracing::error!(error = %e, "audit writer failed"),
            Err(_) => tracing::error!("audit entry not written within 2 s; it is written when the ledger answers"),
        }
    }
    response
}

// The answers below are shared with the client (`control::client`), which reads them back.
// Answers that were once built with `json!` keep their fields in alphabetical order:
// `serde_json::Value` sorted them, and the bytes on the wire stay the same.

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub name: String,
    pub pin: String,
}

/// A secretary signed in: the panel's session is in the cookie beside this.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SignedIn {
    pub name: String,
    pub role: Role,
    /// Send back as X-CSRF-Token on every change.
    pub csrf: String,
}

/// `GET /api/v1/auth/me`'s answer: who is asking, and how.
#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    /// The panel session's CSRF token; null for a technician token or a local command.
    pub csrf: Option<String>,
    pub name: String,
    pub role: Role,
    /// `"panel"`, `"token"`, or `{"local_socket": {"uid": …}}`.
    pub via: Via,
}

/// `POST /api/v1/auth/sign-out`'s answer (and what the panel's WebSocket sends when its
/// session has ended).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SignedOut {
    pub signed_out: bool,
}

/// `PUT /api/v1/people/{name}`'s answer: the person stored, and a technician's new token.
/// No `Debug`: the token must not end up in a log line.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct PersonStored {
    pub name: String,
    /// Technicians only: that the token is shown this once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub role: Role,
    /// Technicians only: the new token, shown this once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `DELETE /api/v1/people/{name}`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PersonRemoved {
    pub removed: String,
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let status = match &e {
            AuthError::Invalid(_) => StatusCode::BAD_REQUEST,
            AuthError::Ledger(_) => StatusCode::INTERNAL_SERVER_ERROR,
            e if e.retry_after().is_some() => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError(status, e.to_string())
    }
}

/// `POST /api/v1/auth/sign-in`: a secretary's name and PIN → a panel session cookie.
#[utoipa::path(post, path = "/api/v1/auth/sign-in", summary = "Secretary sign-in with name and PIN; sets the panel session cookie", security(()), request_body = SignIn,
    responses((status = 200, description = "Signed in; `courtbox_session` cookie set", body = SignedIn),
        (status = 401, description = "Wrong name or PIN", body = ErrorBody),
        (status = 429, description = "Locked out or too many attempts; see Retry-After", body = ErrorBody), Refusal))]
pub async fn sign_in(State(s): State<ApiState>, request: Request) -> Response {
    let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let body = match axum::body::to_bytes(request.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(e) => return ApiError(StatusCode::BAD_REQUEST, format!("unreadable body: {e}")).into_response(),
    };
    let req: SignIn = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError(StatusCode::BAD_REQUEST, format!("expected {{\"name\", \"pin\"}}: {e}")).into_response();
        }
    };
    let claimed = Claimed {
        // Refused when it holds control characters; even so, the audit never stores them raw.
        who: format!("{} (panel sign-in)", crate::base::printable(&req.name.chars().take(64).collect::<String>())),
        role: "secretary".into(),
        names_someone: true,
    };
    let auth = s.auth.clone();
    let outcome = tokio::task::spawn_blocking(move || auth.sign_in(&req.name, &req.pin, client)).await;
    let mut response = match outcome {
        Ok(Ok((principal, id, csrf))) => {
            let cookie = session_cookie_header(id, s.auth.session_idle().as_secs(), s.tls);
            let body = Json(SignedIn { name: principal.name.clone(), role: principal.role, csrf });
            let mut r = (CookieJar::new().add(cookie), body).into_response();
            r.extensions_mut().insert(principal);
            return r;
        }
        Ok(Err(e)) => {
            let retry = e.retry_after();
            let mut r = ApiError::from(e).into_response();
            if let Some(d) = retry {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(d.as_secs().max(1)));
            }
            r
        }
        Err(e) => ApiError::internal(e).into_response(),
    };
    response.extensions_mut().insert(claimed);
    response
}

/// `GET /api/v1/auth/me`: who is signed in, and the CSRF token the panel must send.
#[utoipa::path(get, path = "/api/v1/auth/me", summary = "Who is signed in (and the panel's CSRF token)", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])),
    responses((status = 200, description = "The principal", body = WhoAmI), Refusal))]
pub async fn me(
    State(s): State<ApiState>,
    headers: HeaderMap,
    axum::Extension(p): axum::Extension<Principal>,
) -> Response {
    let csrf = session_cookie(&headers).and_then(|id| s.auth.panel_session(&id, false)).map(|x| x.csrf);
    Json(WhoAmI { csrf, name: p.name, role: p.role, via: p.via }).into_response()
}

#[utoipa::path(post, path = "/api/v1/auth/sign-out", summary = "Ends the panel session", security(("panelCookie" = [], "csrf" = []), ("technicianToken" = [])),
    responses((status = 200, description = "Signed out", body = SignedOut), Refusal))]
pub async fn sign_out(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        s.auth.sign_out(&id);
    }
    let cleared = session_cookie_header(String::new(), 0, false);
    (CookieJar::new().add(cleared), Json(SignedOut { signed_out: true })).into_response()
}

/// `GET /api/v1/auth/people`: the names the panel's sign-in screen offers.
#[utoipa::path(get, path = "/api/v1/auth/people", summary = "Secretaries the panel's sign-in screen offers", security(()),
    responses((status = 200, description = "Names", body = Vec<String>), Refusal))]
pub async fn secretary_names(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let auth = s.auth.clone();
    let names = blocking(move || auth.secretary_names()).await?;
    Ok(Json(names).into_response())
}

#[utoipa::path(get, path = "/api/v1/people", summary = "Who may act on the box (technicians)", security(("technicianToken" = [])),
    responses((status = 200, description = "People", body = Vec<Object>), Refusal))]
pub async fn people(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let auth = s.auth.clone();
    let people = blocking(move || auth.people()).await?;
    Ok(Json(people).into_response())
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPerson {
    pub role: Role,
    /// Secretaries: the PIN (6-12 digits). Technicians get a new token in the answer.
    #[schema(pattern = "^[0-9]{6,12}$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

/// `PUT /api/v1/people/{name}`: adds a person or renews their PIN or token.
#[utoipa::path(put, path = "/api/v1/people/{name}", summary = "Add a secretary (PIN) or technician (a token is returned once) (technicians)", security(("technicianToken" = [])), params(("name" = String, Path, min_length = 1, max_length = 64)), request_body = PutPerson,
    responses((status = 201, description = "Stored", body = PersonStored), Refusal))]
pub async fn put_person(
    State(s): State<ApiState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    Json(req): Json<PutPerson>,
) -> Result<Response, ApiError> {
    let auth = s.auth.clone();
    let answer = blocking(move || match (req.role, req.pin) {
        (Role::Secretary, Some(pin)) => auth.set_secretary(&name, &pin).map(|_| PersonStored {
            name,
            note: None,
            role: Role::Secretary,
            token: None,
        }),
        (Role::Secretary, None) => {
            Err(AuthError::Invalid("a secretary needs a PIN (\"pin\": \"6 to 12 digits\")".into()))
        }
        (Role::Technician, Some(_)) => {
            Err(AuthError::Invalid("technicians get a token, not a PIN; leave \"pin\" out".into()))
        }
        (Role::Technician, None) => auth.issue_token(&name).map(|token| PersonStored {
            name,
            note: Some("shown once; only its hash is kept".into()),
            role: Role::Technician,
            token: Some(token),
        }),
    })
    .await?;
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

#[utoipa::path(delete, path = "/api/v1/people/{name}", summary = "Remove a person (technicians)", security(("technicianToken" = [])), params(("name" = String, Path, min_length = 1, max_length = 64)),
    responses((status = 200, description = "Removed", body = PersonRemoved), Refusal))]
pub async fn remove_person(
    State(s): State<ApiState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let auth = s.auth.clone();
    let who = name.clone();
    let existed = blocking(move || auth.remove(&who)).await?;
    if !existed {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("nobody named {name:?}")));
    }
    Ok(Json(PersonRemoved { removed: name }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_of_nobody_and_beyond_a_client_share_are_summarised_not_written() {
        let mut c = RefusalCounter::default();
        let t = Duration::from_secs(100);
        let attacker: Option<IpAddr> = Some("192.0.2.78".parse().unwrap());
        let named: Option<IpAddr> = Some("2001:db8:5:6::1".parse().unwrap());
        assert!((0..20_000).all(|_| !c.write_one(attacker, true, 401, t)), "anonymous: never one by one");
        let written = (0..50).filter(|i| c.write_one(named, false, if i % 2 == 0 { 401 } else { 429 }, t)).count();
        assert_eq!(written, AUDITED_REFUSALS_PER_CLIENT_MINUTE as usize);
        assert!(c.write_one(None, true, 403, t), "the box's own socket is always written");
        let screen: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());
        assert!((0..50).all(|_| c.write_one(screen, false, 403, t)), "someone named on the box's screen: always");
        assert!(!c.write_one(screen, true, 401, t), "but nobody on it is counted");
        let (action, status) = c.take_summary(t).unwrap();
        assert_eq!(status, 401);
        assert!(
            action.contains("20041 (401: 20021, 429: 20)")
                && action.contains("from 3 client(s), most from 192.0.2.78 (20000)"),
            "{action}"
        );
        assert_eq!(c.take_summary(t), None, "counted once");
        // Another address of the same /64 shares the share; a minute later it is renewed.
        let same_64: Option<IpAddr> = Some("2001:db8:5:6::99".parse().unwrap());
        assert!(!c.write_one(same_64, false, 401, t + Duration::from_secs(30)));
        assert!(c.write_one(same_64, false, 401, t + Duration::from_secs(61)));

        // Many addresses together: at most 100 a minute, whatever their number.
        let mut c = RefusalCounter::default();
        let written = (0..1000u32)
            .filter(|i| {
                let ip = std::net::Ipv6Addr::new(0x2001, 0xdb8, *i as u16, 0, 0, 0, 0, 1);
                c.write_one(Some(IpAddr::V6(ip)), false, 401, t)
            })
            .count();
        assert_eq!(written, AUDITED_REFUSALS_PER_MINUTE as usize);
    }
}
