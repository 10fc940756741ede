//! The levels of a worker's tiered store (`spec.tieredstore.levels[]`): each level is one
//! [`TierStore`] per path, and the levels are stacked so that what the top evicts moves down.
//!
//! New data enters the top level. When a level passes its high watermark it evicts its coldest
//! blocks down to its low watermark, and each evicted block is demoted into the level below
//! (the bottom level's evictions leave the cache). Hits are served in place from whatever level
//! holds the block: there is no promotion back up, so a scan of more data than the top level
//! holds does not churn blocks between levels on every pass.
//!
//! A key lives on one path of a level, chosen by a hash weighted by the paths' quotas, so a
//! fully cached file is one ordinary file on that path.

use super::{Lower, TierStore, BLOCK_SIZE};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What one level is made of.
#[derive(Debug, Clone)]
pub struct LevelSpec {
    /// `MEM`, `SSD` or `HDD`, for figures and logs.
    pub medium: String,
    /// One cache directory per path, with its quota.
    pub dirs: Vec<(PathBuf, u64)>,
    pub high: f64,
    pub low: f64,
    /// SSD/HDD levels are re-indexed on start; MEM starts empty.
    pub persistent: bool,
}

impl LevelSpec {
    /// A level on a single directory.
    pub fn single(medium: &str, dir: &Path, quota: u64, high: f64, low: f64) -> LevelSpec {
        LevelSpec {
            medium: medium.to_string(),
            dirs: vec![(dir.to_path_buf(), quota)],
            high,
            low,
            persistent: medium != "MEM",
        }
    }
}

pub struct Level {
    pub medium: String,
    stores: Vec<TierStore>,
}

impl Level {
    fn open(spec: &LevelSpec) -> io::Result<Level> {
        let stores = spec
            .dirs
            .iter()
            .map(|(dir, quota)| TierStore::open(dir, *quota, spec.high, spec.low, spec.persistent))
            .collect::<io::Result<_>>()?;
        Ok(Level { medium: spec.medium.clone(), stores })
    }

    /// The store a key lives in: a hash of the key, weighted by quota.
    pub fn store_for(&self, key: &str) -> &TierStore {
        if self.stores.len() == 1 {
            return &self.stores[0];
        }
        let total: u64 = self.stores.iter().map(TierStore::quota).sum();
        let mut at = fnv(key) % total.max(1);
        for s in &self.stores {
            if at < s.quota() {
                return s;
            }
            at -= s.quota();
        }
        &self.stores[0]
    }

    pub fn stores(&self) -> &[TierStore] {
        &self.stores
    }
    pub fn used(&self) -> u64 {
        self.stores.iter().map(TierStore::used).sum()
    }
    pub fn quota(&self) -> u64 {
        self.stores.iter().map(TierStore::quota).sum()
    }
    fn sum(&self, f: impl Fn(&TierStore) -> u64) -> u64 {
        self.stores.iter().map(f).sum()
    }
}

impl Lower for Level {
    fn demote(&self, key: &str, b: u64, file_size: u64, offset: u64, data: &[u8]) {
        if let Err(e) = self.store_for(key).insert(key, b, file_size, offset, data) {
            tracing::warn!(level = %self.medium, error = %e, "cannot demote a block; dropping it");
        }
    }
}

/// Per-level figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LevelStats {
    pub medium: String,
    pub used: u64,
    pub quota: u64,
    pub evicted_bytes: u64,
    pub demoted_bytes: u64,
    pub corrupt_blocks: u64,
    /// See [`TierStore::on_disk`](super::TierStore::on_disk).
    pub on_disk: u64,
}

/// A worker's levels, top first.
pub struct Tiers {
    levels: Vec<Arc<Level>>,
    /// See [`super::identity`].
    identity: u64,
}

impl Tiers {
    pub fn open(specs: &[LevelSpec]) -> io::Result<Tiers> {
        if specs.is_empty() || specs.iter().any(|s| s.dirs.is_empty()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a worker needs at least one cache level with a path"));
        }
        let levels: Vec<Arc<Level>> = specs.iter().map(|s| Level::open(s).map(Arc::new)).collect::<io::Result<_>>()?;
        for pair in levels.windows(2) {
            for s in pair[0].stores() {
                s.set_lower(pair[1].clone());
            }
        }
        let identity = match specs.iter().find(|s| s.persistent) {
            Some(s) => super::identity::load_or_create(&s.dirs[0].0)?,
            None => super::identity::new_identity(),
        };
        Ok(Tiers { levels, identity })
    }

    /// What placement ranks this cache by: kept in the first persistent level's first
    /// directory, new when every level starts empty.
    pub fn identity(&self) -> u64 {
        self.identity
    }

    pub fn levels(&self) -> &[Arc<Level>] {
        &self.levels
    }

    /// Reads from the first level that has the chunks.
    pub fn read_cached(&self, key: &str, b: u64, start: u64, end: u64) -> io::Result<Option<bytes::Bytes>> {
        for l in &self.levels {
            if let Some(data) = l.store_for(key).read_cached(key, b, start, end)? {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }

    pub fn contains(&self, key: &str, b: u64) -> bool {
        self.levels.iter().any(|l| l.store_for(key).contains(key, b))
    }

    pub fn covers(&self, key: &str, b: u64, start: u64, end: u64) -> bool {
        self.levels.iter().any(|l| l.store_for(key).covers(key, b, start, end))
    }

    /// New data enters the top level; when the top cannot take it (its whole quota is being
    /// written by concurrent fetches), the first level below that can.
    pub fn insert(&self, key: &str, b: u64, file_size: u64, offset: u64, data: &[u8]) -> io::Result<bool> {
        self.insert_parts(key, b, file_size, offset, &[data])
    }

    /// [`Tiers::insert`] of data given as consecutive parts (a body as it arrived).
    pub fn insert_parts(&self, key: &str, b: u64, file_size: u64, offset: u64, parts: &[&[u8]]) -> io::Result<bool> {
        for l in &self.levels {
            if l.store_for(key).insert_parts(key, b, file_size, offset, parts)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The cache file of `key` if one level holds all of it.
    /// Reads and verifies what is cached of `[start, end)` (file offsets) of `key`, dropping
    /// any block that fails its checksum.
    pub fn verify_range(&self, key: &str, start: u64, end: u64) -> io::Result<()> {
        for b in start / BLOCK_SIZE..=(end.max(start + 1) - 1) / BLOCK_SIZE {
            let base = b * BLOCK_SIZE;
            let (s, e) = (start.max(base) - base, end.min(base + BLOCK_SIZE) - base);
            for l in &self.levels {
                let store = l.store_for(key);
                if store.covers(key, b, s, e) {
                    store.read_cached(key, b, s, e)?;
                }
            }
        }
        Ok(())
    }

    /// Where `[start, end)` of `key` is, when one level's file holds all of it.
    pub fn locate_range(&self, key: &str, start: u64, end: u64) -> Option<super::locate::LocalRange> {
        self.levels.iter().find_map(|l| l.store_for(key).locate_range(key, start, end))
    }

    /// A read-only descriptor of `key`'s cache file on the first level that has one (see
    /// [`TierStore::open_cache_file`]).
    pub fn open_cache_file(&self, key: &str, complete_only: bool) -> io::Result<Option<super::locate::CacheFileHandle>> {
        for l in self.levels.iter() {
            if let Some(h) = l.store_for(key).open_cache_file(key, complete_only)? {
                return Ok(Some(h));
            }
        }
        Ok(None)
    }

    pub fn complete_file(&self, key: &str) -> Option<PathBuf> {
        self.levels.iter().find_map(|l| l.store_for(key).complete_file(key))
    }

    pub fn used(&self) -> u64 {
        self.levels.iter().map(|l| l.used()).sum()
    }
    pub fn quota(&self) -> u64 {
        self.levels.iter().map(|l| l.quota()).sum()
    }
    /// Bytes of `key` present on any level.
    pub fn cached_bytes_of(&self, key: &str) -> u64 {
        self.levels.iter().map(|l| l.store_for(key).present_bytes(key)).sum()
    }
    pub fn corrupt_blocks(&self) -> u64 {
        self.levels.iter().map(|l| l.sum(|s| s.counters.corrupt_blocks.load(Ordering::Relaxed))).sum()
    }

    pub fn stats(&self) -> Vec<LevelStats> {
        self.levels
            .iter()
            .map(|l| LevelStats {
                medium: l.medium.clone(),
                used: l.used(),
                quota: l.quota(),
                evicted_bytes: l.sum(|s| s.counters.evicted_bytes.load(Ordering::Relaxed)),
                demoted_bytes: l.sum(|s| s.counters.demoted_bytes.load(Ordering::Relaxed)),
                corrupt_blocks: l.sum(|s| s.counters.corrupt_blocks.load(Ordering::Relaxed)),
                on_disk: l.sum(|s| s.on_disk()),
            })
            .collect()
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {

    fn key(s: &str) -> cistern_rpc::CacheKey {
        cistern_rpc::CacheKey::for_test(s)
    }

    use super::*;

    fn two_levels(root: &Path, top_blocks: u64, bottom_blocks: u64) -> Tiers {
        Tiers::open(&[
            LevelSpec::single("MEM", &root.join("mem"), top_blocks * BLOCK_SIZE, 1.0, 0.5),
            LevelSpec::single("SSD", &root.join("ssd"), bottom_blocks * BLOCK_SIZE, 1.0, 1.0),
        ])
        .unwrap()
    }

    fn block(i: u64) -> Vec<u8> {
        (0..BLOCK_SIZE).map(|j| ((i * 7 + j) % 251) as u8).collect()
    }

    #[test]
    fn evicted_blocks_move_down_and_are_served_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let tiers = two_levels(dir.path(), 4, 16);
        for b in 0..10 {
            assert!(tiers.insert(&key("f"), b, 10 * BLOCK_SIZE, 0, &block(b)).unwrap());
        }
        let stats = tiers.stats();
        assert!(stats[0].used <= 4 * BLOCK_SIZE, "top over quota: {stats:?}");
        assert_eq!(stats[0].used + stats[1].used, 10 * BLOCK_SIZE, "nothing lost: {stats:?}");
        assert_eq!(stats[0].demoted_bytes, stats[1].used);
        for b in 0..10 {
            let got = tiers.read_cached(&key("f"), b, 100, 200).unwrap().expect("every block still cached");
            assert_eq!(got, block(b)[100..200]);
        }
        // The oldest blocks are the ones that moved down.
        assert!(tiers.levels()[1].store_for(&key("f")).contains(&key("f"), 0));
        assert!(tiers.levels()[0].store_for(&key("f")).contains(&key("f"), 9));
    }

    #[test]
    fn the_bottom_level_drops_what_it_evicts_and_keeps_its_quota() {
        let dir = tempfile::tempdir().unwrap();
        let tiers = two_levels(dir.path(), 2, 3);
        for b in 0..12 {
            tiers.insert(&key("g"), b, 12 * BLOCK_SIZE, 0, &block(b)).unwrap();
            let stats = tiers.stats();
            assert!(stats[0].used <= 2 * BLOCK_SIZE && stats[1].used <= 3 * BLOCK_SIZE, "{stats:?}");
        }
        assert!(!tiers.contains(&key("g"), 0), "the coldest block left the cache");
        assert!(tiers.contains(&key("g"), 11));
    }

    #[test]
    fn keys_spread_over_paths_by_quota_and_a_complete_file_is_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LevelSpec {
            medium: "SSD".into(),
            dirs: vec![(dir.path().join("a"), 100 * BLOCK_SIZE), (dir.path().join("b"), 300 * BLOCK_SIZE)],
            high: 1.0,
            low: 1.0,
            persistent: true,
        };
        let tiers = Tiers::open(&[spec]).unwrap();
        let on_b = (0..400).filter(|i| tiers.levels()[0].store_for(&key(&format!("k{i}"))).dir().ends_with("b")).count();
        assert!((240..360).contains(&on_b), "{on_b} of 400 keys on the 3× larger path");
        let data = vec![5u8; 1000];
        tiers.insert(&key("k1"), 0, 1000, 0, &data).unwrap();
        let path = tiers.complete_file(&key("k1")).expect("complete");
        assert_eq!(std::fs::read(path).unwrap(), data);
    }
}
