//! A cache tier on one directory: sparse per-file cache files with a block map, a quota, and
//! LRU eviction between watermarks, optionally demoting what it evicts to a lower level.
//!
//! Each cached file is one ordinary file under the tier's directory, named by its cache key
//! (path and content version). Blocks of [`BLOCK_SIZE`] are written at their own offset, so a
//! fully cached file is a plain copy of the object that the kernel can later read directly
//! (passthrough, short-circuit). A block may be present in part (a random reader fetches only
//! the chunks it needs; see [`checksum`]). Evicting a block punches a hole in its file. Every
//! chunk carries a checksum verified on each read: a corrupt block is dropped and the caller
//! refetches it, so bad bytes are never served.
//!
//! A complete file is never punched: when one of its blocks is evicted or found corrupt, the
//! whole file is dropped by unlinking it. A reader that the kernel serves from the file
//! directly (FUSE passthrough holds it open) thus keeps every byte until it closes; the disk
//! space of such a file is freed at its last close.
//!
//! Space: `used` counts the bytes of present chunks plus those being written (reserved before
//! the write), so it never passes the quota. Once `used` passes `high × quota`, least recently
//! used blocks are evicted until it is under `low × quota`; with a [`Lower`] level set, an
//! evicted block's verified chunks are handed to it (demotion) instead of being lost.
//!
//! Persistence: a MEM tier starts empty (its directory is wiped: RAM does not survive a
//! restart anyway). An SSD/HDD tier re-indexes what its checksum records say is on disk, so a
//! restarted worker serves it without going back to the UFS.
//!
//! Consistency: reads of present chunks and writes of new ones (with their marking as present)
//! hold `io_gate` shared; punching holds it exclusively, so a block is never punched under a
//! reader's pread nor between a writer's pwrite and its record.

pub mod checksum;
mod evict;
mod held;
pub mod health;
pub mod identity;
pub mod level;
mod reindex;
mod write;
mod locate;

pub use identity::new_identity;
pub use locate::{CacheFileHandle, LocalRange};

use bytes::Bytes;
use checksum::{BlockSums, CHUNK};
use cistern_rpc::CacheKey;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

pub const BLOCK_SIZE: u64 = 4 << 20;
const SIDECAR: &str = ".crc";

type BlockId = (Arc<str>, u64);

/// Creates `dir` (and missing parents) readable by the worker's user only: cached bytes are
/// the Dataset's data, which only the mount's own permission checks may hand out.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Opens a cache file for reading and writing, 0600, never through a symbolic link.
fn open_private(path: &Path, create: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().read(true).write(true).create(create).truncate(false).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Where a tier sends the blocks it evicts: the next level down.
pub trait Lower: Send + Sync {
    /// Takes `data`, at `offset` inside block `b` of `key` (a file of `file_size` bytes).
    fn demote(&self, key: &str, b: u64, file_size: u64, offset: u64, data: &[u8]);
}

struct CachedFile {
    file: Arc<File>,
    /// The file's inode number: short-circuit readers tell a recreated file from the one they
    /// hold open by it.
    id: u64,
    sidecar: Arc<File>,
    size: u64,
    blocks: Vec<Option<BlockSums>>,
    /// True when every present chunk was written by this process from bytes that passed
    /// their checksums; false after a re-index, until [`TierStore::open_cache_file`] has read
    /// and checked the whole file once.
    verified: bool,
    /// Disk this file costs beyond its data (see [`file_overhead`]), counted in
    /// `Index::overhead` while the file exists.
    overhead: u64,
}

/// The pages a cache file costs beyond its data: its checksum record file (one record per
/// block, rounded up to pages) and the partial last page of the data file. Counted against
/// the quota with the data, so what the tier holds on disk stays within it.
pub fn file_overhead(file_size: u64) -> u64 {
    const PAGE: u64 = 4096;
    let records = file_size.div_ceil(BLOCK_SIZE).max(1) * checksum::RECORD;
    (records.div_ceil(PAGE) + 1) * PAGE
}

#[derive(Default)]
struct Index {
    files: HashMap<Arc<str>, CachedFile>,
    /// LRU order: tick → block; and block → (tick, bytes present).
    lru: BTreeMap<u64, BlockId>,
    blocks: HashMap<BlockId, (u64, u64)>,
    tick: u64,
    /// Data bytes present (or being written): what the watermarks apply to.
    used: u64,
    /// The cache files' own cost beyond their data ([`file_overhead`]); with `used`, never
    /// past the quota.
    overhead: u64,
    /// Evicted files other processes still hold open ([`held`]); with the above, never past
    /// the quota.
    held: held::Held,
}

/// Figures of one tier.
#[derive(Debug, Default)]
pub struct TierCounters {
    /// Blocks found corrupt on read (dropped and refetched).
    pub corrupt_blocks: AtomicU64,
    pub evicted_bytes: AtomicU64,
    /// Bytes this tier handed to the level below.
    pub demoted_bytes: AtomicU64,
}

pub struct TierStore {
    dir: PathBuf,
    quota: u64,
    high: u64,
    low: u64,
    index: Mutex<Index>,
    io_gate: RwLock<()>,
    lower: OnceLock<Arc<dyn Lower>>,
    pub counters: TierCounters,
    /// Taken out of service after repeated I/O errors (see [`health`]).
    pub health: health::Health,
}

impl TierStore {
    /// Opens the tier directory: emptied, or re-indexed when `persistent`.
    pub fn open(dir: &Path, quota: u64, high: f64, low: f64, persistent: bool) -> io::Result<TierStore> {
        if dir.exists() && !persistent {
            std::fs::remove_dir_all(dir)?;
        }
        create_private_dir(dir)?;
        let store = TierStore {
            dir: dir.to_path_buf(),
            quota,
            high: ((quota as f64) * high) as u64,
            low: ((quota as f64) * low) as u64,
            index: Mutex::default(),
            io_gate: RwLock::new(()),
            lower: OnceLock::new(),
            counters: TierCounters::default(),
            health: health::Health::default(),
        };
        if persistent {
            store.reindex()?;
        }
        Ok(store)
    }

    /// Sends evicted blocks to `lower` from now on.
    pub fn set_lower(&self, lower: Arc<dyn Lower>) {
        let _ = self.lower.set(lower);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn quota(&self) -> u64 {
        self.quota
    }
    pub fn used(&self) -> u64 {
        self.index.lock().expect("index lock").used
    }
    /// Everything the tier holds on disk: data, the files' own pages, and evicted files other
    /// processes still hold open. Never past the quota.
    pub fn on_disk(&self) -> u64 {
        let mut ix = self.index.lock().expect("index lock");
        ix.held.release();
        ix.on_disk()
    }

    /// Bytes of `key` present here (no I/O).
    pub fn present_bytes(&self, key: &str) -> u64 {
        let ix = self.index.lock().expect("index lock");
        ix.files.get(key).map_or(0, |cf| cf.blocks.iter().flatten().map(BlockSums::present_bytes).sum())
    }

    /// The cache file of `key` when every block of it is present: a plain copy of the object.
    pub fn complete_file(&self, key: &str) -> Option<PathBuf> {
        self.index.lock().expect("index lock").is_complete(key).then(|| self.dir.join(key))
    }

    /// Reads `[start, end)` of block `b` of `key` if those chunks are cached and their
    /// checksums hold; `None` otherwise (a corrupt block is dropped on the way).
    pub fn read_cached(&self, key: &str, b: u64, start: u64, end: u64) -> io::Result<Option<Bytes>> {
        if start >= end {
            return Ok(self.covers(key, b, 0, 1).then(Bytes::new));
        }
        if !self.health.in_service() {
            return Ok(None);
        }
        let gate = self.io_gate.read().expect("io gate");
        let (file, sums) = {
            let mut ix = self.index.lock().expect("index lock");
            let Some(sums) = ix.sums(key, b).filter(|s| s.covers(start, end)).cloned() else {
                return Ok(None);
            };
            let file = ix.files[key].file.clone();
            ix.touch(&(Arc::from(key), b));
            (file, sums)
        };
        // Read whole chunks so each can be verified.
        let from = start / CHUNK * CHUNK;
        let to = end.div_ceil(CHUNK).saturating_mul(CHUNK).min(sums.len);
        let mut buf = vec![0u8; (to - from) as usize];
        self.health.record(file.read_exact_at(&mut buf, b * BLOCK_SIZE + from), &self.dir)?;
        if !sums.verify(from, &buf) {
            drop(gate);
            tracing::warn!(key, block = b, "cached block failed its checksum; dropping it and refetching");
            self.counters.corrupt_blocks.fetch_add(1, Ordering::Relaxed);
            self.drop_block(key, b)?;
            return Ok(None);
        }
        Ok(Some(Bytes::from(buf).slice((start - from) as usize..(end - from) as usize)))
    }

    /// True when block `b` of `key` is wholly cached (no I/O).
    pub fn contains(&self, key: &str, b: u64) -> bool {
        self.index.lock().expect("index lock").sums(key, b).is_some_and(BlockSums::is_complete)
    }

    /// True when the chunks of `[start, end)` of block `b` of `key` are cached (no I/O).
    pub fn covers(&self, key: &str, b: u64, start: u64, end: u64) -> bool {
        self.index.lock().expect("index lock").sums(key, b).is_some_and(|s| s.covers(start, end))
    }

    /// Stores `data` at `offset` (a multiple of [`CHUNK`]) in block `b` of `key` (a file of
    /// `file_size` bytes). Returns false when it cannot fit in the quota at all (it is then
    /// simply not cached).
    pub fn insert(&self, key: &str, b: u64, file_size: u64, offset: u64, data: &[u8]) -> io::Result<bool> {
        self.insert_parts(key, b, file_size, offset, &[data])
    }

    /// [`TierStore::insert`] of data given as consecutive parts (a body as it arrived).
    pub fn insert_parts(&self, key: &str, b: u64, file_size: u64, offset: u64, parts: &[&[u8]]) -> io::Result<bool> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if len + file_overhead(file_size) > self.quota || !self.health.in_service() {
            return Ok(false);
        }
        let key: Arc<str> = Arc::from(key);
        let reserved_overhead;
        // Reserve the space first, evicting if needed, so `used` never passes the quota.
        loop {
            let mut ix = self.index.lock().expect("index lock");
            if ix.sums(&key, b).is_some_and(|s| s.covers(offset, offset + len)) {
                return Ok(true); // someone else stored it meanwhile
            }
            // A new cache file brings its own overhead: reserved with the data.
            let extra = if ix.files.contains_key(&key) { 0 } else { file_overhead(file_size) };
            ix.held.release();
            if ix.on_disk() + len + extra <= self.quota {
                ix.used += len;
                ix.overhead += extra;
                reserved_overhead = extra;
                break;
            }
            let target = self.quota.saturating_sub(len + extra + ix.overhead + ix.held.bytes);
            if ix.used <= target {
                return Ok(false); // what is left is the files' own pages and held files
            }
            drop(ix);
            if !self.evict_to(target)? {
                return Ok(false); // everything left is being written right now
            }
        }
        // The file made now carries the reserved overhead; one made meanwhile by another
        // writer already carries its own.
        match self.file_for(&key, file_size, reserved_overhead) {
            Ok((_, _, created)) => {
                if !created {
                    self.index.lock().expect("index lock").overhead -= reserved_overhead;
                }
            }
            Err(e) => {
                let mut ix = self.index.lock().expect("index lock");
                ix.used -= len;
                ix.overhead -= reserved_overhead;
                return self.health.record(Err(e), &self.dir);
            }
        }
        let stored = self.health.record(self.write_and_mark(&key, b, file_size, offset, parts, len), &self.dir);
        if !matches!(stored, Ok(true)) {
            self.index.lock().expect("index lock").used -= len;
        }
        if !stored? {
            return Ok(false);
        }
        let over = self.used() > self.high;
        if over {
            self.evict_to(self.low)?;
        }
        Ok(true)
    }

    /// Writes reserved data and marks it present; false when the file was evicted meanwhile.
    fn write_and_mark(&self, key: &Arc<str>, b: u64, file_size: u64, offset: u64, parts: &[&[u8]], len: u64) -> io::Result<bool> {
        let (file, sidecar, _) = self.file_for(key, file_size, 0)?;
        let _gate = self.io_gate.read().expect("io gate");
        write::write_parts_at(&file, parts, b * BLOCK_SIZE + offset)?;
        let mut ix = self.index.lock().expect("index lock");
        let Some(cf) = ix.files.get_mut(key).filter(|cf| Arc::ptr_eq(&cf.file, &file)) else {
            return Ok(false); // its last block was evicted and the file removed meanwhile
        };
        let Some(slot) = cf.blocks.get_mut(b as usize) else { return Ok(false) };
        let block_len = BLOCK_SIZE.min(cf.size - b * BLOCK_SIZE);
        let sums = slot.get_or_insert_with(|| BlockSums::empty(block_len));
        let added = sums.add_parts(offset, parts);
        if let Err(e) = sums.write_record(&sidecar, b) {
            // Served from memory's view all the same; after a restart these chunks count as absent.
            tracing::warn!(key = &**key, block = b, error = %e, "cannot write a checksum record");
        }
        ix.used -= len - added; // chunks another writer stored first were reserved twice
        let id: BlockId = (key.clone(), b);
        if let Some(entry) = ix.blocks.get_mut(&id) {
            entry.1 += added;
            ix.touch(&id);
        } else {
            ix.push_lru(id, added);
        }
        Ok(true)
    }

    /// The cache file of `key`, made (carrying `overhead`, already counted by the caller) when
    /// there is none; true when made now.
    fn file_for(&self, key: &Arc<str>, file_size: u64, overhead: u64) -> io::Result<(Arc<File>, Arc<File>, bool)> {
        let mut ix = self.index.lock().expect("index lock");
        if let Some(cf) = ix.files.get(key) {
            return Ok((cf.file.clone(), cf.sidecar.clone(), false));
        }
        let (data_path, sidecar_path) = self.paths_of(key)?;
        let file = open_private(&data_path, true)?;
        file.set_len(file_size)?;
        let sidecar = open_private(&sidecar_path, true)?;
        let blocks = file_size.div_ceil(BLOCK_SIZE).max(1) as usize;
        let id = std::os::unix::fs::MetadataExt::ino(&file.metadata()?);
        let (file, sidecar) = (Arc::new(file), Arc::new(sidecar));
        let cf = CachedFile { file: file.clone(), id, sidecar: sidecar.clone(), size: file_size, blocks: vec![None; blocks], verified: true, overhead };
        ix.files.insert(key.clone(), cf);
        Ok((file, sidecar, true))
    }

    /// The cache file and checksum record of `key`: only a well-formed [`CacheKey`] names
    /// one, so every path this store creates, truncates or removes is a direct child of its
    /// directory.
    fn paths_of(&self, key: &str) -> io::Result<(PathBuf, PathBuf)> {
        let key = CacheKey::parse(key)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{key:?} is not a cache key")))?;
        Ok((self.dir.join(key.as_str()), self.dir.join(format!("{key}{SIDECAR}"))))
    }

}

impl Index {
    /// True when every block of `key` is wholly present.
    fn is_complete(&self, key: &str) -> bool {
        self.files.get(key).is_some_and(|cf| cf.blocks.iter().all(|b| b.as_ref().is_some_and(BlockSums::is_complete)))
    }

    /// The blocks of `key` that hold data.
    fn block_ids(&self, key: &Arc<str>) -> Vec<BlockId> {
        let Some(cf) = self.files.get(key) else { return Vec::new() };
        (0..cf.blocks.len() as u64).filter(|&b| cf.blocks[b as usize].is_some()).map(|b| (key.clone(), b)).collect()
    }

    fn sums(&self, key: &str, b: u64) -> Option<&BlockSums> {
        self.files.get(key).and_then(|cf| cf.blocks.get(b as usize)).and_then(Option::as_ref)
    }

    fn touch(&mut self, id: &BlockId) {
        self.tick += 1;
        let t = self.tick;
        if let Some(entry) = self.blocks.get_mut(id) {
            self.lru.remove(&entry.0);
            entry.0 = t;
            self.lru.insert(t, id.clone());
        }
    }

    fn push_lru(&mut self, id: BlockId, len: u64) {
        self.tick += 1;
        let t = self.tick;
        self.lru.insert(t, id.clone());
        self.blocks.insert(id, (t, len));
    }
}

fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: fallocate on a valid, owned file descriptor; no memory is passed.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> cistern_rpc::CacheKey {
        cistern_rpc::CacheKey::for_test(s)
    }

    #[test]
    fn quota_is_never_exceeded_and_lru_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        // Room for three blocks of one file and that file's own pages.
        let store = TierStore::open(&dir.path().join("t"), 3 * BLOCK_SIZE + file_overhead(10 * BLOCK_SIZE), 1.0, 1.0, false).unwrap();
        let block = vec![7u8; BLOCK_SIZE as usize];
        for b in 0..3 {
            assert!(store.insert(&key("f"), b, 10 * BLOCK_SIZE, 0, &block).unwrap());
        }
        // Touch block 0 so block 1 is the coldest.
        assert!(store.read_cached(&key("f"), 0, 0, 10).unwrap().is_some());
        assert!(store.insert(&key("f"), 3, 10 * BLOCK_SIZE, 0, &block).unwrap());
        assert_eq!(store.used(), 3 * BLOCK_SIZE);
        assert!(store.read_cached(&key("f"), 1, 0, 10).unwrap().is_none(), "coldest block evicted");
        assert_eq!(store.read_cached(&key("f"), 0, 0, 4).unwrap().unwrap(), vec![7u8; 4]);
        // The punched hole really freed the space.
        let meta = std::fs::metadata(store.dir().join(key("f").as_str())).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 <= 3 * BLOCK_SIZE + 4096, "{} bytes allocated", meta.blocks() * 512);
    }

    #[test]
    fn a_complete_file_is_evicted_whole_and_an_open_reader_keeps_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = TierStore::open(&dir.path().join("t"), 2 * BLOCK_SIZE + file_overhead(2 * BLOCK_SIZE), 1.0, 1.0, false).unwrap();
        let data: Vec<u8> = (0..2 * BLOCK_SIZE as u32).map(|i| (i % 253) as u8).collect();
        for b in 0..2u64 {
            let block = &data[(b * BLOCK_SIZE) as usize..((b + 1) * BLOCK_SIZE) as usize];
            store.insert(&key("whole"), b, 2 * BLOCK_SIZE, 0, block).unwrap();
        }
        let path = store.complete_file(&key("whole")).expect("both blocks present: complete");
        // What FUSE passthrough holds: the cache file itself, opened.
        let held = File::open(&path).unwrap();
        // Block 0 is the coldest; a new block needs its space. The reader still holds it, so
        // its pages stay charged ([`held`]) and the new block is not cached.
        assert!(!store.insert(&key("other"), 0, BLOCK_SIZE, 0, &vec![1u8; BLOCK_SIZE as usize]).unwrap());
        assert!(!path.exists(), "a complete file is unlinked, not punched");
        assert!(!store.contains(&key("whole"), 1), "its other block went with it");
        assert_eq!(store.used(), 0);
        let mut back = vec![0u8; data.len()];
        held.read_exact_at(&mut back, 0).unwrap();
        assert!(back == data, "the open reader saw a hole");
    }

    #[test]
    fn an_evicted_file_still_open_elsewhere_stays_charged_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let quota = 2 * BLOCK_SIZE + 2 * file_overhead(2 * BLOCK_SIZE);
        let store = TierStore::open(&dir.path().join("t"), quota, 1.0, 1.0, false).unwrap();
        let block = vec![3u8; BLOCK_SIZE as usize];
        store.insert(&key("whole"), 0, BLOCK_SIZE, 0, &block).unwrap();
        let reader = store.open_cache_file(&key("whole"), true).unwrap().expect("complete");
        store.insert(&key("other"), 0, 2 * BLOCK_SIZE, 0, &block).unwrap();
        // No room for a second block of "other": "whole" goes, but the reader keeps its
        // pages, so "other"'s first block has to go as well.
        assert!(store.insert(&key("other"), 1, 2 * BLOCK_SIZE, 0, &block).unwrap());
        assert!(store.complete_file(&key("whole")).is_none());
        assert!(!store.contains(&key("other"), 0), "the held file's pages were not counted");
        assert!(store.on_disk() <= quota);
        assert!(store.on_disk() >= 2 * BLOCK_SIZE, "{} on disk", store.on_disk());
        drop(reader);
        std::thread::sleep(held_recheck());
        assert!(store.on_disk() < 2 * BLOCK_SIZE, "released at the last close");
    }

    fn held_recheck() -> std::time::Duration {
        std::time::Duration::from_millis(60)
    }

    #[test]
    fn watermarks_evict_down_to_low() {
        let dir = tempfile::tempdir().unwrap();
        let store = TierStore::open(&dir.path().join("t"), 10 * BLOCK_SIZE, 0.8, 0.5, false).unwrap();
        let block = vec![1u8; BLOCK_SIZE as usize];
        for b in 0..8 {
            store.insert(&key("g"), b, 20 * BLOCK_SIZE, 0, &block).unwrap();
        }
        assert_eq!(store.used(), 8 * BLOCK_SIZE, "at high, not above: no eviction yet");
        store.insert(&key("g"), 8, 20 * BLOCK_SIZE, 0, &block).unwrap();
        assert_eq!(store.used(), 5 * BLOCK_SIZE, "above high: evicted down to low");
    }

    #[test]
    fn a_block_larger_than_the_quota_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let store = TierStore::open(&dir.path().join("t"), 1024, 1.0, 1.0, false).unwrap();
        assert!(!store.insert(&key("h"), 0, 4096, 0, &[0u8; 4096]).unwrap());
        assert_eq!(store.used(), 0);
    }

    #[test]
    fn a_corrupt_block_is_dropped_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = TierStore::open(&dir.path().join("t"), 8 * BLOCK_SIZE, 1.0, 1.0, false).unwrap();
        let data: Vec<u8> = (0..BLOCK_SIZE as u32).map(|i| (i % 251) as u8).collect();
        store.insert(&key("k"), 0, BLOCK_SIZE, 0, &data).unwrap();
        assert_eq!(store.read_cached(&key("k"), 0, 100, 200).unwrap().unwrap(), data[100..200]);
        // Flip one byte on disk, as bit rot would.
        let f = OpenOptions::new().write(true).open(store.dir().join(key("k").as_str())).unwrap();
        f.write_all_at(&[data[150] ^ 0xff], 150).unwrap();
        assert!(store.read_cached(&key("k"), 0, 100, 200).unwrap().is_none(), "corrupt bytes served");
        assert_eq!(store.counters.corrupt_blocks.load(Ordering::Relaxed), 1);
        assert_eq!(store.used(), 0);
        assert!(!store.contains(&key("k"), 0));
    }

    #[test]
    fn a_persistent_tier_reindexes_after_restart_and_a_mem_tier_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssd");
        let data = vec![9u8; 3 * BLOCK_SIZE as usize / 2];
        {
            let store = TierStore::open(&path, 8 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
            store.insert(&key("f"), 0, data.len() as u64, 0, &data[..BLOCK_SIZE as usize]).unwrap();
            store.insert(&key("f"), 1, data.len() as u64, 0, &data[BLOCK_SIZE as usize..]).unwrap();
        }
        let store = TierStore::open(&path, 8 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
        assert_eq!(store.used(), data.len() as u64);
        assert_eq!(store.read_cached(&key("f"), 1, 0, 10).unwrap().unwrap(), vec![9u8; 10]);
        drop(store);
        let mem = TierStore::open(&path, 8 * BLOCK_SIZE, 1.0, 1.0, false).unwrap();
        assert_eq!(mem.used(), 0);
        assert!(!mem.contains(&key("f"), 0));
    }
}

