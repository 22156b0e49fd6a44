//! The daemon in the lab: `parallax run` inside the client namespace watches the node-port vs
//! proxy scenario (HAProxy checks the NodePort while users' route through the ingress is
//! broken) and the mismatch shows up in all three places an SRE looks: `/api/v1/status`,
//! `/metrics`, and a `parallax.mismatch` span at an OTLP collector (a real HTTP server in the
//! same namespace that keeps every export body).
//!
//! Root is required (CI runs as root): a lab that cannot create namespaces fails the test.

mod lab;

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use lab::{Lab, Ns, NODE_IPS, VIP};

/// How long the daemon may take to open, attribute and export the mismatch.
const FIND_WITHIN: Duration = Duration::from_secs(40);

const DAEMON_DEFAULTS: &str = r#"
[defaults]
interval = "1s"
timeout = "800ms"
max_hybrids = 24

[admin]
listen = "127.0.0.1:9464"

[export.otlp]
endpoint = "http://127.0.0.1:4318"
protocol = "http/protobuf"
success_sample_ratio = 0.0
"#;

#[test]
fn daemon_reports_the_node_port_vs_proxy_mismatch_in_status_metrics_and_otlp() {
    let mut lab = Lab::start("daemon");
    let collector = lab.start_collector(Ns::Client);
    let toml = format!(
        r#"
[[target]]
name = "checkout"
hold = "1s"

[target.client]
url = "http://checkout.lab/pay"
connect_to = "{VIP}:80"

[[target.checker]]
name = "lb"
profile = "haproxy"
url = "http://{}:30080/"
"#,
        NODE_IPS[0]
    );
    lab.start_daemon(Ns::Client, DAEMON_DEFAULTS, &toml);

    let deadline = Instant::now() + FIND_WITHIN;
    let (mut in_status, mut in_metrics, mut in_otlp) = (None, None, None);
    let mut last = (String::new(), String::new());
    while Instant::now() < deadline && (in_status.is_none() || in_metrics.is_none() || in_otlp.is_none()) {
        std::thread::sleep(Duration::from_millis(500));
        // A daemon that exited (a configuration error, a crash) fails here with its log.
        lab.assert_processes_alive();
        if in_status.is_none() {
            if let Some((200, body)) = lab.http_get(Ns::Client, "http://127.0.0.1:9464/api/v1/status") {
                if let Ok(doc) = serde_json::from_str::<Value>(&body) {
                    in_status = find_mismatch(&doc).cloned();
                }
                last.0 = body;
            }
        }
        if in_metrics.is_none() {
            if let Some((200, body)) = lab.http_get(Ns::Client, "http://127.0.0.1:9464/metrics") {
                in_metrics = body
                    .lines()
                    .find(|l| {
                        l.starts_with("parallax_mismatch{")
                            && l.contains("target=\"checkout\"")
                            && l.contains("checker_view=\"lb\"")
                            && l.contains("direction=\"blackhole\"")
                            && l.contains("diagnosis=\"node_port_vs_proxy\"")
                            && l.trim_end().ends_with(" 1")
                    })
                    .map(str::to_owned);
                last.1 = body;
            }
        }
        if in_otlp.is_none() {
            in_otlp = collector.spans().into_iter().find(|s| {
                s.name == "parallax.mismatch"
                    && s.attr("parallax.target") == Some("checkout")
                    && s.attr("parallax.diagnosis") == Some("node_port_vs_proxy")
            });
        }
    }
    let context = || {
        format!(
            "--- last status:\n{}\n--- last metrics (mismatch lines):\n{}\n--- spans: {:?}\n--- parallax run:\n{}\n{}",
            last.0,
            last.1.lines().filter(|l| l.contains("parallax_mismatch")).collect::<Vec<_>>().join("\n"),
            collector.spans().iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            lab.log_of("parallax run"),
            lab.logs()
        )
    };
    let m = in_status.unwrap_or_else(|| {
        panic!("no open mismatch in /api/v1/status within {FIND_WITHIN:?}\n{}", context())
    });
    assert_eq!(m["direction"], "blackhole", "{m}");
    assert!(
        m["flipped"].as_array().is_some_and(|f| f.iter().any(|a| a == "address")),
        "the daemon's attribution flipped the address: {m}"
    );
    assert!(
        in_metrics.is_some(),
        "no parallax_mismatch series in /metrics within {FIND_WITHIN:?}\n{}",
        context()
    );
    let span = in_otlp.unwrap_or_else(|| {
        panic!("no parallax.mismatch span at the collector within {FIND_WITHIN:?}\n{}", context())
    });
    assert_eq!(span.attr("parallax.direction"), Some("blackhole"), "{span:?}");
    assert_eq!(span.attr("parallax.checker_view"), Some("lb"), "{span:?}");
}

/// The first object anywhere in the status document that is an open mismatch of the scenario.
fn find_mismatch(doc: &Value) -> Option<&Value> {
    match doc {
        Value::Object(map) => {
            if map.get("diagnosis") == Some(&Value::from("node_port_vs_proxy"))
                && map.get("checker_view") == Some(&Value::from("lb"))
            {
                return Some(doc);
            }
            map.values().find_map(find_mismatch)
        }
        Value::Array(items) => items.iter().find_map(find_mismatch),
        _ => None,
    }
}
