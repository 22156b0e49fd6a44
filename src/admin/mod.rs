//! The admin HTTP server: `/healthz`, `/readyz`, `/metrics`, `/api/v1/status` and the dashboard
//! at `/`. It never takes a target from a request: parallax probes only what its configuration
//! names (no open-proxy `/probe` endpoint).
//!
//! HTTP/1.1 only (hyper's server connection), every resource bounded in code: connections in
//! flight (a semaphore, taken before `accept` so the kernel backlog queues the rest), request
//! head bytes and header count, the time to send a request head (which also ends idle
//! keep-alive connections), and a connection's lifetime (which ends clients that never read
//! their response).

mod page;
mod routes;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::status::StatusDoc;

/// What the admin server reads from the daemon.
pub trait AdminState: Send + Sync + 'static {
    /// Plan loaded and scheduler running.
    fn ready(&self) -> bool;
    /// The current status document.
    fn status(&self) -> StatusDoc;
    /// `/metrics` body (OpenMetrics text).
    fn metrics(&self) -> String;
    /// Lines `/readyz` adds after `ready`/`not ready` (Kubernetes discovery's state); none by
    /// default.
    fn readiness_detail(&self) -> Option<String> {
        None
    }
}

/// The admin server's resource bounds. [`Limits::default`] is what [`serve`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Bytes of a request head (request line and headers); more is answered 431.
    pub max_head_bytes: usize,
    /// Headers in a request; more is answered 431.
    pub max_headers: usize,
    /// Time a client has to send a complete request head, from the connection's first byte or
    /// the end of its previous response (so it also closes idle keep-alive connections).
    pub header_read_timeout: Duration,
    /// After this, a connection finishes its current response and is closed.
    pub connection_lifetime: Duration,
    /// How long a connection may take to finish its response once asked to close (at
    /// shutdown or at the end of its lifetime) before it is dropped.
    pub close_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // Scrapers, probes and a few dashboards: dozens, not thousands.
            max_connections: 64,
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            header_read_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(300),
            close_grace: Duration::from_secs(5),
        }
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` completes, then closes gracefully
/// (see [`serve_with`]). Failed accepts are logged and retried, never returned: a full file
/// descriptor table must not take the health endpoints down for good.
pub async fn serve(
    listener: TcpListener,
    state: Arc<dyn AdminState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, shutdown, Limits::default()).await
}

/// [`serve`] with explicit bounds.
///
/// When `shutdown` completes the listener is closed at once (new connections are refused), each
/// open connection finishes the response it is writing and closes (idle ones close at once), and
/// this returns when all have closed or [`Limits::close_grace`] has passed, whichever is first.
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<dyn AdminState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> std::io::Result<()> {
    let routes = Arc::new(routes::Routes::new(state));
    let http = Arc::new(http1_builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // Reap finished connection tasks so the set stays as small as the connections open.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                // Never closed; if it were, no connection could be served any more.
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection aborted before accept: both pass.
                    // The pause keeps a persistent error from spinning the loop.
                    tracing::warn!(error = %e, "admin server: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        connections.spawn(connection(
            stream,
            Arc::clone(&http),
            Arc::clone(&routes),
            closing_rx.clone(),
            limits,
            slot,
        ));
    }

    drop(listener);
    // No receiver left is fine: then no connection is open.
    let _ = closing_tx.send(true);
    let drained =
        tokio::time::timeout(limits.close_grace, async { while connections.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        tracing::debug!(left = connections.len(), "admin server: dropping connections after the grace time");
        connections.abort_all();
    }
    Ok(())
}

fn http1_builder(limits: &Limits) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_head_bytes)
        .max_headers(limits.max_headers)
        // The read buffer bounds the head too; hyper's floor is 8 KiB. Bodies are never read.
        .max_buf_size((limits.max_head_bytes + 1024).max(8 * 1024))
        .keep_alive(true);
    http
}

/// One connection, from accept to close. Holds its `slot` until it is closed.
async fn connection(
    stream: TcpStream,
    http: Arc<http1::Builder>,
    routes: Arc<routes::Routes>,
    mut closing: watch::Receiver<bool>,
    limits: Limits,
    slot: OwnedSemaphorePermit,
) {
    let service = service_fn(move |request| {
        let response = routes.respond(&request);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let lifetime = tokio::time::sleep(limits.connection_lifetime);
    tokio::select! {
        served = conn.as_mut() => {
            // Clients hanging up, timing out or sending garbage: routine for a server.
            if let Err(e) = served {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
            drop(slot);
            return;
        }
        // A closed sender means the server is gone: close too.
        _ = closing.wait_for(|closing| *closing) => {}
        () = lifetime => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.close_grace, conn).await;
    drop(slot);
}
