//! The CSI Node service, as Fluid's node plugin behaves:
//! - NodeStageVolume labels the node `fluid.io/f-<ns>-<name>=true` (the FUSE DaemonSet then
//!   runs a FUSE pod there) and waits until the FUSE mount at `fluid_path` answers;
//! - NodePublishVolume bind-mounts that mount at the pod's target (read-only for reader-only
//!   access modes or `readonly`), NodeUnpublishVolume unmounts it;
//! - NodeUnstageVolume removes the label when the runtime's `fuse.cleanPolicy` is OnDemand.
//!
//! Every call is idempotent; an incompatible repeat is ALREADY_EXISTS, a missing field
//! INVALID_ARGUMENT (naming it), publishing an unstaged volume FAILED_PRECONDITION.

use crate::labels::{fuse_label, NodeLabels};
use crate::mountinfo::{self, MountInfo};
use crate::pb;
use crate::pb::node_server::Node;
use crate::pb::volume_capability::access_mode::Mode as AccessMode;
use crate::pb::volume_capability::AccessType;
use crate::state::{CleanPolicy, StateDir, VolumeState};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

pub struct NodeService {
    pub node_id: String,
    pub state: StateDir,
    pub labels: Arc<dyn NodeLabels>,
    /// How long NodeStageVolume waits for the FUSE mount before failing (the kubelet retries).
    pub stage_timeout: Duration,
    /// CSI calls are rare; one at a time keeps state files and mounts consistent.
    lock: tokio::sync::Mutex<()>,
}

impl NodeService {
    pub fn new(node_id: String, state: StateDir, labels: Arc<dyn NodeLabels>, stage_timeout: Duration) -> NodeService {
        NodeService { node_id, state, labels, stage_timeout, lock: tokio::sync::Mutex::new(()) }
    }

    /// Re-binds publish targets whose FUSE mount was replaced (a FUSE pod restarted without
    /// the transparent takeover) or died, from the current FUSE mount; returns how many.
    pub async fn recover_once(&self) -> usize {
        let _guard = self.lock.lock().await;
        let mut fixed = 0;
        for vol in self.state.all().unwrap_or_default() {
            let Some(fuse) = live_mount(&vol.fluid_path) else { continue };
            for (target, &read_only) in &vol.targets {
                let current = MountInfo::at(target);
                let healthy = current.as_ref().is_some_and(|m| m.same_tree(&fuse)) && std::fs::read_dir(target).is_ok();
                if healthy {
                    continue;
                }
                if current.is_some() {
                    let _ = mountinfo::unmount(target);
                }
                match mountinfo::bind(&vol.fluid_path, target, read_only) {
                    Ok(()) => {
                        tracing::warn!(volume = vol.volume_id, target = %target.display(), "re-bound a publish target to the new FUSE mount");
                        fixed += 1;
                    }
                    Err(e) => tracing::warn!(target = %target.display(), error = %e, "cannot re-bind a publish target"),
                }
            }
        }
        fixed
    }
}

fn required<'a>(value: &'a str, field: &str) -> Result<&'a str, Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    Ok(value)
}

fn volume_id(value: &str) -> Result<&str, Status> {
    let id = required(value, "volume_id")?;
    if id.contains('/') || id.starts_with('.') {
        return Err(Status::invalid_argument(format!("volume_id {id:?} must not contain '/' or start with '.'")));
    }
    Ok(id)
}

fn attribute<'a>(ctx: &'a HashMap<String, String>, key: &str) -> Result<&'a str, Status> {
    ctx.get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Status::invalid_argument(format!("volume_context.{key} is required (set by the PV the operator renders)")))
}

/// The access mode, checked: a mount volume (not block) with a mode.
fn access_mode(cap: Option<&pb::VolumeCapability>) -> Result<AccessMode, Status> {
    let cap = cap.ok_or_else(|| Status::invalid_argument("volume_capability is required"))?;
    if matches!(cap.access_type, Some(AccessType::Block(_))) {
        return Err(Status::invalid_argument("volume_capability: block volumes are not supported; use a mount volume"));
    }
    let mode = cap.access_mode.as_ref().map(|m| m.mode()).unwrap_or(AccessMode::Unknown);
    if mode == AccessMode::Unknown {
        return Err(Status::invalid_argument("volume_capability.access_mode is required"));
    }
    Ok(mode)
}

fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    Status::internal(format!("{what}: {e}"))
}

/// The mount at `path` when it is there and answers.
fn live_mount(path: &Path) -> Option<MountInfo> {
    MountInfo::at(path).filter(|_| std::fs::read_dir(path).is_ok())
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(&self, r: Request<pb::NodeStageVolumeRequest>) -> Result<Response<pb::NodeStageVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = volume_id(&r.volume_id)?.to_string();
        let staging = PathBuf::from(required(&r.staging_target_path, "staging_target_path")?);
        access_mode(r.volume_capability.as_ref())?;
        let fluid_path = PathBuf::from(attribute(&r.volume_context, "fluid_path")?);
        let label = fuse_label(attribute(&r.volume_context, "runtime_namespace")?, attribute(&r.volume_context, "runtime_name")?);
        let policy_text = r.volume_context.get("fuse_clean_policy").map(String::as_str).unwrap_or("");
        let clean_policy = CleanPolicy::parse(policy_text).ok_or_else(|| {
            Status::invalid_argument(format!("volume_context.fuse_clean_policy {policy_text:?}: expected OnDemand or OnRuntimeDeleted"))
        })?;
        let mount_type = r.volume_context.get("mount_type").cloned().unwrap_or_default();
        {
            let _guard = self.lock.lock().await;
            let mut state = VolumeState { volume_id: id.clone(), fluid_path: fluid_path.clone(), staging_path: staging.clone(), label, clean_policy, targets: Default::default() };
            if let Some(old) = self.state.load(&id).map_err(|e| internal("reading the volume state", e))? {
                if old.staging_path != staging || old.fluid_path != fluid_path {
                    return Err(Status::already_exists(format!(
                        "volume {id} is already staged at {} for {}",
                        old.staging_path.display(),
                        old.fluid_path.display()
                    )));
                }
                state.targets = old.targets;
            }
            std::fs::create_dir_all(&staging).map_err(|e| internal(&format!("creating {}", staging.display()), e))?;
            self.labels.set(&self.node_id, &state.label, Some("true")).await.map_err(|e| Status::unavailable(format!("labelling node {}: {e}", self.node_id)))?;
            self.state.save(&state).map_err(|e| internal("saving the volume state", e))?;
        }
        // Not under the lock: the FUSE pod may take a while to start.
        let deadline = Instant::now() + self.stage_timeout;
        loop {
            if let Some(m) = live_mount(&fluid_path) {
                if mount_type.is_empty() || m.fstype == mount_type {
                    return Ok(Response::new(pb::NodeStageVolumeResponse {}));
                }
            }
            if Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "the FUSE mount at {} (type {}) is not ready after {:?}: is the runtime's FUSE pod running on node {}?",
                    fluid_path.display(),
                    if mount_type.is_empty() { "any" } else { &mount_type },
                    self.stage_timeout,
                    self.node_id
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn node_unstage_volume(&self, r: Request<pb::NodeUnstageVolumeRequest>) -> Result<Response<pb::NodeUnstageVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = volume_id(&r.volume_id)?;
        let staging = PathBuf::from(required(&r.staging_target_path, "staging_target_path")?);
        let _guard = self.lock.lock().await;
        let Some(state) = self.state.load(id).map_err(|e| internal("reading the volume state", e))? else {
            return Ok(Response::new(pb::NodeUnstageVolumeResponse {})); // already unstaged
        };
        if let Some(t) = state.targets.keys().find(|t| MountInfo::at(t).is_some()) {
            return Err(Status::failed_precondition(format!("volume {id} is still published at {}; unpublish it first", t.display())));
        }
        if state.clean_policy == CleanPolicy::OnDemand {
            self.labels.set(&self.node_id, &state.label, None).await.map_err(|e| Status::unavailable(format!("unlabelling node {}: {e}", self.node_id)))?;
        }
        self.state.remove(id).map_err(|e| internal("removing the volume state", e))?;
        let _ = std::fs::remove_dir(&staging);
        Ok(Response::new(pb::NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(&self, r: Request<pb::NodePublishVolumeRequest>) -> Result<Response<pb::NodePublishVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = volume_id(&r.volume_id)?;
        let target = PathBuf::from(required(&r.target_path, "target_path")?);
        required(&r.staging_target_path, "staging_target_path")?;
        let mode = access_mode(r.volume_capability.as_ref())?;
        let read_only = r.readonly || matches!(mode, AccessMode::SingleNodeReaderOnly | AccessMode::MultiNodeReaderOnly);
        let _guard = self.lock.lock().await;
        let mut state = self
            .state
            .load(id)
            .map_err(|e| internal("reading the volume state", e))?
            .ok_or_else(|| Status::failed_precondition(format!("volume {id} is not staged on node {}", self.node_id)))?;
        let fuse = live_mount(&state.fluid_path)
            .ok_or_else(|| Status::failed_precondition(format!("the FUSE mount at {} is not ready", state.fluid_path.display())))?;
        if let Some(existing) = MountInfo::at(&target) {
            if existing.same_tree(&fuse) && existing.read_only == read_only {
                return Ok(Response::new(pb::NodePublishVolumeResponse {})); // already published
            }
            return Err(Status::already_exists(format!(
                "{} is already mounted ({} {}, {}); it cannot also publish volume {id} {}",
                target.display(),
                existing.fstype,
                existing.source,
                if existing.read_only { "read-only" } else { "read-write" },
                if read_only { "read-only" } else { "read-write" }
            )));
        }
        std::fs::create_dir_all(&target).map_err(|e| internal(&format!("creating {}", target.display()), e))?;
        mountinfo::bind(&state.fluid_path, &target, read_only)
            .map_err(|e| internal(&format!("bind-mounting {} at {}", state.fluid_path.display(), target.display()), e))?;
        state.targets.insert(target, read_only);
        self.state.save(&state).map_err(|e| internal("saving the volume state", e))?;
        Ok(Response::new(pb::NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(&self, r: Request<pb::NodeUnpublishVolumeRequest>) -> Result<Response<pb::NodeUnpublishVolumeResponse>, Status> {
        let r = r.into_inner();
        let id = volume_id(&r.volume_id)?;
        let target = PathBuf::from(required(&r.target_path, "target_path")?);
        let _guard = self.lock.lock().await;
        while MountInfo::at(&target).is_some() {
            mountinfo::unmount(&target).map_err(|e| internal(&format!("unmounting {}", target.display()), e))?;
        }
        match std::fs::remove_dir(&target) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(internal(&format!("removing {}", target.display()), e)),
            _ => {}
        }
        if let Some(mut state) = self.state.load(id).map_err(|e| internal("reading the volume state", e))? {
            if state.targets.remove(&target).is_some() {
                self.state.save(&state).map_err(|e| internal("saving the volume state", e))?;
            }
        }
        Ok(Response::new(pb::NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_capabilities(&self, _r: Request<pb::NodeGetCapabilitiesRequest>) -> Result<Response<pb::NodeGetCapabilitiesResponse>, Status> {
        use pb::node_service_capability::{rpc::Type, Rpc, Type as Cap};
        let cap = pb::NodeServiceCapability { r#type: Some(Cap::Rpc(Rpc { r#type: Type::StageUnstageVolume as i32 })) };
        Ok(Response::new(pb::NodeGetCapabilitiesResponse { capabilities: vec![cap] }))
    }

    async fn node_get_info(&self, _r: Request<pb::NodeGetInfoRequest>) -> Result<Response<pb::NodeGetInfoResponse>, Status> {
        Ok(Response::new(pb::NodeGetInfoResponse { node_id: self.node_id.clone(), max_volumes_per_node: 0, accessible_topology: None }))
    }
}
