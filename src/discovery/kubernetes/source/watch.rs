//! The API server as a source: one kube-runtime watcher per kind (per namespace when
//! `namespaces` is set), each keeping its objects in a store; a change to any store wakes the
//! consumer, which takes a [`Cluster`] snapshot.
//!
//! Bounded: the watchers only list what the selector selects (EndpointSlices only those of the
//! selected Services, restarted when that set changes), retries back off (kube-runtime's
//! default: exponential up to about a minute), and a missing custom resource (no Gateway API in
//! the cluster) is asked for again every few minutes, not in a loop. An API server that is down
//! leaves the stores as they were: the last good objects keep being derived from, and the health
//! says how long the watch has been failing. A 410 Gone (an expired resource version) makes the
//! watcher list again.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, ApiResource, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt as _;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use super::super::cluster::{BackendConfig, Cluster, Gateway, HttpRoute};
use super::SERVICE_NAME_LABEL;
use crate::config::KubernetesDiscovery;

/// How often a kind the cluster does not serve (a CRD not installed) is asked for again.
const ABSENT_RETRY: Duration = Duration::from_secs(300);
/// How often this node is read again (its provider ID and addresses rarely change).
const NODE_REFRESH: Duration = Duration::from_secs(60);

/// The kinds discovery watches, as metrics and `/readyz` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Services.
    Services,
    /// EndpointSlices of the selected Services.
    EndpointSlices,
    /// Ingresses.
    Ingresses,
    /// IngressClasses.
    IngressClasses,
    /// Gateways.
    Gateways,
    /// HTTPRoutes.
    HttpRoutes,
    /// GKE BackendConfigs.
    BackendConfigs,
    /// Pods of the selected Services' namespaces (provider gcp only: GKE Ingress derives its
    /// health check from their readiness probes).
    Pods,
    /// This node.
    Node,
}

impl Kind {
    /// The name metrics and the status document use.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Services => "services",
            Kind::EndpointSlices => "endpointslices",
            Kind::Ingresses => "ingresses",
            Kind::IngressClasses => "ingressclasses",
            Kind::Gateways => "gateways",
            Kind::HttpRoutes => "httproutes",
            Kind::BackendConfigs => "backendconfigs",
            Kind::Pods => "pods",
            Kind::Node => "node",
        }
    }
}

/// How the watch of one kind is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindHealth {
    /// The first complete list has arrived (the kind's objects are known).
    pub synced: bool,
    /// The cluster does not serve this kind (a CRD not installed): asked again every 5 minutes.
    pub absent: bool,
    /// The last request failed, and the watch is retrying.
    pub failing: bool,
    /// Errors since start.
    pub errors: u64,
    /// The last error, one line (never a token: kube's errors carry none).
    pub last_error: Option<String>,
    /// When the last complete list or event arrived.
    #[serde(skip)]
    pub last_success: Option<SystemTime>,
    /// Objects in the store now.
    pub objects: usize,
}

/// Every kind's stores and health; shared by the watcher tasks and the consumer. A kind has one
/// store per watcher (one per watched namespace), so that one namespace's relist replaces only
/// its own objects.
#[derive(Debug, Default)]
struct Stores {
    services: Vec<BTreeMap<String, Service>>,
    endpoint_slices: Vec<BTreeMap<String, EndpointSlice>>,
    ingresses: Vec<BTreeMap<String, Ingress>>,
    ingress_classes: Vec<BTreeMap<String, IngressClass>>,
    gateways: Vec<BTreeMap<String, Gateway>>,
    http_routes: Vec<BTreeMap<String, HttpRoute>>,
    backend_configs: Vec<BTreeMap<String, BackendConfig>>,
    pods: Vec<BTreeMap<String, Pod>>,
    node: Option<Node>,
    health: BTreeMap<Kind, KindHealth>,
    /// Per kind, the watchers (by store index) that have listed once.
    synced: BTreeMap<Kind, BTreeSet<usize>>,
    /// The Service names the EndpointSlice watch was started for (none before it starts).
    slices_for: Option<BTreeSet<String>>,
    /// The namespaces the Pod watch was started for; none before it starts, or when it does not
    /// run ([`Stores::watch_pods`]).
    pods_for: Option<BTreeSet<String>>,
    /// Whether Pods are watched (provider `gcp`).
    watch_pods: bool,
}

impl Stores {
    /// The names of the Services seen.
    fn service_names(&self) -> BTreeSet<String> {
        self.services.iter().flat_map(|p| p.values()).filter_map(|s| s.metadata.name.clone()).collect()
    }

    /// The namespaces of the Services seen.
    fn service_namespaces(&self) -> BTreeSet<String> {
        self.services.iter().flat_map(|p| p.values()).filter_map(|s| s.metadata.namespace.clone()).collect()
    }

    /// Whether the EndpointSlice (and Pod) watches follow the Services seen now: right after a
    /// Services list, before their task restarts them, their stores are another set's.
    fn follows_services(&self) -> bool {
        self.slices_for.as_ref() == Some(&self.service_names())
            && (!self.watch_pods || self.pods_for.as_ref() == Some(&self.service_namespaces()))
    }
}

/// The running watch: snapshots of the cluster and the health of every kind.
#[derive(Debug, Clone)]
pub struct Watch {
    stores: Arc<Mutex<Stores>>,
    changes: watch::Receiver<u64>,
}

impl Watch {
    /// Waits until a store changes (or a watcher's health does). Returns false when every
    /// watcher has stopped.
    pub async fn changed(&mut self) -> bool {
        self.changes.changed().await.is_ok()
    }

    /// The objects now, as a [`Cluster`] (before selection: [`super::select`] is the caller's).
    pub fn snapshot(&self) -> Cluster {
        fn all<K: Clone>(parts: &[BTreeMap<String, K>]) -> Vec<K> {
            parts.iter().flat_map(|p| p.values().cloned()).collect()
        }
        let stores = lock(&self.stores);
        Cluster {
            services: all(&stores.services),
            endpoint_slices: all(&stores.endpoint_slices),
            ingresses: all(&stores.ingresses),
            ingress_classes: all(&stores.ingress_classes),
            ingress_classes_complete: stores.health.get(&Kind::IngressClasses).is_some_and(|h| h.synced),
            gateways: all(&stores.gateways),
            http_routes: all(&stores.http_routes),
            backend_configs: all(&stores.backend_configs),
            pods: all(&stores.pods),
            node: stores.node.clone(),
        }
    }

    /// Every kind's health now.
    pub fn health(&self) -> BTreeMap<Kind, KindHealth> {
        lock(&self.stores).health.clone()
    }

    /// Whether every kind that the cluster serves has been listed once, the EndpointSlices and
    /// Pods for the Services listed.
    pub fn synced(&self) -> bool {
        let stores = lock(&self.stores);
        stores.follows_services() && stores.health.values().all(|h| h.synced || h.absent)
    }
}

fn lock(stores: &Mutex<Stores>) -> std::sync::MutexGuard<'_, Stores> {
    // A watcher task that panicked while holding the lock left whole maps behind: keep going.
    stores.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The client of `settings`: its kubeconfig, else the in-cluster service account, then
/// `KUBECONFIG` and `~/.kube/config`.
pub async fn client(settings: &KubernetesDiscovery) -> Result<Client, String> {
    let config = match &settings.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            format!("no Kubernetes credentials: not in a pod with a service account, and no kubeconfig ({e})")
        })?,
    };
    Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

/// Starts watching what `settings` select, on tasks of the current runtime; `node_name` (node
/// mode) is read every minute. The watchers stop when `stop` turns true.
pub fn start(
    client: Client,
    settings: &KubernetesDiscovery,
    node_name: Option<String>,
    stop: watch::Receiver<bool>,
) -> Watch {
    let watch_pods = settings.provider == crate::config::ProviderChoice::Gcp;
    let stores = Arc::new(Mutex::new(Stores { watch_pods, ..Stores::default() }));
    let (tx, changes) = watch::channel(0u64);
    let spawner = Spawner { client, stores: stores.clone(), tx: Arc::new(tx), stop };
    let namespaces: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    let labels = Some(settings.selector.to_string()).filter(|s| !s.is_empty());
    for (i, ns) in namespaces.iter().enumerate() {
        let c = spawner.client.clone();
        let services: Api<Service> =
            ns.as_deref().map_or_else(|| Api::all(c.clone()), |n| Api::namespaced(c.clone(), n));
        let ingresses: Api<Ingress> =
            ns.as_deref().map_or_else(|| Api::all(c.clone()), |n| Api::namespaced(c.clone(), n));
        let gw = gateway_api("Gateway", "gateways");
        let routes = gateway_api("HTTPRoute", "httproutes");
        let bc = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("cloud.google.com", "v1", "BackendConfig"),
            "backendconfigs",
        );
        let gateways: Api<Gateway> = dynamic(&c, ns.as_deref(), &gw);
        let http_routes: Api<HttpRoute> = dynamic(&c, ns.as_deref(), &routes);
        let backend_configs: Api<BackendConfig> = dynamic(&c, ns.as_deref(), &bc);
        spawner.kind(Kind::Services, i, services, labels.clone(), |s| &mut s.services);
        spawner.kind(Kind::Ingresses, i, ingresses, labels.clone(), |s| &mut s.ingresses);
        spawner.kind(Kind::Gateways, i, gateways, labels.clone(), |s| &mut s.gateways);
        spawner.kind(Kind::HttpRoutes, i, http_routes, labels.clone(), |s| &mut s.http_routes);
        spawner.kind(Kind::BackendConfigs, i, backend_configs, None, |s| &mut s.backend_configs);
    }
    spawner.kind(Kind::IngressClasses, 0, Api::<IngressClass>::all(spawner.client.clone()), None, |s| {
        &mut s.ingress_classes
    });
    tokio::spawn(spawner.clone().endpoint_slices());
    if watch_pods {
        tokio::spawn(spawner.clone().pods());
    }
    if let Some(name) = node_name {
        tokio::spawn(spawner.node(name));
    }
    Watch { stores, changes }
}

fn gateway_api(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", kind), plural)
}

/// The Api of a custom resource, in `namespace` or in all.
fn dynamic<K>(client: &Client, namespace: Option<&str>, resource: &ApiResource) -> Api<K>
where
    K: Resource<DynamicType = ApiResource, Scope = kube::core::DynamicResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// What every watcher task needs.
#[derive(Clone)]
struct Spawner {
    client: Client,
    stores: Arc<Mutex<Stores>>,
    tx: Arc<watch::Sender<u64>>,
    stop: watch::Receiver<bool>,
}

/// A kind's stores inside [`Stores`].
type StoreOf<K> = fn(&mut Stores) -> &mut Vec<BTreeMap<String, K>>;

impl Spawner {
    /// Watches `api` into store `part` of `store`, with `labels` as the label selector.
    fn kind<K>(&self, kind: Kind, part: usize, api: Api<K>, labels: Option<String>, store: StoreOf<K>)
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        {
            let mut stores = lock(&self.stores);
            let parts = store(&mut stores);
            if parts.len() <= part {
                parts.resize_with(part + 1, BTreeMap::new);
            }
            stores.health.entry(kind).or_default();
        }
        let mut config = watcher::Config::default();
        if let Some(labels) = &labels {
            config = config.labels(labels);
        }
        tokio::spawn(self.clone().watch(kind, part, api, config, store));
    }

    /// The watch loop of one kind in one namespace, until the stop.
    async fn watch<K>(self, kind: Kind, part: usize, api: Api<K>, config: watcher::Config, store: StoreOf<K>)
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let mut stop = self.stop.clone();
        loop {
            let mut stream = watcher::watcher(api.clone(), config.clone()).default_backoff().boxed();
            let mut buffer = None;
            let absent = loop {
                let next = tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    next = stream.next() => next,
                };
                match next {
                    Some(Ok(event)) => self.event(kind, part, store, &mut buffer, event),
                    Some(Err(e)) if not_served(&e) => break true,
                    Some(Err(e)) => self.failed(kind, &describe_watch(&e)),
                    None => break false,
                }
            };
            if absent {
                self.update(|stores| {
                    store(stores)[part].clear();
                    let health = stores.health.entry(kind).or_default();
                    health.absent = true;
                    health.failing = false;
                });
                let retry = tokio::time::sleep(ABSENT_RETRY);
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = retry => {}
                }
            }
        }
    }

    /// One event into the store; health and the change signal updated.
    fn event<K: Resource + Clone>(
        &self,
        kind: Kind,
        part: usize,
        store: StoreOf<K>,
        buffer: &mut Option<BTreeMap<String, K>>,
        event: Event<K>,
    ) {
        let done = matches!(event, Event::InitDone);
        let mut stores = lock(&self.stores);
        let changed = apply(&mut store(&mut stores)[part], buffer, event);
        if done {
            stores.synced.entry(kind).or_default().insert(part);
        }
        let synced_parts = stores.synced.get(&kind).map_or(0, BTreeSet::len);
        let objects: usize = store(&mut stores).iter().map(BTreeMap::len).sum();
        let parts = store(&mut stores).len();
        let health = stores.health.entry(kind).or_default();
        let was = health.clone();
        health.synced = synced_parts >= parts;
        health.absent = false;
        health.failing = false;
        health.last_success = Some(SystemTime::now());
        health.objects = objects;
        let notify = changed || health.synced != was.synced || was.failing || was.absent;
        drop(stores);
        if notify {
            self.tx.send_modify(|n| *n += 1);
        }
    }

    /// Records a failed request of `kind`.
    fn failed(&self, kind: Kind, error: &str) {
        self.update(|stores| {
            let health = stores.health.entry(kind).or_default();
            health.failing = true;
            health.errors += 1;
            health.last_error = Some(one_line(error));
        });
    }

    /// Changes the stores under the lock, then wakes the consumer.
    fn update(&self, f: impl FnOnce(&mut Stores)) {
        f(&mut lock(&self.stores));
        self.tx.send_modify(|n| *n += 1);
    }

    /// The EndpointSlices of the selected Services: a watch restarted whenever the set of their
    /// names changes (none selected: no watch at all).
    async fn endpoint_slices(self) {
        let mut stop = self.stop.clone();
        let mut changes = self.tx.subscribe();
        let mut watching: Option<(BTreeSet<String>, tokio::task::JoinHandle<()>)> = None;
        lock(&self.stores).health.entry(Kind::EndpointSlices).or_default();
        loop {
            let names = lock(&self.stores).service_names();
            if watching.as_ref().map(|(n, _)| n) != Some(&names) {
                if let Some((_, task)) = watching.take() {
                    task.abort();
                }
                self.update(|stores| {
                    stores.endpoint_slices = vec![BTreeMap::new()];
                    stores.slices_for = Some(names.clone());
                    stores.synced.remove(&Kind::EndpointSlices);
                    let health = stores.health.entry(Kind::EndpointSlices).or_default();
                    health.synced = names.is_empty();
                    health.objects = 0;
                });
                if !names.is_empty() {
                    let api: Api<EndpointSlice> = Api::all(self.client.clone());
                    let config = watcher::Config::default().labels(&endpoint_slice_selector(&names));
                    let task = tokio::spawn(
                        self.clone().watch(Kind::EndpointSlices, 0, api, config, |s| &mut s.endpoint_slices),
                    );
                    watching = Some((names, task));
                } else {
                    watching = Some((names, tokio::spawn(async {})));
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                changed = changes.changed() => if changed.is_err() { break },
            }
        }
        if let Some((_, task)) = watching {
            task.abort();
        }
    }

    /// The Pods of the namespaces of the selected Services (GKE only): one watch per namespace,
    /// the set restarted when the namespaces change.
    async fn pods(self) {
        let mut stop = self.stop.clone();
        let mut changes = self.tx.subscribe();
        let mut watching: Option<(BTreeSet<String>, Vec<tokio::task::JoinHandle<()>>)> = None;
        lock(&self.stores).health.entry(Kind::Pods).or_default();
        loop {
            let namespaces = lock(&self.stores).service_namespaces();
            if watching.as_ref().map(|(n, _)| n) != Some(&namespaces) {
                for task in watching.take().map(|(_, tasks)| tasks).unwrap_or_default() {
                    task.abort();
                }
                self.update(|stores| {
                    stores.pods = vec![BTreeMap::new(); namespaces.len()];
                    stores.pods_for = Some(namespaces.clone());
                    stores.synced.remove(&Kind::Pods);
                    let health = stores.health.entry(Kind::Pods).or_default();
                    health.synced = namespaces.is_empty();
                    health.objects = 0;
                });
                let tasks = namespaces
                    .iter()
                    .enumerate()
                    .map(|(i, ns)| {
                        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
                        let config = watcher::Config::default();
                        tokio::spawn(self.clone().watch(Kind::Pods, i, api, config, |s| &mut s.pods))
                    })
                    .collect();
                watching = Some((namespaces, tasks));
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                changed = changes.changed() => if changed.is_err() { break },
            }
        }
        for task in watching.map(|(_, tasks)| tasks).unwrap_or_default() {
            task.abort();
        }
    }

    /// This node, read now and every minute.
    async fn node(self, name: String) {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut stop = self.stop.clone();
        lock(&self.stores).health.entry(Kind::Node).or_default();
        loop {
            match api.get(&name).await {
                Ok(node) => {
                    let changed = lock(&self.stores).node.as_ref() != Some(&node);
                    self.update(|stores| {
                        stores.node = Some(node);
                        let health = stores.health.entry(Kind::Node).or_default();
                        health.synced = true;
                        health.failing = false;
                        health.objects = 1;
                        health.last_success = Some(SystemTime::now());
                    });
                    let _ = changed;
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    // A wrong NODE_NAME must not stop discovery: derive without the Node (the
                    // provider from each Service's annotations, the IP from NODE_IP) and say why.
                    self.update(|stores| {
                        stores.node = None;
                        let health = stores.health.entry(Kind::Node).or_default();
                        health.synced = true;
                        health.failing = false;
                        health.objects = 0;
                        health.last_error = Some(format!(
                            "no Node named {name}: NODE_NAME should be spec.nodeName from the downward API"
                        ));
                    });
                }
                Err(e) => self.failed(Kind::Node, &format!("node {name}: {}", describe(&e))),
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(NODE_REFRESH) => {}
            }
        }
    }
}

/// Whether `e` says the cluster does not serve the kind (404 on the list: a CRD not installed).
fn not_served(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.code == 404)
}

/// A kube error in one short line: the API's own message for an API error (not the whole Status).
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({} {})", status.message, status.code, status.reason),
        other => other.to_string(),
    }
}

/// A watcher error in one short line.
fn describe_watch(e: &watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(e) => format!("list: {}", describe(e)),
        watcher::Error::WatchStartFailed(e) => format!("watch: {}", describe(e)),
        watcher::Error::WatchFailed(e) => format!("watch: {}", describe(e)),
        other => other.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The key of an object in its store: `namespace/name`.
fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""))
}

/// Applies one watcher event to `store`, with `buffer` holding a relist until it is complete.
/// Returns whether the store changed.
fn apply<K: Resource>(
    store: &mut BTreeMap<String, K>,
    buffer: &mut Option<BTreeMap<String, K>>,
    event: Event<K>,
) -> bool {
    match event {
        Event::Init => {
            *buffer = Some(BTreeMap::new());
            false
        }
        Event::InitApply(object) => {
            buffer.get_or_insert_with(BTreeMap::new).insert(key(object.meta()), object);
            false
        }
        Event::InitDone => {
            *store = buffer.take().unwrap_or_default();
            true
        }
        Event::Apply(object) => {
            store.insert(key(object.meta()), object);
            true
        }
        Event::Delete(object) => store.remove(&key(object.meta())).is_some(),
    }
}

/// The label selector of the EndpointSlices of `services` (names, across namespaces: the
/// selection drops slices of same-named Services elsewhere).
fn endpoint_slice_selector(services: &BTreeSet<String>) -> String {
    let names: Vec<&str> = services.iter().map(String::as_str).collect();
    format!("{SERVICE_NAME_LABEL} in ({})", names.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Service {
        let mut s = Service::default();
        s.metadata.namespace = Some("shop".to_owned());
        s.metadata.name = Some(name.to_owned());
        s
    }

    fn names(store: &BTreeMap<String, Service>) -> Vec<&str> {
        store.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_relist_replaces_the_store_only_when_complete_and_events_apply_in_between() {
        let mut store = BTreeMap::new();
        let mut buffer = None;
        for event in [Event::Init, Event::InitApply(named("a")), Event::InitApply(named("b"))] {
            assert!(!apply(&mut store, &mut buffer, event), "nothing changes before the list is complete");
        }
        assert!(store.is_empty());
        assert!(apply(&mut store, &mut buffer, Event::InitDone));
        assert_eq!(names(&store), ["shop/a", "shop/b"]);
        assert!(apply(&mut store, &mut buffer, Event::Apply(named("c"))));
        assert!(apply(&mut store, &mut buffer, Event::Delete(named("a"))));
        assert!(
            !apply(&mut store, &mut buffer, Event::Delete(named("zz"))),
            "an unknown deletion changes nothing"
        );
        // A relist after an outage (or a 410 Gone): what was deleted meanwhile disappears, and
        // the old objects stay in use until the new list is complete.
        assert!(!apply(&mut store, &mut buffer, Event::Init));
        assert!(!apply(&mut store, &mut buffer, Event::InitApply(named("c"))));
        assert_eq!(names(&store), ["shop/b", "shop/c"], "the last good objects while relisting");
        assert!(apply(&mut store, &mut buffer, Event::InitDone));
        assert_eq!(names(&store), ["shop/c"]);
    }

    #[test]
    fn the_endpoint_slice_selector_names_the_selected_services() {
        let names: BTreeSet<String> = ["web", "api"].map(str::to_owned).into();
        assert_eq!(endpoint_slice_selector(&names), "kubernetes.io/service-name in (api,web)");
    }

    fn service(namespace: &str, name: &str) -> (String, Service) {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": namespace}
        }))
        .expect("a Service");
        (format!("{namespace}/{name}"), service)
    }

    fn set(items: &[&str]) -> Option<BTreeSet<String>> {
        Some(items.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn a_snapshot_is_complete_only_once_the_endpoint_slice_and_pod_watches_follow_the_services() {
        let mut stores = Stores { services: vec![[service("shop", "web")].into()], ..Stores::default() };
        // Services just listed; the EndpointSlice task has not restarted its watch yet.
        assert!(!stores.follows_services());
        stores.slices_for = set(&[]);
        assert!(!stores.follows_services(), "the slices of no Service are not those of shop/web");
        stores.slices_for = set(&["web"]);
        assert!(stores.follows_services());
        stores.watch_pods = true;
        assert!(!stores.follows_services(), "provider gcp: the Pod watch has not started");
        stores.pods_for = set(&["shop"]);
        assert!(stores.follows_services());
        stores.services[0].extend([service("shop", "api")]);
        assert!(!stores.follows_services(), "a new Service: its slices are not watched yet");
    }
}
