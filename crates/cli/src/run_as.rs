//! `runAs` on one machine (`cistern up`): the master and workers run as the runtime's user and
//! group, as in their pods on Kubernetes (`cistern_operator::run_as`). `up` itself stays root:
//! it hands the directories those processes write over to the user first (the run directory,
//! `namespace.meta-dir`, and the Dataset's own directory of each tier,
//! `<path>/cistern/<ns>-<name>`), and the FUSE daemon stays root to mount, trusting workers
//! that run as the run directory's owner (`cistern_rpc::descriptors::peer_is_trusted`).

use anyhow::{anyhow, bail, Context, Result};
use cistern_api::DatasetPlan;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The directories a master and its workers write, on this machine.
fn written_dirs(plan: &DatasetPlan, run_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![run_dir.to_path_buf()];
    dirs.extend((0..plan.masters.max(1)).map(|i| plan.master_meta_dir(i)));
    for tier in &plan.tiers {
        dirs.extend(tier.paths.iter().map(|p| p.join("cistern").join(format!("{}-{}", plan.namespace, plan.name))));
    }
    dirs
}

/// Checks `runAs` and hands the directories over; returns the `(uid, gid)` to run as.
pub fn prepare(plan: &DatasetPlan, run_dir: &Path) -> Result<Option<(u32, u32)>> {
    let Some((uid, gid)) = cistern_operator::run_as::user(plan).map_err(|e| anyhow!(e))? else { return Ok(None) };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("spec.runAs: running the master and workers as uid {uid} needs `cistern up` to run as root; run it as root, or remove runAs to run them as yourself");
    }
    for dir in written_dirs(plan, run_dir) {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let top = std::fs::symlink_metadata(&dir)?;
        chown_tree(&dir, top.dev(), uid, gid).with_context(|| format!("spec.runAs: cannot hand {} to {uid}:{gid}", dir.display()))?;
    }
    Ok(Some((uid, gid)))
}

/// `chown -R` without following symbolic links or crossing into other file systems (a FUSE
/// mount inside is left alone), and only where the owner differs.
fn chown_tree(path: &Path, dev: u64, uid: u32, gid: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.dev() != dev {
        return Ok(());
    }
    if (meta.uid(), meta.gid()) != (uid, gid) {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), dev, uid, gid)?;
        }
    }
    Ok(())
}
