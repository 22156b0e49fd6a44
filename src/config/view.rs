//! [`View`]: one complete request recipe, and the types it is made of — scheme, endpoints,
//! source, TLS and HTTP settings, the matcher — with the rules derived from them that every
//! part of parallax must agree on: the SNI ([`View::sni`]), the Host header
//! ([`View::host_header`]), the URL authority and the path as shown ([`View::path_display`]).
//!
//! The checker profile's name lives here too, because a view records the one it was compiled
//! from; what each profile supplies is `profiles`, which depends on this module, never the
//! other way.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Serialize, Serializer};

use super::secret::MaybeSecret;

/// One complete request recipe (docs/architecture.md, "view"). Immutable once compiled.
///
/// `Debug` shows [`View::path_display`] in place of `path`: a URL's query may hold a secret.
#[derive(Clone, PartialEq)]
pub struct View {
    /// The target this view belongs to.
    pub target: Arc<str>,
    /// The target's `id`: its name unless given. The same target probed from several vantages
    /// (a node and an external VM) carries the same id, so their metrics join in PromQL.
    pub target_id: Arc<str>,
    /// `client` or the checker's name.
    pub name: Arc<str>,
    /// Client or checker.
    pub role: Role,
    /// Checker profile, if any.
    pub profile: Option<ProfileName>,
    /// Scheme (decides the layers).
    pub scheme: Scheme,
    /// The URL host and port (name or IP): what SNI and Host derive from.
    pub url_endpoint: Endpoint,
    /// Path and query sent (always starts with `/`; gRPC: ignored).
    pub path: String,
    /// The URL for display, with secret substitutions shown as `<redacted>`.
    pub url_display: String,
    /// Dial this instead of the URL's host:port.
    pub connect_to: Option<Endpoint>,
    /// Local source address to bind.
    pub source: Option<SourceBind>,
    /// Set `IP_FREEBIND` (bind addresses not on this host).
    pub freebind: bool,
    /// Address family.
    pub ip_version: IpVersion,
    /// PROXY header sent after connecting.
    pub proxy_protocol: Option<ProxyHeader>,
    /// TLS settings (meaningful when `scheme.uses_tls()`).
    pub tls: TlsSettings,
    /// HTTP settings.
    pub http: HttpSettings,
    /// Success matcher.
    pub expect: Expect,
    /// Probe interval.
    pub interval: Duration,
    /// Per-probe deadline (always below `interval`).
    pub timeout: Duration,
    /// Consecutive successes to become healthy.
    pub rise: u32,
    /// Consecutive failures to become unhealthy.
    pub fall: u32,
    /// Verdict starting state.
    pub initial: InitialHealth,
    /// Response body read limit; more is `http_body_too_large`.
    pub max_body_bytes: usize,
    /// Nameserver to ask instead of the system's.
    pub resolver: Option<SocketAddr>,
    /// Probe every address DNS answers, one outcome each.
    pub each_address: bool,
    /// DNS must answer with (a subset of) these addresses.
    pub expect_addresses: Vec<IpAddr>,
}

impl View {
    /// `target/view`, for logs and errors.
    pub fn id(&self) -> String {
        format!("{}/{}", self.target, self.name)
    }

    /// The endpoint actually dialed (`connect_to` or the URL's).
    pub fn dial_endpoint(&self) -> &Endpoint {
        self.connect_to.as_ref().unwrap_or(&self.url_endpoint)
    }

    /// The SNI this view sends: the URL's name (never an IP, as browsers do), a configured name,
    /// or none.
    pub fn sni(&self) -> Option<&str> {
        match &self.tls.sni {
            Sni::FromUrl => match &self.url_endpoint.host {
                Host::Name(name) => Some(name),
                Host::Ip(_) => None,
            },
            Sni::Name(name) => Some(name),
            Sni::None => None,
        }
    }

    /// The URL's authority as a Host header carries it: the port only when it is not the
    /// scheme's default. Same text as `Display` (a test compares them), written without `fmt`:
    /// it is built for every probe, and `format!` with an IPv4 `Display` cost ~1.8k instructions
    /// a call, about 3 % of a plain-HTTP probe.
    pub fn url_authority(&self) -> String {
        let endpoint = &self.url_endpoint;
        let mut s = String::with_capacity(AUTHORITY_CAPACITY);
        match &endpoint.host {
            Host::Name(name) => s.push_str(name),
            Host::Ip(ip) => push_host_ip(&mut s, *ip),
        }
        if self.scheme.default_port() != Some(endpoint.port) {
            push_port(&mut s, endpoint.port);
        }
        s
    }

    /// The Host header (HTTP/2: `:authority`) this view sends, having dialed `dialed`; `None`
    /// for none. Only `http`, `https`, `grpc` and `grpcs` views send one. The one home of the
    /// [`HostHeader`] rule: the probe engine, its record, attribution and `parallax check` all
    /// ask here. Borrowed for a configured value; built for the URL's authority or the dialed
    /// address (without `fmt` for IPv4, as [`View::url_authority`]).
    pub fn host_header<'v>(&'v self, dialed: Dialed<'v>) -> Option<Cow<'v, str>> {
        if !(self.scheme.uses_http() || self.scheme.uses_grpc()) {
            return None;
        }
        let with_port = match &self.http.host {
            HostHeader::None => return None,
            HostHeader::Value(value) => return Some(Cow::Borrowed(value)),
            HostHeader::FromUrl => return Some(Cow::Owned(self.url_authority())),
            HostHeader::DialedAddress => true,
            HostHeader::DialedIp => false,
        };
        let address = match dialed {
            Dialed::NotYet => return None,
            Dialed::Address(address) => address,
            Dialed::Endpoint(Endpoint { host: Host::Ip(ip), port }) => SocketAddr::new(*ip, *port),
            Dialed::Endpoint(Endpoint { host: Host::Name(name), port }) => {
                return Some(if with_port {
                    Cow::Owned(format!("{name}:{port}"))
                } else {
                    Cow::Borrowed(name)
                })
            }
        };
        Some(Cow::Owned(match address {
            // `Display` keeps a scope id (`[fe80::1%2]:80`).
            SocketAddr::V6(address) if with_port => address.to_string(),
            address => {
                let mut s = String::with_capacity(AUTHORITY_CAPACITY);
                push_host_ip(&mut s, address.ip());
                if with_port {
                    push_port(&mut s, address.port());
                }
                s
            }
        }))
    }

    /// The path (and query) for records and output, with secret substitutions in it
    /// (`?key=${env:KEY}`) shown as `<redacted>`: use this, never `path`, wherever the path is
    /// logged, exported, printed or compared in evidence. The fragment, never sent, is never
    /// shown; a URL without a path shows `/`, a query without a path `/?query`, as sent.
    pub fn path_display(&self) -> Cow<'_, str> {
        const REDACTED: &str = "<redacted>";
        let rest = self.url_display.split_once("://").map_or(self.url_display.as_str(), |(_, r)| r);
        let Some(start) = rest.find(['/', '?', '#']) else { return Cow::Borrowed("/") };
        let shown = rest[start..].split('#').next().unwrap_or_default();
        // Nearly every path holds no redaction: a byte scan spares the string search.
        if !shown.as_bytes().contains(&b'<') || !shown.contains(REDACTED) {
            return Cow::Borrowed(&self.path);
        }
        if shown.starts_with('?') {
            Cow::Owned(format!("/{shown}"))
        } else {
            Cow::Owned(shown.to_owned())
        }
    }
}

/// What is known of the address a view dials, for [`View::host_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialed<'a> {
    /// Nothing yet (before DNS and connect): the rules that send the dialed address give none.
    NotYet,
    /// The address connected to.
    Address(SocketAddr),
    /// The configured dial endpoint ([`View::dial_endpoint`]), a name or an IP: for comparing
    /// and describing views without dialing them. A name stands in for the address it resolves to.
    Endpoint(&'a Endpoint),
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View")
            .field("target", &self.target)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("profile", &self.profile)
            .field("scheme", &self.scheme)
            .field("url_endpoint", &self.url_endpoint)
            .field("path", &self.path_display())
            .field("url_display", &self.url_display)
            .field("connect_to", &self.connect_to)
            .field("source", &self.source)
            .field("freebind", &self.freebind)
            .field("ip_version", &self.ip_version)
            .field("proxy_protocol", &self.proxy_protocol)
            .field("tls", &self.tls)
            .field("http", &self.http)
            .field("expect", &self.expect)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("rise", &self.rise)
            .field("fall", &self.fall)
            .field("initial", &self.initial)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("resolver", &self.resolver)
            .field("each_address", &self.each_address)
            .field("expect_addresses", &self.expect_addresses)
            .finish()
    }
}

/// Room for the longest IPv4 `a.b.c.d:port` and most names without growing.
const AUTHORITY_CAPACITY: usize = 32;

/// An IP as a Host header carries it: IPv6 in brackets.
fn push_host_ip(s: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => {
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                push_decimal(s, octet.into());
            }
        }
        // Rare, and its shortest form (`::` runs) is not worth rewriting: `Display` it is.
        IpAddr::V6(ip) => {
            use std::fmt::Write as _;
            let _ = write!(s, "[{ip}]");
        }
    }
}

/// `:port`, written as [`push_host_ip`] writes an IPv4 address.
fn push_port(s: &mut String, port: u16) {
    s.push(':');
    push_decimal(s, port.into());
}

fn push_decimal(s: &mut String, n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        s.push(char::from(d));
    }
}

/// Default response body limit (bytes).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default limit on response header bytes.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Whether a view is the users' view or a health checker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The client view.
    Client,
    /// A checker view.
    Checker,
}

impl Role {
    /// `client` or `checker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Checker => "checker",
        }
    }
}

/// A named checker profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProfileName {
    /// AWS Application Load Balancer target group.
    AwsAlb,
    /// AWS Network Load Balancer target group.
    AwsNlb,
    /// AWS Classic ELB.
    AwsClb,
    /// GCP health checks (HTTP, HTTPS, HTTP2, TCP, SSL, gRPC).
    Gcp,
    /// GCP legacy HTTP(S) health checks (target-pool network LB).
    GcpLegacy,
    /// Azure Load Balancer probe.
    AzureLb,
    /// Azure Application Gateway probe.
    AzureAppgw,
    /// kube-proxy `healthCheckNodePort`.
    KubeProxy,
    /// HAProxy `option httpchk`.
    Haproxy,
    /// Envoy active health checking.
    Envoy,
    /// kubelet readiness probe.
    Kubelet,
    /// A plain checker with parallax's own defaults.
    Generic,
}

impl ProfileName {
    /// Every profile.
    pub const ALL: &'static [ProfileName] = &[
        ProfileName::AwsAlb,
        ProfileName::AwsNlb,
        ProfileName::AwsClb,
        ProfileName::Gcp,
        ProfileName::GcpLegacy,
        ProfileName::AzureLb,
        ProfileName::AzureAppgw,
        ProfileName::KubeProxy,
        ProfileName::Haproxy,
        ProfileName::Envoy,
        ProfileName::Kubelet,
        ProfileName::Generic,
    ];

    /// The name used in config (`aws-alb`...).
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileName::AwsAlb => "aws-alb",
            ProfileName::AwsNlb => "aws-nlb",
            ProfileName::AwsClb => "aws-clb",
            ProfileName::Gcp => "gcp",
            ProfileName::GcpLegacy => "gcp-legacy",
            ProfileName::AzureLb => "azure-lb",
            ProfileName::AzureAppgw => "azure-appgw",
            ProfileName::KubeProxy => "kube-proxy",
            ProfileName::Haproxy => "haproxy",
            ProfileName::Envoy => "envoy",
            ProfileName::Kubelet => "kubelet",
            ProfileName::Generic => "generic",
        }
    }

    /// Parses a config name.
    pub fn from_name(name: &str) -> Option<ProfileName> {
        ProfileName::ALL.iter().copied().find(|p| p.as_str() == name)
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ProfileName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The URL scheme of a view, which decides the layers a probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// HTTP over TCP.
    Http,
    /// HTTP over TLS.
    Https,
    /// TCP connect only (plus PROXY header when set).
    Tcp,
    /// TCP + TLS handshake only.
    Tls,
    /// gRPC health over cleartext HTTP/2.
    Grpc,
    /// gRPC health over TLS.
    Grpcs,
}

impl Scheme {
    /// The scheme as written in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
            Scheme::Grpc => "grpc",
            Scheme::Grpcs => "grpcs",
        }
    }

    /// The scheme written in a URL (lowercase), if parallax speaks it.
    pub fn from_name(name: &str) -> Option<Scheme> {
        [Scheme::Http, Scheme::Https, Scheme::Tcp, Scheme::Tls, Scheme::Grpc, Scheme::Grpcs]
            .into_iter()
            .find(|s| s.as_str() == name)
    }

    /// The port a URL of this scheme means when it names none (`tcp` and `tls` have none).
    pub fn default_port(self) -> Option<u16> {
        match self {
            Scheme::Http | Scheme::Grpc => Some(80),
            Scheme::Https | Scheme::Grpcs => Some(443),
            Scheme::Tcp | Scheme::Tls => None,
        }
    }

    /// Whether a TLS handshake is part of the probe.
    pub fn uses_tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Tls | Scheme::Grpcs)
    }

    /// Whether an HTTP exchange is part of the probe.
    pub fn uses_http(self) -> bool {
        matches!(self, Scheme::Http | Scheme::Https)
    }

    /// Whether a gRPC health call is part of the probe.
    pub fn uses_grpc(self) -> bool {
        matches!(self, Scheme::Grpc | Scheme::Grpcs)
    }

    /// The scheme with TLS switched on or off (`http` <-> `https`, `tcp` <-> `tls`...).
    pub fn with_tls(self, on: bool) -> Scheme {
        match (self, on) {
            (Scheme::Http | Scheme::Https, true) => Scheme::Https,
            (Scheme::Http | Scheme::Https, false) => Scheme::Http,
            (Scheme::Tcp | Scheme::Tls, true) => Scheme::Tls,
            (Scheme::Tcp | Scheme::Tls, false) => Scheme::Tcp,
            (Scheme::Grpc | Scheme::Grpcs, true) => Scheme::Grpcs,
            (Scheme::Grpc | Scheme::Grpcs, false) => Scheme::Grpc,
        }
    }
}

/// The host part of a URL or `connect_to`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, resolved at probe time.
    Name(String),
    /// An IP literal, dialed as is.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Where a probe dials: a host (name or IP) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Name or IP.
    pub host: Host,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The local address a probe binds before connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Exactly this address.
    Addr(IpAddr),
    /// A local address inside this network (picked at compile time, or, with `freebind`, any
    /// address of it).
    Net(IpNet),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Addr(a) => write!(f, "{a}"),
            Source::Net(n) => write!(f, "{n}"),
        }
    }
}

/// The resolved source to bind, as compiled: the address actually bound, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceBind {
    /// What the config asked for.
    pub requested: Source,
    /// The address bound (for a network: a local address inside it, or its first host address
    /// with `freebind`).
    pub addr: IpAddr,
}

/// Address family restriction for resolution and dialing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IpVersion {
    /// Whatever DNS answers (IPv4 first when both).
    #[default]
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

/// PROXY protocol header version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyVersion {
    /// Text header (`PROXY TCP4 ...`).
    V1,
    /// Binary header.
    V2,
}

/// Which PROXY header a view sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProxyHeader {
    /// Version.
    pub version: ProxyVersion,
    /// `LOCAL` command with no addresses (what an AWS NLB health check sends) instead of `PROXY`
    /// with the connection's real addresses.
    pub local: bool,
}

/// TLS settings of a view (used only when the scheme uses TLS).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// SNI rule.
    pub sni: Sni,
    /// Verify the chain and the name. When off, the chain is still recorded.
    pub verify: bool,
    /// Extra trust anchors (PEM). With `ca_file`, only these roots are trusted.
    pub ca_file: Option<PathBuf>,
    /// ALPN protocols offered, in order (`h2`, `http/1.1`).
    pub alpn: Vec<String>,
}

/// The SNI rule of a TLS view.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sni {
    /// The URL's host, when it is a DNS name (an IP literal sends no SNI, as browsers do).
    FromUrl,
    /// This name.
    Name(String),
    /// No SNI extension at all.
    None,
}

/// HTTP settings of a view (used for `http`/`https`; gRPC uses `host` and `user_agent`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpSettings {
    /// Request method.
    pub method: http::Method,
    /// Host header rule.
    pub host: HostHeader,
    /// Extra headers in order; names lowercase. Values may be secret.
    pub headers: Vec<(http::HeaderName, MaybeSecret)>,
    /// User-Agent, or none.
    pub user_agent: Option<String>,
    /// Request body.
    pub body: Option<MaybeSecret>,
    /// Protocol version.
    pub version: HttpVersion,
    /// Send `Connection: close` (HTTP/1.1 checkers that close after each check).
    pub connection_close: bool,
    /// Write HTTP/1 header names in Title-Case (what Go-based checkers put on the wire).
    pub title_case_headers: bool,
}

// Wire order of an HTTP/1 request head: request line, Host (unless none), User-Agent (unless
// none), `headers` in order (profile headers first, then the view's), `Connection: close` when
// set, then the body's `content-length` when there is a body.

/// The Host header rule of an HTTP view.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostHeader {
    /// The URL's authority (host, and port when not the scheme's default).
    FromUrl,
    /// The dialed `ip:port` (what AWS and GCP checkers send).
    DialedAddress,
    /// The dialed IP alone, without the port (what GCP's GoogleHC sends).
    DialedIp,
    /// This value.
    Value(String),
    /// No Host header at all (HAProxy's HTTP/1.0 check).
    None,
}

/// HTTP protocol version of a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum HttpVersion {
    /// HTTP/1.0 (HAProxy's default check).
    #[serde(rename = "HTTP/1.0")]
    Http10,
    /// HTTP/1.1.
    #[serde(rename = "HTTP/1.1")]
    Http11,
    /// HTTP/2 when ALPN selects `h2` (or prior knowledge on cleartext), else HTTP/1.1.
    #[serde(rename = "auto")]
    Auto,
    /// HTTP/2 only (prior knowledge over cleartext, `h2` over TLS).
    #[serde(rename = "HTTP/2")]
    Http2,
}

/// What a response must look like to count as a success.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Accepted status ranges (inclusive).
    pub status: Vec<RangeInclusive<u16>>,
    /// The body must contain this string.
    pub body_contains: Option<String>,
    /// The body must match this regex.
    pub body_regex: Option<regex::Regex>,
    /// Read kube-proxy's `localEndpoints` from the JSON body; `0` is `no_local_endpoints`.
    pub kube_proxy_endpoints: bool,
    /// gRPC health: the service name asked about (empty: the whole server).
    pub grpc_service: String,
}

/// An accepted status range as written: `200`, or `200-399`.
pub fn status_range_text(range: &RangeInclusive<u16>) -> String {
    if range.start() == range.end() {
        range.start().to_string()
    } else {
        format!("{}-{}", range.start(), range.end())
    }
}

impl Expect {
    /// Whether `status` is accepted.
    pub fn status_ok(&self, status: u16) -> bool {
        self.status.iter().any(|r| r.contains(&status))
    }
}

impl PartialEq for Expect {
    fn eq(&self, other: &Expect) -> bool {
        self.status == other.status
            && self.body_contains == other.body_contains
            && self.body_regex.as_ref().map(|r| r.as_str()) == other.body_regex.as_ref().map(|r| r.as_str())
            && self.kube_proxy_endpoints == other.kube_proxy_endpoints
            && self.grpc_service == other.grpc_service
    }
}

/// A verdict's starting state, per profile (some LBs start healthy, some must see `rise`
/// successes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialHealth {
    /// Healthy until `fall` failures.
    Healthy,
    /// Unhealthy until `rise` successes.
    Unhealthy,
    /// Decided by the first probe (kubelet, Envoy: one success at startup is enough).
    FirstProbe,
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;

    /// The client view of a one-target plan whose client has `url`.
    fn view(url: &str) -> View {
        let text = format!("[[target]]\nname = \"t\"\n[target.client]\nurl = \"{url}\"\n");
        match super::super::load_str(Path::new("t.toml"), &text, &HashMap::new()) {
            Ok(plan) => plan.targets[0].client.clone(),
            Err(e) => panic!("{url}: {e}"),
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn host(v: &View, dialed: Dialed<'_>) -> Option<String> {
        v.host_header(dialed).map(Cow::into_owned)
    }

    #[test]
    fn host_from_the_url_carries_the_port_only_when_not_the_schemes_default() {
        let dialed = Dialed::Address(addr("10.1.2.3:30080"));
        let cases = [
            ("http://shop.example.com/", "shop.example.com"),
            ("http://shop.example.com:8080/", "shop.example.com:8080"),
            ("https://shop.example.com:443/", "shop.example.com"),
            ("https://shop.example.com:80/", "shop.example.com:80"),
            ("https://[2001:db8::1]:8443/", "[2001:db8::1]:8443"),
            ("https://[2001:db8::1]/", "[2001:db8::1]"),
            ("http://10.0.0.5:80/", "10.0.0.5"),
            ("grpc://health.internal:80", "health.internal"),
            ("grpcs://health.internal:50051", "health.internal:50051"),
        ];
        for (url, want) in cases {
            let v = view(url);
            for dialed in [dialed, Dialed::NotYet, Dialed::Endpoint(v.dial_endpoint())] {
                assert_eq!(host(&v, dialed).as_deref(), Some(want), "{url} {dialed:?}");
            }
            assert_eq!(v.url_authority(), want, "{url}");
        }
    }

    #[test]
    fn host_of_the_dialed_address_is_known_once_dialed() {
        let mut v = view("http://shop.example.com/");
        v.http.host = HostHeader::DialedAddress;
        assert_eq!(host(&v, Dialed::NotYet), None, "not dialed yet");
        assert_eq!(host(&v, Dialed::Address(addr("10.1.2.3:30080"))).as_deref(), Some("10.1.2.3:30080"));
        assert_eq!(
            host(&v, Dialed::Address(addr("[2001:db8::2]:30080"))).as_deref(),
            Some("[2001:db8::2]:30080")
        );
        assert_eq!(host(&v, Dialed::Address(addr("[fe80::1%2]:80"))).as_deref(), Some("[fe80::1%2]:80"));
        v.http.host = HostHeader::DialedIp;
        assert_eq!(host(&v, Dialed::NotYet), None);
        assert_eq!(host(&v, Dialed::Address(addr("192.168.100.7:30080"))).as_deref(), Some("192.168.100.7"));
        assert_eq!(host(&v, Dialed::Address(addr("[2001:db8::2]:30080"))).as_deref(), Some("[2001:db8::2]"));
    }

    /// Without dialing, an IP endpoint gives what dialing it would; a name stands in for its
    /// address.
    #[test]
    fn host_of_the_configured_endpoint_matches_dialing_it() {
        let mut v = view("http://shop.example.com/");
        for rule in [HostHeader::DialedAddress, HostHeader::DialedIp] {
            v.http.host = rule;
            for endpoint in ["10.0.0.5:30080", "[2001:db8::5]:8443"] {
                let dialed = addr(endpoint);
                let configured = Endpoint { host: Host::Ip(dialed.ip()), port: dialed.port() };
                assert_eq!(host(&v, Dialed::Endpoint(&configured)), host(&v, Dialed::Address(dialed)));
            }
        }
        let named = Endpoint { host: Host::Name("lb.example".into()), port: 80 };
        v.http.host = HostHeader::DialedAddress;
        assert_eq!(host(&v, Dialed::Endpoint(&named)).as_deref(), Some("lb.example:80"));
        v.http.host = HostHeader::DialedIp;
        assert_eq!(host(&v, Dialed::Endpoint(&named)).as_deref(), Some("lb.example"));
    }

    #[test]
    fn a_configured_host_is_borrowed_and_none_is_none() {
        let mut v = view("http://shop.example.com/");
        v.http.host = HostHeader::Value("127.0.0.1".into());
        for dialed in [Dialed::NotYet, Dialed::Address(addr("10.0.0.1:80"))] {
            assert!(matches!(v.host_header(dialed), Some(Cow::Borrowed("127.0.0.1"))));
        }
        v.http.host = HostHeader::None;
        assert_eq!(host(&v, Dialed::Address(addr("10.0.0.1:80"))), None);
    }

    #[test]
    fn views_without_an_http_request_send_no_host() {
        for url in ["tcp://10.0.0.5:30080", "tls://shop.example.com:443"] {
            let v = view(url);
            assert_eq!(host(&v, Dialed::Address(addr("10.0.0.5:30080"))), None, "{url}");
        }
    }

    /// What the JSON `path` field, `parallax check` and attribution evidence show.
    #[test]
    fn the_displayed_path_shows_redactions_and_only_them() {
        let mut v = view("http://127.0.0.1:80/healthz");
        for &(url_display, path, shown) in crate::testkit::PATH_DISPLAY_CASES {
            v.url_display = url_display.to_owned();
            v.path = path.to_owned();
            assert_eq!(v.path_display(), shown, "{url_display}");
        }
    }

    #[test]
    fn every_scheme_round_trips_its_name() {
        for scheme in [Scheme::Http, Scheme::Https, Scheme::Tcp, Scheme::Tls, Scheme::Grpc, Scheme::Grpcs] {
            assert_eq!(Scheme::from_name(scheme.as_str()), Some(scheme));
        }
        assert_eq!(Scheme::from_name("ftp"), None);
    }

    #[test]
    fn a_targets_views_are_the_client_then_its_checkers() {
        let text = "[[target]]\nname = \"t\"\n[target.client]\nurl = \"http://127.0.0.1/\"\n\
                    [[target.checker]]\nname = \"a\"\nurl = \"http://127.0.0.1/\"\n\
                    [[target.checker]]\nname = \"b\"\nurl = \"http://127.0.0.1/\"\n";
        let plan = match super::super::load_str(Path::new("t.toml"), text, &HashMap::new()) {
            Ok(plan) => plan,
            Err(e) => panic!("{e}"),
        };
        let names: Vec<&str> = plan.targets[0].views().map(|v| &*v.name).collect();
        assert_eq!(names, ["client", "a", "b"]);
        assert_eq!(plan.views().count(), 3);
    }
}
