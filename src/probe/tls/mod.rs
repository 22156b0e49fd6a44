//! TLS layer: rustls with SNI from the host, a name, or none; verification with webpki-roots
//! and/or `ca_file`, or off (the chain is recorded either way); certificate summary.
//!
//! The handshake runs with a verifier that accepts any chain but still checks the handshake
//! signatures, so the server's chain is always in hand; when `verify` is on, the chain is then
//! verified with webpki against the injected clock. That way a failed verification still reports
//! which certificate the server showed, and an expired or mis-named certificate is told apart
//! from an untrusted one.
//!
//! A certificate that is itself in `ca_file` is trusted as a pinned certificate, as curl's
//! `--cacert` and OpenSSL trust a self-signed one (see [`TrustVerifier`]). Every failure detail
//! is a sentence naming the certificate presented (subject, SANs, issuer, validity) and why it
//! was rejected, never a Rust `Debug` form.

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
use crate::config::{read_input, InputError, TlsSettings, MAX_CA_FILE_BYTES};

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
            let (roots, pinned) = match &settings.ca_file {
                Some(path) => roots_from_file(path).await?,
                None => (RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }, Vec::new()),
            };
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| handshake_failure(format!("cannot build the certificate verifier: {e}")))?;
            Some(Arc::new(TrustVerifier { webpki, pinned }))
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
        .map_err(|_| (handshake_failure(format!("\"{name}\" is not a valid TLS server name")), None))?;

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
        if let Err(e) = verifier.verify(leaf, intermediates, &server_name, now) {
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
    verifier: Option<Arc<TrustVerifier>>,
}

/// Certificate verification when `verify` is on: webpki's, against the roots (the public web
/// roots, or those of `ca_file`), plus pinning: an end-entity certificate that is byte for byte
/// one of the certificates of `ca_file` is trusted even though webpki refuses it, when webpki's
/// reason is only that it is a CA certificate (`CA:TRUE`, as `openssl req -x509` makes:
/// `CaUsedAsEndEntity`) or, for a self-issued certificate, that no root issued it
/// (`UnknownIssuer`). That is what curl `--cacert` and OpenSSL do with such a certificate.
///
/// A pinned certificate is still checked for what a server certificate must be, exactly:
/// - its validity window (`notBefore`..`notAfter`) against the injected clock;
/// - the name verified (the SNI, or the URL host without SNI) against its SANs, by webpki's own
///   name matching (DNS names with wildcards, IP addresses; the subject CN is not a name);
/// - its extended key usage, when it has one, must allow TLS server authentication.
///
/// Not checked, as for any trust anchor: its own signature and its basic constraints. The
/// handshake signature is verified during the handshake ([`SignaturesOnly`]), so the server
/// must hold the pinned certificate's private key. Every other webpki verdict stands.
#[derive(Debug)]
struct TrustVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// The certificates of `ca_file` (none with the public roots).
    pinned: Vec<CertificateDer<'static>>,
}

impl TrustVerifier {
    /// Verifies `end_entity` (with `intermediates`) for `name` at `now`.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        match self.webpki.verify_server_cert(end_entity, intermediates, name, &[], now) {
            Ok(_) => Ok(()),
            Err(e) if pinnable(&e, end_entity) && self.is_pinned(end_entity) => {
                verify_pinned(end_entity, name, now)
            }
            Err(e) => Err(e),
        }
    }

    fn is_pinned(&self, cert: &CertificateDer<'_>) -> bool {
        self.pinned.iter().any(|p| p.as_ref() == cert.as_ref())
    }
}

/// Whether webpki's refusal `e` of `cert` is one pinning answers: a CA certificate used as a
/// server's, or a self-issued certificate no root issued.
fn pinnable(e: &rustls::Error, cert: &CertificateDer<'_>) -> bool {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity)
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            x509_parser::parse_x509_certificate(cert)
                .is_ok_and(|(_, c)| c.issuer().as_raw() == c.subject().as_raw())
        }
        _ => false,
    }
}

/// The checks a pinned certificate still passes (see [`TrustVerifier`]).
fn verify_pinned(
    cert: &CertificateDer<'_>,
    name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let invalid = rustls::Error::InvalidCertificate;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|_| invalid(CertificateError::BadEncoding))?;
    let validity = parsed.validity();
    let at =
        |secs: i64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs.max(0).unsigned_abs()));
    let secs = unix(&now);
    if secs < validity.not_before.timestamp() {
        return Err(invalid(CertificateError::NotValidYetContext {
            time: now,
            not_before: at(validity.not_before.timestamp()),
        }));
    }
    if secs > validity.not_after.timestamp() {
        return Err(invalid(CertificateError::ExpiredContext {
            time: now,
            not_after: at(validity.not_after.timestamp()),
        }));
    }
    if let Ok(Some(eku)) = parsed.extended_key_usage() {
        if !(eku.value.server_auth || eku.value.any) {
            return Err(invalid(CertificateError::InvalidPurpose));
        }
    }
    let end_entity =
        webpki::EndEntityCert::try_from(cert).map_err(|_| invalid(CertificateError::BadEncoding))?;
    end_entity.verify_is_valid_for_subject_name(name).map_err(|e| match e {
        webpki::Error::CertNotValidForName(cx) => invalid(CertificateError::NotValidForNameContext {
            expected: cx.expected,
            presented: cx.presented,
        }),
        other => invalid(CertificateError::Other(rustls::OtherError(Arc::new(other)))),
    })
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

/// The trust anchors of a PEM `ca_file` (only these are trusted when it is given), and its
/// certificates as they are, for pinning.
async fn roots_from_file(path: &Path) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), Failure> {
    let shown = path.display();
    // Bounded as `check` reads it (a FIFO swapped in since would block a thread forever).
    let owned = path.to_path_buf();
    let pem = tokio::task::spawn_blocking(move || read_input(&owned, MAX_CA_FILE_BYTES))
        .await
        .map_err(|e| handshake_failure(format!("cannot read ca_file {shown}: {e}")))?
        .map_err(|e| {
            handshake_failure(match e {
                InputError::Io(e) => format!("cannot read ca_file {shown}: {e}"),
                other => format!("ca_file {shown} {other}"),
            })
        })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| handshake_failure(format!("ca_file {shown} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(handshake_failure(format!("ca_file {shown} holds no CERTIFICATE block")));
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        roots.add(cert.clone()).map_err(|e| {
            handshake_failure(format!(
                "ca_file {shown}: certificate #{} is not a usable trust anchor: {}",
                i + 1,
                tls_error_sentence(&e)
            ))
        })?;
    }
    Ok((roots, certs))
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
            format!("no TLS version in common (we offer TLS 1.2 and 1.3): {}", words(p)),
        ),
        Some(other) => handshake_failure(format!("TLS handshake failed: {}", tls_error_sentence(other))),
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

/// A rustls error as a phrase (never its `Debug` form): what went wrong in the handshake.
fn tls_error_sentence(e: &rustls::Error) -> String {
    use rustls::Error as E;
    match e {
        E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            "the server sent a TLS message out of order".to_owned()
        }
        E::InvalidMessage(m) => format!("the server sent an invalid TLS message ({})", words(m)),
        E::NoCertificatesPresented => "the server presented no certificate".to_owned(),
        E::DecryptError => "a record from the server could not be decrypted".to_owned(),
        E::EncryptError => "a record could not be encrypted".to_owned(),
        E::PeerIncompatible(p) => format!("the server is incompatible with our offer ({})", words(p)),
        E::PeerMisbehaved(m) => format!("the server broke the TLS protocol ({})", words(m)),
        E::AlertReceived(alert) => format!("the server sent alert {}", alert_name(*alert)),
        E::InvalidCertificate(c) => {
            format!(
                "the server's certificate or handshake signature was rejected: {}",
                certificate_error_reason(c)
            )
        }
        E::InvalidCertRevocationList(_) => "a certificate revocation list is invalid".to_owned(),
        E::General(message) => message.clone(),
        E::FailedToGetCurrentTime => "the clock is unavailable".to_owned(),
        E::FailedToGetRandomBytes => "no random bytes are available".to_owned(),
        E::HandshakeNotComplete => "the handshake did not complete".to_owned(),
        E::PeerSentOversizedRecord => "the server sent an oversized TLS record".to_owned(),
        E::NoApplicationProtocol => "the server accepts none of the ALPN protocols offered".to_owned(),
        E::BadMaxFragmentSize => "the maximum fragment size is invalid".to_owned(),
        other => words(other),
    }
}

/// Names a failed certificate verification: `tls_cert_expired`, `tls_cert_not_yet_valid`,
/// `tls_cert_name_mismatch` (naming the certificate's SANs from `seen`) or `tls_cert_untrusted`.
/// `name` is the name verified, `ca_file` the roots trusted (`None`: the public web roots). The
/// detail is a sentence: why the certificate was rejected, the certificate presented (subject,
/// SANs, issuer, validity, from `seen`) and what to do.
pub fn classify_verification(
    e: &rustls::Error,
    name: &str,
    ca_file: Option<&Path>,
    seen: &TlsSummary,
) -> Failure {
    let presented = presented(seen);
    let rustls::Error::InvalidCertificate(cert_error) = e else {
        return Failure::new(
            ErrorCode::TlsCertUntrusted,
            format!("certificate verification failed: {}; {presented}", tls_error_sentence(e)),
        );
    };
    let trusted = match ca_file {
        Some(path) => format!("the roots of ca_file {}", path.display()),
        None => "the public web roots".to_owned(),
    };
    let not_after = seen.not_after.as_deref().unwrap_or("an unknown time");
    let not_before = seen.not_before.as_deref().unwrap_or("an unknown time");
    let (code, why, todo) = match cert_error {
        CertificateError::Expired => (
            ErrorCode::TlsCertExpired,
            format!("the certificate expired at {not_after}"),
            "renew it (or fix the renewal that should have)".to_owned(),
        ),
        CertificateError::ExpiredContext { time, not_after } => (
            ErrorCode::TlsCertExpired,
            format!(
                "the certificate expired at {} (now {})",
                certificate_time(unix(not_after)),
                certificate_time(unix(time))
            ),
            "renew it (or fix the renewal that should have)".to_owned(),
        ),
        CertificateError::NotValidYet => (
            ErrorCode::TlsCertNotYetValid,
            format!("the certificate is not valid before {not_before}"),
            "serve the certificate valid now, or check the clocks".to_owned(),
        ),
        CertificateError::NotValidYetContext { time, not_before } => (
            ErrorCode::TlsCertNotYetValid,
            format!(
                "the certificate is not valid before {} (now {})",
                certificate_time(unix(not_before)),
                certificate_time(unix(time))
            ),
            "serve the certificate valid now, or check the clocks".to_owned(),
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => (
            ErrorCode::TlsCertNameMismatch,
            format!("the certificate is for [{}], not {name}", seen.cert_sans.join(", ")),
            format!("serve the certificate issued for {name}, or add {name} to its SANs"),
        ),
        CertificateError::UnknownIssuer => (
            ErrorCode::TlsCertUntrusted,
            format!(
                "the certificate chain does not lead to a trusted root (unknown issuer; trusting {trusted})"
            ),
            "serve the full chain, or trust the CA that issued it (ca_file)".to_owned(),
        ),
        CertificateError::Other(other)
            if other.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity) =>
        {
            (
                ErrorCode::TlsCertUntrusted,
                format!(
                    "the certificate is a CA certificate (CA:TRUE) used as the server's own, and it is \
                     not itself in the trusted set ({trusted})"
                ),
                "put exactly this certificate in ca_file to pin it, or serve a server certificate \
                 issued by a trusted CA"
                    .to_owned(),
            )
        }
        other => (
            ErrorCode::TlsCertUntrusted,
            format!("the certificate is not trusted: {}", certificate_error_reason(other)),
            format!("serve a valid chain for {name} (trusting {trusted})"),
        ),
    };
    Failure::new(code, format!("{why}; {presented}; {todo}"))
}

/// Why a certificate was rejected, for the reasons [`classify_verification`] does not name with
/// a code of their own: a phrase, never a `Debug` form.
fn certificate_error_reason(e: &CertificateError) -> String {
    use CertificateError as C;
    match e {
        C::BadEncoding => "it is not a well-formed X.509 certificate".to_owned(),
        C::Expired | C::ExpiredContext { .. } => "it has expired".to_owned(),
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".to_owned(),
        C::Revoked => "it has been revoked".to_owned(),
        C::UnhandledCriticalExtension => {
            "it has a critical extension the verifier does not process".to_owned()
        }
        C::UnknownIssuer => "no trusted root issued it (unknown issuer)".to_owned(),
        C::UnknownRevocationStatus => "its revocation status is unknown".to_owned(),
        C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
            "its revocation list has expired".to_owned()
        }
        C::BadSignature => "a certificate of the chain is not correctly signed by its issuer".to_owned(),
        C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "it is signed with an algorithm the verifier does not support".to_owned()
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "it is not valid for the name checked".to_owned()
        }
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "its extended key usage does not allow TLS server authentication".to_owned()
        }
        C::InvalidOcspResponse => "the server's OCSP response is invalid".to_owned(),
        C::ApplicationVerificationFailure => "the application refused it".to_owned(),
        C::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
            Some(w) => webpki_reason(w),
            None => format!("{}", other.0),
        },
        // `UnsupportedSignatureAlgorithm` (deprecated) and variants added later.
        other => words(other),
    }
}

/// webpki's reasons that rustls passes on as `CertificateError::Other`, as phrases.
fn webpki_reason(e: &webpki::Error) -> String {
    use webpki::Error as W;
    match e {
        W::CaUsedAsEndEntity => "it is a CA certificate (CA:TRUE) used as a server certificate".to_owned(),
        W::EndEntityUsedAsCa => {
            "a certificate that is not a CA (CA:FALSE) signed the next one in the chain".to_owned()
        }
        W::CertDistrusted => "its key is explicitly distrusted".to_owned(),
        W::PathLenConstraintViolated => {
            "the chain is longer than a CA's path length constraint allows".to_owned()
        }
        W::NameConstraintViolation => "it violates a CA's name constraints".to_owned(),
        W::MaximumPathDepthExceeded => "the chain is too long".to_owned(),
        W::MaximumSignatureChecksExceeded | W::MaximumPathBuildCallsExceeded => {
            "the chain is too complex to verify".to_owned()
        }
        W::MaximumNameConstraintComparisonsExceeded => "it has too many name constraints to check".to_owned(),
        W::EmptyEkuExtension => "its extended key usage extension is empty".to_owned(),
        W::ExtensionValueInvalid | W::MalformedExtensions => "one of its extensions is malformed".to_owned(),
        W::MalformedDnsIdentifier => "one of its DNS names is malformed".to_owned(),
        W::MalformedNameConstraint => "a name constraint is malformed".to_owned(),
        W::UnsupportedCertVersion => "it is not an X.509 v3 certificate".to_owned(),
        W::UnsupportedCriticalExtension => {
            "it has a critical extension the verifier does not process".to_owned()
        }
        W::SignatureAlgorithmMismatch => "its two signature algorithm fields disagree".to_owned(),
        W::InvalidSerialNumber => "its serial number is malformed".to_owned(),
        W::InvalidCertValidity => "its validity window is invalid (notAfter before notBefore)".to_owned(),
        W::BadDer | W::BadDerTime | W::TrailingData(_) => "it is not well-formed DER".to_owned(),
        W::UnsupportedNameType => "the name checked is of a type the verifier does not support".to_owned(),
        other => words(other),
    }
}

/// "CN=shop.example.com (SANs shop.example.com; issuer CN=R3,O=Let's Encrypt; valid
/// 2026-01-01T00:00:00Z to 2026-04-01T00:00:00Z)": the certificate `seen` presented.
fn presented(seen: &TlsSummary) -> String {
    let Some(subject) = &seen.cert_subject else {
        return "the server presented a certificate parallax cannot read".to_owned();
    };
    let sans = if seen.cert_sans.is_empty() { "none".to_owned() } else { seen.cert_sans.join(", ") };
    let issuer = seen.cert_issuer.as_deref().unwrap_or("unknown");
    let unknown = "unknown";
    format!(
        "the server presented {subject} (SANs {sans}; issuer {issuer}; valid {} to {})",
        seen.not_before.as_deref().unwrap_or(unknown),
        seen.not_after.as_deref().unwrap_or(unknown)
    )
}

/// An error's variant name in words, for the cases no sentence names: `PeerMisbehaved(
/// IllegalMiddleboxChangeCipherSpec)` -> "illegal middlebox change cipher spec" (the innermost
/// name; the fields, which would be a `Debug` form, are left out).
fn words<T: fmt::Debug>(value: &T) -> String {
    let debug = format!("{value:?}");
    // The innermost identifier before any field: `A(B(C))` -> `C`, `D { .. }` -> `D`.
    let head: &str = debug.split([' ', '{', ',']).next().unwrap_or_default();
    let name = head.trim_end_matches(')').rsplit('(').next().unwrap_or_default();
    let mut out = String::with_capacity(name.len() + 8);
    for (i, c) in name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(if c == '_' { ' ' } else { c.to_ascii_lowercase() });
    }
    if out.is_empty() {
        "an unnamed reason".to_owned()
    } else {
        out
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
        cert_sha256: chain.first().map(|der| sha256_hex(der)),
        ..TlsSummary::default()
    };
    // A leaf x509-parser cannot read is still a handshake that happened: the summary just has
    // no certificate fields.
    if let Some(Ok((_, leaf))) = chain.first().map(|der| x509_parser::parse_x509_certificate(der)) {
        summary.cert_subject = Some(rfc4514(leaf.subject()));
        summary.cert_issuer = Some(rfc4514(leaf.issuer()));
        summary.not_before = Some(certificate_time(leaf.validity().not_before.timestamp()));
        if let Ok(Some(san)) = leaf.subject_alternative_name() {
            summary.cert_sans = san.value.general_names.iter().filter_map(san_string).collect();
        }
        let not_after = leaf.validity().not_after.timestamp();
        summary.not_after = Some(certificate_time(not_after));
        summary.not_after_unix = Some(not_after);
    }
    summary
}

/// The SHA-256 of `der`, lowercase hex: the certificate's fingerprint.
fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der).as_ref().iter().map(|b| format!("{b:02x}")).collect()
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
