//! HTTP layer: hyper's client connection API over a fresh connection; HTTP/1.0, HTTP/1.1 and
//! HTTP/2; bounded headers and body.
//!
//! Byte fidelity matters more here than convenience: a checker profile must put exactly its
//! request on the wire. hyper's `client::conn` API adds no header of its own (no Host, no
//! User-Agent, no `connection: keep-alive` on a fresh HTTP/1.0 connection); the request head is
//! built here in the wire order documented in `config::plan`, and `content-length` is set here so
//! hyper never picks `transfer-encoding: chunked` or drops an HTTP/1.0 body.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, USER_AGENT};
use http::{Method, Request, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::outcome::{quote_bytes, ErrorCode, Failure, Phase};
use crate::config::plan::{push_host_ip, push_port, AUTHORITY_CAPACITY, MAX_HEADER_BYTES};
use crate::config::{HostHeader, HttpVersion, View};

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
    /// What arrived before a failure that came after the response head (a body that stalls,
    /// resets or grows past the limit): kept for the record. Empty otherwise.
    pub received: Received,
}

/// The part of a response that arrived before the exchange failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Status of the response head.
    pub status: Option<u16>,
    /// Time to the response head.
    pub ttfb: Option<Duration>,
    /// Body bytes read before the failure.
    pub body_bytes: Option<u64>,
}

/// The Host header value `view` sends when it dialed `dialed`, or `None` for no Host header.
pub fn host_header(view: &View, dialed: SocketAddr) -> Option<String> {
    match &view.http.host {
        HostHeader::FromUrl => Some(view.url_authority()),
        HostHeader::DialedAddress => Some(match dialed {
            SocketAddr::V4(a) => {
                let mut s = String::with_capacity(AUTHORITY_CAPACITY);
                push_host_ip(&mut s, IpAddr::V4(*a.ip()));
                push_port(&mut s, a.port());
                s
            }
            // `Display` keeps a scope id (`[fe80::1%2]:80`).
            SocketAddr::V6(a) => a.to_string(),
        }),
        HostHeader::DialedIp => {
            let mut s = String::with_capacity(AUTHORITY_CAPACITY);
            push_host_ip(&mut s, dialed.ip());
            Some(s)
        }
        HostHeader::Value(value) => Some(value.clone()),
        HostHeader::None => None,
    }
}

/// Sends `view`'s request over `io` and reads the response within `view.max_body_bytes` and the
/// header limit, before `deadline`. `h2` is true when ALPN selected `h2`. Errors: `http_tls_required`,
/// `http_malformed`, `http_reset`, `http_timeout`, `http_body_too_large`. The status is not judged
/// here, with one exception: a 400 whose body says that plain HTTP reached a TLS port is
/// `http_tls_required`, since no matcher should ever read that as the application's answer.
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
    exchange_with_host(io, view, host_header(view, dialed), h2, deadline).await
}

/// [`exchange`] with the Host header value already known (`host_header(view, dialed)`, which
/// the engine computes once per probe for its record).
pub(crate) async fn exchange_with_host<S>(
    io: S,
    view: &View,
    host: Option<String>,
    h2: bool,
    deadline: Instant,
) -> (Sent, Result<Response, Failure>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // ALPN `h2` wins over the configured version (the server now expects HTTP/2). A view that
    // asks for HTTP/2 only speaks it even when ALPN did not select it: falling back to HTTP/1.1
    // would probe something the view did not ask for.
    let use_h2 = h2 || view.http.version == HttpVersion::Http2;
    let version = if use_h2 {
        Version::HTTP_2
    } else if view.http.version == HttpVersion::Http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let host = if use_h2 {
        // HTTP/2 has no request without `:authority`; "no Host" falls back to the URL's.
        Some(host.unwrap_or_else(|| view.url_authority()))
    } else {
        host
    };
    let request = build_request(view, version, host.as_deref());
    let mut sent = Sent {
        host,
        user_agent: view.http.user_agent.clone(),
        version: version_name(version),
        received: Received::default(),
    };
    let request = match request {
        Ok(r) => r,
        Err(f) => return (sent, Err(f)),
    };
    if use_h2 {
        // What went out as `:authority` is what the URI carries (see `build_request`).
        sent.host = request.uri().authority().map(|a| a.to_string());
    }

    let (timed, edges) = TimedIo::new(io, use_h2);
    let exchange = Exchange::new(edges, Phase::Http, view.max_body_bytes);
    let result = match tokio::time::timeout_at(deadline, exchange.run(timed, request, use_h2, view)).await {
        Ok(r) => r,
        Err(_) => Err(exchange.timeout()),
    };
    if result.is_err() {
        sent.received = exchange.received();
    }
    (sent, result)
}

fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/1.1",
    }
}

/// The request head in the documented wire order: Host, User-Agent, the view's headers,
/// `Connection: close`, `content-length`. (hyper writes a `HeaderMap` in insertion order; a name
/// repeated later in `headers` is written next to its first occurrence.)
fn build_request(view: &View, version: Version, host: Option<&str>) -> Result<Request<Full<Bytes>>, Failure> {
    let settings = &view.http;
    let uri = if version == Version::HTTP_2 {
        let scheme = if view.scheme.uses_tls() { "https" } else { "http" };
        let authority = host
            .and_then(|h| h.parse::<http::uri::Authority>().ok())
            .map(|a| a.to_string())
            // A Host value that is no valid authority cannot be `:authority`; the URL's is.
            .unwrap_or_else(|| view.url_authority());
        format!("{scheme}://{authority}{}", view.path)
    } else {
        view.path.clone()
    };
    let uri: Uri = uri
        .parse()
        .map_err(|_| Failure::new(ErrorCode::HttpMalformed, "the request path is not a valid URI"))?;

    let mut request = Request::new(Full::new(
        settings.body.as_ref().map(|b| Bytes::copy_from_slice(b.expose().as_bytes())).unwrap_or_default(),
    ));
    *request.method_mut() = settings.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    let headers = request.headers_mut();
    if version != Version::HTTP_2 {
        if let Some(host) = host {
            let value = HeaderValue::from_str(host).map_err(|_| {
                Failure::new(ErrorCode::HttpMalformed, "the Host value is not a valid header value")
            })?;
            headers.insert(HOST, value);
        }
    }
    if let Some(ua) = &settings.user_agent {
        let value = HeaderValue::from_str(ua).map_err(|_| {
            Failure::new(ErrorCode::HttpMalformed, "the User-Agent is not a valid header value")
        })?;
        headers.insert(USER_AGENT, value);
    }
    for (name, value) in &settings.headers {
        // The value may be a secret: the detail names the header, never its value.
        let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
            Failure::new(ErrorCode::HttpMalformed, format!("header {name} has an invalid value"))
        })?;
        v.set_sensitive(value.is_secret());
        headers.append(name.clone(), v);
    }
    // `Connection` is a hop-by-hop header HTTP/2 forbids.
    if settings.connection_close && version != Version::HTTP_2 {
        headers.append(CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(body) = &settings.body {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.expose().len()));
    } else if settings.method == Method::POST || settings.method == Method::PUT {
        // Without it hyper would send `transfer-encoding: chunked` for an empty POST/PUT body.
        headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
    }
    Ok(request)
}

/// One exchange's shared state: the I/O edges, the phase failures are reported in, the limit.
pub(crate) struct Exchange {
    pub(crate) edges: Arc<Mutex<Edges>>,
    pub(crate) phase: Phase,
    pub(crate) max_body_bytes: usize,
    /// Status and ttfb, once the response head arrived.
    head: OnceLock<(u16, Duration)>,
    /// Body bytes read so far.
    body_read: AtomicU64,
}

impl Exchange {
    pub(crate) fn new(edges: Arc<Mutex<Edges>>, phase: Phase, max_body_bytes: usize) -> Exchange {
        Exchange { edges, phase, max_body_bytes, head: OnceLock::new(), body_read: AtomicU64::new(0) }
    }

    /// What arrived before now: nothing before the response head.
    pub(crate) fn received(&self) -> Received {
        match self.head.get() {
            Some(&(status, ttfb)) => Received {
                status: Some(status),
                ttfb: Some(ttfb),
                body_bytes: Some(self.body_read.load(Ordering::Relaxed)),
            },
            None => Received::default(),
        }
    }

    async fn run<S>(
        &self,
        io: TimedIo<S>,
        request: Request<Full<Bytes>>,
        use_h2: bool,
        view: &View,
    ) -> Result<Response, Failure>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (response, mut driver) = self.send(io, request, use_h2, view.http.title_case_headers).await?;
        let ttfb = self.ttfb();
        let version = version_name(response.version());
        let status = response.status().as_u16();
        let _ = self.head.set((status, ttfb));
        let (parts, body) = response.into_parts();
        let body = driver.drive(self.read_body(body, status)).await?;
        Ok(Response { status, version, headers: parts.headers, body, ttfb })
    }

    /// Handshakes and sends `request`; returns the response head and the connection's
    /// [`Driver`], which closes the connection when dropped (fresh connection per probe:
    /// nothing outlives the exchange). Read the body through [`Driver::drive`].
    pub(crate) async fn send<S>(
        &self,
        io: TimedIo<S>,
        request: Request<Full<Bytes>>,
        use_h2: bool,
        title_case_headers: bool,
    ) -> Result<(http::Response<Incoming>, Driver), Failure>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        if use_h2 {
            let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .max_header_list_size(MAX_HEADER_BYTES as u32)
                .handshake::<_, Full<Bytes>>(io)
                .await
                .map_err(|e| self.classify(&e))?;
            let driver = Driver::Task(tokio::spawn(async move {
                let _ = conn.await;
            }));
            let response = sender.send_request(request).await.map_err(|e| self.classify(&e))?;
            Ok((response, driver))
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
                .title_case_headers(title_case_headers)
                // Bounds the response head; the read buffer never grows past it either.
                .max_buf_size(MAX_HEADER_BYTES.max(MIN_HYPER_BUF_BYTES))
                .max_header_size(MAX_HEADER_BYTES)
                .handshake::<_, Full<Bytes>>(io)
                .await
                .map_err(|e| self.classify(&e))?;
            // HTTP/1 is driven in this task, alongside the request: a task of its own cost a
            // spawn, an abort and a wake-up across tasks per probe (profiled), for nothing a
            // single request on a fresh connection needs.
            let response = sender.send_request(request);
            // The sender lives as long as the connection: with it gone, hyper would end a
            // finished exchange with a graceful shutdown (one more syscall); dropping the
            // driver closes the socket instead, as an aborted task did.
            let mut driver = Driver::Inline(Some(Box::pin(async move {
                let _sender = sender;
                let _ = conn.await;
            })));
            let response = driver.drive(response).await.map_err(|e| self.classify(&e))?;
            Ok((response, driver))
        }
    }

    /// Reads data frames until the end of the body or one byte past the limit.
    async fn read_body(&self, mut body: Incoming, status: u16) -> Result<Bytes, Failure> {
        let limit = self.max_body_bytes;
        if let Some(declared) = body.size_hint().exact() {
            if declared > limit as u64 {
                return Err(self.too_large(format!(
                    "status {status}: content-length {declared} exceeds max_body_bytes {limit}"
                )));
            }
        }
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.classify(&e))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    return Err(
                        self.too_large(format!("status {status}: body exceeds max_body_bytes {limit}"))
                    );
                }
                buf.extend_from_slice(&data);
                self.body_read.store(buf.len() as u64, Ordering::Relaxed);
            }
        }
        Ok(buf.freeze())
    }

    pub(crate) fn too_large(&self, detail: String) -> Failure {
        Failure::in_phase(self.phase, ErrorCode::HttpBodyTooLarge, detail)
    }

    pub(crate) fn timeout(&self) -> Failure {
        let edges = self.snapshot();
        // HTTP/2 reads SETTINGS before any answer: "no response" means no response start.
        let detail = if edges.bytes_read == 0 || edges.response_started.is_none() {
            "no response before the deadline".to_owned()
        } else {
            format!("response incomplete at the deadline ({} bytes read)", edges.bytes_read)
        };
        Failure::in_phase(self.phase, ErrorCode::HttpTimeout, detail)
    }

    /// Request fully written to the first response byte (see [`Edges`]).
    pub(crate) fn ttfb(&self) -> Duration {
        let edges = self.snapshot();
        match (edges.request_written, edges.response_started) {
            (Some(w), Some(r)) => r.saturating_duration_since(w),
            _ => Duration::ZERO,
        }
    }

    fn snapshot(&self) -> Edges {
        self.edges.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Names a hyper error with the taxonomy of DESIGN §5.
    pub(crate) fn classify(&self, err: &hyper::Error) -> Failure {
        let edges = self.snapshot();
        classify(err, self.phase, &edges.first_bytes, edges.bytes_read)
    }
}

/// Names a hyper error with the taxonomy of DESIGN §5 (`http_tls_required`, `http_malformed`,
/// `http_body_too_large`, `http_reset`, `http_timeout`), from what the I/O edge saw: the first
/// bytes the peer sent (at most 16 are kept) and how many bytes were read in all. `phase` is
/// the phase the failure is reported in (`http`, or `grpc` for the gRPC layer).
pub fn classify(err: &hyper::Error, phase: Phase, first_bytes: &[u8], bytes_read: u64) -> Failure {
    let fail = |code, detail: String| Failure::in_phase(phase, code, detail);
    if looks_like_tls_record(first_bytes) {
        return fail(
            ErrorCode::HttpTlsRequired,
            format!("the server answered with a TLS record ({}): it expects TLS", quote_bytes(first_bytes)),
        );
    }
    let text = error_chain(err);
    // `hyper::Error::is_parse_too_large` exists only with hyper's server feature.
    if err.is_parse() && text.contains("too large") {
        return fail(ErrorCode::HttpBodyTooLarge, format!("response head exceeds {MAX_HEADER_BYTES} bytes"));
    }
    if err.is_parse() {
        return fail(
            ErrorCode::HttpMalformed,
            format!("{text} (response began {})", quote_bytes(first_bytes)),
        );
    }
    if let Some(h2) = find_source::<h2::Error>(err) {
        if let Some(reason) = h2.reason() {
            let malformed = [
                h2::Reason::PROTOCOL_ERROR,
                h2::Reason::FRAME_SIZE_ERROR,
                h2::Reason::COMPRESSION_ERROR,
                h2::Reason::HTTP_1_1_REQUIRED,
            ];
            if malformed.contains(&reason) {
                let code = ErrorCode::HttpMalformed;
                return fail(code, format!("{text} (response began {})", quote_bytes(first_bytes)));
            }
            return fail(ErrorCode::HttpReset, text);
        }
    }
    if let Some(io) = find_source::<io::Error>(err) {
        let tls_error = io.get_ref().is_some_and(|e| e.downcast_ref::<rustls::Error>().is_some());
        return match io.kind() {
            io::ErrorKind::TimedOut => fail(ErrorCode::HttpTimeout, text),
            // A TLS session that breaks after the handshake (an alert, a bad record) ended
            // the exchange, like a reset; it says nothing about the HTTP answer.
            io::ErrorKind::InvalidData if !tls_error => fail(ErrorCode::HttpMalformed, text),
            _ => fail(ErrorCode::HttpReset, text),
        };
    }
    if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        let detail = if bytes_read == 0 {
            format!("{text} (no response bytes)")
        } else {
            format!("{text} (after {} response bytes)", bytes_read)
        };
        return fail(ErrorCode::HttpReset, detail);
    }
    fail(ErrorCode::HttpReset, text)
}

/// hyper's smallest accepted `max_buf_size`.
const MIN_HYPER_BUF_BYTES: usize = 8192;

/// How many of the first response bytes are kept for classification.
const FIRST_BYTES_KEPT: usize = 16;

/// What keeps a connection going while its request and response are read: a task of its own
/// (HTTP/2, which hyper drives with background tasks anyway), aborted when dropped; or the
/// HTTP/1 connection future itself, polled by [`Driver::drive`] and dropped with it. Either way
/// the socket closes when the driver goes.
pub(crate) enum Driver {
    /// A spawned task.
    Task(JoinHandle<()>),
    /// The connection future, until it ends.
    Inline(Option<Pin<Box<dyn Future<Output = ()> + Send>>>),
}

impl Driver {
    /// Runs `work` (sending the request, reading the body) to completion, polling the inline
    /// connection alongside it. When the connection ends first (closed, or an error, which hyper
    /// hands to `work`), `work` goes on alone and ends with what the connection left it.
    pub(crate) async fn drive<F: Future>(&mut self, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        std::future::poll_fn(|cx| {
            if let Driver::Inline(conn) = self {
                if conn.as_mut().is_some_and(|c| c.as_mut().poll(cx).is_ready()) {
                    *conn = None;
                }
            }
            work.as_mut().poll(cx)
        })
        .await
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Driver::Task(task) = self {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Driver::Task(_) => f.write_str("Driver::Task"),
            Driver::Inline(conn) => write!(f, "Driver::Inline(running: {})", conn.is_some()),
        }
    }
}

/// What the I/O edge saw, shared between the [`TimedIo`] that hyper drives and the exchange.
#[derive(Debug, Clone, Default)]
pub(crate) struct Edges {
    /// When the request was fully written. HTTP/1: the last write or flush that completed
    /// before the answer. HTTP/2: the write that carried the end of the request stream
    /// (SETTINGS frames cross the request, so "the last write" means nothing there).
    pub(crate) request_written: Option<Instant>,
    /// When the first response byte was read. HTTP/1: the first read returning bytes after
    /// `request_written`. HTTP/2: the read that carried the response's HEADERS frame.
    pub(crate) response_started: Option<Instant>,
    /// The first bytes the peer sent.
    pub(crate) first_bytes: Vec<u8>,
    /// Bytes read in all.
    pub(crate) bytes_read: u64,
    /// HTTP/1: a write happened that no flush has completed yet.
    unflushed: bool,
}

/// An I/O stream that records [`Edges`] on the monotonic clock.
pub(crate) struct TimedIo<S> {
    inner: S,
    edges: Arc<Mutex<Edges>>,
    /// HTTP/2 only: frame boundaries of what we write and of what we read.
    h2: Option<(FrameScanner, FrameScanner)>,
}

impl<S> TimedIo<S> {
    /// Wraps `inner`; `h2` when the connection will speak HTTP/2 (prior knowledge or ALPN).
    pub(crate) fn new(inner: S, h2: bool) -> (TimedIo<S>, Arc<Mutex<Edges>>) {
        let edges = Arc::new(Mutex::new(Edges::default()));
        let h2 = h2.then(|| (FrameScanner::client_preface(), FrameScanner::default()));
        (TimedIo { inner, edges: edges.clone(), h2 }, edges)
    }

    fn edges(&self) -> std::sync::MutexGuard<'_, Edges> {
        self.edges.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wrote(&mut self, written: &[&[u8]]) {
        let now = Instant::now();
        if let Some((out, _)) = &mut self.h2 {
            let mut request_end = false;
            for chunk in written {
                out.feed(chunk, |event| {
                    if let FrameEvent::End(head) = event {
                        request_end |= head.stream != 0
                            && matches!(head.kind, FRAME_DATA | FRAME_HEADERS)
                            && head.flags & FLAG_END_STREAM != 0;
                    }
                });
            }
            let mut e = self.edges();
            if request_end && e.request_written.is_none() {
                e.request_written = Some(now);
            }
        } else {
            let mut e = self.edges();
            e.request_written = Some(now);
            e.response_started = None;
            e.unflushed = true;
        }
    }

    fn flushed(&mut self) {
        if self.h2.is_some() {
            return;
        }
        // Over TLS the request may only leave in the flush; a flush with no write before it
        // (hyper flushes often) must not move the edge.
        let mut e = self.edges();
        if e.unflushed {
            e.request_written = Some(Instant::now());
            e.response_started = None;
            e.unflushed = false;
        }
    }

    fn read(&mut self, new: &[u8]) {
        let now = Instant::now();
        let mut response_headers = false;
        if let Some((_, inbound)) = &mut self.h2 {
            inbound.feed(new, |event| {
                if let FrameEvent::Start(head) = event {
                    response_headers |= head.stream != 0 && head.kind == FRAME_HEADERS;
                }
            });
        }
        let h2 = self.h2.is_some();
        let mut e = self.edges();
        if e.response_started.is_none() && (!h2 || response_headers) {
            e.response_started = Some(now);
        }
        let keep = FIRST_BYTES_KEPT.saturating_sub(e.first_bytes.len()).min(new.len());
        e.first_bytes.extend_from_slice(&new[..keep]);
        e.bytes_read += new.len() as u64;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                self.read(new);
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            if n > 0 {
                self.wrote(&[&buf[..n]]);
            }
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            if n > 0 {
                // Only the first `n` bytes of the slices went out.
                let mut left = n;
                let mut written = Vec::with_capacity(bufs.len());
                for b in bufs {
                    if left == 0 {
                        break;
                    }
                    let take = left.min(b.len());
                    written.push(&b[..take]);
                    left -= take;
                }
                self.wrote(&written);
            }
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = poll {
            self.flushed();
        }
        poll
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;
/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, which the client writes before its first frame.
const CLIENT_PREFACE_BYTES: usize = 24;

/// The 9-byte header of an HTTP/2 frame, as far as timing needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHead {
    kind: u8,
    flags: u8,
    stream: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameEvent {
    /// A frame header was seen (its first byte arrived in this chunk or an earlier one).
    Start(FrameHead),
    /// The last byte of the frame's payload was seen.
    End(FrameHead),
}

/// Follows HTTP/2 frame boundaries through one direction of a connection, chunk by chunk.
#[derive(Debug, Default)]
struct FrameScanner {
    preface_left: usize,
    head: [u8; 9],
    head_len: usize,
    payload_left: usize,
    current: Option<FrameHead>,
}

impl FrameScanner {
    /// The client's outbound direction, which starts with the connection preface.
    fn client_preface() -> FrameScanner {
        FrameScanner { preface_left: CLIENT_PREFACE_BYTES, ..FrameScanner::default() }
    }

    fn feed(&mut self, mut bytes: &[u8], mut on: impl FnMut(FrameEvent)) {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let Some(head) = self.current else {
                let n = (9 - self.head_len).min(bytes.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
                self.head_len += n;
                bytes = &bytes[n..];
                if self.head_len == 9 {
                    let h = self.head;
                    let head = FrameHead {
                        kind: h[3],
                        flags: h[4],
                        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                    };
                    self.payload_left = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    self.head_len = 0;
                    on(FrameEvent::Start(head));
                    if self.payload_left == 0 {
                        on(FrameEvent::End(head));
                    } else {
                        self.current = Some(head);
                    }
                }
                continue;
            };
            let n = self.payload_left.min(bytes.len());
            self.payload_left -= n;
            bytes = &bytes[n..];
            if self.payload_left == 0 {
                self.current = None;
                on(FrameEvent::End(head));
            }
        }
    }
}

/// A TLS record header: alert (0x15) or handshake (0x16), then major version 3.
fn looks_like_tls_record(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, ..])
}

/// The phrase by which a TLS server's 400 says it got plain HTTP, if the body has one.
/// `http_tls_required` when `response` is a TLS listener's complaint about plain HTTP (a 400
/// whose body says so, as nginx, Go and Apache answer). Judged by the caller after recording the
/// status, so the outcome still shows the 400.
pub fn tls_required(response: &Response) -> Option<Failure> {
    if response.status != 400 {
        return None;
    }
    plain_http_to_tls_phrase(&response.body).map(|phrase| {
        Failure::new(
            ErrorCode::HttpTlsRequired,
            format!("status 400: {phrase:?}: plain HTTP reached a TLS port"),
        )
    })
}

fn plain_http_to_tls_phrase(body: &[u8]) -> Option<&'static str> {
    const PHRASES: &[&str] = &[
        // nginx
        "The plain HTTP request was sent to HTTPS port",
        // Go net/http
        "Client sent an HTTP request to an HTTPS server",
        // Apache httpd
        "You're speaking plain HTTP to an SSL-enabled server port",
    ];
    PHRASES.iter().copied().find(|p| body.windows(p.len()).any(|w| w == p.as_bytes()))
}

/// The error and its causes, `: `-joined (hyper's own Display shows only the outer kind).
fn error_chain(err: &hyper::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn find_source<E: std::error::Error + 'static>(err: &hyper::Error) -> Option<&E> {
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(found) = s.downcast_ref::<E>() {
            return Some(found);
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use std::convert::Infallible;
    use std::future::Future;
    use std::net::IpAddr;

    use crate::config::Scheme;
    use http::header::HeaderName;
    use http::StatusCode;
    use hyper::service::service_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::config::plan::DEFAULT_MAX_BODY_BYTES;
    use crate::config::{
        Endpoint, Expect, Host, HttpSettings, InitialHealth, IpVersion, MaybeSecret, Role, Secret, Sni,
        TlsSettings,
    };

    /// A client view of `scheme://addr/healthz` with parallax-like defaults; tests change fields.
    pub(crate) fn view(scheme: Scheme, addr: SocketAddr) -> View {
        View {
            target: "t".into(),
            name: "client".into(),
            role: Role::Client,
            profile: None,
            scheme,
            url_endpoint: Endpoint { host: Host::Ip(addr.ip()), port: addr.port() },
            path: "/healthz".into(),
            url_display: format!("{}://{addr}/healthz", scheme.as_str()),
            connect_to: None,
            source: None,
            freebind: false,
            ip_version: IpVersion::Any,
            proxy_protocol: None,
            tls: TlsSettings { sni: Sni::FromUrl, verify: false, ca_file: None, alpn: Vec::new() },
            http: HttpSettings {
                method: Method::GET,
                host: HostHeader::FromUrl,
                headers: Vec::new(),
                user_agent: Some("parallax/0.1".into()),
                body: None,
                version: HttpVersion::Auto,
                connection_close: false,
                title_case_headers: false,
            },
            expect: Expect {
                status: vec![200..=299],
                body_contains: None,
                body_regex: None,
                kube_proxy_endpoints: false,
                grpc_service: String::new(),
            },
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(3),
            rise: 1,
            fall: 1,
            initial: InitialHealth::FirstProbe,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            resolver: None,
            each_address: false,
            expect_addresses: Vec::new(),
        }
    }

    pub(crate) fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    pub(crate) fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// Accepts one connection on `ip`, reads the request head (and a `content-length` body),
    /// hands both to `answer`, and returns the request bytes from the join handle.
    async fn raw_server<F, Fut>(ip_str: &str, answer: F) -> (SocketAddr, JoinHandle<Vec<u8>>)
    where
        F: FnOnce(TcpStream, Vec<u8>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind((ip(ip_str), 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
            let (mut stream, _) = accepted.unwrap().unwrap();
            let request = read_request(&mut stream).await;
            answer(stream, request.clone()).await;
            request
        });
        (addr, task)
    }

    async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let body_len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + body_len {
                    return buf;
                }
            }
            if buf.len() > 1 << 20 {
                return buf;
            }
            match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return buf,
            }
        }
    }

    async fn answer_with(stream: &mut TcpStream, bytes: &[u8]) {
        let _ = stream.write_all(bytes).await;
        let _ = stream.flush().await;
    }

    async fn connect(addr: SocketAddr) -> TcpStream {
        TcpStream::connect(addr).await.unwrap()
    }

    fn err(result: Result<Response, Failure>) -> Failure {
        match result {
            Ok(r) => panic!("expected a failure, got status {} body {:?}", r.status, r.body),
            Err(f) => f,
        }
    }

    // --- Host rules -------------------------------------------------------------------------

    #[test]
    fn host_header_follows_the_rule() {
        let dialed: SocketAddr = "10.1.2.3:30080".parse().unwrap();
        let mut v = view(Scheme::Http, "127.0.0.1:80".parse().unwrap());
        v.url_endpoint = Endpoint { host: Host::Name("shop.example.com".into()), port: 80 };
        assert_eq!(host_header(&v, dialed).as_deref(), Some("shop.example.com"));
        v.url_endpoint.port = 8080;
        assert_eq!(host_header(&v, dialed).as_deref(), Some("shop.example.com:8080"));
        v.scheme = Scheme::Https;
        v.url_endpoint.port = 443;
        assert_eq!(host_header(&v, dialed).as_deref(), Some("shop.example.com"));
        v.url_endpoint.port = 80;
        assert_eq!(host_header(&v, dialed).as_deref(), Some("shop.example.com:80"));
        v.url_endpoint = Endpoint { host: Host::Ip(ip("2001:db8::1")), port: 8443 };
        assert_eq!(host_header(&v, dialed).as_deref(), Some("[2001:db8::1]:8443"));
        v.url_endpoint.port = 443;
        assert_eq!(host_header(&v, dialed).as_deref(), Some("[2001:db8::1]"));

        v.http.host = HostHeader::DialedAddress;
        assert_eq!(host_header(&v, dialed).as_deref(), Some("10.1.2.3:30080"));
        let dialed6: SocketAddr = "[2001:db8::2]:30080".parse().unwrap();
        assert_eq!(host_header(&v, dialed6).as_deref(), Some("[2001:db8::2]:30080"));

        v.http.host = HostHeader::Value("127.0.0.1".into());
        assert_eq!(host_header(&v, dialed).as_deref(), Some("127.0.0.1"));
        v.http.host = HostHeader::None;
        assert_eq!(host_header(&v, dialed), None);
    }

    #[test]
    fn url_authority_is_the_views_own_text() {
        let mut v = view(Scheme::Http, "127.0.0.1:80".parse().unwrap());
        let hosts = [
            Host::Name("shop.example.com".into()),
            Host::Ip(ip("0.0.0.0")),
            Host::Ip(ip("127.0.0.1")),
            Host::Ip(ip("10.20.30.40")),
            Host::Ip(ip("255.255.255.255")),
            Host::Ip(ip("2001:db8::1")),
            Host::Ip(ip("::ffff:10.0.0.1")),
        ];
        for scheme in [Scheme::Http, Scheme::Https, Scheme::Grpc] {
            v.scheme = scheme;
            for host in &hosts {
                for port in [0, 1, 9, 10, 80, 99, 443, 1000, 8080, 9999, 10000, 65535] {
                    v.url_endpoint = Endpoint { host: host.clone(), port };
                    // The text `Display` gives (IPv6 in brackets, the port unless default).
                    let displayed = if scheme.default_port() == Some(port) {
                        host.to_string()
                    } else {
                        v.url_endpoint.to_string()
                    };
                    assert_eq!(v.url_authority(), displayed, "{host} {port}");
                }
            }
        }
        v.http.host = HostHeader::DialedAddress;
        for dialed in ["10.1.2.3:30080", "0.0.0.0:0", "255.255.255.255:65535", "[2001:db8::2]:30080"] {
            let dialed: SocketAddr = dialed.parse().unwrap();
            assert_eq!(host_header(&v, dialed), Some(dialed.to_string()));
        }
        v.http.host = HostHeader::DialedIp;
        let dialed: SocketAddr = "192.168.100.7:1".parse().unwrap();
        assert_eq!(host_header(&v, dialed).as_deref(), Some("192.168.100.7"));
    }

    // --- Exact bytes on the wire ------------------------------------------------------------

    #[tokio::test]
    async fn http10_without_host_writes_exactly_the_haproxy_request() {
        let (addr, server) = raw_server("127.0.41.1", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.0 200 OK\r\nServer: raw\r\n\r\nok").await;
        })
        .await;
        let mut v = view(Scheme::Http, addr);
        v.http.method = Method::OPTIONS;
        v.path = "/".into();
        v.http.version = HttpVersion::Http10;
        v.http.host = HostHeader::None;
        v.http.user_agent = None;

        let (sent, result) = exchange(connect(addr).await, &v, addr, false, soon()).await;
        let request = server.await.unwrap();
        assert_eq!(request.escape_ascii().to_string(), "OPTIONS / HTTP/1.0\\r\\n\\r\\n");
        assert_eq!(
            sent,
            Sent { host: None, user_agent: None, version: "HTTP/1.0", received: Received::default() }
        );
        let response = result.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.version, "HTTP/1.0");
        assert_eq!(&response.body[..], b"ok");
    }

    #[tokio::test]
    async fn http11_title_case_writes_the_documented_wire_order() {
        let (addr, server) = raw_server("127.0.41.2", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
        })
        .await;
        let mut v = view(Scheme::Http, addr);
        v.http.host = HostHeader::DialedAddress;
        v.http.user_agent = Some("kube-probe/1.30".into());
        v.http.headers = vec![
            (HeaderName::from_static("accept"), MaybeSecret::Plain("*/*".into())),
            (HeaderName::from_static("x-probe-id"), MaybeSecret::Plain("abc".into())),
        ];
        v.http.connection_close = true;
        v.http.title_case_headers = true;
        v.http.version = HttpVersion::Http11;

        let (sent, result) = exchange(connect(addr).await, &v, addr, false, soon()).await;
        let request = server.await.unwrap();
        let expected = format!(
            "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.30\r\n\
             Accept: */*\r\nX-Probe-Id: abc\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(String::from_utf8_lossy(&request), expected);
        assert_eq!(sent.host, Some(addr.to_string()));
        assert_eq!(sent.user_agent.as_deref(), Some("kube-probe/1.30"));
        assert_eq!(sent.version, "HTTP/1.1");
        assert_eq!(result.unwrap().status, 204);
    }

    #[tokio::test]
    async fn http11_lowercase_with_body_puts_content_length_last() {
        let (addr, server) = raw_server("127.0.41.3", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        })
        .await;
        let mut v = view(Scheme::Http, addr);
        v.http.method = Method::POST;
        v.http.host = HostHeader::Value("shop.example.com".into());
        v.http.headers = vec![(
            HeaderName::from_static("authorization"),
            MaybeSecret::Secret(Secret::new("Bearer s3cret")),
        )];
        v.http.body = Some(MaybeSecret::Plain("ping".into()));

        let (sent, result) = exchange(connect(addr).await, &v, addr, false, soon()).await;
        let request = server.await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&request),
            "POST /healthz HTTP/1.1\r\nhost: shop.example.com\r\nuser-agent: parallax/0.1\r\n\
             authorization: Bearer s3cret\r\ncontent-length: 4\r\n\r\nping"
        );
        assert_eq!(sent.host.as_deref(), Some("shop.example.com"));
        assert!(!format!("{sent:?} {v:?}").contains("s3cret"));
        assert_eq!(result.unwrap().status, 200);
    }

    // --- Real servers -----------------------------------------------------------------------

    type Seen = Arc<Mutex<Vec<(Version, Option<String>, Option<String>, Option<String>)>>>;

    /// A hyper server answering `200 hello` after `delay`, recording (version, host,
    /// authority, user-agent) of each request.
    async fn hyper_server(ip_str: &str, h2: bool, delay: Duration) -> (SocketAddr, Seen) {
        let listener = TcpListener::bind((ip(ip_str), 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
            let (stream, _) = accepted.unwrap().unwrap();
            serve_hello(stream, h2, delay, record).await;
        });
        (addr, seen)
    }

    /// Serves one connection with hyper: `200 hello` after `delay`.
    async fn serve_hello<IO>(io: IO, h2: bool, delay: Duration, record: Seen)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = service_fn(move |req: Request<Incoming>| {
            let record = record.clone();
            async move {
                let header = |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
                record.lock().unwrap().push((
                    req.version(),
                    header("host"),
                    req.uri().authority().map(|a| a.to_string()),
                    header("user-agent"),
                ));
                tokio::time::sleep(delay).await;
                let response = http::Response::builder()
                    .status(StatusCode::OK)
                    .body(Full::new(Bytes::from_static(b"hello")))
                    .unwrap();
                Ok::<_, Infallible>(response)
            }
        });
        let io = TokioIo::new(io);
        if h2 {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, service)
                .await;
        } else {
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        }
    }

    fn ring() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A TLS listener for `localhost` with ALPN `h2` and `http/1.1`, serving `200 hello` over
    /// whichever protocol the handshake chose; returns the certificate for the client to trust.
    async fn tls_server(
        ip_str: &str,
        delay: Duration,
    ) -> (SocketAddr, Seen, rustls_pki_types::CertificateDer<'static>) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let der = cert.cert.der().clone();
        let mut config = rustls::ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind((ip(ip_str), 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
            let (stream, _) = accepted.unwrap().unwrap();
            let tls = acceptor.accept(stream).await.unwrap();
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_hello(tls, h2, delay, record).await;
        });
        (addr, seen, der)
    }

    /// A TLS client stream to `addr` trusting `cert`, offering `alpn`; and whether `h2` was
    /// selected.
    async fn tls_connect(
        addr: SocketAddr,
        cert: rustls_pki_types::CertificateDer<'static>,
        alpn: &[&str],
    ) -> (tokio_rustls::client::TlsStream<TcpStream>, bool) {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, connect(addr).await).await.unwrap();
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        (tls, h2)
    }

    #[tokio::test]
    async fn https_with_alpn_h2_speaks_http2_and_measures_ttfb() {
        let delay = Duration::from_millis(100);
        let (addr, seen, cert) = tls_server("127.0.41.23", delay).await;
        let (tls, h2) = tls_connect(addr, cert, &["h2", "http/1.1"]).await;
        assert!(h2);
        let mut v = view(Scheme::Https, addr);
        v.url_endpoint = Endpoint { host: Host::Name("localhost".into()), port: addr.port() };
        let (sent, result) = exchange(tls, &v, addr, h2, soon()).await;
        let response = result.unwrap();
        assert_eq!(response.version, "HTTP/2");
        assert_eq!(&response.body[..], b"hello");
        assert!(response.ttfb >= delay, "ttfb {:?}", response.ttfb);
        assert!(response.ttfb < Duration::from_secs(1), "ttfb {:?}", response.ttfb);
        let authority = format!("localhost:{}", addr.port());
        assert_eq!(sent.host.as_deref(), Some(authority.as_str()));
        assert_eq!(sent.version, "HTTP/2");
        assert_eq!(seen.lock().unwrap()[0].2.as_deref(), Some(authority.as_str()));
    }

    #[tokio::test]
    async fn https_with_alpn_http11_speaks_http11_and_measures_ttfb() {
        let delay = Duration::from_millis(100);
        let (addr, seen, cert) = tls_server("127.0.41.24", delay).await;
        let (tls, h2) = tls_connect(addr, cert, &["http/1.1"]).await;
        assert!(!h2);
        let mut v = view(Scheme::Https, addr);
        v.url_endpoint = Endpoint { host: Host::Name("localhost".into()), port: addr.port() };
        let (sent, result) = exchange(tls, &v, addr, h2, soon()).await;
        let response = result.unwrap();
        assert_eq!(response.version, "HTTP/1.1");
        assert!(response.ttfb >= delay, "ttfb {:?}", response.ttfb);
        assert!(response.ttfb < Duration::from_secs(1), "ttfb {:?}", response.ttfb);
        let authority = format!("localhost:{}", addr.port());
        assert_eq!(sent.host.as_deref(), Some(authority.as_str()));
        assert_eq!(seen.lock().unwrap()[0].1.as_deref(), Some(authority.as_str()));
    }

    #[tokio::test]
    async fn http11_exchange_with_a_hyper_server_measures_ttfb() {
        let delay = Duration::from_millis(120);
        let (addr, seen) = hyper_server("127.0.41.4", false, delay).await;
        let v = view(Scheme::Http, addr);
        let (sent, result) = exchange(connect(addr).await, &v, addr, false, soon()).await;
        let response = result.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.version, "HTTP/1.1");
        assert_eq!(&response.body[..], b"hello");
        assert!(response.ttfb >= delay, "ttfb {:?}", response.ttfb);
        assert!(response.ttfb < Duration::from_secs(2), "ttfb {:?}", response.ttfb);
        assert_eq!(sent.host, Some(addr.to_string()));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, Version::HTTP_11);
        assert_eq!(seen[0].1, Some(addr.to_string()));
        assert_eq!(seen[0].3.as_deref(), Some("parallax/0.1"));
    }

    #[tokio::test]
    async fn http2_prior_knowledge_exchange_with_a_hyper_server() {
        let delay = Duration::from_millis(80);
        let (addr, seen) = hyper_server("127.0.41.5", true, delay).await;
        let mut v = view(Scheme::Http, addr);
        v.http.version = HttpVersion::Http2;
        v.http.host = HostHeader::DialedAddress;
        v.http.connection_close = true; // must not reach an HTTP/2 server
        let (sent, result) = exchange(connect(addr).await, &v, addr, false, soon()).await;
        let response = result.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.version, "HTTP/2");
        assert_eq!(&response.body[..], b"hello");
        assert!(response.ttfb >= delay, "ttfb {:?}", response.ttfb);
        assert_eq!(sent.version, "HTTP/2");
        assert_eq!(sent.host, Some(addr.to_string()));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, Version::HTTP_2);
        assert_eq!(seen[0].2, Some(addr.to_string()));
        assert_eq!(seen[0].3.as_deref(), Some("parallax/0.1"));
    }

    #[tokio::test]
    async fn http2_without_host_sends_the_url_authority() {
        let (addr, seen) = hyper_server("127.0.41.6", true, Duration::ZERO).await;
        let mut v = view(Scheme::Http, addr);
        v.url_endpoint = Endpoint { host: Host::Name("shop.example.com".into()), port: 80 };
        v.http.host = HostHeader::None;
        // ALPN-style h2 with an HTTP/1.1 view: the server decides.
        v.http.version = HttpVersion::Http11;
        let (sent, result) = exchange(connect(addr).await, &v, addr, true, soon()).await;
        assert_eq!(result.unwrap().version, "HTTP/2");
        assert_eq!(sent.host.as_deref(), Some("shop.example.com"));
        assert_eq!(seen.lock().unwrap()[0].2.as_deref(), Some("shop.example.com"));
    }

    // --- Hostile servers --------------------------------------------------------------------

    #[tokio::test]
    async fn garbage_instead_of_http_is_malformed() {
        let (addr, _server) = raw_server("127.0.41.7", |mut s, _| async move {
            answer_with(&mut s, b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
        })
        .await;
        let v = view(Scheme::Http, addr);
        let f = err(exchange(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpMalformed, "{f}");
        assert_eq!(f.phase, Phase::Http);
        assert!(f.detail.contains("SSH-2.0"), "{f}");
    }

    #[tokio::test]
    async fn garbage_to_http2_prior_knowledge_is_malformed() {
        let (addr, _server) = raw_server("127.0.41.8", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        })
        .await;
        let mut v = view(Scheme::Http, addr);
        v.http.version = HttpVersion::Http2;
        let f = err(exchange(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpMalformed, "{f}");
    }

    #[tokio::test]
    async fn endless_body_stops_at_the_limit() {
        let (addr, _server) = raw_server("127.0.41.9", |mut s, _| async move {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await;
            let chunk = format!("400\r\n{}\r\n", "x".repeat(0x400));
            // Bounded: 64 MiB at most, or until the client hangs up.
            for _ in 0..65_536 {
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
            }
        })
        .await;
        let mut v = view(Scheme::Http, addr);
        v.max_body_bytes = 16 * 1024;
        let start = Instant::now();
        let f = err(exchange(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpBodyTooLarge, "{f}");
        assert_eq!(f.detail, "status 200: body exceeds max_body_bytes 16384");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_is_too_large_without_reading() {
        let (addr, _server) = raw_server("127.0.41.10", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nabc").await;
            tokio::time::sleep(Duration::from_secs(3)).await;
        })
        .await;
        let mut v = view(Scheme::Http, addr);
        v.max_body_bytes = 1000;
        let f = err(exchange(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpBodyTooLarge, "{f}");
        assert!(f.detail.contains("content-length 1000000"), "{f}");
    }

    #[tokio::test]
    async fn body_exactly_at_the_limit_is_read() {
        let (addr, _server) = raw_server("127.0.41.11", |mut s, _| async move {
            let body = "y".repeat(1000);
            let answer =
                format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n{body}\r\n0\r\n\r\n");
            answer_with(&mut s, answer.as_bytes()).await;
        })
        .await;
        let mut v = view(Scheme::Http, addr);
        v.max_body_bytes = 1000;
        let response = exchange(connect(addr).await, &v, addr, false, soon()).await.1.unwrap();
        assert_eq!(response.body.len(), 1000);
    }

    #[tokio::test]
    async fn huge_headers_are_too_large() {
        let (addr, _server) = raw_server("127.0.41.12", |mut s, _| async move {
            let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..80 {
                answer.extend_from_slice(format!("X-Fill-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
            }
            answer.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            answer_with(&mut s, &answer).await;
        })
        .await;
        let v = view(Scheme::Http, addr);
        let f = err(exchange(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpBodyTooLarge, "{f}");
        assert_eq!(f.detail, format!("response head exceeds {MAX_HEADER_BYTES} bytes"));
    }

    #[tokio::test]
    async fn accept_and_never_answer_times_out_at_the_deadline() {
        let (addr, _server) = raw_server("127.0.41.13", |s, _| async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        })
        .await;
        let v = view(Scheme::Http, addr);
        let start = Instant::now();
        let deadline = start + Duration::from_millis(300);
        let f = err(exchange(connect(addr).await, &v, addr, false, deadline).await.1);
        let elapsed = start.elapsed();
        assert_eq!(f.code, ErrorCode::HttpTimeout, "{f}");
        assert_eq!(f.detail, "no response before the deadline");
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    }

    #[tokio::test]
    async fn stalled_body_times_out_as_incomplete() {
        let (addr, _server) = raw_server("127.0.41.25", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let v = view(Scheme::Http, addr);
        let start = Instant::now();
        let deadline = start + Duration::from_millis(300);
        let f = err(exchange(connect(addr).await, &v, addr, false, deadline).await.1);
        assert_eq!(f.code, ErrorCode::HttpTimeout, "{f}");
        assert!(f.detail.starts_with("response incomplete at the deadline"), "{f}");
        assert!(start.elapsed() < Duration::from_millis(1500));
    }

    #[tokio::test]
    async fn tls_alert_in_answer_is_tls_required() {
        let (addr, _server) = raw_server("127.0.41.14", |mut s, _| async move {
            // A TLS 1.2 fatal alert, decode_error: what a TLS listener says to plain text.
            answer_with(&mut s, &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]).await;
        })
        .await;
        let v = view(Scheme::Http, addr);
        let f = err(exchange(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpTlsRequired, "{f}");
        assert!(f.detail.contains("\\x15\\x03\\x03"), "{f}");
    }

    #[tokio::test]
    async fn plain_http_to_a_rustls_listener_is_tls_required() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind((ip("127.0.41.15"), 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
            let (stream, _) = accepted.unwrap().unwrap();
            let _ = acceptor.accept(stream).await;
        });
        let v = view(Scheme::Http, addr);
        let f = err(exchange(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpTlsRequired, "{f}");
    }

    #[tokio::test]
    async fn nginx_plain_http_to_https_port_400_is_tls_required() {
        let (addr, _server) = raw_server("127.0.41.16", |mut s, _| async move {
            let body = "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            answer_with(&mut s, answer.as_bytes()).await;
        })
        .await;
        let v = view(Scheme::Http, addr);
        let response = exchange(connect(addr).await, &v, addr, false, soon()).await.1.expect("a 400");
        assert_eq!(response.status, 400);
        let f = tls_required(&response).expect("recognised");
        assert_eq!(f.code, ErrorCode::HttpTlsRequired, "{f}");
        assert_eq!(f.phase, Phase::Http);
        assert!(f.detail.starts_with("status 400"), "{f}");
    }

    #[tokio::test]
    async fn go_plain_http_to_https_server_400_is_tls_required() {
        let (addr, _server) = raw_server("127.0.41.17", |mut s, _| async move {
            answer_with(
                &mut s,
                b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
            )
            .await;
        })
        .await;
        let v = view(Scheme::Http, addr);
        let response = exchange(connect(addr).await, &v, addr, false, soon()).await.1.expect("a 400");
        let f = tls_required(&response).expect("recognised");
        assert_eq!(f.code, ErrorCode::HttpTlsRequired, "{f}");
    }

    #[tokio::test]
    async fn an_ordinary_400_is_left_to_the_matcher() {
        let (addr, _server) = raw_server("127.0.41.18", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad").await;
        })
        .await;
        let v = view(Scheme::Http, addr);
        let response = exchange(connect(addr).await, &v, addr, false, soon()).await.1.unwrap();
        assert_eq!(response.status, 400);
    }

    #[tokio::test]
    async fn close_mid_body_is_reset() {
        let (addr, _server) = raw_server("127.0.41.19", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort").await;
        })
        .await;
        let v = view(Scheme::Http, addr);
        let f = err(exchange(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpReset, "{f}");
    }

    #[tokio::test]
    async fn close_mid_head_is_reset() {
        let (addr, _server) = raw_server("127.0.41.20", |mut s, _| async move {
            answer_with(&mut s, b"HTTP/1.1 200 OK\r\nContent-").await;
        })
        .await;
        let v = view(Scheme::Http, addr);
        let f = err(exchange(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpReset, "{f}");
    }

    #[tokio::test]
    async fn close_without_answer_is_reset() {
        let (addr, _server) = raw_server("127.0.41.21", |s, _| async move { drop(s) }).await;
        let v = view(Scheme::Http, addr);
        let f = err(exchange(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpReset, "{f}");
        assert!(f.detail.contains("no response bytes"), "{f}");
    }

    #[tokio::test]
    async fn rst_without_answer_is_reset() {
        let (addr, _server) = raw_server("127.0.41.22", |s, _| async move {
            // SO_LINGER 0: close sends RST instead of FIN.
            let _ = s.set_zero_linger();
            drop(s);
        })
        .await;
        let v = view(Scheme::Http, addr);
        let f = err(exchange(connect(addr).await, &v, addr, false, soon()).await.1);
        assert_eq!(f.code, ErrorCode::HttpReset, "{f}");
    }

    #[test]
    fn frame_scanner_follows_frames_across_chunks() {
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        wire.extend([0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS, empty, stream 0
        wire.extend([0, 0, 3, 0x1, 0x4, 0, 0, 0, 1, 1, 2, 3]); // HEADERS, stream 1
        wire.extend([0, 0, 2, 0x0, 0x1, 0x80, 0, 0, 1, 9, 9]); // DATA END_STREAM, R bit set
        let settings = FrameHead { kind: 0x4, flags: 0, stream: 0 };
        let headers = FrameHead { kind: 0x1, flags: 0x4, stream: 1 };
        let data = FrameHead { kind: 0x0, flags: 0x1, stream: 1 };
        let expected = vec![
            FrameEvent::Start(settings),
            FrameEvent::End(settings),
            FrameEvent::Start(headers),
            FrameEvent::End(headers),
            FrameEvent::Start(data),
            FrameEvent::End(data),
        ];
        for chunk_size in [1, 2, 5, 7, 24, wire.len()] {
            let mut scanner = FrameScanner::client_preface();
            let mut events = Vec::new();
            for chunk in wire.chunks(chunk_size) {
                scanner.feed(chunk, |e| events.push(e));
            }
            assert_eq!(events, expected, "chunks of {chunk_size}");
        }
    }

    #[test]
    fn tls_record_detection() {
        assert!(looks_like_tls_record(&[0x16, 0x03, 0x01, 0x00]));
        assert!(looks_like_tls_record(&[0x15, 0x03, 0x03]));
        assert!(!looks_like_tls_record(b"HTTP/1.1 400"));
        assert!(!looks_like_tls_record(&[0x16]));
        assert!(!looks_like_tls_record(&[0x17, 0x03, 0x03]));
    }
}
