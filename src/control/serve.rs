//! Where the API listens: TCP (HTTPS when `[api]` names a certificate) for the panel and
//! technicians' tools, and a Unix socket for commands on the box. The TCP side has its own
//! accept loop so that a hostile network cannot starve it: a client must send its request
//! headers within `HEADER_READ_TIMEOUT` (and finish a TLS handshake within as long), each
//! client address (an IPv6 /64) holds at most `CONNECTIONS_PER_CLIENT` connections, the
//! network at most `NETWORK_CONNECTIONS`, and clients on the box itself have connections of
//! their own, so that the panel on the box's screen always gets in.

use super::access::LocalPeer;
use super::api::{ApiState, router};
use crate::auth::canonical_client;
use crate::config::LoadedConfig;
use anyhow::Context;
use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// A client must have sent its whole request head (or finished the TLS handshake) by then;
/// hyper's own timer is off unless a timer is given, as it was under `axum::serve`.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections from the network at once (the unit's `LimitNOFILE=4096` leaves room for the
/// recording's files, sockets and pipelines beside them).
pub const NETWORK_CONNECTIONS: usize = 1024;
/// Connections from clients on the box itself (loopback: the panel's screen, local tools).
pub const LOCAL_CONNECTIONS: usize = 256;
/// Connections one network client (one IPv4 address, one IPv6 /64) may hold at once: a panel
/// uses a handful (page, WebSocket, captions, thumbnails).
pub const CONNECTIONS_PER_CLIENT: usize = 32;
/// Requests handled at once; more wait their turn (long-lived streams hold no slot once
/// their answer has begun).
pub const CONCURRENT_REQUESTS: usize = 64;

/// A handler that has not answered by then is cut off (503), so that no request holds its
/// connection and a concurrency slot for ever (a body sent slowly counts too: the handler
/// reads it). Streams are not cut: their answer has begun.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(60);

async fn deadline(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(request)).await {
        Ok(response) => response,
        Err(_) => super::api::ApiError(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("no answer within {} s; the request was cut off", REQUEST_DEADLINE.as_secs()),
        )
        .into_response(),
    }
}

/// Serves until `shutdown` is cancelled, then lets requests in flight finish.
/// Binds the TCP port first (a second daemon fails there, before touching the socket of the
/// first), then the socket; `ready` is called once both listen.
pub async fn serve(
    cfg: &LoadedConfig,
    state: ApiState,
    shutdown: CancellationToken,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    // The TLS key is held to the device key's rule (whoever reads it can impersonate the panel
    // to the secretaries), checked before anything listens.
    if let Some((_, key)) = cfg.tls_paths() {
        let meta = std::fs::metadata(&key).with_context(|| format!("TLS key {} ([api] tls_key)", key.display()))?;
        crate::base::check_private_file(&key, &meta)?;
    }
    let summaries = tokio::spawn(super::access::write_refusal_summaries(state.clone(), shutdown.clone()));
    // One limit shared by every route (a plain ConcurrencyLimitLayer would give each route its
    // own), inside the deadline, so that a request waiting for its turn is cut off too.
    let app = router(state)
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(CONCURRENT_REQUESTS))
        .layer(axum::middleware::from_fn(deadline));
    let addr: SocketAddr = cfg.config.api.listen.parse().context("api.listen")?;
    let tcp = std::net::TcpListener::bind(addr).map_err(|e| {
        // EPERM (not EACCES, a privileged port): the unit allows binding only the ports it
        // names (SocketBindAllow=).
        let hint = if e.raw_os_error() == Some(libc::EPERM) {
            format!(
                "the service may not bind port {}: allow it in a drop-in (`systemctl edit courtbox`: \
                 [Service] SocketBindAllow=tcp:{})",
                addr.port(),
                addr.port()
            )
        } else {
            "is another courtbox running?".to_string()
        };
        anyhow::anyhow!("cannot listen on {addr} (api.listen): {e}; {hint}")
    })?;
    tcp.set_nonblocking(true)?;
    let socket_path = cfg.socket_path();
    if socket_path.exists() {
        // Left by a daemon that died; a running one holds api.listen too, which fails below.
        std::fs::remove_file(&socket_path)
            .with_context(|| format!("removing the stale socket {}", socket_path.display()))?;
    }
    let unix = tokio::net::UnixListener::bind(&socket_path)
        .with_context(|| format!("cannot listen on the control socket {}", socket_path.display()))?;
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", socket_path.display()))?;
    let local = axum::serve(unix, app.clone().into_make_service_with_connect_info::<LocalPeer>())
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let tls = match cfg.tls_paths() {
        Some((cert, key)) => {
            crate::base::install_tls_provider();
            let config =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key).await.with_context(|| {
                    format!("TLS certificate {} or key {} ([api] tls_cert, tls_key)", cert.display(), key.display())
                })?;
            // HTTP/1.1 only: that is what the accept loop speaks (axum-server offers h2 too).
            let mut server = (*config.get_inner()).clone();
            server.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server)))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::from_std(tcp)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, "control API and panel on {scheme}://{addr}/");
    let network = accept_loop(listener, tls, app, shutdown.clone());
    ready();
    let (a, b) = tokio::join!(network, async { local.await.context("control socket") });
    let _ = std::fs::remove_file(&socket_path);
    // The last summary of refused requests is written before the ledger closes.
    let _ = summaries.await;
    a.and(b)
}

/// Who holds how many network connections, and the two pools.
struct Admission {
    network: Arc<Semaphore>,
    local: Arc<Semaphore>,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place: released when the connection ends, or, for a WebSocket, when the
/// socket it became is closed (`ConnectionSlot`).
struct Admitted {
    _permit: OwnedSemaphorePermit,
    client: Option<(IpAddr, Arc<Admission>)>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some((ip, admission)) = &self.client {
            let mut held = admission.per_client.lock();
            if let Some(n) = held.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    held.remove(ip);
                }
            }
        }
    }
}

/// A connection's place, in its requests' extensions: a WebSocket handler keeps it for as long
/// as the socket lives. (hyper lets go of a connection once it is upgraded, so without this
/// WebSockets would escape the caps and could use up the file descriptors the recording
/// needs.)
#[derive(Clone)]
pub(super) struct ConnectionSlot(#[allow(dead_code)] Arc<Admitted>);

impl Admission {
    fn new() -> Arc<Admission> {
        Arc::new(Admission {
            network: Arc::new(Semaphore::new(NETWORK_CONNECTIONS)),
            local: Arc::new(Semaphore::new(LOCAL_CONNECTIONS)),
            per_client: Mutex::default(),
        })
    }

    /// A place for a new connection from `peer`, or `None`: it is closed at once.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Admitted> {
        let on_the_box = crate::auth::Scope::of(Some(peer)) == crate::auth::Scope::Local;
        if on_the_box {
            return Some(Admitted { _permit: self.local.clone().try_acquire_owned().ok()?, client: None });
        }
        let client = canonical_client(peer);
        let mut held = self.per_client.lock();
        if held.get(&client).is_some_and(|n| *n >= CONNECTIONS_PER_CLIENT) {
            return None;
        }
        let permit = self.network.clone().try_acquire_owned().ok()?;
        *held.entry(client).or_default() += 1;
        Some(Admitted { _permit: permit, client: Some((client, self.clone())) })
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let admission = Admission::new();
    let connections = TaskTracker::new();
    let mut refused_since_log = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or the like: wait rather than spin.
                    tracing::warn!(error = %e, "control API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = admission.admit(peer.ip()) else {
            refused_since_log += 1;
            if refused_since_log.is_power_of_two() {
                tracing::warn!(
                    refused = refused_since_log,
                    "control API: connections refused (too many from one client, or in all)"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let slot = ConnectionSlot(Arc::new(admitted));
            match tls {
                None => serve_connection(TokioIo::new(stream), peer, slot, app, shutdown).await,
                Some(acceptor) => match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => serve_connection(TokioIo::new(tls_stream), peer, slot, app, shutdown).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "control API: TLS handshake failed"),
                    Err(_) => tracing::debug!("control API: TLS handshake not finished in time"),
                },
            }
        });
    }
    connections.close();
    // Requests in flight get a few seconds to finish, as under axum::serve.
    let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
    Ok(())
}

async fn serve_connection<I>(io: I, peer: SocketAddr, slot: ConnectionSlot, app: Router, shutdown: CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(slot.clone());
        app.clone().oneshot(request.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(64 * 1024);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "control API connection ended");
            }
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_client_gets_its_share_and_the_box_its_own() {
        let admission = Admission::new();
        let attacker: IpAddr = "192.0.2.7".parse().unwrap();
        let held: Vec<Admitted> = (0..CONNECTIONS_PER_CLIENT).map(|_| admission.admit(attacker).unwrap()).collect();
        assert!(admission.admit(attacker).is_none(), "beyond its share");
        assert!(admission.admit("2001:db8::1".parse().unwrap()).is_some(), "another client");
        assert!(admission.admit("127.0.0.1".parse().unwrap()).is_some(), "the box's own screen");
        drop(held);
        assert!(admission.admit(attacker).is_some(), "places come back when connections end");
        assert!(admission.per_client.lock().len() <= 1, "no empty entries are kept");
    }
}
