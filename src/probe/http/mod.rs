//! HTTP layer: hyper's client connection API over a fresh connection; HTTP/1.0, HTTP/1.1 and
//! HTTP/2; bounded headers and body.
//!
//! Byte fidelity matters more here than convenience: a checker profile must put exactly its
//! request on the wire. hyper's `client::conn` API adds no header of its own (no Host, no
//! User-Agent, no `connection: keep-alive` on a fresh HTTP/1.0 connection); the request head is
//! built here in the wire order documented in `config::plan`, and `content-length` is set here so
//! hyper never picks `transfer-encoding: chunked` or drops an HTTP/1.0 body.
//!
//! Here: the request and the [`Exchange`] that the gRPC layer runs too. The timings come from
//! the I/O edges (`probe::edges`); failures are named in `classify`.

mod classify;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, USER_AGENT};
use http::{Method, Request, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use classify::{classify, tls_required};

/// A 3xx response's `Location` as outputs show it ([`location_display`]); `None` for any other
/// status or without the header.
pub fn redirect_location(status: u16, headers: &http::HeaderMap) -> Option<String> {
    if !(300..=399).contains(&status) {
        return None;
    }
    headers.get(http::header::LOCATION).map(|l| location_display(l.as_bytes()))
}

use super::edges::{HeadBound, SharedEdges, TimedIo, MAX_HEADER_FIELDS, MAX_INTERIM_RESPONSES};
use super::outcome::{location_display, ErrorCode, Failure, Phase};
use crate::config::MAX_HEADER_BYTES;
use crate::config::{HttpVersion, View};

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// Status of the response head.
    pub status: Option<u16>,
    /// A 3xx head's `Location`, as [`location_display`] shows it.
    pub location: Option<String>,
    /// Time to the response head.
    pub ttfb: Option<Duration>,
    /// Body bytes read before the failure.
    pub body_bytes: Option<u64>,
}

/// Sends `view`'s request over `io` with `host` as its Host header (what [`View::host_header`] gives
/// for the dialed address) and reads the response within `view.max_body_bytes` and the header
/// limit, before `deadline`. `h2` is true when ALPN selected `h2`. Errors: `http_tls_required`,
/// `http_malformed`, `http_reset`, `http_timeout`, `http_body_too_large`, `http_head_too_large`. The status is not
/// judged here: the caller asks [`tls_required`] about a 400, then the matcher.
pub async fn exchange<S>(
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
    let version = wire_version(view, h2);
    let use_h2 = version == Version::HTTP_2;
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

/// The version `view` speaks when ALPN selected `h2` (`alpn_h2`) or not: HTTP/2 then, or when
/// the view asks for it; else its HTTP/1 version.
fn wire_version(view: &View, alpn_h2: bool) -> Version {
    if alpn_h2 || view.http.version == HttpVersion::Http2 {
        Version::HTTP_2
    } else if view.http.version == HttpVersion::Http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    }
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
        format!("{scheme}://{}{}", h2_authority(view, host), view.path)
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

/// The request head `view` sends with `host` as its Host header (what [`View::host_header`]
/// gives), one line each, as shown to people: over HTTP/1 the very bytes the probe writes (the
/// same builder and hyper's writer, header case included, run over an in-memory pipe); over
/// HTTP/2 (`h2`) the pseudo-headers and then the headers, as HPACK would carry them. Secrets
/// are `<redacted>`: the path as [`View::path_display`] shows it, and every secret header's value
/// (an `Authorization` header, the URL's user info, `${env:..}` values). The body is not shown.
pub async fn shown_request_head(view: &View, h2: bool, host: Option<&str>) -> Result<Vec<String>, Failure> {
    let version = wire_version(view, h2);
    let h2 = version == Version::HTTP_2;
    let h2_host = h2.then(|| host.map_or_else(|| view.url_authority(), str::to_owned));
    let request = build_request(view, version, h2_host.as_deref().or(host))?;
    let secret = |name: &str| {
        view.http.headers.iter().any(|(n, v)| v.is_secret() && n.as_str().eq_ignore_ascii_case(name))
    };
    let path = view.path_display();
    let shown = |name: &str, value: &str| {
        if secret(name) {
            format!("{name}: <redacted>")
        } else {
            format!("{name}: {value}")
        }
    };
    if h2 {
        let mut lines = vec![
            format!(":method: {}", request.method()),
            format!(":scheme: {}", request.uri().scheme_str().unwrap_or("https")),
            format!(":authority: {}", request.uri().authority().map(|a| a.as_str()).unwrap_or_default()),
            format!(":path: {path}"),
        ];
        for (name, value) in request.headers() {
            lines.push(shown(name.as_str(), &String::from_utf8_lossy(value.as_bytes())));
        }
        return Ok(lines);
    }
    let bytes = http1_head(request, view.http.title_case_headers).await?;
    let text = String::from_utf8_lossy(&bytes);
    let lines = text.split("\r\n").take_while(|line| !line.is_empty());
    Ok(lines
        .enumerate()
        .map(|(i, line)| match (i, line.split_once(':')) {
            // `METHOD path VERSION`, the path as shown.
            (0, _) => match (line.split_once(' '), line.rsplit_once(' ')) {
                (Some((method, _)), Some((_, version))) => format!("{method} {path} {version}"),
                _ => line.to_owned(),
            },
            (_, Some((name, value))) => shown(name, value.trim_start()),
            (_, None) => line.to_owned(),
        })
        .collect())
}

/// The bytes hyper writes for `request` as an HTTP/1 client, up to the end of the head.
async fn http1_head(request: Request<Full<Bytes>>, title_case_headers: bool) -> Result<Vec<u8>, Failure> {
    use tokio::io::AsyncReadExt as _;
    let rendering =
        |e: hyper::Error| Failure::new(ErrorCode::HttpMalformed, format!("rendering the request: {e}"));
    let (client, mut server) = tokio::io::duplex(MAX_HEADER_BYTES);
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(title_case_headers)
        .handshake::<_, Full<Bytes>>(TokioIo::new(client))
        .await
        .map_err(rendering)?;
    // No answer ever comes: the connection ends (and drops its end of the pipe, so the read
    // below sees EOF) only on an error; the read ends once the head is in.
    let write = async move {
        let _ = tokio::join!(conn, sender.send_request(request));
        std::future::pending::<()>().await;
    };
    let read = async {
        let mut head = Vec::new();
        let mut chunk = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEADER_BYTES {
            match server.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        head
    };
    let bounded = tokio::time::timeout(RENDER_LIMIT, async {
        tokio::select! {
            head = read => head,
            () = write => Vec::new(),
        }
    });
    bounded.await.map_err(|_| Failure::new(ErrorCode::HttpTimeout, "rendering the request did not finish"))
}

/// How long rendering a request head in memory may take (it takes microseconds).
const RENDER_LIMIT: Duration = Duration::from_secs(2);

/// The `:authority` of an HTTP/2 request whose Host rule gave `host`: that value when it is a
/// valid authority, else the URL's (HTTP/2 has no request without one).
pub(crate) fn h2_authority(view: &View, host: Option<&str>) -> String {
    host.and_then(|h| h.parse::<http::uri::Authority>().ok())
        .map(|a| a.to_string())
        .unwrap_or_else(|| view.url_authority())
}

/// One exchange over a fresh connection, shared by the HTTP and gRPC layers: the I/O edges, the
/// phase failures are reported in, the body limit, and what of the response arrived so far.
pub(crate) struct Exchange {
    edges: SharedEdges,
    phase: Phase,
    max_body_bytes: usize,
    /// Status and ttfb, once the response head arrived.
    head: OnceLock<(u16, Duration)>,
    /// A 3xx head's `Location`, shown as [`location_display`] does.
    location: OnceLock<String>,
    /// Body bytes read so far.
    body_read: AtomicU64,
}

impl Exchange {
    /// An exchange reading `edges`, failing in `phase`, reading bodies up to `max_body_bytes`.
    pub(crate) fn new(edges: SharedEdges, phase: Phase, max_body_bytes: usize) -> Exchange {
        Exchange {
            edges,
            phase,
            max_body_bytes,
            head: OnceLock::new(),
            location: OnceLock::new(),
            body_read: AtomicU64::new(0),
        }
    }

    /// What arrived before now: nothing before the response head.
    pub(crate) fn received(&self) -> Received {
        match self.head.get() {
            Some(&(status, ttfb)) => Received {
                status: Some(status),
                location: self.location.get().cloned(),
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
        if let Some(location) = redirect_location(status, &parts.headers) {
            let _ = self.location.set(location);
        }
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
                .max_headers(MAX_HEADER_FIELDS)
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

    /// `http_body_too_large` in this exchange's phase.
    pub(crate) fn too_large(&self, detail: String) -> Failure {
        Failure::in_phase(self.phase, ErrorCode::HttpBodyTooLarge, detail)
    }

    /// `http_timeout` at the deadline, saying whether any of the response had come.
    pub(crate) fn timeout(&self) -> Failure {
        let edges = self.edges.lock();
        // HTTP/2 reads SETTINGS before any answer: "no response" means no response start.
        let detail = if edges.bytes_read() == 0 || !edges.response_started() {
            "no response before the deadline".to_owned()
        } else {
            format!("response incomplete at the deadline ({} bytes read)", edges.bytes_read())
        };
        Failure::in_phase(self.phase, ErrorCode::HttpTimeout, detail)
    }

    /// Request fully written to the first response byte (see [`Edges`](super::edges::Edges)).
    pub(crate) fn ttfb(&self) -> Duration {
        self.edges.lock().ttfb()
    }

    /// Names a hyper error with the [`ErrorCode`] taxonomy, from what the I/O edge saw: a
    /// response head past its bounds (which hyper reports as "too large" whichever bound it was,
    /// or as the read error the edge gave it) is `http_head_too_large` naming the bound.
    pub(crate) fn classify(&self, err: &hyper::Error) -> Failure {
        let edges = self.edges.lock();
        let heads = edges.heads();
        let head_failure =
            |detail: String| Failure::in_phase(self.phase, ErrorCode::HttpHeadTooLarge, detail);
        match heads.broken() {
            Some(HeadBound::Interim) => {
                return head_failure(format!(
                    "more than {MAX_INTERIM_RESPONSES} interim (1xx) responses before the final response head"
                ))
            }
            Some(HeadBound::Bytes) if heads.interim() > 0 => {
                return head_failure(format!(
                    "the response heads exceed {MAX_HEADER_BYTES} bytes ({} interim 1xx responses, then the \
                     final head; the limit counts them together)",
                    heads.interim()
                ))
            }
            Some(HeadBound::Bytes) => {
                return head_failure(format!("the response head exceeds {MAX_HEADER_BYTES} bytes"))
            }
            None => {}
        }
        let failure = classify(err, self.phase, edges.first_bytes(), edges.bytes_read());
        if failure.code == ErrorCode::HttpHeadTooLarge
            && heads.fields() >= MAX_HEADER_FIELDS
            && heads.bytes() < MAX_HEADER_BYTES
        {
            return head_failure(format!(
                "the response head has more than {MAX_HEADER_FIELDS} header fields (the limit; {} bytes read)",
                heads.bytes()
            ));
        }
        failure
    }
}

/// hyper's smallest accepted `max_buf_size`.
const MIN_HYPER_BUF_BYTES: usize = 8192;

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
