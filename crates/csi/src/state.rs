//! What the node plugin staged and published, one JSON file per volume under its state
//! directory, so NodeUnstage (which is told only the volume ID) and the recovery loop know the
//! FUSE mount, the clean policy and the publish targets, across plugin restarts.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// When the node label (and so the FUSE pod) goes away: Fluid's `fuse.cleanPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CleanPolicy {
    /// When the last volume of the Dataset is unstaged from the node.
    #[default]
    OnDemand,
    /// Only when the runtime is deleted (the operator removes the label then).
    OnRuntimeDeleted,
}

impl CleanPolicy {
    pub fn parse(text: &str) -> Option<CleanPolicy> {
        match text {
            "" | "OnDemand" => Some(CleanPolicy::OnDemand),
            "OnRuntimeDeleted" => Some(CleanPolicy::OnRuntimeDeleted),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeState {
    pub volume_id: String,
    /// The FUSE mount point on the node.
    pub fluid_path: PathBuf,
    pub staging_path: PathBuf,
    pub label: String,
    pub clean_policy: CleanPolicy,
    /// Publish target → read-only.
    pub targets: BTreeMap<PathBuf, bool>,
}

pub struct StateDir(PathBuf);

impl StateDir {
    pub fn open(dir: &Path) -> io::Result<StateDir> {
        std::fs::create_dir_all(dir)?;
        Ok(StateDir(dir.to_path_buf()))
    }

    fn path(&self, volume_id: &str) -> PathBuf {
        self.0.join(format!("{volume_id}.json"))
    }

    pub fn load(&self, volume_id: &str) -> io::Result<Option<VolumeState>> {
        match std::fs::read(self.path(volume_id)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Written to a temporary file and renamed, so a crash leaves the old or the new state.
    pub fn save(&self, state: &VolumeState) -> io::Result<()> {
        let tmp = self.0.join(format!(".{}.tmp", state.volume_id));
        std::fs::write(&tmp, serde_json::to_vec_pretty(state).map_err(io::Error::other)?)?;
        std::fs::rename(&tmp, self.path(&state.volume_id))
    }

    pub fn remove(&self, volume_id: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(volume_id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn all(&self) -> io::Result<Vec<VolumeState>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.0)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "json") {
                if let Some(id) = p.file_stem().and_then(|s| s.to_str()) {
                    out.extend(self.load(id)?);
                }
            }
        }
        Ok(out)
    }
}
