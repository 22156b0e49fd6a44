//! The cluster's state behind each target (`[target.cluster]`: endpoints here and elsewhere,
//! traffic policy, health port, the hosts and TLS entries of the routes) and the conditions that
//! need no probe (`[[condition]]`), which diagnoses join with what the probes see
//! (docs/kubernetes.md, "The cluster's state as evidence").

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use super::super::cluster::{labels, Cluster};
use super::routes::Request;
use super::{name, ns};
use crate::config::{ClusterFacts, Condition, ConditionKind, TlsEntry};

/// A Service's endpoints, by kube-proxy's rules: ready when `ready` is true or unset;
/// terminating when `terminating` is true. Each address counted once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Endpoints {
    /// Whether any EndpointSlice of the Service is known (its slices are watched only when it is
    /// selected): without, nothing is claimed about its endpoints.
    pub(super) known: bool,
    /// Ready endpoints, on every node.
    pub(super) ready: u32,
    /// Ready endpoints on this node.
    pub(super) local_ready: u32,
    /// Terminating endpoints on this node.
    pub(super) local_terminating: u32,
    /// Ready endpoints by node name (`?` for an endpoint without `nodeName`).
    pub(super) by_node: BTreeMap<String, u32>,
}

/// The endpoints of Service `namespace/service`, `node` being this node.
pub(super) fn endpoints(cluster: &Cluster, namespace: &str, service: &str, node: Option<&str>) -> Endpoints {
    let mut out = Endpoints::default();
    let mut seen: Vec<IpAddr> = Vec::new();
    for slice in &cluster.endpoint_slices {
        let owner = labels(&slice.metadata).get("kubernetes.io/service-name").map(String::as_str);
        if slice.metadata.namespace.as_deref().unwrap_or("default") != namespace || owner != Some(service) {
            continue;
        }
        out.known = true;
        for endpoint in &slice.endpoints {
            let Some(ip) = endpoint.addresses.iter().find_map(|a| a.parse::<IpAddr>().ok()) else { continue };
            if seen.contains(&ip) {
                continue;
            }
            seen.push(ip);
            let conditions = endpoint.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready) != Some(false);
            let terminating = conditions.and_then(|c| c.terminating) == Some(true);
            let local = node.is_some() && endpoint.node_name.as_deref() == node;
            if ready {
                out.ready += 1;
                *out.by_node
                    .entry(endpoint.node_name.clone().unwrap_or_else(|| "?".to_owned()))
                    .or_default() += 1;
                if local {
                    out.local_ready += 1;
                }
            }
            if terminating && local {
                out.local_terminating += 1;
            }
        }
    }
    out
}

/// The facts of a node-mode target of `service`, reached by `requests` (the routes to its port).
pub(super) fn service_facts(
    cluster: &Cluster,
    node: Option<&str>,
    service: &Service,
    requests: &[&Request],
) -> ClusterFacts {
    let spec = service.spec.as_ref();
    let endpoints = endpoints(cluster, ns(service), name(service), node);
    let etp = spec.and_then(|s| s.external_traffic_policy.clone());
    let hcnp = spec
        .and_then(|s| s.health_check_node_port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0 && etp.as_deref() == Some("Local"));
    let mut facts = ClusterFacts {
        object: format!("Service {}/{}", ns(service), name(service)),
        node: node.map(str::to_owned),
        backends: vec![format!("{}/{}", ns(service), name(service))],
        traffic_policy: etp,
        health_check_node_port: hcnp,
        ..ClusterFacts::default()
    };
    set_endpoints(&mut facts, &endpoints, node.is_some());
    add_routes(&mut facts, requests);
    facts
}

/// The facts of an external-mode target of `request`: its backends' endpoints when every one of
/// them is selected (else unknown), the hosts and TLS entries of the route.
pub(super) fn request_facts(cluster: &Cluster, request: &Request) -> ClusterFacts {
    let mut facts = ClusterFacts {
        object: request.source.to_string(),
        backends: request.backends.iter().map(|b| format!("{}/{}", b.namespace, b.name)).collect(),
        ..ClusterFacts::default()
    };
    facts.backends.dedup();
    if let Some(endpoints) = backends_endpoints(cluster, request) {
        set_endpoints(&mut facts, &endpoints, false);
    }
    add_routes(&mut facts, &[request]);
    facts
}

/// The endpoints of every backend of `request` together, when each backend Service is selected
/// (its EndpointSlices watched); `None` otherwise.
pub(super) fn backends_endpoints(cluster: &Cluster, request: &Request) -> Option<Endpoints> {
    if request.backends.is_empty() {
        return None;
    }
    let mut total = Endpoints { known: true, ..Endpoints::default() };
    for b in &request.backends {
        let selected = cluster.services.iter().any(|s| ns(s) == b.namespace && name(s) == b.name);
        if !selected {
            return None;
        }
        let e = endpoints(cluster, &b.namespace, &b.name, None);
        total.ready += e.ready;
        for (node, n) in e.by_node {
            *total.by_node.entry(node).or_default() += n;
        }
    }
    Some(total)
}

fn set_endpoints(facts: &mut ClusterFacts, e: &Endpoints, node_mode: bool) {
    if !e.known {
        // No EndpointSlice of the Service at all (a Service without selector whose slices are
        // written by hand, or none yet): nothing to count from.
        return;
    }
    facts.ready_endpoints = Some(e.ready);
    if node_mode {
        facts.local_ready_endpoints = Some(e.local_ready);
        facts.local_terminating_endpoints = Some(e.local_terminating);
    }
    facts.endpoint_nodes = e.by_node.iter().map(|(node, n)| format!("{node}: {n}")).collect();
}

fn add_routes(facts: &mut ClusterFacts, requests: &[&Request]) {
    for r in requests {
        if let Some(host) = &r.host {
            if !facts.route_hosts.contains(host) {
                facts.route_hosts.push(host.clone());
            }
        }
        for t in &r.tls_entries {
            if !facts.tls.contains(t) {
                facts.tls.push(t.clone());
            }
        }
    }
}

/// `no_ready_endpoints`: the users' requests of `target` go to Services (`backends`) none of
/// which has a ready endpoint on any node.
pub(super) fn no_ready_endpoints(facts: &ClusterFacts, target: &str) -> Option<Condition> {
    if facts.ready_endpoints != Some(0) {
        return None;
    }
    let services = facts.backends.iter().map(|b| format!("Service {b}")).collect::<Vec<_>>().join(", ");
    Some(Condition {
        kind: ConditionKind::NoReadyEndpoints,
        object: services.clone(),
        target: Some(target.into()),
        reason: None,
        message: format!(
            "{services} has no ready endpoint on any node (its EndpointSlices list none ready): every request \
             {} sends there fails (502/503 from a proxy, refused by kube-proxy); look at the pods: \
             `kubectl get pods -l <the Service's selector>`, their readiness probes and events",
            facts.object
        ),
    })
}

/// `vip_without_health_check`: a MetalLB Service with `externalTrafficPolicy: Cluster` and no
/// ready endpoint: no checker withdraws the VIP, so it is announced and fails.
pub(super) fn vip_without_health_check(
    facts: &ClusterFacts,
    target: &str,
    addresses: &[String],
) -> Option<Condition> {
    if facts.ready_endpoints != Some(0)
        || facts.traffic_policy.as_deref() == Some("Local")
        || addresses.is_empty()
    {
        return None;
    }
    Some(Condition {
        kind: ConditionKind::VipWithoutHealthCheck,
        object: facts.object.clone(),
        target: Some(target.into()),
        reason: None,
        message: format!(
            "{} has no ready endpoint while MetalLB announces {} (externalTrafficPolicy Cluster: every node \
             announces and none checks the endpoints), so users are drawn to an address that cannot serve them; \
             fix the pods, or use externalTrafficPolicy Local so that only nodes with a ready endpoint announce",
            facts.object,
            addresses.join(", ")
        ),
    })
}

/// `lb_address_pending`: `object` (a LoadBalancer Service, an Ingress) has no address in
/// `field` yet.
pub(super) fn lb_address_pending(object: String, field: &str) -> Condition {
    Condition {
        kind: ConditionKind::LbAddressPending,
        message: format!(
            "{object} has no {field} yet: the controller has not provisioned a load balancer or cannot publish its \
             address (look at the object's events: `kubectl describe`, and at the controller's logs); users \
             cannot reach it, and there is nothing to probe until it has one"
        ),
        object,
        target: None,
        reason: None,
    }
}

/// The TLS entry of `source` (`Ingress shop/web tls[0]`) for `hosts` served from Secret
/// `namespace/secret`.
pub(super) fn tls_entry(source: String, hosts: Vec<String>, namespace: &str, secret: &str) -> TlsEntry {
    TlsEntry { source, hosts, secret: format!("{namespace}/{secret}") }
}

/// Adds `condition` to `conditions` unless it is there already.
pub(super) fn push_condition(conditions: &mut Vec<Condition>, condition: Condition) {
    if !conditions.contains(&condition) {
        conditions.push(condition);
    }
}
