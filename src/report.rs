//! `parallax probe` output: JSON lines in their contract's order (outcomes, then mismatches, then
//! conditions and explained failures, then one summary) and a human table.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Condition, Plan, Role, Target, View};
use crate::diff::diagnosis::cluster::explain_failure;
use crate::diff::{AttributionSettings, Diagnosis, Mismatch};
use crate::duration::human;
use crate::probe::{Outcome, Prober, ResponseHead};

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

/// What the Kubernetes API says that a round reports beside its mismatches: the plan's
/// conditions (findings that need no probe), and the client failures a condition of their target
/// explains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterFindings {
    /// The plan's `[[condition]]`s.
    pub conditions: Vec<Condition>,
    /// The client failures a condition explains, one per target and view.
    pub explained: Vec<Explained>,
}

/// A client view's failure that a condition of its target explains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explained {
    /// The target.
    pub target: Arc<str>,
    /// The client view.
    pub view: Arc<str>,
    /// The diagnosis the condition names.
    pub diagnosis: Diagnosis,
    /// The outcome and what the API says.
    pub evidence: String,
}

impl ClusterFindings {
    /// The conditions of `plan` and the failures of `targets`' client views in `outcomes` that a
    /// condition explains.
    pub fn of(plan: &Plan, targets: &[&Target], outcomes: &[Outcome]) -> ClusterFindings {
        let mut explained = Vec::new();
        for target in targets {
            let Some(facts) = target.cluster.as_deref() else { continue };
            let failed = outcomes
                .iter()
                .filter(|o| *o.target == *target.name && o.role == Role::Client && !o.ok)
                .find_map(|o| explain_failure(&target.client, o, facts));
            if let Some(f) = failed {
                explained.push(Explained {
                    target: target.name.clone(),
                    view: target.client.name.clone(),
                    diagnosis: f.diagnosis,
                    evidence: f.evidence,
                });
            }
        }
        ClusterFindings { conditions: plan.conditions.clone(), explained }
    }
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
    /// Conditions the cluster reports (`[[condition]]`).
    pub conditions: usize,
}

impl Summary {
    /// Counts a round's outcomes.
    pub fn of(targets: &[&Target], outcomes: &[Outcome], mismatches: usize, conditions: usize) -> Summary {
        Summary {
            targets: targets.len(),
            views: targets.iter().map(|t| 1 + t.checkers.len()).sum(),
            outcomes_failed: outcomes.iter().filter(|o| !o.ok).count(),
            client_failed: outcomes.iter().filter(|o| !o.ok && o.role == crate::config::Role::Client).count(),
            mismatches,
            conditions,
        }
    }

    /// `parallax probe`'s exit code: 0 all client views succeeded, no mismatch and no
    /// condition, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.client_failed > 0 || self.mismatches > 0 || self.conditions > 0 {
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
pub fn json_lines(
    outcomes: &[Outcome],
    mismatches: &[Mismatch],
    cluster: &ClusterFindings,
    summary: &Summary,
) -> String {
    let mut out = String::new();
    for o in outcomes {
        push_json(&mut out, "outcome", o);
    }
    for m in mismatches {
        push_json(&mut out, "mismatch", m);
    }
    for c in &cluster.conditions {
        push_json(&mut out, "condition", c);
    }
    for e in &cluster.explained {
        push_json(&mut out, "explained", e);
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
pub fn table(
    plan: &Plan,
    outcomes: &[Outcome],
    mismatches: &[Mismatch],
    cluster: &ClusterFindings,
    summary: &Summary,
) -> String {
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
        for e in cluster.explained.iter().filter(|e| *e.target == *target.name) {
            let _ = writeln!(out, "  FAILURE {} explained by the cluster: {}", e.view, e.diagnosis.as_str());
            let _ = writeln!(out, "    {}", e.evidence);
        }
        out.push('\n');
    }
    for c in &cluster.conditions {
        let reason = c.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
        let target = c.target.as_ref().map(|t| format!(" [target {t}]")).unwrap_or_default();
        let _ = writeln!(out, "CONDITION {} {}{reason}{target}", c.kind, c.object);
        let _ = writeln!(out, "  {}", c.message);
    }
    if !cluster.conditions.is_empty() {
        out.push('\n');
    }
    let conditions = if summary.conditions == 0 {
        String::new()
    } else {
        format!(", {} condition(s)", summary.conditions)
    };
    let _ = writeln!(
        out,
        "{} target(s), {} view(s), {} outcome(s) failed ({} client), {} mismatch(es){conditions}",
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

/// Response headers whose values are never shown: they carry the server's credentials for the
/// client (a session cookie).
const SECRET_RESPONSE_HEADERS: [&str; 2] = ["set-cookie", "set-cookie2"];

/// `parallax probe URL`'s account of one view's probe, phase by phase, as `curl -v` would give
/// it and more: the DNS answer, the address dialed (and from where), the PROXY header, the TLS
/// handshake (version, cipher, ALPN, the SNI sent, the certificate's subject, SANs, issuer,
/// validity and fingerprint, and the verification's result), the request head as sent, the
/// response head, the result and the timings. Secret values are `<redacted>` as everywhere.
pub async fn transcript(view: &View, probes: &[(Outcome, Option<ResponseHead>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} {} ({})", view.target, view.url_display, view.name);
    for (outcome, head) in probes {
        out.push_str(&phases(view, outcome, head.as_ref()).await);
    }
    out
}

/// One outcome's phases (see [`transcript`]).
async fn phases(view: &View, o: &Outcome, head: Option<&ResponseHead>) -> String {
    let mut out = String::new();
    let ms = |d: std::time::Duration| format!("{:.1}ms", d.as_secs_f64() * 1e3);
    let mut line = |phase: &str, text: String| {
        let _ = writeln!(out, "  {phase:<9} {text}");
    };
    let dial = view.dial_endpoint();
    let resolved: Vec<String> = o.resolved.iter().map(|ip| ip.to_string()).collect();
    let dns = match (&dial.host, o.timings.dns) {
        (crate::config::Host::Ip(ip), _) => format!("{ip} (an address: nothing to resolve)"),
        (crate::config::Host::Name(name), Some(took)) if !resolved.is_empty() => {
            format!("{name} -> {} ({})", resolved.join(", "), ms(took))
        }
        (crate::config::Host::Name(name), _) => format!("{name} -> no answer"),
    };
    line("dns", dns);
    if view.connect_to.is_some() {
        line("", format!("dialing {dial} instead of the URL's {}", view.url_endpoint));
    }
    if let Some(peer) = o.peer.or(o.request.address) {
        let from = o.local.map(|l| format!(" from {l}")).unwrap_or_default();
        let took = o.timings.connect.map(|d| format!(" ({})", ms(d))).unwrap_or_default();
        let state = if o.timings.connect.is_some() { "connected to" } else { "dialing" };
        line("connect", format!("{state} {peer}{from}{took}"));
    }
    if let Some(p) = view.proxy_protocol {
        let command = if p.local { "LOCAL (no addresses)" } else { "PROXY (this connection's addresses)" };
        let version = match p.version {
            crate::config::ProxyVersion::V1 => "v1",
            crate::config::ProxyVersion::V2 => "v2",
        };
        line("proxy", format!("PROXY protocol {version} header, {command}"));
    }
    if view.scheme.uses_tls() {
        let sni = o.request.sni.as_deref().unwrap_or("none");
        match &o.tls {
            Some(t) => {
                let mut hello = vec![format!("SNI sent: {sni}")];
                hello.extend(t.version.clone());
                hello.extend(t.cipher.clone());
                hello.push(format!("ALPN {}", t.alpn.as_deref().unwrap_or("none")));
                let took = o.timings.tls.map(|d| format!(" ({})", ms(d))).unwrap_or_default();
                line("tls", format!("{}{took}", hello.join(", ")));
                let field = |name: &str, value: Option<&str>| format!("{name:<8} {}", value.unwrap_or("-"));
                line("", format!("certificate {}", field("subject", t.cert_subject.as_deref())));
                line("", format!("            {}", field("SANs", Some(&t.cert_sans.join(", ")))));
                line("", format!("            {}", field("issuer", t.cert_issuer.as_deref())));
                let validity = match (&t.not_before, &t.not_after) {
                    (Some(from), Some(to)) => format!("{from} to {to}"),
                    _ => "-".to_owned(),
                };
                line("", format!("            {}", field("valid", Some(&validity))));
                line("", format!("            {}", field("sha256", t.cert_sha256.as_deref())));
                line(
                    "",
                    format!(
                        "            {}",
                        field("chain", Some(&format!("{} certificate(s)", t.chain_len)))
                    ),
                );
            }
            None => line("tls", format!("SNI sent: {sni}; no handshake completed")),
        }
        let verification = match (view.tls.verify, o.phase) {
            (false, _) => "off: the certificate is recorded, not judged".to_owned(),
            (true, Some(crate::probe::Phase::Tls)) => {
                format!("FAILED: {}", o.error.map(|c| c.as_str()).unwrap_or("tls"))
            }
            (
                true,
                Some(crate::probe::Phase::Dns | crate::probe::Phase::Connect | crate::probe::Phase::Proxy),
            ) => "not reached".to_owned(),
            (true, _) => {
                let roots =
                    if view.tls.ca_file.is_some() { "the --ca-file roots" } else { "the system's roots" };
                format!("ok: the chain (against {roots}) and the name")
            }
        };
        line("", format!("verification {verification}"));
    }
    if view.scheme.uses_http() {
        let sent = o.request.http_version.is_some();
        let h2 = o.request.http_version == Some("HTTP/2");
        let host = match (&o.request.host, o.peer) {
            (Some(h), _) => Some(h.clone()),
            (None, Some(peer)) => {
                view.host_header(crate::config::Dialed::Address(peer)).map(|h| h.into_owned())
            }
            (None, None) => view.host_header(crate::config::Dialed::Endpoint(dial)).map(|h| h.into_owned()),
        };
        let label = if sent { "request" } else { "would send" };
        match crate::probe::http::shown_request_head(view, h2, host.as_deref()).await {
            Ok(lines) => {
                for (i, l) in lines.iter().enumerate() {
                    line(if i == 0 { label } else { "" }, format!("> {l}"));
                }
            }
            Err(e) => line(label, format!("cannot be built: {}", e.detail)),
        }
        if let Some(body) = &view.http.body {
            line(
                "",
                format!(
                    "> ({} body bytes{})",
                    body.expose().len(),
                    if body.is_secret() { ", secret" } else { "" }
                ),
            );
        }
    }
    if let Some(head) = head {
        let reason = http::StatusCode::from_u16(head.status).ok().and_then(|s| s.canonical_reason());
        line(
            "response",
            format!(
                "< {} {}{}",
                head.version,
                head.status,
                reason.map(|r| format!(" {r}")).unwrap_or_default()
            ),
        );
        for (name, value) in &head.headers {
            let value = if SECRET_RESPONSE_HEADERS.contains(&name.as_str()) { "<redacted>" } else { value };
            line("", format!("< {name}: {value}"));
        }
        if let Some(n) = o.body_bytes {
            line("", format!("({n} body bytes)"));
        }
    } else if let Some(status) = o.grpc_status.as_ref() {
        line("response", format!("gRPC health: {status}"));
    }
    let result = match (o.ok, o.phase, o.error) {
        (true, _, _) => "ok".to_owned(),
        (false, Some(phase), Some(code)) => {
            format!("FAIL {phase}/{code}: {}", o.detail.as_deref().unwrap_or_default())
        }
        (false, _, _) => format!("FAIL {}", o.detail.as_deref().unwrap_or_default()),
    };
    line("result", result);
    let t = &o.timings;
    let mut timings: Vec<String> = [("dns", t.dns), ("connect", t.connect), ("tls", t.tls), ("ttfb", t.ttfb)]
        .into_iter()
        .filter_map(|(name, d)| d.map(|d| format!("{name} {}", ms(d))))
        .collect();
    timings.push(format!("total {}", ms(t.total)));
    line("timings", timings.join("  "));
    out
}
