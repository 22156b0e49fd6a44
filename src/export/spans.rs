//! Spans built after the fact (docs/exports.md): a probe is over when its outcome arrives, so its
//! `parallax.probe` span and one child per phase are laid out from the wall-clock start and the
//! outcome's monotonic phase timings, with explicit start and end times. A `parallax.mismatch`
//! span links the probe spans it compares.
//!
//! Attributes follow the OpenTelemetry semantic conventions where one exists; the rest are
//! `parallax.*`. Nothing secret goes in: the URL is the redacted `url_display`, outcomes carry no
//! header values, failure details never hold a secret.

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::config::{Host, ProxyVersion, View};
use crate::probe::{Outcome, Phase, TlsSummary};

use super::sampling::Sampling;
use super::{MismatchEvent, ProbeReport, SpanRef};

/// The ids a new trace needs: one trace id, and span ids on demand.
pub(crate) trait Ids {
    fn trace_id(&self) -> [u8; 16];
    fn span_id(&self) -> [u8; 8];
}

impl<T: opentelemetry_sdk::trace::IdGenerator> Ids for T {
    fn trace_id(&self) -> [u8; 16] {
        self.new_trace_id().to_bytes()
    }

    fn span_id(&self) -> [u8; 8] {
        self.new_span_id().to_bytes()
    }
}

fn context(trace_id: [u8; 16], span_id: [u8; 8]) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(trace_id),
        SpanId::from_bytes(span_id),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    )
}

struct Draft {
    context: SpanContext,
    parent: SpanId,
    kind: SpanKind,
    name: &'static str,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
    links: Vec<opentelemetry::trace::Link>,
    status: Status,
}

impl Draft {
    fn finish(self, scope: &InstrumentationScope) -> SpanData {
        let mut links = SpanLinks::default();
        links.links = self.links;
        SpanData {
            span_context: self.context,
            parent_span_id: self.parent,
            parent_span_is_remote: false,
            span_kind: self.kind,
            name: Cow::Borrowed(self.name),
            start_time: self.start,
            end_time: self.end.max(self.start),
            attributes: self.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links,
            status: self.status,
            instrumentation_scope: scope.clone(),
        }
    }
}

fn s(key: &'static str, value: impl Into<String>) -> KeyValue {
    KeyValue::new(key, value.into())
}

fn strings(key: &'static str, values: impl IntoIterator<Item = String>) -> KeyValue {
    KeyValue::new(key, Value::Array(Array::String(values.into_iter().map(StringValue::from).collect())))
}

/// `TLSv1_3` -> `1.3` (semconv `tls.protocol.version`).
fn tls_version(v: &str) -> String {
    v.trim_start_matches("TLSv").replace('_', ".")
}

fn failure_status(outcome: &Outcome) -> Status {
    match (outcome.error, &outcome.detail) {
        (Some(code), Some(detail)) if !detail.is_empty() => Status::error(format!("{code}: {detail}")),
        (Some(code), _) => Status::error(code.as_str()),
        (None, _) => Status::error("failed"),
    }
}

/// The `parallax.probe` span and its phase children for one outcome. `trace_id` was drawn before
/// the sampling decision (the ratio is decided on it).
pub(crate) fn probe_spans(
    report: &ProbeReport<'_>,
    sampling: Sampling,
    trace_id: [u8; 16],
    ids: &dyn Ids,
    scope: &InstrumentationScope,
) -> (SpanRef, Vec<SpanData>) {
    let ProbeReport { view, outcome, started, .. } = *report;
    let root_id = ids.span_id();
    let root = SpanRef { trace_id, span_id: root_id };
    let end = started + outcome.timings.total;
    let mut spans = vec![Draft {
        context: context(trace_id, root_id),
        parent: SpanId::INVALID,
        kind: SpanKind::Client,
        name: "parallax.probe",
        start: started,
        end,
        attributes: probe_attributes(report, sampling),
        links: Vec::new(),
        status: if outcome.ok { Status::Unset } else { failure_status(outcome) },
    }
    .finish(scope)];
    for phase in phases(view, outcome, started) {
        spans.push(
            Draft {
                context: context(trace_id, ids.span_id()),
                parent: SpanId::from_bytes(root_id),
                kind: SpanKind::Internal,
                name: phase.phase.as_str(),
                start: phase.start,
                end: phase.end.min(end),
                attributes: phase_attributes(outcome, &phase),
                links: Vec::new(),
                status: if phase.failed { failure_status(outcome) } else { Status::Unset },
            }
            .finish(scope),
        );
    }
    (root, spans)
}

/// The `parallax.probe` span's attributes, in a fixed order: the view, the request as sent, the
/// connection and response, TLS, the failure, the verdict change.
fn probe_attributes(report: &ProbeReport<'_>, sampling: Sampling) -> Vec<KeyValue> {
    let ProbeReport { view, outcome, lateness, change, .. } = *report;
    let mut attributes = vec![
        s("parallax.target", view.target.to_string()),
        s("parallax.view", view.name.to_string()),
        s("parallax.role", view.role.as_str()),
        s("url.full", view.url_display.clone()),
        s("url.scheme", view.scheme.as_str()),
        s(
            "server.address",
            match &view.url_endpoint.host {
                Host::Name(n) => n.clone(),
                Host::Ip(ip) => ip.to_string(),
            },
        ),
        KeyValue::new("server.port", i64::from(view.url_endpoint.port)),
        s("parallax.sampling", sampling.as_str()),
        KeyValue::new("parallax.scheduler.lateness_ms", lateness.as_secs_f64() * 1e3),
        KeyValue::new("parallax.ok", outcome.ok),
    ];
    if let Some(profile) = view.profile {
        attributes.push(s("parallax.profile", profile.as_str()));
    }
    push_request_attributes(&mut attributes, view, outcome);
    push_response_attributes(&mut attributes, outcome);
    if let Some(tls) = &outcome.tls {
        push_tls_attributes(&mut attributes, tls);
    }
    if let Some(code) = outcome.error {
        attributes.push(s("error.type", code.as_str()));
    }
    if let Some(phase) = outcome.phase {
        attributes.push(s("parallax.error.phase", phase.as_str()));
    }
    if let Some(change) = change {
        attributes.push(s("parallax.verdict.to", change.to.as_str()));
        if let Some(from) = change.from {
            attributes.push(s("parallax.verdict.from", from.as_str()));
        }
    }
    attributes
}

/// The request as it was sent: method, Host, user agent, HTTP version, SNI, verification,
/// source address, PROXY protocol.
fn push_request_attributes(attributes: &mut Vec<KeyValue>, view: &View, outcome: &Outcome) {
    let request = &outcome.request;
    if let Some(method) = &request.method {
        attributes.push(s("http.request.method", method.clone()));
    }
    if let Some(host) = &request.host {
        attributes.push(strings("http.request.header.host", [host.clone()]));
    }
    if let Some(agent) = &request.user_agent {
        attributes.push(s("user_agent.original", agent.clone()));
    }
    if let Some(version) = request.http_version {
        attributes.push(s("parallax.http.version", version));
    }
    if let Some(sni) = &request.sni {
        attributes.push(s("parallax.tls.sni", sni.clone()));
    }
    if view.scheme.uses_tls() {
        attributes.push(KeyValue::new("parallax.tls.verify", request.verify));
    }
    if let Some(source) = request.source {
        attributes.push(s("parallax.source", source.to_string()));
    }
    if let Some(version) = request.proxy_protocol {
        attributes.push(s(
            "parallax.proxy_protocol",
            match version {
                ProxyVersion::V1 => "v1",
                ProxyVersion::V2 => "v2",
            },
        ));
    }
}

/// The connection's two ends and what came back: HTTP status, gRPC health, local endpoints.
fn push_response_attributes(attributes: &mut Vec<KeyValue>, outcome: &Outcome) {
    if let Some(peer) = outcome.peer {
        attributes.push(s("network.peer.address", peer.ip().to_string()));
        attributes.push(KeyValue::new("network.peer.port", i64::from(peer.port())));
    } else if let Some(addr) = outcome.request.address {
        // Not connected: the address it tried is still the one that matters.
        attributes.push(s("network.peer.address", addr.ip().to_string()));
        attributes.push(KeyValue::new("network.peer.port", i64::from(addr.port())));
    }
    if let Some(local) = outcome.local {
        attributes.push(s("network.local.address", local.ip().to_string()));
        attributes.push(KeyValue::new("network.local.port", i64::from(local.port())));
    }
    if let Some(status) = outcome.status {
        attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
    }
    if let Some(location) = &outcome.location {
        // Semconv: `http.response.header.<name>` is a string array (one value per header line).
        attributes.push(strings("http.response.header.location", [location.clone()]));
    }
    if let Some(grpc) = &outcome.grpc_status {
        attributes.push(s("parallax.grpc.health_status", grpc.clone()));
    }
    if let Some(n) = outcome.local_endpoints {
        attributes.push(KeyValue::new("parallax.local_endpoints", i64::try_from(n).unwrap_or(i64::MAX)));
    }
}

/// The TLS session and the server's leaf certificate.
fn push_tls_attributes(attributes: &mut Vec<KeyValue>, tls: &TlsSummary) {
    attributes.push(s("tls.protocol.name", "tls"));
    if let Some(v) = &tls.version {
        attributes.push(s("tls.protocol.version", tls_version(v)));
    }
    if let Some(c) = &tls.cipher {
        attributes.push(s("tls.cipher", c.clone()));
    }
    if let Some(a) = &tls.alpn {
        attributes.push(s("tls.next_protocol", a.clone()));
    }
    if let Some(subject) = &tls.cert_subject {
        attributes.push(s("tls.server.subject", subject.clone()));
    }
    if let Some(not_after) = &tls.not_after {
        attributes.push(s("tls.server.not_after", not_after.clone()));
    }
    if let Some(issuer) = &tls.cert_issuer {
        attributes.push(s("tls.server.issuer", issuer.clone()));
    }
    if let Some(not_before) = &tls.not_before {
        attributes.push(s("tls.server.not_before", not_before.clone()));
    }
    // The semantic conventions write the fingerprint in uppercase hex.
    if let Some(sha256) = &tls.cert_sha256 {
        attributes.push(s("tls.server.hash.sha256", sha256.to_ascii_uppercase()));
    }
    if !tls.cert_sans.is_empty() {
        attributes.push(strings("parallax.tls.cert_sans", tls.cert_sans.iter().cloned()));
    }
}

/// A phase span's attributes: the phase, what it found (addresses, status, time to first
/// byte), and the error when it is the phase that failed.
fn phase_attributes(outcome: &Outcome, phase: &PhaseSpan) -> Vec<KeyValue> {
    let mut attributes = vec![s("parallax.phase", phase.phase.as_str())];
    match phase.phase {
        Phase::Dns if !outcome.resolved.is_empty() => {
            attributes
                .push(strings("parallax.dns.addresses", outcome.resolved.iter().map(|ip| ip.to_string())));
        }
        Phase::Http | Phase::Grpc => {
            if let Some(status) = outcome.status {
                attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
            }
            if let Some(ttfb) = outcome.timings.ttfb {
                attributes.push(KeyValue::new("parallax.ttfb_ms", ttfb.as_secs_f64() * 1e3));
            }
        }
        _ => {}
    }
    if phase.failed {
        if let Some(code) = outcome.error {
            attributes.push(s("error.type", code.as_str()));
        }
    }
    attributes
}

struct PhaseSpan {
    phase: Phase,
    start: SystemTime,
    end: SystemTime,
    failed: bool,
}

/// The phases that ran, in wire order, laid end to end from `started`: each timed phase takes
/// its measured duration; the phase that failed without finishing runs to the probe's end; the
/// HTTP/gRPC exchange takes what is left after TLS.
fn phases(view: &View, outcome: &Outcome, started: SystemTime) -> Vec<PhaseSpan> {
    let t = &outcome.timings;
    let end = started + t.total;
    let failed = outcome.phase;
    let app = if view.scheme.uses_grpc() {
        Some(Phase::Grpc)
    } else if view.scheme.uses_http() {
        Some(Phase::Http)
    } else {
        None
    };
    // `expect` judges a complete response: the exchange itself ran fine.
    let app_failed = matches!(failed, Some(Phase::Http | Phase::Grpc));
    let steps = [(Phase::Dns, t.dns), (Phase::Connect, t.connect), (Phase::Proxy, None), (Phase::Tls, t.tls)];
    let mut out = Vec::new();
    let mut cursor = started;
    for (phase, took) in steps {
        let failed_here = failed == Some(phase);
        match (took, failed_here) {
            (Some(d), _) => {
                let stop = (cursor + d).min(end);
                out.push(PhaseSpan { phase, start: cursor, end: stop, failed: failed_here });
                cursor = stop;
            }
            (None, true) => out.push(PhaseSpan { phase, start: cursor, end, failed: true }),
            (None, false) => {}
        }
        if failed_here {
            return out;
        }
    }
    if let Some(app) = app {
        // Reached only when no earlier phase failed.
        out.push(PhaseSpan { phase: app, start: cursor, end, failed: app_failed });
    }
    out
}

/// The `parallax.mismatch` span of an opened or resolved mismatch, linked to the probe spans.
pub(crate) fn mismatch_span(
    event: &MismatchEvent<'_>,
    now: SystemTime,
    ids: &dyn Ids,
    scope: &InstrumentationScope,
) -> (SpanRef, SpanData) {
    let (mismatch, kind, start, end, links, status) = match event {
        MismatchEvent::Opened { mismatch, since, links } => (
            *mismatch,
            "opened",
            (*since).min(now),
            now,
            links,
            Status::error(format!("{}: {}", mismatch.direction, mismatch.diagnosis)),
        ),
        MismatchEvent::Resolved { mismatch, opened_at, open_for, links, .. } => {
            (*mismatch, "resolved", *opened_at, *opened_at + *open_for, links, Status::Unset)
        }
    };
    let mut attributes = vec![
        s("parallax.target", mismatch.target.to_string()),
        s("parallax.client_view", mismatch.client_view.to_string()),
        s("parallax.checker_view", mismatch.checker_view.to_string()),
        s("parallax.direction", mismatch.direction.as_str()),
        s("parallax.diagnosis", mismatch.diagnosis.as_str()),
        strings("parallax.flipped", mismatch.flipped.iter().map(|a| a.as_str().to_owned())),
        s("parallax.evidence", mismatch.evidence.clone()),
        s("parallax.mismatch.event", kind),
        s(
            "parallax.mismatch.basis",
            match mismatch.basis {
                crate::diff::Basis::Probes => "probes",
                crate::diff::Basis::Audit => "audit",
            },
        ),
    ];
    if let Some(code) = mismatch.client_error {
        attributes.push(s("parallax.client.error", code.as_str()));
    }
    if let Some(code) = mismatch.checker_error {
        attributes.push(s("parallax.checker.error", code.as_str()));
    }
    if let Some(addr) = mismatch.client_address {
        attributes.push(s("parallax.client.address", addr.to_string()));
    }
    if let Some(addr) = mismatch.checker_address {
        attributes.push(s("parallax.checker.address", addr.to_string()));
    }
    if let MismatchEvent::Resolved { resolution, open_for, .. } = event {
        attributes.push(s("parallax.mismatch.resolution", *resolution));
        attributes.push(KeyValue::new("parallax.mismatch.open_for_s", open_for.as_secs_f64()));
    }
    let links = links
        .iter()
        .zip(["client", "checker"])
        .filter_map(|(link, role)| {
            let link = (*link)?;
            Some(opentelemetry::trace::Link::new(
                context(link.trace_id, link.span_id),
                vec![s("parallax.role", role)],
                0,
            ))
        })
        .collect();
    let trace_id = ids.trace_id();
    let span_id = ids.span_id();
    let span = Draft {
        context: context(trace_id, span_id),
        parent: SpanId::INVALID,
        kind: SpanKind::Internal,
        name: "parallax.mismatch",
        start,
        end,
        attributes,
        links,
        status,
    }
    .finish(scope);
    (SpanRef { trace_id, span_id }, span)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::probe::{ErrorCode, Timings};
    use crate::testkit::{outcome_for, view};

    const MS: Duration = Duration::from_millis(1);

    fn layout(outcome: &Outcome) -> Vec<(&'static str, u128, u128, bool)> {
        let t0 = SystemTime::UNIX_EPOCH;
        let ms = |t: SystemTime| t.duration_since(t0).map(|d| d.as_millis()).unwrap_or(0);
        phases(&view("shop", "client"), outcome, t0)
            .into_iter()
            .map(|p| (p.phase.as_str(), ms(p.start), ms(p.end), p.failed))
            .collect()
    }

    #[test]
    fn a_success_lays_its_phases_end_to_end_and_the_exchange_takes_the_rest() {
        let mut o = outcome_for(&view("shop", "client"), true, None, Some(200));
        o.timings = Timings {
            dns: Some(2 * MS),
            connect: Some(3 * MS),
            tls: Some(5 * MS),
            ttfb: Some(4 * MS),
            total: 20 * MS,
        };
        assert_eq!(
            layout(&o),
            [("dns", 0, 2, false), ("connect", 2, 5, false), ("tls", 5, 10, false), ("http", 10, 20, false)]
        );
    }

    #[test]
    fn the_failed_phase_runs_to_the_end_and_later_phases_are_absent() {
        let mut o = outcome_for(&view("shop", "client"), false, Some(ErrorCode::TlsTimeout), None);
        o.timings =
            Timings { dns: Some(2 * MS), connect: Some(3 * MS), tls: None, ttfb: None, total: 30 * MS };
        assert_eq!(layout(&o), [("dns", 0, 2, false), ("connect", 2, 5, false), ("tls", 5, 30, true)]);

        // A phase that finished and still failed (DNS answered the wrong address).
        let mut o = outcome_for(&view("shop", "client"), false, Some(ErrorCode::DnsUnexpectedAddress), None);
        o.timings = Timings { dns: Some(4 * MS), total: 4 * MS, ..Timings::default() };
        assert_eq!(layout(&o), [("dns", 0, 4, true)]);
    }

    #[test]
    fn a_body_mismatch_is_judged_after_a_clean_exchange() {
        let mut o = outcome_for(&view("shop", "client"), false, Some(ErrorCode::BodyMismatch), Some(200));
        o.timings =
            Timings { connect: Some(MS), tls: Some(MS), ttfb: Some(MS), total: 5 * MS, ..Timings::default() };
        assert_eq!(layout(&o), [("connect", 0, 1, false), ("tls", 1, 2, false), ("http", 2, 5, false)]);

        let mut o = outcome_for(&view("shop", "client"), false, Some(ErrorCode::HttpStatus), Some(503));
        o.timings =
            Timings { connect: Some(MS), tls: Some(MS), ttfb: Some(MS), total: 5 * MS, ..Timings::default() };
        assert_eq!(layout(&o).last(), Some(&("http", 2, 5, true)));
    }

    #[test]
    fn a_redirect_carries_its_location_as_the_semconv_response_header() {
        let v = view("shop", "gcp");
        let mut o = outcome_for(&v, false, Some(ErrorCode::HttpStatus), Some(301));
        o.location = Some("https://shop.example.com/healthz".into());
        let report = ProbeReport {
            view: &v,
            outcome: &o,
            started: SystemTime::UNIX_EPOCH,
            lateness: MS,
            change: None,
            force: true,
        };
        let attributes = probe_attributes(&report, Sampling::Failure);
        let location = attributes.iter().find(|kv| kv.key.as_str() == "http.response.header.location");
        assert_eq!(
            location.map(|kv| kv.value.clone()),
            Some(Value::Array(Array::String(vec![StringValue::from("https://shop.example.com/healthz")])))
        );
        let plain = outcome_for(&v, false, Some(ErrorCode::HttpStatus), Some(503));
        let report = ProbeReport { outcome: &plain, ..report };
        let attributes = probe_attributes(&report, Sampling::Failure);
        assert!(attributes.iter().all(|kv| kv.key.as_str() != "http.response.header.location"));
    }

    #[test]
    fn tls_versions_follow_semconv() {
        assert_eq!(tls_version("TLSv1_3"), "1.3");
        assert_eq!(tls_version("TLSv1_2"), "1.2");
    }
}
