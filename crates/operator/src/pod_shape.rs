//! The fields of a Dataset and its runtime that shape pods, applied to the rendered
//! StatefulSets and DaemonSet after [`crate::render`] built them (for every engine alike):
//!
//! | field | where it goes |
//! |---|---|
//! | `<component>.resources` | the component's container; a worker's memory limit and request grow by its MEM tiers' quotas (an emptyDir of medium Memory is charged to the pod's memory cgroup) |
//! | `<component>.tolerations`, Dataset `tolerations` | the pod's tolerations (the Dataset's go to master and workers, where the cache lives) |
//! | Dataset `nodeAffinity.required` | the workers' required node affinity (where the cache may live) |
//! | `podMetadata` (runtime-wide and per component), deprecated `labels` | the pod template's labels and annotations; the selector labels cannot be overridden |
//! | `imagePullSecrets` (runtime-wide and per component) | the pod's `imagePullSecrets` |
//! | `networkMode` / Jindo's `networkmode` | `HostNetwork`: `hostNetwork: true` with `dnsPolicy: ClusterFirstWithHostNet`; anything else: the pod network |
//!
//! Fields that would shape a pod but that Cistern cannot honour yet are reported by
//! [`unhonoured`], so the operator publishes a Warning Event instead of dropping them in silence.

use crate::objects::Object;
use cistern_api::{ComponentSpec, DatasetPlan, FuseSpec, Medium, Runtime};
use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, NodeAffinity, NodeSelector, PodAffinityTerm, PodAntiAffinity, PodTemplateSpec, ResourceRequirements,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use std::collections::BTreeMap;

/// What one component's pods get.
struct Shape {
    resources: Option<ResourceRequirements>,
    tolerations: Vec<Toleration>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    pull_secrets: Vec<LocalObjectReference>,
    network_mode: Option<String>,
    required_nodes: Option<NodeSelector>,
}

fn component(plan: &DatasetPlan, c: &ComponentSpec, dataset_placed: bool) -> Shape {
    let spec = plan.runtime.spec();
    let mut labels = spec.pod_metadata.labels.clone();
    labels.extend(c.pod_metadata.labels.clone());
    let mut annotations = spec.pod_metadata.annotations.clone();
    annotations.extend(c.pod_metadata.annotations.clone());
    let mut tolerations = c.tolerations.clone();
    if dataset_placed {
        tolerations.extend(plan.dataset.spec.tolerations.iter().cloned());
    }
    Shape {
        resources: c.resources.clone(),
        tolerations,
        labels,
        annotations,
        pull_secrets: spec.image_pull_secrets.iter().chain(&c.image_pull_secrets).cloned().collect(),
        network_mode: c.network_mode.clone().or(spec.network_mode.clone()),
        required_nodes: None,
    }
}

fn fuse(plan: &DatasetPlan, f: &FuseSpec) -> Shape {
    let spec = plan.runtime.spec();
    let mut labels = spec.pod_metadata.labels.clone();
    labels.extend(f.pod_metadata.labels.clone());
    let mut annotations = spec.pod_metadata.annotations.clone();
    annotations.extend(f.pod_metadata.annotations.clone());
    Shape {
        resources: f.resources.clone(),
        tolerations: f.tolerations.clone(),
        labels,
        annotations,
        pull_secrets: spec.image_pull_secrets.iter().chain(&f.image_pull_secrets).cloned().collect(),
        network_mode: f.network_mode.clone().or(spec.network_mode.clone()),
        required_nodes: None,
    }
}

/// Bytes of the MEM tiers one worker holds.
fn mem_quota(plan: &DatasetPlan) -> u64 {
    plan.tiers.iter().filter(|t| t.medium == Medium::Mem).map(|t| t.quota()).sum()
}

/// `limit` grown by `extra` bytes (a Kubernetes quantity in, a plain byte count out).
fn grown(limit: &Quantity, extra: u64) -> Option<Quantity> {
    let bytes = cistern_api::quantity::parse_bytes(&limit.0, 1).ok()?;
    Some(Quantity((bytes.saturating_add(extra)).to_string()))
}

/// Applies the Dataset's and runtime's pod-shaping fields to the rendered workloads.
pub fn shape(objects: &mut [Object], plan: &DatasetPlan) {
    let spec = plan.runtime.spec();
    for object in objects.iter_mut() {
        let role = object.meta().labels.as_ref().and_then(|l| l.get("role")).cloned().unwrap_or_default();
        let Some(template) = object.pod_template_mut() else { continue };
        let mut shape = match role.as_str() {
            "master" => component(plan, &spec.master, true),
            "worker" => {
                let mut s = component(plan, &spec.worker, true);
                s.required_nodes = plan.dataset.spec.node_affinity.as_ref().and_then(|a| a.required.clone());
                // The MEM tiers are charged to the worker's memory: its limit must hold them.
                if let Some(res) = s.resources.as_mut() {
                    let mem = mem_quota(plan);
                    for list in [res.limits.as_mut(), res.requests.as_mut()].into_iter().flatten() {
                        if let Some(q) = list.get("memory").and_then(|q| grown(q, mem)) {
                            list.insert("memory".into(), q);
                        }
                    }
                }
                s
            }
            "fuse" => fuse(plan, &spec.fuse),
            _ => continue,
        };
        apply(template, &mut shape);
        if role == "worker" {
            place(template, plan);
        }
    }
}

fn apply(template: &mut PodTemplateSpec, shape: &mut Shape) {
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in &shape.labels {
        // The selector's labels stay: a pod that does not match its set is orphaned.
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if !shape.annotations.is_empty() {
        meta.annotations.get_or_insert_with(BTreeMap::new).extend(shape.annotations.clone());
    }
    let Some(pod) = template.spec.as_mut() else { return };
    if let Some(r) = &shape.resources {
        for c in &mut pod.containers {
            c.resources = Some(r.clone());
        }
    }
    if !shape.tolerations.is_empty() {
        pod.tolerations = Some(shape.tolerations.clone());
    }
    if !shape.pull_secrets.is_empty() {
        pod.image_pull_secrets = Some(shape.pull_secrets.clone());
    }
    if shape.network_mode.as_deref() == Some("HostNetwork") {
        pod.host_network = Some(true);
        pod.dns_policy = Some("ClusterFirstWithHostNet".into());
    }
    if let Some(required) = shape.required_nodes.take() {
        let affinity = pod.affinity.get_or_insert_with(Affinity::default);
        affinity.node_affinity.get_or_insert_with(NodeAffinity::default).required_during_scheduling_ignored_during_execution = Some(required);
    }
}

/// The label that says how a Dataset's workers share nodes.
pub const PLACEMENT_LABEL: &str = "fluid.io/dataset-placement";

/// Dataset `placement`: `Exclusive` workers keep their nodes to themselves (no other
/// Dataset's worker beside them, and none lands beside them); `Shared` (and unset: Cistern's
/// workers are light, so sharing is the default here, unlike Fluid) only avoid Exclusive ones.
fn place(template: &mut PodTemplateSpec, plan: &DatasetPlan) {
    let exclusive = plan.dataset.spec.placement.as_deref() == Some("Exclusive");
    let mode = if exclusive { "Exclusive" } else { "Shared" };
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(PLACEMENT_LABEL.into(), mode.into());
    let own = labels.get("fluid.io/dataset-id").cloned().unwrap_or_default();
    let requirement = |key: &str, operator: &str, values: Option<Vec<String>>| LabelSelectorRequirement { key: key.into(), operator: operator.into(), values };
    let not_own = requirement("fluid.io/dataset-id", "NotIn", Some(vec![own]));
    let others = if exclusive {
        // Any other Dataset's worker.
        vec![requirement(PLACEMENT_LABEL, "Exists", None), not_own]
    } else {
        vec![requirement(PLACEMENT_LABEL, "In", Some(vec!["Exclusive".into()])), not_own]
    };
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector { match_expressions: Some(others), ..Default::default() }),
        topology_key: "kubernetes.io/hostname".into(),
        ..Default::default()
    };
    let Some(pod) = template.spec.as_mut() else { return };
    let anti = pod.affinity.get_or_insert_with(Affinity::default).pod_anti_affinity.get_or_insert_with(PodAntiAffinity::default);
    anti.required_during_scheduling_ignored_during_execution.get_or_insert_with(Vec::new).push(term);
}

/// Fields of the Dataset and runtime that Cistern accepts but does not act on, each with why:
/// the operator publishes them as one Warning Event, `cistern render` prints them.
pub fn unhonoured(plan: &DatasetPlan) -> Vec<String> {
    let mut out = Vec::new();
    let spec = plan.runtime.spec();
    if spec.run_as.is_some() && matches!(plan.runtime, Runtime::JuiceFS(_)) {
        out.push("spec.runAs: not applied to a JuiceFSRuntime; its workers and FUSE clients mount FUSE, as root".into());
    }
    let mut unused: Vec<(&str, &str)> = Vec::new();
    match &plan.runtime {
        Runtime::Jindo(r) => {
            let s = &r.spec;
            if !s.hadoop_config.is_empty() {
                unused.push(("hadoopConfig", "HDFS configuration files are not read; give WebHDFS options on the mount"));
            }
        }
        Runtime::Alluxio(r) => {
            let s = &r.spec;
            let none = cistern_api::CompTemplateSpec::default();
            if !s.jvm_options.is_empty() || !s.master.jvm_options.is_empty() || !s.worker.jvm_options.is_empty() || !s.fuse.jvm_options.is_empty() {
                unused.push(("jvmOptions", "Cistern has no JVM"));
            }
            if s.job_master != none || s.job_worker != none {
                unused.push(("jobMaster/jobWorker", "Cistern has no job master or workers: DataLoads run as Jobs"));
            }
            if s.api_gateway != none {
                unused.push(("apiGateway", "Cistern has no API gateway"));
            }
            if !s.hadoop_config.is_empty() {
                unused.push(("hadoopConfig", "HDFS configuration files are not read; give WebHDFS options on the mount"));
            }
            if s.init_users != Default::default() && s.run_as.is_none() {
                unused.push(("initUsers", "without runAs there is no init container to run"));
            } else if !s.init_users.env.is_empty() {
                unused.push(("initUsers.env", "the init container takes its image and resources; it reads no environment"));
            }
        }
        Runtime::JuiceFS(r) => {
            if r.spec.configs.as_ref().is_some_and(|c| !c.is_empty()) {
                unused.push(("configs", "JuiceFS configs files are not mounted"));
            }
            if r.spec.job_worker != Default::default() {
                unused.push(("jobWorker", "Cistern runs no JuiceFS job workers: DataLoads run as Jobs"));
            }
        }
    }
    out.extend(unused.into_iter().map(|(field, why)| format!("spec.{field}: not applied; {why}")));
    out
}
