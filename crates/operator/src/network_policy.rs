//! One NetworkPolicy per Dataset: only the Dataset's own pods (master, workers, FUSE clients,
//! loader Jobs, and application pods with an injected FUSE sidecar: all labelled with its
//! `fluid.io/dataset-id`, in its namespace) reach its master's and workers' ports; the operator,
//! and Prometheus when the chart names its namespace, reach the master's web port. Everything else
//! is refused, so a pod of another tenant cannot talk to the Dataset's cache even with stolen
//! file references. Enforcement needs a CNI that implements NetworkPolicy (Calico, Cilium, ...):
//! the API server admits the object either way.

use crate::host_ports::Ports;
use crate::objects::{match_labels, string_map};
use crate::render::{Names, RenderOptions};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label the operator's pods carry (the chart's Deployment).
pub const OPERATOR_LABEL: (&str, &str) = ("app.kubernetes.io/component", "operator");

fn tcp(port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort { protocol: Some("TCP".into()), port: Some(IntOrString::Int(port.into())), ..Default::default() }
}

/// Pods of the namespace named `ns` (its `kubernetes.io/metadata.name` label).
fn namespace_named(ns: &str) -> LabelSelector {
    match_labels(string_map([("kubernetes.io/metadata.name", ns)]))
}

/// `referencing`: the namespaces the Dataset lets reference it (its annotation
/// `cistern.io/allow-references-from`; `*` for any): their pods with a FUSE sidecar of a
/// reference carry this Dataset's id too, and reach it.
pub(crate) fn network_policy(n: &Names, opts: &RenderOptions, ports: Ports, referencing: &[String]) -> NetworkPolicy {
    // The Dataset's own pods, and application pods the webhook gave a FUSE sidecar (it labels
    // them with the Dataset's id); same namespace, and the namespaces allowed to reference it.
    let id = n.dataset_id_label();
    let own = || match_labels(string_map([("fluid.io/dataset-id", id.as_str())]));
    let mut from = vec![NetworkPolicyPeer { pod_selector: Some(own()), ..Default::default() }];
    if !referencing.is_empty() {
        let namespaces = if referencing.iter().any(|r| r == "*") {
            LabelSelector::default()
        } else {
            let within = LabelSelectorRequirement { key: "kubernetes.io/metadata.name".into(), operator: "In".into(), values: Some(referencing.to_vec()) };
            LabelSelector { match_expressions: Some(vec![within]), ..Default::default() }
        };
        from.push(NetworkPolicyPeer { namespace_selector: Some(namespaces), pod_selector: Some(own()), ..Default::default() });
    }
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(namespace_named(&opts.operator_namespace)),
        pod_selector: Some(match_labels(string_map([OPERATOR_LABEL]))),
        ..Default::default()
    };
    let mut ingress = vec![
        NetworkPolicyIngressRule { from: Some(from), ports: Some(vec![tcp(ports.master), tcp(ports.web), tcp(ports.worker)]) },
        NetworkPolicyIngressRule { from: Some(vec![operator]), ports: Some(vec![tcp(ports.web)]) },
    ];
    if let Some(ns) = &opts.metrics_namespace {
        // Prometheus scrapes the master's /metrics on the web port, and nothing else.
        let scraper = NetworkPolicyPeer { namespace_selector: Some(namespace_named(ns)), ..Default::default() };
        ingress.push(NetworkPolicyIngressRule { from: Some(vec![scraper]), ports: Some(vec![tcp(ports.web)]) });
    }
    NetworkPolicy {
        metadata: n.meta(format!("{}-cistern", n.name), "network-policy"),
        spec: Some(NetworkPolicySpec {
            // The Dataset's master and worker pods; FUSE pods and loader Jobs serve nothing.
            pod_selector: Some(match_labels(string_map([("app", "cistern"), ("fluid.io/dataset-id", id.as_str())]))),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn policy(metrics_namespace: Option<&str>) -> Value {
        let n = Names { ns: "team-a", name: "imagenet" };
        let opts = RenderOptions { metrics_namespace: metrics_namespace.map(str::to_string), ..Default::default() };
        serde_json::to_value(network_policy(&n, &opts, Ports { master: 19998, web: 19999, worker: 29999 }, &[])).unwrap()
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
        let p = serde_json::to_value(network_policy(&n, &RenderOptions::default(), Ports { master: 1, web: 2, worker: 3 }, &["team-b".into()])).unwrap();
        let from = &p["spec"]["ingress"][0]["from"];
        assert_eq!(from.as_array().unwrap().len(), 2, "{p}");
        assert_eq!(from[1]["namespaceSelector"]["matchExpressions"][0]["values"], json!(["team-b"]));
        assert_eq!(from[1]["podSelector"]["matchLabels"]["fluid.io/dataset-id"], "team-a-imagenet");
        let any = serde_json::to_value(network_policy(&n, &RenderOptions::default(), Ports { master: 1, web: 2, worker: 3 }, &["*".into()])).unwrap();
        assert_eq!(any["spec"]["ingress"][0]["from"][1]["namespaceSelector"], json!({}));
    }
}
