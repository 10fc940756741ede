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
    /// For a file as a client received it: the reference a worker reads it by, signed by the
    /// master (never stored; see `cistern_rpc::fileref`).
    #[serde(skip)]
    pub file_ref: Option<cistern_rpc::pb::FileRef>,
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    /// A digest that changes whenever the UFS object changes (size, mtime or ETag), so that a
    /// cache keyed by it never serves the old content. SHA-256 (truncated), since ETags are
    /// chosen by whoever writes to the bucket.
    pub fn version(&self) -> [u8; 16] {
        let etag = self.etag.as_deref().unwrap_or("");
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.size.to_le_bytes());
        ctx.update(&self.mtime.0.to_le_bytes());
        ctx.update(&self.mtime.1.to_le_bytes());
        ctx.update(&(etag.len() as u64).to_le_bytes());
        ctx.update(etag.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&ctx.finish().as_ref()[..16]);
        out
    }

    /// 24 bits of [`Inode::version`], never zero: what a FUSE node ID carries to tell the
    /// versions of one file apart (`cistern_fuse::fs::node_id`).
    pub fn version_tag(&self) -> u64 {
        let v = self.version();
        (u64::from(v[0]) | u64::from(v[1]) << 8 | u64::from(v[2]) << 16).max(1)
    }

    /// The reference a worker reads this file by, signed with `key`: its mount and UFS path
    /// (stable across restarts, unlike inode numbers handed out in listing order), size and
    /// version. `None` for directories.
    pub fn sign_ref(&self, key: &cistern_rpc::RefKey) -> Option<cistern_rpc::pb::FileRef> {
        let mount = self.mount.filter(|_| !self.is_dir())?;
        Some(key.sign_ref(cistern_rpc::pb::FileRef {
            mount: mount as u32,
            path: self.ufs_path.clone(),
            size: self.size,
            version: self.version().to_vec(),
            etag: self.etag.clone(),
            mtime_secs: self.mtime.0,
            mtime_nanos: self.mtime.1,
            mac: Vec::new(),
        }))
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
