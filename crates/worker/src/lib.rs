//! A worker: the cache of a Dataset's data on one node, read through from the UFS.
//!
//! Reads are served block by block ([`store::BLOCK_SIZE`]): a cached block is read from its tier
//! file; a missing one is fetched from the UFS once, however many readers want it at the same
//! time (request coalescing through a shared future per block), stored, then served. A miss
//! on a block that follows a cached one looks like a sequential reader, so the next blocks are
//! fetched ahead in the background; random readers do not trigger that.

pub mod store;

use bytes::{Bytes, BytesMut};
use cistern_ufs::{Ufs, UfsError};
use futures::future::{BoxFuture, FutureExt, Shared};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
pub use store::{TierStore, BLOCK_SIZE};

/// How many blocks a sequential reader keeps in flight ahead of itself.
const READAHEAD_BLOCKS: u64 = 3;

/// What a worker needs to know of a file to read it.
#[derive(Debug, Clone)]
pub struct FileRef {
    pub ufs: Ufs,
    pub path: String,
    pub size: u64,
    /// Changes when the UFS object changes, so stale blocks are never served.
    pub key: String,
}

#[derive(Debug, thiserror::Error, Clone)]
pub enum WorkerError {
    #[error(transparent)]
    Ufs(#[from] UfsError),
    #[error("cache I/O: {0}")]
    Io(Arc<std::io::Error>),
}

impl WorkerError {
    pub fn errno(&self) -> i32 {
        match self {
            WorkerError::Ufs(e) => e.errno(),
            WorkerError::Io(e) => e.raw_os_error().unwrap_or(5),
        }
    }
}

impl From<std::io::Error> for WorkerError {
    fn from(e: std::io::Error) -> Self {
        WorkerError::Io(Arc::new(e))
    }
}

/// Bytes served, by where they came from.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub local_bytes: AtomicU64,
    pub ufs_bytes: AtomicU64,
    pub ufs_fetches: AtomicU64,
}

type Fetch = Shared<BoxFuture<'static, Result<Bytes, WorkerError>>>;

pub struct Worker {
    pub id: usize,
    store: TierStore,
    inflight: Mutex<HashMap<(String, u64), Fetch>>,
    pub counters: WorkerCounters,
}

impl Worker {
    /// Opens a worker whose cache lives in `dir`; a `persistent` (SSD/HDD) cache is re-indexed,
    /// a MEM one starts empty.
    pub fn open(id: usize, dir: &Path, quota: u64, high: f64, low: f64, persistent: bool) -> std::io::Result<Arc<Worker>> {
        Ok(Arc::new(Worker {
            id,
            store: TierStore::open(dir, quota, high, low, persistent)?,
            inflight: Mutex::default(),
            counters: WorkerCounters::default(),
        }))
    }

    pub fn cached_bytes(&self) -> u64 {
        self.store.used()
    }
    pub fn capacity(&self) -> u64 {
        self.store.quota()
    }
    pub fn cache_dir(&self) -> &Path {
        self.store.dir()
    }
    /// Cached blocks that failed their checksum (and were refetched).
    pub fn corrupt_blocks(&self) -> u64 {
        self.store.corrupt_blocks.load(Ordering::Relaxed)
    }

    /// Reads up to `len` bytes at `offset`; fewer only at the end of the file.
    pub async fn read(self: &Arc<Self>, f: &FileRef, offset: u64, len: u64) -> Result<Bytes, WorkerError> {
        let end = (offset + len).min(f.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let first = offset / BLOCK_SIZE;
        let last = (end - 1) / BLOCK_SIZE;
        if first == last {
            return self.read_in_block(f, first, offset, end).await;
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for b in first..=last {
            let part = self.read_in_block(f, b, offset.max(b * BLOCK_SIZE), end.min((b + 1) * BLOCK_SIZE)).await?;
            let short = (part.len() as u64) < end.min((b + 1) * BLOCK_SIZE) - offset.max(b * BLOCK_SIZE);
            out.extend_from_slice(&part);
            if short {
                break;
            }
        }
        Ok(out.freeze())
    }

    async fn read_in_block(self: &Arc<Self>, f: &FileRef, b: u64, start: u64, end: u64) -> Result<Bytes, WorkerError> {
        let base = b * BLOCK_SIZE;
        if let Some(data) = self.store.read_cached(&f.key, b, start - base, end - base)? {
            self.counters.local_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            return Ok(Bytes::from(data));
        }
        let sequential = b == 0 || self.store.contains(&f.key, b - 1);
        let block = self.fetch(f, b).await?;
        if sequential {
            let blocks = f.size.div_ceil(BLOCK_SIZE);
            for ahead in b + 1..(b + 1 + READAHEAD_BLOCKS).min(blocks) {
                if self.store.contains(&f.key, ahead) {
                    continue;
                }
                let fut = self.fetch(f, ahead);
                tokio::spawn(async move {
                    let _ = fut.await;
                });
            }
        }
        let s = ((start - base) as usize).min(block.len());
        let e = ((end - base) as usize).min(block.len());
        self.counters.ufs_bytes.fetch_add((e - s) as u64, Ordering::Relaxed);
        Ok(block.slice(s..e))
    }

    /// The whole block `b`, fetched once for all concurrent callers.
    fn fetch(self: &Arc<Self>, f: &FileRef, b: u64) -> Fetch {
        let id = (f.key.clone(), b);
        let mut inflight = self.inflight.lock().expect("inflight lock");
        if let Some(fut) = inflight.get(&id) {
            return fut.clone();
        }
        let me = self.clone();
        let f = f.clone();
        let fut = async move {
            let result = me.fetch_and_store(&f, b).await;
            me.inflight.lock().expect("inflight lock").remove(&(f.key.clone(), b));
            result
        }
        .boxed()
        .shared();
        inflight.insert(id, fut.clone());
        fut
    }

    async fn fetch_and_store(&self, f: &FileRef, b: u64) -> Result<Bytes, WorkerError> {
        let base = b * BLOCK_SIZE;
        let len = BLOCK_SIZE.min(f.size - base);
        // A fetch that finished between our cache miss and this call stored the block before
        // leaving `inflight`: serve that rather than fetch again.
        if let Some(data) = self.store.read_cached(&f.key, b, 0, len)? {
            return Ok(Bytes::from(data));
        }
        self.counters.ufs_fetches.fetch_add(1, Ordering::Relaxed);
        let data = f.ufs.read(&f.path, base, len).await?;
        if data.len() as u64 == len {
            if let Err(e) = self.store.insert(&f.key, b, f.size, &data) {
                tracing::warn!(worker = self.id, error = %e, "could not cache a block; serving it uncached");
            }
        }
        Ok(data)
    }
}
