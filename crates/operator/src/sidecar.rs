//! FUSE sidecars for pods on nodes without Cistern's node agents (virtual or serverless nodes:
//! no FUSE DaemonSet, no CSI plugin), as Fluid injects them (seed 001). A pod labelled
//! `alibabacloud.com/fluid-sidecar-target` (any value, e.g. `eci`) or
//! `serverless.fluid.io/inject: "true"` gets, for each Dataset PVC it mounts:
//! - the PVC volume replaced by an `emptyDir` that a FUSE client mounts the Dataset onto;
//! - that client as a **native sidecar** (an init container with `restartPolicy: Always`, so it
//!   starts before the application and the kubelet restarts it if it dies; inside, `cistern
//!   fuse` supervises its own daemon and takes the mount over without the application seeing
//!   an error), privileged with `Bidirectional` propagation so the mount reaches the pod, and a
//!   startup probe that holds the application until the Dataset is mounted;
//! - the application's mounts of that volume set to `HostToContainer` propagation;
//! - the Dataset's configuration (its ConfigMap) and the **client** credentials only
//!   (`ca.pem`, `client.pem`, `client.key`; never `ref.key` or the CA key).
//! The pod must be in the Dataset's namespace (the credentials Secret lives there), and its
//! namespace must allow privileged pods, as Fluid's sidecar mode requires.

use crate::host_ports::Ports;
use cistern_api::Runtime;
use serde_json::{json, Value};

/// Whether the pod asks for FUSE sidecars.
pub fn wanted(pod: &Value) -> bool {
    let labels = &pod["metadata"]["labels"];
    labels.get("alibabacloud.com/fluid-sidecar-target").is_some() || labels["serverless.fluid.io/inject"] == "true"
}

const MOUNT_DIR: &str = "/cistern/mnt";
const CONFIG_DIR: &str = "/etc/cistern/config";

/// The JSON Patch that serves each of `datasets` (name, runtime) to `pod` through a sidecar.
pub fn patch(pod: &Value, ns: &str, datasets: &[(String, Runtime)], image: &str) -> Vec<Value> {
    let mut ops = Vec::new();
    let volumes = pod["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    if pod["metadata"]["labels"].is_null() {
        ops.push(json!({"op": "add", "path": "/metadata/labels", "value": {}}));
    }
    if pod["spec"]["initContainers"].is_null() {
        ops.push(json!({"op": "add", "path": "/spec/initContainers", "value": []}));
    }
    for (name, runtime) in datasets {
        // Never twice: once served, the PVC volume is gone (an emptyDir in its place).
        let Some((i, volume)) = volumes.iter().enumerate().find(|(_, v)| v["persistentVolumeClaim"]["claimName"] == name.as_str()) else { continue };
        let volume_name = volume["name"].as_str().unwrap_or_default().to_string();
        ops.push(json!({"op": "replace", "path": format!("/spec/volumes/{i}"), "value": {"name": volume_name, "emptyDir": {}}}));
        for (c, container) in pod["spec"]["containers"].as_array().into_iter().flatten().enumerate() {
            for (m, mount) in container["volumeMounts"].as_array().into_iter().flatten().enumerate() {
                if mount["name"] == volume_name.as_str() {
                    ops.push(json!({"op": "add", "path": format!("/spec/containers/{c}/volumeMounts/{m}/mountPropagation"), "value": "HostToContainer"}));
                }
            }
        }
        let n = crate::render::Names { ns, name };
        // The Dataset's NetworkPolicy admits its own pods: the sidecar's client is one.
        // (JSON Pointer writes `/` in a key as `~1`.) Several Datasets: the last one wins, so
        // a pod with sidecars of several Datasets reaches one of them past a NetworkPolicy.
        ops.push(json!({"op": "add", "path": "/metadata/labels/fluid.io~1dataset-id", "value": n.dataset_id_label()}));
        let config = format!("cistern-config-{name}");
        let credentials = format!("cistern-credentials-{name}");
        let mut creds = crate::render::credentials_volume(&n, cistern_rpc::tls::Role::Client);
        creds["name"] = json!(credentials);
        ops.push(json!({"op": "add", "path": "/spec/volumes/-", "value": creds}));
        ops.push(json!({"op": "add", "path": "/spec/volumes/-", "value": {"name": config, "configMap": {"name": format!("{name}-cistern-config")}}}));
        let port = Ports::of(runtime).master;
        let mountpoint = format!("{MOUNT_DIR}/{volume_name}");
        ops.push(json!({"op": "add", "path": "/spec/initContainers/-", "value": {
            "name": cistern_api::names::shorten(&format!("cistern-fuse-{name}"), 63),
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "restartPolicy": "Always",
            "command": ["cistern"],
            "args": ["fuse", "-f", format!("{CONFIG_DIR}/dataset.yaml"), "--master", format!("{name}-master.{ns}.svc:{port}"),
                     "--mountpoint", mountpoint, "--run-dir", "/run/cistern", "--credentials", crate::render::CREDENTIALS_DIR],
            "securityContext": {"privileged": true},
            // The application starts once the Dataset is mounted (a native sidecar's startup
            // probe holds the next containers): the FUSE mount, not the emptyDir under it.
            "startupProbe": {
                "exec": {"command": ["sh", "-c", format!("grep -qs ' {mountpoint} fuse' /proc/self/mounts")]},
                "periodSeconds": 1,
                "failureThreshold": 120,
            },
            "volumeMounts": [
                {"name": volume_name, "mountPath": mountpoint, "mountPropagation": "Bidirectional"},
                {"name": config, "mountPath": CONFIG_DIR, "readOnly": true},
                {"name": credentials, "mountPath": crate::render::CREDENTIALS_DIR, "readOnly": true},
            ],
        }}));
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> Runtime {
        Runtime::Jindo(serde_saphyr::from_str("apiVersion: data.fluid.io/v1alpha1\nkind: JindoRuntime\nmetadata: {name: demo, namespace: ns}\nspec: {}\n").unwrap())
    }

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "demo"}}]}})
    }

    #[test]
    fn which_pods_want_a_sidecar() {
        assert!(wanted(&pod(json!({"alibabacloud.com/fluid-sidecar-target": "eci"}))));
        assert!(wanted(&pod(json!({"serverless.fluid.io/inject": "true"}))));
        assert!(!wanted(&pod(json!({"serverless.fluid.io/inject": "false"}))));
        assert!(!wanted(&pod(json!({"fuse.serverful.fluid.io/inject": "true"}))), "serverful pods use the node's FUSE");
    }

    #[test]
    fn the_patch_replaces_the_claim_and_only_once() {
        let p = pod(json!({"serverless.fluid.io/inject": "true"}));
        let ops = patch(&p, "ns", &[("demo".into(), runtime())], "img");
        let replaced = ops.iter().find(|o| o["op"] == "replace").unwrap();
        assert_eq!(replaced["value"], json!({"name": "data", "emptyDir": {}}));
        let sidecar = ops.iter().find(|o| o["path"] == "/spec/initContainers/-").unwrap();
        assert_eq!(sidecar["value"]["restartPolicy"], "Always");
        let probe = sidecar["value"]["startupProbe"]["exec"]["command"][2].as_str().unwrap();
        assert!(probe.contains(" /cistern/mnt/data fuse"), "{probe}");
        // Applied, the pod has no Dataset PVC left: a second pass adds nothing for it.
        let mut after = p.clone();
        after["spec"]["volumes"][0] = json!({"name": "data", "emptyDir": {}});
        assert!(patch(&after, "ns", &[("demo".into(), runtime())], "img").iter().all(|o| o["path"] == "/spec/initContainers"));
    }
}
