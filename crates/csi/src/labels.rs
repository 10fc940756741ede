//! The node label that places a Dataset's FUSE pod: `fluid.io/f-<namespace>-<name>=true`, set
//! by NodeStageVolume and removed by NodeUnstageVolume (per the runtime's `fuse.cleanPolicy`).
//! Behind a trait: the Kubernetes implementation patches the Node object; tests record.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The label that the runtime's FUSE DaemonSet selects nodes by.
pub fn fuse_label(namespace: &str, name: &str) -> String {
    format!("fluid.io/f-{namespace}-{name}")
}

#[async_trait::async_trait]
pub trait NodeLabels: Send + Sync {
    /// Sets `key=value` on `node`, or removes `key` when `value` is `None`.
    async fn set(&self, node: &str, key: &str, value: Option<&str>) -> Result<(), String>;
}

/// Labels kept in memory: for tests, and for running outside a cluster.
#[derive(Default)]
pub struct RecordedLabels(pub Mutex<BTreeMap<String, String>>);

impl RecordedLabels {
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.lock().expect("labels lock").get(key).cloned()
    }
}

#[async_trait::async_trait]
impl NodeLabels for RecordedLabels {
    async fn set(&self, node: &str, key: &str, value: Option<&str>) -> Result<(), String> {
        let mut labels = self.0.lock().expect("labels lock");
        match value {
            Some(v) => labels.insert(key.to_string(), v.to_string()),
            None => labels.remove(key),
        };
        tracing::info!(node, key, value, "node label");
        Ok(())
    }
}
