//! Scale-in without losing the cache: a worker that leaves the runtime hands the files it used
//! most recently to their new owners before it exits (Fluid drops a leaving worker's cache;
//! users ask for this).
//!
//! The leaving worker remembers the signed references of the files it served last
//! ([`RecentFiles`]). On its way out, with the master's list still naming it, it ranks each of
//! them over the other workers (the owner once it is gone) and asks each new owner to warm a
//! batch ([`pb::WarmRequest`]). The new owner takes what it lacks from its peers' caches only
//! (the leaving worker ranks first among them for these files), never from the UFS: a file the
//! leaving worker no longer holds costs nothing. The leaving worker keeps serving until every
//! batch is answered or its deadline passes (the pod's termination grace period).

use crate::{FileRef, Worker, BLOCK_SIZE};
use cistern_rpc::pb;
use cistern_rpc::CacheKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most references remembered; past it the older half is forgotten.
pub const MAX_RECENT_FILES: usize = 65_536;
/// Most files in one warm request.
pub const MAX_WARM_FILES: usize = 64;

/// The signed references of the files served last, by recency.
#[derive(Default)]
pub struct RecentFiles {
    files: Mutex<HashMap<CacheKey, (u64, pb::FileRef)>>,
    clock: AtomicU64,
}

impl RecentFiles {
    /// Notes a read of `key`, signed as `file`.
    pub fn note(&self, key: &CacheKey, file: &pb::FileRef) {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut files = self.files.lock().expect("recent files lock");
        if let Some(entry) = files.get_mut(key) {
            entry.0 = now;
            return;
        }
        if files.len() >= MAX_RECENT_FILES {
            let mut ages: Vec<u64> = files.values().map(|(t, _)| *t).collect();
            let (_, median, _) = ages.select_nth_unstable(MAX_RECENT_FILES / 2);
            let median = *median;
            files.retain(|_, (t, _)| *t > median);
        }
        files.insert(key.clone(), (now, file.clone()));
    }

    /// Up to `n` references, the most recently read first.
    pub fn most_recent(&self, n: usize) -> Vec<pb::FileRef> {
        let files = self.files.lock().expect("recent files lock");
        let mut all: Vec<&(u64, pb::FileRef)> = files.values().collect();
        all.sort_unstable_by_key(|(t, _)| std::cmp::Reverse(*t));
        all.into_iter().take(n).map(|(_, f)| f.clone()).collect()
    }
}

impl Worker {
    /// Takes what this worker lacks of `f` from its peers' caches, never from the UFS; returns
    /// the bytes taken. A new owner does this for a leaving worker's files.
    pub async fn warm(self: &Arc<Self>, f: &FileRef) -> u64 {
        let mut taken = 0;
        for b in 0..f.size.div_ceil(BLOCK_SIZE) {
            let len = BLOCK_SIZE.min(f.size - b * BLOCK_SIZE);
            if self.tiers.covers(&f.key, b, 0, len) {
                continue;
            }
            let Some(data) = self.take_from_peers(f, b, 0, len).await else {
                continue; // the peers do not hold it: left for the UFS, when it is read
            };
            taken += data.len() as u64;
            self.store(f, b, 0, cistern_ufs::Buffer::from(data)).await;
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_recent_files_come_first_and_the_list_is_bounded() {
        let recent = RecentFiles::default();
        let refs = cistern_rpc::RefKey::generate();
        let key_of = |i: u32| CacheKey::for_test(&format!("f{i}"));
        for i in 0..10 {
            recent.note(&key_of(i), &refs.sign(0, &format!("f{i}"), 1, b"v"));
        }
        recent.note(&key_of(3), &refs.sign(0, "f3", 1, b"v")); // read again: most recent
        let paths: Vec<String> = recent.most_recent(3).into_iter().map(|f| f.path).collect();
        assert_eq!(paths, ["f3", "f9", "f8"]);
        for i in 10..(MAX_RECENT_FILES as u32 + 10) {
            recent.note(&key_of(i), &refs.sign(0, "x", 1, b"v"));
        }
        assert!(recent.files.lock().unwrap().len() <= MAX_RECENT_FILES);
    }
}
