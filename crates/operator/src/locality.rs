//! Node labels for cache locality, as Fluid sets them: every node that runs a ready worker of a
//! Dataset carries `fluid.io/s-<ns>-<name>=true`, so that application pods can prefer (or
//! require) the nodes that hold the cache with a node affinity on that label. A node whose
//! worker left loses the label.

use crate::controller::Error;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use crate::objects::MetadataPatch;
use std::collections::BTreeSet;

/// The label of the nodes that hold a Dataset's cache.
pub fn cache_label(ns: &str, name: &str) -> String {
    cistern_api::names::locality_label(ns, name)
}

/// Labels the nodes of the Dataset's running workers and unlabels the others; returns the
/// nodes that hold the cache now.
pub async fn label_cache_nodes(client: &Client, ns: &str, name: &str) -> Result<BTreeSet<String>, Error> {
    let label = cache_label(ns, name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let workers = pods.list(&ListParams::default().labels(&format!("release={name},role=worker"))).await?;
    let holding: BTreeSet<String> = workers
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    let nodes: Api<Node> = Api::all(client.clone());
    let labelled: BTreeSet<String> = nodes.list(&ListParams::default().labels(&label)).await?.items.iter().map(|n| n.name_any()).collect();
    for node in holding.difference(&labelled) {
        nodes.patch(node, &PatchParams::default(), &Patch::Merge(MetadataPatch::label(&label, Some("true")))).await?;
    }
    for node in labelled.difference(&holding) {
        // A merge patch with null removes the label.
        nodes.patch(node, &PatchParams::default(), &Patch::Merge(MetadataPatch::label(&label, None))).await?;
    }
    Ok(holding)
}
