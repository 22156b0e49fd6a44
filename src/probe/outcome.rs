//! What one probe yields: the [`Outcome`] record and the closed error taxonomy (`docs/errors.md`).
//!
//! Error codes are an API: they appear in JSON, span attributes and metric labels. Add codes
//! freely; never rename one.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::config::{ProfileName, ProxyVersion, Role};

/// The phase of a probe in which it failed (or, for `expect`, was judged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Name resolution.
    Dns,
    /// TCP connect, including the source bind.
    Connect,
    /// Writing the PROXY protocol header.
    Proxy,
    /// TLS handshake and certificate verification.
    Tls,
    /// HTTP exchange (request written, response head and body read).
    Http,
    /// gRPC health call.
    Grpc,
    /// Judging a complete response against the view's matcher.
    Expect,
}

impl Phase {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Dns => "dns",
            Phase::Connect => "connect",
            Phase::Proxy => "proxy",
            Phase::Tls => "tls",
            Phase::Http => "http",
            Phase::Grpc => "grpc",
            Phase::Expect => "expect",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $phase:ident; )*) => {
        /// The closed set of failure codes (`docs/errors.md`). Stable snake_case names.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The stable snake_case name used in JSON, spans and metric labels.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $name, )* }
            }

            /// The phase this code belongs to (the table of `docs/errors.md`).
            pub fn phase(self) -> Phase {
                match self { $( ErrorCode::$variant => Phase::$phase, )* }
            }

            /// Parses a stable name back into a code.
            pub fn from_name(name: &str) -> Option<ErrorCode> {
                match name { $( $name => Some(ErrorCode::$variant), )* _ => None }
            }
        }
    };
}

error_codes! {
    /// The name does not exist (NXDOMAIN).
    DnsNxdomain = "dns_nxdomain", Dns;
    /// The resolver answered SERVFAIL or REFUSED.
    DnsServfail = "dns_servfail", Dns;
    /// The name exists but has no A/AAAA record of the wanted family.
    DnsNoAnswer = "dns_no_answer", Dns;
    /// No answer before the deadline.
    DnsTimeout = "dns_timeout", Dns;
    /// The nameserver's answers could not be used: they do not parse (garbage, truncated, a
    /// compression pointer loop) or answer another question.
    DnsMalformed = "dns_malformed", Dns;
    /// DNS answered with addresses other than `expect_addresses`.
    DnsUnexpectedAddress = "dns_unexpected_address", Dns;
    /// The peer answered the SYN with RST.
    ConnectRefused = "connect_refused", Connect;
    /// No SYN-ACK before the deadline (dropped by a firewall, or a dead host).
    ConnectTimeout = "connect_timeout", Connect;
    /// No route to the host or network.
    ConnectUnreachable = "connect_unreachable", Connect;
    /// The connection was reset or closed right after it was made.
    ConnectReset = "connect_reset", Connect;
    /// The configured source address cannot be bound on this host.
    SourceUnavailable = "source_unavailable", Connect;
    /// This host ran out of a resource a probe needs (file descriptors, socket buffers,
    /// memory: EMFILE, ENFILE, ENOBUFS, ENOMEM) before anything was sent: no fact about the
    /// target ([`ErrorCode::is_local`]).
    LocalResourceExhausted = "local_resource_exhausted", Connect;
    /// A plain-text (HTTP) server answered the TLS ClientHello.
    TlsPlaintextPeer = "tls_plaintext_peer", Tls;
    /// The handshake failed for a reason no other code names.
    TlsHandshakeFailure = "tls_handshake_failure", Tls;
    /// The server sent a fatal alert (its name is in the detail).
    TlsAlert = "tls_alert", Tls;
    /// The certificate chain does not lead to a trusted root.
    TlsCertUntrusted = "tls_cert_untrusted", Tls;
    /// The certificate is valid but not for the name we asked for.
    TlsCertNameMismatch = "tls_cert_name_mismatch", Tls;
    /// The certificate's not_after is in the past.
    TlsCertExpired = "tls_cert_expired", Tls;
    /// The certificate's not_before is in the future.
    TlsCertNotYetValid = "tls_cert_not_yet_valid", Tls;
    /// No protocol version in common.
    TlsVersionMismatch = "tls_version_mismatch", Tls;
    /// The handshake did not finish before the deadline.
    TlsTimeout = "tls_timeout", Tls;
    /// The status was not accepted by the view's matcher.
    HttpStatus = "http_status", Http;
    /// Plain HTTP was sent to a TLS listener.
    HttpTlsRequired = "http_tls_required", Http;
    /// The response was not valid HTTP.
    HttpMalformed = "http_malformed", Http;
    /// The connection was reset or closed before a complete response.
    HttpReset = "http_reset", Http;
    /// No complete response before the deadline.
    HttpTimeout = "http_timeout", Http;
    /// The body exceeded `max_body_bytes`.
    HttpBodyTooLarge = "http_body_too_large", Http;
    /// The response head broke a fixed bound: 64 KiB for all its heads together (interim 1xx
    /// responses included), 100 header fields, 32 interim responses.
    HttpHeadTooLarge = "http_head_too_large", Http;
    /// gRPC health answered NOT_SERVING (or UNKNOWN / SERVICE_UNKNOWN).
    GrpcNotServing = "grpc_not_serving", Grpc;
    /// The server does not implement `grpc.health.v1.Health`.
    GrpcUnimplemented = "grpc_unimplemented", Grpc;
    /// Any other non-OK gRPC status.
    GrpcStatus = "grpc_status", Grpc;
    /// The body did not contain / match what `expect` asks for.
    BodyMismatch = "body_mismatch", Expect;
    /// kube-proxy's health node port reports `localEndpoints: 0`.
    NoLocalEndpoints = "no_local_endpoints", Expect;
}

impl ErrorCode {
    /// Whether the failure is this host's, not the target's (`local_resource_exhausted`): the
    /// probe learned nothing about the target, so verdicts and mismatches ignore it and metrics
    /// count it as a local error.
    pub fn is_local(self) -> bool {
        matches!(self, ErrorCode::LocalResourceExhausted)
    }
}

/// Whether `e` says this host ran out of a resource (EMFILE, ENFILE, ENOBUFS, ENOMEM): what
/// `local_resource_exhausted` names, at socket creation, bind or connect.
pub fn resource_exhausted(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
        || e.kind() == std::io::ErrorKind::OutOfMemory
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A classified failure of one layer: the code, the phase it happened in, and a human detail.
///
/// The detail must never contain a secret (header values, substituted values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Where the probe stopped.
    pub phase: Phase,
    /// Why, as a stable code.
    pub code: ErrorCode,
    /// A short human explanation (OS error, alert name, status line...).
    pub detail: String,
}

impl Failure {
    /// A failure in the code's own phase.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Failure {
        Failure { phase: code.phase(), code, detail: detail.into() }
    }

    /// A failure attributed to a phase other than the code's own (e.g. a reset while
    /// writing the PROXY header).
    pub fn in_phase(phase: Phase, code: ErrorCode, detail: impl Into<String>) -> Failure {
        Failure { phase, code, detail: detail.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.phase, self.detail)
    }
}

impl std::error::Error for Failure {}

/// Bytes a peer sent, quoted for a failure detail: printable ASCII as is, everything else
/// escaped (`\x15`), `with nothing` when empty.
pub(crate) fn quote_bytes(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "with nothing".to_owned();
    }
    format!("\"{}\"", bytes.escape_ascii())
}

/// Cuts `s` to at most `max_chars` characters (marking the cut with `…`), so a detail stays one
/// readable line whatever a server or a matcher holds.
pub(crate) fn shorten(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max_chars).collect();
        out.push('…');
        out
    }
}

/// The longest `Location` an outcome keeps (characters; longer ones are cut and end in `…`).
pub const MAX_LOCATION_CHARS: usize = 256;

/// Query parameters whose values a `Location` never shows: a name containing one of these
/// (case-insensitive) looks like it carries a credential (`access_token`, `X-Amz-Signature`,
/// an OAuth `code`, a `session` id).
const SECRET_QUERY_NAMES: &[&str] =
    &["token", "secret", "password", "passwd", "pwd", "key", "sig", "code", "session", "credential", "auth"];

const REDACTED: &str = "<redacted>";

/// A response's `Location` as outputs show it: the URL's user info `<redacted>` (`user:<redacted>@`
/// with a password, `<redacted>@` for a bare user, which may be a token), the values of
/// credential-looking query parameters and any fragment (where OAuth puts tokens) `<redacted>`,
/// bytes that are not printable ASCII escaped, and the whole cut to [`MAX_LOCATION_CHARS`].
/// Relative references (`/login?next=/cart`) are kept relative.
pub fn location_display(raw: &[u8]) -> String {
    let text: String = raw.escape_ascii().to_string();
    let parts = location_parts(&text);
    let mut out = String::with_capacity(text.len().min(MAX_LOCATION_CHARS + 16));
    if let Some(authority) = parts.authority {
        match parts.scheme {
            Some(scheme) => {
                out.push_str(scheme);
                out.push_str("://");
            }
            None => out.push_str("//"),
        }
        match authority.rfind('@') {
            Some(at) => {
                match authority[..at].split_once(':') {
                    Some((user, _password)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(REDACTED);
                    }
                    None => out.push_str(REDACTED),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
    }
    let rest = parts.rest;
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (rest, None),
    };
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if secret_query_name(name) => format!("{name}={REDACTED}"),
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
        }
        None => out.push_str(before_fragment),
    }
    if fragment.is_some_and(|f| !f.is_empty()) {
        out.push('#');
        out.push_str(REDACTED);
    }
    shorten(&out, MAX_LOCATION_CHARS)
}

/// A `Location` split where its parts begin: `https` / `ops:pw@shop.example.com:8443` /
/// `/cart?x=1#f`. A relative reference has neither scheme nor authority; a scheme-relative one
/// (`//cdn.example/a`) an authority only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocationParts<'a> {
    /// The scheme, without `://`.
    pub(crate) scheme: Option<&'a str>,
    /// User info, host and port.
    pub(crate) authority: Option<&'a str>,
    /// Path, query and fragment.
    pub(crate) rest: &'a str,
}

/// Splits a `Location` (RFC 3986 reference) into [`LocationParts`].
pub(crate) fn location_parts(location: &str) -> LocationParts<'_> {
    let (scheme, after) = match location.find("://") {
        Some(i) if is_scheme(&location[..i]) => (Some(&location[..i]), &location[i + 3..]),
        _ if location.starts_with("//") => (None, &location[2..]),
        _ => return LocationParts { scheme: None, authority: None, rest: location },
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    LocationParts { scheme, authority: Some(&after[..end]), rest: &after[end..] }
}

/// RFC 3986 `scheme`: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn secret_query_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_QUERY_NAMES.iter().any(|s| name.contains(s))
}

/// Phase durations, taken from the monotonic clock at the I/O edges. `None` when the phase did
/// not run (no DNS for an IP literal, no TLS for plain HTTP) or did not finish.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Name resolution.
    pub dns: Option<Duration>,
    /// TCP connect (SYN to established).
    pub connect: Option<Duration>,
    /// TLS handshake.
    pub tls: Option<Duration>,
    /// Request fully written to first response byte.
    pub ttfb: Option<Duration>,
    /// Whole probe, start to verdict.
    pub total: Duration,
}

impl Serialize for Timings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        let mut m = s.serialize_map(None)?;
        for (k, v) in [("dns", self.dns), ("connect", self.connect), ("tls", self.tls), ("ttfb", self.ttfb)] {
            if let Some(v) = v {
                m.serialize_entry(k, &ms(v))?;
            }
        }
        m.serialize_entry("total", &ms(self.total))?;
        m.end()
    }
}

/// What the probe actually put on the wire, for the record (never a secret: no header values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestSummary {
    /// `http`, `https`, `tcp`, `tls`, `grpc` or `grpcs`.
    pub scheme: &'static str,
    /// The address dialed, when known (`ip:port`).
    pub address: Option<SocketAddr>,
    /// The SNI sent, or `null` for none.
    pub sni: Option<String>,
    /// The Host header (or `:authority`) sent, or `null` for none.
    pub host: Option<String>,
    /// Request method (HTTP views).
    pub method: Option<String>,
    /// Path and query (HTTP and gRPC views).
    pub path: Option<String>,
    /// The local address we bound to, when a source was configured.
    pub source: Option<IpAddr>,
    /// PROXY header version sent, if any.
    pub proxy_protocol: Option<ProxyVersion>,
    /// Whether the server certificate was verified (TLS views).
    pub verify: bool,
    /// User-Agent sent, if any.
    pub user_agent: Option<String>,
    /// HTTP version used (`HTTP/1.0`, `HTTP/1.1`, `HTTP/2`).
    pub http_version: Option<&'static str>,
}

/// What the TLS handshake showed, recorded even when verification is off or fails.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TlsSummary {
    /// `TLSv1_2` or `TLSv1_3`.
    pub version: Option<String>,
    /// Negotiated cipher suite.
    pub cipher: Option<String>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// Leaf certificate subject, RFC 4514 style (`CN=shop.example.com`).
    pub cert_subject: Option<String>,
    /// Leaf certificate subject alternative names (DNS names and IPs).
    pub cert_sans: Vec<String>,
    /// Leaf certificate issuer, RFC 4514 style.
    pub cert_issuer: Option<String>,
    /// Leaf certificate not_before, RFC 3339.
    pub not_before: Option<String>,
    /// Leaf certificate not_after, RFC 3339.
    pub not_after: Option<String>,
    /// Leaf not_after as seconds since the Unix epoch (for the metric).
    #[serde(skip)]
    pub not_after_unix: Option<i64>,
    /// Certificates the server sent.
    pub chain_len: usize,
    /// SHA-256 of the leaf certificate's DER, lowercase hex: tells whether two handshakes were
    /// served the same certificate (the default one, whatever the SNI).
    pub cert_sha256: Option<String>,
}

/// The result of one probe of one view (one per address with `each_address`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// Target name.
    pub target: Arc<str>,
    /// View name (`client` or the checker's name).
    pub view: Arc<str>,
    /// `client` or `checker`.
    pub role: Role,
    /// The checker profile, `null` for the client view and profile-less checkers.
    pub profile: Option<ProfileName>,
    /// Whether the view's expectations were all met.
    pub ok: bool,
    /// Where it failed.
    pub phase: Option<Phase>,
    /// Why it failed.
    pub error: Option<ErrorCode>,
    /// Human detail of the failure.
    pub detail: Option<String>,
    /// HTTP status, when a response head was read.
    pub status: Option<u16>,
    /// The `Location` header of a 3xx response, as [`location_display`] shows it (user info and
    /// secret-looking query values `<redacted>`, at most [`MAX_LOCATION_CHARS`]); `null` otherwise.
    pub location: Option<String>,
    /// gRPC health status name (`SERVING`, `NOT_SERVING`...), for gRPC views.
    pub grpc_status: Option<String>,
    /// kube-proxy `localEndpoints`, when the body carried it.
    pub local_endpoints: Option<u64>,
    /// Phase timings.
    #[serde(rename = "timings_ms")]
    pub timings: Timings,
    /// The address connected to.
    pub peer: Option<SocketAddr>,
    /// Our end of the connection.
    pub local: Option<SocketAddr>,
    /// What was sent.
    pub request: RequestSummary,
    /// What TLS showed.
    pub tls: Option<TlsSummary>,
    /// Addresses DNS answered (with `each_address`, all of them; otherwise those tried).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resolved: Vec<IpAddr>,
    /// Response body bytes read (up to `max_body_bytes`).
    pub body_bytes: Option<u64>,
}

impl Outcome {
    /// The failure, if any, as a [`Failure`].
    pub fn failure(&self) -> Option<Failure> {
        match (self.phase, self.error) {
            (Some(phase), Some(code)) => {
                Some(Failure { phase, code, detail: self.detail.clone().unwrap_or_default() })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_never_shows_user_info_or_credential_looking_query_values() {
        let cases = [
            ("https://shop.example.com/cart", "https://shop.example.com/cart"),
            ("https://ops:hunter2@shop.example.com/", "https://ops:<redacted>@shop.example.com/"),
            ("https://ghp_tok3n@github.example/x", "https://<redacted>@github.example/x"),
            ("//u:p@cdn.example/a", "//u:<redacted>@cdn.example/a"),
            ("/login?next=/cart", "/login?next=/cart"),
            (
                "https://idp.example/authorize?client_id=shop&access_token=abc&X-Amz-Signature=f00&next=%2F",
                "https://idp.example/authorize?client_id=shop&access_token=<redacted>&X-Amz-Signature=<redacted>&next=%2F",
            ),
            ("https://shop.example.com/cb#access_token=abc", "https://shop.example.com/cb#<redacted>"),
            ("https://a@b@host.example/", "https://<redacted>@host.example/"),
            ("http://host/p?@x", "http://host/p?@x"),
            ("/odd\r\n", "/odd\\r\\n"),
        ];
        for (raw, shown) in cases {
            assert_eq!(location_display(raw.as_bytes()), shown, "{raw}");
        }
        for secret in ["hunter2", "ghp_tok3n", "abc", "f00"] {
            for (raw, _) in cases {
                assert!(!location_display(raw.as_bytes()).contains(secret), "{raw} shows {secret}");
            }
        }
        assert_eq!(location_display(b"/\xff\x01"), "/\\xff\\x01");
        assert_eq!(location_display(&[b'/', 0xff, 0x01]), "/\\xff\\x01");
    }

    #[test]
    fn a_location_is_bounded() {
        let long = format!("https://shop.example.com/{}", "a".repeat(10_000));
        let shown = location_display(long.as_bytes());
        assert_eq!(shown.chars().count(), MAX_LOCATION_CHARS + 1);
        assert!(shown.ends_with('…'));
    }
}
