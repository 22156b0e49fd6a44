//! `parallax probe` output: JSON lines in their contract's order (outcomes, then mismatches, then
//! one summary) and a human table.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Plan, Target, View};
use crate::diff::{AttributionSettings, Mismatch};
use crate::duration::human;
use crate::probe::{Outcome, Prober};

/// Probes every view of `targets` once, at most `concurrency` at a time, and returns the outcomes
/// in configuration order (targets in order, client view first).
pub async fn probe_round(prober: Arc<Prober>, targets: &[&Target], concurrency: usize) -> Vec<Outcome> {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::new();
    for target in targets {
        for view in target.views() {
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
        let mut settings = AttributionSettings::from(&target.diff);
        settings.enabled &= attribution;
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

    /// `parallax probe`'s exit code: 0 all client views succeeded and no mismatch,
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
/// (docs/architecture.md#contracts).
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

/// Views shown side by side in one block: the client and at most this many checkers (more
/// checkers continue in further blocks, the client repeated so every block reads on its own).
const CHECKERS_PER_BLOCK: usize = 2;

/// A readable report: per target, the client view and its checker views side by side (one column
/// each: result, error, status, timings, what was dialed and sent), each failure's detail, and
/// under them every mismatch with its direction, diagnosis, flipped attributes and evidence.
pub fn table(plan: &Plan, outcomes: &[Outcome], mismatches: &[Mismatch], summary: &Summary) -> String {
    let mut out = String::new();
    for target in &plan.targets {
        let mine: Vec<&Outcome> = outcomes.iter().filter(|o| *o.target == *target.name).collect();
        if mine.is_empty() {
            continue;
        }
        let _ = writeln!(out, "target {}", target.name);
        let (clients, checkers): (Vec<&Outcome>, Vec<&Outcome>) =
            mine.iter().partition(|o| o.role == crate::config::Role::Client);
        let chunks: Vec<&[&Outcome]> =
            if checkers.is_empty() { vec![&[][..]] } else { checkers.chunks(CHECKERS_PER_BLOCK).collect() };
        for (i, chunk) in chunks.into_iter().enumerate() {
            let columns: Vec<&Outcome> = clients.iter().chain(chunk.iter()).copied().collect();
            // The client's failure detail once, under the first block.
            let details = if i == 0 { &columns[..] } else { chunk };
            out.push_str(&side_by_side(&columns, details));
        }
        for m in mismatches.iter().filter(|m| *m.target == *target.name) {
            let flipped: Vec<&str> = m.flipped.iter().map(|a| a.as_str()).collect();
            let _ = writeln!(
                out,
                "  MISMATCH {} vs {}: {} / {}{}",
                m.client_view,
                m.checker_view,
                m.direction.as_str(),
                m.diagnosis.as_str(),
                if flipped.is_empty() {
                    String::new()
                } else {
                    format!(" (flipped: {})", flipped.join(", "))
                },
            );
            let _ = writeln!(out, "    {}", m.evidence);
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{} target(s), {} view(s), {} outcome(s) failed ({} client), {} mismatch(es)",
        summary.targets, summary.views, summary.outcomes_failed, summary.client_failed, summary.mismatches
    );
    out
}

/// One block: a label column and one column per outcome, then the failure details of `details`
/// and the `Location` of each redirect among them.
fn side_by_side(columns: &[&Outcome], details: &[&Outcome]) -> String {
    const LABELS: [&str; 9] = ["", "result", "status", "total", "dialed", "request", "host", "tls", "sent"];
    let cells: Vec<[String; 9]> = columns.iter().map(|o| column(o)).collect();
    let widths: Vec<usize> =
        cells.iter().map(|c| c.iter().map(|v| v.chars().count()).max().unwrap_or(0)).collect();
    let label_width = LABELS.iter().map(|l| l.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (row, label) in LABELS.iter().enumerate() {
        let mut line = format!("  {label:<label_width$}");
        for (col, c) in cells.iter().enumerate() {
            let _ = write!(line, "  {:<w$}", c[row], w = widths[col]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for o in details {
        // A redirect's Location says where the answer points, passing or not.
        let location = o.location.as_deref().map(|l| format!("Location: {l}"));
        match (o.ok, &o.detail, location) {
            (false, Some(d), Some(l)) => {
                let _ = writeln!(out, "  ↳ {}: {d}; {l}", o.view);
            }
            (false, Some(d), None) => {
                let _ = writeln!(out, "  ↳ {}: {d}", o.view);
            }
            (_, _, Some(l)) => {
                let status = o.status.map(|s| format!("{s} ")).unwrap_or_default();
                let result = if o.ok { "ok on " } else { "" };
                let _ = writeln!(out, "  ↳ {}: {result}{status}{l}", o.view);
            }
            _ => {}
        }
    }
    out
}

/// The cells of one view's column, in the order of the labels in [`side_by_side`].
fn column(o: &Outcome) -> [String; 9] {
    let title = match o.profile {
        Some(p) => format!("{} ({p})", o.view),
        None => format!("{} ({})", o.view, o.role.as_str()),
    };
    let result = match (o.phase, o.error) {
        (Some(phase), Some(code)) => format!("FAIL {phase}/{code}"),
        _ if o.ok => "ok".to_owned(),
        _ => "FAIL".to_owned(),
    };
    let status = match (&o.status, &o.grpc_status, o.local_endpoints) {
        (_, Some(g), _) => g.clone(),
        (Some(s), None, Some(n)) => format!("{s} (localEndpoints {n})"),
        (Some(s), None, None) => s.to_string(),
        (None, None, _) => "-".to_owned(),
    };
    let total = human(o.timings.total);
    let r = &o.request;
    let dialed = match (o.peer.or(r.address), r.source) {
        (Some(p), Some(src)) => format!("{p} from {src}"),
        (Some(p), None) => p.to_string(),
        (None, _) => "-".to_owned(),
    };
    let mut request = String::new();
    if let Some(m) = &r.method {
        let _ = write!(request, "{m} ");
    }
    request.push_str(r.scheme);
    if let Some(p) = &r.path {
        let _ = write!(request, " {p}");
    }
    if let Some(v) = r.http_version {
        let _ = write!(request, " {v}");
    }
    let host = match (&r.host, r.method.is_some()) {
        (Some(h), _) => h.clone(),
        (None, true) => "none".to_owned(),
        (None, false) => "-".to_owned(),
    };
    let tls = if matches!(r.scheme, "https" | "tls" | "grpcs") {
        let mut t = format!("sni={}", r.sni.as_deref().unwrap_or("none"));
        if !r.verify {
            t.push_str(" verify=off");
        }
        if let Some(v) = o.tls.as_ref().and_then(|t| t.version.as_deref()) {
            let _ = write!(t, " {v}");
        }
        t
    } else {
        "-".to_owned()
    };
    let mut sent = Vec::new();
    if let Some(ua) = &r.user_agent {
        sent.push(format!("ua={ua:?}"));
    }
    if let Some(p) = r.proxy_protocol {
        sent.push(
            match p {
                crate::config::ProxyVersion::V1 => "proxy=v1",
                crate::config::ProxyVersion::V2 => "proxy=v2",
            }
            .to_owned(),
        );
    }
    let sent = if sent.is_empty() { "-".to_owned() } else { sent.join(" ") };
    [title, result, status, total, dialed, request, host, tls, sent]
}
