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

use crate::controller::{Binding, Context, Error, MANAGER};
use crate::objects::{patch_status, string_map, Object};
use cistern_api::Dataset;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;

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
pub async fn bind(ds: &Dataset, ctx: &Context, physical: (&str, &str)) -> Result<Binding, Error> {
    let (ns, name) = (ds.namespace().unwrap_or_else(|| "default".into()), ds.name_any());
    let (pns, pname) = physical;
    let not_bound = |why: String| Binding::not_bound("WaitingForDataset", why);
    let datasets: Api<Dataset> = Api::namespaced(ctx.client.clone(), pns);
    let Some(phys) = datasets.get_opt(pname).await? else {
        return Ok(not_bound(format!("Dataset {pns}/{pname} does not exist")));
    };
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
    let n = crate::render::Names { ns: &ns, name: &name };
    let modes = crate::volume::access_modes(&ds.spec.access_modes);
    let params = PatchParams::apply(MANAGER).force();
    Object::from(crate::volume::csi_volume(&n, modes.clone(), attributes)).apply(&ctx.client, &params).await?;
    let owner = ds.controller_owner_ref(&()).ok_or_else(|| Error::Invalid(format!("Dataset {ns}/{name} has no uid yet")))?;
    let mut claim = crate::volume::claim(&n, modes);
    claim.metadata.owner_references = Some(vec![owner]);
    Object::from(claim).apply(&ctx.client, &params).await?;
    if pns != ns {
        copy_for_sidecars(ds, ctx, &phys, (pns, pname)).await?;
    }
    let me = format!("{ns}/{name}");
    if !status.dataset_ref.contains(&me) {
        let mut refs = status.dataset_ref.clone();
        refs.push(me);
        patch_status(&datasets, pname, &DatasetRefs { dataset_ref: refs }).await?;
    }
    Ok(Binding { phase: "Bound".into(), runtimes: status.runtimes, conditions: Vec::new() })
}

/// The references a physical Dataset serves (`status.datasetRef`), written whole.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct DatasetRefs {
    dataset_ref: Vec<String>,
}

/// For sidecars in the reference's namespace: a copy of the physical Dataset's ConfigMap
/// and of its client credentials (`ca.pem`, `client.pem`, `client.key`; never `ref.key` or
/// the CA's key), owned by the reference, so they go with it.
async fn copy_for_sidecars(ds: &Dataset, ctx: &Context, phys: &Dataset, physical: (&str, &str)) -> Result<(), Error> {
    use k8s_openapi::api::core::v1::Secret;
    let (ns, name) = (ds.namespace().unwrap_or_else(|| "default".into()), ds.name_any());
    let (pns, pname) = physical;
    let owner = ds.controller_owner_ref(&()).ok_or_else(|| Error::Invalid(format!("Dataset {ns}/{name} has no uid yet")))?;
    let params = PatchParams::apply(MANAGER).force();
    let release = cistern_api::names::label_value(&name);
    let meta = |object_name: String| kube::api::ObjectMeta {
        name: Some(object_name),
        namespace: Some(ns.clone()),
        labels: Some(string_map([("app", "cistern"), ("release", release.as_str()), ("role", "sidecar-copy")])),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };
    if let Some(runtime) = crate::controller::find_runtime(&ctx.client, pns, pname).await? {
        let mut map = crate::render::config_map_of(phys, &runtime, &crate::render::Names { ns: pns, name: pname }).map_err(Error::Invalid)?;
        map.metadata = meta(format!("{name}-cistern-config"));
        Object::from(map).apply(&ctx.client, &params).await?;
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), pns);
    if let Some(source) = secrets.get_opt(&crate::render::credentials_secret(pname)).await? {
        let mut data = source.data.unwrap_or_default();
        data.retain(|k, _| matches!(k.as_str(), "ca.pem" | "client.pem" | "client.key"));
        let copy = Secret { metadata: meta(crate::render::credentials_secret(&name)), type_: Some("Opaque".into()), data: Some(data), ..Default::default() };
        Object::from(copy).apply(&ctx.client, &params).await?;
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
            patch_status(&datasets, physical.1, &DatasetRefs { dataset_ref: rest }).await?;
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
