//! The run directory: how `cistern get` (and scripts, and tests) find what `cistern up` serves.
//!
//! `<run-root>/<namespace>-<name>/` (or `up --run-dir`) holds `lock` (held with flock while
//! `up` runs, so a second `up` of the same Dataset is refused and a crashed one is told apart
//! from a live one), `up.pid`, one `<component>.pid` per child (`master.pid`, `worker-0.pid`,
//! `fuse.pid`), their sockets (`master.sock`, `worker-0.sock`), and `status.json`, which the
//! master rewrites atomically every second.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub const DEFAULT_RUN_ROOT: &str = "/run/cistern";

/// What `up` publishes about one Dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusFile {
    pub pid: u32,
    pub mountpoint: PathBuf,
    /// The web port (metrics, status, log level), `http://HOST:PORT`.
    #[serde(default)]
    pub web: Option<String>,
    pub dataset: serde_json::Value,
    pub runtime: serde_json::Value,
    /// With several masters: which leads (the leader writes this file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masters: Option<MastersStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MastersStatus {
    pub desired: u32,
    pub ready: u32,
    /// The leader's id: `master-<leader>.pid` in the run directory.
    pub leader: Option<u64>,
    pub term: u64,
    pub written_by: u64,
}

pub struct RunDir {
    pub path: PathBuf,
    _lock: File,
}

impl RunDir {
    /// Creates and locks the run directory of a Dataset, or says who holds it.
    pub fn acquire(path: &Path, namespace: &str, name: &str) -> Result<RunDir> {
        let path = path.to_path_buf();
        create_private_dir(&path)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("lock"))
            .with_context(|| format!("cannot open {}", path.join("lock").display()))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let pid = std::fs::read_to_string(path.join("up.pid")).unwrap_or_default();
            bail!(
                "Dataset {namespace}/{name} is already served by `cistern up` (pid {}); stop it first (Ctrl-C or kill {})",
                pid.trim(),
                pid.trim()
            );
        }
        std::fs::write(path.join("up.pid"), format!("{}\n", std::process::id()))?;
        let _ = std::fs::remove_file(path.join("status.json"));
        Ok(RunDir { path, _lock: lock })
    }

    /// Removes what `up` and its components published; the lock goes with the process.
    pub fn clear(&self) {
        let Ok(entries) = std::fs::read_dir(&self.path) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".pid") || name.ends_with(".sock") || name.starts_with("status.json") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Creates a run directory readable by its owner only (0700): it holds the components'
/// sockets and the Dataset's credentials.
pub fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).with_context(|| format!("cannot create run directory {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).with_context(|| format!("cannot chmod 700 {}", path.display()))
}

/// Replaces `dir/status.json` (0600) atomically (readers never see half a file).
pub fn write_status(dir: &Path, status: &StatusFile) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join("status.json.tmp");
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(status)?)?;
    std::fs::rename(&tmp, dir.join("status.json"))?;
    Ok(())
}

/// The statuses of every live `up` under `root`.
pub fn discover(root: &Path) -> Vec<StatusFile> {
    let Ok(dirs) = std::fs::read_dir(root) else { return vec![] };
    let mut out = Vec::new();
    for d in dirs.flatten() {
        let dir = d.path();
        if !is_locked(&dir.join("lock")) {
            continue; // nobody serves it (a crashed `up` leaves its files behind)
        }
        let Ok(text) = std::fs::read(dir.join("status.json")) else { continue };
        if let Ok(s) = serde_json::from_slice::<StatusFile>(&text) {
            out.push(s);
        }
    }
    out.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
    out
}

fn is_locked(lock: &Path) -> bool {
    let Ok(f) = File::open(lock) else { return false };
    // SAFETY: flock on an fd we own; a shared try-lock fails only while `up` holds it.
    let free = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
    !free
}
