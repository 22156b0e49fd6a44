//! Request → response. A fixed set of paths, each request's `Host` checked first; nothing in a request names a target, a URL or an
//! address, so no request can make parallax connect anywhere.

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    RETRY_AFTER, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{Method, Request, Response, StatusCode};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::body::Body;
use super::host::{HostCheck, HostPolicy};
use super::page::Dashboard;
use super::{AdminState, Limits};

/// The OpenMetrics text format, version 1.0.0.
pub(super) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";

/// The paths served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Dashboard,
    Healthz,
    Readyz,
    Metrics,
    Status,
    StatusSummary,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Endpoint> {
        match path {
            "/" => Some(Endpoint::Dashboard),
            "/healthz" => Some(Endpoint::Healthz),
            "/readyz" => Some(Endpoint::Readyz),
            "/metrics" => Some(Endpoint::Metrics),
            "/api/v1/status" => Some(Endpoint::Status),
            "/api/v1/status/summary" => Some(Endpoint::StatusSummary),
            _ => None,
        }
    }

    fn is_health(self) -> bool {
        matches!(self, Endpoint::Healthz | Endpoint::Readyz)
    }

    /// Megabytes with many views (or a page): bounded in number at once.
    fn is_large(self) -> bool {
        matches!(self, Endpoint::Dashboard | Endpoint::Metrics | Endpoint::Status)
    }
}

/// Whether `path` is `/healthz` or `/readyz`: a connection whose first request is one gets a
/// reserved slot.
pub(super) fn is_health_path(path: &str) -> bool {
    Endpoint::from_path(path).is_some_and(Endpoint::is_health)
}

/// The admin server's handler: the daemon's state, the prebuilt dashboard, the hosts answered,
/// the permits of large responses and the serialised status document.
pub(super) struct Routes {
    state: Arc<dyn AdminState>,
    dashboard: Dashboard,
    hosts: HostPolicy,
    large: Arc<Semaphore>,
    status: StatusCache,
}

impl Routes {
    pub(super) fn new(state: Arc<dyn AdminState>, hosts: HostPolicy, limits: &Limits) -> Routes {
        Routes {
            state,
            dashboard: Dashboard::new(),
            hosts,
            large: Arc::new(Semaphore::new(limits.max_large_responses.max(1))),
            status: StatusCache::new(limits.status_max_age),
        }
    }

    /// The response to `request`. Only its method, path and `Host` are read (the query is
    /// ignored). On a connection admitted for health checks (`health_only`), other paths are
    /// 503 and the connection is closed.
    pub(super) fn respond<B>(
        self: &Arc<Self>,
        request: &Request<B>,
        health_only: bool,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let routes = Arc::clone(self);
        let method = request.method().clone();
        let endpoint = Endpoint::from_path(request.uri().path());
        let host = self.hosts.check(request);
        async move { routes.answer(&method, endpoint, host, health_only).await }
    }

    async fn answer(
        &self,
        method: &Method,
        endpoint: Option<Endpoint>,
        host: HostCheck,
        health_only: bool,
    ) -> Response<Body> {
        match host {
            HostCheck::Allowed => {}
            HostCheck::Malformed => {
                return plain(StatusCode::BAD_REQUEST, "bad request: send one Host header\n")
            }
            HostCheck::Foreign => {
                return plain(
                    StatusCode::MISDIRECTED_REQUEST,
                    "misdirected request: this Host is not the admin server's listen address or localhost; \
                     add it to [admin] allowed_hosts\n",
                )
            }
        }
        // Unknown paths are 404 whatever the method: 405 says the resource exists.
        let Some(endpoint) = endpoint else {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        };
        if !matches!(*method, Method::GET | Method::HEAD) {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        if health_only && !endpoint.is_health() {
            return busy("this connection was opened for /healthz or /readyz: open another one\n");
        }
        let permit = match endpoint.is_large() {
            true => match Arc::clone(&self.large).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return busy("busy: too many large responses being written; retry later\n"),
            },
            false => None,
        };
        let hold = |body: Body| match permit {
            Some(permit) => body.holding(permit),
            None => body,
        };
        // hyper sends the head of a HEAD response (Content-Length included) and drops its body.
        match endpoint {
            Endpoint::Healthz => plain(StatusCode::OK, "ok"),
            Endpoint::Readyz => {
                let (code, word) = match self.state.ready() {
                    true => (StatusCode::OK, "ready"),
                    false => (StatusCode::SERVICE_UNAVAILABLE, "not ready"),
                };
                match self.state.readiness_detail() {
                    None => plain(code, word),
                    Some(detail) => no_store(response(code, TEXT, format!("{word}\n{detail}\n").into())),
                }
            }
            Endpoint::Metrics => match self.off_runtime(|state| state.metrics().into()).await {
                Some(body) => no_store(response(StatusCode::OK, OPENMETRICS, body)).map(hold),
                None => plain(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n"),
            },
            Endpoint::Status | Endpoint::StatusSummary => match self.status.get(&self.state).await {
                Some(built) => {
                    let body = match endpoint {
                        Endpoint::Status => built.full.clone(),
                        _ => built.summary.clone(),
                    };
                    no_store(response(StatusCode::OK, JSON, body)).map(hold)
                }
                None => plain(StatusCode::INTERNAL_SERVER_ERROR, "status unavailable\n"),
            },
            Endpoint::Dashboard => {
                let mut response = response(StatusCode::OK, HTML, self.dashboard.html.clone());
                let headers = response.headers_mut();
                headers.insert(CONTENT_SECURITY_POLICY, self.dashboard.csp.clone());
                headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
                // The page is in the binary but changes with it: revalidate, never serve stale.
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                response.map(hold)
            }
        }
    }

    /// Runs `f` on the blocking pool: with a thousand views the metrics are megabytes, and
    /// encoding them must not stall the probes' timers on the runtime.
    async fn off_runtime<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn AdminState) -> T + Send + 'static,
    ) -> Option<T> {
        off_runtime(&self.state, f).await
    }
}

async fn off_runtime<T: Send + 'static>(
    state: &Arc<dyn AdminState>,
    f: impl FnOnce(&dyn AdminState) -> T + Send + 'static,
) -> Option<T> {
    let state = Arc::clone(state);
    match tokio::task::spawn_blocking(move || f(state.as_ref())).await {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::error!(error = %e, "admin server: building a response failed");
            None
        }
    }
}

/// The status document and its summary, serialised once and shared by every response (a
/// `Bytes` clone is a reference, not a copy).
#[derive(Debug)]
pub(super) struct Built {
    /// When the build started (its data is from then or later).
    started: Instant,
    /// [`AdminState::status_version`] read before it started.
    version: Option<u64>,
    /// `/api/v1/status`.
    pub(super) full: Bytes,
    /// `/api/v1/status/summary`.
    pub(super) summary: Bytes,
}

/// One status document at a time: builds are serialised (one in flight), a request that waited
/// for a build that started after it arrived takes that build, and a build is served again while
/// the state's version has not changed, up to `max_age`. So 64 clients asking at once cost one
/// build, and a quiet daemon is serialised at most once a `max_age`.
pub(super) struct StatusCache {
    max_age: Duration,
    current: Mutex<Option<Arc<Built>>>,
    building: tokio::sync::Mutex<()>,
}

impl StatusCache {
    fn new(max_age: Duration) -> StatusCache {
        StatusCache { max_age, current: Mutex::new(None), building: tokio::sync::Mutex::new(()) }
    }

    async fn get(&self, state: &Arc<dyn AdminState>) -> Option<Arc<Built>> {
        let arrived = Instant::now();
        if let Some(built) = self.reusable(state.status_version(), None) {
            return Some(built);
        }
        let _turn = self.building.lock().await;
        let version = state.status_version();
        if let Some(built) = self.reusable(version, Some(arrived)) {
            return Some(built);
        }
        let started = Instant::now();
        let (full, summary) = off_runtime(state, |state| {
            let doc = state.status();
            Some((status_json(&doc)?, summary_json(&doc.summary())?))
        })
        .await
        .flatten()?;
        let built = Arc::new(Built { started, version, full, summary });
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&built));
        Some(built)
    }

    /// The current build, if it is of `version` and young enough, or started after `arrived`.
    fn reusable(&self, version: Option<u64>, arrived: Option<Instant>) -> Option<Arc<Built>> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()?;
        let unchanged =
            version.is_some() && current.version == version && current.started.elapsed() < self.max_age;
        let fresh = arrived.is_some_and(|arrived| current.started >= arrived);
        (unchanged || fresh).then_some(current)
    }
}

/// Writes JSON with `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026` (see [`status_json`]).
struct Escaping(Vec<u8>);

impl Write for Escaping {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &byte in buf {
            match byte {
                b'<' => self.0.extend_from_slice(b"\\u003c"),
                b'>' => self.0.extend_from_slice(b"\\u003e"),
                b'&' => self.0.extend_from_slice(b"\\u0026"),
                other => self.0.push(other),
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The status document as JSON, with `<`, `>` and `&` written as `\u003c`, `\u003e`, `\u0026`:
/// the same JSON to a parser, but no byte of it can open markup if anything ever treats it as
/// HTML. Bytewise replacement is sound: in JSON these characters occur only inside strings, and
/// no UTF-8 multibyte sequence contains an ASCII byte. Escaped as it is written: one buffer.
pub(super) fn status_json(doc: &crate::status::StatusDoc) -> Option<Bytes> {
    escaped_json(doc)
}

fn summary_json(summary: &crate::status::StatusSummary) -> Option<Bytes> {
    escaped_json(summary)
}

fn escaped_json<T: serde::Serialize>(value: &T) -> Option<Bytes> {
    let mut out = Escaping(Vec::new());
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => Some(out.0.into()),
        Err(e) => {
            tracing::error!(error = %e, "admin server: the status document does not serialize");
            None
        }
    }
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    no_store(response(status, TEXT, Bytes::from_static(body.as_bytes())))
}

/// 503 with `Retry-After`, closing the connection (its slot goes to another).
fn busy(body: &'static str) -> Response<Body> {
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, body);
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

fn no_store(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ReloadStatus, StatusDoc};

    #[test]
    fn status_json_escapes_markup_and_round_trips() {
        let hostile = "</script><img src=x onerror=alert(1)> & \"quoted\" é";
        let doc = StatusDoc {
            version: "0.0.0-test",
            last_reload: Some(ReloadStatus { at: "now".into(), ok: false, errors: vec![hostile.into()] }),
            ..StatusDoc::default()
        };
        let body = status_json(&doc).expect("serializes");
        assert!(!body.iter().any(|b| matches!(b, b'<' | b'>' | b'&')), "markup bytes left in the JSON");
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("still JSON");
        assert_eq!(parsed["last_reload"]["errors"][0], hostile);
    }

    #[test]
    fn only_the_six_paths_are_endpoints() {
        for (path, endpoint) in [
            ("/", Some(Endpoint::Dashboard)),
            ("/healthz", Some(Endpoint::Healthz)),
            ("/readyz", Some(Endpoint::Readyz)),
            ("/metrics", Some(Endpoint::Metrics)),
            ("/api/v1/status", Some(Endpoint::Status)),
            ("/api/v1/status/summary", Some(Endpoint::StatusSummary)),
            ("/probe", None),
            ("/api/v1/status/", None),
            ("/index.html", None),
            ("//healthz", None),
            ("", None),
        ] {
            assert_eq!(Endpoint::from_path(path), endpoint, "{path:?}");
        }
    }
}
