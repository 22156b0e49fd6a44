//! TLS layer: rustls with SNI from the host, a name, or none; verification with webpki-roots
//! and/or `ca_file`, or off (the chain is recorded either way); certificate summary.
//!
//! The handshake runs with a verifier that accepts any chain but still checks the handshake
//! signatures, so the server's chain is always in hand; when `verify` is on, the chain is then
//! verified with webpki against the injected clock. That way a failed verification still reports
//! which certificate the server showed, and an expired or mis-named certificate is told apart
//! from an untrusted one.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, PeerIncompatible};
use rustls::{RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::edges::Prefix;
use super::outcome::{quote_bytes, ErrorCode, Failure, TlsSummary};
use super::timestamp::{Precision, Timestamp};
use crate::config::TlsSettings;

/// `ClientConfig`s built once per distinct (verify, ca_file, alpn, SNI on/off) and shared by all
/// probes.
pub struct TlsConfigs {
    time: Arc<dyn TimeProvider>,
    provider: Arc<CryptoProvider>,
    prepared: Mutex<HashMap<ConfigKey, Arc<Prepared>>>,
    /// Bumped (under the `prepared` lock) by [`TlsConfigs::forget`]: a config whose files were
    /// read before the bump is used once but not cached, so a forget that lands while a
    /// `ca_file` is being read cannot be undone by the stale result.
    generation: AtomicU64,
}

impl TlsConfigs {
    /// Configs that take the time from the system clock.
    pub fn new() -> TlsConfigs {
        TlsConfigs::with_time(Arc::new(rustls::time_provider::DefaultTimeProvider))
    }

    /// Configs that take the time from `time` (tests move it to check expiry).
    pub fn with_time(time: Arc<dyn TimeProvider>) -> TlsConfigs {
        TlsConfigs {
            time,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            prepared: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Drops every prepared config: the next probe of each setting builds it again, reading its
    /// `ca_file` anew (a reload after a CA bundle changed). Probes in flight keep theirs.
    pub fn forget(&self) {
        let mut cache = self.prepared.lock().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        cache.clear();
    }

    /// The config and verifier for these settings, built on first use. A failure (a bad
    /// `ca_file`) is not kept: the file may be fixed before the next probe.
    async fn prepare(&self, settings: &TlsSettings, send_sni: bool) -> Result<Arc<Prepared>, Failure> {
        let key = ConfigKey {
            verify: settings.verify,
            ca_file: settings.ca_file.clone(),
            alpn: settings.alpn.clone(),
            send_sni,
        };
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some(p) = self.prepared.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(p.clone());
        }
        let verifier = if settings.verify {
            let roots = match &settings.ca_file {
                Some(path) => roots_from_file(path).await?,
                None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
            };
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .build()
                    .map_err(|e| handshake_failure(format!("cannot build the certificate verifier: {e}")))?;
            Some(verifier)
        } else {
            None
        };
        let mut client = ClientConfig::builder_with_details(self.provider.clone(), self.time.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| handshake_failure(format!("cannot build the TLS client config: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SignaturesOnly { provider: self.provider.clone() }))
            .with_no_client_auth();
        client.alpn_protocols = settings.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        client.enable_sni = send_sni;
        // Health checkers make a full handshake on every fresh connection; a resumed session
        // would skip the certificate and hide a changed one.
        client.resumption = Resumption::disabled();
        let prepared = Arc::new(Prepared { client: Arc::new(client), verifier });
        let mut cache = self.prepared.lock().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::SeqCst) != generation {
            return Ok(prepared);
        }
        Ok(cache.entry(key).or_insert(prepared).clone())
    }
}

impl Default for TlsConfigs {
    fn default() -> TlsConfigs {
        TlsConfigs::new()
    }
}

impl fmt::Debug for TlsConfigs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prepared = self.prepared.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("TlsConfigs").field("time", &self.time).field("prepared", &prepared.len()).finish()
    }
}

/// A finished handshake.
#[derive(Debug)]
pub struct Handshake {
    /// The encrypted stream.
    pub stream: TlsStream<FirstBytes<TcpStream>>,
    /// What the handshake showed.
    pub summary: TlsSummary,
}

/// Runs the handshake on `tcp`, sending `sni` (no SNI extension at all when `None`), before
/// `deadline`. With `verify`, the chain is checked against `sni`, or, without SNI, against
/// `verify_name` (the URL host: a DNS name or an IP literal).
/// On failure, returns the summary of whatever certificate chain was seen.
/// Errors: every `tls_*` code of [`ErrorCode`].
pub async fn handshake(
    configs: &TlsConfigs,
    tcp: TcpStream,
    settings: &TlsSettings,
    sni: Option<&str>,
    verify_name: &str,
    deadline: Instant,
) -> Result<Handshake, (Failure, Option<TlsSummary>)> {
    let prepared = configs.prepare(settings, sni.is_some()).await.map_err(|f| (f, None))?;
    let name = sni.unwrap_or(verify_name);
    // rustls wants a name even when no SNI is sent; it is then used only for verification.
    let server_name = ServerName::try_from(name.to_owned())
        .map_err(|e| (handshake_failure(format!("{name:?} is not a valid TLS server name: {e}")), None))?;

    let connect =
        TlsConnector::from(prepared.client.clone()).connect(server_name.clone(), FirstBytes::new(tcp));
    let stream = match tokio::time::timeout_at(deadline, connect.into_fallible()).await {
        Ok(Ok(stream)) => stream,
        Ok(Err((e, io))) => return Err((classify_handshake(&e, io.first()), None)),
        Err(_) => {
            return Err((
                Failure::new(ErrorCode::TlsTimeout, "the handshake did not finish before the deadline"),
                None,
            ))
        }
    };

    let (_, conn) = stream.get_ref();
    let chain = conn.peer_certificates().unwrap_or_default();
    let summary = summarize(conn, chain);
    if let Some(verifier) = &prepared.verifier {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err((
                Failure::new(ErrorCode::TlsCertUntrusted, "the server sent no certificate"),
                Some(summary),
            ));
        };
        let Some(now) = configs.time.current_time() else {
            return Err((
                handshake_failure("the clock is unavailable: cannot check certificate validity"),
                Some(summary),
            ));
        };
        if let Err(e) = verifier.verify_server_cert(leaf, intermediates, &server_name, &[], now) {
            let failure = classify_verification(&e, name, settings.ca_file.as_deref(), &summary);
            return Err((failure, Some(summary)));
        }
    }
    Ok(Handshake { stream, summary })
}

/// A stream that remembers the first bytes the peer sent, to tell a plain-text answer to the
/// ClientHello (an HTTP server's `400`) from a broken TLS one. Past those bytes it only passes
/// data through.
#[derive(Debug)]
pub struct FirstBytes<S> {
    inner: S,
    first: Prefix<FIRST_BYTES>,
}

// Enough for a status line such as `HTTP/1.1 400 Bad Request`.
const FIRST_BYTES: usize = 24;

impl<S> FirstBytes<S> {
    /// Wraps `inner`; nothing recorded yet.
    pub fn new(inner: S) -> FirstBytes<S> {
        FirstBytes { inner, first: Prefix::default() }
    }

    /// The first bytes read from the peer (at most 24).
    pub fn first(&self) -> &[u8] {
        self.first.as_slice()
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.first.keep(&buf.filled()[before..]);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstBytes<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConfigKey {
    verify: bool,
    ca_file: Option<PathBuf>,
    alpn: Vec<String>,
    send_sni: bool,
}

#[derive(Debug)]
struct Prepared {
    client: Arc<ClientConfig>,
    /// Present when `verify` is on.
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

/// Accepts any certificate chain during the handshake (it is verified afterwards, see the module
/// doc) but checks the handshake signatures, so the peer must hold the key of the certificate it
/// showed.
#[derive(Debug)]
struct SignaturesOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SignaturesOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The trust anchors of a PEM `ca_file`: only these are trusted when it is given.
async fn roots_from_file(path: &Path) -> Result<RootCertStore, Failure> {
    let shown = path.display();
    let pem = tokio::fs::read(path)
        .await
        .map_err(|e| handshake_failure(format!("cannot read ca_file {shown}: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| handshake_failure(format!("ca_file {shown} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(handshake_failure(format!("ca_file {shown} holds no CERTIFICATE block")));
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            handshake_failure(format!(
                "ca_file {shown}: certificate #{} is not a usable trust anchor: {e}",
                i + 1
            ))
        })?;
    }
    Ok(roots)
}

fn handshake_failure(detail: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::TlsHandshakeFailure, detail)
}

/// Whether the first bytes the server sent are plain text rather than a TLS record (record types
/// 20-24: change_cipher_spec, alert, handshake, application_data, heartbeat): the peer speaks a
/// text protocol, typically a plain-HTTP server answering the ClientHello with `400`. Binary junk
/// that is not TLS either stays a handshake failure: nothing says a plain-text server sent it.
fn not_tls(first: &[u8]) -> bool {
    let text = |b: &u8| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n' | b'\t');
    first.first().is_some_and(|b| !(20..=24).contains(b)) && first.iter().all(text)
}

/// Names a failed handshake: `tls_plaintext_peer` when the server's first bytes
/// (`first`) are plain text, `tls_version_mismatch`, `tls_alert` with the alert's name, else
/// `tls_handshake_failure`. `e` is the error tokio-rustls returned.
pub fn classify_handshake(e: &io::Error, first: &[u8]) -> Failure {
    if not_tls(first) {
        return Failure::new(
            ErrorCode::TlsPlaintextPeer,
            format!("the server answered the ClientHello with non-TLS bytes: {}", quote_bytes(first)),
        );
    }
    let tls_error = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls_error {
        Some(rustls::Error::AlertReceived(AlertDescription::ProtocolVersion)) => Failure::new(
            ErrorCode::TlsVersionMismatch,
            "the server sent alert protocol_version: no TLS version in common (we offer TLS 1.2 and 1.3)",
        ),
        Some(rustls::Error::AlertReceived(alert)) => {
            Failure::new(ErrorCode::TlsAlert, format!("the server sent alert {}", alert_name(*alert)))
        }
        Some(rustls::Error::PeerIncompatible(
            p @ (PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled),
        )) => Failure::new(
            ErrorCode::TlsVersionMismatch,
            format!("no TLS version in common (we offer TLS 1.2 and 1.3): {p:?}"),
        ),
        Some(other) => handshake_failure(format!("TLS handshake failed: {other}")),
        None => match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                handshake_failure("the server closed the connection during the handshake")
            }
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                handshake_failure(format!("the connection was reset during the handshake: {e}"))
            }
            _ => handshake_failure(format!("TLS handshake failed: {e}")),
        },
    }
}

/// Names a failed certificate verification: `tls_cert_expired`,
/// `tls_cert_not_yet_valid`, `tls_cert_name_mismatch` (naming the certificate's SANs from
/// `seen`) or `tls_cert_untrusted`. `name` is the name verified, `ca_file` the roots trusted
/// (`None`: the public web roots).
pub fn classify_verification(
    e: &rustls::Error,
    name: &str,
    ca_file: Option<&Path>,
    seen: &TlsSummary,
) -> Failure {
    let rustls::Error::InvalidCertificate(cert_error) = e else {
        return Failure::new(ErrorCode::TlsCertUntrusted, format!("certificate verification failed: {e}"));
    };
    let not_after = seen.not_after.as_deref().unwrap_or("an unknown time");
    match cert_error {
        CertificateError::Expired => {
            Failure::new(ErrorCode::TlsCertExpired, format!("the certificate expired at {not_after}"))
        }
        CertificateError::ExpiredContext { time, not_after } => Failure::new(
            ErrorCode::TlsCertExpired,
            format!(
                "the certificate expired at {} (now {})",
                certificate_time(unix(not_after)),
                certificate_time(unix(time))
            ),
        ),
        CertificateError::NotValidYet => {
            Failure::new(ErrorCode::TlsCertNotYetValid, "the certificate is not valid yet")
        }
        CertificateError::NotValidYetContext { time, not_before } => Failure::new(
            ErrorCode::TlsCertNotYetValid,
            format!(
                "the certificate is not valid before {} (now {})",
                certificate_time(unix(not_before)),
                certificate_time(unix(time))
            ),
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => Failure::new(
            ErrorCode::TlsCertNameMismatch,
            format!("the certificate is for [{}], not {name}", seen.cert_sans.join(", ")),
        ),
        CertificateError::UnknownIssuer => {
            let trusted = match ca_file {
                Some(path) => format!("the roots of ca_file {}", path.display()),
                None => "the public web roots".to_owned(),
            };
            Failure::new(
                ErrorCode::TlsCertUntrusted,
                format!("the certificate chain does not lead to a trusted root (unknown issuer; trusting {trusted})"),
            )
        }
        other => {
            Failure::new(ErrorCode::TlsCertUntrusted, format!("the certificate is not trusted: {other}"))
        }
    }
}

/// `HandshakeFailure` -> `handshake_failure`, the name the TLS RFCs use.
fn alert_name(alert: AlertDescription) -> String {
    let debug = format!("{alert:?}");
    let mut name = String::with_capacity(debug.len() + 4);
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

fn summarize(conn: &rustls::ClientConnection, chain: &[CertificateDer<'_>]) -> TlsSummary {
    let mut summary = TlsSummary {
        version: conn.protocol_version().map(|v| format!("{v:?}")),
        cipher: conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())),
        alpn: conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
        chain_len: chain.len(),
        ..TlsSummary::default()
    };
    // A leaf x509-parser cannot read is still a handshake that happened: the summary just has
    // no certificate fields.
    if let Some(Ok((_, leaf))) = chain.first().map(|der| x509_parser::parse_x509_certificate(der)) {
        summary.cert_subject = Some(rfc4514(leaf.subject()));
        if let Ok(Some(san)) = leaf.subject_alternative_name() {
            summary.cert_sans = san.value.general_names.iter().filter_map(san_string).collect();
        }
        let not_after = leaf.validity().not_after.timestamp();
        summary.not_after = Some(certificate_time(not_after));
        summary.not_after_unix = Some(not_after);
    }
    summary
}

fn san_string(name: &x509_parser::extensions::GeneralName<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    match name {
        GeneralName::DNSName(dns) => Some((*dns).to_owned()),
        GeneralName::IPAddress(bytes) => {
            let ip = match bytes.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).ok()?),
                16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).ok()?),
                _ => return None,
            };
            Some(ip.to_string())
        }
        _ => None,
    }
}

/// A distinguished name as RFC 4514 writes it: most specific RDN first, `,` between RDNs, `+`
/// inside a multi-valued one, special characters escaped.
fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            let parts: Vec<String> = rdn
                .iter()
                .map(|attr| {
                    let oid = attr.attr_type();
                    let key = x509_parser::objects::oid2abbrev(oid, registry)
                        .map(str::to_owned)
                        .unwrap_or_else(|_| oid.to_id_string());
                    let value = match attr.as_str() {
                        Ok(s) => escape_rfc4514(s),
                        Err(_) => format!(
                            "#{}",
                            attr.attr_value().data.iter().map(|b| format!("{b:02x}")).collect::<String>()
                        ),
                    };
                    format!("{key}={value}")
                })
                .collect();
            parts.join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn escape_rfc4514(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    out
}

fn unix(t: &UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

/// A certificate time (seconds since the Unix epoch) as RFC 3339 UTC, `2027-01-01T00:00:00Z`.
fn certificate_time(secs: i64) -> String {
    Timestamp::from_unix_secs(secs).rfc3339(Precision::Seconds)
}

#[cfg(test)]
mod tests;
