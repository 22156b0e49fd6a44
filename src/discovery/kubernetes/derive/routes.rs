//! The users' requests: Ingress rules and Gateway listeners × HTTPRoutes -> host, TLS, path,
//! and the LB addresses users reach them at. Node mode uses them for the LB-forwarded client view
//! (the users' request sent to this node's traffic port); external mode makes one target of each.

use k8s_openapi::api::core::v1::{Service, ServicePort};

use super::{Context, Derivation, DerivedView, Note};

/// The LB-forwarded client view of `port` of `service`: the users' request (from
/// `parallax.io/client-url`, else the routes that lead to this Service, else the port's protocol)
/// dialed at `NODE_IP:nodePort`. `None` (said in `notes`) when there is no node port.
pub(super) fn forwarded_client_view(
    ctx: &Context<'_>,
    service: &Service,
    port: &ServicePort,
    notes: &mut Vec<Note>,
) -> Option<DerivedView> {
    let _ = (ctx, service, port, notes);
    None
}

/// External mode: one target per users' request of every selected Ingress, HTTPRoute and
/// LoadBalancer Service, dialed at its LB address, with `expect_addresses` from its status.
pub(super) fn external_targets(ctx: &Context<'_>, derivation: &mut Derivation) {
    let _ = (ctx, derivation);
}
