//! Cistern on a real Kubernetes control plane (`scripts/local-cluster.sh`): kube-apiserver with
//! Node,RBAC authorization and Pod Security admission, kube-controller-manager (garbage
//! collection, Jobs, StatefulSets, DaemonSets, service-account tokens), kube-scheduler, etcd, and
//! kwok's three fake nodes (they run no containers: kwok marks pods Running and Jobs' pods
//! Succeeded). The real kubectl and helm drive it; the operator runs as a process
//! authenticated with a token of the chart's ServiceAccount, so RBAC is exercised, not
//! bypassed. Each test works in its own namespace.
//! Time allowance: 6 minutes, the cluster's start included (builds are `local-cluster.sh build`).

#[path = "../support/mod.rs"]
mod support;

mod dataload;
mod fluid_api;
mod harness;
mod install;
mod privileges;
mod webhook;
