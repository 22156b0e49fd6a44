//! `parallax demo`: the whole of parallax in one command, with nothing to prepare.
//!
//! [`Backends::start`] binds, inside this process, small HTTP and HTTPS servers on loopback
//! addresses `127.0.0.11` to `127.0.0.18` (free ports; certificates from a CA made at start), each
//! reproducing one field failure of DESIGN §6 next to a healthy service ([`SCENARIOS`]).
//! [`Backends::config`] is the `probes.d` file that watches them (every view probed each second,
//! a disagreement held 2 s opens a mismatch), compiled in memory with [`config::load_str`].
//! [`run`] starts the daemon on it with the admin server and dashboard, and draws the status
//! document as a table in the terminal.
//!
//! Nothing is dialed beyond loopback. The only file written is the demo CA's certificate (the
//! client views verify with it through `ca_file`), in a private temporary directory removed when
//! the demo ends.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::admin::AdminState;
use crate::config::{self, ConfigErrors, OtlpProtocol, Plan};
use crate::daemon::{self, Daemon};
use crate::diff::{Diagnosis, Direction};
use crate::export::{ResourceInfo, Telemetry, TelemetryOptions};
use crate::status::{StatusDoc, TargetStatus, ViewStatus};

/// How often the terminal table is redrawn (and the status read for it).
pub const REFRESH: Duration = Duration::from_secs(1);

/// Every demo target, in the order the plan, the dashboard and the table show them.
pub const SCENARIOS: [Scenario; 8] = [
    Scenario {
        target: "healthy",
        expected: None,
        shows: "A healthy HTTPS shop: the users' request, an AWS ALB check (by IP, no SNI, no \
                certificate check) and the node's kube-proxy health port all pass. The baseline: \
                no mismatch.",
    },
    Scenario {
        target: "shallow-health",
        expected: Some(Expected {
            checker: "alb",
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::ShallowHealthPath,
        }),
        shows: "/healthz answers 200 from memory while /cart answers 503 (its database is down): the \
                ALB keeps the backend in service while users get errors.",
    },
    Scenario {
        target: "tls-port",
        expected: Some(Expected {
            checker: "alb",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerProtocolMismatch,
        }),
        shows: "The ALB checks a TLS-only port with plain HTTP: its check fails (http_tls_required) \
                while HTTPS users are served, so it drains a working backend.",
    },
    Scenario {
        target: "etp-local",
        expected: Some(Expected {
            checker: "kube-proxy",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::NoLocalEndpoints,
        }),
        shows: "externalTrafficPolicy: Local on a node without a local pod: kube-proxy's \
                healthCheckNodePort answers 503 {\"localEndpoints\":0} while the node port still \
                serves users.",
    },
    Scenario {
        target: "allowlist",
        expected: Some(Expected {
            checker: "gcp",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerSourceBlocked,
        }),
        shows: "allow_sources (the LB's source allowlist) lacks GCP's health-check ranges \
                35.191.0.0/16 and 130.211.0.0/22: found by the audit, without traffic, while every \
                probe from here passes.",
    },
    Scenario {
        target: "no-sni",
        expected: Some(Expected {
            checker: "appgw",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::SniMismatch,
        }),
        shows: "An Azure Application Gateway v2 probe by IP sends no SNI and verifies the \
                certificate: the ingress answers with its default certificate, whose name does not \
                match (tls_cert_name_mismatch).",
    },
    Scenario {
        target: "host-route",
        expected: Some(Expected {
            checker: "alb",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::HostRouteMismatch,
        }),
        shows: "A host-routed ingress sends Host blog.test to the app and anything else to its \
                default backend's 404; the ALB's Host is the target's ip:port.",
    },
    Scenario {
        target: "status-204",
        expected: Some(Expected {
            checker: "gcp",
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::StatusMatcherMismatch,
        }),
        shows: "The readiness path answers 204 No Content: browsers and kubelet accept it, GCP's \
                health check accepts only 200.",
    },
];

/// One demo target: the failure it reproduces and what parallax should name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Target name.
    pub target: &'static str,
    /// The mismatch parallax opens for it; `None` for the healthy target.
    pub expected: Option<Expected>,
    /// What it reproduces, for `parallax demo --help`.
    pub shows: &'static str,
}

/// The mismatch a demo target opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The checker view that disagrees with the client view.
    pub checker: &'static str,
    /// Which way.
    pub direction: Direction,
    /// The diagnosis.
    pub diagnosis: Diagnosis,
}

/// `parallax demo --help`'s account of the targets.
pub fn help() -> String {
    let mut out = String::from(
        "Demo targets (every view is probed each second; a disagreement that lasts 2 s\nis a mismatch):\n",
    );
    for s in &SCENARIOS {
        let _ = write!(out, "\n  {}\n", s.target);
        for line in wrap(s.shows, 88) {
            let _ = writeln!(out, "      {line}");
        }
        if let Some(e) = s.expected {
            let _ =
                writeln!(out, "      -> client vs {}: {} / {}", e.checker, e.direction.as_str(), e.diagnosis);
        }
    }
    out.push('\n');
    let closing = "The backends listen on 127.0.0.11 to 127.0.0.18 (127.0.0.1 where only that one exists) \
                   inside this process, with certificates made at start; nothing is sent beyond loopback. \
                   While it runs, open the dashboard URL it prints, or read the same data at \
                   /api/v1/status and /metrics.";
    for line in wrap(closing, 94) {
        let _ = write!(out, "\n{line}");
    }
    out
}

/// Words of `text` in lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A backend could not bind its loopback address.
    #[error("cannot start a demo backend on {ip}: {source}")]
    Backend {
        /// The address.
        ip: IpAddr,
        /// Why.
        source: io::Error,
    },
    /// rcgen or rustls refused the certificates.
    #[error("cannot make the demo certificates: {0}")]
    Certificates(String),
    /// The CA certificate could not be written.
    #[error("cannot write the demo CA certificate: {0}")]
    CaFile(io::Error),
    /// The demo configuration does not compile (a bad `--otlp` endpoint, say).
    #[error("the demo configuration does not compile:\n{0}")]
    Config(ConfigErrors),
    /// The admin listener could not be bound, not even on a free port.
    #[error("cannot listen on {addr} for the dashboard: {source}")]
    Admin {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
}

/// Where the demo also exports OTLP (`--otlp`).
#[derive(Debug, Clone, PartialEq)]
pub struct Otlp {
    /// Collector endpoint URL.
    pub endpoint: String,
    /// Wire protocol.
    pub protocol: OtlpProtocol,
}

// ---- the backends ----------------------------------------------------------------------------

/// The demo's backends, running; dropping it stops them and removes the CA file.
pub struct Backends {
    config: String,
    addresses: BTreeSet<IpAddr>,
    _servers: Vec<Server>,
    _ca_dir: tempfile::TempDir,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends").field("addresses", &self.addresses).finish_non_exhaustive()
    }
}

/// Where each backend listens, for the configuration.
struct Addrs {
    healthy: SocketAddr,
    healthy_kube_proxy: SocketAddr,
    shallow: SocketAddr,
    tls_port: SocketAddr,
    etp_node_port: SocketAddr,
    etp_kube_proxy: SocketAddr,
    allowlist: SocketAddr,
    no_sni: SocketAddr,
    host_route: SocketAddr,
    status_204: SocketAddr,
}

impl Backends {
    /// Makes the certificates, writes the CA's to a private temporary directory and starts every
    /// backend (each on its own `127.0.0.x`, or on `127.0.0.1` where only that one exists).
    pub async fn start() -> Result<Backends, DemoError> {
        let pki = Pki::new()?;
        // A certificate is no secret, but nobody else needs to list the directory.
        let ca_dir = tempfile::Builder::new()
            .prefix("parallax-demo-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(DemoError::CaFile)?;
        let ca_file = ca_dir.path().join("demo-ca.pem");
        std::fs::write(&ca_file, pki.ca_pem()).map_err(DemoError::CaFile)?;

        let shop = pki.leaf(&["shop.test"])?;
        let api = pki.leaf(&["api.test"])?;
        // ingress-nginx's default certificate, served to handshakes without a known SNI.
        let fake = pki.leaf(&["ingress.local"])?;
        let portal = pki.leaf(&["portal.test"])?;

        let mut servers = Vec::new();
        let mut start = async |host: u8, tls: Option<Arc<rustls::ServerConfig>>, route: Route| {
            let server = Server::start(host, tls, route).await?;
            let addr = server.addr;
            servers.push(server);
            Ok::<SocketAddr, DemoError>(addr)
        };
        let addrs = Addrs {
            healthy: start(11, Some(tls_site(shop, &[])?), shop_app).await?,
            healthy_kube_proxy: start(11, None, kube_proxy_two_endpoints).await?,
            shallow: start(12, None, cart_without_database).await?,
            tls_port: start(13, Some(tls_site(api, &[])?), api_app).await?,
            etp_node_port: start(14, None, web_app).await?,
            etp_kube_proxy: start(14, None, kube_proxy_no_endpoints).await?,
            allowlist: start(15, None, app).await?,
            no_sni: start(16, Some(tls_site(fake, &[("portal.test", portal)])?), portal_app).await?,
            host_route: start(17, None, host_routed_ingress).await?,
            status_204: start(18, None, search_app).await?,
        };
        let addresses = servers.iter().map(|s| s.addr.ip()).collect();
        Ok(Backends { config: config_text(&addrs, &ca_file), addresses, _servers: servers, _ca_dir: ca_dir })
    }

    /// The `probes.d` file that watches the backends (without `[export.otlp]`).
    pub fn config(&self) -> &str {
        &self.config
    }

    /// The loopback addresses the backends listen on.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addresses.iter().copied()
    }

    /// The compiled plan: [`Backends::config`], plus `[export.otlp]` when `otlp` is given. No
    /// environment variable changes it (no `PARALLAX_...` override applies).
    pub fn plan(&self, otlp: Option<&Otlp>) -> Result<Plan, DemoError> {
        let mut text = self.config.clone();
        if let Some(otlp) = otlp {
            let protocol = match otlp.protocol {
                OtlpProtocol::Grpc => "grpc",
                OtlpProtocol::HttpProtobuf => "http/protobuf",
            };
            let _ = write!(
                text,
                "\n[export.otlp]\nendpoint = {}\nprotocol = {}\n",
                toml_string(&otlp.endpoint),
                toml_string(protocol)
            );
        }
        let env: HashMap<String, String> = HashMap::new();
        config::load_str(Path::new("parallax-demo.toml"), &text, &env).map_err(DemoError::Config)
    }
}

/// The demo's configuration for backends at `a`, verifying with `ca_file`.
fn config_text(a: &Addrs, ca_file: &Path) -> String {
    let ca = toml_string(&ca_file.display().to_string());
    // Client views name the service as users do and dial the backend directly (`connect_to`),
    // so no DNS is involved; checker views dial the backend's address as the LB does.
    let client = |scheme: &str, name: &str, addr: SocketAddr, path: &str| {
        let url = toml_string(&format!("{scheme}://{name}:{}{path}", addr.port()));
        let mut keys = format!("url = {url}\nconnect_to = {}\n", toml_string(&addr.to_string()));
        if scheme == "https" {
            let _ = writeln!(keys, "ca_file = {ca}");
        }
        keys
    };
    let checker = |name: &str, profile: &str, url: String, extra: &str| {
        format!(
            "\n[[target.checker]]\nname = {}\nprofile = {}\nurl = {}\n{extra}",
            toml_string(name),
            toml_string(profile),
            toml_string(&url)
        )
    };
    let target = |name: &str, extra: &str, client: String, checkers: &[String]| {
        format!(
            "\n[[target]]\nname = {}\n{extra}\n[target.client]\n{client}{}",
            toml_string(name),
            checkers.concat()
        )
    };

    let mut text = String::from(
        "# parallax demo: every backend below runs inside the parallax process, on loopback.\n\
         [defaults]\n\
         interval = \"1s\"\n\
         timeout = \"800ms\"\n\
         hold = \"2s\"\n",
    );
    text.push_str(&target(
        "healthy",
        "",
        client("https", "shop.test", a.healthy, "/"),
        &[
            checker("alb", "aws-alb", format!("https://{}/healthz", a.healthy), ""),
            checker("kube-proxy", "kube-proxy", format!("http://{}/healthz", a.healthy_kube_proxy), ""),
        ],
    ));
    text.push_str(&target(
        "shallow-health",
        "",
        client("http", "cart.test", a.shallow, "/cart"),
        &[checker("alb", "aws-alb", format!("http://{}/healthz", a.shallow), "")],
    ));
    text.push_str(&target(
        "tls-port",
        "",
        client("https", "api.test", a.tls_port, "/"),
        &[checker("alb", "aws-alb", format!("http://{}/", a.tls_port), "")],
    ));
    text.push_str(&target(
        "etp-local",
        "",
        client("http", "web.test", a.etp_node_port, "/"),
        &[checker("kube-proxy", "kube-proxy", format!("http://{}/healthz", a.etp_kube_proxy), "")],
    ));
    text.push_str(&target(
        "allowlist",
        "allow_sources = [\"198.51.100.0/24\"]\n",
        client("http", "app.test", a.allowlist, "/"),
        &[checker("gcp", "gcp", format!("http://{}/healthz", a.allowlist), "")],
    ));
    text.push_str(&target(
        "no-sni",
        "",
        client("https", "portal.test", a.no_sni, "/"),
        &[checker("appgw", "azure-appgw", format!("https://{}/", a.no_sni), &format!("ca_file = {ca}\n"))],
    ));
    text.push_str(&target(
        "host-route",
        "",
        client("http", "blog.test", a.host_route, "/"),
        &[checker("alb", "aws-alb", format!("http://{}/", a.host_route), "")],
    ));
    text.push_str(&target(
        "status-204",
        "",
        client("http", "search.test", a.status_204, "/ready"),
        &[checker("gcp", "gcp", format!("http://{}/ready", a.status_204), "")],
    ));
    text
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---- the backends' behaviour ------------------------------------------------------------------

/// What a backend saw of a request.
struct Request {
    path: String,
    /// The Host header without its port.
    host: Option<String>,
}

/// What a backend answers.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }
}

/// A backend's behaviour: a plain function, so every backend is stateless and obvious.
type Route = fn(&Request) -> Reply;

fn shop_app(req: &Request) -> Reply {
    match req.path.as_str() {
        "/healthz" => Reply::text(200, "ok"),
        _ => Reply::text(200, "shop: 12 items in stock"),
    }
}

/// The app whose health path does not touch the database it needs for everything else.
fn cart_without_database(req: &Request) -> Reply {
    match req.path.as_str() {
        "/healthz" => Reply::text(200, "ok"),
        _ => Reply::text(503, "cart unavailable: cannot reach the database"),
    }
}

fn api_app(_: &Request) -> Reply {
    Reply::text(200, "{\"api\":\"ok\"}")
}

fn web_app(_: &Request) -> Reply {
    Reply::text(200, "web: served through the node port by a pod on another node")
}

fn app(req: &Request) -> Reply {
    match req.path.as_str() {
        "/healthz" => Reply::text(200, "ok"),
        _ => Reply::text(200, "app: ok"),
    }
}

fn portal_app(_: &Request) -> Reply {
    Reply::text(200, "portal: welcome")
}

/// Host-based routing as an ingress does it: one host, and a default backend for the rest.
fn host_routed_ingress(req: &Request) -> Reply {
    match req.host.as_deref() {
        Some("blog.test") => Reply::text(200, "blog: latest posts"),
        _ => Reply::text(404, "default backend - 404"),
    }
}

fn search_app(req: &Request) -> Reply {
    match req.path.as_str() {
        "/ready" => Reply::text(204, ""),
        _ => Reply::text(200, "search: ok"),
    }
}

fn kube_proxy_two_endpoints(_: &Request) -> Reply {
    kube_proxy_health(2)
}

fn kube_proxy_no_endpoints(_: &Request) -> Reply {
    kube_proxy_health(0)
}

/// kube-proxy's `healthCheckNodePort` answer for a node with `n` local ready endpoints
/// (`pkg/proxy/healthcheck/service_health.go`).
fn kube_proxy_health(n: u32) -> Reply {
    let body = format!(
        "{{\"service\":{{\"namespace\":\"demo\",\"name\":\"web\"}},\"localEndpoints\":{n},\"serviceProxyHealthy\":true}}"
    );
    Reply {
        status: if n == 0 { 503 } else { 200 },
        content_type: "application/json",
        body,
        headers: vec![("x-load-balancing-endpoint-weight", n.to_string())],
    }
}

// ---- serving ---------------------------------------------------------------------------------

/// Connections one backend serves at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// Time a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is dropped after this, whatever it is doing.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// A running backend; dropping it stops its accept loop and every connection.
struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Serves `route` on `127.0.0.host` (any free port), over TLS with `tls`.
    async fn start(
        host: u8,
        tls: Option<Arc<rustls::ServerConfig>>,
        route: Route,
    ) -> Result<Server, DemoError> {
        let listener = bind_loopback(host).await?;
        let addr =
            listener.local_addr().map_err(|source| DemoError::Backend { ip: addr_of(host), source })?;
        let task = tokio::spawn(accept_loop(listener, tls.map(TlsAcceptor::from), route));
        Ok(Server { addr, task })
    }
}

fn addr_of(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, host))
}

/// Binds `127.0.0.host` on a free port; where only `127.0.0.1` is configured (macOS), that one.
async fn bind_loopback(host: u8) -> Result<TcpListener, DemoError> {
    let ip = addr_of(host);
    match TcpListener::bind((ip, 0)).await {
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
            let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
            TcpListener::bind((ip, 0)).await.map_err(|source| DemoError::Backend { ip, source })
        }
        bound => bound.map_err(|source| DemoError::Backend { ip, source }),
    }
}

/// Accepts until aborted; connection tasks live in a set the loop owns, so aborting the loop
/// ends them too.
async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, route: Route) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or an aborted connection: both pass; the pause keeps a
                // persistent error from spinning.
                tracing::debug!(error = %e, "demo backend: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Without it, a response written in two segments (TLS records) waits for the
        // client's delayed ACK: 40 ms of latency that no real backend would show.
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        connections.spawn(async move {
            let _slot = slot;
            let serve = async move {
                match tls {
                    None => serve_http(TokioIo::new(stream), route).await,
                    // A failed handshake (plain HTTP to the TLS port: the checker's mistake the
                    // demo shows) ends the connection; rustls has sent its alert.
                    Some(acceptor) => {
                        if let Ok(Ok(stream)) =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            serve_http(TokioIo::new(stream), route).await;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, serve).await;
        });
    }
}

async fn serve_http<I>(io: I, route: Route)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name).to_ascii_lowercase());
        let reply = route(&Request { path: req.uri().path().to_owned(), host });
        async move { Ok::<_, Infallible>(response(reply)) }
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    // Clients going away mid-request are routine for a server.
    let _ = http.serve_connection(io, service).await;
}

fn response(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(reply.content_type));
    for (name, value) in reply.headers {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

// ---- certificates ----------------------------------------------------------------------------

/// The demo CA and the leaves it signs, valid from yesterday for 90 days.
struct Pki {
    ca: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Pki {
    fn new() -> Result<Pki, DemoError> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "parallax demo CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params);
        let key = rcgen::KeyPair::generate().map_err(cert_error)?;
        let ca = params.self_signed(&key).map_err(cert_error)?;
        Ok(Pki { ca, key })
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A server certificate for `names`.
    fn leaf(&self, names: &[&str]) -> Result<Arc<CertifiedKey>, DemoError> {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .map_err(cert_error)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, names.first().copied().unwrap_or("demo"));
        params.is_ca = rcgen::IsCa::NoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params);
        let key = rcgen::KeyPair::generate().map_err(cert_error)?;
        let cert = params.signed_by(&key, &self.ca, &self.key).map_err(cert_error)?;
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signer = rustls::crypto::ring::sign::any_supported_type(&der).map_err(cert_error)?;
        Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer)))
    }
}

fn cert_error(e: impl std::fmt::Display) -> DemoError {
    DemoError::Certificates(e.to_string())
}

/// From yesterday (a clock a little behind still accepts it) for 90 days, like a real leaf.
fn validity(params: &mut rcgen::CertificateParams) {
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let (y, m, d) = civil_date(now.checked_sub(day).unwrap_or(now));
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil_date(now + day * 90);
    params.not_after = rcgen::date_time_ymd(y, m, d);
}

/// The UTC calendar date of `t` (Howard Hinnant's `civil_from_days`).
fn civil_date(t: SystemTime) -> (i32, u8, u8) {
    let days = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}

/// A TLS listener's configuration: `default` for handshakes without a known SNI, `vhosts` by SNI;
/// HTTP/1.1 only (the backends speak nothing else).
fn tls_site(
    default: Arc<CertifiedKey>,
    vhosts: &[(&str, Arc<CertifiedKey>)],
) -> Result<Arc<rustls::ServerConfig>, DemoError> {
    let resolver = SniCertificates {
        default,
        vhosts: vhosts.iter().map(|(name, key)| ((*name).to_owned(), key.clone())).collect(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(cert_error)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Picks the certificate by SNI, as a vhosting proxy does; the default one without a match.
#[derive(Debug)]
struct SniCertificates {
    default: Arc<CertifiedKey>,
    vhosts: Vec<(String, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for SniCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let vhost = hello
            .server_name()
            .and_then(|sni| self.vhosts.iter().find(|(name, _)| name.eq_ignore_ascii_case(sni)));
        Some(vhost.map_or(&self.default, |(_, key)| key).clone())
    }
}

// ---- running it ------------------------------------------------------------------------------

/// How the terminal shows the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A table redrawn in place every second with ANSI sequences (stdout is a terminal).
    Live {
        /// Colour the verdicts and mismatches.
        color: bool,
    },
    /// A plain snapshot whenever a verdict, a last result or a mismatch changed (checked every
    /// second), and one at the end: for pipes and logs.
    Snapshots,
    /// No table: the output carries the JSON event lines only (`--events`).
    Off,
}

/// `parallax demo`'s settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The admin server's address (a free port on the same address when this one is taken).
    pub listen: SocketAddr,
    /// Stop after this long (`None`: at `shutdown` only).
    pub run_for: Option<Duration>,
    /// Also export OTLP here.
    pub otlp: Option<Otlp>,
    /// Write the JSON event lines to the output (and no table).
    pub events: bool,
    /// How the table is shown.
    pub display: Display,
}

/// Runs the demo until `shutdown` completes or `options.run_for` has passed: the backends, the
/// daemon on their configuration with the admin server and dashboard, and the table (or the
/// event lines) on `out`. Notes for people (the port fallback, the dashboard URL when the table
/// is off) go to stderr. Returns after the daemon has shut down cleanly.
pub async fn run(
    options: Options,
    out: Box<dyn Write + Send>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DemoError> {
    let backends = Backends::start().await?;
    let plan = backends.plan(options.otlp.as_ref())?;
    let (listener, fallback) = bind_admin(options.listen).await?;
    let admin = listener.local_addr().map_err(|source| DemoError::Admin { addr: options.listen, source })?;
    let url = dashboard_url(admin);
    if fallback {
        eprintln!(
            "parallax demo: {} is in use; the dashboard is on {admin} instead (--listen chooses another)",
            options.listen
        );
    }

    // `out` carries either the event lines or the table, never both.
    let (events, table_out, display): (Box<dyn Write + Send>, _, _) = if options.events {
        (out, None, Display::Off)
    } else {
        (Box::new(io::sink()), Some(out), options.display)
    };
    let telemetry = Arc::new(Telemetry::with_options(
        &plan.export,
        ResourceInfo { host_name: host_name(), node_name: None },
        // Without `--otlp`, no OTEL_* variable may turn exports on: the demo stays on loopback.
        &*demo_env(options.otlp.is_some()),
        TelemetryOptions { events, ..TelemetryOptions::default() },
    ));
    let targets = plan.targets.len();
    let views = plan.views().count();
    let daemon = Daemon::new(
        plan,
        telemetry,
        daemon::Options {
            env: Arc::new(HashMap::<String, String>::new()),
            watch_interval: None,
            ..daemon::Options::default()
        },
    );
    let handle = daemon.handle();
    let started = Instant::now();
    let deadline = options.run_for.map(|d| started + d);

    let ips: Vec<IpAddr> = backends.addresses().collect();
    let on = match (ips.first(), ips.last()) {
        (Some(first), Some(last)) if first != last => format!("{first} to {last}"),
        (Some(only), _) => only.to_string(),
        _ => "loopback".to_owned(),
    };
    let banner = format!(
        "parallax demo: {targets} targets, {views} views, backends on {on} (loopback only), every view \
         probed each second.\nDashboard: {url}\nStatus API: {url}api/v1/status\n"
    );
    let screen = table_out.map(Screen::start);
    match (&screen, display) {
        // Live frames carry the URL in their header; snapshots start with the banner.
        (Some(screen), Display::Snapshots) => screen.show(banner),
        (Some(_), Display::Live { .. }) => {}
        _ => eprint!("{banner}"),
    }

    let stop = async move {
        match deadline {
            Some(at) => tokio::select! {
                () = shutdown => {}
                () = tokio::time::sleep_until(at) => {}
            },
            None => shutdown.await,
        }
    };
    let mut running = tokio::spawn(daemon.run(Some(listener), stop));
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_fingerprint = String::new();
    loop {
        tokio::select! {
            _ = &mut running => break,
            _ = tick.tick() => {}
        }
        let Some(screen) = &screen else { continue };
        let doc = AdminState::status(&handle);
        let header = header_line(&url, fallback.then_some(options.listen), started.elapsed(), deadline);
        match display {
            Display::Live { color } => {
                let size = terminal_size::terminal_size().map(|(w, h)| (usize::from(w.0), usize::from(h.0)));
                screen.show(live_frame(&table(&doc, &header, size.map(|s| s.0), color), size.map(|s| s.1)));
            }
            Display::Snapshots => {
                let fingerprint = fingerprint(&doc);
                if fingerprint != last_fingerprint {
                    screen.show(format!("\n{}", table(&doc, &header, None, false)));
                    last_fingerprint = fingerprint;
                }
            }
            Display::Off => {}
        }
    }

    let doc = AdminState::status(&handle);
    let header = format!("parallax demo stopped after {} — {url} is closed", uptime(started.elapsed()));
    match (screen, display) {
        (Some(screen), Display::Live { color }) => {
            let width = terminal_size::terminal_size().map(|(w, _)| usize::from(w.0));
            screen.finish(format!("{CLEAR}{}", table(&doc, &header, width, color)));
        }
        (Some(screen), Display::Snapshots) => {
            screen.finish(format!("\n{}", table(&doc, &header, None, false)))
        }
        _ => eprintln!("{header}"),
    }
    drop(backends);
    Ok(())
}

/// Variables the demo's exporters may read: the process's with `--otlp` (headers, resource
/// attributes), none otherwise.
fn demo_env(otlp: bool) -> Box<dyn config::Env> {
    if otlp {
        Box::new(config::ProcessEnv)
    } else {
        Box::new(HashMap::<String, String>::new())
    }
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Binds `addr`, or a free port on the same address when `addr` is taken (`true` then).
async fn bind_admin(addr: SocketAddr) -> Result<(TcpListener, bool), DemoError> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok((listener, false)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr.port() != 0 => {
            let any = SocketAddr::new(addr.ip(), 0);
            let listener =
                TcpListener::bind(any).await.map_err(|source| DemoError::Admin { addr, source })?;
            Ok((listener, true))
        }
        Err(source) => Err(DemoError::Admin { addr, source }),
    }
}

/// The dashboard's URL for a listener on `addr` (on every interface: through loopback).
fn dashboard_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/", SocketAddr::new(ip, addr.port()))
}

// ---- the table -------------------------------------------------------------------------------

/// Cursor home and clear the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";

fn header_line(url: &str, taken: Option<SocketAddr>, up: Duration, deadline: Option<Instant>) -> String {
    let taken = taken.map(|a| format!(" ({a} was in use)")).unwrap_or_default();
    let end = match deadline {
        Some(at) => format!("stops in {}", uptime(at.saturating_duration_since(Instant::now()))),
        None => "Ctrl-C to stop".to_owned(),
    };
    format!("parallax demo — dashboard {url}{taken} — up {} — {end}", uptime(up))
}

fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// A frame for the live display: drawn from the top left, cut to the terminal's `height` (a
/// frame taller than the screen would scroll and leave stale lines behind).
fn live_frame(table: &str, height: Option<usize>) -> String {
    let lines: Vec<&str> = table.lines().collect();
    let room = height.map_or(lines.len(), |h| h.saturating_sub(1).max(1));
    let mut frame = String::from(CLEAR);
    if lines.len() <= room {
        frame.push_str(table);
    } else {
        for line in &lines[..room - 1] {
            frame.push_str(line);
            frame.push('\n');
        }
        let _ = writeln!(frame, "… {} more lines: see the dashboard", lines.len() - (room - 1));
    }
    frame
}

/// The status document as a table: one row per view (verdict, last probe, the mismatch it is
/// part of), then the evidence of each open mismatch, cut to `width` characters when given.
pub fn table(doc: &StatusDoc, header: &str, width: Option<usize>, color: bool) -> String {
    let mismatches: usize = doc.targets.iter().map(|t| t.mismatches.len()).sum();
    let views: usize = doc.targets.iter().map(|t| t.views.len()).sum();
    let mut rows: Vec<[String; 6]> =
        vec![["TARGET", "VIEW", "PROFILE", "VERDICT", "LAST PROBE", "MISMATCH"].map(str::to_owned)];
    for t in &doc.targets {
        for (i, v) in t.views.iter().enumerate() {
            rows.push([
                if i == 0 { t.name.clone() } else { String::new() },
                v.name.clone(),
                v.profile.map_or_else(|| "-".to_owned(), |p| p.as_str().to_owned()),
                v.verdict.state.to_owned(),
                last_probe(v),
                mismatch_cell(t, v),
            ]);
        }
    }
    let widths: Vec<usize> =
        (0..6).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();

    let mut out = format!(
        "{header}\n{}, {}, {}\n\n",
        plural(doc.targets.len(), "target"),
        plural(views, "view"),
        plural(mismatches, "open mismatch"),
    );
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let padded = format!("{cell:<w$}", w = widths[c]);
            let style = match (i, c) {
                (0, _) => Some("1"),
                (_, 3) => Some(match cell.as_str() {
                    "healthy" => "32",
                    "unhealthy" => "31",
                    _ => "2",
                }),
                (_, 5) if !cell.is_empty() => Some("33"),
                _ => None,
            };
            match style.filter(|_| color) {
                Some(style) => {
                    let _ = write!(line, "\x1b[{style}m{padded}\x1b[0m  ");
                }
                None => {
                    let _ = write!(line, "{padded}  ");
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if mismatches > 0 {
        out.push_str("\nWhy:\n");
        for t in &doc.targets {
            for m in &t.mismatches {
                let flipped: Vec<&str> = m.mismatch.flipped.iter().map(|a| a.as_str()).collect();
                let flipped = if flipped.is_empty() {
                    String::new()
                } else {
                    format!(" [flipped: {}]", flipped.join(", "))
                };
                let line =
                    format!("  {}/{}: {}{flipped}", t.name, m.mismatch.checker_view, m.mismatch.evidence);
                out.push_str(&cut(&line, width));
                out.push('\n');
            }
        }
    }
    out
}

/// "1 view", "2 views", "3 open mismatches".
fn plural(n: usize, noun: &str) -> String {
    match (n, noun.ends_with("ch")) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        (_, false) => format!("{n} {noun}s"),
    }
}

/// "200 · 1.3 ms", "http_tls_required · 0.4 ms", "no_local_endpoints 503 · 0.6 ms".
fn last_probe(v: &ViewStatus) -> String {
    let Some(o) = &v.last_outcome else { return "waiting for the first probe".to_owned() };
    let what = match (o.error, o.status) {
        (Some(e), Some(s)) => format!("{} {s}", e.as_str()),
        (Some(e), None) => e.as_str().to_owned(),
        (None, Some(s)) => s.to_string(),
        (None, None) => "ok".to_owned(),
    };
    format!("{what} · {:.1} ms", o.timings.total.as_secs_f64() * 1e3)
}

/// "blackhole: shallow_health_path" on the row of a checker in an open mismatch.
fn mismatch_cell(t: &TargetStatus, v: &ViewStatus) -> String {
    t.mismatches
        .iter()
        .filter(|m| *m.mismatch.checker_view == *v.name)
        .map(|m| format!("{}: {}", m.mismatch.direction.as_str(), m.mismatch.diagnosis))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `line` cut to `width` characters with an ellipsis.
fn cut(line: &str, width: Option<usize>) -> String {
    match width {
        Some(w) if line.chars().count() > w => {
            let mut s: String = line.chars().take(w.saturating_sub(1)).collect();
            s.push('…');
            s
        }
        _ => line.to_owned(),
    }
}

/// What a snapshot is printed for: verdicts, last results and mismatches, not latencies.
fn fingerprint(doc: &StatusDoc) -> String {
    let mut f = String::new();
    for t in &doc.targets {
        for v in &t.views {
            let last = v.last_outcome.as_ref().map(|o| (o.error.map(|e| e.as_str()), o.status));
            let _ = write!(f, "{}/{}={}:{last:?};", t.name, v.name, v.verdict.state);
        }
        for m in &t.mismatches {
            let _ = write!(
                f,
                "{}/{}!{}:{};",
                t.name,
                m.mismatch.checker_view,
                m.mismatch.direction.as_str(),
                m.mismatch.diagnosis
            );
        }
    }
    f
}

/// Writes frames to the terminal from a thread of its own: a terminal (or pipe) that does not
/// read must stall neither the runtime nor the probes. A frame that finds the writer busy is
/// dropped; the next one replaces it.
struct Screen {
    frames: SyncSender<String>,
    done: Receiver<()>,
}

impl Screen {
    fn start(mut out: Box<dyn Write + Send>) -> Screen {
        let (frames, rx) = sync_channel::<String>(2);
        let (done_tx, done) = sync_channel(1);
        let spawned = std::thread::Builder::new().name("parallax-demo-screen".to_owned()).spawn(move || {
            while let Ok(frame) = rx.recv() {
                if out.write_all(frame.as_bytes()).and_then(|()| out.flush()).is_err() {
                    // Nobody reads any more (a closed pipe): the demo carries on without a table.
                    break;
                }
            }
            let _ = done_tx.send(());
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the terminal writer ({e}); no table is shown");
        }
        Screen { frames, done }
    }

    fn show(&self, frame: String) {
        let _ = self.frames.try_send(frame);
    }

    /// Shows the last frame and waits (up to 2 s) until it is written.
    fn finish(self, frame: String) {
        let Screen { frames, done } = self;
        let _ = frames.try_send(frame);
        drop(frames);
        let _ = done.recv_timeout(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_date_matches_known_days() {
        let at = |secs: u64| civil_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), (1970, 1, 1));
        assert_eq!(at(951_782_400), (2000, 2, 29));
        assert_eq!(at(1_709_164_800), (2024, 2, 29));
        assert_eq!(at(1_735_689_599), (2024, 12, 31));
        assert_eq!(at(1_735_689_600), (2025, 1, 1));
    }

    #[test]
    fn toml_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(toml_string("a\"b\\c\nd"), "\"a\\\"b\\\\c\\u000Ad\"");
        assert_eq!(toml_string("/tmp/parallax-demo-x/demo-ca.pem"), "\"/tmp/parallax-demo-x/demo-ca.pem\"");
    }

    #[test]
    fn help_names_every_target_and_its_diagnosis() {
        let help = help();
        for s in &SCENARIOS {
            assert!(help.contains(&format!("\n  {}\n", s.target)), "{}", s.target);
            if let Some(e) = s.expected {
                assert!(help.contains(e.diagnosis.as_str()), "{}", e.diagnosis);
            }
        }
        assert!(help.lines().all(|l| l.chars().count() <= 100), "{help}");
    }

    #[test]
    fn a_live_frame_never_outgrows_the_terminal() {
        let table: String = (0..40).map(|i| format!("line {i}\n")).collect();
        let frame = live_frame(&table, Some(24));
        assert!(frame.starts_with(CLEAR));
        assert_eq!(frame.lines().count(), 23, "{frame}");
        assert!(frame.contains("… 18 more lines"), "{frame}");
        assert_eq!(live_frame("a\nb\n", Some(24)), format!("{CLEAR}a\nb\n"));
    }

    #[test]
    fn cut_keeps_short_lines_and_ellipsizes_long_ones() {
        assert_eq!(cut("abcdef", Some(4)), "abc…");
        assert_eq!(cut("abc", Some(4)), "abc");
        assert_eq!(cut("abcdef", None), "abcdef");
    }

    #[test]
    fn the_dashboard_of_an_unspecified_address_is_reached_through_loopback() {
        assert_eq!(dashboard_url("0.0.0.0:9464".parse().unwrap()), "http://127.0.0.1:9464/");
        assert_eq!(dashboard_url("[::]:9464".parse().unwrap()), "http://[::1]:9464/");
        assert_eq!(dashboard_url("127.0.0.2:80".parse().unwrap()), "http://127.0.0.2:80/");
    }

    fn status_doc() -> StatusDoc {
        use crate::config::{ProfileName, Role};
        use crate::diff::{Attribute, Basis, Mismatch};
        use crate::probe::{ErrorCode, Outcome, Phase, RequestSummary, Timings};
        use crate::status::{OpenMismatchStatus, VerdictStatus};

        let verdict = |state| VerdictStatus {
            state,
            since: None,
            consecutive_ok: 0,
            consecutive_fail: 0,
            rise: 2,
            fall: 2,
        };
        let outcome = Outcome {
            target: "shallow-health".into(),
            view: "client".into(),
            role: Role::Client,
            profile: None,
            ok: false,
            phase: Some(Phase::Http),
            error: Some(ErrorCode::HttpStatus),
            detail: None,
            status: Some(503),
            grpc_status: None,
            local_endpoints: None,
            timings: Timings { total: Duration::from_micros(1250), ..Timings::default() },
            peer: None,
            local: None,
            request: RequestSummary::default(),
            tls: None,
            resolved: Vec::new(),
            body_bytes: None,
        };
        let view = |name: &str, role, profile, state, last_outcome| ViewStatus {
            name: name.to_owned(),
            role,
            profile,
            url: String::new(),
            interval_ms: 1000,
            verdict: verdict(state),
            last_outcome,
            recent: Vec::new(),
            probes: 0,
            failures: 0,
            skipped: 0,
        };
        let mismatch = Mismatch {
            target: "shallow-health".into(),
            client_view: "client".into(),
            checker_view: "alb".into(),
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::ShallowHealthPath,
            flipped: vec![Attribute::Path],
            evidence: "client got 503 while the checker passes with path /healthz".to_owned(),
            basis: Basis::Probes,
            client_address: None,
            checker_address: None,
            client_error: Some(ErrorCode::HttpStatus),
            checker_error: None,
            attribution: None,
        };
        StatusDoc {
            targets: vec![TargetStatus {
                name: "shallow-health".to_owned(),
                views: vec![
                    view("client", Role::Client, None, "unhealthy", Some(outcome)),
                    view("alb", Role::Checker, Some(ProfileName::AwsAlb), "healthy", None),
                ],
                mismatches: vec![OpenMismatchStatus {
                    mismatch,
                    since: String::new(),
                    opened_at: String::new(),
                    open_for_s: 1.0,
                }],
            }],
            ..StatusDoc::default()
        }
    }

    #[test]
    fn the_table_shows_views_verdicts_last_probes_and_mismatches() {
        let doc = status_doc();
        let plain = table(&doc, "HEADER", None, false);
        let lines: Vec<&str> = plain.lines().collect();
        assert_eq!(lines[0], "HEADER");
        assert_eq!(lines[1], "1 target, 2 views, 1 open mismatch");
        assert!(lines[3].starts_with("TARGET          VIEW    PROFILE  VERDICT    LAST PROBE"), "{plain}");
        assert!(
            lines[4].starts_with("shallow-health  client  -        unhealthy  http_status 503 · 1.2 ms"),
            "{plain}"
        );
        assert!(
            lines[5].starts_with("                alb     aws-alb  healthy    waiting for the first probe"),
            "{plain}"
        );
        assert!(lines[5].ends_with("blackhole: shallow_health_path"), "{plain}");
        assert_eq!(lines[7], "Why:");
        assert_eq!(
            lines[8],
            "  shallow-health/alb: client got 503 while the checker passes with path /healthz [flipped: path]"
        );
        assert!(!plain.contains('\x1b'));

        let narrow = table(&doc, "HEADER", Some(40), true);
        assert!(
            narrow.contains("\x1b[31munhealthy\x1b[0m") && narrow.contains("\x1b[32mhealthy"),
            "{narrow}"
        );
        assert!(
            narrow.lines().last().is_some_and(|l| l.chars().count() == 40 && l.ends_with('…')),
            "{narrow}"
        );
    }

    #[test]
    fn snapshots_follow_verdicts_results_and_mismatches_not_latencies() {
        let doc = status_doc();
        let mut slower = doc.clone();
        if let Some(o) = slower.targets[0].views[0].last_outcome.as_mut() {
            o.timings.total = Duration::from_millis(40);
        }
        assert_eq!(fingerprint(&doc), fingerprint(&slower));
        let mut healed = doc.clone();
        healed.targets[0].mismatches.clear();
        assert_ne!(fingerprint(&doc), fingerprint(&healed));
        let mut flipped = doc.clone();
        flipped.targets[0].views[1].verdict.state = "unhealthy";
        assert_ne!(fingerprint(&doc), fingerprint(&flipped));
    }

    #[tokio::test]
    async fn the_embedded_configuration_compiles_with_every_scenario() {
        let backends = Backends::start().await.expect("backends start on loopback");
        assert!(backends.addresses().all(|ip| ip.is_loopback()));
        let plan = backends.plan(None).expect("the demo configuration compiles");
        let names: Vec<&str> = plan.targets.iter().map(|t| &*t.name).collect();
        assert_eq!(names, SCENARIOS.map(|s| s.target));
        for (target, scenario) in plan.targets.iter().zip(&SCENARIOS) {
            if let Some(e) = scenario.expected {
                assert!(target.checkers.iter().any(|c| &*c.name == e.checker), "{}", scenario.target);
            }
            for view in std::iter::once(&target.client).chain(&target.checkers) {
                assert_eq!(view.interval, Duration::from_secs(1), "{}/{}", target.name, view.name);
            }
        }
        assert!(plan.export.otlp.is_none());

        let otlp = Otlp { endpoint: "http://127.0.0.1:4317".to_owned(), protocol: OtlpProtocol::Grpc };
        let plan = backends.plan(Some(&otlp)).expect("with OTLP");
        assert_eq!(plan.export.otlp.map(|o| o.endpoint), Some(otlp.endpoint));
        let bad = Otlp { endpoint: "not a url\"\n[x]".to_owned(), protocol: OtlpProtocol::HttpProtobuf };
        assert!(matches!(backends.plan(Some(&bad)), Err(DemoError::Config(_))));
    }
}
