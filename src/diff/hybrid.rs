//! Hybrids: one view of a client/checker pair with ONE attribute switched to the other view's
//! value, probed to see whether that attribute alone flips the result. This file builds a hybrid
//! view and records what it showed; [`crate::diff::attribution`] plans which hybrids to probe and
//! judges the flips.

use std::sync::Arc;

use serde::Serialize;

use super::attribute::{effective_host, effective_sni, is_identity_header, Attribute};
use crate::config::{HostHeader, HttpVersion, Sni, View};
use crate::probe::{ErrorCode, Outcome};

/// Which view of the pair a hybrid starts from (and has one attribute switched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The checker's request with one client value: does the checker's result flip?
    Checker,
    /// The client's request with one checker value: does the client's result flip?
    Client,
}

impl Side {
    /// This side's one of a pair's two values.
    pub fn pick<T>(self, client: T, checker: T) -> T {
        match self {
            Side::Checker => checker,
            Side::Client => client,
        }
    }
}

/// One planned hybrid probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Hybrid {
    /// The attribute switched.
    pub attribute: Attribute,
    /// The view it starts from.
    pub switched: Side,
    /// The complete view to probe, named `nlb~tls` (checker side) or `client~tls@nlb` (client side).
    pub view: View,
}

impl Hybrid {
    /// The hybrid of a pair that switches `attribute` on the `switched` side: that side's view
    /// with the other side's value, named `nlb~tls` (checker side) or `client~tls@nlb` (client
    /// side).
    ///
    /// Hybrids are coherent: switching `tls` on takes the other view's TLS settings (its effective
    /// SNI, verification, ALPN, CA file) and the TLS scheme, moving a default port (80) to the TLS
    /// default (443) and back; `address` switches the dial endpoint with its port and resolver;
    /// `headers` switches the whole header set; `method` brings its body. Every hybrid probes one
    /// address and skips the `expect_addresses` check: it tests request attributes, not DNS.
    pub fn new(attribute: Attribute, switched: Side, client: &View, checker: &View) -> Hybrid {
        let view = match switched {
            Side::Checker => {
                switched_view(checker, client, &[attribute], format!("{}~{}", checker.name, attribute))
            }
            Side::Client => switched_view(
                client,
                checker,
                &[attribute],
                format!("{}~{}@{}", client.name, attribute, checker.name),
            ),
        };
        Hybrid { attribute, switched, view }
    }
}

/// One planned combination: a view of the pair with SEVERAL attributes switched together, probed
/// when no single switch heals the disagreement (see [`crate::diff::attribution::CauseSearch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Combined {
    /// The attributes switched, most likely culprit first.
    pub attributes: Vec<Attribute>,
    /// The view it starts from.
    pub switched: Side,
    /// The complete view to probe, named `gcp~host+matcher` (checker side) or
    /// `client~host+matcher@gcp` (client side).
    pub view: View,
}

impl Combined {
    /// The view of a pair that switches every attribute of `attributes` on the `switched` side,
    /// each as [`Hybrid::new`] switches it alone.
    pub fn new(attributes: &[Attribute], switched: Side, client: &View, checker: &View) -> Combined {
        let names = attributes.iter().map(|a| a.as_str()).collect::<Vec<_>>().join("+");
        let view = match switched {
            Side::Checker => switched_view(checker, client, attributes, format!("{}~{names}", checker.name)),
            Side::Client => switched_view(
                client,
                checker,
                attributes,
                format!("{}~{names}@{}", client.name, checker.name),
            ),
        };
        Combined { attributes: attributes.to_vec(), switched, view }
    }
}

/// What one combination showed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CombinedResult {
    /// The combination's view name (`gcp~host+matcher`).
    pub view: Arc<str>,
    /// The attributes switched together.
    pub attributes: Vec<Attribute>,
    /// Which view it started from.
    pub switched: Side,
    /// Whether it succeeded.
    pub ok: bool,
    /// Its error code.
    pub error: Option<ErrorCode>,
    /// Its HTTP status.
    pub status: Option<u16>,
    /// Whether it heals the side it started from: its result is the other view's.
    pub healed: bool,
    /// The complete outcome (not serialized).
    #[serde(skip)]
    pub outcome: Option<Outcome>,
}

impl CombinedResult {
    /// What `combined` showed: `outcome` (none counts as a failure), healed when its result
    /// differs from `base_ok`, the result of the view it started from.
    pub fn new(combined: Combined, outcome: Option<Outcome>, base_ok: bool) -> CombinedResult {
        let ok = outcome.as_ref().is_some_and(|o| o.ok);
        CombinedResult {
            view: combined.view.name.clone(),
            attributes: combined.attributes,
            switched: combined.switched,
            ok,
            error: outcome.as_ref().and_then(|o| o.error),
            status: outcome.as_ref().and_then(|o| o.status),
            healed: ok != base_ok,
            outcome,
        }
    }
}

/// `base` with every attribute of `attributes` taken from `donor`, in order, named `name` (see
/// [`Hybrid::new`]).
fn switched_view(base: &View, donor: &View, attributes: &[Attribute], name: String) -> View {
    let mut v = base.clone();
    v.name = name.into();
    v.each_address = false;
    v.expect_addresses.clear();
    let mut path_for_display = base.path_display().into_owned();
    for attribute in attributes {
        let current = v.clone();
        switch(&mut v, &current, donor, *attribute, &mut path_for_display);
    }
    v.url_display = format!("{}://{}{}", v.scheme.as_str(), v.url_endpoint, path_for_display);
    v
}

/// Switches `attribute` of `v` (which is `base`) to `donor`'s value.
fn switch(v: &mut View, base: &View, donor: &View, attribute: Attribute, path_for_display: &mut String) {
    match attribute {
        Attribute::Address => {
            v.connect_to = Some(donor.dial_endpoint().clone());
            v.resolver = donor.resolver;
            v.ip_version = donor.ip_version;
            // A TLS address comes with the way it is spoken: plain HTTP sent to a TLS edge tells
            // nothing about the address (it fails whatever stands behind it). Switching TLS alone
            // stays a hybrid of its own; `attribute` drops this one's flip when that one gives
            // the same result. The other way (TLS sent to a plain port) is left as it is: it
            // fails fast and says so, and turning TLS off would make it the donor's request.
            if donor.scheme.uses_tls() && !base.scheme.uses_tls() {
                v.scheme = base.scheme.with_tls(true);
                v.tls = donor.tls.clone();
                v.tls.sni = sni_rule(effective_sni(donor));
            }
        }
        Attribute::Source => {
            v.source = donor.source;
            v.freebind = donor.freebind;
        }
        Attribute::ProxyProtocol => v.proxy_protocol = donor.proxy_protocol,
        Attribute::Tls => {
            let on = donor.scheme.uses_tls();
            let scheme = base.scheme.with_tls(on);
            if on {
                v.tls = donor.tls.clone();
                v.tls.sni = sni_rule(effective_sni(donor));
            }
            // A default port goes with its scheme (http://x/ -> https://x/); an explicit one is
            // kept: "plain HTTP sent to the TLS port 30080" is fixed by TLS on 30080.
            let moved = |port: u16| match (base.scheme.default_port(), scheme.default_port()) {
                (Some(from), Some(to)) if from == port => to,
                _ => port,
            };
            v.url_endpoint.port = moved(v.url_endpoint.port);
            if let Some(c) = v.connect_to.as_mut() {
                c.port = moved(c.port);
            }
            v.scheme = scheme;
        }
        Attribute::Sni => v.tls.sni = sni_rule(effective_sni(donor)),
        Attribute::Verify => {
            v.tls.verify = donor.tls.verify;
            v.tls.ca_file = donor.tls.ca_file.clone();
        }
        Attribute::Host => {
            v.http.host = match effective_host(donor) {
                Some(h) => HostHeader::Value(h.into_owned()),
                None => HostHeader::None,
            }
        }
        Attribute::Path => {
            v.path = donor.path.clone();
            *path_for_display = donor.path_display().into_owned();
        }
        Attribute::Method => {
            v.http.method = donor.http.method.clone();
            v.http.body = donor.http.body.clone();
        }
        // The donor's suspect headers with the view's own identity headers: a checker's
        // `Connection: Keep-alive` is how it talks, not what it lacks.
        Attribute::Headers => {
            let own = base.http.headers.iter().filter(|(n, _)| is_identity_header(n));
            let donated = donor.http.headers.iter().filter(|(n, _)| !is_identity_header(n));
            v.http.headers = own.chain(donated).cloned().collect();
        }
        Attribute::UserAgent => v.http.user_agent = donor.http.user_agent.clone(),
        // The version with what selects it: over TLS, ALPN decides between h2 and HTTP/1.1, so the
        // donor's offer comes along. HTTP/1.1 and HTTP/2 need a Host (RFC 9112 section 3.2): a
        // request that sent none (HAProxy's HTTP/1.0 check) takes its URL's authority.
        Attribute::HttpVersion => {
            v.http.version = donor.http.version;
            if base.scheme.uses_tls() && donor.scheme.uses_tls() {
                v.tls.alpn = donor.tls.alpn.clone();
            }
            if donor.http.version != HttpVersion::Http10 && base.http.host == HostHeader::None {
                v.http.host = HostHeader::FromUrl;
            }
        }
        Attribute::Matcher => v.expect = donor.expect.clone(),
    }
}

fn sni_rule(sni: Option<String>) -> Sni {
    match sni {
        Some(n) => Sni::Name(n),
        None => Sni::None,
    }
}

/// What one hybrid showed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HybridResult {
    /// The hybrid's view name (`nlb~tls`).
    pub view: Arc<str>,
    /// The attribute switched.
    pub attribute: Attribute,
    /// Which view it started from.
    pub switched: Side,
    /// Whether it succeeded.
    pub ok: bool,
    /// Its error code.
    pub error: Option<ErrorCode>,
    /// Its HTTP status.
    pub status: Option<u16>,
    /// Whether its result differs from the result of the view it started from (an `address`
    /// hybrid that also had to switch TLS does not count when switching TLS alone gave the same
    /// result: TLS explains it).
    pub flipped: bool,
    /// The complete outcome (not serialized: the mismatch record stays one line).
    #[serde(skip)]
    pub outcome: Option<Outcome>,
    /// The hybrid's view (not serialized).
    #[serde(skip)]
    pub hybrid: View,
}

impl HybridResult {
    /// What `hybrid` showed: `outcome` (none counts as a failure), flipped when its result differs
    /// from `base_ok`, the result of the view it started from.
    pub fn new(hybrid: Hybrid, outcome: Option<Outcome>, base_ok: bool) -> HybridResult {
        let ok = outcome.as_ref().is_some_and(|o| o.ok);
        HybridResult {
            view: hybrid.view.name.clone(),
            attribute: hybrid.attribute,
            switched: hybrid.switched,
            ok,
            error: outcome.as_ref().and_then(|o| o.error),
            status: outcome.as_ref().and_then(|o| o.status),
            flipped: ok != base_ok,
            outcome,
            hybrid: hybrid.view,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Endpoint, Host, Scheme};
    use crate::diff::attribution::plan_hybrids;
    use crate::testkit::{header, shop_client as client, shop_nlb as nlb, view_url};

    #[test]
    fn switching_tls_on_takes_the_clients_tls_settings_and_keeps_an_explicit_port() {
        let mut c = client();
        c.tls.ca_file = Some("/etc/ca.pem".into());
        c.tls.alpn = vec!["h2".into(), "http/1.1".into()];
        let k = nlb();
        let plan = plan_hybrids(&c, &k, 100);
        let h = plan.iter().find(|h| h.switched == Side::Checker && h.attribute == Attribute::Tls).unwrap();
        let v = &h.view;
        assert_eq!(v.scheme, Scheme::Https);
        assert_eq!(v.url_endpoint.port, 30080, "explicit port kept");
        // The client's effective SNI travels as a name: the checker's URL host is an IP.
        assert_eq!(v.tls.sni, Sni::Name("shop.example.com".into()));
        assert!(v.tls.verify);
        assert_eq!(v.tls.ca_file, c.tls.ca_file);
        assert_eq!(v.tls.alpn, c.tls.alpn);
        // Everything else is still the checker's.
        assert_eq!(v.path, "/healthz");
        assert_eq!(v.dial_endpoint(), k.dial_endpoint());
        assert_eq!(v.url_display, "https://10.0.0.5:30080/healthz");
        assert_eq!(&*v.name, "nlb~tls");
    }

    #[test]
    fn switching_tls_moves_default_ports_both_ways() {
        let c = client();
        let k = view_url("shop", "alb", "http://10.0.0.5/");
        let plan = plan_hybrids(&c, &k, 100);
        let on =
            &plan.iter().find(|h| h.switched == Side::Checker && h.attribute == Attribute::Tls).unwrap().view;
        assert_eq!((on.scheme, on.url_endpoint.port), (Scheme::Https, 443));
        let off =
            &plan.iter().find(|h| h.switched == Side::Client && h.attribute == Attribute::Tls).unwrap().view;
        assert_eq!((off.scheme, off.url_endpoint.port), (Scheme::Http, 80));
        assert_eq!(&*off.name, "client~tls@alb");
        // A connect_to port moves with it too.
        let mut c2 = client();
        c2.connect_to = Some(Endpoint { host: Host::Ip([203, 0, 113, 10].into()), port: 443 });
        let plan = plan_hybrids(&c2, &k, 100);
        let off =
            &plan.iter().find(|h| h.switched == Side::Client && h.attribute == Attribute::Tls).unwrap().view;
        assert_eq!(off.dial_endpoint().port, 80);
    }

    #[test]
    fn address_headers_method_host_path_switches() {
        let mut c = client();
        c.connect_to = Some(Endpoint { host: Host::Ip([203, 0, 113, 10].into()), port: 443 });
        c.http.headers = vec![header("authorization", "Bearer s3cret", true), header("x-env", "prod", false)];
        c.http.method = http::Method::POST;
        c.http.body = Some(crate::config::MaybeSecret::Plain("{}".into()));
        let mut k = view_url("shop", "alb", "https://10.0.0.5:8443/healthz");
        k.http.method = http::Method::OPTIONS;
        k.http.host = HostHeader::DialedAddress;
        let plan = plan_hybrids(&c, &k, 100);
        let get = |a: Attribute| {
            &plan.iter().find(|h| h.switched == Side::Checker && h.attribute == a).unwrap().view
        };
        let addr = get(Attribute::Address);
        assert_eq!(addr.dial_endpoint().to_string(), "203.0.113.10:443");
        assert_eq!(addr.url_endpoint, k.url_endpoint, "URL (Host, SNI rules) unchanged");
        assert_eq!(get(Attribute::Headers).http.headers, c.http.headers, "the whole set");
        let m = get(Attribute::Method);
        assert_eq!((m.http.method.clone(), m.http.body.clone()), (http::Method::POST, c.http.body.clone()));
        assert_eq!(get(Attribute::Host).http.host, HostHeader::Value("shop.example.com".into()));
        let p = get(Attribute::Path);
        assert_eq!((p.path.as_str(), p.url_display.as_str()), ("/cart", "https://10.0.0.5:8443/cart"));
        // Reverse host: the client gets the checker's dialed address as a value.
        let rev =
            &plan.iter().find(|h| h.switched == Side::Client && h.attribute == Attribute::Host).unwrap().view;
        assert_eq!(rev.http.host, HostHeader::Value("10.0.0.5:8443".into()));
    }

    #[test]
    fn hybrids_probe_one_address_without_the_dns_expectation() {
        let mut c = client();
        c.each_address = true;
        c.expect_addresses = vec!["203.0.113.10".parse().unwrap()];
        let plan = plan_hybrids(&c, &nlb(), 100);
        assert!(!plan.is_empty());
        assert!(plan.iter().all(|h| !h.view.each_address && h.view.expect_addresses.is_empty()));
    }

    #[test]
    fn switching_headers_keeps_the_views_own_identity_headers() {
        let mut c = client();
        c.http.headers =
            vec![header("authorization", "Bearer s3cret", true), header("accept", "text/html", false)];
        let mut k = nlb();
        k.http.headers = vec![header("connection", "Keep-alive", false)];
        let plan = plan_hybrids(&c, &k, 100);
        let get = |side: Side| {
            &plan.iter().find(|h| h.switched == side && h.attribute == Attribute::Headers).unwrap().view
        };
        let names = |v: &View| v.http.headers.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(get(Side::Checker)),
            ["connection", "authorization"],
            "checker keeps its Connection"
        );
        assert_eq!(names(get(Side::Client)), ["accept"], "client keeps its Accept, loses its token");
    }

    #[test]
    fn switching_the_http_version_brings_alpn_and_a_host_for_http11() {
        use crate::config::HttpVersion;
        // HAProxy's HTTP/1.0 check sends no Host; as HTTP/1.1 it needs one: the URL's.
        let c = view_url("shop", "client", "http://shop.example.com/cart");
        let mut k = view_url("shop", "haproxy", "http://10.0.0.5:30080/");
        k.http.version = HttpVersion::Http10;
        k.http.host = HostHeader::None;
        let plan = plan_hybrids(&c, &k, 100);
        let get = |side: Side| {
            &plan.iter().find(|h| h.switched == side && h.attribute == Attribute::HttpVersion).unwrap().view
        };
        let up = get(Side::Checker);
        assert_eq!((up.http.version, &up.http.host), (c.http.version, &HostHeader::FromUrl));
        assert_eq!(&*up.name, "haproxy~http_version");
        let down = get(Side::Client);
        assert_eq!(
            (down.http.version, &down.http.host),
            (HttpVersion::Http10, &c.http.host),
            "1.0 keeps its Host"
        );
        // Over TLS the ALPN offer that picks h2 or HTTP/1.1 comes with it.
        let mut t = client();
        t.http.version = HttpVersion::Auto;
        t.tls.alpn = vec!["h2".into(), "http/1.1".into()];
        let mut u = view_url("shop", "alb", "https://10.0.0.5:8443/cart");
        u.http.version = HttpVersion::Http11;
        u.tls.alpn = vec![];
        let plan = plan_hybrids(&t, &u, 100);
        let v = &plan
            .iter()
            .find(|h| h.switched == Side::Checker && h.attribute == Attribute::HttpVersion)
            .unwrap()
            .view;
        assert_eq!((v.http.version, v.tls.alpn.clone()), (HttpVersion::Auto, t.tls.alpn.clone()));
    }

    #[test]
    fn a_combination_switches_every_attribute_it_names() {
        let c = client();
        let mut k = nlb();
        k.http.host = HostHeader::DialedIp;
        k.expect.status = vec![200..=200];
        let combined = Combined::new(&[Attribute::Host, Attribute::Matcher], Side::Checker, &c, &k);
        assert_eq!(&*combined.view.name, "nlb~host+matcher");
        assert_eq!(combined.view.http.host, HostHeader::Value("shop.example.com".into()));
        assert_eq!(combined.view.expect, c.expect, "judged by the client's matcher");
        assert_eq!(
            (combined.view.path.as_str(), combined.view.scheme),
            ("/healthz", Scheme::Http),
            "the rest is the checker's"
        );
        let rev = Combined::new(&[Attribute::Host, Attribute::Path], Side::Client, &c, &k);
        assert_eq!(&*rev.view.name, "client~host+path@nlb");
        assert_eq!(
            (rev.view.path.as_str(), rev.view.url_display.as_str()),
            ("/healthz", "https://shop.example.com:443/healthz")
        );
    }
}
