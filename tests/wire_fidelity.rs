//! Wire fidelity: every checker profile, and the client view, puts exactly its checker's request
//! on the wire: request line, Host, User-Agent, the other headers, their order and case, SNI and
//! ALPN on TLS, the PROXY header bytes and the source address. Each view comes from a probes.d
//! TOML file loaded through the public config API and runs through the real prober against a
//! recording server on 127.0.0.x.
//!
//! The `haproxy_*` tests run the real HAProxy (Debian package `haproxy`) with `option httpchk`
//! against one recording server and parallax's `haproxy` view against another, and require the
//! two byte strings to be identical. They fail, rather than skip, when HAProxy is missing.
//!
//! Only loopback addresses are used; every wait is bounded.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use parallax::config::{self, ProfileName, View};
use parallax::pki::{Authority, LeafSpec, Validity};
use parallax::probe::{Outcome, Prober};

/// The PROXY v2 signature (12 bytes).
const PP2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// A complete PROXY v2 `LOCAL` header: signature, version 2 + LOCAL, UNSPEC/UNSPEC, length 0.
const PP2_LOCAL: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
/// The name the TLS recorder's certificate is issued for.
const TLS_NAME: &str = "backend.test";
/// How long a recorder waits for one connection's bytes.
const READ_LIMIT: Duration = Duration::from_secs(3);
/// The largest request head a recorder keeps.
const MAX_RECORDED_BYTES: usize = 64 * 1024;
/// The answer every recorder gives.
const OK_EMPTY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
/// kube-proxy's `healthCheckNodePort` answer with one local endpoint (`concat!` keeps the
/// content-length honest: the body is 94 bytes).
const OK_KUBE_PROXY: &[u8] = concat!(
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 94\r\n\r\n",
    r#"{"service":{"namespace":"default","name":"web"},"localEndpoints":1,"serviceProxyHealthy":true}"#
)
.as_bytes();

// ---------------------------------------------------------------------------------------------
// Recording servers
// ---------------------------------------------------------------------------------------------

/// What one connection delivered.
#[derive(Debug, Clone)]
struct Recorded {
    /// The peer address the server saw.
    peer: SocketAddr,
    /// The PROXY header bytes (empty when none came).
    proxy: Vec<u8>,
    /// Every byte after the PROXY header up to the end of the request head (decrypted on TLS).
    request: Vec<u8>,
    /// TLS only: the SNI of the ClientHello (`None`: no SNI extension).
    sni: Option<String>,
    /// TLS only: the ALPN protocols the client offered, in order.
    alpn_offered: Vec<String>,
}

impl Recorded {
    fn request_text(&self) -> String {
        String::from_utf8_lossy(&self.request).into_owned()
    }
}

/// A raw TCP (or TLS) listener on 127.0.0.x that records every connection and answers `answer`.
/// The accept loop and the connection tasks stop when it is dropped.
struct Recorder {
    addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Recorded>,
    task: JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    /// A plain TCP recorder (a PROXY header, if any, is split off before the HTTP head).
    async fn plain(ip: &str, answer: &'static [u8]) -> Recorder {
        Recorder::start(ip, answer, None).await
    }

    /// A TLS recorder presenting a certificate for [`TLS_NAME`] signed by `pki`'s CA, accepting
    /// only `http/1.1` by ALPN (so HTTP/1 bytes can be read even from clients that offer h2).
    async fn tls(ip: &str, pki: &Pki) -> Recorder {
        Recorder::start(ip, OK_EMPTY, Some(pki.leaf.clone())).await
    }

    async fn start(ip: &str, answer: &'static [u8], tls: Option<Arc<CertifiedKey>>) -> Recorder {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind a loopback recorder");
        let addr = listener.local_addr().expect("recorder address");
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            // Bounded: no test needs more than a handful of connections.
            for _ in 0..64 {
                let Ok((stream, peer)) = listener.accept().await else { break };
                let tx = tx.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    let recorded = match tls {
                        None => record_plain(stream, peer, answer).await,
                        Some(key) => record_tls(stream, peer, key).await,
                    };
                    let _ = tx.send(recorded);
                });
            }
            // Keep the connection tasks alive until the recorder is dropped (abort drops the set).
            std::future::pending::<()>().await;
        });
        Recorder { addr, rx, task }
    }

    /// The next recorded connection, within `wait`.
    async fn next(&mut self, wait: Duration) -> Recorded {
        match tokio::time::timeout(wait, self.rx.recv()).await {
            Ok(Some(r)) => r,
            Ok(None) => panic!("recorder on {} stopped", self.addr),
            Err(_) => panic!("no connection reached the recorder on {} within {wait:?}", self.addr),
        }
    }
}

async fn record_plain(mut stream: TcpStream, peer: SocketAddr, answer: &[u8]) -> Recorded {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + READ_LIMIT;
    let proxy_len = loop {
        if let Some(n) = proxy_header_len(&buf) {
            break n;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            // EOF or timeout before a full PROXY header: record what came.
            _ => break buf.len().min(proxy_prefix_len(&buf)),
        }
    };
    let proxy = buf[..proxy_len].to_vec();
    let mut rest = buf[proxy_len..].to_vec();
    read_head(&mut stream, &mut rest, deadline).await;
    answer_and_close(&mut stream, answer, !rest.is_empty()).await;
    Recorded { peer, proxy, request: rest, sni: None, alpn_offered: Vec::new() }
}

async fn record_tls(stream: TcpStream, peer: SocketAddr, key: Arc<CertifiedKey>) -> Recorded {
    // One config per connection, so the hello captured is this connection's.
    let hello = Arc::new(HelloRecorder { key, seen: Mutex::new(None) });
    let mut server =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("rustls protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(hello.clone());
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let accepted = tokio::time::timeout(READ_LIMIT, TlsAcceptor::from(Arc::new(server)).accept(stream)).await;
    let (sni, alpn_offered) = hello.seen.lock().expect("hello lock").clone().unwrap_or_default();
    let mut request = Vec::new();
    if let Ok(Ok(mut tls)) = accepted {
        let deadline = tokio::time::Instant::now() + READ_LIMIT;
        read_head(&mut tls, &mut request, deadline).await;
        answer_and_close(&mut tls, OK_EMPTY, !request.is_empty()).await;
    }
    Recorded { peer, proxy: Vec::new(), request, sni, alpn_offered }
}

/// Reads into `buf` until it holds a complete request head, EOF, the size bound or `deadline`.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>, deadline: tokio::time::Instant) {
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_RECORDED_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
}

async fn answer_and_close<S: AsyncWrite + Unpin>(stream: &mut S, answer: &[u8], got_request: bool) {
    if got_request {
        let _ = stream.write_all(answer).await;
    }
    let _ = stream.shutdown().await;
}

/// The length of the complete PROXY header at the start of `buf`: `Some(0)` when `buf` does not
/// start with one, `None` while more bytes are needed to tell.
fn proxy_header_len(buf: &[u8]) -> Option<usize> {
    if buf.is_empty() {
        return None;
    }
    let v1 = b"PROXY ";
    if buf.len() < PP2_SIGNATURE.len() && PP2_SIGNATURE.starts_with(buf) {
        return None;
    }
    if buf.starts_with(PP2_SIGNATURE) {
        if buf.len() < 16 {
            return None;
        }
        let total = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        return (buf.len() >= total).then_some(total);
    }
    if buf.len() < v1.len() && v1.starts_with(buf) {
        return None;
    }
    if buf.starts_with(v1) {
        // v1 headers are at most 107 bytes: give up looking for the end past that.
        return match buf.windows(2).position(|w| w == b"\r\n") {
            Some(i) => Some(i + 2),
            None if buf.len() > 107 => Some(0),
            None => None,
        };
    }
    Some(0)
}

/// For an incomplete buffer at EOF: treat everything as a (truncated) PROXY header if it began
/// like one, so the assertion shows it.
fn proxy_prefix_len(buf: &[u8]) -> usize {
    if buf.starts_with(b"PROXY") || (!buf.is_empty() && PP2_SIGNATURE.starts_with(&buf[..buf.len().min(12)]))
    {
        buf.len()
    } else {
        0
    }
}

/// A `ResolvesServerCert` that records the SNI and the offered ALPN of the ClientHello.
#[derive(Debug)]
struct HelloRecorder {
    key: Arc<CertifiedKey>,
    seen: Mutex<Option<(Option<String>, Vec<String>)>>,
}

impl ResolvesServerCert for HelloRecorder {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().map(str::to_owned);
        let alpn = hello
            .alpn()
            .map(|protocols| protocols.map(|p| String::from_utf8_lossy(p).into_owned()).collect())
            .unwrap_or_default();
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((sni, alpn));
        }
        Some(self.key.clone())
    }
}

/// A CA and a leaf for [`TLS_NAME`], made at test time; the CA's PEM is written for `ca_file`.
struct Pki {
    leaf: Arc<CertifiedKey>,
    ca_file: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    let ca = Authority::new("parallax wire test CA", Validity::ROOT).expect("CA certificate");
    let leaf = ca.issue(&LeafSpec::new(&[TLS_NAME])).expect("leaf certificate");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write ca.pem");
    Pki { leaf: leaf.certified_key().expect("signing key"), ca_file }
}

// ---------------------------------------------------------------------------------------------
// Config and probing through the public API
// ---------------------------------------------------------------------------------------------

/// Writes `toml` as a probes.d file in a fresh tempdir and loads it.
fn load(dir: &Path, toml: &str) -> config::Plan {
    let conf = dir.join("probes.d");
    std::fs::create_dir_all(&conf).expect("create probes.d");
    std::fs::write(conf.join("wire.toml"), toml).expect("write wire.toml");
    match config::load_with(&conf, &HashMap::<String, String>::new()) {
        Ok(plan) => plan,
        Err(errors) => panic!("config did not load:\n{errors}\n--- file ---\n{toml}"),
    }
}

/// One target `wire` with a client view on `client_url` and, when `checker` is given, one checker
/// view named `hc` with `profile` and the extra TOML `keys`.
fn target_toml(client_url: &str, client_keys: &str, checker: Option<(&str, &str, &str)>) -> String {
    let mut toml =
        format!("[[target]]\nname = \"wire\"\n\n[target.client]\nurl = \"{client_url}\"\n{client_keys}\n");
    if let Some((profile, url, keys)) = checker {
        toml.push_str(&format!(
            "\n[[target.checker]]\nname = \"hc\"\nprofile = \"{profile}\"\nurl = \"{url}\"\n{keys}\n"
        ));
    }
    toml
}

fn view<'p>(plan: &'p config::Plan, name: &str) -> &'p View {
    plan.views().find(|v| &*v.name == name).unwrap_or_else(|| panic!("no view {name} in the plan"))
}

async fn probe_once(view: &View) -> Outcome {
    let mut outcomes = Prober::new().probe(view).await;
    assert_eq!(outcomes.len(), 1, "one outcome per probe of {}", view.id());
    outcomes.remove(0)
}

fn assert_ok(outcome: &Outcome) {
    assert!(
        outcome.ok,
        "{}/{} failed: phase {:?}, error {:?}, detail {:?}",
        outcome.target, outcome.view, outcome.phase, outcome.error, outcome.detail
    );
}

/// Probes the checker view `hc` of `toml` (or the client view) and returns what the recorder got.
async fn probe_and_record(toml: &str, view_name: &str, recorder: &mut Recorder) -> (Recorded, Outcome) {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = load(dir.path(), toml);
    let outcome = probe_once(view(&plan, view_name)).await;
    let recorded = recorder.next(Duration::from_secs(5)).await;
    (recorded, outcome)
}

// ---------------------------------------------------------------------------------------------
// What each checker sends (the spec these tests hold the code to)
// ---------------------------------------------------------------------------------------------

/// The exact HTTP/1 request head `profile` sends for `path`, with `authority` the URL's
/// authority and `dialed` the dialed `ip:port`. Sources: docs/profiles.md, and the doc comment of
/// each profile in `src/config/profiles.rs`.
fn expected_head(profile: Option<ProfileName>, path: &str, authority: &str, dialed: &str) -> String {
    let parallax_ua = format!("parallax/{}", env!("CARGO_PKG_VERSION"));
    let lines: Vec<String> = match profile {
        None | Some(ProfileName::Generic) => {
            vec![
                format!("GET {path} HTTP/1.1"),
                format!("host: {authority}"),
                format!("user-agent: {parallax_ua}"),
            ]
        }
        Some(ProfileName::AwsAlb | ProfileName::AwsNlb) => vec![
            format!("GET {path} HTTP/1.1"),
            format!("Host: {dialed}"),
            "User-Agent: ELB-HealthChecker/2.0".into(),
            "Connection: close".into(),
        ],
        Some(ProfileName::AwsClb) => vec![
            format!("GET {path} HTTP/1.1"),
            "User-Agent: ELB-HealthChecker/1.0".into(),
            "Connection: close".into(),
        ],
        Some(ProfileName::Gcp | ProfileName::GcpLegacy) => vec![
            format!("GET {path} HTTP/1.1"),
            // The destination IP, without the port.
            format!("Host: {}", dialed.rsplit_once(':').map_or(dialed, |(ip, _)| ip)),
            "User-Agent: GoogleHC/1.0".into(),
            "Connection: Keep-alive".into(),
        ],
        Some(ProfileName::AzureLb) => vec![format!("GET {path} HTTP/1.1"), format!("Host: {dialed}")],
        Some(ProfileName::AzureAppgw) => vec![format!("GET {path} HTTP/1.1"), "Host: 127.0.0.1".into()],
        Some(ProfileName::KubeProxy) => {
            vec![
                format!("GET {path} HTTP/1.1"),
                format!("host: {dialed}"),
                format!("user-agent: {parallax_ua}"),
            ]
        }
        Some(ProfileName::Haproxy) => vec![format!("OPTIONS {path} HTTP/1.0")],
        Some(ProfileName::Envoy) => {
            vec![format!("GET {path} HTTP/1.1"), format!("host: {authority}"), "user-agent: Envoy/HC".into()]
        }
        Some(ProfileName::Kubelet) => vec![
            format!("GET {path} HTTP/1.1"),
            format!("Host: {dialed}"),
            "User-Agent: kube-probe/1.31".into(),
            "Accept: */*".into(),
            "Connection: close".into(),
        ],
    };
    let mut head = lines.join("\r\n");
    head.push_str("\r\n\r\n");
    head
}

/// The SNI and offered ALPN of `profile` on a TLS check of an `https://backend.test:port` URL.
fn expected_tls(profile: Option<ProfileName>) -> (Option<&'static str>, &'static [&'static str]) {
    match profile {
        None => (Some(TLS_NAME), &["h2", "http/1.1"]),
        Some(ProfileName::Kubelet) => (Some(TLS_NAME), &["h2", "http/1.1"]),
        Some(ProfileName::Generic | ProfileName::AzureAppgw) => (Some(TLS_NAME), &[]),
        Some(
            ProfileName::AwsAlb
            | ProfileName::AwsNlb
            | ProfileName::AwsClb
            | ProfileName::Gcp
            | ProfileName::GcpLegacy
            | ProfileName::AzureLb
            | ProfileName::KubeProxy
            | ProfileName::Haproxy
            | ProfileName::Envoy,
        ) => (None, &[]),
    }
}

#[test]
fn kube_proxy_answer_has_an_exact_content_length() {
    let text = std::str::from_utf8(OK_KUBE_PROXY).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    assert!(head.ends_with(&format!("content-length: {}", body.len())), "{head}");
}

fn answer_for(profile: Option<ProfileName>) -> &'static [u8] {
    if profile == Some(ProfileName::KubeProxy) {
        OK_KUBE_PROXY
    } else {
        OK_EMPTY
    }
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP: exact request bytes per profile
// ---------------------------------------------------------------------------------------------

/// Probes `profile` (or the client view) over plain HTTP and asserts the exact bytes.
async fn assert_plain_request(profile: Option<ProfileName>, recorder_ip: &str) {
    let mut rec = Recorder::plain(recorder_ip, answer_for(profile)).await;
    let addr = rec.addr;
    let path = if profile == Some(ProfileName::Haproxy) { "/" } else { "/healthz?probe=1" };
    let url = format!("http://{addr}{path}");
    let (toml, name) = match profile {
        None => (target_toml(&url, "", None), "client"),
        Some(p) => (target_toml(&format!("http://{addr}/"), "", Some((p.as_str(), &url, ""))), "hc"),
    };
    let (recorded, outcome) = probe_and_record(&toml, name, &mut rec).await;
    assert_ok(&outcome);
    let want = expected_head(profile, path, &addr.to_string(), &addr.to_string());
    assert_eq!(
        recorded.request_text(),
        want,
        "request bytes of {}",
        profile.map_or("the client view", ProfileName::as_str)
    );
    assert!(recorded.proxy.is_empty(), "no PROXY header unless configured");
    assert_eq!(recorded.peer.ip(), outcome.local.expect("local address").ip());
}

macro_rules! plain_request_tests {
    ($($name:ident: $profile:expr, $ip:literal;)*) => {$(
        #[tokio::test]
        async fn $name() {
            assert_plain_request($profile, $ip).await;
        }
    )*};
}

plain_request_tests! {
    client_view_sends_url_authority_and_parallax_agent_lowercase: None, "127.0.0.40";
    aws_alb_sends_dialed_host_elb_agent_and_connection_close: Some(ProfileName::AwsAlb), "127.0.0.41";
    aws_nlb_sends_dialed_host_elb_agent_and_connection_close: Some(ProfileName::AwsNlb), "127.0.0.42";
    aws_clb_sends_no_host_and_the_legacy_agent: Some(ProfileName::AwsClb), "127.0.0.43";
    gcp_sends_googlehc_agent_and_connection_keep_alive: Some(ProfileName::Gcp), "127.0.0.44";
    gcp_legacy_sends_the_same_request_as_gcp: Some(ProfileName::GcpLegacy), "127.0.0.45";
    azure_lb_sends_dialed_host_and_no_agent: Some(ProfileName::AzureLb), "127.0.0.46";
    azure_appgw_sends_host_127_0_0_1: Some(ProfileName::AzureAppgw), "127.0.0.47";
    kube_proxy_sends_a_plain_get: Some(ProfileName::KubeProxy), "127.0.0.48";
    haproxy_sends_options_http10_and_nothing_else: Some(ProfileName::Haproxy), "127.0.0.49";
    envoy_sends_lowercase_host_and_envoy_hc_agent: Some(ProfileName::Envoy), "127.0.0.50";
    kubelet_sends_go_title_case_accept_and_connection_close: Some(ProfileName::Kubelet), "127.0.0.51";
    generic_sends_url_authority_and_parallax_agent: Some(ProfileName::Generic), "127.0.0.52";
}

// ---------------------------------------------------------------------------------------------
// TLS: SNI, ALPN and the request inside the tunnel
// ---------------------------------------------------------------------------------------------

/// Probes `profile` over TLS with an `https://backend.test:port` URL dialed through `connect_to`
/// and asserts SNI, offered ALPN and the request bytes.
async fn assert_tls_request(profile: Option<ProfileName>, recorder_ip: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let mut rec = Recorder::tls(recorder_ip, &pki).await;
    let addr = rec.addr;
    let authority = format!("{TLS_NAME}:{}", addr.port());
    let url = format!("https://{authority}/healthz");
    // `ca_file` only matters to views that verify; it keeps every profile's own SNI and verify.
    let keys = format!("connect_to = \"{addr}\"\nca_file = \"{}\"\n", pki.ca_file.display());
    let (toml, name) = match profile {
        None => (target_toml(&url, &keys, None), "client"),
        Some(p) => (target_toml(&url, &keys, Some((p.as_str(), &url, &keys))), "hc"),
    };
    let (recorded, outcome) = probe_and_record(&toml, name, &mut rec).await;
    assert_ok(&outcome);
    let label = profile.map_or("the client view", ProfileName::as_str);
    let (sni, alpn) = expected_tls(profile);
    assert_eq!(recorded.sni.as_deref(), sni, "SNI of {label}");
    assert_eq!(recorded.alpn_offered, alpn, "ALPN offered by {label}");
    let want = expected_head(profile, "/healthz", &authority, &addr.to_string());
    assert_eq!(recorded.request_text(), want, "request bytes of {label} inside TLS");
}

macro_rules! tls_request_tests {
    ($($name:ident: $profile:expr, $ip:literal;)*) => {$(
        #[tokio::test]
        async fn $name() {
            assert_tls_request($profile, $ip).await;
        }
    )*};
}

tls_request_tests! {
    tls_client_view_sends_sni_and_offers_h2: None, "127.0.0.60";
    tls_aws_alb_sends_no_sni: Some(ProfileName::AwsAlb), "127.0.0.61";
    tls_aws_nlb_sends_no_sni: Some(ProfileName::AwsNlb), "127.0.0.62";
    tls_aws_clb_sends_no_sni: Some(ProfileName::AwsClb), "127.0.0.63";
    tls_gcp_sends_no_sni: Some(ProfileName::Gcp), "127.0.0.64";
    tls_gcp_legacy_sends_no_sni: Some(ProfileName::GcpLegacy), "127.0.0.65";
    tls_azure_lb_sends_no_sni: Some(ProfileName::AzureLb), "127.0.0.66";
    tls_azure_appgw_sends_the_backend_name_as_sni: Some(ProfileName::AzureAppgw), "127.0.0.67";
    tls_kube_proxy_sends_no_sni: Some(ProfileName::KubeProxy), "127.0.0.68";
    tls_haproxy_sends_no_sni_without_check_sni: Some(ProfileName::Haproxy), "127.0.0.69";
    tls_envoy_sends_no_sni_without_transport_socket_sni: Some(ProfileName::Envoy), "127.0.0.70";
    tls_kubelet_sends_sni_for_a_name_and_offers_h2: Some(ProfileName::Kubelet), "127.0.0.71";
    tls_generic_sends_sni_and_offers_no_alpn: Some(ProfileName::Generic), "127.0.0.72";
}

// ---------------------------------------------------------------------------------------------
// Ad hoc (`parallax probe URL --as PROFILE`): the same checker as a configured one
// ---------------------------------------------------------------------------------------------

/// Probes `view` once and returns what `rec` recorded of it.
async fn record(view: &View, rec: &mut Recorder) -> Recorded {
    let _ = probe_once(view).await;
    rec.next(Duration::from_secs(5)).await
}

/// The checker view `profile` of an ad-hoc target.
fn adhoc_view(adhoc: &config::AdHoc, profile: ProfileName) -> View {
    match adhoc.compile(&HashMap::<String, String>::new()) {
        Ok(plan) => view(&plan, profile.as_str()).clone(),
        Err(errors) => panic!("{adhoc:?} did not compile:\n{errors}"),
    }
}

/// For every profile, the checker `parallax probe URL --as PROFILE` builds puts on the wire
/// exactly what the configured checker does: over plain HTTP with a PROXY v2 header (its
/// command and length: the addresses carry each connection's own port), and over TLS through
/// `--connect-to` (SNI, offered ALPN, the request inside).
#[tokio::test]
async fn adhoc_checkers_send_the_bytes_of_configured_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    for &profile in ProfileName::ALL {
        let mut rec = Recorder::plain("127.0.0.80", answer_for(Some(profile))).await;
        let addr = rec.addr;
        let (client_url, check_url) = (format!("http://{addr}/"), format!("http://{addr}/healthz?probe=1"));
        let toml =
            target_toml(&client_url, "", Some((profile.as_str(), &check_url, "proxy_protocol = \"v2\"")));
        let configured = record(view(&load(dir.path(), &toml), "hc"), &mut rec).await;
        let adhoc = config::AdHoc {
            url: client_url,
            profiles: vec![profile.as_str().to_owned()],
            check_url: Some(check_url),
            proxy_protocol: Some("v2".to_owned()),
            ..config::AdHoc::default()
        };
        let adhoc = record(&adhoc_view(&adhoc, profile), &mut rec).await;
        assert_eq!(adhoc.request_text(), configured.request_text(), "{profile} over HTTP");
        assert!(configured.proxy.len() >= 16, "{profile}: a PROXY v2 header came");
        assert_eq!(adhoc.proxy.len(), configured.proxy.len(), "{profile}: PROXY header length");
        assert_eq!(adhoc.proxy[..13], configured.proxy[..13], "{profile}: PROXY v2 command");

        let mut rec = Recorder::tls("127.0.0.81", &pki).await;
        let addr = rec.addr;
        let url = format!("https://{TLS_NAME}:{}/healthz", addr.port());
        let keys = format!("connect_to = \"{addr}\"\nca_file = \"{}\"\n", pki.ca_file.display());
        let toml = target_toml(&url, &keys, Some((profile.as_str(), &url, &keys)));
        let configured = record(view(&load(dir.path(), &toml), "hc"), &mut rec).await;
        let adhoc = config::AdHoc {
            url,
            profiles: vec![profile.as_str().to_owned()],
            connect_to: Some(addr.to_string()),
            ca_file: Some(pki.ca_file.clone()),
            ..config::AdHoc::default()
        };
        let adhoc = record(&adhoc_view(&adhoc, profile), &mut rec).await;
        assert!(!configured.request.is_empty(), "{profile}: a request came over TLS");
        assert_eq!(adhoc.request_text(), configured.request_text(), "{profile} inside TLS");
        assert_eq!(adhoc.sni, configured.sni, "{profile}: SNI");
        assert_eq!(adhoc.alpn_offered, configured.alpn_offered, "{profile}: ALPN");
    }
}

#[tokio::test]
async fn tls_kubelet_sends_no_sni_for_an_ip_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let mut rec = Recorder::tls("127.0.0.73", &pki).await;
    let url = format!("https://{}/ready", rec.addr);
    let toml = target_toml(&url, "verify = false", Some(("kubelet", &url, "")));
    let (recorded, outcome) = probe_and_record(&toml, "hc", &mut rec).await;
    assert_ok(&outcome);
    assert_eq!(recorded.sni, None, "Go sends no SNI for an IP literal");
    assert_eq!(
        recorded.request_text(),
        expected_head(Some(ProfileName::Kubelet), "/ready", "", &rec.addr.to_string())
    );
}

// ---------------------------------------------------------------------------------------------
// PROXY headers and source addresses
// ---------------------------------------------------------------------------------------------

fn pp2_proxy_tcp4(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else { panic!("IPv4 expected") };
    let mut want = PP2_SIGNATURE.to_vec();
    want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    want.extend_from_slice(&s.octets());
    want.extend_from_slice(&d.octets());
    want.extend_from_slice(&src.port().to_be_bytes());
    want.extend_from_slice(&dst.port().to_be_bytes());
    want
}

fn pp1_tcp4(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    format!("PROXY TCP4 {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port()).into_bytes()
}

#[tokio::test]
async fn aws_nlb_with_proxy_protocol_v2_sends_a_local_header_then_its_request() {
    let mut rec = Recorder::plain("127.0.0.80", OK_EMPTY).await;
    let url = format!("http://{}/healthz", rec.addr);
    let toml = target_toml(&url, "", Some(("aws-nlb", &url, "proxy_protocol = \"v2\"")));
    let (recorded, outcome) = probe_and_record(&toml, "hc", &mut rec).await;
    assert_ok(&outcome);
    assert_eq!(recorded.proxy, PP2_LOCAL, "a v2 LOCAL header with no addresses");
    let want = expected_head(Some(ProfileName::AwsNlb), "/healthz", "", &rec.addr.to_string());
    assert_eq!(recorded.request_text(), want);
}

#[tokio::test]
async fn aws_nlb_tcp_check_with_proxy_protocol_v2_sends_only_the_local_header() {
    let mut rec = Recorder::plain("127.0.0.81", OK_EMPTY).await;
    let url = format!("tcp://{}", rec.addr);
    let toml =
        target_toml(&format!("http://{}/", rec.addr), "", Some(("aws-nlb", &url, "proxy_protocol = \"v2\"")));
    let (recorded, outcome) = probe_and_record(&toml, "hc", &mut rec).await;
    assert_ok(&outcome);
    assert_eq!(recorded.proxy, PP2_LOCAL);
    assert!(
        recorded.request.is_empty(),
        "a TCP check sends nothing after the header: {:?}",
        recorded.request_text()
    );
}

#[tokio::test]
async fn haproxy_view_with_proxy_v2_sends_a_local_header() {
    let mut rec = Recorder::plain("127.0.0.82", OK_EMPTY).await;
    let url = format!("http://{}/", rec.addr);
    let toml = target_toml(&url, "", Some(("haproxy", &url, "proxy_protocol = \"v2\"")));
    let (recorded, outcome) = probe_and_record(&toml, "hc", &mut rec).await;
    assert_ok(&outcome);
    assert_eq!(recorded.proxy, PP2_LOCAL, "HAProxy's send-proxy-v2 on checks is LOCAL");
    assert_eq!(recorded.request_text(), "OPTIONS / HTTP/1.0\r\n\r\n");
}

#[tokio::test]
async fn haproxy_view_with_proxy_v1_sends_the_check_connection_addresses() {
    let mut rec = Recorder::plain("127.0.0.83", OK_EMPTY).await;
    let url = format!("http://{}/", rec.addr);
    let toml = target_toml(&url, "", Some(("haproxy", &url, "proxy_protocol = \"v1\"")));
    let (recorded, outcome) = probe_and_record(&toml, "hc", &mut rec).await;
    assert_ok(&outcome);
    assert_eq!(
        String::from_utf8_lossy(&recorded.proxy),
        String::from_utf8_lossy(&pp1_tcp4(recorded.peer, rec.addr)),
        "HAProxy's send-proxy on checks carries the check connection's own addresses"
    );
    assert_eq!(recorded.request_text(), "OPTIONS / HTTP/1.0\r\n\r\n");
}

#[tokio::test]
async fn client_view_with_proxy_v2_sends_a_proxy_command_with_its_addresses() {
    let mut rec = Recorder::plain("127.0.0.84", OK_EMPTY).await;
    let url = format!("http://{}/", rec.addr);
    let toml = target_toml(&url, "proxy_protocol = \"v2\"", None);
    let (recorded, outcome) = probe_and_record(&toml, "client", &mut rec).await;
    assert_ok(&outcome);
    assert_eq!(recorded.proxy, pp2_proxy_tcp4(recorded.peer, rec.addr));
    assert_eq!(recorded.request_text(), expected_head(None, "/", &rec.addr.to_string(), ""));
}

#[tokio::test]
async fn client_view_with_proxy_v1_sends_tcp4_with_its_addresses() {
    let mut rec = Recorder::plain("127.0.0.85", OK_EMPTY).await;
    let url = format!("http://{}/", rec.addr);
    let toml = target_toml(&url, "proxy_protocol = \"v1\"", None);
    let (recorded, outcome) = probe_and_record(&toml, "client", &mut rec).await;
    assert_ok(&outcome);
    assert_eq!(recorded.proxy, pp1_tcp4(recorded.peer, rec.addr));
}

#[tokio::test]
async fn checker_source_address_is_the_peer_the_server_sees() {
    let mut rec = Recorder::plain("127.0.0.86", OK_EMPTY).await;
    let url = format!("http://{}/healthz", rec.addr);
    let toml = target_toml(&url, "", Some(("aws-alb", &url, "source = \"127.0.0.87\"")));
    let (recorded, outcome) = probe_and_record(&toml, "hc", &mut rec).await;
    assert_ok(&outcome);
    let source: IpAddr = "127.0.0.87".parse().expect("ip");
    assert_eq!(recorded.peer.ip(), source);
    assert_eq!(outcome.request.source, Some(source));
    // The Host is the dialed address, not the source.
    assert_eq!(
        recorded.request_text(),
        expected_head(Some(ProfileName::AwsAlb), "/healthz", "", &rec.addr.to_string())
    );
}

#[tokio::test]
async fn client_source_address_is_the_peer_the_server_sees() {
    let mut rec = Recorder::plain("127.0.0.88", OK_EMPTY).await;
    let url = format!("http://{}/", rec.addr);
    let toml = target_toml(&url, "source = \"127.0.0.89\"", None);
    let (recorded, outcome) = probe_and_record(&toml, "client", &mut rec).await;
    assert_ok(&outcome);
    assert_eq!(recorded.peer.ip(), "127.0.0.89".parse::<IpAddr>().expect("ip"));
}

#[tokio::test]
async fn view_keys_override_the_profile_on_the_wire() {
    let mut rec = Recorder::plain("127.0.0.90", OK_EMPTY).await;
    let url = format!("http://{}/healthz", rec.addr);
    let keys = "host = \"shop.example.com\"\nuser_agent = \"probe/9\"\nheaders = { x-check = \"1\" }";
    let toml = target_toml(&url, "", Some(("aws-alb", &url, keys)));
    let (recorded, outcome) = probe_and_record(&toml, "hc", &mut rec).await;
    assert_ok(&outcome);
    // Profile header case (Title-Case) still applies; view headers follow the profile's.
    assert_eq!(
        recorded.request_text(),
        "GET /healthz HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: probe/9\r\nX-Check: 1\r\nConnection: close\r\n\r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// The real HAProxy against parallax's haproxy view
// ---------------------------------------------------------------------------------------------

/// A running HAProxy, killed (by its pid, through `Child`) when dropped.
struct Haproxy {
    child: Child,
    log: PathBuf,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Haproxy {
    /// Starts HAProxy in the foreground with one backend whose single server is `server` with
    /// the extra `server_opts`, and `backend` lines before it. The only listener is a unix
    /// socket in `dir`: nothing listens on the network.
    fn start(dir: &Path, backend: &str, server: SocketAddr, server_opts: &str) -> Haproxy {
        let binary = haproxy_binary();
        let cfg = dir.join("haproxy.cfg");
        let sock = dir.join("fe.sock");
        let text = format!(
            "global\n    log stderr format raw local0 info\n\
             defaults\n    mode http\n    log global\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n\
             frontend fe\n    bind unix@{sock}\n    default_backend be\n\
             backend be\n{backend}\n    server s1 {server} check inter 500ms {server_opts}\n",
            sock = sock.display(),
        );
        std::fs::write(&cfg, &text).expect("write haproxy.cfg");
        let log = dir.join("haproxy.log");
        let log_file = std::fs::File::create(&log).expect("create haproxy.log");
        let child = Command::new(binary)
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn haproxy");
        Haproxy { child, log }
    }

    /// The first check HAProxy sends to `rec`, with HAProxy's log in the panic when none comes.
    async fn first_check(&mut self, rec: &mut Recorder) -> Recorded {
        match tokio::time::timeout(Duration::from_secs(5), rec.rx.recv()).await {
            Ok(Some(r)) => r,
            _ => {
                let status = self.child.try_wait();
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("HAProxy sent no check to {} within 5 s (process: {status:?})\n{log}", rec.addr);
            }
        }
    }
}

/// The HAProxy binary: on `PATH`, or Debian's `/usr/sbin/haproxy` (not on a user's `PATH`).
/// Panics, rather than skipping, when there is none.
fn haproxy_binary() -> &'static str {
    for candidate in ["haproxy", "/usr/sbin/haproxy"] {
        if Command::new(candidate).arg("-v").output().is_ok_and(|o| o.status.success()) {
            return candidate;
        }
    }
    panic!(
        "HAProxy is not installed: install it with `apt-get install -y haproxy` (Debian, 2.6) to run \
         the wire fidelity tests (scripts/test does this when run as root)"
    );
}

/// Runs HAProxy against one recorder and parallax's view `hc` (profile `haproxy`, extra `keys`)
/// against another; returns (haproxy's, parallax's) recordings.
async fn haproxy_and_parallax(
    backend: &str,
    server_opts: &str,
    keys: &str,
    tls: bool,
    ips: (&str, &str),
    path: &str,
) -> (Recorded, Recorded, SocketAddr, SocketAddr) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut real, mut ours) = if tls {
        let pki = pki(dir.path());
        (Recorder::tls(ips.0, &pki).await, Recorder::tls(ips.1, &pki).await)
    } else {
        (Recorder::plain(ips.0, OK_EMPTY).await, Recorder::plain(ips.1, OK_EMPTY).await)
    };
    let mut haproxy = Haproxy::start(dir.path(), backend, real.addr, server_opts);
    let from_haproxy = haproxy.first_check(&mut real).await;
    drop(haproxy);

    let scheme = if tls { "https" } else { "http" };
    let url = format!("{scheme}://{}{path}", ours.addr);
    let toml = target_toml(&format!("http://{}/", ours.addr), "", Some(("haproxy", &url, keys)));
    let (from_parallax, outcome) = probe_and_record(&toml, "hc", &mut ours).await;
    assert_ok(&outcome);
    (from_haproxy, from_parallax, real.addr, ours.addr)
}

#[tokio::test]
async fn haproxy_plain_httpchk_matches_the_real_haproxy_byte_for_byte() {
    let (real, ours, _, _) =
        haproxy_and_parallax("    option httpchk", "", "", false, ("127.0.0.100", "127.0.0.101"), "/").await;
    assert_eq!(real.request_text(), "OPTIONS / HTTP/1.0\r\n\r\n", "what HAProxy 2.6 sends");
    assert_eq!(ours.request, real.request, "parallax: {:?}", ours.request_text());
    assert!(real.proxy.is_empty() && ours.proxy.is_empty());
}

#[tokio::test]
async fn haproxy_ssl_verify_none_matches_the_real_haproxy_sni_alpn_and_bytes() {
    let (real, ours, _, _) = haproxy_and_parallax(
        "    option httpchk",
        "ssl verify none",
        "",
        true,
        ("127.0.0.102", "127.0.0.103"),
        "/",
    )
    .await;
    assert_eq!(real.sni, None, "HAProxy sends no SNI without check-sni");
    assert_eq!(ours.sni, real.sni);
    assert_eq!(real.alpn_offered, Vec::<String>::new(), "HAProxy offers no ALPN on checks");
    assert_eq!(ours.alpn_offered, real.alpn_offered);
    assert_eq!(real.request_text(), "OPTIONS / HTTP/1.0\r\n\r\n");
    assert_eq!(ours.request, real.request, "parallax: {:?}", ours.request_text());
}

#[tokio::test]
async fn haproxy_check_sni_matches_a_view_with_sni() {
    let (real, ours, _, _) = haproxy_and_parallax(
        "    option httpchk",
        &format!("ssl verify none check-sni {TLS_NAME}"),
        &format!("sni = \"{TLS_NAME}\""),
        true,
        ("127.0.0.104", "127.0.0.105"),
        "/",
    )
    .await;
    assert_eq!(real.sni.as_deref(), Some(TLS_NAME));
    assert_eq!(ours.sni, real.sni);
    assert_eq!(ours.request, real.request);
}

#[tokio::test]
async fn haproxy_send_proxy_v2_matches_the_real_haproxy_byte_for_byte() {
    let (real, ours, _, _) = haproxy_and_parallax(
        "    option httpchk",
        "send-proxy-v2",
        "proxy_protocol = \"v2\"",
        false,
        ("127.0.0.106", "127.0.0.107"),
        "/",
    )
    .await;
    assert_eq!(real.proxy, PP2_LOCAL, "HAProxy 2.6 sends a v2 LOCAL header on checks");
    assert_eq!(ours.proxy, real.proxy);
    assert_eq!(ours.request, real.request);
}

#[tokio::test]
async fn haproxy_send_proxy_v1_matches_the_real_haproxy_shape() {
    let (real, ours, real_addr, our_addr) = haproxy_and_parallax(
        "    option httpchk",
        "send-proxy",
        "proxy_protocol = \"v1\"",
        false,
        ("127.0.0.108", "127.0.0.109"),
        "/",
    )
    .await;
    // Addresses and ports differ between the two runs; each must be its own connection's.
    assert_eq!(
        real.proxy,
        pp1_tcp4(real.peer, real_addr),
        "HAProxy: {:?}",
        String::from_utf8_lossy(&real.proxy)
    );
    assert_eq!(
        ours.proxy,
        pp1_tcp4(ours.peer, our_addr),
        "parallax: {:?}",
        String::from_utf8_lossy(&ours.proxy)
    );
    assert_eq!(ours.request, real.request);
}

#[tokio::test]
async fn haproxy_source_matches_a_view_with_source() {
    let (real, ours, _, _) = haproxy_and_parallax(
        "    option httpchk",
        "source 127.0.0.112",
        "source = \"127.0.0.113\"",
        false,
        ("127.0.0.110", "127.0.0.111"),
        "/",
    )
    .await;
    assert_eq!(real.peer.ip(), "127.0.0.112".parse::<IpAddr>().expect("ip"));
    assert_eq!(ours.peer.ip(), "127.0.0.113".parse::<IpAddr>().expect("ip"));
    assert_eq!(ours.request, real.request);
}

#[tokio::test]
async fn haproxy_custom_method_path_and_host_match_a_view_with_those_keys() {
    let (real, ours, _, _) = haproxy_and_parallax(
        "    option httpchk GET /healthz\n    http-check send hdr Host shop.example.com",
        "",
        "method = \"GET\"\nhost = \"shop.example.com\"",
        false,
        ("127.0.0.114", "127.0.0.115"),
        "/healthz",
    )
    .await;
    assert_eq!(real.request_text(), "GET /healthz HTTP/1.0\r\nhost: shop.example.com\r\n\r\n");
    assert_eq!(ours.request, real.request, "parallax: {:?}", ours.request_text());
}

// ---------------------------------------------------------------------------------------------
// The real HAProxy's server state against parallax's verdict for the haproxy view
// ---------------------------------------------------------------------------------------------

/// A server answering the statuses of `script` in turn (then the last one), reporting the index
/// of each check it has answered. Stops when dropped.
struct Scripted {
    addr: SocketAddr,
    answered: mpsc::UnboundedReceiver<usize>,
    task: JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    async fn start(ip: &str, script: Vec<u16>) -> Scripted {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind a loopback server");
        let addr = listener.local_addr().expect("server address");
        let (tx, answered) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            for i in 0..64 {
                let Ok((mut stream, _)) = listener.accept().await else { break };
                let status = script.get(i).or(script.last()).copied().unwrap_or(200);
                let mut head = Vec::new();
                read_head(&mut stream, &mut head, tokio::time::Instant::now() + READ_LIMIT).await;
                let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                answer_and_close(&mut stream, answer.as_bytes(), true).await;
                let _ = tx.send(i);
            }
        });
        Scripted { addr, answered, task }
    }
}

/// HAProxy's state of `be/s1` from its log: the last `is UP`/`is DOWN` line, or UP (a fresh
/// server's state) when none was logged yet.
fn haproxy_state(log: &Path) -> parallax::verdict::Health {
    use parallax::verdict::Health;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let last = text
        .lines()
        .rev()
        .filter(|l| l.contains("Server be/s1 is "))
        .filter_map(|l| {
            if l.contains(" is DOWN") {
                Some(Health::Unhealthy)
            } else if l.contains(" is UP") {
                Some(Health::Healthy)
            } else {
                None
            }
        })
        .next();
    last.unwrap_or(Health::Healthy)
}

/// Runs HAProxy's checks against `script` (true = 200, false = 500) and asserts that after every
/// check HAProxy's server state equals the known verdict parallax computes for its `haproxy`
/// view from the same results.
async fn assert_haproxy_state_matches_verdict(ip: &str, script: &[bool]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let statuses = script.iter().map(|ok| if *ok { 200 } else { 500 }).collect();
    let mut server = Scripted::start(ip, statuses).await;
    let url = format!("http://{}/", server.addr);
    let plan = load(dir.path(), &target_toml(&url, "", Some(("haproxy", &url, ""))));
    let hc = view(&plan, "hc");
    let mut verdict = parallax::verdict::Verdict::for_view(hc);

    // inter 300 ms; the state is read 120 ms after each answer, well before the next check.
    let haproxy_dir = dir.path().join("haproxy");
    std::fs::create_dir_all(&haproxy_dir).expect("haproxy dir");
    let haproxy = Haproxy::start(&haproxy_dir, "    option httpchk", server.addr, "inter 300ms");
    let mut seen = Vec::new();
    let mut computed = Vec::new();
    for (i, ok) in script.iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(5), server.answered.recv()).await {
            Ok(Some(n)) => assert_eq!(n, i, "checks arrive one at a time"),
            _ => panic!(
                "HAProxy sent no check {i} within 5 s\n{}",
                std::fs::read_to_string(&haproxy.log).unwrap_or_default()
            ),
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
        seen.push(haproxy_state(&haproxy.log));
        verdict.observe(*ok, tokio::time::Instant::now());
        computed.push(verdict.known());
    }
    drop(haproxy);
    let seen: Vec<_> = seen.into_iter().map(Some).collect();
    assert_eq!(
        computed, seen,
        "parallax's haproxy verdict vs HAProxy's server state after each check of {script:?}"
    );
}

#[tokio::test]
async fn haproxy_first_failure_marks_a_fresh_server_down_and_rise_2_brings_it_back() {
    // F: DOWN at once; S alone: still DOWN; S S: UP; F F: still UP (fall 3); F: DOWN.
    let script = [false, false, true, false, true, true, false, false, true, false, false, false];
    assert_haproxy_state_matches_verdict("127.0.0.116", &script).await;
}

#[tokio::test]
async fn haproxy_first_success_makes_a_fresh_server_fully_up_until_fall_3() {
    assert_haproxy_state_matches_verdict("127.0.0.117", &[true, false, false, false]).await;
}
