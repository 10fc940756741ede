//! A cache tier on one directory: sparse per-file cache files with a block map, a quota, and
//! LRU eviction between watermarks.
//!
//! Each cached file is one ordinary file under the tier's directory, named by its cache key
//! (inode and content version). Blocks of [`BLOCK_SIZE`] are written at their own offset, so a
//! fully cached file is a plain copy of the object that the kernel can later read directly
//! (passthrough, short-circuit). Evicting a block punches a hole in its file.
//!
//! Space: `used` counts the bytes of present blocks plus those being written (reserved before
//! the write), so it never passes the quota. Once `used` passes `high × quota`, least recently
//! used blocks are punched until it is under `low × quota`.
//!
//! Consistency: reads of present blocks and writes of new ones hold `io_gate` shared; punching
//! holds it exclusively, so a block is never punched under a reader's pread.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

pub const BLOCK_SIZE: u64 = 4 << 20;

type BlockId = (Arc<str>, u64);

struct CachedFile {
    file: Arc<File>,
    present: Vec<bool>,
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
}

impl TierStore {
    /// Opens (and empties) the tier directory.
    pub fn open(dir: &Path, quota: u64, high: f64, low: f64) -> io::Result<TierStore> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        Ok(TierStore {
            dir: dir.to_path_buf(),
            quota,
            high: ((quota as f64) * high) as u64,
            low: ((quota as f64) * low) as u64,
            index: Mutex::default(),
            io_gate: RwLock::new(()),
        })
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

    /// Reads `[start, end)` of block `b` of `key` if the block is cached; `None` otherwise.
    pub fn read_cached(&self, key: &str, b: u64, start: u64, end: u64) -> io::Result<Option<Vec<u8>>> {
        let _gate = self.io_gate.read().expect("io gate");
        let file = {
            let mut ix = self.index.lock().expect("index lock");
            let Some(cf) = ix.files.get(key) else { return Ok(None) };
            if !cf.present.get(b as usize).copied().unwrap_or(false) {
                return Ok(None);
            }
            let file = cf.file.clone();
            let id: BlockId = (Arc::from(key), b);
            ix.touch(&id);
            file
        };
        let mut buf = vec![0u8; (end - start) as usize];
        file.read_exact_at(&mut buf, b * BLOCK_SIZE + start)?;
        Ok(Some(buf))
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
            if ix.files.get(&key).is_some_and(|cf| cf.present.get(b as usize).copied().unwrap_or(false)) {
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
        let file = match self.file_for(&key, file_size) {
            Ok(f) => f,
            Err(e) => {
                self.index.lock().expect("index lock").used -= len;
                return Err(e);
            }
        };
        let written = {
            let _gate = self.io_gate.read().expect("io gate");
            file.write_all_at(data, b * BLOCK_SIZE)
        };
        let mut ix = self.index.lock().expect("index lock");
        if let Err(e) = written {
            ix.used -= len;
            return Err(e);
        }
        if let Some(cf) = ix.files.get_mut(&key) {
            cf.present[b as usize] = true;
        }
        let id: BlockId = (key, b);
        ix.tick += 1;
        let t = ix.tick;
        ix.lru.insert(t, id.clone());
        ix.blocks.insert(id, (t, len));
        let over = ix.used > self.high;
        drop(ix);
        if over {
            self.evict_to(self.low)?;
        }
        Ok(true)
    }

    fn file_for(&self, key: &Arc<str>, file_size: u64) -> io::Result<Arc<File>> {
        let mut ix = self.index.lock().expect("index lock");
        if let Some(cf) = ix.files.get(key) {
            return Ok(cf.file.clone());
        }
        let path = self.dir.join(&**key);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        file.set_len(file_size)?;
        let blocks = file_size.div_ceil(BLOCK_SIZE).max(1) as usize;
        let file = Arc::new(file);
        ix.files.insert(key.clone(), CachedFile { file: file.clone(), present: vec![false; blocks] });
        Ok(file)
    }

    /// Punches least recently used blocks until `used <= target`. False when nothing is left
    /// to evict.
    fn evict_to(&self, target: u64) -> io::Result<bool> {
        let _gate = self.io_gate.write().expect("io gate");
        let mut ix = self.index.lock().expect("index lock");
        while ix.used > target {
            let Some((_, id)) = ix.lru.pop_first() else { return Ok(false) };
            let Some((_, len)) = ix.blocks.remove(&id) else { continue };
            if let Some(cf) = ix.files.get_mut(&id.0) {
                cf.present[id.1 as usize] = false;
                punch_hole(&cf.file, id.1 * BLOCK_SIZE, len)?;
                if !cf.present.iter().any(|p| *p) {
                    ix.files.remove(&id.0);
                    let _ = std::fs::remove_file(self.dir.join(&*id.0));
                }
            }
            ix.used -= len;
        }
        Ok(true)
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
        let store = TierStore::open(&dir.path().join("t"), 3 * BLOCK_SIZE, 1.0, 1.0).unwrap();
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
        let store = TierStore::open(&dir.path().join("t"), 10 * BLOCK_SIZE, 0.8, 0.5).unwrap();
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
        let store = TierStore::open(&dir.path().join("t"), 1024, 1.0, 1.0).unwrap();
        assert!(!store.insert("h", 0, 4096, &[0u8; 4096]).unwrap());
        assert_eq!(store.used(), 0);
    }
}
