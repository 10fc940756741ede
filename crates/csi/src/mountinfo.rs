//! What is mounted where, from `/proc/self/mountinfo`, and the mount calls the node plugin
//! makes (bind, read-only remount, lazy unmount).

use std::io;
use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// `major:minor` of the mounted file system: a bind mount shares it with its source.
    pub dev: String,
    /// The directory of the file system that is mounted here (`/` unless a subtree).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub read_only: bool,
    pub fstype: String,
    /// For FUSE, the fsname.
    pub source: String,
    /// In a peer group (`shared:N`): mounts on it propagate to its peers.
    pub shared: bool,
}

impl MountInfo {
    /// The mount on top at exactly `path`, if any.
    pub fn at(path: &Path) -> Option<MountInfo> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        // Later lines are mounted over earlier ones at the same point.
        info.lines().rev().filter_map(parse).find(|m| m.mount_point == path)
    }

    /// True when `other` shows the same file system and subtree (a bind mount of it).
    pub fn same_tree(&self, other: &MountInfo) -> bool {
        self.dev == other.dev && self.root == other.root
    }
}

fn parse(line: &str) -> Option<MountInfo> {
    let (before, after) = line.split_once(" - ")?;
    let f: Vec<&str> = before.split(' ').collect();
    let a: Vec<&str> = after.split(' ').collect();
    Some(MountInfo {
        dev: f.get(2)?.to_string(),
        root: PathBuf::from(unescape(f.get(3)?)),
        mount_point: PathBuf::from(unescape(f.get(4)?)),
        read_only: f.get(5)?.split(',').any(|o| o == "ro"),
        fstype: a.first()?.to_string(),
        source: unescape(a.get(1)?),
        shared: f.iter().skip(6).any(|o| o.starts_with("shared:")),
    })
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Bind-mounts `source` at `target`, read-only if asked (a second, remounting call: the
/// kernel ignores MS_RDONLY on the first).
pub fn bind(source: &Path, target: &Path, read_only: bool) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(io::Error::from)?;
    if read_only {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Err(e) = mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
            let _ = unmount(target);
            return Err(e.into());
        }
    }
    Ok(())
}

/// Detaches the mount at `path` (lazily: a dead FUSE mount below must not block us).
pub fn unmount(path: &Path) -> io::Result<()> {
    nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_mountinfo_line() {
        let l = "36 35 0:52 /sub /mnt/with\\040space ro,relatime shared:1 - fuse.cistern cistern:default/demo ro,user_id=0";
        let m = parse(l).unwrap();
        assert_eq!(m.dev, "0:52");
        assert_eq!(m.root, Path::new("/sub"));
        assert_eq!(m.mount_point, Path::new("/mnt/with space"));
        assert!(m.read_only);
        assert_eq!(m.fstype, "fuse.cistern");
        assert_eq!(m.source, "cistern:default/demo");
    }
}
