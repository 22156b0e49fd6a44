//! `parallax probe URL [--as PROFILE]...`, `parallax profiles`, `parallax completions` and
//! `parallax man`, run as the binary against real in-process servers on 127.0.0.x: the ad-hoc
//! round gives what `probe -c` gives for the same target (JSON contract, diagnosis, exit codes),
//! the one-view account shows every phase, and a secret header never reaches any output.

mod support;

use std::net::IpAddr;
use std::process::Output;

use support::certs::Ca;
use support::http::{router, HttpServer, Reply, TlsSite};

/// The binary with `args`, run off the test's runtime (whose servers it talks to).
async fn parallax(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_parallax"))
            .args(&args)
            .env_remove("PARALLAX_CONFIG")
            .env_remove("PARALLAX_LOG")
            .output()
            .expect("run the parallax binary")
    })
    .await
    .expect("the binary's thread")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("loopback address")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The keys of a JSON object, and of its `request` object, sorted: the shape of a record.
fn shape(v: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    if let Some(request) = v.get("request").and_then(|r| r.as_object()) {
        keys.extend(request.keys().map(|k| format!("request.{k}")));
    }
    keys.sort();
    keys
}

/// A shop whose users' vhost is down (503 for Host `shop.test`) while the health path answers
/// 200 to any other Host: the checker passes, users fail.
async fn shop_down_but_healthz_up(addr: &str) -> HttpServer {
    HttpServer::start(
        ip(addr),
        router(|seen| match (seen.host.as_deref(), seen.path.as_str()) {
            (Some("shop.test"), _) => Reply::status(503, "maintenance"),
            (_, "/healthz") => Reply::ok("ok"),
            _ => Reply::status(404, "no such vhost"),
        }),
    )
    .await
}

/// The same target through `probe -c` and through `probe URL --as`: the same records, the same
/// diagnosis, the same exit code 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adhoc_mismatch_is_the_configured_one() {
    let server = shop_down_but_healthz_up("127.0.0.61").await;
    let url = format!("http://{}/cart", server.addr);
    let check_url = format!("http://{}/healthz", server.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("shop.toml"),
        format!(
            "[[target]]\nname = \"127.0.0.61\"\n[target.client]\nurl = \"{url}\"\nhost = \"shop.test\"\n\
             [[target.checker]]\nname = \"aws-alb\"\nprofile = \"aws-alb\"\nurl = \"{check_url}\"\n"
        ),
    )
    .expect("write the config");
    let configured =
        parallax(&["probe", "-c", dir.path().to_str().expect("utf-8"), "--format", "json"]).await;
    let adhoc_args = ["probe", &url, "--host", "shop.test", "--as", "aws-alb", "--check-url", &check_url];
    let adhoc = parallax(&[&adhoc_args[..], &["--format", "json"]].concat()).await;
    assert_eq!(configured.status.code(), Some(1), "{}", text(&configured.stderr));
    assert_eq!(adhoc.status.code(), Some(1), "{}", text(&adhoc.stderr));

    let (configured, adhoc) = (json_lines(&configured), json_lines(&adhoc));
    let kinds = |lines: &[serde_json::Value]| -> Vec<String> {
        lines.iter().map(|l| l["type"].as_str().unwrap_or_default().to_owned()).collect()
    };
    assert_eq!(kinds(&adhoc), ["outcome", "outcome", "mismatch", "summary"], "{adhoc:?}");
    assert_eq!(kinds(&adhoc), kinds(&configured));
    for (a, c) in adhoc.iter().zip(&configured) {
        assert_eq!(shape(a), shape(c), "the same fields:\n{a}\n{c}");
    }
    for field in ["target", "view", "role", "profile", "ok", "status", "error"] {
        assert_eq!(adhoc[0][field], configured[0][field], "client {field}");
        assert_eq!(adhoc[1][field], configured[1][field], "checker {field}");
    }
    assert_eq!(adhoc[0]["status"], 503);
    assert_eq!(adhoc[1]["request"]["user_agent"], "ELB-HealthChecker/2.0");
    for field in ["direction", "diagnosis", "flipped", "client_view", "checker_view"] {
        assert_eq!(adhoc[2][field], configured[2][field], "mismatch {field}: {}", adhoc[2]);
    }
    assert_eq!(adhoc[2]["direction"], "blackhole", "{}", adhoc[2]);
    assert_eq!(adhoc[3], configured[3], "the summary");

    let table = parallax(&adhoc_args).await;
    assert_eq!(table.status.code(), Some(1));
    let table = text(&table.stdout);
    let diagnosis = adhoc[2]["diagnosis"].as_str().unwrap_or_default();
    assert!(table.contains(&format!("MISMATCH client vs aws-alb: blackhole / {diagnosis}")), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adhoc_exit_codes_are_0_for_agreement_and_2_for_usage_errors() {
    let server = HttpServer::start(ip("127.0.0.62"), router(|_| Reply::ok("ok"))).await;
    let url = format!("http://{}/", server.addr);
    let ok = parallax(&["probe", &url, "--as", "gcp", "--as", "haproxy"]).await;
    assert_eq!(ok.status.code(), Some(0), "{}{}", text(&ok.stdout), text(&ok.stderr));
    assert!(text(&ok.stdout).contains("0 mismatch(es)"), "{}", text(&ok.stdout));

    let both = parallax(&["probe", "-c", "probes.d", &url]).await;
    assert_eq!(both.status.code(), Some(2));
    assert!(text(&both.stderr).contains("not both"), "{}", text(&both.stderr));

    let typo = parallax(&["probe", &url, "--as", "aws-abl"]).await;
    assert_eq!(typo.status.code(), Some(2));
    let stderr = text(&typo.stderr);
    assert!(
        stderr.contains("--as aws-abl: unknown profile") && stderr.contains("did you mean `aws-alb`"),
        "{stderr}"
    );

    let bad = parallax(&["probe", "ftp://127.0.0.62/", "-H", "no colon"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("-H: a header is `Name: value`"), "{}", text(&bad.stderr));

    let without_url = parallax(&["probe", "--as", "gcp"]).await;
    assert_eq!(without_url.status.code(), Some(2), "--as needs a URL");
    assert!(server.requests().len() >= 3, "the good round reached the server");
}

/// `-H 'Authorization: Bearer …'` is sent (the server only answers 200 with it) and never shown:
/// not in the one-view account, not in the table, not in JSON, not on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_header_is_sent_and_never_shown() {
    const SECRET: &str = "s3cret-7f3a";
    let server = HttpServer::start(
        ip("127.0.0.63"),
        router(|seen| match seen.header("authorization") {
            Some(a) if a == format!("Bearer {SECRET}") => {
                Reply::ok("ok").header("set-cookie", "session=s3cret-cookie")
            }
            _ => Reply::status(401, "who are you"),
        }),
    )
    .await;
    let url = format!("http://{}/api", server.addr);
    let header = format!("Authorization: Bearer {SECRET}");
    let runs = [
        parallax(&["probe", &url, "-H", &header]).await,
        parallax(&["probe", &url, "-H", &header, "--format", "json"]).await,
        parallax(&["probe", &url, "-H", &header, "--as", "aws-alb"]).await,
        parallax(&["probe", &url, "-H", &header, "--as", "aws-alb", "--format", "json"]).await,
    ];
    for out in &runs {
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(!all.contains(SECRET) && !all.contains("s3cret-cookie"), "leaked: {all}");
    }
    let account = text(&runs[0].stdout);
    assert_eq!(runs[0].status.code(), Some(0), "the header was sent: {account}");
    assert!(account.contains("> authorization: <redacted>"), "{account}");
    assert!(account.contains("< set-cookie: <redacted>"), "{account}");
    // The ALB's check sends no Authorization: the 401 is its, and a mismatch.
    assert_eq!(runs[2].status.code(), Some(1), "{}", text(&runs[2].stdout));
}

/// `parallax probe URL` alone: every phase of an HTTPS request, from the address dialed to the
/// certificate, the heads and the timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_view_shows_every_phase_of_an_https_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("parallax adhoc test CA");
    let ca_file = ca.write_pem(dir.path(), "ca.pem");
    let site = TlsSite::new(ca.leaf(&["shop.test"]));
    let server = HttpServer::start_tls(ip("127.0.0.64"), site, router(|_| Reply::ok("hello"))).await;
    let url = format!("https://shop.test:{}/cart?id=1", server.port());
    let connect_to = server.addr.to_string();
    let ca_file = ca_file.to_str().expect("utf-8");
    let out = parallax(&["probe", &url, "--connect-to", &connect_to, "--ca-file", ca_file]).await;
    let account = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{account}{}", text(&out.stderr));
    for want in [
        "shop.test https://shop.test:",
        &format!("dialing {connect_to} instead of the URL's shop.test:"),
        &format!("connected to {connect_to} from 127.0.0.1:"),
        "SNI sent: shop.test",
        "ALPN h2",
        "subject  CN=",
        "SANs     shop.test",
        "issuer   CN=parallax adhoc test CA",
        "valid    ",
        "verification ok: the chain (against the --ca-file roots) and the name",
        "request   > :method: GET",
        "> :path: /cart?id=1",
        &format!("> :authority: shop.test:{}", server.port()),
        "response  < HTTP/2 200 OK",
        "(5 body bytes)",
        "result    ok",
        "timings   connect ",
    ] {
        assert!(account.contains(want), "{want:?} in:\n{account}");
    }
    assert_eq!(server.snis(), [Some("shop.test".to_owned())]);

    // Without the CA the same request fails verification, and says so where it happened.
    let out = parallax(&["probe", &url, "--connect-to", &connect_to]).await;
    let account = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{account}");
    assert!(account.contains("verification FAILED: tls_cert_untrusted"), "{account}");
    assert!(account.contains("would send > GET /cart?id=1 HTTP/1.1"), "{account}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_lists_every_profile_and_shows_what_one_sends() {
    let list = parallax(&["profiles"]).await;
    assert_eq!(list.status.code(), Some(0));
    let list = text(&list.stdout);
    for p in parallax::config::ProfileName::ALL {
        assert!(list.lines().any(|l| l.starts_with(&format!("{p} "))), "{p} listed:\n{list}");
    }

    let alb = parallax(&["profiles", "aws-alb"]).await;
    assert_eq!(alb.status.code(), Some(0));
    let alb = text(&alb.stdout);
    for want in [
        "GET /healthz HTTP/1.1\\r\\n",
        "Host: 10.0.1.5:31080\\r\\n",
        "User-Agent: ELB-HealthChecker/2.0\\r\\n",
        "Connection: close\\r\\n",
        "passes on       200",
        "rise / fall     5 / 2",
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html",
        "aptible/docker-nginx#114",
    ] {
        assert!(alb.contains(want), "{want:?} in:\n{alb}");
    }

    let json = parallax(&["profiles", "haproxy", "--format", "json"]).await;
    let card: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
    assert_eq!(card["profile"], "haproxy");
    assert_eq!(card["example"]["request"], serde_json::json!(["OPTIONS /healthz HTTP/1.0"]));
    assert_eq!(card["judges"]["initial"], "first_probe");
    assert_eq!(card["sends"]["user_agent"], serde_json::Value::Null);

    let unknown = parallax(&["profiles", "aws-abl"]).await;
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = text(&unknown.stderr);
    assert!(stderr.contains("Did you mean `aws-alb`?") && stderr.contains("kube-proxy"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_the_man_page_come_from_the_command_line_definitions() {
    let bash = parallax(&["completions", "bash"]).await;
    assert_eq!(bash.status.code(), Some(0));
    let bash = text(&bash.stdout);
    for sub in ["probe", "profiles", "completions", "man", "discover", "--check-url"] {
        assert!(bash.contains(sub), "{sub} in the bash completions");
    }
    for shell in ["zsh", "fish"] {
        let out = parallax(&["completions", shell]).await;
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(text(&out.stdout).contains("profiles"), "{shell}");
    }
    let man = parallax(&["man"]).await;
    assert_eq!(man.status.code(), Some(0));
    let man = text(&man.stdout);
    assert!(man.contains("\n.TH parallax 1 ") && man.contains("\n.SH SYNOPSIS"), "roff: {man}");
    assert!(man.contains(".SH NAME") && man.contains("parallax\\-probe(1)"), "{man}");
    let probe = text(&parallax(&["man", "probe"]).await.stdout);
    assert!(probe.contains(".TH parallax-probe") && probe.contains("check\\-url"), "{probe}");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = parallax(&["man", "--dir", dir.path().to_str().expect("utf-8")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for page in ["parallax.1", "parallax-probe.1", "parallax-profiles.1"] {
        assert!(dir.path().join(page).is_file(), "{page} written");
    }
    assert_eq!(parallax(&["man", "nope"]).await.status.code(), Some(2));
}
