//! Ingresses routing to a Service port whose controller health-checks the Service's backends:
//! the AWS Load Balancer Controller (class `alb`, controller `ingress.k8s.aws/alb`) and GKE
//! Ingress (class `gce`, `gce-internal`; on GKE an Ingress without a class is `gce`).

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use super::super::super::cluster::annotations;
use super::super::super::ProviderChoice;
use super::super::{ns, Note};
use super::check::Check;
use super::scope::Scope;
use super::{aws, gcp};

const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";

/// The controller of an Ingress, when it is one whose health checks are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controller {
    Alb,
    Gce { internal: bool },
}

/// A selected Ingress routing to the scope's Service port.
pub(super) struct Backing<'a> {
    ingress: &'a Ingress,
    controller: Controller,
}

/// The selected Ingresses (of a known controller) routing to this Service port, by namespace and name.
pub(super) fn backing<'a>(scope: &Scope<'a>) -> Vec<Backing<'a>> {
    let mut found: Vec<Backing<'a>> = scope
        .ctx
        .cluster
        .ingresses
        .iter()
        .filter(|i| i.metadata.namespace.as_deref().unwrap_or("default") == ns(scope.service))
        .filter(|i| routes_to(scope, i))
        .filter_map(|ingress| Some(Backing { ingress, controller: controller(scope, ingress)? }))
        .collect();
    found.sort_by(|a, b| a.ingress.metadata.name.cmp(&b.ingress.metadata.name));
    found
}

/// The health checks of every backing Ingress's load balancer for this port.
pub(super) fn checks(
    scope: &Scope<'_>,
    backing: &[Backing<'_>],
    comments: &mut Vec<String>,
    notes: &mut Vec<Note>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for b in backing {
        let name = b.ingress.metadata.name.as_deref().unwrap_or("");
        match b.controller {
            Controller::Alb => {
                comments.push(format!(
                    "Ingress {name} (AWS Load Balancer Controller, ALB) routes to port {}",
                    scope.label
                ));
                checks.extend(aws::alb(scope, b.ingress, comments, notes));
            }
            Controller::Gce { internal } => {
                comments.push(format!(
                    "Ingress {name} (GKE Ingress{}) routes to port {}",
                    if internal { ", internal" } else { "" },
                    scope.label
                ));
                checks.extend(gcp::ingress(scope, internal, comments, notes));
            }
        }
    }
    checks
}

fn controller(scope: &Scope<'_>, ingress: &Ingress) -> Option<Controller> {
    let class = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| annotations(&ingress.metadata).get(CLASS_ANNOTATION).map(String::as_str));
    match class {
        Some("alb") => Some(Controller::Alb),
        Some("gce") => Some(Controller::Gce { internal: false }),
        Some("gce-internal") => Some(Controller::Gce { internal: true }),
        Some(other) => class_controller(scope, |c| c.metadata.name.as_deref() == Some(other)),
        None => class_controller(scope, |c| {
            annotations(&c.metadata).get(DEFAULT_CLASS).map(String::as_str) == Some("true")
        })
        .or_else(|| on_gke(scope).then_some(Controller::Gce { internal: false })),
    }
}

/// The controller of the first IngressClass matching `pick`.
fn class_controller(
    scope: &Scope<'_>,
    pick: impl Fn(&k8s_openapi::api::networking::v1::IngressClass) -> bool,
) -> Option<Controller> {
    let class = scope.ctx.cluster.ingress_classes.iter().find(|c| pick(c))?;
    match class.spec.as_ref()?.controller.as_deref()? {
        "ingress.k8s.aws/alb" => Some(Controller::Alb),
        "k8s.io/ingress-gce" => Some(Controller::Gce { internal: false }),
        _ => None,
    }
}

fn on_gke(scope: &Scope<'_>) -> bool {
    let provider_id = scope.ctx.cluster.node.as_ref().and_then(|n| n.spec.as_ref()?.provider_id.as_deref());
    scope.ctx.options.provider == ProviderChoice::Gcp
        || provider_id.is_some_and(|id| id.starts_with("gce://"))
}

fn routes_to(scope: &Scope<'_>, ingress: &Ingress) -> bool {
    let Some(spec) = ingress.spec.as_ref() else { return false };
    let rules = spec.rules.as_deref().unwrap_or(&[]);
    let paths = rules.iter().filter_map(|r| r.http.as_ref()).flat_map(|h| h.paths.iter().map(|p| &p.backend));
    spec.default_backend.iter().chain(paths).any(|b| backend_is(scope, b))
}

fn backend_is(scope: &Scope<'_>, backend: &IngressBackend) -> bool {
    let Some(service) = &backend.service else { return false };
    if service.name != super::super::name(scope.service) {
        return false;
    }
    let Some(port) = &service.port else { return false };
    port.number == Some(scope.port.port) || (port.name.is_some() && port.name == scope.port.name)
}
