//! Where the API listens: TCP (HTTPS when `[api]` names a certificate) for the panel and
//! technicians' tools, and a Unix socket for commands on the box.

use super::access::LocalPeer;
use super::api::{ApiState, router};
use crate::config::LoadedConfig;
use anyhow::Context;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use tokio_util::sync::CancellationToken;

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
    let app = router(state);
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
    let network = async {
        match cfg.tls_paths() {
            Some((cert, key)) => {
                crate::base::install_tls_provider();
                let tls =
                    axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key).await.with_context(|| {
                        format!("TLS certificate {} or key {} ([api] tls_cert, tls_key)", cert.display(), key.display())
                    })?;
                let handle = axum_server::Handle::new();
                let h = handle.clone();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    stop.cancelled().await;
                    h.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
                });
                tracing::info!(%addr, "control API and panel on https://{addr}/");
                axum_server::from_tcp_rustls(tcp, tls)
                    .handle(handle)
                    .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                    .await
                    .context("control API (HTTPS)")
            }
            None => {
                let listener = tokio::net::TcpListener::from_std(tcp)?;
                tracing::info!(%addr, "control API and panel on http://{addr}/");
                axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                    .await
                    .context("control API")
            }
        }
    };
    ready();
    let (a, b) = tokio::join!(network, async { local.await.context("control socket") });
    let _ = std::fs::remove_file(&socket_path);
    a.and(b)
}
