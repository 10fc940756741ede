//! The mount point of a Dataset: made ready for a mount (our own dead mount from a killed run
//! is taken down), and read back from `/proc/self/mountinfo`.

use anyhow::{bail, Context, Result};
use cistern_csi::mountinfo::MountInfo;
use std::path::Path;

/// Makes sure the mount point is an empty directory that nothing is mounted on; returns
/// whether it was created here (and should be removed on exit). With `volume` (a FUSE
/// sidecar: the mount point is the pod's `emptyDir`, mounted there for this client), the
/// volume's own mount is where the Dataset goes.
pub fn prepare_mountpoint(path: &Path, fsname: &str, volume: bool) -> Result<bool> {
    // Our own dead mount in a peer group: a FUSE sidecar whose container was restarted, whose
    // volume is now a bind of the dead mount the previous container left in the pod's
    // emptyDir. Taking it down here would not reach the application's view; a new mount over
    // it propagates to every peer, so the application sees the Dataset again.
    if volume && is_dead(path, fsname) && MountInfo::at(path).is_some_and(|m| m.shared) {
        tracing::warn!("{} is a dead, shared mount of this dataset (a restarted sidecar?); mounting over it", path.display());
        return Ok(false);
    }
    // Our own mount left dead by a killed `up` (its daemon gone): take it down and go on.
    if unmount_if_dead(path, fsname)? {
        tracing::warn!("{} was a dead mount of this dataset from a killed run; unmounted it", path.display());
    }
    // Something mounted here already: refused (a stale mount, or a file system the Dataset
    // would hide), except a sidecar's volume (a FUSE mount there is another client's).
    if MountInfo::at(path).is_some_and(|m| !volume || m.fstype.starts_with("fuse")) {
        bail!(
            "{} is already a mount point (a stale mount from a crashed run?); unmount it with `umount -l {}` or choose another --mount-root",
            path.display(),
            path.display()
        );
    }
    match std::fs::read_dir(path) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("{} is not an empty directory; empty it or choose another --mount-root", path.display());
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path).with_context(|| format!("cannot create mount point {}", path.display()))?;
            Ok(true)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => bail!(
            "{} is a dead FUSE mount (transport endpoint not connected); unmount it with `umount -l {}`",
            path.display(),
            path.display()
        ),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            bail!("{} is not a directory; choose another --mount-root", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("cannot use mount point {}", path.display())),
    }
}

/// Lazily unmounts the mount of `fsname` at `path` when its daemon is gone (ENOTCONN, or
/// ECONNABORTED once the kernel aborted it); returns whether it did.
pub fn unmount_if_dead(path: &Path, fsname: &str) -> Result<bool> {
    if !is_dead(path, fsname) {
        return Ok(false);
    }
    nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)
        .with_context(|| format!("cannot unmount the dead mount {}; run `umount -l {}`", path.display(), path.display()))?;
    Ok(true)
}

/// True when the mount at `path` is one of `fsname` whose daemon is gone (ENOTCONN, or
/// ECONNABORTED once the kernel aborted it).
fn is_dead(path: &Path, fsname: &str) -> bool {
    let errno = std::fs::read_dir(path).err().and_then(|e| e.raw_os_error());
    mount_source(path).as_deref() == Some(fsname) && matches!(errno, Some(libc::ENOTCONN | libc::ECONNABORTED))
}

/// The source (for FUSE, the fsname) of the mount at `path`.
pub fn mount_source(path: &Path) -> Option<String> {
    MountInfo::at(path).map(|m| m.source)
}
