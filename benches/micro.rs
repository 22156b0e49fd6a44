//! Micro benchmarks of the pure hot paths: outcome classification, matcher, verdict update,
//! diff, telemetry (metrics and spans, OTLP off and on), the timer heap, config compile.
//!
//! `cargo bench --bench micro` (add a filter, e.g. `-- telemetry`, to run a group).
//!
//! Everything here is in-process and offline: the "OTLP on" case points its exporter at a
//! loopback port where nothing listens, so spans are built and queued exactly as in production
//! and the export itself fails fast (counted, dropped) in the background.

use std::hint::black_box;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;
use tokio::time::Instant;

use parallax::config::{self, ExportSettings, OtlpProtocol, OtlpSettings, Plan, Role, Target, View};
use parallax::diff::{HoldTime, TargetDiff};
use parallax::export::{ProbeReport, ResourceInfo, Sink, Telemetry, TelemetryOptions};
use parallax::probe::expect::judge;
use parallax::probe::http::{classify, tls_required, Response};
use parallax::probe::tls::{classify_handshake, classify_verification};
use parallax::probe::{ErrorCode, Outcome, Phase, RequestSummary, Timings, TlsSummary};
use parallax::schedule::{Schedule, Scheduled, WallClock};
use parallax::verdict::Verdict;

/// The shipped example, compiled once.
fn example() -> Plan {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("probes.d");
    match config::load(&dir) {
        Ok(plan) => plan,
        Err(e) => panic!("the shipped example does not compile: {e}"),
    }
}

fn target<'p>(plan: &'p Plan, name: &str) -> &'p Target {
    plan.targets.iter().find(|t| &*t.name == name).unwrap_or_else(|| panic!("no target {name}"))
}

fn checker<'t>(target: &'t Target, name: &str) -> &'t View {
    target.checkers.iter().find(|c| &*c.name == name).unwrap_or_else(|| panic!("no checker {name}"))
}

/// A successful HTTPS probe outcome of `view`, as the probe engine fills it in.
fn outcome(view: &View, ok: bool) -> Outcome {
    Outcome {
        target: view.target.clone(),
        view: view.name.clone(),
        role: view.role,
        profile: view.profile,
        ok,
        phase: (!ok).then_some(Phase::Http),
        error: (!ok).then_some(ErrorCode::HttpStatus),
        detail: (!ok).then(|| "status 503, expected 200-299".to_owned()),
        status: Some(if ok { 200 } else { 503 }),
        location: None,
        grpc_status: None,
        local_endpoints: None,
        timings: Timings {
            dns: None,
            connect: Some(Duration::from_micros(80)),
            tls: Some(Duration::from_micros(900)),
            ttfb: Some(Duration::from_micros(300)),
            total: Duration::from_micros(1400),
        },
        peer: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 8443)),
        local: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 53422)),
        request: RequestSummary {
            scheme: "https",
            address: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 8443)),
            sni: Some("shop.example.com".to_owned()),
            host: Some("shop.example.com".to_owned()),
            method: Some("GET".to_owned()),
            path: Some("/cart".to_owned()),
            source: None,
            proxy_protocol: None,
            verify: true,
            user_agent: Some("parallax/0.1".to_owned()),
            http_version: Some("HTTP/1.1"),
        },
        tls: Some(TlsSummary {
            version: Some("TLSv1_3".to_owned()),
            cipher: Some("TLS13_AES_128_GCM_SHA256".to_owned()),
            alpn: Some("http/1.1".to_owned()),
            cert_subject: Some("CN=shop.example.com".to_owned()),
            cert_sans: vec!["shop.example.com".to_owned()],
            not_after: Some("2027-01-01T00:00:00Z".to_owned()),
            not_after_unix: Some(1_798_761_600),
            chain_len: 2,
            ..TlsSummary::default()
        }),
        resolved: Vec::new(),
        body_bytes: Some(512),
    }
}

/// A real `hyper::Error`: a response that is not HTTP, read over an in-memory pipe.
fn malformed_response_error() -> hyper::Error {
    let runtime = current_thread();
    runtime.block_on(async {
        let (client, mut server) = tokio::io::duplex(4096);
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(client))
                .await
                .unwrap_or_else(|e| panic!("handshake over a pipe: {e}"));
        let driver = tokio::spawn(conn);
        let request = http::Request::get("/").body(Full::new(Bytes::new())).unwrap_or_else(|e| panic!("{e}"));
        let answer = tokio::spawn(async move {
            let _ = server.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
            server
        });
        let err = match sender.send_request(request).await {
            Err(e) => e,
            Ok(_) => panic!("garbage was taken for a response"),
        };
        drop(answer.await);
        driver.abort();
        err
    })
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

fn classification(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    let alert = io::Error::new(
        io::ErrorKind::InvalidData,
        rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
    );
    g.bench_function("tls_alert", |b| {
        b.iter(|| classify_handshake(black_box(&alert), black_box(b"\x15\x03\x03\x00\x02\x02\x28")))
    });
    let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
    g.bench_function("tls_plaintext_peer", |b| {
        b.iter(|| classify_handshake(black_box(&eof), black_box(b"HTTP/1.1 400 Bad Request\r\n")))
    });
    let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
    let seen = TlsSummary {
        cert_sans: vec!["shop.example.com".to_owned(), "www.shop.example.com".to_owned()],
        not_after: Some("2024-01-01T00:00:00Z".to_owned()),
        ..TlsSummary::default()
    };
    g.bench_function("tls_cert_expired", |b| {
        b.iter(|| classify_verification(black_box(&expired), "shop.example.com", None, black_box(&seen)))
    });
    let name = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
    g.bench_function("tls_cert_name_mismatch", |b| {
        b.iter(|| classify_verification(black_box(&name), "shop.example.com", None, black_box(&seen)))
    });
    let parse = malformed_response_error();
    g.bench_function("http_malformed", |b| {
        b.iter(|| classify(black_box(&parse), Phase::Http, black_box(b"SSH-2.0-OpenSSH_9"), 24))
    });
    let nginx_400 = Response {
        status: 400,
        version: "HTTP/1.1",
        headers: http::HeaderMap::new(),
        body: Bytes::from_static(
            b"<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
        ),
        ttfb: Duration::from_micros(200),
    };
    g.bench_function("http_tls_required_400", |b| b.iter(|| tls_required(black_box(&nginx_400))));
    let ok_200 = Response { status: 200, body: Bytes::from_static(b"ok\n"), ..nginx_400.clone() };
    g.bench_function("http_plain_200", |b| b.iter(|| tls_required(black_box(&ok_200))));
    g.finish();

    let plan = example();
    let shop = target(&plan, "shop");
    let mut g = c.benchmark_group("judge");
    let cart = Bytes::from(format!("<html>{}<div id=cart>cart</div></html>", "x".repeat(2000)));
    g.bench_function("status_and_body_contains_2k", |b| {
        b.iter(|| judge(black_box(&shop.client.expect), 200, black_box(&cart)))
    });
    let gcp = checker(shop, "gcp");
    g.bench_function("status_and_body_regex", |b| {
        b.iter(|| judge(black_box(&gcp.expect), 200, black_box(b"ok")))
    });
    let kube = checker(shop, "kube-proxy");
    let kube_body =
        br#"{"service":{"namespace":"shop","name":"web"},"localEndpoints":2,"serviceProxyHealthy":true}"#;
    g.bench_function("kube_proxy_json", |b| {
        b.iter(|| judge(black_box(&kube.expect), 200, black_box(kube_body)))
    });
    let nlb = checker(shop, "nlb");
    g.bench_function("status_only", |b| b.iter(|| judge(black_box(&nlb.expect), 200, black_box(b""))));
    g.finish();
}

fn verdicts_and_diff(c: &mut Criterion) {
    let plan = example();
    let shop = target(&plan, "shop").clone();
    let mut g = c.benchmark_group("verdict");
    let start = Instant::now();
    g.bench_function("observe_steady", |b| {
        let mut v = Verdict::for_view(&shop.client);
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            v.observe(black_box(true), start + Duration::from_millis(n))
        })
    });
    g.bench_function("observe_flapping", |b| {
        let mut v = Verdict::for_view(&shop.client);
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            // Two failures, two successes: a verdict change every other observation.
            v.observe(black_box(n % 4 < 2), start + Duration::from_millis(n))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("diff");
    g.bench_function("observe_agreeing", |b| {
        let mut diff = TargetDiff::new(&shop, HoldTime::TwoCheckerIntervals);
        let names: Vec<&str> =
            std::iter::once(&*shop.client.name).chain(shop.checkers.iter().map(|c| &*c.name)).collect();
        let mut n = 0usize;
        b.iter(|| {
            n += 1;
            let view = names[n % names.len()];
            diff.observe(black_box(view), true, start + Duration::from_millis(n as u64))
        })
    });
    g.bench_function("observe_mismatch_cycle", |b| {
        // Client healthy, the nlb checker failing and recovering: pairs go pending, open (via
        // poll) and resolve again and again.
        let mut diff = TargetDiff::new(&shop, HoldTime::Fixed(Duration::from_millis(5)));
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            let at = start + Duration::from_millis(n);
            let a = diff.observe("client", true, at);
            let b = diff.observe("nlb", (n / 16).is_multiple_of(2), at);
            let c = diff.poll(at);
            (a, b, c)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("schedule");
    let views: Vec<Scheduled> = (0..10_000)
        .map(|i| {
            let mut v = shop.client.clone();
            v.target = format!("t{i:05}").into();
            v.interval = Duration::from_secs(10);
            v.timeout = Duration::from_secs(2);
            Scheduled { view: Arc::new(v), epoch: 1 }
        })
        .collect();
    g.bench_function("pop_due_10k_views", |b| {
        let mut schedule = Schedule::new(WallClock::now());
        schedule.replace(views.clone(), Instant::now());
        b.iter(|| {
            // The earliest tick, whenever it is: each call fires (and re-arms) one or more views.
            let at = schedule.next_due().unwrap_or_else(Instant::now);
            black_box(schedule.pop_due(at))
        })
    });
    g.finish();
}

/// Export settings with OTLP toward a loopback port where nothing listens, every success sampled.
fn otlp_on() -> ExportSettings {
    ExportSettings {
        otlp: Some(OtlpSettings {
            endpoint: "http://127.0.0.77:9".to_owned(),
            protocol: OtlpProtocol::Grpc,
            success_sample_ratio: 1.0,
        }),
    }
}

fn telemetry(c: &mut Criterion) {
    let plan = example();
    let shop = target(&plan, "shop");
    let view = &shop.client;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let _inside = runtime.enter();
    let quiet = || TelemetryOptions { events: Box::new(io::sink()), ..TelemetryOptions::default() };
    let env = std::collections::HashMap::<String, String>::new();
    let off = Telemetry::with_options(&ExportSettings { otlp: None }, ResourceInfo::default(), &env, quiet());
    let on = Telemetry::with_options(&otlp_on(), ResourceInfo::default(), &env, quiet());
    assert!(!off.exports_traces() && on.exports_traces(), "the OTLP switch did not take");
    let ok = outcome(view, true);
    let failed = outcome(view, false);
    let lateness = Duration::from_micros(250);
    let report = |outcome| ProbeReport {
        view,
        outcome,
        started: SystemTime::now(),
        lateness,
        change: None,
        force: false,
    };

    let mut g = c.benchmark_group("telemetry");
    g.bench_function("probe_otlp_off_success", |b| b.iter(|| off.probe(&report(black_box(&ok)))));
    g.bench_function("probe_otlp_off_failure", |b| b.iter(|| off.probe(&report(black_box(&failed)))));
    g.bench_function("probe_otlp_on_success_sampled", |b| b.iter(|| on.probe(&report(black_box(&ok)))));
    g.bench_function("probe_otlp_on_failure", |b| b.iter(|| on.probe(&report(black_box(&failed)))));
    // The client view's own role: the spans carry it; kept to catch a label set that grows.
    assert_eq!(view.role, Role::Client);
    g.bench_function("encode_metrics", |b| b.iter(|| black_box(off.encode_metrics())));
    g.finish();
}

fn config_compile(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("probes.d");
    let mut g = c.benchmark_group("config");
    g.bench_function("load_shipped_example", |b| {
        b.iter_batched(
            || (),
            |()| config::load(black_box(&dir)).map(|p| p.targets.len()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = classification, verdicts_and_diff, telemetry, config_compile
}
criterion_main!(benches);
