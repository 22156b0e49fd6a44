//! A users' request as a client view: the URL, where it is dialed, SNI and verification, and the
//! addresses DNS must answer with.
//!
//! An LB address that is a DNS name (AWS's `…elb.amazonaws.com`) is dialed as such: `connect_to`
//! takes `host:port` with a name, and parallax resolves it at each probe as users' resolvers do.
//! Its IPs are in no status and change, so `expect_addresses` (IPs only) is set from the IPs of
//! the status alone; with none, DNS of the users' host is not checked, and the target says so.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort};

use super::{name, ns, port_label, push_note, service_addresses, Note, ObjectRef, Request, CLIENT_URL};
use crate::discovery::kubernetes::cluster::annotations;
use crate::discovery::kubernetes::derive::{DerivedView, Origin};

/// Node mode: `request` as the load balancer forwards it to `port` of `service`. The LB ends
/// the users' TLS and speaks the backend's protocol (HTTPS only when the port says so), keeping
/// the Host and path users sent.
pub(super) fn forwarded(view: &mut DerivedView, request: &Request, service: &Service, port: &ServicePort) {
    let (scheme, why) = match port_scheme(port) {
        ("https", why) => ("https", why),
        _ => ("http", String::new()),
    };
    let host = match (&request.host, request.addresses.first()) {
        (Some(host), _) => host.clone(),
        (None, Some(address)) => address.clone(),
        (None, None) => cluster_dns_name(service),
    };
    view.set(
        "url",
        url(scheme, &host, default_port(scheme), &request.path),
        Origin::Route(request.route.clone()),
    );
    if scheme == "https" {
        if is_dns_name(&host) {
            view.set("sni", host.as_str(), Origin::Route(request.route.clone()));
        }
        let why = format!(
            "the backend speaks TLS ({why}); load balancers do not verify their backends' certificates (ALB, GKE), \
             neither does this view"
        );
        view.set("verify", false, Origin::Parallax(why));
    }
}

/// The users' request of a port no route and no annotation describes: the port's protocol, to
/// the LB's address (else the Service's cluster DNS name), path `/`.
pub(super) fn port_request(view: &mut DerivedView, service: &Service, port: &ServicePort) {
    let (scheme, why) = port_scheme(port);
    let number = u16::try_from(port.port).unwrap_or_default();
    match service_addresses(service).first() {
        Some(address) => {
            let origin = Origin::Field(format!("{why}; host status.loadBalancer.ingress[0]"));
            view.set("url", url(scheme, address, number, "/"), origin);
        }
        None => {
            let origin = Origin::Parallax(format!(
                "{why}; no load balancer address in the status yet: the Service's cluster DNS name"
            ));
            view.set("url", url(scheme, &cluster_dns_name(service), number, "/"), origin);
        }
    }
    if scheme == "https" {
        let why = format!(
            "no route or {CLIENT_URL} names the host users request, so the certificate's name cannot be checked"
        );
        view.set("verify", false, Origin::Parallax(why));
    }
}

/// External mode: `request` through the first address of its status, with `expect_addresses`
/// from every IP of the status. `None` (noted) when the status has no address yet.
pub(super) fn external(request: &Request, notes: &mut Vec<Note>) -> Option<DerivedView> {
    let Some(dial) = request.addresses.first() else {
        let message = format!(
            "not yet provisioned: {} holds no address, so users cannot reach {}; no target until the controller \
             writes one",
            request.addresses_field, request.route
        );
        push_note(notes, Note { object: request.source.clone(), message });
        return None;
    };
    let mut view =
        DerivedView::new("client", format!("the users' request, through the load balancer at {dial}"));
    let scheme = if request.tls { "https" } else { "http" };
    let host = request.host.as_deref().unwrap_or(dial);
    view.set("url", url(scheme, host, request.port, &request.path), Origin::Route(request.route.clone()));
    if request.host.is_some() {
        let origin = Origin::Field(format!("{}[0]", request.addresses_field));
        view.set("connect_to", endpoint(dial, request.port), origin);
    }
    if request.tls {
        if is_dns_name(host) {
            view.set("sni", host, Origin::Route(request.route.clone()));
            view.set("verify", true, Origin::Parallax("users' clients verify the certificate".to_owned()));
        } else {
            let why = "users request an IP address: the certificate's name cannot be checked".to_owned();
            view.set("verify", false, Origin::Parallax(why));
        }
    }
    expect_addresses(&mut view, host, &request.addresses, &request.addresses_field);
    Some(view)
}

/// External mode: `port` of a LoadBalancer Service no route leads to, through the first address
/// of its status. `None` (noted) when the status has no address yet.
pub(super) fn external_service(
    service: &Service,
    port: &ServicePort,
    addresses: &[String],
    notes: &mut Vec<Note>,
) -> Option<DerivedView> {
    let object = ObjectRef::of("Service", &service.metadata);
    let Some(dial) = addresses.first() else {
        let message = format!(
            "not yet provisioned: status.loadBalancer.ingress holds no address, so users cannot reach port {}; \
             no target until the cloud controller writes one",
            port_label(port)
        );
        push_note(notes, Note { object, message });
        return None;
    };
    let mut view =
        DerivedView::new("client", format!("the users' request, through the load balancer at {dial}"));
    match annotations(&service.metadata).get(CLIENT_URL) {
        Some(client_url) => {
            view.set("url", client_url.as_str(), Origin::Override(CLIENT_URL.to_owned()));
            let number = u16::try_from(port.port).unwrap_or_default();
            view.set(
                "connect_to",
                endpoint(dial, number),
                Origin::Field("status.loadBalancer.ingress[0]".to_owned()),
            );
            if let Some(host) = url_dns_host(client_url) {
                expect_addresses(&mut view, &host, addresses, "status.loadBalancer.ingress");
            }
        }
        None => port_request(&mut view, service, port),
    }
    Some(view)
}

/// A comment for a target whose users' host is a DNS name while the LB's addresses are DNS
/// names too: no IP to expect, so DNS is not checked.
pub(super) fn dns_comment(host: Option<&str>, addresses: &[String]) -> Option<String> {
    let host = host.filter(|h| is_dns_name(h))?;
    let first = addresses.first()?;
    if first == host || addresses.iter().any(|a| a.parse::<IpAddr>().is_ok()) {
        return None;
    }
    Some(format!(
        "the load balancer's address is a DNS name ({first}): its IPs are in no status, so what DNS answers for \
         {host} is not checked (no expect_addresses); add them yourself if they are fixed"
    ))
}

/// Sets `expect_addresses` to the IPs of `addresses` when `host` is a DNS name (an IP has no
/// DNS answer to check): DNS still pointing at an old load balancer is then found.
fn expect_addresses(view: &mut DerivedView, host: &str, addresses: &[String], field: &str) {
    let ips: Vec<String> = addresses.iter().filter(|a| a.parse::<IpAddr>().is_ok()).cloned().collect();
    if is_dns_name(host) && !ips.is_empty() {
        view.set("expect_addresses", ips, Origin::Field(field.to_owned()));
    }
}

/// The scheme users speak to `port`, and the field that says so: `appProtocol` (`http`,
/// `https`, `kubernetes.io/h2c`, `kubernetes.io/ws`, `kubernetes.io/wss`), else the port's name
/// (`http`, `https`, or those with a `-suffix`), else the port number 80 or 443, else `tcp`.
pub(super) fn port_scheme(port: &ServicePort) -> (&'static str, String) {
    let label = port_label(port);
    let by_app = match port.app_protocol.as_deref() {
        Some("http" | "kubernetes.io/ws") => Some("http"),
        // parallax speaks HTTP/1.1 without the h2c upgrade: the request is the same.
        Some("kubernetes.io/h2c") => Some("http"),
        Some("https" | "kubernetes.io/wss") => Some("https"),
        _ => None,
    };
    if let (Some(scheme), Some(app)) = (by_app, &port.app_protocol) {
        return (scheme, format!("spec.ports[{label}].appProtocol {app}"));
    }
    let by_name = port.name.as_deref().and_then(|n| match n.split('-').next() {
        Some("http") => Some("http"),
        Some("https") => Some("https"),
        _ => None,
    });
    if let Some(scheme) = by_name {
        return (scheme, format!("spec.ports[{label}].name"));
    }
    match port.port {
        80 => ("http", format!("spec.ports[{label}].port 80")),
        443 => ("https", format!("spec.ports[{label}].port 443")),
        _ => ("tcp", format!("spec.ports[{label}]: no appProtocol, name or port number says HTTP")),
    }
}

/// `scheme://host[:port]path`: the port only when not the scheme's default; `tcp` takes no path.
fn url(scheme: &str, host: &str, port: u16, path: &str) -> String {
    let host = if host.parse::<std::net::Ipv6Addr>().is_ok() { format!("[{host}]") } else { host.to_owned() };
    match scheme {
        "tcp" => format!("tcp://{host}:{port}"),
        _ if port == default_port(scheme) => format!("{scheme}://{host}{path}"),
        _ => format!("{scheme}://{host}:{port}{path}"),
    }
}

/// 443 for https, 80 else.
fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// `host:port`, or `[v6]:port`: what `connect_to` takes.
pub(super) fn endpoint(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// The host of `url` when it is a DNS name (not an IP), lowercased.
pub(super) fn url_dns_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if host_port.starts_with('[') {
        return None;
    }
    let host = host_port.split(':').next().unwrap_or_default().to_ascii_lowercase();
    is_dns_name(&host).then_some(host)
}

/// Not empty and not an IP address.
fn is_dns_name(host: &str) -> bool {
    !host.is_empty() && host.parse::<IpAddr>().is_err()
}

/// `<name>.<namespace>.svc.cluster.local`: the default cluster domain (a cluster with another
/// domain needs `parallax.io/client-url`).
fn cluster_dns_name(service: &Service) -> String {
    format!("{}.{}.svc.cluster.local", name(service), ns(service))
}
