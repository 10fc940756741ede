//! Reference Datasets (`mountPoint: dataset://<namespace>/<name>`): a Dataset in one namespace
//! that reads another's cache, as Fluid's "dataset across namespaces" does. There is one cache
//! and one set of master, workers and FUSE pods, the physical Dataset's; the reference gets a
//! PersistentVolume and a claim of its own, whose CSI attributes name the physical runtime, so
//! the CSI plugin mounts the physical Dataset's FUSE mount for pods of the reference's
//! namespace, with no credentials crossing namespaces. For FUSE sidecars of application pods
//! in the reference's namespace, the physical Dataset's configuration and client credentials
//! (only) are copied next to the reference ([`copy_for_sidecars`]).
//! The physical Dataset lists its references in `status.datasetRef`, and must allow other
//! namespaces explicitly (annotation [`ALLOW_REFERENCES`]): a cache is its namespace's data.

use crate::controller::{apply, Context, Error, MANAGER};
use cistern_api::Dataset;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};

/// The physical Dataset's annotation listing the namespaces (comma-separated, or `*`) whose
/// Datasets may reference it. References from its own namespace need none.
pub const ALLOW_REFERENCES: &str = "cistern.io/allow-references-from";

/// Whether `physical` lets Datasets of namespace `ns` reference it.
pub fn allows(physical: &Dataset, ns: &str) -> bool {
    physical.annotations().get(ALLOW_REFERENCES).is_some_and(|list| list.split(',').map(str::trim).any(|n| n == "*" || n == ns))
}

/// `Some((namespace, name))` when the Dataset is a reference; an error names the field.
pub fn target(ds: &Dataset) -> Option<Result<(String, String), String>> {
    let mounts = &ds.spec.mounts;
    let any = mounts.iter().any(|m| m.mount_point.starts_with("dataset://"));
    if !any {
        return None;
    }
    if mounts.len() != 1 {
        return Some(Err("spec.mounts: a dataset:// reference must be the Dataset's only mount".into()));
    }
    let rest = mounts[0].mount_point.trim_start_matches("dataset://");
    Some(match rest.trim_end_matches('/').split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            cistern_api::names::check_label("spec.mounts[0].mountPoint namespace", ns)
                .and_then(|_| cistern_api::names::check_subdomain("spec.mounts[0].mountPoint name", name))
                .map(|_| (ns.to_string(), name.to_string()))
        }
        _ => Err(format!("spec.mounts[0].mountPoint: `{}` must be dataset://<namespace>/<name>", mounts[0].mount_point)),
    })
}

/// Binds a reference once its physical Dataset is bound: the reference's PV and claim, and
/// its place in the physical Dataset's `status.datasetRef`. Returns the reference's status.
pub async fn bind(ds: &Dataset, ctx: &Context, physical: (&str, &str)) -> Result<Value, Error> {
    let (ns, name) = (ds.namespace().unwrap_or_else(|| "default".into()), ds.name_any());
    let (pns, pname) = physical;
    let not_bound = |why: String| json!({"phase": "NotBound", "runtimes": [], "conditions": [{"type": "Ready", "status": "False", "reason": "WaitingForDataset", "message": why}]});
    let datasets: Api<Dataset> = Api::namespaced(ctx.client.clone(), pns);
    let Some(phys) = datasets.get_opt(pname).await? else {
        return Ok(not_bound(format!("Dataset {pns}/{pname} does not exist")));
    };
    // A Dataset's cache is its namespace's data: another namespace may read it only if the
    // physical Dataset says so (otherwise anyone who can create a Dataset could read any).
    if pns != ns && !allows(&phys, &ns) {
        return Ok(not_bound(format!(
            "Dataset {pns}/{pname} does not allow references from namespace {ns}: its owner can add {ns} (or *) to its annotation {ALLOW_REFERENCES}"
        )));
    }
    let status = phys.status.clone().unwrap_or_default();
    if status.phase != "Bound" {
        return Ok(not_bound(format!("Dataset {pns}/{pname} is not bound to a runtime yet")));
    }
    let Some(pv) = Api::<PersistentVolume>::all(ctx.client.clone()).get_opt(&format!("{pns}-{pname}")).await? else {
        return Ok(not_bound(format!("Dataset {pns}/{pname} has no PersistentVolume yet")));
    };
    let attributes = pv.spec.as_ref().and_then(|s| s.csi.as_ref()).and_then(|c| c.volume_attributes.clone()).unwrap_or_default();
    let id = format!("{ns}-{name}");
    let label = cistern_api::names::locality_label(&ns, &name);
    let modes = if ds.spec.access_modes.is_empty() { vec!["ReadOnlyMany".to_string()] } else { ds.spec.access_modes.clone() };
    let params = PatchParams::apply(MANAGER).force();
    // The reference's own PV: the physical runtime's attributes, a volume handle of its own.
    apply(&ctx.client, &json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": id, "labels": {label.as_str(): "true", "fluid.io/dataset-id": cistern_api::names::label_value(&id)}},
        "spec": {
            "accessModes": modes,
            "capacity": {"storage": crate::render::PV_CAPACITY},
            "storageClassName": "fluid",
            "persistentVolumeReclaimPolicy": "Retain",
            "csi": {"driver": cistern_csi::DRIVER_NAME, "volumeHandle": id, "volumeAttributes": attributes},
        },
    }), &params).await?;
    let owner = ds.controller_owner_ref(&()).ok_or_else(|| Error::Invalid(format!("Dataset {ns}/{name} has no uid yet")))?;
    apply(&ctx.client, &json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "cistern", "release": cistern_api::names::label_value(&name), "role": "volume"}, "ownerReferences": [owner]},
        "spec": {
            "accessModes": modes,
            "resources": {"requests": {"storage": crate::render::PV_CAPACITY}},
            "storageClassName": "fluid",
            "volumeName": id,
            "selector": {"matchLabels": {label.as_str(): "true"}},
        },
    }), &params).await?;
    if pns != ns {
        copy_for_sidecars(ds, ctx, &phys, (pns, pname)).await?;
    }
    let me = format!("{ns}/{name}");
    if !status.dataset_ref.contains(&me) {
        let mut refs = status.dataset_ref.clone();
        refs.push(me);
        datasets.patch_status(pname, &PatchParams::default(), &Patch::Merge(json!({"status": {"datasetRef": refs}}))).await?;
    }
    Ok(json!({"phase": "Bound", "runtimes": status.runtimes, "conditions": []}))
}

/// What a FUSE sidecar that an application pod of the reference's namespace gets needs of the
/// physical Dataset: its configuration and the **client** credentials only (`ca.pem`,
/// `client.pem`, `client.key`; never `ref.key`, the CA key or another role's), copied into
/// `<reference>-cistern-config` and `<reference>-cistern-credentials` in the reference's
/// namespace, owned by the reference (they go with it). Applied at every reconcile of the
/// reference, so renewed certificates follow.
async fn copy_for_sidecars(ds: &Dataset, ctx: &Context, phys: &Dataset, physical: (&str, &str)) -> Result<(), Error> {
    use k8s_openapi::api::core::v1::Secret;
    let (ns, name) = (ds.namespace().unwrap_or_else(|| "default".into()), ds.name_any());
    let (pns, pname) = physical;
    let owner = ds.controller_owner_ref(&()).ok_or_else(|| Error::Invalid(format!("Dataset {ns}/{name} has no uid yet")))?;
    let params = PatchParams::apply(MANAGER).force();
    let labels = json!({"app": "cistern", "release": cistern_api::names::label_value(&name), "role": "sidecar-copy"});
    if let Some(runtime) = crate::controller::find_runtime(&ctx.client, pns, pname).await? {
        let mut map = crate::render::config_map_of(phys, &runtime, &crate::render::Names { ns: pns, name: pname }).map_err(Error::Invalid)?;
        map["metadata"] = json!({"name": format!("{name}-cistern-config"), "namespace": ns, "labels": labels, "ownerReferences": [owner]});
        apply(&ctx.client, &map, &params).await?;
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), pns);
    if let Some(source) = secrets.get_opt(&crate::render::credentials_secret(pname)).await? {
        let data = source.data.unwrap_or_default();
        let client: std::collections::BTreeMap<&str, &k8s_openapi::ByteString> =
            ["ca.pem", "client.pem", "client.key"].into_iter().filter_map(|k| data.get(k).map(|v| (k, v))).collect();
        apply(&ctx.client, &json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": crate::render::credentials_secret(&name), "namespace": ns, "labels": labels, "ownerReferences": [owner]},
            "type": "Opaque",
            "data": client,
        }), &params).await?;
    }
    Ok(())
}

/// Takes the reference out of its physical Dataset's `status.datasetRef`.
pub async fn release(ds: &Dataset, ctx: &Context, physical: (&str, &str)) -> Result<(), Error> {
    let me = format!("{}/{}", ds.namespace().unwrap_or_else(|| "default".into()), ds.name_any());
    let datasets: Api<Dataset> = Api::namespaced(ctx.client.clone(), physical.0);
    if let Some(phys) = datasets.get_opt(physical.1).await? {
        let refs = phys.status.map(|s| s.dataset_ref).unwrap_or_default();
        if refs.contains(&me) {
            let rest: Vec<String> = refs.into_iter().filter(|r| *r != me).collect();
            datasets.patch_status(physical.1, &PatchParams::default(), &Patch::Merge(json!({"status": {"datasetRef": rest}}))).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(mounts: &str) -> Dataset {
        serde_saphyr::from_str(&format!("apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {{name: r, namespace: ref}}\nspec:\n  mounts: {mounts}\n")).unwrap()
    }

    #[test]
    fn other_namespaces_need_the_physical_datasets_consent() {
        let with = |v: Option<&str>| {
            let mut d = ds("[{mountPoint: 'oss://b/d', name: x}]");
            if let Some(v) = v {
                d.metadata.annotations = Some([(ALLOW_REFERENCES.to_string(), v.to_string())].into());
            }
            d
        };
        assert!(!allows(&with(None), "team-b"));
        assert!(allows(&with(Some("team-a, team-b")), "team-b"));
        assert!(!allows(&with(Some("team-a")), "team-b"));
        assert!(allows(&with(Some("*")), "anyone"));
    }

    #[test]
    fn references_are_parsed_and_checked() {
        assert_eq!(target(&ds("[{mountPoint: 'dataset://default/phy', name: x}]")), Some(Ok(("default".into(), "phy".into()))));
        assert!(target(&ds("[{mountPoint: 'oss://b/d', name: x}]")).is_none());
        assert!(target(&ds("[{mountPoint: 'dataset://default', name: x}]")).unwrap().unwrap_err().contains("dataset://<namespace>/<name>"));
        assert!(target(&ds("[{mountPoint: 'dataset://Bad_NS/phy', name: x}]")).unwrap().is_err());
        assert!(target(&ds("[{mountPoint: 'dataset://a/b', name: x}, {mountPoint: 'oss://b/d', name: y}]")).unwrap().unwrap_err().contains("only mount"));
    }
}
