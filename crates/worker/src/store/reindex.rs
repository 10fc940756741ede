//! Re-indexing a persistent tier after a restart: what its checksum records say is on disk.
//! Everything there is treated as hostile input: names must be cache keys, and sizes are
//! bounded before anything is allocated from them.

use super::checksum::{BlockSums, RECORD};
use super::{file_overhead, open_private, CachedFile, TierStore, BLOCK_SIZE, SIDECAR};
use std::io;
use std::sync::Arc;

/// Largest cache file re-indexed (64 TiB: S3's largest object is 5 TiB); a larger one is
/// damage, and its index alone would be 16 million entries.
pub const MAX_CACHED_FILE: u64 = 64 << 40;

impl TierStore {
    /// Rebuilds the index from the checksum records on disk, oldest files first in the LRU.
    pub(super) fn reindex(&self) -> io::Result<()> {
        let mut found = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let path = e?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(key) = name.strip_suffix(SIDECAR) else { continue };
            let Ok((data_path, _)) = self.paths_of(key) else {
                // A cache file of an older release (keys were not keyed hashes then): its
                // content cannot be tied to a reference any more.
                tracing::info!(file = %path.display(), "removing a cache record of an older format");
                let _ = std::fs::remove_file(self.dir.join(key));
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let Ok(meta) = std::fs::metadata(&data_path) else {
                let _ = std::fs::remove_file(&path); // records without data
                continue;
            };
            // Sizes come from the disk: bounded before the index and the record buffer are
            // allocated from them. A file past them is damage, and is removed.
            let records = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(u64::MAX);
            if meta.len() > MAX_CACHED_FILE || records > meta.len().div_ceil(BLOCK_SIZE).max(1) * RECORD {
                tracing::warn!(file = %data_path.display(), "a cache file or its records are larger than they can be; removing them");
                let _ = std::fs::remove_file(&data_path);
                let _ = std::fs::remove_file(&path);
                continue;
            }
            found.push((meta.modified().ok(), key.to_string(), data_path, path, meta.len()));
        }
        found.sort();
        let mut ix = self.index.lock().expect("index lock");
        for (_, key, data_path, sidecar_path, size) in found {
            let (file, sidecar) = (open_private(&data_path, false)?, open_private(&sidecar_path, false)?);
            let mut blocks = vec![None; size.div_ceil(BLOCK_SIZE).max(1) as usize];
            let key: Arc<str> = Arc::from(key.as_str());
            for (b, sums) in BlockSums::read_records(&sidecar, size.div_ceil(BLOCK_SIZE).max(1) * RECORD)? {
                let fits = b * BLOCK_SIZE + sums.len <= size && (b as usize) < blocks.len();
                if fits {
                    let bytes = sums.present_bytes();
                    ix.used += bytes;
                    ix.push_lru((key.clone(), b), bytes);
                    blocks[b as usize] = Some(sums);
                }
            }
            let id = std::os::unix::fs::MetadataExt::ino(&file.metadata()?);
            // Records may have outlived their data (a power loss): checked before passthrough.
            let overhead = file_overhead(size);
            ix.overhead += overhead;
            let cf = CachedFile { file: Arc::new(file), id, sidecar: Arc::new(sidecar), size, blocks, verified: false, overhead };
            ix.files.insert(key, cf);
        }
        let over = ix.used + ix.overhead > self.quota;
        drop(ix);
        if over {
            self.evict_to(self.low)?; // the quota shrank since the last run
        }
        Ok(())
    }
}
