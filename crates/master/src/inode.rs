//! Inodes: what the master knows about one file or directory of the Dataset.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub type Ino = u64;
/// The root directory of every Dataset, as FUSE expects.
pub const ROOT_INO: Ino = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
}

/// One namespace entry. `mount` is the index of the Dataset mount it belongs to; `None` for
/// the directories Cistern makes up to hold several mounts (`/a` and `/b` under the root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inode {
    pub ino: Ino,
    pub parent: Ino,
    pub name: String,
    pub kind: Kind,
    pub size: u64,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
    pub etag: Option<String>,
    pub mount: Option<usize>,
    /// Path inside the mount's UFS root ("" for the mount root).
    pub ufs_path: String,
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    /// A number that changes whenever the UFS object changes (size, mtime or etag), so that a
    /// cache keyed by it never serves the old content.
    pub fn version(&self) -> u64 {
        let mut h = Fnv::new();
        h.feed(&self.size.to_le_bytes());
        h.feed(&self.mtime.0.to_le_bytes());
        h.feed(&self.mtime.1.to_le_bytes());
        h.feed(self.etag.as_deref().unwrap_or("").as_bytes());
        h.0
    }

    /// The cache key of this file's content: its mount and UFS path (stable across restarts,
    /// unlike inode numbers handed out in listing order) and its version.
    pub fn cache_key(&self) -> String {
        let mut h = Fnv::new();
        h.feed(&(self.mount.unwrap_or(usize::MAX) as u64).to_le_bytes());
        h.feed(self.ufs_path.as_bytes());
        format!("{:016x}-{:016x}", h.0, self.version())
    }
}

/// FNV-1a: stable across processes and releases, unlike std's randomized hasher.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf29ce484222325)
    }
    fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }
}

pub fn to_mtime(t: Option<SystemTime>) -> (i64, u32) {
    match t.map(|t| t.duration_since(UNIX_EPOCH)) {
        Some(Ok(d)) => (d.as_secs() as i64, d.subsec_nanos()),
        _ => (0, 0),
    }
}

pub fn from_mtime(t: (i64, u32)) -> SystemTime {
    UNIX_EPOCH + Duration::new(t.0.max(0) as u64, t.1)
}
