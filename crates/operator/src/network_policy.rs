//! One NetworkPolicy per Dataset: only the Dataset's own pods (master, workers, FUSE clients,
//! loader Jobs, and application pods with an injected FUSE sidecar: all labelled with its
//! `fluid.io/dataset-id`, in its namespace) reach its master's and workers' ports; the operator,
//! and Prometheus when the chart names its namespace, reach the master's web port. Everything else
//! is refused, so a pod of another tenant cannot talk to the Dataset's cache even with stolen
//! file references. Enforcement needs a CNI that implements NetworkPolicy (Calico, Cilium, ...):
//! the API server admits the object either way.

use crate::host_ports::Ports;
use crate::render::{Names, RenderOptions};
use serde_json::{json, Value};

/// The label the operator's pods carry (the chart's Deployment).
pub const OPERATOR_LABEL: (&str, &str) = ("app.kubernetes.io/component", "operator");

/// `referencing`: the namespaces the Dataset lets reference it (its annotation
/// `cistern.io/allow-references-from`; `*` for any): their pods with a FUSE sidecar of a
/// reference carry this Dataset's id too, and reach it.
pub(crate) fn network_policy(n: &Names, opts: &RenderOptions, ports: Ports, referencing: &[String]) -> Value {
    // The Dataset's own pods, and application pods the webhook gave a FUSE sidecar (it labels
    // them with the Dataset's id); same namespace, and the namespaces allowed to reference it.
    let own = json!({"podSelector": {"matchLabels": {"fluid.io/dataset-id": n.dataset_id_label()}}});
    let mut from = vec![own];
    if !referencing.is_empty() {
        let namespaces = if referencing.iter().any(|r| r == "*") {
            json!({})
        } else {
            json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": referencing}]})
        };
        from.push(json!({"namespaceSelector": namespaces, "podSelector": {"matchLabels": {"fluid.io/dataset-id": n.dataset_id_label()}}}));
    }
    let operator = json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": opts.operator_namespace}},
        "podSelector": {"matchLabels": {OPERATOR_LABEL.0: OPERATOR_LABEL.1}},
    });
    let mut ingress = vec![
        json!({"from": from, "ports": [
            {"protocol": "TCP", "port": ports.master},
            {"protocol": "TCP", "port": ports.web},
            {"protocol": "TCP", "port": ports.worker},
        ]}),
        json!({"from": [operator], "ports": [{"protocol": "TCP", "port": ports.web}]}),
    ];
    if let Some(ns) = &opts.metrics_namespace {
        // Prometheus scrapes the master's /metrics on the web port, and nothing else.
        let scraper = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}});
        ingress.push(json!({"from": [scraper], "ports": [{"protocol": "TCP", "port": ports.web}]}));
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": n.meta(format!("{}-cistern", n.name), "network-policy"),
        "spec": {
            // The Dataset's master and worker pods; FUSE pods and loader Jobs serve nothing.
            "podSelector": {"matchLabels": {"app": "cistern", "fluid.io/dataset-id": n.dataset_id_label()}},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(metrics_namespace: Option<&str>) -> Value {
        let n = Names { ns: "team-a", name: "imagenet" };
        let opts = RenderOptions { metrics_namespace: metrics_namespace.map(str::to_string), ..Default::default() };
        network_policy(&n, &opts, Ports { master: 19998, web: 19999, worker: 29999 }, &[])
    }

    #[test]
    fn prometheus_reaches_the_web_port_only_when_its_namespace_is_named() {
        let closed = policy(None);
        assert_eq!(closed["spec"]["ingress"].as_array().unwrap().len(), 2, "{closed}");
        let open = policy(Some("monitoring"));
        let rules = open["spec"]["ingress"].as_array().unwrap();
        assert_eq!(rules.len(), 3, "{open}");
        let scrape = &rules[2];
        assert_eq!(scrape["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "monitoring");
        assert_eq!(scrape["ports"], json!([{"protocol": "TCP", "port": 19999}]), "the web port and nothing else");
    }

    #[test]
    fn namespaces_allowed_to_reference_the_dataset_reach_it_with_its_label() {
        let n = Names { ns: "team-a", name: "imagenet" };
        let p = network_policy(&n, &RenderOptions::default(), Ports { master: 1, web: 2, worker: 3 }, &["team-b".into()]);
        let from = &p["spec"]["ingress"][0]["from"];
        assert_eq!(from.as_array().unwrap().len(), 2, "{p}");
        assert_eq!(from[1]["namespaceSelector"]["matchExpressions"][0]["values"], json!(["team-b"]));
        assert_eq!(from[1]["podSelector"]["matchLabels"]["fluid.io/dataset-id"], "team-a-imagenet");
        let any = network_policy(&n, &RenderOptions::default(), Ports { master: 1, web: 2, worker: 3 }, &["*".into()]);
        assert_eq!(any["spec"]["ingress"][0]["from"][1]["namespaceSelector"], json!({}));
    }
}
