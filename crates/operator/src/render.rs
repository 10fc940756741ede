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
use cistern_api::plan::DatasetPlan;
use crate::objects::{env_field, env_value, host_path_volume, match_labels, mount, string_map, Object};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, KeyToPath, PodAffinityTerm,
    PodAntiAffinity, PodSpec, PodTemplateSpec, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use std::path::Path;

/// Ports inside the pods.
pub const MASTER_PORT: u16 = 19998;
pub const WEB_PORT: u16 = 19999;
pub const WORKER_PORT: u16 = 29999;
/// The type of the FUSE mount the CSI plugin waits for.
pub const MOUNT_TYPE: &str = "fuse.cistern";
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
    pub fn labels(&self, role: &str) -> BTreeMap<String, String> {
        let release = cistern_api::names::label_value(self.name);
        let id = self.dataset_id_label();
        string_map([("app", "cistern"), ("release", release.as_str()), ("role", role), ("fluid.io/dataset-id", id.as_str())])
    }
    /// `<ns>-<name>`, shortened to a label value.
    pub fn dataset_id_label(&self) -> String {
        cistern_api::names::label_value(&self.id())
    }
    pub fn meta(&self, name: String, role: &str) -> ObjectMeta {
        ObjectMeta { name: Some(name), namespace: Some(self.ns.to_string()), labels: Some(self.labels(role)), ..Default::default() }
    }
    fn master_address(&self, ports: Ports) -> String {
        format!("{}-master.{}.svc:{}", self.name, self.ns, ports.master)
    }

    /// What workers and FUSE clients dial: the one master, or every master by its stable name
    /// (any answers; a client moves on from one that fails).
    fn master_addresses(&self, plan: &DatasetPlan, ports: Ports) -> String {
        match plan.masters {
            0 | 1 => self.master_address(ports),
            n => crate::masters::addresses(self, n, ports.master).join(","),
        }
    }
}

/// Where the FUSE client mounts the Dataset on a node (the PV's `fluid_path`).
pub fn fluid_path(plan: &DatasetPlan, opts: &RenderOptions) -> String {
    format!("{}/{}/{}/cistern-fuse", opts.mount_root, plan.namespace, plan.name)
}

/// Every object, in the order they can be applied. A `juicefs://` Dataset runs on JuiceFS's
/// own engine ([`crate::render_juicefs`]).
pub fn render(plan: &DatasetPlan, opts: &RenderOptions) -> Result<Vec<Object>, String> {
    check_host_paths(plan, opts)?;
    crate::run_as::user(plan)?;
    crate::cache_cleanup::policy(&plan.runtime)?;
    let mut objects = match JuiceFsVolume::from_plan(plan, Some(&plan.meta_dir))? {
        Some(vol) => crate::render_juicefs::render(plan, &vol, opts)?,
        None => cistern_objects(plan, opts)?,
    };
    crate::pod_shape::shape(&mut objects, plan);
    Ok(objects)
}

fn cistern_objects(plan: &DatasetPlan, opts: &RenderOptions) -> Result<Vec<Object>, String> {
    let n = Names { ns: &plan.namespace, name: &plan.name };
    let mut objects = vec![
        config_map(plan, &n)?.into(),
        master_service(plan, &n, Ports::of_plan(plan)).into(),
        master(plan, &n, opts)?.into(),
        workers(plan, &n, opts)?.into(),
        fuse(plan, &n, opts).into(),
        crate::volume::persistent_volume(plan, &n, opts, MOUNT_TYPE).into(),
        crate::volume::persistent_volume_claim(plan, &n).into(),
        crate::network_policy::network_policy(&n, opts, Ports::of_plan(plan), &referencing(plan)).into(),
    ];
    if plan.masters > 1 {
        objects.push(crate::masters::disruption_budget(plan, &n));
    }
    Ok(objects)
}

/// Every hostPath the Dataset's pods would mount, against the allow-list.
fn check_host_paths(plan: &DatasetPlan, opts: &RenderOptions) -> Result<(), String> {
    let spec = plan.runtime.spec();
    for (i, tier) in plan.tiers.iter().enumerate() {
        for p in &tier.paths {
            opts.check_host_path(&format!("spec.tieredstore.levels[{i}].path"), p)?;
        }
    }
    if !covered(&plan.meta_dir, &spec.master.volume_mounts) && plan.masters <= 1 {
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
pub fn credentials_volume(n: &Names, role: cistern_rpc::tls::Role) -> Volume {
    use cistern_rpc::tls::Role;
    let mut files = vec!["ca.pem".to_string(), format!("{}.pem", role.name()), format!("{}.key", role.name())];
    if role != Role::Client {
        files.push("ref.key".into());
    }
    let items = files.into_iter().map(|f| KeyToPath { key: f.clone(), path: f, ..Default::default() }).collect();
    Volume {
        name: "credentials".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(credentials_secret(n.name)),
            items: Some(items),
            default_mode: Some(0o400),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn credentials_mount() -> VolumeMount {
    mount("credentials", CREDENTIALS_DIR, true)
}

/// The node's run directory of this Dataset, shared by its worker and FUSE pods there.
fn run_dir_volume(n: &Names) -> Volume {
    host_path_volume("run-dir", format!("{RUN_DIR}/{}", n.id()))
}

fn config_map(plan: &DatasetPlan, n: &Names) -> Result<ConfigMap, String> {
    config_map_of(&plan.dataset, &plan.runtime, n)
}

/// The ConfigMap `<name>-cistern-config` holding `dataset` and `runtime` as the components
/// read them (a reference copies it into its own namespace for sidecars).
pub(crate) fn config_map_of(dataset: &cistern_api::Dataset, runtime: &cistern_api::Runtime, n: &Names) -> Result<ConfigMap, String> {
    let mut docs = String::new();
    for object in [serde_json::to_value(dataset), runtime.to_value()] {
        let mut object = object.map_err(|e| e.to_string())?;
        // What the cluster adds is no input: status, and server-managed metadata.
        if let Some(o) = object.as_object_mut() {
            o.remove("status");
        }
        if let Some(m) = object.get_mut("metadata").and_then(serde_json::Value::as_object_mut) {
            m.retain(|k, _| matches!(k.as_str(), "name" | "labels"));
            m.insert("namespace".into(), n.ns.into());
        }
        docs.push_str("---\n");
        docs.push_str(&serde_saphyr::to_string(&object).map_err(|e| e.to_string())?);
    }
    Ok(ConfigMap {
        metadata: n.meta(format!("{}-cistern-config", n.name), "config"),
        data: Some(BTreeMap::from([("dataset.yaml".to_string(), docs)])),
        ..Default::default()
    })
}

fn service_port(name: &str, port: u16) -> ServicePort {
    ServicePort { name: Some(name.into()), port: port.into(), target_port: Some(IntOrString::Int(port.into())), ..Default::default() }
}

fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort { name: Some(name.into()), container_port: port.into(), ..Default::default() }
}

fn master_service(plan: &DatasetPlan, n: &Names, ports: Ports) -> Service {
    Service {
        metadata: n.meta(format!("{}-master", n.name), "master"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // Masters find each other by name before any is ready.
            publish_not_ready_addresses: (plan.masters > 1).then_some(true),
            selector: Some(n.labels("master")),
            ports: Some(vec![service_port("rpc", ports.master), service_port("web", ports.web)]),
            ..Default::default()
        }),
        ..Default::default()
    }
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
fn container(plan: &DatasetPlan, opts: &RenderOptions, role: &str, mut args: Vec<String>, extra_mounts: Vec<VolumeMount>) -> Container {
    // The FUSE client reads through the master and workers: no UFS credentials for it.
    let credentials = if role == "fuse" { Vec::new() } else { secret_names(plan) };
    let mut full = vec![role.to_string(), "-f".into(), format!("{CONFIG_DIR}/dataset.yaml")];
    if !credentials.is_empty() {
        full.extend(["--secret-dir".into(), SECRET_DIR.into()]);
    }
    full.append(&mut args);
    let mut mounts = vec![mount("cistern-config", CONFIG_DIR, true)];
    for s in credentials {
        mounts.push(mount(&format!("secret-{s}"), format!("{SECRET_DIR}/{s}"), true));
    }
    mounts.extend(extra_mounts);
    Container {
        name: role.into(),
        image: Some(opts.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["cistern".into()]),
        args: Some(full),
        env: Some(vec![env_field("NODE_NAME", "spec.nodeName"), env_field("POD_IP", "status.podIP"), env_value("CISTERN_LOG", "info")]),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

/// The config volume and one volume per referenced Secret.
fn base_volumes(plan: &DatasetPlan, n: &Names) -> Vec<Volume> {
    let config = ConfigMapVolumeSource { name: format!("{}-cistern-config", n.name), ..Default::default() };
    let mut v = vec![Volume { name: "cistern-config".into(), config_map: Some(config), ..Default::default() }];
    for s in secret_names(plan) {
        let secret = SecretVolumeSource { secret_name: Some(s.clone()), ..Default::default() };
        v.push(Volume { name: format!("secret-{s}"), secret: Some(secret), ..Default::default() });
    }
    v
}

/// The runtime's `volumes` that `mounts` refer to, and the mounts themselves.
fn runtime_volumes(plan: &DatasetPlan, mounts: &[VolumeMount]) -> (Vec<Volume>, Vec<VolumeMount>) {
    let spec = plan.runtime.spec();
    let volumes = spec.volumes.iter().filter(|v| mounts.iter().any(|m| m.name == v.name)).cloned().collect();
    (volumes, mounts.to_vec())
}

fn add_env(container: &mut Container, env: &[EnvVar]) {
    container.env.get_or_insert_with(Vec::new).extend(env.iter().cloned());
}

/// A pod template of `role` around `containers`; `spec` gives the rest of the pod.
pub(crate) fn pod_template(n: &Names, role: &str, containers: Vec<Container>, volumes: Vec<Volume>, spec: PodSpec) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(n.labels(role)), ..Default::default() }),
        spec: Some(PodSpec { containers, volumes: Some(volumes), ..spec }),
    }
}

fn selector(map: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then(|| map.clone())
}

fn master(plan: &DatasetPlan, n: &Names, opts: &RenderOptions) -> Result<StatefulSet, String> {
    let spec = plan.runtime.spec();
    let ports = Ports::of_plan(plan);
    let (mut volumes, mut mounts) = runtime_volumes(plan, &spec.master.volume_mounts);
    let mut owned = Vec::new();
    let mut claims = None;
    // The metadata store must outlive the pod: with several masters, on a claim of each
    // master's own (crate::masters); else on the runtime's volume when a mount covers
    // `namespace.meta-dir` (seed 000), else on the node's disk.
    if plan.masters > 1 {
        if covered(&plan.meta_dir, &spec.master.volume_mounts) {
            return Err(format!(
                "spec.master.volumeMounts: a volume at namespace.meta-dir ({}) serves one master, and spec.master.replicas is {}; remove it: each master gets its own claim `{}-{}-master-N` ({} sizes them)",
                plan.meta_dir.display(),
                plan.masters,
                crate::masters::META_VOLUME,
                n.name,
                crate::masters::META_SIZE
            ));
        }
        claims = Some(vec![crate::masters::claim_template(plan)?]);
        mounts.push(mount(crate::masters::META_VOLUME, plan.meta_dir.display().to_string(), false));
    } else if !covered(&plan.meta_dir, &spec.master.volume_mounts) {
        volumes.push(host_path_volume("meta", plan.meta_dir.display().to_string()));
        mounts.push(mount("meta", plan.meta_dir.display().to_string(), false));
    }
    owned.push(plan.meta_dir.display().to_string());
    // The master's own run directory (pid and status files): the pod's, whoever it runs as.
    volumes.push(Volume { name: "run-dir".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() });
    mounts.push(mount("run-dir", RUN_DIR, false));
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
    let mut args = args;
    if plan.masters > 1 {
        // Each master knows the others by their stable names; its own id is its ordinal.
        args.extend(["--masters".into(), crate::masters::addresses(n, plan.masters, ports.master).join(",")]);
    }
    mounts.push(credentials_mount());
    volumes.push(credentials_volume(n, cistern_rpc::tls::Role::Master));
    let mut c = container(plan, opts, "master", args, mounts);
    c.ports = Some(vec![container_port("rpc", ports.master), container_port("web", ports.web)]);
    if plan.masters > 1 {
        add_env(&mut c, &[env_field("CISTERN_MASTER_ID", "metadata.labels['apps.kubernetes.io/pod-index']")]);
    }
    add_env(&mut c, &spec.master.env);
    let mut all_volumes = base_volumes(plan, n);
    all_volumes.extend(volumes);
    let pod = PodSpec { node_selector: selector(&spec.master.node_selector), ..Default::default() };
    let mut template = pod_template(n, "master", vec![c], all_volumes, pod);
    crate::run_as::apply(&mut template, plan, opts, &owned);
    Ok(StatefulSet {
        metadata: n.meta(format!("{}-master", n.name), "master"),
        spec: StatefulSetSpec {
            replicas: Some(plan.masters.max(1) as i32),
            service_name: Some(format!("{}-master", n.name)),
            selector: match_labels(n.labels("master")),
            template,
            volume_claim_templates: claims,
            // A quorum forms from masters that start together, not one after another's readiness.
            pod_management_policy: (plan.masters > 1).then(|| "Parallel".to_string()),
            ..Default::default()
        },
        ..Default::default()
    })
}

fn covered(path: &Path, mounts: &[VolumeMount]) -> bool {
    mounts.iter().any(|m| path.starts_with(&m.mount_path))
}

/// The namespaces the Dataset lets reference it (see `crate::reference::ALLOW_REFERENCES`).
fn referencing(plan: &DatasetPlan) -> Vec<String> {
    let annotations = plan.dataset.metadata.annotations.as_ref();
    let list = annotations.and_then(|a| a.get(crate::reference::ALLOW_REFERENCES)).map(String::as_str).unwrap_or_default();
    list.split(',').map(str::trim).filter(|n| !n.is_empty() && *n != plan.namespace).map(str::to_string).collect()
}

fn workers(plan: &DatasetPlan, n: &Names, opts: &RenderOptions) -> Result<StatefulSet, String> {
    let spec = plan.runtime.spec();
    let ports = Ports::of_plan(plan);
    let (tier_vols, tier_mounts) = crate::volume::tier_volumes(plan, false, "cistern")?;
    let (rt_vols, mut mounts) = runtime_volumes(plan, &spec.worker.volume_mounts);
    // What the worker writes: its tiers and the node's run directory (its descriptor socket).
    let mut owned: Vec<String> = tier_mounts.iter().map(|m| m.mount_path.clone()).collect();
    owned.push(RUN_DIR.into());
    mounts.extend(tier_mounts);
    let args = vec![
        "--master".into(),
        n.master_addresses(plan, Ports::of_plan(plan)),
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
    mounts.push(mount("run-dir", RUN_DIR, false));
    let mut c = container(plan, opts, "worker", args, mounts);
    c.ports = Some(vec![container_port("rpc", ports.worker)]);
    // The StatefulSet ordinal names the worker's descriptor socket (its identity for placement
    // is kept in its first persistent tier: crates/worker/src/store/identity.rs).
    add_env(&mut c, &[env_field("CISTERN_WORKER_INDEX", "metadata.labels['apps.kubernetes.io/pod-index']")]);
    add_env(&mut c, &spec.worker.env);
    let mut volumes = base_volumes(plan, n);
    volumes.extend(rt_vols);
    volumes.extend(tier_vols);
    volumes.push(credentials_volume(n, cistern_rpc::tls::Role::Worker));
    volumes.push(run_dir_volume(n));
    let mut set = worker_set(plan, n, c, volumes);
    crate::run_as::apply(&mut set.spec.template, plan, opts, &owned);
    Ok(set)
}

/// The workers' StatefulSet around their container: `replicas` pods, one per node.
pub(crate) fn worker_set(plan: &DatasetPlan, n: &Names, container: Container, volumes: Vec<Volume>) -> StatefulSet {
    let one_per_node = PodAffinityTerm {
        label_selector: Some(match_labels(n.labels("worker"))),
        topology_key: "kubernetes.io/hostname".into(),
        ..Default::default()
    };
    let pod = PodSpec {
        node_selector: selector(&plan.runtime.spec().worker.node_selector),
        affinity: Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity { required_during_scheduling_ignored_during_execution: Some(vec![one_per_node]), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    };
    StatefulSet {
        metadata: n.meta(format!("{}-worker", n.name), "worker"),
        spec: StatefulSetSpec {
            replicas: Some(plan.replicas as i32),
            service_name: Some(format!("{}-worker", n.name)),
            pod_management_policy: Some("Parallel".into()),
            selector: match_labels(n.labels("worker")),
            template: pod_template(n, "worker", vec![container], volumes, pod),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn fuse(plan: &DatasetPlan, n: &Names, opts: &RenderOptions) -> DaemonSet {
    let spec = plan.runtime.spec();
    let mount_dir = format!("{}/{}/{}", opts.mount_root, n.ns, n.name);
    // No tier is mounted here: the worker on this node hands cache files over as descriptors
    // through its socket in the shared run directory (short-circuit reads, passthrough).
    let (rt_vols, mut mounts) = runtime_volumes(plan, &spec.fuse.volume_mounts);
    mounts.push(VolumeMount { mount_propagation: Some("Bidirectional".into()), ..mount("fuse-mount", mount_dir.clone(), false) });
    mounts.push(mount("run-dir", RUN_DIR, false));
    mounts.push(credentials_mount());
    let args = vec![
        "--master".into(),
        n.master_addresses(plan, Ports::of_plan(plan)),
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
    c.security_context = Some(SecurityContext { privileged: Some(true), ..Default::default() });
    add_env(&mut c, &spec.fuse.env);
    let mut volumes = base_volumes(plan, n);
    volumes.retain(|v| !v.name.starts_with("secret-"));
    volumes.extend(rt_vols);
    volumes.push(host_path_volume("fuse-mount", mount_dir));
    volumes.push(run_dir_volume(n));
    volumes.push(credentials_volume(n, cistern_rpc::tls::Role::Client));
    fuse_set(plan, n, c, volumes)
}

/// The FUSE DaemonSet around its container: on the nodes the CSI plugin labelled.
pub(crate) fn fuse_set(plan: &DatasetPlan, n: &Names, container: Container, volumes: Vec<Volume>) -> DaemonSet {
    let mut node_selector = plan.runtime.spec().fuse.node_selector.clone();
    node_selector.insert(cistern_csi::fuse_label(n.ns, n.name), "true".into());
    let pod = PodSpec { node_selector: Some(node_selector), ..Default::default() };
    DaemonSet {
        metadata: n.meta(format!("{}-fuse", n.name), "fuse"),
        spec: DaemonSetSpec {
            selector: match_labels(n.labels("fuse")),
            template: pod_template(n, "fuse", vec![container], volumes, pod),
            ..Default::default()
        },
        ..Default::default()
    }
}
