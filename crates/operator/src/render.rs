//! The Kubernetes objects that run one Dataset and its runtime, as a pure function of the
//! validated Dataset (`cistern render` prints them; the operator applies the same objects):
//! - a ConfigMap with the Dataset and runtime YAML that every pod reads (secret references
//!   only: the Secrets are mounted from the cluster into `/etc/cistern/secrets/<name>`);
//! - the master: a headless Service and a one-replica StatefulSet, with the runtime's
//!   `volumes` and `master.volumeMounts` (so a PVC can hold `namespace.meta-dir`, seed 000);
//! - the workers: a StatefulSet of `replicas` pods, one per node (pod anti-affinity), with the
//!   tiered store's volumes (hostPath, or emptyDir with `medium: Memory` for MEM);
//! - the FUSE client: a DaemonSet on nodes labelled `fluid.io/f-<ns>-<name>=true`;
//! - a PersistentVolume for the CSI driver `fuse.csi.fluid.io` and a PVC named after the
//!   Dataset, which pods mount.
//!
//! What a Runtime may ask of a node is bounded (see the README's security section): every
//! hostPath (tier paths, `namespace.meta-dir`, `volumes`) must lie under one of
//! [`RenderOptions::allowed_host_paths`] (the chart's `allowedHostPaths`); a worker mounts only
//! its Dataset's own directory of each tier; the FUSE pod mounts the node's run directory of
//! the Dataset (the workers' descriptor sockets), never the tiers. Components authenticate
//! with the Dataset's credentials Secret (`<name>-cistern-credentials`, made by the operator),
//! each pod mounting only its own role's files.

use crate::host_ports::Ports;
use cistern_api::juicefs::JuiceFsVolume;
use cistern_api::plan::{DatasetPlan, Medium};
use serde_json::{json, Value};
use std::path::Path;

/// Ports inside the pods.
pub const MASTER_PORT: u16 = 19998;
pub const WEB_PORT: u16 = 19999;
pub const WORKER_PORT: u16 = 29999;
/// The type of the FUSE mount the CSI plugin waits for.
pub const MOUNT_TYPE: &str = "fuse.cistern";
/// The size Fluid gives its PVs: the Dataset is not bounded by it.
pub(crate) const PV_CAPACITY: &str = "100Pi";
const CONFIG_DIR: &str = "/etc/cistern";
const SECRET_DIR: &str = "/etc/cistern/secrets";
/// Where a pod finds its role's credentials (`cistern_cli::credentials`).
pub const CREDENTIALS_DIR: &str = "/etc/cistern/credentials";
/// The run directory inside worker and FUSE pods: the node's `/run/cistern/<ns>-<name>`.
const RUN_DIR: &str = "/run/cistern";
/// Host paths a Runtime may use when the operator is given none.
/// Where the chart installs the operator unless told otherwise.
pub const DEFAULT_OPERATOR_NAMESPACE: &str = "cistern-system";
pub const DEFAULT_ALLOWED_HOST_PATHS: &[&str] = &["/dev/shm", "/mnt", "/var/lib/cistern", "/var/cache/cistern", "/cache", "/data"];

/// The Secret holding a Dataset's credentials.
pub fn credentials_secret(name: &str) -> String {
    format!("{name}-cistern-credentials")
}

#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The image holding the `cistern` binary.
    pub image: String,
    /// Where FUSE mounts go on the nodes: `<root>/<ns>/<name>/cistern-fuse`.
    pub mount_root: String,
    /// The node directories a Runtime's hostPaths may lie under.
    pub allowed_host_paths: Vec<std::path::PathBuf>,
    /// The operator's namespace: its pods may read the masters' web port (NetworkPolicy).
    pub operator_namespace: String,
    /// Where host-network Datasets' ports come from (the chart's `hostPortRange`).
    pub host_port_range: (u16, u16),
    /// The namespace whose pods scrape the masters' metrics (the chart's
    /// `monitoring.prometheusNamespace`); `None`: nobody outside is admitted to the web port.
    pub metrics_namespace: Option<String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            image: format!("ghcr.io/cistern-io/cistern:{}", env!("CARGO_PKG_VERSION")),
            mount_root: "/runtime-mnt/cistern".into(),
            allowed_host_paths: DEFAULT_ALLOWED_HOST_PATHS.iter().map(Into::into).collect(),
            operator_namespace: DEFAULT_OPERATOR_NAMESPACE.into(),
            host_port_range: crate::host_ports::DEFAULT_RANGE,
            metrics_namespace: None,
        }
    }
}

impl RenderOptions {
    /// Refuses a hostPath outside the allow-list, naming the field and the fix.
    fn check_host_path(&self, field: &str, path: &Path) -> Result<(), String> {
        let clean = path.is_absolute() && !path.components().any(|c| matches!(c, std::path::Component::ParentDir));
        if clean && self.allowed_host_paths.iter().any(|a| path.starts_with(a)) {
            return Ok(());
        }
        let allowed: Vec<String> = self.allowed_host_paths.iter().map(|p| p.display().to_string()).collect();
        Err(format!(
            "{field}: `{}` is not under a host path this cluster allows ({}); use one of them, or ask the cluster's administrator to add it to the chart's allowedHostPaths",
            path.display(),
            allowed.join(", ")
        ))
    }
}

/// Names shared by the objects of one Dataset.
pub struct Names<'a> {
    pub ns: &'a str,
    pub name: &'a str,
}

impl Names<'_> {
    fn id(&self) -> String {
        format!("{}-{}", self.ns, self.name)
    }
    pub fn labels(&self, role: &str) -> Value {
        json!({"app": "cistern", "release": cistern_api::names::label_value(self.name), "role": role, "fluid.io/dataset-id": self.dataset_id_label()})
    }
    /// `<ns>-<name>`, shortened to a label value.
    pub fn dataset_id_label(&self) -> String {
        cistern_api::names::label_value(&self.id())
    }
    pub fn meta(&self, name: String, role: &str) -> Value {
        json!({"name": name, "namespace": self.ns, "labels": self.labels(role)})
    }
    fn master_address(&self, ports: Ports) -> String {
        format!("{}-master.{}.svc:{}", self.name, self.ns, ports.master)
    }
}

/// Where the FUSE client mounts the Dataset on a node (the PV's `fluid_path`).
pub fn fluid_path(plan: &DatasetPlan, opts: &RenderOptions) -> String {
    format!("{}/{}/{}/cistern-fuse", opts.mount_root, plan.namespace, plan.name)
}

/// Every object, in the order they can be applied. A `juicefs://` Dataset runs on JuiceFS's
/// own engine ([`crate::render_juicefs`]).
pub fn render(plan: &DatasetPlan, opts: &RenderOptions) -> Result<Vec<Value>, String> {
    check_host_paths(plan, opts)?;
    let mut objects = match JuiceFsVolume::from_plan(plan, Some(&plan.meta_dir))? {
        Some(vol) => crate::render_juicefs::render(plan, &vol, opts),
        None => cistern_objects(plan, opts)?,
    };
    crate::pod_shape::shape(&mut objects, plan);
    Ok(objects)
}

fn cistern_objects(plan: &DatasetPlan, opts: &RenderOptions) -> Result<Vec<Value>, String> {
    let n = Names { ns: &plan.namespace, name: &plan.name };
    Ok(vec![
        config_map(plan, &n)?,
        master_service(&n, Ports::of_plan(plan)),
        master(plan, &n, opts),
        workers(plan, &n, opts),
        fuse(plan, &n, opts),
        persistent_volume(plan, &n, opts, MOUNT_TYPE),
        persistent_volume_claim(plan, &n),
        crate::network_policy::network_policy(&n, opts, Ports::of_plan(plan), &referencing(plan)),
    ])
}

/// Every hostPath the Dataset's pods would mount, against the allow-list.
fn check_host_paths(plan: &DatasetPlan, opts: &RenderOptions) -> Result<(), String> {
    let spec = plan.runtime.spec();
    for (i, tier) in plan.tiers.iter().enumerate() {
        for p in &tier.paths {
            opts.check_host_path(&format!("spec.tieredstore.levels[{i}].path"), p)?;
        }
    }
    if !covered(&plan.meta_dir, &spec.master.volume_mounts) {
        opts.check_host_path("spec.master.properties.namespace.meta-dir", &plan.meta_dir)?;
    }
    for (i, v) in spec.volumes.iter().enumerate() {
        if let Some(h) = &v.host_path {
            opts.check_host_path(&format!("spec.volumes[{i}].hostPath.path"), Path::new(&h.path))?;
        }
    }
    Ok(())
}

/// The credentials volume of a pod of `role`: the Dataset's Secret, only that role's files
/// (a client never gets the reference key or another role's key), readable by the owner only.
pub fn credentials_volume(n: &Names, role: cistern_rpc::tls::Role) -> Value {
    use cistern_rpc::tls::Role;
    let mut files = vec!["ca.pem".to_string(), format!("{}.pem", role.name()), format!("{}.key", role.name())];
    if role != Role::Client {
        files.push("ref.key".into());
    }
    let items: Vec<Value> = files.iter().map(|f| json!({"key": f, "path": f})).collect();
    json!({"name": "credentials", "secret": {"secretName": credentials_secret(n.name), "items": items, "defaultMode": 0o400}})
}

pub(crate) fn credentials_mount() -> Value {
    json!({"name": "credentials", "mountPath": CREDENTIALS_DIR, "readOnly": true})
}

/// The node's run directory of this Dataset, shared by its worker and FUSE pods there.
fn run_dir_volume(n: &Names) -> Value {
    json!({"name": "run-dir", "hostPath": {"path": format!("{RUN_DIR}/{}", n.id()), "type": "DirectoryOrCreate"}})
}

fn config_map(plan: &DatasetPlan, n: &Names) -> Result<Value, String> {
    config_map_of(&plan.dataset, &plan.runtime, n)
}

/// The ConfigMap `<name>-cistern-config` holding `dataset` and `runtime` as the components
/// read them (a reference copies it into its own namespace for sidecars).
pub(crate) fn config_map_of(dataset: &cistern_api::Dataset, runtime: &cistern_api::Runtime, n: &Names) -> Result<Value, String> {
    let mut docs = String::new();
    for object in [serde_json::to_value(dataset), runtime.to_value()] {
        let mut object = object.map_err(|e| e.to_string())?;
        // What the cluster adds is no input: status, and server-managed metadata.
        if let Some(o) = object.as_object_mut() {
            o.remove("status");
        }
        if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            m.retain(|k, _| matches!(k.as_str(), "name" | "labels"));
            m.insert("namespace".into(), json!(n.ns));
        }
        docs.push_str("---\n");
        docs.push_str(&serde_saphyr::to_string(&object).map_err(|e| e.to_string())?);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": n.meta(format!("{}-cistern-config", n.name), "config"),
        "data": {"dataset.yaml": docs},
    }))
}

fn master_service(n: &Names, ports: Ports) -> Value {
    let (rpc, web) = (ports.master, ports.web);
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": n.meta(format!("{}-master", n.name), "master"),
        "spec": {
            "clusterIP": "None",
            "selector": n.labels("master"),
            "ports": [
                {"name": "rpc", "port": rpc, "targetPort": rpc},
                {"name": "web", "port": web, "targetPort": web},
            ],
        },
    })
}

/// The names of the Secrets that `encryptOptions` refer to.
fn secret_names(plan: &DatasetPlan) -> Vec<String> {
    let spec = &plan.dataset.spec;
    let mut names: Vec<String> = spec
        .shared_encrypt_options
        .iter()
        .chain(spec.mounts.iter().flat_map(|m| &m.encrypt_options))
        .map(|e| e.value_from.secret_key_ref.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The container every component runs, with the config and Secrets mounted.
fn container(plan: &DatasetPlan, opts: &RenderOptions, role: &str, mut args: Vec<String>, extra_mounts: Vec<Value>) -> Value {
    // The FUSE client reads through the master and workers: no UFS credentials for it.
    let credentials = if role == "fuse" { Vec::new() } else { secret_names(plan) };
    let mut full = vec![role.to_string(), "-f".into(), format!("{CONFIG_DIR}/dataset.yaml")];
    if !credentials.is_empty() {
        full.extend(["--secret-dir".into(), SECRET_DIR.into()]);
    }
    full.append(&mut args);
    let mut mounts = vec![json!({"name": "cistern-config", "mountPath": CONFIG_DIR, "readOnly": true})];
    for s in credentials {
        mounts.push(json!({"name": format!("secret-{s}"), "mountPath": format!("{SECRET_DIR}/{s}"), "readOnly": true}));
    }
    mounts.extend(extra_mounts);
    json!({
        "name": role,
        "image": opts.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["cistern"],
        "args": full,
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "CISTERN_LOG", "value": "info"},
        ],
        "volumeMounts": mounts,
    })
}

/// The config volume and one volume per referenced Secret.
fn base_volumes(plan: &DatasetPlan, n: &Names) -> Vec<Value> {
    let mut v = vec![json!({"name": "cistern-config", "configMap": {"name": format!("{}-cistern-config", n.name)}})];
    for s in secret_names(plan) {
        v.push(json!({"name": format!("secret-{s}"), "secret": {"secretName": s}}));
    }
    v
}

/// The runtime's `volumes` that `mounts` refer to, and the mounts themselves.
fn runtime_volumes(plan: &DatasetPlan, mounts: &[k8s_openapi::api::core::v1::VolumeMount]) -> (Vec<Value>, Vec<Value>) {
    let spec = plan.runtime.spec();
    let volumes = spec
        .volumes
        .iter()
        .filter(|v| mounts.iter().any(|m| m.name == v.name))
        .map(|v| serde_json::to_value(v).expect("a Volume serializes"))
        .collect();
    let mounts = mounts.iter().map(|m| serde_json::to_value(m).expect("a VolumeMount serializes")).collect();
    (volumes, mounts)
}

fn add_env(container: &mut Value, env: &[k8s_openapi::api::core::v1::EnvVar]) {
    if let Some(list) = container["env"].as_array_mut() {
        list.extend(env.iter().map(|e| serde_json::to_value(e).expect("an EnvVar serializes")));
    }
}

fn pod_template(n: &Names, role: &str, containers: Vec<Value>, volumes: Vec<Value>, extra: Value) -> Value {
    let mut spec = json!({"containers": containers, "volumes": volumes});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    json!({"metadata": {"labels": n.labels(role)}, "spec": spec})
}

fn master(plan: &DatasetPlan, n: &Names, opts: &RenderOptions) -> Value {
    let spec = plan.runtime.spec();
    let ports = Ports::of_plan(plan);
    let (mut volumes, mut mounts) = runtime_volumes(plan, &spec.master.volume_mounts);
    // The metadata store must outlive the pod: on the runtime's volume when a mount covers
    // `namespace.meta-dir` (seed 000), else on the node's disk.
    if !covered(&plan.meta_dir, &spec.master.volume_mounts) {
        volumes.push(json!({"name": "meta", "hostPath": {"path": plan.meta_dir, "type": "DirectoryOrCreate"}}));
        mounts.push(json!({"name": "meta", "mountPath": plan.meta_dir}));
    }
    let args = vec![
        "--listen".into(),
        format!("0.0.0.0:{}", ports.master),
        "--web-addr".into(),
        format!("0.0.0.0:{}", ports.web),
        "--run-dir".into(),
        RUN_DIR.into(),
        "--mountpoint".into(),
        fluid_path(plan, opts),
        "--credentials".into(),
        CREDENTIALS_DIR.into(),
    ];
    mounts.push(credentials_mount());
    volumes.push(credentials_volume(n, cistern_rpc::tls::Role::Master));
    let mut c = container(plan, opts, "master", args, mounts);
    c["ports"] = json!([{"name": "rpc", "containerPort": ports.master}, {"name": "web", "containerPort": ports.web}]);
    add_env(&mut c, &spec.master.env);
    let mut all_volumes = base_volumes(plan, n);
    all_volumes.extend(volumes);
    let extra = json!({"nodeSelector": spec.master.node_selector});
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": n.meta(format!("{}-master", n.name), "master"),
        "spec": {
            "replicas": 1,
            "serviceName": format!("{}-master", n.name),
            "selector": {"matchLabels": n.labels("master")},
            "template": pod_template(n, "master", vec![c], all_volumes, extra),
        },
    })
}

fn covered(path: &Path, mounts: &[k8s_openapi::api::core::v1::VolumeMount]) -> bool {
    mounts.iter().any(|m| path.starts_with(&m.mount_path))
}

/// The namespaces the Dataset lets reference it (see `crate::reference::ALLOW_REFERENCES`).
fn referencing(plan: &DatasetPlan) -> Vec<String> {
    let annotations = plan.dataset.metadata.annotations.as_ref();
    let list = annotations.and_then(|a| a.get(crate::reference::ALLOW_REFERENCES)).map(String::as_str).unwrap_or_default();
    list.split(',').map(str::trim).filter(|n| !n.is_empty() && *n != plan.namespace).map(str::to_string).collect()
}

/// The `sizeLimit` of an `emptyDir` tier of `quota` bytes. The kubelet evicts a pod whose
/// emptyDir passes its limit. The worker keeps data, checksum records and evicted files still
/// held open within the quota itself (the last needs file leases; where they are disabled such
/// files count as freed at eviction), so the limit leaves an eighth of the quota, and at least
/// 64 MiB, of headroom for that case and for directories.
pub fn empty_dir_limit(quota: u64) -> u64 {
    quota + (quota / 8).max(64 << 20)
}

/// The tiered store's volumes and mounts, at the same paths inside the pod as on the node. A
/// hostPath tier is mounted as this Dataset's own directory of it
/// (`<path>/<engine_dir>/<ns>-<name>`, where its workers keep their caches), so a worker
/// cannot read or rewrite another Dataset's cache on the same node.
pub(crate) fn tier_volumes(plan: &DatasetPlan, read_only: bool, engine_dir: &str) -> (Vec<Value>, Vec<Value>) {
    let (mut volumes, mut mounts) = (Vec::new(), Vec::new());
    let levels = &plan.runtime.spec().tieredstore.levels;
    for (i, tier) in plan.tiers.iter().enumerate() {
        let volume_type = levels.get(i).and_then(|l| l.volume_type.clone()).unwrap_or_else(|| "hostPath".into());
        let volume_source = levels.get(i).and_then(|l| l.volume_source.clone()).unwrap_or_default();
        for (j, (path, quota)) in tier.paths.iter().zip(&tier.quotas).enumerate() {
            let name = format!("tier-{i}-{j}");
            let own = path.join(engine_dir).join(format!("{}-{}", plan.namespace, plan.name));
            let (source, mount_path) = if let Some(claim) = volume_source.get("persistentVolumeClaim").filter(|c| c.is_object()) {
                // A PVC-backed tier: the claim, at the tier's path (each worker needs its own
                // claim unless it is ReadWriteMany; the user's to choose).
                (json!({"persistentVolumeClaim": claim}), path.clone())
            } else if volume_type == "emptyDir" {
                let given = &volume_source["emptyDir"];
                let medium = given["medium"].as_str().unwrap_or(if tier.medium == Medium::Mem { "Memory" } else { "" });
                // The larger of the user's limit and what the tier's own accounting needs, so
                // the kubelet never evicts a worker whose cache is full.
                let ours = empty_dir_limit(*quota);
                let theirs = given["sizeLimit"].as_str().and_then(|q| cistern_api::quantity::parse_bytes(q, 1).ok()).unwrap_or(0);
                (json!({"emptyDir": {"medium": medium, "sizeLimit": ours.max(theirs).to_string()}}), path.clone())
            } else {
                (json!({"hostPath": {"path": own, "type": "DirectoryOrCreate"}}), own)
            };
            let mut volume = json!({"name": name});
            if let (Some(v), Some(s)) = (volume.as_object_mut(), source.as_object()) {
                v.extend(s.clone());
            }
            volumes.push(volume);
            mounts.push(json!({"name": name, "mountPath": mount_path, "readOnly": read_only}));
        }
    }
    (volumes, mounts)
}

fn workers(plan: &DatasetPlan, n: &Names, opts: &RenderOptions) -> Value {
    let spec = plan.runtime.spec();
    let ports = Ports::of_plan(plan);
    let (tier_vols, tier_mounts) = tier_volumes(plan, false, "cistern");
    let (rt_vols, mut mounts) = runtime_volumes(plan, &spec.worker.volume_mounts);
    mounts.extend(tier_mounts);
    let args = vec![
        "--master".into(),
        n.master_address(Ports::of_plan(plan)),
        "--listen".into(),
        format!("0.0.0.0:{}", ports.worker),
        "--advertise".into(),
        format!("$(POD_IP):{}", ports.worker),
        "--run-dir".into(),
        RUN_DIR.into(),
        "--credentials".into(),
        CREDENTIALS_DIR.into(),
    ];
    mounts.push(credentials_mount());
    mounts.push(json!({"name": "run-dir", "mountPath": RUN_DIR}));
    let mut c = container(plan, opts, "worker", args, mounts);
    c["ports"] = json!([{"name": "rpc", "containerPort": ports.worker}]);
    if let Some(env) = c["env"].as_array_mut() {
        // The StatefulSet ordinal is the worker id placement ranks (crates/client/src/placement.rs).
        env.push(json!({"name": "CISTERN_WORKER_INDEX", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}}));
    }
    add_env(&mut c, &spec.worker.env);
    let mut volumes = base_volumes(plan, n);
    volumes.extend(rt_vols);
    volumes.extend(tier_vols);
    volumes.push(credentials_volume(n, cistern_rpc::tls::Role::Worker));
    volumes.push(run_dir_volume(n));
    worker_set(plan, n, c, volumes)
}

/// The workers' StatefulSet around their container: `replicas` pods, one per node.
pub(crate) fn worker_set(plan: &DatasetPlan, n: &Names, container: Value, volumes: Vec<Value>) -> Value {
    let extra = json!({
        "nodeSelector": plan.runtime.spec().worker.node_selector,
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": n.labels("worker")}, "topologyKey": "kubernetes.io/hostname"}
        ]}},
    });
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": n.meta(format!("{}-worker", n.name), "worker"),
        "spec": {
            "replicas": plan.replicas,
            "serviceName": format!("{}-worker", n.name),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": n.labels("worker")},
            "template": pod_template(n, "worker", vec![container], volumes, extra),
        },
    })
}

fn fuse(plan: &DatasetPlan, n: &Names, opts: &RenderOptions) -> Value {
    let spec = plan.runtime.spec();
    let mount_dir = format!("{}/{}/{}", opts.mount_root, n.ns, n.name);
    // No tier is mounted here: the worker on this node hands cache files over as descriptors
    // through its socket in the shared run directory (short-circuit reads, passthrough).
    let (rt_vols, mut mounts) = runtime_volumes(plan, &spec.fuse.volume_mounts);
    mounts.push(json!({"name": "fuse-mount", "mountPath": mount_dir, "mountPropagation": "Bidirectional"}));
    mounts.push(json!({"name": "run-dir", "mountPath": RUN_DIR}));
    mounts.push(credentials_mount());
    let args = vec![
        "--master".into(),
        n.master_address(Ports::of_plan(plan)),
        "--mountpoint".into(),
        fluid_path(plan, opts),
        "--run-dir".into(),
        RUN_DIR.into(),
        "--credentials".into(),
        CREDENTIALS_DIR.into(),
    ];
    let mut c = container(plan, opts, "fuse", args, mounts);
    // Privileged: Kubernetes allows Bidirectional mount propagation (how the FUSE mount
    // reaches the application's pods) only in privileged containers.
    c["securityContext"] = json!({"privileged": true});
    let mut volumes = base_volumes(plan, n);
    volumes.retain(|v| !v["name"].as_str().is_some_and(|name| name.starts_with("secret-")));
    volumes.extend(rt_vols);
    volumes.push(json!({"name": "fuse-mount", "hostPath": {"path": mount_dir, "type": "DirectoryOrCreate"}}));
    volumes.push(run_dir_volume(n));
    volumes.push(credentials_volume(n, cistern_rpc::tls::Role::Client));
    fuse_set(plan, n, c, volumes)
}

/// The FUSE DaemonSet around its container: on the nodes the CSI plugin labelled.
pub(crate) fn fuse_set(plan: &DatasetPlan, n: &Names, container: Value, volumes: Vec<Value>) -> Value {
    let mut selector = plan.runtime.spec().fuse.node_selector.clone();
    selector.insert(cistern_csi::fuse_label(n.ns, n.name), "true".into());
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": n.meta(format!("{}-fuse", n.name), "fuse"),
        "spec": {
            "selector": {"matchLabels": n.labels("fuse")},
            "template": pod_template(n, "fuse", vec![container], volumes, json!({"nodeSelector": selector})),
        },
    })
}

pub(crate) fn access_modes(plan: &DatasetPlan) -> Vec<String> {
    let modes = &plan.dataset.spec.access_modes;
    if modes.is_empty() {
        vec!["ReadOnlyMany".into()]
    } else {
        modes.clone()
    }
}

fn pv_label(n: &Names) -> String {
    cistern_api::names::locality_label(n.ns, n.name)
}

pub(crate) fn persistent_volume(plan: &DatasetPlan, n: &Names, opts: &RenderOptions, mount_type: &str) -> Value {
    let policy = plan.runtime.spec().fuse.clean_policy.clone().unwrap_or_else(|| "OnDemand".into());
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": n.id(), "labels": {pv_label(n): "true", "fluid.io/dataset-id": cistern_api::names::label_value(&n.id())}},
        "spec": {
            "accessModes": access_modes(plan),
            "capacity": {"storage": PV_CAPACITY},
            "storageClassName": "fluid",
            "persistentVolumeReclaimPolicy": "Retain",
            "csi": {
                "driver": cistern_csi::DRIVER_NAME,
                "volumeHandle": n.id(),
                "volumeAttributes": {
                    "fluid_path": fluid_path(plan, opts),
                    "mount_type": mount_type,
                    "runtime_name": n.name,
                    "runtime_namespace": n.ns,
                    "fuse_clean_policy": policy,
                },
            },
        },
    })
}

pub(crate) fn persistent_volume_claim(plan: &DatasetPlan, n: &Names) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": n.meta(n.name.to_string(), "volume"),
        "spec": {
            "accessModes": access_modes(plan),
            "resources": {"requests": {"storage": PV_CAPACITY}},
            "storageClassName": "fluid",
            "volumeName": n.id(),
            "selector": {"matchLabels": {pv_label(n): "true"}},
        },
    })
}
