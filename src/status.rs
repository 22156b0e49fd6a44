//! The daemon's status document: what `/api/v1/status` serves and the dashboard renders.
//! Built by the daemon, read by the admin server. Never holds a secret: views are shown through
//! their redacted `url_display`, outcomes carry no header values.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{ClusterFacts, Condition, ProfileName, Role};
use crate::diff::{Diagnosis, Mismatch};
use crate::probe::Outcome;

/// How many recent probes each view keeps for the latency trend.
pub const RECENT_PROBES: usize = 60;

/// The whole document.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusDoc {
    /// parallax version.
    pub version: &'static str,
    /// Increases with every plan swapped in (first plan: 1).
    pub generation: u64,
    /// Plan loaded and scheduler running.
    pub ready: bool,
    /// Daemon start, RFC 3339.
    pub started_at: String,
    /// When the running plan was loaded, RFC 3339.
    pub plan_loaded_at: String,
    /// The last reload attempt, if any.
    pub last_reload: Option<ReloadStatus>,
    /// Every target, in configuration order.
    pub targets: Vec<TargetStatus>,
    /// What the Kubernetes API says that needs no probe (`[[condition]]`), from the running plan.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Kubernetes discovery, when `[discovery.kubernetes]` is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryStatus>,
    /// `[vantage]`: where this instance probes from (as its metrics' labels say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vantage: Option<crate::config::Vantage>,
}

/// How Kubernetes discovery is doing: what `/readyz`'s detail and the dashboard say.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiscoveryStatus {
    /// `node` or `external`.
    pub mode: &'static str,
    /// Every kind the cluster serves has been listed once (until then the daemon is not ready).
    pub synced: bool,
    /// No watch is failing now.
    pub healthy: bool,
    /// Since when a watch (or the client) has been failing, RFC 3339; the last good objects keep
    /// being probed meanwhile.
    pub failing_since: Option<String>,
    /// Why the client could not be built (bad kubeconfig, no credentials), if so.
    pub client_error: Option<String>,
    /// Targets derived from the cluster and compiled into the running plan.
    pub targets: usize,
    /// Derived targets that did not compile, each with its error (dropped; the others run).
    pub rejected: Vec<String>,
    /// What the derivation skipped or found, each with its object and reason.
    pub notes: Vec<String>,
    /// When the cluster's objects were last derived, RFC 3339.
    pub derived_at: Option<String>,
    /// Per kind watched.
    pub resources: Vec<DiscoveryResource>,
}

/// The watch of one kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiscoveryResource {
    /// `services`, `endpointslices`, `ingresses`, `ingressclasses`, `gateways`, `httproutes`,
    /// `backendconfigs`, `node`.
    pub resource: &'static str,
    /// Listed once.
    pub synced: bool,
    /// Not served by the cluster (a CRD not installed): asked again every 5 minutes.
    pub absent: bool,
    /// The last request failed; retrying with backoff.
    pub failing: bool,
    /// Errors since start.
    pub errors: u64,
    /// Objects held.
    pub objects: usize,
    /// The last error, one line.
    pub last_error: Option<String>,
}

impl DiscoveryStatus {
    /// `/readyz`'s detail: one line of state, then one line per failing or absent kind.
    pub fn readiness_detail(&self) -> String {
        let mut out = String::new();
        let state = match (&self.client_error, self.synced, self.healthy) {
            (Some(e), _, _) => format!("discovery: no Kubernetes client: {e}"),
            (None, false, _) => "discovery: waiting for the first list of the cluster".to_owned(),
            (None, true, true) => {
                format!("discovery: {} mode, {} targets derived, watching", self.mode, self.targets)
            }
            (None, true, false) => format!(
                "discovery: failing since {}: probing the last good objects ({} targets)",
                self.failing_since.as_deref().unwrap_or("?"),
                self.targets
            ),
        };
        out.push_str(&state);
        for r in &self.resources {
            if r.failing {
                let error = r.last_error.as_deref().unwrap_or("");
                out.push_str(&format!("\n  {}: failing ({} errors): {error}", r.resource, r.errors));
            } else if r.absent {
                out.push_str(&format!("\n  {}: not served by this cluster", r.resource));
            }
        }
        if !self.rejected.is_empty() {
            out.push_str(&format!(
                "\n  {} derived targets rejected (see /api/v1/status)",
                self.rejected.len()
            ));
        }
        out
    }
}

/// A reload attempt.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    /// RFC 3339.
    pub at: String,
    /// Whether the new plan was swapped in.
    pub ok: bool,
    /// Every configuration error when it was not (never a secret: config errors never hold one).
    pub errors: Vec<String>,
}

/// One target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// Target name.
    pub name: String,
    /// The target's `id` (its name unless given): what joins its metrics across vantages.
    pub id: String,
    /// Client view first, then checkers in configuration order.
    pub views: Vec<ViewStatus>,
    /// Mismatches open right now.
    pub mismatches: Vec<OpenMismatchStatus>,
    /// What the Kubernetes API said behind it (`[target.cluster]`), when discovery derived it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterFacts>,
    /// The client view's last failure, when a condition of the target explains it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explained: Option<ExplainedStatus>,
}

/// A client failure a condition of its target explains.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainedStatus {
    /// The client view.
    pub view: String,
    /// The diagnosis the condition names.
    pub diagnosis: Diagnosis,
    /// The outcome and what the API says.
    pub evidence: String,
}

/// One view.
#[derive(Debug, Clone, Serialize)]
pub struct ViewStatus {
    /// View name.
    pub name: String,
    /// Client or checker.
    pub role: Role,
    /// Checker profile.
    pub profile: Option<ProfileName>,
    /// The URL, secrets `<redacted>`.
    pub url: String,
    /// Probe interval, milliseconds.
    pub interval_ms: u64,
    /// The emulated LB's verdict.
    pub verdict: VerdictStatus,
    /// The last outcome (the worst one with `each_address`).
    pub last_outcome: Option<Outcome>,
    /// The last [`RECENT_PROBES`] probes, oldest first.
    pub recent: Vec<RecentProbe>,
    /// Probes run since the view started.
    pub probes: u64,
    /// Of which failed.
    pub failures: u64,
    /// Ticks skipped because the previous probe was still running.
    pub skipped: u64,
}

/// A verdict.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictStatus {
    /// `healthy`, `unhealthy`, or `unknown` before probes decided it.
    pub state: &'static str,
    /// Since when (RFC 3339), when known.
    pub since: Option<String>,
    /// Current run of successes.
    pub consecutive_ok: u32,
    /// Current run of failures.
    pub consecutive_fail: u32,
    /// Thresholds.
    pub rise: u32,
    /// Thresholds.
    pub fall: u32,
}

/// One recent probe, for the trend.
#[derive(Debug, Clone, Serialize)]
pub struct RecentProbe {
    /// RFC 3339 start.
    pub at: String,
    /// Success.
    pub ok: bool,
    /// Total duration, milliseconds.
    pub total_ms: f64,
    /// Error code on failure.
    pub error: Option<&'static str>,
}

/// An open mismatch.
#[derive(Debug, Clone, Serialize)]
pub struct OpenMismatchStatus {
    /// The record (the `mismatch` record's fields: direction, diagnosis, flipped, evidence...).
    #[serde(flatten)]
    pub mismatch: Mismatch,
    /// When the views started to disagree, RFC 3339.
    pub since: String,
    /// When the hold elapsed and it opened, RFC 3339.
    pub opened_at: String,
    /// Seconds open so far.
    pub open_for_s: f64,
}

/// `/api/v1/status/summary`: the document's counts, without a row per view — what a scraper or
/// a script needs in a few hundred bytes, whatever the number of views.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusSummary {
    /// parallax version.
    pub version: &'static str,
    /// The plan generation.
    pub generation: u64,
    /// Plan loaded and scheduler running.
    pub ready: bool,
    /// Daemon start, RFC 3339.
    pub started_at: String,
    /// When the running plan was loaded, RFC 3339.
    pub plan_loaded_at: String,
    /// The last reload attempt, if any.
    pub last_reload: Option<ReloadSummary>,
    /// Targets.
    pub targets: usize,
    /// Views, clients and checkers.
    pub views: usize,
    /// Views per verdict state: `healthy`, `unhealthy`, `unknown` (all three always present).
    pub verdicts: BTreeMap<&'static str, usize>,
    /// Views whose last probe failed.
    pub failing_views: usize,
    /// Mismatches open right now.
    pub mismatches: usize,
    /// Of which, per direction: `blackhole`, `false_drain` (both always present).
    pub mismatches_by_direction: BTreeMap<&'static str, usize>,
    /// Of which, per diagnosis code (only those open).
    pub mismatches_by_diagnosis: BTreeMap<&'static str, usize>,
    /// `[[condition]]`s of the running plan.
    pub conditions: usize,
    /// Kubernetes discovery, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoverySummary>,
}

/// The last reload, counted.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadSummary {
    /// RFC 3339.
    pub at: String,
    /// Whether the new plan was swapped in.
    pub ok: bool,
    /// How many configuration errors it had (the full document lists them).
    pub errors: usize,
}

/// Discovery, counted.
#[derive(Debug, Clone, Serialize)]
pub struct DiscoverySummary {
    /// `node` or `external`.
    pub mode: &'static str,
    /// Listed once.
    pub synced: bool,
    /// No watch failing.
    pub healthy: bool,
    /// Since when failing, RFC 3339.
    pub failing_since: Option<String>,
    /// Targets derived and compiled.
    pub targets: usize,
    /// Derived targets rejected.
    pub rejected: usize,
}

impl StatusDoc {
    /// The counts of this document.
    pub fn summary(&self) -> StatusSummary {
        let mut verdicts: BTreeMap<&'static str, usize> =
            ["healthy", "unhealthy", "unknown"].into_iter().map(|s| (s, 0)).collect();
        let mut by_direction: BTreeMap<&'static str, usize> =
            ["blackhole", "false_drain"].into_iter().map(|s| (s, 0)).collect();
        let mut by_diagnosis = BTreeMap::new();
        let (mut views, mut failing, mut mismatches) = (0, 0, 0);
        for target in &self.targets {
            for view in &target.views {
                views += 1;
                *verdicts.entry(view.verdict.state).or_insert(0) += 1;
                failing += usize::from(view.last_outcome.as_ref().is_some_and(|o| !o.ok));
            }
            for open in &target.mismatches {
                mismatches += 1;
                *by_direction.entry(open.mismatch.direction.as_str()).or_insert(0) += 1;
                *by_diagnosis.entry(open.mismatch.diagnosis.as_str()).or_insert(0) += 1;
            }
        }
        StatusSummary {
            version: self.version,
            generation: self.generation,
            ready: self.ready,
            started_at: self.started_at.clone(),
            plan_loaded_at: self.plan_loaded_at.clone(),
            last_reload: self.last_reload.as_ref().map(|r| ReloadSummary {
                at: r.at.clone(),
                ok: r.ok,
                errors: r.errors.len(),
            }),
            targets: self.targets.len(),
            views,
            verdicts,
            failing_views: failing,
            mismatches,
            mismatches_by_direction: by_direction,
            mismatches_by_diagnosis: by_diagnosis,
            conditions: self.conditions.len(),
            discovery: self.discovery.as_ref().map(|d| DiscoverySummary {
                mode: d.mode,
                synced: d.synced,
                healthy: d.healthy,
                failing_since: d.failing_since.clone(),
                targets: d.targets,
                rejected: d.rejected.len(),
            }),
        }
    }
}
