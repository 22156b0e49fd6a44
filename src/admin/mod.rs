//! The admin HTTP server: `/healthz`, `/readyz`, `/metrics`, `/api/v1/status` and the dashboard
//! at `/`. It never takes a target from a request: parallax probes only what its configuration
//! names (no open-proxy `/probe` endpoint).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::status::StatusDoc;

/// What the admin server reads from the daemon.
pub trait AdminState: Send + Sync + 'static {
    /// Plan loaded and scheduler running.
    fn ready(&self) -> bool;
    /// The current status document.
    fn status(&self) -> StatusDoc;
    /// `/metrics` body (OpenMetrics text).
    fn metrics(&self) -> String;
}

/// Serves the admin endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<dyn AdminState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = (listener, state, shutdown);
    todo!("admin")
}
