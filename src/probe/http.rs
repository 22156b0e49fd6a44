//! HTTP layer: hyper's client connection API over a fresh connection; HTTP/1.0, HTTP/1.1 and
//! HTTP/2; bounded headers and body.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::outcome::Failure;
use crate::config::View;

/// A response read within bounds.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub version: &'static str,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Body, at most `max_body_bytes`.
    pub body: Bytes,
    /// Request written to first response byte.
    pub ttfb: Duration,
}

/// What the probe put on the wire, for the record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// Host header (or `:authority`) sent.
    pub host: Option<String>,
    /// User-Agent sent.
    pub user_agent: Option<String>,
    /// Version used.
    pub version: &'static str,
}

/// The Host header value `view` sends when it dialed `dialed`, or `None` for no Host header.
pub fn host_header(view: &View, dialed: SocketAddr) -> Option<String> {
    let _ = (view, dialed);
    todo!("http host")
}

/// Sends `view`'s request over `io` and reads the response within `view.max_body_bytes` and the
/// header limit, before `deadline`. `h2` is true when ALPN selected `h2`. Errors: `http_tls_required`,
/// `http_malformed`, `http_reset`, `http_timeout`, `http_body_too_large`. The status is not judged
/// here.
pub async fn exchange<S>(
    io: S,
    view: &View,
    dialed: SocketAddr,
    h2: bool,
    deadline: Instant,
) -> (Sent, Result<Response, Failure>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _ = (io, view, dialed, h2, deadline);
    todo!("http exchange")
}
