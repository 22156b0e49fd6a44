//! Exports (docs/exports.md) against a real in-process OTLP receiver (opentelemetry-proto tonic
//! services for gRPC, a hyper server for HTTP/protobuf): span names, attributes, parent/child
//! structure, links, resource, sampling; the collector stopped and restarted; `/metrics` text;
//! `forget_view`; events; shutdown; and a secret that appears nowhere.
//!
//! Outcomes come from real probes of in-process servers on 127.0.0.6x addresses.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use parallax::config::{ExportSettings, OtlpProtocol, OtlpSettings, Plan, View};
use parallax::diff::{Attribute, Basis, Diagnosis, Direction, Mismatch};
use parallax::export::{
    MismatchEvent, ProbeReport, ResourceInfo, Sink, SpanRef, Telemetry, TelemetryOptions,
};
use parallax::probe::{ErrorCode, Outcome};
use parallax::verdict::{Health, VerdictChange};
use tokio::time::Instant;

use support::certs::Ca;
use support::http::{router, HttpServer, Reply, TlsSite};
use support::otlp::{OtlpReceiver, ReceivedSpan, Scripted, Transport};
use support::probes::{probe_one, target, toml_str, view, ProbesDir};
use support::{lo, wait_for, ClosedPort};

/// The value of `${env:SHOP_TOKEN}`: in the client's `authorization` header and URL query.
const SECRET: &str = "s3cr3t-T0KEN-4711";
/// An `OTEL_EXPORTER_OTLP_HEADERS` value: a collector credential.
const COLLECTOR_KEY: &str = "c0llector-k3y-0815";
const WAIT: Duration = Duration::from_secs(15);

/// Event lines captured instead of stdout.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    fn lines(&self) -> Vec<serde_json::Value> {
        self.text().lines().map(|l| serde_json::from_str(l).expect("each event is one JSON line")).collect()
    }
}

/// A target `shop`: the client view over HTTPS (CA-verified, `shop.test`, secret header and
/// query) that succeeds; a checker view `nlb` on a refusing port that fails.
struct Shop {
    _server: HttpServer,
    _closed: ClosedPort,
    _dir: ProbesDir,
    plan: Plan,
    server_ip: std::net::IpAddr,
}

impl Shop {
    async fn start(n: u8) -> Shop {
        let ca = Ca::new("parallax test CA");
        let server =
            HttpServer::start_tls(
                lo(n),
                TlsSite::new(ca.leaf(&["shop.test"])),
                router(|seen| {
                    if seen.path.starts_with("/cart") {
                        Reply::ok("cart")
                    } else {
                        Reply::status(503, "no")
                    }
                }),
            )
            .await;
        let closed = ClosedPort::new(lo(n + 1));
        let mut dir = ProbesDir::new();
        dir.env("SHOP_TOKEN", SECRET);
        let ca_file = toml_str(&ca.write_pem(dir.path(), "ca.pem").display().to_string());
        let client = format!(
            "url = \"https://shop.test:{port}/cart?key=${{env:SHOP_TOKEN}}\"\nconnect_to = \"{addr}\"\nca_file = {ca_file}\n\
             headers = {{ authorization = \"Bearer ${{env:SHOP_TOKEN}}\" }}\nexpect = {{ status = [\"200-299\"], body_contains = \"cart\" }}",
            port = server.addr.port(),
            addr = server.addr,
        );
        let checker = format!("url = \"http://{}/healthz\"\ntimeout = \"1s\"", closed.addr);
        dir.file("shop.toml", &target("shop", &client, &[("nlb", &checker)]));
        let plan = dir.load();
        Shop { server_ip: server.addr.ip(), _server: server, _closed: closed, _dir: dir, plan }
    }

    fn client(&self) -> &View {
        view(&self.plan, "shop", "client")
    }

    fn checker(&self) -> &View {
        view(&self.plan, "shop", "nlb")
    }
}

fn settings(endpoint: &str, protocol: OtlpProtocol, ratio: f64) -> ExportSettings {
    ExportSettings {
        otlp: Some(OtlpSettings { endpoint: endpoint.to_owned(), protocol, success_sample_ratio: ratio }),
    }
}

fn env() -> HashMap<String, String> {
    HashMap::from([
        ("OTEL_RESOURCE_ATTRIBUTES".to_owned(), "deployment.environment=test".to_owned()),
        ("OTEL_EXPORTER_OTLP_HEADERS".to_owned(), format!("x-collector-key={COLLECTOR_KEY}")),
        // Would win if parallax read it: the environment must not pick up the secret.
        ("SHOP_TOKEN".to_owned(), SECRET.to_owned()),
    ])
}

fn resource() -> ResourceInfo {
    ResourceInfo {
        host_name: Some("test-host".to_owned()),
        node_name: Some("node-7".to_owned()),
        vantage: None,
    }
}

fn fast_options(events: &Captured) -> TelemetryOptions {
    TelemetryOptions {
        events: Box::new(events.clone()),
        batch_interval: Duration::from_millis(50),
        metrics_interval: Duration::from_millis(100),
        export_timeout: Duration::from_millis(500),
        export_retries: 1,
        retry_backoff: Duration::from_millis(20),
        ..TelemetryOptions::default()
    }
}

fn telemetry(settings: &ExportSettings, events: &Captured) -> Telemetry {
    Telemetry::with_options(settings, resource(), &env(), fast_options(events))
}

fn change(from: Option<Health>, to: Health) -> VerdictChange {
    VerdictChange { from, to, at: Instant::now(), held: None, streak: 1 }
}

/// The report of `outcome` of `view`, started now and on time.
fn report<'a>(
    view: &'a View,
    outcome: &'a Outcome,
    change: Option<&'a VerdictChange>,
    force: bool,
) -> ProbeReport<'a> {
    ProbeReport { view, outcome, started: SystemTime::now(), lateness: Duration::ZERO, change, force }
}

/// The value of the sample whose line starts with `series` (`name{labels}`), exemplar ignored.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `parallax_export_dropped_total` of `signal`, every reason; `None` when no series is there.
fn dropped(text: &str, signal: &str) -> Option<f64> {
    let reasons = ["queue_full", "retries_exhausted", "rejected", "shutdown"];
    let values: Vec<f64> = reasons
        .iter()
        .filter_map(|r| {
            sample(text, &format!("parallax_export_dropped_total{{signal=\"{signal}\",reason=\"{r}\"}}"))
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn spans_named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.span.name == name).collect()
}

async fn wait_spans(receiver: &OtlpReceiver, at_least: usize) -> Vec<ReceivedSpan> {
    wait_for(WAIT, || {
        let spans = receiver.spans();
        (spans.len() >= at_least).then_some(spans)
    })
    .await
    .unwrap_or_else(|| panic!("expected {at_least} spans, got {:#?}", receiver.spans()))
}

/// OTLP span status code: 2 is ERROR.
const STATUS_ERROR: i32 = 2;
/// OTLP span kind: 3 is CLIENT, 1 INTERNAL.
const KIND_CLIENT: i32 = 3;
const KIND_INTERNAL: i32 = 1;

#[tokio::test]
async fn grpc_probe_spans_carry_semconv_attributes_phases_and_the_resource() {
    let shop = Shop::start(61).await;
    let receiver = OtlpReceiver::start(lo(63)).await;
    let events = Captured::default();
    // Ratio 0: plain successes are not exported; failures and forced ones are.
    let t = telemetry(&settings(&receiver.endpoint(), OtlpProtocol::Grpc, 0.0), &events);
    assert!(t.exports_traces());

    let client = probe_one(shop.client()).await;
    assert!(client.ok, "client probe must succeed: {client:#?}");
    let started = SystemTime::now() - client.timings.total;
    assert_eq!(
        t.probe(&ProbeReport {
            started,
            lateness: Duration::from_millis(3),
            ..report(shop.client(), &client, None, false)
        }),
        None
    );
    let forced = t
        .probe(&ProbeReport {
            started,
            lateness: Duration::from_millis(3),
            ..report(shop.client(), &client, None, true)
        })
        .expect("forced");
    let checker = probe_one(shop.checker()).await;
    assert_eq!(checker.error, Some(ErrorCode::ConnectRefused));
    let failed = t.probe(&report(shop.checker(), &checker, None, false)).expect("failure");

    let spans = wait_spans(&receiver, 6).await;
    assert!(receiver.trace_requests().iter().all(|r| r.transport == Transport::Grpc));
    let roots = spans_named(&spans, "parallax.probe");
    assert_eq!(roots.len(), 2, "the unforced success is not exported: {roots:#?}");

    let root = roots.iter().find(|s| s.span_id() == forced.span_id_hex()).expect("the forced probe's span");
    assert_eq!(root.trace_id(), forced.trace_id_hex());
    assert_eq!(root.span.kind, KIND_CLIENT);
    assert!(root.span.parent_span_id.is_empty());
    let a = |k: &str| root.attr(k);
    assert_eq!(a("parallax.target").as_deref(), Some("shop"));
    assert_eq!(a("parallax.view").as_deref(), Some("client"));
    assert_eq!(a("parallax.role").as_deref(), Some("client"));
    assert_eq!(a("http.request.method").as_deref(), Some("GET"));
    let url = a("url.full").expect("url.full");
    assert!(url.starts_with("https://shop.test:") && url.contains("key=<redacted>"), "{url}");
    assert_eq!(a("server.address").as_deref(), Some("shop.test"));
    assert_eq!(a("server.port"), Some(shop.client().url_endpoint.port.to_string()));
    assert_eq!(a("http.response.status_code").as_deref(), Some("200"));
    assert_eq!(a("network.peer.address"), Some(shop.server_ip.to_string()));
    assert!(a("network.local.address").is_some_and(|ip| ip.starts_with("127.")));
    assert_eq!(a("tls.protocol.version").as_deref(), Some("1.3"));
    assert!(a("tls.server.not_after").is_some_and(|t| t.contains('T')));
    assert_eq!(a("parallax.tls.sni").as_deref(), Some("shop.test"));
    assert!(a("user_agent.original").is_some_and(|ua| !ua.is_empty()));
    assert_eq!(a("parallax.sampling").as_deref(), Some("forced"));
    assert_eq!(a("error.type"), None);
    assert_ne!(root.span.status.as_ref().map_or(0, |s| s.code), STATUS_ERROR);

    // Resource: ours plus OTEL_RESOURCE_ATTRIBUTES.
    assert_eq!(root.resource_attr("service.name"), Some("parallax"));
    assert_eq!(root.resource_attr("service.version"), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(root.resource_attr("host.name"), Some("test-host"));
    assert_eq!(root.resource_attr("k8s.node.name"), Some("node-7"));
    assert_eq!(root.resource_attr("deployment.environment"), Some("test"));

    // Children: one per phase that ran, in one trace under the probe span, inside its time.
    let children: Vec<&ReceivedSpan> =
        spans.iter().filter(|s| s.span.parent_span_id == root.span.span_id).collect();
    let mut names: Vec<&str> = children.iter().map(|s| s.span.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["connect", "http", "tls"], "connect_to dials an IP: no DNS phase");
    for c in &children {
        assert_eq!(c.span.trace_id, root.span.trace_id);
        assert_eq!(c.span.kind, KIND_INTERNAL);
        assert!(c.span.start_time_unix_nano >= root.span.start_time_unix_nano);
        assert!(c.span.end_time_unix_nano <= root.span.end_time_unix_nano);
    }
    let connect = children.iter().find(|c| c.span.name == "connect").expect("connect");
    let tls = children.iter().find(|c| c.span.name == "tls").expect("tls");
    assert!(tls.span.start_time_unix_nano >= connect.span.end_time_unix_nano, "phases are laid end to end");

    // The failure: status Error, error.type the stable code, the failed phase as an error child.
    let froot = roots.iter().find(|s| s.span_id() == failed.span_id_hex()).expect("failed probe's span");
    assert_eq!(froot.attr("error.type").as_deref(), Some("connect_refused"));
    assert_eq!(froot.attr("parallax.profile"), None);
    assert_eq!(froot.attr("parallax.role").as_deref(), Some("checker"));
    assert_eq!(froot.attr("parallax.sampling").as_deref(), Some("failure"));
    assert_eq!(froot.span.status.as_ref().map(|s| s.code), Some(STATUS_ERROR));
    let fchild: Vec<&ReceivedSpan> =
        spans.iter().filter(|s| s.span.parent_span_id == froot.span.span_id).collect();
    assert_eq!(fchild.len(), 1, "{fchild:#?}");
    assert_eq!(fchild[0].span.name, "connect");
    assert_eq!(fchild[0].span.status.as_ref().map(|s| s.code), Some(STATUS_ERROR));

    // The collector credential went as gRPC metadata.
    assert!(receiver
        .trace_requests()
        .iter()
        .all(|r| r.headers.iter().any(|(k, v)| k == "x-collector-key" && v == COLLECTOR_KEY)));
    t.shutdown(Duration::from_secs(5)).await;
}

fn mismatch(direction: Direction) -> Mismatch {
    Mismatch {
        target: "shop".into(),
        target_id: "shop".into(),
        client_view: "client".into(),
        checker_view: "nlb".into(),
        direction,
        diagnosis: Diagnosis::CheckerProtocolMismatch,
        flipped: vec![Attribute::Tls],
        evidence: "checker got connect_refused; with tls on it succeeds".to_owned(),
        causes: Vec::new(),
        basis: Basis::Probes,
        client_address: None,
        checker_address: None,
        client_error: None,
        checker_error: Some(ErrorCode::ConnectRefused),
        attribution: None,
    }
}

/// Probes both views of the shop and exports them (client forced, checker failing).
async fn probe_both(t: &Telemetry, shop: &Shop) -> (Outcome, SpanRef, Outcome, SpanRef) {
    let client = probe_one(shop.client()).await;
    let checker = probe_one(shop.checker()).await;
    let up = change(None, Health::Healthy);
    let down = change(None, Health::Unhealthy);
    let c = t.probe(&report(shop.client(), &client, Some(&up), false)).expect("changed");
    let k = t.probe(&report(shop.checker(), &checker, Some(&down), false)).expect("failed");
    (client, c, checker, k)
}

#[tokio::test]
async fn http_protobuf_mismatch_spans_link_the_probe_spans_and_events_follow() {
    let shop = Shop::start(64).await;
    let receiver = OtlpReceiver::start(lo(66)).await;
    let events = Captured::default();
    let t = telemetry(&settings(&receiver.endpoint(), OtlpProtocol::HttpProtobuf, 0.0), &events);
    let (_, c, _, k) = probe_both(&t, &shop).await;

    let m = mismatch(Direction::FalseDrain);
    let since = SystemTime::now() - Duration::from_secs(3);
    t.mismatch(MismatchEvent::Opened { mismatch: &m, since, links: [Some(c), Some(k)] });
    let text = t.encode_metrics();
    assert!(
        text.contains("# TYPE parallax_mismatch gauge")
            && text.contains("# TYPE parallax_mismatch_seconds counter")
    );
    let series = "parallax_mismatch{target=\"shop\",target_id=\"shop\",client_view=\"client\",checker_view=\"nlb\",direction=\"false_drain\",diagnosis=\"checker_protocol_mismatch\"}";
    assert_eq!(sample(&text, series), Some(1.0), "{text}");
    tokio::time::sleep(Duration::from_millis(30)).await;
    t.mismatch(MismatchEvent::Resolved {
        mismatch: &m,
        opened_at: since,
        open_for: Duration::from_secs(3),
        resolution: "agreed",
        links: [Some(c), None],
    });

    let spans = wait_for(WAIT, || {
        let spans = receiver.spans();
        (spans_named(&spans, "parallax.mismatch").len() == 2).then_some(spans)
    })
    .await
    .expect("both mismatch spans arrive");
    assert!(receiver.trace_requests().iter().all(|r| r.transport == Transport::Http));
    assert!(receiver
        .trace_requests()
        .iter()
        .all(|r| r.headers.iter().any(|(k, v)| k == "x-collector-key" && v == COLLECTOR_KEY)));
    let ms = spans_named(&spans, "parallax.mismatch");
    assert_eq!(ms.len(), 2);
    let opened =
        ms.iter().find(|s| s.attr("parallax.mismatch.event").as_deref() == Some("opened")).expect("opened");
    assert_eq!(opened.attr("parallax.direction").as_deref(), Some("false_drain"));
    assert_eq!(opened.attr("parallax.diagnosis").as_deref(), Some("checker_protocol_mismatch"));
    assert_eq!(opened.attr("parallax.flipped").as_deref(), Some("tls"));
    assert_eq!(opened.attr("parallax.evidence").as_deref(), Some(m.evidence.as_str()));
    assert_eq!(opened.span.status.as_ref().map(|s| s.code), Some(STATUS_ERROR));
    let linked: Vec<(String, String)> = opened
        .span
        .links
        .iter()
        .map(|l| (support::otlp::hex(&l.trace_id), support::otlp::hex(&l.span_id)))
        .collect();
    assert_eq!(linked, [(c.trace_id_hex(), c.span_id_hex()), (k.trace_id_hex(), k.span_id_hex())]);
    assert_eq!(
        support::otlp::attr(&opened.span.links[1].attributes, "parallax.role").as_deref(),
        Some("checker")
    );
    // The linked spans are the exported probe spans.
    for (trace, span) in &linked {
        assert!(spans
            .iter()
            .any(|s| &s.trace_id() == trace && &s.span_id() == span && s.span.name == "parallax.probe"));
    }
    let resolved = ms
        .iter()
        .find(|s| s.attr("parallax.mismatch.event").as_deref() == Some("resolved"))
        .expect("resolved");
    assert_eq!(resolved.attr("parallax.mismatch.resolution").as_deref(), Some("agreed"));
    assert_eq!(resolved.span.links.len(), 1);

    // Metrics: the gauge went away on resolve; the time was counted.
    let text = t.encode_metrics();
    assert_eq!(sample(&text, series), None, "{text}");
    let seconds = sample(&text, &series.replace("parallax_mismatch{", "parallax_mismatch_seconds_total{"))
        .expect("seconds");
    assert!(seconds > 0.0 && seconds < 5.0, "{seconds}");

    // Events: two verdict changes, then opened and resolved.
    t.shutdown(Duration::from_secs(5)).await;
    let lines = events.lines();
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(
        kinds,
        ["verdict_change", "verdict_change", "mismatch_opened", "mismatch_resolved"],
        "{lines:#?}"
    );
    assert_eq!(lines[0]["target"], "shop");
    assert_eq!(lines[0]["view"], "client");
    assert_eq!(lines[0]["from"], serde_json::Value::Null);
    assert_eq!(lines[0]["to"], "healthy");
    assert_eq!(lines[0]["trace_id"], c.trace_id_hex().as_str());
    assert_eq!(lines[1]["to"], "unhealthy");
    assert_eq!(lines[1]["error"], "connect_refused");
    assert_eq!(lines[2]["client_view"], "client");
    assert_eq!(lines[2]["checker_view"], "nlb");
    assert_eq!(lines[2]["direction"], "false_drain");
    assert_eq!(lines[2]["diagnosis"], "checker_protocol_mismatch");
    assert_eq!(lines[2]["flipped"], serde_json::json!(["tls"]));
    assert!(lines[2]["since"].as_str().is_some_and(|s| s.ends_with('Z') && s.contains('T')));
    assert_eq!(lines[3]["resolution"], "agreed");
    assert_eq!(lines[3]["open_for_s"], 3.0);
    // Metrics over OTLP/HTTP too.
    let names = receiver.metric_names();
    for family in [
        "parallax_probe_total",
        "parallax_probe_duration_seconds",
        "parallax_view_up",
        "parallax_mismatch_seconds_total",
    ] {
        assert!(names.iter().any(|n| n == family), "{family} not in {names:?}");
    }
    assert!(receiver.metric_requests().iter().all(|r| r.transport == Transport::Http));
}

#[tokio::test]
async fn metrics_text_has_every_family_bounded_labels_and_exemplars_of_exported_spans() {
    let shop = Shop::start(67).await;
    let receiver = OtlpReceiver::start(lo(69)).await;
    let events = Captured::default();
    let t = telemetry(&settings(&receiver.endpoint(), OtlpProtocol::Grpc, 0.0), &events);
    let (_, _, _, k) = probe_both(&t, &shop).await;
    t.skipped(shop.checker());
    t.reload(false);
    t.reload(true);

    let text = t.encode_metrics();
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
    for family in [
        "# TYPE parallax_probe counter",
        "# TYPE parallax_probe_duration_seconds histogram",
        "# TYPE parallax_view_up gauge",
        "# TYPE parallax_tls_cert_not_after_seconds gauge",
        "# TYPE parallax_scheduler_lateness_seconds histogram",
        "# TYPE parallax_probe_skipped counter",
        "# TYPE parallax_export_dropped counter",
        "# TYPE parallax_export_failures counter",
        "# TYPE parallax_reload counter",
        "# TYPE parallax_config_last_reload_success_timestamp_seconds gauge",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    assert_eq!(
        sample(&text, "parallax_probe_total{target=\"shop\",target_id=\"shop\",view=\"client\",role=\"client\",result=\"success\",error=\"\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "parallax_probe_total{target=\"shop\",target_id=\"shop\",view=\"nlb\",role=\"checker\",result=\"failure\",error=\"connect_refused\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "parallax_view_up{target=\"shop\",target_id=\"shop\",view=\"client\",role=\"client\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "parallax_view_up{target=\"shop\",target_id=\"shop\",view=\"nlb\",role=\"checker\"}"),
        Some(0.0)
    );
    let not_after = sample(
        &text,
        "parallax_tls_cert_not_after_seconds{target=\"shop\",target_id=\"shop\",view=\"client\"}",
    )
    .expect("cert");
    let now =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    assert!(not_after > now, "the test leaf is valid now");
    assert_eq!(
        sample(&text, "parallax_probe_skipped_total{target=\"shop\",target_id=\"shop\",view=\"nlb\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "parallax_reload_total{result=\"success\"}"), Some(1.0));
    assert_eq!(sample(&text, "parallax_reload_total{result=\"failure\"}"), Some(1.0));
    assert!(sample(&text, "parallax_config_last_reload_success_timestamp_seconds")
        .is_some_and(|t| (t - now).abs() < 60.0));
    assert_eq!(sample(&text, "parallax_scheduler_lateness_seconds_count"), Some(2.0));
    assert_eq!(dropped(&text, "traces"), Some(0.0));
    assert_eq!(
        sample(&text, "parallax_export_dropped_total{signal=\"traces\",reason=\"queue_full\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "parallax_probe_duration_seconds_count{target=\"shop\",target_id=\"shop\",view=\"nlb\",phase=\"total\"}"),
        Some(1.0)
    );

    // Exemplars carry the trace id of the exported span.
    let exemplar = format!("trace_id=\"{}\",span_id=\"{}\"", k.trace_id_hex(), k.span_id_hex());
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("parallax_probe_duration_seconds_bucket{")
                && l.contains("target=\"shop\",target_id=\"shop\",view=\"nlb\",phase=\"total\"}")
                && l.contains(&exemplar)
        })
        .unwrap_or_else(|| panic!("no exemplar {exemplar} in:\n{text}"));
    assert!(line.contains(" # {"), "{line}");
    let spans = wait_spans(&receiver, 1).await;
    assert!(spans.iter().any(|s| s.trace_id() == k.trace_id_hex() && s.span.name == "parallax.probe"));

    // Bounded labels: no address, no URL in any series.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let series = l.split(" # ").next().unwrap_or(l);
        assert!(
            !series.contains("127.0.0.") && !series.contains("://") && !series.contains("shop.test"),
            "{l}"
        );
    }
    t.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn forget_view_removes_every_series_of_the_view_and_keeps_the_others() {
    let shop = Shop::start(70).await;
    let events = Captured::default();
    // No OTLP: /metrics still works.
    let t = Telemetry::with_options(
        &ExportSettings { otlp: None },
        resource(),
        &HashMap::new(),
        fast_options(&events),
    );
    assert!(!t.exports_traces());
    let client = probe_one(shop.client()).await;
    let checker = probe_one(shop.checker()).await;
    assert_eq!(t.probe(&report(shop.client(), &client, Some(&change(None, Health::Healthy)), true)), None);
    t.probe(&report(shop.checker(), &checker, Some(&change(None, Health::Unhealthy)), false));
    t.skipped(shop.checker());
    let m = mismatch(Direction::FalseDrain);
    t.mismatch(MismatchEvent::Opened { mismatch: &m, since: SystemTime::now(), links: [None, None] });
    let before = t.encode_metrics();
    assert!(before.contains("view=\"nlb\""));
    assert!(before.contains("checker_view=\"nlb\""));

    t.forget_view(shop.checker());
    let after = t.encode_metrics();
    assert!(!after.contains("view=\"nlb\""), "nlb series left:\n{after}");
    assert!(!after.contains("checker_view=\"nlb\""), "mismatch series left:\n{after}");
    assert_eq!(
        sample(&after, "parallax_probe_total{target=\"shop\",target_id=\"shop\",view=\"client\",role=\"client\",result=\"success\",error=\"\"}"),
        Some(1.0)
    );
    assert!(after
        .contains("parallax_tls_cert_not_after_seconds{target=\"shop\",target_id=\"shop\",view=\"client\"}"));
    assert_eq!(
        sample(
            &after,
            "parallax_view_up{target=\"shop\",target_id=\"shop\",view=\"client\",role=\"client\"}"
        ),
        Some(1.0)
    );
    t.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn collector_down_drops_and_counts_without_blocking_and_export_resumes_when_it_returns() {
    let shop = Shop::start(72).await;
    let receiver = OtlpReceiver::start(lo(74)).await;
    let addr = receiver.addr;
    let events = Captured::default();
    let options = TelemetryOptions { span_queue: 4, max_batch: 8, ..fast_options(&events) };
    let t = Telemetry::with_options(
        &settings(&receiver.endpoint(), OtlpProtocol::Grpc, 1.0),
        resource(),
        &env(),
        options,
    );
    let checker = probe_one(shop.checker()).await;
    let first = t.probe(&report(shop.checker(), &checker, None, false)).expect("exported");
    wait_for(WAIT, || receiver.spans().iter().any(|s| s.trace_id() == first.trace_id_hex()).then_some(()))
        .await
        .expect("the first span arrives");

    drop(receiver);
    // The collector is gone: probing goes on at full speed, the queue overflows and counts.
    let start = Instant::now();
    for _ in 0..200 {
        t.probe(&report(shop.checker(), &checker, None, false));
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "probing waited for the exporter: {:?}",
        start.elapsed()
    );
    let failures = wait_for(WAIT, || {
        let text = t.encode_metrics();
        let dropped = dropped(&text, "traces")?;
        let failed = sample(&text, "parallax_export_failures_total{signal=\"traces\"}")?;
        (dropped >= 100.0 && failed >= 1.0).then_some((dropped, failed))
    })
    .await;
    assert!(failures.is_some(), "drops and failures counted:\n{}", t.encode_metrics());

    // Back on the same address: new spans arrive.
    let receiver = OtlpReceiver::start_on(addr).await;
    let resumed = wait_for(WAIT, || {
        let span = t.probe(&report(shop.checker(), &checker, None, false));
        let got = receiver.spans();
        span.and_then(|_| (!got.is_empty()).then_some(got.len()))
    })
    .await;
    assert!(resumed.is_some(), "export resumed after the collector came back");
    // Metrics resume too.
    wait_for(WAIT, || (!receiver.metric_names().is_empty()).then_some(())).await.expect("metrics resume");
    t.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_slow_collector_never_blocks_probing_and_timed_out_exports_are_counted() {
    let shop = Shop::start(84).await;
    let receiver = OtlpReceiver::start_slow(lo(86), Duration::from_secs(5)).await;
    let events = Captured::default();
    let options = TelemetryOptions {
        span_queue: 4,
        max_batch: 8,
        export_timeout: Duration::from_millis(200),
        export_retries: 0,
        ..fast_options(&events)
    };
    let t = Telemetry::with_options(
        &settings(&receiver.endpoint(), OtlpProtocol::HttpProtobuf, 1.0),
        resource(),
        &env(),
        options,
    );
    let checker = probe_one(shop.checker()).await;
    let start = Instant::now();
    for _ in 0..100 {
        t.probe(&report(shop.checker(), &checker, None, false));
        tokio::task::yield_now().await;
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "probing waited for the exporter: {:?}",
        start.elapsed()
    );
    let counted = wait_for(WAIT, || {
        let text = t.encode_metrics();
        let dropped = dropped(&text, "traces")?;
        let failed = sample(&text, "parallax_export_failures_total{signal=\"traces\"}")?;
        (dropped >= 50.0 && failed >= 1.0).then_some(())
    })
    .await;
    assert!(counted.is_some(), "timeouts and drops counted:\n{}", t.encode_metrics());
    // Shutdown is bounded by its deadline even though the collector never answers in time.
    let start = Instant::now();
    t.shutdown(Duration::from_millis(500)).await;
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
}

#[tokio::test]
async fn shutdown_flushes_queued_spans_metrics_and_events() {
    let shop = Shop::start(75).await;
    let receiver = OtlpReceiver::start(lo(77)).await;
    let events = Captured::default();
    // Nothing would leave on its own for a minute.
    let options = TelemetryOptions {
        batch_interval: Duration::from_secs(60),
        metrics_interval: Duration::from_secs(60),
        ..fast_options(&events)
    };
    let t = Telemetry::with_options(
        &settings(&receiver.endpoint(), OtlpProtocol::Grpc, 1.0),
        resource(),
        &env(),
        options,
    );
    let checker = probe_one(shop.checker()).await;
    let span = t
        .probe(&report(shop.checker(), &checker, Some(&change(None, Health::Unhealthy)), false))
        .expect("exported");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(receiver.spans().is_empty(), "nothing exported before the batch interval");

    let start = Instant::now();
    t.shutdown(Duration::from_secs(5)).await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(receiver.spans().iter().any(|s| s.trace_id() == span.trace_id_hex()), "span flushed on shutdown");
    assert!(
        receiver.metric_names().iter().any(|n| n == "parallax_probe_total"),
        "metrics pushed on shutdown"
    );
    assert_eq!(events.lines().len(), 1, "event flushed on shutdown");
    // A second shutdown is harmless and quick.
    t.shutdown(Duration::from_secs(1)).await;
}

/// A sink that never returns from `write` until told to (a blocked stdout pipe).
struct Stuck(Arc<Mutex<bool>>);

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for _ in 0..1000 {
            if *self.0.lock().unwrap_or_else(PoisonError::into_inner) {
                return Ok(buf.len());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(std::io::Error::other("still stuck"))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_blocked_event_output_never_blocks_probing_and_drops_are_counted() {
    let shop = Shop::start(78).await;
    let release = Arc::new(Mutex::new(false));
    let options = TelemetryOptions {
        events: Box::new(Stuck(release.clone())),
        event_queue: 2,
        ..TelemetryOptions::default()
    };
    let t = Telemetry::with_options(&ExportSettings { otlp: None }, resource(), &HashMap::new(), options);
    let checker = probe_one(shop.checker()).await;
    let start = Instant::now();
    for _ in 0..20 {
        t.probe(&report(shop.checker(), &checker, Some(&change(None, Health::Unhealthy)), false));
    }
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    let dropped =
        sample(&t.encode_metrics(), "parallax_export_dropped_total{signal=\"events\",reason=\"queue_full\"}")
            .unwrap_or(0.0);
    assert!(dropped >= 17.0, "at most the queue plus the line being written get through: {dropped}");
    *release.lock().unwrap_or_else(PoisonError::into_inner) = true;
    t.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_env_secret_appears_in_no_span_metric_or_event() {
    let shop = Shop::start(80).await;
    let receiver = OtlpReceiver::start(lo(82)).await;
    let events = Captured::default();
    let t = telemetry(&settings(&receiver.endpoint(), OtlpProtocol::Grpc, 1.0), &events);
    // The secret really went on the wire (so the test would notice a leak).
    assert!(shop.client().http.headers.iter().any(|(_, v)| v.expose().contains(SECRET)));
    assert!(shop.client().path.contains(SECRET));
    let (_, c, _, k) = probe_both(&t, &shop).await;
    let m = mismatch(Direction::Blackhole);
    t.mismatch(MismatchEvent::Opened { mismatch: &m, since: SystemTime::now(), links: [Some(c), Some(k)] });
    t.mismatch(MismatchEvent::Resolved {
        mismatch: &m,
        opened_at: SystemTime::now(),
        open_for: Duration::from_millis(5),
        resolution: "agreed",
        links: [Some(c), Some(k)],
    });
    wait_spans(&receiver, 4).await;
    t.shutdown(Duration::from_secs(5)).await;

    let spans = receiver.dump();
    assert!(spans.contains("key=<redacted>"), "the redacted URL is exported");
    assert!(!spans.contains(SECRET), "secret in spans");
    let metrics = t.encode_metrics();
    assert!(!metrics.contains(SECRET), "secret in /metrics");
    let lines = events.text();
    assert!(lines.lines().count() >= 4);
    assert!(!lines.contains(SECRET), "secret in events");
    // The collector credential reaches the collector only.
    assert!(!lines.contains(COLLECTOR_KEY) && !metrics.contains(COLLECTOR_KEY));
    assert!(!format!("{t:?}").contains(COLLECTOR_KEY));
}

#[tokio::test]
async fn a_redirect_span_carries_its_location_redacted_as_the_semconv_response_header() {
    let app = HttpServer::start(
        lo(124),
        router(|_| {
            Reply::status(301, "").header("location", "https://ops:pw-77c1@shop.test/cart?token=tk-5e")
        }),
    )
    .await;
    let receiver = OtlpReceiver::start(lo(125)).await;
    let events = Captured::default();
    let t = telemetry(&settings(&receiver.endpoint(), OtlpProtocol::Grpc, 0.0), &events);
    let dir = ProbesDir::new();
    let checker = format!("profile = \"gcp\"\nurl = \"http://{}/healthz\"", app.addr);
    dir.file("shop.toml", &target("shop", &format!("url = \"http://{}/\"", app.addr), &[("gcp", &checker)]));
    let plan = dir.load();
    let gcp = view(&plan, "shop", "gcp");
    let outcome = probe_one(gcp).await;
    assert_eq!((outcome.ok, outcome.status), (false, Some(301)), "{outcome:#?}");
    let shown = "https://ops:<redacted>@shop.test/cart?token=<redacted>";
    assert_eq!(outcome.location.as_deref(), Some(shown));
    let span = t.probe(&report(gcp, &outcome, None, false)).expect("a failure is exported");

    let spans = wait_spans(&receiver, 1).await;
    let root = spans_named(&spans, "parallax.probe")
        .into_iter()
        .find(|s| s.span_id() == span.span_id_hex())
        .expect("the probe span");
    assert_eq!(root.attr("http.response.status_code").as_deref(), Some("301"));
    assert_eq!(root.attr("http.response.header.location").as_deref(), Some(shown));
    let events = events.text();
    for secret in ["pw-77c1", "tk-5e"] {
        assert!(spans.iter().all(|s| !format!("{:?}", s.span).contains(secret)), "{secret} in a span");
        assert!(!events.contains(secret), "{secret} in an event");
    }
    t.shutdown(Duration::from_secs(5)).await;
}

/// Issue 18, finding 2: `url.full` showed `http://user:password@host/..` in clear, over both
/// protocols. The probe sends the user info (as `Authorization: Basic`); no span carries the
/// password.
#[tokio::test]
async fn url_user_info_is_redacted_in_otlp_url_full_over_grpc_and_http_protobuf() {
    const PASSWORD: &str = "pw-otlp-userinfo-93b";
    let app = HttpServer::start(lo(134), router(|_| Reply::status(503, "down"))).await;
    let dir = ProbesDir::new();
    let client = format!("url = \"http://ops:{PASSWORD}@{}/cart\"", app.addr);
    let checker = format!("url = \"http://{}/healthz\"", app.addr);
    dir.file("shop.toml", &target("shop", &client, &[("nlb", &checker)]));
    let plan = dir.load();
    let client = view(&plan, "shop", "client");
    let shown = format!("http://ops:<redacted>@{}/cart", app.addr);
    assert_eq!(client.url_display, shown);
    for (n, protocol) in [(135, OtlpProtocol::Grpc), (136, OtlpProtocol::HttpProtobuf)] {
        let receiver = OtlpReceiver::start(lo(n)).await;
        let t = telemetry(&settings(&receiver.endpoint(), protocol, 1.0), &Captured::default());
        let outcome = probe_one(client).await;
        assert_eq!(outcome.status, Some(503), "{outcome:#?}");
        let span = t.probe(&report(client, &outcome, None, false)).expect("a failure is exported");
        let spans = wait_spans(&receiver, 1).await;
        let root = spans_named(&spans, "parallax.probe")
            .into_iter()
            .find(|s| s.span_id() == span.span_id_hex())
            .expect("the probe span");
        assert_eq!(root.attr("url.full").as_deref(), Some(shown.as_str()), "{protocol:?}");
        assert!(!receiver.dump().contains(PASSWORD), "the password reached the collector over {protocol:?}");
        t.shutdown(Duration::from_secs(5)).await;
    }
}

/// Log lines of a test, captured from `tracing` (the test runs on one thread, so does every task
/// it spawns).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures this thread's logs, INFO and up (the daemon's lines at their levels).
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// Lines holding `needle`.
    fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text().lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
    }
}

/// Options for the retry tests: many retries, a short base backoff (so that a pause of
/// seconds can only be the collector's `Retry-After`), no metric push until shutdown.
fn retry_options(events: &Captured) -> TelemetryOptions {
    TelemetryOptions {
        export_retries: 4,
        retry_backoff: Duration::from_millis(20),
        metrics_interval: Duration::from_secs(600),
        ..fast_options(events)
    }
}

/// Issue 18, finding 14: a collector's 429 and 503 with `Retry-After` were ignored (3.8
/// requests a second went on), and a failing export logged nothing at the default level. Now
/// no request goes before the `Retry-After` has passed, the batch is retried and delivered
/// (nothing dropped), and the log has one WARN when exports start failing and one INFO when
/// they recover, with no collector credential in either.
#[tokio::test]
async fn otlp_retry_after_on_429_and_503_is_honoured_and_state_changes_are_logged_once() {
    let (logs, _guard) = Logs::capture();
    let shop = Shop::start(140).await;
    let receiver = OtlpReceiver::start_scripted(
        lo(142),
        vec![Scripted::Http(429, Some("2".to_owned())), Scripted::Http(503, Some("2".to_owned()))],
    )
    .await;
    let events = Captured::default();
    let t = Telemetry::with_options(
        &settings(&receiver.endpoint(), OtlpProtocol::HttpProtobuf, 1.0),
        resource(),
        &env(),
        retry_options(&events),
    );
    let checker = probe_one(shop.checker()).await;
    let span = t.probe(&report(shop.checker(), &checker, None, false)).expect("a failure is exported");
    let spans = wait_spans(&receiver, 1).await;
    assert!(spans.iter().any(|s| s.trace_id() == span.trace_id_hex()), "the throttled batch is delivered");

    let arrivals = receiver.trace_arrivals();
    let answered: Vec<i32> = arrivals.iter().map(|a| a.answered).collect();
    assert_eq!(answered, [429, 503, 200], "one batch, retried after each throttle: {arrivals:?}");
    for pair in arrivals.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= Duration::from_secs(2), "a request {gap:?} after a Retry-After: 2: {arrivals:?}");
    }
    let text = t.encode_metrics();
    assert_eq!(dropped(&text, "traces"), Some(0.0), "nothing dropped:\n{text}");
    assert_eq!(sample(&text, "parallax_export_failures_total{signal=\"traces\"}"), Some(2.0));

    let failing = logs.lines_with("OTLP traces export failing");
    assert_eq!(failing.len(), 1, "one failure line:\n{}", logs.text());
    assert!(
        failing[0].contains("WARN") && failing[0].contains("HTTP 429 (Retry-After 2s)"),
        "{}",
        failing[0]
    );
    let recovered = logs.lines_with("OTLP traces export recovered");
    assert_eq!(recovered.len(), 1, "one recovery line:\n{}", logs.text());
    assert!(
        recovered[0].contains("INFO") && recovered[0].contains("0 exports and 0 spans dropped"),
        "{}",
        recovered[0]
    );
    t.shutdown(Duration::from_secs(5)).await;
    assert!(!logs.text().contains(COLLECTOR_KEY), "the collector credential is not logged");
}

/// Issue 18, finding 14 (the OTLP spec's other half): a non-retryable answer (HTTP 400, gRPC
/// INVALID_ARGUMENT) was retried like any failure. Now it is sent once, dropped and counted
/// as `rejected`; a retryable gRPC UNAVAILABLE is retried with backoff and delivered; both
/// protocols log one failure line and one recovery line that counts what was dropped.
#[tokio::test]
async fn otlp_non_retryable_answers_are_dropped_once_as_rejected_and_unavailable_is_retried() {
    let (logs, _guard) = Logs::capture();
    let shop = Shop::start(143).await;
    let checker = probe_one(shop.checker()).await;
    let cases = [
        (145, OtlpProtocol::HttpProtobuf, Scripted::Http(400, None), Scripted::Http(502, None), 400, 502),
        (
            146,
            OtlpProtocol::Grpc,
            Scripted::Grpc(tonic::Code::InvalidArgument),
            Scripted::Grpc(tonic::Code::Unavailable),
            tonic::Code::InvalidArgument as i32,
            tonic::Code::Unavailable as i32,
        ),
    ];
    for (n, protocol, refused, unavailable, refused_code, unavailable_code) in cases {
        let receiver = OtlpReceiver::start_scripted(lo(n), vec![refused, unavailable]).await;
        let events = Captured::default();
        let t = Telemetry::with_options(
            &settings(&receiver.endpoint(), protocol, 1.0),
            resource(),
            &env(),
            retry_options(&events),
        );
        let first = t.probe(&report(shop.checker(), &checker, None, false)).expect("exported");
        let counted = wait_for(WAIT, || {
            let text = t.encode_metrics();
            let series = "parallax_export_dropped_total{signal=\"traces\",reason=\"rejected\"}";
            (sample(&text, series)? >= 1.0).then_some(())
        })
        .await;
        assert!(counted.is_some(), "{protocol:?}: the refused batch is counted:\n{}", t.encode_metrics());
        let second = t.probe(&report(shop.checker(), &checker, None, false)).expect("exported");
        let spans = wait_spans(&receiver, 1).await;
        assert!(spans.iter().any(|s| s.trace_id() == second.trace_id_hex()), "{protocol:?}");
        assert!(spans.iter().all(|s| s.trace_id() != first.trace_id_hex()), "{protocol:?}");
        let answered: Vec<i32> = receiver.trace_arrivals().iter().map(|a| a.answered).collect();
        let accepted = if protocol == OtlpProtocol::Grpc { 0 } else { 200 };
        assert_eq!(
            answered,
            [refused_code, unavailable_code, accepted],
            "{protocol:?}: sent once, retried once"
        );
        let text = t.encode_metrics();
        let lost = dropped(&text, "traces").unwrap_or(0.0);
        assert!(lost >= 1.0, "{protocol:?}: the first probe's spans are counted:\n{text}");
        let recovered = logs.lines_with("OTLP traces export recovered");
        let line = recovered.last().cloned().unwrap_or_default();
        assert!(line.contains(&format!("1 exports and {lost} spans dropped")), "{protocol:?}: {line}");
        t.shutdown(Duration::from_secs(5)).await;
    }
    let failing = logs.lines_with("OTLP traces export failing");
    assert_eq!(failing.len(), 2, "one failure line per exporter:\n{}", logs.text());
    assert!(failing[0].contains("HTTP 400") && failing[0].contains("not retryable"), "{}", failing[0]);
    assert!(failing[1].contains("gRPC InvalidArgument"), "{}", failing[1]);
    let recovered = logs.lines_with("OTLP traces export recovered");
    assert_eq!(recovered.len(), 2, "one recovery line per exporter:\n{}", logs.text());
    assert!(!logs.text().contains(COLLECTOR_KEY));
}
