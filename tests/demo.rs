//! `parallax demo` end to end: the binary is run as a user runs it (`--listen 127.0.0.1:0`, stdout
//! a pipe), its printed dashboard URL is parsed, `/api/v1/status` is polled until every expected
//! mismatch is open, then headless Chromium loads the dashboard from the running demo and the
//! test asserts what it renders. Also: it stops by itself (`--for`) and on SIGINT with exit 0,
//! falls back to a free port when `--listen`'s is taken, keeps stdout free of JSON events unless
//! `--events`, exports no OTLP unless `--otlp` (whatever OTEL_* says), and `--help` explains
//! every target.
//!
//! The browser test needs Debian's `chromium` package (`apt-get install -y chromium`), or
//! `PARALLAX_CHROMIUM` naming another Chromium binary; without one it fails saying so
//! (`support/browser.rs`). Only loopback is ever addressed; every wait is bounded.

#[path = "support/browser.rs"]
mod browser;

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use browser::{assert_has, chromium_dom, element, start_tag};

/// Every mismatch the demo must open: (target, checker, direction, diagnosis, flipped).
const EXPECTED: [(&str, &str, &str, &str, &[&str]); 7] = [
    ("shallow-health", "alb", "blackhole", "shallow_health_path", &["path"]),
    ("tls-port", "alb", "false_drain", "checker_protocol_mismatch", &["tls"]),
    ("etp-local", "kube-proxy", "false_drain", "no_local_endpoints", &["address"]),
    ("allowlist", "gcp", "false_drain", "checker_source_blocked", &[]),
    ("no-sni", "appgw", "false_drain", "sni_mismatch", &["sni"]),
    ("host-route", "alb", "false_drain", "host_route_mismatch", &["host"]),
    ("status-204", "gcp", "false_drain", "status_matcher_mismatch", &[]),
];

/// The target where every view agrees.
const HEALTHY: &str = "healthy";

/// How long the demo may take to open every mismatch (they open within ~8 s on an idle machine:
/// the slowest is the blackhole, whose ALB view needs 5 successes to rise, plus the 2 s hold).
const MISMATCHES_WITHIN: Duration = Duration::from_secs(45);

/// A running `parallax demo` whose stdout and stderr are collected as they come.
struct Demo {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Demo {
    /// Starts `parallax demo ARGS` with `env` added to the environment.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Demo {
        let mut command = Command::new(env!("CARGO_BIN_EXE_parallax"));
        command
            .arg("demo")
            .args(args)
            .env_remove("PARALLAX_LOG")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the parallax binary starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped stdout"), stdout.clone()),
            collect(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Demo { child, stdout, stderr, readers }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The dashboard URL the demo printed on `stream` (`Dashboard: http://...`), waiting for it.
    async fn dashboard_url(&self, on_stderr: bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = if on_stderr { self.stderr() } else { self.stdout() };
            if let Some(url) = text.lines().find_map(|l| l.strip_prefix("Dashboard: ")) {
                let url = url.trim().to_owned();
                assert!(url.starts_with("http://127.0.0.1:") && url.ends_with('/'), "dashboard URL: {url}");
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "no `Dashboard: ` line within 30 s\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit by itself, for at most `within`; then for its output.
    async fn exit(&mut self, within: Duration) -> ExitStatus {
        let status = match timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("waiting for parallax"),
            Err(_) => panic!(
                "parallax demo did not exit within {within:?}\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            ),
        };
        for reader in self.readers.drain(..) {
            let _ = timeout(Duration::from_secs(5), reader).await;
        }
        status
    }

    /// Sends SIGINT (what Ctrl-C sends) to the demo, then waits for it to exit.
    async fn interrupt(&mut self, within: Duration) -> ExitStatus {
        let pid = self.child.id().expect("the demo is still running");
        let sent = Command::new("kill").args(["-INT", &pid.to_string()]).status().await.expect("kill runs");
        assert!(sent.success(), "kill -INT {pid}");
        self.exit(within).await
    }
}

impl Drop for Demo {
    /// A test that fails midway stops its demo with SIGTERM, so the demo removes its temporary
    /// CA directory; `kill_on_drop` then ends one that did not stop within 3 s.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let Some(pid) = self.child.id() else { return };
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        for _ in 0..60 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Appends everything read from `pipe` to `into`, until it closes.
fn collect(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<String>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = into.lock().unwrap_or_else(|e| e.into_inner());
            text.push_str(&line);
            text.push('\n');
        }
    })
}

/// `GET url+path` over HTTP/1.1 on loopback: the status code and the body.
async fn get(url: &str, path: &str) -> (u16, String) {
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let addr: SocketAddr = authority.parse().expect("the dashboard URL names ip:port");
    assert!(addr.ip().is_loopback(), "only loopback is addressed: {addr}");
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the admin server");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send the request");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read the response");
        response
    };
    let response =
        timeout(Duration::from_secs(10), exchange).await.expect("the admin server answers within 10 s");
    let text = String::from_utf8(response).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    (status, body.to_owned())
}

/// The open mismatches of `target` in a status document.
fn mismatches<'a>(status: &'a Value, target: &str) -> Vec<&'a Value> {
    target_status(status, target)["mismatches"].as_array().map(|m| m.iter().collect()).unwrap_or_default()
}

fn target_status<'a>(status: &'a Value, target: &str) -> &'a Value {
    status["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == target))
        .unwrap_or_else(|| panic!("no target {target} in the status: {status:#}"))
}

fn view<'a>(status: &'a Value, target: &str, view: &str) -> &'a Value {
    target_status(status, target)["views"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == view))
        .unwrap_or_else(|| panic!("no view {target}/{view} in the status"))
}

/// Whether every expected mismatch is open and every view of the healthy target is healthy.
fn settled(status: &Value) -> bool {
    EXPECTED
        .iter()
        .all(|(target, checker, ..)| mismatches(status, target).iter().any(|m| m["checker_view"] == *checker))
        && target_status(status, HEALTHY)["views"]
            .as_array()
            .is_some_and(|vs| vs.iter().all(|v| v["verdict"]["state"] == "healthy"))
}

/// One line per target: its views' verdicts and its open mismatches, for failure messages.
fn summary(status: &Value) -> String {
    let mut out = String::new();
    for t in status["targets"].as_array().into_iter().flatten() {
        let views: Vec<String> = t["views"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| format!("{}={} ({})", v["name"], v["verdict"]["state"], v["last_outcome"]["error"]))
            .collect();
        let open: Vec<String> = t["mismatches"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| format!("{}: {} / {}", m["checker_view"], m["direction"], m["diagnosis"]))
            .collect();
        out.push_str(&format!("{}: {} | open: {}\n", t["name"], views.join(", "), open.join("; ")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_opens_every_expected_mismatch_and_the_dashboard_in_chromium_shows_them() {
    // A collector that must never be called: OTEL_* alone does not turn the demo's exports on.
    let collector = TcpListener::bind("127.0.0.1:0").await.expect("bind the decoy collector");
    let collector_url = format!("http://{}", collector.local_addr().expect("collector address"));
    let mut demo = Demo::start(
        &["--listen", "127.0.0.1:0", "--for", "120s"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &collector_url)],
    );
    let url = demo.dashboard_url(false).await;

    // Poll the status API until every mismatch is open (bounded).
    let deadline = Instant::now() + MISMATCHES_WITHIN;
    let status = loop {
        let (code, body) = get(&url, "/api/v1/status").await;
        assert_eq!(code, 200, "/api/v1/status: {body}");
        let status: Value = serde_json::from_str(&body).expect("the status is JSON");
        if settled(&status) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "not every expected mismatch opened within {MISMATCHES_WITHIN:?}:\n{}\nstdout:\n{}\nstderr:\n{}",
            summary(&status),
            demo.stdout(),
            demo.stderr()
        );
        sleep(Duration::from_millis(250)).await;
    };
    let context = summary(&status);

    assert_eq!(status["ready"], true, "{context}");
    let names: Vec<&str> =
        status["targets"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    let mut want: Vec<&str> = vec![HEALTHY];
    want.extend(EXPECTED.iter().map(|e| e.0));
    assert_eq!(names, want, "the demo's targets, in order");

    for (target, checker, direction, diagnosis, flipped) in EXPECTED {
        let open = mismatches(&status, target);
        assert_eq!(open.len(), 1, "{target}: exactly one open mismatch\n{context}");
        let m = open[0];
        assert_eq!(m["client_view"], "client", "{target}: {m:#}");
        assert_eq!(m["checker_view"], checker, "{target}: {m:#}");
        assert_eq!(m["direction"], direction, "{target}: {m:#}");
        assert_eq!(m["diagnosis"], diagnosis, "{target}: {m:#}");
        let got: Vec<&str> =
            m["flipped"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        assert_eq!(got, flipped, "{target}: flipped attributes: {m:#}");
        assert!(m["evidence"].as_str().is_some_and(|e| !e.is_empty()), "{target}: evidence: {m:#}");
    }
    assert_eq!(mismatches(&status, "allowlist")[0]["basis"], "audit", "the allowlist gap needs no traffic");
    assert!(mismatches(&status, HEALTHY).is_empty(), "the healthy target has no mismatch\n{context}");

    // What each failure looks like from the views.
    assert_eq!(view(&status, "tls-port", "alb")["last_outcome"]["error"], "http_tls_required");
    assert_eq!(view(&status, "etp-local", "kube-proxy")["last_outcome"]["local_endpoints"], 0);
    assert_eq!(view(&status, "no-sni", "appgw")["last_outcome"]["error"], "tls_cert_name_mismatch");
    assert_eq!(view(&status, "host-route", "alb")["last_outcome"]["status"], 404);
    assert_eq!(view(&status, "status-204", "gcp")["last_outcome"]["status"], 204);
    assert_eq!(view(&status, "shallow-health", "client")["last_outcome"]["status"], 503);
    assert_eq!(view(&status, "shallow-health", "alb")["verdict"]["state"], "healthy");
    // Nothing was dialed beyond loopback.
    for t in status["targets"].as_array().into_iter().flatten() {
        for v in t["views"].as_array().into_iter().flatten() {
            if let Some(peer) = v["last_outcome"]["peer"].as_str() {
                let peer: SocketAddr = peer.parse().expect("a peer address");
                assert!(peer.ip().is_loopback(), "{}/{} dialed {peer}", t["name"], v["name"]);
            }
        }
    }

    // The dashboard, rendered by a real browser from the running demo.
    let dom = chromium_dom(&url).await;
    assert_has(
        start_tag(&dom, "id=\"targets\""),
        "data-loaded=\"true\"",
        "the status was fetched and rendered",
    );
    assert_has(start_tag(&dom, "id=\"fetch-error\""), "hidden", "no fetch error shown");
    assert_has(start_tag(&dom, "id=\"readiness\""), "data-ready=\"true\"", "readiness");
    assert_has(&dom, "<title>parallax — 7 mismatches</title>", "document title");
    for target in &want {
        let section = element(&dom, &format!("data-target=\"{target}\""), "</section>");
        let client = element(section, "data-view=\"client\"", "</article>");
        assert_has(start_tag(client, "data-view"), "data-role=\"client\"", "client view");
    }
    let healthy = element(&dom, &format!("data-target=\"{HEALTHY}\""), "</section>");
    assert!(!healthy.contains("data-mismatch="), "the healthy target shows no mismatch:\n{healthy}");
    assert_has(healthy, "no open mismatch", "the healthy target's summary");
    for view in ["client", "alb", "kube-proxy"] {
        let article = element(healthy, &format!("data-view=\"{view}\""), "</article>");
        assert_has(
            start_tag(article, "data-view"),
            "data-verdict=\"healthy\"",
            &format!("healthy/{view} verdict"),
        );
    }
    for (target, checker, direction, diagnosis, flipped) in EXPECTED {
        let section = element(&dom, &format!("data-target=\"{target}\""), "</section>");
        let mismatch = element(section, &format!("data-mismatch=\"{checker}\""), "</article>");
        let tag = start_tag(mismatch, "data-mismatch");
        assert_has(tag, &format!("data-direction=\"{direction}\""), &format!("{target}: direction"));
        assert_has(tag, &format!("data-diagnosis=\"{diagnosis}\""), &format!("{target}: diagnosis"));
        assert_has(
            mismatch,
            &format!("class=\"diagnosis-code\">{diagnosis}<"),
            &format!("{target}: diagnosis shown"),
        );
        for attribute in flipped {
            assert_has(
                mismatch,
                &format!("<code>{attribute}</code>"),
                &format!("{target}: flipped {attribute}"),
            );
        }
        let checker_view = element(section, &format!("data-view=\"{checker}\""), "</article>");
        assert_has(
            start_tag(checker_view, "data-view"),
            "data-mismatched=\"true\"",
            &format!("{target}/{checker}"),
        );
    }
    let verdict = |target: &str, view: &str| {
        let section = element(&dom, &format!("data-target=\"{target}\""), "</section>");
        start_tag(element(section, &format!("data-view=\"{view}\""), "</article>"), "data-view").to_owned()
    };
    assert_has(
        &verdict("shallow-health", "client"),
        "data-verdict=\"unhealthy\"",
        "users fail behind the blackhole",
    );
    assert_has(&verdict("shallow-health", "alb"), "data-verdict=\"healthy\"", "the ALB keeps it in service");
    assert_has(&verdict("tls-port", "alb"), "data-verdict=\"unhealthy\"", "the ALB drains tls-port");
    assert_has(&verdict("tls-port", "client"), "data-verdict=\"healthy\"", "users are served on tls-port");
    assert_has(
        element(element(&dom, "data-target=\"tls-port\"", "</section>"), "data-view=\"alb\"", "</article>"),
        "class=\"outcome-error\">http_tls_required<",
        "the ALB's last outcome",
    );

    // Ctrl-C: a clean stop, exit 0, with a last snapshot.
    let status = demo.interrupt(Duration::from_secs(30)).await;
    assert!(status.success(), "exit after SIGINT: {status}\nstderr:\n{}", demo.stderr());
    let stdout = demo.stdout();
    let last = stdout.rfind("parallax demo stopped after").map(|i| &stdout[i..]);
    let last = last.unwrap_or_else(|| panic!("no final snapshot:\n{stdout}"));
    // The terminal table: a row per view with its verdict, the mismatch on its checker's row,
    // and why.
    for (target, checker, direction, diagnosis, _) in EXPECTED {
        let row = |l: &&str| l.split_whitespace().nth(usize::from(!l.starts_with(' '))) == Some(checker);
        assert!(
            last.lines().filter(row).any(|l| l.ends_with(&format!("{direction}: {diagnosis}"))),
            "{target}/{checker}'s row shows {direction}: {diagnosis}:\n{last}"
        );
        assert!(last.contains(&format!("\n  {target}/{checker}: ")), "{target}: why:\n{last}");
    }
    assert!(
        last.lines().any(|l| l.starts_with("healthy ") && l.split_whitespace().nth(3) == Some("healthy")),
        "the healthy client's row:\n{last}"
    );
    assert!(last.contains("8 targets, 17 views, 7 open mismatches"), "{last}");
    assert!(!stdout.contains('\x1b'), "no ANSI sequences when stdout is not a terminal");
    assert!(!stdout.lines().any(|l| l.starts_with('{')), "no JSON events without --events:\n{stdout}");
    assert!(
        timeout(Duration::from_millis(100), collector.accept()).await.is_err(),
        "the demo exported OTLP without --otlp"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_stops_by_itself_and_takes_a_free_port_when_its_own_is_taken() {
    let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind a port to take");
    let port = taken.local_addr().expect("taken address").port();
    let listen = format!("127.0.0.1:{port}");
    let mut demo = Demo::start(&["--listen", &listen, "--for", "3s"], &[]);
    let url = demo.dashboard_url(false).await;
    assert_ne!(url, format!("http://{listen}/"), "the taken port is not used");

    let status = demo.exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit after --for: {status}\nstderr:\n{}", demo.stderr());
    let (stdout, stderr) = (demo.stdout(), demo.stderr());
    assert!(
        stderr.contains(&format!("parallax demo: {listen} is in use; the dashboard is on 127.0.0.1:")),
        "the fallback is explained:\n{stderr}"
    );
    assert!(stdout.contains(&format!("({listen} was in use)")), "the snapshots say so too:\n{stdout}");
    // Plain snapshots: the table's header row, at least the first one and the last one.
    let snapshots = stdout.lines().filter(|l| l.starts_with("TARGET ")).count();
    assert!(snapshots >= 2, "snapshots: {snapshots}\n{stdout}");
    assert!(stdout.contains("parallax demo stopped after 3s"), "the last snapshot:\n{stdout}");
    assert!(!stdout.contains('\x1b'), "no ANSI sequences when stdout is not a terminal:\n{stdout}");
    for target in ["healthy", "shallow-health", "status-204"] {
        assert!(stdout.lines().any(|l| l.starts_with(target)), "{target} in the table:\n{stdout}");
    }
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_events_replace_the_table_on_stdout() {
    let mut demo = Demo::start(&["--listen", "127.0.0.1:0", "--for", "4s", "--events"], &[]);
    let url = demo.dashboard_url(true).await;
    assert!(url.starts_with("http://127.0.0.1:"));
    let status = demo.exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit after --for: {status}\nstderr:\n{}", demo.stderr());
    let stdout = demo.stdout();
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event line ({e}): {l}\n{stdout}"))
        })
        .collect();
    assert!(
        events.iter().any(|e| e["type"] == "mismatch_opened" && e["target"] == "allowlist"),
        "the audit's mismatch is an event:\n{stdout}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "verdict_change" && e["target"] == "tls-port" && e["view"] == "client"),
        "verdict changes are events:\n{stdout}"
    );
    assert!(demo.stderr().contains("parallax demo stopped after 4s"), "{}", demo.stderr());
}

#[tokio::test]
async fn demo_help_explains_every_target() {
    let output = Command::new(env!("CARGO_BIN_EXE_parallax"))
        .args(["demo", "--help"])
        .output()
        .await
        .expect("parallax demo --help runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for target in std::iter::once(HEALTHY).chain(EXPECTED.iter().map(|e| e.0)) {
        assert!(help.contains(&format!("\n  {target}\n")), "{target} missing from:\n{help}");
    }
    for (_, checker, direction, diagnosis, _) in EXPECTED {
        assert!(
            help.contains(&format!("client vs {checker}: {direction} / {diagnosis}")),
            "{diagnosis} missing from:\n{help}"
        );
    }
    for option in ["--listen", "--for", "--otlp", "--events", "127.0.0.1:9464"] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

#[tokio::test]
async fn demo_with_a_bad_otlp_endpoint_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_parallax"))
        .args(["demo", "--listen", "127.0.0.1:0", "--for", "5s", "--otlp", "not a url"])
        .stdin(Stdio::null())
        .output();
    let output = timeout(Duration::from_secs(30), output).await.expect("exits within 30 s").expect("runs");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("export.otlp.endpoint") && stderr.contains("not a url"), "{stderr}");
}
