//! HAProxy parity: for every server of the lab's HAProxy, parallax's `haproxy`-profile view of
//! that server's check (same address and port, TLS and SNI, method, path, Host, PROXY header,
//! source; run in the LB namespace, where HAProxy runs) reaches the same verdict, with the
//! profile's thresholds, as HAProxy's own health check, read from its stats socket. Where they
//! differ, the profile (or the lab) is wrong, and the failure names each server with both sides'
//! evidence.
//!
//! Root is required (CI runs as root): a lab that cannot create namespaces fails the test.

mod lab;

use std::collections::BTreeMap;

use parallax::config::profiles;
use parallax::config::ProfileName;
use parallax::verdict::{Health, Verdict};

use lab::haproxy::{parity_target, parity_toml, FALL, RISE};
use lab::probe::LAB_DEFAULTS;
use lab::{Lab, Ns};

/// Rounds of parallax probes fed to each verdict: `fall`, so a verdict could move from UP to
/// DOWN within them if the server's answers ever changed.
const ROUNDS: usize = 3;

#[test]
fn every_haproxy_server_gets_the_same_verdict_from_haproxy_and_from_parallax() {
    let profile = profiles::defaults(ProfileName::Haproxy);
    assert_eq!((profile.rise, profile.fall), (RISE, FALL), "the lab's HAProxy uses the profile's thresholds");

    let lab = Lab::start("haproxy_parity");
    let before = lab.haproxy_states();
    let toml = parity_toml(&lab.backends);
    let mut verdicts: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut last: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for _ in 0..ROUNDS {
        let report = lab.probe_with(Ns::Lb, LAB_DEFAULTS, &toml, &["--no-attribution"]);
        for b in &lab.backends {
            for s in &b.servers {
                let name = parity_target(b, s);
                let outcome = report.outcome(&name, "haproxy").clone();
                let ok = outcome["ok"].as_bool().unwrap_or(false);
                verdicts
                    .entry(name.clone())
                    .or_insert_with(|| Verdict::new(profile.rise, profile.fall, profile.initial))
                    .observe(ok, tokio::time::Instant::now());
                last.insert(name, outcome);
            }
        }
    }
    let after = lab.haproxy_states();
    assert_eq!(
        before.iter().map(|s| (&s.backend, &s.server, &s.status)).collect::<Vec<_>>(),
        after.iter().map(|s| (&s.backend, &s.server, &s.status)).collect::<Vec<_>>(),
        "HAProxy's states stayed put while parallax probed"
    );

    let configured: usize = lab.backends.iter().map(|b| b.servers.len()).sum();
    assert_eq!(after.len(), configured, "show stat lists every configured server: {after:#?}");
    let mut differences = Vec::new();
    let (mut up, mut down) = (0, 0);
    for b in &lab.backends {
        for s in &b.servers {
            let name = parity_target(b, s);
            let state = after
                .iter()
                .find(|x| x.backend == b.name && x.server == s.name)
                .unwrap_or_else(|| panic!("{name} missing from show stat"));
            let haproxy_up = state.up().unwrap_or_else(|| panic!("{name} is between states: {state:?}"));
            let ours = verdicts.get(&name).and_then(Verdict::known);
            if haproxy_up {
                up += 1;
            } else {
                down += 1;
            }
            if ours != Some(if haproxy_up { Health::Healthy } else { Health::Unhealthy }) {
                let o = &last[&name];
                differences.push(format!(
                    "{name}: HAProxy {} ({} {}), parallax {ours:?} (last: ok={} error={} status={} detail={})",
                    state.status, state.check_status, state.last_check, o["ok"], o["error"], o["status"], o["detail"]
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "parallax's haproxy profile and HAProxy 2.6 disagree on {} of {configured} servers:\n{}\n{}",
        differences.len(),
        differences.join("\n"),
        lab.logs()
    );
    // The lab has to exercise both verdicts for parity to mean anything.
    assert!(up >= 5 && down >= 10, "UP {up}, DOWN {down}: {after:#?}");
}
