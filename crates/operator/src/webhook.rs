//! The admission webhook's decision for a Pod (`cistern webhook`): pods that mount a Dataset's
//! PVC get node affinity toward the nodes that hold its cache (labelled
//! `fluid.io/s-<ns>-<name>=true` by the operator), preferred by default, required when the pod
//! asks (label `fluid.io/dataset.<name>.sched: required`) or the webhook is run with
//! `--require-cache-affinity`, as Fluid's webhook plugins do. A pod that mounts no Dataset gets
//! no patch at all. The answer is a JSON Patch (RFC 6902) in an AdmissionReview response.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use k8s_openapi::api::core::v1::{NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PreferredSchedulingTerm};
use serde::Serialize;

/// The label a pod sets to require (rather than prefer) a Dataset's cache nodes.
pub fn required_label(dataset: &str) -> String {
    format!("fluid.io/dataset.{dataset}.sched")
}

/// The names of the PVCs `pod` mounts.
pub fn claims(pod: &Pod) -> Vec<String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes.into_iter().flatten().filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone())).collect()
}

/// The JSON Pointer of `tokens` (a `/` or `~` in a token is escaped).
pub(crate) fn pointer<'t>(tokens: impl IntoIterator<Item = &'t str>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

/// An `add` of a typed value at `path`.
pub(crate) fn add<'t>(path: impl IntoIterator<Item = &'t str>, value: &impl Serialize) -> PatchOperation {
    PatchOperation::Add(AddOperation { path: pointer(path), value: serde_json::to_value(value).expect("a Kubernetes object serializes") })
}

/// The JSON Patch that steers `pod` (in `ns`) toward the cache of each of `datasets`; `None`
/// when there is nothing to do.
pub fn affinity_patch(pod: &Pod, ns: &str, datasets: &[String], require_all: bool) -> Option<Vec<PatchOperation>> {
    let spec = pod.spec.clone().unwrap_or_default();
    let node = spec.affinity.as_ref().and_then(|a| a.node_affinity.clone());
    // Never twice: a Dataset whose cache the pod already names is skipped.
    let already = serde_json::to_string(&node).unwrap_or_default();
    let datasets: Vec<&String> = datasets.iter().filter(|d| !already.contains(&format!("\"{}\"", cistern_api::names::locality_label(ns, d)))).collect();
    if datasets.is_empty() {
        return None;
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let mut preferred = Vec::new();
    let mut required = Vec::new();
    for d in datasets {
        let expr = NodeSelectorRequirement { key: cistern_api::names::locality_label(ns, d), operator: "In".into(), values: Some(vec!["true".into()]) };
        if require_all || labels.get(&required_label(d)).map(String::as_str) == Some("required") {
            required.push(expr);
        } else {
            let term = NodeSelectorTerm { match_expressions: Some(vec![expr]), ..Default::default() };
            preferred.push(PreferredSchedulingTerm { weight: 100, preference: term });
        }
    }
    let mut ops = Vec::new();
    const AFFINITY: [&str; 3] = ["spec", "affinity", "nodeAffinity"];
    if spec.affinity.is_none() {
        ops.push(add(["spec", "affinity"], &k8s_openapi::api::core::v1::Affinity::default()));
    }
    let node = match node {
        Some(n) => n,
        None => {
            ops.push(add(AFFINITY, &NodeAffinity::default()));
            NodeAffinity::default()
        }
    };
    if !preferred.is_empty() {
        let field = "preferredDuringSchedulingIgnoredDuringExecution";
        if node.preferred_during_scheduling_ignored_during_execution.is_some() {
            ops.extend(preferred.iter().map(|p| add(AFFINITY.into_iter().chain([field, "-"]), p)));
        } else {
            ops.push(add(AFFINITY.into_iter().chain([field]), &preferred));
        }
    }
    if !required.is_empty() {
        // Required terms are ORed by Kubernetes: the cache expressions join every existing term
        // (ANDed within it), or make the only term.
        let field = "requiredDuringSchedulingIgnoredDuringExecution";
        let terms = node.required_during_scheduling_ignored_during_execution.map(|r| r.node_selector_terms).unwrap_or_default();
        if terms.is_empty() {
            let only = NodeSelector { node_selector_terms: vec![NodeSelectorTerm { match_expressions: Some(required), ..Default::default() }] };
            ops.push(add(AFFINITY.into_iter().chain([field]), &only));
        } else {
            for (i, term) in terms.iter().enumerate() {
                let i = i.to_string();
                let path = AFFINITY.into_iter().chain([field, "nodeSelectorTerms", i.as_str(), "matchExpressions"]);
                if term.match_expressions.is_some() {
                    let path: Vec<&str> = path.collect();
                    ops.extend(required.iter().map(|e| add(path.iter().copied().chain(["-"]), e)));
                } else {
                    ops.push(add(path, &required));
                }
            }
        }
    }
    Some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pod(extra_spec: Value, labels: Value) -> Pod {
        let mut spec = json!({"containers": [{"name": "c", "image": "x"}], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "demo"}}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(json!({"metadata": {"labels": labels}, "spec": spec})).unwrap()
    }

    /// The pod after `ops`, applied by json-patch as the API server would.
    fn apply(doc: Pod, ops: &[PatchOperation]) -> Pod {
        let mut doc = serde_json::to_value(doc).unwrap();
        json_patch::patch(&mut doc, ops).unwrap();
        serde_json::from_value(doc).unwrap()
    }

    fn value(p: &Pod) -> Value {
        serde_json::to_value(p).unwrap()
    }

    #[test]
    fn a_pod_without_a_dataset_is_left_alone() {
        assert!(affinity_patch(&pod(json!({}), json!({})), "ns", &[], false).is_none());
    }

    #[test]
    fn cache_nodes_are_preferred_or_required() {
        let p = pod(json!({}), json!({}));
        let out = apply(p.clone(), &affinity_patch(&p, "ns", &["demo".into()], false).unwrap());
        let out = value(&out);
        let pref = &out["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(pref["preference"]["matchExpressions"][0]["key"], "fluid.io/s-ns-demo");
        let asks = pod(json!({}), json!({"fluid.io/dataset.demo.sched": "required"}));
        let out = apply(asks.clone(), &affinity_patch(&asks, "ns", &["demo".into()], false).unwrap());
        let out = value(&out);
        let term = &out["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0];
        assert_eq!(term["matchExpressions"][0]["key"], "fluid.io/s-ns-demo");
    }

    #[test]
    fn a_pod_is_never_patched_twice() {
        let p = pod(json!({}), json!({}));
        let once = apply(p.clone(), &affinity_patch(&p, "ns", &["demo".into()], false).unwrap());
        assert!(affinity_patch(&once, "ns", &["demo".into()], false).is_none());
    }

    #[test]
    fn existing_affinity_is_extended_not_replaced() {
        let p = pod(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
        ]}}}}), json!({}));
        let out = apply(p.clone(), &affinity_patch(&p, "ns", &["demo".into()], true).unwrap());
        let out = value(&out);
        let terms = out["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"].as_array().unwrap().clone();
        assert_eq!(terms[0]["matchExpressions"].as_array().unwrap().len(), 2, "gpu AND cache");
        assert_eq!(terms[1]["matchExpressions"][0]["key"], "fluid.io/s-ns-demo", "every ORed term also needs the cache");
        assert_eq!(terms[1]["matchFields"][0]["key"], "metadata.name");
    }
}
