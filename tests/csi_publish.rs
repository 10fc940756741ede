//! The whole node path with real processes: `cistern up` mounts a Dataset with FUSE,
//! `cistern csi` (over its Unix socket) stages the volume with the PV's attributes and
//! bind-mounts it read-only into a pod's target; the pod's view reads the Dataset's bytes, and
//! keeps reading them while the FUSE daemon is SIGKILLed (the takeover keeps the mount, so the
//! bind stays valid); unpublish and unstage leave nothing behind.

mod support;

use cistern_csi::pb;
use cistern_csi::pb::node_client::NodeClient;
use cistern_csi::pb::volume_capability::{access_mode::Mode, AccessMode, AccessType, MountVolume};
use cistern_rpc::Address;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use support::*;

#[test]
fn a_dataset_is_staged_and_published_into_a_pod_target() {
    let s = Scratch::new();
    let data = s.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let content = tree::bytes(3, 5 << 20);
    std::fs::write(data.join("train.bin"), &content).unwrap();
    let yaml = dataset_yaml("csi", &format!("local://{}", data.display()), "", &s.path("mem"), "64Mi", 1);
    let file = s.write("csi.yaml", &yaml);
    let up = Up::start(&s, &file, &[], "default", "csi");

    let sock = s.path("csi/csi.sock");
    let mut csi = Command::new(cistern_bin())
        .args(["csi", "--node-id", "node-a", "--stage-timeout-secs", "5"])
        .arg("--endpoint")
        .arg(format!("unix://{}", sock.display()))
        .arg("--state-dir")
        .arg(s.path("csi-state"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(s.path("csi.err")).unwrap())
        .spawn()
        .unwrap();
    eventually(20, "the CSI socket", || sock.exists().then_some(()));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut client = rt.block_on(async { NodeClient::new(Address::Unix(sock.clone()).channel(cistern_rpc::tls::Role::Client).unwrap()) });
    let mut context = HashMap::new();
    context.insert("fluid_path".to_string(), up.mountpoint.display().to_string());
    context.insert("mount_type".to_string(), "fuse.cistern".to_string());
    context.insert("runtime_name".to_string(), "csi".to_string());
    context.insert("runtime_namespace".to_string(), "default".to_string());
    let capability = pb::VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode { mode: Mode::MultiNodeReaderOnly as i32 }),
    };
    let (staging, target) = (s.path("kubelet/staging"), s.path("kubelet/pods/p1/volumes/csi/mount"));
    rt.block_on(client.node_stage_volume(pb::NodeStageVolumeRequest {
        volume_id: "default-csi".into(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(capability.clone()),
        volume_context: context.clone(),
        ..Default::default()
    }))
    .unwrap();
    rt.block_on(client.node_publish_volume(pb::NodePublishVolumeRequest {
        volume_id: "default-csi".into(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: Some(capability),
        volume_context: context,
        ..Default::default()
    }))
    .unwrap();

    assert_eq!(std::fs::read(target.join("train.bin")).unwrap(), content, "the pod's view");
    assert!(std::fs::write(target.join("x"), "x").is_err(), "a reader-only publish is writable");
    // The FUSE daemon dies under the pod's mount: the supervisor keeps the connection.
    let held = std::fs::File::open(target.join("train.bin")).unwrap();
    for _ in 0..3 {
        up.kill9_component("fuse");
        tree::drop_page_cache(&target);
        assert_eq!(std::fs::read(target.join("train.bin")).unwrap(), content, "after a daemon kill");
    }
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 4096];
    held.read_exact_at(&mut buf, 1 << 20).unwrap();
    assert!(buf == content[1 << 20..(1 << 20) + 4096]);
    drop(held);

    let unpublish = pb::NodeUnpublishVolumeRequest { volume_id: "default-csi".into(), target_path: target.display().to_string() };
    rt.block_on(client.node_unpublish_volume(unpublish)).unwrap();
    let unstage = pb::NodeUnstageVolumeRequest { volume_id: "default-csi".into(), staging_target_path: staging.display().to_string() };
    rt.block_on(client.node_unstage_volume(unstage)).unwrap();
    assert!(!target.exists(), "the target is left behind");
    assert!(is_mounted(&up.mountpoint), "unpublishing took the Dataset's own mount down");
    let _ = csi.kill();
    let _ = csi.wait();
}
