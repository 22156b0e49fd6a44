//! The derivation: a [`Cluster`] -> the targets it implies, as structured views whose every value
//! says where it came from. A pure function: no I/O, no clock, the same cluster always gives the
//! same targets in the same order. `render` turns the result into a probes.d file.
//!
//! - `checkers`: per Service port, the health checks the cloud load balancer really sends, by
//!   provider (AWS LBC, legacy AWS, Azure, GKE, MetalLB, generic), with `parallax.io/check-*`
//!   overrides, and kube-proxy's `healthCheckNodePort` view;
//! - `routes`: Ingress rules and Gateway listeners × HTTPRoutes -> the users' requests (host,
//!   TLS, path) and the addresses users reach them at.
//!
//! Node mode: per selected Service port that a load balancer sends traffic to, one target for
//! this node, its client view the users' request sent to this node's traffic port
//! (`NODE_IP:nodePort`: what the LB delivers when it sends a user here), its checker views the
//! LB's (and kube-proxy's) health checks of this node; and, when the LB targets pods directly
//! (AWS ip targets, GKE NEGs), one target per ready local pod, its client view the users' request
//! sent to `podIP:podPort`, its checker views the LB's checks of that pod. External mode: one target per users' request (an Ingress
//! rule's host × path, a Gateway listener × route hostname × path, a LoadBalancer Service port),
//! dialed at the LB address its object's status gives, with `expect_addresses` from the same
//! status.

mod checkers;
mod facts;
mod routes;

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use serde::Serialize;

use super::cluster::{Cluster, ObjectRef};
use super::{Mode, ProviderChoice};
use crate::config::{ClusterFacts, Condition};

/// What the derivation needs besides the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeriveOptions {
    /// Node or external.
    pub mode: Mode,
    /// This node's name (node mode): which endpoints are local.
    pub node_name: Option<String>,
    /// This node's IP (node mode): where checker views and the LB-forwarded client view dial.
    /// Without it, the node's first `InternalIP` from [`Cluster::node`].
    pub node_ip: Option<IpAddr>,
    /// Which cloud's rules apply.
    pub provider: ProviderChoice,
}

/// The targets a cluster implies, and what could not become one.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Derivation {
    /// In a stable order: by source object, then port or rule.
    pub targets: Vec<DerivedTarget>,
    /// Objects (or parts of them) skipped, and findings, each with the reason.
    pub notes: Vec<Note>,
    /// Findings about the cluster that need no probe (`[[condition]]`), some naming the target
    /// whose users they concern.
    pub conditions: Vec<Condition>,
}

/// One derived target: a client view and its checker views.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DerivedTarget {
    /// A valid, unique target name: `svc.<ns>.<name>.<port>` (node mode and LoadBalancer
    /// Services), `svc.<ns>.<name>.<port>.<podIP>` (node mode, a local pod the LB targets), `ingress.<ns>.<name>.<host>.<path>` and `route.<ns>.<name>.<host>.<path>`
    /// (external mode); characters outside letters, digits, `.`, `_`, `-` become `_`.
    pub name: String,
    /// The object the target stands for.
    pub source: ObjectRef,
    /// Lines said about the target as a whole (the provider chosen and why, a finding).
    pub comments: Vec<String>,
    /// The client view (always named `client`).
    pub client: DerivedView,
    /// The checker views; none when the LB has no health check (say so in `comments`).
    pub checkers: Vec<DerivedView>,
    /// What the API says about the objects behind it (`[target.cluster]`).
    pub cluster: Option<ClusterFacts>,
}

/// One derived view: its settings, each with its origin, in the order they are printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DerivedView {
    /// `client`, or the checker's name (`aws-nlb`, `kube-proxy`, `azure-lb-port-443`...).
    pub name: String,
    /// One line: what this view stands for (e.g. "the NLB's health check of this node").
    pub about: String,
    /// `key = value` pairs of a probes.d view: `profile`, `url`, `connect_to`, `host`, `sni`,
    /// `verify`, `interval`, `timeout`, `rise`, `fall`, `expect.status`, `expect_addresses`...
    pub settings: Vec<Setting>,
}

impl DerivedView {
    /// A view named `name` about `about`, with no settings yet.
    pub fn new(name: impl Into<String>, about: impl Into<String>) -> DerivedView {
        DerivedView { name: name.into(), about: about.into(), settings: Vec::new() }
    }

    /// Adds (or replaces) `key`.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>, origin: Origin) -> &mut DerivedView {
        let setting = Setting { key, value: value.into(), origin };
        match self.settings.iter_mut().find(|s| s.key == key) {
            Some(existing) => *existing = setting,
            None => self.settings.push(setting),
        }
        self
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.settings.iter().find(|s| s.key == key).map(|s| &s.value)
    }
}

/// One setting of a derived view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// The probes.d key (`expect.status` for a key of the `expect` table).
    pub key: &'static str,
    /// Its value.
    pub value: Value,
    /// Where it came from.
    pub origin: Origin,
}

/// A setting's value, as probes.d writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A string (URLs, durations, status ranges, hosts).
    Str(String),
    /// A number (rise, fall).
    Int(u64),
    /// `true`/`false` (`verify`, `sni = false`).
    Bool(bool),
    /// A list of strings (`expect_addresses`, `alpn`).
    List(Vec<String>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Int(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Value {
        Value::List(v)
    }
}

/// Where a derived value came from: what `parallax discover` prints beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "what", rename_all = "snake_case")]
pub enum Origin {
    /// An annotation of the source object (its full name).
    Annotation(String),
    /// A field of an object: `spec.ports[https].nodePort`, `spec.healthCheckNodePort`,
    /// `status.loadBalancer.ingress`.
    Field(String),
    /// A route that leads to the Service: `Ingress shop/web rule shop.example.com /cart`.
    Route(String),
    /// The provider's default, naming the controller and its source file:
    /// `aws-load-balancer-controller default (pkg/service/model_builder.go)`.
    ProviderDefault(String),
    /// The node: `NODE_IP` (`--node-ip`, the downward API) or the Node's `InternalIP`.
    Node(String),
    /// A `parallax.io/...` annotation of parallax's own.
    Override(String),
    /// Chosen by parallax because nothing else says (a named reason).
    Parallax(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Annotation(a) => write!(f, "annotation {a}"),
            Origin::Field(field) => write!(f, "{field}"),
            Origin::Route(route) => write!(f, "route: {route}"),
            Origin::ProviderDefault(p) => f.write_str(p),
            Origin::Node(n) => write!(f, "node: {n}"),
            Origin::Override(a) => write!(f, "override {a}"),
            Origin::Parallax(why) => write!(f, "parallax: {why}"),
        }
    }
}

/// Something derivation skipped or found, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    /// The object it is about.
    pub object: ObjectRef,
    /// What was skipped or found, and what to do (`a regex path cannot become a URL: set
    /// parallax.io/client-url`).
    pub message: String,
}

/// The cloud whose rules a Service's health checks follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// AWS Load Balancer Controller (NLB for Services, ALB for Ingresses).
    AwsLbc,
    /// The legacy in-tree AWS provider (Classic ELB, or NLB by annotation).
    AwsLegacy,
    /// Azure cloud-provider (Azure Load Balancer).
    Azure,
    /// GKE (ingress-gce L4 health checks; GKE Ingress).
    Gcp,
    /// MetalLB: no health checker.
    Metallb,
    /// Unknown: kube-proxy's health port only.
    Generic,
}

/// Derives every target `cluster` implies in `options.mode`.
pub fn derive(cluster: &Cluster, options: &DeriveOptions) -> Derivation {
    let mut derivation = Derivation::default();
    let ctx = Context::new(cluster, options, &mut derivation.notes);
    match options.mode {
        Mode::Node => derive_node(&ctx, &mut derivation),
        Mode::External => routes::external_targets(&ctx, &mut derivation),
    }
    derivation
}

/// What every rule reads: the cluster, the options, this node's IP.
pub(super) struct Context<'a> {
    pub(super) cluster: &'a Cluster,
    pub(super) options: &'a DeriveOptions,
    /// This node's IP and where it came from (node mode).
    pub(super) node_ip: Option<(IpAddr, Origin)>,
}

impl<'a> Context<'a> {
    fn new(cluster: &'a Cluster, options: &'a DeriveOptions, notes: &mut Vec<Note>) -> Context<'a> {
        let node_ip = match options.node_ip {
            Some(ip) => Some((ip, Origin::Node("NODE_IP".to_owned()))),
            None => cluster.node.as_ref().and_then(|node| {
                let addresses = node.status.as_ref()?.addresses.as_ref()?;
                let internal = addresses.iter().find(|a| a.type_ == "InternalIP")?;
                let ip = internal.address.parse().ok()?;
                Some((ip, Origin::Field("Node status.addresses[InternalIP]".to_owned())))
            }),
        };
        if options.mode == Mode::Node && node_ip.is_none() {
            let name = options.node_name.clone().unwrap_or_default();
            notes.push(Note {
                object: ObjectRef { kind: "Node", namespace: String::new(), name },
                message: "node mode needs this node's IP: set NODE_IP (the downward API's \
                          status.hostIP) or --node-ip; no node target derived"
                    .to_owned(),
            });
        }
        Context { cluster, options, node_ip }
    }
}

/// Node mode: for each selected Service port a load balancer sends users to, one target for
/// this node (the users' request at `NODE_IP:nodePort` beside the checks of this node) and one for
/// each local pod the load balancer targets directly (ip targets, NEGs: the users' request at
/// `podIP:podPort` beside the checks of that pod), so that every diff compares a check with the
/// requests the same load balancer decision sends to the same place.
fn derive_node(ctx: &Context<'_>, derivation: &mut Derivation) {
    if ctx.node_ip.is_none() {
        return;
    }
    let mut services: Vec<&Service> = ctx.cluster.services.iter().collect();
    services.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    for service in services {
        let ports: &[ServicePort] = service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or(&[]);
        for port in ports {
            let Some(checkers) = checkers::checker_views(ctx, service, port, &mut derivation.notes) else {
                continue;
            };
            let (request, leading) = routes::users_request(ctx, service, port, &mut derivation.notes);
            let base = ["svc", ns(service), name(service), &port_label(port)];
            let source = ObjectRef::of("Service", &service.metadata);
            let node = ctx.options.node_name.as_deref();
            let facts = facts::service_facts(ctx.cluster, node, service, &leading.iter().collect::<Vec<_>>());
            let metallb = checkers.provider == Some(Provider::Metallb);
            let addresses = routes::service_addresses(service);
            // A port whose load balancer checks only pods has no target for the node (unless
            // nothing checks at all: the client view is then the only judge, as for MetalLB).
            let target = Shared { source: &source, facts: &facts, metallb, addresses: &addresses };
            if !checkers.node.is_empty() || checkers.pods.is_empty() {
                let mut client = request.clone();
                if routes::deliver_to_node(ctx, service, port, &checkers, &mut client, &mut derivation.notes)
                {
                    let comments = [&checkers.comments[..], &checkers.node_comments[..]].concat();
                    target.push(derivation, target_name(&base), comments, client, checkers.node.clone());
                }
            }
            for pod in &checkers.pods {
                let Some((pod_port, origin)) = &pod.port else {
                    let label = port_label(port);
                    let message = format!(
                        "port {label}: the EndpointSlices of pod {} name no port {label}, so where the load balancer \
                         sends users' requests to it is unknown: no target for that pod",
                        pod.ip
                    );
                    derivation.notes.push(Note { object: source.clone(), message });
                    continue;
                };
                let mut client = request.clone();
                routes::deliver_to_pod(&mut client, pod.ip, *pod_port, origin.clone());
                let comments = [&checkers.comments[..], &pod.comments[..]].concat();
                let name = target_name(&[base[0], base[1], base[2], base[3], &pod.ip.to_string()]);
                target.push(derivation, name, comments, client, pod.views.clone());
            }
        }
    }
}

/// What the node target and the pod targets of one Service port share.
struct Shared<'a> {
    source: &'a ObjectRef,
    facts: &'a ClusterFacts,
    metallb: bool,
    addresses: &'a [String],
}

impl Shared<'_> {
    /// Adds the target `name` (and its conditions) to `derivation`.
    fn push(
        &self,
        derivation: &mut Derivation,
        name: String,
        comments: Vec<String>,
        client: DerivedView,
        checkers: Vec<DerivedView>,
    ) {
        node_conditions(derivation, self.facts, &name, self.metallb, self.addresses);
        derivation.targets.push(DerivedTarget {
            name,
            source: self.source.clone(),
            comments,
            client,
            checkers,
            cluster: Some(self.facts.clone()),
        });
    }
}

/// The conditions of a node-mode target named `name` with `facts`.
fn node_conditions(
    derivation: &mut Derivation,
    facts: &ClusterFacts,
    name: &str,
    metallb: bool,
    addresses: &[String],
) {
    let found = if metallb {
        facts::vip_without_health_check(facts, name, addresses)
            .or_else(|| facts::no_ready_endpoints(facts, name))
    } else {
        facts::no_ready_endpoints(facts, name)
    };
    if let Some(c) = found {
        facts::push_condition(&mut derivation.conditions, c);
    }
}

/// A Service's namespace.
pub(super) fn ns(service: &Service) -> &str {
    service.metadata.namespace.as_deref().unwrap_or("default")
}

/// A Service's name.
pub(super) fn name(service: &Service) -> &str {
    service.metadata.name.as_deref().unwrap_or("")
}

/// A port's name, or its number when unnamed.
pub(super) fn port_label(port: &ServicePort) -> String {
    match &port.name {
        Some(name) if !name.is_empty() => name.clone(),
        _ => port.port.to_string(),
    }
}

/// `parts` joined with `.`, every character a target name may not hold replaced by `_`.
pub(super) fn target_name(parts: &[&str]) -> String {
    let joined = parts.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join(".");
    joined
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect()
}

/// The checker views of one Service port, and what to say about them.
#[derive(Debug, Default)]
pub(super) struct CheckerViews {
    /// The health checks of this node for this port (instance targets, kube-proxy's).
    pub(super) node: Vec<DerivedView>,
    /// Where each part of the URL of each view of `node` came from.
    pub(super) node_comments: Vec<String>,
    /// The health checks of each local pod (ip targets, NEGs): a target of its own each, the
    /// load balancer sending users' requests to the pod, not to the node.
    pub(super) pods: Vec<PodChecks>,
    /// The provider chosen and why; findings such as "MetalLB: no health check".
    pub(super) comments: Vec<String>,
    /// The provider whose rules the Service's own load balancer follows (none for a Service
    /// reached only through an Ingress).
    pub(super) provider: Option<Provider>,
}

/// The health checks of one local pod.
#[derive(Debug)]
pub(super) struct PodChecks {
    /// The pod's IP.
    pub(super) ip: IpAddr,
    /// The pod's port for the Service port (its EndpointSlice's), with its origin: where the load
    /// balancer sends users' requests. `None` when the slice does not name it.
    pub(super) port: Option<(u16, Origin)>,
    /// Its checks, in order, with unique names.
    pub(super) views: Vec<DerivedView>,
    /// Where each part of the URL of each view came from.
    pub(super) comments: Vec<String>,
}
