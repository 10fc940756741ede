//! Which worker caches a file: rendezvous (highest random weight) hashing of the file's mount
//! and path over the workers' identities (kept in each worker's cache directory, so they name
//! caches rather than slots: see `cistern_worker::store::identity`). The key is what a client knows from the signed file reference
//! (never the cache key, which only workers compute), and it does not change when the mount
//! table does (inode numbers may). Each worker scores every key; the highest score owns it.
//! Going from n to n+1 workers moves about 1/(n+1) of the keys (those the new worker now
//! wins), and losing a worker moves only the keys it owned: no ring to rebalance.
//!
//! A client picks the live worker with the highest score: the owner when it is live, else the
//! next in the owner's ranking, so a worker that flaps moves only its own keys while it is
//! away, and they come back with it. The set is the workers the master lists, less those this
//! client failed to reach lately (see the client's `WorkerSet`).
//!
//! Workers rank their peers the same way: on a miss, the peers ranked first for the file are
//! asked before the UFS (the previous owner after a scale-out, the other replicas), and a
//! replica that is not the owner has the owner fetch (see `cistern_worker::peers`).

/// A stable 64-bit hash (FNV-1a, then a SplitMix64 finalizer so nearby ids spread).
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The placement key of a file: its mount index and its path in that mount's UFS.
pub fn key(mount: u32, path: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in mount.to_le_bytes().iter().chain(path.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The score of the worker with `identity` for `key`.
pub fn score(identity: u64, key: u64) -> u64 {
    mix(key ^ mix(identity.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// The candidates' identities ranked for `key`, best first.
pub fn ranked(candidates: impl IntoIterator<Item = u64>, key: u64) -> Vec<u64> {
    let mut ids: Vec<u64> = candidates.into_iter().collect();
    ids.sort_unstable_by_key(|id| std::cmp::Reverse((score(*id, key), *id)));
    ids.dedup();
    ids
}

/// The owner of `key` among `identities` (`None` when there are none).
pub fn owner(identities: &[u64], key: u64) -> Option<u64> {
    identities.iter().copied().max_by_key(|id| (score(*id, key), *id))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Identities as workers make them: random 64-bit numbers.
    fn workers(n: usize) -> Vec<u64> {
        (0..n as u64).map(|i| mix(i ^ 0x5eed)).collect()
    }

    fn keys(n: usize) -> Vec<u64> {
        (0..n).map(|i| key((i % 3) as u32, &format!("train/part-{i:05}.tfrecord"))).collect()
    }

    /// Measured, not assumed: adding a fourth worker moves about a quarter of the keys, all
    /// of them to the new worker; removing one moves only its own keys; the load is even.
    #[test]
    fn scaling_moves_only_what_it_must_and_load_is_even() {
        let ks = keys(20_000);
        let w = workers(4);
        let (three, four) = (&w[..3], &w[..]);
        let moved = ks.iter().filter(|k| owner(three, **k) != owner(four, **k)).count() as f64 / ks.len() as f64;
        assert!((0.22..0.28).contains(&moved), "3 → 4 workers moved {moved:.3} of the keys (ideal 0.25)");
        assert!(ks.iter().all(|k| owner(three, *k) == owner(four, *k) || owner(four, *k) == Some(w[3])), "a key moved between old workers");
        for k in &ks {
            // Removing the second worker of four: only its keys move.
            let without: Vec<u64> = ranked([w[0], w[2], w[3]], *k);
            if owner(four, *k) != Some(w[1]) {
                assert_eq!(Some(without[0]), owner(four, *k));
            }
        }
        let mut counts = [0usize; 4];
        for k in &ks {
            counts[w.iter().position(|x| Some(*x) == owner(four, *k)).unwrap()] += 1;
        }
        let ideal = ks.len() as f64 / 4.0;
        assert!(counts.iter().all(|c| (*c as f64 - ideal).abs() < ideal * 0.06), "uneven: {counts:?}");
    }

    /// What a client does (the best-scoring live worker) is the owner's ranking with the
    /// absent workers skipped.
    #[test]
    fn the_best_live_worker_is_the_next_in_the_owners_ranking() {
        let w = workers(5);
        let live = [w[0], w[2], w[4]];
        for k in keys(500) {
            let best = *live.iter().max_by_key(|id| (score(**id, k), **id)).unwrap();
            assert_eq!(Some(best), ranked(w.clone(), k).into_iter().find(|id| live.contains(id)));
        }
    }

    #[test]
    fn the_ranking_starts_with_the_owner() {
        let w = workers(5);
        for k in keys(100) {
            assert_eq!(Some(ranked(w.clone(), k)[0]), owner(&w, k));
        }
    }
}
