//! A worker: the cache of a Dataset's data on one node, read through from the UFS.
//!
//! Reads are served block by block ([`store::BLOCK_SIZE`]) from the tiered store
//! ([`store::level::Tiers`]). A miss is fetched from the UFS once, however many readers want it
//! at the same time (request coalescing through a shared future per range), stored in the top
//! level, then served.
//!
//! How much a miss fetches depends on how the file is being read:
//! - a *sequential* reader (the miss starts a file, follows cached data, or is the third of
//!   a chain of reads each near the last: [`streams`]) gets the whole block; once it has gone through a whole block, the next [`ReadOptions::readahead_blocks`]
//!   blocks are fetched in parallel in the background, so several ranges are in flight at once;
//! - a *random* reader gets only the [`ReadOptions::random_unit`]-aligned range around its
//!   read (one 64 KiB checksum chunk by default), so a 4 KiB read of a large object does not
//!   pull 4 MiB;
//! - the first read of a file's head gets its own range first and the rest of the block
//!   behind it at once, so the first bytes do not wait for the whole block.
//!
//! Cache file I/O runs on tokio's bounded blocking pool, never on the async threads, so one
//! slow disk does not stall the process's RPCs. A cache read that fails (an I/O error, a
//! truncated file) is counted (`cache_errors`) and served from the UFS instead, as
//! mountpoint-s3 does; a path that keeps failing is taken out of service
//! ([`store::health`]).

pub mod cache;
pub mod descriptors;
mod fetch;
pub mod handoff;
pub mod peers;
pub mod rpc;
pub mod store;
mod streams;

use bytes::Bytes;
use cache::DataCache;
use cistern_rpc::CacheKey;
use cistern_ufs::{Buffer, Ufs, UfsError};
use futures::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
pub use store::level::{LevelSpec, LevelStats, Tiers};
pub use store::{LocalRange, TierStore, BLOCK_SIZE};

/// How the worker reads ahead and how much a random miss fetches.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Blocks a sequential reader keeps in flight ahead of itself.
    pub readahead_blocks: u64,
    /// Fetch unit of a random miss (a multiple of the 64 KiB checksum chunk).
    pub random_unit: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        // A random miss fetches one checksum chunk around each read: a reader whose reads
        // cluster (within a few MiB of each other) is taken for a sequential one and gets
        // whole blocks; a scattered 4 KiB read costs 64 KiB, not 256.
        ReadOptions { readahead_blocks: 8, random_unit: store::checksum::CHUNK }
    }
}

/// What a worker needs to know of a file to read it.
#[derive(Debug, Clone)]
pub struct FileRef {
    pub ufs: Ufs,
    pub path: String,
    pub size: u64,
    /// Derived by the worker from a verified reference (see `cistern_rpc::fileref`); changes
    /// when the UFS object changes, so stale blocks are never served.
    pub key: CacheKey,
    /// The version every UFS read is conditional on (ETag, else mtime and size).
    pub etag: Option<String>,
    pub mtime: Option<(i64, u32)>,
    /// The reference as the master signed it, which peers are asked by ([`peers`]); `None`
    /// for files made up in this process (tests), which are never asked of peers.
    pub signed: Option<cistern_rpc::pb::FileRef>,
}

#[derive(Debug, thiserror::Error, Clone)]
pub enum WorkerError {
    #[error(transparent)]
    Ufs(#[from] UfsError),
    #[error("cache I/O: {0}")]
    Io(#[source] Arc<std::io::Error>),
    #[error("a read of {0} bytes is larger than the {max} a worker serves at once", max = cistern_rpc::MAX_READ_LEN)]
    TooLarge(u64),
}

impl WorkerError {
    pub fn errno(&self) -> cistern_rpc::Errno {
        match self {
            WorkerError::Ufs(e) => e.errno(),
            WorkerError::Io(e) => cistern_rpc::Errno::of_io(e),
            WorkerError::TooLarge(_) => cistern_rpc::Errno::InvalidArgument,
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
    /// Cache hits for readers on this worker's node.
    pub local_bytes: AtomicU64,
    /// Cache hits for readers on other nodes.
    pub remote_bytes: AtomicU64,
    pub ufs_bytes: AtomicU64,
    pub ufs_fetches: AtomicU64,
    /// Bytes fetched from the UFS (whole fetch units, including readahead).
    pub ufs_fetched_bytes: AtomicU64,
    /// Bytes of `local_bytes` handed to clients as a place in a cache file (short-circuit).
    pub short_circuit_bytes: AtomicU64,
    /// Cache reads and writes that failed (and were served from, or left to, the UFS).
    pub cache_errors: AtomicU64,
    /// Bytes served to other workers, and bytes taken from them instead of the UFS.
    pub peer_served_bytes: AtomicU64,
    pub peer_fetched_bytes: AtomicU64,
}

/// Who asks for a read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller {
    /// Runs on this node and can read cache files by descriptor: answer with where the bytes are.
    pub short_circuit: bool,
    /// Runs on another node: its hits count as remote.
    pub remote: bool,
    /// A peer worker that had this one fetch for it ([`peers`]): served from the cache or
    /// the UFS, never from another peer.
    pub for_peer: bool,
}

/// What a read answers: the bytes, or where they are for a client that can read them there.
#[derive(Debug, Clone)]
pub enum Served {
    Bytes(Bytes),
    Local(LocalRange),
}

type Fetch = Shared<BoxFuture<'static, Result<Buffer, WorkerError>>>;
/// A range being fetched: cache key, block, start and end inside the block.
type RangeId = (CacheKey, u64, u64, u64);

pub struct Worker {
    pub id: usize,
    /// What placement ranks this worker by ([`Tiers::identity`]): it names the cache this
    /// worker holds, not the slot it runs in.
    pub identity: u64,
    /// The cache every read goes through (see [`cache`]).
    tiers: Arc<dyn DataCache>,
    /// The same cache when it is the tiered disk store (what `cistern worker` runs).
    disk: Option<Arc<Tiers>>,
    options: ReadOptions,
    /// Fetches in flight, each with whether it may wait on a peer's fetch (this worker is a
    /// replica that is not the file's owner, see [`peers`]). Reads for peers never join those,
    /// so two workers can never wait on each other.
    inflight: Mutex<HashMap<RangeId, (Fetch, bool)>>,
    /// Other workers, asked before the UFS ([`peers`]); none until set.
    peers: std::sync::OnceLock<Arc<dyn peers::PeerSource>>,
    /// The files served last, handed to their new owners if this worker leaves ([`handoff`]).
    pub recent_files: handoff::RecentFiles,
    /// The last ranges fetched, kept in memory so that the reader that caused them (and its
    /// readahead) is served without reading back and re-verifying what was just written.
    recent: Mutex<std::collections::VecDeque<(RangeId, Buffer)>>,
    /// Where the last read of each file ended (sequential detection).
    streams: streams::Streams,
    pub counters: WorkerCounters,
    /// Durations of UFS requests (reported to the master; `cistern_ufs_request_duration_seconds`).
    pub ufs_latency: cistern_rpc::latency::OpLatencies,
}


impl Worker {
    /// Opens a worker whose cache has these levels (top first); persistent (SSD/HDD) levels are
    /// re-indexed, MEM ones start empty.
    pub fn open(id: usize, levels: &[LevelSpec], options: ReadOptions) -> std::io::Result<Arc<Worker>> {
        let disk = Arc::new(Tiers::open(levels)?);
        let identity = disk.identity();
        Ok(Worker::assemble(id, identity, disk.clone(), Some(disk), options))
    }

    /// A worker over any cache: the in-memory and failure-injecting ones in tests.
    pub fn with_cache(id: usize, cache: Arc<dyn DataCache>, options: ReadOptions) -> Arc<Worker> {
        Worker::assemble(id, store::new_identity(), cache, None, options)
    }

    fn assemble(id: usize, identity: u64, tiers: Arc<dyn DataCache>, disk: Option<Arc<Tiers>>, options: ReadOptions) -> Arc<Worker> {
        Arc::new(Worker {
            id,
            identity,
            tiers,
            disk,
            options,
            inflight: Mutex::default(),
            peers: std::sync::OnceLock::new(),
            recent_files: handoff::RecentFiles::default(),
            recent: Mutex::default(),
            streams: streams::Streams::default(),
            counters: WorkerCounters::default(),
            ufs_latency: cistern_rpc::latency::OpLatencies::new(&["read"]),
        })
    }

    pub fn cached_bytes(&self) -> u64 {
        self.tiers.used()
    }
    pub fn capacity(&self) -> u64 {
        self.tiers.quota()
    }
    /// The cache, whichever it is.
    pub fn cache(&self) -> &dyn DataCache {
        &*self.tiers
    }
    /// The tiered disk store, when that is the cache.
    pub fn tiers(&self) -> Option<&Tiers> {
        self.disk.as_deref()
    }
    /// Every cache directory of this worker.
    pub fn cache_dirs(&self) -> Vec<PathBuf> {
        let Some(disk) = &self.disk else { return vec![] };
        disk.levels().iter().flat_map(|l| l.stores().iter().map(|s| s.dir().to_path_buf())).collect()
    }
    /// Cached blocks that failed their checksum (and were refetched).
    pub fn corrupt_blocks(&self) -> u64 {
        self.tiers.corrupt_blocks()
    }

    /// Checks what is cached of `len` bytes at `offset` on disk, dropping damaged blocks: a
    /// short-circuit reader found a chunk there that failed its checksum.
    pub fn recheck(&self, f: &FileRef, offset: u64, len: u64) -> Result<(), WorkerError> {
        let end = offset.saturating_add(len).min(f.size);
        if offset < end {
            self.tiers.verify_range(&f.key, offset, end)?;
        }
        Ok(())
    }

    /// Reads up to `len` bytes at `offset`; fewer only at the end of the file.
    pub async fn read(self: &Arc<Self>, f: &FileRef, offset: u64, len: u64) -> Result<Bytes, WorkerError> {
        match self.serve(f, offset, len, Caller::default()).await? {
            Served::Bytes(b) => Ok(b),
            Served::Local(_) => unreachable!("no short-circuit was asked for"),
        }
    }

    /// Reads up to `len` bytes at `offset` (fewer only at the end of the file), fetching what
    /// is missing. With `caller.short_circuit`, the answer is where the bytes are in a cache
    /// file whenever one file holds them all (the caller runs on this node), so they need not
    /// be copied to the caller.
    pub async fn serve(self: &Arc<Self>, f: &FileRef, offset: u64, len: u64, caller: Caller) -> Result<Served, WorkerError> {
        let short_circuit = caller.short_circuit;
        let forward = !caller.for_peer;
        let hits = match caller {
            Caller { for_peer: true, .. } => &self.counters.peer_served_bytes,
            Caller { remote: true, .. } => &self.counters.remote_bytes,
            _ => &self.counters.local_bytes,
        };
        let end = offset.saturating_add(len).min(f.size);
        if offset >= end {
            return Ok(Served::Bytes(Bytes::new()));
        }
        if let (Some(signed), false) = (&f.signed, caller.for_peer) {
            self.recent_files.note(&f.key, signed);
        }
        // Noted on arrival, so that the requests the kernel sends together see each other.
        let sequential_hint = self.streams.note(&f.key, offset, end) >= streams::SEQUENTIAL_LINKS;
        // A reader going on through a file keeps its readahead window full at every read, hit
        // or miss, so the fetches ahead of it never all finish before the next ones start.
        if sequential_hint && offset >= BLOCK_SIZE {
            self.read_ahead(f, offset / BLOCK_SIZE, forward);
        }
        if short_circuit {
            if let Some(local) = self.tiers.locate_range(&f.key, offset, end) {
                hits.fetch_add(end - offset, Ordering::Relaxed);
                self.counters.short_circuit_bytes.fetch_add(end - offset, Ordering::Relaxed);
                return Ok(Served::Local(local));
            }
        }
        let data = self.read_range(f, offset, end, sequential_hint, hits, forward).await?;
        if short_circuit && data.len() as u64 == end - offset {
            // Fetched and stored just now: the caller reads it from the file all the same,
            // which costs it one copy instead of the RPC's several.
            if let Some(local) = self.tiers.locate_range(&f.key, offset, end) {
                self.counters.short_circuit_bytes.fetch_add(end - offset, Ordering::Relaxed);
                return Ok(Served::Local(local));
            }
        }
        // The one copy into a single buffer, of the bytes asked for only (none when the
        // range lies in one part).
        Ok(Served::Bytes(data.to_bytes()))
    }

    /// `hits` counts the bytes served from the cache.
    async fn read_range(self: &Arc<Self>, f: &FileRef, offset: u64, end: u64, near: bool, hits: &AtomicU64, forward: bool) -> Result<Buffer, WorkerError> {
        let first = offset / BLOCK_SIZE;
        let last = (end - 1) / BLOCK_SIZE;
        if first == last {
            return self.read_in_block(f, first, offset, end, near, hits, forward).await;
        }
        let mut parts = Vec::with_capacity((last - first + 1) as usize);
        for b in first..=last {
            let part = self.read_in_block(f, b, offset.max(b * BLOCK_SIZE), end.min((b + 1) * BLOCK_SIZE), near, hits, forward).await?;
            let short = (part.len() as u64) < end.min((b + 1) * BLOCK_SIZE) - offset.max(b * BLOCK_SIZE);
            parts.push(part);
            if short {
                break;
            }
        }
        Ok(fetch::join(parts))
    }

    /// Reads `[start, end)` (file offsets) inside block `b`.
    #[allow(clippy::too_many_arguments)]
    async fn read_in_block(self: &Arc<Self>, f: &FileRef, b: u64, start: u64, end: u64, near: bool, hits: &AtomicU64, forward: bool) -> Result<Buffer, WorkerError> {
        let base = b * BLOCK_SIZE;
        let (s, e) = (start - base, end - base);
        if let Some(data) = self.recent_range(&f.key, b, s, e) {
            hits.fetch_add(data.len() as u64, Ordering::Relaxed);
            return Ok(data);
        }
        if let Some(data) = self.cached(&f.key, b, s, e).await {
            hits.fetch_add(data.len() as u64, Ordering::Relaxed);
            return Ok(Buffer::from(data));
        }
        let block_len = BLOCK_SIZE.min(f.size - base);
        // Whatever fetch in flight already covers this range is joined, so concurrent readers of
        // it cause one request however each would have been classified.
        let joined = {
            let inflight = self.inflight.lock().expect("inflight lock");
            inflight
                .iter()
                .find(|((k, rb, rs, re), (_, waits))| k == &f.key && *rb == b && *rs <= s && e <= *re && (forward || !*waits))
                .map(|((_, _, rs, _), (fut, _))| (*rs, fut.clone()))
        };
        let (unit_start, data) = if let Some((rs, fut)) = joined {
            (rs, fut.await?)
        } else if let Some(read_ahead) = self.sequential(f, b, s, near) {
            // The first read of a file's head: its own range (whole checksum chunks) is fetched
            // first and the rest of the block behind it at once, so the first bytes do not wait
            // for the whole block. The block's fetch takes the head's as one of its pieces.
            let head = e.div_ceil(store::checksum::CHUNK) * store::checksum::CHUNK;
            let head_first = b == 0 && s == 0 && head * 2 <= block_len && !self.block_in_flight(&f.key, 0);
            let (start, fut) = if head_first {
                let (start, head_fut) = self.fetch(f, 0, 0, head, forward);
                let (_, block) = self.fetch(f, 0, 0, block_len, forward);
                tokio::spawn(async move {
                    let _ = block.await;
                });
                (start, head_fut)
            } else {
                self.fetch(f, b, 0, block_len, forward)
            };
            if b == 0 && s == 0 {
                // A reader starting at a file's head: its second block is fetched alongside the
                // first (as JuiceFS's prefetch does), so a file of a few blocks does not cost a
                // round trip to the store per block in turn; a peek at the header costs one
                // block more, never the whole readahead window.
                self.read_ahead_blocks(f, 0, 1, forward);
            }
            let data = fut.await?;
            if read_ahead {
                self.read_ahead(f, b, forward);
            }
            (start, data)
        } else {
            let unit = self.options.random_unit.max(store::checksum::CHUNK);
            let (us, ue) = (s / unit * unit, e.div_ceil(unit).saturating_mul(unit).min(block_len));
            let (start, fut) = self.fetch(f, b, us, ue, forward);
            (start, fut.await?)
        };
        let from = ((s - unit_start) as usize).min(data.len());
        let to = ((e - unit_start) as usize).min(data.len());
        self.counters.ufs_bytes.fetch_add((to - from) as u64, Ordering::Relaxed);
        Ok(data.slice(from..to))
    }

    fn recent_range(&self, key: &str, b: u64, s: u64, e: u64) -> Option<Buffer> {
        let recent = self.recent.lock().expect("recent lock");
        let ((_, _, rs, _), data) = recent.iter().find(|((k, rb, rs, re), _)| k.as_str() == key && *rb == b && *rs <= s && e <= *re)?;
        Some(data.slice((s - rs) as usize..(e - rs) as usize))
    }

    fn remember(&self, id: RangeId, data: Buffer) {
        let mut recent = self.recent.lock().expect("recent lock");
        if recent.len() >= 2 * (self.options.readahead_blocks as usize + 1) {
            recent.pop_front();
        }
        recent.push_back((id, data));
    }

    /// A miss in the first block, one that starts a block after a cached one, or one of a
    /// stream of reads (`near`, see [`streams`]: the kernel sends a sequential reader's
    /// readahead as several 1 MiB requests at once, which reach us in any order) looks like a
    /// sequential reader (`Some`). The flag says whether to read ahead: only once a reader has gone past its
    /// first block, so a peek at a file's header does not pull the next 32 MiB.
    fn sequential(&self, f: &FileRef, b: u64, s: u64, near: bool) -> Option<bool> {
        let chunk = store::checksum::CHUNK;
        // Data cached just before a miss in the same block says little: random readers leave
        // 256 KiB units all over a file. A whole previous block does (two sequential readers
        // of one file defeat the position hint, not this).
        let follows = match (b, s / chunk * chunk) {
            // The head of a file: readers that start there send their first requests together
            // and out of order, so any miss in the first block takes all of it.
            (0, _) => return Some(false),
            (b, 0) => self.tiers.contains(&f.key, b - 1),
            _ => false,
        };
        (follows || near).then_some(b > 0)
    }
}
