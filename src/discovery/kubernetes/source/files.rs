//! Saved `kubectl get … -o json` output as a [`Cluster`]: `parallax discover --from`, to try the
//! derivation without a cluster, or to review what a change of annotations would derive.

use std::path::Path;

use serde_json::Value as Json;

use k8s_openapi::api::core::v1::Node;

use super::super::cluster::Cluster;

/// What a set of files held.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The objects of the kinds discovery reads, but nodes.
    pub cluster: Cluster,
    /// Every Node of the files: the selection keeps the one named `--node` (or the only one).
    pub nodes: Vec<Node>,
    /// `Kind name` of every object of a kind discovery does not read.
    pub ignored: Vec<String>,
}

/// Largest file read.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The objects of `paths` (each a `List` of objects, or one object), by kind. Kinds discovery
/// does not read are counted, not kept; an object of a known kind that does not parse is an
/// error naming the file, the kind and the object.
pub fn read(paths: &[impl AsRef<Path>]) -> Result<Loaded, String> {
    let mut loaded = Loaded::default();
    for path in paths {
        let path = path.as_ref();
        let text = read_bounded(path)?;
        let json: Json = serde_json::from_str(&text).map_err(|e| {
            format!("{}: not JSON ({e}); save objects with `kubectl get … -o json`", path.display())
        })?;
        let items = match json.get("kind").and_then(Json::as_str) {
            Some(kind) if kind.ends_with("List") => match json.get("items") {
                Some(Json::Array(items)) => items.clone(),
                _ => return Err(format!("{}: a {kind} without items", path.display())),
            },
            Some(_) => vec![json],
            None => return Err(format!("{}: not a Kubernetes object or List (no kind)", path.display())),
        };
        for item in items {
            add(&mut loaded, item).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(loaded)
}

fn read_bounded(path: &Path) -> Result<String, String> {
    match crate::config::read_input(path, MAX_FILE_BYTES) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display())),
        Err(crate::config::InputError::TooLarge) => {
            Err(format!("{}: larger than {} MiB", path.display(), MAX_FILE_BYTES / 1024 / 1024))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Adds one object to `cluster` by its kind (kinds discovery does not read go to `ignored`).
fn add(loaded: &mut Loaded, item: Json) -> Result<(), String> {
    let cluster = &mut loaded.cluster;
    let kind = item.get("kind").and_then(Json::as_str).unwrap_or_default().to_owned();
    let name = item.pointer("/metadata/name").and_then(Json::as_str).unwrap_or("?").to_owned();
    let bad = |e: serde_json::Error| format!("{kind} {name}: {e}");
    match kind.as_str() {
        "Service" => cluster.services.push(serde_json::from_value(item).map_err(bad)?),
        "EndpointSlice" => cluster.endpoint_slices.push(serde_json::from_value(item).map_err(bad)?),
        "Ingress" => cluster.ingresses.push(serde_json::from_value(item).map_err(bad)?),
        "IngressClass" => {
            cluster.ingress_classes.push(serde_json::from_value(item).map_err(bad)?);
            // `kubectl get ingressclasses` lists them all: one present means they were saved.
            cluster.ingress_classes_complete = true;
        }
        "Gateway" => cluster.gateways.push(serde_json::from_value(item).map_err(bad)?),
        "HTTPRoute" => cluster.http_routes.push(serde_json::from_value(item).map_err(bad)?),
        "BackendConfig" => cluster.backend_configs.push(serde_json::from_value(item).map_err(bad)?),
        "Pod" => cluster.pods.push(serde_json::from_value(item).map_err(bad)?),
        "Node" => loaded.nodes.push(serde_json::from_value(item).map_err(bad)?),
        _ => loaded.ignored.push(format!("{kind} {name}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    #[test]
    fn lists_and_single_objects_are_read_by_kind_and_other_kinds_counted() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let list = write(
            dir.path(),
            "list.json",
            r#"{"apiVersion":"v1","kind":"List","items":[
                {"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"shop"}},
                {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"shop"}},
                {"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":"r","namespace":"shop"},
                 "spec":{"hostnames":["shop.example.com"]}}]}"#,
        );
        let node =
            write(dir.path(), "node.json", r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"}}"#);
        let loaded = read(&[list, node]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.cluster.services.len(), 1);
        assert_eq!(loaded.cluster.http_routes[0].spec.hostnames, ["shop.example.com"]);
        assert_eq!(loaded.nodes.len(), 1);
        assert_eq!(loaded.ignored, ["ConfigMap cm"]);
    }

    #[test]
    fn unreadable_files_and_bad_objects_are_errors_naming_the_file_and_the_object() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let yaml = write(dir.path(), "objects.yaml", "kind: List\nitems: []\n");
        let bad = write(
            dir.path(),
            "bad.json",
            r#"{"kind":"Service","metadata":{"name":"web"},"spec":{"ports":"all of them"}}"#,
        );
        let kindless = write(dir.path(), "kindless.json", r#"{"items":[]}"#);
        for (path, says) in [
            (yaml, "not JSON"),
            (bad, "Service web: "),
            (kindless, "not a Kubernetes object or List"),
            (dir.path().join("missing.json"), "missing.json"),
        ] {
            match read(&[&path]) {
                Ok(_) => panic!("{} was read", path.display()),
                Err(e) => assert!(e.contains(says) && e.contains(&*path.to_string_lossy()), "{e}"),
            }
        }
    }
}
