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
            let _ = c.try_kubectl(&["delete", "pv", &format!("{ns}-meta"), "--ignore-not-found"]);
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

/// A Dataset with a JindoRuntime of `replicas` workers in `ns`, named `demo`.
fn demo_yaml(replicas: u32) -> String {
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

fn apply_demo(c: &Cluster, ns: &str, replicas: u32) {
    c.kubectl_in(&["apply", "--validate=strict", "-n", ns, "-f", "-"], &demo_yaml(replicas));
}

/// The nodes labelled as holding `ns/name`'s cache.
fn cache_nodes(c: &Cluster, ns: &str, name: &str) -> Vec<String> {
    let label = format!("fluid.io/s-{ns}-{name}");
    let mut nodes: Vec<String> = items(c, &["nodes", "-l", &label]).iter().filter_map(|n| n["metadata"]["name"].as_str().map(String::from)).collect();
    nodes.sort();
    nodes
}

fn running_workers(c: &Cluster, ns: &str) -> Vec<String> {
    let pods = items(c, &["pods", "-n", ns, "-l", "release=demo,role=worker"]);
    let mut nodes: Vec<String> = pods
        .iter()
        .filter(|p| p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(String::from))
        .collect();
    nodes.sort();
    nodes
}

#[test]
fn kubectl_scale_changes_the_workers_and_locality_labels_follow_them() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("scale");
    apply_demo(c, &ns, 1);
    wait_runtime_ready(c, "JindoRuntime", &ns, "demo");
    wait_until(60, "one cache node labelled", || cache_nodes(c, &ns, "demo").len() == 1);
    c.kubectl(&["scale", "jindoruntime", "demo", "-n", &ns, "--replicas=3"]);
    wait_until(90, "three workers running", || running_workers(c, &ns).len() == 3);
    wait_until(60, "three ready workers in the status", || {
        c.get_json(&["jindoruntime", "demo", "-n", &ns]).is_some_and(|o| o["status"]["workerNumberReady"] == 3 && o["status"]["workerPhase"] == "Ready")
    });
    // One worker per node (anti-affinity), and every worker's node carries the label.
    wait_until(60, "three cache nodes labelled", || cache_nodes(c, &ns, "demo") == running_workers(c, &ns));
    assert_eq!(cache_nodes(c, &ns, "demo").len(), 3);
    c.kubectl(&["scale", "jindoruntime", "demo", "-n", &ns, "--replicas=1"]);
    wait_until(90, "one worker left", || running_workers(c, &ns).len() == 1);
    wait_until(60, "labels only where the worker runs", || cache_nodes(c, &ns, "demo") == running_workers(c, &ns));
}

#[test]
fn deleting_a_dataset_waits_while_a_pod_uses_it_and_events_say_why() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("deletion");
    apply_demo(c, &ns, 1);
    wait_until(60, "Bound", || phase_of(c, "dataset", &ns, "demo") == "Bound");
    let app = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"app"},"spec":{"containers":[{"name":"app","image":"busybox","volumeMounts":[{"name":"data","mountPath":"/data"}]}],"volumes":[{"name":"data","persistentVolumeClaim":{"claimName":"demo"}}]}}"#;
    c.kubectl_in(&["apply", "-n", &ns, "-f", "-"], app);
    wait_until(60, "the app pod running", || phase_of(c, "pod", &ns, "app") == "Running");
    c.kubectl(&["delete", "dataset", "demo", "-n", &ns, "--wait=false"]);
    wait_until(30, "the DatasetInUse event", || c.kubectl(&["describe", "dataset", "demo", "-n", &ns]).contains("DatasetInUse"));
    let described = c.kubectl(&["describe", "dataset", "demo", "-n", &ns]);
    assert!(described.contains("Bound") && described.contains("in use by pod app"), "kubectl describe dataset:\n{described}");
    assert!(c.get_json(&["dataset", "demo", "-n", &ns]).is_some(), "deleted while a pod uses its PVC");
    c.kubectl(&["delete", "pod", "app", "-n", &ns, "--wait=false"]);
    wait_until(60, "the Dataset gone once the pod is", || c.get_json(&["dataset", "demo", "-n", &ns]).is_none());
}

#[test]
fn a_dataload_runs_its_job_to_complete_and_mirrors_its_phase() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("dataload");
    apply_demo(c, &ns, 1);
    let load = "apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata:\n  name: warm\nspec:\n  dataset:\n    name: demo\n    namespace: dataload\n  target:\n    - path: /\n";
    c.kubectl_in(&["apply", "--validate=strict", "-n", &ns, "-f", "-"], load);
    wait_until(90, "the DataLoad Complete", || phase_of(c, "dataload", &ns, "warm") == "Complete");
    let job = json_of(c, &["job", "warm-loader", "-n", &ns]);
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "DataLoad");
    let described = c.kubectl(&["describe", "dataload", "warm", "-n", &ns]);
    assert!(described.contains("LoadComplete"), "kubectl describe dataload:\n{described}");
}

#[test]
fn csi_sanity_passes_against_cistern_csi() {
    let c = cluster();
    let dir = c.dir.join("csi-sanity");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let endpoint = format!("unix://{}/csi.sock", dir.display());
    let mut plugin = Command::new(support::cistern_bin())
        .args(["csi", "--endpoint", &endpoint, "--node-id", "kwok-node-0", "--stage-timeout-secs", "2"])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("KUBECONFIG", &c.kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(20, "the CSI socket", || dir.join("csi.sock").exists());
    // A node-only plugin: the Controller service is optional in the CSI spec, so its tests
    // are skipped, and so are the two Node tests that make their volume with CreateVolume.
    let out = Command::new(c.dir.join("bin/csi-sanity"))
        .arg(format!("--csi.endpoint={endpoint}"))
        .arg(format!("--csi.stagingdir={}/staging", dir.display()))
        .arg(format!("--csi.mountdir={}/target", dir.display()))
        .arg("-ginkgo.no-color")
        .arg("-ginkgo.skip=Controller Server|should remove target path|NodeStageVolume should fail when no volume capability is provided")
        .output()
        .unwrap();
    let _ = plugin.kill();
    let _ = plugin.wait();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "csi-sanity:\n{text}");
    let ran = text.lines().find(|l| l.contains("Passed")).unwrap_or_default().to_string();
    eprintln!("csi-sanity: {ran}");
    assert!(ran.contains(" 0 Failed"), "{ran}");
    // Identity and Node tests ran: at least 14 specs passed.
    let passed: u32 = ran.split_whitespace().zip(ran.split_whitespace().skip(1)).find(|(_, w)| *w == "Passed").and_then(|(n, _)| n.parse().ok()).unwrap_or(0);
    assert!(passed >= 14, "{ran}");
}

fn lease_holder(c: &Cluster) -> String {
    c.get_json(&["lease", "cistern-operator", "-n", SYSTEM]).and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from)).unwrap_or_default()
}

#[test]
fn a_killed_operator_is_replaced_by_the_lease_holder_and_nothing_is_duplicated_or_orphaned() {
    let inst = installed();
    let c = cluster();
    wait_until(60, "operator-a holding the Lease", || lease_holder(c) == "operator-a");
    // A second replica waits: only the Lease holder reconciles.
    start_operator(c, inst, "operator-b");
    wait_until(30, "operator-b waiting for the Lease", || operator_log("operator-b").contains("waiting for the Lease"));
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(lease_holder(c), "operator-a");
    assert!(!operator_log("operator-b").contains("holding the Lease"), "two replicas reconciling");

    let ns = c.namespace("failover");
    apply_demo(c, &ns, 2);
    // SIGKILL mid-reconcile: right after the first of its objects is applied.
    wait_until(30, "the first rendered object", || c.try_kubectl(&["get", "configmap", "demo-cistern-config", "-n", &ns]).is_ok());
    kill9_operator("operator-a");
    wait_until(60, "operator-b holding the Lease", || lease_holder(c) == "operator-b");
    wait_until(60, "Bound", || phase_of(c, "dataset", &ns, "demo") == "Bound");
    wait_runtime_ready(c, "JindoRuntime", &ns, "demo");
    assert_rendered_objects(c, &ns, "demo", "JindoRuntime");
    let secrets: Vec<Value> = items(c, &["secrets", "-n", &ns]).into_iter().filter(|s| s["metadata"]["name"] == "demo-cistern-credentials").collect();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0]["metadata"]["ownerReferences"][0]["kind"], "JindoRuntime", "the credentials Secret is owned");
    // Every object with the Dataset's labels is owned (the PV is cluster-scoped: one, ours).
    for o in items(c, &["all,configmaps,secrets,networkpolicies,persistentvolumeclaims", "-n", &ns, "-l", "release=demo"]) {
        let kind = o["kind"].as_str().unwrap_or_default();
        if kind == "Pod" || kind == "ControllerRevision" {
            continue; // owned by their StatefulSet or DaemonSet
        }
        assert!(o["metadata"]["ownerReferences"].is_array(), "orphan: {kind} {}", o["metadata"]["name"]);
    }
    assert_eq!(items(c, &["pv", "-l", &format!("fluid.io/dataset-id={ns}-demo")]).len(), 1);

    // The old leader comes back as a follower.
    start_operator(c, inst, "operator-a2");
    wait_until(30, "operator-a2 waiting", || operator_log("operator-a2").contains("waiting for the Lease"));
    assert_eq!(lease_holder(c), "operator-b");
    // Events explain what happened, as Fluid users expect from `kubectl describe`.
    let described = c.kubectl(&["describe", "jindoruntime", "demo", "-n", &ns]);
    assert!(described.contains("RuntimeReady"), "kubectl describe jindoruntime:\n{described}");
}

/// `(resource, verbs)` pairs a table of the README grants `component` at `scope`.
fn readme_grants(component: &str, scope: &str) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let section = readme.split("### Least privilege").nth(1).expect("README: ### Least privilege");
    let mut out = std::collections::BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ") && !l.starts_with("### ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | component | API group | resources | verbs | scope | why |
        if cells.len() < 7 || cells[1] != component || cells[5] != scope {
            continue;
        }
        let group = cells[2].trim_matches('`');
        for resource in cells[3].split(',').map(|r| r.trim().trim_matches('`')) {
            // kubectl's spelling: `resource.group/subresource`.
            let (base, sub) = resource.split_once('/').map_or((resource, String::new()), |(b, s)| (b, format!("/{s}")));
            let name = if group == "core" { resource.to_string() } else { format!("{base}.{group}{sub}") };
            let verbs: std::collections::BTreeSet<String> = cells[4].split(',').map(|v| v.trim().trim_matches('`').to_string()).collect();
            out.insert(name, verbs);
        }
    }
    assert!(!out.is_empty() || scope == "namespace", "README has no {component} rows of scope {scope}");
    out
}

/// What `kubectl auth can-i --list` says `kubeconfig` may do in `ns`, without what every
/// authenticated user may (self reviews, discovery URLs).
fn can_i(c: &Cluster, kubeconfig: &Path, ns: &str) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let text = c.try_kubectl_as(kubeconfig, &["auth", "can-i", "--list", "-n", ns]).unwrap();
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = std::collections::BTreeMap::new();
    for line in text.lines().skip(1) {
        let Some(open) = line.find('[') else { continue };
        let verbs_start = line.rfind('[').unwrap();
        let resource = line[..open].split_whitespace().next().unwrap_or_default().to_string();
        if resource.is_empty() || resource.starts_with("selfsubject") {
            continue; // granted to every authenticated user (system:basic-user)
        }
        let verbs = line[verbs_start + 1..line.rfind(']').unwrap()].split_whitespace().map(String::from);
        out.entry(resource).or_default().extend(verbs);
    }
    out
}

#[test]
fn each_service_account_can_do_what_the_readme_table_says_and_no_more() {
    let inst = installed();
    let c = cluster();
    let csi = c.service_account_kubeconfig(CSI_NAMESPACE, "cistern-csi");
    for (component, kubeconfig, home) in [("operator", &inst.operator_kubeconfig, SYSTEM), ("csi", &csi, CSI_NAMESPACE)] {
        let cluster_wide = readme_grants(component, "cluster");
        // Elsewhere: the cluster-wide grants only.
        assert_eq!(can_i(c, kubeconfig, "default"), cluster_wide, "{component}: the chart's grants (left) differ from the README's table (right)");
        // At home: plus what its Role grants there.
        let mut at_home = cluster_wide.clone();
        for (resource, verbs) in readme_grants(component, "namespace") {
            at_home.entry(resource).or_default().extend(verbs);
        }
        assert_eq!(can_i(c, kubeconfig, home), at_home, "{component} in {home}: the chart (left) against the README (right)");
    }
    // The operator reads no Secret in bulk.
    let listed = c.try_kubectl_as(&inst.operator_kubeconfig, &["get", "secrets", "-n", "default"]);
    assert!(listed.unwrap_err().contains("forbidden"), "the operator lists Secrets");
}

#[test]
fn the_operator_copies_a_real_masters_figures_into_the_statuses() {
    let inst = installed();
    let c = cluster();
    let ns = c.namespace("status-sync");
    let s = support::Scratch::new();
    let data = s.path("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("a.bin"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(data.join("sub/b.bin"), vec![9u8; 1 << 20]).unwrap();
    let yaml = format!(
        "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata:\n  name: demo\n  namespace: {ns}\nspec:\n  mounts:\n    - mountPoint: local://{}\n      name: data\n---\napiVersion: data.fluid.io/v1alpha1\nkind: JindoRuntime\nmetadata:\n  name: demo\n  namespace: {ns}\nspec:\n  replicas: 1\n  tieredstore:\n    levels:\n      - mediumtype: MEM\n        path: /dev/shm\n        volumeType: emptyDir\n        quota: 1Gi\n",
        data.display()
    );
    let file = s.write("demo.yaml", &yaml);
    // The master the pod would run, as a process on this host (kwok pods run nothing).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut master = Command::new(support::cistern_bin())
        .args(["master", "--web-addr", &format!("127.0.0.1:{port}")])
        .arg("-f")
        .arg(&file)
        .arg("--run-dir")
        .arg(s.path("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut map = std::fs::OpenOptions::new().append(true).open(&inst.master_map).unwrap();
    std::io::Write::write_all(&mut map, format!("{ns}/demo http://127.0.0.1:{port}\n").as_bytes()).unwrap();
    c.kubectl_in(&["apply", "--validate=strict", "-f", "-"], &yaml);
    let synced = std::panic::catch_unwind(|| {
        wait_until(90, "the master's figures in the Dataset's status", || {
            c.get_json(&["dataset", "demo", "-n", &ns]).is_some_and(|d| d["status"]["fileNum"] == "2" && d["status"]["ufsTotal"] == "4.00MiB")
        })
    });
    let _ = master.kill();
    let _ = master.wait();
    if let Err(e) = synced {
        std::panic::resume_unwind(e);
    }
    let wide = c.kubectl(&["get", "dataset", "demo", "-n", &ns, "-o", "wide"]);
    assert!(wide.contains("4.00MiB") && wide.contains("TOTAL FILES"), "kubectl get dataset -o wide:\n{wide}");
}

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut files: Vec<PathBuf> = ["fluid-docs", "jindo-docs"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Fluid's documentation samples (tests/fixtures): every object is accepted by the real API
/// server with strict field validation; every Dataset with a runtime is bound, and its runtime
/// either runs or says in an Event which field it cannot run with.
#[test]
fn fluid_documentation_samples_apply_strictly_and_bind() {
    let _ = installed();
    let c = cluster();
    let mut objects = 0;
    let mut fluid_doc_objects = 0;
    for file in fixtures() {
        let stem = file.file_stem().unwrap().to_str().unwrap().to_lowercase().replace('_', "-");
        let ns = c.namespace(&format!("doc-{}", &stem[..stem.len().min(50)]));
        let text = std::fs::read_to_string(&file).unwrap();
        let out = c.try_kubectl(&["apply", "--validate=strict", "--server-side", "-n", &ns, "-f", file.to_str().unwrap()]);
        assert!(out.is_ok(), "{}: {}", file.display(), out.unwrap_err());
        let kinds = text.matches("\nkind: ").count() + usize::from(text.starts_with("kind: "));
        objects += kinds;
        if file.to_str().unwrap().contains("fluid-docs") {
            fluid_doc_objects += kinds;
        }
        let declared = fluid_objects(&text);
        for (kind, name) in declared.iter().filter(|(k, _)| k.ends_with("Runtime")) {
            if !declared.iter().any(|(k, n)| k == "Dataset" && n == name) {
                continue;
            }
            wait_until(60, &format!("{}: Dataset {ns}/{name} Bound", file.display()), || phase_of(c, "dataset", &ns, name) == "Bound");
            let resource = kind.to_lowercase();
            wait_until(60, &format!("{}: {kind} {name} rendered, or a Warning naming the field", file.display()), || {
                let rendered = c.try_kubectl(&["get", "statefulset", &format!("{name}-worker"), "-n", &ns]).is_ok();
                let explained = c.try_kubectl(&["describe", &resource, name, "-n", &ns]).is_ok_and(|d| d.contains("ReconcileFailed") && d.contains("spec."));
                rendered || explained
            });
        }
    }
    eprintln!("documentation samples: {objects} objects accepted, {fluid_doc_objects} of them from Fluid's own docs");
    assert!(fluid_doc_objects >= 40, "only {fluid_doc_objects} objects from Fluid's docs");
}

/// `policy: Cron` runs as a CronJob whose runs the DataLoad mirrors; `runAfter` waits for the
/// preceding load and, with `affinityStrategy: Require`, runs on the node it ran on;
/// `ttlSecondsAfterFinished` deletes a finished DataLoad; placement fields reach the pod.
#[test]
fn dataload_policies_cron_run_after_and_ttl() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("dataload-policies");
    apply_demo(c, &ns, 1);
    let loads = format!(
        r#"apiVersion: data.fluid.io/v1alpha1
kind: DataLoad
metadata: {{name: first}}
spec:
  dataset: {{name: demo, namespace: {ns}}}
  tolerations: [{{key: loaders, operator: Exists}}]
  podMetadata: {{labels: {{team: data}}}}
---
apiVersion: data.fluid.io/v1alpha1
kind: DataLoad
metadata: {{name: second}}
spec:
  dataset: {{name: demo, namespace: {ns}}}
  runAfter: {{kind: DataLoad, name: first, affinityStrategy: {{policy: Require}}}}
---
apiVersion: data.fluid.io/v1alpha1
kind: DataLoad
metadata: {{name: short-lived}}
spec:
  dataset: {{name: demo, namespace: {ns}}}
  ttlSecondsAfterFinished: 2
---
apiVersion: data.fluid.io/v1alpha1
kind: DataLoad
metadata: {{name: hourly}}
spec:
  dataset: {{name: demo, namespace: {ns}}}
  policy: Cron
  schedule: "* * * * *"
"#
    );
    c.kubectl_in(&["apply", "--validate=strict", "-n", &ns, "-f", "-"], &loads);
    wait_until(90, "the first DataLoad Complete", || phase_of(c, "dataload", &ns, "first") == "Complete");
    let first_pod = items(c, &["pods", "-n", &ns, "-l", "fluid.io/dataload=first"]).into_iter().next().expect("the first loader's pod");
    assert_eq!(first_pod["metadata"]["labels"]["team"], "data");
    assert_eq!(first_pod["spec"]["tolerations"].as_array().unwrap().iter().filter(|t| t["key"] == "loaders").count(), 1);
    wait_until(90, "the second DataLoad Complete", || phase_of(c, "dataload", &ns, "second") == "Complete");
    let second = json_of(c, &["job", "second-loader", "-n", &ns]);
    let term = &second["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0];
    assert_eq!((term["key"].as_str(), term["values"][0].as_str()), (Some("kubernetes.io/hostname"), first_pod["spec"]["nodeName"].as_str()), "{second}");
    wait_until(90, "the short-lived DataLoad deleted after its TTL", || c.get_json(&["dataload", "short-lived", "-n", &ns]).is_none());
    assert!(c.get_json(&["cronjob", "hourly-loader", "-n", &ns]).is_some(), "a Cron DataLoad runs as a CronJob");
    wait_until(150, "the Cron DataLoad's first run", || {
        c.get_json(&["dataload", "hourly", "-n", &ns]).is_some_and(|d| d["status"]["phase"] == "Complete" && d["status"]["lastScheduleTime"].is_string())
    });
}

/// A `dataset://<ns>/<name>` Dataset reads another namespace's cache: it is Bound to the
/// physical Dataset's runtime, gets a PV and claim that name the physical runtime for the CSI
/// plugin, is listed in the physical Dataset's `status.datasetRef`, and leaves it when deleted.
#[test]
fn a_dataset_reference_reads_another_namespaces_cache() {
    let _ = installed();
    let c = cluster();
    let phys = c.namespace("ref-physical");
    apply_demo(c, &phys, 1);
    wait_until(60, "the physical Dataset Bound", || phase_of(c, "dataset", &phys, "demo") == "Bound");
    let refs = c.namespace("ref-user");
    let reference = format!("apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {{name: refdemo}}\nspec:\n  mounts:\n    - mountPoint: dataset://{phys}/demo\n      name: fusedemo\n");
    c.kubectl_in(&["apply", "--validate=strict", "-n", &refs, "-f", "-"], &reference);
    wait_until(60, "the reference Bound", || phase_of(c, "dataset", &refs, "refdemo") == "Bound");
    let ds = json_of(c, &["dataset", "refdemo", "-n", &refs]);
    assert_eq!(ds["status"]["runtimes"][0]["namespace"], phys.as_str(), "{ds}");
    let pv = json_of(c, &["pv", &format!("{refs}-refdemo")]);
    let attrs = &pv["spec"]["csi"]["volumeAttributes"];
    assert_eq!((attrs["runtime_namespace"].as_str(), attrs["runtime_name"].as_str()), (Some(phys.as_str()), Some("demo")), "{pv}");
    wait_until(60, "the reference's claim Bound", || c.get_json(&["pvc", "refdemo", "-n", &refs]).is_some_and(|p| p["status"]["phase"] == "Bound"));
    let listed = |c: &Cluster| c.get_json(&["dataset", "demo", "-n", &phys]).map(|d| d["status"]["datasetRef"].clone()).unwrap_or_default();
    wait_until(30, "the reference in datasetRef", || listed(c).as_array().is_some_and(|a| a.iter().any(|r| *r == format!("{refs}/refdemo"))));
    c.kubectl(&["delete", "dataset", "refdemo", "-n", &refs, "--wait=true", "--timeout=60s"]);
    wait_until(30, "datasetRef emptied", || !listed(c).as_array().is_some_and(|a| !a.is_empty()));
    // Deleted with the Dataset; the PV's protection finalizer lets it go once the claim (owned
    // by the Dataset, so garbage-collected after it) is gone.
    wait_until(60, "the reference's PV gone with it", || c.get_json(&["pv", &format!("{refs}-refdemo")]).is_none());
}

/// `policy: OnEvent` loads again when the Dataset changes: its UFS total or file count (the
/// figures the operator copies from the master) differ from those the last run started from.
#[test]
fn an_on_event_dataload_loads_again_when_the_dataset_changes() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("dataload-on-event");
    apply_demo(c, &ns, 1);
    wait_until(60, "Bound", || phase_of(c, "dataset", &ns, "demo") == "Bound");
    let figures = |files: &str| format!(r#"{{"status":{{"ufsTotal":"4.00MiB","fileNum":"{files}"}}}}"#);
    c.kubectl(&["patch", "dataset", "demo", "-n", &ns, "--subresource=status", "--type=merge", "-p", &figures("2")]);
    let load = format!("apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata: {{name: follow}}\nspec:\n  dataset: {{name: demo, namespace: {ns}}}\n  policy: OnEvent\n");
    c.kubectl_in(&["apply", "--validate=strict", "-n", &ns, "-f", "-"], &load);
    wait_until(90, "the first run Complete", || phase_of(c, "dataload", &ns, "follow") == "Complete");
    let first = json_of(c, &["job", "follow-loader", "-n", &ns])["metadata"]["uid"].clone();
    assert_eq!(json_of(c, &["dataload", "follow", "-n", &ns])["status"]["infos"]["fileNum"], "2");
    // Nothing changed: no new run.
    std::thread::sleep(std::time::Duration::from_secs(8));
    assert_eq!(json_of(c, &["job", "follow-loader", "-n", &ns])["metadata"]["uid"], first);
    c.kubectl(&["patch", "dataset", "demo", "-n", &ns, "--subresource=status", "--type=merge", "-p", &figures("3")]);
    wait_until(90, "a new run for the changed Dataset", || {
        c.get_json(&["job", "follow-loader", "-n", &ns]).is_some_and(|j| j["metadata"]["uid"] != first && j["status"]["succeeded"] == 1)
            && c.get_json(&["dataload", "follow", "-n", &ns]).is_some_and(|d| d["status"]["infos"]["fileNum"] == "3" && d["status"]["phase"] == "Complete")
    });
    assert!(c.kubectl(&["describe", "dataload", "follow", "-n", &ns]).contains("DatasetChanged"));
}

/// Host-network Datasets get node ports of their own from the operator (three each, recorded
/// on the runtime), so two of them on one node never collide; the pods listen there.
#[test]
fn host_network_datasets_get_ports_that_do_not_collide() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("host-network");
    for name in ["one", "two"] {
        let yaml = demo_yaml(1).replace("name: demo", &format!("name: {name}")).replace("spec:\n  replicas: 1", "spec:\n  networkmode: HostNetwork\n  replicas: 1");
        c.kubectl_in(&["apply", "--validate=strict", "-n", &ns, "-f", "-"], &yaml);
    }
    let ports = |name: &str| -> Option<Vec<u16>> {
        let rt = c.get_json(&["jindoruntime", name, "-n", &ns])?;
        let text = rt["metadata"]["annotations"]["cistern.io/host-ports"].as_str()?.to_string();
        Some(text.split(',').filter_map(|kv| kv.split_once('=')?.1.parse().ok()).collect())
    };
    wait_until(60, "both runtimes' ports", || ports("one").is_some() && ports("two").is_some());
    let (one, two) = (ports("one").unwrap(), ports("two").unwrap());
    assert_eq!((one.len(), two.len()), (3, 3));
    assert!(one.iter().all(|p| !two.contains(p) && (20000..=26000).contains(p)), "{one:?} {two:?}");
    wait_until(60, "the master listening on its port", || {
        c.get_json(&["statefulset", "one-master", "-n", &ns]).is_some_and(|s| {
            let pod = &s["spec"]["template"]["spec"];
            pod["hostNetwork"] == true && pod["containers"][0]["ports"][0]["containerPort"] == one[0]
        })
    });
    let policy = json_of(c, &["networkpolicy", "two-cistern", "-n", &ns]);
    assert_eq!(policy["spec"]["ingress"][0]["ports"][2]["port"], two[2]);
}

/// The admission webhook on the real API server: pods that mount a Dataset's PVC get node
/// affinity toward its cache's nodes (preferred, or required when the pod asks) and the
/// scheduler follows it; a pod that mounts no Dataset is not patched at all. The webhook runs
/// as a process here (kwok runs no pods), with a ServiceAccount that may only get Datasets.
#[test]
fn the_webhook_steers_pods_that_use_a_dataset_to_its_cache() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("webhook");
    c.kubectl(&["label", "namespace", &ns, "cistern-webhook-test=on", "--overwrite"]);
    // The chart's webhook permissions, for a ServiceAccount of the test's.
    let _ = c.try_kubectl(&["create", "serviceaccount", "webhook-test", "-n", SYSTEM]);
    let _ = c.try_kubectl(&["delete", "clusterrole", "cistern-webhook-test", "--ignore-not-found"]);
    let _ = c.try_kubectl(&["create", "clusterrole", "cistern-webhook-test", "--verb=get", "--resource=datasets.data.fluid.io,jindoruntimes.data.fluid.io,alluxioruntimes.data.fluid.io,juicefsruntimes.data.fluid.io"]);
    let _ = c.try_kubectl(&["create", "clusterrolebinding", "cistern-webhook-test", "--clusterrole=cistern-webhook-test", &format!("--serviceaccount={SYSTEM}:webhook-test")]);
    let kubeconfig = c.service_account_kubeconfig(SYSTEM, "webhook-test");
    let tls = c.dir.join("webhook-tls");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut webhook = Command::new(support::cistern_bin())
        .args(["webhook", "--listen", &format!("127.0.0.1:{port}"), "--self-signed", "127.0.0.1", "--image", "cistern:test"])
        .arg("--tls-dir")
        .arg(&tls)
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(30, "the webhook listening", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(std::fs::read(tls.join("ca.crt")).unwrap());
    let config = format!(
        r#"{{"apiVersion":"admissionregistration.k8s.io/v1","kind":"MutatingWebhookConfiguration","metadata":{{"name":"cistern-webhook-test"}},
        "webhooks":[{{"name":"pods.cistern.io","admissionReviewVersions":["v1"],"sideEffects":"None","failurePolicy":"Fail","timeoutSeconds":5,
        "clientConfig":{{"url":"https://127.0.0.1:{port}/mutate-pods","caBundle":"{ca}"}},
        "rules":[{{"apiGroups":[""],"apiVersions":["v1"],"operations":["CREATE"],"resources":["pods"]}}],
        "namespaceSelector":{{"matchLabels":{{"cistern-webhook-test":"on"}}}}}}]}}"#
    );
    c.kubectl_in(&["apply", "-f", "-"], &config);
    let result = std::panic::catch_unwind(|| {
        apply_demo(c, &ns, 1);
        wait_until(60, "a cache node labelled", || cache_nodes(c, &ns, "demo").len() == 1);
        let pod = |name: &str, claim: &str, labels: &str| {
            format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","labels":{{{labels}}}}},"spec":{{"containers":[{{"name":"c","image":"busybox"}}],"volumes":[{{"name":"d","persistentVolumeClaim":{{"claimName":"{claim}"}}}}]}}}}"#)
        };
        c.kubectl_in(&["apply", "-n", &ns, "-f", "-"], &pod("reader", "demo", ""));
        c.kubectl_in(&["apply", "-n", &ns, "-f", "-"], &pod("strict", "demo", r#""fluid.io/dataset.demo.sched":"required""#));
        c.kubectl_in(&["apply", "-n", &ns, "-f", "-"], &pod("other", "not-a-dataset", ""));
        let key = format!("fluid.io/s-{ns}-demo");
        let reader = json_of(c, &["pod", "reader", "-n", &ns]);
        let pref = &reader["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(pref["preference"]["matchExpressions"][0]["key"], key.as_str(), "{reader}");
        let strict = json_of(c, &["pod", "strict", "-n", &ns]);
        let term = &strict["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0];
        assert_eq!(term["matchExpressions"][0]["key"], key.as_str(), "{strict}");
        assert!(json_of(c, &["pod", "other", "-n", &ns])["spec"]["affinity"].is_null(), "a pod without a Dataset is not patched");
        // A serverless pod (seed 001's label) gets a FUSE sidecar instead of node affinity.
        let app = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"serverless","labels":{"alibabacloud.com/fluid-sidecar-target":"eci"},"annotations":{"alibabacloud.com/fuse-recover-policy":"auto"}},
            "spec":{"containers":[{"name":"demo","image":"nginx","volumeMounts":[{"name":"data-vol","mountPath":"/data"}]}],"volumes":[{"name":"data-vol","persistentVolumeClaim":{"claimName":"demo"}}]}}"#;
        c.kubectl_in(&["apply", "-n", &ns, "-f", "-"], app);
        let pod = json_of(c, &["pod", "serverless", "-n", &ns]);
        let spec = &pod["spec"];
        assert!(spec["affinity"].is_null(), "a serverless pod gets a sidecar, not node affinity: {spec}");
        let vol = spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "data-vol").unwrap();
        assert!(vol["emptyDir"].is_object() && vol["persistentVolumeClaim"].is_null(), "{vol}");
        assert_eq!(spec["containers"][0]["volumeMounts"][0]["mountPropagation"], "HostToContainer");
        let sidecar = &spec["initContainers"][0];
        assert_eq!((sidecar["restartPolicy"].as_str(), sidecar["securityContext"]["privileged"].as_bool()), (Some("Always"), Some(true)), "{sidecar}");
        assert!(sidecar["startupProbe"]["exec"]["command"].is_array(), "the app waits for the mount: {sidecar}");
        let args: Vec<&str> = sidecar["args"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
        assert!(args.windows(2).any(|w| w[0] == "--master" && w[1] == format!("demo-master.{ns}.svc:19998")), "{args:?}");
        let creds = spec["volumes"].as_array().unwrap().iter().find(|v| v["secret"]["secretName"] == "demo-cistern-credentials").expect("client credentials");
        let keys: Vec<&str> = creds["secret"]["items"].as_array().unwrap().iter().filter_map(|i| i["key"].as_str()).collect();
        assert_eq!(keys, ["ca.pem", "client.pem", "client.key"], "never ref.key or the CA key in an application's pod");
        assert_eq!(pod["metadata"]["labels"]["fluid.io/dataset-id"], format!("{ns}-demo").as_str(), "the Dataset's NetworkPolicy admits the pod");
        // The scheduler honours it: the strict pod runs where the cache is.
        wait_until(60, "the strict pod scheduled", || json_of(c, &["pod", "strict", "-n", &ns])["spec"]["nodeName"].is_string());
        let node = json_of(c, &["pod", "strict", "-n", &ns])["spec"]["nodeName"].as_str().unwrap().to_string();
        assert_eq!(vec![node], cache_nodes(c, &ns, "demo"));
    });
    let _ = c.try_kubectl(&["delete", "mutatingwebhookconfiguration", "cistern-webhook-test"]);
    let _ = webhook.kill();
    let _ = webhook.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
