//! The `parallax` binary: exit codes, the JSON contract of `probe`, `check` on the shipped
//! example, and secrets kept out of every output.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

fn parallax(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_parallax"));
    cmd.args(args).env_remove("PARALLAX_CONFIG").env_remove("PARALLAX_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the parallax binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A plain HTTP server on `ip` answering `status` to each of at most `max` connections, then
/// exiting. Returns its address.
fn http_server(ip: &str, status: &'static str, max: usize) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).expect("bind test server");
    let addr = listener.local_addr().expect("local addr");
    thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 64 * 1024 {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let body = "ok";
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn write_config(dir: &Path, body: &str) {
    std::fs::write(dir.join("probes.toml"), body).expect("write config");
}

#[test]
fn check_accepts_the_shipped_example() {
    let out = parallax(&["check", "-c", concat!(env!("CARGO_MANIFEST_DIR"), "/probes.d")], &[]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("client"), "plan output names the client views: {stdout}");
}

#[test]
fn check_reports_every_error_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(
        dir.path(),
        r#"
[[target]]
name = "a"
[target.client]
url = "ftp://example.test/"

[[target]]
name = "b"
[target.client]
url = "http://127.0.0.1/"
timeout = "5s"
interval = "1s"
"#,
    );
    let out = parallax(&["check", "-c", dir.path().to_str().unwrap_or_default()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("probes.toml"), "names the file: {stderr}");
    assert!(stderr.contains("ftp"), "names the bad scheme: {stderr}");
    assert!(stderr.contains("timeout"), "names the timeout error too: {stderr}");
}

#[test]
fn probe_json_follows_the_contract_and_exits_0_when_clients_succeed() {
    let server = http_server("127.0.0.21", "200 OK", 4);
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(
        dir.path(),
        &format!(
            r#"
[[target]]
name = "web"
[target.client]
url = "http://{server}/"
[[target.checker]]
name = "hc"
profile = "aws-alb"
url = "http://{server}/healthz"
"#
        ),
    );
    let out = parallax(&["probe", "-c", dir.path().to_str().unwrap_or_default(), "--format", "json"], &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let lines: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("every line is JSON")).collect();
    assert_eq!(lines.len(), 3, "two outcomes and a summary");
    let client = &lines[0];
    assert_eq!(client["type"], "outcome");
    assert_eq!(client["target"], "web");
    assert_eq!(client["view"], "client");
    assert_eq!(client["role"], "client");
    assert_eq!(client["profile"], serde_json::Value::Null);
    assert_eq!(client["ok"], true);
    assert_eq!(client["status"], 200);
    assert_eq!(client["peer"], server.to_string());
    for key in ["phase", "error", "timings_ms", "local", "request", "tls"] {
        assert!(client.get(key).is_some(), "outcome has {key}: {client}");
    }
    assert!(client["timings_ms"]["total"].as_f64().is_some_and(|t| t > 0.0));
    assert_eq!(client["request"]["scheme"], "http");
    assert_eq!(client["request"]["path"], "/");
    let checker = &lines[1];
    assert_eq!(checker["view"], "hc");
    assert_eq!(checker["role"], "checker");
    assert_eq!(checker["profile"], "aws-alb");
    assert_eq!(checker["request"]["user_agent"], "ELB-HealthChecker/2.0");
    assert_eq!(checker["request"]["host"], server.to_string());
    let summary = &lines[2];
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["targets"], 1);
    assert_eq!(summary["views"], 2);
    assert_eq!(summary["outcomes_failed"], 0);
    assert_eq!(summary["mismatches"], 0);
}

#[test]
fn probe_exits_1_when_a_client_view_fails_and_the_table_says_why() {
    // Bind and drop: nothing listens on this port afterwards.
    let closed = TcpListener::bind("127.0.0.22:0").and_then(|l| l.local_addr()).expect("free port");
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(
        dir.path(),
        &format!(
            r#"
[[target]]
name = "down"
[target.client]
url = "http://{closed}/"
"#
        ),
    );
    let out = parallax(&["probe", "-c", dir.path().to_str().unwrap_or_default()], &[]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("connect/connect_refused"), "table names phase and code: {stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn probe_rejects_an_unknown_target_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(
        dir.path(),
        r#"
[[target]]
name = "known"
[target.client]
url = "http://127.0.0.1:9/"
"#,
    );
    let out = parallax(&["probe", "-c", dir.path().to_str().unwrap_or_default(), "--target", "nope"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("nope") && stderr.contains("known"), "{stderr}");
}

#[test]
fn run_rejects_a_worker_count_out_of_range_with_exit_2() {
    for workers in ["0", "65", "many"] {
        let out = parallax(&["run", "-c", "/nonexistent", "--workers", workers], &[]);
        assert_eq!(out.status.code(), Some(2), "--workers {workers}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("--workers") && stderr.contains(workers), "{stderr}");
    }
    // The variable is read the same way, and its value named in the error.
    let out = parallax(&["run", "-c", "/nonexistent"], &[("PARALLAX_WORKERS", "0")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--workers"), "{}", text(&out.stderr));
}

#[test]
fn secrets_never_reach_check_probe_or_error_output() {
    const TOKEN: &str = "s3cr3t-token-value-7731";
    let server = http_server("127.0.0.23", "401 Unauthorized", 4);
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}-file\n")).expect("token file");
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).expect("conf dir");
    write_config(
        &conf,
        &format!(
            r#"
[[target]]
name = "api"
[target.client]
url = "http://{server}/v1?key=${{env:API_KEY}}"
headers = {{ authorization = "Bearer ${{env:API_TOKEN}}", x-file = "${{file:{}}}", cookie = "session=plain-cookie-123" }}
"#,
            token_file.display()
        ),
    );
    let env = [("API_TOKEN", TOKEN), ("API_KEY", "key-4471-secret")];
    let conf = conf.to_str().unwrap_or_default();
    let outputs = [
        parallax(&["check", "-c", conf], &env),
        parallax(&["probe", "-c", conf], &env),
        parallax(&["probe", "-c", conf, "--format", "json"], &env),
    ];
    assert!(outputs[0].status.success(), "check: {}", text(&outputs[0].stderr));
    assert_eq!(outputs[1].status.code(), Some(1), "401 fails the client view");
    for out in &outputs {
        let all = text(&out.stdout) + &text(&out.stderr);
        for secret in [TOKEN, "key-4471-secret", "plain-cookie-123"] {
            assert!(!all.contains(secret), "secret {secret} leaked: {all}");
        }
    }
    assert!(text(&outputs[0].stdout).contains("<redacted>"));

    // A config error caused by a missing variable names the variable, never another's value.
    let out = parallax(&["check", "-c", conf], &[("API_TOKEN", TOKEN)]);
    assert_eq!(out.status.code(), Some(2));
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(all.contains("API_KEY"), "{all}");
    assert!(!all.contains(TOKEN), "{all}");
}

/// `parallax probe --help` names every diagnosis code, each with what it means.
#[test]
fn probe_help_explains_every_diagnosis() {
    let out = parallax(&["probe", "--help"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    for d in parallax::diff::Diagnosis::ALL {
        let line = help.lines().find(|l| l.trim_start().starts_with(d.as_str())).unwrap_or_default();
        assert!(line.trim().len() > d.as_str().len() + 10, "{d} is explained in --help:\n{help}");
    }
}

/// `parallax discover --from`: saved `kubectl get -o json` output becomes a probes.d file that
/// `parallax check` accepts; bad flags are usage errors (2), unreadable input 1.
#[test]
fn discover_from_saved_objects_prints_a_file_check_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = dir.path().join("objects.json");
    std::fs::write(
        &objects,
        r#"{"apiVersion":"v1","kind":"List","items":[
          {"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"shop","labels":{"parallax.io/probe":"true"}},
           "spec":{"type":"LoadBalancer","externalTrafficPolicy":"Local","healthCheckNodePort":32001,
                   "ports":[{"name":"http","port":80,"targetPort":8080,"nodePort":31080,"protocol":"TCP"}]},
           "status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.10"}]}}}]}"#,
    )
    .expect("write objects");
    let from = objects.to_str().expect("utf-8 path");
    let out = parallax(
        &["discover", "--from", from, "--node", "n1", "--node-ip", "192.0.2.11", "--provider", "gcp"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let file = text(&out.stdout);
    assert!(file.contains("name = \"svc.shop.web.http\""), "{file}");
    assert!(file.contains("url = \"http://192.0.2.11:32001/healthz\""), "GKE L4, ETP Local: {file}");
    assert!(file.contains("connect_to = \"192.0.2.11:31080\""), "the traffic port: {file}");
    let config = dir.path().join("probes.d");
    std::fs::create_dir(&config).expect("mkdir");
    std::fs::write(config.join("50-discovered.toml"), &file).expect("write the discovered file");
    let check = parallax(&["check", "-c", config.to_str().expect("utf-8 path")], &[]);
    assert_eq!(check.status.code(), Some(0), "the printed file compiles: {}", text(&check.stderr));
    assert!(text(&check.stdout).contains("view kube-proxy (checker)"), "{}", text(&check.stdout));

    let json = parallax(&["discover", "--from", from, "--mode", "external", "--format", "json"], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(doc["targets"][0]["name"], "svc.shop.web.http", "{doc}");

    let bad = parallax(&["discover", "--from", from, "--provider", "ibm"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("use one of auto, aws, gcp, azure, metallb, generic"),
        "{}",
        text(&bad.stderr)
    );
    let missing = parallax(&["discover", "--from", "/nonexistent/objects.json"], &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("/nonexistent/objects.json"), "{}", text(&missing.stderr));
    let both = parallax(&["discover", "--from", from, "--kubeconfig", from], &[]);
    assert_eq!(both.status.code(), Some(2), "--from and --kubeconfig exclude each other");
}

/// A one-target configuration file whose admin server listens on `listen`; its target is a
/// closed loopback port (nothing answers, nothing leaves the host).
fn run_config(dir: &Path, listen: &str) -> std::path::PathBuf {
    let file = dir.join("probes.toml");
    std::fs::write(
        &file,
        format!(
            "[admin]\nlisten = \"{listen}\"\n\n[[target]]\nname = \"shop\"\n[target.client]\n\
             url = \"http://127.0.0.1:9/\"\ninterval = \"90s\"\ntimeout = \"1500ms\"\n"
        ),
    )
    .expect("write config");
    file
}

/// `parallax run` started with `args`, stderr piped; OTLP variables removed.
fn spawn_run(args: &[&str]) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_parallax"));
    cmd.arg("run").args(args).env_remove("PARALLAX_CONFIG").env_remove("PARALLAX_LOG");
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    cmd.spawn().expect("run the parallax binary")
}

#[test]
fn run_says_in_one_line_where_to_look_what_runs_and_where_results_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = run_config(dir.path(), "127.0.0.1:0");
    let mut child = spawn_run(&["-c", &file.display().to_string()]);
    let stderr = child.stderr.take().expect("piped stderr");
    // The first line, read on a thread so that the wait is bounded.
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(20));
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().expect("wait for parallax run");
    let line = line.expect("a start-up line within 20 s");
    let (head, port) = line.trim_end().split_once("http://127.0.0.1:").expect("the admin URL");
    let (port, tail) = port.split_once('/').expect("the URL ends with /");
    assert!(port.parse::<u16>().is_ok_and(|p| p != 0), "the bound port, not 0: {line}");
    assert_eq!(
        head,
        format!(
            "parallax: 1 target, 1 view from {}; dashboard, /metrics and /api/v1/status on ",
            file.display()
        )
    );
    assert_eq!(tail, "; events on stdout, no OTLP (set [export.otlp] or OTEL_EXPORTER_OTLP_ENDPOINT)");
    assert!(status.success(), "SIGTERM stops it cleanly: {status}");
}

#[test]
fn run_on_a_taken_admin_port_says_how_to_choose_another_in_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to take");
    let addr = taken.local_addr().expect("local addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = run_config(dir.path(), &addr.to_string());
    let out = parallax(&["run", "-c", &file.display().to_string()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let next = std::net::SocketAddr::new(addr.ip(), addr.port() + 1);
    assert_eq!(
        text(&out.stderr),
        format!(
            "parallax: the admin server cannot listen on {addr}: it is in use (another parallax?); choose another \
             address with `[admin] listen` or PARALLAX_ADMIN__LISTEN (e.g. PARALLAX_ADMIN__LISTEN={next})\n"
        )
    );
    drop(taken);
}

#[test]
fn config_is_a_file_or_a_directory_and_durations_read_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = run_config(dir.path(), "127.0.0.1:9464");
    std::fs::write(dir.path().join("other.toml"), "not = [ valid").expect("write");
    let out = parallax(&["check", "-c", &file.display().to_string()], &[]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("interval 1m30s, timeout 1.5s,"), "{stdout}");

    let missing = dir.path().join("nope");
    let out = parallax(&["check", "-c", &missing.display().to_string()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {0}: no such file or directory: -c takes a configuration file or a directory of them\n\
             parallax: 1 configuration error(s) in {0}\n",
            missing.display()
        )
    );
}

#[test]
fn check_prints_errors_a_person_can_act_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(
        dir.path(),
        "[[target]]\nname = \"shop\"\n[target.client]\nurl = \"http://127.0.0.1:8080/\"\nconect_to = \"127.0.0.1:8080\"\n\
         [target.checker]\nname = \"alb\"\n\n[[target]]\nname = \"cart\"\n[target.client]\n\
         url = \"http://${env:CART_HOST}:8080/\"\n",
    );
    let out = parallax(&["check", "-c", &dir.path().display().to_string()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let file = dir.path().join("probes.toml");
    let keys = "`url`, `connect_to`, `source`, `freebind`, `ip_version`, `proxy_protocol`, `sni`, `verify`, \
                `ca_file`, `alpn`, `method`, `host`, `headers`, `user_agent`, `body`, `expect`, `interval`, \
                `timeout`, `rise`, `fall`, `max_body_bytes`, `resolver`, `each_address`, `expect_addresses`";
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {f}: target[shop].checker: write [[target.checker]] with double brackets: a target has a list \
             of checker views, and [target.checker] is a single table\n\
             error: {f}: target[shop].client.conect_to: unknown key `conect_to` (did you mean `connect_to`?); \
             valid keys here: {keys}\n\
             error: {f}: target[cart].client.url: the URL's host and port cannot hold a secret \
             (${{env:CART_HOST}}): they are shown in every output\n\
             parallax: 3 configuration error(s) in {d}\n",
            f = file.display(),
            d = dir.path().display()
        )
    );

    write_config(dir.path(), "[[target]]\nname = \"shop\"\n[target.client]\nurl = \"http://127.0.0.1:8080/\"\nexpect = { status = [200-299] }\n");
    let out = parallax(&["check", "-c", &file.display().to_string()], &[]);
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {f}: not valid TOML at line 5: `expect = {{ status = [200-299] }}`: a status range is text and \
             must be quoted: `expect = {{ status = [\"200-299\"] }}`\n\
             parallax: 1 configuration error(s) in {f}\n",
            f = file.display()
        )
    );
}

/// A file saved from `parallax discover` carries what the API said: `parallax probe` prints its
/// conditions, explains the client failure a condition of the target fits, and exits 1; `check`
/// shows both. Nothing listens on the target's address, as at a Gateway whose data plane is not
/// programmed.
#[test]
fn probe_prints_the_conditions_and_the_failure_a_condition_explains() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(
        dir.path(),
        r#"
[[target]]
name = "route.shop.web"
[target.client]
url = "http://127.0.0.23:9/"
timeout = "1s"
[target.cluster]
object = "HTTPRoute shop/web"
backends = ["shop/web"]
route_hosts = ["shop.example.com"]

[[condition]]
kind = "gateway_not_programmed"
object = "Gateway infra/gw"
target = "route.shop.web"
reason = "Invalid"
message = "Gateway infra/gw says Programmed=False (Invalid)"

[[condition]]
kind = "lb_address_pending"
object = "Ingress shop/new"
message = "Ingress shop/new has no status.loadBalancer.ingress yet"
"#,
    );
    let path = dir.path().to_str().unwrap_or_default();
    let out = parallax(&["probe", "-c", path], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("FAILURE client explained by the cluster: gateway_not_programmed"), "{table}");
    assert!(table.contains("the API says why (Gateway infra/gw, reason Invalid)"), "{table}");
    assert!(
        table.contains("CONDITION gateway_not_programmed Gateway infra/gw (Invalid) [target route.shop.web]"),
        "{table}"
    );
    assert!(table.contains("CONDITION lb_address_pending Ingress shop/new"), "{table}");
    assert!(table.contains("0 mismatch(es), 2 condition(s)"), "{table}");

    let out = parallax(&["probe", "-c", path, "--format", "json"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let kinds: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(kinds, ["outcome", "condition", "condition", "explained", "summary"]);
    assert_eq!(lines[1]["kind"], "gateway_not_programmed");
    assert_eq!(lines[1]["target"], "route.shop.web");
    assert_eq!(lines[2]["kind"], "lb_address_pending");
    assert_eq!(lines[3]["diagnosis"], "gateway_not_programmed");
    assert_eq!(lines[3]["view"], "client");
    assert_eq!(lines[4]["conditions"], 2);

    let out = parallax(&["check", "-c", path], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(plan.contains("condition       gateway_not_programmed Gateway infra/gw (Invalid)"), "{plan}");
    assert!(plan.contains("cluster         HTTPRoute shop/web; backends shop/web; route hosts shop.example.com; conditions gateway_not_programmed"), "{plan}");
}

/// `n` targets on a closed loopback port (nothing answers, nothing leaves the host).
fn many_targets(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[target]]\nname = \"t{i}\"\n[target.client]\nurl = \"http://127.0.0.1:9/path/{i}\"\n\
                 timeout = \"500ms\"\n"
            )
        })
        .collect()
}

/// Issue 18, finding 12: `parallax probe … | head -1` and `parallax check … | head -1` panicked
/// with "Broken pipe" (exit 101). The output is larger than a pipe's buffer, so the reader
/// closing after one line always leaves parallax writing to a closed pipe.
#[test]
fn probe_and_check_piped_into_head_exit_quietly_on_a_broken_pipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &many_targets(400));
    let conf = dir.path().to_str().unwrap_or_default();
    for args in [vec!["check", "-c", conf], vec!["probe", "-c", conf, "--format", "json"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parallax"))
            .args(&args)
            .env_remove("PARALLAX_CONFIG")
            .env_remove("PARALLAX_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the parallax binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("one line");
        assert!(!line.is_empty(), "{args:?} printed something");
        // The reader (and its end of the pipe) is dropped here, as `head -1` exits.
        let out = child.wait_with_output().expect("wait for parallax");
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?} exits quietly: {stderr}");
    }
}

/// Issue 18, finding 2: `parallax check`'s `url` line showed `http://user:password@host/..` in
/// clear. The user name stays; the password, or a user info without one (a token), is redacted.
#[test]
fn url_user_info_is_redacted_in_check_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(
        dir.path(),
        "[[target]]\nname = \"shop\"\n[target.client]\nurl = \"http://ops:pw-check-7d21@127.0.0.1:9/cart\"\n\
         [[target.checker]]\nname = \"hc\"\nurl = \"https://tok-check-41aa@127.0.0.1:9/healthz\"\n",
    );
    let out = parallax(&["check", "-c", dir.path().to_str().unwrap_or_default()], &[]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let all = text(&out.stdout) + &text(&out.stderr);
    for secret in ["pw-check-7d21", "tok-check-41aa"] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
    assert!(all.contains("http://ops:<redacted>@127.0.0.1:9/cart"), "{all}");
    assert!(all.contains("https://<redacted>@127.0.0.1:9/healthz"), "{all}");
}
