//! Short-circuit reads: where a cached range lies in its cache file, with the checksums a
//! reader on the same node needs to verify what it reads there itself.
//!
//! The reader takes no lock of ours while it reads: a chunk evicted meanwhile reads back as a
//! hole (zeros) or from an unlinked file it still holds open, and either way fails its
//! checksum unless the bytes are still the right ones. That reader then asks the worker for
//! the bytes instead.

use super::checksum::CHUNK;
use super::{TierStore, BLOCK_SIZE};
use std::path::PathBuf;
use std::sync::Arc;

/// Part of a cache file: `[offset, end)` holds whole checksum chunks, one crc32c each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRange {
    pub path: PathBuf,
    /// The cache file's inode number.
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
        let range = LocalRange { path: self.dir.join(key), file_id: cf.id, offset: from, end: to, crcs };
        let key: Arc<str> = Arc::from(key);
        for b in blocks {
            ix.touch(&(key.clone(), b));
        }
        Some(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            store.insert("k", b, size, 0, &data[s as usize..e as usize]).unwrap();
        }
        // An unaligned range over the first block boundary, to the end of the file.
        let (start, end) = (BLOCK_SIZE - 100, size);
        let r = store.locate_range("k", start, end).expect("all cached");
        assert_eq!(r.path, store.dir().join("k"));
        assert_eq!(r.file_id, std::fs::metadata(&r.path).unwrap().ino());
        assert_eq!((r.offset, r.end), (BLOCK_SIZE - CHUNK, size));
        let file = std::fs::File::open(&r.path).unwrap();
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
        store.insert("k", 0, size, 0, &data[..BLOCK_SIZE as usize]).unwrap();
        store.insert("k", 1, size, CHUNK, &data[(BLOCK_SIZE + CHUNK) as usize..(BLOCK_SIZE + 2 * CHUNK) as usize]).unwrap();
        assert!(store.locate_range("k", 0, BLOCK_SIZE).is_some());
        assert!(store.locate_range("k", BLOCK_SIZE + CHUNK + 5, BLOCK_SIZE + 2 * CHUNK).is_some());
        assert!(store.locate_range("k", BLOCK_SIZE - 10, BLOCK_SIZE + 10).is_none(), "chunk 0 of block 1 is missing");
        assert!(store.locate_range("k", 0, size + 1).is_none(), "past the end of the file");
        assert!(store.locate_range("other", 0, 10).is_none());
    }
}
