//! The health checks a cloud load balancer really sends for one Service port, by provider, with
//! `parallax.io/check-*` overrides; and kube-proxy's `healthCheckNodePort` view for every
//! `externalTrafficPolicy: Local` Service. docs/kubernetes.md ("Health checks by provider") has
//! the table, one test per row (`tests.rs`).
//!
//! - `scope`: what one Service port is (type, protocol, node port, traffic policy), its
//!   annotations read with a [`Note`] for every bad value, its local endpoints;
//! - `provider`: which cloud's rules apply, and why;
//! - `aws`, `azure`, `gcp`: each controller's health check of this node (or of its local pods);
//! - `ingress`: the checks of Ingresses routing to the Service (AWS ALB, GKE Ingress);
//! - `overrides`: `parallax.io/check-*`;
//! - `check`: one check, part by part with origins, and the view it becomes.

mod annotations;
mod aws;
mod azure;
mod check;
mod gcp;
mod ingress;
mod overrides;
mod provider;
mod scope;
#[cfg(test)]
mod tests;

use k8s_openapi::api::core::v1::{Service, ServicePort};

use super::{CheckerViews, Context, DerivedView, Note, Origin, PodChecks, Provider};
use check::Check;
use scope::Scope;

/// The checker views of `port` of `service` on this node, or `None` when the port gets no
/// target at all (not behind a load balancer, not TCP, no node port for instance targets: said in
/// `notes` when it is a surprise).
pub(super) fn checker_views(
    ctx: &Context<'_>,
    service: &Service,
    port: &ServicePort,
    notes: &mut Vec<Note>,
) -> Option<CheckerViews> {
    let start = notes.len();
    let views = port_views(ctx, service, port, notes);
    // A bad annotation read for each pod, or for each port of the Service, is said once.
    let mut i = start;
    while i < notes.len() {
        if notes[..i].contains(&notes[i]) {
            notes.remove(i);
        } else {
            i += 1;
        }
    }
    views
}

/// [`checker_views`] before its notes are made unique.
fn port_views(
    ctx: &Context<'_>,
    service: &Service,
    port: &ServicePort,
    notes: &mut Vec<Note>,
) -> Option<CheckerViews> {
    let (node_ip, node_ip_origin) = ctx.node_ip.clone()?;
    let scope = Scope::new(ctx, service, port, node_ip, node_ip_origin);
    let ingresses = ingress::backing(&scope);
    if !scope.is_load_balancer() && ingresses.is_empty() {
        if scope.is_node_port_type() {
            notes.push(scope.note(
                "type NodePort and no selected Ingress of a known controller (AWS ALB, GKE) routes to it: which load \
                 balancer checks it, and how, is unknown, so no target; select the Ingress too, or write the \
                 target by hand",
            ));
        }
        return None;
    }
    if let Some(protocol) = scope.non_tcp_protocol() {
        notes.push(scope.note(format!(
            "port {} is {protocol}: load balancer health checks of {protocol} ports are not emulated; skipped",
            scope.label
        )));
        return None;
    }
    let mut out = CheckerViews::default();
    let mut checks = Vec::new();
    // Whether the Service's own load balancer sends its checks (and users) to this node.
    let mut lb_checks_node = false;
    if scope.is_load_balancer() {
        let (lb_checks, pods) = load_balancer_checks(&scope, &mut out.comments, &mut out.provider, notes)?;
        checks.extend(lb_checks);
        lb_checks_node = !pods;
        if pods && scope.health_check_node_port().is_some() {
            out.comments.push(
                "kube-proxy's healthCheckNodePort is not a checker view here: with ip targets the load balancer \
                 checks the pods, never this node's health port"
                    .to_owned(),
            );
        }
    }
    checks.extend(ingress::checks(&scope, &ingresses, &mut out.comments, notes));
    if !scope.is_load_balancer() && checks.is_empty() {
        // Only an Ingress's checks made this port a target here, and none reaches this node.
        return None;
    }
    overrides::apply(&scope, &mut checks, &mut out.comments, notes);
    finish(&scope, checks, lb_checks_node, &mut out);
    Some(out)
}

/// The checks of the Service's own load balancer, and whether it targets pods (ip targets);
/// `None` when it sends nothing to this node (no node port for instance targets: said in
/// `notes`; ip targets without a local pod).
fn load_balancer_checks(
    scope: &Scope<'_>,
    comments: &mut Vec<String>,
    provider_out: &mut Option<Provider>,
    notes: &mut Vec<Note>,
) -> Option<(Vec<Check>, bool)> {
    let (provider, why) = provider::detect(scope);
    comments.push(why);
    *provider_out = Some(provider);
    let pod_targets = provider == Provider::AwsLbc && aws::lbc_targets_pods(scope);
    if !pod_targets && scope.node_port.is_none() {
        let reason = if scope.allocate_node_ports_off() {
            "allocateLoadBalancerNodePorts is false, so the load balancer's instance targets have no node port \
             to reach: no target on this node (use ip targets, or allocate node ports)"
        } else {
            "no nodePort allocated yet (the API server assigns one to every LoadBalancer port): no target on \
             this node; discover again once it has one"
        };
        notes.push(scope.note(format!("port {}: {reason}", scope.label)));
        return None;
    }
    let checks = match provider {
        Provider::AwsLbc => aws::lbc_nlb(scope, comments, notes),
        Provider::AwsLegacy => aws::legacy(scope, comments, notes),
        Provider::Azure => azure::probe(scope, comments, notes),
        Provider::Gcp => gcp::l4(scope),
        Provider::Metallb => {
            comments.push(
                "MetalLB sends no health check: a VIP with no health check is itself a finding — the speaker \
                 announces it whether or not the endpoints behind it serve (with externalTrafficPolicy Local, \
                 only nodes with a ready local endpoint announce); the client view is the only judge"
                    .to_owned(),
            );
            Vec::new()
        }
        Provider::Generic => {
            comments.push(
                "no cloud load balancer recognised: only kube-proxy's view (externalTrafficPolicy Local) is \
                 derived; set provider, or parallax.io/check-* with parallax.io/check-profile"
                    .to_owned(),
            );
            Vec::new()
        }
    };
    // ip targets with no pod here: the load balancer sends nothing to this node.
    (!pod_targets || !checks.is_empty()).then_some((checks, pod_targets))
}

/// The views, in order (the load balancer's, then the Ingresses', then kube-proxy's when the
/// Service's load balancer checks this node), with unique names and a comment per view saying
/// where each part of its URL came from: the checks of this node in `out.node`, those of each
/// local pod (ip targets, NEGs) in `out.pods`, in the order the pods are first checked.
fn finish(scope: &Scope<'_>, checks: Vec<Check>, lb_checks_node: bool, out: &mut CheckerViews) {
    for check in checks {
        let url_parts = check.url_parts();
        match check.pod.clone() {
            None => {
                out.node_comments.push(url_parts);
                out.node.push(check.into_view());
            }
            Some(endpoint) => {
                let at = match out.pods.iter().position(|p| p.ip == endpoint.ip) {
                    Some(at) => at,
                    None => {
                        out.pods.push(PodChecks {
                            ip: endpoint.ip,
                            port: endpoint.port.map(|p| (p, pod_port_origin(scope, &endpoint))),
                            views: Vec::new(),
                            comments: Vec::new(),
                        });
                        out.pods.len() - 1
                    }
                };
                out.pods[at].comments.push(url_parts);
                out.pods[at].views.push(check.into_view());
            }
        }
    }
    if lb_checks_node {
        if let Some(view) = kube_proxy_view(scope) {
            out.node.push(view);
        }
    }
    unique_names(&mut out.node);
    for pod in &mut out.pods {
        unique_names(&mut pod.views);
    }
}

/// Where a pod's port for this Service port comes from: its EndpointSlice's port of the same name.
fn pod_port_origin(scope: &Scope<'_>, endpoint: &scope::Endpoint) -> Origin {
    Origin::Field(format!("{} ports[{}].port", endpoint.slice, scope.label))
}

/// kube-proxy's answer on `healthCheckNodePort` (ETP Local): what the cloud checks of this node
/// read, with the `localEndpoints` count that says why.
fn kube_proxy_view(scope: &Scope<'_>) -> Option<DerivedView> {
    let hcnp = scope.health_check_node_port()?;
    let mut view = DerivedView::new(
        "kube-proxy",
        "kube-proxy's healthCheckNodePort on this node (externalTrafficPolicy Local)",
    );
    let why =
        Origin::Parallax("externalTrafficPolicy Local: kube-proxy serves healthCheckNodePort".to_owned());
    view.set("profile", "kube-proxy", why);
    view.set("url", format!("http://{}:{}/healthz", scope.node_address(), hcnp), scope.hcnp_origin());
    Some(view)
}

/// A name seen before gets `-2`, `-3`... (two ALBs routing to the same port).
fn unique_names(views: &mut [DerivedView]) {
    let mut seen: Vec<String> = Vec::new();
    for view in views.iter_mut() {
        let base = view.name.clone();
        let mut n = 1;
        while seen.contains(&view.name) {
            n += 1;
            view.name = format!("{base}-{n}");
        }
        seen.push(view.name.clone());
    }
}
