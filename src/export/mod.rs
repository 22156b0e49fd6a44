//! Exports: one place turns a probe outcome, a verdict change or a mismatch into a span, metric
//! samples and an event line (STYLE: telemetry as typed events). Labels stay low-cardinality;
//! addresses go into spans and exemplars only. Nothing here ever blocks probing: queues are
//! bounded and what cannot be queued is dropped and counted.

use std::time::{Duration, SystemTime};

use crate::config::{ExportSettings, View};
use crate::diff::Mismatch;
use crate::probe::Outcome;
use crate::verdict::VerdictChange;

/// The identity of an exported span, for links and exemplars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanRef {
    /// W3C trace id.
    pub trace_id: [u8; 16],
    /// Span id.
    pub span_id: [u8; 8],
}

/// Who is exporting: the OTLP resource (`service.name=parallax`, `service.version`,
/// `host.name`, `k8s.node.name`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceInfo {
    /// `host.name`.
    pub host_name: Option<String>,
    /// `k8s.node.name` (from `NODE_NAME`).
    pub node_name: Option<String>,
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

/// The exporters. Create inside a tokio runtime.
#[derive(Debug)]
pub struct Telemetry {}

impl Telemetry {
    /// Builds the exporters from `[export]` plus the standard `OTEL_EXPORTER_OTLP_*` and
    /// `OTEL_RESOURCE_ATTRIBUTES` variables. Without OTLP, metrics still feed `/metrics` and
    /// events still go to stdout.
    pub fn new(settings: &ExportSettings, resource: ResourceInfo) -> Telemetry {
        let _ = (settings, resource);
        todo!("export")
    }

    /// One finished probe of `view`, started at wall time `started`, `lateness` after its
    /// planned start; `change` when it changed the view's verdict. Records the metrics; exports a
    /// span when sampled (every failure, every verdict change, `force`, or the configured
    /// fraction of plain successes); writes a JSON event line on a verdict change. Returns the
    /// exported span, if any.
    pub fn probe(
        &self,
        view: &View,
        outcome: &Outcome,
        started: SystemTime,
        lateness: Duration,
        change: Option<&VerdictChange>,
        force: bool,
    ) -> Option<SpanRef> {
        let _ = (view, outcome, started, lateness, change, force);
        todo!("export")
    }

    /// A tick of `view` skipped because its previous probe was still running.
    pub fn skipped(&self, view: &View) {
        let _ = view;
        todo!("export")
    }

    /// A mismatch opened or resolved: `parallax_mismatch`, `parallax_mismatch_seconds_total`, a
    /// `parallax.mismatch` span linked to the probe spans, and a JSON event line.
    pub fn mismatch(&self, event: MismatchEvent<'_>) {
        let _ = event;
        todo!("export")
    }

    /// A reload attempt: counted by result.
    pub fn reload(&self, ok: bool) {
        let _ = ok;
        todo!("export")
    }

    /// Drops every metric series of a view that left the plan.
    pub fn forget_view(&self, view: &View) {
        let _ = view;
        todo!("export")
    }

    /// `/metrics` in the OpenMetrics text format (with exemplars carrying trace ids).
    pub fn encode_metrics(&self) -> String {
        todo!("export")
    }

    /// Flushes spans and metrics, waiting at most `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        let _ = deadline;
        todo!("export")
    }
}
