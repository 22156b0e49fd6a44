//! The admin server on 127.0.0.1:0 with a test `AdminState` holding a status document built from
//! a compiled configuration and real outcome, verdict and mismatch types: every endpoint's
//! status, content type and body; 404/405; readiness both ways; the bounds (head size, header
//! read timeout, connections in flight); graceful shutdown; no request makes parallax connect
//! anywhere; hostile and secret values; and the dashboard rendered by headless Chromium.
//!
//! The browser test needs Debian's `chromium` package (`apt-get install -y chromium`), or
//! `PARALLAX_CHROMIUM` naming another Chromium binary; without one it fails saying so
//! (`support/browser.rs`).

#[path = "support/browser.rs"]
mod browser;
#[path = "support/memory.rs"]
mod support_memory;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderMap, ALLOW, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use parallax::admin::{self, AdminState, Limits};
use parallax::config::{self, Condition, ConditionKind, Plan, View};
use parallax::diff::{Attribute, Attribution, Basis, Diagnosis, Direction, HybridResult, Mismatch, Side};
use parallax::probe::{ErrorCode, Outcome, RequestSummary, Timings, TlsSummary};
use parallax::status::{
    DiscoveryResource, DiscoveryStatus, ExplainedStatus, OpenMismatchStatus, RecentProbe, ReloadStatus,
    StatusDoc, TargetStatus, VerdictStatus, ViewStatus,
};

use browser::{assert_has, chromium_dom, element, start_tag};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const METRICS: &str = "# TYPE parallax_view_up gauge\n\
# HELP parallax_view_up Whether the view's emulated verdict is healthy.\n\
parallax_view_up{target=\"shop\",view=\"client\",role=\"client\"} 0\n\
parallax_view_up{target=\"shop\",view=\"nlb\",role=\"checker\"} 1\n\
# EOF\n";
/// What `${env:SHOP_TOKEN}` holds: must appear nowhere the admin server serves.
const SECRET: &str = "s3cr3t-T0KEN-9f27c1d4";
/// Markup where the status document holds free text (evidence, details, reload errors).
const HOSTILE: &str = "<img src=x onerror=\"document.title='pwned'\">";
const EVIDENCE: &str = "nlb GET /healthz got 200 while client GET /cart got 503: the health path does not reach the cart service";
const IO_DEADLINE: Duration = Duration::from_secs(5);

// ---- the state and the document ------------------------------------------------------------

/// The daemon's side of the contract, as a test controls it.
struct TestState {
    ready: AtomicBool,
    doc: Mutex<StatusDoc>,
    /// Makes `/metrics` slow, to catch a response in flight.
    metrics_delay: Duration,
    /// Calls of `status()`.
    status_calls: AtomicUsize,
    /// What `status_version()` says (none: unknown).
    version: Option<u64>,
}

impl TestState {
    fn new(doc: StatusDoc, ready: bool) -> Arc<TestState> {
        Arc::new(TestState::with(doc, ready, Duration::ZERO, None))
    }

    fn with(doc: StatusDoc, ready: bool, metrics_delay: Duration, version: Option<u64>) -> TestState {
        TestState {
            ready: AtomicBool::new(ready),
            doc: Mutex::new(doc),
            metrics_delay,
            status_calls: AtomicUsize::new(0),
            version,
        }
    }
}

impl AdminState for TestState {
    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn status(&self) -> StatusDoc {
        self.status_calls.fetch_add(1, Ordering::SeqCst);
        let mut doc = self.doc.lock().unwrap_or_else(|e| e.into_inner()).clone();
        doc.ready = self.ready();
        doc
    }

    fn status_version(&self) -> Option<u64> {
        self.version
    }

    fn metrics(&self) -> String {
        // The admin server encodes off the runtime: a blocking sleep here must not stall it.
        std::thread::sleep(self.metrics_delay);
        METRICS.to_owned()
    }
}

fn rfc3339(ago: Duration) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() - ago).to_string()
}

/// The plan the document describes: `shop` (client with the secret in its query, checkers `nlb`
/// and `gcp`, the latter with the secret in a header) and `payments` (client, whose URL holds a
/// user and password, and `kubelet`).
fn plan() -> Plan {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("probes.toml"),
        r#"
[[target]]
name = "shop"
[target.client]
url = "https://shop.example.com/cart?session=${env:SHOP_TOKEN}"
connect_to = "127.0.0.1:8443"
[[target.checker]]
name = "nlb"
profile = "aws-nlb"
url = "http://127.0.0.1:30080/healthz"
[[target.checker]]
name = "gcp"
profile = "gcp"
url = "http://127.0.0.1:30080/"
headers = { authorization = "Bearer ${env:SHOP_TOKEN}" }

[[target]]
name = "payments"
[target.client]
url = "http://ops:{USER_PASSWORD}@127.0.0.1:8080/pay"
[[target.checker]]
name = "kubelet"
profile = "kubelet"
url = "http://127.0.0.1:8080/healthz"
"#,
    )
    .expect("write probes.toml");
    let env: HashMap<String, String> = [("SHOP_TOKEN".to_owned(), SECRET.to_owned())].into();
    let text = std::fs::read_to_string(dir.path().join("probes.toml")).expect("read probes.toml");
    std::fs::write(dir.path().join("probes.toml"), text.replace("{USER_PASSWORD}", USER_PASSWORD))
        .expect("write probes.toml");
    match config::load_with(dir.path(), &env) {
        Ok(plan) => plan,
        Err(e) => panic!("the test configuration does not compile:\n{e}"),
    }
}

fn view<'a>(plan: &'a Plan, target: &str, name: &str) -> &'a View {
    plan.views()
        .find(|v| &*v.target == target && &*v.name == name)
        .unwrap_or_else(|| panic!("no view {target}/{name}"))
}

/// One probe of `view`: what it sent and what came back.
fn outcome(view: &View, status: u16, error: Option<ErrorCode>, total_ms: u64) -> Outcome {
    let peer: SocketAddr = match view.dial_endpoint().host {
        config::Host::Ip(ip) => SocketAddr::new(ip, view.dial_endpoint().port),
        config::Host::Name(_) => SocketAddr::from(([127, 0, 0, 1], view.dial_endpoint().port)),
    };
    let tls = view.scheme.uses_tls();
    Outcome {
        target: view.target.clone(),
        view: view.name.clone(),
        role: view.role,
        profile: view.profile,
        ok: error.is_none(),
        phase: error.map(ErrorCode::phase),
        error,
        detail: error.map(|_| format!("HTTP/1.1 {status} Service Unavailable {HOSTILE}")),
        status: Some(status),
        location: None,
        grpc_status: None,
        local_endpoints: None,
        timings: Timings {
            dns: None,
            connect: Some(Duration::from_micros(300)),
            tls: tls.then(|| Duration::from_millis(3)),
            ttfb: Some(Duration::from_millis(total_ms.saturating_sub(4))),
            total: Duration::from_millis(total_ms),
        },
        peer: Some(peer),
        local: Some(SocketAddr::from(([127, 0, 0, 1], 40000))),
        request: RequestSummary {
            scheme: view.scheme.as_str(),
            address: Some(peer),
            sni: tls.then(|| "shop.example.com".to_owned()),
            host: Some("shop.example.com".to_owned()),
            method: Some(view.http.method.to_string()),
            // As the probe records it: a query may hold a secret.
            path: Some(view.path_display().into_owned()),
            source: None,
            proxy_protocol: None,
            verify: tls,
            user_agent: view.http.user_agent.clone(),
            http_version: Some("HTTP/1.1"),
        },
        tls: tls.then(|| TlsSummary {
            version: Some("TLSv1_3".to_owned()),
            cipher: Some("TLS13_AES_128_GCM_SHA256".to_owned()),
            alpn: None,
            cert_subject: Some("CN=shop.example.com".to_owned()),
            cert_sans: vec!["shop.example.com".to_owned()],
            not_after: Some("2031-01-01T00:00:00Z".to_owned()),
            not_after_unix: Some(1_924_992_000),
            chain_len: 2,
            ..TlsSummary::default()
        }),
        resolved: Vec::new(),
        body_bytes: Some(12),
    }
}

fn verdict(state: &'static str, view: &View, ok: u32, fail: u32) -> VerdictStatus {
    VerdictStatus {
        state,
        since: (state != "unknown").then(|| rfc3339(Duration::from_secs(95))),
        consecutive_ok: ok,
        consecutive_fail: fail,
        rise: view.rise,
        fall: view.fall,
    }
}

fn view_status(
    view: &View,
    verdict: VerdictStatus,
    last: Option<Outcome>,
    recent: Vec<RecentProbe>,
) -> ViewStatus {
    let probes = recent.len() as u64;
    let failures = recent.iter().filter(|r| !r.ok).count() as u64;
    ViewStatus {
        name: view.name.to_string(),
        role: view.role,
        profile: view.profile,
        url: view.url_display.clone(),
        interval_ms: view.interval.as_millis() as u64,
        verdict,
        last_outcome: last,
        recent,
        probes,
        failures,
        skipped: 0,
    }
}

/// `n` probes, one per second up to now, latency rising; those in `failed` failed with `error`.
fn recent(n: usize, failed: impl Fn(usize) -> bool, error: ErrorCode) -> Vec<RecentProbe> {
    (0..n)
        .map(|i| {
            let ok = !failed(i);
            RecentProbe {
                at: rfc3339(Duration::from_secs((n - i) as u64)),
                ok,
                total_ms: 8.0 + (i % 7) as f64 * 3.5,
                error: (!ok).then_some(error.as_str()),
            }
        })
        .collect()
}

/// The document: `shop`'s client fails (503) while its `nlb` checker passes, an open blackhole
/// mismatch diagnosed `shallow_health_path` with hostile markup in its evidence; `gcp` has not
/// probed yet; `payments` agrees. The last reload failed with a hostile error.
fn status_doc(plan: &Plan) -> StatusDoc {
    let client = view(plan, "shop", "client");
    let nlb = view(plan, "shop", "nlb");
    let gcp = view(plan, "shop", "gcp");
    let pay = view(plan, "payments", "client");
    let kubelet = view(plan, "payments", "kubelet");

    let client_out = outcome(client, 503, Some(ErrorCode::HttpStatus), 41);
    let nlb_out = outcome(nlb, 200, None, 2);
    let mismatch = Mismatch {
        target: "shop".into(),
        target_id: "shop".into(),
        client_view: "client".into(),
        checker_view: "nlb".into(),
        direction: Direction::Blackhole,
        diagnosis: Diagnosis::ShallowHealthPath,
        flipped: vec![Attribute::Path],
        evidence: format!("{EVIDENCE} {HOSTILE}"),
        causes: Vec::new(),
        basis: Basis::Probes,
        client_address: client_out.peer,
        checker_address: nlb_out.peer,
        client_error: Some(ErrorCode::HttpStatus),
        checker_error: None,
        attribution: Some(Attribution {
            differences: vec![Attribute::Tls, Attribute::Path, Attribute::UserAgent],
            hybrids: vec![HybridResult {
                view: "nlb~path".into(),
                attribute: Attribute::Path,
                switched: Side::Checker,
                ok: false,
                error: Some(ErrorCode::HttpStatus),
                status: Some(503),
                flipped: true,
                outcome: None,
                hybrid: nlb.clone(),
            }],
            not_tried: 0,
            combinations: Vec::new(),
        }),
    };
    StatusDoc {
        version: "0.1.0-test",
        generation: 3,
        ready: true,
        started_at: rfc3339(Duration::from_secs(600)),
        plan_loaded_at: rfc3339(Duration::from_secs(300)),
        vantage: Some(config::Vantage {
            name: format!("node-a {HOSTILE}"),
            kind: config::VantageKind::Node,
            zone: Some("eu-west-1a".to_owned()),
            region: None,
            labels: Vec::new(),
        }),
        last_reload: Some(ReloadStatus {
            at: rfc3339(Duration::from_secs(30)),
            ok: false,
            errors: vec![format!(
                "probes.d/10-shop.toml: target[0].client.timeout: must be below interval {HOSTILE}"
            )],
        }),
        targets: vec![
            TargetStatus {
                name: "shop".to_owned(),
                id: "shop".to_owned(),
                views: vec![
                    view_status(
                        client,
                        verdict("unhealthy", client, 0, 4),
                        Some(client_out),
                        recent(20, |i| i >= 16, ErrorCode::HttpStatus),
                    ),
                    view_status(
                        nlb,
                        verdict("healthy", nlb, 20, 0),
                        Some(nlb_out),
                        recent(20, |_| false, ErrorCode::HttpStatus),
                    ),
                    view_status(gcp, verdict("unknown", gcp, 0, 0), None, Vec::new()),
                ],
                mismatches: vec![OpenMismatchStatus {
                    mismatch,
                    since: rfc3339(Duration::from_secs(12)),
                    opened_at: rfc3339(Duration::from_secs(8)),
                    open_for_s: 8.0,
                }],
                cluster: None,
                explained: Some(ExplainedStatus {
                    view: "client".to_owned(),
                    diagnosis: Diagnosis::NoReadyEndpoints,
                    evidence: format!("Service shop/web has no ready endpoint {HOSTILE}"),
                }),
            },
            TargetStatus {
                name: "payments".to_owned(),
                id: "payments".to_owned(),
                views: vec![
                    view_status(
                        pay,
                        verdict("healthy", pay, 9, 0),
                        Some(outcome(pay, 200, None, 5)),
                        recent(9, |_| false, ErrorCode::HttpStatus),
                    ),
                    view_status(
                        kubelet,
                        verdict("healthy", kubelet, 9, 0),
                        // kubelet accepts the app's redirect (200-399): its Location is shown.
                        Some(Outcome {
                            location: Some("https://pay.example.com/ready".to_owned()),
                            ..outcome(kubelet, 308, None, 1)
                        }),
                        recent(9, |_| false, ErrorCode::HttpStatus),
                    ),
                ],
                mismatches: Vec::new(),
                cluster: None,
                explained: None,
            },
        ],
        conditions: vec![Condition {
            kind: ConditionKind::IngressClassUnclaimed,
            object: "Ingress shop/web".to_owned(),
            target: Some("shop".into()),
            reason: None,
            message: format!("spec.ingressClassName nginx names no IngressClass {HOSTILE}"),
        }],
        discovery: Some(DiscoveryStatus {
            mode: "node",
            synced: true,
            healthy: false,
            failing_since: Some(rfc3339(Duration::from_secs(60))),
            targets: 2,
            rejected: vec![format!(
                "kubernetes/svc.shop.web.443.toml: target[0].checker[0].timeout: bad {HOSTILE}"
            )],
            notes: vec![format!("Ingress shop/re: a regex path cannot become a URL {HOSTILE}")],
            resources: vec![DiscoveryResource {
                resource: "services",
                synced: true,
                failing: true,
                errors: 4,
                objects: 3,
                last_error: Some("connection refused".to_owned()),
                ..DiscoveryResource::default()
            }],
            ..DiscoveryStatus::default()
        }),
    }
}

// ---- the server and a client ---------------------------------------------------------------

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// On 127.0.0.1 with `options`, listening on `listen` (port 0).
    async fn start_with(state: Arc<TestState>, options: admin::Options, listen: &str) -> Server {
        let listener = TcpListener::bind(listen).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let state: Arc<dyn AdminState> = state;
        let task = tokio::spawn(admin::serve_with(listener, state, shutdown, options));
        Server { addr, stop: Some(stop), task }
    }

    async fn start(state: Arc<TestState>, limits: Option<Limits>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let state: Arc<dyn AdminState> = state;
        let task = match limits {
            Some(limits) => tokio::spawn(admin::serve_with(listener, state, shutdown, limits)),
            None => tokio::spawn(admin::serve(listener, state, shutdown)),
        };
        Server { addr, stop: Some(stop), task }
    }

    /// Signals shutdown and waits (bounded) for `serve` to return; how long it took.
    async fn shut_down(mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let returned = timeout(Duration::from_secs(10), &mut self.task).await;
        let result = returned.expect("serve returns after shutdown").expect("serve does not panic");
        result.expect("serve returns Ok");
        started.elapsed()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn content_type(&self) -> &str {
        self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }
}

/// One request on a fresh connection, through hyper's client.
async fn send(addr: SocketAddr, method: Method, path: &str) -> Reply {
    timeout(IO_DEADLINE, async {
        let stream = TcpStream::connect(addr).await.expect("connect to the admin server");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("HTTP/1 handshake");
        tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply { status: parts.status, headers: parts.headers, body }
    })
    .await
    .expect("the admin server answers within 5 s")
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, Method::GET, path).await
}

/// Writes `request` as is and reads until the server closes (bounded).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    timeout(IO_DEADLINE, async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write request");
        let mut out = Vec::new();
        // A reset after the response is fine: what was read is what counts.
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .expect("the server closes the connection within 5 s")
}

fn default_server_state() -> (Arc<TestState>, StatusDoc) {
    let doc = status_doc(&plan());
    (TestState::new(doc.clone(), true), doc)
}

// ---- endpoints -----------------------------------------------------------------------------

#[tokio::test]
async fn healthz_is_200_ok_in_plain_text() {
    let (state, _) = default_server_state();
    let server = Server::start(state, None).await;
    let reply = get(server.addr, "/healthz").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type(), "text/plain; charset=utf-8");
    assert_eq!(reply.text(), "ok");
    assert_eq!(reply.headers.get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]));
}

#[tokio::test]
async fn readyz_follows_readiness_both_ways() {
    let (state, _) = default_server_state();
    state.ready.store(false, Ordering::SeqCst);
    let server = Server::start(state.clone(), None).await;

    let reply = get(server.addr, "/readyz").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.text(), "not ready");

    state.ready.store(true, Ordering::SeqCst);
    let reply = get(server.addr, "/readyz").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "ready");
    assert_eq!(reply.content_type(), "text/plain; charset=utf-8");

    state.ready.store(false, Ordering::SeqCst);
    assert_eq!(get(server.addr, "/readyz").await.status, StatusCode::SERVICE_UNAVAILABLE);
    // Liveness does not depend on readiness.
    assert_eq!(get(server.addr, "/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_are_the_daemons_text_as_openmetrics() {
    let (state, _) = default_server_state();
    let server = Server::start(state, None).await;
    let reply = get(server.addr, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type(), OPENMETRICS);
    assert_eq!(reply.text(), METRICS);
    assert_eq!(reply.headers.get("cache-control").map(|v| v.as_bytes()), Some(&b"no-store"[..]));
}

#[tokio::test]
async fn status_is_the_status_document_as_json() {
    let (state, doc) = default_server_state();
    let server = Server::start(state, None).await;
    let reply = get(server.addr, "/api/v1/status?pretty=1").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type(), "application/json");

    let served: serde_json::Value = serde_json::from_slice(&reply.body).expect("the body is JSON");
    let expected = serde_json::to_value(&doc).expect("the document serializes");
    assert_eq!(served, expected, "the body is exactly the status document");

    // The fields the dashboard and users rely on, spelled out.
    assert_eq!(served["version"], "0.1.0-test");
    assert_eq!(served["generation"], 3);
    assert_eq!(served["ready"], true);
    let shop = &served["targets"][0];
    assert_eq!(shop["name"], "shop");
    assert_eq!(shop["views"][0]["name"], "client");
    assert_eq!(shop["views"][0]["role"], "client");
    assert_eq!(shop["views"][0]["verdict"]["state"], "unhealthy");
    assert_eq!(shop["views"][0]["last_outcome"]["error"], "http_status");
    assert_eq!(shop["views"][0]["last_outcome"]["status"], 503);
    assert_eq!(shop["views"][0]["last_outcome"]["location"], serde_json::Value::Null);
    let kubelet = &served["targets"][1]["views"][1]["last_outcome"];
    assert_eq!(
        (kubelet["status"].as_u64(), kubelet["location"].as_str()),
        (Some(308), Some("https://pay.example.com/ready"))
    );
    assert_eq!(shop["views"][1]["profile"], "aws-nlb");
    assert_eq!(shop["views"][1]["verdict"]["state"], "healthy");
    let m = &shop["mismatches"][0];
    assert_eq!(m["checker_view"], "nlb");
    assert_eq!(m["direction"], "blackhole");
    assert_eq!(m["diagnosis"], "shallow_health_path");
    assert_eq!(m["flipped"], serde_json::json!(["path"]));
    assert_eq!(m["evidence"], format!("{EVIDENCE} {HOSTILE}"));
    assert_eq!(m["open_for_s"], 8.0);
}

/// The password of `payments`' client URL (`http://ops:PASSWORD@..`).
const USER_PASSWORD: &str = "pw-userinfo-5c1e";

/// Issue 18, finding 2: `views[].url` showed `http://user:password@host/..` in clear.
#[tokio::test]
async fn url_user_info_is_redacted_in_the_status_api() {
    let (state, _) = default_server_state();
    let server = Server::start(state, None).await;
    let text = get(server.addr, "/api/v1/status").await.text().to_owned();
    assert!(!text.contains(USER_PASSWORD), "the password leaked: {text}");
    let served: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let payments = served["targets"].as_array().expect("targets").iter().find(|t| t["name"] == "payments");
    let url = payments.and_then(|t| t["views"][0]["url"].as_str()).expect("payments' client url");
    assert_eq!(url, "http://ops:<redacted>@127.0.0.1:8080/pay");
}

#[tokio::test]
async fn status_json_holds_no_secret_and_no_markup_byte() {
    let (state, _) = default_server_state();
    let server = Server::start(state, None).await;
    let reply = get(server.addr, "/api/v1/status").await;
    let text = reply.text();
    assert!(!text.contains(SECRET), "the ${{env:..}} value leaked into /api/v1/status");
    // `<redacted>` and the hostile markup are in the document, but written as \u003c...\u003e.
    for byte in ['<', '>', '&'] {
        assert!(!text.contains(byte), "a raw {byte:?} in the JSON");
    }
    let served: serde_json::Value = serde_json::from_str(text).expect("JSON");
    let url = served["targets"][0]["views"][0]["url"].as_str().expect("url");
    assert!(url.contains("<redacted>"), "the client URL shows its secret redacted: {url}");
}

#[tokio::test]
async fn dashboard_is_one_self_contained_page_with_a_strict_policy() {
    let (state, _) = default_server_state();
    let server = Server::start(state, None).await;
    let reply = get(server.addr, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type(), "text/html; charset=utf-8");
    let html = reply.text();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<main id=\"targets\""));
    assert!(html.contains("fetch('/api/v1/status'"), "the script is inlined");
    // Nothing loaded from elsewhere: no src attribute, no stylesheet link, no CDN.
    assert!(!html.contains(" src="), "the page loads a resource");
    assert!(!html.contains("rel=\"stylesheet\""));
    assert!(!html.contains("https://"));
    // The page holds no data: it is the same whatever the state.
    assert!(!html.contains("shop") && !html.contains("nlb"));

    let csp = reply.headers.get(CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()).expect("a CSP header");
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(csp.contains("style-src 'sha256-"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(reply.headers.get("x-frame-options").map(|v| v.as_bytes()), Some(&b"DENY"[..]));
}

#[tokio::test]
async fn head_answers_the_head_without_a_body() {
    let (state, _) = default_server_state();
    let server = Server::start(state, None).await;
    let response =
        raw(server.addr, b"HEAD /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.to_ascii_lowercase().contains("content-length: 2\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\n"), "a HEAD response carries no body: {response:?}");

    let reply = send(server.addr, Method::HEAD, "/api/v1/status").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type(), "application/json");
    assert!(reply.body.is_empty());
    let length: usize = reply.headers[CONTENT_LENGTH].to_str().expect("ascii").parse().expect("a number");
    assert!(length > 1000, "HEAD reports the GET body's length, got {length}");
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let (state, _) = default_server_state();
    let server = Server::start(state, None).await;
    for path in [
        "/probe",
        "/probe?target=http://127.0.0.9/",
        "/api/v1/probe",
        "/api/v1/status/shop",
        "/index.html",
        "/favicon.ico",
        "/metrics/",
    ] {
        let reply = get(server.addr, path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "GET {path}");
        assert_eq!(reply.text(), "not found\n");
    }
    for path in ["/", "/healthz", "/readyz", "/metrics", "/api/v1/status"] {
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS] {
            let reply = send(server.addr, method.clone(), path).await;
            assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(
                reply.headers.get(ALLOW).map(|v| v.as_bytes()),
                Some(&b"GET, HEAD"[..]),
                "{method} {path}"
            );
        }
    }
    assert_eq!(send(server.addr, Method::POST, "/probe").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn no_request_makes_the_server_connect_anywhere() {
    let (state, _) = default_server_state();
    let server = Server::start(state, None).await;
    // Something an open proxy would dial.
    let bait = TcpListener::bind("127.0.0.9:0").await.expect("bind 127.0.0.9:0");
    let bait_addr = bait.local_addr().expect("addr");

    let absolute =
        format!("GET http://{bait_addr}/healthz HTTP/1.1\r\nHost: {bait_addr}\r\nConnection: close\r\n\r\n");
    let response = raw(server.addr, absolute.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 421"), "absolute-form to another host is misdirected: {response}");
    let own = server.addr;
    let absolute = format!("GET http://{own}/healthz HTTP/1.1\r\nHost: {own}\r\nConnection: close\r\n\r\n");
    let response = raw(server.addr, absolute.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "absolute-form is served locally: {response}");
    assert!(response.ends_with("ok"), "{response}");

    let connect = format!("CONNECT {bait_addr} HTTP/1.1\r\nHost: {bait_addr}\r\nConnection: close\r\n\r\n");
    let response = raw(server.addr, connect.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 421"), "CONNECT is no endpoint: {response}");
    let connect = format!("CONNECT {own} HTTP/1.1\r\nHost: {own}\r\nConnection: close\r\n\r\n");
    let response = raw(server.addr, connect.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 404"), "CONNECT is no endpoint: {response}");

    let probe = format!("/probe?url=http://{bait_addr}/&target={bait_addr}");
    assert_eq!(get(server.addr, &probe).await.status, StatusCode::NOT_FOUND);

    assert!(
        timeout(Duration::from_millis(300), bait.accept()).await.is_err(),
        "the admin server connected to an address named in a request"
    );
}

// ---- bounds --------------------------------------------------------------------------------

#[tokio::test]
async fn an_oversized_request_head_is_431() {
    let (state, _) = default_server_state();
    let server = Server::start(state, None).await;
    let big = "a".repeat(20 * 1024);
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    let response = raw(server.addr, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{}", &response[..response.len().min(200)]);

    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\n{many}Connection: close\r\n\r\n");
    let response = raw(server.addr, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 431"), "100 headers: {response}");
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off() {
    let (state, _) = default_server_state();
    let limits = Limits { header_read_timeout: Duration::from_millis(300), ..Limits::default() };
    let server = Server::start(state, Some(limits)).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n").await.expect("write");
    let mut out = Vec::new();
    let read = timeout(IO_DEADLINE, stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the connection stays open past the header read timeout");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "closed before the timeout: {took:?}");
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"), "a partial head was answered");

    // An idle keep-alive connection is closed by the same timer.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    let mut out = Vec::new();
    let read = timeout(IO_DEADLINE, stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "an idle keep-alive connection stays open past the header read timeout");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200 OK"));
}

#[tokio::test]
async fn connections_beyond_the_limit_are_answered_503_and_health_is_still_served() {
    let (state, _) = default_server_state();
    let limits = Limits { max_connections: 1, ..Limits::default() };
    let server = Server::start(state, Some(limits)).await;

    // The one general slot: a keep-alive connection that has been served.
    let mut holder = TcpStream::connect(server.addr).await.expect("connect");
    holder.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = timeout(IO_DEADLINE, holder.read(&mut buf)).await.expect("answered").expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"));

    let busy = raw(server.addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert!(busy.to_ascii_lowercase().contains("retry-after: 1"), "{busy}");

    // Health paths have slots of their own, which serve nothing else.
    let health = TcpStream::connect(server.addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(health)).await.expect("HTTP/1 handshake");
    tokio::spawn(conn);
    for path in ["/healthz", "/readyz", "/api/v1/status"] {
        let request =
            Request::get(path).header(HOST, "localhost").body(Empty::<Bytes>::new()).expect("request");
        let response =
            timeout(IO_DEADLINE, sender.send_request(request)).await.expect("answered").expect("response");
        let expected =
            if path == "/api/v1/status" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
        assert_eq!(response.status(), expected, "{path} on a health connection");
    }

    drop(holder);
    // The slot is free again once its holder has gone.
    let mut served = None;
    for _ in 0..50 {
        let reply = get(server.addr, "/metrics").await;
        if reply.status == StatusCode::OK {
            served = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served.is_some(), "the general slot was not given back");
}

#[tokio::test]
async fn a_connection_is_closed_at_the_end_of_its_lifetime() {
    let (state, _) = default_server_state();
    let limits = Limits {
        connection_lifetime: Duration::from_millis(300),
        header_read_timeout: Duration::from_secs(10),
        health_idle_timeout: Duration::from_secs(10),
        ..Limits::default()
    };
    let server = Server::start(state, Some(limits)).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    let mut out = Vec::new();
    // The idle timeouts are 10 s: an end well before them is the lifetime's.
    timeout(Duration::from_secs(3), stream.read_to_end(&mut out))
        .await
        .expect("the connection is closed after its lifetime")
        .expect("read");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200 OK"), "served before closing");
    assert!(started.elapsed() >= Duration::from_millis(250), "closed before its lifetime ended");
}

// ---- issue 18: slow clients, memory, Host -------------------------------------------------

/// A document of `views` views, 20 per target, each like `shop`'s `nlb` (last outcome and 3
/// recent probes): about 1 KB of JSON per view, as the red team's 20,000 views made 19.8 MB.
fn large_doc(views: usize) -> StatusDoc {
    let mut doc = status_doc(&plan());
    let mut template = doc.targets[0].views[1].clone();
    template.recent.truncate(3);
    let targets = views.div_ceil(20);
    doc.targets = (0..targets)
        .map(|t| TargetStatus {
            name: format!("target-{t:05}"),
            id: format!("target-{t:05}"),
            views: (0..20.min(views - t * 20))
                .map(|v| ViewStatus { name: format!("view-{v:02}"), ..template.clone() })
                .collect(),
            mismatches: Vec::new(),
            cluster: None,
            explained: None,
        })
        .collect();
    doc
}

/// Raises this process's soft limit of open files to the hard limit; the soft limit after.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read or write only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}

/// A connection from `source` (a loopback address), with a receive buffer of `rcvbuf` bytes if
/// given; a connect that does not finish within `within` is an error (a full backlog drops it).
async fn connect_from(
    source: [u8; 4],
    addr: SocketAddr,
    rcvbuf: Option<u32>,
    within: Duration,
) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(SocketAddr::from((source, 0)))?;
    match timeout(within, socket.connect(addr)).await {
        Ok(connected) => connected,
        Err(_) => Err(std::io::Error::other("connect timed out")),
    }
}

/// `count` connections from `source(i)`, each with a 4 KiB receive buffer, each writing
/// `GET path` pipelined (up to 1 MiB, until a write blocks for 200 ms) and never reading. The
/// streams are returned open.
async fn pipeline_without_reading(
    addr: SocketAddr,
    count: usize,
    source: impl Fn(usize) -> [u8; 4],
    path: &str,
) -> Vec<TcpStream> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut tasks = Vec::new();
    for i in 0..count {
        let (source, request) = (source(i), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = connect_from(source, addr, Some(4096), IO_DEADLINE).await.ok()?;
            let mut written = 0;
            while written < 1024 * 1024 {
                match timeout(Duration::from_millis(200), stream.write_all(request.as_bytes())).await {
                    Ok(Ok(())) => written += request.len(),
                    _ => break,
                }
            }
            Some(stream)
        }));
    }
    let mut streams = Vec::new();
    for task in tasks {
        if let Ok(Some(stream)) = task.await {
            streams.push(stream);
        }
    }
    streams
}

/// One health probe as a kubelet sends it (a fresh connection, `Host: ip:port`): the status
/// line, or why there was none within 2 s.
async fn kubelet_probe(addr: SocketAddr, path: &str) -> Result<String, String> {
    let probe = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.34\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        Ok(text.lines().next().unwrap_or("").to_owned())
    };
    match timeout(Duration::from_secs(2), probe).await {
        Ok(result) => result,
        Err(_) => Err("no answer within 2 s".to_owned()),
    }
}

/// Finding 3: 64 clients pipelining `GET /api/v1/status` and never reading, 2,000 idle
/// connections and 100 slowloris connections, all from 127.0.0.1 as the kubelet is, took
/// `/healthz` offline for minutes. Health has slots of its own, general slots are bounded per
/// client, idle and slow connections are closed (oldest first beyond 512 waiting), and
/// responses have a write deadline: every probe is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_take_healthz_offline() {
    // Each connection is two descriptors in this process (client and server side); the server
    // keeps at most 512 waiting ones. With a low hard limit, fewer idle connections (the same
    // attack, scaled down so that the test itself does not run out).
    let fds = raise_fd_limit();
    let idle_count = (fds.saturating_sub(1000) as usize).min(2000);
    assert!(idle_count >= 500, "too few file descriptors for the test: {fds}");
    let state = TestState::new(large_doc(5_000), true);
    let server = Server::start(state, None).await;
    let addr = server.addr;

    let slow = pipeline_without_reading(addr, 64, |_| [127, 0, 0, 1], "/api/v1/status").await;
    let mut idle = Vec::new();
    let mut refused = 0;
    while idle.len() + refused < idle_count && refused < 20 {
        match connect_from([127, 0, 0, 1], addr, None, Duration::from_millis(300)).await {
            Ok(stream) => idle.push(stream),
            Err(_) => refused += 1,
        }
    }
    let mut loris = Vec::new();
    for _ in 0..100 {
        if let Ok(mut stream) = connect_from([127, 0, 0, 1], addr, None, Duration::from_millis(300)).await {
            let _ = stream.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await;
            loris.push(stream);
        }
    }
    // The slowloris connections send one more byte every 300 ms (for at most a minute).
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            for stream in &mut loris {
                let _ = stream.try_write(b"a");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    eprintln!(
        "{} slow readers, {} idle connections ({refused} connects failed), slowloris running",
        slow.len(),
        idle.len()
    );

    let mut failures = Vec::new();
    for i in 0..20 {
        for path in ["/healthz", "/readyz"] {
            match kubelet_probe(addr, path).await {
                Ok(line) if line.starts_with("HTTP/1.1 200") => {}
                Ok(line) => failures.push(format!("probe {i} {path}: {line}")),
                Err(e) => failures.push(format!("probe {i} {path}: {e}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    trickle.abort();
    assert!(failures.is_empty(), "{} of 40 health probes failed:\n{}", failures.len(), failures.join("\n"));
    drop((slow, idle));
}

/// Finding 8: 64 connections requesting a 19.8 MB status document without reading took RSS
/// from 207 MB to 2.4 GB. The document is serialised once and its bytes shared, and at most 8
/// large responses are written at once: this process's resident memory grows by less than
/// 256 MiB (figures printed: `cargo test --test admin -- --nocapture non_reading`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_clients_of_a_large_status_keep_memory_bounded() {
    let doc = large_doc(20_000);
    let json_mib = serde_json::to_vec(&doc).expect("serializes").len() as f64 / (1024.0 * 1024.0);
    let state = TestState::new(doc, true);
    let server = Server::start(state.clone(), None).await;
    let addr = server.addr;
    let kib = |field| support_memory::proc_status_kib(field);
    let before = kib("VmRSS");
    // 64 client addresses, so that the per-client bound is not what holds the memory back.
    let slow = pipeline_without_reading(addr, 64, |i| [127, 0, 1, 1 + i as u8], "/api/v1/status").await;
    let mut peak = before;
    for _ in 0..40 {
        peak = peak.max(kib("VmRSS"));
        if peak.saturating_sub(before) > 1024 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let builds = state.status_calls.load(Ordering::SeqCst);
    drop(slow);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = kib("VmRSS");
    let mib = |k: u64| k as f64 / 1024.0;
    eprintln!(
        "status document {json_mib:.1} MiB of JSON; 64 non-reading clients: RSS {:.0} MiB before, \
         {:.0} MiB at the peak (+{:.0}), {:.0} MiB after they left; {builds} builds",
        mib(before),
        mib(peak),
        mib(peak.saturating_sub(before)),
        mib(after)
    );
    let grown = peak.saturating_sub(before);
    assert!(grown < 256 * 1024, "resident memory grew by {} MiB", grown / 1024);
}

/// Finding 8: the document is serialised once for many requests at once and the same bytes
/// are served to all; the summary comes from the same build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_document_is_serialised_once_and_shared() {
    let state = Arc::new(TestState::with(large_doc(2_000), true, Duration::ZERO, Some(7)));
    let limits = Limits {
        max_connections_per_client: 64,
        max_large_responses: 64,
        status_max_age: Duration::from_secs(3600),
        ..Limits::default()
    };
    let server = Server::start(state.clone(), Some(limits)).await;
    let addr = server.addr;
    let replies = futures_util::future::join_all((0..64).map(|_| get(addr, "/api/v1/status"))).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    assert!(replies.iter().all(|r| r.body == replies[0].body), "different bodies");
    let summary = get(addr, "/api/v1/status/summary").await;
    assert_eq!(state.status_calls.load(Ordering::SeqCst), 1, "status() built once for 65 requests");

    assert_eq!(summary.status, StatusCode::OK);
    assert_eq!(summary.content_type(), "application/json");
    let summary: serde_json::Value = serde_json::from_slice(&summary.body).expect("JSON");
    assert_eq!(summary["targets"], 100);
    assert_eq!(summary["views"], 2000);
    assert_eq!(summary["verdicts"]["healthy"], 2000);
    assert_eq!(summary["verdicts"]["unhealthy"], 0);
    assert_eq!(summary["mismatches"], 0);
    assert_eq!(summary["last_reload"]["errors"], 1);
    assert!(summary.get("conditions").is_some() && summary["targets"].is_number());
    assert!(summary.to_string().len() < 2048, "the summary has no per-view rows");

    // With no version, every request that does not share a build in progress builds anew.
    let state = TestState::new(large_doc(20), true);
    let server = Server::start(state.clone(), None).await;
    get(server.addr, "/api/v1/status").await;
    get(server.addr, "/api/v1/status").await;
    assert_eq!(state.status_calls.load(Ordering::SeqCst), 2);
}

/// Beyond `max_large_responses`, large responses are 503 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_responses_beyond_the_bound_are_503_and_a_stalled_one_is_cut_off() {
    let state = TestState::new(large_doc(5_000), true);
    let limits =
        Limits { max_large_responses: 1, write_timeout: Duration::from_millis(500), ..Limits::default() };
    let server = Server::start(state, Some(limits)).await;
    let addr = server.addr;
    // One client that does not read holds the one permit...
    let stalled = pipeline_without_reading(addr, 1, |_| [127, 0, 0, 2], "/api/v1/status").await;
    assert_eq!(stalled.len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = get(addr, "/api/v1/status").await;
    assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE, "{}", busy.text());
    assert_eq!(busy.headers.get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
    // ... until its write deadline closes it: then the next is served.
    let mut served = false;
    for _ in 0..100 {
        if get(addr, "/api/v1/status").await.status == StatusCode::OK {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the stalled response was never cut off");
    let mut stalled = stalled;
    let mut sink = vec![0u8; 1 << 20];
    let mut closed = false;
    for _ in 0..200 {
        match timeout(IO_DEADLINE, stalled[0].read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => {}
            Err(_) => break,
        }
    }
    assert!(closed, "the stalled connection was not closed");
}

/// Finding 10: `Host: evil.example` got the status API, `/metrics` and the dashboard (DNS
/// rebinding). Only the listen address, `localhost` and `[admin] allowed_hosts` are served.
#[tokio::test]
async fn a_foreign_host_header_is_answered_421() {
    let (state, _) = default_server_state();
    let server = Server::start(state, None).await;
    let addr = server.addr;
    for path in ["/", "/metrics", "/api/v1/status", "/readyz", "/nowhere"] {
        for host in ["evil.example", "evil.example:9464", "127.0.0.1.nip.io"] {
            let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            let response = raw(addr, request.as_bytes()).await;
            assert!(response.starts_with("HTTP/1.1 421"), "{path} with Host {host}: {response}");
            assert!(response.contains("add it to [admin] allowed_hosts"), "{response}");
            assert!(!response.contains("parallax_view_up") && !response.contains("shop"), "{response}");
        }
        // An absolute-form target's authority is the host.
        let request =
            format!("GET http://evil.example{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let response = raw(addr, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 421"), "absolute {path}: {response}");
    }
    for host in [
        addr.to_string(),
        "127.0.0.1".to_owned(),
        format!("localhost:{}", addr.port()),
        "LocalHost".to_owned(),
    ] {
        let request = format!("GET /api/v1/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let response = raw(addr, request.as_bytes()).await;
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "Host {host}: {}",
            &response[..response.len().min(200)]
        );
    }
    // HTTP/1.0 without Host: no browser sends that, so no page can.
    let response = raw(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"), "{response}");
}

/// `[admin] allowed_hosts` names are served; a wildcard listen address takes any IP literal.
#[tokio::test]
async fn allowed_hosts_and_ip_literals_on_a_wildcard_address_are_served() {
    let (state, _) = default_server_state();
    let options =
        admin::Options { allowed_hosts: vec!["parallax.internal".to_owned()], ..admin::Options::default() };
    let server = Server::start_with(state.clone(), options, "127.0.0.1:0").await;
    for (host, code) in
        [("parallax.internal:9464", "200"), ("PARALLAX.internal.", "200"), ("other.internal", "421")]
    {
        let request = format!("GET /api/v1/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let response = raw(server.addr, request.as_bytes()).await;
        assert!(
            response.starts_with(&format!("HTTP/1.1 {code}")),
            "Host {host}: {}",
            &response[..response.len().min(200)]
        );
    }
    // Listening on 0.0.0.0 (a pod): the kubelet's Host is the pod IP.
    let server = Server::start_with(state, admin::Options::default(), "0.0.0.0:0").await;
    let port = server.addr.port();
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    for (host, code) in [
        (format!("10.244.3.7:{port}"), "200"),
        ("[fd00::7]".to_owned(), "200"),
        ("evil.example".to_owned(), "421"),
    ] {
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let response = raw(local, request.as_bytes()).await;
        assert!(response.starts_with(&format!("HTTP/1.1 {code}")), "Host {host}: {response}");
    }
}

// ---- shutdown ------------------------------------------------------------------------------

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let (state, _) = default_server_state();
    let server = Server::start(state, None).await;
    let addr = server.addr;

    // A keep-alive connection that has been served and now idles.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    let mut buf = vec![0u8; 1024];
    let n = timeout(IO_DEADLINE, idle.read(&mut buf)).await.expect("answered").expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"));

    let took = server.shut_down().await;
    // The default grace is 5 s: returning well before it means the idle connection closed at once.
    assert!(took < Duration::from_secs(2), "serve took {took:?} to return");
    let mut rest = Vec::new();
    let read = timeout(Duration::from_secs(1), idle.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the idle connection is closed: {read:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "the listener still accepts after shutdown");
}

#[tokio::test]
async fn shutdown_lets_a_response_in_flight_finish() {
    let (_, doc) = default_server_state();
    let state = Arc::new(TestState::with(doc, true, Duration::from_millis(600), None));
    let server = Server::start(state, None).await;
    let addr = server.addr;
    let in_flight = tokio::spawn(async move { get(addr, "/metrics").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let took = server.shut_down().await;
    let reply = timeout(IO_DEADLINE, in_flight).await.expect("the request finishes").expect("no panic");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), METRICS, "the in-flight response is complete");
    assert!(took >= Duration::from_millis(250), "serve returned before the response was done: {took:?}");
}

// ---- the dashboard in a real browser -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_views_verdicts_and_mismatches_in_chromium() {
    let (state, _) = default_server_state();
    let server = Server::start(state, None).await;
    let dom = chromium_dom(&format!("http://{}/", server.addr)).await;

    assert_has(
        start_tag(&dom, "id=\"targets\""),
        "data-loaded=\"true\"",
        "the status was fetched and rendered",
    );
    assert_has(start_tag(&dom, "id=\"fetch-error\""), "hidden", "no fetch error shown");

    // Header: version, generation, readiness, the failed reload and its error.
    assert_has(&dom, "id=\"version\">0.1.0-test<", "version");
    assert_has(&dom, "id=\"generation\">3<", "generation");
    assert_has(start_tag(&dom, "id=\"readiness\""), "data-ready=\"true\"", "readiness");
    assert_has(element(&dom, "id=\"readiness\"", "</dd>"), "Ready", "readiness text");
    assert_has(start_tag(&dom, "id=\"reload\""), "data-ok=\"false\"", "last reload");
    assert_has(element(&dom, "id=\"reload\"", "</dd>"), "failed", "last reload text");
    let reload_errors = element(&dom, "id=\"reload-errors\"", "</section>");
    assert!(!start_tag(&dom, "id=\"reload-errors\"").contains("hidden"), "reload errors are shown");
    assert_has(reload_errors, "target[0].client.timeout: must be below interval", "reload error");

    // Discovery: failing, the last good objects kept; what failed, was rejected and skipped.
    assert_has(start_tag(&dom, "id=\"discovery\""), "data-ok=\"false\"", "discovery state");
    assert_has(element(&dom, "id=\"discovery\"", "</dd>"), "failing since", "discovery text");
    let discovery = element(&dom, "id=\"discovery-detail\"", "</section>");
    assert!(!start_tag(&dom, "id=\"discovery-detail\"").contains("hidden"), "discovery detail shown");
    assert_has(discovery, "services: failing (4 errors)", "the failing kind");
    assert_has(discovery, "connection refused", "its error");
    assert_has(discovery, "rejected: <code>kubernetes/svc.shop.web.443.toml", "the rejected target");
    assert_has(discovery, "skipped: Ingress shop/re: a regex path", "the note");
    assert_has(discovery, "&lt;img src=x", "hostile discovery text, as text");

    // One block per target, in order.
    let shop = element(&dom, "data-target=\"shop\"", "</section>");
    let payments = element(&dom, "data-target=\"payments\"", "</section>");
    assert!(dom.find("data-target=\"shop\"") < dom.find("data-target=\"payments\""));
    assert_has(shop, "class=\"target-name\" id=\"target-0-name\">shop<", "target name");

    // Client and checker views side by side with their verdicts and last outcomes.
    let client = element(shop, "data-view=\"client\"", "</article>");
    assert_has(start_tag(client, "data-view"), "data-verdict=\"unhealthy\"", "client verdict");
    assert_has(client, "class=\"verdict-text\">unhealthy<", "client verdict text");
    assert_has(client, "class=\"outcome-phase\">http<", "client phase");
    assert_has(client, "class=\"outcome-error\">http_status<", "client error");
    assert_has(client, "class=\"outcome-status\">503<", "client status");
    assert_has(client, "class=\"outcome-latency\">41ms<", "client latency");
    assert_has(client, "class=\"sparkline\"", "client trend");
    assert_has(client, "4 of 20 failed", "client trend caption");
    assert_has(client, "&lt;redacted&gt;", "the client URL, redacted");
    let nlb = element(shop, "data-view=\"nlb\"", "</article>");
    assert_has(start_tag(nlb, "data-view"), "data-role=\"checker\"", "nlb role");
    assert_has(start_tag(nlb, "data-view"), "data-verdict=\"healthy\"", "nlb verdict");
    assert_has(nlb, "class=\"verdict-text\">healthy<", "nlb verdict text");
    assert_has(nlb, "class=\"outcome-status\">200<", "nlb status");
    assert_has(nlb, "aws-nlb", "nlb profile");
    assert_has(nlb, "disagrees with client", "nlb marked as disagreeing");
    let gcp = element(shop, "data-view=\"gcp\"", "</article>");
    assert_has(start_tag(gcp, "data-view"), "data-verdict=\"unknown\"", "gcp verdict");
    assert_has(gcp, "No probe has finished yet.", "gcp without outcome");

    // The open mismatch, with direction, diagnosis, flipped attributes and evidence.
    let mismatch = element(shop, "data-mismatch=\"nlb\"", "</article>");
    let tag = start_tag(mismatch, "data-mismatch");
    assert_has(tag, "data-direction=\"blackhole\"", "direction attribute");
    assert_has(tag, "data-diagnosis=\"shallow_health_path\"", "diagnosis attribute");
    assert_has(mismatch, "Blackhole", "direction text");
    assert_has(mismatch, "class=\"diagnosis-code\">shallow_health_path<", "diagnosis");
    assert_has(mismatch, "The health path passes while the users", "diagnosis explained");
    assert_has(mismatch, EVIDENCE, "evidence");
    assert_has(element(mismatch, "class=\"flipped\"", "</dd>"), "<code>path</code>", "flipped attributes");
    assert_has(mismatch, "nlb~path", "attribution hybrids");
    assert!(shop.find("data-mismatch=\"nlb\"") < shop.find("data-view=\"client\""), "mismatches come first");

    // What the cluster says: the target's explained failure, the plan's conditions.
    let explained = element(shop, "class=\"explained\"", "</p>");
    assert_has(
        start_tag(explained, "class=\"explained\""),
        "data-diagnosis=\"no_ready_endpoints\"",
        "explained",
    );
    assert_has(explained, "Service shop/web has no ready endpoint &lt;img", "explained evidence, as text");
    let conditions = element(&dom, "id=\"conditions\"", "</section>");
    assert!(!start_tag(conditions, "id=\"conditions\"").contains("hidden"), "conditions shown: {conditions}");
    assert_has(conditions, "data-condition=\"ingress_class_unclaimed\"", "the condition");
    assert_has(conditions, "Ingress shop/web", "its object");
    assert_has(conditions, "names no IngressClass &lt;img", "its message, as text");

    // The agreeing target.
    assert!(!payments.contains("data-mismatch="), "payments has no mismatch");
    assert_has(start_tag(payments, "data-view=\"kubelet\""), "data-verdict=\"healthy\"", "kubelet verdict");
    assert_has(
        element(payments, "data-view=\"kubelet\"", "</article>"),
        "class=\"outcome-status\">308 → <code class=\"outcome-location\">https://pay.example.com/ready</code><",
        "the redirect's Location next to its status",
    );
    assert_has(payments, "no open mismatch", "payments summary");

    // Hostile text stays text; the secret is nowhere.
    assert_has(mismatch, "&lt;img src=x onerror=\"document.title='pwned'\"&gt;", "hostile evidence, as text");
    assert_has(client, "&lt;img src=x", "hostile outcome detail, as text");
    assert_has(reload_errors, "&lt;img src=x", "hostile reload error, as text");
    assert!(!dom.contains("<img"), "markup from the status document became an element");
    assert!(!dom.contains("pwned</title>"), "an injected handler ran");
    assert_has(&dom, "<title>parallax — 1 mismatch</title>", "document title");
    assert!(!dom.contains(SECRET), "the ${{env:..}} value reached the page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_a_daemon_not_ready_without_targets_in_chromium() {
    let doc = StatusDoc {
        version: "0.1.0-test",
        generation: 1,
        started_at: rfc3339(Duration::from_secs(2)),
        plan_loaded_at: rfc3339(Duration::from_secs(1)),
        ..StatusDoc::default()
    };
    let server = Server::start(TestState::new(doc, false), None).await;
    let dom = chromium_dom(&format!("http://{}/", server.addr)).await;

    assert_has(
        start_tag(&dom, "id=\"targets\""),
        "data-loaded=\"true\"",
        "the status was fetched and rendered",
    );
    assert_has(start_tag(&dom, "id=\"readiness\""), "data-ready=\"false\"", "readiness");
    assert_has(element(&dom, "id=\"readiness\"", "</dd>"), "Not ready", "readiness text");
    assert_has(start_tag(&dom, "id=\"discovery-fact\""), "hidden", "no discovery configured: no fact");
    assert_has(element(&dom, "id=\"reload\"", "</dd>"), "none since start", "no reload yet");
    assert_has(start_tag(&dom, "id=\"reload-errors\""), "hidden", "no reload errors shown");
    assert_has(start_tag(&dom, "id=\"mismatch-index\""), "hidden", "no mismatch index");
    assert_has(element(&dom, "id=\"targets\"", "</main>"), "No targets in the running plan.", "empty plan");
    assert_has(&dom, "id=\"overview\" role=\"status\" aria-live=\"polite\">0 targets, 0 views", "overview");
    assert_has(&dom, "<title>parallax</title>", "document title");
}

// ---- accept failures ------------------------------------------------------------------------

const FD_CHILD: &str = "PARALLAX_TEST_ADMIN_FD_EXHAUSTION";

/// Finding 9 (part): out of file descriptors, the admin server logged 167 accept failures a
/// minute. Now it backs off (10 ms doubling to 1 s) and logs once when accepting starts failing
/// and once when it recovers, with the count. Runs in a child process of this test binary: the
/// file descriptor limit it lowers is the whole process's.
#[test]
fn accept_failures_back_off_and_are_logged_once_per_state_change() {
    if std::env::var_os(FD_CHILD).is_some() {
        return fd_exhaustion_in_this_process();
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args(["--exact", "accept_failures_back_off_and_are_logged_once_per_state_change", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(FD_CHILD, "1")
        .output()
        .expect("run the child");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the child failed:\n{text}");
    assert!(text.contains("1 passed"), "the child ran no test:\n{text}");
}

/// The child's side: a server, connections queued while no descriptor is free, then freed.
fn fd_exhaustion_in_this_process() {
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (state, _) = default_server_state();
        let server = Server::start(state, None).await;
        let sockets: Vec<_> = (0..20).map(|_| tokio::net::TcpSocket::new_v4().expect("socket")).collect();
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: the calls read or write only the struct passed, or open and close /dev/null.
        let lowest_free = unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
            let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            assert!(fd >= 0);
            libc::close(fd);
            fd as libc::rlim_t
        };
        let exhausted = libc::rlimit { rlim_cur: lowest_free, rlim_max: limit.rlim_max };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &exhausted) }, 0);
        // Connecting takes no new descriptor on this side; accepting needs one on the server's.
        let mut clients = Vec::new();
        for socket in sockets {
            clients.push(socket.connect(server.addr).await.expect("the backlog takes it"));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        let probe = kubelet_probe(server.addr, "/healthz").await;
        assert!(probe.as_deref().is_ok_and(|l| l.starts_with("HTTP/1.1 200")), "{probe:?}");
        drop(clients);
    });
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    let failed = text.lines().filter(|l| l.contains("accept failed")).count();
    let recovered: Vec<&str> = text.lines().filter(|l| l.contains("accepting connections again")).collect();
    assert_eq!(failed, 1, "one line when accepting starts failing:\n{text}");
    assert!(text.contains("No file descriptors available") || text.contains("Too many open files"), "{text}");
    assert_eq!(recovered.len(), 1, "one line when it recovers:\n{text}");
    // 1.5 s of backoff from 10 ms doubling: about 8 attempts, never the 15 of a fixed 100 ms.
    let count: u64 = recovered[0]
        .split("failures=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {}", recovered[0]));
    assert!((2..=12).contains(&count), "{count} failed accepts in 1.5 s: {text}");
}
