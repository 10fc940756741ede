//! The Fluid custom resources (`data.fluid.io/v1alpha1`) as Rust types: Dataset and DataLoad
//! here, the runtime kinds in [`crate::runtime_types`].
//!
//! Field names and types follow Fluid's Go types, so the YAML users already apply parses
//! unchanged and `kubectl apply --validate=strict` accepts it on a cluster. Every field Fluid
//! declares is declared here; what Cistern does with each is in the README's Fluid API table.

use k8s_openapi::api::core::v1::{Affinity, NodeSelector, Toleration};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// `spec` of a Dataset: where the data lives.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "data.fluid.io",
    version = "v1alpha1",
    kind = "Dataset",
    namespaced,
    status = "DatasetStatus",
    shortname = "dataset",
    category = "fluid",
    printcolumn = r#"{"name":"Ufs Total Size","type":"string","jsonPath":".status.ufsTotal"}"#,
    printcolumn = r#"{"name":"Cached","type":"string","jsonPath":".status.cacheStates.cached"}"#,
    printcolumn = r#"{"name":"Cache Capacity","type":"string","jsonPath":".status.cacheStates.cacheCapacity"}"#,
    printcolumn = r#"{"name":"Cached Percentage","type":"string","jsonPath":".status.cacheStates.cachedPercentage"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"HCFS URL","type":"string","jsonPath":".status.hcfs.endpoint","priority":10}"#,
    printcolumn = r#"{"name":"TOTAL FILES","type":"string","jsonPath":".status.fileNum","priority":11}"#,
    printcolumn = r#"{"name":"CACHE HIT RATIO","type":"string","jsonPath":".status.cacheStates.cacheHitRatio","priority":10}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSpec {
    /// Required, at least one (as in Fluid).
    #[schemars(length(min = 1))]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<crate::runtime_types::User>,
    /// Nodes the cache may be placed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<CacheableNodeAffinity>,
    /// Taints the cache's pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<String>,
    /// `Exclusive` (default), `Shared` or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_restore_location: Option<DataRestoreLocation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtimes: Vec<RuntimeRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_encrypt_options: Vec<EncryptOption>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "string_map")]
    pub shared_options: BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct CacheableNodeAffinity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<NodeSelector>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataRestoreLocation {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
}

/// One under-storage location of a Dataset.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    #[schemars(length(min = 5))]
    pub mount_point: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "string_map")]
    pub options: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encrypt_options: Vec<EncryptOption>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
}

/// An option whose value comes from a Secret.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptOption {
    pub name: String,
    pub value_from: EncryptOptionSource,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptOptionSource {
    pub secret_key_ref: SecretKeySelector,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct SecretKeySelector {
    pub name: String,
    pub key: String,
}

/// `status` of a Dataset, as Fluid reports it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetStatus {
    #[serde(default)]
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ufs_total: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file_num: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cache_states: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtimes: Vec<RuntimeRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The mounts as the runtime mounted them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hcfs: Option<HcfsStatus>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data_load_ref: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data_backup_ref: String,
    /// The running operation of each kind (`DataLoad: <name>`): a lock against concurrent ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operation_ref: BTreeMap<String, String>,
    /// The Datasets (`<ns>/<name>`) that mount this one with `dataset://`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dataset_ref: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HcfsStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub underlayer_file_system_version: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeRef {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub category: String,
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_replicas: Option<i32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
}

/// `spec` of a DataLoad: prefetch (part of) a Dataset into the cache.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "data.fluid.io",
    version = "v1alpha1",
    kind = "DataLoad",
    namespaced,
    status = "DataLoadStatus",
    shortname = "load",
    category = "fluid",
    printcolumn = r#"{"name":"Dataset","type":"string","jsonPath":".spec.dataset.name"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.duration"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DataLoadSpec {
    /// Optional in Fluid's schema; a DataLoad without it waits with a condition saying so.
    #[serde(default)]
    pub dataset: TargetDataset,
    #[serde(default)]
    pub load_metadata: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target: Vec<TargetPath>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "string_map")]
    pub options: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "crate::runtime_types::PodMetadata::is_empty")]
    pub pod_metadata: crate::runtime_types::PodMetadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "string_map")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scheduler_name: String,
    /// The loader container's resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// `Once` (default), `Cron` (with `schedule`) or `OnEvent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub schedule: String,
    /// The operation this one runs after (a data flow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_after: Option<OperationRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_strategy: Option<AffinityStrategy>,
}

/// Where a data-flow step runs relative to the step before it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct AffinityStrategy {
    /// `Require` or `Prefer`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefers: Vec<Prefer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<Require>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct Prefer {
    pub name: String,
    #[serde(default)]
    pub weight: i32,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct Require {
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct TargetDataset {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct TargetPath {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataLoadStatus {
    #[serde(default)]
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub duration: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub infos: BTreeMap<String, String>,
    /// Cron DataLoads: when the last run was scheduled and when one last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<String>,
}

/// Accepts `key: value` maps whose values YAML typed as numbers or booleans (`port: 9870`),
/// because Fluid's Go types read them all as strings.
pub(crate) fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, serde_json::Value>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, scalar_to_string(v)))
        .collect())
}

pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw: Option<serde_json::Value> = Option::deserialize(d)?;
    Ok(raw.filter(|v| !v.is_null()).map(scalar_to_string))
}

fn scalar_to_string(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}
