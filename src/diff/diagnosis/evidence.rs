//! The phrasing of a diagnosis: the one-line `evidence` string of each finding, saying what
//! differed, what happened and what to do. The decision of which diagnosis applies is the parent
//! module's; the tests assert these strings byte for byte, so rewording one is a contract change.
//!
//! Never a header value (it may be a secret): only header names.

use std::fmt;

use super::{default_certificate, verified_name, Case, Diagnosis};
use crate::config::{ProxyVersion, View};
use crate::diff::attribute::{
    effective_host, effective_http_version, effective_sni, suspect_headers, Attribute,
};
use crate::diff::attribution::dialed;
use crate::diff::hybrid::{CombinedResult, HybridResult, Side};
use crate::diff::Direction;
use crate::probe::outcome::location_parts;
use crate::probe::{ErrorCode, Outcome, Phase};

/// "checker got http_tls_required on 10.0.0.5:30080" (false drain) or "client got 503 on
/// 203.0.113.10:443 while the checker passes on 10.0.0.5:30080" (blackhole); with `attribute`,
/// the checker's value of it after its address.
fn situation(case: &Case<'_>, attribute: Option<Attribute>) -> String {
    let (f, fv, side) = case.failing();
    let with = attribute.map(|a| format!(" with {}", value(a, case.checker_view))).unwrap_or_default();
    // A redirect says where it points.
    let location = f.location.as_ref().map(|l| format!(" (Location: {l})")).unwrap_or_default();
    match case.direction {
        Direction::FalseDrain => format!("{side} got {} on {}{location}{with}", result(f), address(f, fv)),
        Direction::Blackhole => format!(
            "{side} got {} on {}{location} while the checker passes on {}{with}",
            result(f),
            address(f, fv),
            address(case.checker, case.checker_view)
        ),
    }
}

/// The client's DNS answered other addresses than its `expect_addresses`.
pub(super) fn dns_wrong_address(case: &Case<'_>) -> String {
    let name = case.client_view.url_endpoint.host.to_string();
    let answered = if case.client.resolved.is_empty() {
        "other addresses".to_owned()
    } else {
        join(case.client.resolved.iter())
    };
    let expected = join(case.client_view.expect_addresses.iter());
    format!(
        "client DNS for {name} answered {answered}, expected {expected}: the name does not point at \
         the load balancer the checker {} passes on",
        case.checker_view.name
    )
}

/// The failing view's source could not be bound on this host.
pub(super) fn source_unavailable(failing_view: &View, failing_side: &str) -> String {
    let source = failing_view.source.map_or_else(|| "?".to_owned(), |s| s.requested.to_string());
    format!(
        "{failing_side} could not bind its source {source} on this host (source_unavailable): \
         parallax cannot emulate it here; use a local source or freebind"
    )
}

/// A flip of `attribute` that confirms `diagnosis`: the situation, the switch that reproduces the
/// other view's result, the certificate served, whether several switches are needed together, and
/// the advice.
pub(super) fn flip(case: &Case<'_>, attribute: Attribute, diagnosis: Diagnosis) -> String {
    let (failing, _, failing_side) = case.failing();
    let (_, _, passing_side) = case.passing();
    let Some(h) = case.telling_flip(attribute) else {
        // Callers only pass flipped attributes; stay truthful if that ever changes.
        return format!("{}; switching {attribute} flips it", situation(case, None));
    };
    let switch = switched_value(attribute, h);
    // Name the checker's own value too, unless the address or error already says it.
    let from = match attribute {
        Attribute::Tls | Attribute::Address => None,
        _ => Some(attribute),
    };
    let evidence = match (case.direction, h.switched) {
        (Direction::FalseDrain, Side::Checker) => {
            format!("{}; with {switch} it succeeds", situation(case, from))
        }
        (Direction::FalseDrain, Side::Client) => format!(
            "{} while the client succeeds; the client with {switch} as the checker sends it fails too ({})",
            situation(case, None),
            hybrid_result(h)
        ),
        (Direction::Blackhole, Side::Checker) => {
            format!("{}; with {switch} the checker fails too ({})", situation(case, from), hybrid_result(h))
        }
        (Direction::Blackhole, Side::Client) => {
            format!("{}; with {switch} as the checker sends it, the client succeeds", situation(case, None))
        }
    };
    // The certificate is what an SNI or verification flip is about: say which one was served.
    let certificate = match (diagnosis, attribute, failing.tls.as_ref().and_then(certificate_names)) {
        (Diagnosis::CertificateRejected, _, _) => certificate_rejected(case),
        (Diagnosis::DefaultCertificateServed, _, _) => default_certificate_served(case),
        (_, Attribute::Sni | Attribute::Verify, Some(names)) => {
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
    format!("{evidence}{certificate}{together}{advice}")
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
        Diagnosis::CertificateRejected => certificate_advice(case),
        Diagnosis::DefaultCertificateServed => {
            let (_, fv, _) = case.failing();
            format!(
                "; the TLS Secret for {} is missing or in the wrong namespace: create it in the \
                 Ingress's namespace (or fix the Ingress's secretName) so the server has a certificate \
                 for the name",
                verified_name(fv)
            )
        }
        Diagnosis::UserAgentDependent => {
            "; the app answers the checker's User-Agent differently: exempt it from User-Agent rules".to_owned()
        }
        Diagnosis::NodePortVsProxy if blackhole => {
            "; the check bypasses the path users take: check through the address they reach".to_owned()
        }
        Diagnosis::NodePortVsProxy => {
            "; the address the checker probes fails while the one users reach serves".to_owned()
        }
        Diagnosis::HttpVersionDependent => http_version_advice(case),
        _ => String::new(),
    }
}

/// Why the failing side's verification rejected the certificate, the certificate itself, and
/// why the other side passes regardless (`certificate_rejected`).
fn certificate_rejected(case: &Case<'_>) -> String {
    let (f, fv, fside) = case.failing();
    let (_, pv, pside) = case.passing();
    let Some(tls) = f.tls.as_ref() else { return String::new() };
    let unknown = "an unknown time";
    let name = verified_name(fv);
    let why = match f.error {
        Some(ErrorCode::TlsCertExpired) => {
            format!("it expired at {}", tls.not_after.as_deref().unwrap_or(unknown))
        }
        Some(ErrorCode::TlsCertNotYetValid) => {
            format!("it is not valid before {}", tls.not_before.as_deref().unwrap_or(unknown))
        }
        Some(ErrorCode::TlsCertNameMismatch) => format!("{name} is not in its SANs"),
        _ => format!("it does not chain to a root the {fside} trusts"),
    };
    let passes = if pv.tls.verify {
        format!("the {pside}, which trusts other roots, passes")
    } else {
        format!("the {pside}, which does not verify certificates, passes")
    };
    format!("; the {fside}'s verification rejects the certificate {}: {why}, while {passes}", describe(tls))
}

/// What to do about a rejected certificate, by why it was rejected.
fn certificate_advice(case: &Case<'_>) -> String {
    let (f, fv, _) = case.failing();
    let name = verified_name(fv);
    let fix = match f.error {
        Some(ErrorCode::TlsCertExpired) => {
            "renew the certificate (and fix whatever should have renewed it)".to_owned()
        }
        Some(ErrorCode::TlsCertNotYetValid) => {
            "serve a certificate that is valid now (or fix the clock of whatever issued it)".to_owned()
        }
        Some(ErrorCode::TlsCertNameMismatch) => {
            format!("add {name} to the certificate's SANs, or serve the certificate issued for {name}")
        }
        _ => "serve the full chain, from a CA the users trust".to_owned(),
    };
    let check = if case.direction == Direction::Blackhole && !case.checker_view.tls.verify {
        ", and make the check verify the certificate so the LB sees what users see"
    } else {
        ""
    };
    format!("; {fix}{check}")
}

/// The failing side's certificate is the server's default one (`default_certificate_served`):
/// which other handshake got it too, and that it does not cover the name.
fn default_certificate_served(case: &Case<'_>) -> String {
    let (f, fv, _) = case.failing();
    let (Some(tls), Some((_, other_sni))) = (f.tls.as_ref(), default_certificate(case)) else {
        return String::new();
    };
    let name = verified_name(fv);
    let handshake = match other_sni {
        None => "a handshake without SNI".to_owned(),
        Some(n) => format!("a handshake with SNI {n}"),
    };
    let fingerprint = tls
        .cert_sha256
        .as_deref()
        .map(|h| format!(", SHA-256 {}", &h[..h.len().min(16)]))
        .unwrap_or_default();
    format!(
        "; the certificate served for {name}, {}{fingerprint}, is the same one the server gives {handshake}, \
         and it does not cover {name}: the server has no certificate for {name} and serves its default one",
        describe(tls)
    )
}

/// "CN=shop.example.com (SANs shop.example.com; issuer CN=R3; valid 2026-01-01T00:00:00Z to
/// 2026-04-01T00:00:00Z)".
fn describe(tls: &crate::probe::TlsSummary) -> String {
    let unknown = "unknown";
    let sans = if tls.cert_sans.is_empty() { "none".to_owned() } else { join(tls.cert_sans.iter()) };
    format!(
        "{} (SANs {sans}; issuer {}; valid {} to {})",
        tls.cert_subject.as_deref().unwrap_or("with an unreadable subject"),
        tls.cert_issuer.as_deref().unwrap_or(unknown),
        tls.not_before.as_deref().unwrap_or(unknown),
        tls.not_after.as_deref().unwrap_or(unknown)
    )
}

/// Both HTTP versions, what each got, and what to do.
fn http_version_advice(case: &Case<'_>) -> String {
    let (kv, cv) = (effective_http_version(case.checker_view), effective_http_version(case.client_view));
    let with_client_version = case
        .attribution
        .and_then(|a| a.single(Attribute::HttpVersion, Side::Checker))
        .map_or_else(|| "not tried".to_owned(), hybrid_result);
    let got = format!(
        "; the checker's {kv} gets {}, the {cv} the client speaks gets {with_client_version}",
        result(case.checker)
    );
    match case.direction {
        Direction::FalseDrain => format!(
            "{got}: the server refuses {kv}: make it accept {kv} (Envoy: accept_http_10) or make the check \
             speak {cv} (HAProxy: http-check send ver HTTP/1.1 with a Host header)"
        ),
        Direction::Blackhole => format!(
            "{got}: users fail on {cv} while the check passes on {kv}: make the check speak the users' version"
        ),
    }
}

/// A compound cause: no single switch heals the checker, `c`'s attributes together do; what each
/// alone returned, what all together returned, and that all must be fixed.
pub(super) fn compound(case: &Case<'_>, c: &CombinedResult) -> String {
    if case.direction == Direction::Blackhole {
        return compound_blackhole(case, c);
    }
    let alone: Vec<String> = c
        .attributes
        .iter()
        .map(|a| format!("with {} alone {}", value(*a, case.client_view), alone(case, *a)))
        .collect();
    let fixes: Vec<String> =
        c.attributes.iter().map(|a| part_advice(case, c, *a, super::attribute_diagnosis(case, *a))).collect();
    format!(
        "{}; no single switch heals it, {} together do: {}; with all of them it succeeds ({}, {}); \
         all of them must be fixed: {}",
        situation(case, None),
        and_join(c.attributes.iter()),
        alone.join(", "),
        c.view,
        combined_result(c),
        fixes.join("; ")
    )
}

/// One attribute of a compound cause: the checker's value and the client's, what switching it
/// alone returned, what to do, and that the others must be fixed too.
pub(super) fn compound_part(case: &Case<'_>, c: &CombinedResult, attribute: Attribute) -> String {
    if case.direction == Direction::Blackhole {
        return compound_part_blackhole(case, c, attribute);
    }
    let others: Vec<Attribute> = c.attributes.iter().copied().filter(|a| *a != attribute).collect();
    format!(
        "checker {} (client {}): with the client's value alone it {}; {}; not enough alone: {} must be fixed too \
         (with all switched, {}: {})",
        value(attribute, case.checker_view),
        value(attribute, case.client_view),
        alone(case, attribute),
        part_advice(case, c, attribute, super::attribute_diagnosis(case, attribute)),
        and_join(others.iter()),
        c.view,
        combined_result(c)
    )
}

/// A blackhole's compound cause: no single switch of the users' values into the check reproduces
/// their failure, `c`'s attributes together do; what the check got with each alone, what with
/// all, and what the check does not see about each.
fn compound_blackhole(case: &Case<'_>, c: &CombinedResult) -> String {
    format!("{}; {}", situation(case, None), compound_tail(case, c))
}

/// [`compound_blackhole`] after the situation: what the check got with each of the users' values
/// alone and with all, and what it does not see.
pub(super) fn compound_tail(case: &Case<'_>, c: &CombinedResult) -> String {
    let order = super::compound_order(case, c);
    let alone: Vec<String> = order
        .iter()
        .map(|a| format!("with {} alone {}", value(*a, case.client_view), alone_in_blackhole(case, *a)))
        .collect();
    let blind: Vec<String> =
        order.iter().map(|a| blind_advice(case, *a, super::attribute_diagnosis(case, *a))).collect();
    format!(
        "no single one of the users' values makes the check fail like them, {} together do: {}; \
         with all of them it fails like users ({}, {}); the users' failure needs all of these together \
         and the check sees none of it: {}",
        and_join(order.iter()),
        alone.join(", "),
        c.view,
        combined_result(c),
        blind.join("; ")
    )
}

/// One attribute of a blackhole's compound cause: the check's value and the users', what the
/// check got with the users' value alone, what it does not see, and that the others are needed too.
fn compound_part_blackhole(case: &Case<'_>, c: &CombinedResult, attribute: Attribute) -> String {
    let others: Vec<Attribute> =
        super::compound_order(case, c).into_iter().filter(|a| *a != attribute).collect();
    format!(
        "checker {} (users {}): with the users' value alone the check {}; {}; not enough alone: users fail \
         only with {} too (with all switched, {}: {})",
        value(attribute, case.checker_view),
        value(attribute, case.client_view),
        alone_in_blackhole(case, attribute),
        blind_advice(case, attribute, super::attribute_diagnosis(case, attribute)),
        and_join(others.iter()),
        c.view,
        combined_result(c)
    )
}

/// What the check got with `attribute` alone switched to the users' value, in a blackhole.
fn alone_in_blackhole(case: &Case<'_>, attribute: Attribute) -> String {
    match case.attribution.and_then(|a| a.single(attribute, Side::Checker)) {
        Some(h) if h.ok => {
            format!("still passes ({})", h.status.map_or_else(|| "ok".to_owned(), |s| s.to_string()))
        }
        Some(h) => format!("gets {}", hybrid_result(h)),
        None => "was not tried (cap)".to_owned(),
    }
}

/// What the check does not see about one attribute of a blackhole's compound cause, phrased as
/// what to make the check cover (never a change to the users' request).
fn blind_advice(case: &Case<'_>, attribute: Attribute, diagnosis: Diagnosis) -> String {
    let advice = advice(case, diagnosis);
    let advice = advice.trim_start_matches("; ");
    if advice.is_empty() {
        format!(
            "the check does not send the users' {attribute} ({}): make the health check cover the route \
             users take ({diagnosis})",
            value(attribute, case.client_view)
        )
    } else {
        format!("{advice} ({diagnosis})")
    }
}

/// What the checker got with `attribute` alone switched to the client's value: the single
/// hybrid's result; for the matcher, the checker's own response judged by the client's matcher.
fn alone(case: &Case<'_>, attribute: Attribute) -> String {
    if attribute == Attribute::Matcher {
        return format!("still fails ({})", result(case.checker));
    }
    match case.attribution.and_then(|a| a.single(attribute, Side::Checker)) {
        Some(h) if h.ok => format!("succeeds ({})", hybrid_result(h)),
        Some(h) => format!("still fails ({})", hybrid_result(h)),
        None => "was not tried (cap)".to_owned(),
    }
}

/// What to do about one attribute of a compound cause, phrased as an imperative.
fn part_advice(case: &Case<'_>, c: &CombinedResult, attribute: Attribute, diagnosis: Diagnosis) -> String {
    let status = c.status.map_or_else(|| "the status".to_owned(), |s| s.to_string());
    match diagnosis {
        Diagnosis::StatusMatcherMismatch => format!(
            "the checker's matcher ({}) rejects the {status} the route answers once the rest is fixed: make the \
             check accept {status}, or the route answer a status it accepts",
            ranges(case.checker_view)
        ),
        Diagnosis::HostRouteMismatch => format!(
            "route the checker's Host to the app, or set the check's Host to {}",
            effective_host(case.client_view).unwrap_or_default()
        ),
        _ => {
            let advice = advice(case, diagnosis);
            let advice = advice.trim_start_matches("; ");
            if advice.is_empty() {
                format!("make the check's {attribute} the client's ({})", diagnosis)
            } else {
                format!("{advice} ({diagnosis})")
            }
        }
    }
}

/// What a combination got.
fn combined_result(c: &CombinedResult) -> String {
    match &c.outcome {
        Some(o) => result(o),
        None => "no outcome".to_owned(),
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

/// "a", "a and b", "a, b and c".
fn and_join<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|i| i.to_string()).collect();
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// kube-proxy reports no ready local endpoint while clients are served.
pub(super) fn no_local_endpoints(case: &Case<'_>) -> String {
    let k = case.checker;
    format!(
        "kube-proxy on {} reports localEndpoints=0 ({}) while clients are served: \
         this node has no ready local endpoint, so the LB drains it; right while this node's \
         pods terminate, otherwise check their readiness on this node (kubectl get pods -o wide \
         --field-selector spec.nodeName=<node>)",
        address(k, case.checker_view),
        k.status.map_or_else(|| "no_local_endpoints".to_owned(), |s| s.to_string())
    )
}

/// kube-proxy reports ready endpoints while the client's traffic to the node is not served.
pub(super) fn endpoints_not_serving(case: &Case<'_>) -> String {
    let k = case.checker;
    let count =
        k.local_endpoints.map_or_else(|| "ready endpoints".to_owned(), |n| format!("localEndpoints={n}"));
    format!(
        "kube-proxy on {} reports {count}, so the LB keeps this node, but the client got {} on {}",
        address(k, case.checker_view),
        result(case.client),
        address(case.client, case.client_view)
    )
}

/// The checker's protocol error on its own; `listener_wants_tls` says which way it is wrong.
pub(super) fn protocol_by_code(case: &Case<'_>, listener_wants_tls: bool) -> String {
    let why = if listener_wants_tls {
        "it sends plain HTTP to a TLS listener; check with TLS"
    } else {
        "it speaks TLS to a plain-HTTP listener; check without TLS"
    };
    let tried = case
        .attribution
        .and_then(|a| a.hybrids.iter().find(|h| h.attribute == Attribute::Tls && h.switched == Side::Checker))
        .map(|h| format!(" (with tls switched it still fails: {})", hybrid_result(h)))
        .unwrap_or_default();
    format!("{}: {why}{tried}", situation(case, None))
}

/// The failing view's matcher rejects `status`, which the passing view's accepts.
pub(super) fn status_matcher(case: &Case<'_>, status: u16) -> String {
    let (f, fv, fside) = case.failing();
    let (_, pv, pside) = case.passing();
    format!(
        "{fside} got {status} on {}, which its matcher ({}) rejects; the {pside}'s matcher ({}) accepts it; \
         make the route answer a status both accept",
        address(f, fv),
        ranges(fv),
        ranges(pv)
    )
}

/// The check answered with a redirect its matcher rejects: the Location, the matcher, what the
/// client got, a switch that heals it (if one did), and the advice.
pub(super) fn checker_redirected(case: &Case<'_>) -> String {
    let k = case.checker;
    let kv = case.checker_view;
    let status = k.status.map_or_else(|| "a redirect".to_owned(), |s| s.to_string());
    let location = location_phrase(k);
    let client = case.client;
    let client_side = match (client.ok, client.status) {
        (true, Some(s)) if Some(s) == k.status => {
            format!(
                "; the client gets the same {s} and its matcher ({}) accepts it",
                ranges(case.client_view)
            )
        }
        (true, Some(s)) => format!("; the client is served ({s}) on {}", address(client, case.client_view)),
        _ => format!("; the client gets {} on {}", result(client), address(client, case.client_view)),
    };
    // A switch that heals the check says which difference triggers the redirect.
    let healed = case
        .telling_flips()
        .into_iter()
        .find_map(|a| case.telling_flip(a).filter(|h| h.switched == Side::Checker).map(|h| (a, h)))
        .map(|(a, h)| format!("; with {} the check succeeds", switched_value(a, h)))
        .unwrap_or_default();
    let login = k.location.as_deref().is_some_and(super::looks_like_login);
    let login_note = match (login, case.attribution) {
        (false, _) => "",
        (true, Some(a)) if !a.hybrids.is_empty() => {
            "; the Location looks like a login page, but no switch of the headers confirms missing credentials"
        }
        (true, _) => "; the Location looks like a login page (not confirmed: no hybrid probe switched the headers)",
    };
    let advice = if login {
        " and from authentication, or check a path that answers without credentials".to_owned()
    } else {
        match k.location.as_deref().and_then(redirect_target) {
            // Pointing elsewhere: the scheme and port are what to check instead.
            Some((scheme, port))
                if (scheme.as_str(), Some(port)) != (kv.scheme.as_str(), dialed_port(k, kv)) =>
            {
                format!(", or check the scheme and port the redirect points to ({scheme} on port {port})")
            }
            _ => ", or check the URL the redirect points to".to_owned(),
        }
    };
    format!(
        "checker got {status} on {}{location}, which its matcher ({}) rejects: the check is redirected{client_side}\
         {healed}{login_note}; exempt the health path from the redirect{advice}",
        address(k, kv),
        ranges(kv),
    )
}

/// The port an outcome dialed, else its view's.
fn dialed_port(o: &Outcome, v: &View) -> Option<u16> {
    Some(dialed(o).map_or_else(|| v.dial_endpoint().port, |a| a.port()))
}

/// The checker passes on a redirect while users fail behind it.
pub(super) fn redirect_masks_outage(case: &Case<'_>) -> String {
    let k = case.checker;
    let kv = case.checker_view;
    let c = case.client;
    let cv = case.client_view;
    let status = k.status.map_or_else(|| "a redirect".to_owned(), |s| s.to_string());
    let users_path = {
        let scheme = if cv.scheme.uses_tls() { "https" } else { "http" };
        let host = effective_host(cv).map(|h| format!(", Host {h}")).unwrap_or_default();
        format!("{scheme} to port {}{host}", cv.dial_endpoint().port)
    };
    format!(
        "checker passes on {status} from {}{}, which its matcher ({}) accepts, while the client got {} on {}: \
         the check never reaches what the redirect points to, so the LB keeps a backend users cannot use; \
         make the check follow the users' path ({users_path}) or accept 2xx only",
        address(k, kv),
        location_phrase(k),
        ranges(kv),
        result(c),
        address(c, cv),
    )
}

/// " (Location: https://…)" or " (no Location header)".
fn location_phrase(o: &Outcome) -> String {
    match &o.location {
        Some(l) => format!(" (Location: {l})"),
        None => " (no Location header)".to_owned(),
    }
}

/// `("https", 443)`: the scheme and port an absolute `http`/`https` Location points to (`None`
/// for a relative one, or another scheme without a port).
fn redirect_target(location: &str) -> Option<(String, u16)> {
    let parts = location_parts(location);
    let (scheme, authority) = (parts.scheme?, parts.authority?);
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    // An IPv6 literal's colons are inside its brackets.
    let port = match hostport.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') && !host.is_empty() => port.parse::<u16>().ok(),
        _ => None,
    };
    let scheme = scheme.to_ascii_lowercase();
    let port = port.or(match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })?;
    Some((scheme, port))
}

/// A TCP or TLS check passing while the client fails at `phase`.
pub(super) fn layer4_check(case: &Case<'_>, phase: Phase) -> String {
    let k = case.checker_view;
    let c = case.client;
    format!(
        "the checker only completes a {} handshake on {} and passes; the client got {} at the {phase} layer \
         on {}: the check does not exercise HTTP",
        if k.scheme.uses_tls() { "TCP+TLS" } else { "TCP" },
        address(case.checker, k),
        result(c),
        address(c, case.client_view)
    )
}

/// The error's likely `attribute`, which the views differ in, with no hybrid probe to confirm it.
pub(super) fn unconfirmed_hint(case: &Case<'_>, attribute: Attribute) -> String {
    format!(
        "{}; the views differ in {attribute} (checker: {}; client: {}), \
         not confirmed: no hybrid probe ran",
        situation(case, None),
        value(attribute, case.checker_view),
        value(attribute, case.client_view)
    )
}

/// No switch explains the disagreement: why (attribution off, nothing to switch, the cap, every
/// hybrid tried) and what differs that parallax does not switch.
pub(super) fn unattributed(case: &Case<'_>) -> String {
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
    format!("{}{suffix}; {why}{unswitched}", situation(case, None))
}

/// How two views differ beyond the attributes hybrids switch (protocol details of a checker's
/// request; the HTTP version is an attribute now, `http_version`): the likely place to look when no switch explains a disagreement.
pub(super) fn unswitched_differences(client: &View, checker: &View) -> Vec<String> {
    let mut out = Vec::new();
    let both_http = client.scheme.uses_http() && checker.scheme.uses_http();
    if both_http {
        let (c, k) = (&client.http, &checker.http);
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

/// What a hybrid got, as [`result`] says it.
fn hybrid_result(h: &HybridResult) -> String {
    match &h.outcome {
        Some(o) => result(o),
        None => "no outcome".to_owned(),
    }
}

/// Where an outcome went: the dialed address, or the view's endpoint when it got no further
/// than DNS.
fn address(o: &Outcome, v: &View) -> String {
    dialed(o).map_or_else(|| v.dial_endpoint().to_string(), |a| a.to_string())
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
        Attribute::Path => format!("path {}", v.path_display()),
        Attribute::Method => format!("method {}", v.http.method),
        // Names only: values may be secrets.
        // A checker's identity headers are part of it, not of what a `headers` switch changes.
        Attribute::Headers => match suspect_headers(v) {
            headers if headers.is_empty() => "no extra headers".to_owned(),
            headers => format!("the headers [{}]", join(headers.iter().map(|(name, _)| name.as_str()))),
        },
        Attribute::UserAgent => match &v.http.user_agent {
            Some(ua) => format!("User-Agent {ua}"),
            None => "no User-Agent".to_owned(),
        },
        Attribute::HttpVersion => effective_http_version(v).to_owned(),
        Attribute::Matcher => format!("matcher {}", ranges(v)),
    }
}

/// "200-399", "200, 204": a view's status matcher.
fn ranges(v: &View) -> String {
    join(v.expect.status.iter().map(|r| {
        if r.start() == r.end() {
            r.start().to_string()
        } else {
            format!("{}-{}", r.start(), r.end())
        }
    }))
}

/// "a, b, c".
pub(in crate::diff) fn join<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}
