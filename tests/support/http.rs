//! An HTTP server (hyper 1, HTTP/1 and HTTP/2 auto-detected) with a closure router, and its HTTPS
//! variant (rustls, ring) with SNI vhosts, a default certificate, ALPN, and a record of the SNI
//! each handshake saw. The serving engine is shared with the gRPC server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::certs::{certified, Leaf};
use super::{accept_loop, listen, Task};

/// Request bodies are read up to this many bytes.
const MAX_REQUEST_BODY: usize = 1 << 20;
/// A TLS handshake that takes longer is abandoned.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The Host header, or HTTP/2's `:authority`; `None` when the request had neither.
    pub host: Option<String>,
    /// Headers (names lowercase).
    pub headers: Vec<(String, String)>,
    /// HTTP version.
    pub version: http::Version,
    /// The client's address.
    pub peer: SocketAddr,
    /// The SNI of the TLS connection the request came on (`None`: no SNI, or plain HTTP).
    pub sni: Option<String>,
    /// The request body (up to 1 MiB).
    pub body: Bytes,
}

impl Seen {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What the router answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// 200 with `body`.
    pub fn ok(body: impl Into<Bytes>) -> Reply {
        Reply::status(200, body)
    }

    /// `status` with `body`.
    pub fn status(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply { status, headers: Vec::new(), body: body.into() }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A router: request in, reply out.
pub type Router = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// Wraps a closure as a [`Router`].
pub fn router(f: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Router {
    Arc::new(f)
}

/// A router that answers every request with 200 and `body`.
pub fn always(body: &'static str) -> Router {
    router(move |_| Reply::ok(body))
}

/// The response body type of the engine (a full body, or a gRPC stream with trailers).
pub type ReplyBody = BoxBody<Bytes, Infallible>;

/// The engine's handler: the recorded request in, a response out.
pub type Handler = Arc<dyn Fn(Seen) -> http::Response<ReplyBody> + Send + Sync>;

/// The TLS side of a server: certificates by SNI, a default, ALPN, protocol versions.
#[derive(Debug, Clone)]
pub struct TlsSite {
    default: Option<Leaf>,
    vhosts: Vec<(String, Leaf)>,
    alpn: Vec<Vec<u8>>,
    tls12_only: bool,
}

impl TlsSite {
    /// A site whose certificate for no or unknown SNI is `default`; ALPN `h2`, `http/1.1`.
    pub fn new(default: Leaf) -> TlsSite {
        TlsSite {
            default: Some(default),
            vhosts: Vec::new(),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            tls12_only: false,
        }
    }

    /// A site with vhosts only: a handshake without a known SNI fails (the server aborts it).
    pub fn vhosts_only() -> TlsSite {
        TlsSite {
            default: None,
            vhosts: Vec::new(),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            tls12_only: false,
        }
    }

    /// Serves `leaf` to handshakes whose SNI is `name`.
    pub fn vhost(mut self, name: &str, leaf: Leaf) -> TlsSite {
        self.vhosts.push((name.to_ascii_lowercase(), leaf));
        self
    }

    /// The ALPN protocols the server accepts, in preference order (empty: no ALPN).
    pub fn alpn(mut self, protocols: &[&str]) -> TlsSite {
        self.alpn = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    /// Speak TLS 1.2 only.
    pub fn tls12_only(mut self) -> TlsSite {
        self.tls12_only = true;
        self
    }

    /// The rustls server config; every handshake's SNI (or `None`) is pushed onto `snis`.
    pub fn server_config(&self, snis: Arc<Mutex<Vec<Option<String>>>>) -> Arc<ServerConfig> {
        let resolver = SniResolver {
            vhosts: self.vhosts.iter().map(|(n, l)| (n.clone(), certified(l))).collect(),
            default: self.default.as_ref().map(certified),
            snis,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider);
        let builder = if self.tls12_only {
            builder.with_protocol_versions(&[&rustls::version::TLS12])
        } else {
            builder.with_safe_default_protocol_versions()
        }
        .expect("protocol versions");
        let mut config = builder.with_no_client_auth().with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = self.alpn.clone();
        Arc::new(config)
    }
}

/// Picks the certificate by SNI and records the SNI of every ClientHello.
#[derive(Debug)]
struct SniResolver {
    vhosts: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    snis: Arc<Mutex<Vec<Option<String>>>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        lock(&self.snis).push(sni.clone());
        sni.and_then(|name| self.vhosts.get(&name).cloned()).or_else(|| self.default.clone())
    }
}

/// Serving options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Wait this long before answering each request.
    pub delay: Option<Duration>,
    /// Speak HTTP/2 only (prior knowledge on cleartext).
    pub h2_only: bool,
}

/// An HTTP or HTTPS server. Dropping it stops it.
pub struct HttpServer {
    /// The bound address.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    snis: Arc<Mutex<Vec<Option<String>>>>,
    _task: Task,
}

impl HttpServer {
    /// Plain HTTP on `ip`, any free port.
    pub async fn start(ip: IpAddr, router: Router) -> HttpServer {
        HttpServer::serve(listen(ip, 0).await, None, Options::default(), router)
    }

    /// HTTPS on `ip`, any free port.
    pub async fn start_tls(ip: IpAddr, site: TlsSite, router: Router) -> HttpServer {
        HttpServer::serve(listen(ip, 0).await, Some(site), Options::default(), router)
    }

    /// Serves on `listener`, with TLS when `site` is given.
    pub fn serve(
        listener: TcpListener,
        site: Option<TlsSite>,
        options: Options,
        router: Router,
    ) -> HttpServer {
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let snis = Arc::new(Mutex::new(Vec::new()));
        let tls = site.map(|s| s.server_config(snis.clone()));
        let handler: Handler = Arc::new(move |req: Seen| full_response(router(&req)));
        let task = serve(listener, tls, options, handler, seen.clone());
        HttpServer { addr, seen, snis, _task: task }
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }

    /// The SNI of every TLS handshake so far (`None`: the client sent no SNI).
    pub fn snis(&self) -> Vec<Option<String>> {
        lock(&self.snis).clone()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Turns a [`Reply`] into a response.
pub fn full_response(reply: Reply) -> http::Response<ReplyBody> {
    let mut response = http::Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        response = response.header(k.as_str(), v.as_str());
    }
    response.body(Full::new(reply.body).boxed()).expect("valid reply")
}

/// Runs the accept loop on `listener` until the returned task is dropped: each connection
/// (optionally TLS) is served by hyper with `handler`; every request is recorded in `seen`.
pub fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    options: Options,
    handler: Handler,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Task {
    accept_loop(listener, move |stream, peer| {
        let (tls, handler, seen) = (tls.clone(), handler.clone(), seen.clone());
        async move {
            match tls {
                None => serve_io(stream, peer, None, options, handler, seen).await,
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    let accepted = tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(stream)).await;
                    if let Ok(Ok(stream)) = accepted {
                        let sni = stream.get_ref().1.server_name().map(str::to_owned);
                        serve_io(stream, peer, sni, options, handler, seen).await;
                    }
                }
            }
        }
    })
}

async fn serve_io<I>(
    io: I,
    peer: SocketAddr,
    sni: Option<String>,
    options: Options,
    handler: Handler,
    seen: Arc<Mutex<Vec<Seen>>>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: http::Request<Incoming>| {
        let (handler, seen, sni) = (handler.clone(), seen.clone(), sni.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => Bytes::new(),
            };
            let host = parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
                .or_else(|| parts.uri.authority().map(|a| a.to_string()));
            let request = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.to_string()),
                host,
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect(),
                version: parts.version,
                peer,
                sni,
                body,
            };
            lock(&seen).push(request.clone());
            if let Some(delay) = options.delay {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, Infallible>(handler(request))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if options.h2_only {
        builder = builder.http2_only();
    }
    // Connection errors (the client went away mid-request...) are the client's business here.
    let _ = builder.serve_connection(TokioIo::new(io), service).await;
}

/// Locks `m`, ignoring poisoning (a panicking test thread must not hide the record).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
