//! What the engine reads of a runtime, whichever kind declared it: one shape for the plan and
//! the renderer, built from the Fluid-shaped kinds of [`crate::runtime_types`]. Environment
//! variables become `EnvVar`s (Jindo and Alluxio give a map, JuiceFS a list), and the
//! deprecated `labels` fields merge under `podMetadata.labels`.

use crate::runtime_types::*;
use k8s_openapi::api::core::v1::{EnvVar, LocalObjectReference, ResourceRequirements, Toleration, Volume, VolumeMount};
use std::collections::BTreeMap;

type Map = BTreeMap<String, String>;

/// A runtime's settings as the engine uses them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimeSpec {
    pub replicas: Option<i32>,
    pub tieredstore: TieredStore,
    pub master: ComponentSpec,
    pub worker: ComponentSpec,
    pub fuse: FuseSpec,
    pub volumes: Vec<Volume>,
    pub properties: Map,
    pub management: Management,
    pub run_as: Option<User>,
    /// Labels and annotations of every pod of the runtime (each component's add to them).
    pub pod_metadata: PodMetadata,
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// The runtime-wide network mode (Jindo's `networkmode`), under each component's own.
    pub network_mode: Option<String>,
}

/// A master or worker.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ComponentSpec {
    pub replicas: Option<i32>,
    pub properties: Map,
    pub volume_mounts: Vec<VolumeMount>,
    pub node_selector: Map,
    pub env: Vec<EnvVar>,
    pub resources: Option<ResourceRequirements>,
    pub tolerations: Vec<Toleration>,
    pub pod_metadata: PodMetadata,
    pub image_pull_secrets: Vec<LocalObjectReference>,
    pub network_mode: Option<String>,
    pub disabled: bool,
}

/// The FUSE client.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FuseSpec {
    pub properties: Map,
    pub args: Vec<String>,
    pub clean_policy: Option<String>,
    pub volume_mounts: Vec<VolumeMount>,
    pub node_selector: Map,
    pub env: Vec<EnvVar>,
    pub resources: Option<ResourceRequirements>,
    pub tolerations: Vec<Toleration>,
    pub pod_metadata: PodMetadata,
    pub image_pull_secrets: Vec<LocalObjectReference>,
    pub network_mode: Option<String>,
    pub disabled: bool,
}

fn env_list(map: &Map) -> Vec<EnvVar> {
    map.iter().map(|(k, v)| EnvVar { name: k.clone(), value: Some(v.clone()), value_from: None }).collect()
}

/// `podMetadata` with the deprecated `labels` merged under it (podMetadata wins).
fn metadata(pod_metadata: &PodMetadata, labels: &Map) -> PodMetadata {
    let mut m = pod_metadata.clone();
    for (k, v) in labels {
        m.labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    m
}

impl From<&CompTemplateSpec> for ComponentSpec {
    fn from(c: &CompTemplateSpec) -> Self {
        ComponentSpec {
            replicas: c.replicas,
            properties: c.properties.clone(),
            volume_mounts: c.volume_mounts.clone(),
            node_selector: c.node_selector.clone(),
            env: env_list(&c.env),
            resources: c.resources.clone(),
            tolerations: c.tolerations.clone(),
            pod_metadata: metadata(&c.pod_metadata, &c.labels),
            image_pull_secrets: c.image_pull_secrets.clone(),
            network_mode: c.network_mode.clone(),
            disabled: c.disabled,
        }
    }
}

impl From<&FuseTemplateSpec> for FuseSpec {
    fn from(f: &FuseTemplateSpec) -> Self {
        FuseSpec {
            properties: f.properties.clone(),
            args: f.args.clone(),
            clean_policy: f.clean_policy.clone(),
            volume_mounts: f.volume_mounts.clone(),
            node_selector: f.node_selector.clone(),
            env: env_list(&f.env),
            resources: f.resources.clone(),
            tolerations: f.tolerations.clone(),
            pod_metadata: metadata(&f.pod_metadata, &f.labels),
            image_pull_secrets: f.image_pull_secrets.clone(),
            network_mode: f.network_mode.clone(),
            disabled: f.disabled,
        }
    }
}

impl From<&JuiceFSCompTemplateSpec> for ComponentSpec {
    fn from(c: &JuiceFSCompTemplateSpec) -> Self {
        ComponentSpec {
            replicas: c.replicas,
            // JuiceFS's mount options play the part of properties.
            properties: c.options.clone(),
            volume_mounts: c.volume_mounts.clone(),
            node_selector: c.node_selector.clone(),
            env: c.env.clone(),
            resources: c.resources.clone(),
            pod_metadata: c.pod_metadata.clone(),
            network_mode: c.network_mode.clone(),
            ..Default::default()
        }
    }
}

impl From<&JuiceFSFuseSpec> for FuseSpec {
    fn from(f: &JuiceFSFuseSpec) -> Self {
        FuseSpec {
            properties: f.options.clone(),
            clean_policy: f.clean_policy.clone(),
            volume_mounts: f.volume_mounts.clone(),
            node_selector: f.node_selector.clone(),
            env: f.env.clone(),
            resources: f.resources.clone(),
            pod_metadata: f.pod_metadata.clone(),
            network_mode: f.network_mode.clone(),
            ..Default::default()
        }
    }
}

impl From<&JindoRuntimeSpec> for RuntimeSpec {
    fn from(s: &JindoRuntimeSpec) -> Self {
        RuntimeSpec {
            replicas: s.replicas,
            tieredstore: s.tieredstore.clone(),
            master: (&s.master).into(),
            worker: (&s.worker).into(),
            fuse: (&s.fuse).into(),
            volumes: s.volumes.clone(),
            properties: s.properties.clone(),
            management: s.management.clone(),
            run_as: s.run_as.clone(),
            pod_metadata: metadata(&s.pod_metadata, &s.labels),
            image_pull_secrets: s.image_pull_secrets.clone(),
            network_mode: s.network_mode.clone(),
        }
    }
}

impl From<&AlluxioRuntimeSpec> for RuntimeSpec {
    fn from(s: &AlluxioRuntimeSpec) -> Self {
        RuntimeSpec {
            replicas: s.replicas,
            tieredstore: s.tieredstore.clone(),
            master: (&s.master).into(),
            worker: (&s.worker).into(),
            fuse: (&s.fuse).into(),
            volumes: s.volumes.clone(),
            properties: s.properties.clone(),
            management: s.management.clone(),
            run_as: s.run_as.clone(),
            pod_metadata: s.pod_metadata.clone(),
            image_pull_secrets: s.image_pull_secrets.clone(),
            network_mode: None,
        }
    }
}

impl From<&JuiceFSRuntimeSpec> for RuntimeSpec {
    fn from(s: &JuiceFSRuntimeSpec) -> Self {
        RuntimeSpec {
            replicas: s.replicas,
            tieredstore: s.tieredstore.clone(),
            master: (&s.master).into(),
            worker: (&s.worker).into(),
            fuse: (&s.fuse).into(),
            volumes: s.volumes.clone(),
            properties: BTreeMap::new(),
            management: s.management.clone(),
            run_as: s.run_as.clone(),
            pod_metadata: s.pod_metadata.clone(),
            image_pull_secrets: s.image_pull_secrets.clone(),
            network_mode: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_become_env_vars_and_deprecated_labels_merge() {
        let yaml = "master: {env: {A: '1'}, labels: {old: x, both: old}, podMetadata: {labels: {both: new}}}\nreplicas: 2\n";
        let spec: JindoRuntimeSpec = serde_saphyr::from_str(yaml).unwrap();
        let view = RuntimeSpec::from(&spec);
        assert_eq!(view.master.env, [EnvVar { name: "A".into(), value: Some("1".into()), value_from: None }]);
        assert_eq!(view.master.pod_metadata.labels.get("old").map(String::as_str), Some("x"));
        assert_eq!(view.master.pod_metadata.labels.get("both").map(String::as_str), Some("new"), "podMetadata wins");
        assert_eq!(view.replicas, Some(2));
    }

    #[test]
    fn juicefs_env_is_a_list_of_env_vars() {
        let yaml = "fuse:\n  env:\n    - name: A\n      valueFrom: {secretKeyRef: {name: s, key: k}}\n";
        let spec: JuiceFSRuntimeSpec = serde_saphyr::from_str(yaml).unwrap();
        let view = RuntimeSpec::from(&spec);
        assert_eq!(view.fuse.env[0].name, "A");
        assert!(view.fuse.env[0].value_from.is_some());
    }
}
