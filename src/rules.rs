//! `parallax rules`: the Prometheus recording and alerting rules that join what several
//! instances of parallax saw (a DaemonSet pod per node, probe VMs outside the firewall) into
//! SLIs and alerts (docs/slo.md).
//!
//! The rule file is generated here, from a few parameters (the objective, how many external
//! vantages must fail, the scrape job), so that other objectives need no hand editing:
//! `deploy/prometheus/parallax-rules.yaml` and `deploy/kubernetes/prometheusrule.yaml` are this
//! module's output with the defaults (a test keeps them equal), and
//! `deploy/prometheus/tests/` holds the `promtool test rules` cases for them.
//!
//! Every series parallax exports carries `vantage` and `vantage_kind` (`[vantage]`, one value
//! per instance) and every per-target series `target_id` (the target's `id`, its name unless
//! given): the rules aggregate by `target_id` so the same target seen from several vantages
//! joins.

use std::fmt::Write as _;
use std::time::Duration;

/// The SLI windows recorded: the short and long windows of the multiwindow, multi-burn-rate
/// alerts (Google SRE workbook, "Alerting on SLOs": 1h/5m at 14.4×, 6h/30m at 6×, 3d/6h at 1×).
pub const WINDOWS: [&str; 5] = ["5m", "30m", "1h", "6h", "3d"];

/// The parameters of the rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleOptions {
    /// The client availability objective, in percent (99.9).
    pub slo: f64,
    /// External vantages whose client view must be unhealthy at once for
    /// `ParallaxClientFailingFromVantages` (N of however many probe the target).
    pub vantages: u32,
    /// The scrape job of parallax's `/metrics` (for `ParallaxVantageAbsent`).
    pub job: String,
    /// Where the runbook of each alert is: its anchor (`#parallaxblackhole`) is appended.
    pub runbook_url: String,
    /// When set, every alert's `for:` (a lab or a test wants alerts at once).
    pub pending: Option<Duration>,
}

impl Default for RuleOptions {
    fn default() -> RuleOptions {
        RuleOptions {
            slo: 99.9,
            vantages: 2,
            job: "parallax".to_owned(),
            runbook_url: "docs/slo.md".to_owned(),
            pending: None,
        }
    }
}

/// The most a page-level burn rate (14.4×) may take: above it the error budget is so large
/// that the fast-burn alert could never fire.
const FASTEST_BURN: f64 = 14.4;

impl RuleOptions {
    /// What is wrong with the parameters, said as `--flag`s.
    pub fn validate(&self) -> Result<(), String> {
        let budget = 1.0 - self.slo / 100.0;
        if !self.slo.is_finite() || self.slo >= 100.0 || budget * FASTEST_BURN >= 1.0 {
            return Err(format!(
                "--slo {} is out of range: an availability objective in percent, above {:.2} (so that a \
                 14.4× burn of its error budget can still be seen) and below 100, e.g. 99.9",
                self.slo,
                100.0 * (1.0 - 1.0 / FASTEST_BURN)
            ));
        }
        if self.vantages == 0 || self.vantages > 1000 {
            return Err(format!(
                "--vantages {} is out of range: how many external vantages must see the target fail \
                 at once, 1 to 1000 (2 of 3 is usual)",
                self.vantages
            ));
        }
        if self.job.is_empty() || self.job.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
            return Err(format!("--job `{}` must be a non-empty scrape job name without quotes", self.job));
        }
        if self.runbook_url.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'') {
            return Err(format!(
                "--runbook-url `{}` must be a URL without spaces or quotes",
                self.runbook_url
            ));
        }
        Ok(())
    }

    fn budget(&self) -> f64 {
        1.0 - self.slo / 100.0
    }

    fn pending(&self, default: &str) -> String {
        // Prometheus durations take no decimals: whole seconds, else milliseconds.
        match self.pending {
            Some(d) if d.subsec_millis() == 0 => format!("{}s", d.as_secs()),
            Some(d) => format!("{}ms", d.as_millis()),
            None => default.to_owned(),
        }
    }
}

/// A number as PromQL and YAML both read it, without float noise (0.0144, not
/// 0.014400000000000001).
fn number(x: f64) -> String {
    let s = format!("{x:.10}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// One rule, written as YAML at `indent`.
struct Rule<'a> {
    /// `record` or `alert`.
    kind: &'a str,
    name: &'a str,
    expr: String,
    pending: Option<String>,
    labels: Vec<(&'a str, String)>,
    annotations: Vec<(&'a str, String)>,
}

impl Rule<'_> {
    fn write(&self, out: &mut String, indent: usize) {
        let pad = " ".repeat(indent);
        let _ = writeln!(out, "{pad}- {}: {}", self.kind, self.name);
        let _ = writeln!(out, "{pad}  expr: |-");
        for line in self.expr.lines() {
            let _ = writeln!(out, "{pad}    {line}");
        }
        if let Some(p) = &self.pending {
            let _ = writeln!(out, "{pad}  for: {p}");
        }
        for (key, pairs) in [("labels", &self.labels), ("annotations", &self.annotations)] {
            if pairs.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{pad}  {key}:");
            for (k, v) in pairs.iter() {
                // Double-quoted YAML: escape what YAML would read.
                let v = v.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(out, "{pad}    {k}: \"{v}\"");
            }
        }
    }
}

/// The client availability SLI over `window`, per target: successful client probes over all
/// client probes, from every vantage. A target whose every probe fails has no `success`
/// series, hence the `or 0 *` term (0, not absent).
fn availability(window: &str) -> String {
    format!(
        "(\n  sum by (target_id) (rate(parallax_probe_total{{role=\"client\",result=\"success\"}}[{window}]))\n  \
         or 0 * sum by (target_id) (rate(parallax_probe_total{{role=\"client\"}}[{window}]))\n)\n\
         /\nsum by (target_id) (rate(parallax_probe_total{{role=\"client\"}}[{window}]))"
    )
}

fn recording_rules() -> Vec<Rule<'static>> {
    let mut rules = Vec::new();
    for window in WINDOWS {
        rules.push(Rule {
            kind: "record",
            name: leak(format!("parallax:client_availability:ratio_rate{window}")),
            expr: availability(window),
            pending: None,
            labels: Vec::new(),
            annotations: Vec::new(),
        });
    }
    rules.push(Rule {
        kind: "record",
        name: "parallax:client_availability_by_vantage:ratio_rate5m",
        expr: "(\n  sum by (target_id, vantage, vantage_kind) (rate(parallax_probe_total{role=\"client\",result=\"success\"}[5m]))\n  \
               or 0 * sum by (target_id, vantage, vantage_kind) (rate(parallax_probe_total{role=\"client\"}[5m]))\n)\n\
               /\nsum by (target_id, vantage, vantage_kind) (rate(parallax_probe_total{role=\"client\"}[5m]))"
            .to_owned(),
        pending: None,
        labels: Vec::new(),
        annotations: Vec::new(),
    });
    for window in ["5m", "1h"] {
        rules.push(Rule {
            kind: "record",
            name: leak(format!("parallax:mismatch_time:ratio_rate{window}")),
            // The fraction of the window a mismatch of that direction was open, for the worst
            // pair and vantage of the target (1 = the whole window).
            expr: format!("max by (target_id, direction) (rate(parallax_mismatch_seconds_total[{window}]))"),
            pending: None,
            labels: Vec::new(),
            annotations: Vec::new(),
        });
    }
    rules
}

/// Rule names are few and live as long as the process prints them.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn runbook(o: &RuleOptions, alert: &str) -> String {
    format!("{}#{}", o.runbook_url, alert.to_ascii_lowercase())
}

fn alerting_rules(o: &RuleOptions) -> Vec<Rule<'static>> {
    let page = || ("severity", "page".to_owned());
    let ticket = || ("severity", "ticket".to_owned());
    let mut rules = vec![
        Rule {
            kind: "alert",
            name: "ParallaxBlackhole",
            expr: "max by (target_id, target, vantage, checker_view, diagnosis) (parallax_mismatch{direction=\"blackhole\"}) > 0"
                .to_owned(),
            pending: Some(o.pending("2m")),
            labels: vec![page()],
            annotations: vec![
                ("summary", "{{ $labels.target }}: the {{ $labels.checker_view }} health check passes while users fail".to_owned()),
                ("description", "Seen from {{ $labels.vantage }}: the load balancer keeps sending users to a backend that fails them ({{ $labels.diagnosis }}). The dashboard and /api/v1/status of that instance hold the evidence and what to fix.".to_owned()),
                ("runbook_url", runbook(o, "ParallaxBlackhole")),
            ],
        },
        Rule {
            kind: "alert",
            name: "ParallaxFalseDrain",
            expr: "max by (target_id, target, vantage, checker_view, diagnosis) (parallax_mismatch{direction=\"false_drain\"}) > 0"
                .to_owned(),
            pending: Some(o.pending("10m")),
            labels: vec![ticket()],
            annotations: vec![
                ("summary", "{{ $labels.target }}: the {{ $labels.checker_view }} health check fails while users are served".to_owned()),
                ("description", "Seen from {{ $labels.vantage }}: the load balancer drains a backend that serves users ({{ $labels.diagnosis }}); capacity is lost, and one more failure is an outage.".to_owned()),
                ("runbook_url", runbook(o, "ParallaxFalseDrain")),
            ],
        },
        Rule {
            kind: "alert",
            name: "ParallaxClientFailingFromVantages",
            expr: format!(
                "count by (target_id) (\n  max by (target_id, vantage) (parallax_view_up{{role=\"client\",vantage_kind=\"external\"}}) == 0\n) >= {}",
                o.vantages
            ),
            pending: Some(o.pending("2m")),
            labels: vec![page()],
            annotations: vec![
                ("summary", "{{ $labels.target_id }}: users fail from {{ $value }} external vantages".to_owned()),
                ("description", format!("The client view of {{{{ $labels.target_id }}}} is unhealthy from {{{{ $value }}}} external vantages (the alert needs {} at once): users outside the cloud cannot reach it. One failing vantage alone is its own network; this many is the target.", o.vantages)),
                ("runbook_url", runbook(o, "ParallaxClientFailingFromVantages")),
            ],
        },
        Rule {
            kind: "alert",
            name: "ParallaxNodeCheckerDisagrees",
            expr: "count by (target_id, view) (\n  max by (target_id, view, vantage) (parallax_view_up{role=\"checker\",vantage_kind=\"node\"}) == 0\n)\n\
                   and on (target_id)\n(min by (target_id) (parallax_view_up{role=\"client\"}) == 1)"
                .to_owned(),
            pending: Some(o.pending("5m")),
            labels: vec![ticket()],
            annotations: vec![
                ("summary", "{{ $labels.target_id }}: the {{ $labels.view }} check fails on {{ $value }} node(s) while every client view succeeds".to_owned()),
                ("description", "The load balancer's check of {{ $labels.target_id }} fails on {{ $value }} node(s) although the users' request succeeds from every vantage, those nodes included: the LB drains nodes that serve (the externalTrafficPolicy: Local pattern). Each node's parallax names the cause (no_local_endpoints, kube_proxy_endpoints_disagree, health_port_not_served...).".to_owned()),
                ("runbook_url", runbook(o, "ParallaxNodeCheckerDisagrees")),
            ],
        },
        Rule {
            kind: "alert",
            name: "ParallaxCertificateExpiring",
            expr: "min by (target_id, target, view, vantage) (parallax_tls_cert_not_after_seconds) - time() < 14 * 86400"
                .to_owned(),
            pending: Some(o.pending("1h")),
            labels: vec![ticket()],
            annotations: vec![
                ("summary", "{{ $labels.target }}: the certificate {{ $labels.view }} is served expires in {{ $value | humanizeDuration }}".to_owned()),
                ("description", "The leaf certificate {{ $labels.vantage }} was served for the {{ $labels.view }} view of {{ $labels.target }} expires in under 14 days.".to_owned()),
                ("runbook_url", runbook(o, "ParallaxCertificateExpiring")),
            ],
        },
        Rule {
            kind: "alert",
            name: "ParallaxSchedulerLate",
            expr: "histogram_quantile(0.99, sum by (vantage, le) (rate(parallax_scheduler_lateness_seconds_bucket[5m]))) > 0.25"
                .to_owned(),
            pending: Some(o.pending("10m")),
            labels: vec![ticket()],
            annotations: vec![
                ("summary", "parallax on {{ $labels.vantage }} starts probes late (p99 {{ $value | humanizeDuration }})".to_owned()),
                ("description", "The instance is starved (CPU limit, too many views, or a stalled host): its verdicts and mismatches lag. Raise its CPU limit or --workers, or spread views over instances.".to_owned()),
                ("runbook_url", runbook(o, "ParallaxSchedulerLate")),
            ],
        },
        Rule {
            kind: "alert",
            name: "ParallaxExportDropping",
            expr: "sum by (vantage, signal) (rate(parallax_export_dropped_total[5m])) > 0".to_owned(),
            pending: Some(o.pending("10m")),
            labels: vec![ticket()],
            annotations: vec![
                ("summary", "parallax on {{ $labels.vantage }} drops {{ $labels.signal }}".to_owned()),
                ("description", "Telemetry is lost: the collector refuses or is unreachable, or the queue is full. The instance's log says why once when exports start failing.".to_owned()),
                ("runbook_url", runbook(o, "ParallaxExportDropping")),
            ],
        },
        Rule {
            kind: "alert",
            name: "ParallaxVantageAbsent",
            expr: format!("up{{job=\"{job}\"}} == 0 or absent(up{{job=\"{job}\"}})", job = o.job),
            pending: Some(o.pending("5m")),
            labels: vec![ticket()],
            annotations: vec![
                ("summary", "a parallax instance stopped reporting ({{ $labels.instance }})".to_owned()),
                ("description", "Prometheus cannot scrape this instance (or none of the job): what it watched is unobserved, and N-of-M alerts count one vantage fewer.".to_owned()),
                ("runbook_url", runbook(o, "ParallaxVantageAbsent")),
            ],
        },
    ];
    let budget = o.budget();
    let slo = number(o.slo);
    let burn = |factor: f64, long: &str, short: &str| {
        let threshold = number(factor * budget);
        format!(
            "(1 - parallax:client_availability:ratio_rate{long}) > {threshold}\nand\n(1 - parallax:client_availability:ratio_rate{short}) > {threshold}"
        )
    };
    rules.push(Rule {
        kind: "alert",
        name: "ParallaxErrorBudgetBurn",
        expr: format!("(\n{}\n)\nor\n(\n{}\n)", burn(14.4, "1h", "5m"), burn(6.0, "6h", "30m")),
        pending: Some(o.pending("2m")),
        labels: vec![page(), ("slo", slo.clone())],
        annotations: vec![
            ("summary", format!("{{{{ $labels.target_id }}}}: the {slo}% availability error budget burns fast")),
            ("description", format!("Client probes of {{{{ $labels.target_id }}}} fail at {{{{ $value | humanizePercentage }}}}: at this rate the monthly error budget of a {slo}% objective is gone in days (14.4× over 1h and 5m, or 6× over 6h and 30m).")),
            ("runbook_url", runbook(o, "ParallaxErrorBudgetBurn")),
        ],
    });
    rules.push(Rule {
        kind: "alert",
        name: "ParallaxErrorBudgetBurnSlow",
        expr: burn(1.0, "3d", "6h"),
        pending: Some(o.pending("1h")),
        labels: vec![ticket(), ("slo", slo.clone())],
        annotations: vec![
            ("summary", format!("{{{{ $labels.target_id }}}}: the {slo}% availability error budget is being spent")),
            ("description", format!("Client probes of {{{{ $labels.target_id }}}} failed at {{{{ $value | humanizePercentage }}}} over 3 days (and still over 6h): above the {slo}% objective's budget.")),
            ("runbook_url", runbook(o, "ParallaxErrorBudgetBurnSlow")),
        ],
    });
    rules
}

/// The groups, written at `indent` (0 for a rule file, 2 under a PrometheusRule's `spec`).
fn groups(o: &RuleOptions, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    let _ = writeln!(out, "{pad}groups:");
    for (name, rules) in [("parallax.sli", recording_rules()), ("parallax.alerts", alerting_rules(o))] {
        let _ = writeln!(out, "{pad}  - name: {name}");
        let _ = writeln!(out, "{pad}    rules:");
        for rule in rules {
            rule.write(&mut out, indent + 6);
        }
    }
    out
}

fn header(o: &RuleOptions, command: &str) -> String {
    let defaults = RuleOptions::default();
    let mut flags = Vec::new();
    if o.slo != defaults.slo {
        flags.push(format!("--slo {}", number(o.slo)));
    }
    if o.vantages != defaults.vantages {
        flags.push(format!("--vantages {}", o.vantages));
    }
    if o.job != defaults.job {
        flags.push(format!("--job {}", o.job));
    }
    if o.runbook_url != defaults.runbook_url {
        flags.push(format!("--runbook-url {}", o.runbook_url));
    }
    if o.pending.is_some() {
        flags.push(format!("--pending {}", o.pending("")));
    }
    let flags = if flags.is_empty() { String::new() } else { format!(" {}", flags.join(" ")) };
    format!(
        "# parallax's Prometheus rules (docs/slo.md): client availability SLIs per target across\n\
         # vantages, mismatch time, and the alerts, each with its runbook.\n\
         # Generated by `parallax {command}{flags}`: change the parameters there, not here.\n\
         # Objective {}%, {} of the external vantages for ParallaxClientFailingFromVantages, job {}.\n",
        number(o.slo),
        o.vantages,
        o.job
    )
}

/// The rule file for Prometheus's `rule_files` (and `promtool check rules`).
pub fn rule_file(o: &RuleOptions) -> String {
    format!("{}{}", header(o, "rules"), groups(o, 0))
}

/// The same rules as a Prometheus Operator `PrometheusRule`.
pub fn prometheus_rule(o: &RuleOptions) -> String {
    format!(
        "{}# Needs the Prometheus Operator's CRDs; your Prometheus's ruleSelector must select it\n\
         # (kube-prometheus-stack: the label `release: <the Helm release name>`).\n\
         apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  name: parallax\n  labels:\n    app.kubernetes.io/name: parallax\n\
         spec:\n{}",
        header(o, "rules --format prometheus-rule"),
        groups(o, 2)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_without_float_noise() {
        assert_eq!(number(14.4 * 0.001), "0.0144");
        assert_eq!(number(99.9), "99.9");
        assert_eq!(number(6.0 * (1.0 - 0.999)), "0.006");
        assert_eq!(number(1.0), "1");
    }

    #[test]
    fn out_of_range_parameters_are_refused_with_their_flag() {
        let bad = |o: RuleOptions| o.validate().expect_err("refused");
        assert!(bad(RuleOptions { slo: 100.0, ..RuleOptions::default() })
            .starts_with("--slo 100 is out of range"));
        assert!(bad(RuleOptions { slo: 90.0, ..RuleOptions::default() }).contains("above 93.06"));
        assert!(bad(RuleOptions { vantages: 0, ..RuleOptions::default() }).starts_with("--vantages 0"));
        assert!(bad(RuleOptions { job: "a\"b".into(), ..RuleOptions::default() }).starts_with("--job"));
        assert!(RuleOptions { slo: 99.0, vantages: 3, ..RuleOptions::default() }.validate().is_ok());
    }

    #[test]
    fn the_objective_sets_the_burn_thresholds() {
        let text = rule_file(&RuleOptions { slo: 99.0, ..RuleOptions::default() });
        assert!(text.contains("(1 - parallax:client_availability:ratio_rate1h) > 0.144"), "{text}");
        assert!(text.contains("(1 - parallax:client_availability:ratio_rate6h) > 0.06"), "{text}");
        assert!(text.contains("(1 - parallax:client_availability:ratio_rate3d) > 0.01"), "{text}");
        assert!(text.contains("slo: \"99\""), "{text}");
        assert!(text.contains("# Generated by `parallax rules --slo 99`"), "{text}");
    }
}
