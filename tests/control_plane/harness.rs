//! What every control-plane test shares: the chart installed once, the operator processes,
//! and small readers of the cluster's objects.

pub use crate::support::cluster::{cluster, wait_until, Cluster};
pub use serde_json::Value;
pub use std::path::{Path, PathBuf};
pub use std::process::{Child, Command, Stdio};
use crate::support;
use std::sync::{Mutex, OnceLock};

pub const SYSTEM: &str = "cistern-system";
pub const CSI_NAMESPACE: &str = "cistern-csi";

pub struct Installed {
    pub operator_kubeconfig: PathBuf,
    /// `<namespace>/<name> <url>` lines: where each Dataset's master web port answers.
    pub master_map: PathBuf,
}

pub static INSTALLED: OnceLock<Installed> = OnceLock::new();
/// Every operator process the tests started, by identity; killed when the tests end.
pub static OPERATORS: Mutex<Vec<(String, Child)>> = Mutex::new(Vec::new());

extern "C" fn kill_operators() {
    if let Ok(mut all) = OPERATORS.lock() {
        for (_, child) in all.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/charts/cistern")
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/examples")
}

/// The chart installed with helm, the CRDs established, one operator running.
pub fn installed() -> &'static Installed {
    INSTALLED.get_or_init(|| {
        let c = cluster();
        let _ = c.try_kubectl(&["create", "namespace", SYSTEM]);
        // The operator's namespace enforces Pod Security `restricted`.
        c.kubectl(&["label", "namespace", SYSTEM, "pod-security.kubernetes.io/enforce=restricted", "--overwrite"]);
        // The CRDs are too large for client-side apply's annotation: applied server-side
        // (helm installs crds/ only on first install and never upgrades them).
        let crds = chart().join("crds/crds.yaml");
        c.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crds.to_str().unwrap()]);
        c.helm(&["upgrade", "--install", "cistern", chart().to_str().unwrap(), "--namespace", SYSTEM, "--skip-crds"]);
        c.kubectl(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
        let master_map = c.dir.join("master-web.map");
        std::fs::write(&master_map, "").unwrap();
        let installed = Installed { operator_kubeconfig: c.service_account_kubeconfig(SYSTEM, "cistern-operator"), master_map };
        unsafe { libc::atexit(kill_operators) };
        start_operator(c, &installed, "operator-a");
        installed
    })
}

/// Starts `cistern operator` as `identity`, with the operator ServiceAccount's token.
pub fn start_operator(c: &Cluster, installed: &Installed, identity: &str) {
    let log = std::fs::File::create(c.dir.join(format!("logs/{identity}.log"))).unwrap();
    let child = Command::new(support::cistern_bin())
        .args(["operator", "--image", "cistern:test", "--namespace", SYSTEM, "--identity", identity])
        .arg("--master-web-map")
        .arg(&installed.master_map)
        .env("KUBECONFIG", &installed.operator_kubeconfig)
        .env("CISTERN_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    OPERATORS.lock().unwrap().push((identity.to_string(), child));
}

pub fn operator_log(identity: &str) -> String {
    std::fs::read_to_string(cluster().dir.join(format!("logs/{identity}.log"))).unwrap_or_default()
}

pub fn kill9_operator(identity: &str) {
    let mut all = OPERATORS.lock().unwrap();
    let (_, child) = all.iter_mut().find(|(id, _)| id == identity).expect("a running operator");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

pub fn json_of(c: &Cluster, args: &[&str]) -> Value {
    c.get_json(args).unwrap_or_else(|| panic!("kubectl get {args:?} failed"))
}

pub fn items(c: &Cluster, args: &[&str]) -> Vec<Value> {
    json_of(c, args)["items"].as_array().cloned().unwrap_or_default()
}

pub fn phase_of(c: &Cluster, kind: &str, ns: &str, name: &str) -> String {
    c.get_json(&[kind, name, "-n", ns]).and_then(|o| o["status"]["phase"].as_str().map(String::from)).unwrap_or_default()
}

/// `(kind, name)` of every Dataset and runtime in a YAML file.
pub fn fluid_objects(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for doc in text.split("\n---") {
        let kind = doc.lines().find_map(|l| l.strip_prefix("kind: ")).map(str::trim);
        let name = doc.lines().skip_while(|l| !l.starts_with("metadata:")).find_map(|l| l.trim().strip_prefix("name: ")).map(str::trim);
        if let (Some(kind), Some(name)) = (kind, name) {
            if kind == "Dataset" || kind.ends_with("Runtime") {
                out.push((kind.to_string(), name.trim_matches('"').to_string()));
            }
        }
    }
    out
}

/// The runtime's phases once they are all Ready.
pub fn wait_runtime_ready(c: &Cluster, kind: &str, ns: &str, name: &str) {
    let resource = kind.to_lowercase();
    wait_until(90, &format!("{kind} {ns}/{name} Ready"), || {
        c.get_json(&[&resource, name, "-n", ns]).is_some_and(|o| {
            ["masterPhase", "workerPhase", "fusePhase"].iter().all(|p| o["status"][p] == "Ready")
        })
    });
}

/// What a Dataset with a runtime makes, server-side: each object once, owned by the runtime.
pub fn assert_rendered_objects(c: &Cluster, ns: &str, name: &str, runtime_kind: &str) {
    let runtime_uid = json_of(c, &[&runtime_kind.to_lowercase(), name, "-n", ns])["metadata"]["uid"].as_str().unwrap().to_string();
    let selector = format!("release={name}");
    let objects = items(c, &["statefulsets,daemonsets,services,configmaps,persistentvolumeclaims,networkpolicies", "-n", ns, "-l", &selector]);
    assert!(!objects.is_empty(), "no objects rendered for {ns}/{name}");
    let mut seen = std::collections::BTreeSet::new();
    for o in &objects {
        let id = format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap());
        assert!(seen.insert(id.clone()), "{id} twice");
        let owners = o["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
        assert!(owners.iter().any(|r| r["uid"] == runtime_uid.as_str() && r["controller"] == true), "{ns}/{id} is not owned by its runtime: {owners:?}");
    }
    let kinds: std::collections::BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in ["StatefulSet", "DaemonSet", "PersistentVolumeClaim"] {
        assert!(kinds.contains(kind), "{ns}/{name}: no {kind} among {kinds:?}");
    }
    if runtime_kind != "JuiceFSRuntime" {
        for kind in ["Service", "ConfigMap", "NetworkPolicy"] {
            assert!(kinds.contains(kind), "{ns}/{name}: no {kind} among {kinds:?}");
        }
    }
    // Pods are scheduled onto the fake nodes and run there (kwok).
    let pods = items(c, &["pods", "-n", ns, "-l", &selector]);
    assert!(!pods.is_empty(), "{ns}/{name}: no pods");
    for p in &pods {
        let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
        assert!(node.starts_with("kwok-node-"), "pod {} not scheduled onto a kwok node: {node:?}", p["metadata"]["name"]);
    }
}

/// A Dataset with a JindoRuntime of `replicas` workers in `ns`, named `demo`.
pub fn demo_yaml(replicas: u32) -> String {
    format!(
        r#"apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata:
  name: demo
spec:
  mounts:
    - mountPoint: local:///srv/data
      name: data
---
apiVersion: data.fluid.io/v1alpha1
kind: JindoRuntime
metadata:
  name: demo
spec:
  replicas: {replicas}
  tieredstore:
    levels:
      - mediumtype: MEM
        path: /dev/shm
        volumeType: emptyDir
        quota: 1Gi
"#
    )
}

pub fn apply_demo(c: &Cluster, ns: &str, replicas: u32) {
    c.kubectl_in(&["apply", "--validate=strict", "-n", ns, "-f", "-"], &demo_yaml(replicas));
}

/// The nodes labelled as holding `ns/name`'s cache.
pub fn cache_nodes(c: &Cluster, ns: &str, name: &str) -> Vec<String> {
    let label = format!("fluid.io/s-{ns}-{name}");
    let mut nodes: Vec<String> = items(c, &["nodes", "-l", &label]).iter().filter_map(|n| n["metadata"]["name"].as_str().map(String::from)).collect();
    nodes.sort();
    nodes
}

pub fn running_workers(c: &Cluster, ns: &str) -> Vec<String> {
    let pods = items(c, &["pods", "-n", ns, "-l", "release=demo,role=worker"]);
    let mut nodes: Vec<String> = pods
        .iter()
        .filter(|p| p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(String::from))
        .collect();
    nodes.sort();
    nodes
}

pub fn lease_holder(c: &Cluster) -> String {
    c.get_json(&["lease", "cistern-operator", "-n", SYSTEM]).and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from)).unwrap_or_default()
}
