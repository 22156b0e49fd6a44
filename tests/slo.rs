//! Several vantages joined in a real Prometheus: two "node" instances (a DaemonSet's pods) and
//! three "external" instances (probe VMs) of `parallax run`, each with its own `[vantage]`,
//! probing real servers on loopback; Debian's `prometheus` scrapes all five every second and
//! evaluates the shipped rules (`parallax rules --pending 0s`). The right alerts fire — a
//! blackhole, a false drain, a check failing on one node of two, 2 of 3 external vantages
//! failing — and no other; every recording rule and every expression of the Grafana dashboard
//! (deploy/grafana/parallax.json) returns data through Prometheus's HTTP API.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

use support::certs::Ca;
use support::http::{router, HttpServer, Reply, TlsSite};
use support::lo;

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port on `ip` (bound, then released for the child to bind).
fn free_port(ip: std::net::IpAddr) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).expect("bind a free port");
    l.local_addr().expect("local addr")
}

/// One `parallax run` instance: its probes.d (a `[vantage]` and `targets`) and admin address.
fn instance(root: &Path, vantage: &str, kind: &str, zone: &str, admin: SocketAddr, targets: &str) -> Killed {
    let dir = root.join(vantage);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = format!(
        "[defaults]\ninterval = \"500ms\"\ntimeout = \"400ms\"\nhold = \"1s\"\n\n\
         [admin]\nlisten = \"{admin}\"\n\n\
         [vantage]\nname = \"{vantage}\"\nkind = \"{kind}\"\nzone = \"{zone}\"\n\n{targets}"
    );
    std::fs::write(dir.join("probes.toml"), config).expect("write probes.toml");
    let child = Command::new(env!("CARGO_BIN_EXE_parallax"))
        .args(["run", "-c"])
        .arg(&dir)
        .env_remove("PARALLAX_CONFIG")
        .env_remove("NODE_NAME")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start parallax run");
    Killed(child)
}

/// GET `path` from `addr`, the body (HTTP/1.0: the server closes). Bounded by a 5 s timeout.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.take(8 * 1024 * 1024).read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    // Go answers an HTTP/1.0 request with an HTTP/1.0 status line.
    (head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200")).then(|| body.to_owned())
}

/// An instant query's result vector (`data.result`), or why not.
fn query(prometheus: SocketAddr, expr: &str) -> Result<Vec<serde_json::Value>, String> {
    let q: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    let body = get(prometheus, &format!("/api/v1/query?query={q}")).ok_or("no 200 from Prometheus")?;
    let doc: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if doc["status"] != "success" {
        return Err(format!("{expr}: {body}"));
    }
    Ok(doc["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Every expression of the dashboard's panels, with its variables set to match everything.
fn dashboard_expressions(path: &Path) -> Vec<(String, String)> {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the dashboard")).expect("JSON");
    let mut out = Vec::new();
    for panel in doc["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a PromQL expr").to_owned();
            let expr = expr
                .replace("$target_id", ".+")
                .replace("$vantage", ".+")
                .replace("$__rate_interval", "30s")
                .replace("$__range", "5m");
            out.push((panel["title"].as_str().unwrap_or_default().to_owned(), expr));
        }
    }
    out
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_and_external_vantages_fire_the_right_alerts_in_a_real_prometheus() {
    // The servers: `/ok` 200, `/fail` 503, `/healthz` 200 (a shallow health path).
    let app = router(|seen| match seen.path.as_str() {
        "/fail" => Reply::status(503, "failing"),
        _ => Reply::ok("ok"),
    });
    let plain = HttpServer::start(lo(171), app).await;
    let plain = SocketAddr::new(lo(171), plain.port());
    let ca = Ca::new("slo test CA");
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca_file = ca.write_pem(tmp.path(), "ca.pem");
    let tls =
        HttpServer::start_tls(lo(172), TlsSite::new(ca.leaf(&["secure.test"])), router(|_| Reply::ok("ok")))
            .await;
    let tls = SocketAddr::new(lo(172), tls.port());

    let view = |path: &str| format!("url = \"http://{plain}{path}\"");
    let target = |name: &str, client: &str, checkers: &[(&str, &str)]| {
        let mut t = format!("[[target]]\nname = \"{name}\"\n[target.client]\n{client}\n");
        for (checker, path) in checkers {
            t.push_str(&format!("[[target.checker]]\nname = \"{checker}\"\n{}\n", view(path)));
        }
        t
    };
    let secure = format!(
        "[[target]]\nname = \"secure\"\n[target.client]\nurl = \"https://secure.test:{}/\"\n\
         connect_to = \"{tls}\"\nca_file = \"{}\"\n",
        tls.port(),
        ca_file.display()
    );
    // node-a: users of shop get 503 while the ALB's /healthz passes (a blackhole); cart's NLB
    // check fails here while its users are served (a false drain on one node of two).
    // node-b: both fine. ext-1 and ext-2: users of web fail; ext-3: web is fine.
    let nodes = [
        (
            "node-a",
            target("shop", &view("/fail"), &[("alb", "/healthz")])
                + &target("cart", &view("/ok"), &[("nlb", "/fail")]),
        ),
        (
            "node-b",
            target("shop", &view("/ok"), &[("alb", "/healthz")])
                + &target("cart", &view("/ok"), &[("nlb", "/ok")]),
        ),
    ];
    let externals = [
        ("ext-1", target("web", &view("/fail"), &[]) + &secure),
        ("ext-2", target("web", &view("/fail"), &[]) + &secure),
        ("ext-3", target("web", &view("/ok"), &[]) + &secure),
    ];
    let mut children = Vec::new();
    let mut admins = Vec::new();
    for (i, (vantage, targets)) in nodes.iter().enumerate() {
        let admin = free_port(lo(173 + i as u8));
        children.push(instance(tmp.path(), vantage, "node", "zone-a", admin, targets));
        admins.push(admin);
    }
    for (i, (vantage, targets)) in externals.iter().enumerate() {
        let admin = free_port(lo(175 + i as u8));
        children.push(instance(tmp.path(), vantage, "external", "outside", admin, targets));
        admins.push(admin);
    }

    // Prometheus: the shipped rules without their `for:`, a 1 s scrape and evaluation.
    let rules = Command::new(env!("CARGO_BIN_EXE_parallax"))
        .args(["rules", "--pending", "0s"])
        .output()
        .expect("parallax rules");
    assert!(rules.status.success());
    std::fs::write(tmp.path().join("rules.yaml"), &rules.stdout).expect("write rules");
    let scrape: Vec<String> = admins.iter().map(|a| format!("'{a}'")).collect();
    std::fs::write(
        tmp.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules.yaml\n\
             scrape_configs:\n  - job_name: parallax\n    static_configs:\n      - targets: [{}]\n",
            scrape.join(", ")
        ),
    )
    .expect("write prometheus.yml");
    let prometheus = free_port(lo(180));
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", tmp.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", tmp.path().join("tsdb").display()))
            .arg(format!("--web.listen-address={prometheus}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (Debian package `prometheus`; scripts/test installs it)"),
    );

    // The alerts that must fire, by their identifying labels.
    // Users of shop (from node-a) and of web (from 2 of 3 vantages) fail: their availability
    // (0.5 and 0.33) burns the 99.9% budget at both rates, so those alerts fire too.
    let expected: [(&str, &[(&str, &str)]); 8] = [
        ("ParallaxBlackhole", &[("target_id", "shop"), ("vantage", "node-a"), ("checker_view", "alb")]),
        ("ParallaxFalseDrain", &[("target_id", "cart"), ("vantage", "node-a"), ("checker_view", "nlb")]),
        ("ParallaxNodeCheckerDisagrees", &[("target_id", "cart"), ("view", "nlb")]),
        ("ParallaxClientFailingFromVantages", &[("target_id", "web")]),
        ("ParallaxErrorBudgetBurn", &[("target_id", "shop")]),
        ("ParallaxErrorBudgetBurn", &[("target_id", "web")]),
        ("ParallaxErrorBudgetBurnSlow", &[("target_id", "shop")]),
        ("ParallaxErrorBudgetBurnSlow", &[("target_id", "web")]),
    ];
    let matches = |alert: &serde_json::Value, name: &str, labels: &[(&str, &str)]| {
        alert["metric"]["alertname"] == name && labels.iter().all(|(k, v)| alert["metric"][*k] == *v)
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let firing = loop {
        let firing = query(prometheus, "ALERTS{alertstate=\"firing\"}").unwrap_or_default();
        if expected.iter().all(|(name, labels)| firing.iter().any(|a| matches(a, name, labels))) {
            break firing;
        }
        assert!(
            Instant::now() < deadline,
            "within 90 s, not every expected alert fired; firing: {}",
            serde_json::Value::Array(firing)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // A few evaluations more, then nothing else may be firing: the healthy targets, node-b's
    // cart, ext-3, the secure target and the instances themselves raise no alert.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let firing_now = query(prometheus, "ALERTS{alertstate=\"firing\"}").expect("query ALERTS");
    for alert in &firing_now {
        assert!(
            expected.iter().any(|(name, labels)| matches(alert, name, labels)),
            "an alert that should not fire: {alert}; all firing: {}",
            serde_json::Value::Array(firing.clone())
        );
    }
    // Each instance's series carry its vantage; the target joins by target_id across them.
    let vantages =
        query(prometheus, "count by (vantage, vantage_kind, zone) (parallax_view_up)").expect("query");
    assert_eq!(vantages.len(), 5, "{vantages:?}");
    let web = query(prometheus, "count by (target_id) (parallax_view_up{target_id=\"web\",role=\"client\"})")
        .expect("query");
    assert_eq!(web[0]["value"][1], "3", "web is seen from the 3 external vantages: {web:?}");

    // Every recording rule, and every expression of the dashboard, returns data.
    let rule_text = String::from_utf8_lossy(&rules.stdout).into_owned();
    let records: Vec<&str> = rule_text.lines().filter_map(|l| l.trim().strip_prefix("- record: ")).collect();
    assert_eq!(records.len(), 8, "{records:?}");
    let mut empty = Vec::new();
    for record in &records {
        let ok = support::wait_for(Duration::from_secs(30), || {
            query(prometheus, record).ok().filter(|r| !r.is_empty())
        })
        .await;
        if ok.is_none() {
            empty.push(record.to_string());
        }
    }
    let dashboard = dashboard_expressions(&repo().join("deploy/grafana/parallax.json"));
    assert!(dashboard.len() >= 10, "{dashboard:?}");
    for (title, expr) in &dashboard {
        match query(prometheus, expr) {
            Ok(result) if !result.is_empty() => {}
            Ok(_) => empty.push(format!("dashboard panel `{title}`: {expr}")),
            Err(e) => empty.push(format!("dashboard panel `{title}` does not run: {e}")),
        }
    }
    assert!(empty.is_empty(), "expressions without data:\n{}", empty.join("\n"));
    drop(children);
}
