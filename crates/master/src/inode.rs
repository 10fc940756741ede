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
        // FNV-1a: stable across processes and releases, unlike std's randomized hasher.
        let mut h: u64 = 0xcbf29ce484222325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h ^= *b as u64;
                h = h.wrapping_mul(0x100000001b3);
            }
        };
        feed(&self.size.to_le_bytes());
        feed(&self.mtime.0.to_le_bytes());
        feed(&self.mtime.1.to_le_bytes());
        feed(self.etag.as_deref().unwrap_or("").as_bytes());
        h
    }

    /// The cache key of this file's content.
    pub fn cache_key(&self) -> String {
        format!("{:016x}-{:016x}", self.ino, self.version())
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
