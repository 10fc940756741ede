//! The read path that the FUSE layer and the tools use: metadata from the master, data from the
//! worker that owns the file (chosen by inode number, so each file is cached once).

use bytes::Bytes;
use cistern_master::{Ino, Inode, MetaError, Namespace};
use cistern_worker::{FileRef, Worker};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A failure with the errno to answer and the cause for the log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub errno: i32,
    pub message: String,
}

impl From<MetaError> for ClientError {
    fn from(e: MetaError) -> Self {
        ClientError { errno: e.errno, message: e.message }
    }
}

impl From<cistern_worker::WorkerError> for ClientError {
    fn from(e: cistern_worker::WorkerError) -> Self {
        ClientError { errno: e.errno(), message: e.to_string() }
    }
}

/// Cache figures summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub cached: u64,
    pub capacity: u64,
    pub local_bytes: u64,
    pub remote_bytes: u64,
    pub ufs_bytes: u64,
}

pub struct Client {
    ns: Arc<Namespace>,
    workers: Vec<Arc<Worker>>,
}

impl Client {
    pub fn new(ns: Arc<Namespace>, workers: Vec<Arc<Worker>>) -> Client {
        assert!(!workers.is_empty(), "a client needs at least one worker");
        Client { ns, workers }
    }

    pub fn workers(&self) -> &[Arc<Worker>] {
        &self.workers
    }

    pub fn namespace(&self) -> &Arc<Namespace> {
        &self.ns
    }

    pub fn getattr(&self, ino: Ino) -> Result<Inode, ClientError> {
        Ok(self.ns.getattr(ino)?)
    }

    pub async fn lookup(&self, parent: Ino, name: &str) -> Result<Inode, ClientError> {
        Ok(self.ns.lookup(parent, name).await?)
    }

    pub async fn readdir(&self, ino: Ino) -> Result<Vec<Inode>, ClientError> {
        Ok(self.ns.readdir(ino).await?)
    }

    /// Reads up to `len` bytes at `offset` of a file.
    pub async fn read(&self, ino: Ino, offset: u64, len: u64) -> Result<Bytes, ClientError> {
        let node = self.ns.getattr(ino)?;
        let file = self.file_ref(&node)?;
        let worker = &self.workers[(ino % self.workers.len() as u64) as usize];
        Ok(worker.read(&file, offset, len).await?)
    }

    fn file_ref(&self, node: &Inode) -> Result<FileRef, ClientError> {
        let Some(mount) = node.mount.filter(|_| !node.is_dir()) else {
            return Err(ClientError { errno: 21, message: format!("{}: is a directory", node.name) });
        };
        Ok(FileRef {
            ufs: self.ns.ufs(mount).clone(),
            path: node.ufs_path.clone(),
            size: node.size,
            key: node.cache_key(),
        })
    }

    pub fn stats(&self) -> CacheStats {
        let mut s = CacheStats::default();
        for w in &self.workers {
            s.cached += w.cached_bytes();
            s.capacity += w.capacity();
            s.local_bytes += w.counters.local_bytes.load(Ordering::Relaxed);
            s.ufs_bytes += w.counters.ufs_bytes.load(Ordering::Relaxed);
        }
        s
    }
}
