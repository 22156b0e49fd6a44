//! Ingress (`networking.k8s.io/v1`) rules × paths -> users' requests.
//!
//! A rule's `host` is what users request (a wildcard, `*.example.com`, matches exactly one label
//! per the IngressRule documentation of `k8s.io/api/networking/v1/types.go`, and needs
//! `parallax.io/client-host`); the path is `Exact` or `Prefix` (`ImplementationSpecific`, or a
//! path that looks like a regex, has no one URL); TLS when the host is in `tls[].hosts`; users
//! dial 443 (TLS) or 80 at `status.loadBalancer.ingress`.

use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressSpec};

use super::super::facts;
use super::{
    regex_like, sorted, Backend, BackendPort, Context, ObjectRef, Request, Routes, CLIENT_HOST, CLIENT_URL,
};
use crate::config::{Condition, ConditionKind, TlsEntry};
use crate::discovery::kubernetes::cluster::annotations;

/// The field the addresses of an Ingress come from.
const ADDRESSES: &str = "status.loadBalancer.ingress";

/// Adds the requests of every selected Ingress to `routes`.
pub(super) fn requests(ctx: &Context<'_>, routes: &mut Routes) {
    for ingress in sorted(&ctx.cluster.ingresses, |i| &i.metadata) {
        let Some(spec) = &ingress.spec else { continue };
        let source = ObjectRef::of("Ingress", &ingress.metadata);
        let addresses = addresses(ingress);
        let conditions: Vec<Condition> = class_unclaimed(ctx, ingress, &source).into_iter().collect();
        for rule in spec.rules.iter().flatten() {
            let paths: &[HTTPIngressPath] = rule.http.as_ref().map_or(&[], |h| &h.paths);
            let backends: Vec<Backend> = paths.iter().filter_map(|p| backend(&source, p)).collect();
            let host = match rule_host(ingress, rule.host.as_deref()) {
                Ok(host) => host,
                Err(message) => {
                    routes.skip(&source, backends, message);
                    continue;
                }
            };
            let tls = host.as_deref().is_some_and(|h| in_tls(spec, h));
            for path in paths {
                let Some(backend) = backend(&source, path) else { continue };
                let value = path.path.clone().unwrap_or_else(|| "/".to_owned());
                let shown = host.as_deref().unwrap_or("(every host)");
                let route = format!("{source} rule {shown} {} {value}", path.path_type);
                if let Some(message) = unusable_path(&path.path_type, &value) {
                    routes.skip(&source, vec![backend], message);
                    continue;
                }
                routes.requests.push(Request {
                    source: source.clone(),
                    prefix: "ingress",
                    host: host.clone(),
                    path: value,
                    tls,
                    port: if tls { 443 } else { 80 },
                    addresses: addresses.clone(),
                    addresses_field: ADDRESSES.to_owned(),
                    backends: vec![backend],
                    route,
                    comments: Vec::new(),
                    tls_entries: host.as_deref().map(|h| tls_entries(&source, spec, h)).unwrap_or_default(),
                    conditions: conditions.clone(),
                });
            }
        }
    }
}

/// The host users request for a rule: its `host`, or for a wildcard the `parallax.io/client-host`
/// annotation (which must match it); `None` for a rule without host. `Err`: why the rule is
/// skipped.
fn rule_host(ingress: &Ingress, host: Option<&str>) -> Result<Option<String>, String> {
    let Some(host) = host.filter(|h| !h.is_empty()) else { return Ok(None) };
    let Some(suffix) = host.strip_prefix("*.") else { return Ok(Some(host.to_ascii_lowercase())) };
    match annotations(&ingress.metadata).get(CLIENT_HOST) {
        Some(client) if one_label_under(client, suffix) => Ok(Some(client.to_ascii_lowercase())),
        Some(client) => Err(format!(
            "{CLIENT_HOST} {client} is not a host the wildcard rule {host} takes (one label before .{suffix}): \
             the rule is skipped; set it to a name such as shop.{suffix}"
        )),
        None => Err(format!(
            "the rule's host {host} is a wildcard, which no probe can request: set {CLIENT_HOST} on the Ingress \
             to the name users request (e.g. shop.{suffix})"
        )),
    }
}

/// Whether `host` is one DNS label followed by `.suffix` (an Ingress wildcard's match).
fn one_label_under(host: &str, suffix: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host.strip_suffix(&format!(".{}", suffix.to_ascii_lowercase()))
        .is_some_and(|label| !label.is_empty() && !label.contains(['.', '*']))
}

/// Whether users reach `host` over TLS: it is in a `tls[].hosts` (exactly, or under a wildcard).
fn in_tls(spec: &IngressSpec, host: &str) -> bool {
    spec.tls.iter().flatten().flat_map(|t| t.hosts.iter().flatten()).any(|tls_host| {
        let tls_host = tls_host.to_ascii_lowercase();
        match tls_host.strip_prefix("*.") {
            Some(suffix) => one_label_under(host, suffix),
            None => tls_host == host,
        }
    })
}

/// The `tls[]` entries of `spec` whose hosts take `host`, with their Secrets.
fn tls_entries(source: &ObjectRef, spec: &IngressSpec, host: &str) -> Vec<TlsEntry> {
    let takes = |tls_host: &String| {
        let tls_host = tls_host.to_ascii_lowercase();
        match tls_host.strip_prefix("*.") {
            Some(suffix) => one_label_under(host, suffix),
            None => tls_host == host,
        }
    };
    let mut out = Vec::new();
    for (i, tls) in spec.tls.iter().flatten().enumerate() {
        let hosts = tls.hosts.clone().unwrap_or_default();
        if !hosts.iter().any(takes) {
            continue;
        }
        // No secretName: the controller serves its default certificate (said as such).
        let secret = tls.secret_name.as_deref().unwrap_or("(none: the controller's default certificate)");
        out.push(facts::tls_entry(format!("{source} tls[{i}]"), hosts, &source.namespace, secret));
    }
    out
}

/// `ingress_class_unclaimed`: `spec.ingressClassName` names no IngressClass, so no controller
/// that follows IngressClasses serves the Ingress. (An Ingress without a class, or with the old
/// `kubernetes.io/ingress.class` annotation, may be served by a controller configured so; no
/// claim is made about it.)
fn class_unclaimed(ctx: &Context<'_>, ingress: &Ingress, source: &ObjectRef) -> Option<Condition> {
    let class = ingress.spec.as_ref()?.ingress_class_name.as_deref()?;
    if !ctx.cluster.ingress_classes_complete
        || ctx.cluster.ingress_classes.iter().any(|c| c.metadata.name.as_deref() == Some(class))
    {
        return None;
    }
    let known: Vec<&str> =
        ctx.cluster.ingress_classes.iter().filter_map(|c| c.metadata.name.as_deref()).collect();
    let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
    Some(Condition {
        kind: ConditionKind::IngressClassUnclaimed,
        object: source.to_string(),
        target: None,
        reason: None,
        message: format!(
            "spec.ingressClassName {class} names no IngressClass (the cluster has: {known}), so no controller serves \
             {source}: its hosts get another controller's default backend or nothing; set ingressClassName to the \
             class of the controller that should serve it, or install that controller"
        ),
    })
}

/// Why a path gives no request (`ImplementationSpecific`, a regex), or `None`.
fn unusable_path(path_type: &str, path: &str) -> Option<String> {
    let what = match path_type {
        "Exact" | "Prefix" if regex_like(path) => {
            "looks like a regex (controllers such as ingress-nginx read it so)"
        }
        "Exact" | "Prefix" => return None,
        "ImplementationSpecific" => "is ImplementationSpecific (its meaning is the controller's)",
        _ => "has an unknown pathType",
    };
    Some(format!(
        "the path {path} {what}: no one URL stands for it, so it is skipped; set {CLIENT_URL} on the Service it \
         leads to (node mode), or write the target in probes.d"
    ))
}

/// The Service port a path leads to (`None`: a resource backend, which parallax does not probe).
fn backend(source: &ObjectRef, path: &HTTPIngressPath) -> Option<Backend> {
    let service = path.backend.service.as_ref()?;
    let port = service.port.as_ref()?;
    let port = match (&port.name, port.number) {
        (Some(name), _) if !name.is_empty() => BackendPort::Name(name.clone()),
        (_, Some(number)) => BackendPort::Number(number),
        _ => return None,
    };
    Some(Backend { namespace: source.namespace.clone(), name: service.name.clone(), port })
}

/// The Ingress's LB addresses (IP, else hostname, each), in the status's order.
fn addresses(ingress: &Ingress) -> Vec<String> {
    let ingress =
        ingress.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
    ingress.into_iter().flatten().filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone())).collect()
}
