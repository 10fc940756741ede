//! Eviction: least recently used blocks leave a tier (demoted to the level below when there
//! is one), a complete file whole (unlinked, never punched: a passthrough reader keeps its
//! bytes), and a block that failed its checksum is dropped.

use super::checksum::BlockSums;
use super::{punch_hole, BlockId, Index, TierStore, BLOCK_SIZE};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl TierStore {
    /// Drops one block (after a failed checksum).
    pub(super) fn drop_block(&self, key: &str, b: u64) -> io::Result<()> {
        let _gate = self.io_gate.write().expect("io gate");
        let mut ix = self.index.lock().expect("index lock");
        let key: Arc<str> = Arc::from(key);
        let victims = if ix.is_complete(&key) { ix.block_ids(&key) } else { vec![(key.clone(), b)] };
        for v in &victims {
            if let Some((tick, len)) = ix.blocks.remove(v) {
                ix.lru.remove(&tick);
                ix.used -= len;
            }
        }
        self.forget_blocks(&mut ix, &key, &victims)
    }

    /// Evicts least recently used blocks, one at a time, until `used <= target`, demoting
    /// each to the lower level when there is one. False when nothing is left to evict.
    pub(super) fn evict_to(&self, target: u64) -> io::Result<bool> {
        loop {
            let demotion = {
                let _gate = self.io_gate.write().expect("io gate");
                let mut ix = self.index.lock().expect("index lock");
                if ix.used <= target {
                    return Ok(true);
                }
                let Some((tick, id)) = ix.lru.first_key_value().map(|(t, id)| (*t, id.clone())) else { return Ok(false) };
                if !ix.blocks.contains_key(&id) {
                    ix.lru.remove(&tick);
                    continue;
                }
                let whole = ix.is_complete(&id.0);
                let victims = if whole { ix.block_ids(&id.0) } else { vec![id.clone()] };
                let size = ix.files.get(&id.0).map_or(0, |cf| cf.size);
                let demoting = self.lower.get().is_some();
                // A complete file is unlinked, not punched: its blocks are demoted from the
                // descriptor after the locks are released, one run at a time. A single block
                // is punched right away, so its runs are read first (at most one block).
                let mut from_file = Vec::new();
                let file = ix.files.get(&id.0).filter(|_| whole && demoting).map(|cf| cf.file.clone());
                let mut read = Vec::new();
                for v in &victims {
                    let Some((tick, len)) = ix.blocks.remove(v) else { continue };
                    ix.lru.remove(&tick);
                    if demoting {
                        if file.is_some() {
                            if let Some(sums) = ix.files.get(&v.0).and_then(|cf| cf.blocks.get(v.1 as usize)).and_then(Clone::clone) {
                                from_file.push((v.1, sums));
                            }
                        } else {
                            read.push((v.1, self.verified_runs(&ix, v)));
                        }
                    }
                    self.counters.evicted_bytes.fetch_add(len, Ordering::Relaxed);
                    ix.used -= len;
                }
                self.forget_blocks(&mut ix, &id.0, &victims)?;
                (id.0, size, read, file.map(|f| (f, from_file)))
            };
            let (key, size, read, from_file) = demotion;
            let Some(lower) = self.lower.get() else { continue };
            for (b, runs) in read {
                for (off, data) in runs {
                    self.counters.demoted_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                    lower.demote(&key, b, size, off, &data);
                }
            }
            if let Some((file, blocks)) = from_file {
                for (b, sums) in blocks {
                    for (off, len) in sums.runs() {
                        let mut buf = vec![0u8; len as usize];
                        if file.read_exact_at(&mut buf, b * BLOCK_SIZE + off).is_ok() && sums.verify(off, &buf) {
                            self.counters.demoted_bytes.fetch_add(len, Ordering::Relaxed);
                            lower.demote(&key, b, size, off, &buf);
                        }
                    }
                }
            }
        }
    }

    /// The present chunks of a block, read and verified (corrupt runs are left out).
    fn verified_runs(&self, ix: &Index, id: &BlockId) -> Vec<(u64, Vec<u8>)> {
        let Some(cf) = ix.files.get(&id.0) else { return Vec::new() };
        let Some(sums) = cf.blocks.get(id.1 as usize).and_then(Option::as_ref) else { return Vec::new() };
        let mut out = Vec::new();
        for (off, len) in sums.runs() {
            let mut buf = vec![0u8; len as usize];
            if cf.file.read_exact_at(&mut buf, id.1 * BLOCK_SIZE + off).is_ok() && sums.verify(off, &buf) {
                out.push((off, buf));
            }
        }
        out
    }

    /// Removes blocks of one file (already out of the LRU and `used`) from the file map and the
    /// disk; the caller holds the write gate. A file left with no block, or a complete file
    /// (see the module's doc), is unlinked rather than punched.
    fn forget_blocks(&self, ix: &mut Index, key: &Arc<str>, victims: &[BlockId]) -> io::Result<()> {
        let whole = ix.is_complete(key);
        let Some(cf) = ix.files.get_mut(key) else { return Ok(()) };
        for (_, b) in victims {
            let Some(sums) = cf.blocks[*b as usize].take() else { continue };
            if !whole {
                BlockSums::clear_record(&cf.sidecar, *b)?;
                punch_hole(&cf.file, b * BLOCK_SIZE, sums.len)?;
            }
        }
        if whole || cf.blocks.iter().all(Option::is_none) {
            let Some(cf) = ix.files.remove(key) else { return Ok(()) };
            ix.overhead -= cf.overhead;
            if let Ok((data_path, sidecar_path)) = self.paths_of(key) {
                let _ = std::fs::remove_file(data_path);
                let _ = std::fs::remove_file(sidecar_path);
            }
            // Unlinked first: nobody opens it by name any more, so whoever holds it now is
            // all there will be.
            ix.held.hold_if_open(cf.file);
        }
        Ok(())
    }

}
