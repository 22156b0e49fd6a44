//! One Service port as the health-check rules read it: its type, protocol, node port and traffic
//! policy, its annotations (every bad value a [`Note`] that names it and the default used), and
//! the Service's endpoints on this node.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::super::cluster::{annotations, labels, ObjectRef};
use super::super::{name, ns, port_label, Context, Note, Origin};
use super::annotations::Annotations;
use super::check::{url_host, Part};

/// A ready endpoint of the Service on this node: what ip targets and NEGs check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// The pod's IP.
    pub(super) ip: IpAddr,
    /// The port the Service port resolves to on that pod (the EndpointSlice's port of the same name).
    pub(super) port: Option<u16>,
    /// `EndpointSlice <ns>/<name>`.
    pub(super) slice: String,
}

/// One port of one selected Service, on this node.
pub(super) struct Scope<'a> {
    /// The cluster and the options.
    pub(super) ctx: &'a Context<'a>,
    /// The Service.
    pub(super) service: &'a Service,
    /// The port.
    pub(super) port: &'a ServicePort,
    /// The Service, for notes.
    pub(super) object: ObjectRef,
    /// The port's name, or its number: `spec.ports[<label>]`.
    pub(super) label: String,
    /// This node's IP and where it came from.
    pub(super) node_ip: Part<IpAddr>,
    /// The port's `nodePort`, if allocated.
    pub(super) node_port: Option<u16>,
    /// The Service's annotations.
    pub(super) ann: Annotations<'a>,
}

impl<'a> Scope<'a> {
    /// The scope of `port` of `service` on the node at `node_ip`.
    pub(super) fn new(
        ctx: &'a Context<'a>,
        service: &'a Service,
        port: &'a ServicePort,
        node_ip: std::net::IpAddr,
        node_ip_origin: Origin,
    ) -> Scope<'a> {
        Scope {
            ctx,
            service,
            port,
            object: ObjectRef::of("Service", &service.metadata),
            label: port_label(port),
            node_ip: Part::new(node_ip, node_ip_origin),
            node_port: port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0),
            ann: Annotations::of_service(service),
        }
    }

    fn spec(&self) -> Option<&'a ServiceSpec> {
        self.service.spec.as_ref()
    }

    /// `type: LoadBalancer`.
    pub(super) fn is_load_balancer(&self) -> bool {
        self.spec().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
    }

    /// `type: NodePort`.
    pub(super) fn is_node_port_type(&self) -> bool {
        self.spec().and_then(|s| s.type_.as_deref()) == Some("NodePort")
    }

    /// The port's protocol when it is not TCP (`UDP`, `SCTP`).
    pub(super) fn non_tcp_protocol(&self) -> Option<&'a str> {
        self.port.protocol.as_deref().filter(|p| !p.eq_ignore_ascii_case("TCP"))
    }

    /// `allocateLoadBalancerNodePorts: false`.
    pub(super) fn allocate_node_ports_off(&self) -> bool {
        self.spec().and_then(|s| s.allocate_load_balancer_node_ports) == Some(false)
    }

    /// `externalTrafficPolicy: Local`.
    pub(super) fn etp_local(&self) -> bool {
        self.spec().and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local")
    }

    /// `spec.healthCheckNodePort` of an ETP Local LoadBalancer Service.
    pub(super) fn health_check_node_port(&self) -> Option<u16> {
        if !self.is_load_balancer() || !self.etp_local() {
            return None;
        }
        self.spec()?.health_check_node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0)
    }

    /// The origin of `spec.healthCheckNodePort`.
    pub(super) fn hcnp_origin(&self) -> Origin {
        Origin::Field("spec.healthCheckNodePort".to_owned())
    }

    /// This node's IP as a URL host (`10.0.1.5`, `[fd00::5]`).
    pub(super) fn node_address(&self) -> String {
        url_host(self.node_ip.value)
    }

    /// The node port with its origin.
    pub(super) fn node_port_part(&self) -> Option<Part<u16>> {
        Some(Part::new(self.node_port?, self.port_field("nodePort")))
    }

    /// `spec.ports[<label>].<field>`.
    pub(super) fn port_field(&self, field: &str) -> Origin {
        Origin::Field(format!("spec.ports[{}].{field}", self.label))
    }

    /// `spec.loadBalancerClass`.
    pub(super) fn load_balancer_class(&self) -> Option<&'a str> {
        self.spec()?.load_balancer_class.as_deref()
    }

    /// The port's `appProtocol`.
    pub(super) fn app_protocol(&self) -> Option<&'a str> {
        self.port.app_protocol.as_deref()
    }

    /// The Service port named `name`, or numbered `name`.
    pub(super) fn service_port(&self, name: &str) -> Option<&'a ServicePort> {
        let ports = self.spec()?.ports.as_deref()?;
        ports
            .iter()
            .find(|p| p.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .or_else(|| ports.iter().find(|p| p.port.to_string() == name))
    }

    /// The Service's ports.
    pub(super) fn service_ports(&self) -> &'a [ServicePort] {
        self.spec().and_then(|s| s.ports.as_deref()).unwrap_or(&[])
    }

    /// The port's `targetPort` when it is a number (none: the port itself, as the API defaults it).
    pub(super) fn numeric_target_port(port: &ServicePort) -> Option<u16> {
        match &port.target_port {
            Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
            Some(IntOrString::String(_)) => None,
            None => u16::try_from(port.port).ok(),
        }
    }

    /// The annotation `key` of the Service, trimmed.
    pub(super) fn ann(&self, key: &str) -> Option<&'a str> {
        self.ann.get(key)
    }

    /// Whether an annotation of the Service starts with `prefix`.
    pub(super) fn has_annotation_prefix(&self, prefix: &str) -> bool {
        annotations(&self.service.metadata).keys().any(|k| k.starts_with(prefix))
    }

    /// A note about this Service.
    pub(super) fn note(&self, message: impl Into<String>) -> Note {
        Note { object: self.object.clone(), message: message.into() }
    }

    /// The Service's ready endpoints on this node (EndpointSlices labelled with its name whose
    /// endpoints name this node), with this port's number on them.
    pub(super) fn local_endpoints(&self) -> Vec<Endpoint> {
        let Some(node) = self.ctx.options.node_name.as_deref() else { return Vec::new() };
        let mut found: Vec<Endpoint> = Vec::new();
        for slice in &self.ctx.cluster.endpoint_slices {
            let owner = labels(&slice.metadata).get("kubernetes.io/service-name").map(String::as_str);
            if slice.metadata.namespace.as_deref().unwrap_or("default") != ns(self.service)
                || owner != Some(name(self.service))
            {
                continue;
            }
            let port = slice
                .ports
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .find(|p| p.name.as_deref().unwrap_or("") == self.port.name.as_deref().unwrap_or(""));
            let port = port.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok());
            let slice_name = format!(
                "EndpointSlice {}/{}",
                ns(self.service),
                slice.metadata.name.as_deref().unwrap_or("")
            );
            for endpoint in &slice.endpoints {
                let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                if endpoint.node_name.as_deref() != Some(node) || !ready {
                    continue;
                }
                for ip in endpoint.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                    if !found.iter().any(|e| e.ip == ip) {
                        found.push(Endpoint { ip, port, slice: slice_name.clone() });
                    }
                }
            }
        }
        found
    }
}
