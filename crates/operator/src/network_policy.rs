//! One NetworkPolicy per Dataset: only the Dataset's own pods (master, workers, FUSE clients,
//! loader Jobs, and application pods with an injected FUSE sidecar: all labelled with its
//! `fluid.io/dataset-id`, in its namespace) reach its master's and workers' ports, and the operator reaches the master's web port (its status figures). Everything else
//! is refused, so a pod of another tenant cannot talk to the Dataset's cache even with stolen
//! file references. Enforcement needs a CNI that implements NetworkPolicy (Calico, Cilium, ...):
//! the API server admits the object either way.

use crate::host_ports::Ports;
use crate::render::{Names, RenderOptions};
use serde_json::{json, Value};

/// The label the operator's pods carry (the chart's Deployment).
pub const OPERATOR_LABEL: (&str, &str) = ("app.kubernetes.io/component", "operator");

pub(crate) fn network_policy(n: &Names, opts: &RenderOptions, ports: Ports) -> Value {
    // The Dataset's own pods, and application pods the webhook gave a FUSE sidecar (it labels
    // them with the Dataset's id); same namespace only.
    let own = json!({"podSelector": {"matchLabels": {"fluid.io/dataset-id": n.dataset_id_label()}}});
    let operator = json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": opts.operator_namespace}},
        "podSelector": {"matchLabels": {OPERATOR_LABEL.0: OPERATOR_LABEL.1}},
    });
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": n.meta(format!("{}-cistern", n.name), "network-policy"),
        "spec": {
            // The Dataset's master and worker pods; FUSE pods and loader Jobs serve nothing.
            "podSelector": {"matchLabels": {"app": "cistern", "fluid.io/dataset-id": n.dataset_id_label()}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [own], "ports": [
                    {"protocol": "TCP", "port": ports.master},
                    {"protocol": "TCP", "port": ports.web},
                    {"protocol": "TCP", "port": ports.worker},
                ]},
                {"from": [operator], "ports": [{"protocol": "TCP", "port": ports.web}]},
            ],
        },
    })
}
