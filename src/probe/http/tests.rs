//! The HTTP layer against real and scripted loopback servers: the Host rule, the exact bytes a
//! request puts on the wire, HTTP/1.1 and HTTP/2 with and without TLS. The servers here also
//! serve the classification tests in `classify`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http::{Method, Request, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{exchange, Received, Response, Sent};
use crate::config::{Endpoint, Host, HostHeader, HttpVersion, MaybeSecret, Scheme, Secret, View};
use crate::pki::LeafSpec;
use crate::probe::Failure;
use crate::testkit::{accept_one, host_header, ip, loopback_view, soon};

/// [`exchange`] with the Host value `view` sends when it dialed `dialed`, as the engine does.
pub(super) async fn exchange_dialed<S>(
    io: S,
    view: &View,
    dialed: SocketAddr,
    h2: bool,
    deadline: Instant,
) -> (Sent, Result<Response, Failure>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    exchange(io, view, host_header(view, dialed), h2, deadline).await
}

/// Accepts one connection on `ip`, reads the request head (and a `content-length` body),
/// hands both to `answer`, and returns the request bytes from the join handle.
pub(super) async fn raw_server<F, Fut>(ip_str: &str, answer: F) -> (SocketAddr, JoinHandle<Vec<u8>>)
where
    F: FnOnce(TcpStream, Vec<u8>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (addr, accepted) = accept_one(ip_str).await;
    let task = tokio::spawn(async move {
        let mut stream = accepted.await;
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

pub(super) async fn answer_with(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
}

pub(super) async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

pub(super) fn err(result: Result<Response, Failure>) -> Failure {
    match result {
        Ok(r) => panic!("expected a failure, got status {} body {:?}", r.status, r.body),
        Err(f) => f,
    }
}

#[test]
fn host_header_follows_the_rule() {
    let dialed: SocketAddr = "10.1.2.3:30080".parse().unwrap();
    let mut v = loopback_view(Scheme::Http, "127.0.0.1:80".parse().unwrap());
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
    let mut v = loopback_view(Scheme::Http, "127.0.0.1:80".parse().unwrap());
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

#[tokio::test]
async fn http10_without_host_writes_exactly_the_haproxy_request() {
    let (addr, server) = raw_server("127.0.41.1", |mut s, _| async move {
        answer_with(&mut s, b"HTTP/1.0 200 OK\r\nServer: raw\r\n\r\nok").await;
    })
    .await;
    let mut v = loopback_view(Scheme::Http, addr);
    v.http.method = Method::OPTIONS;
    v.path = "/".into();
    v.http.version = HttpVersion::Http10;
    v.http.host = HostHeader::None;
    v.http.user_agent = None;

    let (sent, result) = exchange_dialed(connect(addr).await, &v, addr, false, soon()).await;
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
    let mut v = loopback_view(Scheme::Http, addr);
    v.http.host = HostHeader::DialedAddress;
    v.http.user_agent = Some("kube-probe/1.30".into());
    v.http.headers = vec![
        (HeaderName::from_static("accept"), MaybeSecret::Plain("*/*".into())),
        (HeaderName::from_static("x-probe-id"), MaybeSecret::Plain("abc".into())),
    ];
    v.http.connection_close = true;
    v.http.title_case_headers = true;
    v.http.version = HttpVersion::Http11;

    let (sent, result) = exchange_dialed(connect(addr).await, &v, addr, false, soon()).await;
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
    let mut v = loopback_view(Scheme::Http, addr);
    v.http.method = Method::POST;
    v.http.host = HostHeader::Value("shop.example.com".into());
    v.http.headers =
        vec![(HeaderName::from_static("authorization"), MaybeSecret::Secret(Secret::new("Bearer s3cret")))];
    v.http.body = Some(MaybeSecret::Plain("ping".into()));

    let (sent, result) = exchange_dialed(connect(addr).await, &v, addr, false, soon()).await;
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

type Seen = Arc<Mutex<Vec<(Version, Option<String>, Option<String>, Option<String>)>>>;

/// A hyper server answering `200 hello` after `delay`, recording (version, host,
/// authority, user-agent) of each request.
async fn hyper_server(ip_str: &str, h2: bool, delay: Duration) -> (SocketAddr, Seen) {
    let (addr, accepted) = accept_one(ip_str).await;
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        let stream = accepted.await;
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

pub(super) fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS listener for `localhost` with ALPN `h2` and `http/1.1`, serving `200 hello` over
/// whichever protocol the handshake chose; returns the certificate for the client to trust.
async fn tls_server(
    ip_str: &str,
    delay: Duration,
) -> (SocketAddr, Seen, rustls_pki_types::CertificateDer<'static>) {
    let leaf = LeafSpec::new(&["localhost"]).self_signed().unwrap();
    let (key, der) = (leaf.key(), leaf.der().clone());
    let mut config = rustls::ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (addr, accepted) = accept_one(ip_str).await;
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        let stream = accepted.await;
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
    let mut v = loopback_view(Scheme::Https, addr);
    v.url_endpoint = Endpoint { host: Host::Name("localhost".into()), port: addr.port() };
    let (sent, result) = exchange_dialed(tls, &v, addr, h2, soon()).await;
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
    let mut v = loopback_view(Scheme::Https, addr);
    v.url_endpoint = Endpoint { host: Host::Name("localhost".into()), port: addr.port() };
    let (sent, result) = exchange_dialed(tls, &v, addr, h2, soon()).await;
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
    let v = loopback_view(Scheme::Http, addr);
    let (sent, result) = exchange_dialed(connect(addr).await, &v, addr, false, soon()).await;
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
    let mut v = loopback_view(Scheme::Http, addr);
    v.http.version = HttpVersion::Http2;
    v.http.host = HostHeader::DialedAddress;
    v.http.connection_close = true; // must not reach an HTTP/2 server
    let (sent, result) = exchange_dialed(connect(addr).await, &v, addr, false, soon()).await;
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
    let mut v = loopback_view(Scheme::Http, addr);
    v.url_endpoint = Endpoint { host: Host::Name("shop.example.com".into()), port: 80 };
    v.http.host = HostHeader::None;
    // ALPN-style h2 with an HTTP/1.1 view: the server decides.
    v.http.version = HttpVersion::Http11;
    let (sent, result) = exchange_dialed(connect(addr).await, &v, addr, true, soon()).await;
    assert_eq!(result.unwrap().version, "HTTP/2");
    assert_eq!(sent.host.as_deref(), Some("shop.example.com"));
    assert_eq!(seen.lock().unwrap()[0].2.as_deref(), Some("shop.example.com"));
}
