//! What discovery knows of the cluster: the selected objects, as the API server returned them.
//! The watcher keeps one [`Cluster`] up to date; `parallax discover --from` builds one from saved
//! `kubectl get -o json` output. The derivation reads nothing else.
//!
//! Core objects are `k8s-openapi`'s types. Gateway API and GKE objects are custom resources whose
//! crates pin other kube versions: the few fields discovery reads are declared here, and unknown
//! fields are ignored (the API adds fields every release).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use serde::{Deserialize, Serialize};

/// The selected objects of the cluster, each list in the order the API (or the file) gave it
/// and sorted by namespace and name before deriving, so that the same cluster always derives the
/// same targets.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Services carrying the opt-in label.
    pub services: Vec<Service>,
    /// The EndpointSlices of the selected Services (label `kubernetes.io/service-name`).
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Ingresses carrying the opt-in label.
    pub ingresses: Vec<Ingress>,
    /// Every IngressClass (cluster-scoped, few): which controller serves an Ingress.
    pub ingress_classes: Vec<IngressClass>,
    /// Whether `ingress_classes` is the cluster's complete list (the watch has listed them; a
    /// `--from` file held at least one): only then is "no IngressClass of that name" a finding.
    pub ingress_classes_complete: bool,
    /// Gateways carrying the opt-in label.
    pub gateways: Vec<Gateway>,
    /// HTTPRoutes carrying the opt-in label.
    pub http_routes: Vec<HttpRoute>,
    /// GKE BackendConfigs of the selected Services' namespaces (`cloud.google.com/v1`), when the
    /// CRD exists.
    pub backend_configs: Vec<BackendConfig>,
    /// Pods behind the selected Services, for readiness probes (GKE Ingress derives its health
    /// check from them), when discovery may read pods.
    pub pods: Vec<Pod>,
    /// This node (node mode): its `spec.providerID` names the cloud, its addresses the node IP.
    pub node: Option<Node>,
}

/// A Gateway API object as discovery reads it: `kube::core::Object` with local spec and status.
pub type Gateway = kube::core::Object<GatewaySpec, GatewayStatus>;
/// An HTTPRoute as discovery reads it.
pub type HttpRoute = kube::core::Object<HttpRouteSpec, HttpRouteStatus>;
/// A GKE BackendConfig as discovery reads it.
pub type BackendConfig = kube::core::Object<BackendConfigSpec, serde_json::Value>;

/// `Gateway.spec`: the listeners.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The GatewayClass.
    #[serde(default)]
    pub gateway_class_name: String,
    /// The listeners: port, protocol, hostname, TLS mode.
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// One Gateway listener.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Its name (a route's `parentRefs[].sectionName`).
    pub name: String,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP`.
    pub protocol: String,
    /// The port users dial.
    pub port: u16,
    /// The hostname it accepts (may be a wildcard, `*.example.com`); none accepts every host.
    #[serde(default)]
    pub hostname: Option<String>,
    /// `tls.mode`: `Terminate` (default) or `Passthrough`.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
}

/// A listener's TLS settings: the mode, and the certificates (their names: Secrets are never read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// `Terminate` or `Passthrough`.
    #[serde(default)]
    pub mode: Option<String>,
    /// `certificateRefs`: the Secrets (by default) that hold the listener's certificates.
    #[serde(default)]
    pub certificate_refs: Vec<SecretObjectRef>,
}

/// A `SecretObjectReference`: kind (default `Secret`), name, namespace (default the Gateway's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretObjectRef {
    /// `Secret` when unset.
    #[serde(default)]
    pub kind: Option<String>,
    /// The object's name.
    pub name: String,
    /// Its namespace; the Gateway's when unset.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `Gateway.status`: addresses and conditions (`Programmed`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// The addresses the Gateway is reachable at.
    #[serde(default)]
    pub addresses: Vec<GatewayAddress>,
    /// `Accepted`, `Programmed`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// One Gateway address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAddress {
    /// `IPAddress` (default) or `Hostname`.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    /// The address.
    pub value: String,
}

/// `HTTPRoute.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// The Gateways (and listeners) it attaches to.
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// The hostnames it serves; none inherits the listener's.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Its rules: matches and backends.
    #[serde(default)]
    pub rules: Vec<RouteRule>,
}

/// A route's reference to its parent Gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// `gateway.networking.k8s.io` by default.
    #[serde(default)]
    pub group: Option<String>,
    /// `Gateway` by default.
    #[serde(default)]
    pub kind: Option<String>,
    /// The route's namespace by default.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The Gateway's name.
    pub name: String,
    /// The listener's name; none attaches to every listener that allows it.
    #[serde(default)]
    pub section_name: Option<String>,
    /// The listener's port; none attaches whatever the port.
    #[serde(default)]
    pub port: Option<u16>,
}

/// One HTTPRoute rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    /// What requests it matches; none matches every path (`PathPrefix /`).
    #[serde(default)]
    pub matches: Vec<RouteMatch>,
    /// Where it sends them.
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
}

/// One match of a rule (only the path matters to discovery; header and query matches are noted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// `type` (`Exact`, `PathPrefix`, `RegularExpression`) and `value`.
    #[serde(default)]
    pub path: Option<PathMatch>,
    /// Header matches: a request without them does not match.
    #[serde(default)]
    pub headers: Vec<serde_json::Value>,
    /// Query parameter matches.
    #[serde(default)]
    pub query_params: Vec<serde_json::Value>,
    /// Method match.
    #[serde(default)]
    pub method: Option<String>,
}

/// A path match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathMatch {
    /// `Exact`, `PathPrefix` (default) or `RegularExpression`.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    /// The path; `/` by default.
    #[serde(default)]
    pub value: Option<String>,
}

/// A rule's backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// Core (empty) by default.
    #[serde(default)]
    pub group: Option<String>,
    /// `Service` by default.
    #[serde(default)]
    pub kind: Option<String>,
    /// The backend's name.
    pub name: String,
    /// The route's namespace by default.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The Service port.
    #[serde(default)]
    pub port: Option<u16>,
}

/// `HTTPRoute.status`: per parent, `Accepted` and `ResolvedRefs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteStatus {
    /// One entry per parent that has processed the route.
    #[serde(default)]
    pub parents: Vec<RouteParentStatus>,
}

/// A route's status under one parent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parent.
    pub parent_ref: ParentRef,
    /// The controller that wrote it.
    #[serde(default)]
    pub controller_name: String,
    /// `Accepted`, `ResolvedRefs`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// `BackendConfig.spec` (GKE): only its health check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendConfigSpec {
    /// `spec.healthCheck`.
    #[serde(default)]
    pub health_check: Option<BackendConfigHealthCheck>,
}

/// `BackendConfig.spec.healthCheck`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendConfigHealthCheck {
    /// Seconds between checks.
    #[serde(default)]
    pub check_interval_sec: Option<i64>,
    /// Seconds before a check fails.
    #[serde(default)]
    pub timeout_sec: Option<i64>,
    /// Successes to become healthy.
    #[serde(default)]
    pub healthy_threshold: Option<i64>,
    /// Failures to become unhealthy.
    #[serde(default)]
    pub unhealthy_threshold: Option<i64>,
    /// `HTTP`, `HTTPS`, `HTTP2`.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    /// The port checked.
    #[serde(default)]
    pub port: Option<i64>,
    /// The path checked.
    #[serde(default)]
    pub request_path: Option<String>,
}

/// Where a derived value or a note came from: one object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    /// `Service`, `Ingress`, `Gateway`, `HTTPRoute`, `Node`, `BackendConfig`, `Pod`.
    pub kind: &'static str,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl ObjectRef {
    /// The reference to an object of `kind` with `meta`.
    pub fn of(kind: &'static str, meta: &ObjectMeta) -> ObjectRef {
        ObjectRef {
            kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The annotations of `meta` (none: empty).
pub fn annotations(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.annotations.as_ref().unwrap_or(&EMPTY)
}

/// The labels of `meta` (none: empty).
pub fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&EMPTY)
}
