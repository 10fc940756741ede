//! The worker's data cache behind one trait, in the shape of mountpoint-s3's data cache,
//! extended with what short-circuit reads and passthrough need (a cached range's place in a
//! plain file, and a read-only descriptor of a complete file):
//! - [`Tiers`](crate::store::level::Tiers): the tiered disk store (MEM/SSD/HDD levels);
//! - [`MemoryCache`]: the same contract in memory, for tests and the reference model;
//! - [`FaultyCache`]: a wrapper that injects I/O errors and slow calls, in the style of
//!   OpenDAL's fault-injection layer.
//!
//! The contract every implementation keeps: `read_cached` returns only bytes that passed
//! their checksums (a damaged block is dropped and reads as a miss), or an I/O error, which
//! the worker answers from the UFS. Every call may block on I/O: the worker makes them on
//! tokio's blocking pool.

use crate::store::checksum::CHUNK;
use crate::store::level::{LevelStats, Tiers};
use crate::store::{CacheFileHandle, LocalRange, BLOCK_SIZE};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub trait DataCache: Send + Sync + 'static {
    /// `[start, end)` of block `b` of `key` when cached and verified; `None` on a miss (a
    /// damaged block is dropped on the way).
    fn read_cached(&self, key: &str, b: u64, start: u64, end: u64) -> io::Result<Option<Bytes>>;
    /// Stores `parts`, consecutive pieces of data (a body as it arrived), at `offset` (a
    /// multiple of the checksum chunk) in block `b` of `key`, a file of `file_size` bytes;
    /// false when it was not cached (no room).
    fn insert(&self, key: &str, b: u64, file_size: u64, offset: u64, parts: &[&[u8]]) -> io::Result<bool>;
    /// True when block `b` is wholly cached (no I/O).
    fn contains(&self, key: &str, b: u64) -> bool;
    /// True when the chunks of `[start, end)` of block `b` are cached (no I/O).
    fn covers(&self, key: &str, b: u64, start: u64, end: u64) -> bool;
    /// Reads back and checks what is cached of `[start, end)` (file offsets), dropping damage.
    fn verify_range(&self, key: &str, start: u64, end: u64) -> io::Result<()>;
    /// Where `[start, end)` lies in a plain cache file, for a short-circuit reader.
    fn locate_range(&self, _key: &str, _start: u64, _end: u64) -> Option<LocalRange> {
        None
    }
    /// A read-only descriptor of `key`'s cache file (complete and verified with
    /// `complete_only`).
    fn open_cache_file(&self, _key: &str, _complete_only: bool) -> io::Result<Option<CacheFileHandle>> {
        Ok(None)
    }
    fn used(&self) -> u64;
    fn quota(&self) -> u64;
    /// Blocks found damaged (and dropped) so far.
    fn corrupt_blocks(&self) -> u64;
    /// Figures per level.
    fn stats(&self) -> Vec<LevelStats>;
    /// Bytes of `key` present on any level (no I/O): what the page's file browser shows.
    fn cached_bytes_of(&self, key: &str) -> u64;
}

impl DataCache for Tiers {
    fn read_cached(&self, key: &str, b: u64, start: u64, end: u64) -> io::Result<Option<Bytes>> {
        Tiers::read_cached(self, key, b, start, end)
    }
    fn insert(&self, key: &str, b: u64, file_size: u64, offset: u64, parts: &[&[u8]]) -> io::Result<bool> {
        Tiers::insert_parts(self, key, b, file_size, offset, parts)
    }
    fn contains(&self, key: &str, b: u64) -> bool {
        Tiers::contains(self, key, b)
    }
    fn covers(&self, key: &str, b: u64, start: u64, end: u64) -> bool {
        Tiers::covers(self, key, b, start, end)
    }
    fn verify_range(&self, key: &str, start: u64, end: u64) -> io::Result<()> {
        Tiers::verify_range(self, key, start, end)
    }
    fn locate_range(&self, key: &str, start: u64, end: u64) -> Option<LocalRange> {
        Tiers::locate_range(self, key, start, end)
    }
    fn open_cache_file(&self, key: &str, complete_only: bool) -> io::Result<Option<CacheFileHandle>> {
        Tiers::open_cache_file(self, key, complete_only)
    }
    fn used(&self) -> u64 {
        Tiers::used(self)
    }
    fn quota(&self) -> u64 {
        Tiers::quota(self)
    }
    fn corrupt_blocks(&self) -> u64 {
        Tiers::corrupt_blocks(self)
    }
    fn stats(&self) -> Vec<LevelStats> {
        Tiers::stats(self)
    }
    fn cached_bytes_of(&self, key: &str) -> u64 {
        Tiers::cached_bytes_of(self, key)
    }
}

/// One cached chunk in memory, with the checksum it was stored with.
struct MemChunk {
    data: Bytes,
    crc: u32,
}

#[derive(Default)]
struct MemInner {
    /// (key, block) → chunk index → chunk.
    blocks: HashMap<(String, u64), HashMap<u64, MemChunk>>,
    /// Least recently used first.
    lru: VecDeque<(String, u64)>,
    used: u64,
}

/// The cache contract in memory: chunks with checksums verified on every read, a quota with
/// LRU eviction of whole blocks. No files: no short-circuit, no passthrough.
pub struct MemoryCache {
    quota: u64,
    inner: Mutex<MemInner>,
    corrupt: AtomicU64,
}

impl MemoryCache {
    pub fn new(quota: u64) -> MemoryCache {
        MemoryCache { quota, inner: Mutex::default(), corrupt: AtomicU64::new(0) }
    }

    /// Flips a byte of a stored chunk of block `b` of `key`, as bit rot would (tests); false
    /// when nothing of that block is stored.
    pub fn damage(&self, key: &str, b: u64) -> bool {
        let mut inner = self.inner.lock().expect("cache lock");
        let Some(chunks) = inner.blocks.get_mut(&(key.to_string(), b)) else { return false };
        let Some(chunk) = chunks.values_mut().next() else { return false };
        let mut bytes = chunk.data.to_vec();
        bytes[0] ^= 0xff;
        chunk.data = Bytes::from(bytes);
        true
    }

    fn touch(inner: &mut MemInner, id: &(String, u64)) {
        if let Some(i) = inner.lru.iter().position(|x| x == id) {
            inner.lru.remove(i);
        }
        inner.lru.push_back(id.clone());
    }

    fn drop_block(inner: &mut MemInner, id: &(String, u64)) {
        if let Some(chunks) = inner.blocks.remove(id) {
            inner.used -= chunks.values().map(|c| c.data.len() as u64).sum::<u64>();
        }
        inner.lru.retain(|x| x != id);
    }

    fn chunk_range(start: u64, end: u64) -> std::ops::Range<u64> {
        start / CHUNK..end.div_ceil(CHUNK)
    }
}

impl DataCache for MemoryCache {
    fn read_cached(&self, key: &str, b: u64, start: u64, end: u64) -> io::Result<Option<Bytes>> {
        let mut inner = self.inner.lock().expect("cache lock");
        let id = (key.to_string(), b);
        let Some(chunks) = inner.blocks.get(&id) else { return Ok(None) };
        let mut out = Vec::with_capacity((end - start) as usize);
        for c in Self::chunk_range(start, end.max(start + 1)) {
            let Some(chunk) = chunks.get(&c) else { return Ok(None) };
            if crc32c::crc32c(&chunk.data) != chunk.crc {
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                Self::drop_block(&mut inner, &id);
                return Ok(None);
            }
            let base = c * CHUNK;
            let (s, e) = (start.max(base) - base, (end.min(base + chunk.data.len() as u64)).saturating_sub(base));
            if s > e || e > chunk.data.len() as u64 {
                return Ok(None);
            }
            out.extend_from_slice(&chunk.data[s as usize..e as usize]);
        }
        if out.len() as u64 != end - start {
            return Ok(None);
        }
        Self::touch(&mut inner, &id);
        Ok(Some(Bytes::from(out)))
    }

    fn insert(&self, key: &str, b: u64, file_size: u64, offset: u64, parts: &[&[u8]]) -> io::Result<bool> {
        let data = parts.concat(); // a test twin: the copy does not matter
        let len = data.len() as u64;
        let block_len = BLOCK_SIZE.min(file_size.saturating_sub(b * BLOCK_SIZE));
        if len > self.quota || offset % CHUNK != 0 || offset + len > block_len {
            return Ok(false);
        }
        let mut inner = self.inner.lock().expect("cache lock");
        let id = (key.to_string(), b);
        while inner.used + len > self.quota {
            let Some(victim) = inner.lru.front().cloned() else { break };
            Self::drop_block(&mut inner, &victim);
        }
        let mut added = 0;
        let chunks = inner.blocks.entry(id.clone()).or_default();
        for (i, piece) in data.chunks(CHUNK as usize).enumerate() {
            let c = offset / CHUNK + i as u64;
            // A chunk is whole unless it ends the block.
            if piece.len() as u64 != CHUNK && offset + (i as u64 + 1) * CHUNK < block_len {
                continue;
            }
            if !chunks.contains_key(&c) {
                added += piece.len() as u64;
                chunks.insert(c, MemChunk { data: Bytes::copy_from_slice(piece), crc: crc32c::crc32c(piece) });
            }
        }
        inner.used += added;
        Self::touch(&mut inner, &id);
        Ok(true)
    }

    fn contains(&self, key: &str, b: u64) -> bool {
        // Whole blocks only matter for sequential detection: a block counts when its first
        // and last chunks are here.
        let inner = self.inner.lock().expect("cache lock");
        inner.blocks.get(&(key.to_string(), b)).is_some_and(|c| c.contains_key(&0) && c.len() as u64 == BLOCK_SIZE / CHUNK)
    }

    fn covers(&self, key: &str, b: u64, start: u64, end: u64) -> bool {
        let inner = self.inner.lock().expect("cache lock");
        inner.blocks.get(&(key.to_string(), b)).is_some_and(|chunks| Self::chunk_range(start, end).all(|c| chunks.contains_key(&c)))
    }

    fn verify_range(&self, key: &str, start: u64, end: u64) -> io::Result<()> {
        for b in start / BLOCK_SIZE..=(end.max(start + 1) - 1) / BLOCK_SIZE {
            let base = b * BLOCK_SIZE;
            let (s, e) = (start.max(base) - base, end.min(base + BLOCK_SIZE) - base);
            if self.covers(key, b, s, e) {
                self.read_cached(key, b, s, e)?;
            }
        }
        Ok(())
    }

    fn used(&self) -> u64 {
        self.inner.lock().expect("cache lock").used
    }
    fn quota(&self) -> u64 {
        self.quota
    }
    fn corrupt_blocks(&self) -> u64 {
        self.corrupt.load(Ordering::Relaxed)
    }
    fn stats(&self) -> Vec<LevelStats> {
        vec![LevelStats { medium: "MEM".into(), used: self.used(), on_disk: self.used(), quota: self.quota, ..Default::default() }]
    }
    fn cached_bytes_of(&self, key: &str) -> u64 {
        let inner = self.inner.lock().expect("cache lock");
        inner.blocks.iter().filter(|((k, _), _)| k == key).flat_map(|(_, chunks)| chunks.values()).map(|c| c.data.len() as u64).sum()
    }
}

/// Wraps a cache and injects faults: the next `n` reads or writes fail with EIO, and every
/// call takes at least `delay` (a slow or stalled disk).
pub struct FaultyCache<C> {
    pub inner: C,
    fail_reads: AtomicU32,
    fail_writes: AtomicU32,
    delay_ms: AtomicU64,
}

impl<C: DataCache> FaultyCache<C> {
    pub fn new(inner: C) -> FaultyCache<C> {
        FaultyCache { inner, fail_reads: AtomicU32::new(0), fail_writes: AtomicU32::new(0), delay_ms: AtomicU64::new(0) }
    }
    pub fn fail_next_reads(&self, n: u32) {
        self.fail_reads.store(n, Ordering::Relaxed);
    }
    pub fn fail_next_writes(&self, n: u32) {
        self.fail_writes.store(n, Ordering::Relaxed);
    }
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    fn pause(&self) {
        let ms = self.delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }

    fn take(counter: &AtomicU32) -> bool {
        counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
    }
}

fn injected() -> io::Error {
    io::Error::from_raw_os_error(5)
}

impl<C: DataCache> DataCache for FaultyCache<C> {
    fn read_cached(&self, key: &str, b: u64, start: u64, end: u64) -> io::Result<Option<Bytes>> {
        self.pause();
        if Self::take(&self.fail_reads) {
            return Err(injected());
        }
        self.inner.read_cached(key, b, start, end)
    }
    fn insert(&self, key: &str, b: u64, file_size: u64, offset: u64, parts: &[&[u8]]) -> io::Result<bool> {
        self.pause();
        if Self::take(&self.fail_writes) {
            return Err(injected());
        }
        self.inner.insert(key, b, file_size, offset, parts)
    }
    fn contains(&self, key: &str, b: u64) -> bool {
        self.inner.contains(key, b)
    }
    fn covers(&self, key: &str, b: u64, start: u64, end: u64) -> bool {
        self.inner.covers(key, b, start, end)
    }
    fn verify_range(&self, key: &str, start: u64, end: u64) -> io::Result<()> {
        self.pause();
        self.inner.verify_range(key, start, end)
    }
    fn locate_range(&self, key: &str, start: u64, end: u64) -> Option<LocalRange> {
        self.inner.locate_range(key, start, end)
    }
    fn open_cache_file(&self, key: &str, complete_only: bool) -> io::Result<Option<CacheFileHandle>> {
        self.pause();
        self.inner.open_cache_file(key, complete_only)
    }
    fn used(&self) -> u64 {
        self.inner.used()
    }
    fn quota(&self) -> u64 {
        self.inner.quota()
    }
    fn corrupt_blocks(&self) -> u64 {
        self.inner.corrupt_blocks()
    }
    fn stats(&self) -> Vec<LevelStats> {
        self.inner.stats()
    }
    fn cached_bytes_of(&self, key: &str) -> u64 {
        self.inner.cached_bytes_of(key)
    }
}

impl<C: DataCache> DataCache for std::sync::Arc<C> {
    fn read_cached(&self, key: &str, b: u64, start: u64, end: u64) -> io::Result<Option<Bytes>> {
        (**self).read_cached(key, b, start, end)
    }
    fn insert(&self, key: &str, b: u64, file_size: u64, offset: u64, parts: &[&[u8]]) -> io::Result<bool> {
        (**self).insert(key, b, file_size, offset, parts)
    }
    fn contains(&self, key: &str, b: u64) -> bool {
        (**self).contains(key, b)
    }
    fn covers(&self, key: &str, b: u64, start: u64, end: u64) -> bool {
        (**self).covers(key, b, start, end)
    }
    fn verify_range(&self, key: &str, start: u64, end: u64) -> io::Result<()> {
        (**self).verify_range(key, start, end)
    }
    fn locate_range(&self, key: &str, start: u64, end: u64) -> Option<LocalRange> {
        (**self).locate_range(key, start, end)
    }
    fn open_cache_file(&self, key: &str, complete_only: bool) -> io::Result<Option<CacheFileHandle>> {
        (**self).open_cache_file(key, complete_only)
    }
    fn used(&self) -> u64 {
        (**self).used()
    }
    fn quota(&self) -> u64 {
        (**self).quota()
    }
    fn corrupt_blocks(&self) -> u64 {
        (**self).corrupt_blocks()
    }
    fn stats(&self) -> Vec<LevelStats> {
        (**self).stats()
    }
    fn cached_bytes_of(&self, key: &str) -> u64 {
        (**self).cached_bytes_of(key)
    }
}
