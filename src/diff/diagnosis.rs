//! Diagnosis: the name of a field failure (DESIGN §6), decided from the attributes whose switch
//! flipped a result plus the outcomes' error codes, status and evidence, with a one-line
//! `evidence` string an on-call engineer can act on. Also the findings that need no traffic: the
//! `allow_sources` audit.
//!
//! Order of decision, most conclusive first:
//! 1. the client's DNS answered the wrong address (`dns_wrong_address`);
//! 2. parallax could not bind the checker's source here (`unattributed`, says so);
//! 3. the kube-proxy view's `localEndpoints` (`no_local_endpoints`);
//! 4. a flipped attribute that the failing outcome's error points at (e.g. `tls` after
//!    `http_tls_required`, `headers` after a 401, `source` after `connect_timeout`);
//! 5. the checker's protocol errors (`http_tls_required`, `tls_plaintext_peer`) on their own;
//! 6. the same response judged differently by the two matchers (`status_matcher_mismatch`);
//! 7. a TCP/TLS-only check passing while clients fail at HTTP (`shallow_health_path`);
//! 8. any other flipped attribute, most likely first;
//! 9. without attribution: the failing error's likely attribute among those that differ,
//!    marked as not confirmed;
//! 10. otherwise `unattributed`, listing every hybrid tried.
//!
//! Evidence never contains header values (they may be secrets): only header names.

use std::fmt;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;

use super::attribution::{
    differences, display_path, effective_host, effective_sni, Attribute, Attribution, HybridResult, Side,
};
use super::Direction;
use crate::config::profiles;
use crate::config::{ProfileName, ProxyVersion, Source, Target, View};
use crate::probe::{ErrorCode, Outcome, Phase};

/// The closed set of diagnoses (DESIGN §6). Stable snake_case names.
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
    /// The Host header selects a different (default) backend.
    HostRouteMismatch,
    /// A PROXY header is sent to a listener that does not expect one, or missing where required.
    ProxyProtocolMismatch,
    /// The same response is judged differently by the two views' matchers (204, 3xx).
    StatusMatcherMismatch,
    /// The result depends on the User-Agent.
    UserAgentDependent,
    /// The client's DNS does not point at the expected load balancer.
    DnsWrongAddress,
    /// No single switch explains the disagreement.
    Unattributed,
}

impl Diagnosis {
    /// Every diagnosis, in DESIGN §6 order.
    pub const ALL: [Diagnosis; 13] = [
        Diagnosis::ShallowHealthPath,
        Diagnosis::AuthRequired,
        Diagnosis::CheckerProtocolMismatch,
        Diagnosis::CheckerSourceBlocked,
        Diagnosis::NoLocalEndpoints,
        Diagnosis::NodePortVsProxy,
        Diagnosis::SniMismatch,
        Diagnosis::HostRouteMismatch,
        Diagnosis::ProxyProtocolMismatch,
        Diagnosis::StatusMatcherMismatch,
        Diagnosis::UserAgentDependent,
        Diagnosis::DnsWrongAddress,
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
            Diagnosis::HostRouteMismatch => "host_route_mismatch",
            Diagnosis::ProxyProtocolMismatch => "proxy_protocol_mismatch",
            Diagnosis::StatusMatcherMismatch => "status_matcher_mismatch",
            Diagnosis::UserAgentDependent => "user_agent_dependent",
            Diagnosis::DnsWrongAddress => "dns_wrong_address",
            Diagnosis::Unattributed => "unattributed",
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

    /// "checker got http_tls_required on 10.0.0.5:30080" (false drain) or "client got 503 on
    /// 203.0.113.10:443 while the checker passes on 10.0.0.5:30080" (blackhole).
    fn situation(&self) -> String {
        self.situation_with(None)
    }

    /// [`Case::situation`], naming the checker's value of `attribute` after its address.
    fn situation_with(&self, attribute: Option<Attribute>) -> String {
        let (f, fv, side) = self.failing();
        let with = attribute.map(|a| format!(" with {}", value(a, self.checker_view))).unwrap_or_default();
        match self.direction {
            Direction::FalseDrain => format!("{side} got {} on {}{with}", result(f), address(f, fv)),
            Direction::Blackhole => format!(
                "{side} got {} on {} while the checker passes on {}{with}",
                result(f),
                address(f, fv),
                address(self.checker, self.checker_view)
            ),
        }
    }
}

/// Names the failure of one disagreeing pair.
pub fn diagnose(case: &Case<'_>) -> Finding {
    let (failing, failing_view, failing_side) = case.failing();

    if case.direction == Direction::Blackhole && case.client.error == Some(ErrorCode::DnsUnexpectedAddress) {
        return dns_wrong_address(case);
    }
    if failing.error == Some(ErrorCode::SourceUnavailable) {
        let source = failing_view.source.map_or_else(|| "?".to_owned(), |s| s.requested.to_string());
        return Finding {
            diagnosis: Diagnosis::Unattributed,
            evidence: format!(
                "{failing_side} could not bind its source {source} on this host (source_unavailable): \
                 parallax cannot emulate it here; use a local source or freebind"
            ),
        };
    }
    if let Some(f) = kube_proxy(case) {
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
    if let Some(a) = flipped.first() {
        return from_flip(case, *a);
    }
    if case.attribution.is_none_or(|a| a.hybrids.is_empty()) {
        let differ = differences(case.client_view, case.checker_view);
        if let Some(a) = hints.iter().find(|a| differ.contains(a)) {
            return Finding {
                diagnosis: attribute_diagnosis(*a, failing),
                evidence: format!(
                    "{}; the views differ in {a} (checker: {}; client: {}), \
                     not confirmed: no hybrid probe ran",
                    case.situation(),
                    value(*a, case.checker_view),
                    value(*a, case.client_view)
                ),
            };
        }
    }
    unattributed(case)
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
            &[ProxyProtocol, Tls]
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
            (Some(300..=399), _) => &[Headers, UserAgent],
            (Some(404 | 421), _) => &[Host, Path],
            // A listener without PROXY protocol reads the header as a broken request line.
            (Some(400), _) if o.request.proxy_protocol.is_some() => &[ProxyProtocol, Host],
            (Some(400), _) => &[Host],
            (Some(405 | 501), _) => &[Method],
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
fn attribute_diagnosis(attribute: Attribute, failing: &Outcome) -> Diagnosis {
    match attribute {
        Attribute::Tls | Attribute::Method => Diagnosis::CheckerProtocolMismatch,
        Attribute::ProxyProtocol => Diagnosis::ProxyProtocolMismatch,
        Attribute::Source => Diagnosis::CheckerSourceBlocked,
        Attribute::Sni => Diagnosis::SniMismatch,
        // Verification only changes the result through the certificate. A wrong name or an
        // untrusted chain means a different certificate is served (another vhost's, or the
        // controller's default one after a missing TLS secret); anything else (an expired one)
        // is the checker not checking.
        Attribute::Verify
            if matches!(
                failing.error,
                Some(ErrorCode::TlsCertNameMismatch | ErrorCode::TlsCertUntrusted)
            ) =>
        {
            Diagnosis::SniMismatch
        }
        Attribute::Verify => Diagnosis::CheckerProtocolMismatch,
        Attribute::Host => Diagnosis::HostRouteMismatch,
        Attribute::Path => Diagnosis::ShallowHealthPath,
        Attribute::Headers => Diagnosis::AuthRequired,
        Attribute::UserAgent => Diagnosis::UserAgentDependent,
        Attribute::Address => Diagnosis::NodePortVsProxy,
    }
}

fn from_flip(case: &Case<'_>, attribute: Attribute) -> Finding {
    let (failing, _, failing_side) = case.failing();
    let (_, _, passing_side) = case.passing();
    let diagnosis = attribute_diagnosis(attribute, failing);
    let Some(h) = case.telling_flip(attribute) else {
        // Callers only pass flipped attributes; stay truthful if that ever changes.
        return Finding {
            diagnosis,
            evidence: format!("{}; switching {attribute} flips it", case.situation()),
        };
    };
    let switch = switched_value(attribute, h);
    // Name the checker's own value too, unless the address or error already says it.
    let from = match attribute {
        Attribute::Tls | Attribute::Address => None,
        _ => Some(attribute),
    };
    let evidence = match (case.direction, h.switched) {
        (Direction::FalseDrain, Side::Checker) => {
            format!("{}; with {switch} it succeeds", case.situation_with(from))
        }
        (Direction::FalseDrain, Side::Client) => format!(
            "{} while the client succeeds; the client with {switch} as the checker sends it fails too ({})",
            case.situation(),
            hybrid_result(h)
        ),
        (Direction::Blackhole, Side::Checker) => {
            format!(
                "{}; with {switch} the checker fails too ({})",
                case.situation_with(from),
                hybrid_result(h)
            )
        }
        (Direction::Blackhole, Side::Client) => {
            format!("{}; with {switch} as the checker sends it, the client succeeds", case.situation())
        }
    };
    // The certificate is what an SNI or verification flip is about: say which one was served.
    let certificate = match (attribute, failing.tls.as_ref().and_then(certificate_names)) {
        (Attribute::Sni | Attribute::Verify, Some(names)) => {
            format!("; the {failing_side} was served the certificate for {names}")
        }
        _ => String::new(),
    };
    // Several attributes each break the passing view while none alone fixes the failing one:
    // the failing view needs all of them changed (e.g. both the Host and the path of a route).
    let fixes = case
        .attribution
        .is_some_and(|a| a.hybrids.iter().any(|h| h.flipped && h.switched == case.fixing_side()));
    let breaking = case.telling_flips();
    let together = if !fixes && breaking.len() > 1 {
        format!(
            "; no single switch fixes the {failing_side}: it needs the {passing_side}'s {} together",
            and_join(breaking.iter())
        )
    } else {
        String::new()
    };
    let advice = advice(case, diagnosis);
    Finding { diagnosis, evidence: format!("{evidence}{certificate}{together}{advice}") }
}

/// What an on-call engineer can do about a diagnosis found by a flip, phrased to follow a `;`.
fn advice(case: &Case<'_>, diagnosis: Diagnosis) -> String {
    let blackhole = case.direction == Direction::Blackhole;
    match diagnosis {
        Diagnosis::ShallowHealthPath if blackhole => {
            "; the health path does not reflect the user route: make it check what the route depends on".to_owned()
        }
        Diagnosis::ShallowHealthPath => "; the health path fails while the user route is served: fix the \
            health endpoint or check a path that reflects the route"
            .to_owned(),
        Diagnosis::AuthRequired => "; the health path needs credentials the checker does not send: exempt it \
            from authentication or check an unauthenticated path"
            .to_owned(),
        Diagnosis::CheckerSourceBlocked => {
            let source = case.checker_view.source.map_or_else(|| "addresses".to_owned(), |s| s.addr.to_string());
            format!(
                "; allow the checker's source {source} through the firewall in front of {}",
                address(case.checker, case.checker_view)
            )
        }
        Diagnosis::ProxyProtocolMismatch if case.checker_view.proxy_protocol.is_some() => {
            "; the listener does not expect the PROXY header the checker sends: turn PROXY protocol off \
             for health checks, or on at the listener"
                .to_owned()
        }
        Diagnosis::ProxyProtocolMismatch => "; the listener requires a PROXY header the checker does not \
            send: send one with health checks, or check a port without PROXY protocol"
            .to_owned(),
        Diagnosis::HostRouteMismatch if blackhole => {
            "; the two Host values are routed to different backends: the check does not reach the users' vhost"
                .to_owned()
        }
        Diagnosis::HostRouteMismatch => "; the two Host values are routed to different backends: route the \
            checker's Host to the app, or set the check's Host"
            .to_owned(),
        Diagnosis::SniMismatch if blackhole => "; users are served a certificate that is not valid for their \
            name (a vhost picked by SNI, or the default certificate when the TLS secret is missing) and the \
            check does not see it: fix the certificate for the name, and make the check send SNI and verify"
            .to_owned(),
        Diagnosis::SniMismatch => "; the server picks its certificate by SNI: send SNI with the check, or make \
            the default certificate valid for the checked name"
            .to_owned(),
        Diagnosis::UserAgentDependent => {
            "; the app answers the checker's User-Agent differently: exempt it from User-Agent rules".to_owned()
        }
        Diagnosis::NodePortVsProxy if blackhole => {
            "; the check bypasses the path users take: check through the address they reach".to_owned()
        }
        Diagnosis::NodePortVsProxy => {
            "; the address the checker probes fails while the one users reach serves".to_owned()
        }
        _ => String::new(),
    }
}

/// The switched value of a flipped hybrid, phrased to follow "with"; a source switched to the
/// default names the address the kernel picked.
fn switched_value(attribute: Attribute, h: &HybridResult) -> String {
    match (attribute, h.hybrid.source, h.outcome.as_ref().and_then(|o| o.local)) {
        (Attribute::Source, None, Some(local)) => format!("the default source address ({})", local.ip()),
        _ => value(attribute, &h.hybrid),
    }
}

/// "shop.example.com" or "a, b": the names a certificate was issued for (its SANs, else its
/// subject).
fn certificate_names(tls: &crate::probe::TlsSummary) -> Option<String> {
    if !tls.cert_sans.is_empty() {
        Some(join(tls.cert_sans.iter()))
    } else {
        tls.cert_subject.clone()
    }
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

/// "a", "a and b", "a, b and c".
fn and_join<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|i| i.to_string()).collect();
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

fn dns_wrong_address(case: &Case<'_>) -> Finding {
    let name = case.client_view.url_endpoint.host.to_string();
    let answered = if case.client.resolved.is_empty() {
        "other addresses".to_owned()
    } else {
        join(case.client.resolved.iter())
    };
    let expected = join(case.client_view.expect_addresses.iter());
    Finding {
        diagnosis: Diagnosis::DnsWrongAddress,
        evidence: format!(
            "client DNS for {name} answered {answered}, expected {expected}: the name does not point at \
             the load balancer the checker {} passes on",
            case.checker_view.name
        ),
    }
}

fn kube_proxy(case: &Case<'_>) -> Option<Finding> {
    let k = case.checker;
    let is_kube_proxy = case.checker_view.expect.kube_proxy_endpoints
        || case.checker_view.profile == Some(ProfileName::KubeProxy);
    if !is_kube_proxy {
        return None;
    }
    let where_ = address(k, case.checker_view);
    match case.direction {
        Direction::FalseDrain
            if k.error == Some(ErrorCode::NoLocalEndpoints) || k.local_endpoints == Some(0) =>
        {
            Some(Finding {
                diagnosis: Diagnosis::NoLocalEndpoints,
                evidence: format!(
                    "kube-proxy on {where_} reports localEndpoints=0 ({}) while clients are served: \
                     this node has no ready local endpoint, so the LB drains it",
                    k.status.map_or_else(|| "no_local_endpoints".to_owned(), |s| s.to_string())
                ),
            })
        }
        // kube-proxy says this node has ready endpoints, yet traffic to it is not served: the
        // LB keeps sending users to it (ETP Local lag, a node identity mismatch).
        Direction::Blackhole if k.ok && node_not_serving(case.client) => {
            let count = k
                .local_endpoints
                .map_or_else(|| "ready endpoints".to_owned(), |n| format!("localEndpoints={n}"));
            Some(Finding {
                diagnosis: Diagnosis::NoLocalEndpoints,
                evidence: format!(
                    "kube-proxy on {where_} reports {count}, so the LB keeps this node, but the client got {} on {}",
                    result(case.client),
                    address(case.client, case.client_view)
                ),
            })
        }
        _ => None,
    }
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

fn protocol_by_code(case: &Case<'_>) -> Option<Finding> {
    let k = case.checker;
    let why = match k.error? {
        ErrorCode::HttpTlsRequired => "it sends plain HTTP to a TLS listener; check with TLS",
        ErrorCode::TlsPlaintextPeer => "it speaks TLS to a plain-HTTP listener; check without TLS",
        _ => return None,
    };
    let tried = case
        .attribution
        .and_then(|a| a.hybrids.iter().find(|h| h.attribute == Attribute::Tls && h.switched == Side::Checker))
        .map(|h| format!(" (with tls switched it still fails: {})", hybrid_result(h)))
        .unwrap_or_default();
    Some(Finding {
        diagnosis: Diagnosis::CheckerProtocolMismatch,
        evidence: format!("{}: {why}{tried}", case.situation()),
    })
}

fn status_matcher(case: &Case<'_>) -> Option<Finding> {
    let (f, fv, fside) = case.failing();
    let (_, pv, pside) = case.passing();
    if f.error != Some(ErrorCode::HttpStatus) {
        return None;
    }
    let status = f.status?;
    if !pv.expect.status_ok(status) {
        return None;
    }
    Some(Finding {
        diagnosis: Diagnosis::StatusMatcherMismatch,
        evidence: format!(
            "{fside} got {status} on {}, which its matcher ({}) rejects; the {pside}'s matcher ({}) accepts it; \
             make the route answer a status both accept",
            address(f, fv),
            ranges(fv),
            ranges(pv)
        ),
    })
}

fn layer4_check(case: &Case<'_>) -> Option<Finding> {
    let k = case.checker_view;
    let c = case.client;
    if case.direction != Direction::Blackhole || k.scheme.uses_http() || k.scheme.uses_grpc() {
        return None;
    }
    let phase = c.phase.filter(|p| matches!(p, Phase::Http | Phase::Grpc | Phase::Expect))?;
    Some(Finding {
        diagnosis: Diagnosis::ShallowHealthPath,
        evidence: format!(
            "the checker only completes a {} handshake on {} and passes; the client got {} at the {phase} layer \
             on {}: the check does not exercise HTTP",
            if k.scheme.uses_tls() { "TCP+TLS" } else { "TCP" },
            address(case.checker, k),
            result(c),
            address(c, case.client_view)
        ),
    })
}

fn unattributed(case: &Case<'_>) -> Finding {
    let why = match case.attribution {
        None => "no hybrid probes ran (attribution off or not due)".to_owned(),
        Some(a) if a.differences.is_empty() => {
            "the views differ in no attribute parallax can switch".to_owned()
        }
        Some(a) if a.hybrids.is_empty() => format!(
            "no hybrid probed: the cap allows none of the {} planned for {}",
            a.not_tried,
            join(a.differences.iter())
        ),
        Some(a) => {
            let tried: Vec<String> =
                a.hybrids.iter().map(|h| format!("{}: {}", h.view, hybrid_result(h))).collect();
            let more = if a.not_tried > 0 {
                format!("; {} more not tried (cap)", a.not_tried)
            } else {
                String::new()
            };
            let other = case.other_flips();
            if other.is_empty() {
                format!("no single switch flips it (tried {}{more})", tried.join(", "))
            } else {
                // A switch changed a result, but not into the other view's: a second problem,
                // not the explanation of this one.
                format!(
                    "no single switch explains it: switching {} changes a result, but not to the other view's \
                     (tried {}{more})",
                    and_join(other.iter()),
                    tried.join(", ")
                )
            }
        }
    };
    let (_, _, pside) = case.passing();
    let suffix = if case.direction == Direction::FalseDrain {
        format!(" while the {pside} succeeds")
    } else {
        String::new()
    };
    let unswitched = unswitched_differences(case.client_view, case.checker_view);
    let unswitched = if unswitched.is_empty() {
        String::new()
    } else {
        format!("; the views also differ in what parallax does not switch: {}", unswitched.join(", "))
    };
    Finding {
        diagnosis: Diagnosis::Unattributed,
        evidence: format!("{}{suffix}; {why}{unswitched}", case.situation()),
    }
}

/// How two views differ beyond the attributes hybrids switch (protocol details of a checker's
/// request): the likely place to look when no switch explains a disagreement.
fn unswitched_differences(client: &View, checker: &View) -> Vec<String> {
    let mut out = Vec::new();
    let both_http = client.scheme.uses_http() && checker.scheme.uses_http();
    if both_http {
        let (c, k) = (&client.http, &checker.http);
        let (cv, kv) = (http_version(client), http_version(checker));
        if cv != kv {
            out.push(format!("HTTP version (checker {kv}, client {cv})"));
        }
        if c.connection_close != k.connection_close {
            let who = if k.connection_close { "the checker" } else { "the client" };
            out.push(format!("Connection: close (only {who} sends it)"));
        }
        if c.title_case_headers != k.title_case_headers {
            let who = if k.title_case_headers { "the checker" } else { "the client" };
            out.push(format!("header name case (only {who} writes Title-Case)"));
        }
    }
    if client.scheme.uses_tls() && checker.scheme.uses_tls() && client.tls.alpn != checker.tls.alpn {
        let alpn = |v: &View| if v.tls.alpn.is_empty() { "none".to_owned() } else { v.tls.alpn.join(", ") };
        out.push(format!("ALPN (checker {}, client {})", alpn(checker), alpn(client)));
    }
    out
}

/// The HTTP version a view puts on the wire (`auto` is HTTP/1.1 without TLS: no h2 upgrade).
fn http_version(v: &View) -> &'static str {
    use crate::config::HttpVersion;
    match (v.http.version, v.scheme.uses_tls()) {
        (HttpVersion::Http10, _) => "HTTP/1.0",
        (HttpVersion::Http11, _) | (HttpVersion::Auto, false) => "HTTP/1.1",
        (HttpVersion::Auto, true) => "HTTP/2 or HTTP/1.1 by ALPN",
        (HttpVersion::Http2, _) => "HTTP/2",
    }
}

/// "503", "http_tls_required", "ok (200)": an outcome in a few characters.
fn result(o: &Outcome) -> String {
    match (o.ok, o.error, o.status) {
        (true, _, Some(s)) => format!("ok ({s})"),
        (true, _, None) => "ok".to_owned(),
        (false, Some(ErrorCode::HttpStatus), Some(s)) => s.to_string(),
        (false, Some(e), Some(s)) => format!("{e} ({s})"),
        (false, Some(e), None) => e.to_string(),
        (false, None, Some(s)) => format!("failure ({s})"),
        (false, None, None) => "a failure".to_owned(),
    }
}

fn hybrid_result(h: &HybridResult) -> String {
    match &h.outcome {
        Some(o) => result(o),
        None => "no outcome".to_owned(),
    }
}

/// Where an outcome went: the dialed address, or the view's endpoint when it got no further
/// than DNS.
fn address(o: &Outcome, v: &View) -> String {
    o.request.address.or(o.peer).map_or_else(|| v.dial_endpoint().to_string(), |a| a.to_string())
}

/// A view's value of `attribute`, phrased to follow "with": "tls on", "no SNI", "path /cart".
fn value(attribute: Attribute, v: &View) -> String {
    match attribute {
        Attribute::Address => format!("address {}", v.dial_endpoint()),
        Attribute::Source => match v.source {
            Some(s) => format!("source {}", s.addr),
            None => "the default source address".to_owned(),
        },
        Attribute::ProxyProtocol => match v.proxy_protocol {
            Some(p) => format!(
                "a PROXY {}{} header",
                match p.version {
                    ProxyVersion::V1 => "v1",
                    ProxyVersion::V2 => "v2",
                },
                if p.local { " LOCAL" } else { "" }
            ),
            None => "no PROXY header".to_owned(),
        },
        Attribute::Tls => if v.scheme.uses_tls() { "tls on" } else { "tls off" }.to_owned(),
        Attribute::Sni => match effective_sni(v) {
            Some(n) => format!("SNI {n}"),
            None => "no SNI".to_owned(),
        },
        Attribute::Verify => match (v.tls.verify, &v.tls.ca_file) {
            (true, Some(ca)) => format!("certificate verification on (CA {})", ca.display()),
            (true, None) => "certificate verification on".to_owned(),
            (false, _) => "certificate verification off".to_owned(),
        },
        Attribute::Host => match effective_host(v) {
            Some(h) => format!("Host {h}"),
            None => "no Host header".to_owned(),
        },
        Attribute::Path => format!("path {}", display_path(v)),
        Attribute::Method => format!("method {}", v.http.method),
        // Names only: values may be secrets.
        Attribute::Headers if v.http.headers.is_empty() => "no extra headers".to_owned(),
        Attribute::Headers => {
            format!("the headers [{}]", join(v.http.headers.iter().map(|(name, _)| name.as_str())))
        }
        Attribute::UserAgent => match &v.http.user_agent {
            Some(ua) => format!("User-Agent {ua}"),
            None => "no User-Agent".to_owned(),
        },
    }
}

fn ranges(v: &View) -> String {
    join(v.expect.status.iter().map(|r| {
        if r.start() == r.end() {
            r.start().to_string()
        } else {
            format!("{}-{}", r.start(), r.end())
        }
    }))
}

fn join<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// A checker whose source addresses the target's `allow_sources` does not cover: the LB's
/// firewall would drop its checks and drain every backend, whatever the probes from here show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceGap {
    /// The checker view.
    pub checker: Arc<str>,
    /// Each uncovered range and where it comes from.
    pub uncovered: Vec<(IpNet, SourceOrigin)>,
}

/// Where an audited source range comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceOrigin {
    /// The view's `source`.
    View,
    /// The ranges the profile's real checker is documented to probe from (CHECKERS.md §1).
    Profile(ProfileName),
}

/// Audits every checker of `target` against its `allow_sources` (no traffic): a checker's own
/// `source` and its profile's documented source ranges must each lie inside the allowlist
/// (adjacent allowed ranges count together). Nothing is audited when `allow_sources` is empty.
pub fn audit_allow_sources(target: &Target) -> Vec<SourceGap> {
    if target.allow_sources.is_empty() {
        return Vec::new();
    }
    let allowed = IpNet::aggregate(&target.allow_sources);
    let covered = |net: &IpNet| allowed.iter().any(|a| a.contains(net));
    let mut gaps = Vec::new();
    for checker in &target.checkers {
        let mut ranges: Vec<(IpNet, SourceOrigin)> = Vec::new();
        if let Some(s) = checker.source {
            let net = match s.requested {
                Source::Addr(ip) => IpNet::from(ip),
                Source::Net(n) => n,
            };
            ranges.push((net, SourceOrigin::View));
        }
        if let Some(p) = checker.profile {
            // The table's ranges are tested to parse (profiles tests); skip rather than guess.
            for r in profiles::defaults(p).source_ranges {
                if let Ok(net) = r.parse::<IpNet>() {
                    ranges.push((net, SourceOrigin::Profile(p)));
                }
            }
        }
        let uncovered: Vec<_> = ranges.into_iter().filter(|(net, _)| !covered(net)).collect();
        if !uncovered.is_empty() {
            gaps.push(SourceGap { checker: checker.name.clone(), uncovered });
        }
    }
    gaps
}

impl SourceGap {
    /// "checker gcp probes from 35.191.0.0/16 (gcp's documented ranges), not covered by
    /// allow_sources [198.51.100.0/24]: ...".
    pub fn finding(&self, target: &Target) -> Finding {
        let froms = join(self.uncovered.iter().map(|(net, origin)| match origin {
            SourceOrigin::View => format!("{net} (its source)"),
            SourceOrigin::Profile(p) => format!("{net} ({p} documented range)"),
        }));
        Finding {
            diagnosis: Diagnosis::CheckerSourceBlocked,
            evidence: format!(
                "checker {} probes from {froms}, not covered by allow_sources [{}]: the LB's health checks \
                 are dropped and the backends drained; add these ranges to the allowlist",
                self.checker,
                join(target.allow_sources.iter())
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HostHeader, ProxyHeader, SourceBind};
    use crate::diff::attribution::{plan_hybrids, Hybrid};
    use crate::diff::testkit::{at, failed, header, ok_outcome, outcome_for, target, view_url};

    /// The client of every case: `https://shop.example.com/cart`, token in `authorization`.
    fn client() -> View {
        let mut v = view_url("shop", "client", "https://shop.example.com/cart");
        v.http.headers = vec![header("authorization", "Bearer s3cret-token", true)];
        v
    }

    fn nlb() -> View {
        let mut v = view_url("shop", "nlb", "http://10.0.0.5:30080/healthz");
        v.profile = Some(ProfileName::AwsNlb);
        v.http.host = HostHeader::DialedAddress;
        v.http.user_agent = Some("ELB-HealthChecker/2.0".into());
        v
    }

    /// Runs the pure planner and a backend model over the pair, as attribution would.
    fn attribution(
        client: &View,
        checker: &View,
        co: &Outcome,
        ko: &Outcome,
        model: &dyn Fn(&View) -> Outcome,
    ) -> Attribution {
        let client = crate::diff::attribution::pin(client, co);
        let checker = crate::diff::attribution::pin(checker, ko);
        let plan: Vec<Hybrid> = plan_hybrids(&client, &checker, 100);
        let mut hybrids: Vec<HybridResult> = plan
            .into_iter()
            .map(|h| {
                let o = model(&h.view);
                let base = if h.switched == Side::Checker { ko.ok } else { co.ok };
                HybridResult {
                    view: h.view.name.clone(),
                    attribute: h.attribute,
                    switched: h.switched,
                    ok: o.ok,
                    error: o.error,
                    status: o.status,
                    flipped: o.ok != base,
                    outcome: Some(o),
                    hybrid: h.view,
                }
            })
            .collect();
        crate::diff::attribution::explain_address_by_tls(&mut hybrids, &client, &checker);
        Attribution { differences: differences(&client, &checker), hybrids, not_tried: 0 }
    }

    struct Scenario {
        name: &'static str,
        client: View,
        checker: View,
        /// The server: what any view gets.
        model: Box<dyn Fn(&View) -> Outcome>,
        direction: Direction,
        diagnosis: Diagnosis,
        flipped: Vec<Attribute>,
        /// Substrings the evidence must contain.
        evidence: Vec<&'static str>,
    }

    fn ok_if(cond: bool, v: &View, error: ErrorCode, status: Option<u16>) -> Outcome {
        if cond {
            ok_outcome(v)
        } else {
            failed(v, error, status)
        }
    }

    fn has_auth(v: &View) -> bool {
        v.http.headers.iter().any(|(n, _)| n == "authorization")
    }

    fn scenarios() -> Vec<Scenario> {
        let mut out = Vec::new();

        // DESIGN §7's example: plain HTTP to the TLS port 30080.
        out.push(Scenario {
            name: "plain_http_to_tls_listener_is_checker_protocol_mismatch",
            client: client(),
            checker: nlb(),
            model: Box::new(|v| ok_if(v.scheme.uses_tls(), v, ErrorCode::HttpTlsRequired, None)),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerProtocolMismatch,
            flipped: vec![Attribute::Tls],
            evidence: vec!["checker got http_tls_required on 10.0.0.5:30080; with tls on it succeeds"],
        });

        // Users go through a TLS edge that answers 502 (it re-encrypts to a plain-HTTP pod);
        // the LB's plain-HTTP check of the node port passes. Only the edge's address spoken
        // the edge's way (TLS) reproduces the users' 502: the address, not TLS, is the cause.
        out.push(Scenario {
            name: "tls_edge_failing_while_the_plain_node_port_passes_is_node_port_vs_proxy",
            client: client(),
            checker: nlb(),
            model: Box::new(|v| {
                let edge = v.dial_endpoint().port == 443;
                match (edge, v.scheme.uses_tls()) {
                    (true, true) => failed(v, ErrorCode::HttpStatus, Some(502)),
                    (true, false) => failed(v, ErrorCode::HttpTlsRequired, Some(400)),
                    (false, true) => failed(v, ErrorCode::TlsPlaintextPeer, None),
                    (false, false) => ok_outcome(v),
                }
            }),
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::NodePortVsProxy,
            flipped: vec![Attribute::Tls, Attribute::Address],
            evidence: vec!["502"],
        });

        // A TLS checker against a plain listener.
        out.push(Scenario {
            name: "tls_to_plain_listener_is_checker_protocol_mismatch",
            client: view_url("shop", "client", "http://shop.example.com/"),
            checker: {
                let mut v = view_url("shop", "alb", "https://10.0.0.5:8080/");
                v.tls.verify = false;
                v
            },
            model: Box::new(|v| ok_if(!v.scheme.uses_tls(), v, ErrorCode::TlsPlaintextPeer, None)),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerProtocolMismatch,
            flipped: vec![Attribute::Tls],
            evidence: vec!["tls_plaintext_peer", "with tls off it succeeds"],
        });

        // Health path 200 while the user route is 503.
        out.push(Scenario {
            name: "health_path_passes_while_route_fails_is_shallow_health_path",
            client: client(),
            checker: {
                let mut v = nlb();
                v.scheme = crate::config::Scheme::Https;
                v.tls.verify = false;
                v.tls.sni = crate::config::Sni::None;
                v
            },
            model: Box::new(|v| ok_if(v.path == "/healthz", v, ErrorCode::HttpStatus, Some(503))),
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::ShallowHealthPath,
            flipped: vec![Attribute::Path],
            evidence: vec![
                "client got 503 on 203.0.113.10:443 while the checker passes on 10.0.0.5:30080 with path /healthz; \
                 with path /cart the checker fails too (503)",
            ],
        });

        // The route needs a bearer token; the checker sends none.
        out.push(Scenario {
            name: "health_path_behind_auth_is_auth_required",
            client: client(),
            checker: {
                let mut v = view_url("shop", "alb", "https://10.0.0.5:8443/cart");
                v.tls.verify = false;
                v.http.host = HostHeader::Value("shop.example.com".into());
                v.tls.sni = crate::config::Sni::Name("shop.example.com".into());
                v.http.user_agent = Some("ELB-HealthChecker/2.0".into());
                v
            },
            model: Box::new(|v| ok_if(has_auth(v), v, ErrorCode::HttpStatus, Some(401))),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::AuthRequired,
            flipped: vec![Attribute::Headers],
            evidence: vec!["checker got 401 on 10.0.0.5:8443 with no extra headers; with the headers [authorization] it succeeds"],
        });

        // One source address is refused (firewall drop).
        out.push(Scenario {
            name: "refused_source_is_checker_source_blocked",
            client: view_url("shop", "client", "http://shop.example.com:30080/healthz"),
            checker: {
                let mut v = view_url("shop", "nlb", "http://shop.example.com:30080/healthz");
                let ip = "127.0.0.66".parse().unwrap();
                v.source = Some(SourceBind { requested: Source::Addr(ip), addr: ip });
                v
            },
            model: Box::new(|v| ok_if(v.source.is_none(), v, ErrorCode::ConnectTimeout, None)),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerSourceBlocked,
            flipped: vec![Attribute::Source],
            evidence: vec![
                "connect_timeout",
                "with the default source address it succeeds",
                "allow the checker's source",
            ],
        });

        // Per-SNI certificate: without SNI the default certificate does not match.
        out.push(Scenario {
            name: "no_sni_gets_default_certificate_is_sni_mismatch",
            client: client(),
            checker: {
                let mut v = view_url("shop", "alb", "https://10.0.0.5:8443/cart");
                v.tls.sni = crate::config::Sni::None;
                v.http.host = HostHeader::Value("shop.example.com".into());
                v.http.headers = client().http.headers;
                v
            },
            model: Box::new(|v| {
                ok_if(
                    effective_sni(v).as_deref() == Some("shop.example.com"),
                    v,
                    ErrorCode::TlsCertNameMismatch,
                    None,
                )
            }),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::SniMismatch,
            flipped: vec![Attribute::Sni],
            evidence: vec!["tls_cert_name_mismatch", "with SNI shop.example.com it succeeds"],
        });

        // Host-based routes: the IP Host lands on the default backend's 404.
        out.push(Scenario {
            name: "ip_host_lands_on_default_backend_is_host_route_mismatch",
            client: client(),
            checker: {
                let mut v = view_url("shop", "alb", "https://10.0.0.5:8443/cart");
                v.tls.verify = false;
                v.tls.sni = crate::config::Sni::Name("shop.example.com".into());
                v.http.host = HostHeader::DialedAddress;
                v.http.headers = client().http.headers;
                v
            },
            model: Box::new(|v| {
                ok_if(effective_host(v).as_deref() == Some("shop.example.com"), v, ErrorCode::HttpStatus, Some(404))
            }),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::HostRouteMismatch,
            flipped: vec![Attribute::Host],
            evidence: vec!["checker got 404 on 10.0.0.5:8443 with Host 10.0.0.5:8443; with Host shop.example.com it succeeds"],
        });

        // The health port does not parse PROXY headers; the NLB sends a PPv2 LOCAL one.
        out.push(Scenario {
            name: "proxy_header_to_plain_listener_is_proxy_protocol_mismatch",
            client: view_url("shop", "client", "http://shop.example.com:10254/healthz"),
            checker: {
                let mut v = view_url("shop", "nlb", "http://shop.example.com:10254/healthz");
                v.proxy_protocol = Some(ProxyHeader { version: ProxyVersion::V2, local: true });
                v
            },
            model: Box::new(|v| ok_if(v.proxy_protocol.is_none(), v, ErrorCode::HttpMalformed, None)),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::ProxyProtocolMismatch,
            flipped: vec![Attribute::ProxyProtocol],
            evidence: vec!["http_malformed", "with no PROXY header it succeeds"],
        });

        // The same, where the listener answers the header's bytes with 400 (nginx) and the
        // checker's IP Host would land on the default backend's 404 as well: the client taking
        // the checker's Host fails too, but only the PROXY header explains the checker's 400.
        out.push(Scenario {
            name: "proxy_header_answered_400_is_proxy_protocol_mismatch_not_host",
            client: view_url("shop", "client", "http://shop.example.com/cart"),
            checker: {
                let mut v = view_url("shop", "nlb", "http://10.0.0.5/healthz");
                v.http.host = HostHeader::DialedAddress;
                v.proxy_protocol = Some(ProxyHeader { version: ProxyVersion::V2, local: true });
                v
            },
            model: Box::new(|v| {
                if v.proxy_protocol.is_some() {
                    failed(v, ErrorCode::HttpStatus, Some(400))
                } else {
                    let routed = effective_host(v).as_deref() == Some("shop.example.com");
                    ok_if(routed || v.path == "/healthz", v, ErrorCode::HttpStatus, Some(404))
                }
            }),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::ProxyProtocolMismatch,
            flipped: vec![Attribute::ProxyProtocol, Attribute::Host],
            evidence: vec!["checker got 400", "with no PROXY header it succeeds"],
        });

        // Node port passes, the proxy in front fails.
        out.push(Scenario {
            name: "node_port_passes_proxy_fails_is_node_port_vs_proxy",
            client: {
                let mut v = view_url("shop", "client", "http://shop.example.com/cart");
                v.connect_to = Some(crate::config::Endpoint {
                    host: crate::config::Host::Ip([127, 0, 0, 20].into()),
                    port: 80,
                });
                v
            },
            checker: {
                let mut v = view_url("shop", "np", "http://shop.example.com/cart");
                v.connect_to = Some(crate::config::Endpoint {
                    host: crate::config::Host::Ip([127, 0, 0, 21].into()),
                    port: 30080,
                });
                v
            },
            model: Box::new(|v| ok_if(v.dial_endpoint().port == 30080, v, ErrorCode::HttpStatus, Some(502))),
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::NodePortVsProxy,
            flipped: vec![Attribute::Address],
            evidence: vec![
                "client got 502 on 127.0.0.20:80",
                "with address 127.0.0.20:80 the checker fails too (502)",
            ],
        });

        // The app answers 302 only to the CLB's agent.
        out.push(Scenario {
            name: "redirect_only_for_checker_agent_is_user_agent_dependent",
            client: view_url("shop", "client", "http://shop.example.com/"),
            checker: {
                let mut v = view_url("shop", "clb", "http://shop.example.com/");
                v.http.user_agent = Some("ELB-HealthChecker/1.0".into());
                v.expect.status = vec![200..=200];
                v
            },
            model: Box::new(|v| {
                let elb = v.http.user_agent.as_deref() == Some("ELB-HealthChecker/1.0");
                // Both matchers judge their own response: the client accepts 302 too.
                if elb && !v.expect.status_ok(302) {
                    failed(v, ErrorCode::HttpStatus, Some(302))
                } else {
                    ok_outcome(v)
                }
            }),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::UserAgentDependent,
            flipped: vec![Attribute::UserAgent],
            evidence: vec!["checker got 302", "with User-Agent parallax/"],
        });

        // HAProxy's OPTIONS is refused with 405.
        out.push(Scenario {
            name: "options_refused_is_checker_protocol_mismatch",
            client: view_url("shop", "client", "http://shop.example.com/"),
            checker: {
                let mut v = view_url("shop", "haproxy", "http://shop.example.com/");
                v.http.method = http::Method::OPTIONS;
                v
            },
            model: Box::new(|v| {
                ok_if(v.http.method == http::Method::GET, v, ErrorCode::HttpStatus, Some(405))
            }),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::CheckerProtocolMismatch,
            flipped: vec![Attribute::Method],
            evidence: vec!["checker got 405", "with method GET it succeeds"],
        });

        // An expired certificate the checker does not verify.
        out.push(Scenario {
            name: "unverified_expired_certificate_is_checker_protocol_mismatch",
            client: view_url("shop", "client", "https://shop.example.com/"),
            checker: {
                let mut v = view_url("shop", "alb", "https://shop.example.com/");
                v.tls.verify = false;
                v
            },
            model: Box::new(|v| ok_if(!v.tls.verify, v, ErrorCode::TlsCertExpired, None)),
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::CheckerProtocolMismatch,
            flipped: vec![Attribute::Verify],
            evidence: vec![
                "client got tls_cert_expired",
                "with certificate verification on the checker fails too",
            ],
        });

        // Nothing switchable explains it: the app chokes on Title-Case header names, which is not
        // an attribute parallax switches.
        out.push(Scenario {
            name: "cause_outside_the_switchable_attributes_is_unattributed",
            client: client(),
            checker: {
                let mut v = nlb();
                v.http.title_case_headers = true;
                v
            },
            model: Box::new(|v| ok_if(!v.http.title_case_headers, v, ErrorCode::HttpStatus, Some(500))),
            direction: Direction::FalseDrain,
            diagnosis: Diagnosis::Unattributed,
            flipped: vec![],
            evidence: vec!["no single switch flips it", "nlb~tls: 500", "client~path@nlb: ok (200)"],
        });

        out
    }

    #[test]
    fn every_scenario_gets_its_direction_diagnosis_flips_and_evidence() {
        let mut seen = std::collections::BTreeSet::new();
        for s in scenarios() {
            let co = (s.model)(&s.client);
            let ko = (s.model)(&s.checker);
            let direction = match (co.ok, ko.ok) {
                (false, true) => Direction::Blackhole,
                (true, false) => Direction::FalseDrain,
                other => panic!("{}: views agree {other:?}", s.name),
            };
            assert_eq!(direction, s.direction, "{}", s.name);
            let a = attribution(&s.client, &s.checker, &co, &ko, &*s.model);
            let case = Case {
                direction,
                client_view: &s.client,
                checker_view: &s.checker,
                client: &co,
                checker: &ko,
                attribution: Some(&a),
            };
            let f = diagnose(&case);
            assert_eq!(f.diagnosis, s.diagnosis, "{}: {}", s.name, f.evidence);
            assert_eq!(a.flipped(), s.flipped, "{}: {}", s.name, f.evidence);
            for needle in &s.evidence {
                assert!(f.evidence.contains(needle), "{}: {:?} not in {:?}", s.name, needle, f.evidence);
            }
            assert!(!f.evidence.contains("s3cret"), "{}: secret in evidence", s.name);
            assert!(!f.evidence.contains('\n'), "{}: one line", s.name);
            seen.insert(f.diagnosis);
        }
        assert!(seen.len() >= 10, "{seen:?}");
    }

    fn case<'a>(
        direction: Direction,
        cv: &'a View,
        kv: &'a View,
        co: &'a Outcome,
        ko: &'a Outcome,
        a: Option<&'a Attribution>,
    ) -> Finding {
        diagnose(&Case {
            direction,
            client_view: cv,
            checker_view: kv,
            client: co,
            checker: ko,
            attribution: a,
        })
    }

    #[test]
    fn http_tls_required_is_protocol_mismatch_even_without_attribution() {
        let (c, k) = (client(), nlb());
        let co = ok_outcome(&c);
        let ko = failed(&k, ErrorCode::HttpTlsRequired, None);
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, None);
        assert_eq!(f.diagnosis, Diagnosis::CheckerProtocolMismatch);
        assert!(f.evidence.contains("plain HTTP to a TLS listener"), "{}", f.evidence);
    }

    #[test]
    fn status_matcher_mismatch_both_ways() {
        // False drain: a 204 the client's 200-399 accepts, the GCP-like 200-only checker rejects.
        let c = client();
        let mut gcp = view_url("shop", "gcp", "http://10.0.0.5:8080/ready");
        gcp.expect.status = vec![200..=200];
        gcp.profile = Some(ProfileName::Gcp);
        let co = ok_outcome(&c);
        let ko = failed(&gcp, ErrorCode::HttpStatus, Some(204));
        // Even when the path switch flips it (the user route answers 200), the matcher is the
        // cause: the same 204 would pass the client's matcher.
        let model = |v: &View| {
            if v.path == "/ready" && !v.expect.status_ok(204) {
                failed(v, ErrorCode::HttpStatus, Some(204))
            } else {
                ok_outcome(v)
            }
        };
        let a = attribution(&c, &gcp, &co, &ko, &model);
        let f = case(Direction::FalseDrain, &c, &gcp, &co, &ko, Some(&a));
        assert_eq!(f.diagnosis, Diagnosis::StatusMatcherMismatch, "{}", f.evidence);
        assert_eq!(
            f.evidence,
            "checker got 204 on 10.0.0.5:8080, which its matcher (200) rejects; the client's matcher (200-399) accepts \
             it; make the route answer a status both accept"
        );
        // Blackhole: users expect exactly 200 and get a 302 the HAProxy-like checker accepts.
        let mut strict = client();
        strict.expect.status = vec![200..=200];
        let hap = view_url("shop", "haproxy", "https://shop.example.com/cart");
        let co = failed(&strict, ErrorCode::HttpStatus, Some(302));
        let ko = outcome_for(&hap, true, None, Some(302));
        let f = case(Direction::Blackhole, &strict, &hap, &co, &ko, None);
        assert_eq!(f.diagnosis, Diagnosis::StatusMatcherMismatch, "{}", f.evidence);
        assert!(f.evidence.contains("the checker's matcher (200-399) accepts it"));
    }

    #[test]
    fn redirect_to_login_with_headers_flip_is_auth_not_matcher() {
        let c = client();
        let mut k = view_url("shop", "gcp", "https://shop.example.com/cart");
        k.expect.status = vec![200..=200];
        let co = ok_outcome(&c);
        let ko = failed(&k, ErrorCode::HttpStatus, Some(302));
        let model = |v: &View| ok_if(has_auth(v), v, ErrorCode::HttpStatus, Some(302));
        let a = attribution(&c, &k, &co, &ko, &model);
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
        assert_eq!(f.diagnosis, Diagnosis::AuthRequired, "{}", f.evidence);
    }

    #[test]
    fn kube_proxy_no_local_endpoints_both_directions() {
        let c = view_url("shop", "client", "http://10.0.0.5:30080/");
        let mut kp = view_url("shop", "kube-proxy", "http://10.0.0.5:32456/healthz");
        kp.profile = Some(ProfileName::KubeProxy);
        kp.expect.kube_proxy_endpoints = true;
        kp.expect.status = vec![200..=200];
        // False drain: 503 {"localEndpoints":0}.
        let co = ok_outcome(&c);
        let mut ko = failed(&kp, ErrorCode::NoLocalEndpoints, Some(503));
        ko.local_endpoints = Some(0);
        let f = case(Direction::FalseDrain, &c, &kp, &co, &ko, None);
        assert_eq!(f.diagnosis, Diagnosis::NoLocalEndpoints);
        assert!(f.evidence.contains("localEndpoints=0 (503)"), "{}", f.evidence);
        assert!(f.evidence.contains("10.0.0.5:32456"));
        // Blackhole: kube-proxy says 1 endpoint, the node port refuses.
        let co = failed(&c, ErrorCode::ConnectRefused, None);
        let mut ko = ok_outcome(&kp);
        ko.local_endpoints = Some(1);
        let f = case(Direction::Blackhole, &c, &kp, &co, &ko, None);
        assert_eq!(f.diagnosis, Diagnosis::NoLocalEndpoints, "{}", f.evidence);
        assert!(
            f.evidence.contains("localEndpoints=1") && f.evidence.contains("connect_refused"),
            "{}",
            f.evidence
        );
        // A certificate problem is not something kube-proxy's count can explain.
        let co = failed(&c, ErrorCode::TlsCertExpired, None);
        let f = case(Direction::Blackhole, &c, &kp, &co, &ko, None);
        assert_ne!(f.diagnosis, Diagnosis::NoLocalEndpoints);
    }

    #[test]
    fn dns_wrong_address_from_the_client_outcome() {
        let mut c = client();
        c.expect_addresses = vec!["203.0.113.10".parse().unwrap()];
        let k = nlb();
        let mut co = failed(&c, ErrorCode::DnsUnexpectedAddress, None);
        co.resolved = vec!["198.51.100.9".parse().unwrap()];
        let ko = ok_outcome(&k);
        let f = case(Direction::Blackhole, &c, &k, &co, &ko, None);
        assert_eq!(f.diagnosis, Diagnosis::DnsWrongAddress);
        assert!(
            f.evidence
                .starts_with("client DNS for shop.example.com answered 198.51.100.9, expected 203.0.113.10"),
            "{}",
            f.evidence
        );
    }

    #[test]
    fn tcp_check_passing_while_http_fails_is_shallow() {
        let c = client();
        let tcp = view_url("shop", "nlb-tcp", "tcp://10.0.0.5:30443");
        let co = failed(&c, ErrorCode::HttpStatus, Some(503));
        let ko = outcome_for(&tcp, true, None, None);
        let f = case(Direction::Blackhole, &c, &tcp, &co, &ko, None);
        assert_eq!(f.diagnosis, Diagnosis::ShallowHealthPath);
        assert!(f.evidence.contains("only completes a TCP handshake on 10.0.0.5:30443"), "{}", f.evidence);
    }

    #[test]
    fn a_400_to_a_proxy_header_points_at_proxy_protocol_without_attribution() {
        let c = view_url("shop", "client", "http://shop.example.com:10254/healthz");
        let mut k = view_url("shop", "nlb", "http://10.0.0.5:10254/healthz");
        k.proxy_protocol = Some(ProxyHeader { version: ProxyVersion::V2, local: true });
        let co = ok_outcome(&c);
        let mut ko = failed(&k, ErrorCode::HttpStatus, Some(400));
        ko.request.proxy_protocol = Some(ProxyVersion::V2);
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, None);
        assert_eq!(f.diagnosis, Diagnosis::ProxyProtocolMismatch, "{}", f.evidence);
        assert!(f.evidence.contains("not confirmed"), "{}", f.evidence);
        // The same 400 without a PROXY header points at the Host.
        ko.request.proxy_protocol = None;
        k.proxy_protocol = None;
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, None);
        assert_eq!(f.diagnosis, Diagnosis::HostRouteMismatch, "{}", f.evidence);
    }

    #[test]
    fn without_attribution_the_error_hint_names_a_differing_attribute_unconfirmed() {
        let c = client();
        let mut k = view_url("shop", "alb", "https://shop.example.com/cart");
        k.http.headers.clear();
        let co = ok_outcome(&c);
        let ko = failed(&k, ErrorCode::HttpStatus, Some(401));
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, None);
        assert_eq!(f.diagnosis, Diagnosis::AuthRequired);
        assert!(
            f.evidence.contains(
                "differ in headers (checker: no extra headers; client: the headers [authorization])"
            ),
            "{}",
            f.evidence
        );
        assert!(f.evidence.contains("not confirmed"), "{}", f.evidence);
        assert!(!f.evidence.contains("s3cret"));
        // No hint applies: unattributed, saying attribution was off.
        let ko = failed(&k, ErrorCode::HttpTimeout, None);
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, None);
        assert_eq!(f.diagnosis, Diagnosis::Unattributed);
        assert!(f.evidence.contains("attribution off"), "{}", f.evidence);
    }

    #[test]
    fn a_flip_to_a_different_failure_does_not_explain_the_checkers() {
        // The app answers 503 to Title-Case header names (not switchable) and wants a token.
        // With the checker's (missing) headers the client gets 401: a flip, but not to the
        // checker's 503: a second problem, not the explanation.
        let c = client();
        let mut k = nlb();
        k.http.title_case_headers = true;
        let model = |v: &View| {
            if v.http.title_case_headers {
                failed(v, ErrorCode::HttpStatus, Some(503))
            } else {
                ok_if(has_auth(v), v, ErrorCode::HttpStatus, Some(401))
            }
        };
        let co = model(&c);
        let ko = model(&k);
        let a = attribution(&c, &k, &co, &ko, &model);
        assert!(a.flipped().contains(&Attribute::Headers), "{:?}", a.flipped());
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
        assert_eq!(f.diagnosis, Diagnosis::Unattributed, "{}", f.evidence);
        assert!(
            f.evidence.contains("switching headers changes a result, but not to the other view's"),
            "{}",
            f.evidence
        );
        assert!(f.evidence.contains("client~headers@nlb: 401"), "{}", f.evidence);
    }

    #[test]
    fn a_reset_before_or_after_the_request_is_the_same_failure() {
        let c = view_url("shop", "client", "http://shop.example.com:8080/");
        let mut k = c.clone();
        k.name = "nlb".into();
        let ip = "127.0.0.66".parse().unwrap();
        k.source = Some(SourceBind { requested: Source::Addr(ip), addr: ip });
        let co = ok_outcome(&c);
        let ko = failed(&k, ErrorCode::HttpReset, None);
        // Only the client-side hybrid ran (a cap of one from the other end): it got the reset
        // at connect time instead.
        let model = |v: &View| ok_if(v.source.is_none(), v, ErrorCode::ConnectReset, None);
        let mut a = attribution(&c, &k, &co, &ko, &model);
        a.hybrids.retain(|h| h.switched == Side::Client);
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
        assert_eq!(f.diagnosis, Diagnosis::CheckerSourceBlocked, "{}", f.evidence);
        assert!(f.evidence.contains("allow the checker's source 127.0.0.66"), "{}", f.evidence);
    }

    #[test]
    fn a_route_needing_two_client_values_says_they_are_needed_together() {
        let c = client();
        let mut k = view_url("shop", "alb", "https://10.0.0.5:8443/healthz");
        k.tls.sni = crate::config::Sni::Name("shop.example.com".into());
        k.http.headers = c.http.headers.clone();
        k.http.user_agent = Some("ELB-HealthChecker/2.0".into());
        let model = |v: &View| {
            let ok = effective_host(v).as_deref() == Some("shop.example.com") && v.path == "/cart";
            ok_if(ok, v, ErrorCode::HttpStatus, Some(404))
        };
        let co = model(&c);
        let ko = model(&k);
        let a = attribution(&c, &k, &co, &ko, &model);
        assert_eq!(a.flipped(), vec![Attribute::Host, Attribute::Path]);
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
        assert_eq!(f.diagnosis, Diagnosis::HostRouteMismatch, "{}", f.evidence);
        assert!(
            f.evidence
                .contains("no single switch fixes the checker: it needs the client's host and path together"),
            "{}",
            f.evidence
        );
        // One attribute alone that fixes it: no such remark.
        let single = |v: &View| ok_if(v.path == "/cart", v, ErrorCode::HttpStatus, Some(404));
        let a = attribution(&c, &k, &co, &ko, &single);
        let f = case(Direction::FalseDrain, &c, &k, &co, &single(&k), Some(&a));
        assert_eq!(f.diagnosis, Diagnosis::ShallowHealthPath, "{}", f.evidence);
        assert!(!f.evidence.contains("together"), "{}", f.evidence);
    }

    #[test]
    fn a_cap_of_zero_is_not_no_difference() {
        let c = client();
        let k = nlb();
        let co = ok_outcome(&c);
        let ko = failed(&k, ErrorCode::HttpTimeout, None);
        let a = Attribution { differences: differences(&c, &k), hybrids: vec![], not_tried: 10 };
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
        assert_eq!(f.diagnosis, Diagnosis::Unattributed);
        assert!(
            f.evidence.contains("no hybrid probed: the cap allows none of the 10 planned"),
            "{}",
            f.evidence
        );
        assert!(!f.evidence.contains("differ in no attribute"), "{}", f.evidence);
        // With nothing probed, the error's hint still names a differing attribute, unconfirmed.
        let ko = failed(&k, ErrorCode::HttpStatus, Some(401));
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
        assert_eq!(f.diagnosis, Diagnosis::AuthRequired, "{}", f.evidence);
        assert!(f.evidence.contains("not confirmed"), "{}", f.evidence);
    }

    #[test]
    fn unattributed_names_the_differences_no_hybrid_switches() {
        let c = view_url("shop", "client", "http://shop.example.com/");
        let mut k = view_url("shop", "haproxy", "http://shop.example.com/");
        k.http.version = crate::config::HttpVersion::Http10;
        k.http.connection_close = true;
        let co = ok_outcome(&c);
        let ko = failed(&k, ErrorCode::HttpStatus, Some(426));
        let a = Attribution { differences: vec![], hybrids: vec![], not_tried: 0 };
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
        assert_eq!(f.diagnosis, Diagnosis::Unattributed);
        assert!(
            f.evidence.ends_with(
                "the views also differ in what parallax does not switch: HTTP version (checker HTTP/1.0, \
                 client HTTP/1.1), Connection: close (only the checker sends it)"
            ),
            "{}",
            f.evidence
        );
        // `auto` over plain HTTP is HTTP/1.1 on the wire: no difference with an HTTP/1.1 checker.
        let mut auto = c.clone();
        auto.http.version = crate::config::HttpVersion::Auto;
        assert!(
            unswitched_differences(&auto, &view_url("shop", "alb", "http://shop.example.com/")).is_empty()
        );
    }

    #[test]
    fn unattributed_says_when_nothing_can_be_switched() {
        let c = client();
        let mut k = c.clone();
        k.name = "twin".into();
        let co = ok_outcome(&c);
        let ko = failed(&k, ErrorCode::HttpStatus, Some(500));
        let a = Attribution { differences: vec![], hybrids: vec![], not_tried: 0 };
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
        assert_eq!(f.diagnosis, Diagnosis::Unattributed);
        assert!(f.evidence.contains("differ in no attribute"), "{}", f.evidence);
    }

    #[test]
    fn unbindable_source_is_parallaxs_problem_not_the_targets() {
        let c = client();
        let mut k = nlb();
        let ip = "10.9.9.9".parse().unwrap();
        k.source = Some(SourceBind { requested: Source::Addr(ip), addr: ip });
        let co = ok_outcome(&c);
        let ko = failed(&k, ErrorCode::SourceUnavailable, None);
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, None);
        assert_eq!(f.diagnosis, Diagnosis::Unattributed);
        assert!(f.evidence.contains("could not bind its source 10.9.9.9"), "{}", f.evidence);
    }

    #[test]
    fn hint_prefers_the_attribute_the_error_points_at() {
        // Both host and path flip a 404; the 404 points at the Host first.
        let c = client();
        let mut k = view_url("shop", "alb", "https://10.0.0.5:8443/");
        k.tls.sni = crate::config::Sni::Name("shop.example.com".into());
        k.http.headers = c.http.headers.clone();
        let model = |v: &View| {
            let ok = effective_host(v).as_deref() == Some("shop.example.com") || v.path == "/cart";
            ok_if(ok, v, ErrorCode::HttpStatus, Some(404))
        };
        let co = ok_outcome(&c);
        let ko = model(&k);
        let a = attribution(&c, &k, &co, &ko, &model);
        assert_eq!(a.flipped(), vec![Attribute::Host, Attribute::Path]);
        let f = case(Direction::FalseDrain, &c, &k, &co, &ko, Some(&a));
        assert_eq!(f.diagnosis, Diagnosis::HostRouteMismatch);
    }

    #[test]
    fn each_address_evidence_names_the_address_the_pair_used() {
        let c = client();
        let k = nlb();
        let co = at(failed(&c, ErrorCode::ConnectTimeout, None), "203.0.113.12:443");
        let ko = ok_outcome(&k);
        let f = case(Direction::Blackhole, &c, &k, &co, &ko, None);
        assert!(f.evidence.contains("client got connect_timeout on 203.0.113.12:443"), "{}", f.evidence);
    }

    #[test]
    fn diagnosis_names_are_the_design_codes() {
        let names: Vec<String> = Diagnosis::ALL
            .iter()
            .map(|d| serde_json::to_value(d).unwrap().as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "shallow_health_path",
                "auth_required",
                "checker_protocol_mismatch",
                "checker_source_blocked",
                "no_local_endpoints",
                "node_port_vs_proxy",
                "sni_mismatch",
                "host_route_mismatch",
                "proxy_protocol_mismatch",
                "status_matcher_mismatch",
                "user_agent_dependent",
                "dns_wrong_address",
                "unattributed"
            ]
        );
        for d in Diagnosis::ALL {
            assert_eq!(d.as_str(), d.to_string());
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
    }

    #[test]
    fn allow_sources_audit() {
        let c = client();
        let mut gcp = view_url("shop", "gcp", "http://10.0.0.5:8080/");
        gcp.profile = Some(ProfileName::Gcp);
        let mut nlb_in = nlb();
        let net: IpNet = "10.0.0.0/24".parse().unwrap();
        nlb_in.source = Some(SourceBind { requested: Source::Net(net), addr: "10.0.0.7".parse().unwrap() });
        let mut nlb_out = nlb();
        nlb_out.name = "nlb-out".into();
        let ip = "192.0.2.7".parse().unwrap();
        nlb_out.source = Some(SourceBind { requested: Source::Addr(ip), addr: ip });
        let plain = view_url("shop", "plain", "http://10.0.0.5:8080/");

        // (allow_sources, checker, uncovered)
        let table: Vec<(Vec<&str>, View, Vec<&str>)> = vec![
            (vec![], gcp.clone(), vec![]),
            (vec!["198.51.100.0/24"], gcp.clone(), vec!["35.191.0.0/16", "130.211.0.0/22"]),
            (vec!["35.191.0.0/16", "198.51.100.0/24"], gcp.clone(), vec!["130.211.0.0/22"]),
            (vec!["35.191.0.0/16", "130.211.0.0/22"], gcp.clone(), vec![]),
            // Two adjacent halves cover the /16 together.
            (vec!["35.191.0.0/17", "35.191.128.0/17", "130.211.0.0/16"], gcp.clone(), vec![]),
            (vec!["10.0.0.0/16"], nlb_in.clone(), vec![]),
            (vec!["10.0.0.0/25"], nlb_in.clone(), vec!["10.0.0.0/24"]),
            (vec!["10.0.0.0/8"], nlb_out.clone(), vec!["192.0.2.7/32"]),
            (vec!["192.0.2.7/32"], nlb_out.clone(), vec![]),
            // No source and no documented ranges: nothing to audit.
            (vec!["10.0.0.0/8"], plain.clone(), vec![]),
        ];
        for (allow, checker, want) in table {
            let mut t = target(c.clone(), vec![checker.clone()]);
            t.allow_sources = allow.iter().map(|a| a.parse().unwrap()).collect();
            let gaps = audit_allow_sources(&t);
            let got: Vec<String> =
                gaps.iter().flat_map(|g| g.uncovered.iter().map(|(n, _)| n.to_string())).collect();
            assert_eq!(got, want, "{allow:?} vs {}", checker.name);
            if let Some(g) = gaps.first() {
                let f = g.finding(&t);
                assert_eq!(f.diagnosis, Diagnosis::CheckerSourceBlocked);
                assert!(
                    f.evidence.contains(&format!("checker {} probes from {}", checker.name, want[0])),
                    "{}",
                    f.evidence
                );
                assert!(f.evidence.contains(&allow.join(", ")), "{}", f.evidence);
            }
        }
    }
}
