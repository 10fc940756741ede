//! Short-circuit reads: where a cached range lies in its cache file, with the checksums a
//! reader on the same node needs to verify what it reads there itself; and the read-only
//! descriptor of a cache file that such a reader (or the kernel, for FUSE passthrough) reads
//! from. Readers get descriptors, never paths (see `crate::descriptors`).
//!
//! The reader takes no lock of ours while it reads: a chunk evicted meanwhile reads back as a
//! hole (zeros) or from an unlinked file it still holds open, and either way fails its
//! checksum unless the bytes are still the right ones. That reader then asks the worker for
//! the bytes instead.

use super::checksum::CHUNK;
use super::{TierStore, BLOCK_SIZE};
use std::fs::File;
use std::io;
use std::sync::Arc;

/// Part of a cache file: `[offset, end)` holds whole checksum chunks, one crc32c each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRange {
    /// The cache file's inode number: the reader checks the descriptor it reads is of it.
    pub file_id: u64,
    pub offset: u64,
    pub end: u64,
    pub crcs: Vec<u32>,
}

impl TierStore {
    /// The chunks spanning `[start, end)` (file offsets) of `key` when they are all in this
    /// store, as a read of them: the blocks count as used (LRU).
    pub fn locate_range(&self, key: &str, start: u64, end: u64) -> Option<LocalRange> {
        let mut ix = self.index.lock().expect("index lock");
        let cf = ix.files.get(key)?;
        if start >= end || end > cf.size {
            return None;
        }
        let (from, to) = (start / CHUNK * CHUNK, end.div_ceil(CHUNK).saturating_mul(CHUNK).min(cf.size));
        let mut crcs = Vec::with_capacity(((to - from) / CHUNK + 1) as usize);
        let blocks = from / BLOCK_SIZE..=(to - 1) / BLOCK_SIZE;
        for b in blocks.clone() {
            let sums = cf.blocks.get(b as usize)?.as_ref()?;
            let base = b * BLOCK_SIZE;
            let (s, e) = (from.max(base) - base, to.min(base + BLOCK_SIZE) - base);
            if !sums.covers(s, e) {
                return None;
            }
            crcs.extend_from_slice(&sums.crcs[(s / CHUNK) as usize..e.div_ceil(CHUNK) as usize]);
        }
        let range = LocalRange { file_id: cf.id, offset: from, end: to, crcs };
        let key: Arc<str> = Arc::from(key);
        for b in blocks {
            ix.touch(&(key.clone(), b));
        }
        Some(range)
    }
}

/// A cache file opened read-only for a reader on this node.
#[derive(Debug)]
pub struct CacheFileHandle {
    pub file: File,
    /// Its inode number (what [`LocalRange::file_id`] names).
    pub file_id: u64,
    /// Every block is present (and verified): a plain copy of the object.
    pub complete: bool,
}

impl TierStore {
    /// A read-only descriptor of `key`'s cache file, if this store has one. With
    /// `complete_only`, only a complete file, whose every chunk was checked against its
    /// checksum (once after a re-index: records can outlive their data), since the kernel
    /// reads a passthrough file without us.
    pub fn open_cache_file(&self, key: &str, complete_only: bool) -> io::Result<Option<CacheFileHandle>> {
        let (id, size, complete, verified) = {
            let ix = self.index.lock().expect("index lock");
            let Some(cf) = ix.files.get(key) else { return Ok(None) };
            (cf.id, cf.size, ix.is_complete(key), cf.verified)
        };
        if complete_only && !complete {
            return Ok(None);
        }
        if complete && !verified && !self.verify_whole(key, size)? {
            return Ok(None);
        }
        let (path, _) = self.paths_of(key)?;
        let file = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None), // evicted meanwhile
            Err(e) => return Err(e),
        };
        // Evicted and cached anew between the lookup and the open: another file now.
        if std::os::unix::fs::MetadataExt::ino(&file.metadata()?) != id {
            return Ok(None);
        }
        Ok(Some(CacheFileHandle { file, file_id: id, complete }))
    }

    /// Reads and checks every block of a complete file (a corrupt one is dropped, which drops
    /// the whole file); true when all held.
    fn verify_whole(&self, key: &str, size: u64) -> io::Result<bool> {
        for b in 0..size.div_ceil(BLOCK_SIZE).max(1) {
            let len = BLOCK_SIZE.min(size - b * BLOCK_SIZE);
            if self.read_cached(key, b, 0, len)?.is_none() {
                return Ok(false);
            }
        }
        let mut ix = self.index.lock().expect("index lock");
        match ix.files.get_mut(key) {
            Some(cf) => {
                cf.verified = true;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> cistern_rpc::CacheKey {
        cistern_rpc::CacheKey::for_test(s)
    }
    use std::os::unix::fs::{FileExt, MetadataExt};

    fn pattern(len: u64) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_range_across_blocks_names_the_file_and_the_checksums_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = TierStore::open(&dir.path().join("t"), 8 * BLOCK_SIZE, 1.0, 1.0, false).unwrap();
        let size = 2 * BLOCK_SIZE + 1000; // a short last chunk
        let data = pattern(size);
        for b in 0..3 {
            let (s, e) = (b * BLOCK_SIZE, ((b + 1) * BLOCK_SIZE).min(size));
            store.insert(&key("k"), b, size, 0, &data[s as usize..e as usize]).unwrap();
        }
        // An unaligned range over the first block boundary, to the end of the file.
        let (start, end) = (BLOCK_SIZE - 100, size);
        let r = store.locate_range(&key("k"), start, end).expect("all cached");
        let handle = store.open_cache_file(&key("k"), true).unwrap().expect("complete");
        assert_eq!(r.file_id, handle.file.metadata().unwrap().ino());
        assert_eq!(handle.file_id, r.file_id);
        assert_eq!((r.offset, r.end), (BLOCK_SIZE - CHUNK, size));
        let file = handle.file;
        let mut buf = vec![0u8; (r.end - r.offset) as usize];
        file.read_exact_at(&mut buf, r.offset).unwrap();
        let sums: Vec<u32> = buf.chunks(CHUNK as usize).map(crc32c::crc32c).collect();
        assert_eq!(r.crcs, sums);
        assert_eq!(buf, data[r.offset as usize..r.end as usize]);
    }

    #[test]
    fn a_range_with_a_missing_chunk_is_not_located() {
        let dir = tempfile::tempdir().unwrap();
        let store = TierStore::open(&dir.path().join("t"), 8 * BLOCK_SIZE, 1.0, 1.0, false).unwrap();
        let size = 2 * BLOCK_SIZE;
        let data = pattern(size);
        // Block 0 whole, block 1 only its second chunk.
        store.insert(&key("k"), 0, size, 0, &data[..BLOCK_SIZE as usize]).unwrap();
        store.insert(&key("k"), 1, size, CHUNK, &data[(BLOCK_SIZE + CHUNK) as usize..(BLOCK_SIZE + 2 * CHUNK) as usize]).unwrap();
        assert!(store.locate_range(&key("k"), 0, BLOCK_SIZE).is_some());
        assert!(store.locate_range(&key("k"), BLOCK_SIZE + CHUNK + 5, BLOCK_SIZE + 2 * CHUNK).is_some());
        assert!(store.locate_range(&key("k"), BLOCK_SIZE - 10, BLOCK_SIZE + 10).is_none(), "chunk 0 of block 1 is missing");
        assert!(store.locate_range(&key("k"), 0, size + 1).is_none(), "past the end of the file");
        assert!(store.locate_range(&key("other"), 0, 10).is_none());
        assert!(store.open_cache_file(&key("k"), true).unwrap().is_none(), "not complete");
        let partial = store.open_cache_file(&key("k"), false).unwrap().expect("partly cached");
        assert!(!partial.complete);
        // Read-only: the reader cannot change what the worker serves.
        assert!(std::os::unix::fs::FileExt::write_at(&partial.file, b"x", 0).is_err());
    }

    #[test]
    fn a_reindexed_complete_file_is_checked_whole_before_it_is_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let size = 2 * BLOCK_SIZE;
        let data = pattern(size);
        {
            let store = TierStore::open(&path, 8 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
            store.insert(&key("k"), 0, size, 0, &data[..BLOCK_SIZE as usize]).unwrap();
            store.insert(&key("k"), 1, size, 0, &data[BLOCK_SIZE as usize..]).unwrap();
        }
        // The data lost behind its record, as after a power loss.
        let f = std::fs::OpenOptions::new().write(true).open(path.join(key("k").as_str())).unwrap();
        f.write_all_at(&vec![0u8; 1000], BLOCK_SIZE + 5).unwrap();
        let store = TierStore::open(&path, 8 * BLOCK_SIZE, 1.0, 1.0, true).unwrap();
        assert!(store.open_cache_file(&key("k"), true).unwrap().is_none(), "a damaged file handed to the kernel");
        assert_eq!(store.counters.corrupt_blocks.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
