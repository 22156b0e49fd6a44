//! Where discovery reads objects: saved files (`files`, for `parallax discover --from`) or the
//! API server (`watch`). Both end in [`select`], so that a file and a cluster holding the same
//! objects derive the same targets.

pub mod files;
pub mod watch;

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::cluster::{labels, Cluster};
use crate::config::KubernetesDiscovery;

/// The label EndpointSlices name their Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The objects of `cluster` that `settings` select: Services, Ingresses, Gateways and HTTPRoutes
/// carrying the selector's labels in the watched namespaces; the EndpointSlices of the selected
/// Services; Pods and BackendConfigs of their namespaces; every IngressClass; the node as is.
pub fn select(cluster: Cluster, settings: &KubernetesDiscovery) -> Cluster {
    let selected = |meta: &ObjectMeta| {
        let in_namespaces = settings.namespaces.is_empty()
            || meta.namespace.as_ref().is_some_and(|ns| settings.namespaces.contains(ns));
        in_namespaces && settings.selector.matches(labels(meta))
    };
    let services: Vec<_> = cluster.services.into_iter().filter(|s| selected(&s.metadata)).collect();
    let service_keys: BTreeSet<(String, String)> = services
        .iter()
        .map(|s| {
            (s.metadata.namespace.clone().unwrap_or_default(), s.metadata.name.clone().unwrap_or_default())
        })
        .collect();
    let namespaces: BTreeSet<&str> = service_keys.iter().map(|(ns, _)| ns.as_str()).collect();
    let in_service_namespace =
        |meta: &ObjectMeta| meta.namespace.as_deref().is_some_and(|ns| namespaces.contains(ns));
    let endpoint_slices = cluster
        .endpoint_slices
        .into_iter()
        .filter(|slice| {
            let ns = slice.metadata.namespace.clone().unwrap_or_default();
            labels(&slice.metadata)
                .get(SERVICE_NAME_LABEL)
                .is_some_and(|service| service_keys.contains(&(ns, service.clone())))
        })
        .collect();
    let pods = cluster.pods.into_iter().filter(|p| in_service_namespace(&p.metadata)).collect();
    let backend_configs =
        cluster.backend_configs.into_iter().filter(|b| in_service_namespace(&b.metadata)).collect();
    Cluster {
        ingresses: cluster.ingresses.into_iter().filter(|i| selected(&i.metadata)).collect(),
        gateways: cluster.gateways.into_iter().filter(|g| selected(&g.metadata)).collect(),
        http_routes: cluster.http_routes.into_iter().filter(|r| selected(&r.metadata)).collect(),
        ingress_classes: cluster.ingress_classes,
        ingress_classes_complete: cluster.ingress_classes_complete,
        node: cluster.node,
        services,
        endpoint_slices,
        pods,
        backend_configs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    fn service(ns: &str, name: &str, labelled: bool) -> k8s_openapi::api::core::v1::Service {
        let labels = if labelled { json!({"parallax.io/probe": "true"}) } else { json!({}) };
        object(json!({"metadata": {"namespace": ns, "name": name, "labels": labels}}))
    }

    fn slice(ns: &str, name: &str, service: &str) -> k8s_openapi::api::discovery::v1::EndpointSlice {
        object(json!({"metadata": {"namespace": ns, "name": name, "labels": {SERVICE_NAME_LABEL: service}},
                      "addressType": "IPv4", "endpoints": []}))
    }

    #[test]
    fn the_selection_keeps_labelled_objects_of_the_namespaces_and_their_services_slices() {
        let cluster = Cluster {
            services: vec![
                service("shop", "web", true),
                service("shop", "db", false),
                service("pay", "web", true),
            ],
            endpoint_slices: vec![
                slice("shop", "web-1", "web"),
                slice("shop", "db-1", "db"),
                slice("pay", "web-1", "web"),
            ],
            ..Cluster::default()
        };
        let mut settings = KubernetesDiscovery::defaults();
        settings.namespaces = vec!["shop".to_owned()];
        let selected = select(cluster.clone(), &settings);
        let names: Vec<_> =
            selected.services.iter().map(|s| s.metadata.name.clone().unwrap_or_default()).collect();
        assert_eq!(names, ["web"], "labelled and in a watched namespace");
        let slices: Vec<_> =
            selected.endpoint_slices.iter().map(|s| s.metadata.name.clone().unwrap_or_default()).collect();
        assert_eq!(slices, ["web-1"], "the slices of shop/web only, not of pay/web nor of shop/db");

        settings.namespaces.clear();
        settings.selector = crate::config::Selector::parse("").unwrap_or_else(|e| panic!("{e}"));
        let everything = select(cluster, &settings);
        assert_eq!((everything.services.len(), everything.endpoint_slices.len()), (3, 3));
    }
}
