//! The daemon's status document: what `/api/v1/status` serves and the dashboard renders.
//! Built by the daemon, read by the admin server. Never holds a secret: views are shown through
//! their redacted `url_display`, outcomes carry no header values.

use serde::Serialize;

use crate::config::{ProfileName, Role};
use crate::diff::Mismatch;
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
    /// Client view first, then checkers in configuration order.
    pub views: Vec<ViewStatus>,
    /// Mismatches open right now.
    pub mismatches: Vec<OpenMismatchStatus>,
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
