//! The storage objects of a Dataset: the PersistentVolume for the CSI driver and the claim
//! pods mount (named after the Dataset), and the tiered store's volumes in worker pods.

use crate::objects::{host_path_volume, mount, string_map};
use crate::render::{fluid_path, Names, RenderOptions};
use cistern_api::plan::{DatasetPlan, Medium};
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, EmptyDirVolumeSource, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// The size Fluid gives its PVs: the Dataset is not bounded by it.
pub(crate) const PV_CAPACITY: &str = "100Pi";

pub(crate) fn access_modes(modes: &[String]) -> Vec<String> {
    if modes.is_empty() {
        vec!["ReadOnlyMany".into()]
    } else {
        modes.to_vec()
    }
}

fn pv_label(n: &Names) -> String {
    cistern_api::names::locality_label(n.ns, n.name)
}

/// The PV `<ns>-<name>` of the CSI driver with `attributes`, labelled for its claim.
pub(crate) fn csi_volume(n: &Names, modes: Vec<String>, attributes: BTreeMap<String, String>) -> PersistentVolume {
    let id = format!("{}-{}", n.ns, n.name);
    let id_label = cistern_api::names::label_value(&id);
    let label = pv_label(n);
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(id.clone()),
            labels: Some(string_map([(label.as_str(), "true"), ("fluid.io/dataset-id", id_label.as_str())])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(modes),
            capacity: Some(BTreeMap::from([("storage".to_string(), Quantity(PV_CAPACITY.into()))])),
            storage_class_name: Some("fluid".into()),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            csi: Some(CSIPersistentVolumeSource {
                driver: cistern_csi::DRIVER_NAME.into(),
                volume_handle: id,
                volume_attributes: Some(attributes),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn persistent_volume(plan: &DatasetPlan, n: &Names, opts: &RenderOptions, mount_type: &str) -> PersistentVolume {
    let policy = plan.runtime.spec().fuse.clean_policy.clone().unwrap_or_else(|| "OnDemand".into());
    let path = fluid_path(plan, opts);
    let attributes = string_map([
        ("fluid_path", path.as_str()),
        ("mount_type", mount_type),
        ("runtime_name", n.name),
        ("runtime_namespace", n.ns),
        ("fuse_clean_policy", policy.as_str()),
    ]);
    csi_volume(n, access_modes(&plan.dataset.spec.access_modes), attributes)
}

/// The claim named after the Dataset, bound to its PV.
pub(crate) fn claim(n: &Names, modes: Vec<String>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: n.meta(n.name.to_string(), "volume"),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(modes),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(PV_CAPACITY.into()))])),
                ..Default::default()
            }),
            storage_class_name: Some("fluid".into()),
            volume_name: Some(format!("{}-{}", n.ns, n.name)),
            selector: Some(crate::objects::match_labels(string_map([(pv_label(n).as_str(), "true")]))),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn persistent_volume_claim(plan: &DatasetPlan, n: &Names) -> PersistentVolumeClaim {
    claim(n, access_modes(&plan.dataset.spec.access_modes))
}

/// The `sizeLimit` of an `emptyDir` tier of `quota` bytes. The kubelet evicts a pod whose
/// emptyDir passes its limit. The worker keeps data, checksum records and evicted files still
/// held open within the quota itself (the last needs file leases; where they are disabled such
/// files count as freed at eviction), so the limit leaves an eighth of the quota, and at least
/// 64 MiB, of headroom for that case and for directories.
pub fn empty_dir_limit(quota: u64) -> u64 {
    quota + (quota / 8).max(64 << 20)
}

/// A tier level's `volumeSource`, checked into its typed parts (hostile input: a field of the
/// wrong type is refused naming it, never passed on as given).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TierSource {
    persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    empty_dir: Option<EmptyDirVolumeSource>,
}

/// The tiered store's volumes and mounts, at the same paths inside the pod as on the node. A
/// hostPath tier is mounted as this Dataset's own directory of it
/// (`<path>/<engine_dir>/<ns>-<name>`, where its workers keep their caches), so a worker
/// cannot read or rewrite another Dataset's cache on the same node.
pub(crate) fn tier_volumes(plan: &DatasetPlan, read_only: bool, engine_dir: &str) -> Result<(Vec<Volume>, Vec<VolumeMount>), String> {
    let (mut volumes, mut mounts) = (Vec::new(), Vec::new());
    let levels = &plan.runtime.spec().tieredstore.levels;
    for (i, tier) in plan.tiers.iter().enumerate() {
        let volume_type = levels.get(i).and_then(|l| l.volume_type.clone()).unwrap_or_else(|| "hostPath".into());
        let source: TierSource = match levels.get(i).and_then(|l| l.volume_source.clone()) {
            Some(v) => serde_json::from_value(v).map_err(|e| format!("spec.tieredstore.levels[{i}].volumeSource: {e}; give a persistentVolumeClaim or emptyDir volume source"))?,
            None => TierSource::default(),
        };
        for (j, (path, quota)) in tier.paths.iter().zip(&tier.quotas).enumerate() {
            let name = format!("tier-{i}-{j}");
            let own = crate::cache_cleanup::own_tier_dir(path, engine_dir, &plan.namespace, &plan.name);
            let (volume, mount_path) = if let Some(claim) = &source.persistent_volume_claim {
                // A PVC-backed tier: the claim, at the tier's path (each worker needs its own
                // claim unless it is ReadWriteMany; the user's to choose).
                (Volume { name: name.clone(), persistent_volume_claim: Some(claim.clone()), ..Default::default() }, path.clone())
            } else if volume_type == "emptyDir" {
                let given = source.empty_dir.clone().unwrap_or_default();
                let medium = given.medium.clone().unwrap_or_else(|| if tier.medium == Medium::Mem { "Memory".into() } else { String::new() });
                // The larger of the user's limit and what the tier's own accounting needs, so
                // the kubelet never evicts a worker whose cache is full.
                let ours = empty_dir_limit(*quota);
                let theirs = given.size_limit.as_ref().and_then(|q| cistern_api::quantity::parse_bytes(&q.0, 1).ok()).unwrap_or(0);
                let empty_dir = EmptyDirVolumeSource { medium: Some(medium), size_limit: Some(Quantity(ours.max(theirs).to_string())), ..given };
                (Volume { name: name.clone(), empty_dir: Some(empty_dir), ..Default::default() }, path.clone())
            } else {
                (host_path_volume(&name, own.display().to_string()), own)
            };
            volumes.push(volume);
            mounts.push(VolumeMount { read_only: Some(read_only), ..mount(&name, mount_path.display().to_string(), false) });
        }
    }
    Ok((volumes, mounts))
}
