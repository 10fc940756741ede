//! The CSI node plugin over a real Unix socket with real mounts: a tmpfs mounted at
//! `fluid_path` stands for the runtime's FUSE mount, and publish targets are real bind mounts
//! in a temporary directory. Needs root.

use cistern_csi::pb::node_client::NodeClient;
use cistern_csi::pb::identity_client::IdentityClient;
use cistern_csi::pb::volume_capability::access_mode::Mode;
use cistern_csi::pb::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use cistern_csi::pb::{self, VolumeCapability};
use cistern_csi::state::StateDir;
use cistern_csi::{NodeService, RecordedLabels};
use cistern_rpc::Address;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Code;

const LABEL: &str = "fluid.io/f-default-demo";

struct Plugin {
    dir: tempfile::TempDir,
    node: Arc<NodeService>,
    labels: Arc<RecordedLabels>,
    client: NodeClient<Channel>,
    identity: IdentityClient<Channel>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Plugin {
    async fn start() -> Plugin {
        let dir = tempfile::tempdir().unwrap();
        let labels = Arc::new(RecordedLabels::default());
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        let node = Arc::new(NodeService::new("node-a".into(), state, labels.clone(), Duration::from_millis(500)));
        let address = Address::Unix(dir.path().join("csi.sock"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = node.clone();
        let at = address.clone();
        tokio::spawn(async move {
            cistern_csi::serve(&at, serving, Duration::from_secs(3600), async {
                let _ = stopped.await;
            })
            .await
            .unwrap()
        });
        while !dir.path().join("csi.sock").exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let channel = address.channel(cistern_rpc::tls::Role::Client).unwrap();
        Plugin { node, labels, client: NodeClient::new(channel.clone()), identity: IdentityClient::new(channel), stop: Some(stop), dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Mounts a fresh tmpfs holding `file` at `fluid` (the stand-in for the FUSE mount).
    fn mount_fuse(&self, file: &str) -> PathBuf {
        let fluid = self.path("fuse");
        std::fs::create_dir_all(&fluid).unwrap();
        nix::mount::mount(Some("tmpfs"), &fluid, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=1m")).unwrap();
        std::fs::write(fluid.join(file), file).unwrap();
        fluid
    }

    fn context(&self, policy: &str) -> HashMap<String, String> {
        let mut c = HashMap::new();
        c.insert("fluid_path".into(), self.path("fuse").display().to_string());
        c.insert("mount_type".into(), "tmpfs".into());
        c.insert("runtime_name".into(), "demo".into());
        c.insert("runtime_namespace".into(), "default".into());
        if !policy.is_empty() {
            c.insert("fuse_clean_policy".into(), policy.into());
        }
        c
    }

    async fn stage(&mut self, staging: &str, policy: &str) -> Result<(), tonic::Status> {
        let r = pb::NodeStageVolumeRequest {
            volume_id: "default-demo".into(),
            staging_target_path: self.path(staging).display().to_string(),
            volume_capability: Some(capability(Mode::MultiNodeReaderOnly)),
            volume_context: self.context(policy),
            ..Default::default()
        };
        self.client.node_stage_volume(r).await.map(drop)
    }

    async fn publish(&mut self, target: &str, mode: Mode, readonly: bool) -> Result<(), tonic::Status> {
        let r = pb::NodePublishVolumeRequest {
            volume_id: "default-demo".into(),
            staging_target_path: self.path("staging").display().to_string(),
            target_path: self.path(target).display().to_string(),
            volume_capability: Some(capability(mode)),
            readonly,
            volume_context: self.context(""),
            ..Default::default()
        };
        self.client.node_publish_volume(r).await.map(drop)
    }

    async fn unpublish(&mut self, target: &str) -> Result<(), tonic::Status> {
        let r = pb::NodeUnpublishVolumeRequest { volume_id: "default-demo".into(), target_path: self.path(target).display().to_string() };
        self.client.node_unpublish_volume(r).await.map(drop)
    }

    async fn unstage(&mut self) -> Result<(), tonic::Status> {
        let r = pb::NodeUnstageVolumeRequest { volume_id: "default-demo".into(), staging_target_path: self.path("staging").display().to_string() };
        self.client.node_unstage_volume(r).await.map(drop)
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        for p in ["t1", "t2", "fuse", "fuse"] {
            let _ = nix::mount::umount2(&self.path(p), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn capability(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

fn is_mount(p: &Path) -> bool {
    cistern_csi::mountinfo::MountInfo::at(p).is_some()
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let s = r.expect_err("expected an error");
    (s.code(), s.message().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_and_node_info() {
    let mut p = Plugin::start().await;
    let info = p.identity.get_plugin_info(pb::GetPluginInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.name, "fuse.csi.fluid.io");
    assert!(!info.vendor_version.is_empty());
    assert_eq!(p.identity.probe(pb::ProbeRequest {}).await.unwrap().into_inner().ready, Some(true));
    let caps = p.identity.get_plugin_capabilities(pb::GetPluginCapabilitiesRequest {}).await.unwrap().into_inner();
    assert!(caps.capabilities.is_empty(), "a node-only plugin advertises no controller");
    let caps = p.client.node_get_capabilities(pb::NodeGetCapabilitiesRequest {}).await.unwrap().into_inner();
    use pb::node_service_capability::{rpc::Type, Type as Cap};
    let kinds: Vec<_> = caps.capabilities.iter().filter_map(|c| match &c.r#type { Some(Cap::Rpc(r)) => Some(r.r#type()), _ => None }).collect();
    assert_eq!(kinds, vec![Type::StageUnstageVolume]);
    assert_eq!(p.client.node_get_info(pb::NodeGetInfoRequest {}).await.unwrap().into_inner().node_id, "node-a");
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_publish_unpublish_unstage_several_times() {
    let mut p = Plugin::start().await;
    p.mount_fuse("hello.txt");
    for round in 0..3 {
        p.stage("staging", "").await.unwrap();
        p.stage("staging", "").await.unwrap(); // idempotent
        assert_eq!(p.labels.get(LABEL).as_deref(), Some("true"), "round {round}: node not labelled");

        p.publish("t1", Mode::MultiNodeReaderOnly, false).await.unwrap();
        p.publish("t1", Mode::MultiNodeReaderOnly, false).await.unwrap(); // idempotent
        assert_eq!(std::fs::read_to_string(p.path("t1/hello.txt")).unwrap(), "hello.txt");
        let err = std::fs::write(p.path("t1/new"), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "a reader-only publish is writable");
        // The same target asked read-write: incompatible.
        let (c, m) = code(p.publish("t1", Mode::SingleNodeWriter, false).await);
        assert_eq!(c, Code::AlreadyExists, "{m}");
        // A second, read-write target (`readonly` false, writer mode).
        p.publish("t2", Mode::SingleNodeWriter, false).await.unwrap();
        std::fs::write(p.path("t2/written"), "w").unwrap();

        let (c, m) = code(p.unstage().await);
        assert_eq!(c, Code::FailedPrecondition, "unstaged while published: {m}");
        for t in ["t1", "t2"] {
            p.unpublish(t).await.unwrap();
            p.unpublish(t).await.unwrap(); // idempotent
            assert!(!is_mount(&p.path(t)) && !p.path(t).exists(), "round {round}: {t} left behind");
        }
        std::fs::remove_file(p.path("fuse/written")).unwrap();
        p.unstage().await.unwrap();
        p.unstage().await.unwrap(); // idempotent
        assert_eq!(p.labels.get(LABEL), None, "round {round}: OnDemand keeps the label");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_errors_the_spec_requires() {
    let mut p = Plugin::start().await;
    // Nothing mounted at fluid_path: staging waits, then says what is missing.
    let (c, m) = code(p.stage("staging", "").await);
    assert_eq!(c, Code::DeadlineExceeded, "{m}");
    assert!(m.contains("FUSE") && m.contains("node-a"), "{m}");
    p.mount_fuse("f");
    p.stage("staging", "").await.unwrap();
    let (c, m) = code(p.stage("elsewhere", "").await);
    assert_eq!(c, Code::AlreadyExists, "staged again at another path: {m}");

    let missing_id = pb::NodePublishVolumeRequest { target_path: "/x".into(), ..Default::default() };
    let (c, m) = code(p.client.node_publish_volume(missing_id).await);
    assert_eq!((c, m.contains("volume_id")), (Code::InvalidArgument, true), "{m}");
    let no_capability = pb::NodePublishVolumeRequest {
        volume_id: "default-demo".into(),
        target_path: p.path("t1").display().to_string(),
        staging_target_path: p.path("staging").display().to_string(),
        ..Default::default()
    };
    let (c, m) = code(p.client.node_publish_volume(no_capability.clone()).await);
    assert_eq!((c, m.contains("volume_capability")), (Code::InvalidArgument, true), "{m}");
    let block = pb::NodePublishVolumeRequest {
        volume_capability: Some(VolumeCapability {
            access_type: Some(AccessType::Block(BlockVolume {})),
            access_mode: Some(AccessMode { mode: Mode::MultiNodeReaderOnly as i32 }),
        }),
        ..no_capability
    };
    assert_eq!(code(p.client.node_publish_volume(block).await).0, Code::InvalidArgument);
    let mut no_path = pb::NodeStageVolumeRequest {
        volume_id: "other".into(),
        staging_target_path: p.path("s2").display().to_string(),
        volume_capability: Some(capability(Mode::MultiNodeReaderOnly)),
        volume_context: p.context(""),
        ..Default::default()
    };
    no_path.volume_context.remove("fluid_path");
    let (c, m) = code(p.client.node_stage_volume(no_path).await);
    assert_eq!((c, m.contains("fluid_path")), (Code::InvalidArgument, true), "{m}");
    let unstaged = pb::NodePublishVolumeRequest {
        volume_id: "never-staged".into(),
        target_path: p.path("t2").display().to_string(),
        staging_target_path: p.path("s3").display().to_string(),
        volume_capability: Some(capability(Mode::MultiNodeReaderOnly)),
        ..Default::default()
    };
    assert_eq!(code(p.client.node_publish_volume(unstaged).await).0, Code::FailedPrecondition);
    let bad_id = pb::NodeUnpublishVolumeRequest { volume_id: "../etc".into(), target_path: "/x".into() };
    assert_eq!(code(p.client.node_unpublish_volume(bad_id).await).0, Code::InvalidArgument);
    let (c, m) = code(p.stage("staging", "Sometimes").await);
    assert_eq!((c, m.contains("fuse_clean_policy")), (Code::InvalidArgument, true), "{m}");

    // OnRuntimeDeleted: unstaging keeps the label (the FUSE pod stays for the next pod).
    p.unstage().await.unwrap();
    p.stage("staging", "OnRuntimeDeleted").await.unwrap();
    p.unstage().await.unwrap();
    assert_eq!(p.labels.get(LABEL).as_deref(), Some("true"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_fuse_mount_is_bound_again() {
    let mut p = Plugin::start().await;
    p.mount_fuse("old.txt");
    p.stage("staging", "").await.unwrap();
    p.publish("t1", Mode::MultiNodeReaderOnly, false).await.unwrap();
    assert!(p.path("t1/old.txt").exists());
    assert_eq!(p.node.recover_once().await, 0, "a healthy target was re-bound");
    // The FUSE pod is replaced without the transparent takeover: a new mount at the same path.
    nix::mount::umount2(&p.path("fuse"), nix::mount::MntFlags::MNT_DETACH).unwrap();
    p.mount_fuse("new.txt");
    assert!(!p.path("t1/new.txt").exists(), "the target followed the new mount by itself");
    assert_eq!(p.node.recover_once().await, 1);
    assert!(p.path("t1/new.txt").exists(), "the target does not show the new mount");
    let err = std::fs::write(p.path("t1/x"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "re-bound read-write");
    p.unpublish("t1").await.unwrap();
    p.unstage().await.unwrap();
}
