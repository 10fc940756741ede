//! The Kubernetes objects the operator makes, as `k8s-openapi` types: every object is built
//! from typed structs, so the compiler checks each field's name and type (a misspelled field
//! in a JSON literal would be dropped by the API server in silence, or refused at apply time).
//! [`Object`] is one rendered object of any kind; the helpers build the small parts every
//! pod template repeats.

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, EnvVar, EnvVarSource, HostPathVolumeSource, ObjectFieldSelector, PersistentVolume, PersistentVolumeClaim, PodTemplateSpec, Secret,
    Service, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One rendered object.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    ConfigMap(ConfigMap),
    Secret(Secret),
    Service(Service),
    StatefulSet(StatefulSet),
    DaemonSet(DaemonSet),
    PersistentVolume(PersistentVolume),
    PersistentVolumeClaim(PersistentVolumeClaim),
    NetworkPolicy(NetworkPolicy),
    PodDisruptionBudget(PodDisruptionBudget),
    Job(Job),
    CronJob(CronJob),
}

macro_rules! each {
    ($self:expr, $o:ident => $e:expr) => {
        match $self {
            Object::ConfigMap($o) => $e,
            Object::Secret($o) => $e,
            Object::Service($o) => $e,
            Object::StatefulSet($o) => $e,
            Object::DaemonSet($o) => $e,
            Object::PersistentVolume($o) => $e,
            Object::PersistentVolumeClaim($o) => $e,
            Object::NetworkPolicy($o) => $e,
            Object::PodDisruptionBudget($o) => $e,
            Object::Job($o) => $e,
            Object::CronJob($o) => $e,
        }
    };
}

macro_rules! from {
    ($($kind:ident),*) => {$(
        impl From<$kind> for Object {
            fn from(o: $kind) -> Object {
                Object::$kind(o)
            }
        }
    )*};
}
from!(ConfigMap, Secret, Service, StatefulSet, DaemonSet, PersistentVolume, PersistentVolumeClaim, NetworkPolicy, PodDisruptionBudget, Job, CronJob);

impl Object {
    pub fn kind(&self) -> &'static str {
        fn kind_of<K: k8s_openapi::Resource>(_: &K) -> &'static str {
            K::KIND
        }
        each!(self, o => kind_of(o))
    }

    pub fn meta(&self) -> &ObjectMeta {
        each!(self, o => &o.metadata)
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        each!(self, o => &mut o.metadata)
    }

    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    /// The pod template of a workload (StatefulSet, DaemonSet, Job, CronJob).
    pub fn pod_template_mut(&mut self) -> Option<&mut PodTemplateSpec> {
        match self {
            Object::StatefulSet(s) => Some(&mut s.spec.template),
            Object::DaemonSet(d) => Some(&mut d.spec.template),
            Object::Job(j) => j.spec.as_mut().map(|s| &mut s.template),
            Object::CronJob(c) => c.spec.job_template.spec.as_mut().map(|s| &mut s.template),
            _ => None,
        }
    }

    pub fn pod_template(&self) -> Option<&PodTemplateSpec> {
        match self {
            Object::StatefulSet(s) => Some(&s.spec.template),
            Object::DaemonSet(d) => Some(&d.spec.template),
            Object::Job(j) => j.spec.as_ref().map(|s| &s.template),
            Object::CronJob(c) => c.spec.job_template.spec.as_ref().map(|s| &s.template),
            _ => None,
        }
    }

    /// The object as the API server reads it (`apiVersion` and `kind` included).
    pub fn to_value(&self) -> Value {
        each!(self, o => serde_json::to_value(o).expect("a Kubernetes object serializes"))
    }

    /// Server-side apply under `params`' field manager.
    pub async fn apply(&self, client: &Client, params: &PatchParams) -> Result<(), kube::Error> {
        let ns = self.meta().namespace.clone().unwrap_or_default();
        let name = self.name().to_string();
        match self {
            Object::ConfigMap(o) => apply_namespaced(client, &ns, &name, o, params).await,
            Object::Secret(o) => apply_namespaced(client, &ns, &name, o, params).await,
            Object::Service(o) => apply_namespaced(client, &ns, &name, o, params).await,
            Object::StatefulSet(o) => apply_namespaced(client, &ns, &name, o, params).await,
            Object::DaemonSet(o) => apply_namespaced(client, &ns, &name, o, params).await,
            Object::PersistentVolumeClaim(o) => apply_namespaced(client, &ns, &name, o, params).await,
            Object::NetworkPolicy(o) => apply_namespaced(client, &ns, &name, o, params).await,
            Object::PodDisruptionBudget(o) => apply_namespaced(client, &ns, &name, o, params).await,
            Object::Job(o) => apply_namespaced(client, &ns, &name, o, params).await,
            Object::CronJob(o) => apply_namespaced(client, &ns, &name, o, params).await,
            Object::PersistentVolume(o) => {
                Api::<PersistentVolume>::all(client.clone()).patch(&name, params, &Patch::Apply(o)).await.map(drop)
            }
        }
    }
}

async fn apply_namespaced<K>(client: &Client, ns: &str, name: &str, object: &K, params: &PatchParams) -> Result<(), kube::Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Serialize + serde::de::DeserializeOwned + Clone + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns).patch(name, params, &Patch::Apply(object)).await.map(drop)
}

/// A map of labels (or annotations, or a node selector).
pub fn string_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A selector of exactly `labels`.
pub fn match_labels(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector { match_labels: Some(labels), ..Default::default() }
}

/// A directory of the node (made when missing).
pub fn host_path_volume(name: &str, path: impl Into<String>) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource { path: path.into(), type_: Some("DirectoryOrCreate".into()) }),
        ..Default::default()
    }
}

pub fn mount(name: &str, path: impl Into<String>, read_only: bool) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), read_only: read_only.then_some(true), ..Default::default() }
}

/// A variable with a fixed value.
pub fn env_value(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..Default::default() }
}

/// A variable from the pod's own fields (the downward API).
pub fn env_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource { field_ref: Some(ObjectFieldSelector { field_path: field_path.into(), ..Default::default() }), ..Default::default() }),
        ..Default::default()
    }
}

/// A status written with the typed status struct: `{"status": ...}` as a merge patch of the
/// status subresource (every field the struct serializes is set; the rest are left alone).
#[derive(Serialize, Debug)]
pub struct StatusPatch<'a, S: Serialize + std::fmt::Debug> {
    pub status: &'a S,
}

/// Patches `name`'s status with `status`.
pub async fn patch_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: Serialize + std::fmt::Debug,
{
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(StatusPatch { status })).await.map(drop)
}

/// A merge patch of an object's labels or annotations: a value sets the key, `None` (sent as
/// `null`) removes it; nothing else of the object is touched.
#[derive(Serialize, Debug, Default, Clone)]
pub struct MetadataPatch {
    metadata: PatchedMeta,
}

#[derive(Serialize, Debug, Default, Clone)]
struct PatchedMeta {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, Option<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, Option<String>>,
}

impl MetadataPatch {
    pub fn label(key: &str, value: Option<&str>) -> MetadataPatch {
        let mut p = MetadataPatch::default();
        p.metadata.labels.insert(key.into(), value.map(str::to_string));
        p
    }

    pub fn annotation(key: &str, value: Option<&str>) -> MetadataPatch {
        let mut p = MetadataPatch::default();
        p.metadata.annotations.insert(key.into(), value.map(str::to_string));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_patches_set_and_remove() {
        let set = serde_json::to_value(MetadataPatch::label("fluid.io/s-ns-d", Some("true"))).unwrap();
        assert_eq!(set, serde_json::json!({"metadata": {"labels": {"fluid.io/s-ns-d": "true"}}}));
        let removed = serde_json::to_value(MetadataPatch::label("fluid.io/s-ns-d", None)).unwrap();
        assert_eq!(removed, serde_json::json!({"metadata": {"labels": {"fluid.io/s-ns-d": null}}}));
        let annotated = serde_json::to_value(MetadataPatch::annotation("a", Some("b"))).unwrap();
        assert_eq!(annotated, serde_json::json!({"metadata": {"annotations": {"a": "b"}}}));
    }
}
