//! The `parallax_*` metric families (docs/exports.md): prometheus-client families for `/metrics`
//! (OpenMetrics text, exemplars on the duration histogram), and the same families over OTLP.
//!
//! The prometheus-client families are the one store. OTLP reads counters and gauges from them
//! through observable instruments, so a series removed here (`forget_view`, a resolved mismatch)
//! disappears from both outputs; only the two histograms are recorded twice, because
//! OpenTelemetry has no observable histogram.
//!
//! Labels are bounded: target and view names come from the configuration, codes and phases from
//! closed enums. Addresses and URLs never become labels; they go into spans and exemplars.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::metrics::{Meter, ObservableCounter, ObservableGauge};
use opentelemetry::KeyValue;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::time::Instant;

use crate::config::{Role, View};
use crate::diff::Mismatch;
use crate::probe::{ErrorCode, Outcome};
use crate::verdict::Health;

use super::{hex, ProbeReport, SpanRef};

/// Probe phase durations, seconds: 0.5 ms to 30 s.
const DURATION_BUCKETS: [f64; 15] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Scheduler lateness, seconds: 0.1 ms to 5 s.
const LATENESS_BUCKETS: [f64; 11] = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];
/// The export signals counted in `parallax_export_*_total{signal}`.
pub(crate) const SIGNALS: [&str; 3] = ["traces", "metrics", "events"];

/// Why telemetry was dropped: the `reason` of `parallax_export_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The queue was full (the exporter is behind, failing or waiting out a `Retry-After`).
    QueueFull,
    /// A retryable failure (network error, 429/502/503/504, gRPC UNAVAILABLE...) was retried
    /// as many times as allowed.
    RetriesExhausted,
    /// The collector refused it for good (a non-retryable answer: 400, 401, gRPC
    /// INVALID_ARGUMENT...), or it could not be encoded.
    Rejected,
    /// Still queued, retrying or throttled when the shutdown deadline came.
    Shutdown,
}

impl DropReason {
    /// Every reason, for the series present from the start.
    pub(crate) const ALL: [DropReason; 4] =
        [DropReason::QueueFull, DropReason::RetriesExhausted, DropReason::Rejected, DropReason::Shutdown];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Rejected => "rejected",
            DropReason::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    target: String,
    target_id: String,
    view: String,
    role: String,
    result: String,
    error: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    target: String,
    target_id: String,
    view: String,
    phase: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViewRoleLabels {
    target: String,
    target_id: String,
    view: String,
    role: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetViewLabels {
    target: String,
    target_id: String,
    view: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MismatchLabels {
    target: String,
    target_id: String,
    client_view: String,
    checker_view: String,
    direction: String,
    diagnosis: String,
}

impl MismatchLabels {
    fn of(m: &Mismatch) -> MismatchLabels {
        MismatchLabels {
            target: m.target.to_string(),
            target_id: m.target_id.to_string(),
            client_view: m.client_view.to_string(),
            checker_view: m.checker_view.to_string(),
            direction: m.direction.as_str().to_owned(),
            diagnosis: m.diagnosis.as_str().to_owned(),
        }
    }

    fn involves(&self, view: &View) -> bool {
        self.target == *view.target && (self.client_view == *view.name || self.checker_view == *view.name)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabels {
    signal: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    signal: String,
    reason: String,
}

impl DropLabels {
    fn new(signal: &str, reason: DropReason) -> DropLabels {
        DropLabels { signal: signal.to_owned(), reason: reason.as_str().to_owned() }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// A kind Kubernetes discovery watches.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: String,
}

/// A condition the cluster reports: `parallax_condition`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    kind: String,
    object: String,
    target: String,
}

/// `parallax_discovery_*`: per-kind series appear once discovery reports; without
/// `[discovery.kubernetes]` only the two target gauges show, at 0.
#[derive(Debug, Default)]
struct DiscoveryFamilies {
    up: Family<ResourceLabels, Gauge>,
    errors: Family<ResourceLabels, Counter>,
    objects: Family<ResourceLabels, Gauge>,
    targets: Gauge,
    rejected: Gauge,
    conditions: Family<ConditionLabels, Gauge>,
}

/// The exemplar label set: the exported probe span.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TraceExemplar {
    trace_id: String,
    span_id: String,
}

/// A view's series: target name, view name and the target's id.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct ViewKey {
    target: String,
    view: String,
    target_id: String,
}

impl ViewKey {
    /// `parallax_tls_cert_not_after_seconds` and `parallax_probe_skipped_total`'s labels.
    fn labels(&self) -> TargetViewLabels {
        TargetViewLabels {
            target: self.target.clone(),
            target_id: self.target_id.clone(),
            view: self.view.clone(),
        }
    }
}

/// The `result` label of `parallax_probe_total`: `success`, `failure` (the target's), or
/// `local_error` for a probe this host could not run (`local_resource_exhausted`), which says
/// nothing about the target and no availability ratio should count.
fn probe_result_label(outcome: &Outcome) -> &'static str {
    match outcome.error {
        _ if outcome.ok => "success",
        Some(code) if code.is_local() => "local_error",
        _ => "failure",
    }
}

fn view_key(view: &View) -> ViewKey {
    ViewKey {
        target: view.target.to_string(),
        view: view.name.to_string(),
        target_id: view.target_id.to_string(),
    }
}

/// Which label sets exist per view, so that a view's series can be removed (a family cannot be
/// iterated) and OTLP can read them.
#[derive(Debug, Default)]
struct Series {
    probes: HashMap<ViewKey, HashSet<ProbeLabels>>,
    phases: HashMap<ViewKey, HashSet<&'static str>>,
    up: HashMap<ViewKey, ViewRoleLabels>,
    cert: HashSet<ViewKey>,
    skipped: HashSet<ViewKey>,
    /// Open mismatches: how many records share the label set (`each_address` can open two for
    /// one pair), and when their time was last added to `parallax_mismatch_seconds_total`.
    open: HashMap<MismatchLabels, (u32, Instant)>,
    mismatch_seconds: HashSet<MismatchLabels>,
    /// Per view, the handles its probes record into.
    handles: HashMap<(Arc<str>, Arc<str>), ViewHandles>,
}

/// The phases of `parallax_probe_duration_seconds`, in [`ViewHandles::phases`] order.
const PHASES: [&str; 5] = ["dns", "connect", "tls", "ttfb", "total"];

/// The series one view's probes record into, made on its first probe (and the first probe with
/// each new error code). Profiling showed label sets built, hashed and dropped on every probe
/// (some twenty allocations) as the largest cost of recording one; with these, recording hashes
/// one key and allocates nothing. Handles share their value with the family's series, so
/// `/metrics` sees every update; `forget_view` drops them with the series.
#[derive(Debug, Default)]
struct ViewHandles {
    /// The role the label sets were made with.
    role: Option<Role>,
    /// `parallax_probe_total`, by result and error code.
    probes: Vec<((bool, Option<ErrorCode>), Counter)>,
    /// `parallax_probe_duration_seconds`, by phase.
    phases: [Option<DurationHistogram>; PHASES.len()],
    /// `parallax_tls_cert_not_after_seconds`.
    cert: Option<Gauge>,
}

/// The two histograms, recorded into OpenTelemetry as well when OTLP metrics are on.
#[derive(Debug)]
pub(crate) struct OtelHistograms {
    duration: opentelemetry::metrics::Histogram<f64>,
    lateness: opentelemetry::metrics::Histogram<f64>,
}

impl OtelHistograms {
    pub(crate) fn new(meter: &Meter) -> OtelHistograms {
        OtelHistograms {
            duration: meter
                .f64_histogram("parallax_probe_duration_seconds")
                .with_description("Probe phase durations (dns, connect, tls, ttfb, total).")
                .with_unit("s")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            lateness: meter
                .f64_histogram("parallax_scheduler_lateness_seconds")
                .with_description("How late each probe started after its planned start.")
                .with_unit("s")
                .with_boundaries(LATENESS_BUCKETS.to_vec())
                .build(),
        }
    }
}

type DurationHistogram = HistogramWithExemplars<TraceExemplar>;

/// Every `parallax_*` family.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    probe_total: Family<ProbeLabels, Counter>,
    duration: Family<PhaseLabels, DurationHistogram, fn() -> DurationHistogram>,
    view_up: Family<ViewRoleLabels, Gauge>,
    mismatch: Family<MismatchLabels, Gauge>,
    mismatch_seconds: Family<MismatchLabels, Counter<f64, AtomicU64>>,
    cert_not_after: Family<TargetViewLabels, Gauge>,
    lateness: Histogram,
    skipped: Family<TargetViewLabels, Counter>,
    dropped: Family<DropLabels, Counter>,
    failures: Family<SignalLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    last_reload: Gauge<f64, AtomicU64>,
    discovery: DiscoveryFamilies,
    series: Mutex<Series>,
    otel: Option<OtelHistograms>,
}

impl Metrics {
    /// The families, registered; `otel` when the histograms also go over OTLP.
    #[cfg(test)]
    pub(crate) fn new(otel: Option<OtelHistograms>) -> Metrics {
        Metrics::with_labels(otel, Vec::new())
    }

    /// [`Metrics::new`] with `labels` on every series (the vantage's, `[vantage]`).
    pub(crate) fn with_labels(otel: Option<OtelHistograms>, labels: Vec<(String, String)>) -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::default(),
            probe_total: Family::default(),
            duration: Family::new_with_constructor(|| {
                HistogramWithExemplars::new(DURATION_BUCKETS.into_iter())
            }),
            view_up: Family::default(),
            mismatch: Family::default(),
            mismatch_seconds: Family::default(),
            cert_not_after: Family::default(),
            lateness: Histogram::new(LATENESS_BUCKETS),
            skipped: Family::default(),
            dropped: Family::default(),
            failures: Family::default(),
            reloads: Family::default(),
            last_reload: Gauge::default(),
            discovery: DiscoveryFamilies::default(),
            series: Mutex::new(Series::default()),
            otel,
        };
        // Registered in this order, which is the order of `/metrics`.
        let mut registry =
            Registry::with_labels(labels.into_iter().map(|(k, v)| (Cow::Owned(k), Cow::Owned(v))));
        metrics.register_probe_families(&mut registry);
        metrics.register_health_families(&mut registry);
        metrics.register_discovery_families(&mut registry);
        metrics.registry = registry;
        metrics
    }

    /// What probes and mismatches record into.
    fn register_probe_families(&self, registry: &mut Registry) {
        registry.register(
            "parallax_probe",
            "Probes run, by result and error code (error is empty for successes)",
            self.probe_total.clone(),
        );
        registry.register_with_unit(
            "parallax_probe_duration",
            "Probe phase durations (dns, connect, tls, ttfb, total); exemplars carry the trace id of exported spans",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register(
            "parallax_view_up",
            "The emulated load balancer's verdict of the view: 1 healthy, 0 unhealthy (absent until known)",
            self.view_up.clone(),
        );
        registry.register(
            "parallax_mismatch",
            "1 while a mismatch between the client view and a checker view is open",
            self.mismatch.clone(),
        );
        registry.register_with_unit(
            "parallax_mismatch",
            "Time spent in mismatch",
            Unit::Seconds,
            self.mismatch_seconds.clone(),
        );
        registry.register_with_unit(
            "parallax_tls_cert_not_after",
            "The leaf certificate's not_after, Unix time",
            Unit::Seconds,
            self.cert_not_after.clone(),
        );
        registry.register_with_unit(
            "parallax_scheduler_lateness",
            "How late each probe started after its planned start",
            Unit::Seconds,
            self.lateness.clone(),
        );
        registry.register(
            "parallax_probe_skipped",
            "Ticks skipped because the view's previous probe was still running",
            self.skipped.clone(),
        );
    }

    /// The daemon's own health: exports dropped and failed, reloads. Their series are present
    /// from the start at 0: an alert on rate() needs the series before the first drop.
    fn register_health_families(&self, registry: &mut Registry) {
        registry.register(
            "parallax_export_dropped",
            "Spans, metric collections and event lines dropped, by reason: queue full, retries exhausted, rejected by the collector, shutdown",
            self.dropped.clone(),
        );
        registry.register("parallax_export_failures", "Failed export attempts", self.failures.clone());
        for signal in SIGNALS {
            for reason in DropReason::ALL {
                let _ = self.dropped.get_or_create(&DropLabels::new(signal, reason));
            }
            let _ = self.failures.get_or_create(&SignalLabels { signal: signal.to_owned() });
        }
        registry.register(
            "parallax_reload",
            "Configuration reload attempts, by result",
            self.reloads.clone(),
        );
        for result in ["success", "failure"] {
            let _ = self.reloads.get_or_create(&ResultLabels { result: result.to_owned() });
        }
        registry.register_with_unit(
            "parallax_config_last_reload_success_timestamp",
            "When the running configuration was loaded, Unix time",
            Unit::Seconds,
            self.last_reload.clone(),
        );
    }

    /// Kubernetes discovery: per kind watched, whether its watch is up, its errors and objects;
    /// the targets derived and rejected. Series appear once discovery reports.
    fn register_discovery_families(&self, registry: &mut Registry) {
        let d = &self.discovery;
        registry.register(
            "parallax_discovery_up",
            "1 while the watch of the kind is listed and not failing (Kubernetes discovery)",
            d.up.clone(),
        );
        registry.register(
            "parallax_discovery_errors",
            "Failed list or watch requests to the API server, by kind",
            d.errors.clone(),
        );
        registry.register("parallax_discovery_objects", "Selected objects held, by kind", d.objects.clone());
        registry.register(
            "parallax_discovery_targets",
            "Targets derived from the cluster and compiled into the running plan",
            d.targets.clone(),
        );
        registry.register(
            "parallax_discovery_rejected_targets",
            "Derived targets that did not compile (dropped; see /api/v1/status)",
            d.rejected.clone(),
        );
        registry.register(
            "parallax_condition",
            "1 for each finding about the cluster that needs no probe ([[condition]]: kind, object, the target \
             it concerns or empty); gone when the API no longer says it",
            d.conditions.clone(),
        );
    }

    /// The running plan's conditions: exactly these series, the others removed.
    pub(crate) fn conditions(&self, conditions: &[crate::config::Condition]) {
        let family = &self.discovery.conditions;
        family.clear();
        for c in conditions {
            let labels = ConditionLabels {
                kind: c.kind.as_str().to_owned(),
                object: c.object.clone(),
                target: c.target.as_deref().unwrap_or("").to_owned(),
            };
            family.get_or_create(&labels).set(1);
        }
    }

    /// Discovery's health now.
    pub(crate) fn discovery(&self, report: &crate::export::DiscoveryReport) {
        let d = &self.discovery;
        for r in &report.resources {
            let labels = ResourceLabels { resource: r.resource.to_owned() };
            d.up.get_or_create(&labels).set(i64::from(r.up));
            d.objects.get_or_create(&labels).set(i64::try_from(r.objects).unwrap_or(i64::MAX));
            let counter = d.errors.get_or_create(&labels);
            let seen = counter.get();
            if r.errors > seen {
                counter.inc_by(r.errors - seen);
            }
        }
        d.targets.set(i64::try_from(report.targets).unwrap_or(i64::MAX));
        d.rejected.set(i64::try_from(report.rejected).unwrap_or(i64::MAX));
    }

    fn series(&self) -> MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One outcome of a finished probe, with its exported span (the exemplar).
    pub(crate) fn probe(&self, report: &ProbeReport<'_>, span: Option<SpanRef>) {
        let ProbeReport { view, outcome, lateness, change, .. } = *report;
        {
            let mut series = self.series();
            let Series { handles, probes, phases, cert, up, .. } = &mut *series;
            let handles = handles.entry((view.target.clone(), view.name.clone())).or_default();
            if handles.role != Some(view.role) {
                // First probe of this view (or its role changed: new label sets).
                *handles = ViewHandles { role: Some(view.role), ..ViewHandles::default() };
            }
            self.probe_counter(handles, probes, view, outcome).inc();
            self.observe_durations(handles, phases, view, outcome, span);
            if let Some(not_after) = outcome.tls.as_ref().and_then(|t| t.not_after_unix) {
                let gauge = handles.cert.get_or_insert_with(|| {
                    cert.insert(view_key(view));
                    self.cert_not_after.get_or_create(&view_key(view).labels()).clone()
                });
                gauge.set(not_after);
            }
            if change.is_some() {
                up.insert(view_key(view), self.up_labels(view));
            }
        }
        self.lateness.observe(lateness.as_secs_f64());
        if let Some(otel) = &self.otel {
            otel.lateness.record(lateness.as_secs_f64(), &[]);
        }
        if let Some(change) = change {
            let up = i64::from(change.to == Health::Healthy);
            self.view_up.get_or_create(&self.up_labels(view)).set(up);
        }
    }

    /// The `parallax_probe_total` series of `outcome`'s result and error code, made (and its
    /// label set remembered in `probes`) the first time the view has it.
    fn probe_counter<'h>(
        &self,
        handles: &'h mut ViewHandles,
        probes: &mut HashMap<ViewKey, HashSet<ProbeLabels>>,
        view: &View,
        outcome: &Outcome,
    ) -> &'h Counter {
        let result = (outcome.ok, outcome.error);
        if let Some(i) = handles.probes.iter().position(|(r, _)| *r == result) {
            return &handles.probes[i].1;
        }
        let labels = ProbeLabels {
            target: view.target.to_string(),
            target_id: view.target_id.to_string(),
            view: view.name.to_string(),
            role: view.role.as_str().to_owned(),
            result: probe_result_label(outcome).to_owned(),
            error: outcome.error.map(|e| e.as_str()).unwrap_or_default().to_owned(),
        };
        let counter = self.probe_total.get_or_create(&labels).clone();
        probes.entry(view_key(view)).or_default().insert(labels);
        handles.probes.push((result, counter));
        &handles.probes[handles.probes.len() - 1].1
    }

    /// `parallax_probe_duration_seconds` of every phase `outcome` timed, with `span` as the
    /// exemplar (and into OpenTelemetry's histogram when OTLP metrics are on).
    fn observe_durations(
        &self,
        handles: &mut ViewHandles,
        phases: &mut HashMap<ViewKey, HashSet<&'static str>>,
        view: &View,
        outcome: &Outcome,
        span: Option<SpanRef>,
    ) {
        let t = &outcome.timings;
        let durations = [t.dns, t.connect, t.tls, t.ttfb, Some(t.total)];
        let exemplar = span.map(|s| TraceExemplar { trace_id: hex(&s.trace_id), span_id: hex(&s.span_id) });
        let now = SystemTime::now();
        for ((phase, d), histogram) in PHASES.iter().zip(durations).zip(handles.phases.iter_mut()) {
            let Some(d) = d else { continue };
            let histogram = histogram.get_or_insert_with(|| {
                phases.entry(view_key(view)).or_default().insert(phase);
                let labels = PhaseLabels {
                    target: view.target.to_string(),
                    target_id: view.target_id.to_string(),
                    view: view.name.to_string(),
                    phase: (*phase).to_owned(),
                };
                self.duration.get_or_create(&labels).clone()
            });
            histogram.observe(d.as_secs_f64(), exemplar.clone(), Some(now));
            if let Some(otel) = &self.otel {
                otel.duration.record(
                    d.as_secs_f64(),
                    &[
                        KeyValue::new("target", view.target.to_string()),
                        KeyValue::new("target_id", view.target_id.to_string()),
                        KeyValue::new("view", view.name.to_string()),
                        KeyValue::new("phase", *phase),
                    ],
                );
            }
        }
    }

    fn up_labels(&self, view: &View) -> ViewRoleLabels {
        ViewRoleLabels {
            target: view.target.to_string(),
            target_id: view.target_id.to_string(),
            view: view.name.to_string(),
            role: view.role.as_str().to_owned(),
        }
    }

    /// A skipped tick.
    pub(crate) fn skipped(&self, view: &View) {
        let key = view_key(view);
        self.series().skipped.insert(key.clone());
        self.skipped.get_or_create(&key.labels()).inc();
    }

    /// A mismatch opened at `now`.
    pub(crate) fn mismatch_opened(&self, m: &Mismatch, now: Instant) {
        let labels = MismatchLabels::of(m);
        let mut series = self.series();
        series.mismatch_seconds.insert(labels.clone());
        series.open.entry(labels.clone()).and_modify(|(n, _)| *n += 1).or_insert((1, now));
        drop(series);
        self.mismatch.get_or_create(&labels).set(1);
        // Present at 0 from the start, so rate() works from the first scrape.
        let _ = self.mismatch_seconds.get_or_create(&labels);
    }

    /// A mismatch resolved at `now` after `open_for`.
    pub(crate) fn mismatch_resolved(&self, m: &Mismatch, open_for: Duration, now: Instant) {
        let labels = MismatchLabels::of(m);
        let mut series = self.series();
        series.mismatch_seconds.insert(labels.clone());
        let (add, close) = match series.open.get_mut(&labels) {
            Some((n, last)) => {
                let add = now.saturating_duration_since(*last);
                *last = now;
                *n = n.saturating_sub(1);
                (add, *n == 0)
            }
            // Opened before this exporter existed: its whole time is still to be counted.
            None => (open_for, true),
        };
        if close {
            series.open.remove(&labels);
        }
        drop(series);
        self.mismatch_seconds.get_or_create(&labels).inc_by(add.as_secs_f64());
        if close {
            self.mismatch.remove(&labels);
        }
    }

    /// Adds the time open mismatches have been open since last counted, so the counter grows
    /// while they stay open (SLO pipelines integrate it), not only when they resolve.
    pub(crate) fn catch_up(&self, now: Instant) {
        let mut series = self.series();
        for (labels, (_, last)) in series.open.iter_mut() {
            let add = now.saturating_duration_since(*last);
            *last = now;
            self.mismatch_seconds.get_or_create(labels).inc_by(add.as_secs_f64());
        }
    }

    /// A reload attempt; `at` is the wall time of a success.
    pub(crate) fn reload(&self, ok: bool, at: SystemTime) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabels { result: result.to_owned() }).inc();
        if ok {
            self.loaded(at);
        }
    }

    /// The running configuration was loaded at `at`.
    pub(crate) fn loaded(&self, at: SystemTime) {
        self.last_reload.set(at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0));
    }

    /// `n` items of `signal` dropped for `reason`.
    pub(crate) fn dropped(&self, signal: &str, reason: DropReason, n: u64) {
        if n > 0 {
            self.dropped.get_or_create(&DropLabels::new(signal, reason)).inc_by(n);
        }
    }

    /// Items of `signal` dropped so far, every reason.
    pub(crate) fn dropped_total(&self, signal: &str) -> u64 {
        DropReason::ALL
            .into_iter()
            .filter_map(|reason| self.dropped.get(&DropLabels::new(signal, reason)).map(|c| c.get()))
            .sum()
    }

    /// One failed export attempt of `signal`.
    pub(crate) fn failed(&self, signal: &str) {
        self.failures.get_or_create(&SignalLabels { signal: signal.to_owned() }).inc();
    }

    /// Drops every series of `view` (and of the mismatches it is part of).
    pub(crate) fn forget_view(&self, view: &View) {
        let key = view_key(view);
        let mut series = self.series();
        series.handles.remove(&(view.target.clone(), view.name.clone()));
        for labels in series.probes.remove(&key).unwrap_or_default() {
            self.probe_total.remove(&labels);
        }
        for phase in series.phases.remove(&key).unwrap_or_default() {
            self.duration.remove(&PhaseLabels {
                target: key.target.clone(),
                target_id: key.target_id.clone(),
                view: key.view.clone(),
                phase: phase.to_owned(),
            });
        }
        if let Some(labels) = series.up.remove(&key) {
            self.view_up.remove(&labels);
        }
        // The role may have changed since: remove both spellings.
        for role in ["client", "checker"] {
            self.view_up.remove(&ViewRoleLabels {
                target: key.target.clone(),
                target_id: key.target_id.clone(),
                view: key.view.clone(),
                role: role.to_owned(),
            });
        }
        let tv = key.labels();
        series.cert.remove(&key);
        self.cert_not_after.remove(&tv);
        series.skipped.remove(&key);
        self.skipped.remove(&tv);
        series.open.retain(|labels, _| {
            let gone = labels.involves(view);
            if gone {
                self.mismatch.remove(labels);
            }
            !gone
        });
        series.mismatch_seconds.retain(|labels| {
            let gone = labels.involves(view);
            if gone {
                self.mismatch_seconds.remove(labels);
            }
            !gone
        });
    }

    /// `/metrics`: the OpenMetrics text.
    pub(crate) fn encode(&self) -> String {
        self.catch_up(Instant::now());
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("cannot encode /metrics: {e}");
        }
        out
    }
}

/// The OTLP side of the counters and gauges: observable instruments reading the families above.
/// Held for as long as the meter provider runs.
#[derive(Debug)]
pub(crate) struct Observables {
    _counters_u64: Vec<ObservableCounter<u64>>,
    _counters_f64: Vec<ObservableCounter<f64>>,
    _gauges_i64: Vec<ObservableGauge<i64>>,
    _gauges_f64: Vec<ObservableGauge<f64>>,
}

fn kv<const N: usize>(pairs: [(&'static str, &str); N]) -> Vec<KeyValue> {
    pairs.into_iter().map(|(k, v)| KeyValue::new(k, v.to_owned())).collect()
}

impl Observables {
    /// Registers the observable instruments on `meter`.
    pub(crate) fn register(metrics: &Arc<Metrics>, meter: &Meter) -> Observables {
        // Registered in this order (fields are evaluated as written).
        Observables {
            _counters_u64: [probe_counters(metrics, meter), export_counters(metrics, meter)].concat(),
            _counters_f64: vec![mismatch_seconds_counter(metrics, meter)],
            _gauges_i64: gauges(metrics, meter),
            _gauges_f64: vec![last_reload_gauge(metrics, meter)],
        }
    }
}

/// `parallax_probe_total` and `parallax_probe_skipped_total`.
fn probe_counters(metrics: &Arc<Metrics>, meter: &Meter) -> Vec<ObservableCounter<u64>> {
    let m = metrics.clone();
    let probe_total = meter
        .u64_observable_counter("parallax_probe_total")
        .with_description("Probes run, by result and error code.")
        .with_callback(move |obs| {
            let series = m.series();
            for labels in series.probes.values().flatten() {
                if let Some(c) = m.probe_total.get(labels) {
                    obs.observe(
                        c.get(),
                        &kv([
                            ("target", &labels.target),
                            ("target_id", &labels.target_id),
                            ("view", &labels.view),
                            ("role", &labels.role),
                            ("result", &labels.result),
                            ("error", &labels.error),
                        ]),
                    );
                }
            }
        })
        .build();
    let m = metrics.clone();
    let skipped = meter
        .u64_observable_counter("parallax_probe_skipped_total")
        .with_description("Ticks skipped because the view's previous probe was still running.")
        .with_callback(move |obs| {
            let series = m.series();
            for key in &series.skipped {
                if let Some(c) = m.skipped.get(&key.labels()) {
                    obs.observe(
                        c.get(),
                        &kv([("target", &key.target), ("target_id", &key.target_id), ("view", &key.view)]),
                    );
                }
            }
        })
        .build();
    vec![probe_total, skipped]
}

/// `parallax_export_dropped_total`, `parallax_export_failures_total` and `parallax_reload_total`.
fn export_counters(metrics: &Arc<Metrics>, meter: &Meter) -> Vec<ObservableCounter<u64>> {
    let m = metrics.clone();
    let export_health = meter
        .u64_observable_counter("parallax_export_dropped_total")
        .with_description(
            "Telemetry dropped, by reason: queue full, retries exhausted, rejected by the collector, shutdown.",
        )
        .with_callback(move |obs| {
            for signal in SIGNALS {
                for reason in DropReason::ALL {
                    if let Some(c) = m.dropped.get(&DropLabels::new(signal, reason)) {
                        obs.observe(c.get(), &kv([("signal", signal), ("reason", reason.as_str())]));
                    }
                }
            }
        })
        .build();
    let export_failures =
        signal_counter(metrics, meter, "parallax_export_failures_total", "Failed export attempts.", |m| {
            &m.failures
        });
    let m = metrics.clone();
    let reloads = meter
        .u64_observable_counter("parallax_reload_total")
        .with_description("Configuration reload attempts, by result.")
        .with_callback(move |obs| {
            for result in ["success", "failure"] {
                if let Some(c) = m.reloads.get(&ResultLabels { result: result.to_owned() }) {
                    obs.observe(c.get(), &kv([("result", result)]));
                }
            }
        })
        .build();
    vec![export_health, export_failures, reloads]
}

/// A counter per export signal, read from the family `family` picks.
fn signal_counter(
    metrics: &Arc<Metrics>,
    meter: &Meter,
    name: &'static str,
    description: &'static str,
    family: fn(&Metrics) -> &Family<SignalLabels, Counter>,
) -> ObservableCounter<u64> {
    let m = metrics.clone();
    meter
        .u64_observable_counter(name)
        .with_description(description)
        .with_callback(move |obs| {
            for signal in SIGNALS {
                if let Some(c) = family(&m).get(&SignalLabels { signal: signal.to_owned() }) {
                    obs.observe(c.get(), &kv([("signal", signal)]));
                }
            }
        })
        .build()
}

/// `parallax_mismatch_seconds_total`, caught up at each collection.
fn mismatch_seconds_counter(metrics: &Arc<Metrics>, meter: &Meter) -> ObservableCounter<f64> {
    let m = metrics.clone();
    let mismatch_seconds = meter
        .f64_observable_counter("parallax_mismatch_seconds_total")
        .with_description("Time spent in mismatch.")
        .with_unit("s")
        .with_callback(move |obs| {
            m.catch_up(Instant::now());
            let series = m.series();
            for labels in &series.mismatch_seconds {
                if let Some(c) = m.mismatch_seconds.get(labels) {
                    obs.observe(c.get(), &mismatch_kv(labels));
                }
            }
        })
        .build();
    mismatch_seconds
}

/// `parallax_view_up`, `parallax_mismatch` and `parallax_tls_cert_not_after_seconds`.
fn gauges(metrics: &Arc<Metrics>, meter: &Meter) -> Vec<ObservableGauge<i64>> {
    let m = metrics.clone();
    let view_up = meter
        .i64_observable_gauge("parallax_view_up")
        .with_description("The emulated load balancer's verdict of the view: 1 healthy, 0 unhealthy.")
        .with_callback(move |obs| {
            let series = m.series();
            for labels in series.up.values() {
                if let Some(g) = m.view_up.get(labels) {
                    obs.observe(
                        g.get(),
                        &kv([
                            ("target", &labels.target),
                            ("target_id", &labels.target_id),
                            ("view", &labels.view),
                            ("role", &labels.role),
                        ]),
                    );
                }
            }
        })
        .build();
    let m = metrics.clone();
    let mismatch = meter
        .i64_observable_gauge("parallax_mismatch")
        .with_description("1 while a mismatch is open.")
        .with_callback(move |obs| {
            let series = m.series();
            for labels in series.open.keys() {
                obs.observe(1, &mismatch_kv(labels));
            }
        })
        .build();
    let m = metrics.clone();
    let cert = meter
        .i64_observable_gauge("parallax_tls_cert_not_after_seconds")
        .with_description("The leaf certificate's not_after, Unix time.")
        .with_unit("s")
        .with_callback(move |obs| {
            let series = m.series();
            for key in &series.cert {
                if let Some(g) = m.cert_not_after.get(&key.labels()) {
                    obs.observe(
                        g.get(),
                        &kv([("target", &key.target), ("target_id", &key.target_id), ("view", &key.view)]),
                    );
                }
            }
        })
        .build();
    vec![view_up, mismatch, cert]
}

/// `parallax_config_last_reload_success_timestamp_seconds`.
fn last_reload_gauge(metrics: &Arc<Metrics>, meter: &Meter) -> ObservableGauge<f64> {
    let m = metrics.clone();
    let last_reload = meter
        .f64_observable_gauge("parallax_config_last_reload_success_timestamp_seconds")
        .with_description("When the running configuration was loaded, Unix time.")
        .with_unit("s")
        .with_callback(move |obs| obs.observe(m.last_reload.get(), &[]))
        .build();
    last_reload
}

fn mismatch_kv(labels: &MismatchLabels) -> Vec<KeyValue> {
    kv([
        ("target", &labels.target),
        ("target_id", &labels.target_id),
        ("client_view", &labels.client_view),
        ("checker_view", &labels.checker_view),
        ("direction", &labels.direction),
        ("diagnosis", &labels.diagnosis),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{Attribute, Basis, Diagnosis, Direction};

    #[test]
    fn a_local_failure_is_counted_as_a_local_error_not_the_targets() {
        let v = crate::testkit::view("shop", "client");
        let label = |ok, code| probe_result_label(&crate::testkit::outcome_for(&v, ok, code, None));
        assert_eq!(label(true, None), "success");
        assert_eq!(label(false, Some(ErrorCode::ConnectUnreachable)), "failure");
        assert_eq!(label(false, Some(ErrorCode::LocalResourceExhausted)), "local_error");
    }

    fn mismatch() -> Mismatch {
        Mismatch {
            target: "shop".into(),
            target_id: "shop".into(),
            client_view: "client".into(),
            checker_view: "nlb".into(),
            direction: Direction::Blackhole,
            diagnosis: Diagnosis::ShallowHealthPath,
            flipped: vec![Attribute::Path],
            evidence: String::new(),
            causes: Vec::new(),
            basis: Basis::Probes,
            client_address: None,
            checker_address: None,
            client_error: None,
            checker_error: None,
            attribution: None,
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
    }

    const GAUGE: &str = "parallax_mismatch{target=\"shop\",target_id=\"shop\",client_view=\"client\",checker_view=\"nlb\",direction=\"blackhole\",diagnosis=\"shallow_health_path\"}";
    const SECONDS: &str = "parallax_mismatch_seconds_total{target=\"shop\",target_id=\"shop\",client_view=\"client\",checker_view=\"nlb\",direction=\"blackhole\",diagnosis=\"shallow_health_path\"}";

    #[tokio::test(start_paused = true)]
    async fn mismatch_seconds_grow_while_open_and_the_gauge_lasts_until_the_last_record_resolves() {
        let m = Metrics::new(None);
        let record = mismatch();
        m.mismatch_opened(&record, Instant::now());
        // A second address of the same pair (each_address) opens the same series.
        m.mismatch_opened(&record, Instant::now());
        tokio::time::advance(Duration::from_secs(10)).await;
        let text = m.encode();
        assert_eq!(value(&text, GAUGE), Some(1.0));
        assert_eq!(value(&text, SECONDS), Some(10.0), "counted while open, at scrape time");

        tokio::time::advance(Duration::from_secs(5)).await;
        m.mismatch_resolved(&record, Duration::from_secs(15), Instant::now());
        let text = m.encode();
        assert_eq!(value(&text, GAUGE), Some(1.0), "one record is still open");
        assert_eq!(value(&text, SECONDS), Some(15.0));

        tokio::time::advance(Duration::from_secs(5)).await;
        m.mismatch_resolved(&record, Duration::from_secs(20), Instant::now());
        tokio::time::advance(Duration::from_secs(100)).await;
        let text = m.encode();
        assert_eq!(value(&text, GAUGE), None, "gone once every record resolved");
        assert_eq!(value(&text, SECONDS), Some(20.0), "no growth after resolution");
    }

    #[tokio::test(start_paused = true)]
    async fn a_resolution_never_seen_opening_counts_its_whole_time() {
        let m = Metrics::new(None);
        m.mismatch_resolved(&mismatch(), Duration::from_secs(42), Instant::now());
        assert_eq!(value(&m.encode(), SECONDS), Some(42.0));
    }

    #[test]
    fn export_health_series_exist_at_zero_from_the_start() {
        let text = Metrics::new(None).encode();
        for signal in SIGNALS {
            for reason in ["queue_full", "retries_exhausted", "rejected", "shutdown"] {
                assert_eq!(
                    value(
                        &text,
                        &format!("parallax_export_dropped_total{{signal=\"{signal}\",reason=\"{reason}\"}}")
                    ),
                    Some(0.0)
                );
            }
            assert_eq!(
                value(&text, &format!("parallax_export_failures_total{{signal=\"{signal}\"}}")),
                Some(0.0)
            );
        }
        assert_eq!(value(&text, "parallax_reload_total{result=\"failure\"}"), Some(0.0));
    }
}
