//! Kubernetes discovery live, against a real kube-apiserver and etcd on loopback
//! (`support::kube`): the running daemon's plan follows Services created, annotated and deleted
//! within seconds through the normal reload path, keeping the state of the views that did not
//! change; the live watch follows EndpointSlices scaled up and down (an NLB's checks of each
//! local pod); an API server that is stopped leaves the last good plan
//! probing, says so on `/readyz`, the status document and `/metrics`, and the plan resyncs when
//! it is back. Probes go to 127.0.0.x only (the Services' node ports on a loopback "node").

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parallax::admin::AdminState;
use parallax::config;
use parallax::daemon::{Daemon, Handle, Options};
use parallax::discovery::kubernetes::source::{self, watch as kwatch};
use parallax::discovery::kubernetes::{derive, Derivation, DeriveOptions, DerivedTarget};
use parallax::export::{ResourceInfo, Telemetry};
use parallax::status::StatusDoc;
use serde_json::json;
use tokio::sync::oneshot;

use support::kube::KubeServer;
use support::probes::{toml_str, ProbesDir};
use support::wait_for;

/// The loopback address standing for this node.
const NODE_IP: &str = "127.0.0.61";

/// A daemon in node mode on `server`, its configuration directory, and its stop.
struct Running {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: ProbesDir,
}

impl Running {
    fn start(server: &KubeServer, namespace: &str) -> Running {
        let dir = ProbesDir::new();
        dir.file(
            "10-daemon.toml",
            &format!(
                "[defaults]\ninterval = \"1s\"\ntimeout = \"500ms\"\n\n[discovery.kubernetes]\nkubeconfig = {}\n\
                 mode = \"node\"\nnamespaces = [{}]\nprovider = \"generic\"\n",
                toml_str(&server.parallax_kubeconfig().display().to_string()),
                toml_str(namespace),
            ),
        );
        let plan = dir.load();
        let env: HashMap<String, String> = [("NODE_NAME", "node-live"), ("NODE_IP", NODE_IP)]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let options = Options {
            config_dir: Some(dir.path().to_path_buf()),
            env: Arc::new(env),
            watch_interval: Some(Duration::from_millis(200)),
            ..Options::default()
        };
        let telemetry = Arc::new(Telemetry::new(&plan.export, ResourceInfo::default()));
        let daemon = Daemon::new(plan, telemetry, options);
        let handle = daemon.handle();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(daemon.run(None, async move {
            let _ = stopped.await;
        }));
        Running { handle, stop: Some(stop), task, _dir: dir }
    }

    fn status(&self) -> StatusDoc {
        self.handle.status()
    }

    /// Waits up to `within` for `check` to hold on the status document.
    async fn until<T>(&self, within: Duration, check: impl Fn(&StatusDoc) -> Option<T>) -> Option<T> {
        wait_for(within, || check(&self.status())).await
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

/// The names of the running targets.
fn targets(doc: &StatusDoc) -> Vec<String> {
    doc.targets.iter().map(|t| t.name.clone()).collect()
}

/// Probes finished so far by `view` of `target`.
fn probes(doc: &StatusDoc, target: &str, view: &str) -> Option<u64> {
    let t = doc.targets.iter().find(|t| t.name == target)?;
    Some(t.views.iter().find(|v| v.name == view)?.probes)
}

/// The checker views of `target`, by name.
fn checkers(doc: &StatusDoc, target: &str) -> Vec<String> {
    doc.targets
        .iter()
        .filter(|t| t.name == target)
        .flat_map(|t| t.views.iter().filter(|v| v.name != "client").map(|v| v.name.clone()))
        .collect()
}

fn service(name: &str, annotations: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"parallax.io/probe": "true"}, "annotations": annotations},
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_follows_the_cluster_and_survives_an_api_server_outage() {
    let server = KubeServer::start().await;
    let ns = server.namespace("live").await;
    // Selected, and not: only the labelled Service becomes a target.
    server.create(&ns, service("web", json!({}))).await;
    let mut unlabelled = service("hidden", json!({}));
    unlabelled["metadata"]["labels"] = json!({});
    server.create(&ns, unlabelled).await;

    let running = Running::start(&server, &ns);
    let web = format!("svc.{ns}.web.http");
    let found = running.until(Duration::from_secs(20), |s| targets(s).contains(&web).then_some(())).await;
    assert!(found.is_some(), "the labelled Service became a target: {:?}", running.status().discovery);
    let doc = running.status();
    assert!(doc.ready, "ready once the cluster is listed");
    assert_eq!(targets(&doc).iter().filter(|t| t.contains("hidden")).count(), 0, "{:?}", targets(&doc));
    assert!(checkers(&doc, &web).contains(&"kube-proxy".to_owned()), "ETP Local: kube-proxy's view: {doc:?}");
    let discovery = doc.discovery.clone().unwrap_or_default();
    assert!(discovery.synced && discovery.healthy, "{discovery:?}");
    assert_eq!(discovery.targets, 1, "{discovery:?}");
    // No EndpointSlice of web at all (no controller-manager runs): nothing is claimed about its
    // endpoints, so no condition.
    assert!(doc.conditions.is_empty(), "{:?}", doc.conditions);

    // A second Service: added within seconds, the first keeps its views' state.
    let before = running
        .until(Duration::from_secs(10), |s| probes(s, &web, "client").filter(|&n| n >= 2))
        .await
        .unwrap_or_else(|| panic!("the client view probes: {:?}", running.status()));
    server.create(&ns, service("api", json!({}))).await;
    let api = format!("svc.{ns}.api.http");
    let added = running.until(Duration::from_secs(10), |s| targets(s).contains(&api).then_some(())).await;
    assert!(added.is_some(), "a new Service joins the plan: {:?}", targets(&running.status()));
    let after = probes(&running.status(), &web, "client").unwrap_or(0);
    assert!(after >= before, "the unchanged target kept its counters ({before} -> {after})");

    // An annotation changes a checker: the plan follows.
    let patch = json!({"metadata": {"annotations": {"parallax.io/check-path": "/ready"}}});
    server.patch(&ns, "v1", "Service", "api", patch).await;
    let generation = running.status().generation;
    let followed =
        running.until(Duration::from_secs(10), |s| (s.generation > generation).then_some(())).await;
    assert!(followed.is_some(), "an annotation brings a reload");

    // The API server stops: probing goes on with the last good objects; readiness stays, and
    // says so; the metrics count the failures.
    server.stop();
    let failing = running
        .until(Duration::from_secs(30), |s| s.discovery.as_ref().filter(|d| !d.healthy).cloned())
        .await
        .unwrap_or_else(|| panic!("the outage is seen: {:?}", running.status().discovery));
    assert!(failing.failing_since.is_some(), "{failing:?}");
    let doc = running.status();
    assert!(
        targets(&doc).contains(&web) && targets(&doc).contains(&api),
        "last good plan kept: {:?}",
        targets(&doc)
    );
    assert!(running.handle.ready(), "an outage does not make the daemon unready");
    let detail = running.handle.readiness_detail().unwrap_or_default();
    assert!(detail.contains("failing since") && detail.contains("last good objects"), "{detail}");
    let metrics = running.handle.metrics();
    assert!(metrics.contains("parallax_discovery_up{resource=\"services\"} 0"), "{metrics}");
    assert!(!metrics.contains("parallax_discovery_errors_total{resource=\"services\"} 0\n"), "{metrics}");

    // Back: the watch resyncs, and what changed meanwhile (a deletion, made in etcd through the
    // restarted server before the watch reconnects) reaches the plan.
    server.restart().await;
    server.delete(&ns, "v1", "Service", "web").await;
    let resynced = running
        .until(Duration::from_secs(60), |s| {
            let healthy = s.discovery.as_ref().is_some_and(|d| d.healthy);
            (healthy && !targets(s).contains(&web)).then_some(())
        })
        .await;
    assert!(resynced.is_some(), "resynced after the outage: {:?}", running.status().discovery);
    assert!(targets(&running.status()).contains(&api), "the remaining Service stays");
    let metrics = running.handle.metrics();
    assert!(metrics.contains("parallax_discovery_up{resource=\"services\"} 1"), "{metrics}");
    running.stop().await;
}

/// An EndpointSlice of Service `service` with one ready endpoint per address, all on `node`.
fn slice(service: &str, addresses: &[&str], node: &str) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = addresses
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true}, "nodeName": node}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-a"), "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    })
}

/// The derivation from the live watch now (the watch's own health says it has listed).
async fn derive_now(
    watch: &mut kwatch::Watch,
    settings: &config::KubernetesDiscovery,
    within: Duration,
    until: impl Fn(&Derivation) -> bool,
) -> Option<Derivation> {
    let options = DeriveOptions {
        mode: config::Mode::Node,
        node_name: Some("node-live".to_owned()),
        node_ip: Some(NODE_IP.parse().ok()?),
        provider: settings.provider,
    };
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if watch.synced() {
            let derivation = derive(&source::select(watch.snapshot(), settings), &options);
            if until(&derivation) {
                return Some(derivation);
            }
        }
        if tokio::time::timeout_at(deadline, watch.changed()).await.is_err() {
            return None;
        }
    }
}

/// The checker views of the only target.
/// Each target's name and its checker views' names, as `target: view, view`.
fn pod_checks(d: &Derivation) -> Vec<String> {
    let views = |t: &DerivedTarget| t.checkers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    d.targets.iter().map(|t| format!("{}: {}", t.name, views(t))).collect()
}

/// An NLB with ip targets checks each pod: scaling the Service's EndpointSlice on this node adds
/// and removes the targets of local pods, through the live watch (EndpointSlices are watched only for the
/// selected Services). The API server refuses loopback pod addresses, so nothing is probed here:
/// the daemon's part, the reload of a changed derivation, is the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_endpoint_slices_adds_and_removes_the_checks_of_local_pods() {
    let server = KubeServer::shared();
    let ns = server.namespace("scale").await;
    let annotations = json!({"service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip"});
    let mut nlb = service("pods", annotations);
    nlb["spec"]["loadBalancerClass"] = json!("service.k8s.aws/nlb");
    nlb["spec"]["externalTrafficPolicy"] = json!("Cluster");
    server.create(&ns, nlb).await;
    server.create(&ns, slice("pods", &["10.244.1.7"], "node-live")).await;
    // A slice of a Service that is not selected is not even watched.
    server.create(&ns, slice("other", &["10.244.1.9"], "node-live")).await;

    let mut settings = config::KubernetesDiscovery::defaults();
    settings.kubeconfig = Some(server.parallax_kubeconfig());
    settings.namespaces = vec![ns.clone()];
    settings.provider = config::ProviderChoice::Aws;
    let client = kwatch::client(&settings).await.unwrap_or_else(|e| panic!("{e}"));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut watch = kwatch::start(client, &settings, Some("node-live".to_owned()), stopped);
    let within = Duration::from_secs(15);

    let one = derive_now(&mut watch, &settings, within, |d| pod_checks(d).len() == 1).await;
    let one = one.unwrap_or_else(|| panic!("one local pod, one check: {:?}", watch.health()));
    let target = |ip: &str| format!("svc.{ns}.pods.http.{ip}: aws-nlb");
    assert_eq!(pod_checks(&one), [target("10.244.1.7")], "a target per local pod");
    let slices = watch.health().get(&kwatch::Kind::EndpointSlices).map(|h| h.objects);
    assert_eq!(slices, Some(1), "only the selected Service's slice is held");

    let patch = json!({"endpoints": [
        {"addresses": ["10.244.1.7"], "conditions": {"ready": true}, "nodeName": "node-live"},
        {"addresses": ["10.244.1.8"], "conditions": {"ready": true}, "nodeName": "node-live"},
        {"addresses": ["10.244.2.4"], "conditions": {"ready": true}, "nodeName": "node-other"},
        {"addresses": ["10.244.1.6"], "conditions": {"ready": false}, "nodeName": "node-live"}
    ]});
    server.patch(&ns, "discovery.k8s.io/v1", "EndpointSlice", "pods-a", patch).await;
    let two = derive_now(&mut watch, &settings, within, |d| pod_checks(d).len() == 2).await;
    let two = two.unwrap_or_else(|| panic!("scaled up: {:?}", watch.health()));
    assert_eq!(pod_checks(&two), [target("10.244.1.7"), target("10.244.1.8")], "this node's ready pods");

    server.delete(&ns, "discovery.k8s.io/v1", "EndpointSlice", "pods-a").await;
    let none = derive_now(&mut watch, &settings, within, |d| d.targets.is_empty()).await;
    assert!(none.is_some(), "no local pod: no target here ({:?})", watch.health());
    let _ = stop.send(true);
}
