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
//! A claim of a reference Dataset (`dataset://<ns>/<name>`) in another namespace is served by
//! the physical Dataset's master and workers, with the configuration and client credentials
//! the operator copies into the reference's namespace (`crate::reference`). The pod's
//! namespace must allow privileged pods, as Fluid's sidecar mode requires.

use crate::host_ports::Ports;
use crate::objects::mount;
use crate::webhook::{add, pointer};
use cistern_api::Runtime;
use json_patch::{PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EmptyDirVolumeSource, ExecAction, Pod, Probe, SecurityContext, Volume, VolumeMount,
};
use std::collections::BTreeMap;

/// Whether the pod asks for FUSE sidecars.
pub fn wanted(pod: &Pod) -> bool {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    labels.contains_key("alibabacloud.com/fluid-sidecar-target") || labels.get("serverless.fluid.io/inject").map(String::as_str) == Some("true")
}

const MOUNT_DIR: &str = "/cistern/mnt";
const CONFIG_DIR: &str = "/etc/cistern/config";

/// A Dataset a pod's claim names, as a sidecar serves it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The claim: the Dataset's name in the pod's namespace.
    pub claim: String,
    /// The runtime that serves it (the physical Dataset's, for a reference).
    pub runtime: Runtime,
    /// For a reference, the physical Dataset (namespace, name).
    pub physical: Option<(String, String)>,
}

impl Target {
    pub fn own(claim: &str, runtime: Runtime) -> Target {
        Target { claim: claim.to_string(), runtime, physical: None }
    }
}

/// The JSON Patch that serves each of `datasets` to `pod` (in namespace `ns`) through a sidecar.
pub fn patch(pod: &Pod, ns: &str, datasets: &[Target], image: &str) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let volumes = spec.volumes.clone().unwrap_or_default();
    if pod.metadata.labels.is_none() {
        ops.push(add(["metadata", "labels"], &BTreeMap::<String, String>::new()));
    }
    if spec.init_containers.is_none() {
        ops.push(add(["spec", "initContainers"], &Vec::<Container>::new()));
    }
    for t in datasets {
        let (name, runtime) = (&t.claim, &t.runtime);
        // Who serves it: the physical Dataset's master; its configuration and credentials are
        // the Dataset's own in its namespace, or the reference's copies in another one.
        let (serving_ns, serving) = t.physical.as_ref().map_or((ns, name.as_str()), |(pns, pname)| (pns.as_str(), pname.as_str()));
        let copies = if serving_ns == ns { serving } else { name.as_str() };
        // Never twice: once served, the PVC volume is gone (an emptyDir in its place).
        let claimed = |v: &Volume| v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == *name);
        let Some((i, volume)) = volumes.iter().enumerate().find(|(_, v)| claimed(v)) else { continue };
        let volume_name = volume.name.clone();
        let empty = Volume { name: volume_name.clone(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() };
        let value = serde_json::to_value(&empty).expect("a Volume serializes");
        let i = i.to_string();
        ops.push(PatchOperation::Replace(ReplaceOperation { path: pointer(["spec", "volumes", i.as_str()]), value }));
        for (c, container) in spec.containers.iter().enumerate() {
            for (m, mount) in container.volume_mounts.iter().flatten().enumerate() {
                if mount.name == volume_name {
                    let (c, m) = (c.to_string(), m.to_string());
                    ops.push(add(["spec", "containers", c.as_str(), "volumeMounts", m.as_str(), "mountPropagation"], &"HostToContainer"));
                }
            }
        }
        let n = crate::render::Names { ns: serving_ns, name: serving };
        // The Dataset's NetworkPolicy admits its own pods: the sidecar's client is one.
        // Several Datasets: the last one wins, so a pod with sidecars of several Datasets
        // reaches one of them past a NetworkPolicy.
        ops.push(add(["metadata", "labels", "fluid.io/dataset-id"], &n.dataset_id_label()));
        let config = format!("cistern-config-{name}");
        let credentials = format!("cistern-credentials-{name}");
        let creds = Volume {
            name: credentials.clone(),
            ..crate::render::credentials_volume(&crate::render::Names { ns, name: copies }, cistern_rpc::tls::Role::Client)
        };
        ops.push(add(["spec", "volumes", "-"], &creds));
        let config_map = ConfigMapVolumeSource { name: format!("{copies}-cistern-config"), ..Default::default() };
        ops.push(add(["spec", "volumes", "-"], &Volume { name: config.clone(), config_map: Some(config_map), ..Default::default() }));
        let port = Ports::of(runtime).master;
        let mountpoint = format!("{MOUNT_DIR}/{volume_name}");
        let args = [
            "fuse",
            "-f",
            &format!("{CONFIG_DIR}/dataset.yaml"),
            "--master",
            &format!("{serving}-master.{serving_ns}.svc:{port}"),
            "--mountpoint",
            &mountpoint,
            "--mountpoint-is-volume",
            "--run-dir",
            "/run/cistern",
            "--credentials",
            crate::render::CREDENTIALS_DIR,
        ];
        let sidecar = Container {
            name: cistern_api::names::shorten(&format!("cistern-fuse-{name}"), 63),
            image: Some(image.into()),
            image_pull_policy: Some("IfNotPresent".into()),
            restart_policy: Some("Always".into()),
            command: Some(vec!["cistern".into()]),
            args: Some(args.iter().map(|a| a.to_string()).collect()),
            security_context: Some(SecurityContext { privileged: Some(true), ..Default::default() }),
            // The application starts once the Dataset is mounted (a native sidecar's startup
            // probe holds the next containers): the FUSE mount, not the emptyDir under it.
            startup_probe: Some(Probe {
                exec: Some(ExecAction { command: Some(vec!["sh".into(), "-c".into(), format!("grep -qs ' {mountpoint} fuse' /proc/self/mounts")]) }),
                period_seconds: Some(1),
                failure_threshold: Some(120),
                ..Default::default()
            }),
            volume_mounts: Some(vec![
                VolumeMount { mount_propagation: Some("Bidirectional".into()), ..mount(&volume_name, mountpoint.clone(), false) },
                mount(&config, CONFIG_DIR, true),
                mount(&credentials, crate::render::CREDENTIALS_DIR, true),
            ]),
            ..Default::default()
        };
        ops.push(add(["spec", "initContainers", "-"], &sidecar));
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn runtime() -> Runtime {
        Runtime::Jindo(serde_saphyr::from_str("apiVersion: data.fluid.io/v1alpha1\nkind: JindoRuntime\nmetadata: {name: demo, namespace: ns}\nspec: {}\n").unwrap())
    }

    fn pod(labels: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "demo"}}]}})).unwrap()
    }

    /// The operations as the API server reads them.
    fn ops_of(ops: Vec<PatchOperation>) -> Vec<Value> {
        ops.into_iter().map(|o| serde_json::to_value(o).unwrap()).collect()
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
        let ops = ops_of(patch(&p, "ns", &[Target::own("demo", runtime())], "img"));
        let replaced = ops.iter().find(|o| o["op"] == "replace").unwrap();
        assert_eq!(replaced["value"], json!({"name": "data", "emptyDir": {}}));
        let sidecar = ops.iter().find(|o| o["path"] == "/spec/initContainers/-").unwrap();
        assert_eq!(sidecar["value"]["restartPolicy"], "Always");
        let probe = sidecar["value"]["startupProbe"]["exec"]["command"][2].as_str().unwrap();
        assert!(probe.contains(" /cistern/mnt/data fuse"), "{probe}");
        // Applied, the pod has no Dataset PVC left: a second pass adds nothing for it.
        let mut after = p.clone();
        after.spec.as_mut().unwrap().volumes = Some(vec![serde_json::from_value(json!({"name": "data", "emptyDir": {}})).unwrap()]);
        assert!(ops_of(patch(&after, "ns", &[Target::own("demo", runtime())], "img")).iter().all(|o| o["path"] == "/spec/initContainers"));
    }

    #[test]
    fn a_reference_in_another_namespace_is_served_by_the_physical_master_with_copies() {
        let p = pod(json!({"serverless.fluid.io/inject": "true"}));
        let t = Target { claim: "demo".into(), runtime: runtime(), physical: Some(("team-a".into(), "imagenet".into())) };
        let ops = ops_of(patch(&p, "team-b", &[t], "img"));
        let sidecar = &ops.iter().find(|o| o["path"] == "/spec/initContainers/-").unwrap()["value"];
        let args: Vec<&str> = sidecar["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(args.windows(2).any(|w| w[0] == "--master" && w[1].starts_with("imagenet-master.team-a.svc:")), "{args:?}");
        let added: Vec<&Value> = ops.iter().filter(|o| o["path"] == "/spec/volumes/-").map(|o| &o["value"]).collect();
        assert!(added.iter().any(|v| v["secret"]["secretName"] == "demo-cistern-credentials"), "the copy in the pod's namespace: {added:?}");
        assert!(added.iter().any(|v| v["configMap"]["name"] == "demo-cistern-config"), "{added:?}");
        let label = ops.iter().find(|o| o["path"] == "/metadata/labels/fluid.io~1dataset-id").unwrap();
        assert_eq!(label["value"], "team-a-imagenet", "the physical Dataset's NetworkPolicy admits it");
    }
}
