//! The engine and its tasks on paused time, against a probe function and a recording [`Sink`].

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tokio::time::Instant;

use crate::admin::AdminState;
use crate::config::{
    self, AdminSettings, ConfigErrors, ExportSettings, InitialHealth, Plan, ProfileName, SourceBind, Target,
    View,
};
use crate::export::{MismatchEvent, ProbeReport, Sink, SpanRef};
use crate::probe::ErrorCode;
use crate::schedule::{ProbeFuture, WallClock};
use crate::testkit::{failed, ok_outcome, target, view_url};
use crate::verdict::Health;

use super::runtime::{Daemon, Handle, ProbeFn};
use super::Options;

/// What the daemon told its telemetry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Told {
    Probe { view: String, ok: bool, change: Option<Health>, force: bool, span: Option<SpanRef> },
    Skipped(String),
    Opened { checker: String, diagnosis: String, flipped: Vec<String>, links: [Option<SpanRef>; 2] },
    Resolved { checker: String, diagnosis: String, resolution: &'static str, links: [Option<SpanRef>; 2] },
    Reload(bool),
    Forget(String),
    Shutdown,
}

/// Records every call; exports a span as a success ratio of 0 would: failures, verdict
/// changes and forced probes.
#[derive(Default)]
pub(crate) struct Recorder {
    told: Mutex<Vec<Told>>,
    spans: AtomicU64,
}

impl Recorder {
    pub(crate) fn told(&self) -> Vec<Told> {
        self.told.lock().unwrap().clone()
    }

    fn push(&self, t: Told) {
        self.told.lock().unwrap().push(t);
    }

    pub(crate) fn mismatches(&self) -> Vec<Told> {
        self.told().into_iter().filter(|t| matches!(t, Told::Opened { .. } | Told::Resolved { .. })).collect()
    }
}

impl Sink for Recorder {
    fn probe(&self, report: &ProbeReport<'_>) -> Option<SpanRef> {
        let ProbeReport { view, outcome, change, force, .. } = *report;
        let exported = !outcome.ok || change.is_some() || force;
        let span = exported.then(|| {
            let n = self.spans.fetch_add(1, Ordering::SeqCst) + 1;
            SpanRef { trace_id: [n as u8; 16], span_id: n.to_le_bytes() }
        });
        self.push(Told::Probe { view: view.id(), ok: outcome.ok, change: change.map(|c| c.to), force, span });
        span
    }

    fn skipped(&self, view: &View) {
        self.push(Told::Skipped(view.id()));
    }

    fn mismatch(&self, event: MismatchEvent<'_>) {
        let told = match event {
            MismatchEvent::Opened { mismatch, links, .. } => Told::Opened {
                checker: format!("{}/{}", mismatch.target, mismatch.checker_view),
                diagnosis: mismatch.diagnosis.as_str().to_owned(),
                flipped: mismatch.flipped.iter().map(|a| a.as_str().to_owned()).collect(),
                links,
            },
            MismatchEvent::Resolved { mismatch, resolution, links, .. } => Told::Resolved {
                checker: format!("{}/{}", mismatch.target, mismatch.checker_view),
                diagnosis: mismatch.diagnosis.as_str().to_owned(),
                resolution,
                links,
            },
        };
        self.push(told);
    }

    fn reload(&self, ok: bool) {
        self.push(Told::Reload(ok));
    }

    fn forget_view(&self, view: &View) {
        self.push(Told::Forget(view.id()));
    }

    fn encode_metrics(&self) -> String {
        "# EOF\n".to_owned()
    }

    fn shutdown(&self, _deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move { self.push(Told::Shutdown) })
    }
}

fn plan(targets: Vec<Target>) -> Plan {
    Plan {
        targets,
        admin: AdminSettings::listening_on("127.0.0.1:0".parse().unwrap()),
        export: ExportSettings { otlp: None },
        vantage: crate::config::Vantage {
            name: "test".to_owned(),
            kind: crate::config::VantageKind::External,
            zone: None,
            region: None,
            labels: Vec::new(),
        },
        discovery: None,
        conditions: Vec::new(),
        files: Vec::new(),
        read_files: Vec::new(),
    }
}

fn timed(mut v: View, interval_ms: u64, timeout_ms: u64) -> View {
    v.interval = Duration::from_millis(interval_ms);
    v.timeout = Duration::from_millis(timeout_ms);
    v
}

fn client() -> View {
    timed(view_url("shop", "client", "https://shop.example.com/cart"), 1000, 500)
}

/// An NLB-like checker: plain HTTP to node port 30080, one probe decides.
fn nlb() -> View {
    let mut v = timed(view_url("shop", "nlb", "http://10.0.0.5:30080/healthz"), 1000, 500);
    v.profile = Some(ProfileName::AwsNlb);
    v.rise = 1;
    v.fall = 1;
    v.initial = InitialHealth::FirstProbe;
    v
}

/// A backend whose node port 30080 turns into a TLS listener while `tls` is set: plain HTTP
/// to it is then `http_tls_required`. Port 443 is always TLS. Counts every probe.
fn backend(tls: Arc<AtomicBool>, calls: Arc<AtomicUsize>) -> ProbeFn {
    Arc::new(move |v: Arc<View>| -> ProbeFuture {
        calls.fetch_add(1, Ordering::SeqCst);
        let port = v.dial_endpoint().port;
        let tls_port = port == 443 || (port == 30080 && tls.load(Ordering::SeqCst));
        let o = match (tls_port, v.scheme.uses_tls()) {
            (true, false) => failed(&v, ErrorCode::HttpTlsRequired, Some(400)),
            (false, true) => failed(&v, ErrorCode::TlsPlaintextPeer, None),
            _ => ok_outcome(&v),
        };
        Box::pin(std::future::ready(vec![o]))
    })
}

fn options() -> Options {
    Options {
        watch_interval: None,
        clock: Some(WallClock::anchored(Instant::now(), UNIX_EPOCH + Duration::from_secs(1_700_000_000))),
        ..Options::default()
    }
}

struct Running {
    handle: Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(daemon: Daemon) -> Running {
        let handle = daemon.handle();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(daemon.run(None, async move {
            let _ = stopped.await;
        }));
        Running { handle, stop: Some(stop), task }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), self.task).await.unwrap().unwrap();
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `inner`, with every hybrid (a view named `base~attribute`) answering after `delay`.
fn slow_hybrids(inner: ProbeFn, delay: Duration) -> ProbeFn {
    Arc::new(move |v: Arc<View>| -> ProbeFuture {
        let hybrid = v.name.contains('~');
        let answer = inner(v);
        Box::pin(async move {
            if hybrid {
                tokio::time::sleep(delay).await;
            }
            answer.await
        })
    })
}

#[tokio::test(start_paused = true)]
async fn a_mismatch_is_pending_until_its_attribution_names_it_everywhere() {
    let backend = backend(Arc::new(AtomicBool::new(true)), Arc::new(AtomicUsize::new(0)));
    let recorder = Arc::new(Recorder::default());
    let daemon = Daemon::with_probe(
        plan(vec![target(client(), vec![nlb()])]),
        recorder.clone(),
        options(),
        slow_hybrids(backend, secs(3)),
    );
    let running = Running::start(daemon);

    // The hold has elapsed (3 s) and the hybrids are still out: nothing is told, and the status
    // says so rather than guessing from the error codes.
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    assert!(recorder.mismatches().is_empty(), "told before attribution: {:?}", recorder.mismatches());
    let status = running.handle.status();
    let [open] = &status.targets[0].mismatches[..] else { panic!("{:?}", status.targets[0].mismatches) };
    assert_eq!(open.mismatch.diagnosis.as_str(), "pending");
    assert!(open.mismatch.flipped.is_empty(), "{:?}", open.mismatch.flipped);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["targets"][0]["mismatches"][0]["diagnosis"], "pending");

    // The hybrids answered (four at a time, 3 s each): the event (and so the span and the
    // metric labels) and the status name the same diagnosis.
    tokio::time::sleep(secs(10)).await;
    let mismatches = recorder.mismatches();
    let [Told::Opened { diagnosis, flipped, .. }] = &mismatches[..] else {
        panic!("one opened mismatch: {mismatches:?}")
    };
    assert_eq!(diagnosis, "checker_protocol_mismatch");
    assert!(flipped.contains(&"tls".to_owned()), "{flipped:?}");
    let status = running.handle.status();
    let [open] = &status.targets[0].mismatches[..] else { panic!("{:?}", status.targets[0].mismatches) };
    assert_eq!(open.mismatch.diagnosis.as_str(), diagnosis);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_false_drain_opens_after_the_hold_is_attributed_and_resolves() {
    let tls = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let recorder = Arc::new(Recorder::default());
    let daemon = Daemon::with_probe(
        plan(vec![target(client(), vec![nlb()])]),
        recorder.clone(),
        options(),
        backend(tls.clone(), calls.clone()),
    );
    let running = Running::start(daemon);
    let start = Instant::now();

    // First probes within a second; the disagreement then holds two checker intervals.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(running.handle.ready());
    assert!(recorder.mismatches().is_empty(), "the hold has not elapsed: {:?}", recorder.mismatches());
    tokio::time::sleep(secs(1)).await;

    let mismatches = recorder.mismatches();
    let [Told::Opened { checker, diagnosis, flipped, links }] = &mismatches[..] else {
        panic!("one opened mismatch: {mismatches:?}")
    };
    assert_eq!((checker.as_str(), diagnosis.as_str()), ("shop/nlb", "checker_protocol_mismatch"));
    assert!(flipped.contains(&"tls".to_owned()), "{flipped:?}");
    // Probes during the hold are exported, so both sides link.
    assert!(links.iter().all(Option::is_some), "{links:?}");
    let probes_told: Vec<Option<SpanRef>> = recorder
        .told()
        .iter()
        .filter_map(|t| match t {
            Told::Probe { span, .. } => Some(*span),
            _ => None,
        })
        .collect();
    assert!(links.iter().all(|l| probes_told.contains(l)), "links name exported probe spans");

    let status = running.handle.status();
    assert_eq!(status.generation, 1);
    let shop = &status.targets[0];
    assert_eq!(shop.views[0].verdict.state, "healthy");
    assert_eq!(shop.views[1].verdict.state, "unhealthy");
    assert_eq!(shop.views[1].last_outcome.as_ref().and_then(|o| o.error), Some(ErrorCode::HttpTlsRequired));
    assert!(shop.views.iter().all(|v| (3..=4).contains(&v.probes)), "one probe a second");
    assert_eq!(shop.views[1].failures, shop.views[1].probes);
    assert_eq!(shop.views[1].recent.len() as u64, shop.views[1].probes);
    let [open] = &shop.mismatches[..] else { panic!("{:?}", shop.mismatches) };
    assert_eq!(open.mismatch.diagnosis.as_str(), "checker_protocol_mismatch");
    assert!(open.mismatch.attribution.is_some());
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["targets"][0]["mismatches"][0]["direction"], "false_drain");
    assert_eq!(json["targets"][0]["mismatches"][0]["flipped"][0], "tls");
    let hybrids = calls.load(Ordering::SeqCst) - shop.views.iter().map(|v| v.probes as usize).sum::<usize>();
    assert!((1..=12).contains(&hybrids), "{hybrids} hybrids, at most max_hybrids");

    // The node port serves plain HTTP again: the checker recovers, the mismatch resolves.
    tls.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mismatches = recorder.mismatches();
    assert!(
        matches!(&mismatches[..], [Told::Opened { .. }, Told::Resolved { resolution: "agreed", links, .. }] if links[1].is_some()),
        "{mismatches:?}"
    );
    let status = running.handle.status();
    assert!(status.targets[0].mismatches.is_empty());
    assert_eq!(status.targets[0].views[1].verdict.state, "healthy");
    // Attribution ran once: it is not repeated for the same mismatch within its interval.
    let probes = status.targets[0].views.iter().map(|v| v.probes as usize).sum::<usize>();
    assert_eq!(calls.load(Ordering::SeqCst) - probes, hybrids);
    assert!(start.elapsed() < secs(5));
    running.stop().await;
    assert_eq!(recorder.told().last(), Some(&Told::Shutdown));
}

#[tokio::test(start_paused = true)]
async fn skipped_ticks_are_counted_in_status_and_telemetry() {
    // One permit, three views whose probes never answer (cancelled at 510 ms of each 1 s
    // interval): they wait for each other's permit and find themselves still in flight.
    let hang: ProbeFn = Arc::new(|_view: Arc<View>| -> ProbeFuture { Box::pin(std::future::pending()) });
    let recorder = Arc::new(Recorder::default());
    let mut options = options();
    options.scheduler.max_in_flight = 1;
    let targets = ["a", "b", "c"]
        .map(|name| {
            let mut v = client();
            v.target = name.into();
            target(v, vec![])
        })
        .to_vec();
    let daemon = Daemon::with_probe(plan(targets), recorder.clone(), options, hang);
    let running = Running::start(daemon);
    tokio::time::sleep(secs(10)).await;
    let status = running.handle.status();
    let skipped: u64 = status.targets.iter().map(|t| t.views[0].skipped).sum();
    let probes: u64 = status.targets.iter().map(|t| t.views[0].probes).sum();
    let told = recorder.told().iter().filter(|t| matches!(t, Told::Skipped(_))).count() as u64;
    assert!(skipped > 0 && told == skipped, "{skipped} skipped, {told} told");
    // About one probe per 510 ms fits through the single permit.
    assert!((17..=20).contains(&probes), "{probes}");
    let outcome = status.targets[0].views[0].last_outcome.as_ref().expect("probed");
    assert_eq!(outcome.error, Some(ErrorCode::HttpTimeout), "cancelled at the deadline");
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn attribution_off_reports_at_once_from_error_codes() {
    let mut t = target(client(), vec![nlb()]);
    t.diff.attribution = false;
    t.diff.hold = Some(Duration::ZERO);
    let calls = Arc::new(AtomicUsize::new(0));
    let recorder = Arc::new(Recorder::default());
    let daemon = Daemon::with_probe(
        plan(vec![t]),
        recorder.clone(),
        options(),
        backend(Arc::new(AtomicBool::new(true)), calls.clone()),
    );
    let running = Running::start(daemon);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mismatches = recorder.mismatches();
    let [Told::Opened { diagnosis, flipped, .. }] = &mismatches[..] else { panic!("{mismatches:?}") };
    assert_eq!(diagnosis, "checker_protocol_mismatch", "error codes alone name it");
    assert!(flipped.is_empty());
    let status = running.handle.status();
    let probes: u64 = status.targets[0].views.iter().map(|v| v.probes).sum();
    assert_eq!(calls.load(Ordering::SeqCst) as u64, probes, "no hybrid probed");
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_allow_sources_audit_opens_at_load_and_resolves_when_fixed() {
    let mut k = nlb();
    k.source = Some(SourceBind {
        requested: crate::config::Source::Addr([10, 9, 9, 9].into()),
        addr: [10, 9, 9, 9].into(),
    });
    let mut t = target(client(), vec![k]);
    t.allow_sources = vec!["198.51.100.0/24".parse().unwrap()];
    let recorder = Arc::new(Recorder::default());
    let daemon = Daemon::with_probe(
        plan(vec![t.clone()]),
        recorder.clone(),
        options(),
        backend(Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0))),
    );
    // Opened at load, before any probe.
    let mismatches = recorder.mismatches();
    assert!(
        matches!(&mismatches[..], [Told::Opened { diagnosis, .. }] if diagnosis == "checker_source_blocked"),
        "{mismatches:?}"
    );
    let running = Running::start(daemon);
    tokio::time::sleep(secs(3)).await;
    let status = running.handle.status();
    assert_eq!(status.targets[0].mismatches.len(), 1);
    assert_eq!(serde_json::to_value(&status.targets[0].mismatches[0]).unwrap()["basis"], "audit");

    // The same plan again changes nothing; the allowlist fixed resolves it.
    assert!(running.handle.shared.swap(plan(vec![t.clone()]), Instant::now()).await);
    assert_eq!(recorder.mismatches().len(), 1);
    t.allow_sources.push("10.9.9.0/24".parse().unwrap());
    assert!(running.handle.shared.swap(plan(vec![t]), Instant::now()).await);
    let mismatches = recorder.mismatches();
    assert!(matches!(&mismatches[1..], [Told::Resolved { resolution: "removed", .. }]), "{mismatches:?}");
    assert!(running.handle.status().targets[0].mismatches.is_empty());
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_unchanged_views_and_their_mismatch_and_drops_removed_ones() {
    let tls = Arc::new(AtomicBool::new(true));
    let recorder = Arc::new(Recorder::default());
    let mut other = nlb();
    other.name = "gone".into();
    let mut changed = nlb();
    changed.name = "changed".into();
    changed.url_endpoint.port = 8081;
    let mut shop = target(client(), vec![nlb(), other, changed.clone()]);
    shop.diff.hold = Some(Duration::ZERO);
    let old = timed(view_url("old", "client", "https://old.example.com/"), 1000, 500);
    let daemon = Daemon::with_probe(
        plan(vec![shop.clone(), target(old, vec![])]),
        recorder.clone(),
        options(),
        backend(tls, Arc::new(AtomicUsize::new(0))),
    );
    let running = Running::start(daemon);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let before = running.handle.status();
    let nlb_before = before.targets[0].views[1].clone();
    let open_before = before.targets[0].mismatches.clone();
    let open_names: Vec<&str> = open_before.iter().map(|m| &*m.mismatch.checker_view).collect();
    assert_eq!(open_names, ["nlb", "gone"]);
    assert_eq!(&*open_before[0].mismatch.checker_view, "nlb");

    // New plan: `old` and checker `gone` removed, `changed` on a new path, `fresh` added.
    let mut changed2 = changed;
    changed2.path = "/other".into();
    let fresh = timed(view_url("fresh", "client", "https://fresh.example.com/"), 1000, 500);
    let mut shop2 = shop.clone();
    shop2.checkers = vec![nlb(), changed2];
    let told_before = recorder.told().len();
    assert!(running.handle.shared.swap(plan(vec![shop2, target(fresh, vec![])]), Instant::now()).await);

    let after = running.handle.status();
    assert_eq!(after.generation, 2);
    assert_eq!(after.last_reload.as_ref().map(|r| r.ok), Some(true));
    let names: Vec<&str> = after.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["shop", "fresh"]);
    let shop_after = &after.targets[0];
    let view_names: Vec<&str> = shop_after.views.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(view_names, ["client", "nlb", "changed"]);
    // Unchanged: counters, verdict and its start, the open mismatch with its times.
    assert_eq!(shop_after.views[1].probes, nlb_before.probes);
    assert_eq!(shop_after.views[1].verdict.state, "unhealthy");
    assert_eq!(shop_after.views[1].verdict.since, nlb_before.verdict.since);
    assert_eq!(shop_after.mismatches.len(), 1);
    assert_eq!(&*shop_after.mismatches[0].mismatch.checker_view, "nlb");
    assert_eq!(shop_after.mismatches[0].opened_at, open_before[0].opened_at);
    // Changed: a fresh start.
    assert_eq!((shop_after.views[2].probes, shop_after.views[2].verdict.state), (0, "unknown"));
    let told: Vec<Told> = recorder.told()[told_before..].to_vec();
    let forgotten: HashSet<String> =
        told.iter().filter_map(|t| if let Told::Forget(v) = t { Some(v.clone()) } else { None }).collect();
    assert_eq!(forgotten, HashSet::from(["shop/gone".to_owned(), "old/client".to_owned()]));
    let resolved: Vec<(&str, &str)> = told
        .iter()
        .filter_map(|t| match t {
            Told::Resolved { checker, resolution, .. } => Some((checker.as_str(), *resolution)),
            _ => None,
        })
        .collect();
    assert_eq!(resolved, [("shop/gone", "removed")], "the unchanged pair's mismatch stays open");
    assert!(told.contains(&Told::Reload(true)));

    // The scheduler follows: removed views stop, the changed and new ones run.
    tokio::time::sleep(secs(2)).await;
    let later = recorder.told()[told_before..].to_vec();
    let probed: HashSet<String> = later
        .iter()
        .filter_map(|t| if let Told::Probe { view, .. } = t { Some(view.clone()) } else { None })
        .collect();
    assert!(!probed.contains("old/client") && !probed.contains("shop/gone"), "{probed:?}");
    assert!(probed.contains("fresh/client") && probed.contains("shop/changed"), "{probed:?}");
    let status = running.handle.status();
    assert!(status.targets[0].views[1].probes >= nlb_before.probes + 2);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_reload_keeps_the_plan_and_readiness() {
    let recorder = Arc::new(Recorder::default());
    let daemon = Daemon::with_probe(
        plan(vec![target(client(), vec![nlb()])]),
        recorder.clone(),
        options(),
        backend(Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0))),
    );
    let running = Running::start(daemon);
    tokio::time::sleep(secs(2)).await;
    let errors = ConfigErrors(vec![config::ConfigError {
        file: Some("probes.d/shop.toml".into()),
        key: "target[0].client.timeout".into(),
        message: "must be below interval".into(),
    }]);
    running.handle.shared.engine().reload_failed(&errors, &*recorder);
    let status = running.handle.status();
    assert!(status.ready);
    assert_eq!(status.generation, 1);
    let reload = status.last_reload.expect("recorded");
    assert!(!reload.ok);
    assert_eq!(reload.errors, ["probes.d/shop.toml: target[0].client.timeout: must be below interval"]);
    assert!(recorder.told().contains(&Told::Reload(false)));
    let probes = status.targets[0].views[0].probes;
    tokio::time::sleep(secs(2)).await;
    assert!(running.handle.status().targets[0].views[0].probes >= probes + 2, "still probing");
    let handle = running.handle.clone();
    running.stop().await;
    assert!(!handle.ready(), "not ready once stopped");
    assert_eq!(recorder.told().iter().filter(|t| **t == Told::Shutdown).count(), 1, "flushed once");
}
