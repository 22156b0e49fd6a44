//! The compiled, typed, immutable plan: what every part past `compile` sees instead of raw config
//! — its targets, each a client [`View`] and checker views, and the `[admin]` and `[export]`
//! settings.
//!
//! Values here are already validated: a `View` cannot hold a timeout at or above its interval, an
//! unknown scheme, or an unparsable header. Secrets are held in [`Secret`](super::Secret), whose
//! `Debug` and `Display` print `<redacted>`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use super::cluster::{ClusterFacts, Condition};
use super::discovery::KubernetesDiscovery;
use super::view::View;

/// The whole compiled configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Targets in configuration order.
    pub targets: Vec<Target>,
    /// Admin server settings.
    pub admin: AdminSettings,
    /// Export settings.
    pub export: ExportSettings,
    /// `[vantage]`: where this instance probes from, on everything it exports.
    pub vantage: super::Vantage,
    /// `[discovery.kubernetes]`, when configured: targets derived from the cluster are compiled
    /// into the plan beside the files' (see `crate::discovery`).
    pub discovery: Option<KubernetesDiscovery>,
    /// `[[condition]]`s: findings about the cluster that need no probe, in file order.
    pub conditions: Vec<Condition>,
    /// The files the plan was compiled from, in merge order.
    pub files: Vec<PathBuf>,
    /// The files `${file:..}` substitutions (tokens, passwords) and `ca_file`s name, sorted: the
    /// daemon reloads when one changes, as when a configuration file does.
    pub read_files: Vec<PathBuf>,
}

impl Plan {
    /// Every view of every target, client first within each target.
    pub fn views(&self) -> impl Iterator<Item = &View> {
        self.targets.iter().flat_map(Target::views)
    }
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Listen address of the admin server (default `127.0.0.1:9464`).
    pub listen: SocketAddr,
    /// Host names the admin server answers besides its listen address and `localhost`
    /// (`[admin] allowed_hosts`): lowercase, no port, no trailing dot. Other `Host` headers are
    /// answered 421 (DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

impl AdminSettings {
    /// `listen` with no extra allowed host.
    pub fn listening_on(listen: SocketAddr) -> AdminSettings {
        AdminSettings { listen, allowed_hosts: Vec::new() }
    }
}

/// `[export]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    /// `[export.otlp]`, when configured.
    pub otlp: Option<OtlpSettings>,
}

/// Default `success_sample_ratio`: the fraction of plain successes whose spans are exported,
/// for `[export.otlp]` and for OTLP configured by the environment alone.
pub const DEFAULT_SUCCESS_SAMPLE_RATIO: f64 = 0.1;

/// `[export.otlp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// Collector endpoint URL.
    pub endpoint: String,
    /// Wire protocol.
    pub protocol: OtlpProtocol,
    /// Fraction of plain successes whose spans are exported (failures always are).
    pub success_sample_ratio: f64,
}

/// OTLP wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OtlpProtocol {
    /// gRPC (default port 4317).
    #[serde(rename = "grpc")]
    Grpc,
    /// HTTP with protobuf bodies (default port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// One thing users reach, with its client view and its checker views.
#[derive(Debug, Clone)]
pub struct Target {
    /// Unique target name.
    pub name: Arc<str>,
    /// `id`: what joins this target's metrics across vantages (default: its name). Unlike the
    /// name it need not be unique across files of one instance; it must be the same for the same
    /// target on every instance.
    pub id: Arc<str>,
    /// The LB's source allowlist, audited against checker sources (empty: no audit).
    pub allow_sources: Vec<IpNet>,
    /// How users reach it.
    pub client: View,
    /// How each health checker reaches it.
    pub checkers: Vec<View>,
    /// How its views are compared.
    pub diff: DiffSettings,
    /// `[target.cluster]`: the Kubernetes objects behind it and the conditions naming it, when
    /// discovery derived it.
    pub cluster: Option<Arc<ClusterFacts>>,
}

impl Target {
    /// Its views: the client first, then the checkers in configuration order.
    pub fn views(&self) -> impl Iterator<Item = &View> {
        std::iter::once(&self.client).chain(&self.checkers)
    }
}

/// How a target's client and checker verdicts are compared (docs/architecture.md): `[defaults]` or
/// `[[target]]` keys `attribution`, `attribution_interval`, `max_hybrids`, `hold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiffSettings {
    /// Probe hybrids to find the attribute that makes two views disagree. Hybrids are real
    /// requests to the target; off, the diagnosis relies on error codes alone.
    pub attribution: bool,
    /// Minimum time between two attribution runs for one client/checker pair.
    pub attribution_interval: Duration,
    /// Most hybrid probes per attribution run.
    pub max_hybrids: usize,
    /// How long a disagreement must last before it is a mismatch; `None`: two intervals of the
    /// checker view. (`parallax probe` always uses zero: one round decides.)
    pub hold: Option<Duration>,
}

/// Default `attribution_interval` (docs/configuration.md).
pub const DEFAULT_ATTRIBUTION_INTERVAL: Duration = Duration::from_secs(300);
/// Default `max_hybrids`: both directions of the six likeliest attributes.
pub const DEFAULT_MAX_HYBRIDS: usize = 12;
/// Largest `max_hybrids` accepted: every hybrid is a real request to a production endpoint.
pub const MAX_HYBRIDS_CAP: usize = 64;

impl Default for DiffSettings {
    fn default() -> DiffSettings {
        DiffSettings {
            attribution: true,
            attribution_interval: DEFAULT_ATTRIBUTION_INTERVAL,
            max_hybrids: DEFAULT_MAX_HYBRIDS,
            hold: None,
        }
    }
}

/// Default `[admin] listen`.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";
