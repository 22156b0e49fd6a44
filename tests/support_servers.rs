//! Self-tests of the test servers in `tests/support/`, with plain clients (raw TCP, rustls,
//! hyper, hand-made DNS queries): the servers must be right before they can judge parallax.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

use hickory_server::proto::op::{Message, Query as DnsQuery, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use support::certs::{self, Ca};
use support::dns::{Answer, DnsServer, SilentDns};
use support::grpc::{self, GrpcHealthServer, Health, HealthCheckRequest, HealthCheckResponse};
use support::http::{router, HttpServer, Reply, TlsSite};
use support::raw::{FullBacklog, RawServer, ResetOnAccept, Step};
use support::recording::{self, RecordingServer};
use support::{lo, ClosedPort};

const LIMIT: Duration = Duration::from_secs(5);

/// Sends `request` and reads until EOF (at most 5 s).
async fn roundtrip(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream =
        timeout(LIMIT, TcpStream::connect(addr)).await.expect("connect in time").expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = timeout(LIMIT, stream.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn http_server_routes_and_records() {
    let server = HttpServer::start(
        lo(101),
        router(|req| match req.path.as_str() {
            "/healthz" => Reply::ok("fine").header("x-test", "1"),
            _ => Reply::status(404, "no"),
        }),
    )
    .await;
    let answer =
        roundtrip(server.addr, b"GET /healthz HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
            .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("x-test: 1") && text.ends_with("fine"), "{text}");
    let answer = roundtrip(server.addr, b"OPTIONS / HTTP/1.0\r\n\r\n").await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.0 404"), "{answer:?}");
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("GET", "/healthz"));
    assert_eq!(seen[0].host.as_deref(), Some("shop.test"));
    assert_eq!(seen[0].peer.ip(), std::net::IpAddr::from([127, 0, 0, 1]));
    assert_eq!(seen[1].host, None, "an HTTP/1.0 request without Host has none");
    assert_eq!(seen[1].version, http::Version::HTTP_10);
}

fn client_config(ca: &Ca, alpn: &[&[u8]], sni: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls_pemfile_free_parse(&ca.pem());
    roots.add(der).expect("add root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.enable_sni = sni;
    Arc::new(config)
}

/// The DER of the single certificate in `pem` (base64 between the armour lines).
fn rustls_pemfile_free_parse(pem: &str) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem")
}

#[tokio::test]
async fn https_server_picks_certificates_by_sni_and_records_it() {
    let ca = Ca::new("support test CA");
    let site = TlsSite::new(ca.leaf(&["default.test"])).vhost("shop.test", ca.leaf(&["shop.test"]));
    let server =
        HttpServer::start_tls(lo(102), site, router(|req| Reply::ok(format!("{:?}", req.version)))).await;

    // With SNI: the vhost's certificate verifies for shop.test, and h2 is negotiated.
    let connector = tokio_rustls::TlsConnector::from(client_config(&ca, &[b"h2"], true));
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let tls =
        connector.connect(ServerName::try_from("shop.test").expect("name"), tcp).await.expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.expect("h2");
    let driver = tokio::spawn(conn);
    let request = http::Request::get("https://shop.test/x").body(Full::new(Bytes::new())).expect("request");
    let response = sender.send_request(request).await.expect("response");
    let body = response.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"HTTP/2.0");
    driver.abort();

    // Without SNI: the default certificate, which verifies for default.test only.
    let connector = tokio_rustls::TlsConnector::from(client_config(&ca, &[b"http/1.1"], false));
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let tls = connector.connect(ServerName::try_from("default.test").expect("name"), tcp).await;
    assert!(tls.is_ok(), "no SNI gets the default certificate: {tls:?}");
    let connector = tokio_rustls::TlsConnector::from(client_config(&ca, &[], false));
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let tls = connector.connect(ServerName::try_from("shop.test").expect("name"), tcp).await;
    assert!(tls.is_err(), "the default certificate is not valid for shop.test");

    assert_eq!(server.snis(), vec![Some("shop.test".to_owned()), None, None]);
    assert_eq!(server.requests()[0].sni.as_deref(), Some("shop.test"));
    assert_eq!(server.requests()[0].host.as_deref(), Some("shop.test"));
}

#[tokio::test]
async fn raw_server_runs_its_script() {
    let server = RawServer::start(
        lo(103),
        vec![
            Step::ReadHead,
            Step::Write(b"HTTP/1.1 200 OK\r\n".to_vec()),
            Step::Trickle(b"ab".to_vec(), Duration::from_millis(20)),
            Step::Close,
        ],
    )
    .await;
    let answer = roundtrip(server.addr, b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(answer, b"HTTP/1.1 200 OK\r\nab");
    let conns = server.connections();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].received, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(conns[0].written, 19);

    let endless = RawServer::start(
        lo(103),
        vec![Step::Endless { chunk: vec![b'x'; 1000], max_bytes: 10_000 }, Step::Close],
    )
    .await;
    assert_eq!(roundtrip(endless.addr, b"").await.len(), 10_000, "Endless stops at max_bytes");

    let reset = RawServer::start(lo(103), vec![Step::ReadSome, Step::Reset]).await;
    let mut stream = TcpStream::connect(reset.addr).await.expect("connect");
    stream.write_all(b"hello").await.expect("write");
    let mut buf = [0u8; 16];
    let read = timeout(LIMIT, stream.read(&mut buf)).await.expect("read in time");
    assert_eq!(read.map_err(|e| e.kind()).err(), Some(std::io::ErrorKind::ConnectionReset));
}

#[tokio::test]
async fn full_backlog_drops_syns_and_closed_port_refuses() {
    let full = FullBacklog::start(lo(104)).await;
    let attempt = timeout(Duration::from_millis(500), TcpStream::connect(full.addr)).await;
    assert!(attempt.is_err(), "connecting to a full backlog must hang, got {attempt:?}");
    let closed = ClosedPort::new(lo(104));
    let refused = TcpStream::connect(closed.addr).await.map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(std::io::ErrorKind::ConnectionRefused));
}

#[tokio::test]
async fn reset_on_accept_resets_every_connection() {
    let server = ResetOnAccept::start(lo(108));
    for _ in 0..3 {
        // The reset can already be there when connect returns, or show up at the first read.
        let reset = match TcpStream::connect(server.addr).await {
            Err(e) => e.kind(),
            Ok(mut stream) => {
                let mut buf = [0u8; 16];
                let read = timeout(LIMIT, stream.read(&mut buf)).await.expect("read in time");
                read.map_err(|e| e.kind()).err().unwrap_or(std::io::ErrorKind::UnexpectedEof)
            }
        };
        assert_eq!(reset, std::io::ErrorKind::ConnectionReset);
    }
    let resets = support::wait_for(LIMIT, || (server.resets() == 3).then_some(())).await;
    assert!(resets.is_some(), "{} resets", server.resets());
}

#[tokio::test]
async fn recording_server_records_proxy_header_source_and_sni() {
    let server = RecordingServer::start(lo(105), recording::http_ok()).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.77:0".parse().expect("addr")).expect("bind source");
    let mut stream = socket.connect(server.addr).await.expect("connect");
    let local = stream.local_addr().expect("local");
    let head =
        format!("PROXY TCP4 {} {} {} {}\r\n", local.ip(), server.addr.ip(), local.port(), server.addr.port());
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(b"POST /x HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc").await.expect("write");
    let mut answer = Vec::new();
    timeout(LIMIT, stream.read_to_end(&mut answer)).await.expect("in time").expect("read");
    assert_eq!(answer, recording::http_ok());
    let records = server.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].peer, local);
    assert_eq!(records[0].proxy_header.as_deref(), Some(head.as_bytes()));
    assert_eq!(records[0].request, b"POST /x HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc");
    assert_eq!(records[0].head_lines(), vec!["POST /x HTTP/1.1", "content-length: 3"]);

    // A PROXY v2 LOCAL block, then TLS with SNI.
    let ca = Ca::new("recording CA");
    let tls_server = RecordingServer::start_tls(lo(105), ca.leaf(&["rec.test"]), recording::http_ok()).await;
    let mut tcp = TcpStream::connect(tls_server.addr).await.expect("connect");
    let mut v2 = recording::PROXY_V2_SIGNATURE.to_vec();
    v2.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    tcp.write_all(&v2).await.expect("write v2");
    let connector = tokio_rustls::TlsConnector::from(client_config(&ca, &[b"http/1.1"], true));
    let mut tls =
        connector.connect(ServerName::try_from("rec.test").expect("name"), tcp).await.expect("handshake");
    tls.write_all(b"GET / HTTP/1.1\r\nhost: rec.test\r\n\r\n").await.expect("write");
    let mut answer = Vec::new();
    let _ = timeout(LIMIT, tls.read_to_end(&mut answer)).await;
    assert!(answer.starts_with(b"HTTP/1.1 200 OK"), "{answer:?}");
    let records = tls_server.records();
    assert_eq!(records[0].proxy_header.as_deref(), Some(&v2[..]));
    assert!(records[0].tls);
    assert_eq!(records[0].sni.as_deref(), Some("rec.test"));
    assert_eq!(records[0].head_lines(), vec!["GET / HTTP/1.1", "host: rec.test"]);

    // A bare connection that sends nothing is recorded at EOF.
    drop(TcpStream::connect(server.addr).await.expect("connect"));
    let records = server.wait_records(2, LIMIT).await;
    assert_eq!(records.len(), 2);
    assert_eq!((records[1].proxy_header.clone(), records[1].request.clone()), (None, Vec::new()));
}

async fn ask(server: std::net::SocketAddr, name: &str, rtype: RecordType) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut query = Message::new();
    query.set_id(7).set_recursion_desired(true);
    query.add_query(DnsQuery::query(Name::from_ascii(name).expect("name"), rtype));
    socket.send_to(&query.to_vec().expect("encode"), server).await.expect("send");
    let mut buf = [0u8; 1500];
    let (n, _) = timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await.ok()?.ok()?;
    Some(Message::from_vec(&buf[..n]).expect("decode"))
}

#[tokio::test]
async fn dns_server_answers_its_zone() {
    let server = DnsServer::start(
        lo(106),
        &[
            ("two.test", Answer::Addrs(vec![lo(31), lo(32)])),
            ("broken.test", Answer::ServFail),
            ("empty.test", Answer::Empty),
        ],
    )
    .await;
    let answer = ask(server.addr, "two.test.", RecordType::A).await.expect("answer");
    assert_eq!(answer.response_code(), ResponseCode::NoError);
    let ips: Vec<_> = answer.answers().iter().map(|r| r.data().clone()).collect();
    assert_eq!(ips, vec![RData::A(lo4(31).into()), RData::A(lo4(32).into())]);
    let answer = ask(server.addr, "two.test.", RecordType::AAAA).await.expect("answer");
    assert_eq!((answer.response_code(), answer.answers().len()), (ResponseCode::NoError, 0));
    let answer = ask(server.addr, "missing.test.", RecordType::A).await.expect("answer");
    assert_eq!(answer.response_code(), ResponseCode::NXDomain);
    let answer = ask(server.addr, "broken.test.", RecordType::A).await.expect("answer");
    assert_eq!(answer.response_code(), ResponseCode::ServFail);
    let answer = ask(server.addr, "empty.test.", RecordType::A).await.expect("answer");
    assert_eq!((answer.response_code(), answer.answers().len()), (ResponseCode::NoError, 0));
    assert_eq!(server.queries().len(), 5);

    // TCP on the same port.
    let mut tcp = TcpStream::connect(server.addr).await.expect("tcp connect");
    let mut query = Message::new();
    query.set_id(9).add_query(DnsQuery::query(Name::from_ascii("two.test.").expect("name"), RecordType::A));
    let bytes = query.to_vec().expect("encode");
    tcp.write_all(&(bytes.len() as u16).to_be_bytes()).await.expect("write");
    tcp.write_all(&bytes).await.expect("write");
    let mut len = [0u8; 2];
    timeout(LIMIT, tcp.read_exact(&mut len)).await.expect("in time").expect("read");
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    tcp.read_exact(&mut buf).await.expect("read");
    assert_eq!(Message::from_vec(&buf).expect("decode").answers().len(), 2);

    let silent = SilentDns::start(lo(106)).await;
    assert!(ask(silent.addr, "two.test.", RecordType::A).await.is_none(), "the silent server answered");
}

fn lo4(n: u8) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 0, 0, n)
}

async fn grpc_check(
    addr: std::net::SocketAddr,
    service: &str,
) -> (http::HeaderMap, Vec<u8>, Option<http::HeaderMap>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.expect("h2");
    let driver = tokio::spawn(conn);
    let body = grpc::frame(&HealthCheckRequest { service: service.to_owned() });
    let request = http::Request::post(format!("http://{addr}{}", grpc::CHECK_PATH))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(body))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("body");
    let trailers = collected.trailers().cloned();
    driver.abort();
    (parts.headers, collected.to_bytes().to_vec(), trailers)
}

#[tokio::test]
async fn grpc_health_server_answers_per_service() {
    use prost::Message as _;
    let server = GrpcHealthServer::start(
        lo(107),
        &[("", Health::Serving), ("cart", Health::NotServing), ("down", Health::Status(14, "unavailable"))],
    )
    .await;
    let (_, body, trailers) = grpc_check(server.addr, "").await;
    assert_eq!(HealthCheckResponse::decode(&body[5..]).expect("decode").status, 1);
    assert_eq!(trailers.expect("trailers").get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]));
    let (_, body, _) = grpc_check(server.addr, "cart").await;
    assert_eq!(HealthCheckResponse::decode(&body[5..]).expect("decode").status, 2);
    let (headers, body, _) = grpc_check(server.addr, "down").await;
    assert_eq!((headers.get("grpc-status").map(|v| v.as_bytes()), body.len()), (Some(&b"14"[..]), 0));
    let (headers, _, _) = grpc_check(server.addr, "nope").await;
    assert_eq!(headers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"5"[..]));
    assert_eq!(server.services_asked(), vec!["", "cart", "down", "nope"]);

    let unimplemented = GrpcHealthServer::start_unimplemented(lo(107)).await;
    let (headers, _, _) = grpc_check(unimplemented.addr, "").await;
    assert_eq!(headers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"12"[..]));
}

#[test]
fn self_signed_and_expired_leaves_carry_their_names() {
    let leaf = certs::self_signed(&["self.test", "127.0.0.9"]);
    assert_eq!(leaf.names(), ["self.test", "127.0.0.9"]);
    assert_eq!(leaf.common_name(), "self.test");
    let ca = Ca::new("validity CA");
    let expired = ca.leaf_with(&["old.test"], certs::Validity::EXPIRED);
    assert_ne!(expired.der(), ca.leaf(&["old.test"]).der());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = ca.write_pem(dir.path(), "ca.pem");
    assert!(std::fs::read_to_string(path).expect("read").starts_with("-----BEGIN CERTIFICATE-----"));
}
