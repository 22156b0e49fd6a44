//! Attribution: which request attribute makes the checker's view and the client's view disagree.
//!
//! [`differences`] lists the attributes in which two views differ; [`plan_hybrids`] (pure) builds
//! hybrids — the checker's view with ONE attribute switched to the client's value, then the
//! client's view with one attribute switched to the checker's — and [`attribute`] probes them and
//! records which switches flip the result. Hybrids are real requests to production endpoints, so
//! every run is bounded: [`AttributionSettings::max_hybrids`] per run, [`HYBRID_CONCURRENCY`] at a
//! time, and [`AttributionBudget`] decides when a run may happen at all.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::time::Instant;

use crate::config::{Endpoint, Host, HostHeader, Scheme, Sni, View};
use crate::probe::{ErrorCode, Outcome, Prober};

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
}

impl Attribute {
    /// Most likely culprit first: the order hybrids are planned and flips are reported in.
    pub const PRIORITY: [Attribute; 11] = [
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
        Attribute::Verify,
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
        }
    }

    fn rank(self) -> usize {
        Attribute::PRIORITY.iter().position(|a| *a == self).unwrap_or(Attribute::PRIORITY.len())
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which view of the pair a hybrid starts from (and has one attribute switched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The checker's request with one client value: does the checker's result flip?
    Checker,
    /// The client's request with one checker value: does the client's result flip?
    Client,
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

/// The attributes in which `client` and `checker` differ, most likely culprit first.
///
/// Only attributes that mean something on both views are compared: SNI and verification only when
/// both use TLS; Host and User-Agent when both speak HTTP or gRPC; path, method and headers when
/// both speak HTTP.
pub fn differences(client: &View, checker: &View) -> Vec<Attribute> {
    Attribute::PRIORITY.iter().copied().filter(|a| differs(*a, client, checker)).collect()
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
        Attribute::Headers => both_http && a.http.headers != b.http.headers,
        Attribute::UserAgent => both_authority && a.http.user_agent != b.http.user_agent,
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

/// The Host header `view` sends, as far as the view alone decides it: the URL's authority, the
/// dialed endpoint, a value, or none.
pub fn effective_host(view: &View) -> Option<String> {
    match &view.http.host {
        HostHeader::FromUrl => Some(view.url_authority()),
        HostHeader::DialedAddress => Some(view.dial_endpoint().to_string()),
        HostHeader::DialedIp => Some(view.dial_endpoint().host.to_string()),
        HostHeader::Value(v) => Some(v.clone()),
        HostHeader::None => None,
    }
}

/// The path part of the view's display URL (secret substitutions already `<redacted>`).
pub fn display_path(view: &View) -> &str {
    let rest = view.url_display.split_once("://").map_or(view.url_display.as_str(), |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// Plans the hybrids for a pair: first the checker's view with one attribute switched to the
/// client's value, for every attribute in [`differences`], most likely first; then the client's
/// view with one attribute switched to the checker's value, in the same order. At most `cap`.
///
/// Hybrids are coherent: switching `tls` on takes the client's TLS settings (its effective SNI,
/// verification, ALPN, CA file) and the TLS scheme, moving a default port (80) to the TLS default
/// (443) and back; `address` switches the dial endpoint with its port and resolver; `headers`
/// switches the whole header set; `method` brings its body. Every hybrid probes one address and
/// skips the `expect_addresses` check: it tests request attributes, not DNS.
pub fn plan_hybrids(client: &View, checker: &View, cap: usize) -> Vec<Hybrid> {
    let diffs = differences(client, checker);
    let forward = diffs.iter().map(|a| Hybrid {
        attribute: *a,
        switched: Side::Checker,
        view: switch(checker, client, *a, format!("{}~{}", checker.name, a)),
    });
    let reverse = diffs.iter().map(|a| Hybrid {
        attribute: *a,
        switched: Side::Client,
        view: switch(client, checker, *a, format!("{}~{}@{}", client.name, a, checker.name)),
    });
    forward.chain(reverse).take(cap).collect()
}

/// `base` with `attribute` taken from `donor`.
fn switch(base: &View, donor: &View, attribute: Attribute, name: String) -> View {
    let mut v = base.clone();
    v.name = name.into();
    v.each_address = false;
    v.expect_addresses.clear();
    let mut path_for_display = display_path(base).to_owned();
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
                Some(h) => HostHeader::Value(h),
                None => HostHeader::None,
            }
        }
        Attribute::Path => {
            v.path = donor.path.clone();
            path_for_display = display_path(donor).to_owned();
        }
        Attribute::Method => {
            v.http.method = donor.http.method.clone();
            v.http.body = donor.http.body.clone();
        }
        Attribute::Headers => v.http.headers = donor.http.headers.clone(),
        Attribute::UserAgent => v.http.user_agent = donor.http.user_agent.clone(),
    }
    v.url_display = format!("{}://{}{}", v.scheme.as_str(), v.url_endpoint, path_for_display);
    v
}

fn sni_rule(sni: Option<String>) -> Sni {
    match sni {
        Some(n) => Sni::Name(n),
        None => Sni::None,
    }
}

/// `view` dialing exactly the address `outcome` dialed (when it got that far), so hybrids reach
/// the same backend as the outcome they are compared with even if DNS rotates, and with
/// `each_address` each pair is attributed on its own address. Host and SNI rules are unchanged:
/// they derive from the URL, not the dial endpoint.
pub fn pin(view: &View, outcome: &Outcome) -> View {
    let mut v = view.clone();
    if let Some(addr) = dialed(outcome) {
        v.connect_to = Some(Endpoint { host: Host::Ip(addr.ip()), port: addr.port() });
        v.each_address = false;
        v.expect_addresses.clear();
    }
    v
}

/// The address an outcome dialed, when it got that far.
pub fn dialed(outcome: &Outcome) -> Option<SocketAddr> {
    outcome.request.address.or(outcome.peer)
}

/// Attribution switches and bounds: a target's `attribution`, `attribution_interval` and
/// `max_hybrids` (see [`crate::config::DiffSettings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributionSettings {
    /// `attribution = false` turns hybrid probing off (diagnosis then uses error codes only).
    pub enabled: bool,
    /// Minimum time between two runs for one client/checker pair.
    pub interval: Duration,
    /// Most hybrids probed per run.
    pub max_hybrids: usize,
}

pub use crate::config::{DEFAULT_ATTRIBUTION_INTERVAL, DEFAULT_MAX_HYBRIDS};
/// Hybrids of one run in flight at a time: enough to finish a run within a few timeouts, few
/// enough not to look like a burst to the target.
pub const HYBRID_CONCURRENCY: usize = 4;

impl Default for AttributionSettings {
    fn default() -> AttributionSettings {
        AttributionSettings::from(&crate::config::DiffSettings::default())
    }
}

impl From<&crate::config::DiffSettings> for AttributionSettings {
    fn from(d: &crate::config::DiffSettings) -> AttributionSettings {
        AttributionSettings {
            enabled: d.attribution,
            interval: d.attribution_interval,
            max_hybrids: d.max_hybrids,
        }
    }
}

/// When one client/checker pair may run attribution: only while a mismatch is open, once when it
/// opens, then at most every `interval` — also across re-openings, so a flapping pair cannot
/// turn attribution into a stream of production requests (the daemon keeps the last result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributionBudget {
    enabled: bool,
    interval: Duration,
    open: bool,
    last_run: Option<Instant>,
    runs: u64,
}

impl AttributionBudget {
    /// A budget with nothing open.
    pub fn new(settings: &AttributionSettings) -> AttributionBudget {
        AttributionBudget {
            enabled: settings.enabled,
            interval: settings.interval,
            open: false,
            last_run: None,
            runs: 0,
        }
    }

    /// A mismatch opened for this pair.
    pub fn opened(&mut self) {
        self.open = true;
    }

    /// The pair's mismatch resolved: no more runs until the next opening.
    pub fn resolved(&mut self) {
        self.open = false;
    }

    /// Whether a run may start at `now`; if so, it is counted as started.
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        if !self.enabled || !self.open {
            return false;
        }
        if self.last_run.is_some_and(|t| now.saturating_duration_since(t) < self.interval) {
            return false;
        }
        self.last_run = Some(now);
        self.runs += 1;
        true
    }

    /// When the next run may start, as seen at `now` (`None`: disabled or nothing open).
    pub fn next_allowed(&self, now: Instant) -> Option<Instant> {
        if !self.enabled || !self.open {
            return None;
        }
        Some(self.last_run.map_or(now, |t| (t + self.interval).max(now)))
    }

    /// Runs started so far.
    pub fn runs(&self) -> u64 {
        self.runs
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

/// The result of one attribution run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribution {
    /// The attributes in which the pinned views differ.
    pub differences: Vec<Attribute>,
    /// Every hybrid probed, in plan order.
    pub hybrids: Vec<HybridResult>,
    /// Hybrids planned beyond the cap and not probed.
    pub not_tried: usize,
}

impl Attribution {
    /// The attributes whose switch flipped a result (either side), most likely culprit first.
    pub fn flipped(&self) -> Vec<Attribute> {
        let mut out: Vec<Attribute> =
            self.hybrids.iter().filter(|h| h.flipped).map(|h| h.attribute).collect();
        out.sort_by_key(|a| a.rank());
        out.dedup();
        out
    }

    /// The flipped hybrid for `attribute`, the checker-side one first.
    pub fn flip(&self, attribute: Attribute) -> Option<&HybridResult> {
        let flipped =
            |side| self.hybrids.iter().find(|h| h.flipped && h.attribute == attribute && h.switched == side);
        flipped(Side::Checker).or_else(|| flipped(Side::Client))
    }
}

/// Runs one attribution for a pair: pins both views to the addresses their outcomes dialed, plans
/// at most `cap` hybrids and probes them, [`HYBRID_CONCURRENCY`] at a time. A checker-side hybrid
/// flipped when its result differs from `checker_outcome`'s; a client-side one when it differs
/// from `client_outcome`'s.
pub async fn attribute(
    prober: &Prober,
    client: &View,
    checker: &View,
    client_outcome: &Outcome,
    checker_outcome: &Outcome,
    cap: usize,
) -> Attribution {
    attribute_with(
        |view: View| async move { prober.probe(&view).await },
        client,
        checker,
        client_outcome,
        checker_outcome,
        cap,
    )
    .await
}

/// [`attribute`] with the probe as a function: the seam that lets the pure core be tested
/// without sockets.
pub(crate) async fn attribute_with<F, Fut>(
    probe: F,
    client: &View,
    checker: &View,
    client_outcome: &Outcome,
    checker_outcome: &Outcome,
    cap: usize,
) -> Attribution
where
    F: Fn(View) -> Fut,
    Fut: Future<Output = Vec<Outcome>>,
{
    let client = pin(client, client_outcome);
    let checker = pin(checker, checker_outcome);
    let differences = differences(&client, &checker);
    let plan = plan_hybrids(&client, &checker, cap);
    let not_tried = (2 * differences.len()).saturating_sub(plan.len());
    let hybrids = stream::iter(plan)
        .map(|h| {
            let probe = probe(h.view.clone());
            async move { (h, probe.await) }
        })
        .buffered(HYBRID_CONCURRENCY)
        .map(|(h, outcomes)| {
            let base_ok = match h.switched {
                Side::Checker => checker_outcome.ok,
                Side::Client => client_outcome.ok,
            };
            // Every hybrid probes one address; an empty result would be a prober bug, and
            // counts as a failure rather than a success.
            let outcome = outcomes.into_iter().next();
            let ok = outcome.as_ref().is_some_and(|o| o.ok);
            HybridResult {
                view: h.view.name.clone(),
                attribute: h.attribute,
                switched: h.switched,
                ok,
                error: outcome.as_ref().and_then(|o| o.error),
                status: outcome.as_ref().and_then(|o| o.status),
                flipped: ok != base_ok,
                outcome,
                hybrid: h.view,
            }
        })
        .collect::<Vec<HybridResult>>()
        .await;
    let mut hybrids = hybrids;
    explain_address_by_tls(&mut hybrids, &client, &checker);
    Attribution { differences, hybrids, not_tried }
}

/// An `address` hybrid that also had to switch TLS on (see [`plan_hybrids`]) does not count as
/// a flip when switching TLS alone, on the same side, gave the same result: TLS explains it.
pub(crate) fn explain_address_by_tls(hybrids: &mut [HybridResult], client: &View, checker: &View) {
    let explained_by_tls: Vec<bool> = hybrids
        .iter()
        .map(|h| {
            let base = match h.switched {
                Side::Checker => checker,
                Side::Client => client,
            };
            h.attribute == Attribute::Address
                && h.flipped
                && h.hybrid.scheme.uses_tls() != base.scheme.uses_tls()
                && hybrids.iter().any(|t| {
                    t.attribute == Attribute::Tls
                        && t.switched == h.switched
                        && t.flipped
                        && (t.ok, t.error, t.status) == (h.ok, h.error, h.status)
                })
        })
        .collect();
    for (h, explained) in hybrids.iter_mut().zip(explained_by_tls) {
        if explained {
            h.flipped = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::{ProxyHeader, ProxyVersion, Source, SourceBind};
    use crate::diff::testkit::{header, ok_outcome, outcome_for, view_url};

    fn nlb() -> View {
        view_url("shop", "nlb", "http://10.0.0.5:30080/healthz")
    }

    fn client() -> View {
        view_url("shop", "client", "https://shop.example.com/cart")
    }

    #[test]
    fn identical_views_have_no_differences_and_no_hybrids() {
        let c = client();
        let mut twin = c.clone();
        twin.name = "twin".into();
        assert!(differences(&c, &twin).is_empty());
        assert!(plan_hybrids(&c, &twin, 12).is_empty());
    }

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
        ];
        for (want, edit) in table {
            let mut other = base.clone();
            edit(&mut other, src);
            assert_eq!(differences(&base, &other), vec![*want], "{want}");
        }
        assert_eq!(table.len(), Attribute::PRIORITY.len(), "every attribute has a row");
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
    fn forward_hybrids_come_first_in_priority_order_then_reverse() {
        let c = client();
        let mut k = nlb();
        k.http.user_agent = Some("ELB-HealthChecker/2.0".into());
        k.http.host = HostHeader::DialedAddress;
        let plan = plan_hybrids(&c, &k, 100);
        let got: Vec<_> = plan.iter().map(|h| (h.switched, h.attribute, h.view.name.to_string())).collect();
        let attrs =
            [Attribute::Tls, Attribute::Host, Attribute::Path, Attribute::UserAgent, Attribute::Address];
        let mut want: Vec<_> = attrs.iter().map(|a| (Side::Checker, *a, format!("nlb~{a}"))).collect();
        want.extend(attrs.iter().map(|a| (Side::Client, *a, format!("client~{a}@nlb"))));
        assert_eq!(got, want);
    }

    #[test]
    fn the_cap_bounds_the_plan() {
        let c = client();
        let mut k = nlb();
        k.http.user_agent = Some("ELB-HealthChecker/2.0".into());
        for cap in 0..12 {
            let plan = plan_hybrids(&c, &k, cap);
            assert_eq!(plan.len(), cap.min(2 * differences(&c, &k).len()), "cap {cap}");
            // The cap cuts the least likely: what remains is a prefix of the full plan.
            assert_eq!(plan, plan_hybrids(&c, &k, 100)[..plan.len()].to_vec());
        }
    }

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
    fn sni_and_verify_hybrids_only_between_tls_views() {
        let c = client();
        let mut k = view_url("shop", "alb", "https://10.0.0.5:8443/");
        k.tls.sni = Sni::None;
        k.tls.verify = false;
        let plan = plan_hybrids(&c, &k, 100);
        for h in &plan {
            if matches!(h.attribute, Attribute::Sni | Attribute::Verify) {
                assert!(h.view.scheme.uses_tls(), "{}", h.view.name);
            }
        }
        let sni =
            &plan.iter().find(|h| h.switched == Side::Checker && h.attribute == Attribute::Sni).unwrap().view;
        assert_eq!(sni.tls.sni, Sni::Name("shop.example.com".into()));
        assert!(!sni.tls.verify, "only sni switched");
        let rev =
            &plan.iter().find(|h| h.switched == Side::Client && h.attribute == Attribute::Sni).unwrap().view;
        assert_eq!(rev.tls.sni, Sni::None);
        // Plain checker: no sni/verify hybrid at all, even though the settings differ.
        let mut plain = nlb();
        plain.tls.verify = false;
        assert!(plan_hybrids(&c, &plain, 100)
            .iter()
            .all(|h| !matches!(h.attribute, Attribute::Sni | Attribute::Verify)));
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
    fn pin_dials_what_the_outcome_dialed() {
        let c = client();
        let mut o = ok_outcome(&c);
        o.request.address = Some("203.0.113.11:443".parse().unwrap());
        let p = pin(&c, &o);
        assert_eq!(p.dial_endpoint().to_string(), "203.0.113.11:443");
        assert_eq!(p.url_endpoint, c.url_endpoint);
        assert_eq!(effective_sni(&p), Some("shop.example.com".into()));
        o.request.address = None;
        o.peer = None;
        assert_eq!(pin(&c, &o), c, "nothing dialed: unchanged");
    }

    #[test]
    fn display_path_never_shows_more_than_the_display_url() {
        let mut v = nlb();
        v.url_display = "http://10.0.0.5:30080/healthz?token=<redacted>".into();
        assert_eq!(display_path(&v), "/healthz?token=<redacted>");
        v.url_display = "tcp://10.0.0.5:30080".into();
        assert_eq!(display_path(&v), "/");
    }

    #[tokio::test(start_paused = true)]
    async fn budget_runs_once_per_opening_then_at_most_every_interval() {
        let settings =
            AttributionSettings { interval: Duration::from_secs(300), ..AttributionSettings::default() };
        let mut b = AttributionBudget::new(&settings);
        let t0 = Instant::now();
        assert!(!b.try_acquire(t0), "nothing open");
        assert_eq!(b.next_allowed(t0), None);
        b.opened();
        assert_eq!(b.next_allowed(t0), Some(t0));
        assert!(b.try_acquire(t0));
        assert!(!b.try_acquire(t0), "one run per opening");
        assert!(!b.try_acquire(t0 + Duration::from_secs(299)));
        assert_eq!(b.next_allowed(t0 + Duration::from_secs(1)), Some(t0 + Duration::from_secs(300)));
        assert!(b.try_acquire(t0 + Duration::from_secs(300)), "refresh after the interval");
        // Resolved and re-opened soon after: the interval still holds.
        b.resolved();
        assert!(!b.try_acquire(t0 + Duration::from_secs(305)), "nothing open");
        b.opened();
        assert!(!b.try_acquire(t0 + Duration::from_secs(310)));
        assert!(b.try_acquire(t0 + Duration::from_secs(600)));
        assert_eq!(b.runs(), 3);
        // A storm of openings and polls inside one interval runs nothing more.
        let mut started = 0;
        for i in 0..1000u64 {
            b.opened();
            if b.try_acquire(t0 + Duration::from_secs(600) + Duration::from_millis(i * 250)) {
                started += 1;
            }
            b.resolved();
        }
        assert_eq!(started, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_budget_never_runs() {
        let mut b =
            AttributionBudget::new(&AttributionSettings { enabled: false, ..AttributionSettings::default() });
        b.opened();
        assert!(!b.try_acquire(Instant::now()));
        assert_eq!(b.next_allowed(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn attribute_flags_flips_and_bounds_concurrency_and_count() {
        // A backend model: port 30080 is a TLS listener; the checker's plain HTTP gets
        // http_tls_required, TLS succeeds. Each probe takes 1 s (paused time).
        let c = client();
        let mut k = nlb();
        k.http.user_agent = Some("ELB-HealthChecker/2.0".into());
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let calls = AtomicUsize::new(0);
        let backend = |v: View| {
            let (in_flight, peak, calls) = (&in_flight, &peak, &calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let ok = v.scheme.uses_tls();
                let error = (!ok).then_some(ErrorCode::HttpTlsRequired);
                vec![outcome_for(&v, ok, error, ok.then_some(200))]
            }
        };
        let client_outcome = outcome_for(&c, true, None, Some(200));
        let checker_outcome = outcome_for(&k, false, Some(ErrorCode::HttpTlsRequired), None);
        let start = Instant::now();
        let a = attribute_with(backend, &c, &k, &client_outcome, &checker_outcome, 5).await;
        assert_eq!(calls.load(Ordering::SeqCst), 5, "never more than the cap");
        assert_eq!(a.hybrids.len(), 5);
        assert!(peak.load(Ordering::SeqCst) <= HYBRID_CONCURRENCY);
        assert_eq!(peak.load(Ordering::SeqCst), HYBRID_CONCURRENCY, "runs concurrently");
        assert_eq!(start.elapsed(), Duration::from_secs(2), "5 hybrids, 4 at a time");
        assert_eq!(a.not_tried, 2 * a.differences.len() - 5);
        assert_eq!(a.flipped(), vec![Attribute::Tls]);
        let flip = a.flip(Attribute::Tls).unwrap();
        assert_eq!((&*flip.view, flip.switched, flip.ok), ("nlb~tls", Side::Checker, true));
        // Plan order is kept.
        let names: Vec<_> = a.hybrids.iter().map(|h| h.view.to_string()).collect();
        assert_eq!(names[0], "nlb~tls");
    }

    #[tokio::test(start_paused = true)]
    async fn reverse_hybrids_flip_against_the_client_outcome() {
        let c = client();
        let k = nlb();
        // Backend: everything at /healthz succeeds, /cart fails with 503 (blackhole).
        let backend = |v: View| async move {
            let ok = v.path == "/healthz";
            vec![outcome_for(
                &v,
                ok,
                (!ok).then_some(ErrorCode::HttpStatus),
                Some(if ok { 200 } else { 503 }),
            )]
        };
        let co = outcome_for(&c, false, Some(ErrorCode::HttpStatus), Some(503));
        let ko = outcome_for(&k, true, None, Some(200));
        let a = attribute_with(backend, &c, &k, &co, &ko, 100).await;
        assert_eq!(a.flipped(), vec![Attribute::Path]);
        let sides: Vec<_> = a.hybrids.iter().filter(|h| h.flipped).map(|h| h.switched).collect();
        assert_eq!(sides, vec![Side::Checker, Side::Client]);
        assert_eq!(a.not_tried, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_probe_result_counts_as_a_failure() {
        let c = client();
        let k = nlb();
        let co = outcome_for(&c, true, None, Some(200));
        let ko = outcome_for(&k, false, Some(ErrorCode::ConnectTimeout), None);
        let a = attribute_with(|_v: View| async { Vec::new() }, &c, &k, &co, &ko, 3).await;
        assert!(a.hybrids.iter().all(|h| !h.ok && h.outcome.is_none()));
        assert!(a.hybrids.iter().all(|h| !h.flipped), "failed like the checker");
    }
}
