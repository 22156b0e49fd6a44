//! `[vantage]`: where this instance of parallax probes from. Every instance is one honest
//! observer (a DaemonSet pod on a node, or a probe VM outside the cloud's firewall); its vantage
//! is on everything it exports, so one Prometheus can join what several instances saw
//! (docs/slo.md): a `vantage`, `vantage_kind` and, when set, `zone`/`region` label on every
//! metric (one value per instance: no series per view is added), OTLP resource attributes,
//! event lines, the status API and the dashboard.

use serde::Serialize;

/// Most extra labels `[vantage] labels` may add to every series.
pub const MAX_VANTAGE_LABELS: usize = 8;
/// Longest vantage name, zone, region or label value.
pub const MAX_VANTAGE_VALUE_BYTES: usize = 128;

/// Label names `[vantage] labels` may not take: parallax's own, and Prometheus's.
pub(crate) const RESERVED_LABELS: [&str; 18] = [
    "vantage",
    "vantage_kind",
    "zone",
    "region",
    "target",
    "target_id",
    "view",
    "role",
    "result",
    "error",
    "phase",
    "client_view",
    "checker_view",
    "direction",
    "diagnosis",
    "job",
    "instance",
    "le",
];

/// What a vantage sees (docs/slo.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VantageKind {
    /// Inside the cluster, on a node (the DaemonSet): the checkers' view from that node. Its
    /// client view of an LB address is short-circuited by kube-proxy.
    Node,
    /// Outside the cloud's firewall (a probe VM): the only honest users' view.
    External,
}

impl VantageKind {
    /// `node` or `external`.
    pub fn as_str(self) -> &'static str {
        match self {
            VantageKind::Node => "node",
            VantageKind::External => "external",
        }
    }
}

/// `[vantage]`, compiled: defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vantage {
    /// Default: `NODE_NAME` (the DaemonSet sets it), else the host name, else `unknown`.
    pub name: String,
    /// Default: `node` when `NODE_NAME` is set, else `external`.
    pub kind: VantageKind,
    /// The zone it runs in (`europe-west1-b`), when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The region it runs in, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Extra labels on every series, sorted by name (a JSON object in the status API).
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "labels_as_object")]
    pub labels: Vec<(String, String)>,
}

/// `labels` as `{"name": "value", ...}`, in their order.
fn labels_as_object<S: serde::Serializer>(labels: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(labels.iter().map(|(k, v)| (k, v)))
}

impl Vantage {
    /// The labels every metric series of this instance carries, in order: `vantage`,
    /// `vantage_kind`, then `zone`, `region` and the extra labels when set.
    pub fn metric_labels(&self) -> Vec<(String, String)> {
        let mut labels = vec![
            ("vantage".to_owned(), self.name.clone()),
            ("vantage_kind".to_owned(), self.kind.as_str().to_owned()),
        ];
        if let Some(zone) = &self.zone {
            labels.push(("zone".to_owned(), zone.clone()));
        }
        if let Some(region) = &self.region {
            labels.push(("region".to_owned(), region.clone()));
        }
        labels.extend(self.labels.iter().cloned());
        labels
    }

    /// The OTLP resource attributes: `parallax.vantage.name`, `parallax.vantage.kind`,
    /// `cloud.availability_zone` and `cloud.region` (OpenTelemetry's semantic conventions),
    /// `parallax.vantage.label.<name>` for the extra labels.
    pub fn resource_attributes(&self) -> Vec<(String, String)> {
        let mut attrs = vec![
            ("parallax.vantage.name".to_owned(), self.name.clone()),
            ("parallax.vantage.kind".to_owned(), self.kind.as_str().to_owned()),
        ];
        if let Some(zone) = &self.zone {
            attrs.push(("cloud.availability_zone".to_owned(), zone.clone()));
        }
        if let Some(region) = &self.region {
            attrs.push(("cloud.region".to_owned(), region.clone()));
        }
        attrs.extend(self.labels.iter().map(|(k, v)| (format!("parallax.vantage.label.{k}"), v.clone())));
        attrs
    }

    /// One line for `parallax check` and the start-up line: `node-a (node, zone europe-west1-b)`.
    pub fn describe(&self) -> String {
        let mut parts = vec![self.kind.as_str().to_owned()];
        if let Some(zone) = &self.zone {
            parts.push(format!("zone {zone}"));
        }
        if let Some(region) = &self.region {
            parts.push(format!("region {region}"));
        }
        for (k, v) in &self.labels {
            parts.push(format!("{k}={v}"));
        }
        format!("{} ({})", self.name, parts.join(", "))
    }
}

/// Whether `name` is a Prometheus label name parallax accepts: `[a-z_][a-z0-9_]*`, not starting
/// with `__` (reserved by Prometheus).
pub(crate) fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && !name.starts_with("__")
}
