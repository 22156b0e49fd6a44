//! Diagnosis: the name of a field failure (docs/errors.md#diagnoses), decided from the attributes whose switch
//! flipped a result plus the outcomes' error codes and status. This file holds the codes and the
//! order of decision; `evidence.rs` phrases the one-line `evidence` string an on-call engineer can
//! act on. The findings that need no traffic are the `allow_sources` audit
//! ([`crate::diff::audit`]).
//!
//! Order of decision, most conclusive first:
//! 1. the client's DNS answered the wrong address (`dns_wrong_address`);
//! 2. parallax could not bind the checker's source here (`unattributed`, says so);
//! 3. what the Kubernetes API says about the target joined with the outcomes (`cluster.rs`:
//!    `kube_proxy_endpoints_disagree`, `draining_endpoints`, `health_port_not_served`, and a
//!    users' failure a condition explains); then the kube-proxy view's `localEndpoints`
//!    (`no_local_endpoints`);
//!    then a redirect: the check answered with a 3xx its matcher rejects (`checker_redirected`,
//!    unless switching the User-Agent heals it, or switching the headers does and the Location
//!    looks like a login page: then `user_agent_dependent` / `auth_required`), or the checker
//!    passing on a 3xx while users fail at HTTP (`redirect_masks_outage`); then a compound
//!    cause: no single switch heals the checker, a set of them does (the first attribute's
//!    diagnosis is the primary one; [`causes`] lists one per attribute);
//! 4. a flipped attribute that the failing outcome's error points at (e.g. `tls` after
//!    `http_tls_required`, `headers` after a 401, `source` after `connect_timeout`);
//! 5. the checker's protocol errors (`http_tls_required`, `tls_plaintext_peer`) on their own;
//! 6. the same response judged differently by the two matchers (`status_matcher_mismatch`);
//! 7. a TCP/TLS-only check passing while clients fail at HTTP (`shallow_health_path`);
//! 8. any other flipped attribute, most likely first (a `verify` flip: the certificate the failing
//!    side rejected, `default_certificate_served` or `certificate_rejected`);
//! 9. without attribution: the failing error's likely attribute among those that differ,
//!    marked as not confirmed;
//! 10. otherwise `unattributed`, listing every hybrid tried.
//!
//! Evidence never contains header values (they may be secrets): only header names.

pub mod cluster;
#[cfg(test)]
mod cluster_tests;
pub(super) mod evidence;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::Serialize;

use super::attribute::{differences, effective_sni, Attribute};
use super::attribution::Attribution;
use super::hybrid::{HybridResult, Side};
use super::Direction;
use crate::config::{ClusterFacts, ProfileName, View};
use crate::probe::outcome::location_parts;
use crate::probe::{ErrorCode, Outcome, Phase};

/// The closed set of diagnoses (docs/errors.md#diagnoses). Stable snake_case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Diagnosis {
    /// The health path passes while the user route fails (or the reverse): it does not reflect
    /// what users use. Also a TCP/TLS-only check passing while HTTP fails.
    ShallowHealthPath,
    /// The check is refused for lack of credentials (401/403/redirect to login).
    AuthRequired,
    /// The checker speaks the wrong protocol: plain HTTP to a TLS listener, TLS to a plain one,
    /// a method the app refuses, or no certificate verification hiding a broken certificate.
    CheckerProtocolMismatch,
    /// The checker's source address is blocked (or not allowed by `allow_sources`).
    CheckerSourceBlocked,
    /// kube-proxy reports no local ready endpoint on this node while clients are served, or
    /// reports endpoints while the node's traffic fails.
    NoLocalEndpoints,
    /// The node-port check passes while clients going through the proxy fail (or the reverse).
    NodePortVsProxy,
    /// The SNI sent (or its absence) selects a different certificate or route.
    SniMismatch,
    /// One side's certificate verification rejects the certificate (expired, not yet valid,
    /// untrusted, the name not in its SANs) while the other side, which does not verify (or
    /// trusts other roots), passes: users are refused while the check sees nothing wrong.
    CertificateRejected,
    /// The certificate served for the name is the one the server gives without SNI (or for
    /// another name), and it does not cover the name: the TLS Secret for the host is missing (or
    /// in the wrong namespace), so the server falls back to its default certificate.
    DefaultCertificateServed,
    /// The Host header selects a different (default) backend.
    HostRouteMismatch,
    /// A PROXY header is sent to a listener that does not expect one, or missing where required.
    ProxyProtocolMismatch,
    /// The same response is judged differently by the two views' matchers (204, 3xx).
    StatusMatcherMismatch,
    /// The result depends on the User-Agent.
    UserAgentDependent,
    /// The result depends on the HTTP version (HTTP/1.0, HTTP/1.1, HTTP/2).
    HttpVersionDependent,
    /// The client's DNS does not point at the expected load balancer.
    DnsWrongAddress,
    /// The check is answered with a redirect (3xx) its matcher rejects (an HTTP-to-HTTPS
    /// redirect on the health port, a missing `X-Forwarded-Proto`).
    CheckerRedirected,
    /// The checker passes on a redirect (3xx) while users fail behind it: the check never
    /// reaches what the redirect points to.
    RedirectMasksOutage,
    /// kube-proxy's `localEndpoints` on this node differs from the ready endpoints the
    /// EndpointSlices give this node (a node-name mismatch: `--hostname-override`).
    KubeProxyEndpointsDisagree,
    /// `healthCheckNodePort` refuses or times out on this node while the Service is ETP Local:
    /// the node's service proxy does not serve it.
    HealthPortNotServed,
    /// This node's endpoints are terminating: the check follows a drain (expected during a
    /// rollout), or keeps passing while the pods go away.
    DrainingEndpoints,
    /// Users fail because the backend Service has no ready endpoint on any node.
    NoReadyEndpoints,
    /// Users fail because the Gateway did not accept the HTTPRoute (`Accepted: False`).
    RouteNotAccepted,
    /// Users fail because the HTTPRoute's backend refs are not resolved (`ResolvedRefs: False`).
    BackendRefUnresolved,
    /// Users fail at a Gateway that is not `Programmed`.
    GatewayNotProgrammed,
    /// Users fail at an Ingress whose class no IngressClass claims.
    IngressClassUnclaimed,
    /// Users fail at a MetalLB VIP announced while its Service has no ready endpoint (no
    /// health checker withdraws it).
    VipWithoutHealthCheck,
    /// No single switch explains the disagreement.
    Unattributed,
    /// Not a diagnosis: the daemon's status while the first attribution run of a mismatch is
    /// still probing its hybrids. Nothing is exported or logged with it; events, spans and
    /// metrics wait for the diagnosis.
    Pending,
}

impl Diagnosis {
    /// Every diagnosis, in the order of docs/errors.md.
    pub const ALL: [Diagnosis; 27] = [
        Diagnosis::ShallowHealthPath,
        Diagnosis::AuthRequired,
        Diagnosis::CheckerProtocolMismatch,
        Diagnosis::CheckerSourceBlocked,
        Diagnosis::NoLocalEndpoints,
        Diagnosis::NodePortVsProxy,
        Diagnosis::SniMismatch,
        Diagnosis::CertificateRejected,
        Diagnosis::DefaultCertificateServed,
        Diagnosis::HostRouteMismatch,
        Diagnosis::ProxyProtocolMismatch,
        Diagnosis::StatusMatcherMismatch,
        Diagnosis::UserAgentDependent,
        Diagnosis::HttpVersionDependent,
        Diagnosis::DnsWrongAddress,
        Diagnosis::CheckerRedirected,
        Diagnosis::RedirectMasksOutage,
        Diagnosis::KubeProxyEndpointsDisagree,
        Diagnosis::HealthPortNotServed,
        Diagnosis::DrainingEndpoints,
        Diagnosis::NoReadyEndpoints,
        Diagnosis::RouteNotAccepted,
        Diagnosis::BackendRefUnresolved,
        Diagnosis::GatewayNotProgrammed,
        Diagnosis::IngressClassUnclaimed,
        Diagnosis::VipWithoutHealthCheck,
        Diagnosis::Unattributed,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Diagnosis::ShallowHealthPath => "shallow_health_path",
            Diagnosis::AuthRequired => "auth_required",
            Diagnosis::CheckerProtocolMismatch => "checker_protocol_mismatch",
            Diagnosis::CheckerSourceBlocked => "checker_source_blocked",
            Diagnosis::NoLocalEndpoints => "no_local_endpoints",
            Diagnosis::NodePortVsProxy => "node_port_vs_proxy",
            Diagnosis::SniMismatch => "sni_mismatch",
            Diagnosis::CertificateRejected => "certificate_rejected",
            Diagnosis::DefaultCertificateServed => "default_certificate_served",
            Diagnosis::HostRouteMismatch => "host_route_mismatch",
            Diagnosis::ProxyProtocolMismatch => "proxy_protocol_mismatch",
            Diagnosis::StatusMatcherMismatch => "status_matcher_mismatch",
            Diagnosis::UserAgentDependent => "user_agent_dependent",
            Diagnosis::HttpVersionDependent => "http_version_dependent",
            Diagnosis::DnsWrongAddress => "dns_wrong_address",
            Diagnosis::CheckerRedirected => "checker_redirected",
            Diagnosis::RedirectMasksOutage => "redirect_masks_outage",
            Diagnosis::KubeProxyEndpointsDisagree => "kube_proxy_endpoints_disagree",
            Diagnosis::HealthPortNotServed => "health_port_not_served",
            Diagnosis::DrainingEndpoints => "draining_endpoints",
            Diagnosis::NoReadyEndpoints => "no_ready_endpoints",
            Diagnosis::RouteNotAccepted => "route_not_accepted",
            Diagnosis::BackendRefUnresolved => "backend_ref_unresolved",
            Diagnosis::GatewayNotProgrammed => "gateway_not_programmed",
            Diagnosis::IngressClassUnclaimed => "ingress_class_unclaimed",
            Diagnosis::VipWithoutHealthCheck => "vip_without_health_check",
            Diagnosis::Unattributed => "unattributed",
            Diagnosis::Pending => "pending",
        }
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A diagnosis with its one-line evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The code.
    pub diagnosis: Diagnosis,
    /// What differed and what happened, for a human.
    pub evidence: String,
}

/// One of the causes of a mismatch (the `causes` of its record): a diagnosis, the attributes it
/// is about, and its evidence. A compound cause lists one per attribute, each saying that the
/// others must be fixed too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// The code.
    pub diagnosis: Diagnosis,
    /// The attributes it is about (empty when a rule without a switch decided it).
    pub attributes: Vec<Attribute>,
    /// What was seen and what to do.
    pub evidence: String,
}

/// Everything a diagnosis is decided from: one disagreeing pair.
#[derive(Debug, Clone, Copy)]
pub struct Case<'a> {
    /// Which way they disagree.
    pub direction: Direction,
    /// The client view.
    pub client_view: &'a View,
    /// The checker view.
    pub checker_view: &'a View,
    /// The client's outcome.
    pub client: &'a Outcome,
    /// The checker's outcome.
    pub checker: &'a Outcome,
    /// The attribution run, or `None` when none ran (turned off, or its budget spent).
    pub attribution: Option<&'a Attribution>,
    /// What the Kubernetes API says about the target (`[target.cluster]`), when discovery
    /// derived it.
    pub cluster: Option<&'a ClusterFacts>,
}

impl<'a> Case<'a> {
    /// The failing side: the checker in a false drain, the client in a blackhole.
    fn failing(&self) -> (&'a Outcome, &'a View, &'static str) {
        match self.direction {
            Direction::FalseDrain => (self.checker, self.checker_view, "checker"),
            Direction::Blackhole => (self.client, self.client_view, "client"),
        }
    }

    /// The passing side.
    fn passing(&self) -> (&'a Outcome, &'a View, &'static str) {
        match self.direction {
            Direction::FalseDrain => (self.client, self.client_view, "client"),
            Direction::Blackhole => (self.checker, self.checker_view, "checker"),
        }
    }

    /// The flipped attributes (most likely first) whose flip reproduces the other view's
    /// result: a hybrid of the failing view that now passes, or a hybrid of the passing view
    /// that now fails the way the failing view does.
    fn telling_flips(&self) -> Vec<Attribute> {
        let Some(a) = self.attribution else { return Vec::new() };
        a.flipped().into_iter().filter(|attr| self.telling_flip(*attr).is_some()).collect()
    }

    /// The flipped attributes whose flip does not reproduce the other view's result.
    fn other_flips(&self) -> Vec<Attribute> {
        let telling = self.telling_flips();
        self.attribution
            .map(Attribution::flipped)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| !telling.contains(a))
            .collect()
    }

    /// The hybrid that shows `attribute` flipping to the other view's result, the checker-side
    /// one first (what the check would see with the client's value).
    fn telling_flip(&self, attribute: Attribute) -> Option<&'a HybridResult> {
        let a = self.attribution?;
        let (failing, _, _) = self.failing();
        let fixing = self.fixing_side();
        let telling = |h: &&HybridResult| {
            h.flipped
                && h.attribute == attribute
                && (h.switched == fixing || h.outcome.as_ref().is_some_and(|o| same_failure(o, failing)))
        };
        let hybrids = || a.hybrids.iter();
        hybrids().filter(telling).find(|h| h.switched == Side::Checker).or_else(|| hybrids().find(telling))
    }

    /// The side whose hybrids can fix the failure: the checker's in a false drain (its request
    /// with one client value), the client's in a blackhole.
    fn fixing_side(&self) -> Side {
        match self.direction {
            Direction::FalseDrain => Side::Checker,
            Direction::Blackhole => Side::Client,
        }
    }
}

/// Names the failure of one disagreeing pair. A blackhole's compound cause (see [`compound`])
/// does not replace what the rules name: its evidence is appended (that the users' failure
/// needs all of its attributes together), and it names the failure when the rules find nothing.
pub fn diagnose(case: &Case<'_>) -> Finding {
    let mut f = diagnose_rules(case);
    if let Some(tail) = cluster::context(case, f.diagnosis) {
        f.evidence = format!("{}; {tail}", f.evidence);
    }
    match compound_set(case) {
        Some(c) if case.direction == Direction::Blackhole => {
            if f.diagnosis == Diagnosis::Unattributed {
                return compound(case).unwrap_or(f);
            }
            Finding { evidence: format!("{}; {}", f.evidence, evidence::compound_tail(case, c)), ..f }
        }
        _ => f,
    }
}

/// [`diagnose`]'s rules, most conclusive first.
fn diagnose_rules(case: &Case<'_>) -> Finding {
    let (failing, failing_view, failing_side) = case.failing();

    if case.direction == Direction::Blackhole && case.client.error == Some(ErrorCode::DnsUnexpectedAddress) {
        return Finding {
            diagnosis: Diagnosis::DnsWrongAddress,
            evidence: evidence::dns_wrong_address(case),
        };
    }
    if failing.error == Some(ErrorCode::SourceUnavailable) {
        return Finding {
            diagnosis: Diagnosis::Unattributed,
            evidence: evidence::source_unavailable(failing_view, failing_side),
        };
    }
    if let Some(f) = cluster::diagnose(case) {
        return f;
    }
    if let Some(f) = kube_proxy(case) {
        return f;
    }
    if let Some(f) = redirect(case) {
        return f;
    }
    if let Some(f) = compound(case).filter(|_| case.direction == Direction::FalseDrain) {
        return f;
    }
    // Only flips that reproduce the other view's result explain the disagreement: a client
    // that gets 401 with the checker's headers does not explain the checker's 503.
    let flipped = case.telling_flips();
    let hints = hints(failing, case.direction);
    if let Some(a) = hints.iter().find(|a| flipped.contains(a)) {
        return from_flip(case, *a);
    }
    if case.direction == Direction::FalseDrain {
        if let Some(f) = protocol_by_code(case) {
            return f;
        }
    }
    if let Some(f) = status_matcher(case) {
        return f;
    }
    if let Some(f) = layer4_check(case) {
        return f;
    }
    // Headers that change a redirect are not credentials unless it points at a login page.
    let credentials = |a: &&Attribute| **a != Attribute::Headers || !redirect_not_to_login(failing);
    if let Some(a) = flipped.iter().find(credentials) {
        return from_flip(case, *a);
    }
    if case.attribution.is_none_or(|a| a.hybrids.is_empty()) {
        let differ = differences(case.client_view, case.checker_view);
        // Without a hybrid to show it, a redirect never suggests missing credentials.
        let guess = |a: &&Attribute| !(**a == Attribute::Headers && is_redirect(failing));
        if let Some(a) = hints.iter().filter(guess).find(|a| differ.contains(a)) {
            return Finding {
                diagnosis: attribute_diagnosis(case, *a),
                evidence: evidence::unconfirmed_hint(case, *a),
            };
        }
    }
    Finding { diagnosis: Diagnosis::Unattributed, evidence: evidence::unattributed(case) }
}

/// The compound cause of a disagreement: the smallest set of switches of the checker's request
/// that heals it when no single one does (a false drain: the checker passes with it; a
/// blackhole: the checker fails with it like the users). Its primary diagnosis is its first
/// attribute's.
fn compound(case: &Case<'_>) -> Option<Finding> {
    let c = compound_set(case)?;
    Some(Finding {
        diagnosis: attribute_diagnosis(case, compound_order(case, c)[0]),
        evidence: evidence::compound(case, c),
    })
}

/// The attributes of a compound cause, primary first: in a false drain as the search ordered
/// them; in a blackhole those whose single switch changed the check's result first (what the
/// single-switch rules would name), then the rest, each group in that order.
pub(super) fn compound_order(case: &Case<'_>, c: &super::hybrid::CombinedResult) -> Vec<Attribute> {
    let mut out = c.attributes.clone();
    if case.direction == Direction::Blackhole {
        let changed = |a: &Attribute| {
            case.attribution.and_then(|at| at.single(*a, super::hybrid::Side::Checker)).is_some_and(|h| {
                (h.ok, h.error, h.status) != (case.checker.ok, case.checker.error, case.checker.status)
            })
        };
        out.sort_by_key(|a| !changed(a));
    }
    out
}

/// The healing combination of a disagreement, when the compound-cause search found one.
fn compound_set<'a>(case: &Case<'a>) -> Option<&'a super::hybrid::CombinedResult> {
    case.attribution?.compound().filter(|c| c.attributes.len() > 1)
}

/// The causes of a mismatch diagnosed as `finding`, primary first: one per attribute of a
/// compound cause (each evidence saying all must be fixed), one for any other diagnosis, none
/// when it is `unattributed`.
pub fn causes(case: &Case<'_>, finding: &Finding) -> Vec<Cause> {
    if let Some(c) = compound_set(case) {
        let mut order = compound_order(case, c);
        // The cause the diagnosis names first.
        order.sort_by_key(|a| attribute_diagnosis(case, *a) != finding.diagnosis);
        return order
            .iter()
            .map(|a| Cause {
                diagnosis: attribute_diagnosis(case, *a),
                attributes: vec![*a],
                evidence: evidence::compound_part(case, c, *a),
            })
            .collect();
    }
    if finding.diagnosis == Diagnosis::Unattributed {
        return Vec::new();
    }
    let mut attributes: Vec<Attribute> = case
        .telling_flips()
        .into_iter()
        .filter(|a| attribute_diagnosis(case, *a) == finding.diagnosis)
        .collect();
    if attributes.is_empty() && finding.diagnosis == Diagnosis::StatusMatcherMismatch {
        attributes.push(Attribute::Matcher);
    }
    vec![Cause { diagnosis: finding.diagnosis, attributes, evidence: finding.evidence.clone() }]
}

/// The attribute a failure most likely comes from, in order of likelihood.
fn hints(o: &Outcome, direction: Direction) -> &'static [Attribute] {
    use Attribute::*;
    if o.phase == Some(Phase::Proxy) {
        return &[ProxyProtocol];
    }
    match o.error {
        Some(ErrorCode::HttpTlsRequired | ErrorCode::TlsPlaintextPeer) => &[Tls],
        Some(ErrorCode::HttpMalformed | ErrorCode::HttpReset | ErrorCode::ConnectReset) => {
            &[ProxyProtocol, Tls, HttpVersion]
        }
        Some(ErrorCode::ConnectTimeout) => &[Source, Address],
        Some(ErrorCode::ConnectRefused | ErrorCode::ConnectUnreachable) => &[Address, Source],
        Some(ErrorCode::TlsCertNameMismatch | ErrorCode::TlsHandshakeFailure | ErrorCode::TlsAlert) => {
            &[Sni, Tls, Verify]
        }
        Some(ErrorCode::TlsCertUntrusted | ErrorCode::TlsCertExpired | ErrorCode::TlsCertNotYetValid) => {
            &[Verify, Sni]
        }
        Some(ErrorCode::HttpStatus) => match (o.status, direction) {
            (Some(401 | 403 | 407), _) => &[Headers],
            // Headers only when the redirect points at a login page (`redirect_not_to_login`).
            (Some(300..=399), _) if o.location.as_deref().is_some_and(looks_like_login) => {
                &[Headers, UserAgent]
            }
            (Some(300..=399), _) => &[UserAgent],
            (Some(404 | 421), _) => &[Host, Path],
            // A listener without PROXY protocol reads the header as a broken request line.
            (Some(400), _) if o.request.proxy_protocol.is_some() => &[ProxyProtocol, Host],
            (Some(400), _) => &[Host],
            (Some(405 | 501), _) => &[Method],
            // 505 HTTP Version Not Supported; 426 Upgrade Required (Envoy refusing HTTP/1.0).
            (Some(426 | 505), _) => &[HttpVersion],
            // A 5xx for users behind a passing check: the check looks elsewhere. A 5xx for the
            // checker while users are fine: it lands on a default vhost.
            (Some(500..=599), Direction::Blackhole) => &[Path, Host, Address],
            (Some(500..=599), Direction::FalseDrain) => &[Host, Path, Address],
            _ => &[],
        },
        Some(ErrorCode::BodyMismatch) => &[Path, Host],
        Some(ErrorCode::GrpcNotServing | ErrorCode::GrpcUnimplemented | ErrorCode::GrpcStatus) => {
            &[Host, Tls]
        }
        _ => &[],
    }
}

/// What a flip of `attribute` means.
fn attribute_diagnosis(case: &Case<'_>, attribute: Attribute) -> Diagnosis {
    match attribute {
        Attribute::Tls | Attribute::Method => Diagnosis::CheckerProtocolMismatch,
        Attribute::ProxyProtocol => Diagnosis::ProxyProtocolMismatch,
        Attribute::Source => Diagnosis::CheckerSourceBlocked,
        Attribute::Sni => Diagnosis::SniMismatch,
        Attribute::Verify => verify_diagnosis(case),
        Attribute::Host => Diagnosis::HostRouteMismatch,
        Attribute::Path => Diagnosis::ShallowHealthPath,
        Attribute::Headers => Diagnosis::AuthRequired,
        Attribute::UserAgent => Diagnosis::UserAgentDependent,
        Attribute::HttpVersion => Diagnosis::HttpVersionDependent,
        Attribute::Matcher => Diagnosis::StatusMatcherMismatch,
        Attribute::Address => Diagnosis::NodePortVsProxy,
    }
}

/// What a `verify` flip means. Verification only changes the result through the certificate:
/// when the failing side rejected it (expired, not yet valid, untrusted, not for the name), the
/// certificate is what is wrong — the default one when the same certificate comes back without
/// SNI or for another name and it does not cover the name ([`default_certificate`]), else the
/// certificate itself ([`Diagnosis::CertificateRejected`]). SNI is not the cause: switching it is
/// a hybrid of its own, and `sni_mismatch` is kept for when that one flips. Any other failure
/// (a handshake failure) is the checker's protocol.
fn verify_diagnosis(case: &Case<'_>) -> Diagnosis {
    let (failing, _, _) = case.failing();
    if !certificate_rejection(failing) {
        return Diagnosis::CheckerProtocolMismatch;
    }
    if default_certificate(case).is_some() {
        Diagnosis::DefaultCertificateServed
    } else {
        Diagnosis::CertificateRejected
    }
}

/// Whether `o` failed because its verification rejected the certificate.
fn certificate_rejection(o: &Outcome) -> bool {
    matches!(
        o.error,
        Some(
            ErrorCode::TlsCertExpired
                | ErrorCode::TlsCertNotYetValid
                | ErrorCode::TlsCertUntrusted
                | ErrorCode::TlsCertNameMismatch
        )
    )
}

/// Another handshake that got the very certificate the failing side was served: its outcome and
/// the SNI it sent (`None`: no SNI). Only when that certificate does not cover the name the
/// failing side verified: then the server serves the same certificate whatever the name, its
/// default one. Looked for in the attribution's SNI hybrids (the same request with the other
/// view's SNI), then in the passing side's own outcome, when it sent another SNI.
pub(super) fn default_certificate<'a>(case: &Case<'a>) -> Option<(&'a Outcome, Option<String>)> {
    let (failing, failing_view, _) = case.failing();
    let tls = failing.tls.as_ref()?;
    let fingerprint = tls.cert_sha256.as_deref()?;
    let sni = effective_sni(failing_view);
    if covers(&tls.cert_sans, &verified_name(failing_view)) {
        return None;
    }
    let same = |o: &Outcome| o.tls.as_ref().and_then(|t| t.cert_sha256.as_deref()) == Some(fingerprint);
    let hybrids = case.attribution.into_iter().flat_map(|a| a.hybrids.iter());
    let from_hybrid = hybrids
        .filter(|h| h.attribute == Attribute::Sni)
        .filter_map(|h| Some((h.outcome.as_ref()?, effective_sni(&h.hybrid))))
        .find(|(o, other)| *other != sni && same(o));
    let (passing, passing_view, _) = case.passing();
    let passing_sni = effective_sni(passing_view);
    from_hybrid.or_else(|| {
        (passing_view.scheme.uses_tls() && passing_sni != sni && same(passing))
            .then_some((passing, passing_sni))
    })
}

/// The name a view's certificate is verified against: its SNI, else its URL host.
pub(super) fn verified_name(v: &View) -> String {
    effective_sni(v).unwrap_or_else(|| match &v.url_endpoint.host {
        crate::config::Host::Name(name) => name.clone(),
        crate::config::Host::Ip(ip) => ip.to_string(),
    })
}

/// Whether a certificate with `sans` is valid for `name`: an exact name (case-insensitive), a
/// `*.` wildcard for one leftmost label, or the same IP address.
pub(super) fn covers(sans: &[String], name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    sans.iter().any(|san| {
        let san = san.trim_end_matches('.').to_ascii_lowercase();
        match san.strip_prefix("*.") {
            Some(suffix) => {
                name.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix)
            }
            None => san == name,
        }
    })
}

/// The diagnosis a flip of `attribute` confirms.
fn from_flip(case: &Case<'_>, attribute: Attribute) -> Finding {
    let diagnosis = attribute_diagnosis(case, attribute);
    Finding { diagnosis, evidence: evidence::flip(case, attribute, diagnosis) }
}

/// Whether `o` failed the way `reference` did: the same error (and status), a reset before or
/// after the request counting as one.
fn same_failure(o: &Outcome, reference: &Outcome) -> bool {
    let reset = |e: Option<ErrorCode>| matches!(e, Some(ErrorCode::ConnectReset | ErrorCode::HttpReset));
    !o.ok
        && !reference.ok
        && (o.error == reference.error || (reset(o.error) && reset(reference.error)))
        && (o.status == reference.status || o.status.is_none() || reference.status.is_none())
}

/// kube-proxy's `localEndpoints` against the client's result: none while clients are served
/// (the LB drains a node that works), or some while the node's traffic is not served.
fn kube_proxy(case: &Case<'_>) -> Option<Finding> {
    let k = case.checker;
    // A cloud checker probing healthCheckNodePort reads kube-proxy's answer too: its count says
    // why it failed.
    let is_kube_proxy = case.checker_view.expect.kube_proxy_endpoints
        || case.checker_view.profile == Some(ProfileName::KubeProxy)
        || k.local_endpoints.is_some();
    if !is_kube_proxy {
        return None;
    }
    let evidence = match case.direction {
        Direction::FalseDrain
            if k.error == Some(ErrorCode::NoLocalEndpoints) || k.local_endpoints == Some(0) =>
        {
            evidence::no_local_endpoints(case)
        }
        // kube-proxy says this node has ready endpoints, yet traffic to it is not served: the
        // LB keeps sending users to it (ETP Local lag, a node identity mismatch).
        Direction::Blackhole if k.ok && node_not_serving(case.client) => {
            evidence::endpoints_not_serving(case)
        }
        _ => return None,
    };
    Some(Finding { diagnosis: Diagnosis::NoLocalEndpoints, evidence })
}

/// A failure that means nothing serves behind the address (as opposed to a TLS or routing
/// problem, which kube-proxy's count cannot see).
fn node_not_serving(o: &Outcome) -> bool {
    matches!(o.phase, Some(Phase::Connect))
        || matches!(
            o.error,
            Some(ErrorCode::HttpReset | ErrorCode::HttpTimeout | ErrorCode::NoLocalEndpoints)
        )
        || (o.error == Some(ErrorCode::HttpStatus) && matches!(o.status, Some(502..=504)))
}

/// The checker's protocol error on its own: plain HTTP to a TLS listener, or TLS to a plain one.
fn protocol_by_code(case: &Case<'_>) -> Option<Finding> {
    let listener_wants_tls = match case.checker.error? {
        ErrorCode::HttpTlsRequired => true,
        ErrorCode::TlsPlaintextPeer => false,
        _ => return None,
    };
    Some(Finding {
        diagnosis: Diagnosis::CheckerProtocolMismatch,
        evidence: evidence::protocol_by_code(case, listener_wants_tls),
    })
}

/// A status the failing view's matcher rejects and the passing view's accepts.
fn status_matcher(case: &Case<'_>) -> Option<Finding> {
    let (f, _, _) = case.failing();
    let (_, pv, _) = case.passing();
    if f.error != Some(ErrorCode::HttpStatus) {
        return None;
    }
    let status = f.status?;
    if !pv.expect.status_ok(status) {
        return None;
    }
    Some(Finding {
        diagnosis: Diagnosis::StatusMatcherMismatch,
        evidence: evidence::status_matcher(case, status),
    })
}

/// Whether `o` was answered with a redirect (a 3xx status).
fn is_redirect(o: &Outcome) -> bool {
    o.status.is_some_and(|s| (300..=399).contains(&s))
}

/// A redirect whose Location does not look like a login page (or is unknown).
fn redirect_not_to_login(o: &Outcome) -> bool {
    is_redirect(o) && !o.location.as_deref().is_some_and(looks_like_login)
}

/// Words in a Location's path or query that say it leads to a login page.
const LOGIN_WORDS: &[&str] = &["login", "signin", "sign-in", "sign_in", "logon", "auth", "sso"];

/// Whether a Location's path or query (not its host) mentions a login (`/login?next=/`,
/// `/oauth2/start`, `/sso/...`, `/signin`). `auth` covers `oauth` and `authorize`.
pub(super) fn looks_like_login(location: &str) -> bool {
    let lower = location_parts(location).rest.to_ascii_lowercase();
    LOGIN_WORDS.iter().any(|w| lower.contains(w))
}

/// A redirect on either side of the disagreement: the check answered with a 3xx its matcher
/// rejects (false drain), or passing on one while users fail at HTTP behind it (blackhole).
fn redirect(case: &Case<'_>) -> Option<Finding> {
    let k = case.checker;
    match case.direction {
        Direction::FalseDrain => {
            if k.error != Some(ErrorCode::HttpStatus) || !is_redirect(k) {
                return None;
            }
            let flipped = case.telling_flips();
            // An app that redirects only the checker's User-Agent (field failure 18).
            if flipped.contains(&Attribute::UserAgent) {
                return Some(from_flip(case, Attribute::UserAgent));
            }
            // A redirect to a login page that the client's credentials avoid.
            if flipped.contains(&Attribute::Headers) && !redirect_not_to_login(k) {
                return Some(from_flip(case, Attribute::Headers));
            }
            Some(Finding {
                diagnosis: Diagnosis::CheckerRedirected,
                evidence: evidence::checker_redirected(case),
            })
        }
        Direction::Blackhole => {
            let c = case.client;
            // Users failing before HTTP (DNS, connect, TLS) fail for a reason of their own; users
            // whose matcher rejects the redirect itself see the same answer judged differently
            // (`status_matcher_mismatch`).
            let behind = matches!(c.phase, Some(Phase::Http | Phase::Grpc | Phase::Expect))
                && c.error != Some(ErrorCode::HttpTlsRequired)
                && !(c.error == Some(ErrorCode::HttpStatus) && is_redirect(c));
            if !k.ok || !is_redirect(k) || !behind {
                return None;
            }
            Some(Finding {
                diagnosis: Diagnosis::RedirectMasksOutage,
                evidence: evidence::redirect_masks_outage(case),
            })
        }
    }
}

/// A TCP or TLS check passing while clients fail at the HTTP (gRPC, matcher) layer.
fn layer4_check(case: &Case<'_>) -> Option<Finding> {
    let k = case.checker_view;
    if case.direction != Direction::Blackhole || k.scheme.uses_http() || k.scheme.uses_grpc() {
        return None;
    }
    let phase = case.client.phase.filter(|p| matches!(p, Phase::Http | Phase::Grpc | Phase::Expect))?;
    Some(Finding { diagnosis: Diagnosis::ShallowHealthPath, evidence: evidence::layer4_check(case, phase) })
}
