//! The three runtime kinds as Fluid declares them (`JindoRuntime`, `AlluxioRuntime`,
//! `JuiceFSRuntime`), field for field with Fluid's names and types, so that `kubectl apply
//! --validate=strict` of the YAML users already have is accepted. One engine serves all three:
//! [`crate::runtime_view::RuntimeSpec`] is what it reads of any of them.
//!
//! Jindo and Alluxio share their component shapes ([`CompTemplateSpec`], [`FuseTemplateSpec`]:
//! the union of Fluid's Jindo and Alluxio fields, since their types differ only in which
//! knobs exist); JuiceFS has its own (`env` is a list of `EnvVar`, `ports` a list of
//! `ContainerPort`). Fields a Fluid version dropped but its documentation still shows
//! (`shortCircuitPolicy`, a level's `storageType`) are accepted and ignored.

use crate::quantity::Quantity;
use crate::types::{string_map, Condition};
use k8s_openapi::api::core::v1::{
    ContainerPort, EnvVar, LocalObjectReference, NodeAffinity, ResourceRequirements, Toleration, Volume, VolumeMount,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

type Map = BTreeMap<String, String>;

/// Image of a component (`alluxioVersion`, `jindoVersion`, `juicefsVersion`, a FUSE image).
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VersionSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_tag: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_pull_policy: String,
}

/// Labels and annotations put on a component's pods.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodMetadata {
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub labels: Map,
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub annotations: Map,
}

impl PodMetadata {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// The user and group a runtime's processes run as (`runAs`) or a Dataset belongs to.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct User {
    pub uid: i64,
    pub gid: i64,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub group: String,
}

/// `initUsers`: the init container that creates `runAs` users (Alluxio, JuiceFS).
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InitUsersSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_tag: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_pull_policy: String,
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub env: Map,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// `cleanCachePolicy`: how long cleaning a node's cache may take when a runtime goes.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CleanCachePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retry_attempts: Option<i32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Management {
    #[serde(default)]
    pub metadata_sync_policy: MetadataSyncPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_cache_policy: Option<CleanCachePolicy>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetadataSyncPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_sync: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TieredStore {
    #[serde(default)]
    pub levels: Vec<Level>,
}

/// An object whose fields the API server keeps as given (a whole `corev1.VolumeSource`).
fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// One cache tier: MEM, SSD or HDD.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Level {
    #[serde(default)]
    pub mediumtype: String,
    #[serde(default)]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_list: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::types::opt_string")]
    pub high: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::types::opt_string")]
    pub low: Option<String>,
    /// `hostPath` (default) or `emptyDir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    /// A Kubernetes volume source for the tier (Fluid inlines `corev1.VolumeSource`):
    /// `emptyDir` settings with `volumeType: emptyDir`, or a `persistentVolumeClaim`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub volume_source: Option<serde_json::Value>,
    /// Dropped by Fluid, still in its older documentation: accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_type: Option<String>,
}

/// A Jindo or Alluxio `master`, `worker`, `jobMaster`, `jobWorker` or `apiGateway`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompTemplateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jvm_options: Vec<String>,
    /// Nullable: documentation samples leave `properties:` with only comments under it.
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    #[schemars(extend("nullable" = true))]
    pub properties: Map,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub env: Map,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub node_selector: Map,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// `HostNetwork` (Fluid's default), `ContainerNetwork` or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Deprecated by Fluid in favour of `podMetadata.labels`.
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub labels: Map,
    #[serde(default, skip_serializing_if = "PodMetadata::is_empty")]
    pub pod_metadata: PodMetadata,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

/// A Jindo or Alluxio `fuse`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FuseTemplateSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_tag: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_pull_policy: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jvm_options: Vec<String>,
    /// Nullable: documentation samples leave `properties:` with only comments under it.
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    #[schemars(extend("nullable" = true))]
    pub properties: Map,
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub env: Map,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub global: bool,
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub node_selector: Map,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// `OnDemand` or `OnRuntimeDeleted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub labels: Map,
    #[serde(default, skip_serializing_if = "PodMetadata::is_empty")]
    pub pod_metadata: PodMetadata,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub log_config: Map,
    #[serde(default, rename = "hostPID", skip_serializing_if = "std::ops::Not::not")]
    pub host_pid: bool,
    /// Dropped by Fluid, still in its older documentation: accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_circuit_policy: Option<String>,
}

/// A JuiceFS `master`, `worker` or `jobWorker`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JuiceFSCompTemplateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub options: Map,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub node_selector: Map,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "PodMetadata::is_empty")]
    pub pod_metadata: PodMetadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
}

/// A JuiceFS `fuse`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JuiceFSFuseSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_tag: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_pull_policy: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub options: Map,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub global: bool,
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub node_selector: Map,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_policy: Option<String>,
    #[serde(default, skip_serializing_if = "PodMetadata::is_empty")]
    pub pod_metadata: PodMetadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(default, rename = "hostPID", skip_serializing_if = "std::ops::Not::not")]
    pub host_pid: bool,
}

/// Alluxio's `data`: copies of the dataset and pinning.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct Data {
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub pin: bool,
}

/// The printer columns and subresources every runtime kind shares (Fluid's names and
/// priorities: `-o wide` shows the ready/desired counts).
macro_rules! runtime_crd {
    ($(#[$meta:meta])* $spec:ident, $kind:literal, $short:literal, { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
        #[kube(
            group = "data.fluid.io",
            version = "v1alpha1",
            kind = $kind,
            namespaced,
            status = "RuntimeStatus",
            shortname = $short,
            category = "fluid",
            scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.currentWorkerNumberScheduled","labelSelectorPath":".status.selector"}"#,
            printcolumn = r#"{"name":"Ready Masters","type":"integer","jsonPath":".status.masterNumberReady","priority":10}"#,
            printcolumn = r#"{"name":"Desired Masters","type":"integer","jsonPath":".status.desiredMasterNumberScheduled","priority":10}"#,
            printcolumn = r#"{"name":"Master Phase","type":"string","jsonPath":".status.masterPhase"}"#,
            printcolumn = r#"{"name":"Ready Workers","type":"integer","jsonPath":".status.workerNumberReady","priority":10}"#,
            printcolumn = r#"{"name":"Desired Workers","type":"integer","jsonPath":".status.desiredWorkerNumberScheduled","priority":10}"#,
            printcolumn = r#"{"name":"Worker Phase","type":"string","jsonPath":".status.workerPhase"}"#,
            printcolumn = r#"{"name":"Ready Fuses","type":"integer","jsonPath":".status.fuseNumberReady","priority":10}"#,
            printcolumn = r#"{"name":"Desired Fuses","type":"integer","jsonPath":".status.desiredFuseNumberScheduled","priority":10}"#,
            printcolumn = r#"{"name":"Fuse Phase","type":"string","jsonPath":".status.fusePhase"}"#,
            printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
        )]
        #[serde(rename_all = "camelCase")]
        pub struct $spec { $($body)* }
    };
}

runtime_crd!(
    /// `spec` of a JindoRuntime.
    JindoRuntimeSpec, "JindoRuntime", "jindo", {
    #[serde(default)]
    pub jindo_version: VersionSpec,
    #[serde(default)]
    pub master: CompTemplateSpec,
    #[serde(default)]
    pub worker: CompTemplateSpec,
    #[serde(default)]
    pub fuse: FuseTemplateSpec,
    /// Nullable: documentation samples leave `properties:` with only comments under it.
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    #[schemars(extend("nullable" = true))]
    pub properties: Map,
    #[serde(default)]
    pub tieredstore: TieredStore,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<User>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hadoop_config: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub labels: Map,
    #[serde(default, skip_serializing_if = "PodMetadata::is_empty")]
    pub pod_metadata: PodMetadata,
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    pub log_config: Map,
    /// Fluid spells this one field of JindoRuntime in lower case.
    #[serde(default, rename = "networkmode", skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_cache_policy: Option<CleanCachePolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub management: Management,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
});

runtime_crd!(
    /// `spec` of an AlluxioRuntime.
    AlluxioRuntimeSpec, "AlluxioRuntime", "alluxio", {
    #[serde(default)]
    pub alluxio_version: VersionSpec,
    #[serde(default)]
    pub master: CompTemplateSpec,
    #[serde(default)]
    pub job_master: CompTemplateSpec,
    #[serde(default)]
    pub worker: CompTemplateSpec,
    #[serde(default)]
    pub job_worker: CompTemplateSpec,
    #[serde(default)]
    pub api_gateway: CompTemplateSpec,
    #[serde(default)]
    pub init_users: InitUsersSpec,
    #[serde(default)]
    pub fuse: FuseTemplateSpec,
    /// Nullable: documentation samples leave `properties:` with only comments under it.
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "string_map")]
    #[schemars(extend("nullable" = true))]
    pub properties: Map,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jvm_options: Vec<String>,
    #[serde(default)]
    pub tieredstore: TieredStore,
    #[serde(default)]
    pub data: Data,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<User>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_prometheus: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hadoop_config: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(default, skip_serializing_if = "PodMetadata::is_empty")]
    pub pod_metadata: PodMetadata,
    #[serde(default)]
    pub management: Management,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
});

runtime_crd!(
    /// `spec` of a JuiceFSRuntime.
    JuiceFSRuntimeSpec, "JuiceFSRuntime", "juicefs", {
    #[serde(default, rename = "juicefsVersion")]
    pub juicefs_version: VersionSpec,
    #[serde(default)]
    pub init_users: InitUsersSpec,
    #[serde(default)]
    pub master: JuiceFSCompTemplateSpec,
    #[serde(default)]
    pub worker: JuiceFSCompTemplateSpec,
    #[serde(default)]
    pub job_worker: JuiceFSCompTemplateSpec,
    #[serde(default)]
    pub fuse: JuiceFSFuseSpec,
    #[serde(default)]
    pub tieredstore: TieredStore,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<User>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_prometheus: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(default, skip_serializing_if = "PodMetadata::is_empty")]
    pub pod_metadata: PodMetadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_cache_policy: Option<CleanCachePolicy>,
    #[serde(default)]
    pub management: Management,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
});

/// `status` of a runtime, as Fluid reports it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value_file: String,
    #[serde(default)]
    pub master_phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub master_reason: String,
    #[serde(default)]
    pub worker_phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub worker_reason: String,
    #[serde(default)]
    pub fuse_phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fuse_reason: String,
    #[serde(default)]
    pub desired_master_number_scheduled: i32,
    #[serde(default)]
    pub current_master_number_scheduled: i32,
    #[serde(default)]
    pub master_number_ready: i32,
    #[serde(default)]
    pub desired_worker_number_scheduled: i32,
    #[serde(default)]
    pub current_worker_number_scheduled: i32,
    #[serde(default)]
    pub worker_number_ready: i32,
    #[serde(default)]
    pub worker_number_available: i32,
    #[serde(default)]
    pub worker_number_unavailable: i32,
    #[serde(default)]
    pub desired_fuse_number_scheduled: i32,
    #[serde(default)]
    pub current_fuse_number_scheduled: i32,
    #[serde(default)]
    pub fuse_number_ready: i32,
    #[serde(default)]
    pub fuse_number_available: i32,
    #[serde(default)]
    pub fuse_number_unavailable: i32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cache_states: Map,
    /// The label selector of the workers' pods, for the scale subresource (an HPA).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// The node affinity that places a pod next to the cache (the nodes labelled
    /// `fluid.io/s-<ns>-<name>`), as Fluid reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_affinity: Option<NodeAffinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub setup_duration: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<crate::types::Mount>,
}
