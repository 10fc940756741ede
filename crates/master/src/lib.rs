//! The master: the Dataset's namespace (inodes, directory entries, sizes, mtimes, etags) and
//! its mount table, served to the FUSE client and the workers; plus the background count of
//! the UFS total size and file number that statuses report.

pub mod browse;
pub mod inode;
pub mod listing;
pub mod log_levels;
pub mod metrics;
pub mod namespace;
pub mod raft;
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
    /// A failure that waiting may cure (no Raft leader yet): it crosses the wire as a
    /// transport failure, so clients retry it (on another master) rather than answer `errno`.
    pub retryable: bool,
    pub errno: Errno,
    pub message: String,
}

impl MetaError {
    pub fn unavailable(message: String) -> Self {
        MetaError { retryable: true, errno: Errno::Io, message }
    }
    pub fn not_found(name: &str) -> Self {
        MetaError { retryable: false, errno: Errno::NotFound, message: format!("{name}: no such file or directory") }
    }
    pub fn not_dir(ino: Ino) -> Self {
        MetaError { retryable: false, errno: Errno::NotADirectory, message: format!("inode {ino}: not a directory") }
    }
    pub fn stale(ino: Ino) -> Self {
        MetaError { retryable: false, errno: Errno::NotFound, message: format!("inode {ino}: unknown (removed from the UFS?)") }
    }
}

impl From<cistern_ufs::UfsError> for MetaError {
    fn from(e: cistern_ufs::UfsError) -> Self {
        MetaError { retryable: false, errno: e.errno(), message: e.message }
    }
}

use cistern_rpc::Errno;
