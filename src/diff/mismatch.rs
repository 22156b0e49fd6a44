//! A mismatch: the record of one client/checker disagreement (probed, or found by the
//! `allow_sources` audit), with which way it goes and what it was diagnosed as.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use super::attribute::Attribute;
use super::attribution::{dialed, Attribution};
use super::audit::SourceGap;
use super::diagnosis::{causes, diagnose, Case, Cause, Diagnosis};
use crate::config::Target;
use crate::probe::ErrorCode;

/// Which way a client verdict and a checker verdict disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The checker passes, clients fail: the LB keeps sending users to a broken route.
    Blackhole,
    /// The checker fails, clients succeed: the LB pulls a backend that works.
    FalseDrain,
}

impl Direction {
    /// `blackhole` or `false_drain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Blackhole => "blackhole",
            Direction::FalseDrain => "false_drain",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a mismatch was found from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The probes' outcomes disagreed.
    Probes,
    /// The `allow_sources` audit: no traffic needed, found even while probes pass.
    Audit,
}

/// One mismatch, serialized exactly as the `mismatch` record of `parallax probe --format json` (the report adds `"type"`):
/// `target`, `client_view`, `checker_view`, `direction`, `diagnosis`, `flipped`, `evidence`,
/// plus fields of its own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    /// Target name.
    pub target: Arc<str>,
    /// The target's `id` (its name unless given): what joins vantages.
    pub target_id: Arc<str>,
    /// The client view's name.
    pub client_view: Arc<str>,
    /// The checker view's name.
    pub checker_view: Arc<str>,
    /// Which way they disagree.
    pub direction: Direction,
    /// The named failure.
    pub diagnosis: Diagnosis,
    /// The attributes whose switch flipped a result, most likely first.
    pub flipped: Vec<Attribute>,
    /// One line for a human: what differed, what happened.
    pub evidence: String,
    /// Every cause, primary first (its diagnosis is `diagnosis`): one for a single cause, one per
    /// attribute of a compound cause (all must be fixed), none when `unattributed`.
    pub causes: Vec<Cause>,
    /// Probes or the audit.
    pub basis: Basis,
    /// The address the client outcome dialed (with `each_address`, which one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_address: Option<SocketAddr>,
    /// The address the checker outcome dialed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checker_address: Option<SocketAddr>,
    /// The client outcome's error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_error: Option<ErrorCode>,
    /// The checker outcome's error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checker_error: Option<ErrorCode>,
    /// The hybrids probed, when attribution ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
}

impl Mismatch {
    /// The record of a disagreeing pair: diagnoses it ([`diagnose`]) and keeps the attribution
    /// the diagnosis was made from.
    pub fn diagnose(case: &Case<'_>) -> Mismatch {
        let finding = diagnose(case);
        let causes = causes(case, &finding);
        Mismatch {
            target: case.client_view.target.clone(),
            target_id: case.client_view.target_id.clone(),
            client_view: case.client_view.name.clone(),
            checker_view: case.checker_view.name.clone(),
            direction: case.direction,
            diagnosis: finding.diagnosis,
            flipped: case.attribution.map(Attribution::flipped).unwrap_or_default(),
            evidence: finding.evidence,
            causes,
            basis: Basis::Probes,
            client_address: dialed(case.client),
            checker_address: dialed(case.checker),
            client_error: case.client.error,
            checker_error: case.checker.error,
            attribution: case.attribution.cloned(),
        }
    }

    /// The record of an `allow_sources` gap.
    pub fn from_audit(target: &Target, gap: &SourceGap) -> Mismatch {
        let finding = gap.finding(target);
        Mismatch {
            target: target.name.clone(),
            target_id: target.id.clone(),
            client_view: target.client.name.clone(),
            checker_view: gap.checker.clone(),
            direction: Direction::FalseDrain,
            diagnosis: finding.diagnosis,
            flipped: Vec::new(),
            causes: vec![Cause {
                diagnosis: finding.diagnosis,
                attributes: Vec::new(),
                evidence: finding.evidence.clone(),
            }],
            evidence: finding.evidence,
            basis: Basis::Audit,
            client_address: None,
            checker_address: None,
            client_error: None,
            checker_error: None,
            attribution: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_names() {
        assert_eq!(serde_json::to_value(Direction::Blackhole).unwrap(), "blackhole");
        assert_eq!(serde_json::to_value(Direction::FalseDrain).unwrap(), "false_drain");
        assert_eq!(Direction::FalseDrain.to_string(), "false_drain");
    }
}
