//! The probes files shipped under `deploy/` compile: every `probes.d/` directory there, and every
//! Kubernetes ConfigMap whose `*.toml`/`*.yaml` keys are a probes.d (as the DaemonSet mounts
//! it), with `NODE_IP`/`NODE_NAME` set and every `${file:..}`/`${env:..}` secret provided. A
//! stray key inserted into any table of any of those files is rejected with file and key path.
//! (`scripts/check-deploy` checks the same directories with the `parallax check` binary, and
//! the manifests, unit and image around them.)

#[path = "support/tree.rs"]
mod tree;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use parallax::config::{self, explain, ConfigErrors, Host, MaybeSecret, Plan, ProfileName, Role};
use tree::{join, Tree, STRAY};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
/// Test values of the downward API variables (nothing is probed: these tests only compile).
const NODE_IP: &str = "192.0.2.10";
const NODE_NAME: &str = "node-test";
/// The content of every secret file the probes read.
const TOKEN: &str = "deploy-test-token";

/// One probes.d found under `deploy/`: where it came from and its files (name, text).
#[derive(Debug, Clone)]
struct Probes {
    origin: String,
    kubernetes: bool,
    files: Vec<(String, String)>,
}

fn is_probes_file(name: &str) -> bool {
    [".toml", ".yaml", ".yml"].iter().any(|ext| name.ends_with(ext)) && !name.starts_with('.')
}

/// Every probes.d under `deploy/`, in path order.
fn deploy_probes() -> Vec<Probes> {
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::from(DEPLOY)];
    // Bounded: deploy/ is a few levels deep.
    for _ in 0..1000 {
        let Some(dir) = dirs.pop() else { break };
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(&dir).expect("read deploy dir").map(|e| e.expect("dir entry").path()).collect();
        entries.sort();
        let name = |p: &Path| p.file_name().expect("name").to_string_lossy().into_owned();
        if dir.file_name().is_some_and(|n| n == "probes.d") {
            let files = entries
                .iter()
                .filter(|p| p.is_file() && is_probes_file(&name(p)))
                .map(|p| (name(p), std::fs::read_to_string(p).expect("read probes file")))
                .collect();
            found.push(Probes { origin: relative(&dir), kubernetes: false, files });
            continue;
        }
        for p in entries {
            if p.is_dir() {
                dirs.push(p);
            } else if name(&p).ends_with(".yaml") || name(&p).ends_with(".yml") {
                found.extend(config_maps(&p));
            }
        }
    }
    assert!(dirs.is_empty(), "deploy/ is deeper than expected");
    found.sort_by(|a, b| a.origin.cmp(&b.origin));
    found
}

fn relative(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(path).display().to_string()
}

/// The probes.d of every ConfigMap in a (possibly multi-document) YAML file.
fn config_maps(path: &Path) -> Vec<Probes> {
    let text = std::fs::read_to_string(path).expect("read manifest");
    let mut found = Vec::new();
    for (i, doc) in text.split("\n---").enumerate() {
        let tree = Tree::parse("manifest.yaml", doc);
        let Tree::Json(value) = tree else { unreachable!("YAML parses as JSON") };
        if value.get("kind").and_then(|k| k.as_str()) != Some("ConfigMap") {
            continue;
        }
        let data = value.get("data").and_then(|d| d.as_object()).cloned().unwrap_or_default();
        let files: Vec<(String, String)> = data
            .iter()
            .filter(|(k, _)| is_probes_file(k))
            .map(|(k, v)| (k.clone(), v.as_str().expect("ConfigMap data is text").to_owned()))
            .collect();
        if !files.is_empty() {
            found.push(Probes {
                origin: format!("{} (document {i})", relative(path)),
                kubernetes: true,
                files,
            });
        }
    }
    found
}

/// A probes.d written to a temporary directory, ready to load: every `${file:/abs}` is read from
/// `root/abs` instead, every file it names is created holding [`TOKEN`], and every `${env:X}` is
/// set.
struct Written {
    _dir: tempfile::TempDir,
    probes: PathBuf,
    env: HashMap<String, String>,
}

fn write(probes: &Probes, node_vars: bool) -> Written {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let probes_dir = dir.path().join("probes.d");
    std::fs::create_dir_all(&probes_dir).expect("mkdir");
    let mut env = HashMap::new();
    if node_vars {
        env.insert("NODE_IP".to_owned(), NODE_IP.to_owned());
        env.insert("NODE_NAME".to_owned(), NODE_NAME.to_owned());
    }
    for (name, text) in &probes.files {
        let mut out = String::new();
        let mut rest = text.as_str();
        // Bounded by the text's length: each turn consumes one `${`.
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            if rest[..i].ends_with('$') {
                // `$${`: a literal `${`, no substitution.
                out.push_str("${");
                rest = after;
                continue;
            }
            let end = after.find('}').unwrap_or_else(|| panic!("{name}: unterminated ${{"));
            let token = &after[..end];
            if let Some(path) = token.strip_prefix("file:") {
                let file = if let Some(abs) = path.strip_prefix('/') {
                    root.join(abs)
                } else {
                    probes_dir.join(path)
                };
                std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
                std::fs::write(&file, format!("{TOKEN}\n")).expect("write secret");
                out.push_str(&format!(
                    "${{file:{}}}",
                    if path.starts_with('/') { file.display().to_string() } else { path.to_owned() }
                ));
            } else {
                if let Some(var) = token.strip_prefix("env:") {
                    env.insert(var.to_owned(), TOKEN.to_owned());
                }
                out.push_str(&format!("${{{token}}}"));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        std::fs::write(probes_dir.join(name), out).expect("write probes file");
    }
    Written { _dir: dir, probes: probes_dir, env }
}

fn load(written: &Written) -> Result<Plan, ConfigErrors> {
    config::load_with(&written.probes, &written.env)
}

fn node_ip() -> IpAddr {
    NODE_IP.parse().expect("test NODE_IP")
}

// ---- every probes.d compiles ---------------------------------------------------------------------

#[test]
fn deploy_holds_the_configmap_and_the_external_vm_probes() {
    let all = deploy_probes();
    let origins: Vec<&str> = all.iter().map(|p| p.origin.as_str()).collect();
    assert!(
        all.iter().any(|p| p.kubernetes && p.origin.starts_with("deploy/kubernetes/")),
        "no ConfigMap with probes files under deploy/kubernetes: {origins:?}"
    );
    assert!(origins.contains(&"deploy/systemd/probes.d"), "{origins:?}");
    for p in &all {
        assert!(p.files.len() >= 2, "{}: a daemon file and at least one target file", p.origin);
        assert!(p.files.windows(2).all(|w| w[0].0 < w[1].0), "{}: files in name order", p.origin);
    }
}

#[test]
fn every_deploy_probes_dir_compiles_with_its_secrets_redacted() {
    for probes in deploy_probes() {
        let written = write(&probes, true);
        let plan = load(&written).unwrap_or_else(|e| panic!("{} does not compile:\n{e}", probes.origin));
        assert_eq!(plan.files.len(), probes.files.len(), "{}: every file is read", probes.origin);
        assert!(!plan.targets.is_empty(), "{}: has targets", probes.origin);
        assert!(plan.export.otlp.is_some(), "{}: exports OTLP", probes.origin);
        let text = explain(&plan);
        assert!(!text.contains(TOKEN), "{}: a secret reached `parallax check` output", probes.origin);
        assert!(!format!("{plan:?}").contains(TOKEN), "{}: a secret reached Debug", probes.origin);
        let secrets: Vec<&MaybeSecret> = plan
            .views()
            .flat_map(|v| v.http.headers.iter().map(|(_, value)| value))
            .filter(|v| v.is_secret())
            .collect();
        assert!(!secrets.is_empty(), "{}: shows a token read from a secret file", probes.origin);
        assert!(
            secrets.iter().all(|s| s.expose().contains(TOKEN)),
            "{}: the secret files are read",
            probes.origin
        );
    }
}

#[test]
fn the_configmap_serves_every_node_through_node_ip_and_node_name() {
    let k8s: Vec<Probes> = deploy_probes().into_iter().filter(|p| p.kubernetes).collect();
    assert!(!k8s.is_empty());
    for probes in k8s {
        let o = &probes.origin;
        // Without the downward API variables it must not compile: it depends on them.
        let errors = load(&write(&probes, false)).err().unwrap_or_else(|| panic!("{o} ignores NODE_IP"));
        assert!(errors.to_string().contains("${NODE_IP} is not set"), "{o}:\n{errors}");

        let plan = load(&write(&probes, true)).unwrap_or_else(|e| panic!("{o}:\n{e}"));
        assert_eq!(plan.admin.listen.ip(), node_ip(), "{o}: the admin server listens on the node's IP");
        assert!(plan.admin.listen.port() >= 1024, "{o}: an admin port below 1024 needs NET_BIND_SERVICE");
        let profiles: Vec<ProfileName> = plan.views().filter_map(|v| v.profile).collect();
        assert!(profiles.contains(&ProfileName::KubeProxy), "{o}: a kube-proxy healthCheckNodePort checker");
        assert!(
            profiles.contains(&ProfileName::AwsNlb) || profiles.contains(&ProfileName::Gcp),
            "{o}: a node-port checker with the aws-nlb or gcp profile"
        );
        for view in plan.views().filter(|v| v.role == Role::Checker) {
            assert_eq!(view.dial_endpoint().host, Host::Ip(node_ip()), "{o}: {} probes this node", view.id());
        }
        for target in &plan.targets {
            let dial = &target.client.dial_endpoint().host;
            assert_eq!(
                dial,
                &Host::Ip(node_ip()),
                "{o}: {}'s client view goes through this node",
                target.name
            );
            assert!(
                matches!(target.client.url_endpoint.host, Host::Name(_)),
                "{o}: the client view uses the public name"
            );
        }
        assert!(explain(&plan).contains(NODE_NAME), "{o}: ${{NODE_NAME}} is used");
    }
}

#[test]
fn the_external_vm_probes_are_client_views_of_public_names() {
    let probes = deploy_probes()
        .into_iter()
        .find(|p| p.origin == "deploy/systemd/probes.d")
        .expect("deploy/systemd/probes.d");
    // The VM is no Kubernetes node: no NODE_IP, no NODE_NAME.
    let plan = load(&write(&probes, false)).unwrap_or_else(|e| panic!("without NODE_IP/NODE_NAME:\n{e}"));
    for view in plan.views() {
        assert_eq!(view.role, Role::Client, "{}: the VM probes as users do", view.id());
        assert!(view.connect_to.is_none(), "{}: dials what DNS answers", view.id());
        assert!(matches!(view.url_endpoint.host, Host::Name(_)), "{}: a public name", view.id());
    }
    assert!(plan.views().any(|v| v.each_address), "every address of a multi-address LB is probed");
}

// ---- a stray key anywhere is rejected ------------------------------------------------------------

#[test]
fn a_stray_key_in_any_table_of_any_deploy_probes_file_is_rejected_with_file_and_key() {
    let mut checked = 0;
    for probes in deploy_probes() {
        for (i, (name, text)) in probes.files.iter().enumerate() {
            let tree = Tree::parse(name, text);
            let tables = tree.tables();
            assert!(!tables.is_empty(), "{}: {name} has tables", probes.origin);
            for (path, key) in tables {
                let mut edited = probes.clone();
                edited.files[i].1 = tree.with_stray(&path);
                let expected_key = join(&key, STRAY);
                match load(&write(&edited, true)) {
                    Ok(_) => panic!("{}: {name}: a stray key at {expected_key} was accepted", probes.origin),
                    Err(e) => assert!(
                        e.0.iter().any(|e| {
                            e.file.as_deref().and_then(Path::file_name).is_some_and(|f| f == name.as_str())
                                && e.key == expected_key
                                && e.message.contains("unknown key")
                        }),
                        "{}: no error `{name}: {expected_key}: unknown key` among:\n{e}",
                        probes.origin
                    ),
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "only {checked} tables checked");
}
