//! A [`Derivation`] as a probes.d file: TOML whose every value carries its origin as a comment,
//! so that a user can review it, commit it or start from it; or as JSON. The daemon compiles the
//! same text, one virtual file per target, so that one bad target (an annotation with a bad
//! interval) is reported and dropped without taking the others with it.
//!
//! Every value comes from the cluster, so `${` is escaped as `$${`: an annotation must never make
//! parallax substitute `${file:..}` or `${env:..}` (a Service's author could otherwise have the
//! service-account token sent where they like).

use std::fmt::Write as _;
use std::path::PathBuf;

use super::derive::{Derivation, DerivedTarget, DerivedView, Setting, Value};
use crate::config::{ClusterFacts, Condition};

/// The prefix of the virtual paths of derived files, as errors and `check` name them.
pub const VIRTUAL_DIR: &str = "kubernetes";

/// What the header of a rendered file says.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// Lines describing the run: mode, node, source (`--from` files or the API server).
    pub lines: Vec<String>,
}

/// The whole derivation as one probes.d file.
pub fn toml(derivation: &Derivation, header: &Header) -> String {
    let mut out = String::new();
    out.push_str("# Derived from the cluster by `parallax discover`: every value says where it came from.\n");
    for line in &header.lines {
        let _ = writeln!(out, "# {line}");
    }
    if derivation.notes.is_empty() {
        out.push_str("# Nothing was skipped.\n");
    } else {
        out.push_str("#\n# Skipped or found:\n");
        for note in &derivation.notes {
            let _ = writeln!(out, "#   {}: {}", note.object, one_line(&note.message));
        }
    }
    if derivation.targets.is_empty() {
        out.push_str("#\n# No target: nothing selected derives one (see above, and the selector).\n");
    }
    for target in &derivation.targets {
        out.push('\n');
        target_toml(&mut out, target);
    }
    conditions_toml(&mut out, &derivation.conditions);
    out
}

/// The virtual file of the derivation's conditions (a name no target file can take).
pub const CONDITIONS_FILE: &str = "_conditions.toml";

/// One virtual file per target, named `kubernetes/<target>.toml`: what the daemon compiles.
/// The conditions go to `kubernetes/_conditions.toml`, when there are any.
pub fn files(derivation: &Derivation) -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = derivation
        .targets
        .iter()
        .map(|t| {
            let mut text = String::new();
            target_toml(&mut text, t);
            (PathBuf::from(VIRTUAL_DIR).join(format!("{}.toml", t.name)), text)
        })
        .collect();
    if !derivation.conditions.is_empty() {
        let mut text = String::new();
        conditions_toml(&mut text, &derivation.conditions);
        files.push((PathBuf::from(VIRTUAL_DIR).join(CONDITIONS_FILE), text));
    }
    files
}

/// `[[condition]]` tables: what the API says that needs no probe.
fn conditions_toml(out: &mut String, conditions: &[Condition]) {
    for c in conditions {
        out.push('\n');
        let _ = writeln!(out, "# {}: what the API says (needs no probe)", c.kind);
        out.push_str("[[condition]]\n");
        let _ = writeln!(out, "kind = {}", quote(c.kind.as_str()));
        let _ = writeln!(out, "object = {}", quote(&c.object));
        if let Some(t) = &c.target {
            let _ = writeln!(out, "target = {}", quote(t));
        }
        if let Some(r) = &c.reason {
            let _ = writeln!(out, "reason = {}", quote(r));
        }
        let _ = writeln!(out, "message = {}", quote(&one_line(&c.message)));
    }
}

/// `[target.cluster]`: the objects behind the target, as the API gave them.
fn cluster_toml(out: &mut String, f: &ClusterFacts) {
    out.push('\n');
    out.push_str("[target.cluster]  # what the Kubernetes API said when this was derived\n");
    let _ = writeln!(out, "object = {}", quote(&f.object));
    if let Some(node) = &f.node {
        let _ = writeln!(out, "node = {}", quote(node));
    }
    let list =
        |items: &[String]| format!("[{}]", items.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", "));
    if !f.backends.is_empty() {
        let _ = writeln!(out, "backends = {}", list(&f.backends));
    }
    if let Some(p) = &f.traffic_policy {
        let _ = writeln!(out, "traffic_policy = {}", quote(p));
    }
    if let Some(p) = f.health_check_node_port {
        let _ = writeln!(out, "health_check_node_port = {p}");
    }
    let counts = [
        ("ready_endpoints", f.ready_endpoints),
        ("local_ready_endpoints", f.local_ready_endpoints),
        ("local_terminating_endpoints", f.local_terminating_endpoints),
    ];
    for (key, n) in counts {
        if let Some(n) = n {
            let _ = writeln!(out, "{key} = {n}");
        }
    }
    if !f.endpoint_nodes.is_empty() {
        let _ = writeln!(out, "endpoint_nodes = {}", list(&f.endpoint_nodes));
    }
    if !f.route_hosts.is_empty() {
        let _ = writeln!(out, "route_hosts = {}", list(&f.route_hosts));
    }
    if !f.tls.is_empty() {
        let entries: Vec<String> = f
            .tls
            .iter()
            .map(|t| {
                format!(
                    "{{ source = {}, hosts = {}, secret = {} }}",
                    quote(&t.source),
                    list(&t.hosts),
                    quote(&t.secret)
                )
            })
            .collect();
        let _ = writeln!(out, "tls = [{}]", entries.join(", "));
    }
}

/// The derivation as JSON (targets, views, settings with origins, notes).
pub fn json(derivation: &Derivation) -> String {
    serde_json::to_string_pretty(derivation).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn target_toml(out: &mut String, target: &DerivedTarget) {
    let _ = writeln!(out, "# {}", target.source);
    for c in &target.comments {
        let _ = writeln!(out, "# {}", one_line(c));
    }
    out.push_str("[[target]]\n");
    let _ = writeln!(out, "name = {}", quote(&target.name));
    view_toml(out, "[target.client]", "[target.client.expect]", &target.client, false);
    for checker in &target.checkers {
        view_toml(out, "[[target.checker]]", "[target.checker.expect]", checker, true);
    }
    if let Some(facts) = &target.cluster {
        cluster_toml(out, facts);
    }
}

fn view_toml(out: &mut String, table: &str, expect_table: &str, view: &DerivedView, named: bool) {
    out.push('\n');
    let _ = writeln!(out, "{table}  # {}", one_line(&view.about));
    if named {
        let _ = writeln!(out, "name = {}", quote(&view.name));
    }
    let (expect, own): (Vec<&Setting>, Vec<&Setting>) =
        view.settings.iter().partition(|s| s.key.starts_with("expect."));
    for s in own {
        setting_line(out, s.key, s);
    }
    if !expect.is_empty() {
        let _ = writeln!(out, "{expect_table}");
        for s in expect {
            setting_line(out, s.key.trim_start_matches("expect."), s);
        }
    }
}

fn setting_line(out: &mut String, key: &str, s: &Setting) {
    let line = format!("{key} = {}", value(&s.value));
    let _ = writeln!(out, "{line:<44}  # {}", one_line(&s.origin.to_string()));
}

fn value(v: &Value) -> String {
    match v {
        Value::Str(s) => quote(s),
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::List(items) => {
            let items: Vec<String> = items.iter().map(|s| quote(s)).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// A TOML basic string of `s`, with `${` escaped so that no substitution happens.
fn quote(s: &str) -> String {
    crate::config::toml_string(&s.replace("${", "$${"))
}

/// `s` on one line (a comment cannot span lines).
fn one_line(s: &str) -> String {
    s.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::kubernetes::cluster::ObjectRef;
    use crate::discovery::kubernetes::derive::{Note, Origin};

    fn shop() -> Derivation {
        let mut client =
            DerivedView::new("client", "the users' request, as the NLB delivers it to this node");
        client.set("url", "https://shop.example.com/cart", Origin::Route("Ingress shop/web".to_owned())).set(
            "connect_to",
            "10.0.1.5:31443",
            Origin::Field("spec.ports[https].nodePort".to_owned()),
        );
        let mut nlb = DerivedView::new("aws-nlb", "the NLB's health check of this node");
        nlb.set("profile", "aws-nlb", Origin::Parallax("provider aws".to_owned()))
            .set(
                "url",
                "http://10.0.1.5:31999/${file:/var/run/secrets/token}",
                Origin::Annotation("x".to_owned()),
            )
            .set("rise", 3u64, Origin::ProviderDefault("aws-load-balancer-controller default".to_owned()))
            .set("expect.status", "200-399", Origin::ProviderDefault("default".to_owned()));
        Derivation {
            targets: vec![DerivedTarget {
                name: "svc.shop.web.https".to_owned(),
                source: ObjectRef { kind: "Service", namespace: "shop".to_owned(), name: "web".to_owned() },
                comments: vec!["provider aws\n(node spec.providerID)".to_owned()],
                client,
                checkers: vec![nlb],
                cluster: Some(ClusterFacts {
                    object: "Service shop/web".to_owned(),
                    node: Some("node-a".to_owned()),
                    backends: vec!["shop/web".to_owned()],
                    traffic_policy: Some("Local".to_owned()),
                    health_check_node_port: Some(31999),
                    ready_endpoints: Some(3),
                    local_ready_endpoints: Some(1),
                    local_terminating_endpoints: Some(0),
                    endpoint_nodes: vec!["node-a: 1".to_owned(), "node-b: 2".to_owned()],
                    route_hosts: vec!["shop.example.com".to_owned()],
                    tls: vec![crate::config::TlsEntry {
                        source: "Ingress shop/web tls[0]".to_owned(),
                        hosts: vec!["shop.example.com".to_owned()],
                        secret: "shop/web-${tls}".to_owned(),
                    }],
                    conditions: Vec::new(),
                }),
            }],
            notes: vec![Note {
                object: ObjectRef { kind: "Ingress", namespace: "shop".to_owned(), name: "re".to_owned() },
                message: "a regex path \"a\\b\" cannot become a URL".to_owned(),
            }],
            conditions: vec![
                Condition {
                    kind: crate::config::ConditionKind::RouteNotAccepted,
                    object: "HTTPRoute shop/web".to_owned(),
                    target: Some("svc.shop.web.https".into()),
                    reason: Some("NotAllowedByListeners".to_owned()),
                    message: "not accepted\nat all".to_owned(),
                },
                Condition {
                    kind: crate::config::ConditionKind::LbAddressPending,
                    object: "Ingress shop/new".to_owned(),
                    target: None,
                    reason: None,
                    message: "no address".to_owned(),
                },
            ],
        }
    }

    #[test]
    fn cluster_facts_and_conditions_compile_back_to_what_was_derived() {
        let derivation = shop();
        let text = toml(&derivation, &Header::default());
        let env = std::collections::HashMap::new();
        let plan = crate::config::load_str(std::path::Path::new("discovered.toml"), &text, &env)
            .unwrap_or_else(|e| panic!("the rendered file compiles: {e}\n{text}"));
        let mut expected = derivation.targets[0].cluster.clone().unwrap_or_default();
        let mut conditions = derivation.conditions.clone();
        conditions[0].message = "not accepted at all".to_owned();
        expected.conditions = vec![conditions[0].clone()];
        assert_eq!(plan.targets[0].cluster.as_deref(), Some(&expected));
        assert_eq!(plan.conditions, conditions);
        // The daemon's files: one per target, one for the conditions.
        let files = files(&derivation);
        assert_eq!(files.len(), 2);
        assert_eq!(files[1].0, PathBuf::from("kubernetes/_conditions.toml"));
    }

    #[test]
    fn the_file_compiles_with_every_origin_beside_its_value_and_no_substitution() {
        let text = toml(&shop(), &Header { lines: vec!["mode node".to_owned()] });
        assert!(text.contains("#   Ingress shop/re: a regex path"), "{text}");
        assert!(text.contains("# provider aws (node spec.providerID)"), "{text}");
        assert!(text.contains("# route: Ingress shop/web"), "{text}");
        assert!(text.contains("[target.checker.expect]"), "{text}");
        let env = std::collections::HashMap::new();
        let plan = crate::config::load_str(std::path::Path::new("discovered.toml"), &text, &env)
            .unwrap_or_else(|e| panic!("the rendered file compiles: {e}\n{text}"));
        let target = &plan.targets[0];
        assert_eq!(&*target.name, "svc.shop.web.https");
        assert_eq!(target.checkers[0].rise, 3);
        // `${` from the cluster stays literal: no file is read.
        assert!(plan.read_files.is_empty(), "{:?}", plan.read_files);
        let checker_path = target.checkers[0].path_display();
        assert!(checker_path.contains("file:/var/run/secrets/token"), "{checker_path}");
    }

    #[test]
    fn the_daemon_gets_one_virtual_file_per_target_and_json_keeps_the_origins() {
        let files = files(&shop());
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].0, PathBuf::from("kubernetes/svc.shop.web.https.toml"));
        assert!(files[0].1.starts_with("# Service shop/web\n# provider aws"), "{}", files[0].1);
        let json: serde_json::Value = serde_json::from_str(&json(&shop())).unwrap_or_default();
        assert_eq!(json["targets"][0]["checkers"][0]["settings"][2]["origin"]["kind"], "provider_default");
        assert_eq!(json["notes"][0]["object"]["kind"], "Ingress");
    }
}
