//! The Fluid custom resources (`data.fluid.io/v1alpha1`) as Rust types.
//!
//! Field names follow Fluid's Go types exactly, so the YAML users already apply parses unchanged.
//! Fields Cistern does not act on yet are still accepted (serde ignores unknown keys), because a
//! Fluid manifest carries many engine-specific knobs; the ones that matter are typed here.
//! All three runtime kinds share one spec ([`RuntimeSpec`]): one engine serves them all.

use crate::quantity::Quantity;
use k8s_openapi::api::core::v1::{Volume, VolumeMount};
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
    printcolumn = r#"{"name":"Total Files","type":"string","jsonPath":".status.fileNum","priority":1}"#,
    printcolumn = r#"{"name":"Cache Hit Ratio","type":"string","jsonPath":".status.cacheStates.cacheHitRatio","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSpec {
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_encrypt_options: Vec<EncryptOption>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "string_map")]
    pub shared_options: BTreeMap<String, String>,
}

/// One under-storage location of a Dataset.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
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
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeRef {
    pub name: String,
    pub namespace: String,
    pub category: String,
    #[serde(rename = "type")]
    pub type_: String,
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
}

/// What every runtime kind shares: how to cache a Dataset of the same name.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default)]
    pub tieredstore: TieredStore,
    #[serde(default)]
    pub master: ComponentSpec,
    #[serde(default)]
    pub worker: ComponentSpec,
    #[serde(default)]
    pub fuse: FuseSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "string_map")]
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub management: Management,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TieredStore {
    #[serde(default)]
    pub levels: Vec<Level>,
}

/// One cache tier: MEM, SSD or HDD.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
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
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_string")]
    pub high: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_string")]
    pub low: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
}

/// The `master` and `worker` sections.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "string_map")]
    pub properties: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "string_map")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "string_map")]
    pub env: BTreeMap<String, String>,
}

/// The `fuse` section.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FuseSpec {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "string_map")]
    pub properties: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "string_map")]
    pub node_selector: BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Management {
    #[serde(default)]
    pub metadata_sync_policy: MetadataSyncPolicy,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetadataSyncPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_sync: Option<bool>,
}

/// `status` of a runtime.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStatus {
    #[serde(default)]
    pub master_phase: String,
    #[serde(default)]
    pub worker_phase: String,
    #[serde(default)]
    pub fuse_phase: String,
    #[serde(default)]
    pub desired_master_number_scheduled: i32,
    #[serde(default)]
    pub master_number_ready: i32,
    #[serde(default)]
    pub desired_worker_number_scheduled: i32,
    #[serde(default)]
    pub worker_number_ready: i32,
    #[serde(default)]
    pub worker_number_available: i32,
    #[serde(default)]
    pub desired_fuse_number_scheduled: i32,
    #[serde(default)]
    pub fuse_number_ready: i32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cache_states: BTreeMap<String, String>,
    /// The node affinity that places a pod next to the cache (the nodes labelled
    /// `fluid.io/s-<ns>-<name>`), as Fluid reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_affinity: Option<k8s_openapi::api::core::v1::NodeAffinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Declares one runtime kind: a CRD whose spec is the shared [`RuntimeSpec`].
macro_rules! runtime_kind {
    ($spec:ident, $kind:literal, $short:literal) => {
        #[doc = concat!("`spec` of a ", $kind, "; see [`RuntimeSpec`].")]
        #[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
        #[kube(
            group = "data.fluid.io",
            version = "v1alpha1",
            kind = $kind,
            namespaced,
            status = "RuntimeStatus",
            shortname = $short,
            category = "fluid",
            scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.workerNumberReady"}"#,
            printcolumn = r#"{"name":"Master Phase","type":"string","jsonPath":".status.masterPhase"}"#,
            printcolumn = r#"{"name":"Worker Phase","type":"string","jsonPath":".status.workerPhase"}"#,
            printcolumn = r#"{"name":"Fuse Phase","type":"string","jsonPath":".status.fusePhase"}"#,
            printcolumn = r#"{"name":"Ready Workers","type":"integer","jsonPath":".status.workerNumberReady","priority":1}"#,
            printcolumn = r#"{"name":"Desired Workers","type":"integer","jsonPath":".status.desiredWorkerNumberScheduled","priority":1}"#,
            printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
        )]
        pub struct $spec {
            #[serde(flatten)]
            pub common: RuntimeSpec,
        }
    };
}

runtime_kind!(JindoRuntimeSpec, "JindoRuntime", "jindo");
runtime_kind!(AlluxioRuntimeSpec, "AlluxioRuntime", "alluxio");
runtime_kind!(JuiceFSRuntimeSpec, "JuiceFSRuntime", "juicefs");

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
    pub dataset: TargetDataset,
    #[serde(default)]
    pub load_metadata: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target: Vec<TargetPath>,
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
}

/// Accepts `key: value` maps whose values YAML typed as numbers or booleans (`port: 9870`),
/// because Fluid's Go types read them all as strings.
fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, serde_json::Value>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, scalar_to_string(v)))
        .collect())
}

fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
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
