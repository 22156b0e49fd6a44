//! Request attributes: the ways two views of one target can differ (address, source, PROXY
//! header, TLS, SNI, verification, Host, path, method, headers, User-Agent, HTTP version, and
//! the matcher that judges the response), which of them two views differ in, and a view's
//! effective value of the derived ones (SNI, Host, path, HTTP version).
//!
//! Fair differences: the headers that are part of a checker's identity ([`IDENTITY_HEADERS`]:
//! its `Connection`, `Accept`, User-Agent) are not a `headers` difference on their own: GoogleHC's
//! `Connection: Keep-alive` is how that checker talks, not a credential it lacks.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;

use crate::config::{Dialed, Host, Scheme, View};

/// A request attribute in which two views can differ. The snake_case names appear in JSON as
/// `flipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    /// The dialed host:port (and how it is resolved).
    Address,
    /// The local source address bound before connecting.
    Source,
    /// The PROXY protocol header sent first.
    ProxyProtocol,
    /// TLS on or off (with the scheme and, for default ports, the port that go with it).
    Tls,
    /// The SNI sent (TLS views only).
    Sni,
    /// Certificate verification and trust anchors (TLS views only).
    Verify,
    /// The effective Host header (or gRPC `:authority`).
    Host,
    /// The request path.
    Path,
    /// The request method (and body).
    Method,
    /// The whole set of extra headers.
    Headers,
    /// The User-Agent.
    UserAgent,
    /// The HTTP version put on the wire (HTTP/1.0, HTTP/1.1, HTTP/2; with TLS, the ALPN offer
    /// that selects it).
    HttpVersion,
    /// The matcher that judges the response (accepted statuses, body rules). Not part of the
    /// request: switched only in combinations (the checker's request judged by the client's
    /// matcher), since on its own the `status_matcher_mismatch` rule already judges the
    /// observed response with the other matcher without a probe. Listed by [`combinable`], not
    /// by [`differences`].
    Matcher,
}

impl Attribute {
    /// Most likely culprit first: the order hybrids are planned and flips are reported in.
    pub const PRIORITY: [Attribute; 13] = [
        Attribute::Tls,
        Attribute::ProxyProtocol,
        Attribute::Source,
        Attribute::Sni,
        Attribute::Host,
        Attribute::Path,
        Attribute::Headers,
        Attribute::UserAgent,
        Attribute::Address,
        Attribute::Method,
        Attribute::HttpVersion,
        Attribute::Verify,
        Attribute::Matcher,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Attribute::Address => "address",
            Attribute::Source => "source",
            Attribute::ProxyProtocol => "proxy_protocol",
            Attribute::Tls => "tls",
            Attribute::Sni => "sni",
            Attribute::Verify => "verify",
            Attribute::Host => "host",
            Attribute::Path => "path",
            Attribute::Method => "method",
            Attribute::Headers => "headers",
            Attribute::UserAgent => "user_agent",
            Attribute::HttpVersion => "http_version",
            Attribute::Matcher => "matcher",
        }
    }

    /// The position in [`Attribute::PRIORITY`]: flips are reported in this order.
    pub(super) fn rank(self) -> usize {
        Attribute::PRIORITY.iter().position(|a| *a == self).unwrap_or(Attribute::PRIORITY.len())
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request attributes in which `client` and `checker` differ, most likely culprit first:
/// each is switched alone by a hybrid.
///
/// Only attributes that mean something on both views are compared: SNI and verification only when
/// both use TLS; Host and User-Agent when both speak HTTP or gRPC; path, method, headers (without
/// the [identity headers](IDENTITY_HEADERS)) and HTTP version when both speak HTTP. The matcher is
/// not a request attribute: see [`combinable`].
pub fn differences(client: &View, checker: &View) -> Vec<Attribute> {
    Attribute::PRIORITY
        .iter()
        .copied()
        .filter(|a| *a != Attribute::Matcher && differs(*a, client, checker))
        .collect()
}

/// The attributes a combination of switches may take: [`differences`] and, when the two views
/// judge responses differently, [`Attribute::Matcher`], most likely culprit first.
pub fn combinable(client: &View, checker: &View) -> Vec<Attribute> {
    Attribute::PRIORITY.iter().copied().filter(|a| differs(*a, client, checker)).collect()
}

/// Header names that belong to a checker's identity: how it talks, not what it is allowed.
/// They are not a `headers` difference on their own, and a `headers` switch keeps the view's own.
pub const IDENTITY_HEADERS: [&str; 3] = ["connection", "accept", "user-agent"];

/// Whether `name` is one of the [`IDENTITY_HEADERS`] (names are lowercase in a view).
pub fn is_identity_header(name: &http::HeaderName) -> bool {
    IDENTITY_HEADERS.contains(&name.as_str())
}

/// A view's extra headers without its identity headers: what a `headers` difference compares.
pub fn suspect_headers(view: &View) -> Vec<&(http::HeaderName, crate::config::MaybeSecret)> {
    view.http.headers.iter().filter(|(name, _)| !is_identity_header(name)).collect()
}

fn differs(attribute: Attribute, a: &View, b: &View) -> bool {
    let both_tls = a.scheme.uses_tls() && b.scheme.uses_tls();
    let both_http = a.scheme.uses_http() && b.scheme.uses_http();
    let both_authority = speaks_authority(a.scheme) && speaks_authority(b.scheme);
    match attribute {
        // How a name is resolved is part of where it goes; for an IP literal it is irrelevant.
        Attribute::Address => {
            a.dial_endpoint() != b.dial_endpoint()
                || (matches!(a.dial_endpoint().host, Host::Name(_))
                    && (a.resolver, a.ip_version) != (b.resolver, b.ip_version))
        }
        Attribute::Source => source_key(a) != source_key(b),
        Attribute::ProxyProtocol => a.proxy_protocol != b.proxy_protocol,
        Attribute::Tls => a.scheme.uses_tls() != b.scheme.uses_tls(),
        Attribute::Sni => both_tls && effective_sni(a) != effective_sni(b),
        Attribute::Verify => both_tls && (a.tls.verify, &a.tls.ca_file) != (b.tls.verify, &b.tls.ca_file),
        Attribute::Host => both_authority && effective_host(a) != effective_host(b),
        Attribute::Path => both_http && a.path != b.path,
        Attribute::Method => both_http && (&a.http.method, &a.http.body) != (&b.http.method, &b.http.body),
        Attribute::Headers => both_http && suspect_headers(a) != suspect_headers(b),
        Attribute::UserAgent => both_authority && a.http.user_agent != b.http.user_agent,
        // With TLS on one side only, ALPN (which picks h2) is part of the `tls` switch: the
        // plain side cannot speak h2 by ALPN, so `auto` compares as the HTTP/1.1 it becomes.
        Attribute::HttpVersion => {
            let wire = |v: &View| match effective_http_version(v) {
                ALPN_VERSION if !both_tls => "HTTP/1.1",
                other => other,
            };
            both_http && wire(a) != wire(b)
        }
        Attribute::Matcher => a.expect != b.expect,
    }
}

/// [`effective_http_version`] of an `auto` view over TLS offering `h2`.
const ALPN_VERSION: &str = "HTTP/2 or HTTP/1.1 by ALPN";

/// The HTTP version a view puts on the wire, as it would be named: `auto` is HTTP/1.1 without
/// TLS (no h2 upgrade) or when its ALPN offers no `h2`.
pub fn effective_http_version(v: &View) -> &'static str {
    use crate::config::HttpVersion;
    match v.http.version {
        HttpVersion::Http10 => "HTTP/1.0",
        HttpVersion::Http11 => "HTTP/1.1",
        HttpVersion::Auto if v.scheme.uses_tls() && v.tls.alpn.iter().any(|a| a == "h2") => ALPN_VERSION,
        HttpVersion::Auto => "HTTP/1.1",
        HttpVersion::Http2 => "HTTP/2",
    }
}

fn speaks_authority(scheme: Scheme) -> bool {
    scheme.uses_http() || scheme.uses_grpc()
}

fn source_key(v: &View) -> Option<(crate::config::Source, std::net::IpAddr, bool)> {
    v.source.map(|s| (s.requested, s.addr, v.freebind))
}

/// The SNI `view` sends (see [`View::sni`]).
pub fn effective_sni(view: &View) -> Option<String> {
    view.sni().map(str::to_owned)
}

/// The Host header `view` sends, as far as the view alone decides it ([`View::host_header`] with
/// its configured dial endpoint standing in for the address it will dial).
pub fn effective_host(view: &View) -> Option<Cow<'_, str>> {
    view.host_header(Dialed::Endpoint(view.dial_endpoint()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Endpoint, HostHeader, ProxyHeader, ProxyVersion, Sni, Source, SourceBind};
    use crate::testkit::{header, shop_client as client, shop_nlb as nlb, view_url};

    #[test]
    fn every_attribute_is_detected_on_its_own() {
        // An explicit port keeps the URL authority the same with TLS on or off.
        let base = view_url("shop", "client", "https://shop.example.com:8443/cart");
        let src = SourceBind {
            requested: Source::Addr("127.0.0.9".parse().unwrap()),
            addr: "127.0.0.9".parse().unwrap(),
        };
        type Edit = fn(&mut View, SourceBind);
        let table: &[(Attribute, Edit)] = &[
            (Attribute::Address, |v, _| {
                v.connect_to = Some(Endpoint { host: Host::Ip([10, 0, 0, 5].into()), port: 443 })
            }),
            (Attribute::Source, |v, s| v.source = Some(s)),
            (Attribute::ProxyProtocol, |v, _| {
                v.proxy_protocol = Some(ProxyHeader { version: ProxyVersion::V2, local: true })
            }),
            (Attribute::Tls, |v, _| v.scheme = Scheme::Http),
            (Attribute::Sni, |v, _| v.tls.sni = Sni::None),
            (Attribute::Verify, |v, _| v.tls.verify = false),
            (Attribute::Host, |v, _| v.http.host = HostHeader::None),
            (Attribute::Path, |v, _| v.path = "/healthz".into()),
            (Attribute::Method, |v, _| v.http.method = http::Method::OPTIONS),
            (Attribute::Headers, |v, _| v.http.headers = vec![header("authorization", "Bearer x", true)]),
            (Attribute::UserAgent, |v, _| v.http.user_agent = Some("GoogleHC/1.0".into())),
            (Attribute::HttpVersion, |v, _| v.http.version = crate::config::HttpVersion::Http10),
            (Attribute::Matcher, |v, _| v.expect.status = vec![200..=200]),
        ];
        for (want, edit) in table {
            let mut other = base.clone();
            edit(&mut other, src);
            assert_eq!(combinable(&base, &other), vec![*want], "{want}");
            let request: Vec<Attribute> = [*want].into_iter().filter(|a| *a != Attribute::Matcher).collect();
            assert_eq!(differences(&base, &other), request, "{want}: the matcher is not a request attribute");
        }
        assert_eq!(table.len(), Attribute::PRIORITY.len(), "every attribute has a row");
    }

    #[test]
    fn identity_headers_are_not_a_headers_difference_on_their_own() {
        // GoogleHC's `Connection: Keep-alive`, an `Accept`, a User-Agent header: how the checker
        // talks, not what it lacks.
        let c = client();
        for (name, value) in [("connection", "Keep-alive"), ("accept", "*/*"), ("user-agent", "GoogleHC/1.0")]
        {
            let mut k = c.clone();
            k.http.headers = vec![header(name, value, false)];
            assert!(!differences(&c, &k).contains(&Attribute::Headers), "{name}");
            assert!(is_identity_header(&http::HeaderName::from_static(name)));
        }
        // Beside another header they are still ignored: the difference is the other header.
        let mut with_token = c.clone();
        with_token.http.headers = vec![header("authorization", "Bearer x", true)];
        let mut gcp = c.clone();
        gcp.http.headers = vec![header("connection", "Keep-alive", false)];
        assert_eq!(differences(&with_token, &gcp), vec![Attribute::Headers]);
        assert_eq!(suspect_headers(&gcp), Vec::<&(http::HeaderName, crate::config::MaybeSecret)>::new());
        assert_eq!(suspect_headers(&with_token).len(), 1);
        // Any other header is a suspect, whatever its case on the wire (names are lowercase).
        assert!(!is_identity_header(&http::HeaderName::from_static("x-forwarded-proto")));
        assert!(!is_identity_header(&http::HeaderName::from_static("authorization")));
    }

    #[test]
    fn the_http_version_compares_what_goes_on_the_wire() {
        use crate::config::HttpVersion;
        // Plain `auto` is HTTP/1.1.
        let mut a = nlb();
        a.http.version = HttpVersion::Auto;
        let mut b = a.clone();
        b.http.version = HttpVersion::Http11;
        assert!(differences(&a, &b).is_empty());
        b.http.version = HttpVersion::Http10;
        assert_eq!(differences(&a, &b), vec![Attribute::HttpVersion]);
        // Over TLS, `auto` with h2 offered is not HTTP/1.1; without h2 it is.
        let mut t = client();
        t.http.version = HttpVersion::Auto;
        t.tls.alpn = vec!["h2".into(), "http/1.1".into()];
        let mut u = t.clone();
        u.http.version = HttpVersion::Http11;
        assert_eq!(differences(&t, &u), vec![Attribute::HttpVersion]);
        t.tls.alpn = vec!["http/1.1".into()];
        assert!(differences(&t, &u).is_empty());
        // Against a plain view, ALPN goes with `tls`: `auto` with h2 offered compares as HTTP/1.1.
        t.tls.alpn = vec!["h2".into(), "http/1.1".into()];
        let mut plain = nlb();
        plain.http.version = HttpVersion::Http11;
        assert!(!differences(&t, &plain).contains(&Attribute::HttpVersion));
        plain.http.version = HttpVersion::Http10;
        assert!(differences(&t, &plain).contains(&Attribute::HttpVersion));
        assert_eq!(effective_http_version(&b), "HTTP/1.0");
    }

    #[test]
    fn equivalent_rules_are_not_differences() {
        let c = client();
        let mut k = c.clone();
        // The URL's name as an explicit SNI and Host is what FromUrl sends.
        k.tls.sni = Sni::Name("shop.example.com".into());
        k.http.host = HostHeader::Value("shop.example.com".into());
        assert!(differences(&c, &k).is_empty(), "{:?}", differences(&c, &k));
        // Dialed-address Host equals the value of the address dialed.
        let mut a = nlb();
        a.http.host = HostHeader::DialedAddress;
        let mut b = a.clone();
        b.http.host = HostHeader::Value("10.0.0.5:30080".into());
        assert!(differences(&a, &b).is_empty());
    }

    #[test]
    fn the_resolver_matters_only_for_names() {
        let c = client();
        let mut k = c.clone();
        k.resolver = Some("127.0.0.53:53".parse().unwrap());
        assert_eq!(differences(&c, &k), vec![Attribute::Address]);
        let a = nlb();
        let mut b = a.clone();
        b.resolver = Some("127.0.0.53:53".parse().unwrap());
        assert!(differences(&a, &b).is_empty());
    }

    #[test]
    fn tls_only_attributes_are_not_compared_when_either_side_is_plain() {
        let c = client();
        let mut k = nlb();
        k.tls.sni = Sni::Name("other.example.com".into());
        k.tls.verify = false;
        let d = differences(&c, &k);
        assert!(d.contains(&Attribute::Tls));
        assert!(!d.contains(&Attribute::Sni) && !d.contains(&Attribute::Verify), "{d:?}");
    }

    #[test]
    fn http_attributes_are_not_compared_with_a_tcp_checker() {
        let c = client();
        let mut k = view_url("shop", "tcp", "tcp://10.0.0.5:30080");
        k.http.user_agent = None;
        k.http.headers = vec![header("x", "y", false)];
        k.path = "/other".into();
        let d = differences(&c, &k);
        assert_eq!(d, vec![Attribute::Tls, Attribute::Address], "{d:?}");
    }

    #[test]
    fn path_display_never_shows_more_than_the_display_url() {
        let mut v = nlb();
        v.url_display = "http://10.0.0.5:30080/healthz?token=<redacted>".into();
        assert_eq!(v.path_display(), "/healthz?token=<redacted>");
        v.url_display = "tcp://10.0.0.5:30080".into();
        assert_eq!(v.path_display(), "/");
    }
}
