//! Cistern on a real Kubernetes control plane (`scripts/local-cluster.sh`): kube-apiserver with
//! Node,RBAC authorization and Pod Security admission, kube-controller-manager (garbage
//! collection, Jobs, StatefulSets, DaemonSets, service-account tokens), kube-scheduler, etcd, and
//! kwok's three fake nodes (they run no containers: kwok marks pods Running and Jobs' pods
//! Succeeded). The real kubectl and helm drive it; the operator runs as a process
//! authenticated with a token of the chart's ServiceAccount, so RBAC is exercised, not
//! bypassed. Each test works in its own namespace.
//! Time allowance: 6 minutes, the cluster's start included (builds are `local-cluster.sh build`).

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use support::cluster::{cluster, wait_until, Cluster};

const SYSTEM: &str = "cistern-system";
const CSI_NAMESPACE: &str = "cistern-csi";

struct Installed {
    operator_kubeconfig: PathBuf,
    /// `<namespace>/<name> <url>` lines: where each Dataset's master web port answers.
    master_map: PathBuf,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();
/// Every operator process the tests started, by identity; killed when the tests end.
static OPERATORS: Mutex<Vec<(String, Child)>> = Mutex::new(Vec::new());

extern "C" fn kill_operators() {
    if let Ok(mut all) = OPERATORS.lock() {
        for (_, child) in all.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/charts/cistern")
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/examples")
}

/// The chart installed with helm, the CRDs established, one operator running.
fn installed() -> &'static Installed {
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
fn start_operator(c: &Cluster, installed: &Installed, identity: &str) {
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

fn operator_log(identity: &str) -> String {
    std::fs::read_to_string(cluster().dir.join(format!("logs/{identity}.log"))).unwrap_or_default()
}

fn kill9_operator(identity: &str) {
    let mut all = OPERATORS.lock().unwrap();
    let (_, child) = all.iter_mut().find(|(id, _)| id == identity).expect("a running operator");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

fn json_of(c: &Cluster, args: &[&str]) -> Value {
    c.get_json(args).unwrap_or_else(|| panic!("kubectl get {args:?} failed"))
}

fn items(c: &Cluster, args: &[&str]) -> Vec<Value> {
    json_of(c, args)["items"].as_array().cloned().unwrap_or_default()
}

fn phase_of(c: &Cluster, kind: &str, ns: &str, name: &str) -> String {
    c.get_json(&[kind, name, "-n", ns]).and_then(|o| o["status"]["phase"].as_str().map(String::from)).unwrap_or_default()
}

/// `(kind, name)` of every Dataset and runtime in a YAML file.
fn fluid_objects(text: &str) -> Vec<(String, String)> {
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
fn wait_runtime_ready(c: &Cluster, kind: &str, ns: &str, name: &str) {
    let resource = kind.to_lowercase();
    wait_until(90, &format!("{kind} {ns}/{name} Ready"), || {
        c.get_json(&[&resource, name, "-n", ns]).is_some_and(|o| {
            ["masterPhase", "workerPhase", "fusePhase"].iter().all(|p| o["status"][p] == "Ready")
        })
    });
}

/// What a Dataset with a runtime makes, server-side: each object once, owned by the runtime.
fn assert_rendered_objects(c: &Cluster, ns: &str, name: &str, runtime_kind: &str) {
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

#[test]
fn the_chart_installs_and_its_crds_are_established() {
    installed();
    let c = cluster();
    for crd in ["datasets", "jindoruntimes", "alluxioruntimes", "juicefsruntimes", "dataloads"] {
        let o = json_of(c, &["crd", &format!("{crd}.data.fluid.io")]);
        let established = o["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Established" && c["status"] == "True");
        assert!(established, "{crd} not established");
        assert!(o["spec"]["names"]["categories"].as_array().is_some_and(|c| c.iter().any(|x| x == "fluid")), "{crd}: no category fluid");
    }
    // The operator's Deployment passes Pod Security `restricted` (its pod was admitted);
    // the privileged CSI plugin lives in a namespace of its own.
    wait_until(60, "the operator's pod", || !items(c, &["pods", "-n", SYSTEM, "-l", "app.kubernetes.io/component=operator"]).is_empty());
    wait_until(60, "the CSI plugin's pods", || items(c, &["pods", "-n", CSI_NAMESPACE, "-l", "app.kubernetes.io/component=csi"]).len() == 3);
    let restricted = json_of(c, &["namespace", SYSTEM])["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].clone();
    assert_eq!(restricted, "restricted");
    // A privileged pod is refused there: the label is enforced, not decorative.
    let privileged = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"probe"},"spec":{"containers":[{"name":"c","image":"x","securityContext":{"privileged":true}}]}}"#;
    let refused = c.try_kubectl_in(&["apply", "-n", SYSTEM, "-f", "-"], privileged).unwrap_err();
    assert!(refused.contains("violates PodSecurity"), "{refused}");
}

#[test]
fn every_example_applies_strictly_binds_and_becomes_ready() {
    let _ = installed();
    let c = cluster();
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 4, "examples missing from {}", examples().display());
    for file in &files {
        let stem = file.file_stem().unwrap().to_str().unwrap().to_lowercase().replace('_', "-");
        let ns = c.namespace(&format!("ex-{}", &stem[..stem.len().min(50)]));
        let text = std::fs::read_to_string(file).unwrap();
        if text.contains("storageClassName: alicloud-disk-topology-alltype") {
            // Seed 002's claim names a cloud storage class; here a PV of that class stands in.
            let pv = format!(
                r#"{{"apiVersion":"v1","kind":"PersistentVolume","metadata":{{"name":"{ns}-meta"}},"spec":{{"capacity":{{"storage":"30Gi"}},"accessModes":["ReadWriteOnce"],"storageClassName":"alicloud-disk-topology-alltype","hostPath":{{"path":"/var/lib/cistern/{ns}"}},"claimRef":{{"namespace":"{ns}","name":"demo-jindo-master-meta"}}}}}}"#
            );
            c.kubectl_in(&["apply", "-f", "-"], &pv);
        }
        let out = c.try_kubectl(&["apply", "--validate=strict", "--server-side", "-n", &ns, "-f", file.to_str().unwrap()]);
        assert!(out.is_ok(), "{}: {}", file.display(), out.unwrap_err());
        let objects = fluid_objects(&text);
        for (kind, name) in objects.iter().filter(|(k, _)| k.ends_with("Runtime")) {
            assert!(objects.iter().any(|(k, n)| k == "Dataset" && n == name), "{}: {kind} {name} without its Dataset", file.display());
            wait_until(60, &format!("Dataset {ns}/{name} Bound"), || phase_of(c, "dataset", &ns, name) == "Bound");
            wait_runtime_ready(c, kind, &ns, name);
            assert_rendered_objects(c, &ns, name, kind);
            // What users type: Fluid's columns from the real kubectl.
            let table = c.kubectl(&["get", "dataset", name, "-n", &ns]);
            for column in ["UFS TOTAL SIZE", "CACHED", "CACHE CAPACITY", "CACHED PERCENTAGE", "PHASE", "AGE"] {
                assert!(table.contains(column), "kubectl get dataset lacks {column}:\n{table}");
            }
            assert!(table.contains("Bound"), "{table}");
            let everything = c.kubectl(&["get", "fluid", "-n", &ns]);
            assert!(everything.contains(&format!("dataset.data.fluid.io/{name}")), "kubectl get fluid:\n{everything}");
            assert!(everything.contains(&format!("{}.data.fluid.io/{name}", kind.to_lowercase())), "kubectl get fluid:\n{everything}");
        }
    }
}
