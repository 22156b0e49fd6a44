//! The demo's backends: small HTTP and HTTPS servers (hyper, rustls) inside this process, one
//! per scenario on its own loopback address, each answering as its `Route` says.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
use tokio_rustls::TlsAcceptor;

use super::scenarios::{config_text, toml_string, Addrs};
use super::{DemoError, Otlp};
use crate::config::{self, OtlpProtocol, Plan};
use crate::pki::{Authority, LeafSpec, Validity};

/// How long the demo's certificates are valid (from yesterday), like a real leaf.
const CERTIFICATE_DAYS: u32 = 90;

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

impl Backends {
    /// Makes the certificates, writes the CA's to a private temporary directory and starts every
    /// backend (each on its own `127.0.0.x`, or on `127.0.0.1` where only that one exists).
    pub async fn start() -> Result<Backends, DemoError> {
        let validity = Validity::days_from(SystemTime::now(), CERTIFICATE_DAYS);
        let ca = Authority::new("parallax demo CA", validity).map_err(cert_error)?;
        // A certificate is no secret, but nobody else needs to list the directory.
        let ca_dir = tempfile::Builder::new()
            .prefix("parallax-demo-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(DemoError::CaFile)?;
        let ca_file = ca_dir.path().join("demo-ca.pem");
        std::fs::write(&ca_file, ca.pem()).map_err(DemoError::CaFile)?;

        let leaf = |name: &str| {
            ca.issue(&LeafSpec::new(&[name]).validity(validity))
                .and_then(|leaf| leaf.certified_key())
                .map_err(cert_error)
        };
        let shop = leaf("shop.test")?;
        let api = leaf("api.test")?;
        // ingress-nginx's default certificate, served to handshakes without a known SNI.
        let fake = leaf("ingress.local")?;
        let portal = leaf("portal.test")?;

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

fn cert_error(e: impl std::fmt::Display) -> DemoError {
    DemoError::Certificates(e.to_string())
}

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
        let addr = listener.local_addr().map_err(|error| DemoError::Backend { ip: addr_of(host), error })?;
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
            TcpListener::bind((ip, 0)).await.map_err(|error| DemoError::Backend { ip, error })
        }
        bound => bound.map_err(|error| DemoError::Backend { ip, error }),
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

#[cfg(test)]
mod tests {
    use super::super::SCENARIOS;
    use super::*;

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
            for view in target.views() {
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
