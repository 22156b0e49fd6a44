//! Request → response. A fixed set of paths; nothing in a request names a target, a URL or an
//! address, so no request can make parallax connect anywhere.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use super::page::Dashboard;
use super::AdminState;

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
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Endpoint> {
        match path {
            "/" => Some(Endpoint::Dashboard),
            "/healthz" => Some(Endpoint::Healthz),
            "/readyz" => Some(Endpoint::Readyz),
            "/metrics" => Some(Endpoint::Metrics),
            "/api/v1/status" => Some(Endpoint::Status),
            _ => None,
        }
    }
}

/// The admin server's handler: the daemon's state and the prebuilt dashboard.
pub(super) struct Routes {
    state: Arc<dyn AdminState>,
    dashboard: Dashboard,
}

impl Routes {
    pub(super) fn new(state: Arc<dyn AdminState>) -> Routes {
        Routes { state, dashboard: Dashboard::new() }
    }

    /// The response to `request`. Only its method and path are read (the query is ignored).
    pub(super) fn respond<B>(
        self: &Arc<Self>,
        request: &Request<B>,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send + 'static {
        let routes = Arc::clone(self);
        let method = request.method().clone();
        let endpoint = Endpoint::from_path(request.uri().path());
        async move { routes.answer(&method, endpoint).await }
    }

    async fn answer(&self, method: &Method, endpoint: Option<Endpoint>) -> Response<Full<Bytes>> {
        // Unknown paths are 404 whatever the method: 405 says the resource exists.
        let Some(endpoint) = endpoint else {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        };
        if !matches!(*method, Method::GET | Method::HEAD) {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
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
                Some(body) => no_store(response(StatusCode::OK, OPENMETRICS, body)),
                None => plain(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n"),
            },
            Endpoint::Status => {
                match self.off_runtime(|state| status_json(&state.status())).await.flatten() {
                    Some(body) => no_store(response(StatusCode::OK, JSON, body)),
                    None => plain(StatusCode::INTERNAL_SERVER_ERROR, "status unavailable\n"),
                }
            }
            Endpoint::Dashboard => {
                let mut response = response(StatusCode::OK, HTML, self.dashboard.html.clone());
                let headers = response.headers_mut();
                headers.insert(CONTENT_SECURITY_POLICY, self.dashboard.csp.clone());
                headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
                // The page is in the binary but changes with it: revalidate, never serve stale.
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                response
            }
        }
    }

    /// Runs `f` on the blocking pool: with a thousand views the status document and the metrics
    /// are megabytes, and encoding them must not stall the probes' timers on the runtime.
    async fn off_runtime<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn AdminState) -> T + Send + 'static,
    ) -> Option<T> {
        let state = Arc::clone(&self.state);
        match tokio::task::spawn_blocking(move || f(state.as_ref())).await {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::error!(error = %e, "admin server: building a response failed");
                None
            }
        }
    }
}

/// The status document as JSON, with `<`, `>` and `&` written as `\u003c`, `\u003e`, `\u0026`:
/// the same JSON to a parser, but no byte of it can open markup if anything ever treats it as
/// HTML. Bytewise replacement is sound: in JSON these characters occur only inside strings, and
/// no UTF-8 multibyte sequence contains an ASCII byte.
pub(super) fn status_json(doc: &crate::status::StatusDoc) -> Option<Bytes> {
    let raw = match serde_json::to_vec(doc) {
        Ok(raw) => raw,
        Err(e) => {
            tracing::error!(error = %e, "admin server: the status document does not serialize");
            return None;
        }
    };
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 16);
    for byte in raw {
        match byte {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            other => out.push(other),
        }
    }
    Some(out.into())
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    no_store(response(status, TEXT, Bytes::from_static(body.as_bytes())))
}

fn no_store(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
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
    fn only_the_five_paths_are_endpoints() {
        for (path, endpoint) in [
            ("/", Some(Endpoint::Dashboard)),
            ("/healthz", Some(Endpoint::Healthz)),
            ("/readyz", Some(Endpoint::Readyz)),
            ("/metrics", Some(Endpoint::Metrics)),
            ("/api/v1/status", Some(Endpoint::Status)),
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
