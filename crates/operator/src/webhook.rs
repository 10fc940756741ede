//! The admission webhook's decision for a Pod (`cistern webhook`): pods that mount a Dataset's
//! PVC get node affinity toward the nodes that hold its cache (labelled
//! `fluid.io/s-<ns>-<name>=true` by the operator), preferred by default, required when the pod
//! asks (label `fluid.io/dataset.<name>.sched: required`) or the webhook is run with
//! `--require-cache-affinity`, as Fluid's webhook plugins do. A pod that mounts no Dataset gets
//! no patch at all. The answer is a JSON Patch (RFC 6902) in an AdmissionReview response.

use serde_json::{json, Value};

/// The label a pod sets to require (rather than prefer) a Dataset's cache nodes.
pub fn required_label(dataset: &str) -> String {
    format!("fluid.io/dataset.{dataset}.sched")
}

/// The names of the PVCs `pod` mounts.
pub fn claims(pod: &Value) -> Vec<String> {
    pod["spec"]["volumes"].as_array().into_iter().flatten().filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str().map(String::from)).collect()
}

/// The JSON Patch that steers `pod` (in `ns`) toward the cache of each of `datasets`; `None`
/// when there is nothing to do.
pub fn affinity_patch(pod: &Value, ns: &str, datasets: &[String], require_all: bool) -> Option<Vec<Value>> {
    // Never twice: a Dataset whose cache the pod already names is skipped.
    let already = pod["spec"]["affinity"]["nodeAffinity"].to_string();
    let datasets: Vec<&String> = datasets.iter().filter(|d| !already.contains(&format!("\"{}\"", cistern_api::names::locality_label(ns, d)))).collect();
    if datasets.is_empty() {
        return None;
    }
    let labels = &pod["metadata"]["labels"];
    let mut preferred = Vec::new();
    let mut required = Vec::new();
    for d in datasets {
        let expr = json!({"key": cistern_api::names::locality_label(ns, d), "operator": "In", "values": ["true"]});
        if require_all || labels[required_label(d)] == "required" {
            required.push(expr);
        } else {
            preferred.push(json!({"weight": 100, "preference": {"matchExpressions": [expr]}}));
        }
    }
    let mut ops = Vec::new();
    let affinity = &pod["spec"]["affinity"];
    if affinity.is_null() {
        ops.push(json!({"op": "add", "path": "/spec/affinity", "value": {}}));
    }
    let node = &affinity["nodeAffinity"];
    if node.is_null() {
        ops.push(json!({"op": "add", "path": "/spec/affinity/nodeAffinity", "value": {}}));
    }
    if !preferred.is_empty() {
        let list = &node["preferredDuringSchedulingIgnoredDuringExecution"];
        if list.is_array() {
            ops.extend(preferred.into_iter().map(|p| json!({"op": "add", "path": "/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution/-", "value": p})));
        } else {
            ops.push(json!({"op": "add", "path": "/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution", "value": preferred}));
        }
    }
    if !required.is_empty() {
        // Required terms are ORed by Kubernetes: the cache expressions join every existing term
        // (ANDed within it), or make the only term.
        let terms = &node["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
        match terms.as_array() {
            Some(list) if !list.is_empty() => {
                for (i, term) in list.iter().enumerate() {
                    let path = format!("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/{i}/matchExpressions");
                    if term["matchExpressions"].is_array() {
                        ops.extend(required.iter().map(|e| json!({"op": "add", "path": format!("{path}/-"), "value": e})));
                    } else {
                        ops.push(json!({"op": "add", "path": path, "value": required}));
                    }
                }
            }
            _ => ops.push(json!({"op": "add", "path": "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution",
                "value": {"nodeSelectorTerms": [{"matchExpressions": required}]}})),
        }
    }
    Some(ops)
}

/// The AdmissionReview answer: allowed, with `patch` when there is one.
pub fn review_response(uid: &str, patch: Option<&[Value]>) -> Value {
    use base64::Engine;
    let mut response = json!({"uid": uid, "allowed": true});
    if let Some(p) = patch {
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(p).unwrap_or_default()));
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(extra_spec: Value, labels: Value) -> Value {
        let mut spec = json!({"containers": [{"name": "c", "image": "x"}], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "demo"}}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
            s.extend(e.clone());
        }
        json!({"metadata": {"labels": labels}, "spec": spec})
    }

    fn apply(mut doc: Value, ops: &[Value]) -> Value {
        // A small JSON Patch "add" for the tests (paths with `-` append).
        for op in ops {
            let path: Vec<&str> = op["path"].as_str().unwrap().trim_start_matches('/').split('/').collect();
            let (last, parents) = path.split_last().unwrap();
            let mut at = &mut doc;
            for p in parents {
                at = if let Ok(i) = p.parse::<usize>() { &mut at[i] } else { &mut at[*p] };
            }
            if *last == "-" {
                at.as_array_mut().unwrap().push(op["value"].clone());
            } else {
                at[*last] = op["value"].clone();
            }
        }
        doc
    }

    #[test]
    fn a_pod_without_a_dataset_is_left_alone() {
        assert!(affinity_patch(&pod(json!({}), json!({})), "ns", &[], false).is_none());
    }

    #[test]
    fn cache_nodes_are_preferred_or_required() {
        let p = pod(json!({}), json!({}));
        let out = apply(p.clone(), &affinity_patch(&p, "ns", &["demo".into()], false).unwrap());
        let pref = &out["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(pref["preference"]["matchExpressions"][0]["key"], "fluid.io/s-ns-demo");
        let asks = pod(json!({}), json!({"fluid.io/dataset.demo.sched": "required"}));
        let out = apply(asks.clone(), &affinity_patch(&asks, "ns", &["demo".into()], false).unwrap());
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
        let terms = out["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"].as_array().unwrap().clone();
        assert_eq!(terms[0]["matchExpressions"].as_array().unwrap().len(), 2, "gpu AND cache");
        assert_eq!(terms[1]["matchExpressions"][0]["key"], "fluid.io/s-ns-demo", "every ORed term also needs the cache");
        assert_eq!(terms[1]["matchFields"][0]["key"], "metadata.name");
    }
}
