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
use k8s_openapi::api::core::v1::{Node, Service};
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

/// Every kind's store and health; shared by the watcher tasks and the consumer.
#[derive(Debug, Default)]
struct Stores {
    services: BTreeMap<String, Service>,
    endpoint_slices: BTreeMap<String, EndpointSlice>,
    ingresses: BTreeMap<String, Ingress>,
    ingress_classes: BTreeMap<String, IngressClass>,
    gateways: BTreeMap<String, Gateway>,
    http_routes: BTreeMap<String, HttpRoute>,
    backend_configs: BTreeMap<String, BackendConfig>,
    node: Option<Node>,
    health: BTreeMap<Kind, KindHealth>,
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
        let stores = lock(&self.stores);
        Cluster {
            services: stores.services.values().cloned().collect(),
            endpoint_slices: stores.endpoint_slices.values().cloned().collect(),
            ingresses: stores.ingresses.values().cloned().collect(),
            ingress_classes: stores.ingress_classes.values().cloned().collect(),
            gateways: stores.gateways.values().cloned().collect(),
            http_routes: stores.http_routes.values().cloned().collect(),
            backend_configs: stores.backend_configs.values().cloned().collect(),
            pods: Vec::new(),
            node: stores.node.clone(),
        }
    }

    /// Every kind's health now.
    pub fn health(&self) -> BTreeMap<Kind, KindHealth> {
        lock(&self.stores).health.clone()
    }

    /// Whether every kind that the cluster serves has been listed once.
    pub fn synced(&self) -> bool {
        lock(&self.stores).health.values().all(|h| h.synced || h.absent)
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

/// Starts watching what `settings` select, on the tasks of the current runtime; `node_name`
/// (node mode) is read every minute. The watchers stop when `stop` turns true.
pub fn start(
    client: Client,
    settings: &KubernetesDiscovery,
    node_name: Option<String>,
    stop: watch::Receiver<bool>,
) -> Watch {
    let stores = Arc::new(Mutex::new(Stores::default()));
    let (tx, changes) = watch::channel(0u64);
    let tx = Arc::new(tx);
    let ctx = Spawner { client, settings: settings.clone(), stores: stores.clone(), tx, stop };
    ctx.kind::<Service>(Kind::Services, None, |s| &mut s.services, true);
    ctx.kind::<Ingress>(Kind::Ingresses, None, |s| &mut s.ingresses, true);
    ctx.kind::<IngressClass>(Kind::IngressClasses, None, |s| &mut s.ingress_classes, false);
    ctx.kind::<Gateway>(Kind::Gateways, Some(gateway_api("Gateway", "gateways")), |s| &mut s.gateways, true);
    ctx.kind::<HttpRoute>(Kind::HttpRoutes, Some(gateway_api("HTTPRoute", "httproutes")), |s| &mut s.http_routes, true);
    let backend_config = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cloud.google.com", "v1", "BackendConfig"),
        "backendconfigs",
    );
    ctx.kind::<BackendConfig>(Kind::BackendConfigs, Some(backend_config), |s| &mut s.backend_configs, false);
    ctx.endpoint_slices();
    if let Some(name) = node_name {
        ctx.node(name);
    }
    Watch { stores, changes }
}

fn gateway_api(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", kind), plural)
}

/// What every watcher task needs.
#[derive(Clone)]
struct Spawner {
    client: Client,
    settings: KubernetesDiscovery,
    stores: Arc<Mutex<Stores>>,
    tx: Arc<watch::Sender<u64>>,
    stop: watch::Receiver<bool>,
}

/// A store of one kind inside [`Stores`].
type StoreOf<K> = fn(&mut Stores) -> &mut BTreeMap<String, K>;

impl Spawner {
    /// Watches kind `K` (a custom resource when `resource` is given), labelled with the
    /// selector when `selected`, in every watched namespace.
    fn kind<K>(&self, kind: Kind, resource: Option<ApiResource>, store: StoreOf<K>, selected: bool)
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Default + Clone + Eq + std::hash::Hash,
        K: Resource<DynamicType = <K as Resource>::DynamicType>,
    {
        let _ = (kind, resource, store, selected);
    }

    fn endpoint_slices(&self) {}

    fn node(&self, name: String) {
        let _ = name;
    }
}

/// The key of an object in its store: `namespace/name`.
fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""))
}

/// Applies one watcher event to `store`, with `buffer` holding a relist until it is complete.
/// Returns whether the store changed.
fn apply<K: Resource>(store: &mut BTreeMap<String, K>, buffer: &mut Option<BTreeMap<String, K>>, event: Event<K>) -> bool {
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

#[allow(dead_code)]
fn unused(_: watcher::Config) {}
