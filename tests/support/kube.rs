//! A real Kubernetes control plane on loopback: etcd and kube-apiserver (the binaries that
//! `scripts/kube-test-infra` builds), with the Gateway API CRDs, a GKE BackendConfig CRD and
//! parallax's own RBAC (`deploy/kubernetes/clusterrole.yaml` and `clusterrolebinding.yaml`)
//! applied. There is no controller-manager, scheduler or kubelet: nothing reconciles, so a test
//! writes every `status` itself ([`KubeServer::patch_status`]), and namespaces are never deleted
//! (use [`KubeServer::namespace`] for a fresh one per test).
//!
//! - [`KubeServer::shared`]: one server per test binary, started on first use.
//! - [`KubeServer::start`]: a server of the test's own, which [`KubeServer::stop`] and
//!   [`KubeServer::restart`] take down and bring back (same etcd data, same port).
//!
//! Two identities: `admin` (group `system:masters`, every right) and the DaemonSet's
//! ServiceAccount `system:serviceaccount:parallax:parallax`, authenticated by a static token
//! (`--token-auth-file`: no token controller runs) so that the RBAC binding of
//! `clusterrolebinding.yaml` applies to it unchanged.
//!
//! The binaries come from `$PARALLAX_KUBE_DIR`, else the cache directory the script uses; when
//! they are missing every test that needs them panics and says to run the script (a skipped test
//! would be a fake pass).
//!
//! The processes die with the test binary: each is spawned with `PR_SET_PDEATHSIG` = SIGKILL,
//! which fires when the spawning *thread* exits, so they are spawned by a supervisor thread that
//! lives as long as its server (forever, for the shared one).

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use ::kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::core::GroupVersionKind;
use ::kube::Client;
use base64::Engine as _;
use serde_json::{json, Value};
use tempfile::TempDir;

/// The version `scripts/kube-test-infra` builds (its `KUBE_VERSION`).
pub const KUBE_VERSION: &str = "v1.34.3";
/// The user name of the DaemonSet's ServiceAccount (`deploy/kubernetes/serviceaccount.yaml`).
pub const PARALLAX_USER: &str = "system:serviceaccount:parallax:parallax";
/// The Service CIDR handed to the API server (allocation only: nothing routes it).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

/// How long the API server may take to answer `/readyz` with `ok`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a CRD may take to become Established.
const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause between two polls of a condition.
const POLL: Duration = Duration::from_millis(100);
/// The end of one certificate in a PEM file.
const PEM_END: &str = "-----END CERTIFICATE-----";
/// A server's directory in the temporary directory: this prefix, the test binary's PID, `-`.
const DIR_PREFIX: &str = "parallax-kube-";
/// Lines of a process's log quoted when it fails.
const LOG_TAIL_LINES: usize = 30;
/// A minimal GKE BackendConfig CRD (`cloud.google.com/v1`), fields unchecked: enough to store
/// the objects discovery reads (ingress-gce's full schema is not needed for that).
const BACKEND_CONFIG_CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1",
  "kind": "CustomResourceDefinition",
  "metadata": {"name": "backendconfigs.cloud.google.com"},
  "spec": {
    "group": "cloud.google.com",
    "scope": "Namespaced",
    "names": {"plural": "backendconfigs", "singular": "backendconfig", "kind": "BackendConfig",
              "listKind": "BackendConfigList"},
    "versions": [{"name": "v1", "served": true, "storage": true,
                  "schema": {"openAPIV3Schema": {"type": "object",
                                                 "x-kubernetes-preserve-unknown-fields": true}}}]
  }
}"#;

/// A running etcd + kube-apiserver and the files to reach them. Dropping an own server
/// ([`KubeServer::start`]) kills both and removes its directory.
pub struct KubeServer {
    layout: Layout,
    supervisor: Supervisor,
}

impl KubeServer {
    /// The server of this test binary, started by the first caller (a few seconds) and shared by
    /// every test after it. Panics when it cannot start, with the reason and the process's log.
    pub fn shared() -> &'static KubeServer {
        static SHARED: OnceLock<KubeServer> = OnceLock::new();
        // A static is never dropped: at exit, stop the processes and remove the directory.
        extern "C" fn at_exit() {
            if let Some(server) = SHARED.get() {
                server.supervisor.shutdown();
                let _ = std::fs::remove_dir_all(server.layout.dir.path());
            }
        }
        SHARED.get_or_init(|| {
            remove_stale_dirs();
            // Booting needs a runtime of its own (the caller may be inside one), and the
            // supervisor it starts must outlive every test: its thread waits for orders until
            // the process exits.
            let server = std::thread::spawn(|| runtime().block_on(KubeServer::boot()))
                .join()
                .unwrap_or_else(|_| panic!("the shared Kubernetes API server did not start (panic above)"));
            // SAFETY: `at_exit` is an `extern "C" fn` that cannot unwind (nothing in it panics)
            // and only touches the static, which is initialized before exit can call it.
            unsafe { libc::atexit(at_exit) };
            server
        })
    }

    /// A server of the caller's own: separate etcd data, ports and files.
    pub async fn start() -> KubeServer {
        KubeServer::boot().await
    }

    async fn boot() -> KubeServer {
        let server = KubeServer { layout: Layout::new(), supervisor: Supervisor::start() };
        server.spawn(Process::Etcd);
        server.spawn(Process::ApiServer);
        server.write_kubeconfigs().await;
        server.wait_ready().await;
        server.apply_crds().await;
        server.apply_rbac().await;
        server
    }

    /// Stops kube-apiserver (SIGKILL, and waits for it to exit); etcd keeps running. Every request
    /// fails (connection refused) until [`KubeServer::restart`].
    pub fn stop(&self) {
        self.supervisor.stop(Process::ApiServer);
    }

    /// Starts kube-apiserver again, stopping it first if it runs, on the same port with the same
    /// certificate and etcd data, and waits until it is ready: every object is still there.
    pub async fn restart(&self) {
        self.supervisor.stop(Process::ApiServer);
        self.spawn(Process::ApiServer);
        self.wait_ready().await;
    }

    fn spawn(&self, process: Process) {
        let command = match process {
            Process::Etcd => self.layout.etcd(),
            Process::ApiServer => self.layout.apiserver(),
        };
        self.supervisor.spawn(process, command, self.layout.log(process));
    }

    /// The API server's URL (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.layout.api_port)
    }

    /// A kubeconfig file for the DaemonSet's ServiceAccount (RBAC of `deploy/kubernetes`).
    pub fn parallax_kubeconfig(&self) -> PathBuf {
        self.layout.kubeconfig(Identity::Parallax)
    }

    /// A kubeconfig file for `admin` (group `system:masters`).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.layout.kubeconfig(Identity::Admin)
    }

    /// A client as `admin`. Call it inside the runtime that uses it.
    pub async fn admin_client(&self) -> Client {
        client_from(&self.admin_kubeconfig()).await
    }

    /// A client as the DaemonSet's ServiceAccount.
    pub async fn parallax_client(&self) -> Client {
        client_from(&self.parallax_kubeconfig()).await
    }

    /// Creates a namespace `PREFIX-<random>` and returns its name.
    pub async fn namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{}", unique_suffix());
        self.create("", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})).await;
        name
    }

    /// Creates `object` (JSON with `apiVersion`, `kind`, `metadata.name`) in namespace `ns`
    /// (`""`: a cluster-scoped object) as admin, and returns it as the API server stored it.
    pub async fn create(&self, ns: &str, object: Value) -> DynamicObject {
        let kind = ObjectKind::of(&object);
        let object: DynamicObject =
            serde_json::from_value(object).unwrap_or_else(|e| panic!("{kind}: not a Kubernetes object: {e}"));
        let api = self.api(ns, &kind).await;
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("create {kind} in {ns:?}: {e}"))
    }

    /// Merges `status` into the status subresource of object `name` of `api_version`/`kind` in
    /// `ns` (a JSON merge patch, as a controller would write it), and returns the object.
    pub async fn patch_status(
        &self,
        ns: &str,
        api_version: &str,
        kind: &str,
        name: &str,
        status: Value,
    ) -> DynamicObject {
        let kind = ObjectKind::new(api_version, kind);
        let patch = Patch::Merge(json!({ "status": status }));
        self.api(ns, &kind)
            .await
            .patch_status(name, &PatchParams::default(), &patch)
            .await
            .unwrap_or_else(|e| panic!("patch the status of {kind} {ns}/{name}: {e}"))
    }

    /// Merges `patch` into object `name` of `api_version`/`kind` in `ns` (a JSON merge patch:
    /// `{"metadata": {"annotations": {...}}}`), and returns the object.
    pub async fn patch(
        &self,
        ns: &str,
        api_version: &str,
        kind: &str,
        name: &str,
        patch: Value,
    ) -> DynamicObject {
        let kind = ObjectKind::new(api_version, kind);
        self.api(ns, &kind)
            .await
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap_or_else(|e| panic!("patch {kind} {ns}/{name}: {e}"))
    }

    /// Deletes object `name` of `api_version`/`kind` in `ns`. Objects with finalizers stay
    /// (no controller removes them).
    pub async fn delete(&self, ns: &str, api_version: &str, kind: &str, name: &str) {
        let kind = ObjectKind::new(api_version, kind);
        self.api(ns, &kind)
            .await
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {kind} {ns}/{name}: {e}"));
    }

    /// The API of `kind` in `ns` (all namespaces when `ns` is empty), as admin; the resource's
    /// plural comes from the server's discovery.
    async fn api(&self, ns: &str, kind: &ObjectKind) -> Api<DynamicObject> {
        let client = self.admin_client().await;
        let (resource, _) = ::kube::discovery::pinned_kind(&client, &kind.gvk())
            .await
            .unwrap_or_else(|e| panic!("the API server does not serve {kind}: {e}"));
        if ns.is_empty() {
            Api::all_with(client, &resource)
        } else {
            Api::namespaced_with(client, ns, &resource)
        }
    }

    /// Writes both kubeconfigs, once the API server has written its self-signed certificate
    /// (`--cert-dir`), which is their CA.
    async fn write_kubeconfigs(&self) {
        let cert = self.layout.path("certs/apiserver.crt");
        // The certificate is written before the server listens, within a second or two.
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let ca = loop {
            // The file holds the serving certificate, then its CA (client-go's
            // GenerateSelfSignedCertKey), written in place: complete once both are there.
            if let Some(pem) =
                std::fs::read_to_string(&cert).ok().filter(|pem| pem.matches(PEM_END).count() >= 2)
            {
                break pem;
            }
            if let Some(status) = self.supervisor.exited(Process::ApiServer) {
                self.fail(
                    Process::ApiServer,
                    &format!("exited ({status}) before writing {}", cert.display()),
                );
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail(Process::ApiServer, &format!("wrote no serving certificate at {}", cert.display()));
            }
            tokio::time::sleep(POLL).await;
        };
        for identity in [Identity::Admin, Identity::Parallax] {
            let text = self.layout.kubeconfig_text(identity, ca.as_bytes());
            std::fs::write(self.layout.kubeconfig(identity), text).expect("write a kubeconfig");
        }
    }

    /// Polls `/readyz` until it says `ok`; panics with the log's tail when the server exits or
    /// takes longer than [`READY_TIMEOUT`].
    async fn wait_ready(&self) {
        let client = self.admin_client().await;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no answer yet");
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.supervisor.exited(Process::ApiServer) {
                self.fail(Process::ApiServer, &format!("exited ({status}) before it was ready"));
            }
            let request = http::Request::get("/readyz").body(Vec::new()).expect("a GET request");
            match tokio::time::timeout(Duration::from_secs(5), client.request_text(request)).await {
                Ok(Ok(body)) if body.trim() == "ok" => return,
                Ok(Ok(body)) => last = body,
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "/readyz took more than 5 s".to_owned(),
            }
            tokio::time::sleep(POLL).await;
        }
        self.fail(Process::ApiServer, &format!("not ready after {READY_TIMEOUT:?}; last /readyz: {last}"))
    }

    /// Applies the Gateway API CRDs (each YAML document as it is: the API server reads YAML) and
    /// the BackendConfig CRD, and waits until each is Established.
    async fn apply_crds(&self) {
        let yaml = std::fs::read_to_string(&self.layout.binaries.crds).unwrap_or_else(|e| {
            panic!("{}: {e}; run scripts/kube-test-infra", self.layout.binaries.crds.display())
        });
        let client = self.admin_client().await;
        let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
        let mut names = Vec::new();
        for document in yaml_documents(&yaml) {
            names.push(post(&client, path, "application/yaml", document).await);
        }
        names.push(post(&client, path, "application/json", BACKEND_CONFIG_CRD).await);
        for name in names {
            wait_established(&client, &name).await;
        }
    }

    /// Applies `deploy/kubernetes/clusterrole.yaml` and `clusterrolebinding.yaml` as they are.
    async fn apply_rbac(&self) {
        let client = self.admin_client().await;
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
        for (file, plural) in
            [("clusterrole.yaml", "clusterroles"), ("clusterrolebinding.yaml", "clusterrolebindings")]
        {
            let yaml = std::fs::read_to_string(deploy.join(file))
                .unwrap_or_else(|e| panic!("deploy/kubernetes/{file}: {e}"));
            post(&client, &format!("/apis/rbac.authorization.k8s.io/v1/{plural}"), "application/yaml", &yaml)
                .await;
        }
    }

    fn fail(&self, process: Process, what: &str) -> ! {
        let log = self.layout.log(process);
        panic!("{} {what}\n--- last lines of {}:\n{}", process.name(), log.display(), log_tail(&log))
    }
}

/// An object's `apiVersion` and `kind`: which API of the server stores it.
struct ObjectKind {
    api_version: String,
    kind: String,
}

impl ObjectKind {
    fn new(api_version: &str, kind: &str) -> ObjectKind {
        ObjectKind { api_version: api_version.to_owned(), kind: kind.to_owned() }
    }

    fn of(object: &Value) -> ObjectKind {
        let field = |name: &str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("object without {name}: {object}"))
        };
        ObjectKind::new(field("apiVersion"), field("kind"))
    }

    fn gvk(&self) -> GroupVersionKind {
        let (group, version) = self.api_version.split_once('/').unwrap_or(("", &self.api_version));
        GroupVersionKind::gvk(group, version, &self.kind)
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.api_version, self.kind)
    }
}

/// POSTs `body` (of `content_type`) to `path` as a create (every server starts empty: nothing
/// exists yet). Returns the created object's name.
async fn post(client: &Client, path: &str, content_type: &str, body: &str) -> String {
    let request = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(body.as_bytes().to_vec())
        .expect("a POST request");
    let created: Value = client.request(request).await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
    created["metadata"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("POST {path}: no name in {created}"))
        .to_owned()
}

/// Waits until CRD `name` has condition Established=True.
async fn wait_established(client: &Client, name: &str) {
    let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
    let deadline = tokio::time::Instant::now() + ESTABLISHED_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        let request = http::Request::get(&path).body(Vec::new()).expect("a GET request");
        let crd: Value = client.request(request).await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let conditions = crd["status"]["conditions"].as_array().cloned().unwrap_or_default();
        if conditions.iter().any(|c| c["type"] == "Established" && c["status"] == "True") {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("CRD {name} not Established after {ESTABLISHED_TIMEOUT:?}")
}

/// The documents of a multi-document YAML file, without those that hold only comments.
fn yaml_documents(yaml: &str) -> Vec<&str> {
    let mut documents = Vec::new();
    let mut start = 0;
    for (offset, line) in line_offsets(yaml) {
        if line.trim_end() == "---" {
            documents.push(&yaml[start..offset]);
            start = offset + line.len();
        }
    }
    documents.push(&yaml[start..]);
    documents
        .into_iter()
        .filter(|d| d.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')))
        .collect()
}

/// Each line of `text` with its byte offset (line terminator included in the line).
fn line_offsets(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_inclusive('\n').scan(0, |offset, line| {
        let at = *offset;
        *offset += line.len();
        Some((at, line))
    })
}

async fn client_from(kubeconfig: &Path) -> Client {
    let config =
        Kubeconfig::read_from(kubeconfig).unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
    let config = ::kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
    Client::try_from(config).unwrap_or_else(|e| panic!("a client for {}: {e}", kubeconfig.display()))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

/// Hex digits unique within this process (a counter) and unlikely to repeat across processes
/// (random).
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random = std::hash::RandomState::new().build_hasher().finish();
    format!("{:06x}{:04x}", random & 0xff_ffff, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The last [`LOG_TAIL_LINES`] lines of `path`.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(unreadable: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

// ---- where things are --------------------------------------------------------------------------

/// The binaries and the CRDs that `scripts/kube-test-infra` built.
struct Binaries {
    etcd: PathBuf,
    apiserver: PathBuf,
    crds: PathBuf,
}

impl Binaries {
    /// From `$PARALLAX_KUBE_DIR`, else the script's default cache directory.
    fn find() -> Binaries {
        let dir = std::env::var_os("PARALLAX_KUBE_DIR").map(PathBuf::from).unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
            });
            cache.join(format!("parallax/kube-{KUBE_VERSION}"))
        });
        let binaries = Binaries {
            etcd: dir.join("bin/etcd"),
            apiserver: dir.join("bin/kube-apiserver"),
            crds: dir.join("crds/gateway-api.yaml"),
        };
        for path in [&binaries.etcd, &binaries.apiserver, &binaries.crds] {
            assert!(
                path.is_file(),
                "{} is missing: run scripts/kube-test-infra (it builds kube-apiserver and etcd, and \
                 prints the directory to set as PARALLAX_KUBE_DIR)",
                path.display()
            );
        }
        binaries
    }
}

/// Whose credentials a kubeconfig holds.
#[derive(Debug, Clone, Copy)]
enum Identity {
    Admin,
    Parallax,
}

/// A server's directory (etcd data, certificates, keys, tokens, logs, kubeconfigs) and ports.
struct Layout {
    dir: TempDir,
    binaries: Binaries,
    api_port: u16,
    etcd_port: u16,
    etcd_peer_port: u16,
    admin_token: String,
    parallax_token: String,
}

impl Layout {
    /// A fresh directory with the service-account key pair and the token file, and free ports.
    fn new() -> Layout {
        let binaries = Binaries::find();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .expect("a temporary directory");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("an ECDSA P-256 key");
        std::fs::write(dir.path().join("sa.key"), key.serialize_pem()).expect("write sa.key");
        std::fs::write(dir.path().join("sa.pub"), key.public_key_pem()).expect("write sa.pub");
        let [api_port, etcd_port, etcd_peer_port] = free_ports();
        let layout = Layout {
            dir,
            binaries,
            api_port,
            etcd_port,
            etcd_peer_port,
            admin_token: format!("admin-{}", unique_suffix()),
            parallax_token: format!("parallax-{}", unique_suffix()),
        };
        // token,user,uid,"group,group"
        let (admin, parallax) = (&layout.admin_token, &layout.parallax_token);
        let groups = "system:serviceaccounts,system:serviceaccounts:parallax";
        let tokens = format!(
            "{admin},admin,admin,\"system:masters\"\n{parallax},{PARALLAX_USER},parallax,\"{groups}\"\n"
        );
        std::fs::write(layout.path("tokens.csv"), tokens).expect("write tokens.csv");
        layout
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self, process: Process) -> PathBuf {
        self.path(&format!("{}.log", process.name()))
    }

    fn kubeconfig(&self, identity: Identity) -> PathBuf {
        self.path(match identity {
            Identity::Admin => "admin.kubeconfig",
            Identity::Parallax => "parallax.kubeconfig",
        })
    }

    fn kubeconfig_text(&self, identity: Identity, ca_pem: &[u8]) -> String {
        let (user, token) = match identity {
            Identity::Admin => ("admin", &self.admin_token),
            Identity::Parallax => ("parallax", &self.parallax_token),
        };
        let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        let port = self.api_port;
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: test
  context:
    cluster: test
    user: {user}
current-context: test
"
        )
    }

    fn etcd(&self) -> Command {
        let client = format!("http://127.0.0.1:{}", self.etcd_port);
        let peer = format!("http://127.0.0.1:{}", self.etcd_peer_port);
        let mut command = Command::new(&self.binaries.etcd);
        command
            .arg(format!("--data-dir={}", self.path("etcd").display()))
            .args(["--name=test", "--log-level=warn", "--unsafe-no-fsync"])
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"));
        command
    }

    /// The flags of /work/shared/KUBERNETES.md, "A real API server for tests".
    fn apiserver(&self) -> Command {
        let mut command = Command::new(&self.binaries.apiserver);
        command
            .arg(format!("--etcd-servers=http://127.0.0.1:{}", self.etcd_port))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={}", self.api_port))
            .arg(format!("--cert-dir={}", self.path("certs").display()))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", self.path("sa.pub").display()))
            .arg(format!("--service-account-signing-key-file={}", self.path("sa.key").display()))
            .arg(format!("--token-auth-file={}", self.path("tokens.csv").display()))
            .arg("--authorization-mode=RBAC")
            .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
            // No controller-manager creates ServiceAccounts: the admission plugin would refuse pods.
            .arg("--disable-admission-plugins=ServiceAccount")
            .args(["--profiling=false", "--v=1"]);
        command
    }
}

/// Removes the directories of shared servers whose test binary is gone without its exit
/// handler (killed): etcd preallocates its WAL, over 100 MB each.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix(DIR_PREFIX).and_then(|rest| rest.split('-').next()?.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Three distinct free loopback ports (bound, then released for the processes to take).
fn free_ports() -> [u16; 3] {
    let listeners: Vec<TcpListener> =
        (0..3).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")).collect();
    let port = |i: usize| listeners[i].local_addr().expect("local address").port();
    [port(0), port(1), port(2)]
}

// ---- the processes -----------------------------------------------------------------------------

/// The two processes of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Process {
    Etcd,
    ApiServer,
}

impl Process {
    fn name(self) -> &'static str {
        match self {
            Process::Etcd => "etcd",
            Process::ApiServer => "kube-apiserver",
        }
    }
}

/// What the supervisor thread is asked to do; each order is answered on its `reply`.
enum Order {
    Spawn(Process, Box<Command>, PathBuf, mpsc::Sender<io::Result<()>>),
    Stop(Process, mpsc::Sender<()>),
    Exited(Process, mpsc::Sender<Option<String>>),
}

/// The thread that spawns, owns and kills a server's processes. Dropping it kills them.
struct Supervisor {
    orders: Option<mpsc::Sender<Order>>,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    fn start() -> Supervisor {
        let (orders, inbox) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kube-supervisor".to_owned())
            .spawn(move || supervise(inbox))
            .expect("spawn the supervisor thread");
        Supervisor { orders: Some(orders), thread: Some(thread) }
    }

    /// Starts `process` with `command`, its stdout and stderr appended to `log`.
    fn spawn(&self, process: Process, command: Command, log: PathBuf) {
        let spawned = self.ask(|reply| Order::Spawn(process, Box::new(command), log, reply));
        spawned.unwrap_or_else(|e| panic!("cannot start {}: {e}", process.name()));
    }

    fn ask<T>(&self, order: impl FnOnce(mpsc::Sender<T>) -> Order) -> T {
        self.try_ask(order).expect("the supervisor thread answers")
    }

    /// The answer to `order`; none when the supervisor thread is gone.
    fn try_ask<T>(&self, order: impl FnOnce(mpsc::Sender<T>) -> Order) -> Option<T> {
        let (reply, answer) = mpsc::channel();
        self.orders.as_ref()?.send(order(reply)).ok()?;
        answer.recv().ok()
    }

    /// Kills both processes, never panicking (it runs at exit).
    fn shutdown(&self) {
        for process in [Process::ApiServer, Process::Etcd] {
            let _ = self.try_ask(|reply| Order::Stop(process, reply));
        }
    }

    /// Kills `process` if it runs, and waits for it to exit.
    fn stop(&self, process: Process) {
        self.ask(|reply| Order::Stop(process, reply));
    }

    /// How `process` exited, if it has.
    fn exited(&self, process: Process) -> Option<String> {
        self.ask(|reply| Order::Exited(process, reply))
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Closing the channel ends the thread, which kills and reaps both processes.
        drop(self.orders.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The supervisor thread's loop: runs until every sender is gone, then kills what it started.
fn supervise(inbox: mpsc::Receiver<Order>) {
    let mut children: [Option<Child>; 2] = [None, None];
    let slot = |process: Process| process as usize;
    for order in inbox {
        match order {
            Order::Spawn(process, command, log, reply) => {
                let spawned = spawn_dying_with_thread(*command, &log);
                let _ = reply.send(spawned.map(|child| children[slot(process)] = Some(child)));
            }
            Order::Stop(process, reply) => {
                kill(&mut children[slot(process)]);
                let _ = reply.send(());
            }
            Order::Exited(process, reply) => {
                let status = children[slot(process)].as_mut().and_then(|c| c.try_wait().ok().flatten());
                let _ = reply.send(status.map(|s| s.to_string()));
            }
        }
    }
    // The API server first: etcd going away first makes it log a storm of errors.
    kill(&mut children[slot(Process::ApiServer)]);
    kill(&mut children[slot(Process::Etcd)]);
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Spawns `command` so that the kernel kills it (SIGKILL) when this thread exits, with its
/// output appended to `log`.
fn spawn_dying_with_thread(mut command: Command, log: &Path) -> io::Result<Child> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
    // SAFETY: the closure runs in the child between fork and exec, and only calls prctl(2) and
    // reads errno, both async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}
