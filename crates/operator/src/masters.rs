//! Several masters on Kubernetes (`spec.master.replicas: 3` or 5): one StatefulSet whose pods
//! find each other by their stable names under the headless Service, each with a volume of
//! its own, and a PodDisruptionBudget that keeps a quorum through voluntary evictions.
//!
//! **Volumes.** Each master keeps its namespace and Raft log in `namespace.meta-dir` on a
//! PersistentVolumeClaim made from the StatefulSet's template `meta`: the claims are
//! `meta-<name>-master-0`, `meta-<name>-master-1`... (Kubernetes' naming), sized by the master
//! property `cistern.master.meta.size` (2Gi by default) in the storage class
//! `cistern.master.meta.storageClass` (the cluster's default when unset). Seed 002's single
//! named claim mounted at `namespace.meta-dir` serves one master only: with several, a volume
//! mount covering `namespace.meta-dir` is refused, since one ReadWriteOnce claim cannot hold
//! three stores. An existing single master's claim becomes master 0's state by copying its
//! `namespace.redb` into `meta-<name>-master-0` (README, "High availability").

use crate::objects::{match_labels, Object};
use crate::render::Names;
use cistern_api::plan::DatasetPlan;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// The master property sizing each master's claim.
pub const META_SIZE: &str = "cistern.master.meta.size";
/// The master property naming the claims' storage class.
pub const META_STORAGE_CLASS: &str = "cistern.master.meta.storageClass";
const DEFAULT_META_SIZE: &str = "2Gi";
/// The claim template's (and the pod volume's) name.
pub const META_VOLUME: &str = "meta";

/// Every master's address, in id order: `<name>-master-<i>.<name>-master.<ns>.svc:<port>`.
pub fn addresses(n: &Names, masters: u32, port: u16) -> Vec<String> {
    (0..masters.max(1)).map(|i| format!("{name}-master-{i}.{name}-master.{ns}.svc:{port}", name = n.name, ns = n.ns)).collect()
}

/// The claim template each master pod gets its `namespace.meta-dir` from.
pub fn claim_template(plan: &DatasetPlan) -> Result<PersistentVolumeClaim, String> {
    let props = &plan.runtime.spec().master.properties;
    let size = props.get(META_SIZE).map(String::as_str).unwrap_or(DEFAULT_META_SIZE);
    cistern_api::quantity::parse_bytes(size, 1)
        .map_err(|e| format!("spec.master.properties.{META_SIZE}: `{size}` is not a size ({e}); give one such as 2Gi"))?;
    let class = props.get(META_STORAGE_CLASS).cloned();
    Ok(PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some(META_VOLUME.into()), ..Default::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: class,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(size.to_string()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A voluntary eviction (a node drain) may take masters down only while a quorum stays.
pub fn disruption_budget(plan: &DatasetPlan, n: &Names) -> Object {
    PodDisruptionBudget {
        metadata: n.meta(format!("{}-master", n.name), "master"),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int((plan.masters / 2 + 1) as i32)),
            selector: Some(match_labels(n.labels("master"))),
            ..Default::default()
        }),
        ..Default::default()
    }
    .into()
}
