//! A cache tier on one directory: sparse per-file cache files with a block map, a quota, and
//! LRU eviction between watermarks.
//!
//! Each cached file is one ordinary file under the tier's directory, named by its cache key
//! (path and content version). Blocks of [`BLOCK_SIZE`] are written at their own offset, so a
//! fully cached file is a plain copy of the object that the kernel can later read directly
//! (passthrough, short-circuit). Evicting a block punches a hole in its file. Every block
//! carries chunk checksums ([`checksum`]) verified on each read: a corrupt block is dropped and
//! the caller refetches it, so bad bytes are never served.
//!
//! Space: `used` counts the bytes of present blocks plus those being written (reserved before
//! the write), so it never passes the quota. Once `used` passes `high × quota`, least recently
//! used blocks are punched until it is under `low × quota`.
//!
//! Persistence: a MEM tier starts empty (its directory is wiped: RAM does not survive a
//! restart anyway). An SSD/HDD tier re-indexes what its checksum records say is on disk, so a
//! restarted worker serves it without going back to the UFS.
//!
//! Consistency: reads of present blocks and writes of new ones hold `io_gate` shared; punching
//! holds it exclusively, so a block is never punched under a reader's pread.

pub mod checksum;

use checksum::{BlockSums, CHUNK};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub const BLOCK_SIZE: u64 = 4 << 20;
const SIDECAR: &str = ".crc";

type BlockId = (Arc<str>, u64);

struct CachedFile {
    file: Arc<File>,
    sidecar: Arc<File>,
    blocks: Vec<Option<BlockSums>>,
}

#[derive(Default)]
struct Index {
    files: HashMap<Arc<str>, CachedFile>,
    /// LRU order: tick → block; and block → (tick, length).
    lru: BTreeMap<u64, BlockId>,
    blocks: HashMap<BlockId, (u64, u64)>,
    tick: u64,
    used: u64,
}

pub struct TierStore {
    dir: PathBuf,
    quota: u64,
    high: u64,
    low: u64,
    index: Mutex<Index>,
    io_gate: RwLock<()>,
    /// Blocks found corrupt on read (dropped and refetched).
    pub corrupt_blocks: AtomicU64,
}

impl TierStore {
    /// Opens the tier directory: emptied, or re-indexed when `persistent`.
    pub fn open(dir: &Path, quota: u64, high: f64, low: f64, persistent: bool) -> io::Result<TierStore> {
        if dir.exists() && !persistent {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        let store = TierStore {
            dir: dir.to_path_buf(),
            quota,
            high: ((quota as f64) * high) as u64,
            low: ((quota as f64) * low) as u64,
            index: Mutex::default(),
            io_gate: RwLock::new(()),
            corrupt_blocks: AtomicU64::new(0),
        };
        if persistent {
            store.reindex()?;
        }
        Ok(store)
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

    /// Reads `[start, end)` of block `b` of `key` if the block is cached and its checksums
    /// hold; `None` otherwise (a corrupt block is dropped on the way).
    pub fn read_cached(&self, key: &str, b: u64, start: u64, end: u64) -> io::Result<Option<Vec<u8>>> {
        let gate = self.io_gate.read().expect("io gate");
        let (file, sums) = {
            let mut ix = self.index.lock().expect("index lock");
            let Some(sums) = ix.files.get(key).and_then(|cf| cf.blocks.get(b as usize)).and_then(Option::as_ref) else {
                return Ok(None);
            };
            let sums = sums.clone();
            let file = ix.files[key].file.clone();
            ix.touch(&(Arc::from(key), b));
            (file, sums)
        };
        if start >= end {
            return Ok(Some(Vec::new()));
        }
        // Read whole chunks so each can be verified.
        let from = start / CHUNK * CHUNK;
        let to = end.div_ceil(CHUNK).saturating_mul(CHUNK).min(sums.len);
        let mut buf = vec![0u8; (to - from) as usize];
        file.read_exact_at(&mut buf, b * BLOCK_SIZE + from)?;
        if !sums.verify(from, &buf) {
            drop(gate);
            tracing::warn!(key, block = b, "cached block failed its checksum; dropping it and refetching");
            self.corrupt_blocks.fetch_add(1, Ordering::Relaxed);
            self.drop_block(key, b)?;
            return Ok(None);
        }
        buf.drain(..(start - from) as usize);
        buf.truncate((end - start) as usize);
        Ok(Some(buf))
    }

    /// True when block `b` of `key` is cached (no I/O).
    pub fn contains(&self, key: &str, b: u64) -> bool {
        let ix = self.index.lock().expect("index lock");
        ix.files.get(key).and_then(|cf| cf.blocks.get(b as usize)).is_some_and(Option::is_some)
    }

    /// Stores block `b` of `key` (a file of `file_size` bytes). Returns false when the block
    /// cannot fit in the quota at all (it is then simply not cached).
    pub fn insert(&self, key: &str, b: u64, file_size: u64, data: &[u8]) -> io::Result<bool> {
        let len = data.len() as u64;
        if len > self.quota {
            return Ok(false);
        }
        let key: Arc<str> = Arc::from(key);
        // Reserve the space first, evicting if needed, so `used` never passes the quota.
        loop {
            let mut ix = self.index.lock().expect("index lock");
            if ix.files.get(&key).is_some_and(|cf| cf.blocks.get(b as usize).is_some_and(Option::is_some)) {
                return Ok(true); // someone else stored it meanwhile
            }
            if ix.used + len <= self.quota {
                ix.used += len;
                break;
            }
            drop(ix);
            if !self.evict_to(self.quota.saturating_sub(len))? {
                return Ok(false); // everything left is being written right now
            }
        }
        let sums = BlockSums::of(data);
        let written = self.file_for(&key, file_size).and_then(|(file, sidecar)| {
            let _gate = self.io_gate.read().expect("io gate");
            file.write_all_at(data, b * BLOCK_SIZE)?;
            sums.write_record(&sidecar, b)
        });
        let mut ix = self.index.lock().expect("index lock");
        if let Err(e) = written {
            ix.used -= len;
            return Err(e);
        }
        if let Some(cf) = ix.files.get_mut(&key) {
            cf.blocks[b as usize] = Some(sums);
        }
        ix.push_lru((key, b), len);
        let over = ix.used > self.high;
        drop(ix);
        if over {
            self.evict_to(self.low)?;
        }
        Ok(true)
    }

    fn file_for(&self, key: &Arc<str>, file_size: u64) -> io::Result<(Arc<File>, Arc<File>)> {
        let mut ix = self.index.lock().expect("index lock");
        if let Some(cf) = ix.files.get(key) {
            return Ok((cf.file.clone(), cf.sidecar.clone()));
        }
        let open = |p: PathBuf| OpenOptions::new().read(true).write(true).create(true).truncate(false).open(p);
        let file = open(self.dir.join(&**key))?;
        file.set_len(file_size)?;
        let sidecar = open(self.dir.join(format!("{key}{SIDECAR}")))?;
        let blocks = file_size.div_ceil(BLOCK_SIZE).max(1) as usize;
        let (file, sidecar) = (Arc::new(file), Arc::new(sidecar));
        ix.files.insert(key.clone(), CachedFile { file: file.clone(), sidecar: sidecar.clone(), blocks: vec![None; blocks] });
        Ok((file, sidecar))
    }

    /// Drops one block (after a failed checksum).
    fn drop_block(&self, key: &str, b: u64) -> io::Result<()> {
        let _gate = self.io_gate.write().expect("io gate");
        let mut ix = self.index.lock().expect("index lock");
        let id: BlockId = (Arc::from(key), b);
        if let Some((tick, len)) = ix.blocks.remove(&id) {
            ix.lru.remove(&tick);
            self.forget_block(&mut ix, &id, len)?;
        }
        Ok(())
    }

    /// Punches least recently used blocks until `used <= target`. False when nothing is left
    /// to evict.
    fn evict_to(&self, target: u64) -> io::Result<bool> {
        let _gate = self.io_gate.write().expect("io gate");
        let mut ix = self.index.lock().expect("index lock");
        while ix.used > target {
            let Some((_, id)) = ix.lru.pop_first() else { return Ok(false) };
            let Some((_, len)) = ix.blocks.remove(&id) else { continue };
            self.forget_block(&mut ix, &id, len)?;
        }
        Ok(true)
    }

    /// Removes a block from the file map and the disk; the caller holds the write gate.
    fn forget_block(&self, ix: &mut Index, id: &BlockId, len: u64) -> io::Result<()> {
        ix.used -= len;
        let Some(cf) = ix.files.get_mut(&id.0) else { return Ok(()) };
        cf.blocks[id.1 as usize] = None;
        BlockSums::clear_record(&cf.sidecar, id.1)?;
        punch_hole(&cf.file, id.1 * BLOCK_SIZE, len)?;
        if cf.blocks.iter().all(Option::is_none) {
            ix.files.remove(&id.0);
            let _ = std::fs::remove_file(self.dir.join(&*id.0));
            let _ = std::fs::remove_file(self.dir.join(format!("{}{SIDECAR}", id.0)));
        }
        Ok(())
    }

    /// Rebuilds the index from the checksum records on disk, oldest files first in the LRU.
    fn reindex(&self) -> io::Result<()> {
        let mut found = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let path = e?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(key) = name.strip_suffix(SIDECAR) else { continue };
            let data_path = self.dir.join(key);
            let Ok(meta) = std::fs::metadata(&data_path) else {
                let _ = std::fs::remove_file(&path); // records without data
                continue;
            };
            found.push((meta.modified().ok(), key.to_string(), data_path, path, meta.len()));
        }
        found.sort();
        let mut ix = self.index.lock().expect("index lock");
        for (_, key, data_path, sidecar_path, size) in found {
            let open = |p: &Path| OpenOptions::new().read(true).write(true).open(p);
            let (file, sidecar) = (open(&data_path)?, open(&sidecar_path)?);
            let mut blocks = vec![None; size.div_ceil(BLOCK_SIZE).max(1) as usize];
            let key: Arc<str> = Arc::from(key.as_str());
            for (b, sums) in BlockSums::read_records(&sidecar)? {
                let fits = b * BLOCK_SIZE + sums.len <= size && (b as usize) < blocks.len();
                if fits {
                    ix.used += sums.len;
                    ix.push_lru((key.clone(), b), sums.len);
                    blocks[b as usize] = Some(sums);
                }
            }
            ix.files.insert(key, CachedFile { file: Arc::new(file), sidecar: Arc::new(sidecar), blocks });
        }
        let over = ix.used > self.quota;
        drop(ix);
        if over {
            self.evict_to(self.low)?; // the quota shrank since the last run
        }
        Ok(())
    }
}

impl Index {
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

    #[test]
    fn quota_is_never_exceeded_and_lru_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = TierStore::open(&dir.path().join("t"), 3 * BLOCK_SIZE, 1.0, 1.0, false).unwrap();
        let block = vec![7u8; BLOCK_SIZE as usize];
        for b in 0..3 {
            assert!(store.insert("f", b, 10 * BLOCK_SIZE, &block).unwrap());
        }
        // Touch block 0 so block 1 is the coldest.
        assert!(store.read_cached("f", 0, 0, 10).unwrap().is_some());
        assert!(store.insert("f", 3, 10 * BLOCK_SIZE, &block).unwrap());
        assert_eq!(store.used(), 3 * BLOCK_SIZE);
        assert!(store.read_cached("f", 1, 0, 10).unwrap().is_none(), "coldest block evicted");
        assert_eq!(store.read_cached("f", 0, 0, 4).unwrap().unwrap(), vec![7u8; 4]);
        // The punched hole really freed the space.
        let meta = std::fs::metadata(store.dir().join("f")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 <= 3 * BLOCK_SIZE + 4096, "{} bytes allocated", meta.blocks() * 512);
    }

    #[test]
    fn watermarks_evict_down_to_low() {
        let dir = tempfile::tempdir().unwrap();
        let store = TierStore::open(&dir.path().join("t"), 10 * BLOCK_SIZE, 0.8, 0.5, false).unwrap();
        let block = vec![1u8; BLOCK_SIZE as usize];
        for b in 0..8 {
            store.insert("g", b, 20 * BLOCK_SIZE, &block).unwrap();
        }
        assert_eq!(store.used(), 8 * BLOCK_SIZE, "at high, not above: no eviction yet");
        store.insert("g", 8, 20 * BLOCK_SIZE, &block).unwrap();
        assert_eq!(store.used(), 5 * BLOCK_SIZE, "above high: evicted down to low");
    }

    #[test]
    fn a_block_larger_than_the_quota_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let store = TierStore::open(&dir.path().join("t"), 1024, 1.0, 1.0, false).unwrap();
        assert!(!store.insert("h", 0, 4096, &[0u8; 4096]).unwrap());
        assert_eq!(store.used(), 0);
    }

    #[test]
    fn a_corrupt_block_is_dropped_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = TierStore::open(&dir.path().join("t"), 8 * BLOCK_SIZE, 1.0, 1.0, false).unwrap();
        let data: Vec<u8> = (0..BLOCK_SIZE as u32).map(|i| (i % 251) as u8).collect();
        store.insert("k", 0, BLOCK_SIZE, &data).unwrap();
        assert_eq!(store.read_cached("k", 0, 100, 200).unwrap().unwrap(), data[100..200]);
        // Flip one byte on disk, as bit rot would.
        let f = OpenOptions::new().write(true).open(store.dir().join("k")).unwrap();
        f.write_all_at(&[data[150] ^ 0xff], 150).unwrap();
        assert!(store.read_cached("k", 0, 100, 200).unwrap().is_none(), "corrupt bytes served");
        assert_eq!(store.corrupt_blocks.load(Ordering::Relaxed), 1);
        assert_eq!(store.used(), 0);
        assert!(!store.contains("k", 0));
    }

    #[test]
    fn a_persistent_tier_reindexes_after_restart_and_a_mem_tier_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssd");
        let data = vec![9u8; 3 * BLOCK_SIZE as usize / 2];
        {
            let store = TierStore::open(&path, 8 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
            store.insert("f", 0, data.len() as u64, &data[..BLOCK_SIZE as usize]).unwrap();
            store.insert("f", 1, data.len() as u64, &data[BLOCK_SIZE as usize..]).unwrap();
        }
        let store = TierStore::open(&path, 8 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
        assert_eq!(store.used(), data.len() as u64);
        assert_eq!(store.read_cached("f", 1, 0, 10).unwrap().unwrap(), vec![9u8; 10]);
        drop(store);
        let mem = TierStore::open(&path, 8 * BLOCK_SIZE, 1.0, 1.0, false).unwrap();
        assert_eq!(mem.used(), 0);
        assert!(!mem.contains("f", 0));
    }
}

