//! One health check as a provider configures it, each part with its origin, before it becomes a
//! [`DerivedView`]: the provider modules fill a [`Check`], the `parallax.io/check-*` overrides
//! replace parts of it, and [`Check::into_view`] writes the probes.d keys.

use std::net::IpAddr;

use super::super::{DerivedView, Origin, Value};
use super::scope::Endpoint;

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Part<T> {
    /// The value.
    pub(super) value: T,
    /// Its origin.
    pub(super) origin: Origin,
}

impl<T> Part<T> {
    /// `value` from `origin`.
    pub(super) fn new(value: T, origin: Origin) -> Part<T> {
        Part { value, origin }
    }
}

/// The protocol a health check speaks, as a probes.d URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    /// An HTTP GET.
    Http,
    /// An HTTP GET over TLS.
    Https,
    /// A TCP connect.
    Tcp,
    /// A TCP connect and a TLS handshake (the Classic ELB's `SSL` check).
    Tls,
}

impl Scheme {
    /// The URL scheme.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
        }
    }

    /// `http`, `https`, `tcp`, `tls` (and the controllers' `ssl`), in any case.
    pub(super) fn parse(s: &str) -> Option<Scheme> {
        match s.trim().to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            "tcp" => Some(Scheme::Tcp),
            "tls" | "ssl" => Some(Scheme::Tls),
            _ => None,
        }
    }

    /// An HTTP check (it has a path, a Host and a status matcher).
    pub(super) fn is_http(self) -> bool {
        matches!(self, Scheme::Http | Scheme::Https)
    }

    /// A check over TLS (it has SNI and verification).
    fn is_tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Tls)
    }
}

/// One health check of one address, every part with its origin.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Check {
    /// The view's name, unique within the target (`aws-nlb`, `gke-ingress`).
    pub(super) name: String,
    /// What the view stands for.
    pub(super) about: String,
    /// The parallax profile.
    pub(super) profile: Part<String>,
    /// HTTP, HTTPS, TCP or TLS.
    pub(super) scheme: Part<Scheme>,
    /// The address checked: this node's IP, or a local pod's IP (ip targets, NEGs).
    pub(super) address: Part<IpAddr>,
    /// The port checked.
    pub(super) port: Part<u16>,
    /// The request path (HTTP checks only).
    pub(super) path: Part<String>,
    /// Milliseconds between checks.
    pub(super) interval_ms: Part<u64>,
    /// Milliseconds before a check fails.
    pub(super) timeout_ms: Part<u64>,
    /// Successes to become healthy.
    pub(super) rise: Part<u64>,
    /// Failures to become unhealthy.
    pub(super) fall: Part<u64>,
    /// The accepted statuses (HTTP checks only): `200`, `200-399`, `200,204`.
    pub(super) status: Part<String>,
    /// The Host header, when the provider sets one (GKE Ingress from a readiness probe).
    pub(super) host: Option<Part<String>>,
    /// The local pod checked (ip targets, NEGs); `None`: this node.
    pub(super) pod: Option<Endpoint>,
}

impl Check {
    /// The URL this check dials: `http://10.0.1.5:31999/healthz`, `tcp://10.0.1.5:31080`.
    pub(super) fn url(&self) -> String {
        let address = url_host(self.address.value);
        let scheme = self.scheme.value;
        let path = if scheme.is_http() { self.path.value.as_str() } else { "" };
        format!("{}://{address}:{}{path}", scheme.as_str(), self.port.value)
    }

    /// One line saying where each part of the URL came from (a URL has one origin in the file).
    pub(super) fn url_parts(&self) -> String {
        let mut line = format!(
            "{} url {}: protocol {} from {}; address from {}; port {} from {}",
            self.name,
            self.url(),
            self.scheme.value.as_str().to_ascii_uppercase(),
            self.scheme.origin,
            self.address.origin,
            self.port.value,
            self.port.origin
        );
        if self.scheme.value.is_http() {
            line.push_str(&format!("; path {} from {}", self.path.value, self.path.origin));
        }
        line
    }

    /// The probes.d view. A timeout not below the interval (AWS's 10 s / 10 s, GKE's 60 s / 60 s)
    /// becomes the interval minus 100 ms: parallax needs a probe to end before the next starts.
    pub(super) fn into_view(self) -> DerivedView {
        let url_origin = self.url_origin();
        let mut view = DerivedView::new(self.name.clone(), self.about.clone());
        view.set("profile", self.profile.value.clone(), self.profile.origin.clone());
        view.set("url", self.url(), url_origin);
        let scheme = self.scheme.value;
        if scheme.is_http() {
            if let Some(host) = &self.host {
                view.set("host", host.value.clone(), host.origin.clone());
            }
        }
        if scheme.is_tls() {
            // Every cloud checker here sends no SNI and verifies nothing (docs/profiles.md).
            let why = Origin::Parallax("load balancer health checks send no SNI".to_owned());
            view.set("sni", false, why);
            view.set(
                "verify",
                false,
                Origin::Parallax("load balancer health checks verify no certificate".to_owned()),
            );
        }
        view.set("interval", duration(self.interval_ms.value), self.interval_ms.origin.clone());
        let (timeout, timeout_origin) = self.effective_timeout();
        view.set("timeout", duration(timeout), timeout_origin);
        view.set("rise", self.rise.value, self.rise.origin.clone());
        view.set("fall", self.fall.value, self.fall.origin.clone());
        if scheme.is_http() {
            view.set("expect.status", status_value(&self.status.value), self.status.origin.clone());
        }
        view
    }

    fn effective_timeout(&self) -> (u64, Origin) {
        let interval = self.interval_ms.value;
        if self.timeout_ms.value < interval {
            return (self.timeout_ms.value, self.timeout_ms.origin.clone());
        }
        let capped = interval.saturating_sub(100).max(1);
        let why = format!(
            "the checker's timeout {} ({}) is not below its interval {}; a probe must end before the next starts",
            duration(self.timeout_ms.value),
            self.timeout_ms.origin,
            duration(interval)
        );
        (capped, Origin::Parallax(why))
    }

    /// The URL's origin in the file: its most specific part's (an override, then an annotation,
    /// then a field...; on a tie the path's, the protocol's, the address's, the port's), the
    /// others said by [`Check::url_parts`].
    fn url_origin(&self) -> Origin {
        let mut parts = vec![&self.scheme.origin, &self.address.origin, &self.port.origin];
        if self.scheme.value.is_http() {
            parts.insert(0, &self.path.origin);
        }
        parts.into_iter().min_by_key(|o| specificity(o)).cloned().unwrap_or_else(|| self.port.origin.clone())
    }
}

/// Lower is more specific: what a user set beats what a controller chose.
fn specificity(origin: &Origin) -> u8 {
    match origin {
        Origin::Override(_) => 0,
        Origin::Annotation(_) => 1,
        Origin::Field(_) => 2,
        Origin::Route(_) => 3,
        Origin::ProviderDefault(_) => 4,
        Origin::Parallax(_) => 5,
        Origin::Node(_) => 6,
    }
}

/// An IP as a URL host: `10.0.1.5`, `[fd00::5]`.
pub(super) fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// Milliseconds as a probes.d duration: `10s`, `9900ms`.
pub(super) fn duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A status matcher as probes.d takes it: one item as a string, several as a list.
fn status_value(status: &str) -> Value {
    let items: Vec<String> =
        status.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    match items.as_slice() {
        [one] => Value::Str(one.clone()),
        _ => Value::List(items),
    }
}
