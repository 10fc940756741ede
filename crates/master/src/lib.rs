//! The master: the Dataset's namespace (inodes, directory entries, sizes, mtimes, etags) and
//! its mount table, served to the FUSE client and the workers; plus the background count of
//! the UFS total size and file number that statuses report.

pub mod inode;
pub mod log_levels;
pub mod metrics;
pub mod namespace;
pub mod rpc;
pub mod store;
pub mod summary;
pub mod web;

pub use inode::{Ino, Inode, Kind, ROOT_INO};
pub use namespace::{Namespace, NsMount};
pub use metrics::{Figures, LevelFigures};
pub use summary::{spawn_summary, Summary, UfsSummary};

/// A metadata failure with the errno the file system answers.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct MetaError {
    pub errno: i32,
    pub message: String,
}

impl MetaError {
    pub fn not_found(name: &str) -> Self {
        MetaError { errno: libc_errno::ENOENT, message: format!("{name}: no such file or directory") }
    }
    pub fn not_dir(ino: Ino) -> Self {
        MetaError { errno: libc_errno::ENOTDIR, message: format!("inode {ino}: not a directory") }
    }
    pub fn stale(ino: Ino) -> Self {
        MetaError { errno: libc_errno::ENOENT, message: format!("inode {ino}: unknown (removed from the UFS?)") }
    }
}

impl From<cistern_ufs::UfsError> for MetaError {
    fn from(e: cistern_ufs::UfsError) -> Self {
        MetaError { errno: e.errno(), message: e.message }
    }
}

mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const ENOTDIR: i32 = 20;
}
