//! Exports: one place turns a probe outcome, a verdict change or a mismatch into a span, metric
//! samples and an event line (STYLE: telemetry as typed events). Labels stay low-cardinality;
//! addresses go into spans and exemplars only. Nothing here ever blocks probing: queues are
//! bounded and what cannot be queued is dropped and counted.

mod events;
mod metrics;
mod otlp;
mod sampling;
mod spans;

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::RandomIdGenerator;
use tokio::time::Instant;

use crate::config::{Env, ExportSettings, ProcessEnv, View};
use crate::diff::Mismatch;
use crate::duration::Human;
use crate::probe::Outcome;
use crate::verdict::VerdictChange;

use events::{EventWriter, MismatchLine, VerdictChangeLine};
use metrics::{Metrics, Observables, OtelHistograms};
use otlp::{MetricPipeline, SharedReader, SpanPipeline};
use sampling::Sampling;
use spans::Ids;

/// The identity of an exported span, for links and exemplars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanRef {
    /// W3C trace id.
    pub trace_id: [u8; 16],
    /// Span id.
    pub span_id: [u8; 8],
}

impl SpanRef {
    /// The trace id as 32 lowercase hex digits (as exemplars, events and OTLP backends show it).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Who is exporting: the OTLP resource (`service.name=parallax`, `service.version`,
/// `host.name`, `k8s.node.name`, the vantage's attributes), and the vantage's labels on every
/// metric series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceInfo {
    /// `host.name`.
    pub host_name: Option<String>,
    /// `k8s.node.name` (from `NODE_NAME`).
    pub node_name: Option<String>,
    /// `[vantage]`: its labels on every series, its attributes on the resource.
    pub vantage: Option<crate::config::Vantage>,
}

/// Where the daemon's telemetry goes: [`Telemetry`] in production; tests record the calls.
/// Implementations must never block: the daemon calls them while its engine is locked.
pub trait Sink: Send + Sync + 'static {
    /// One outcome of a finished probe. Records the metrics; exports a span when sampled (every
    /// failure, every verdict change, [`ProbeReport::force`], or the configured fraction of plain
    /// successes); writes a JSON event line on a verdict change. Returns the exported span, if
    /// any.
    fn probe(&self, report: &ProbeReport<'_>) -> Option<SpanRef>;
    /// A tick of `view` skipped because its previous probe was still running.
    fn skipped(&self, view: &View);
    /// A mismatch opened or resolved: `parallax_mismatch`, `parallax_mismatch_seconds_total`, a
    /// `parallax.mismatch` span linked to the probe spans, and a JSON event line.
    fn mismatch(&self, event: MismatchEvent<'_>);
    /// A reload attempt: counted by result.
    fn reload(&self, ok: bool);
    /// Drops every metric series of a view that left the plan.
    fn forget_view(&self, view: &View);
    /// `/metrics` in the OpenMetrics text format (with exemplars carrying trace ids).
    fn encode_metrics(&self) -> String;
    /// Flushes spans and metrics, waiting at most `deadline`.
    fn shutdown(&self, deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// How Kubernetes discovery is doing: `parallax_discovery_*`. Sinks that do not export
    /// metrics ignore it.
    fn discovery(&self, report: &DiscoveryReport) {
        let _ = report;
    }
    /// The running plan's `[[condition]]`s (`parallax_condition`), each time a plan is loaded.
    /// Sinks that do not export metrics ignore them.
    fn conditions(&self, conditions: &[crate::config::Condition]) {
        let _ = conditions;
    }
}

/// Kubernetes discovery's health, as metrics export it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryReport {
    /// Every kind the cluster serves.
    pub resources: Vec<ResourceHealth>,
    /// Derived targets compiled into the plan.
    pub targets: usize,
    /// Derived targets rejected by the compiler.
    pub rejected: usize,
}

/// The watch of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceHealth {
    /// `services`, `endpointslices`...
    pub resource: &'static str,
    /// Listed and not failing.
    pub up: bool,
    /// Errors since start.
    pub errors: u64,
    /// Objects held.
    pub objects: u64,
}

/// One outcome of a finished probe, as telemetry receives it: built once where the probe ends
/// and handed by reference to spans, metrics and event lines. A probe with `each_address` has
/// one report per outcome; the verdict change goes with the outcome that stands for the probe.
#[derive(Debug, Clone, Copy)]
pub struct ProbeReport<'a> {
    /// The view probed.
    pub view: &'a View,
    /// The outcome.
    pub outcome: &'a Outcome,
    /// When the probe started, wall time.
    pub started: SystemTime,
    /// How late it started after its planned start.
    pub lateness: Duration,
    /// The verdict change it decided, if any.
    pub change: Option<&'a VerdictChange>,
    /// Export the span whatever the sampling says (while a disagreement waits for its hold or
    /// changes state, so the mismatch span can link the probes that decided it).
    pub force: bool,
}

/// A mismatch that opened or resolved, with the probe spans it compares.
#[derive(Debug, Clone)]
pub enum MismatchEvent<'a> {
    /// Opened now.
    Opened {
        /// The record.
        mismatch: &'a Mismatch,
        /// When the views started to disagree.
        since: SystemTime,
        /// Spans of the client and checker probes that decided it (when exported).
        links: [Option<SpanRef>; 2],
    },
    /// Resolved now.
    Resolved {
        /// The record as it was when open.
        mismatch: &'a Mismatch,
        /// When it opened.
        opened_at: SystemTime,
        /// How long it was open.
        open_for: Duration,
        /// Why it ended (`agreed`, `both_unhealthy`, `removed`).
        resolution: &'static str,
        /// Spans of the probes that ended it (when exported).
        links: [Option<SpanRef>; 2],
    },
}

impl<'a> MismatchEvent<'a> {
    /// The mismatch record the event is about.
    pub fn mismatch(&self) -> &'a Mismatch {
        match self {
            MismatchEvent::Opened { mismatch, .. } | MismatchEvent::Resolved { mismatch, .. } => mismatch,
        }
    }
}

/// Knobs of the export pipelines; [`Default`] is what the daemon runs with. Tests shrink the
/// queues and intervals, and capture events instead of writing them to stdout.
pub struct TelemetryOptions {
    /// Where event lines go (default: stdout).
    pub events: Box<dyn Write + Send>,
    /// Event lines queued for the writer before new ones are dropped.
    pub event_queue: usize,
    /// Probes (each with its phase spans) queued for export before new ones are dropped.
    pub span_queue: usize,
    /// Most spans in one export request.
    pub max_batch: usize,
    /// How long spans wait for a batch to fill.
    pub batch_interval: Duration,
    /// Deadline of one export request.
    pub export_timeout: Duration,
    /// Retries of a failed export before its data is dropped.
    pub export_retries: u32,
    /// Pause before the first retry (doubling after each).
    pub retry_backoff: Duration,
    /// How often metrics are pushed over OTLP.
    pub metrics_interval: Duration,
}

impl Default for TelemetryOptions {
    fn default() -> TelemetryOptions {
        TelemetryOptions {
            events: Box::new(std::io::stdout()),
            event_queue: 1024,
            span_queue: 2048,
            max_batch: 512,
            batch_interval: Duration::from_secs(1),
            export_timeout: Duration::from_secs(5),
            export_retries: 2,
            retry_backoff: Duration::from_millis(250),
            metrics_interval: Duration::from_secs(15),
        }
    }
}

impl fmt::Debug for TelemetryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryOptions")
            .field("event_queue", &self.event_queue)
            .field("span_queue", &self.span_queue)
            .field("max_batch", &self.max_batch)
            .field("batch_interval", &self.batch_interval)
            .field("export_timeout", &self.export_timeout)
            .field("export_retries", &self.export_retries)
            .field("retry_backoff", &self.retry_backoff)
            .field("metrics_interval", &self.metrics_interval)
            .finish_non_exhaustive()
    }
}

/// The exporters. Create inside a tokio runtime.
pub struct Telemetry {
    metrics: Arc<Metrics>,
    spans: Option<SpanPipeline>,
    metric_push: Option<MetricPipeline>,
    meter_provider: Option<SdkMeterProvider>,
    _observables: Option<Observables>,
    events: EventWriter,
    success_sample_ratio: f64,
    ids: RandomIdGenerator,
    scope: InstrumentationScope,
    /// Where OTLP goes, for people (no user info, query or header): `None` when it is off.
    otlp_destination: Option<String>,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("otlp_traces", &self.spans.is_some())
            .field("otlp_metrics", &self.metric_push.is_some())
            .field("success_sample_ratio", &self.success_sample_ratio)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Builds the exporters from `[export]` plus the standard `OTEL_EXPORTER_OTLP_*` and
    /// `OTEL_RESOURCE_ATTRIBUTES` variables. Without OTLP, metrics still feed `/metrics` and
    /// events still go to stdout.
    pub fn new(settings: &ExportSettings, resource: ResourceInfo) -> Telemetry {
        Telemetry::with_options(settings, resource, &ProcessEnv, TelemetryOptions::default())
    }

    /// [`Telemetry::new`] with the environment and the pipeline knobs given. An exporter that
    /// cannot be built (a bad endpoint) is logged and left off; the rest still runs.
    pub fn with_options(
        settings: &ExportSettings,
        resource: ResourceInfo,
        env: &dyn Env,
        options: TelemetryOptions,
    ) -> Telemetry {
        let scope = InstrumentationScope::builder("parallax").with_version(env!("CARGO_PKG_VERSION")).build();
        let destination = otlp::resolve(settings.otlp.as_ref(), env);
        let vantage_labels = resource.vantage.as_ref().map(|v| v.metric_labels()).unwrap_or_default();
        let vantage_name = resource.vantage.as_ref().map(|v| v.name.clone());
        let resource = otlp::resource(&resource, env);

        let metric_exporter = destination.as_ref().and_then(|d| {
            otlp::metric_exporter(d, options.export_timeout)
                .map_err(|e| tracing::warn!("OTLP metrics are off: {e}"))
                .ok()
                .flatten()
        });
        let (meter_provider, histograms, reader) = match metric_exporter {
            Some(exporter) => {
                let reader = SharedReader(Arc::new(
                    ManualReader::builder().with_temporality(Temporality::Cumulative).build(),
                ));
                let provider = SdkMeterProvider::builder()
                    .with_resource(resource.clone())
                    .with_reader(reader.clone())
                    .build();
                let meter = provider.meter_with_scope(scope.clone());
                let histograms = OtelHistograms::new(&meter);
                (Some((provider, meter, exporter)), Some(histograms), Some(reader))
            }
            None => (None, None, None),
        };
        let metrics = Arc::new(Metrics::with_labels(histograms, vantage_labels));
        // The plan this exporter starts with was just loaded.
        metrics.loaded(SystemTime::now());
        let (meter_provider, observables, metric_push) = match (meter_provider, reader) {
            (Some((provider, meter, exporter)), Some(reader)) => {
                let observables = Observables::register(&metrics, &meter);
                let push = MetricPipeline::start(exporter, reader, metrics.clone(), &options);
                (Some(provider), Some(observables), Some(push))
            }
            _ => (None, None, None),
        };

        let spans = destination.as_ref().and_then(|d| match otlp::span_exporter(d, options.export_timeout) {
            Ok(Some(exporter)) => Some(SpanPipeline::start(exporter, &resource, metrics.clone(), &options)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("OTLP traces are off: {e}");
                None
            }
        });
        let events = EventWriter::start(options.events, options.event_queue, vantage_name);
        let otlp_destination = destination.as_ref().and_then(|d| {
            let traces = d.traces.as_deref().filter(|_| spans.is_some());
            let metrics = d.metrics.as_deref().filter(|_| metric_push.is_some());
            otlp::describe(d.protocol, traces, metrics)
        });
        Telemetry {
            metrics,
            spans,
            metric_push,
            meter_provider,
            _observables: observables,
            events,
            success_sample_ratio: destination
                .map_or(crate::config::DEFAULT_SUCCESS_SAMPLE_RATIO, |d| d.success_sample_ratio),
            ids: RandomIdGenerator::default(),
            scope,
            otlp_destination,
        }
    }

    /// Where exports go, for the daemon's start-up line: `events on stdout, OTLP traces and
    /// metrics to http://127.0.0.1:4317 (grpc)`, or `..., no OTLP`. Names no secret.
    pub fn exports(&self) -> String {
        match &self.otlp_destination {
            Some(otlp) => format!("events on stdout, {otlp}"),
            None => "events on stdout, no OTLP (set [export.otlp] or OTEL_EXPORTER_OTLP_ENDPOINT)".to_owned(),
        }
    }

    /// Whether spans are exported over OTLP.
    pub fn exports_traces(&self) -> bool {
        self.spans.is_some()
    }
}

impl Sink for Telemetry {
    fn probe(&self, report: &ProbeReport<'_>) -> Option<SpanRef> {
        let span = self.spans.as_ref().and_then(|pipeline| {
            let trace_id = self.ids.trace_id();
            let sampling = Sampling::decide(
                report.outcome.ok,
                report.change.is_some(),
                report.force,
                self.success_sample_ratio,
                trace_id,
            );
            if !sampling.keep() {
                return None;
            }
            let (root, spans) = spans::probe_spans(report, sampling, trace_id, &self.ids, &self.scope);
            pipeline.offer(spans, &self.metrics).then_some(root)
        });
        self.metrics.probe(report, span);
        if let Some(change) = report.change {
            self.events.emit(&VerdictChangeLine::new(report, change, span), &self.metrics);
        }
        span
    }

    fn skipped(&self, view: &View) {
        self.metrics.skipped(view);
    }

    fn mismatch(&self, event: MismatchEvent<'_>) {
        let now = SystemTime::now();
        let mono = Instant::now();
        match &event {
            MismatchEvent::Opened { mismatch, .. } => self.metrics.mismatch_opened(mismatch, mono),
            MismatchEvent::Resolved { mismatch, open_for, .. } => {
                self.metrics.mismatch_resolved(mismatch, *open_for, mono)
            }
        }
        let span = self.spans.as_ref().and_then(|pipeline| {
            let (root, span) = spans::mismatch_span(&event, now, &self.ids, &self.scope);
            pipeline.offer(vec![span], &self.metrics).then_some(root)
        });
        self.events.emit(&MismatchLine::new(&event, now, span), &self.metrics);
    }

    fn reload(&self, ok: bool) {
        self.metrics.reload(ok, SystemTime::now());
    }

    fn forget_view(&self, view: &View) {
        self.metrics.forget_view(view);
    }

    fn encode_metrics(&self) -> String {
        self.metrics.encode()
    }

    fn discovery(&self, report: &DiscoveryReport) {
        self.metrics.discovery(report);
    }

    fn conditions(&self, conditions: &[crate::config::Condition]) {
        self.metrics.conditions(conditions);
    }

    fn shutdown(&self, deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let spans = async {
                if let Some(p) = &self.spans {
                    p.shutdown(deadline, &self.metrics).await;
                }
            };
            let metrics = async {
                if let Some(p) = &self.metric_push {
                    p.shutdown(deadline, &self.metrics).await;
                }
            };
            let events = async {
                if !self.events.flush(deadline).await {
                    tracing::warn!("event lines not flushed within {}", Human(deadline));
                }
            };
            tokio::join!(spans, metrics, events);
            if let Some(provider) = &self.meter_provider {
                let _ = provider.shutdown();
            }
        })
    }
}
