//! What the Kubernetes API said, as discovery writes it into probes.d (docs/kubernetes.md, "The
//! cluster's state as evidence"):
//!
//! - `[target.cluster]`: facts about the objects behind one target (its Service's endpoints on
//!   this node and elsewhere, its traffic policy and health port, the hosts routes claim, the
//!   TLS entries users' hosts should be served with), which diagnoses join with what the probes
//!   saw: `kube_proxy_endpoints_disagree`, `health_port_not_served`, `draining_endpoints`, and
//!   the cluster context of `no_local_endpoints`, `host_route_mismatch` and the certificate
//!   diagnoses;
//! - `[[condition]]`: findings that need no probe (an LB address still pending, an Ingress class
//!   no IngressClass claims, a route the Gateway did not accept...), each naming its object and,
//!   when there is one, the target whose users it concerns; a failure of that target's client
//!   view that fits the condition is diagnosed by it.
//!
//! Both are a snapshot of the API at derivation time; the daemon derives them again on every
//! change it watches. Written by hand they are accepted (a file saved from `parallax discover`
//! is one), and checked like everything else.

use std::sync::Arc;

use serde::Serialize;

/// `[target.cluster]`: the cluster's state behind one target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterFacts {
    /// The object the target stands for: `Service shop/web`, `Ingress shop/web`.
    pub object: String,
    /// This node's name (node mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The Services the users' requests go to (`shop/web`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<String>,
    /// The Service's `externalTrafficPolicy` (`Local`, `Cluster`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<String>,
    /// The Service's `spec.healthCheckNodePort` (ETP Local).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_node_port: Option<u16>,
    /// Ready endpoints of the backends, on every node (kube-proxy's rule: `ready` true or unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_endpoints: Option<u32>,
    /// Ready endpoints on this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_ready_endpoints: Option<u32>,
    /// Endpoints on this node that are terminating (`terminating` true): serving or not, the
    /// pods are going away.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_terminating_endpoints: Option<u32>,
    /// Where the ready endpoints are: `node-b: 2`, one entry per node, sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoint_nodes: Vec<String>,
    /// The hosts the selected routes (Ingress rules, HTTPRoutes) claim for the backends.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route_hosts: Vec<String>,
    /// The TLS entries of the routes to the backends: which Secret serves which hosts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsEntry>,
    /// The conditions that name this target (from `[[condition]]`, attached when compiled).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One TLS entry of a route: `Ingress shop/web tls[0]` serves `hosts` with Secret `secret`
/// (its name only: parallax never reads Secrets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TlsEntry {
    /// Where it is written: `Ingress shop/web tls[0]`, `Gateway infra/gw listener https`.
    pub source: String,
    /// The hosts it covers (`*` for a listener without hostname).
    pub hosts: Vec<String>,
    /// The Secret's `namespace/name`.
    pub secret: String,
}

/// `[[condition]]`: a finding about the cluster that needs no probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// What was found.
    pub kind: ConditionKind,
    /// The object: `HTTPRoute shop/web`, `Service shop/web`.
    pub object: String,
    /// The target whose users it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Arc<str>>,
    /// The API's reason, quoted (`NotAllowedByListeners`), when it gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the API says and what to do.
    pub message: String,
}

/// The closed set of condition kinds; each is also a diagnosis code (docs/errors.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionKind {
    /// A selected LoadBalancer Service or Ingress has no `status.loadBalancer.ingress` yet.
    LbAddressPending,
    /// An Ingress's `ingressClassName` names no IngressClass.
    IngressClassUnclaimed,
    /// An HTTPRoute's parent says `Accepted: False`.
    RouteNotAccepted,
    /// An HTTPRoute's parent says `ResolvedRefs: False`.
    BackendRefUnresolved,
    /// A Gateway (or one of its listeners) is not `Programmed`.
    GatewayNotProgrammed,
    /// `loadBalancerSourceRanges` leaves out the ranges the provider's health checkers come from.
    CheckerSourceBlocked,
    /// A route's backend Service has no ready endpoint on any node.
    NoReadyEndpoints,
    /// A MetalLB VIP (no health checker) whose Service has no ready endpoint: it is announced
    /// all the same.
    VipWithoutHealthCheck,
}

impl ConditionKind {
    /// Every kind, in the order of docs/kubernetes.md.
    pub const ALL: [ConditionKind; 8] = [
        ConditionKind::LbAddressPending,
        ConditionKind::IngressClassUnclaimed,
        ConditionKind::RouteNotAccepted,
        ConditionKind::BackendRefUnresolved,
        ConditionKind::GatewayNotProgrammed,
        ConditionKind::CheckerSourceBlocked,
        ConditionKind::NoReadyEndpoints,
        ConditionKind::VipWithoutHealthCheck,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionKind::LbAddressPending => "lb_address_pending",
            ConditionKind::IngressClassUnclaimed => "ingress_class_unclaimed",
            ConditionKind::RouteNotAccepted => "route_not_accepted",
            ConditionKind::BackendRefUnresolved => "backend_ref_unresolved",
            ConditionKind::GatewayNotProgrammed => "gateway_not_programmed",
            ConditionKind::CheckerSourceBlocked => "checker_source_blocked",
            ConditionKind::NoReadyEndpoints => "no_ready_endpoints",
            ConditionKind::VipWithoutHealthCheck => "vip_without_health_check",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<ConditionKind> {
        ConditionKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for ConditionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
