//! The users' requests: Ingress rules and Gateway listeners × HTTPRoutes -> host, TLS, path,
//! and the LB addresses users reach them at. Node mode uses them for the LB-forwarded client view
//! (the users' request sent to this node's traffic port); external mode makes one target of each.
//!
//! - `ingress`: `networking.k8s.io/v1` Ingress rules × paths;
//! - `gateway`: HTTPRoutes attached to Programmed Gateways, hostnames intersected per listener.
//!
//! Both give [`Request`]s (and the parts they skipped, with the backends those parts lead to, so
//! that node mode tells only what concerns the Service port at hand). docs/kubernetes.md,
//! "Client views from routes", has the rules and the choices made.

mod gateway;
mod ingress;
mod view;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::facts;
use super::{
    name, ns, port_label, target_name, CheckerViews, Context, Derivation, DerivedTarget, DerivedView, Note,
    Origin, Value,
};
use crate::config::{ClusterFacts, Condition, TlsEntry};
use crate::discovery::kubernetes::cluster::{annotations, ObjectRef};

/// The annotation (on a Service) that says the URL users request, overriding every route.
pub(super) const CLIENT_URL: &str = "parallax.io/client-url";
/// The annotation (on an Ingress or HTTPRoute) that names the host users request under a
/// wildcard host (`*.example.com` -> `shop.example.com`).
pub(super) const CLIENT_HOST: &str = "parallax.io/client-host";

/// One users' request a route defines: the host and path users ask for, whether over TLS, the
/// port they dial, the addresses the route's status gives, and the backends it leads to.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Request {
    /// The Ingress or HTTPRoute.
    pub(super) source: ObjectRef,
    /// `ingress` or `route`: the first part of the target name.
    pub(super) prefix: &'static str,
    /// The concrete host users request; `None` for a rule that takes every host (users then
    /// request the LB address itself).
    pub(super) host: Option<String>,
    /// The path users request (`/` for a rule without one).
    pub(super) path: String,
    /// Users speak TLS (an Ingress host in `tls[].hosts`, an HTTPS listener).
    pub(super) tls: bool,
    /// The port users dial: 80 or 443 for an Ingress, the listener's port for a Gateway.
    pub(super) port: u16,
    /// The LB addresses of the route's status (IPs or DNS names), in order; empty: not yet
    /// provisioned.
    pub(super) addresses: Vec<String>,
    /// The status field the addresses come from (`status.loadBalancer.ingress`).
    pub(super) addresses_field: String,
    /// The Service ports this request is sent to.
    pub(super) backends: Vec<Backend>,
    /// The route, as an origin says it: `Ingress shop/web rule shop.example.com Prefix /cart`.
    pub(super) route: String,
    /// What the probe cannot carry (header or query matches...), said beside the target.
    pub(super) comments: Vec<String>,
    /// The TLS entries that serve the host (`Ingress shop/web tls[0]`, Secret `shop/web-tls`).
    pub(super) tls_entries: Vec<TlsEntry>,
    /// What the API says against this request reaching its backends (the route not accepted,
    /// its backend refs unresolved, its Gateway not programmed, its Ingress class unclaimed),
    /// without a target yet: the target that carries the request is named when it is made.
    pub(super) conditions: Vec<Condition>,
}

/// A Service port a route sends requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Backend {
    /// The Service's namespace.
    pub(super) namespace: String,
    /// The Service's name.
    pub(super) name: String,
    /// The port, by number or by name.
    pub(super) port: BackendPort,
}

/// How a route names a Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BackendPort {
    /// `port.number` (Ingress), `port` (HTTPRoute).
    Number(i32),
    /// `port.name` (Ingress).
    Name(String),
}

impl Backend {
    /// Whether this backend is `port` of `service`.
    fn is(&self, service: &Service, port: &ServicePort) -> bool {
        self.namespace == ns(service)
            && self.name == name(service)
            && match &self.port {
                BackendPort::Number(n) => *n == port.port,
                BackendPort::Name(n) => port.name.as_deref() == Some(n.as_str()),
            }
    }
}

/// Every users' request of the selected routes, in a stable order (Ingresses by namespace and
/// name, their rules and paths in order; then HTTPRoutes likewise), and what was skipped.
#[derive(Debug, Default)]
pub(super) struct Routes {
    /// The requests.
    pub(super) requests: Vec<Request>,
    /// The parts skipped: the backends they lead to, and why.
    pub(super) skipped: Vec<Skipped>,
    /// Conditions of routes that give no request (a route not accepted by a Gateway with no
    /// address...).
    pub(super) conditions: Vec<Condition>,
}

/// A part of a route that gives no request, and why.
#[derive(Debug, Clone)]
pub(super) struct Skipped {
    /// The Service ports the skipped part leads to.
    pub(super) backends: Vec<Backend>,
    /// What was skipped and what to do.
    pub(super) note: Note,
}

impl Routes {
    /// Reads every selected Ingress and HTTPRoute.
    fn of(ctx: &Context<'_>) -> Routes {
        let mut routes = Routes::default();
        ingress::requests(ctx, &mut routes);
        gateway::requests(ctx, &mut routes);
        routes
    }

    /// Records that `object`'s part leading to `backends` was skipped, `message` saying why.
    pub(super) fn skip(&mut self, object: &ObjectRef, backends: Vec<Backend>, message: String) {
        self.skipped.push(Skipped { backends, note: Note { object: object.clone(), message } });
    }

    /// The requests sent to `port` of `service`.
    fn leading_to<'r>(&'r self, service: &Service, port: &ServicePort) -> Vec<&'r Request> {
        self.requests.iter().filter(|r| r.backends.iter().any(|b| b.is(service, port))).collect()
    }
}

/// The users' request to `port` of `service`, as node mode sends it (from
/// `parallax.io/client-url`, else the routes that lead to this Service, else the port's
/// protocol), not yet given where the load balancer delivers it: [`deliver_to_node`],
/// [`deliver_to_pod`]; and the routes' requests that lead to the port.
pub(super) fn users_request(
    ctx: &Context<'_>,
    service: &Service,
    port: &ServicePort,
    notes: &mut Vec<Note>,
) -> (DerivedView, Vec<Request>) {
    let label = port_label(port);
    // Read again for each port: the derivation is pure and the routes are few.
    let routes = Routes::of(ctx);
    for skipped in routes.skipped.iter().filter(|s| s.backends.iter().any(|b| b.is(service, port))) {
        push_note(notes, skipped.note.clone());
    }
    let mut view = DerivedView::new("client", "the users' request as the load balancer delivers it");
    let mut leading = routes.leading_to(service, port);
    // A route the API says carries no traffic as written (not accepted, not programmed...) is
    // not what users' requests follow to this node.
    for request in leading.iter().filter(|r| !r.conditions.is_empty()) {
        for c in &request.conditions {
            let message = format!("{}; the node view does not follow {}", c.message, request.route);
            push_note(notes, Note { object: request.source.clone(), message });
        }
    }
    leading.retain(|r| r.conditions.is_empty());
    if let Some(url) = annotations(&service.metadata).get(CLIENT_URL) {
        view.set("url", url.as_str(), Origin::Override(CLIENT_URL.to_owned()));
    } else {
        match leading.split_first() {
            Some((first, others)) => {
                view::forwarded(&mut view, first, service, port);
                note_route_choice(notes, service, &label, first, others);
            }
            None => view::port_request(&mut view, service, port),
        }
    }
    (view, leading.into_iter().cloned().collect())
}

/// Sends the users' request `view` to this node's traffic port (`NODE_IP:nodePort`), where the
/// load balancer delivers it with instance targets. `false` (said in `notes`) when the port has no
/// node port: no load balancer delivers users' requests to this node then, and the checks of the
/// node in `checkers` (kube-proxy's) have nothing to be compared with.
pub(super) fn deliver_to_node(
    ctx: &Context<'_>,
    service: &Service,
    port: &ServicePort,
    checkers: &CheckerViews,
    view: &mut DerivedView,
    notes: &mut Vec<Note>,
) -> bool {
    let Some((node_ip, _)) = ctx.node_ip.as_ref() else { return false };
    let label = port_label(port);
    let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) else {
        let unprobed = if checkers.node.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = checkers.node.iter().map(|v| v.name.as_str()).collect();
            format!(" (the checks of this node, {}, are not probed)", names.join(", "))
        };
        let message = format!(
            "port {label} has no nodePort, so no load balancer delivers users' requests to this node's traffic \
             port (type ClusterIP, or allocateLoadBalancerNodePorts: false with IP targets): no node target{unprobed}; \
             probe it from outside the cluster (mode external)"
        );
        push_note(notes, Note { object: ObjectRef::of("Service", &service.metadata), message });
        return false;
    };
    view.about = "the users' request as the load balancer delivers it to this node".to_owned();
    view.set(
        "connect_to",
        view::endpoint(&node_ip.to_string(), node_port),
        Origin::Field(format!("spec.ports[{label}].nodePort")),
    );
    true
}

/// Sends the users' request `view` to the local pod at `ip:port` (`origin` says where the port
/// came from), where a load balancer with ip targets (or NEGs) delivers it.
pub(super) fn deliver_to_pod(view: &mut DerivedView, ip: IpAddr, port: u16, origin: Origin) {
    view.about = format!("the users' request as the load balancer delivers it to pod {ip} (ip targets)");
    view.set("connect_to", view::endpoint(&ip.to_string(), port), origin);
}

/// Says which route the forwarded view follows when several lead to the port, and what the
/// chosen request's probe cannot carry.
fn note_route_choice(
    notes: &mut Vec<Note>,
    service: &Service,
    label: &str,
    first: &Request,
    others: &[&Request],
) {
    let object = ObjectRef::of("Service", &service.metadata);
    for comment in &first.comments {
        push_note(notes, Note { object: first.source.clone(), message: comment.clone() });
    }
    if others.is_empty() {
        return;
    }
    let also: Vec<&str> = others.iter().map(|r| r.route.as_str()).collect();
    let message = format!(
        "port {label} is reached by {} routes: the node view follows the first, {}; not probed here: {}. \
         Set {CLIENT_URL} on the Service to choose",
        others.len() + 1,
        first.route,
        also.join("; ")
    );
    push_note(notes, Note { object, message });
}

/// External mode: one target per users' request of every selected Ingress, HTTPRoute and
/// LoadBalancer Service, dialed at its LB address, with `expect_addresses` from its status.
///
/// External targets have no checker views: from outside the cluster parallax cannot send what
/// the load balancer sends each node. The checker views come from node mode (the DaemonSet).
pub(super) fn external_targets(ctx: &Context<'_>, derivation: &mut Derivation) {
    let routes = Routes::of(ctx);
    let mut names = BTreeSet::new();
    for skipped in &routes.skipped {
        push_note(&mut derivation.notes, skipped.note.clone());
    }
    for condition in &routes.conditions {
        facts::push_condition(&mut derivation.conditions, condition.clone());
    }
    for request in &routes.requests {
        if request.addresses.is_empty() {
            let object = request.source.to_string();
            facts::push_condition(
                &mut derivation.conditions,
                facts::lb_address_pending(object, &request.addresses_field),
            );
        }
        let Some(client) = view::external(request, &mut derivation.notes) else {
            for condition in &request.conditions {
                facts::push_condition(&mut derivation.conditions, condition.clone());
            }
            continue;
        };
        let (source, host) = (&request.source, request.host.as_deref().unwrap_or(""));
        let base = target_name(&[request.prefix, &source.namespace, &source.name, host, &request.path]);
        let mut comments = vec![NO_CHECKERS.to_owned()];
        comments.extend(view::dns_comment(request.host.as_deref(), &request.addresses));
        comments.extend(request.comments.iter().cloned());
        let facts = facts::request_facts(ctx.cluster, request);
        let name = push_target(derivation, &mut names, base, request.source.clone(), comments, client, facts);
        for condition in &request.conditions {
            let condition = Condition { target: Some(name.as_str().into()), ..condition.clone() };
            facts::push_condition(&mut derivation.conditions, condition);
        }
        let facts = derivation.targets.last().and_then(|t| t.cluster.as_ref());
        if let Some(c) = facts.and_then(|f| facts::no_ready_endpoints(f, &name)) {
            facts::push_condition(&mut derivation.conditions, c);
        }
    }
    for service in sorted(&ctx.cluster.services, |s| &s.metadata) {
        service_targets(ctx, service, &routes, &mut names, derivation);
    }
}

/// What every external target says of its checker views.
const NO_CHECKERS: &str = "external target: the users' view only; the load balancer's health checks of each \
                           node are the checker views of node mode (the DaemonSet)";

/// The targets of a selected LoadBalancer Service's ports that no route leads to.
fn service_targets(
    ctx: &Context<'_>,
    service: &Service,
    routes: &Routes,
    names: &mut BTreeSet<String>,
    derivation: &mut Derivation,
) {
    let Some(spec) = &service.spec else { return };
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return;
    }
    let object = ObjectRef::of("Service", &service.metadata);
    let addresses = service_addresses(service);
    if addresses.is_empty() {
        let c = facts::lb_address_pending(object.to_string(), "status.loadBalancer.ingress");
        facts::push_condition(&mut derivation.conditions, c);
    }
    for port in spec.ports.iter().flatten() {
        if !routes.leading_to(service, port).is_empty() {
            continue;
        }
        if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
            let message = format!(
                "port {} is {}: parallax probes TCP only",
                port_label(port),
                port.protocol.as_deref().unwrap_or("")
            );
            push_note(&mut derivation.notes, Note { object: object.clone(), message });
            continue;
        }
        let Some(client) = view::external_service(service, port, &addresses, &mut derivation.notes) else {
            continue;
        };
        let base = target_name(&["svc", ns(service), name(service), &port_label(port)]);
        let host = match client.get("url") {
            Some(Value::Str(url)) => view::url_dns_host(url),
            _ => None,
        };
        let mut comments = vec![NO_CHECKERS.to_owned()];
        comments.extend(view::dns_comment(host.as_deref(), &addresses));
        let facts = facts::service_facts(ctx.cluster, None, service, &[]);
        let name = push_target(derivation, names, base, object.clone(), comments, client, facts);
        let facts = derivation.targets.last().and_then(|t| t.cluster.as_ref());
        if let Some(c) = facts.and_then(|f| facts::no_ready_endpoints(f, &name)) {
            facts::push_condition(&mut derivation.conditions, c);
        }
    }
}

/// Adds a target named `base`, or `base-2`, `base-3`... when the name is taken (noted); its name.
fn push_target(
    derivation: &mut Derivation,
    names: &mut BTreeSet<String>,
    base: String,
    source: ObjectRef,
    comments: Vec<String>,
    client: DerivedView,
    facts: ClusterFacts,
) -> String {
    let mut name = base.clone();
    let mut n = 2;
    while names.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    if name != base {
        let message = format!("two requests derive the target name {base}: this one is named {name}");
        push_note(&mut derivation.notes, Note { object: source.clone(), message });
    }
    names.insert(name.clone());
    let target = DerivedTarget {
        name: name.clone(),
        source,
        comments,
        client,
        checkers: Vec::new(),
        cluster: Some(facts),
    };
    derivation.targets.push(target);
    name
}

/// The addresses of a Service's `status.loadBalancer.ingress`, IP or hostname each, in order.
pub(super) fn service_addresses(service: &Service) -> Vec<String> {
    let ingress =
        service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
    ingress.into_iter().flatten().filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone())).collect()
}

/// `items` sorted by namespace and name (the cluster's order is the API's, which is not stable).
pub(super) fn sorted<T>(items: &[T], meta: impl Fn(&T) -> &ObjectMeta) -> Vec<&T> {
    let mut sorted: Vec<&T> = items.iter().collect();
    sorted.sort_by(|a, b| {
        let (a, b) = (meta(a), meta(b));
        (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
    });
    sorted
}

/// Adds `note` unless the same note is there already (a route is read once per Service port).
fn push_note(notes: &mut Vec<Note>, note: Note) {
    if !notes.contains(&note) {
        notes.push(note);
    }
}

/// Whether `path` holds characters of a regular expression: controllers such as ingress-nginx
/// (`use-regex`) read such paths as regexes whatever their type, so no one URL stands for them.
pub(super) fn regex_like(path: &str) -> bool {
    path.contains(['^', '$', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '\\'])
}
