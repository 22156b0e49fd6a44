//! Gateway API: HTTPRoutes attached to Programmed Gateways -> users' requests.
//!
//! A route attaches through `parentRefs` (a Gateway, optionally one listener by `sectionName` or
//! `port`) once its `status.parents[]` entry for that parent says `Accepted=True`; the Gateway
//! must say `Programmed=True`. Per listener (HTTP or HTTPS: an HTTPRoute attaches to no other),
//! the hostnames are the route's ∩ the listener's, a route without hostnames inheriting the
//! listener's (`apis/v1/httproute_types.go`, `Hostnames`: `*.example.com` matches any name
//! ending in `.example.com`, at any depth, and not `example.com`); a wildcard that remains needs
//! `parallax.io/client-host`. Paths come from `matches[].path` (`Exact`, `PathPrefix`; a rule
//! without matches is `PathPrefix /`); users dial `Gateway.status.addresses` at the listener port.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::{
    regex_like, sorted, Backend, BackendPort, Context, ObjectRef, Request, Routes, CLIENT_HOST, CLIENT_URL,
};
use crate::config::{Condition as Finding, ConditionKind};
use crate::discovery::kubernetes::cluster::{
    annotations, Gateway, HttpRoute, Listener, ParentRef, RouteMatch,
};

/// The group of Gateway API objects, a `parentRefs[].group`'s default.
const GROUP: &str = "gateway.networking.k8s.io";

/// Adds the requests of every selected HTTPRoute to `routes`.
pub(super) fn requests(ctx: &Context<'_>, routes: &mut Routes) {
    for route in sorted(&ctx.cluster.http_routes, |r| &r.metadata) {
        let source = ObjectRef::of("HTTPRoute", &route.metadata);
        let backends = backends(route, &source.namespace);
        for parent in &route.spec.parent_refs {
            if parent.group.as_deref().is_some_and(|g| g != GROUP)
                || parent.kind.as_deref().is_some_and(|k| k != "Gateway")
            {
                continue;
            }
            let mut findings = Vec::new();
            match attached(ctx, route, &source, parent, &mut findings) {
                Ok((gateway, listeners)) => {
                    let before = routes.requests.len();
                    for listener in listeners {
                        listener_requests(route, &source, gateway, listener, &findings, routes);
                    }
                    if routes.requests.len() == before {
                        // No request carries them to a target: said on their own.
                        routes.conditions.extend(findings);
                    }
                }
                Err(message) => {
                    routes.skip(&source, backends.clone(), message);
                    // Said even with no target to carry them: the API's own verdict.
                    routes.conditions.extend(findings);
                }
            }
        }
    }
}

/// The Gateway `parent` names and its listeners the route is attached to, or why it carries no
/// traffic there. What the API says against the route carrying traffic (the Gateway not
/// Programmed, the route not Accepted, its refs not resolved) goes to `findings`: when the
/// Gateway has an address the route is probed all the same, for users request its hosts there.
fn attached<'c>(
    ctx: &'c Context<'_>,
    route: &HttpRoute,
    source: &ObjectRef,
    parent: &ParentRef,
    findings: &mut Vec<Finding>,
) -> Result<(&'c Gateway, Vec<&'c Listener>), String> {
    let gateway_ns = parent.namespace.as_deref().unwrap_or(&source.namespace);
    let shown = format!("Gateway {gateway_ns}/{}", parent.name);
    let gateway = ctx
        .cluster
        .gateways
        .iter()
        .find(|g| g.metadata.namespace.as_deref() == Some(gateway_ns) && g.metadata.name.as_deref() == Some(&parent.name))
        .ok_or_else(|| {
            format!("its parent {shown} is not selected (give it the selector's label) or does not exist: not probed there")
        })?;
    let conditions = gateway.status.as_ref().map_or(&[][..], |s| &s.conditions[..]);
    let has_address = gateway.status.as_ref().is_some_and(|s| !s.addresses.is_empty());
    if let Some(why) = not_true(conditions, "Programmed") {
        if let Some(c) = is_false(conditions, "Programmed") {
            findings.push(Finding {
                kind: ConditionKind::GatewayNotProgrammed,
                object: shown.clone(),
                target: None,
                reason: Some(c.reason.clone()),
                message: format!(
                    "{shown} says Programmed=False ({}{}): its data plane is not (or no longer) configured as \
                     the spec says, so its listeners may refuse connections, serve no TLS or an old configuration; \
                     look at the Gateway's status and the controller's logs",
                    c.reason,
                    if c.message.is_empty() { String::new() } else { format!(": {}", c.message) }
                ),
            });
        }
        if !has_address || findings.is_empty() {
            return Err(format!(
                "{shown} is not Programmed ({why}): it carries no traffic yet, so the route is not probed"
            ));
        }
    }
    let status = route.status.as_ref().map_or(&[][..], |s| &s.parents[..]);
    let entry = status.iter().find(|p| {
        let entry_ns = p.parent_ref.namespace.as_deref().unwrap_or(&source.namespace);
        p.parent_ref.name == parent.name
            && entry_ns == gateway_ns
            && p.parent_ref.section_name == parent.section_name
            && p.parent_ref.port == parent.port
    });
    let Some(entry) = entry else {
        return Err(format!(
            "not yet accepted by {shown}: no status.parents entry for it; not probed there yet"
        ));
    };
    if not_true(&entry.conditions, "Accepted").is_some() {
        let Some(c) = is_false(&entry.conditions, "Accepted") else {
            return Err(format!("not yet accepted by {shown}: no Accepted condition; not probed there yet"));
        };
        findings.push(Finding {
            kind: ConditionKind::RouteNotAccepted,
            object: source.to_string(),
            target: None,
            reason: Some(c.reason.clone()),
            message: format!(
                "{source} is not Accepted by {shown} (reason {}{}): the Gateway does not route its hostnames, so \
                 users get 404 or another route; fix what the reason names (the listener's allowedRoutes \
                 namespaces or kinds, a hostname no listener takes, the sectionName or port of the parentRef)",
                c.reason,
                if c.message.is_empty() { String::new() } else { format!(": {}", c.message) }
            ),
        });
    }
    if let Some(c) = is_false(&entry.conditions, "ResolvedRefs") {
        findings.push(Finding {
            kind: ConditionKind::BackendRefUnresolved,
            object: source.to_string(),
            target: None,
            reason: Some(c.reason.clone()),
            message: format!(
                "{source} says ResolvedRefs=False on {shown} (reason {}{}): a backendRef names a Service that does not \
                 exist, or one in another namespace without a ReferenceGrant, so its requests get 500 (or 503); fix \
                 the backendRef or add the ReferenceGrant",
                c.reason,
                if c.message.is_empty() { String::new() } else { format!(": {}", c.message) }
            ),
        });
    }
    if !has_address && !findings.is_empty() {
        return Err(format!("{shown} has no address in its status: the route is not probed"));
    }
    let listeners: Vec<&Listener> = gateway
        .spec
        .listeners
        .iter()
        .filter(|l| parent.section_name.as_ref().is_none_or(|s| *s == l.name))
        .filter(|l| parent.port.is_none_or(|p| p == l.port))
        .filter(|l| takes_http_routes(l))
        .collect();
    if listeners.is_empty() {
        return Err(format!(
            "{shown} has no HTTP or terminating HTTPS listener this parentRef names: not probed there"
        ));
    }
    Ok((gateway, listeners))
}

/// Whether an HTTPRoute can attach to `listener`: `HTTP`, or `HTTPS` terminating TLS (a
/// `Passthrough` listener takes TLSRoutes only, `apis/v1/gateway_types.go`).
fn takes_http_routes(listener: &Listener) -> bool {
    let passthrough = listener.tls.as_ref().and_then(|t| t.mode.as_deref()) == Some("Passthrough");
    listener.protocol == "HTTP" || (listener.protocol == "HTTPS" && !passthrough)
}

/// The condition `type_` when its status is `False`.
fn is_false<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_ && c.status == "False")
}

/// `None` when `conditions` hold `type_` with status `True`; else what they say instead.
fn not_true(conditions: &[Condition], type_: &str) -> Option<String> {
    match conditions.iter().find(|c| c.type_ == type_) {
        Some(c) if c.status == "True" => None,
        Some(c) if c.message.is_empty() => Some(format!("{type_}={}, reason {}", c.status, c.reason)),
        Some(c) => Some(format!("{type_}={}, reason {}: {}", c.status, c.reason, c.message)),
        None => Some(format!("no {type_} condition in its status yet")),
    }
}

/// The requests of `route` on one `listener` of `gateway`: each hostname × rule × match.
fn listener_requests(
    route: &HttpRoute,
    source: &ObjectRef,
    gateway: &Gateway,
    listener: &Listener,
    findings: &[Finding],
    routes: &mut Routes,
) {
    let backends = backends(route, &source.namespace);
    let gateway_ref = ObjectRef::of("Gateway", &gateway.metadata);
    let hostnames = intersect(&route.spec.hostnames, listener.hostname.as_deref());
    if hostnames.is_empty() {
        let message = format!(
            "no hostname of the route ({}) is one {gateway_ref} listener {} takes ({}): not probed there \
             (NoMatchingListenerHostname)",
            route.spec.hostnames.join(", "),
            listener.name,
            listener.hostname.as_deref().unwrap_or("every host")
        );
        routes.skip(source, backends, message);
        return;
    }
    let addresses: Vec<String> =
        gateway.status.iter().flat_map(|s| &s.addresses).map(|a| a.value.clone()).collect();
    for hostname in hostnames {
        let host = match concrete(route, hostname) {
            Ok(host) => host,
            Err(message) => {
                routes.skip(source, backends.clone(), message);
                continue;
            }
        };
        let on = format!("on {gateway_ref} listener {}", listener.name);
        let base = Request {
            source: source.clone(),
            prefix: "route",
            host,
            path: String::new(),
            tls: listener.protocol == "HTTPS",
            port: listener.port,
            addresses: addresses.clone(),
            addresses_field: format!("{gateway_ref} status.addresses"),
            backends: Vec::new(),
            route: on,
            comments: Vec::new(),
            tls_entries: listener_tls(&gateway_ref, listener),
            conditions: findings.to_vec(),
        };
        rule_requests(route, &base, routes);
    }
}

/// The TLS entries of an HTTPS listener: its `certificateRefs` (Secrets), for its hostname.
fn listener_tls(gateway: &ObjectRef, listener: &Listener) -> Vec<crate::config::TlsEntry> {
    let Some(tls) = listener.tls.as_ref().filter(|_| listener.protocol == "HTTPS") else { return Vec::new() };
    let hosts = vec![listener.hostname.clone().unwrap_or_else(|| "*".to_owned())];
    tls.certificate_refs
        .iter()
        .filter(|r| r.kind.as_deref().is_none_or(|k| k == "Secret"))
        .map(|r| {
            let namespace = r.namespace.as_deref().unwrap_or(&gateway.namespace);
            let source = format!("{gateway} listener {}", listener.name);
            super::super::facts::tls_entry(source, hosts.clone(), namespace, &r.name)
        })
        .collect()
}

/// The requests of every rule × match of `route`, each `base` with its path and backends.
fn rule_requests(route: &HttpRoute, base: &Request, routes: &mut Routes) {
    let every_path = [RouteMatch::default()];
    for (i, rule) in route.spec.rules.iter().enumerate() {
        let backends: Vec<Backend> =
            rule.backend_refs.iter().filter_map(|b| backend(b, &base.source.namespace)).collect();
        let matches = if rule.matches.is_empty() { &every_path[..] } else { &rule.matches[..] };
        for m in matches {
            let kind = m.path.as_ref().and_then(|p| p.type_.as_deref()).unwrap_or("PathPrefix");
            let path = m.path.as_ref().and_then(|p| p.value.clone()).unwrap_or_else(|| "/".to_owned());
            if kind == "RegularExpression" || !matches!(kind, "Exact" | "PathPrefix") || regex_like(&path) {
                let message = format!(
                    "rule {i}: the {kind} path {path} has no one URL, so it is skipped; set {CLIENT_URL} on the \
                     Service it leads to (node mode), or write the target in probes.d"
                );
                routes.skip(&base.source, backends.clone(), message);
                continue;
            }
            let host = base.host.as_deref().unwrap_or("(every host)");
            let mut request = base.clone();
            request.route = format!("{} {} hostname {host} {kind} {path}", base.source, base.route);
            request.path = path;
            request.backends = backends.clone();
            request.comments = unmatched(i, m);
            routes.requests.push(request);
        }
    }
}

/// What a match asks of a request besides its path, which the probe does not send.
fn unmatched(rule: usize, m: &RouteMatch) -> Vec<String> {
    let mut what = Vec::new();
    if !m.headers.is_empty() {
        what.push("headers");
    }
    if !m.query_params.is_empty() {
        what.push("query parameters");
    }
    if m.method.is_some() {
        what.push("a method");
    }
    if what.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "rule {rule} also matches {}, which the probe does not send: the Gateway may route it elsewhere; add them \
         to the client view (headers, method) if they matter",
        what.join(" and ")
    )]
}

/// The hostnames `route` serves on a listener with `listener` hostname (`None`: every host, the
/// users' request then names the Gateway's address).
fn intersect(route: &[String], listener: Option<&str>) -> Vec<Option<String>> {
    let listener = listener.filter(|l| !l.is_empty()).map(str::to_ascii_lowercase);
    let mut hostnames: Vec<Option<String>> = match (route.is_empty(), listener) {
        (true, listener) => vec![listener],
        (false, None) => route.iter().map(|h| Some(h.to_ascii_lowercase())).collect(),
        (false, Some(listener)) => {
            route.iter().filter_map(|h| intersection(&h.to_ascii_lowercase(), &listener)).map(Some).collect()
        }
    };
    hostnames.dedup();
    hostnames
}

/// The names both `a` and `b` match, as one hostname (the more specific), if any.
fn intersection(a: &str, b: &str) -> Option<String> {
    if a == b {
        return Some(a.to_owned());
    }
    match (a.strip_prefix("*."), b.strip_prefix("*.")) {
        (Some(sa), Some(sb)) if under(sa, sb) => Some(a.to_owned()),
        (Some(sa), Some(sb)) if under(sb, sa) => Some(b.to_owned()),
        (Some(sa), None) if under(b, sa) => Some(b.to_owned()),
        (None, Some(sb)) if under(a, sb) => Some(a.to_owned()),
        _ => None,
    }
}

/// Whether `host` ends with `.suffix` (a Gateway API wildcard's match, at any depth).
fn under(host: &str, suffix: &str) -> bool {
    host.strip_suffix(suffix).is_some_and(|rest| rest.len() > 1 && rest.ends_with('.'))
}

/// A concrete host for `hostname`: itself, or for a wildcard `parallax.io/client-host` (which
/// must match it). `Err`: why it is skipped.
fn concrete(route: &HttpRoute, hostname: Option<String>) -> Result<Option<String>, String> {
    let Some(hostname) = hostname else { return Ok(None) };
    let Some(suffix) = hostname.strip_prefix("*.") else { return Ok(Some(hostname)) };
    match annotations(&route.metadata).get(CLIENT_HOST).map(|c| c.to_ascii_lowercase()) {
        Some(client) if under(&client, suffix) && !client.contains('*') => Ok(Some(client)),
        Some(client) => Err(format!(
            "{CLIENT_HOST} {client} is not a name the wildcard hostname {hostname} takes: skipped; set it to a name \
             such as shop.{suffix}"
        )),
        None => Err(format!(
            "the hostname {hostname} is a wildcard, which no probe can request: set {CLIENT_HOST} on the HTTPRoute to \
             the name users request (e.g. shop.{suffix})"
        )),
    }
}

/// Every Service port `route`'s rules send to.
fn backends(route: &HttpRoute, namespace: &str) -> Vec<Backend> {
    route.spec.rules.iter().flat_map(|r| &r.backend_refs).filter_map(|b| backend(b, namespace)).collect()
}

/// The Service port a backendRef names (`None`: another kind, or no port).
fn backend(b: &crate::discovery::kubernetes::cluster::BackendRef, namespace: &str) -> Option<Backend> {
    let core =
        b.group.as_deref().is_none_or(str::is_empty) && b.kind.as_deref().is_none_or(|k| k == "Service");
    let port = b.port.filter(|_| core)?;
    Some(Backend {
        namespace: b.namespace.clone().unwrap_or_else(|| namespace.to_owned()),
        name: b.name.clone(),
        port: BackendPort::Number(i32::from(port)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_intersect_as_httproute_types_go_says() {
        let route = |hs: &[&str]| hs.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>();
        let some = |h: &str| Some(h.to_owned());
        assert_eq!(intersect(&[], Some("*.example.com")), vec![some("*.example.com")]);
        assert_eq!(intersect(&[], None), vec![None]);
        assert_eq!(intersect(&route(&["Shop.example.com"]), None), vec![some("shop.example.com")]);
        assert_eq!(
            intersect(
                &route(&["test.example.com", "test.example.net", "a.b.example.com"]),
                Some("*.example.com")
            ),
            vec![some("test.example.com"), some("a.b.example.com")]
        );
        assert_eq!(
            intersect(&route(&["*.example.com"]), Some("shop.example.com")),
            vec![some("shop.example.com")]
        );
        assert_eq!(
            intersect(&route(&["*.foo.example.com"]), Some("*.example.com")),
            vec![some("*.foo.example.com")]
        );
        assert_eq!(
            intersect(&route(&["*.example.com"]), Some("*.foo.example.com")),
            vec![some("*.foo.example.com")]
        );
        assert_eq!(intersect(&route(&["example.com"]), Some("*.example.com")), Vec::<Option<String>>::new());
        assert_eq!(intersect(&route(&["bar.com"]), Some("foo.com")), Vec::<Option<String>>::new());
    }
}
