//! Checker profiles: what each real health checker sends and how it judges (CHECKERS.md §1).
//!
//! A profile only supplies defaults; explicit view keys win.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::plan::{HostHeader, HttpVersion, InitialHealth, Sni};

/// A named checker profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProfileName {
    /// AWS Application Load Balancer target group.
    AwsAlb,
    /// AWS Network Load Balancer target group.
    AwsNlb,
    /// AWS Classic ELB.
    AwsClb,
    /// GCP health checks (HTTP, HTTPS, HTTP2, TCP, SSL, gRPC).
    Gcp,
    /// GCP legacy HTTP(S) health checks (target-pool network LB).
    GcpLegacy,
    /// Azure Load Balancer probe.
    AzureLb,
    /// Azure Application Gateway probe.
    AzureAppgw,
    /// kube-proxy `healthCheckNodePort`.
    KubeProxy,
    /// HAProxy `option httpchk`.
    Haproxy,
    /// Envoy active health checking.
    Envoy,
    /// kubelet readiness probe.
    Kubelet,
    /// A plain checker with parallax's own defaults.
    Generic,
}

impl ProfileName {
    /// Every profile.
    pub const ALL: &'static [ProfileName] = &[
        ProfileName::AwsAlb,
        ProfileName::AwsNlb,
        ProfileName::AwsClb,
        ProfileName::Gcp,
        ProfileName::GcpLegacy,
        ProfileName::AzureLb,
        ProfileName::AzureAppgw,
        ProfileName::KubeProxy,
        ProfileName::Haproxy,
        ProfileName::Envoy,
        ProfileName::Kubelet,
        ProfileName::Generic,
    ];

    /// The name used in config (`aws-alb`...).
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileName::AwsAlb => "aws-alb",
            ProfileName::AwsNlb => "aws-nlb",
            ProfileName::AwsClb => "aws-clb",
            ProfileName::Gcp => "gcp",
            ProfileName::GcpLegacy => "gcp-legacy",
            ProfileName::AzureLb => "azure-lb",
            ProfileName::AzureAppgw => "azure-appgw",
            ProfileName::KubeProxy => "kube-proxy",
            ProfileName::Haproxy => "haproxy",
            ProfileName::Envoy => "envoy",
            ProfileName::Kubelet => "kubelet",
            ProfileName::Generic => "generic",
        }
    }

    /// Parses a config name.
    pub fn from_name(name: &str) -> Option<ProfileName> {
        ProfileName::ALL.iter().copied().find(|p| p.as_str() == name)
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ProfileName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a profile supplies when the view does not say otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileDefaults {
    /// Request method (`GET`; HAProxy `OPTIONS`).
    pub method: http::Method,
    /// Host header rule.
    pub host: HostHeader,
    /// User-Agent sent, or none.
    pub user_agent: Option<&'static str>,
    /// HTTP version.
    pub http_version: HttpVersion,
    /// Send `Connection: close`.
    pub connection_close: bool,
    /// Extra headers the checker sends after Host and User-Agent, in wire order.
    pub headers: &'static [(&'static str, &'static str)],
    /// Write header names in Title-Case (Go-based checkers) instead of lowercase.
    pub title_case_headers: bool,
    /// SNI rule on TLS checks.
    pub sni: Sni,
    /// Whether the checker verifies the server certificate.
    pub verify: bool,
    /// ALPN offered on TLS checks.
    pub alpn: &'static [&'static str],
    /// Accepted statuses.
    pub status: &'static [RangeInclusive<u16>],
    /// Consecutive successes to become healthy.
    pub rise: u32,
    /// Consecutive failures to become unhealthy.
    pub fall: u32,
    /// Check interval.
    pub interval: Duration,
    /// Check timeout.
    pub timeout: Duration,
    /// Verdict starting state.
    pub initial: InitialHealth,
    /// When this checker sends a PROXY header, it is a `LOCAL` one (AWS NLB).
    pub proxy_local: bool,
    /// Read kube-proxy's `localEndpoints` from the body.
    pub kube_proxy_endpoints: bool,
    /// The source ranges the real checker probes from (for the `allow_sources` audit).
    pub source_ranges: &'static [&'static str],
}

/// The defaults of a client view (no profile): what a browser-like user agent does.
pub fn client_defaults() -> ProfileDefaults {
    todo!("profiles: client defaults")
}

/// The defaults of `profile`.
pub fn defaults(profile: ProfileName) -> ProfileDefaults {
    let _ = profile;
    todo!("profiles: the table of CHECKERS.md §1")
}
