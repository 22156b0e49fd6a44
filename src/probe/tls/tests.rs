//! The TLS layer against rustls servers on loopback with certificates made now
//! ([`crate::pki`]): verification and its failures, SNI on the wire, ALPN, the summary.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::config::Sni;
use crate::pki::{Authority, Date, LeafSpec, Validity};

/// A test PKI ([`crate::pki`]): a CA in a `ca_file`, and leaves it signs.
struct Pki {
    ca: Authority,
    ca_file: tempfile::NamedTempFile,
}

impl Pki {
    fn new() -> Pki {
        let ca = Authority::new("parallax test CA", Validity::ROOT).expect("ca");
        let mut ca_file = tempfile::NamedTempFile::new().expect("tempfile");
        ca_file.write_all(ca.pem().as_bytes()).expect("write ca");
        Pki { ca, ca_file }
    }

    /// A leaf for `names` (DNS names or IPs) signed by the CA, valid from January 1st of
    /// the first year to January 1st of the second (else [`Validity::CURRENT`]), with an
    /// `O=` that needs escaping in the subject; chain [leaf, ca].
    fn leaf(&self, names: &[&str], validity: Option<(i32, i32)>) -> Arc<CertifiedKey> {
        let mut spec = LeafSpec::new(names).organization("Parallax, Tests");
        if let Some((from, to)) = validity {
            spec = spec.validity(Validity::between(Date::new(from, 1, 1), Date::new(to, 1, 1)));
        }
        let leaf = self.ca.issue(&spec).expect("leaf");
        leaf.certified_key_with_chain(vec![leaf.der().clone(), self.ca.der()]).expect("key loads")
    }
}

fn self_signed(name: &str) -> Arc<CertifiedKey> {
    LeafSpec::new(&[name]).self_signed().and_then(|leaf| leaf.certified_key()).expect("self-signed")
}

/// Serves one certificate and records the SNI of every ClientHello (`None`: no SNI).
#[derive(Debug)]
struct RecordSni {
    key: Option<Arc<CertifiedKey>>,
    seen: Mutex<Vec<Option<String>>>,
}

impl ResolvesServerCert for RecordSni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.seen.lock().expect("lock").push(hello.server_name().map(str::to_owned));
        self.key.clone()
    }
}

/// A rustls server on `ip` for at most four connections; returns its address and the SNI log.
async fn tls_server(
    ip: Ipv4Addr,
    key: Option<Arc<CertifiedKey>>,
    alpn: &[&str],
) -> (SocketAddr, Arc<RecordSni>) {
    let resolver = Arc::new(RecordSni { key, seen: Mutex::new(Vec::new()) });
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    (serve(ip, config).await, resolver)
}

/// Serves `config` on `ip` for at most four connections.
async fn serve(ip: Ipv4Addr, config: ServerConfig) -> SocketAddr {
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(Ok(mut tls)) =
                    tokio::time::timeout(Duration::from_secs(3), acceptor.accept(tcp)).await
                {
                    let mut buf = [0u8; 64];
                    let _ = tokio::time::timeout(Duration::from_secs(1), tls.read(&mut buf)).await;
                }
            });
        }
    });
    addr
}

/// A TCP server on `ip` that reads the ClientHello, then writes `answer` (or nothing) and
/// holds the connection for `hold`.
async fn raw_server(ip: Ipv4Addr, answer: &'static [u8], hold: Duration) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        let mut buf = [0u8; 2048];
        let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await;
        if !answer.is_empty() {
            let _ = tcp.write_all(answer).await;
        }
        tokio::time::sleep(hold).await;
    });
    addr
}

fn settings(verify: bool, ca_file: Option<&Path>, alpn: &[&str]) -> TlsSettings {
    TlsSettings {
        sni: Sni::FromUrl,
        verify,
        ca_file: ca_file.map(Path::to_path_buf),
        alpn: alpn.iter().map(|p| (*p).to_owned()).collect(),
    }
}

async fn run(
    configs: &TlsConfigs,
    addr: SocketAddr,
    settings: &TlsSettings,
    sni: Option<&str>,
    verify_name: &str,
    within: Duration,
) -> Result<Handshake, (Failure, Option<TlsSummary>)> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    handshake(configs, tcp, settings, sni, verify_name, Instant::now() + within).await
}

const SOON: Duration = Duration::from_secs(3);

#[derive(Debug)]
struct FixedClock(UnixTime);

impl TimeProvider for FixedClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

/// Configs whose clock says `unix_secs`.
fn configs_at(unix_secs: u64) -> TlsConfigs {
    TlsConfigs::with_time(Arc::new(FixedClock(UnixTime::since_unix_epoch(Duration::from_secs(unix_secs)))))
}

#[tokio::test]
async fn valid_chain_with_ca_file_and_summary() {
    let pki = Pki::new();
    let (addr, sni_log) = tls_server(
        Ipv4Addr::new(127, 0, 0, 40),
        Some(pki.leaf(&["shop.test", "127.0.0.40"], Some((2020, 2100)))),
        &["h2", "http/1.1"],
    )
    .await;
    let configs = TlsConfigs::new();
    let s = settings(true, Some(pki.ca_file.path()), &["h2", "http/1.1"]);
    let done = run(&configs, addr, &s, Some("shop.test"), "shop.test", SOON)
        .await
        .map_err(|(f, _)| f)
        .expect("verifies");
    let t = &done.summary;
    assert_eq!(t.version.as_deref(), Some("TLSv1_3"));
    assert!(t.cipher.as_deref().is_some_and(|c| c.starts_with("TLS13_")), "{t:?}");
    assert_eq!(t.alpn.as_deref(), Some("h2"));
    assert_eq!(t.cert_subject.as_deref(), Some("O=Parallax\\, Tests,CN=shop.test"));
    assert_eq!(t.cert_sans, vec!["shop.test".to_owned(), "127.0.0.40".to_owned()]);
    assert_eq!(t.not_after.as_deref(), Some("2100-01-01T00:00:00Z"));
    assert_eq!(t.not_after_unix, Some(4_102_444_800));
    assert_eq!(t.chain_len, 2);
    assert_eq!(*sni_log.seen.lock().expect("lock"), vec![Some("shop.test".to_owned())]);

    // Same settings, same cached config.
    run(&configs, addr, &s, Some("shop.test"), "shop.test", SOON)
        .await
        .map_err(|(f, _)| f)
        .expect("verifies again");
    assert_eq!(configs.prepared.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn self_signed_without_ca_file_is_untrusted_and_still_summarized() {
    let (addr, _) = tls_server(Ipv4Addr::new(127, 0, 0, 41), Some(self_signed("shop.test")), &[]).await;
    let (f, summary) =
        run(&TlsConfigs::new(), addr, &settings(true, None, &[]), Some("shop.test"), "shop.test", SOON)
            .await
            .expect_err("untrusted");
    assert_eq!(f.code, ErrorCode::TlsCertUntrusted, "{f}");
    assert!(f.detail.contains("unknown issuer"), "{f}");
    let summary = summary.expect("the chain is recorded on failure");
    assert_eq!(summary.cert_subject.as_deref(), Some("CN=shop.test"));
    assert_eq!(summary.chain_len, 1);
}

#[tokio::test]
async fn verify_off_accepts_and_records_the_chain() {
    let (addr, _) =
        tls_server(Ipv4Addr::new(127, 0, 0, 42), Some(self_signed("backend.internal")), &[]).await;
    let done = run(&TlsConfigs::new(), addr, &settings(false, None, &[]), None, "127.0.0.42", SOON)
        .await
        .map_err(|(f, _)| f)
        .expect("no verification");
    assert_eq!(done.summary.cert_sans, vec!["backend.internal".to_owned()]);
    assert_eq!(done.summary.cert_subject.as_deref(), Some("CN=backend.internal"));
}

#[tokio::test]
async fn tls12_server_is_summarized_as_such() {
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(RecordSni {
            key: Some(self_signed("old.test")),
            seen: Mutex::default(),
        }));
    let addr = serve(Ipv4Addr::new(127, 0, 0, 54), config).await;
    let done = run(&TlsConfigs::new(), addr, &settings(false, None, &[]), Some("old.test"), "old.test", SOON)
        .await
        .map_err(|(f, _)| f)
        .expect("TLS 1.2 handshake");
    assert_eq!(done.summary.version.as_deref(), Some("TLSv1_2"));
    assert!(
        done.summary.cipher.as_deref().is_some_and(|c| c.starts_with("TLS_ECDHE_")),
        "{:?}",
        done.summary
    );
    assert_eq!(done.summary.alpn, None);
}

#[tokio::test]
async fn wrong_name_is_a_name_mismatch() {
    let pki = Pki::new();
    let (addr, _) = tls_server(Ipv4Addr::new(127, 0, 0, 43), Some(pki.leaf(&["shop.test"], None)), &[]).await;
    let (f, summary) = run(
        &TlsConfigs::new(),
        addr,
        &settings(true, Some(pki.ca_file.path()), &[]),
        Some("other.test"),
        "other.test",
        SOON,
    )
    .await
    .expect_err("mismatch");
    assert_eq!(f.code, ErrorCode::TlsCertNameMismatch, "{f}");
    assert!(f.detail.contains("other.test") && f.detail.contains("shop.test"), "{f}");
    assert!(summary.is_some());
}

#[tokio::test]
async fn expired_certificate() {
    let pki = Pki::new();
    let (addr, _) =
        tls_server(Ipv4Addr::new(127, 0, 0, 44), Some(pki.leaf(&["shop.test"], Some((2015, 2020)))), &[])
            .await;
    let (f, summary) = run(
        &TlsConfigs::new(),
        addr,
        &settings(true, Some(pki.ca_file.path()), &[]),
        Some("shop.test"),
        "shop.test",
        SOON,
    )
    .await
    .expect_err("expired");
    assert_eq!(f.code, ErrorCode::TlsCertExpired, "{f}");
    assert!(f.detail.contains("2020-01-01T00:00:00Z"), "{f}");
    assert_eq!(summary.and_then(|s| s.not_after), Some("2020-01-01T00:00:00Z".to_owned()));
}

#[tokio::test]
async fn the_injected_clock_decides_validity() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["shop.test"], Some((2020, 2100)));
    let (addr, _) = tls_server(Ipv4Addr::new(127, 0, 0, 45), Some(leaf), &[]).await;
    let s = settings(true, Some(pki.ca_file.path()), &[]);

    // 2010-01-01: before the leaf's not_before.
    let early = configs_at(1_262_304_000);
    let (f, _) =
        run(&early, addr, &s, Some("shop.test"), "shop.test", SOON).await.expect_err("not yet valid");
    assert_eq!(f.code, ErrorCode::TlsCertNotYetValid, "{f}");
    assert!(f.detail.contains("2010-01-01T00:00:00Z"), "{f}");

    // 2200-01-01: after its not_after.
    let late = configs_at(7_258_118_400);
    let (f, _) = run(&late, addr, &s, Some("shop.test"), "shop.test", SOON).await.expect_err("expired");
    assert_eq!(f.code, ErrorCode::TlsCertExpired, "{f}");
}

#[tokio::test]
async fn no_sni_sends_no_extension_and_verifies_the_url_host() {
    let pki = Pki::new();
    let (addr, sni_log) =
        tls_server(Ipv4Addr::new(127, 0, 0, 46), Some(pki.leaf(&["shop.test", "127.0.0.46"], None)), &[])
            .await;
    let configs = TlsConfigs::new();
    let s = settings(true, Some(pki.ca_file.path()), &[]);
    run(&configs, addr, &s, None, "shop.test", SOON)
        .await
        .map_err(|(f, _)| f)
        .expect("verifies the URL name");
    run(&configs, addr, &s, None, "127.0.0.46", SOON).await.map_err(|(f, _)| f).expect("verifies the URL IP");
    let (f, _) =
        run(&configs, addr, &s, None, "other.test", SOON).await.expect_err("name checked without SNI");
    assert_eq!(f.code, ErrorCode::TlsCertNameMismatch, "{f}");
    assert_eq!(*sni_log.seen.lock().expect("lock"), vec![None, None, None], "no SNI on the wire");
}

#[tokio::test]
async fn plain_http_server_is_a_plaintext_peer() {
    // A real HTTP/1 server (hyper) answering the ClientHello the way HTTP servers do.
    let listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 47), 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let service = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                http_body_util::Empty::<bytes::Bytes>::new(),
            ))
        });
        let io = hyper_util::rt::TokioIo::new(tcp);
        let _ = tokio::time::timeout(
            Duration::from_secs(3),
            hyper::server::conn::http1::Builder::new().serve_connection(io, service),
        )
        .await;
    });
    let (f, summary) =
        run(&TlsConfigs::new(), addr, &settings(true, None, &[]), Some("shop.test"), "shop.test", SOON)
            .await
            .expect_err("not TLS");
    assert_eq!(f.code, ErrorCode::TlsPlaintextPeer, "{f}");
    assert!(f.detail.contains("\"HTTP/1.1 400 Bad Request\""), "{f}");
    assert!(summary.is_none());
}

#[tokio::test]
async fn malformed_tls_record_is_a_handshake_failure() {
    // Looks like a handshake record, carries junk.
    let addr = raw_server(
        Ipv4Addr::new(127, 0, 0, 48),
        b"\x16\x03\x03\x00\x04\xde\xad\xbe\xef",
        Duration::from_secs(1),
    )
    .await;
    let (f, _) =
        run(&TlsConfigs::new(), addr, &settings(false, None, &[]), Some("shop.test"), "shop.test", SOON)
            .await
            .expect_err("junk");
    assert_eq!(f.code, ErrorCode::TlsHandshakeFailure, "{f}");
}

#[tokio::test]
async fn close_during_handshake_is_a_handshake_failure() {
    let addr = raw_server(Ipv4Addr::new(127, 0, 0, 49), b"", Duration::ZERO).await;
    let (f, _) =
        run(&TlsConfigs::new(), addr, &settings(false, None, &[]), Some("shop.test"), "shop.test", SOON)
            .await
            .expect_err("eof");
    assert_eq!(f.code, ErrorCode::TlsHandshakeFailure, "{f}");
    assert!(f.detail.contains("closed") || f.detail.contains("reset"), "{f}");
}

#[tokio::test]
async fn silent_server_times_out_at_the_deadline() {
    let addr = raw_server(Ipv4Addr::new(127, 0, 0, 50), b"", Duration::from_secs(3)).await;
    let start = Instant::now();
    let (f, _) = run(
        &TlsConfigs::new(),
        addr,
        &settings(false, None, &[]),
        Some("shop.test"),
        "shop.test",
        Duration::from_millis(300),
    )
    .await
    .expect_err("timeout");
    assert_eq!(f.code, ErrorCode::TlsTimeout, "{f}");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(290) && took < Duration::from_secs(2), "took {took:?}");
}

#[tokio::test]
async fn server_alert_is_named() {
    // A rustls server with no certificate to offer aborts with an alert.
    let (addr, sni_log) = tls_server(Ipv4Addr::new(127, 0, 0, 51), None, &[]).await;
    let (f, _) =
        run(&TlsConfigs::new(), addr, &settings(false, None, &[]), Some("shop.test"), "shop.test", SOON)
            .await
            .expect_err("alert");
    assert_eq!(f.code, ErrorCode::TlsAlert, "{f}");
    // rustls names its refusal `access_denied`; any alert must come out by its RFC name.
    let name = f.detail.strip_prefix("the server sent alert ").expect("alert detail");
    assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{f}");
    assert_eq!(sni_log.seen.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn protocol_version_alert_is_a_version_mismatch() {
    // Alert record: TLS 1.2, fatal (2), protocol_version (70).
    let addr =
        raw_server(Ipv4Addr::new(127, 0, 0, 52), b"\x15\x03\x03\x00\x02\x02\x46", Duration::from_secs(1))
            .await;
    let (f, _) =
        run(&TlsConfigs::new(), addr, &settings(false, None, &[]), Some("shop.test"), "shop.test", SOON)
            .await
            .expect_err("alert");
    assert_eq!(f.code, ErrorCode::TlsVersionMismatch, "{f}");
}

#[tokio::test]
async fn bad_ca_file_is_a_handshake_failure_naming_the_file() {
    let (addr, _) = tls_server(Ipv4Addr::new(127, 0, 0, 53), Some(self_signed("shop.test")), &[]).await;
    let mut junk = tempfile::NamedTempFile::new().expect("tempfile");
    junk.write_all(b"this is not PEM\n").expect("write");
    let configs = TlsConfigs::new();
    let (f, _) =
        run(&configs, addr, &settings(true, Some(junk.path()), &[]), Some("shop.test"), "shop.test", SOON)
            .await
            .expect_err("bad ca_file");
    assert_eq!(f.code, ErrorCode::TlsHandshakeFailure, "{f}");
    assert!(f.detail.contains(&junk.path().display().to_string()), "{f}");

    let missing = junk.path().with_extension("missing");
    let (f, _) =
        run(&configs, addr, &settings(true, Some(&missing), &[]), Some("shop.test"), "shop.test", SOON)
            .await
            .expect_err("missing ca_file");
    assert_eq!(f.code, ErrorCode::TlsHandshakeFailure, "{f}");
    assert!(f.detail.contains("cannot read ca_file"), "{f}");
    assert!(configs.prepared.lock().expect("lock").is_empty(), "failures are not cached");
}

#[test]
fn first_bytes_tell_tls_from_not_tls() {
    assert!(not_tls(b"HTTP/1.1 400 Bad Request"));
    assert!(not_tls(b"SSH-2.0-OpenSSH"));
    // Binary junk that is not TLS is not evidence of a plain-text server.
    assert!(!not_tls(&[0x00, 0x01]));
    assert!(!not_tls(&[0x16, 0x03, 0x03]));
    assert!(!not_tls(&[0x15, 0x03, 0x01]));
    assert!(!not_tls(b""));
}

#[test]
fn names_and_times_are_formatted() {
    assert_eq!(alert_name(AlertDescription::HandshakeFailure), "handshake_failure");
    assert_eq!(alert_name(AlertDescription::UnrecognisedName), "unrecognised_name");
    assert_eq!(certificate_time(0), "1970-01-01T00:00:00Z");
    assert_eq!(certificate_time(1_798_761_600), "2027-01-01T00:00:00Z");
    assert_eq!(certificate_time(951_827_696), "2000-02-29T12:34:56Z");
    assert_eq!(certificate_time(-1), "1969-12-31T23:59:59Z");
    assert_eq!(escape_rfc4514("#a, b+c "), "\\#a\\, b\\+c\\ ");
    assert_eq!(quote_bytes(b"HTTP/1.1 400 Bad"), "\"HTTP/1.1 400 Bad\"");
    assert_eq!(quote_bytes(&[0x00, 0xff]), "\"\\x00\\xff\"");
}

/// A self-signed `CA:TRUE` leaf for `name` (as `openssl req -x509` makes), its PEM in a file.
fn pinned_leaf(name: &str, validity: Validity) -> (Arc<CertifiedKey>, tempfile::NamedTempFile) {
    let leaf =
        LeafSpec::new(&[name]).validity(validity).ca_flagged().self_signed().expect("self-signed CA:TRUE");
    let mut file = tempfile::NamedTempFile::new().expect("tempfile");
    file.write_all(leaf.pem().as_bytes()).expect("write pem");
    (leaf.certified_key().expect("key loads"), file)
}

#[tokio::test]
async fn a_self_signed_ca_flagged_certificate_in_ca_file_is_pinned() {
    let (key, pem) = pinned_leaf("pinned.test", Validity::CURRENT);
    let (addr, _) = tls_server(Ipv4Addr::new(127, 0, 0, 55), Some(key), &[]).await;
    let configs = TlsConfigs::new();
    let s = settings(true, Some(pem.path()), &[]);
    let done = run(&configs, addr, &s, Some("pinned.test"), "pinned.test", SOON)
        .await
        .map_err(|(f, _)| f)
        .expect("a pinned certificate verifies, as with curl --cacert");
    assert_eq!(done.summary.cert_issuer.as_deref(), Some("CN=pinned.test"));
    assert_eq!(done.summary.cert_sha256.as_ref().map(String::len), Some(64));

    // Still checked: the name against its SANs...
    let (f, _) = run(&configs, addr, &s, Some("other.test"), "other.test", SOON).await.expect_err("name");
    assert_eq!(f.code, ErrorCode::TlsCertNameMismatch, "{f}");
    assert!(f.detail.contains("[pinned.test], not other.test"), "{f}");
    // ... and its validity window against the injected clock (2200-01-01).
    let late = configs_at(7_258_118_400);
    let (f, _) = run(&late, addr, &s, Some("pinned.test"), "pinned.test", SOON).await.expect_err("expired");
    assert_eq!(f.code, ErrorCode::TlsCertExpired, "{f}");
    let (f, _) = run(&configs_at(1_262_304_000), addr, &s, Some("pinned.test"), "pinned.test", SOON)
        .await
        .expect_err("not yet valid");
    assert_eq!(f.code, ErrorCode::TlsCertNotYetValid, "{f}");
}

#[tokio::test]
async fn a_different_self_signed_ca_flagged_certificate_is_still_untrusted() {
    let (served, _) = pinned_leaf("pinned.test", Validity::CURRENT);
    let (_, other_pem) = pinned_leaf("pinned.test", Validity::CURRENT);
    let (addr, _) = tls_server(Ipv4Addr::new(127, 0, 0, 56), Some(served), &[]).await;
    let (f, summary) = run(
        &TlsConfigs::new(),
        addr,
        &settings(true, Some(other_pem.path()), &[]),
        Some("pinned.test"),
        "pinned.test",
        SOON,
    )
    .await
    .expect_err("not the pinned certificate");
    assert_eq!(f.code, ErrorCode::TlsCertUntrusted, "{f}");
    assert!(f.detail.contains("CA certificate (CA:TRUE)") && f.detail.contains("CN=pinned.test"), "{f}");
    assert!(!f.detail.contains("Other("), "{f}");
    assert!(summary.is_some());
}

#[tokio::test]
async fn a_ca_flagged_certificate_with_the_public_roots_is_untrusted() {
    let (served, _) = pinned_leaf("pinned.test", Validity::CURRENT);
    let (addr, _) = tls_server(Ipv4Addr::new(127, 0, 0, 57), Some(served), &[]).await;
    let (f, _) =
        run(&TlsConfigs::new(), addr, &settings(true, None, &[]), Some("pinned.test"), "pinned.test", SOON)
            .await
            .expect_err("untrusted");
    assert_eq!(f.code, ErrorCode::TlsCertUntrusted, "{f}");
    assert!(f.detail.contains("the public web roots"), "{f}");
}

/// Every failure path's detail is a sentence: no `Debug` form of a rustls or webpki error.
#[test]
fn no_failure_detail_is_a_debug_form() {
    use rustls::{InvalidMessage, OtherError, PeerMisbehaved};
    let seen = TlsSummary {
        cert_subject: Some("CN=shop.test".into()),
        cert_sans: vec!["shop.test".into()],
        cert_issuer: Some("CN=parallax test CA".into()),
        not_before: Some("2020-01-01T00:00:00Z".into()),
        not_after: Some("2060-01-01T00:00:00Z".into()),
        ..TlsSummary::default()
    };
    let t = UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000));
    let other = |w: webpki::Error| CertificateError::Other(OtherError(Arc::new(w)));
    #[allow(deprecated)]
    let mut cert_errors = vec![
        CertificateError::BadEncoding,
        CertificateError::Expired,
        CertificateError::ExpiredContext { time: t, not_after: t },
        CertificateError::NotValidYet,
        CertificateError::NotValidYetContext { time: t, not_before: t },
        CertificateError::Revoked,
        CertificateError::UnhandledCriticalExtension,
        CertificateError::UnknownIssuer,
        CertificateError::UnknownRevocationStatus,
        CertificateError::ExpiredRevocationList,
        CertificateError::ExpiredRevocationListContext { time: t, next_update: t },
        CertificateError::BadSignature,
        CertificateError::UnsupportedSignatureAlgorithm,
        CertificateError::UnsupportedSignatureAlgorithmContext {
            signature_algorithm_id: vec![1, 2],
            supported_algorithms: Vec::new(),
        },
        CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
            signature_algorithm_id: vec![1],
            public_key_algorithm_id: vec![2],
        },
        CertificateError::NotValidForName,
        CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("other.test").expect("name").to_owned(),
            presented: vec!["shop.test".into()],
        },
        CertificateError::InvalidPurpose,
        CertificateError::InvalidOcspResponse,
        CertificateError::ApplicationVerificationFailure,
        CertificateError::Other(OtherError(Arc::new(io::Error::other("a custom verifier's reason")))),
    ];
    #[allow(deprecated)]
    let webpki_errors = [
        webpki::Error::BadDer,
        webpki::Error::BadDerTime,
        webpki::Error::CaUsedAsEndEntity,
        webpki::Error::CertDistrusted,
        webpki::Error::EmptyEkuExtension,
        webpki::Error::EndEntityUsedAsCa,
        webpki::Error::ExtensionValueInvalid,
        webpki::Error::InvalidCertValidity,
        webpki::Error::InvalidSerialNumber,
        webpki::Error::MalformedDnsIdentifier,
        webpki::Error::MalformedExtensions,
        webpki::Error::MalformedNameConstraint,
        webpki::Error::MaximumNameConstraintComparisonsExceeded,
        webpki::Error::MaximumPathBuildCallsExceeded,
        webpki::Error::MaximumPathDepthExceeded,
        webpki::Error::MaximumSignatureChecksExceeded,
        webpki::Error::NameConstraintViolation,
        webpki::Error::PathLenConstraintViolated,
        webpki::Error::SignatureAlgorithmMismatch,
        webpki::Error::UnsupportedCertVersion,
        webpki::Error::UnsupportedCriticalExtension,
        webpki::Error::UnsupportedNameType,
        webpki::Error::UnsupportedCrlVersion,
        webpki::Error::UnsupportedSignatureAlgorithm,
    ];
    cert_errors.extend(webpki_errors.into_iter().map(other));
    let mut details = Vec::new();
    for c in cert_errors {
        let e = rustls::Error::InvalidCertificate(c);
        for ca in [None, Some(Path::new("/etc/parallax/ca.pem"))] {
            details.push(classify_verification(&e, "shop.test", ca, &seen).detail);
        }
        details.push(classify_handshake(&io::Error::other(e.clone()), b"").detail);
    }
    let others = [
        rustls::Error::General("the peer is odd".into()),
        rustls::Error::InvalidMessage(InvalidMessage::HandshakePayloadTooLarge),
        rustls::Error::PeerMisbehaved(PeerMisbehaved::IllegalMiddleboxChangeCipherSpec),
        rustls::Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon),
        rustls::Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered),
        rustls::Error::InappropriateMessage {
            expect_types: vec![rustls::ContentType::Handshake],
            got_type: rustls::ContentType::Alert,
        },
        rustls::Error::NoCertificatesPresented,
        rustls::Error::DecryptError,
        rustls::Error::AlertReceived(AlertDescription::BadCertificate),
        rustls::Error::NoApplicationProtocol,
        rustls::Error::InvalidCertRevocationList(rustls::CertRevocationListError::BadSignature),
    ];
    for e in others {
        details.push(classify_handshake(&io::Error::other(e.clone()), b"").detail);
        details.push(classify_verification(&e, "shop.test", None, &seen).detail);
    }
    // A certificate parallax cannot read is said so.
    let unreadable = rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
    details.push(classify_verification(&unreadable, "shop.test", None, &TlsSummary::default()).detail);
    for d in &details {
        for form in ["Other(", "OtherError", "CertificateError", "{", "}", "Context"] {
            assert!(!d.contains(form), "{form} in a detail: {d}");
        }
        assert!(!d.is_empty());
    }
    // What was presented is named.
    let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
    let d = classify_verification(&expired, "shop.test", None, &seen).detail;
    assert_eq!(
        d,
        "the certificate expired at 2060-01-01T00:00:00Z; the server presented CN=shop.test (SANs shop.test; \
         issuer CN=parallax test CA; valid 2020-01-01T00:00:00Z to 2060-01-01T00:00:00Z); renew it (or fix \
         the renewal that should have)"
    );
    assert_eq!(
        words(&PeerMisbehaved::IllegalMiddleboxChangeCipherSpec),
        "illegal middlebox change cipher spec"
    );
    assert_eq!(
        words(&rustls::Error::PeerMisbehaved(PeerMisbehaved::IllegalMiddleboxChangeCipherSpec)),
        "illegal middlebox change cipher spec"
    );
}
