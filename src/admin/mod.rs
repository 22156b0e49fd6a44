//! The admin HTTP server: `/healthz`, `/readyz`, `/metrics`, `/api/v1/status` (and its
//! `/summary`) and the dashboard at `/`. It never takes a target from a request: parallax probes
//! only what its configuration names (no open-proxy `/probe` endpoint).
//!
//! HTTP/1.1 only (hyper's server connection), every resource bounded in code, and the health
//! endpoints kept answering whatever other clients do:
//!
//! - Every connection is accepted (the loop never waits for a slot) and first waits, with at most
//!   [`Limits::max_pending`] others, for its first request head ([`Limits::header_read_timeout`]);
//!   beyond that many the oldest waiting connection is closed, so idle and slowloris connections
//!   cannot keep a new one out.
//! - The first request's path then decides the slot it is served in: a health path
//!   (`/healthz`, `/readyz`) takes one of [`Limits::health_connections`] reserved slots (such a
//!   connection serves health paths only), anything else one of [`Limits::max_connections`]
//!   general slots, at most [`Limits::max_connections_per_client`] per client address. No slot:
//!   `503` with `Retry-After`, and the connection is closed.
//! - A response must be written within [`Limits::write_timeout`] ([`Limits::health_write_timeout`]
//!   on a health slot), or the connection is closed: a client that never reads holds nothing for
//!   long. A connection serves one request at a time and hyper's read buffer (the head bound)
//!   bounds what a client may pipeline ahead.
//! - The large responses (status, metrics, dashboard) are at most
//!   [`Limits::max_large_responses`] at once (more are `503` with `Retry-After`); the status
//!   document is serialised once per change and its bytes shared by every response
//!   (`routes::StatusCache`).
//! - Only requests whose `Host` is the listen address, `localhost` or a name of
//!   `[admin] allowed_hosts` are served; others are `421` (DNS rebinding, `host.rs`).
//! - A failing `accept` (out of file descriptors) backs off from 10 ms to 1 s and is logged when
//!   it starts failing and when it recovers, not per failure.

mod body;
mod conn;
mod host;
mod page;
mod routes;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

use crate::status::StatusDoc;

/// What the admin server reads from the daemon.
pub trait AdminState: Send + Sync + 'static {
    /// Plan loaded and scheduler running.
    fn ready(&self) -> bool;
    /// The current status document.
    fn status(&self) -> StatusDoc;
    /// A value that changes whenever [`status`](AdminState::status) may have changed: while it
    /// stays the same, the serialised document is served again for up to
    /// [`Limits::status_max_age`]. `None` (the default): unknown, every request that does not
    /// share a build in progress builds the document anew.
    fn status_version(&self) -> Option<u64> {
        None
    }
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
    /// Connections served at once whose first request is not a health path.
    pub max_connections: usize,
    /// Of those, from one client IP address.
    pub max_connections_per_client: usize,
    /// Connections served at once whose first request is a health path (`/healthz`,
    /// `/readyz`), besides [`max_connections`](Limits::max_connections); they serve health
    /// paths only.
    pub health_connections: usize,
    /// Connections accepted and still waiting for their first request head; beyond this the
    /// oldest of them is closed.
    pub max_pending: usize,
    /// Bytes of a request head (request line and headers); more is answered 431. The read
    /// buffer is this (hyper's floor is 8 KiB), which also bounds what a client pipelines.
    pub max_head_bytes: usize,
    /// Headers in a request; more is answered 431.
    pub max_headers: usize,
    /// Time a client has to send a complete request head, from the connection's accept or the
    /// end of its previous response (so it also closes idle keep-alive connections).
    pub header_read_timeout: Duration,
    /// The same on a health slot (health checkers need no keep-alive).
    pub health_idle_timeout: Duration,
    /// Time to write one response, from its first byte to its last; then the connection is
    /// closed (a client that does not read).
    pub write_timeout: Duration,
    /// The same on a health slot.
    pub health_write_timeout: Duration,
    /// Status, metrics and dashboard responses being written at once; more are answered 503.
    pub max_large_responses: usize,
    /// How long a serialised status document is served again while
    /// [`AdminState::status_version`] says nothing changed.
    pub status_max_age: Duration,
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
            max_connections_per_client: 8,
            health_connections: 16,
            max_pending: 512,
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            header_read_timeout: Duration::from_secs(5),
            health_idle_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(30),
            health_write_timeout: Duration::from_secs(2),
            max_large_responses: 8,
            status_max_age: Duration::from_secs(1),
            connection_lifetime: Duration::from_secs(300),
            close_grace: Duration::from_secs(5),
        }
    }
}

/// How the admin server runs: its bounds and the host names it answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Resource bounds.
    pub limits: Limits,
    /// `[admin] allowed_hosts`: names answered besides the listen address and `localhost`.
    pub allowed_hosts: Vec<String>,
}

impl From<Limits> for Options {
    fn from(limits: Limits) -> Options {
        Options { limits, allowed_hosts: Vec::new() }
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` completes, then closes gracefully
/// (see [`serve_with`]), with [`Options::default`]. Failed accepts are retried with backoff,
/// never returned: a full file descriptor table must not take the health endpoints down for
/// good.
pub async fn serve(
    listener: TcpListener,
    state: Arc<dyn AdminState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, shutdown, Options::default()).await
}

/// [`serve`] with explicit options (or [`Limits`]).
///
/// When `shutdown` completes the listener is closed at once (new connections are refused), each
/// open connection finishes the response it is writing and closes (idle ones close at once), and
/// this returns when all have closed or [`Limits::close_grace`] has passed, whichever is first.
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<dyn AdminState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: impl Into<Options>,
) -> std::io::Result<()> {
    let options = options.into();
    let limits = options.limits;
    let hosts = host::HostPolicy::new(listener.local_addr()?, &options.allowed_hosts);
    let routes = Arc::new(routes::Routes::new(state, hosts, &limits));
    let server = Arc::new(conn::Server::new(limits, routes));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);

    loop {
        // Reap finished connection tasks so the set stays as small as the connections open.
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                if let Some(failures) = backoff.succeeded() {
                    tracing::warn!(failures, "admin server: accepting connections again");
                }
                accepted
            }
            Err(e) => {
                // Out of file descriptors, or a connection aborted before accept: both pass.
                // The pause keeps a persistent error from spinning the loop (and the log).
                let (pause, first) = backoff.failed();
                if first {
                    tracing::warn!(
                        error = %e,
                        "admin server: accept failed; retrying with backoff up to {}s (logged again when it recovers)",
                        ACCEPT_BACKOFF_MAX.as_secs()
                    );
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        pending.retain(|p| p.waiting.load(Ordering::Acquire));
        while pending.len() >= limits.max_pending.max(1) {
            let Some(oldest) = pending.pop_front() else { break };
            // Unless it has just taken a slot.
            if oldest.waiting.compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                oldest.abort.abort();
            }
        }
        let waiting = Arc::new(AtomicBool::new(true));
        let abort = connections.spawn(conn::run(
            stream,
            peer,
            Arc::clone(&server),
            closing_rx.clone(),
            Arc::clone(&waiting),
        ));
        pending.push_back(Pending { waiting, abort });
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

/// A connection accepted and not yet given a slot: closed if too many others come after it.
struct Pending {
    /// Cleared by the connection once it has its first head, or by the loop when it evicts it.
    waiting: Arc<AtomicBool>,
    abort: AbortHandle,
}

/// The first pause after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The accept loop's state while `accept` fails: the pause doubles from 10 ms to 1 s, and only
/// the change of state is told (the first failure, the recovery with the count).
#[derive(Debug, Default)]
struct AcceptBackoff {
    /// Failures in a row, and the next pause; none while accepting works.
    failing: Option<(u64, Duration)>,
}

impl AcceptBackoff {
    /// One more failure: how long to pause, and whether it is the first in a row.
    fn failed(&mut self) -> (Duration, bool) {
        match &mut self.failing {
            None => {
                self.failing = Some((1, ACCEPT_BACKOFF_MIN * 2));
                (ACCEPT_BACKOFF_MIN, true)
            }
            Some((count, next)) => {
                *count += 1;
                let pause = *next;
                *next = (*next * 2).min(ACCEPT_BACKOFF_MAX);
                (pause, false)
            }
        }
    }

    /// An accept worked: the failures in a row before it, if there were any.
    fn succeeded(&mut self) -> Option<u64> {
        self.failing.take().map(|(count, _)| count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_failures_back_off_from_10ms_to_1s_and_report_only_state_changes() {
        let mut b = AcceptBackoff::default();
        assert_eq!(b.succeeded(), None, "nothing to report while accepting works");
        let pauses: Vec<(u64, bool)> = (0..10)
            .map(|_| {
                let (pause, first) = b.failed();
                (pause.as_millis() as u64, first)
            })
            .collect();
        assert_eq!(
            pauses,
            [
                (10, true),
                (20, false),
                (40, false),
                (80, false),
                (160, false),
                (320, false),
                (640, false),
                (1000, false),
                (1000, false),
                (1000, false)
            ]
        );
        assert_eq!(b.succeeded(), Some(10), "the recovery counts the failures");
        assert_eq!(b.succeeded(), None);
        assert_eq!(b.failed(), (ACCEPT_BACKOFF_MIN, true), "a new run of failures starts over");
    }
}
