//! Diagnoses that join what the probes saw with what the Kubernetes API says about the target
//! (`[target.cluster]`, written by discovery: docs/kubernetes.md, "The cluster's state as
//! evidence"). Each one names both halves in its evidence — the outcome, and the object with
//! its namespace/name — and fires only when both are there: without the cluster's facts the
//! rules of `mod.rs` decide as before.
//!
//! - [`endpoints`]: kube-proxy's `localEndpoints` against the EndpointSlices
//!   (`kube_proxy_endpoints_disagree`), this node's endpoints terminating (`draining_endpoints`),
//!   `healthCheckNodePort` not answering on an ETP Local Service (`health_port_not_served`);
//! - [`explain_failure`]: a failing client view that a condition of the target explains
//!   (`no_ready_endpoints`, `route_not_accepted`, `backend_ref_unresolved`,
//!   `gateway_not_programmed`, `ingress_class_unclaimed`, `vip_without_health_check`): in a
//!   blackhole, and on its own when no checker view disagrees (external mode has none);
//! - [`context`]: the cluster's side of `no_local_endpoints`, `host_route_mismatch` and the
//!   certificate diagnoses, appended to their evidence.

use super::{Case, Diagnosis, Finding};
use crate::config::{ClusterFacts, Condition, ConditionKind, Dialed, View};
use crate::diff::Direction;
use crate::probe::{ErrorCode, Outcome, Phase};

/// The diagnoses of [`endpoints`] and [`explain_failure`] for a disagreeing pair, most
/// conclusive first.
pub(super) fn diagnose(case: &Case<'_>) -> Option<Finding> {
    let facts = case.cluster?;
    if let Some(f) = endpoints(case, facts) {
        return Some(f);
    }
    if case.direction == Direction::Blackhole {
        return explain_failure(case.client_view, case.client, facts);
    }
    None
}

/// What kube-proxy's health port, the EndpointSlices and this node's endpoints say.
fn endpoints(case: &Case<'_>, facts: &ClusterFacts) -> Option<Finding> {
    let k = case.checker;
    let node = facts.node.as_deref().unwrap_or("this node");
    // kube-proxy's count (on its health port, read by the kube-proxy view and by any cloud check
    // of healthCheckNodePort) against the EndpointSlices' ready endpoints on this node.
    if let (Some(n), Some(m)) = (k.local_endpoints, facts.local_ready_endpoints) {
        if n != u64::from(m) {
            return Some(Finding {
                diagnosis: Diagnosis::KubeProxyEndpointsDisagree,
                evidence: format!(
                    "kube-proxy's healthCheckNodePort on {node} answered {} with localEndpoints={n}, but the \
                     EndpointSlices of {} list {m} ready endpoint(s) with nodeName {node} ({}): kube-proxy does \
                     not see this node's endpoints as its own — its node name differs from the Node's \
                     (--hostname-override, a cloud's short vs full host name) or it is not syncing; compare \
                     kube-proxy's --hostname-override with `kubectl get node`, and its logs",
                    status_or_error(k),
                    facts.object,
                    placement(facts)
                ),
            });
        }
    }
    let terminating = facts.local_terminating_endpoints.unwrap_or(0);
    if terminating > 0 && facts.local_ready_endpoints == Some(0) {
        let evidence = match case.direction {
            Direction::FalseDrain => format!(
                "the {} check fails ({}) while users are still served: {} has {terminating} terminating \
                 endpoint(s) on {node} and no ready one — the pods are draining (a rollout, a scale-down, a node \
                 drain), so the load balancer takes the node out while the pods finish their connections; \
                 expected, not a fault, and it ends when they exit (terminationGracePeriodSeconds). If it lasts \
                 longer, look at the pods' preStop hooks and finalizers",
                case.checker_view.name,
                status_or_error(k),
                facts.object
            ),
            Direction::Blackhole => format!(
                "the {} check still passes ({}) while users fail ({}): {} has {terminating} terminating \
                 endpoint(s) on {node} and no ready one — a health endpoint that keeps answering 200 while its \
                 pod terminates keeps the load balancer sending users to pods that are going away; make the \
                 health endpoint fail once SIGTERM arrives (or a preStop hook sleep longer than the check's \
                 interval × fall)",
                case.checker_view.name,
                status_or_error(k),
                status_or_error(case.client),
                facts.object
            ),
        };
        return Some(Finding { diagnosis: Diagnosis::DrainingEndpoints, evidence });
    }
    if case.direction == Direction::FalseDrain {
        if let Some(port) = facts.health_check_node_port {
            let refused = matches!(k.error, Some(ErrorCode::ConnectRefused | ErrorCode::ConnectTimeout));
            if refused
                && port_of(case.checker_view) == Some(port)
                && facts.traffic_policy.as_deref() == Some("Local")
            {
                return Some(Finding {
                    diagnosis: Diagnosis::HealthPortNotServed,
                    evidence: format!(
                        "the {} check of healthCheckNodePort {port} on {node} gets {} while users are served: {} is \
                         externalTrafficPolicy Local, so the load balancer judges every node by that port, and \
                         nothing answers it here — the node's service proxy does not implement \
                         healthCheckNodePort (kube-router, some eBPF proxies, kube-proxy replaced or not running), \
                         or a firewall drops it; check that something listens on {port} on every node \
                         (`ss -ltn 'sport = :{port}'`)",
                        case.checker_view.name,
                        status_or_error(k),
                        facts.object
                    ),
                });
            }
        }
    }
    None
}

/// The condition of the target that explains its client view failing with `client`, if any.
pub fn explain_failure(view: &View, client: &Outcome, facts: &ClusterFacts) -> Option<Finding> {
    if client.ok {
        return None;
    }
    let fits = |c: &&Condition| fits(c.kind, client);
    let condition = facts.conditions.iter().find(fits)?;
    let diagnosis = match condition.kind {
        ConditionKind::NoReadyEndpoints => Diagnosis::NoReadyEndpoints,
        ConditionKind::RouteNotAccepted => Diagnosis::RouteNotAccepted,
        ConditionKind::BackendRefUnresolved => Diagnosis::BackendRefUnresolved,
        ConditionKind::GatewayNotProgrammed => Diagnosis::GatewayNotProgrammed,
        ConditionKind::IngressClassUnclaimed => Diagnosis::IngressClassUnclaimed,
        ConditionKind::VipWithoutHealthCheck => Diagnosis::VipWithoutHealthCheck,
        ConditionKind::LbAddressPending | ConditionKind::CheckerSourceBlocked => return None,
    };
    let reason = condition.reason.as_ref().map(|r| format!(", reason {r}")).unwrap_or_default();
    Some(Finding {
        diagnosis,
        evidence: format!(
            "the {} view ({}) gets {}; the API says why ({}{reason}): {}",
            view.name,
            view.url_display,
            status_or_error(client),
            condition.object,
            condition.message
        ),
    })
}

/// Whether a client failure looks like what a condition of `kind` causes.
fn fits(kind: ConditionKind, o: &Outcome) -> bool {
    let status = |range: std::ops::RangeInclusive<u16>| {
        o.error == Some(ErrorCode::HttpStatus) && o.status.is_some_and(|s| range.contains(&s))
    };
    let unreachable = matches!(o.phase, Some(Phase::Connect))
        || matches!(o.error, Some(ErrorCode::HttpReset | ErrorCode::HttpTimeout | ErrorCode::ConnectReset));
    match kind {
        // Nothing to serve: a proxy's 502/503/504, or kube-proxy refusing the connection.
        ConditionKind::NoReadyEndpoints | ConditionKind::VipWithoutHealthCheck => {
            status(502..=504) || status(500..=500) || unreachable
        }
        // The Gateway does not route the host: its default answer (404), or another route's.
        ConditionKind::RouteNotAccepted | ConditionKind::IngressClassUnclaimed => {
            status(400..=599) || unreachable
        }
        ConditionKind::BackendRefUnresolved => status(500..=503),
        // An unprogrammed data plane: nothing listening, no TLS, an old configuration.
        ConditionKind::GatewayNotProgrammed => {
            unreachable || matches!(o.phase, Some(Phase::Tls)) || status(400..=599)
        }
        ConditionKind::LbAddressPending | ConditionKind::CheckerSourceBlocked => false,
    }
}

/// The cluster's side of a diagnosis the wire already named, to append to its evidence.
pub(super) fn context(case: &Case<'_>, diagnosis: Diagnosis) -> Option<String> {
    let facts = case.cluster?;
    match diagnosis {
        Diagnosis::NoLocalEndpoints => {
            let node = facts.node.as_deref()?;
            Some(format!(
                "the EndpointSlices of {} place its ready endpoints on: {} ({} on {node})",
                facts.object,
                placement(facts),
                facts.local_ready_endpoints.map_or_else(|| "unknown".to_owned(), |n| n.to_string())
            ))
        }
        Diagnosis::HostRouteMismatch => {
            if facts.route_hosts.is_empty() {
                return None;
            }
            let checker_host = host_of(case.checker_view);
            let claimed = checker_host.as_deref().is_some_and(|h| facts.route_hosts.iter().any(|r| r == h));
            let host = checker_host.as_deref().unwrap_or("(none)");
            Some(if claimed {
                format!("a route of {} claims the checker's Host {host} too", facts.object)
            } else {
                format!(
                    "no selected route claims the checker's Host {host}: the routes to {} claim {}, so the \
                     checker lands on the default backend",
                    facts.object,
                    facts.route_hosts.join(", ")
                )
            })
        }
        Diagnosis::CertificateRejected | Diagnosis::DefaultCertificateServed => {
            let host = host_of(case.client_view)?;
            let entries: Vec<String> = facts
                .tls
                .iter()
                .filter(|t| t.hosts.iter().any(|h| host_matches(h, &host)))
                .map(|t| format!("{} names Secret {} for {}", t.source, t.secret, t.hosts.join(", ")))
                .collect();
            Some(if entries.is_empty() {
                format!(
                    "no TLS entry of the routes to {} covers {host}: add one (hosts and secretName)",
                    facts.object
                )
            } else {
                format!(
                    "{}: check that Secret exists in that namespace and holds a certificate for {host}",
                    entries.join("; ")
                )
            })
        }
        _ => None,
    }
}

/// The host a view's requests name (its Host header without a port), lowercased.
fn host_of(view: &View) -> Option<String> {
    let header = view.host_header(Dialed::Endpoint(view.dial_endpoint()))?;
    let host = match header.rsplit_once(':') {
        Some((h, port))
            if !h.ends_with(']') && !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) =>
        {
            h
        }
        Some((h, port)) if h.ends_with(']') && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => &header,
    };
    Some(host.to_ascii_lowercase())
}

/// `host` taken by a TLS entry's `pattern` (exact, `*.suffix` for one label, `*` for any).
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    if pattern == "*" || pattern == host {
        return true;
    }
    pattern
        .strip_prefix("*.")
        .and_then(|suffix| host.strip_suffix(&format!(".{suffix}")))
        .is_some_and(|label| !label.is_empty() && !label.contains('.'))
}

/// `node-b: 2, node-c: 1`, or `none` when no endpoint is ready.
fn placement(facts: &ClusterFacts) -> String {
    if facts.endpoint_nodes.is_empty() {
        "none".to_owned()
    } else {
        facts.endpoint_nodes.join(", ")
    }
}

/// The port a view dials: `connect_to`'s, else the URL's.
fn port_of(view: &View) -> Option<u16> {
    Some(view.connect_to.as_ref().map_or(view.url_endpoint.port, |c| c.port))
}

/// `HTTP 503`, or the error code.
fn status_or_error(o: &Outcome) -> String {
    match (o.status, o.error) {
        (Some(s), _) => format!("HTTP {s}"),
        (None, Some(e)) => e.as_str().to_owned(),
        (None, None) => "success".to_owned(),
    }
}
