//! `parallax probe` output: JSON lines in the order of DESIGN §7 (outcomes, then mismatches, then
//! one summary) and a human table.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Plan, Target, View};
use crate::diff::{AttributionSettings, Mismatch};
use crate::probe::{Outcome, Prober};

/// Probes every view of `targets` once, at most `concurrency` at a time, and returns the outcomes
/// in configuration order (targets in order, client view first).
pub async fn probe_round(prober: Arc<Prober>, targets: &[&Target], concurrency: usize) -> Vec<Outcome> {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::new();
    for target in targets {
        for view in std::iter::once(&target.client).chain(target.checkers.iter()) {
            let prober = prober.clone();
            let permits = permits.clone();
            let view: View = view.clone();
            tasks.push(tokio::spawn(async move {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = permits.acquire_owned().await;
                prober.probe(&view).await
            }));
        }
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        match task.await {
            Ok(mut o) => outcomes.append(&mut o),
            // A panicking probe is a bug; don't hide it.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    outcomes
}

/// Diffs a round: for each target, its client view against each checker view (hold time 0),
/// with attribution by hybrid probes as the target's settings say (never when `attribution` is
/// false: the command line can turn it off for every target) and the `allow_sources` audit.
pub async fn diff_round(
    prober: &Prober,
    targets: &[&Target],
    outcomes: &[Outcome],
    attribution: bool,
) -> Vec<Mismatch> {
    let mut mismatches = Vec::new();
    for target in targets {
        let settings = AttributionSettings {
            enabled: attribution && target.diff.attribution,
            interval: target.diff.attribution_interval,
            max_hybrids: target.diff.max_hybrids,
        };
        mismatches.extend(crate::diff::one_shot(prober, target, outcomes, &settings).await);
    }
    mismatches
}

/// The closing record of a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Targets probed.
    pub targets: usize,
    /// Views probed.
    pub views: usize,
    /// Outcomes that failed (client and checker).
    pub outcomes_failed: usize,
    /// Client-view outcomes that failed.
    pub client_failed: usize,
    /// Mismatches found.
    pub mismatches: usize,
}

impl Summary {
    /// Counts a round's outcomes.
    pub fn of(targets: &[&Target], outcomes: &[Outcome], mismatches: usize) -> Summary {
        Summary {
            targets: targets.len(),
            views: targets.iter().map(|t| 1 + t.checkers.len()).sum(),
            outcomes_failed: outcomes.iter().filter(|o| !o.ok).count(),
            client_failed: outcomes.iter().filter(|o| !o.ok && o.role == crate::config::Role::Client).count(),
            mismatches,
        }
    }

    /// `parallax probe`'s exit code (DESIGN §7): 0 all client views succeeded and no mismatch,
    /// 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.client_failed > 0 || self.mismatches > 0 {
            1
        } else {
            0
        }
    }
}

#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    record: &'a T,
}

/// One JSON object per line: every `outcome`, then every `mismatch`, then the `summary`
/// (DESIGN §7).
pub fn json_lines(outcomes: &[Outcome], mismatches: &[Mismatch], summary: &Summary) -> String {
    let mut out = String::new();
    for o in outcomes {
        push_json(&mut out, "outcome", o);
    }
    for m in mismatches {
        push_json(&mut out, "mismatch", m);
    }
    push_json(&mut out, "summary", summary);
    out
}

fn push_json<T: Serialize>(out: &mut String, kind: &'static str, record: &T) {
    // Serializing our own plain structs to a String cannot fail.
    if let Ok(line) = serde_json::to_string(&Tagged { kind, record }) {
        out.push_str(&line);
        out.push('\n');
    }
}

/// A readable table: per target, the client view first and each checker under it, with the
/// result, error, status, timings and what was sent; failure details indented below.
pub fn table(plan: &Plan, outcomes: &[Outcome], mismatches: &[Mismatch], summary: &Summary) -> String {
    let _ = plan;
    let header = ["TARGET", "VIEW", "PROFILE", "RESULT", "ERROR", "STATUS", "TOTAL", "PEER", "REQUEST"];
    let mut rows: Vec<([String; 9], Option<String>)> = Vec::new();
    for o in outcomes {
        let profile = o.profile.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let result = if o.ok { "ok".to_owned() } else { "FAIL".to_owned() };
        let error = match (o.phase, o.error) {
            (Some(phase), Some(code)) => format!("{phase}/{code}"),
            _ => "-".to_owned(),
        };
        let status = match (&o.status, &o.grpc_status) {
            (_, Some(g)) => g.clone(),
            (Some(s), None) => s.to_string(),
            (None, None) => "-".to_owned(),
        };
        let total = format!("{:.1}ms", o.timings.total.as_secs_f64() * 1e3);
        let peer = o.peer.or(o.request.address).map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        rows.push((
            [
                o.target.to_string(),
                o.view.to_string(),
                profile,
                result,
                error,
                status,
                total,
                peer,
                describe_request(o),
            ],
            o.detail.clone().filter(|_| !o.ok),
        ));
    }
    let mut widths = header.map(str::len);
    for (row, _) in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{:<w$}  ", cell, w = widths[i]);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut out, &header.map(str::to_owned));
    for (i, (row, detail)) in rows.iter().enumerate() {
        line(&mut out, row);
        if let Some(d) = detail {
            let _ = writeln!(out, "{:w$}  ↳ {d}", "", w = widths[0]);
        }
        let last_of_target = rows.get(i + 1).is_none_or(|(next, _)| next[0] != row[0]);
        if last_of_target {
            for m in mismatches.iter().filter(|m| *m.target == *row[0]) {
                let flipped: Vec<&str> = m.flipped.iter().map(|a| a.as_str()).collect();
                let _ = writeln!(
                    out,
                    "{:w$}  MISMATCH {} vs {}: {} / {}{}",
                    "",
                    m.client_view,
                    m.checker_view,
                    m.direction.as_str(),
                    m.diagnosis.as_str(),
                    if flipped.is_empty() {
                        String::new()
                    } else {
                        format!(" (flipped: {})", flipped.join(", "))
                    },
                    w = widths[0]
                );
                let _ = writeln!(out, "{:w$}    {}", "", m.evidence, w = widths[0]);
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{} target(s), {} view(s), {} outcome(s) failed ({} client), {} mismatch(es)",
        summary.targets, summary.views, summary.outcomes_failed, summary.client_failed, summary.mismatches
    );
    out
}

/// `GET https /path host=... sni=... ua=...`: what was sent, in one cell.
fn describe_request(o: &Outcome) -> String {
    let r = &o.request;
    let mut s = String::new();
    if let Some(m) = &r.method {
        let _ = write!(s, "{m} ");
    }
    s.push_str(r.scheme);
    if let Some(p) = &r.path {
        let _ = write!(s, " {p}");
    }
    if let Some(v) = r.http_version {
        let _ = write!(s, " {v}");
    }
    match &r.host {
        Some(h) => {
            let _ = write!(s, " host={h}");
        }
        None if r.method.is_some() => s.push_str(" host=none"),
        None => {}
    }
    if let Some(ua) = &r.user_agent {
        let _ = write!(s, " ua={ua:?}");
    }
    if o.request.scheme == "https" || o.request.scheme == "tls" || o.request.scheme == "grpcs" {
        match &r.sni {
            Some(n) => {
                let _ = write!(s, " sni={n}");
            }
            None => s.push_str(" sni=none"),
        }
        if !r.verify {
            s.push_str(" verify=off");
        }
    }
    if let Some(src) = r.source {
        let _ = write!(s, " src={src}");
    }
    if let Some(p) = r.proxy_protocol {
        let _ = write!(
            s,
            " proxy={}",
            match p {
                crate::config::ProxyVersion::V1 => "v1",
                crate::config::ProxyVersion::V2 => "v2",
            }
        );
    }
    s
}
